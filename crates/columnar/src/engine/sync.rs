//! Following the transactional store's change feed, and compaction.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, UInt32Array};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::params;
use smartlink_store::{FeedClick, FeedConversion, FeedMarks, Result, StoreError, TxStore};

use super::{db_err, Columnar, STATUSES};
use crate::Synced;

/// The SQLite meta key holding the raw horizon.
const RAW_FROM_META: &str = "raw_from_ms";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

impl Columnar {
    /// How many click rows the store is behind the feed, read from the
    /// transactional store now.
    pub fn backlog(&self, src: &dyn TxStore) -> Result<(FeedMarks, i64)> {
        let target = src.feed_marks()?;
        Ok((target, target.clicks - self.marks().clicks))
    }

    /// Whether everything the feed had at `target` is loaded.
    pub fn has(&self, target: &FeedMarks) -> bool {
        let m = self.marks();
        m.clicks >= target.clicks && m.conversions >= target.conversions && m.cost_imports >= target.cost_imports
    }

    /// Loads everything the feed has now. One loader at a time; readers are
    /// never blocked (DuckDB's MVCC: they see the last committed batch).
    pub fn sync(&self, src: &dyn TxStore) -> Result<Synced> {
        let conn = self.writer.lock();
        let out = self.sync_locked(&conn, src);
        match &out {
            Ok(done) => {
                self.loaded.fetch_add(done.clicks + done.conversions, Ordering::Relaxed);
            }
            Err(_) => self.reload_dict(&conn),
        }
        out
    }

    /// [`Columnar::sync`] if the loader lock is free within `wait`; `None`
    /// if it is not. A query must not wait behind the background loader: it
    /// runs in the idle scheduling class, and on a busy machine it can hold
    /// the lock for as long as the CPU stays busy.
    pub fn try_sync(&self, src: &dyn TxStore, wait: std::time::Duration) -> Result<Option<Synced>> {
        let Some(conn) = self.writer.try_lock_for(wait) else { return Ok(None) };
        let out = self.sync_locked(&conn, src);
        match &out {
            Ok(done) => {
                self.loaded.fetch_add(done.clicks + done.conversions, Ordering::Relaxed);
            }
            Err(_) => self.reload_dict(&conn),
        }
        out.map(Some)
    }

    fn sync_locked(&self, conn: &duckdb::Connection, src: &dyn TxStore) -> Result<Synced> {
        let target = src.feed_marks()?;
        let mut marks = self.marks();
        let mut done = Synced::default();
        let batch_rows = self.opts.load_batch.max(1);
        if target.clicks - marks.clicks <= batch_rows as i64 {
            while marks.clicks < target.clicks {
                let batch = src.feed_clicks(marks.clicks, target.clicks, batch_rows)?;
                let upto = batch.last().map_or(target.clicks, |c| c.rid);
                self.load_click_batch(conn, src, &batch, upto, &mut marks, &mut done)?;
            }
        } else {
            // A long backlog: the next batch is read from SQLite on a second
            // thread (same scheduling class: threads inherit it) while this
            // one appends the last, so the two halves of the cost overlap.
            std::thread::scope(|s| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Vec<FeedClick>, i64)>>(1);
                let (from, upto) = (marks.clicks, target.clicks);
                s.spawn(move || {
                    let mut after = from;
                    while after < upto {
                        let read = src.feed_clicks(after, upto, batch_rows).map(|b| {
                            let last = b.last().map_or(upto, |c| c.rid);
                            (b, last)
                        });
                        after = read.as_ref().map_or(upto, |(_, last)| *last);
                        if tx.send(read).is_err() {
                            break;
                        }
                    }
                });
                for read in rx {
                    let (batch, last) = read?;
                    self.load_click_batch(conn, src, &batch, last, &mut marks, &mut done)?;
                }
                Ok::<(), StoreError>(())
            })?;
        }
        if marks.conversions < target.conversions {
            let changed = src.feed_changed_conversions(marks.conversions, target.conversions)?;
            let next = FeedMarks { conversions: target.conversions, ..marks };
            self.load_conversions(conn, &changed, &next)?;
            marks = next;
            *self.marks.lock() = marks;
            done.conversions += changed.len() as u64;
        }
        if marks.cost_imports < target.cost_imports {
            for (id, from_ms, to_ms) in src.feed_cost_imports(marks.cost_imports, target.cost_imports)? {
                let costs = src.feed_click_costs(from_ms, to_ms)?;
                let next = FeedMarks { cost_imports: id, ..marks };
                self.load_costs(conn, &costs, &next)?;
                marks = next;
                *self.marks.lock() = marks;
                done.cost_imports += 1;
            }
        }
        // Read after loading: a leader on another node stores its horizon
        // before it deletes shared rows, so any row this load missed
        // because it was deleted is before the horizon adopted here, and
        // queries take that span from the store's rollups.
        self.adopt_horizon(src)?;
        Ok(done)
    }

    /// Loads one batch of click rows read from the feed up to row id `upto`.
    fn load_click_batch(
        &self,
        conn: &duckdb::Connection,
        src: &dyn TxStore,
        batch: &[FeedClick],
        upto: i64,
        marks: &mut FeedMarks,
        done: &mut Synced,
    ) -> Result<()> {
        let next = FeedMarks { clicks: upto, ..*marks };
        self.load_clicks(conn, src, batch, &next)?;
        *marks = next;
        *self.marks.lock() = next;
        done.clicks += batch.len() as u64;
        Ok(())
    }

    /// Codes for `values`, adding the new ones to the dictionary (and to the
    /// file, inside the caller's transaction).
    fn codes(&self, conn: &duckdb::Connection, values: &[&str]) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(values.len());
        let mut added: Vec<String> = Vec::new();
        {
            // Only the loader (holding the writer) assigns codes.
            let d = self.dict.read();
            let base = d.values.len() as u32;
            let mut local: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
            for v in values {
                let code = match d.code(v) {
                    Some(c) => c,
                    None => *local.entry(v).or_insert_with(|| {
                        added.push(v.to_string());
                        base + added.len() as u32 - 1
                    }),
                };
                out.push(code);
            }
        }
        if !added.is_empty() {
            let mut d = self.dict.write();
            let base = d.values.len() as u32;
            let mut app = conn.appender("dict").map_err(db_err)?;
            for (i, v) in added.into_iter().enumerate() {
                app.append_row(params![base + i as u32, v]).map_err(db_err)?;
                d.codes.insert(v.clone(), base + i as u32);
                d.values.push(v);
            }
            app.flush().map_err(db_err)?;
        }
        Ok(out)
    }

    /// After a failed load: the in-memory dictionary forgets the codes its
    /// rolled-back transaction had added.
    fn reload_dict(&self, conn: &duckdb::Connection) {
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM dict", [], |r| r.get(0)).unwrap_or(0);
        let mut d = self.dict.write();
        while d.values.len() as i64 > n {
            if let Some(v) = d.values.pop() {
                d.codes.remove(&v);
            }
        }
    }

    fn load_clicks(
        &self,
        conn: &duckdb::Connection,
        src: &dyn TxStore,
        batch: &[FeedClick],
        next: &FeedMarks,
    ) -> Result<()> {
        in_tx(conn, |conn| {
            if !batch.is_empty() {
                let mut texts: Vec<&str> = Vec::with_capacity(batch.len() * 7);
                for c in batch {
                    texts.extend([
                        c.country.as_str(),
                        &c.device,
                        &c.os,
                        &c.browser,
                        &c.language,
                        &c.quality,
                        &c.fallback_reason,
                    ]);
                }
                let codes = self.codes(conn, &texts)?;
                // Bots and previews to their own table (`APART`).
                let (apart, kept): (Vec<usize>, Vec<usize>) =
                    (0..batch.len()).partition(|&i| super::APART.contains(&codes[i * 7 + 5]));
                for (table, rows) in [("clicks", kept), ("bot_clicks", apart)] {
                    if rows.is_empty() {
                        continue;
                    }
                    let mut app = conn.appender(table).map_err(db_err)?;
                    app.append_record_batch(click_batch(batch, &codes, &rows)?).map_err(db_err)?;
                    app.flush().map_err(db_err)?;
                }
                // Conversions recorded before their click row had landed
                // (a postback can overtake the click loader) carry no
                // sub-ids yet: refetch those in this batch's time span. A
                // conversion knows its click's time to the second (from the
                // click id), so the span is widened to whole seconds.
                let (lo, hi) = batch.iter().fold((i64::MAX, i64::MIN), |(a, b), c| (a.min(c.ts_ms), b.max(c.ts_ms)));
                let (lo, hi) = (lo.div_euclid(1000) * 1000, hi.div_euclid(1000) * 1000 + 999);
                let orphans: Vec<i64> = {
                    let mut st = conn
                        .prepare("SELECT id FROM conversions WHERE click_rid IS NULL AND click_ts_ms BETWEEN ? AND ?")
                        .map_err(db_err)?;
                    let rows = st.query_map(params![lo, hi], |r| r.get(0)).map_err(db_err)?;
                    rows.collect::<duckdb::Result<_>>().map_err(db_err)?
                };
                if !orphans.is_empty() {
                    let found: Vec<FeedConversion> =
                        src.feed_conversions(&orphans)?.into_iter().filter(|c| c.click_rid.is_some()).collect();
                    self.upsert_conversions(conn, &found)?;
                }
            }
            write_marks(conn, next)
        })
    }

    fn load_conversions(&self, conn: &duckdb::Connection, rows: &[FeedConversion], next: &FeedMarks) -> Result<()> {
        in_tx(conn, |conn| {
            self.upsert_conversions(conn, rows)?;
            write_marks(conn, next)
        })
    }

    fn upsert_conversions(&self, conn: &duckdb::Connection, rows: &[FeedConversion]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        for chunk in rows.chunks(1000) {
            let ids: Vec<String> = chunk.iter().map(|c| c.id.to_string()).collect();
            conn.execute(&format!("DELETE FROM conversions WHERE id IN ({})", ids.join(",")), []).map_err(db_err)?;
        }
        let mut texts: Vec<&str> = Vec::with_capacity(rows.len() * 6);
        for c in rows {
            texts.extend([c.country.as_str(), &c.device, &c.os, &c.browser, &c.language, &c.quality]);
        }
        let codes = self.codes(conn, &texts)?;
        let mut app = conn.appender("conversions").map_err(db_err)?;
        for (c, k) in rows.iter().zip(codes.chunks_exact(6)) {
            let status =
                STATUSES.iter().position(|s| *s == c.status).ok_or_else(|| {
                    StoreError::Analytics(format!("conversion {}: unknown status {:?}", c.id, c.status))
                })? as u8;
            app.append_row(params![
                c.id,
                c.click_rid,
                c.click_ts_ms,
                c.smartlink,
                c.offer,
                c.affiliate,
                c.source,
                k[0],
                k[1],
                k[2],
                k[3],
                k[4],
                k[5],
                c.quality_reasons,
                c.subs[0],
                c.subs[1],
                c.subs[2],
                c.subs[3],
                c.subs[4],
                status,
                c.payout_micros,
                c.cost_micros,
                c.quality_flags,
                c.ctit_secs,
            ])
            .map_err(db_err)?;
        }
        app.flush().map_err(db_err)?;
        Ok(())
    }

    fn load_costs(&self, conn: &duckdb::Connection, costs: &[(i64, i64)], next: &FeedMarks) -> Result<()> {
        in_tx(conn, |conn| {
            conn.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS new_costs (rid BIGINT, cost BIGINT); DELETE FROM new_costs;",
            )
            .map_err(db_err)?;
            {
                let mut app = conn.appender("new_costs").map_err(db_err)?;
                for (rid, cost) in costs {
                    app.append_row(params![rid, cost]).map_err(db_err)?;
                }
                app.flush().map_err(db_err)?;
            }
            conn.execute_batch(
                "UPDATE clicks SET cost = n.cost FROM new_costs n WHERE clicks.rid = n.rid;
                 UPDATE bot_clicks SET cost = n.cost FROM new_costs n WHERE bot_clicks.rid = n.rid;
                 DELETE FROM new_costs;",
            )
            .map_err(db_err)?;
            write_marks(conn, next)
        })
    }

    /// Deletes raw rows older than the retention period, here first, then
    /// (with `shared_too`) the transactional store's click rows (their
    /// aggregates stay in its rollups). Off the hot path; returns the rows
    /// deleted here.
    ///
    /// With several nodes on one PostgreSQL store, every node compacts its
    /// own file and only the leader the shared rows. This store never
    /// depends on raw rows older than the horizon: every load ends by
    /// taking the horizon from the store's meta (which the leader writes
    /// before deleting), and everything before it is answered from the
    /// store's rollups, so shared rows deleted before a node loaded them
    /// cost it nothing.
    pub fn compact(&self, src: &dyn TxStore, now_ms: i64, shared_too: bool) -> Result<u64> {
        if self.opts.retention_days == 0 {
            return Ok(0);
        }
        // A horizon another node's compaction set counts here too.
        self.adopt_horizon(src)?;
        let horizon = (now_ms - self.opts.retention_days as i64 * DAY_MS).div_euclid(HOUR_MS) * HOUR_MS;
        let horizon = horizon.max(self.raw_from_ms().unwrap_or(i64::MIN));
        let n = {
            let conn = self.writer.lock();
            in_tx(&conn, |conn| {
                let n = conn.execute("DELETE FROM clicks WHERE ts_ms < ?", [horizon]).map_err(db_err)?
                    + conn.execute("DELETE FROM bot_clicks WHERE ts_ms < ?", [horizon]).map_err(db_err)?;
                conn.execute("DELETE FROM conversions WHERE click_ts_ms < ?", [horizon]).map_err(db_err)?;
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('raw_from_ms', ?)", [horizon]).map_err(db_err)?;
                Ok(n as u64)
            })?
        };
        self.raw_from_ms.store(horizon, Ordering::Release);
        if !shared_too {
            return Ok(n);
        }
        // The transactional store remembers the horizon too, for a columnar
        // file rebuilt later (it would otherwise take the missing old rows
        // for zero traffic) and for the other nodes, before its rows go.
        let stored = src.meta(RAW_FROM_META)?.and_then(|v| v.parse::<i64>().ok());
        if stored.is_none_or(|h| h < horizon) {
            src.set_meta(RAW_FROM_META, &horizon.to_string())?;
        }
        while src.delete_raw_clicks_before(horizon, 10_000)? > 0 {
            std::thread::yield_now();
        }
        Ok(n)
    }

    /// Takes the transactional store's raw horizon when it is later than
    /// this file's (a file rebuilt after retention had run).
    pub fn adopt_horizon(&self, src: &dyn TxStore) -> Result<()> {
        if let Some(h) = src.meta(RAW_FROM_META)?.and_then(|v| v.parse::<i64>().ok()) {
            self.raw_from_ms.fetch_max(h, Ordering::AcqRel);
        }
        Ok(())
    }
}

fn write_marks(conn: &duckdb::Connection, m: &FeedMarks) -> Result<()> {
    for (k, v) in [("clicks", m.clicks), ("conversions", m.conversions), ("cost_imports", m.cost_imports)] {
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", params![k, v]).map_err(db_err)?;
    }
    Ok(())
}

/// The rows `rows` of a batch as the click tables' columns, appended a
/// vector (2,048 rows) at a time; row by row, the appender binds each value
/// through its own call.
fn click_batch(batch: &[FeedClick], codes: &[u32], rows: &[usize]) -> Result<RecordBatch> {
    let code =
        |i: usize| -> ArrayRef { Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| codes[r * 7 + i]))) };
    let picked = || rows.iter().map(|r| &batch[*r]);
    let int = |f: fn(&FeedClick) -> i64| -> ArrayRef { Arc::new(Int64Array::from_iter_values(picked().map(f))) };
    let key = |f: fn(&FeedClick) -> u32| -> ArrayRef { Arc::new(UInt32Array::from_iter_values(picked().map(f))) };
    let text = |f: fn(&FeedClick) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(picked().map(f))) };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("rid", int(|c| c.rid)),
        ("ts_ms", int(|c| c.ts_ms)),
        ("smartlink", key(|c| c.smartlink)),
        ("offer", key(|c| c.offer)),
        ("affiliate", key(|c| c.affiliate)),
        ("source", key(|c| c.source)),
        ("country", code(0)),
        ("device", code(1)),
        ("os", code(2)),
        ("browser", code(3)),
        ("language", code(4)),
        ("quality", code(5)),
        ("fallback_reason", code(6)),
        ("reasons", text(|c| &c.quality_reasons)),
        ("sub1", text(|c| &c.subs[0])),
        ("sub2", text(|c| &c.subs[1])),
        ("sub3", text(|c| &c.subs[2])),
        ("sub4", text(|c| &c.subs[3])),
        ("sub5", text(|c| &c.subs[4])),
        ("propensity", Arc::new(Float64Array::from_iter_values(picked().map(|c| c.propensity)))),
        ("cost", int(|c| c.cost_micros)),
    ];
    RecordBatch::try_from_iter(columns).map_err(|e| StoreError::Analytics(format!("click batch: {e}")))
}

/// Runs `f` in one DuckDB transaction: all of it lands or none.
fn in_tx<T>(conn: &duckdb::Connection, f: impl FnOnce(&duckdb::Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN TRANSACTION").map_err(db_err)?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("COMMIT").map_err(db_err)?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
