//! The embedded SQLite implementation of [`Store`].
//!
//! WAL mode: readers never block the writers. Definitions, conversions and
//! the outbox are written with `synchronous = FULL`, so a committed
//! transaction survives a power cut, not only a process crash. Click batches
//! use their own connection with `synchronous = NORMAL`: a commit survives a
//! process crash, and a power cut may lose the last moments of click rows,
//! which is the documented budget (their click ids still attribute).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot_free::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{
    quality_class, AlertRow, AlertStore, Attempt, AttemptRow, AuditClickRow, Change, ClickQuery, ClickRow, ConvStatus,
    ConversionFilter, ConversionRow, ConversionStore, CostImport, CostImportRow, CostImported, Dim, DimValue, Entity,
    HistoryEntry, HistoryRow, Kind, Measures, OutboxItem, OutboxState, PostbackIn, QualityStore, Recorded, Result,
    RollupQuery, RollupStore, SourceCounts, SourceQuery, Store, StoreError,
};
use crate::{DigestAttempt, DigestRow, DigestStore};
use smartlink_core::conversion::Transition;

/// `std::sync::Mutex` wrapper that survives poisoning: a panic in one
/// request must not make the store unusable for every later one.
mod parking_lot_free {
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Mutex(std::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
        /// The guard if nobody holds the lock now.
        pub fn try_lock(&self) -> Option<std::sync::MutexGuard<'_, T>> {
            match self.0.try_lock() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entity_keys (
    kind TEXT NOT NULL, id TEXT NOT NULL, key INTEGER NOT NULL,
    PRIMARY KEY (kind, id), UNIQUE (kind, key));
CREATE TABLE IF NOT EXISTS entities (
    kind TEXT NOT NULL, id TEXT NOT NULL, spec TEXT NOT NULL, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS clicks (
    click_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, smartlink INTEGER NOT NULL,
    offer INTEGER, affiliate INTEGER,
    sub1 TEXT NOT NULL, sub2 TEXT NOT NULL, sub3 TEXT NOT NULL, sub4 TEXT NOT NULL, sub5 TEXT NOT NULL,
    ip TEXT NOT NULL, country TEXT NOT NULL, device TEXT NOT NULL, os TEXT NOT NULL,
    browser TEXT NOT NULL, language TEXT NOT NULL, referrer TEXT NOT NULL, user_agent TEXT NOT NULL,
    reason TEXT NOT NULL, fallback_reason TEXT, propensity REAL NOT NULL,
    quality TEXT NOT NULL DEFAULT 'human', quality_score INTEGER NOT NULL DEFAULT 0,
    quality_reasons TEXT NOT NULL DEFAULT '', cost REAL NOT NULL DEFAULT 0, source INTEGER);
-- Clicks are keyed by (second, click id): the click id carries its second,
-- so lookups stay exact, and a batch of new clicks lands at the right edge
-- of the index instead of dirtying one random page per row.
CREATE UNIQUE INDEX IF NOT EXISTS clicks_key ON clicks (ts_ms / 1000, click_id);
-- The click log of one affiliate (an affiliate key always filters by it),
-- newest first, without walking every other affiliate's clicks. Kept small
-- (no click id): it costs the click loader about 1 µs a row, a key with
-- the click id about twice that.
CREATE INDEX IF NOT EXISTS clicks_affiliate ON clicks (affiliate, ts_ms);
CREATE TABLE IF NOT EXISTS conversions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, click_id TEXT NOT NULL, event TEXT NOT NULL, txid TEXT NOT NULL,
    status TEXT NOT NULL, payout REAL NOT NULL, currency TEXT NOT NULL, payout_base REAL NOT NULL,
    smartlink INTEGER NOT NULL, offer INTEGER NOT NULL, affiliate INTEGER,
    country TEXT NOT NULL, device TEXT NOT NULL, os TEXT NOT NULL, browser TEXT NOT NULL, language TEXT NOT NULL,
    click_ts_ms INTEGER NOT NULL, ts_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, approved_ms INTEGER,
    over_cap INTEGER NOT NULL, ctit_secs INTEGER NOT NULL,
    quality TEXT NOT NULL DEFAULT 'human', quality_flags TEXT NOT NULL DEFAULT '',
    cost REAL NOT NULL DEFAULT 0,
    UNIQUE (click_id, event, txid));
CREATE INDEX IF NOT EXISTS conversions_ts ON conversions (ts_ms);
CREATE INDEX IF NOT EXISTS conversions_approved ON conversions (approved_ms);
-- Reports read the conversions of a window's partial edge hours by click time.
CREATE INDEX IF NOT EXISTS conversions_click_ts ON conversions (click_ts_ms);
CREATE TABLE IF NOT EXISTS conversion_history (
    conversion_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, from_status TEXT, to_status TEXT NOT NULL,
    source TEXT NOT NULL, reason TEXT);
CREATE INDEX IF NOT EXISTS conversion_history_id ON conversion_history (conversion_id);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, conversion_id INTEGER NOT NULL, status TEXT NOT NULL,
    target TEXT NOT NULL, url TEXT NOT NULL, payout_share REAL NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_at_ms INTEGER NOT NULL, last_http_status INTEGER, last_error TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (conversion_id, status, target));
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at_ms);
CREATE TABLE IF NOT EXISTS rollup_hour (
    hour_ms INTEGER NOT NULL, smartlink INTEGER NOT NULL, offer INTEGER NOT NULL, affiliate INTEGER NOT NULL,
    country TEXT NOT NULL, device TEXT NOT NULL, os TEXT NOT NULL, browser TEXT NOT NULL, language TEXT NOT NULL,
    quality TEXT NOT NULL DEFAULT 'human',
    clicks INTEGER NOT NULL DEFAULT 0, fallback_clicks INTEGER NOT NULL DEFAULT 0,
    approved INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
    chargebacks INTEGER NOT NULL DEFAULT 0, revenue REAL NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (hour_ms, smartlink, offer, affiliate, country, device, os, browser, language, quality))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entity_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, entity TEXT NOT NULL,
    action TEXT NOT NULL, old_spec TEXT, new_spec TEXT, actor TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entity_history_entity ON entity_history (kind, entity, id);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, smartlink TEXT NOT NULL,
    offer TEXT, segment TEXT, message TEXT NOT NULL, dedup TEXT NOT NULL UNIQUE);
-- Scheduled digests (added after the first release: created on open like
-- every table here, so an older store gains it empty).
CREATE TABLE IF NOT EXISTS digests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, smartlink TEXT NOT NULL, period_start_ms INTEGER NOT NULL,
    period_end_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL, body TEXT NOT NULL,
    delivery TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL,
    last_http_status INTEGER, last_error TEXT, delivered_ms INTEGER,
    UNIQUE (smartlink, period_start_ms));
CREATE INDEX IF NOT EXISTS digests_due ON digests (delivery, next_at_ms);
CREATE TABLE IF NOT EXISTS outbox_attempts (
    outbox_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, url TEXT NOT NULL, http_status INTEGER,
    latency_ms INTEGER NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS outbox_attempts_id ON outbox_attempts (outbox_id);
CREATE TABLE IF NOT EXISTS cost_imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, actor TEXT NOT NULL,
    from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL, description TEXT NOT NULL,
    amount REAL NOT NULL, clicks INTEGER NOT NULL);
";

/// The measure columns every rollup table has.
const MEASURE_COLUMNS: &str = "clicks INTEGER NOT NULL DEFAULT 0, fallback_clicks INTEGER NOT NULL DEFAULT 0,
    approved INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
    chargebacks INTEGER NOT NULL DEFAULT 0, revenue REAL NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0";

/// Adds a row's measures to the existing cell (every rollup upsert ends so).
macro_rules! add_measures {
    () => {
        " ON CONFLICT DO UPDATE SET clicks = clicks + excluded.clicks,
           fallback_clicks = fallback_clicks + excluded.fallback_clicks, approved = approved + excluded.approved,
           pending = pending + excluded.pending, rejected = rejected + excluded.rejected,
           chargebacks = chargebacks + excluded.chargebacks, revenue = revenue + excluded.revenue,
           cost = cost + excluded.cost"
    };
}

/// How both stores answer a rollup exactly on any window: whole hours from
/// the rollups (`whole_hours`), the partial hours at either edge from the
/// raw rows (`from_rows`, at most an hour of clicks each), merged by key.
pub(crate) fn rollup_in_parts(
    q: &RollupQuery,
    mut whole_hours: impl FnMut(&RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>>,
    mut from_rows: impl FnMut(&RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>>,
) -> Result<Vec<(Vec<DimValue>, Measures)>> {
    q.check()?;
    if q.has_local_time() {
        return q.via_hours(|q| rollup_in_parts(q, whole_hours, from_rows));
    }
    let (h1, h2) = ((q.from_ms + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS, q.to_ms.div_euclid(HOUR_MS) * HOUR_MS);
    if q.needs_raw_rows() || h1 >= h2 {
        return from_rows(q);
    }
    let edges = [(q.from_ms, h1), (h2, q.to_ms)];
    let mut parts = vec![whole_hours(&RollupQuery { from_ms: h1, to_ms: h2, ..q.clone() })?];
    for (from_ms, to_ms) in edges.into_iter().filter(|(a, b)| a < b) {
        parts.push(from_rows(&RollupQuery { from_ms, to_ms, ..q.clone() })?);
    }
    Ok(crate::merge_rows(parts.into_iter().flatten(), !q.group.is_empty()))
}

/// The rollup tables that answer `q`'s whole hours, each with the window it
/// reads: the smallest coarse level that has every dimension asked for (its
/// daily table for whole days, its hourly one for the partial days), else
/// the full hourly rollup.
pub(crate) fn rollup_tables(q: &RollupQuery) -> Vec<(String, i64, i64)> {
    // The smallest daily level that has every dimension asked for
    // answers the whole days; the hourly rollup the partial days.
    let needed: Vec<Dim> =
        q.group.iter().copied().chain(q.filters.iter().filter(|(_, v)| !v.is_empty()).map(|(d, _)| *d)).collect();
    let level = LEVELS
        .iter()
        .find(|(_, dims)| needed.iter().all(|d| matches!(d, Dim::Day | Dim::Hour) || dims.contains(d)))
        .map(|(name, _)| *name);
    let (d1, d2) = ((q.from_ms + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS, q.to_ms.div_euclid(DAY_MS) * DAY_MS);
    match level {
        Some(l) if needed.contains(&Dim::Hour) => vec![(coarse_table(l, false).0, q.from_ms, q.to_ms)],
        Some(l) if d1 < d2 => [
            (coarse_table(l, false).0, q.from_ms, d1),
            (coarse_table(l, true).0, d1, d2),
            (coarse_table(l, false).0, d2, q.to_ms),
        ]
        .into_iter()
        .filter(|(_, a, b)| a < b)
        .collect(),
        Some(l) => vec![(coarse_table(l, false).0, q.from_ms, q.to_ms)],
        None => vec![("rollup_hour".to_string(), q.from_ms, q.to_ms)],
    }
}

/// The table name and time column of a coarse rollup level, hourly or daily.
pub(crate) fn coarse_table(name: &str, day: bool) -> (String, &'static str) {
    (format!("rollup_{}_{name}", if day { "day" } else { "hour" }), if day { "day_ms" } else { "hour_ms" })
}

/// The whole schema: [`SCHEMA`] plus the coarse rollups generated from
/// [`LEVELS`].
fn schema() -> String {
    let mut out = SCHEMA.to_string();
    for (name, dims) in LEVELS {
        for day in [false, true] {
            let (table, time) = coarse_table(name, day);
            let cols: Vec<String> = dims
                .iter()
                .map(|d| {
                    let ty = if matches!(d, Dim::Smartlink | Dim::Offer | Dim::Affiliate) { "INTEGER" } else { "TEXT" };
                    format!("{} {ty} NOT NULL", d.column())
                })
                .collect();
            let key = dims.iter().map(|d| d.column()).collect::<Vec<_>>().join(", ");
            out.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {table} ({time} INTEGER NOT NULL, {}, {MEASURE_COLUMNS},
                 PRIMARY KEY ({time}, {key})) WITHOUT ROWID;\n",
                cols.join(", ")
            ));
        }
    }
    out
}

/// `v` as an SQL parameter.
fn dim_param(v: &DimValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        DimValue::Key(k) => Value::Integer(*k as i64),
        DimValue::Text(t) => Value::Text(t.clone()),
        DimValue::Hour(h) => Value::Integer(*h),
    }
}

/// Appends ` AND expr IN (?, ...)` for each non-empty filter.
fn push_filters(
    sql: &mut String,
    args: &mut Vec<rusqlite::types::Value>,
    filters: &[(Dim, Vec<DimValue>)],
    expr: impl Fn(Dim) -> String,
) {
    for (d, values) in filters.iter().filter(|(_, v)| !v.is_empty()) {
        let marks = vec!["?"; values.len()].join(", ");
        sql.push_str(&format!(" AND {} IN ({marks})", expr(*d)));
        args.extend(values.iter().map(dim_param));
    }
}

/// The group key of a result row whose first columns are `group`.
fn row_key(r: &rusqlite::Row<'_>, group: &[Dim]) -> rusqlite::Result<Vec<DimValue>> {
    group
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Ok(match d {
                Dim::Smartlink | Dim::Offer | Dim::Affiliate | Dim::Source => DimValue::Key(r.get(i)?),
                Dim::Hour | Dim::Day => DimValue::Hour(r.get(i)?),
                _ => DimValue::Text(r.get(i)?),
            })
        })
        .collect()
}

const CONVERSION_COLS: &str = "c.id, c.click_id, c.event, c.txid, c.status, c.payout, c.currency, c.payout_base,
    c.smartlink, c.offer, c.affiliate, c.country, c.device, c.os, c.click_ts_ms, c.ts_ms, c.updated_ms,
    c.over_cap, c.ctit_secs, k.sub1, k.sub2, k.sub3, k.sub4, k.sub5, c.browser, c.language, c.quality, c.quality_flags,
    c.cost";

fn status_of(s: &str) -> rusqlite::Result<ConvStatus> {
    ConvStatus::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("bad status {s:?}").into())
    })
}

fn row_to_conversion(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversionRow> {
    let sub1: Option<String> = r.get(19)?;
    let subs = match sub1 {
        Some(s1) => Some([s1, r.get(20)?, r.get(21)?, r.get(22)?, r.get(23)?]),
        None => None,
    };
    Ok(ConversionRow {
        id: r.get(0)?,
        click_id: r.get(1)?,
        event: r.get(2)?,
        txid: r.get(3)?,
        status: status_of(&r.get::<_, String>(4)?)?,
        payout: r.get(5)?,
        currency: r.get(6)?,
        payout_base: r.get(7)?,
        smartlink: r.get(8)?,
        offer: r.get(9)?,
        affiliate: r.get(10)?,
        country: r.get(11)?,
        device: r.get(12)?,
        os: r.get(13)?,
        click_ts_ms: r.get(14)?,
        ts_ms: r.get(15)?,
        updated_ms: r.get(16)?,
        over_cap: r.get::<_, i64>(17)? != 0,
        ctit_secs: r.get(18)?,
        subs,
        browser: r.get(24)?,
        language: r.get(25)?,
        quality: r.get(26)?,
        quality_flags: r.get(27)?,
        cost: r.get(28)?,
    })
}

fn row_to_outbox(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    Ok(OutboxItem {
        conversion: row_to_conversion(r)?,
        id: r.get(29)?,
        status: status_of(&r.get::<_, String>(30)?)?,
        target: r.get(31)?,
        url: r.get(32)?,
        payout_share: r.get(33)?,
        state: OutboxState::parse(&r.get::<_, String>(34)?).unwrap_or(OutboxState::Failed),
        attempts: r.get(35)?,
        next_at_ms: r.get(36)?,
        last_http_status: r.get(37)?,
        last_error: r.get(38)?,
        total_attempts: r.get(39)?,
    })
}

const OUTBOX_SELECT: &str = "SELECT c.id, c.click_id, c.event, c.txid, c.status, c.payout, c.currency, c.payout_base,
    c.smartlink, c.offer, c.affiliate, c.country, c.device, c.os, c.click_ts_ms, c.ts_ms, c.updated_ms,
    c.over_cap, c.ctit_secs, k.sub1, k.sub2, k.sub3, k.sub4, k.sub5, c.browser, c.language, c.quality, c.quality_flags,
    c.cost, o.id, o.status, o.target, o.url, o.payout_share, o.state, o.attempts, o.next_at_ms, o.last_http_status, o.last_error,
    (SELECT COUNT(*) FROM outbox_attempts a WHERE a.outbox_id = o.id)
    FROM outbox o JOIN conversions c ON c.id = o.conversion_id LEFT JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id";

pub struct SqliteStore {
    path: PathBuf,
    write: Mutex<Connection>,
    pub(crate) clicks: Mutex<Connection>,
    pub(crate) read: ReadPool,
}

/// Read connections: with WAL, readers neither wait for each other nor for
/// the writers, so reports, the API and the analyses run side by side
/// instead of queueing behind one connection. Each query runs within the
/// store's time limit ([`SqliteStore::set_query_timeout`]): past it, SQLite
/// interrupts it and the caller gets [`StoreError::Timeout`].
pub(crate) struct ReadPool {
    readers: Vec<Reader>,
    next: std::sync::atomic::AtomicUsize,
    /// The time limit, ms (0: none).
    limit_ms: Arc<std::sync::atomic::AtomicU64>,
    epoch: std::time::Instant,
}

pub(crate) struct Reader {
    conn: Mutex<Connection>,
    /// When the query in progress must stop, ms after `epoch` (0: never).
    deadline_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// Read connections in the pool.
const READERS: usize = 4;

/// SQLite virtual-machine steps between two looks at the deadline.
const PROGRESS_STEPS: i32 = 20_000;

impl ReadPool {
    fn open(path: &Path) -> Result<ReadPool> {
        let epoch = std::time::Instant::now();
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = open(path)?;
            let deadline_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let d = deadline_ms.clone();
            conn.progress_handler(
                PROGRESS_STEPS,
                Some(move || {
                    let at = d.load(std::sync::atomic::Ordering::Relaxed);
                    at != 0 && epoch.elapsed().as_millis() as u64 >= at
                }),
            );
            readers.push(Reader { conn: Mutex::new(conn), deadline_ms });
        }
        Ok(ReadPool {
            readers,
            next: Default::default(),
            limit_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            epoch,
        })
    }

    /// A free reader, or (all busy) the next one in turn, with the time
    /// limit running from now.
    pub(crate) fn lock(&self) -> ReadGuard<'_> {
        let reader = self.readers.iter().find_map(|r| r.conn.try_lock().map(|g| (r, g))).unwrap_or_else(|| {
            let r = &self.readers[self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len()];
            (r, r.conn.lock())
        });
        let limit = self.limit_ms.load(std::sync::atomic::Ordering::Relaxed);
        let at = if limit == 0 { 0 } else { (self.epoch.elapsed().as_millis() as u64 + limit).max(1) };
        reader.0.deadline_ms.store(at, std::sync::atomic::Ordering::Relaxed);
        ReadGuard { conn: reader.1, deadline_ms: &reader.0.deadline_ms }
    }
}

/// A read connection in use; its deadline is cleared when it is returned.
pub(crate) struct ReadGuard<'a> {
    conn: std::sync::MutexGuard<'a, Connection>,
    deadline_ms: &'a std::sync::atomic::AtomicU64,
}

impl std::ops::Deref for ReadGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.deadline_ms.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

/// Every write transaction starts `IMMEDIATE`: a deferred one that reads
/// first and writes later fails at once with `SQLITE_BUSY` (no busy wait)
/// when another connection — the click writer — committed in between.
fn open(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoint every ~32 MB of WAL instead of 4 MB: pages that every click
    // batch touches (the index's right edge, rollup cells) are copied back
    // to the database once per checkpoint, not once per 4 MB.
    c.pragma_update(None, "wal_autocheckpoint", 8_192)?;
    Ok(c)
}

/// Stores created before the (second, click id) key kept clicks under a text
/// primary key, which made every insert dirty a random index page. Rebuilds
/// such a table in place, once.
fn migrate_clicks_key(c: &mut Connection) -> Result<()> {
    let sql: Option<String> = c
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'clicks'", [], |r| r.get(0))
        .optional()?;
    if !sql.is_some_and(|s| s.contains("click_id TEXT PRIMARY KEY")) {
        return Ok(());
    }
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "DROP INDEX IF EXISTS clicks_ts;
         ALTER TABLE clicks RENAME TO clicks_v1;",
    )?;
    tx.execute_batch(&schema())?;
    tx.execute_batch(&format!(
        "INSERT OR IGNORE INTO clicks ({V1}) SELECT {V1} FROM clicks_v1 ORDER BY ts_ms;
         DROP TABLE clicks_v1;",
        V1 = CLICK_COLS_V1
    ))?;
    tx.commit()?;
    Ok(())
}

const CLICK_COLS_V1: &str = "click_id, ts_ms, smartlink, offer, affiliate, sub1, sub2, sub3, sub4, sub5, ip, country,
    device, os, browser, language, referrer, user_agent, reason, fallback_reason, propensity";

fn has_column(c: &Connection, table: &str, column: &str) -> Result<bool> {
    let mut st = c.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st.query_map([], |r| r.get::<_, String>(1))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names.iter().any(|n| n == column))
}

/// Adds the quality columns to stores created before traffic quality: old
/// clicks and conversions read as `human`, and the rollup (whose key gains
/// the quality class) is rebuilt with its rows under `human`.
fn migrate_quality(c: &mut Connection) -> Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let exists = |t: &str| -> Result<bool> {
        Ok(tx.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [t], |r| {
            r.get::<_, i64>(0)
        })? > 0)
    };
    if exists("clicks")? && !has_column(&tx, "clicks", "quality")? {
        tx.execute_batch(
            "ALTER TABLE clicks ADD COLUMN quality TEXT NOT NULL DEFAULT 'human';
             ALTER TABLE clicks ADD COLUMN quality_score INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE clicks ADD COLUMN quality_reasons TEXT NOT NULL DEFAULT '';",
        )?;
    }
    if exists("conversions")? && !has_column(&tx, "conversions", "quality")? {
        tx.execute_batch(
            "ALTER TABLE conversions ADD COLUMN quality TEXT NOT NULL DEFAULT 'human';
             ALTER TABLE conversions ADD COLUMN quality_flags TEXT NOT NULL DEFAULT '';",
        )?;
    }
    if exists("rollup_hour")? && !has_column(&tx, "rollup_hour", "quality")? {
        tx.execute_batch("ALTER TABLE rollup_hour RENAME TO rollup_hour_v1;")?;
        tx.execute_batch(&schema())?;
        tx.execute_batch(
            "INSERT INTO rollup_hour (hour_ms, smartlink, offer, affiliate, country, device, os, browser, language,
               clicks, fallback_clicks, approved, pending, rejected, chargebacks, revenue)
             SELECT hour_ms, smartlink, offer, affiliate, country, device, os, browser, language,
               clicks, fallback_clicks, approved, pending, rejected, chargebacks, revenue FROM rollup_hour_v1;
             DROP TABLE rollup_hour_v1;",
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Adds the cost columns (and the click's traffic source) to stores created
/// before costs: their clicks and conversions cost nothing.
fn migrate_costs(c: &mut Connection) -> Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut adds = Vec::new();
    if !has_column(&tx, "clicks", "cost")? {
        adds.push("ALTER TABLE clicks ADD COLUMN cost REAL NOT NULL DEFAULT 0".to_string());
        adds.push("ALTER TABLE clicks ADD COLUMN source INTEGER".to_string());
    }
    if !has_column(&tx, "conversions", "cost")? {
        adds.push("ALTER TABLE conversions ADD COLUMN cost REAL NOT NULL DEFAULT 0".to_string());
    }
    let coarse = LEVELS.iter().flat_map(|(name, _)| [coarse_table(name, false).0, coarse_table(name, true).0]);
    for table in std::iter::once("rollup_hour".to_string()).chain(coarse) {
        if !has_column(&tx, &table, "cost")? {
            adds.push(format!("ALTER TABLE {table} ADD COLUMN cost REAL NOT NULL DEFAULT 0"));
        }
    }
    for sql in adds {
        tx.execute_batch(&sql)?;
    }
    tx.commit()?;
    Ok(())
}

/// Adds the `reason` column to the status history of stores created before
/// manual status changes carried one (their rows read as no reason).
fn migrate_history_reason(c: &mut Connection) -> Result<()> {
    let exists: i64 = c.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'conversion_history'",
        [],
        |r| r.get(0),
    )?;
    if exists > 0 && !has_column(c, "conversion_history", "reason")? {
        c.execute_batch("ALTER TABLE conversion_history ADD COLUMN reason TEXT;")?;
    }
    Ok(())
}

/// `{"event": "..."}` without a JSON dependency in the store.
pub(crate) fn event_json(event: &str) -> String {
    let escaped: String = event
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect();
    format!("{{\"event\":\"{escaped}\"}}")
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn kind_of(s: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == s)
}

/// Creates `dir` (and its parents) if missing, and makes it owner-only.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        b.mode(0o700).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    b.create(dir)
}

/// Creates `path` empty if missing, and makes it owner-read-write only.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600).open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    o.open(path).map(|_| ())
}

impl SqliteStore {
    /// Opens (creating if needed) `smartlink.db` in `data_dir`.
    /// Opens (or creates) `smartlink.db` in `data_dir`. The directory is
    /// made private to the owner (0700) and the database with its WAL and
    /// shared-memory files owner-only (0600): they hold advertiser tokens
    /// and postback secrets. SQLite creates the WAL and shared-memory files
    /// with the database file's permissions; existing files from earlier
    /// versions are tightened too.
    pub fn open_dir(data_dir: &Path) -> Result<SqliteStore> {
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| StoreError::Io { path, source }
        };
        private_dir(data_dir).map_err(io(data_dir))?;
        let db = data_dir.join("smartlink.db");
        private_file(&db).map_err(io(&db))?;
        for suffix in ["-wal", "-shm"] {
            let p = data_dir.join(format!("smartlink.db{suffix}"));
            if p.exists() {
                private_file(&p).map_err(io(&p))?;
            }
        }
        SqliteStore::open(&db)
    }

    pub fn open(path: &Path) -> Result<SqliteStore> {
        let mut write = open(path)?;
        // Which coarse rollups this store lacks (checked before any migration
        // creates them empty).
        let missing: Vec<(String, &str, &[Dim])> = LEVELS
            .iter()
            .flat_map(|(name, dims)| {
                [false, true].map(|day| {
                    let (table, time) = coarse_table(name, day);
                    (table, time, *dims)
                })
            })
            .filter(|(t, _, _)| {
                write
                    .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [t], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map(|n| n == 0)
                    .unwrap_or(true)
            })
            .collect();
        migrate_quality(&mut write)?;
        migrate_clicks_key(&mut write)?;
        migrate_history_reason(&mut write)?;
        write.execute_batch(&schema())?;
        migrate_costs(&mut write)?;
        // Stores from before the coarse rollups: derive them from the hourly one.
        for (table, time, dims) in missing {
            let cols = dims.iter().map(|d| d.column()).collect::<Vec<_>>().join(", ");
            let unit = if time == "day_ms" { DAY_MS } else { HOUR_MS };
            write.execute_batch(&format!(
                "INSERT INTO {table} ({time}, {cols}, clicks, fallback_clicks, approved, pending, rejected, chargebacks,
                   revenue, cost)
                 SELECT (hour_ms / {unit}) * {unit}, {cols}, SUM(clicks), SUM(fallback_clicks), SUM(approved),
                   SUM(pending), SUM(rejected), SUM(chargebacks), SUM(revenue), SUM(cost)
                 FROM rollup_hour GROUP BY 1, {cols}"
            ))?;
        }
        let read = ReadPool::open(path)?;
        let clicks = open(path)?;
        clicks.pragma_update(None, "synchronous", "NORMAL")?;
        clicks.pragma_update(None, "cache_size", -32_000)?;
        Ok(SqliteStore { path: path.to_path_buf(), write: Mutex::new(write), clicks: Mutex::new(clicks), read })
    }

    /// How long one read query may run before it is interrupted with
    /// [`StoreError::Timeout`] (`None`, the default: no limit; the server
    /// sets `server.query_timeout_secs`).
    pub fn set_query_timeout(&self, limit: Option<std::time::Duration>) {
        let ms = limit.map_or(0, |d| (d.as_millis() as u64).max(1));
        self.read.limit_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn row_to_click(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClickRow> {
    Ok(ClickRow {
        click_id: r.get(0)?,
        ts_ms: r.get(1)?,
        smartlink: r.get(2)?,
        offer: r.get(3)?,
        affiliate: r.get(4)?,
        subs: [r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
        ip: r.get(10)?,
        country: r.get(11)?,
        device: r.get(12)?,
        os: r.get(13)?,
        browser: r.get(14)?,
        language: r.get(15)?,
        referrer: r.get(16)?,
        user_agent: r.get(17)?,
        reason: r.get(18)?,
        fallback_reason: r.get(19)?,
        propensity: r.get(20)?,
        quality: r.get(21)?,
        quality_score: r.get(22)?,
        quality_reasons: r.get(23)?,
        cost: r.get(24)?,
        source: r.get(25)?,
    })
}

impl Store for SqliteStore {
    fn entities(&self) -> Result<Vec<Entity>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT e.kind, e.id, k.key, e.spec FROM entities e
             JOIN entity_keys k ON k.kind = e.kind AND k.id = e.id ORDER BY e.kind, k.key",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?, r.get::<_, String>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, id, key, spec) = row?;
            if let Some(kind) = kind_of(&kind) {
                out.push(Entity { kind, id, key, spec });
            }
        }
        out.sort_by_key(|e| (e.kind, e.key));
        Ok(out)
    }

    fn keys(&self) -> Result<Vec<(Kind, String, u32)>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached("SELECT kind, id, key FROM entity_keys ORDER BY kind, key")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, id, key) = row?;
            if let Some(kind) = kind_of(&kind) {
                if kind == Kind::Offer {
                    let link = smartlink_core::model::direct_link_key(key);
                    out.push((Kind::Smartlink, crate::direct_link_name(&id), link));
                }
                out.push((kind, id, key));
            }
        }
        Ok(out)
    }

    fn apply(&self, changes: &[Change], actor: &str) -> Result<()> {
        let mut c = self.write.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_ms();
        for ch in changes {
            let (kind, id) = match ch {
                Change::Put { kind, id, .. } | Change::Delete { kind, id } => (kind, id),
            };
            let old: Option<String> = tx
                .query_row("SELECT spec FROM entities WHERE kind = ?1 AND id = ?2", params![kind.as_str(), id], |r| {
                    r.get(0)
                })
                .optional()?;
            let (action, new) = match ch {
                Change::Put { spec, .. } => (if old.is_some() { "update" } else { "create" }, Some(spec.as_str())),
                Change::Delete { .. } => ("delete", None),
            };
            if old.as_deref() != new {
                tx.execute(
                    "INSERT INTO entity_history (ts_ms, kind, entity, action, old_spec, new_spec, actor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![now, kind.as_str(), id, action, old, new, actor],
                )?;
            }
            match ch {
                Change::Put { kind, id, spec } => {
                    let known: Option<u32> = tx
                        .query_row(
                            "SELECT key FROM entity_keys WHERE kind = ?1 AND id = ?2",
                            params![kind.as_str(), id],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if known.is_none() {
                        let next: u32 = tx.query_row(
                            "SELECT COALESCE(MAX(key), 0) + 1 FROM entity_keys WHERE kind = ?1",
                            params![kind.as_str()],
                            |r| r.get(0),
                        )?;
                        // Click ids carry keys in 24 bits; a link key uses the
                        // top one to tell a direct link (an offer's) from a
                        // smartlink, so offers and smartlinks get 23.
                        let bits = if matches!(kind, Kind::Offer | Kind::Smartlink) { 23 } else { 24 };
                        if next >= 1 << bits {
                            return Err(StoreError::KeysExhausted(kind.as_str()));
                        }
                        tx.execute(
                            "INSERT INTO entity_keys (kind, id, key) VALUES (?1, ?2, ?3)",
                            params![kind.as_str(), id, next],
                        )?;
                    }
                    tx.execute(
                        "INSERT INTO entities (kind, id, spec, updated_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (kind, id) DO UPDATE SET spec = excluded.spec, updated_ms = excluded.updated_ms",
                        params![kind.as_str(), id, spec, now],
                    )?;
                }
                Change::Delete { kind, id } => {
                    tx.execute("DELETE FROM entities WHERE kind = ?1 AND id = ?2", params![kind.as_str(), id])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn record_event(&self, kind: Kind, id: &str, event: &str, ts_ms: i64) -> Result<()> {
        let c = self.write.lock();
        c.execute(
            "INSERT INTO entity_history (ts_ms, kind, entity, action, old_spec, new_spec, actor)
             VALUES (?1, ?2, ?3, 'event', NULL, ?4, 'system')",
            params![ts_ms, kind.as_str(), id, event_json(event)],
        )?;
        Ok(())
    }

    fn history(&self, kind: Option<Kind>, id: Option<&str>, limit: usize) -> Result<Vec<HistoryRow>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT id, ts_ms, kind, entity, action, old_spec, new_spec, actor FROM entity_history
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR entity = ?2) ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![kind.map(|k| k.as_str()), id, limit as i64], |r| {
            let kind: String = r.get(2)?;
            Ok(HistoryRow {
                id: r.get(0)?,
                ts_ms: r.get(1)?,
                kind: kind_of(&kind).unwrap_or(Kind::Offer),
                entity: r.get(3)?,
                action: r.get(4)?,
                old_spec: r.get(5)?,
                new_spec: r.get(6)?,
                actor: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let c = self.read.lock();
        Ok(c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let c = self.write.lock();
        c.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn insert_clicks(&self, batch: &[ClickRow]) -> Result<()> {
        let mut c = self.clicks.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO clicks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                 ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
            )?;
            let mut cells: std::collections::HashMap<CellKey, Measures> = std::collections::HashMap::new();
            for k in batch {
                let inserted = st.execute(params![
                    k.click_id,
                    k.ts_ms,
                    k.smartlink,
                    k.offer,
                    k.affiliate,
                    k.subs[0],
                    k.subs[1],
                    k.subs[2],
                    k.subs[3],
                    k.subs[4],
                    k.ip,
                    k.country,
                    k.device,
                    k.os,
                    k.browser,
                    k.language,
                    k.referrer,
                    k.user_agent,
                    k.reason,
                    k.fallback_reason,
                    k.propensity,
                    quality_class(&k.quality),
                    k.quality_score,
                    k.quality_reasons,
                    k.cost,
                    k.source,
                ])?;
                // A replayed row (already stored) must not count twice.
                if inserted == 1 {
                    let key = (
                        k.ts_ms.div_euclid(HOUR_MS) * HOUR_MS,
                        k.smartlink,
                        k.offer.unwrap_or(0),
                        k.affiliate.unwrap_or(0),
                        k.country.clone(),
                        k.device.clone(),
                        k.os.clone(),
                        k.browser.clone(),
                        k.language.clone(),
                        quality_class(&k.quality).to_string(),
                    );
                    let m = cells.entry(key).or_default();
                    m.clicks += 1;
                    m.fallback_clicks += k.offer.is_none() as u64;
                    m.cost += k.cost;
                }
            }
            drop(st);
            for (key, m) in &cells {
                add_to_hour_rollup(&tx, key, m, 1)?;
            }
            add_to_coarse_rollups(&tx, cells.iter().map(|(k, m)| (k, *m, 1)))?;
        }
        tx.commit()?;
        Ok(())
    }

    fn click_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64)>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT offer, COUNT(*) FROM clicks WHERE ts_ms / 1000 BETWEEN ?1 / 1000 AND ?2 / 1000
             AND ts_ms >= ?1 AND ts_ms < ?2 AND offer IS NOT NULL GROUP BY offer",
        )?;
        let rows = st.query_map(params![from_ms, to_ms], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u64>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn count_clicks(&self) -> Result<u64> {
        let c = self.read.lock();
        Ok(c.query_row("SELECT COUNT(*) FROM clicks", [], |r| r.get(0))?)
    }

    fn import_costs(&self, imp: &CostImport) -> Result<CostImported> {
        use rusqlite::types::Value;
        if !(imp.amount.is_finite() && imp.amount >= 0.0 && imp.amount < 1e12) {
            return Err(StoreError::Invalid(format!("amount: expected 0 or more, got {}", imp.amount)));
        }
        if imp.to_ms <= imp.from_ms {
            return Err(StoreError::Invalid("the period is empty: `to` must be after `from`".into()));
        }
        let mut c = self.clicks.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut sql = String::from(
            "SELECT rowid, ts_ms, smartlink, COALESCE(offer, 0), COALESCE(affiliate, 0), country, device, os,
             browser, language, quality, cost FROM clicks k
             WHERE ts_ms / 1000 BETWEEN ?1 / 1000 AND ?2 / 1000 AND ts_ms >= ?1 AND ts_ms < ?2",
        );
        let mut args: Vec<Value> = vec![Value::Integer(imp.from_ms), Value::Integer(imp.to_ms)];
        push_filters(&mut sql, &mut args, &imp.filters, |d| raw_dim(d, "k"));
        sql.push_str(" ORDER BY ts_ms / 1000, click_id");
        let covered: Vec<(i64, CellKey, f64)> = {
            let mut st = tx.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
                let ts: i64 = r.get(1)?;
                let key: CellKey = (
                    ts.div_euclid(HOUR_MS) * HOUR_MS,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    quality_class(&r.get::<_, String>(10)?).to_string(),
                );
                Ok((r.get(0)?, key, r.get(11)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if covered.is_empty() {
            return Err(StoreError::Invalid(
                "no clicks match this period and scope: there is nothing to spread the amount over".into(),
            ));
        }
        // Shares in millionths: as even as integers allow, the remainder one
        // millionth each to the earliest clicks; they add up to the amount.
        let total = (imp.amount * 1e6).round() as i64;
        let n = covered.len() as i64;
        let (each, rest) = (total / n, total % n);
        let mut deltas: HashMap<CellKey, Measures> = HashMap::new();
        let mut replaced = 0.0;
        {
            let mut up = tx.prepare_cached("UPDATE clicks SET cost = ?2 WHERE rowid = ?1")?;
            for (i, (rowid, key, old)) in covered.iter().enumerate() {
                let share = (each + ((i as i64) < rest) as i64) as f64 / 1e6;
                up.execute(params![rowid, share])?;
                replaced += old;
                deltas.entry(key.clone()).or_default().cost += share - old;
            }
        }
        for (key, m) in &deltas {
            add_to_hour_rollup(&tx, key, m, 1)?;
        }
        add_to_coarse_rollups(&tx, deltas.iter().map(|(k, m)| (k, *m, 1)))?;
        tx.execute(
            "INSERT INTO cost_imports (ts_ms, actor, from_ms, to_ms, description, amount, clicks)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![imp.ts_ms, imp.actor, imp.from_ms, imp.to_ms, imp.description, total as f64 / 1e6, n],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(CostImported { id, clicks: n as u64, replaced })
    }

    fn cost_imports(&self, limit: usize) -> Result<Vec<CostImportRow>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT id, ts_ms, actor, from_ms, to_ms, description, amount, clicks FROM cost_imports
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![limit as i64], |r| {
            Ok(CostImportRow {
                id: r.get(0)?,
                ts_ms: r.get(1)?,
                actor: r.get(2)?,
                from_ms: r.get(3)?,
                to_ms: r.get(4)?,
                description: r.get(5)?,
                amount: r.get(6)?,
                clicks: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn clicks_since(&self, from_ms: i64, after: Option<&str>, limit: usize) -> Result<Vec<ClickRow>> {
        let c = self.read.lock();
        let rows = match after {
            None => c
                .prepare_cached(
                    "SELECT * FROM clicks WHERE ts_ms / 1000 >= ?1 / 1000 AND ts_ms >= ?1
                     ORDER BY ts_ms / 1000, click_id LIMIT ?2",
                )?
                .query_map(params![from_ms, limit as i64], row_to_click)?
                .collect::<rusqlite::Result<_>>()?,
            Some(id) => c
                .prepare_cached(
                    "SELECT * FROM clicks WHERE (ts_ms / 1000, click_id) > (?1 / 1000, ?2)
                     ORDER BY ts_ms / 1000, click_id LIMIT ?3",
                )?
                .query_map(params![from_ms, id, limit as i64], row_to_click)?
                .collect::<rusqlite::Result<_>>()?,
        };
        Ok(rows)
    }

    fn click_log(&self, q: &ClickQuery) -> Result<Vec<ClickRow>> {
        let (sql, args) = click_log_sql(q);
        let c = self.read.lock();
        let mut st = c.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), row_to_click)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn click(&self, second: i64, click_id: &str) -> Result<Option<ClickRow>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached("SELECT * FROM clicks WHERE ts_ms / 1000 = ?1 AND click_id = ?2")?;
        Ok(st.query_row(params![second, click_id], row_to_click).optional()?)
    }
}

/// The click log's SQL and its parameters (see [`Store::click_log`]).
fn click_log_sql(q: &ClickQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    // Newest first by (ts_ms, click_id). The second is a prefix of that
    // order, so `clicks_key` serves it and only the rows of one second at a
    // time are sorted; for one affiliate `clicks_affiliate` (affiliate,
    // ts_ms) does, sorting only clicks of one millisecond. Both are given
    // ranges (always, so the planner walks an index even with no bound
    // asked for); integer division truncates in SQL as in Rust.
    let lo = q.from_ms.unwrap_or(i64::MIN);
    let hi = [q.to_ms.map(|t| t.saturating_sub(1)), q.before.as_ref().map(|(t, _)| *t)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(i64::MAX);
    let mut sql = String::from("SELECT * FROM clicks WHERE ts_ms / 1000 BETWEEN ? AND ? AND ts_ms BETWEEN ? AND ?");
    let mut args: Vec<Value> =
        vec![Value::Integer(lo / 1000), Value::Integer(hi / 1000), Value::Integer(lo), Value::Integer(hi)];
    if let Some(to) = q.to_ms {
        sql.push_str(" AND ts_ms < ?");
        args.push(Value::Integer(to));
    }
    if let Some((ts, id)) = &q.before {
        sql.push_str(" AND (ts_ms < ? OR (ts_ms = ? AND click_id < ?))");
        args.extend([Value::Integer(*ts), Value::Integer(*ts), Value::Text(id.clone())]);
    }
    let one_affiliate =
        q.filters.iter().any(|(d, vs)| *d == Dim::Affiliate && vs.len() == 1 && vs[0] != DimValue::Key(0));
    push_filters(&mut sql, &mut args, &q.filters, |d| match d {
        Dim::Affiliate | Dim::Offer => {
            let none = q.filters.iter().any(|(x, vs)| *x == d && vs.contains(&DimValue::Key(0)));
            match (none, d) {
                (true, _) => raw_dim(d, "clicks"),
                (false, Dim::Affiliate) if one_affiliate => "affiliate".into(),
                // Several affiliates: the time index (`+` keeps SQLite
                // from sorting all their clicks).
                (false, _) => format!("+{}", d.column()),
            }
        }
        other => raw_dim(other, "clicks"),
    });
    if !q.reasons.is_empty() {
        sql.push_str(" AND (");
        for (i, r) in q.reasons.iter().enumerate() {
            sql.push_str(if i == 0 { "" } else { " OR " });
            sql.push_str("(',' || quality_reasons || ',') LIKE ?");
            args.push(Value::Text(format!("%,{r},%")));
        }
        sql.push(')');
    }
    sql.push_str(if one_affiliate {
        " ORDER BY ts_ms DESC, click_id DESC LIMIT ?"
    } else {
        " ORDER BY ts_ms / 1000 DESC, ts_ms DESC, click_id DESC LIMIT ?"
    });
    args.push(Value::Integer(q.limit.min(i64::MAX as usize) as i64));
    (sql, args)
}

#[cfg(test)]
impl SqliteStore {
    /// EXPLAIN QUERY PLAN of the click log's query, one line per step.
    fn click_log_plan(&self, q: &ClickQuery) -> String {
        let (sql, args) = click_log_sql(q);
        self.plan(&sql, args)
    }

    /// EXPLAIN QUERY PLAN of the lookup of one click.
    fn click_plan(&self) -> String {
        self.plan(
            "SELECT * FROM clicks WHERE ts_ms / 1000 = ?1 AND click_id = ?2",
            vec![rusqlite::types::Value::Integer(1), rusqlite::types::Value::Text("x".into())],
        )
    }

    fn plan(&self, sql: &str, args: Vec<rusqlite::types::Value>) -> String {
        let c = self.read.lock();
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
    }
}

/// One rollup cell's key: (hour, smartlink, offer or 0, affiliate or 0,
/// country, device, os, browser, language, quality class).
pub(crate) type CellKey = (i64, u32, u32, u32, String, String, String, String, String, String);

pub(crate) const HOUR_MS: i64 = 3_600_000;

pub(crate) const DAY_MS: i64 = 86_400_000;

/// Coarse rollup levels: a name and the dimensions they keep. Each exists
/// per hour (`rollup_hour_{name}`) and per UTC day (`rollup_day_{name}`).
/// A report whose dimensions and filters fit in one level reads its daily
/// table for whole days and its hourly table for the partial days at the
/// edges: thousands of rows a day instead of one per click in the full
/// hourly rollup.
pub(crate) const LEVELS: [(&str, &[Dim]); 2] = [
    ("offer", &[Dim::Smartlink, Dim::Offer, Dim::Affiliate, Dim::Quality]),
    ("geo", &[Dim::Smartlink, Dim::Country, Dim::Device, Dim::Quality]),
];

/// A coarse rollup cell, borrowing its text from the hourly cell.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum CoarseKey<'a> {
    Offer { day: bool, t: i64, sl: u32, offer: u32, aff: u32, q: &'a str },
    Geo { day: bool, t: i64, sl: u32, country: &'a str, device: &'a str, q: &'a str },
}

/// Adds (or with `sign` −1 removes) hourly cells to the coarse rollups,
/// each distinct coarse cell once.
fn add_to_coarse_rollups<'a>(
    tx: &rusqlite::Connection,
    cells: impl IntoIterator<Item = (&'a CellKey, Measures, i64)>,
) -> rusqlite::Result<()> {
    use rusqlite::types::Value;
    let mut agg: HashMap<CoarseKey<'a>, ([i64; 6], f64, f64)> = HashMap::new();
    for (k, m, sign) in cells {
        for day in [false, true] {
            let unit = if day { DAY_MS } else { HOUR_MS };
            let t = k.0.div_euclid(unit) * unit;
            let q = k.9.as_str();
            for key in [
                CoarseKey::Offer { day, t, sl: k.1, offer: k.2, aff: k.3, q },
                CoarseKey::Geo { day, t, sl: k.1, country: &k.4, device: &k.5, q },
            ] {
                let s = agg.entry(key).or_insert(([0; 6], 0.0, 0.0));
                for (i, v) in [m.clicks, m.fallback_clicks, m.approved, m.pending, m.rejected, m.chargebacks]
                    .into_iter()
                    .enumerate()
                {
                    s.0[i] += sign * v as i64;
                }
                s.1 += sign as f64 * m.revenue;
                s.2 += sign as f64 * m.cost;
            }
        }
    }
    let sql: Vec<String> = LEVELS
        .iter()
        .flat_map(|(name, dims)| {
            [false, true].map(|day| {
                let (table, time) = coarse_table(name, day);
                let names = dims.iter().map(|d| d.column()).collect::<Vec<_>>().join(", ");
                format!(
                    "INSERT INTO {table} ({time}, {names}, clicks, fallback_clicks, approved, pending, rejected,
                     chargebacks, revenue, cost) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13){}",
                    add_measures!()
                )
            })
        })
        .collect();
    for (key, (n, rev, cost)) in agg {
        let (i, mut args) = match key {
            CoarseKey::Offer { day, t, sl, offer, aff, q } => {
                (day as usize, vec![t.into(), sl.into(), offer.into(), aff.into(), Value::Text(q.into())])
            }
            CoarseKey::Geo { day, t, sl, country, device, q } => (
                2 + day as usize,
                vec![
                    t.into(),
                    sl.into(),
                    Value::Text(country.into()),
                    Value::Text(device.into()),
                    Value::Text(q.into()),
                ],
            ),
        };
        args.extend(n.map(Value::Integer));
        args.push(Value::Real(rev));
        args.push(Value::Real(cost));
        tx.prepare_cached(&sql[i])?.execute(rusqlite::params_from_iter(args))?;
    }
    Ok(())
}

fn add_to_rollup(tx: &rusqlite::Connection, k: &CellKey, m: &Measures, sign: i64) -> rusqlite::Result<()> {
    add_to_coarse_rollups(tx, [(k, *m, sign)])?;
    add_to_hour_rollup(tx, k, m, sign)
}

fn add_to_hour_rollup(tx: &rusqlite::Connection, k: &CellKey, m: &Measures, sign: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(concat!(
        "INSERT INTO rollup_hour (hour_ms, smartlink, offer, affiliate, country, device, os, browser, language,
         quality, clicks, fallback_clicks, approved, pending, rejected, chargebacks, revenue, cost)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        add_measures!()
    ))?
    .execute(params![
        k.0,
        k.1,
        k.2,
        k.3,
        k.4,
        k.5,
        k.6,
        k.7,
        k.8,
        k.9,
        sign * m.clicks as i64,
        sign * m.fallback_clicks as i64,
        sign * m.approved as i64,
        sign * m.pending as i64,
        sign * m.rejected as i64,
        sign * m.chargebacks as i64,
        sign as f64 * m.revenue,
        sign as f64 * m.cost,
    ])?;
    Ok(())
}

/// The rollup measures one conversion contributes in a status: an
/// approved one its payout as revenue and its CPA cost as cost.
pub(crate) fn conversion_measures(status: ConvStatus, payout_base: f64, cost_base: f64) -> Measures {
    let mut m = Measures::default();
    match status {
        ConvStatus::Approved => {
            m.approved = 1;
            m.revenue = payout_base;
            m.cost = cost_base;
        }
        ConvStatus::Pending => m.pending = 1,
        ConvStatus::Rejected => m.rejected = 1,
        ConvStatus::Chargeback => m.chargebacks = 1,
    }
    m
}

pub(crate) fn conversion_cell(p: &PostbackIn) -> CellKey {
    (
        p.click_ts_ms.div_euclid(HOUR_MS) * HOUR_MS,
        p.smartlink,
        p.offer,
        p.affiliate.unwrap_or(0),
        p.country.clone(),
        p.device.clone(),
        p.os.clone(),
        p.browser.clone(),
        p.language.clone(),
        quality_class(&p.quality).to_string(),
    )
}

/// Executes through the statement cache: postbacks run the same few
/// statements thousands of times a second.
fn exec(tx: &rusqlite::Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(p)
}

fn queue_outbound(tx: &rusqlite::Connection, id: i64, p: &PostbackIn, status: ConvStatus) -> Result<()> {
    for t in p.outbound.iter().filter(|t| t.statuses.contains(&status)) {
        exec(tx,
            "INSERT OR IGNORE INTO outbox (conversion_id, status, target, url, payout_share, state, attempts, next_at_ms,
             created_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
            params![id, status.as_str(), t.target, t.url, t.payout_share, p.ts_ms],
        )?;
    }
    Ok(())
}

fn record_one(tx: &rusqlite::Connection, p: &PostbackIn) -> Result<Recorded> {
    let existing: Option<(i64, String, f64, f64)> = tx
        .prepare_cached(
            "SELECT id, status, payout_base, cost FROM conversions WHERE click_id = ?1 AND event = ?2 AND txid = ?3",
        )?
        .query_row(params![p.click_id, p.event, p.txid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let history = |id: i64, from: Option<ConvStatus>| {
        exec(
            tx,
            "INSERT INTO conversion_history (conversion_id, ts_ms, from_status, to_status, source, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, p.ts_ms, from.map(|f| f.as_str()), p.status.as_str(), p.source, p.reason],
        )
    };
    let approved_ms = p.status.pays().then_some(p.ts_ms);
    match existing {
        None => {
            exec(tx,
                "INSERT INTO conversions (click_id, event, txid, status, payout, currency, payout_base, smartlink, offer,
                 affiliate, country, device, os, click_ts_ms, ts_ms, updated_ms, approved_ms, over_cap, ctit_secs,
                 browser, language, quality, quality_flags, cost)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16, ?17, ?18, ?19, ?20,
                 ?21, ?22, ?23)",
                params![
                    p.click_id,
                    p.event,
                    p.txid,
                    p.status.as_str(),
                    p.payout.unwrap_or(p.default_payout),
                    p.currency,
                    p.payout_base.unwrap_or(p.default_payout_base),
                    p.smartlink,
                    p.offer,
                    p.affiliate,
                    p.country,
                    p.device,
                    p.os,
                    p.click_ts_ms,
                    p.ts_ms,
                    approved_ms,
                    p.over_cap as i64,
                    (p.ts_ms - p.click_ts_ms).max(0) / 1000,
                    p.browser,
                    p.language,
                    quality_class(&p.quality),
                    p.quality_flags,
                    p.cost_base,
                ],
            )?;
            let id = tx.last_insert_rowid();
            history(id, None)?;
            add_to_rollup(
                tx,
                &conversion_cell(p),
                &conversion_measures(p.status, p.payout_base.unwrap_or(p.default_payout_base), p.cost_base),
                1,
            )?;
            queue_outbound(tx, id, p, p.status)?;
            Ok(Recorded::New { id })
        }
        Some((id, cur, base, cost)) => {
            let cur = status_of(&cur)?;
            match cur.transition(p.status) {
                Transition::Duplicate => Ok(Recorded::Duplicate { id }),
                Transition::Forbidden => Ok(Recorded::Forbidden { id, current: cur }),
                Transition::Change => {
                    exec(
                        tx,
                        "UPDATE conversions SET status = ?2, updated_ms = ?3,
                         approved_ms = COALESCE(?4, approved_ms),
                         payout = COALESCE(?5, payout), payout_base = COALESCE(?6, payout_base),
                         over_cap = MAX(over_cap, ?7) WHERE id = ?1",
                        params![
                            id,
                            p.status.as_str(),
                            p.ts_ms,
                            approved_ms,
                            p.payout,
                            p.payout_base,
                            p.over_cap as i64
                        ],
                    )?;
                    history(id, Some(cur))?;
                    let cell = conversion_cell(p);
                    add_to_rollup(tx, &cell, &conversion_measures(cur, base, cost), -1)?;
                    add_to_rollup(tx, &cell, &conversion_measures(p.status, p.payout_base.unwrap_or(base), cost), 1)?;
                    queue_outbound(tx, id, p, p.status)?;
                    Ok(Recorded::Updated { id, previous: cur, payout_base: p.payout_base.unwrap_or(base) })
                }
            }
        }
    }
}

impl QualityStore for SqliteStore {
    fn source_counts(&self, q: &SourceQuery) -> Result<Vec<SourceCounts>> {
        use std::collections::BTreeMap;
        let sub_col = match q.sub {
            None => "''".to_string(),
            Some(n @ 1..=5) => format!("sub{n}"),
            Some(n) => return Err(StoreError::Invalid(format!("sub{n}: expected sub1..sub5"))),
        };
        let c = self.read.lock();
        let owner = if q.by_source { "source" } else { "affiliate" };
        let mut out: BTreeMap<(u32, String), SourceCounts> = BTreeMap::new();
        let mut st = c.prepare(&format!(
            "SELECT COALESCE({owner}, 0), {sub_col}, quality, quality_reasons, COUNT(*) FROM clicks
             WHERE ts_ms / 1000 BETWEEN ?2 / 1000 AND ?3 / 1000 AND ts_ms >= ?2 AND ts_ms < ?3 AND smartlink = ?1
             GROUP BY 1, 2, 3, 4"
        ))?;
        let mut rows = st.query(params![q.smartlink, q.from_ms, q.to_ms])?;
        while let Some(r) = rows.next()? {
            let (aff, sub, class, reasons, n): (u32, String, String, String, u64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            let e = out.entry((aff, sub.clone())).or_insert_with(|| SourceCounts {
                affiliate: aff,
                sub,
                ..Default::default()
            });
            e.clicks += n;
            let i =
                ["human", "suspect", "bot", "preview"].iter().position(|c| *c == quality_class(&class)).unwrap_or(0);
            e.classes[i] += n;
            for code in reasons.split(',').filter(|c| !c.is_empty()) {
                *e.reasons.entry(code.to_string()).or_default() += n;
            }
        }
        drop(rows);
        let sub_k = if q.sub.is_some() { format!("COALESCE(k.{sub_col}, '')") } else { "''".into() };
        let mut st = c.prepare(&format!(
            "SELECT COALESCE({}, 0), {sub_k}, c.status, c.quality_flags, c.ctit_secs FROM conversions c
             LEFT JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id
             WHERE c.smartlink = ?1 AND c.click_ts_ms >= ?2 AND c.click_ts_ms < ?3",
            if q.by_source { "k.source" } else { "c.affiliate" }
        ))?;
        let mut rows = st.query(params![q.smartlink, q.from_ms, q.to_ms])?;
        while let Some(r) = rows.next()? {
            let (aff, sub, status, flags, ctit): (u32, String, String, String, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            let e = out.entry((aff, sub.clone())).or_insert_with(|| SourceCounts {
                affiliate: aff,
                sub,
                ..Default::default()
            });
            e.conversions += 1;
            match status_of(&status)? {
                ConvStatus::Approved => e.approved += 1,
                ConvStatus::Rejected => e.rejected += 1,
                ConvStatus::Chargeback => e.chargebacks += 1,
                ConvStatus::Pending => {}
            }
            e.short_ctit += flags.split(',').any(|f| f == "short_ctit") as u64;
            e.bot_click_conversions += flags.split(',').any(|f| f == "bot_click") as u64;
            e.ctit_secs.push(ctit);
        }
        Ok(out.into_values().collect())
    }

    fn audit_clicks(&self, smartlink: u32, from_ms: i64, to_ms: i64) -> Result<Vec<AuditClickRow>> {
        let c = self.read.lock();
        let mut st = c.prepare(
            "SELECT k.country, k.device, k.os, k.offer, k.propensity,
               COALESCE((SELECT SUM(c.payout_base) FROM conversions c
                         WHERE c.click_id = k.click_id AND c.status = 'approved'), 0.0),
               k.cost + COALESCE((SELECT SUM(c.cost) FROM conversions c
                         WHERE c.click_id = k.click_id AND c.status = 'approved'), 0.0)
             FROM clicks k
             WHERE k.ts_ms / 1000 BETWEEN ?2 / 1000 AND ?3 / 1000 AND k.ts_ms >= ?2 AND k.ts_ms < ?3
               AND k.smartlink = ?1 AND k.quality IN ('human', 'suspect')",
        )?;
        let rows = st.query_map(params![smartlink, from_ms, to_ms], |r| {
            Ok(AuditClickRow {
                country: r.get(0)?,
                device: r.get(1)?,
                os: r.get(2)?,
                offer: r.get(3)?,
                propensity: r.get(4)?,
                revenue: r.get(5)?,
                cost: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn fallback_segments(
        &self,
        smartlink: u32,
        from_ms: i64,
        to_ms: i64,
        classes: &[&str],
    ) -> Result<Vec<(String, String, String, u64)>> {
        use rusqlite::types::Value;
        let mut sql = String::from(
            "SELECT country, device, COALESCE(fallback_reason, ''), COUNT(*) FROM clicks
             WHERE ts_ms / 1000 BETWEEN ?2 / 1000 AND ?3 / 1000 AND ts_ms >= ?2 AND ts_ms < ?3 AND smartlink = ?1
             AND quality IN (",
        );
        let mut args = vec![Value::Integer(smartlink as i64), Value::Integer(from_ms), Value::Integer(to_ms)];
        for (i, c) in classes.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(Value::Text(c.to_string()));
        }
        sql.push_str(") GROUP BY 1, 2, 3");
        let c = self.read.lock();
        let mut st = c.prepare(&sql)?;
        let rows =
            st.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A rollup dimension as an expression over a raw click row `t`.
pub(crate) fn raw_dim(d: Dim, t: &str) -> String {
    match d {
        Dim::Offer => format!("COALESCE({t}.offer, 0)"),
        Dim::Affiliate => format!("COALESCE({t}.affiliate, 0)"),
        Dim::Source => format!("COALESCE({t}.source, 0)"),
        Dim::Reason => "r.value".to_string(),
        Dim::Hour => format!("({t}.ts_ms / {HOUR_MS}) * {HOUR_MS}"),
        Dim::Day => format!("({t}.ts_ms / {DAY_MS}) * {DAY_MS}"),
        other => format!("{t}.{}", other.column()),
    }
}

impl SqliteStore {
    /// [`RollupStore::rollup`] computed from raw rows, for what the rollup
    /// cannot answer (quality reasons, sub-ids, the traffic source) and for
    /// the partial hours at a window's edges. Same cohort semantics:
    /// conversions count under their click, with their latest status. A
    /// conversion carries its click's time and segment itself, so unless
    /// the query needs what only the click row has (sub-ids, source,
    /// reasons) conversions are read from their own rows, and count even
    /// when their click row was lost, as in the rollups.
    fn rollup_from_rows(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        use rusqlite::types::Value;
        let click_only = q.needs_raw_rows();
        // Grouped by reason, a click row is one row per reason code it
        // carries (one empty code when it has none).
        let reasons_of = if q.group.contains(&Dim::Reason) {
            ", json_each('[\"' || replace(k.quality_reasons, ',', '\",\"') || '\"]') r"
        } else {
            ""
        };
        // (time condition, dimension expression) over clicks `k`, or over
        // conversions `c` alone.
        let on_clicks = (
            "k.ts_ms / 1000 BETWEEN ?1 / 1000 AND ?2 / 1000 AND k.ts_ms >= ?1 AND k.ts_ms < ?2",
            &(|d: Dim| raw_dim(d, "k")) as &dyn Fn(Dim) -> String,
        );
        let on_conversions = (
            "c.click_ts_ms >= ?1 AND c.click_ts_ms < ?2",
            &(|d: Dim| match d {
                Dim::Offer => "c.offer".to_string(),
                Dim::Hour => format!("(c.click_ts_ms / {HOUR_MS}) * {HOUR_MS}"),
                Dim::Day => format!("(c.click_ts_ms / {DAY_MS}) * {DAY_MS}"),
                other => raw_dim(other, "c"),
            }) as &dyn Fn(Dim) -> String,
        );
        let select = |measures: &str, from: &str, (time, col): (&str, &dyn Fn(Dim) -> String)| {
            let mut args: Vec<Value> = vec![Value::Integer(q.from_ms), Value::Integer(q.to_ms)];
            let mut cond = time.to_string();
            push_filters(&mut cond, &mut args, &q.filters, col);
            if !q.reasons.is_empty() {
                cond.push_str(" AND (");
                for (i, r) in q.reasons.iter().enumerate() {
                    cond.push_str(if i == 0 { "" } else { " OR " });
                    cond.push_str("(',' || k.quality_reasons || ',') LIKE ?");
                    args.push(Value::Text(format!("%,{r},%")));
                }
                cond.push(')');
            }
            let mut sql = String::from("SELECT ");
            for d in &q.group {
                sql.push_str(&col(*d));
                sql.push_str(", ");
            }
            sql.push_str(&format!("{measures} FROM {from} WHERE {cond}"));
            if !q.group.is_empty() {
                sql.push_str(&format!(
                    " GROUP BY {}",
                    (1..=q.group.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
                ));
            }
            (sql, args)
        };
        let n = q.group.len();
        let c = self.read.lock();
        let mut found = Vec::new();
        {
            let from = format!("clicks k{reasons_of}");
            let (sql, args) = select("COUNT(*), SUM(k.offer IS NULL), SUM(k.cost)", &from, on_clicks);
            let mut st = c.prepare(&sql)?;
            let mut rows = st.query(rusqlite::params_from_iter(args))?;
            while let Some(r) = rows.next()? {
                let m = Measures {
                    clicks: r.get::<_, u64>(n)?,
                    fallback_clicks: r.get::<_, Option<u64>>(n + 1)?.unwrap_or(0),
                    cost: r.get::<_, Option<f64>>(n + 2)?.unwrap_or(0.0),
                    ..Default::default()
                };
                found.push((row_key(r, &q.group)?, m));
            }
        }
        {
            let measures = "SUM(c.status = 'approved'), SUM(c.status = 'pending'), SUM(c.status = 'rejected'),
                 SUM(c.status = 'chargeback'), SUM(CASE WHEN c.status = 'approved' THEN c.payout_base ELSE 0 END),
                 SUM(CASE WHEN c.status = 'approved' THEN c.cost ELSE 0 END)";
            let (sql, args) = if click_only {
                let joined = format!(
                    "conversions c JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id{reasons_of}"
                );
                select(measures, &joined, on_clicks)
            } else {
                select(measures, "conversions c", on_conversions)
            };
            let mut st = c.prepare(&sql)?;
            let mut rows = st.query(rusqlite::params_from_iter(args))?;
            while let Some(r) = rows.next()? {
                let g = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, Option<u64>>(n + i)?.unwrap_or(0)) };
                let m = Measures {
                    approved: g(0)?,
                    pending: g(1)?,
                    rejected: g(2)?,
                    chargebacks: g(3)?,
                    revenue: r.get::<_, Option<f64>>(n + 4)?.unwrap_or(0.0),
                    cost: r.get::<_, Option<f64>>(n + 5)?.unwrap_or(0.0),
                    ..Default::default()
                };
                found.push((row_key(r, &q.group)?, m));
            }
        }
        Ok(crate::merge_rows(found, !q.group.is_empty()))
    }
}

impl AlertStore for SqliteStore {
    fn record_alerts(&self, alerts: &[(AlertRow, String)]) -> Result<Vec<Option<i64>>> {
        let mut c = self.write.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(alerts.len());
        for (a, dedup) in alerts {
            let n = tx.execute(
                "INSERT OR IGNORE INTO alerts (ts_ms, kind, smartlink, offer, segment, message, dedup)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![a.ts_ms, a.kind, a.smartlink, a.offer, a.segment, a.message, dedup],
            )?;
            out.push((n == 1).then(|| tx.last_insert_rowid()));
        }
        tx.commit()?;
        Ok(out)
    }

    fn alerts(&self, limit: usize) -> Result<Vec<AlertRow>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT id, ts_ms, kind, smartlink, offer, segment, message FROM alerts ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![limit as i64], |r| {
            Ok(AlertRow {
                id: r.get(0)?,
                ts_ms: r.get(1)?,
                kind: r.get(2)?,
                smartlink: r.get(3)?,
                offer: r.get(4)?,
                segment: r.get(5)?,
                message: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

const DIGEST_COLS: &str =
    "id, smartlink, period_start_ms, period_end_ms, created_ms, body, delivery, attempts, next_at_ms,
    last_http_status, last_error, delivered_ms";

fn row_to_digest(r: &rusqlite::Row<'_>) -> rusqlite::Result<DigestRow> {
    let delivery: Option<String> = r.get(6)?;
    Ok(DigestRow {
        id: r.get(0)?,
        smartlink: r.get(1)?,
        period_start_ms: r.get(2)?,
        period_end_ms: r.get(3)?,
        created_ms: r.get(4)?,
        body: r.get(5)?,
        delivery: delivery.as_deref().and_then(OutboxState::parse),
        attempts: r.get(7)?,
        next_at_ms: r.get(8)?,
        last_http_status: r.get(9)?,
        last_error: r.get(10)?,
        delivered_ms: r.get(11)?,
    })
}

impl DigestStore for SqliteStore {
    fn insert_digest(&self, d: &DigestRow) -> Result<(i64, bool)> {
        let mut c = self.write.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO digests (smartlink, period_start_ms, period_end_ms, created_ms, body, delivery,
               attempts, next_at_ms, last_http_status, last_error, delivered_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                d.smartlink,
                d.period_start_ms,
                d.period_end_ms,
                d.created_ms,
                d.body,
                d.delivery.map(OutboxState::as_str),
                d.attempts,
                d.next_at_ms,
                d.last_http_status,
                d.last_error,
                d.delivered_ms
            ],
        )?;
        let id = tx.query_row(
            "SELECT id FROM digests WHERE smartlink = ?1 AND period_start_ms = ?2",
            params![d.smartlink, d.period_start_ms],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok((id, n == 1))
    }

    fn has_digest(&self, smartlink: &str, period_start_ms: i64) -> Result<bool> {
        let c = self.read.lock();
        let n: i64 = c.query_row(
            "SELECT COUNT(*) FROM digests WHERE smartlink = ?1 AND period_start_ms = ?2",
            params![smartlink, period_start_ms],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    fn digests(&self, smartlink: Option<&str>, limit: usize) -> Result<Vec<DigestRow>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(&format!(
            "SELECT {DIGEST_COLS} FROM digests WHERE ?1 IS NULL OR smartlink = ?1
             ORDER BY period_start_ms DESC, id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![smartlink, limit as i64], row_to_digest)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn digest(&self, id: i64) -> Result<Option<DigestRow>> {
        let c = self.read.lock();
        Ok(c.query_row(&format!("SELECT {DIGEST_COLS} FROM digests WHERE id = ?1"), params![id], row_to_digest)
            .optional()?)
    }

    fn due_digests(&self, now_ms: i64, limit: usize) -> Result<Vec<DigestRow>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(&format!(
            "SELECT {DIGEST_COLS} FROM digests WHERE delivery = 'pending' AND next_at_ms <= ?1
             ORDER BY next_at_ms, id LIMIT ?2"
        ))?;
        let rows = st.query_map(params![now_ms, limit as i64], row_to_digest)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn record_digest_attempt(&self, id: i64, a: &DigestAttempt) -> Result<()> {
        let c = self.write.lock();
        c.execute(
            "UPDATE digests SET attempts = attempts + 1, delivery = ?2, next_at_ms = ?3, last_http_status = ?4,
               last_error = ?5, delivered_ms = CASE WHEN ?2 = 'delivered' THEN ?6 ELSE delivered_ms END
             WHERE id = ?1",
            params![id, a.next.as_str(), a.next_at_ms, a.http_status, a.error, a.ts_ms],
        )?;
        Ok(())
    }
}

impl RollupStore for SqliteStore {
    /// Exact on any window: whole hours come from the rollups, the partial
    /// hours at either edge from the raw rows (at most an hour of clicks
    /// each), merged by key.
    fn rollup(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        rollup_in_parts(q, |q| self.rollup_whole_hours(q), |q| self.rollup_from_rows(q))
    }
}

impl SqliteStore {
    /// The rollup tables' rows for whole hours (`q.from_ms` and `q.to_ms` on
    /// hour boundaries), one list per table read, not yet merged by key.
    fn rollup_whole_hours(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        let parts = rollup_tables(q);
        let mut rows = Vec::new();
        for (table, from, to) in parts {
            rows.extend(self.rollup_table(q, &table, from, to)?);
        }
        Ok(rows)
    }
}

impl SqliteStore {
    /// One rollup table's answer for `[from, to)` (hours or days).
    fn rollup_table(&self, q: &RollupQuery, table: &str, from: i64, to: i64) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        use rusqlite::types::Value;
        let hourly = table.starts_with("rollup_hour");
        let time = if hourly { "hour_ms" } else { "day_ms" };
        let col = |d: Dim| -> String {
            match d {
                Dim::Day if hourly => format!("(hour_ms / {DAY_MS}) * {DAY_MS}"),
                d => d.column().to_string(),
            }
        };
        let mut sql = String::from("SELECT ");
        for d in &q.group {
            sql.push_str(&col(*d));
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "SUM(clicks), SUM(fallback_clicks), SUM(approved), SUM(pending), SUM(rejected), SUM(chargebacks), \
             SUM(revenue), SUM(cost) FROM {table} WHERE {time} >= ?1 AND {time} < ?2"
        ));
        let mut args: Vec<Value> = vec![Value::Integer(from), Value::Integer(to)];
        push_filters(&mut sql, &mut args, &q.filters, col);
        if !q.group.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&(1..=q.group.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
        }
        let c = self.read.lock();
        let mut st = c.prepare_cached(&sql)?;
        let n = q.group.len();
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
            let key = row_key(r, &q.group)?;
            let g =
                |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, Option<i64>>(n + i)?.unwrap_or(0).max(0) as u64) };
            let m = Measures {
                clicks: g(0)?,
                fallback_clicks: g(1)?,
                approved: g(2)?,
                pending: g(3)?,
                rejected: g(4)?,
                chargebacks: g(5)?,
                revenue: r.get::<_, Option<f64>>(n + 6)?.unwrap_or(0.0),
                cost: r.get::<_, Option<f64>>(n + 7)?.unwrap_or(0.0),
            };
            Ok((key, m))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

impl ConversionStore for SqliteStore {
    fn record_postbacks(&self, batch: &[PostbackIn]) -> Result<Vec<Result<Recorded>>> {
        let mut c = self.write.lock();
        let mut tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(batch.len());
        for p in batch {
            // A savepoint per postback: a failing one (a value the database
            // refuses, say) is rolled back alone instead of failing the batch.
            let sp = tx.savepoint()?;
            match record_one(&sp, p) {
                Ok(r) => {
                    sp.commit()?;
                    out.push(Ok(r));
                }
                Err(e) => {
                    drop(sp); // rolls the savepoint back
                    out.push(Err(e));
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn conversions(&self, f: &ConversionFilter) -> Result<Vec<ConversionRow>> {
        let c = self.read.lock();
        let sql = format!(
            "SELECT {CONVERSION_COLS} FROM conversions c LEFT JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id
             WHERE (?1 IS NULL OR c.ts_ms >= ?1) AND (?2 IS NULL OR c.ts_ms < ?2) AND (?3 IS NULL OR c.offer = ?3)
             AND (?4 IS NULL OR c.smartlink = ?4) AND (?5 IS NULL OR c.affiliate = ?5) AND (?6 IS NULL OR c.status = ?6)
             AND (?7 IS NULL OR c.id < ?7) {} ORDER BY c.id DESC LIMIT ?8",
            // A plain equality when given, so the (click_id, ...) index serves it.
            if f.click_id.is_some() { "AND c.click_id = ?9" } else { "AND ?9 IS NULL" }
        );
        let mut st = c.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![
                f.from_ms,
                f.to_ms,
                f.offer,
                f.smartlink,
                f.affiliate,
                f.status.map(|s| s.as_str()),
                f.before,
                f.limit as i64,
                f.click_id,
            ],
            row_to_conversion,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn conversion(&self, id: i64) -> Result<Option<ConversionRow>> {
        let c = self.read.lock();
        let sql = format!(
            "SELECT {CONVERSION_COLS} FROM conversions c LEFT JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id WHERE c.id = ?1"
        );
        Ok(c.query_row(&sql, params![id], row_to_conversion).optional()?)
    }

    fn conversion_history(&self, id: i64) -> Result<Vec<HistoryEntry>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT ts_ms, from_status, to_status, source, reason FROM conversion_history WHERE conversion_id = ?1
             ORDER BY rowid",
        )?;
        let rows = st.query_map(params![id], |r| {
            let from: Option<String> = r.get(1)?;
            Ok((
                r.get(0)?,
                from.map(|f| status_of(&f)).transpose()?,
                status_of(&r.get::<_, String>(2)?)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn approved_totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64, f64)>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT offer, COUNT(*), SUM(payout_base) FROM conversions
             WHERE status = 'approved' AND approved_ms >= ?1 AND approved_ms < ?2 GROUP BY offer",
        )?;
        let rows = st.query_map(params![from_ms, to_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn due_outbox(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(&format!(
            "{OUTBOX_SELECT} WHERE o.state = 'pending' AND o.next_at_ms <= ?1 ORDER BY o.next_at_ms, o.id LIMIT ?2"
        ))?;
        let rows = st.query_map(params![now_ms, limit as i64], row_to_outbox)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One process: the write lock makes the claim atomic; the lease moves
    /// the claimed items' next attempt as in PostgreSQL.
    fn claim_outbox(&self, now_ms: i64, limit: usize, lease_ms: i64) -> Result<Vec<OutboxItem>> {
        let until = now_ms.saturating_add(lease_ms.max(0));
        let mut c = self.write.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut items: Vec<OutboxItem> = {
            let mut st = tx.prepare_cached(&format!(
                "{OUTBOX_SELECT} WHERE o.state = 'pending' AND o.next_at_ms <= ?1 ORDER BY o.next_at_ms, o.id LIMIT ?2"
            ))?;
            let rows = st.query_map(params![now_ms, limit as i64], row_to_outbox)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for item in &mut items {
            exec(&tx, "UPDATE outbox SET next_at_ms = ?2 WHERE id = ?1", params![item.id, until])?;
            item.next_at_ms = until;
        }
        tx.commit()?;
        Ok(items)
    }

    fn outbox(&self, state: Option<OutboxState>, limit: usize) -> Result<Vec<OutboxItem>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(&format!(
            "{OUTBOX_SELECT} WHERE (?1 IS NULL OR o.state = ?1) ORDER BY o.id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![state.map(|s| s.as_str()), limit as i64], row_to_outbox)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn record_attempt(&self, outbox_id: i64, a: &Attempt) -> Result<()> {
        let mut c = self.write.lock();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO outbox_attempts (outbox_id, ts_ms, url, http_status, latency_ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![outbox_id, a.ts_ms, a.url, a.http_status, a.latency_ms, a.error],
        )?;
        tx.execute(
            "UPDATE outbox SET attempts = attempts + 1, state = ?2, next_at_ms = ?3, last_http_status = ?4, last_error = ?5
             WHERE id = ?1",
            params![outbox_id, a.next.as_str(), a.next_at_ms, a.http_status, a.error],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn postpone_outbox(&self, outbox_id: i64, next_at_ms: i64) -> Result<()> {
        let c = self.write.lock();
        c.execute(
            "UPDATE outbox SET next_at_ms = ?2 WHERE id = ?1 AND state = 'pending'",
            params![outbox_id, next_at_ms],
        )?;
        Ok(())
    }

    fn outbox_item(&self, outbox_id: i64) -> Result<Option<(OutboxItem, Vec<AttemptRow>)>> {
        let c = self.read.lock();
        let Some(item) = c
            .prepare_cached(&format!("{OUTBOX_SELECT} WHERE o.id = ?1"))?
            .query_row([outbox_id], row_to_outbox)
            .optional()?
        else {
            return Ok(None);
        };
        let mut st = c.prepare_cached(
            "SELECT ts_ms, url, http_status, latency_ms, error FROM outbox_attempts WHERE outbox_id = ?1 ORDER BY rowid",
        )?;
        let attempts = st
            .query_map([outbox_id], |r| {
                Ok(AttemptRow {
                    ts_ms: r.get(0)?,
                    url: r.get(1)?,
                    http_status: r.get(2)?,
                    latency_ms: r.get(3)?,
                    error: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some((item, attempts)))
    }

    fn retry_outbox(&self, outbox_id: i64, now_ms: i64) -> Result<bool> {
        let c = self.write.lock();
        let n = c.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_at_ms = ?2 WHERE id = ?1 AND state = 'failed'",
            params![outbox_id, now_ms],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        (dir, s)
    }

    fn put(kind: Kind, id: &str, spec: &str) -> Change {
        Change::Put { kind, id: id.into(), spec: spec.into() }
    }

    #[test]
    fn a_digest_is_stored_once_per_smartlink_and_period_and_its_delivery_moves_through_states() {
        let (_d, s) = store();
        let d = DigestRow {
            id: 0,
            smartlink: "s".into(),
            period_start_ms: 1_000,
            period_end_ms: 2_000,
            created_ms: 2_500,
            body: "{}".into(),
            delivery: Some(OutboxState::Pending),
            attempts: 0,
            next_at_ms: 2_500,
            last_http_status: None,
            last_error: None,
            delivered_ms: None,
        };
        let (id, new) = s.insert_digest(&d).unwrap();
        assert!(new);
        assert_eq!(s.insert_digest(&DigestRow { body: "{\"second\":1}".into(), ..d.clone() }).unwrap(), (id, false));
        let (other, _) =
            s.insert_digest(&DigestRow { period_start_ms: 2_000, period_end_ms: 3_000, ..d.clone() }).unwrap();
        assert!(s.has_digest("s", 1_000).unwrap() && !s.has_digest("t", 1_000).unwrap());
        assert_eq!(s.digest(id).unwrap().unwrap().body, "{}", "the first one is kept");
        let listed: Vec<i64> = s.digests(Some("s"), 10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(listed, [other, id], "newest period first");
        assert!(s.digests(Some("t"), 10).unwrap().is_empty());
        assert_eq!(s.due_digests(2_499, 10).unwrap().len(), 0);
        assert_eq!(s.due_digests(2_500, 10).unwrap().len(), 2);
        let attempt =
            |next, http_status| DigestAttempt { ts_ms: 2_600, http_status, error: None, next, next_at_ms: 9_000 };
        s.record_digest_attempt(id, &attempt(OutboxState::Pending, Some(500))).unwrap();
        s.record_digest_attempt(id, &attempt(OutboxState::Delivered, Some(200))).unwrap();
        let r = s.digest(id).unwrap().unwrap();
        assert_eq!(
            (r.delivery, r.attempts, r.last_http_status, r.delivered_ms),
            (Some(OutboxState::Delivered), 2, Some(200), Some(2_600))
        );
        assert_eq!(s.due_digests(i64::MAX, 10).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [other]);
    }

    #[test]
    fn a_store_from_before_digests_gains_an_empty_digest_table_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            let (head, rest) = SCHEMA.split_once("-- Scheduled digests").unwrap();
            let tail = &rest[rest.find("CREATE TABLE IF NOT EXISTS outbox_attempts").unwrap()..];
            c.execute_batch(&format!("{head}{tail}")).unwrap();
            let n: i64 =
                c.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'digests'", [], |r| r.get(0)).unwrap();
            assert_eq!(n, 0);
        }
        let s = SqliteStore::open(&path).unwrap();
        assert!(s.digests(None, 10).unwrap().is_empty());
    }

    #[test]
    fn keys_are_stable_and_survive_deletes() {
        let (_d, s) = store();
        s.apply(&[put(Kind::Offer, "a", "{}"), put(Kind::Offer, "b", "{}")], "test").unwrap();
        s.apply(&[Change::Delete { kind: Kind::Offer, id: "a".into() }], "test").unwrap();
        s.apply(&[put(Kind::Offer, "c", "{}"), put(Kind::Offer, "a", "{\"x\":1}")], "api").unwrap();
        // Re-applying an identical spec is not a change.
        s.apply(&[put(Kind::Offer, "b", "{}")], "file").unwrap();
        let h = s.history(Some(Kind::Offer), Some("a"), 10).unwrap();
        let got: Vec<(&str, Option<&str>, Option<&str>, &str)> = h
            .iter()
            .map(|r| (r.action.as_str(), r.old_spec.as_deref(), r.new_spec.as_deref(), r.actor.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("create", None, Some("{\"x\":1}"), "api"),
                ("delete", Some("{}"), None, "test"),
                ("create", None, Some("{}"), "test")
            ]
        );
        assert_eq!(s.history(None, None, 100).unwrap().len(), 5);
        let got: Vec<_> = s.entities().unwrap().into_iter().map(|e| (e.id, e.key, e.spec)).collect();
        assert_eq!(
            got,
            vec![("a".into(), 1, "{\"x\":1}".into()), ("b".into(), 2, "{}".into()), ("c".into(), 3, "{}".into())]
        );
    }

    #[test]
    fn click_batches_are_idempotent_and_counted_per_offer() {
        let (_d, s) = store();
        let click = |id: &str, ts, offer| ClickRow { click_id: id.into(), ts_ms: ts, offer, ..Default::default() };
        let batch = vec![
            click("x", 10_000, Some(1)),
            click("y", 20_000, Some(1)),
            click("z", 30_000, None),
            click("w", 40_000, Some(2)),
        ];
        s.insert_clicks(&batch).unwrap();
        s.insert_clicks(&batch[..2]).unwrap();
        assert_eq!(s.count_clicks().unwrap(), 4);
        assert_eq!(s.click_counts(0, 35_000).unwrap(), vec![(1, 2)]);
        let since: Vec<_> = s.clicks_since(20_000, None, 10).unwrap().into_iter().map(|c| c.click_id).collect();
        assert_eq!(since, vec!["y", "z", "w"]);
    }

    /// The rollup and the raw rows (a sub-id filter forces them) agree.
    fn cost_by(s: &SqliteStore, group: Vec<Dim>, filters: Vec<(Dim, Vec<DimValue>)>) -> Vec<(Vec<DimValue>, f64)> {
        let q = RollupQuery { from_ms: 0, to_ms: 10 * HOUR_MS, filters, group, reasons: vec![] };
        let mut out: Vec<_> =
            s.rollup(&q).unwrap().into_iter().map(|(k, m)| (k, (m.cost * 1e6).round() / 1e6)).collect();
        out.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        out
    }

    /// (window) -> clicks and revenue the rollup path gives, always equal to
    /// what the raw rows give (a sub-id filter forces them).
    #[test]
    fn rollup_windows_are_exact_to_the_millisecond_at_both_edges() {
        let (_d, s) = store();
        // One click every 10 minutes for 3 hours, each with sub1 "s"; every
        // third one converts (revenue 1 each).
        let clicks: Vec<ClickRow> = (0..18)
            .map(|i| ClickRow {
                click_id: format!("k{i:02}"),
                ts_ms: HOUR_MS + i * 600_000,
                smartlink: 1,
                offer: Some(1),
                country: "US".into(),
                subs: ["s".into(), String::new(), String::new(), String::new(), String::new()],
                cost: 0.25,
                ..Default::default()
            })
            .collect();
        s.insert_clicks(&clicks).unwrap();
        let convs: Vec<PostbackIn> = clicks
            .iter()
            .step_by(3)
            .map(|c| PostbackIn {
                click_ts_ms: c.ts_ms,
                smartlink: 1,
                country: "US".into(),
                ..super::conversion_tests::pb(&c.click_id, "t", ConvStatus::Approved, Some(1.0), c.ts_ms + 1)
            })
            .collect();
        for r in s.record_postbacks(&convs).unwrap() {
            r.unwrap();
        }
        let window = |from_ms: i64, to_ms: i64, filters: Vec<(Dim, Vec<DimValue>)>| {
            let q = RollupQuery { from_ms, to_ms, filters, group: vec![Dim::Country], reasons: vec![] };
            let rows = s.rollup(&q).unwrap();
            let m = rows.first().map(|(_, m)| *m).unwrap_or_default();
            (m.clicks, m.approved, (m.cost * 100.0).round() as i64)
        };
        let raw = || vec![(Dim::Sub(1), vec![DimValue::Text("s".into())])];
        let cases = [
            // (from, to) relative to the first hour -> clicks, conversions
            ((0, HOUR_MS), (6, 2)),
            ((1, HOUR_MS), (5, 1)),         // the first click is at the hour's start
            ((600_000, 1_200_001), (2, 0)), // inside one hour
            ((30 * 60_000, HOUR_MS + 30 * 60_000), (6, 2)), // across a boundary, partial at both edges
            ((-HOUR_MS, 4 * HOUR_MS), (18, 6)),
            ((HOUR_MS + 1, 2 * HOUR_MS + 1), (6, 2)),
        ];
        for ((a, b), (n, conv)) in cases {
            let (from, to) = (HOUR_MS + a, HOUR_MS + b);
            let got = window(from, to, vec![]);
            assert_eq!((got.0, got.1, got.2), (n, conv, n as i64 * 25), "[{a}, {b})");
            assert_eq!(window(from, to, raw()), got, "the raw rows agree on [{a}, {b})");
        }
    }

    #[test]
    fn a_cost_import_spreads_the_amount_over_its_clicks_exactly_and_replaces_their_cost() {
        let (_d, s) = store();
        let click = |i: usize, link: u32, country: &str, quality: &str| ClickRow {
            click_id: format!("c{i:03}"),
            ts_ms: 1_000 + i as i64 * 60_000,
            smartlink: link,
            country: country.into(),
            quality: quality.into(),
            subs: ["z1".into(), String::new(), String::new(), String::new(), String::new()],
            cost: 0.5,
            ..Default::default()
        };
        // 7 clicks of link 1 (one a bot), 2 of link 2, all in the first hours.
        let mut batch: Vec<ClickRow> = (0..7).map(|i| click(i, 1, if i < 4 { "US" } else { "DE" }, "human")).collect();
        batch[6].quality = "bot".into();
        batch.extend((7..9).map(|i| click(i, 2, "US", "human")));
        s.insert_clicks(&batch).unwrap();
        let link = |k| vec![(Dim::Smartlink, vec![DimValue::Key(k)])];
        assert_eq!(cost_by(&s, vec![], link(1)), vec![(vec![], 3.5)]);

        let imp = CostImport {
            from_ms: 0,
            to_ms: 10 * HOUR_MS,
            filters: link(1),
            amount: 10.0,
            description: "link 1".into(),
            actor: "test".into(),
            ts_ms: 5,
        };
        let done = s.import_costs(&imp).unwrap();
        assert_eq!((done.clicks, done.replaced), (7, 3.5));
        // 10 / 7: three clicks carry one millionth more; the total is exact,
        // bots included (they were paid for), link 2 untouched.
        assert_eq!(cost_by(&s, vec![], link(1)), vec![(vec![], 10.0)]);
        assert_eq!(cost_by(&s, vec![], link(2)), vec![(vec![], 1.0)]);
        let by_country = cost_by(&s, vec![Dim::Country], link(1));
        assert_eq!(
            by_country,
            vec![(vec![DimValue::Text("DE".into())], 4.285713), (vec![DimValue::Text("US".into())], 5.714287)]
        );
        // The raw rows say the same as the rollups (a sub-id filter reads them).
        let mut raw = link(1);
        raw.push((Dim::Sub(1), vec![DimValue::Text("z1".into())]));
        assert_eq!(cost_by(&s, vec![Dim::Country], raw), by_country);
        // Importing the same scope again replaces, never adds.
        s.import_costs(&CostImport { amount: 7.0, ..imp.clone() }).unwrap();
        assert_eq!(cost_by(&s, vec![], link(1)), vec![(vec![], 7.0)]);
        assert_eq!(s.cost_imports(10).unwrap().len(), 2);
        assert_eq!(s.cost_imports(10).unwrap()[0].amount, 7.0);
        // Nothing to spread over, or a bad amount: refused, nothing changed.
        for bad in [
            CostImport { filters: link(9), ..imp.clone() },
            CostImport { amount: -1.0, ..imp.clone() },
            CostImport { amount: f64::NAN, ..imp.clone() },
            CostImport { to_ms: 0, ..imp.clone() },
        ] {
            assert!(matches!(s.import_costs(&bad), Err(StoreError::Invalid(_))), "{bad:?}");
        }
        assert_eq!(cost_by(&s, vec![], link(1)), vec![(vec![], 7.0)]);
    }

    #[test]
    fn click_pages_cover_every_row_once_even_within_one_second() {
        let (_d, s) = store();
        let rows: Vec<ClickRow> = (0..25)
            .map(|i| ClickRow { click_id: format!("c{i:02}"), ts_ms: 5_000 + (i % 3) * 400, ..Default::default() })
            .collect();
        s.insert_clicks(&rows).unwrap();
        let (mut from, mut after, mut seen) = (0, None::<String>, Vec::new());
        loop {
            let page = s.clicks_since(from, after.as_deref(), 4).unwrap();
            let Some(last) = page.last() else { break };
            (from, after) = (last.ts_ms, Some(last.click_id.clone()));
            seen.extend(page.into_iter().map(|c| c.click_id));
        }
        let mut want: Vec<_> = rows.iter().map(|c| c.click_id.clone()).collect();
        want.sort();
        assert_eq!(seen, want);
        // The lower bound is exact to the millisecond on the first page.
        assert_eq!(s.clicks_since(5_401, None, 100).unwrap().len(), 8);
    }

    /// Reads the whole click log newest first in pages of `limit`.
    fn click_log_pages(s: &SqliteStore, q: &ClickQuery) -> Vec<ClickRow> {
        let (mut q, mut out) = (q.clone(), Vec::new());
        loop {
            let page = s.click_log(&q).unwrap();
            let Some(last) = page.last() else { return out };
            q.before = Some((last.ts_ms, last.click_id.clone()));
            out.extend(page);
        }
    }

    #[test]
    fn click_log_pages_are_exact_under_concurrent_inserts() {
        let (_d, s) = store();
        let s = std::sync::Arc::new(s);
        // Many clicks share a second and some a millisecond.
        let rows: Vec<ClickRow> = (0..300)
            .map(|i| ClickRow {
                click_id: format!("c{:03}", (i * 37) % 300),
                ts_ms: 5_000 + (i / 4) * 7,
                ..Default::default()
            })
            .collect();
        s.insert_clicks(&rows).unwrap();
        let mut q = ClickQuery { limit: 7, ..Default::default() };
        let first = s.click_log(&q).unwrap();
        q.before = first.last().map(|c| (c.ts_ms, c.click_id.clone()));
        // New clicks arrive while the later pages are read.
        let writer = {
            let s = s.clone();
            std::thread::spawn(move || {
                for b in 0..50 {
                    let batch: Vec<ClickRow> = (0..5)
                        .map(|i| ClickRow {
                            click_id: format!("n{b:02}{i}"),
                            ts_ms: 10_000 + b * 10,
                            ..Default::default()
                        })
                        .collect();
                    s.insert_clicks(&batch).unwrap();
                }
            })
        };
        let mut seen = first;
        seen.extend(click_log_pages(&s, &q));
        writer.join().unwrap();
        let keys: Vec<(i64, String)> = seen.iter().map(|c| (c.ts_ms, c.click_id.clone())).collect();
        assert!(keys.windows(2).all(|w| w[0] > w[1]), "strictly newest first, no row twice");
        for r in &rows {
            assert_eq!(seen.iter().filter(|c| c.click_id == r.click_id).count(), 1, "{} exactly once", r.click_id);
        }
        // Clicks inserted while paging are newer than page one: they land
        // before it, never in a later page.
        let new_seen: Vec<_> = seen.iter().filter(|c| c.click_id.starts_with('n')).collect();
        assert!(new_seen.is_empty(), "{new_seen:?}");
    }

    #[test]
    fn click_log_filters_by_time_entities_sub_ids_quality_and_reasons() {
        let (_d, s) = store();
        let click = |id: &str, ts: i64, aff: Option<u32>, sub1: &str, q: &str, reasons: &str| ClickRow {
            click_id: id.into(),
            ts_ms: ts,
            smartlink: 1,
            affiliate: aff,
            subs: [sub1.into(), String::new(), String::new(), String::new(), String::new()],
            quality: q.into(),
            quality_reasons: reasons.into(),
            ..Default::default()
        };
        s.insert_clicks(&[
            click("a", 1_000, Some(1), "x", "human", ""),
            click("b", 2_500, Some(2), "y", "bot", "bot_ua,headless"),
            click("c", 3_999, None, "x", "suspect", "dup"),
            click("d", 4_000, Some(1), "y", "human", ""),
        ])
        .unwrap();
        let ids = |q: ClickQuery| -> Vec<String> {
            s.click_log(&ClickQuery { limit: 100, ..q }).unwrap().into_iter().map(|c| c.click_id).collect()
        };
        assert_eq!(ids(ClickQuery::default()), ["d", "c", "b", "a"]);
        assert_eq!(ids(ClickQuery { from_ms: Some(2_500), to_ms: Some(4_000), ..Default::default() }), ["c", "b"]);
        let by = |d: Dim, v: Vec<DimValue>| ClickQuery { filters: vec![(d, v)], ..Default::default() };
        assert_eq!(ids(by(Dim::Affiliate, vec![DimValue::Key(1)])), ["d", "a"]);
        assert_eq!(ids(by(Dim::Affiliate, vec![DimValue::Key(0), DimValue::Key(2)])), ["c", "b"]);
        assert_eq!(ids(by(Dim::Affiliate, vec![DimValue::Key(1), DimValue::Key(2)])), ["d", "b", "a"]);
        assert_eq!(ids(by(Dim::Sub(1), vec![DimValue::Text("x".into())])), ["c", "a"]);
        assert_eq!(ids(by(Dim::Quality, vec![DimValue::Text("bot".into())])), ["b"]);
        assert_eq!(
            ids(ClickQuery { reasons: vec!["headless".into(), "dup".into()], ..Default::default() }),
            ["c", "b"]
        );
        assert_eq!(ids(ClickQuery { reasons: vec!["head".into()], ..Default::default() }), Vec::<String>::new());
        assert_eq!(s.click(2, "b").unwrap().unwrap().quality_reasons, "bot_ua,headless");
        assert_eq!(s.click(3, "b").unwrap(), None, "the id's second keys the lookup");
    }

    #[test]
    fn click_log_queries_walk_an_index_instead_of_sorting_the_table() {
        let (_d, s) = store();
        let queries = [
            ClickQuery { limit: 100, ..Default::default() },
            ClickQuery {
                from_ms: Some(1),
                to_ms: Some(5_000),
                before: Some((4_000, "x".into())),
                limit: 100,
                ..Default::default()
            },
            ClickQuery { filters: vec![(Dim::Affiliate, vec![DimValue::Key(3)])], limit: 100, ..Default::default() },
            ClickQuery {
                filters: vec![
                    (Dim::Affiliate, vec![DimValue::Key(3), DimValue::Key(4)]),
                    (Dim::Country, vec![DimValue::Text("US".into())]),
                ],
                limit: 100,
                ..Default::default()
            },
        ];
        for q in &queries {
            let p = s.click_log_plan(q);
            assert!(p.contains("USING INDEX clicks_"), "{q:?}: {p}");
            // Sorting the last terms (the clicks of one second or one
            // millisecond) is fine; sorting every match is not.
            assert!(!p.contains("B-TREE FOR ORDER BY"), "{q:?}: {p}");
        }
        let one = s.click_log_plan(&queries[2]);
        assert!(one.contains("clicks_affiliate"), "one affiliate reads its own index: {one}");
        let lookup = s.click_plan();
        assert!(lookup.contains("clicks_key"), "{lookup}");
    }

    #[test]
    fn a_store_with_the_old_text_key_is_migrated_with_its_clicks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlink.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                &SCHEMA.replace("click_id TEXT NOT NULL, ts_ms", "click_id TEXT PRIMARY KEY, ts_ms").replace(
                    "CREATE UNIQUE INDEX IF NOT EXISTS clicks_key ON clicks (ts_ms / 1000, click_id);",
                    "CREATE INDEX IF NOT EXISTS clicks_ts ON clicks (ts_ms);",
                ),
            )
            .unwrap();
            c.execute(
                "INSERT INTO clicks (click_id, ts_ms, smartlink, sub1, sub2, sub3, sub4, sub5, ip, country, device, os,
                 browser, language, referrer, user_agent, reason, propensity)
                 VALUES ('old', 7000, 1, '', '', '', '', '', '', 'US', 'desktop', 'windows', 'chrome', '', '', '',
                 'explore', 1.0)",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.clicks_since(0, None, 10).unwrap()[0].click_id, "old");
        s.insert_clicks(&[ClickRow { click_id: "old".into(), ts_ms: 7000, ..Default::default() }]).unwrap();
        s.insert_clicks(&[ClickRow { click_id: "new".into(), ts_ms: 8000, ..Default::default() }]).unwrap();
        assert_eq!(s.count_clicks().unwrap(), 2);
        drop(s);
        // Opening again is a no-op.
        assert_eq!(SqliteStore::open(&path).unwrap().count_clicks().unwrap(), 2);
    }

    #[test]
    fn a_store_from_before_traffic_quality_reads_its_clicks_and_rollups_as_human() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlink.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE clicks (click_id TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL, smartlink INTEGER NOT NULL,
                   offer INTEGER, affiliate INTEGER, sub1 TEXT NOT NULL, sub2 TEXT NOT NULL, sub3 TEXT NOT NULL,
                   sub4 TEXT NOT NULL, sub5 TEXT NOT NULL, ip TEXT NOT NULL, country TEXT NOT NULL,
                   device TEXT NOT NULL, os TEXT NOT NULL, browser TEXT NOT NULL, language TEXT NOT NULL,
                   referrer TEXT NOT NULL, user_agent TEXT NOT NULL, reason TEXT NOT NULL, fallback_reason TEXT,
                   propensity REAL NOT NULL);
                 CREATE INDEX clicks_ts ON clicks (ts_ms);
                 CREATE TABLE rollup_hour (hour_ms INTEGER NOT NULL, smartlink INTEGER NOT NULL,
                   offer INTEGER NOT NULL, affiliate INTEGER NOT NULL, country TEXT NOT NULL, device TEXT NOT NULL,
                   os TEXT NOT NULL, browser TEXT NOT NULL, language TEXT NOT NULL,
                   clicks INTEGER NOT NULL DEFAULT 0, fallback_clicks INTEGER NOT NULL DEFAULT 0,
                   approved INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0,
                   rejected INTEGER NOT NULL DEFAULT 0, chargebacks INTEGER NOT NULL DEFAULT 0,
                   revenue REAL NOT NULL DEFAULT 0,
                   PRIMARY KEY (hour_ms, smartlink, offer, affiliate, country, device, os, browser, language))
                   WITHOUT ROWID;
                 INSERT INTO clicks VALUES ('old', 7000, 1, 2, NULL, '', '', '', '', '', '', 'US', 'desktop',
                   'windows', 'chrome', '', '', '', 'explore', NULL, 1.0);
                 INSERT INTO rollup_hour (hour_ms, smartlink, offer, affiliate, country, device, os, browser,
                   language, clicks) VALUES (0, 1, 2, 0, 'US', 'desktop', 'windows', 'chrome', '', 1);",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let old = &s.clicks_since(0, None, 10).unwrap()[0];
        assert_eq!((old.click_id.as_str(), old.quality.as_str()), ("old", "human"));
        let q = RollupQuery { from_ms: 0, to_ms: HOUR_MS, group: vec![Dim::Quality], ..Default::default() };
        let rows = s.rollup(&q).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((&rows[0].0[0], rows[0].1.clicks), (&DimValue::Text("human".into()), 1));
        // New rows of another class land in their own cell.
        let bot = ClickRow { click_id: "b".into(), ts_ms: 9000, quality: "bot".into(), ..Default::default() };
        s.insert_clicks(&[bot]).unwrap();
        assert_eq!(s.rollup(&q).unwrap().len(), 2);
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open_dir(dir.path()).unwrap();
            s.set_meta("config_hash", "abc").unwrap();
            s.insert_clicks(&[ClickRow { click_id: "k".into(), ..Default::default() }]).unwrap();
        }
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        assert_eq!(s.meta("config_hash").unwrap().as_deref(), Some("abc"));
        assert_eq!(s.count_clicks().unwrap(), 1);
    }
}

#[cfg(test)]
mod conversion_tests {
    use super::*;
    use crate::OutboundTarget;

    pub(super) fn pb(click: &str, txid: &str, status: ConvStatus, payout: Option<f64>, ts: i64) -> PostbackIn {
        PostbackIn {
            click_id: click.into(),
            event: "conversion".into(),
            txid: txid.into(),
            status,
            payout,
            currency: "USD".into(),
            payout_base: payout,
            smartlink: 1,
            offer: 2,
            affiliate: Some(3),
            country: "US".into(),
            device: "mobile".into(),
            os: "ios".into(),
            browser: "safari".into(),
            language: "en".into(),
            quality: "human".into(),
            quality_flags: String::new(),
            click_ts_ms: 1_000,
            ts_ms: ts,
            over_cap: false,
            default_payout: 9.0,
            default_payout_base: 9.0,
            source: "postback".into(),
            reason: None,
            outbound: vec![OutboundTarget {
                target: "affiliate:a".into(),
                url: "https://a.example/?c={click_id}".into(),
                statuses: vec![ConvStatus::Approved, ConvStatus::Chargeback],
                payout_share: 0.5,
            }],
            cost_base: 0.0,
        }
    }

    /// A query that never ends on its own.
    const FOREVER: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

    #[test]
    fn a_read_past_the_time_limit_is_interrupted_with_a_timeout_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        s.set_query_timeout(Some(std::time::Duration::from_millis(50)));
        let r: Result<i64> = s.read.lock().query_row(FOREVER, [], |r| r.get(0)).map_err(StoreError::from);
        assert!(matches!(r, Err(StoreError::Timeout)), "{r:?}");
        // The connection is usable again, within its limit.
        assert_eq!(s.count_clicks().unwrap(), 0);
    }

    #[test]
    fn reads_run_side_by_side_instead_of_queueing_behind_a_long_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
        s.set_query_timeout(Some(std::time::Duration::from_secs(3)));
        let long = {
            let s = s.clone();
            std::thread::spawn(move || -> Result<i64> {
                s.read.lock().query_row(FOREVER, [], |r| r.get(0)).map_err(StoreError::from)
            })
        };
        // While the long query holds a reader, others are served at once
        // (with one shared connection they would wait the 3 s out).
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let s = s.clone();
            std::thread::spawn(move || {
                let _ = tx.send((s.count_clicks().unwrap(), s.history(None, None, 10).unwrap().len()));
            });
        }
        assert_eq!(rx.recv_timeout(std::time::Duration::from_millis(1500)).unwrap(), (0, 0));
        assert!(matches!(long.join().unwrap(), Err(StoreError::Timeout)));
    }

    #[test]
    fn a_postback_the_database_refuses_fails_alone_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        // NaN binds as NULL, which the payout columns refuse.
        let r = s
            .record_postbacks(&[
                pb("c1", "", ConvStatus::Approved, Some(2.0), 5_000),
                pb("c2", "", ConvStatus::Approved, Some(f64::NAN), 5_000),
                pb("c3", "", ConvStatus::Approved, Some(3.0), 5_000),
            ])
            .unwrap();
        assert!(matches!(r[0], Ok(Recorded::New { .. })), "{r:?}");
        assert!(r[1].is_err(), "{r:?}");
        assert!(matches!(r[2], Ok(Recorded::New { .. })), "{r:?}");
        let all = s.conversions(&ConversionFilter { limit: 10, ..Default::default() }).unwrap();
        let mut clicks: Vec<&str> = all.iter().map(|c| c.click_id.as_str()).collect();
        clicks.sort();
        assert_eq!(clicks, ["c1", "c3"]);
        // The refused one left nothing behind: no history, no outbox row.
        assert_eq!(s.outbox(None, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_status_change_keeps_its_source_and_reason_in_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        let mut change = pb("c1", "", ConvStatus::Rejected, None, 6_000);
        change.source = "admin:alice".into();
        change.reason = Some("duplicate lead, same e-mail as #12".into());
        s.record_postbacks(&[pb("c1", "", ConvStatus::Pending, Some(2.0), 5_000), change]).unwrap();
        let h = s.conversion_history(1).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].3.as_str(), h[0].4.as_deref()), ("postback", None));
        assert_eq!((h[1].3.as_str(), h[1].4.as_deref()), ("admin:alice", Some("duplicate lead, same e-mail as #12")));
    }

    #[test]
    fn a_store_from_before_history_reasons_gains_the_column_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlink.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&SCHEMA.replace("source TEXT NOT NULL, reason TEXT);", "source TEXT NOT NULL);")).unwrap();
            c.execute(
                "INSERT INTO conversion_history (conversion_id, ts_ms, from_status, to_status, source)
                 VALUES (1, 5000, NULL, 'approved', 'postback')",
                [],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.conversion_history(1).unwrap(), vec![(5000, None, ConvStatus::Approved, "postback".into(), None)]);
        drop(s);
        // Opening again is a no-op.
        assert_eq!(SqliteStore::open(&path).unwrap().conversion_history(1).unwrap().len(), 1);
    }

    #[test]
    fn dedup_transitions_history_and_outbox_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        use ConvStatus::*;
        let r = s
            .record_postbacks(&[
                pb("c1", "", Pending, Some(2.0), 5_000),
                pb("c1", "", Pending, Some(2.0), 6_000),
                pb("c1", "", Approved, None, 7_000),
                pb("c1", "", Approved, None, 8_000),
                pb("c1", "", Rejected, None, 9_000),
                pb("c1", "", Chargeback, None, 10_000),
                pb("c1", "t2", Approved, Some(1.0), 11_000),
            ])
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>();
        assert_eq!(
            r,
            vec![
                Recorded::New { id: 1 },
                Recorded::Duplicate { id: 1 },
                Recorded::Updated { id: 1, previous: Pending, payout_base: 2.0 },
                Recorded::Duplicate { id: 1 },
                Recorded::Forbidden { id: 1, current: Approved },
                Recorded::Updated { id: 1, previous: Approved, payout_base: 2.0 },
                Recorded::New { id: 2 },
            ]
        );
        let c1 = s.conversion(1).unwrap().unwrap();
        assert_eq!((c1.status, c1.payout, c1.ctit_secs), (Chargeback, 2.0, 4));
        let h: Vec<_> = s.conversion_history(1).unwrap().into_iter().map(|(_, f, t, _, _)| (f, t)).collect();
        assert_eq!(h, vec![(None, Pending), (Some(Pending), Approved), (Some(Approved), Chargeback)]);
        // One outbox row per (conversion, status): approved and chargeback of
        // c1, approved of the second txid; repeats added nothing.
        let ob = s.outbox(None, 10).unwrap();
        let mut got: Vec<_> = ob.iter().map(|o| (o.conversion.id, o.status)).collect();
        got.sort();
        assert_eq!(got, vec![(1, Approved), (1, Chargeback), (2, Approved)]);
        assert_eq!(s.approved_totals(0, 100_000).unwrap(), vec![(2, 1, 1.0)]);
    }

    #[test]
    fn outbox_attempts_move_items_between_states() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        s.record_postbacks(&[pb("c1", "", ConvStatus::Approved, Some(1.0), 5_000)])
            .unwrap()
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .unwrap();
        let due = s.due_outbox(5_000, 10).unwrap();
        assert_eq!(due.len(), 1);
        let id = due[0].id;
        let attempt = |next, at| Attempt {
            ts_ms: 5_000,
            http_status: Some(500),
            latency_ms: 3,
            error: None,
            url: "u".into(),
            next,
            next_at_ms: at,
        };
        s.record_attempt(id, &attempt(OutboxState::Pending, 9_000)).unwrap();
        assert!(s.due_outbox(8_999, 10).unwrap().is_empty());
        assert_eq!(s.due_outbox(9_000, 10).unwrap()[0].attempts, 1);
        s.record_attempt(id, &attempt(OutboxState::Failed, 0)).unwrap();
        assert!(s.due_outbox(i64::MAX, 10).unwrap().is_empty());
        assert_eq!(s.outbox(Some(OutboxState::Failed), 10).unwrap().len(), 1);
        assert!(s.retry_outbox(id, 20_000).unwrap());
        s.postpone_outbox(id, 25_000).unwrap();
        assert!(s.due_outbox(24_999, 10).unwrap().is_empty(), "postponed");
        assert_eq!(s.due_outbox(25_000, 10).unwrap()[0].attempts, 0, "postponing is not an attempt");
    }
}

#[cfg(test)]
mod rollup_tests {
    use super::*;

    /// A tiny deterministic generator (xorshift) for test data.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    const DIMS: [Dim; 11] = [
        Dim::Smartlink,
        Dim::Offer,
        Dim::Affiliate,
        Dim::Country,
        Dim::Device,
        Dim::Os,
        Dim::Browser,
        Dim::Language,
        Dim::Quality,
        Dim::Hour,
        Dim::Day,
    ];

    #[test]
    fn every_breakdown_reconciles_with_the_total_and_the_raw_events() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        let mut g = Gen(0x9e3779b97f4a7c15);
        let pick = |g: &mut Gen, xs: &[&str]| xs[g.next(xs.len() as u64) as usize].to_string();
        let mut clicks = Vec::new();
        for i in 0..3000 {
            let offer = g.next(5) as u32; // 0 = fallback
            clicks.push(ClickRow {
                click_id: format!("c{i}"),
                ts_ms: 1_767_571_200_000 + g.next(72) as i64 * HOUR_MS + g.next(HOUR_MS as u64) as i64,
                smartlink: 1 + g.next(2) as u32,
                offer: (offer != 0).then_some(offer),
                affiliate: (g.next(3) != 0).then(|| g.next(3) as u32 + 1),
                country: pick(&mut g, &["US", "DE", "BR"]),
                device: pick(&mut g, &["mobile", "desktop"]),
                os: pick(&mut g, &["ios", "android", "windows"]),
                browser: pick(&mut g, &["chrome", "safari"]),
                language: pick(&mut g, &["en", "de", ""]),
                quality: pick(&mut g, &["human", "human", "suspect", "bot", "preview", ""]),
                quality_reasons: pick(&mut g, &["", "", "crawler", "datacenter,rate_ip"]),
                subs: [
                    pick(&mut g, &["pub1", "pub2", "pub3", ""]),
                    pick(&mut g, &["x", "y"]),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
                ..Default::default()
            });
        }
        for chunk in clicks.chunks(700) {
            s.insert_clicks(chunk).unwrap();
        }
        s.insert_clicks(&clicks[..500]).unwrap(); // a replayed batch counts once
                                                  // Conversions with random status sequences, on clicks that went to offers.
        let mut pbs = Vec::new();
        for c in clicks.iter().filter(|c| c.offer.is_some()).step_by(7) {
            let seq: &[ConvStatus] = match g.next(4) {
                0 => &[ConvStatus::Approved],
                1 => &[ConvStatus::Pending, ConvStatus::Approved, ConvStatus::Chargeback],
                2 => &[ConvStatus::Pending, ConvStatus::Rejected, ConvStatus::Approved],
                _ => &[ConvStatus::Pending],
            };
            for (j, st) in seq.iter().enumerate() {
                pbs.push(PostbackIn {
                    click_id: c.click_id.clone(),
                    event: "conversion".into(),
                    txid: String::new(),
                    status: *st,
                    payout: (j == 0).then_some(1.0 + g.next(300) as f64 / 100.0),
                    currency: "USD".into(),
                    payout_base: None,
                    smartlink: c.smartlink,
                    offer: c.offer.unwrap(),
                    affiliate: c.affiliate,
                    country: c.country.clone(),
                    device: c.device.clone(),
                    os: c.os.clone(),
                    browser: c.browser.clone(),
                    language: c.language.clone(),
                    quality: c.quality.clone(),
                    quality_flags: String::new(),
                    click_ts_ms: c.ts_ms,
                    ts_ms: c.ts_ms + 60_000,
                    over_cap: false,
                    default_payout: 2.0,
                    default_payout_base: 2.0,
                    source: "postback".into(),
                    reason: None,
                    outbound: vec![],
                    cost_base: 0.0,
                });
                let last = pbs.last_mut().unwrap();
                last.payout_base = last.payout;
            }
        }
        s.record_postbacks(&pbs).unwrap().into_iter().collect::<Result<Vec<_>>>().unwrap();

        let all = RollupQuery { from_ms: 0, to_ms: i64::MAX, ..Default::default() };
        let total = s.rollup(&all).unwrap()[0].1;
        // Raw truth.
        let raw = s.conversions(&ConversionFilter { limit: 1_000_000, ..Default::default() }).unwrap();
        let count = |st: ConvStatus| raw.iter().filter(|c| c.status == st).count() as u64;
        let revenue: f64 = raw.iter().filter(|c| c.status == ConvStatus::Approved).map(|c| c.payout_base).sum();
        assert_eq!(total.clicks, 3000);
        assert_eq!(total.fallback_clicks, clicks.iter().filter(|c| c.offer.is_none()).count() as u64);
        assert_eq!(
            (total.approved, total.pending, total.rejected, total.chargebacks),
            (
                count(ConvStatus::Approved),
                count(ConvStatus::Pending),
                count(ConvStatus::Rejected),
                count(ConvStatus::Chargeback)
            )
        );
        assert!((total.revenue - revenue).abs() < 1e-6, "{} vs {revenue}", total.revenue);
        assert!(total.approved > 0 && total.chargebacks > 0 && total.pending > 0);

        // Every single dimension and every pair sums to the total.
        let mut groups: Vec<Vec<Dim>> = DIMS.iter().map(|d| vec![*d]).collect();
        for (i, a) in DIMS.iter().enumerate() {
            for b in &DIMS[i + 1..] {
                groups.push(vec![*a, *b]);
            }
        }
        for group in groups {
            let rows = s.rollup(&RollupQuery { group: group.clone(), ..all.clone() }).unwrap();
            let mut sum = Measures::default();
            rows.iter().for_each(|(_, m)| sum.add(m));
            assert_eq!(
                (sum.clicks, sum.approved, sum.pending, sum.rejected, sum.chargebacks),
                (total.clicks, total.approved, total.pending, total.rejected, total.chargebacks),
                "{group:?}"
            );
            assert!((sum.revenue - total.revenue).abs() < 1e-6, "{group:?}");
        }

        // Sub-id breakdowns come from raw rows and reconcile with the rollup.
        for group in [vec![Dim::Sub(1)], vec![Dim::Sub(1), Dim::Offer], vec![Dim::Sub(2), Dim::Country, Dim::Hour]] {
            let rows = s.rollup(&RollupQuery { group: group.clone(), ..all.clone() }).unwrap();
            let mut sum = Measures::default();
            rows.iter().for_each(|(_, m)| sum.add(m));
            assert_eq!(
                (sum.clicks, sum.fallback_clicks, sum.approved, sum.pending, sum.rejected, sum.chargebacks),
                (total.clicks, total.fallback_clicks, total.approved, total.pending, total.rejected, total.chargebacks),
                "{group:?}"
            );
            assert!((sum.revenue - total.revenue).abs() < 1e-6, "{group:?}");
        }
        let pub1 = s
            .rollup(&RollupQuery { filters: vec![(Dim::Sub(1), vec![DimValue::Text("pub1".into())])], ..all.clone() })
            .unwrap()[0]
            .1;
        assert_eq!(pub1.clicks, clicks.iter().filter(|c| c.subs[0] == "pub1").count() as u64);

        // Reason filters are answered from raw rows, with the same semantics.
        let flagged = |c: &ClickRow| !c.quality_reasons.is_empty();
        let by_reason = RollupQuery { reasons: vec!["crawler".into(), "datacenter".into()], ..all.clone() };
        let rtotal = s.rollup(&by_reason).unwrap()[0].1;
        let flagged_ids: std::collections::HashSet<&str> =
            clicks.iter().filter(|c| flagged(c)).map(|c| c.click_id.as_str()).collect();
        let rconv = |st: ConvStatus| {
            raw.iter().filter(|c| c.status == st && flagged_ids.contains(c.click_id.as_str())).count() as u64
        };
        assert_eq!(
            (rtotal.clicks, rtotal.approved, rtotal.pending, rtotal.rejected, rtotal.chargebacks),
            (
                flagged_ids.len() as u64,
                rconv(ConvStatus::Approved),
                rconv(ConvStatus::Pending),
                rconv(ConvStatus::Rejected),
                rconv(ConvStatus::Chargeback)
            )
        );
        let one = |r: &str| s.rollup(&RollupQuery { reasons: vec![r.into()], ..all.clone() }).unwrap()[0].1;
        assert_eq!(one("crawler").clicks + one("datacenter").clicks, rtotal.clicks, "disjoint reasons add up");
        assert_eq!(one("rate_ip").clicks, one("datacenter").clicks, "a code matches whole codes in the list");
        assert_eq!(one("rate").clicks, 0, "never a prefix");
        for d in DIMS {
            let rows = s.rollup(&RollupQuery { group: vec![d], ..by_reason.clone() }).unwrap();
            let mut sum = Measures::default();
            rows.iter().for_each(|(_, m)| sum.add(m));
            assert_eq!(
                (sum.clicks, sum.approved, sum.rejected),
                (rtotal.clicks, rtotal.approved, rtotal.rejected),
                "{d:?}"
            );
            assert!((sum.revenue - rtotal.revenue).abs() < 1e-6, "{d:?}");
        }
        let de = s
            .rollup(&RollupQuery {
                filters: vec![(Dim::Country, vec![DimValue::Text("DE".into())])],
                ..by_reason.clone()
            })
            .unwrap()[0]
            .1;
        assert_eq!(de.clicks, clicks.iter().filter(|c| flagged(c) && c.country == "DE").count() as u64);

        // Filters agree with the raw rows.
        let us = s
            .rollup(&RollupQuery { filters: vec![(Dim::Country, vec![DimValue::Text("US".into())])], ..all.clone() })
            .unwrap()[0]
            .1;
        assert_eq!(us.clicks, clicks.iter().filter(|c| c.country == "US").count() as u64);
        let window = RollupQuery {
            from_ms: 1_767_571_200_000 + 10 * HOUR_MS,
            to_ms: 1_767_571_200_000 + 20 * HOUR_MS,
            ..all.clone()
        };
        let want = clicks.iter().filter(|c| (window.from_ms..window.to_ms).contains(&c.ts_ms)).count() as u64;
        assert_eq!(s.rollup(&window).unwrap()[0].1.clicks, want);
        // A window with partial days at both ends (daily rollup for the whole
        // day inside, hourly for the edges) agrees with the raw rows, per
        // offer and per country.
        let span = RollupQuery {
            from_ms: 1_767_571_200_000 + 5 * HOUR_MS,
            to_ms: 1_767_571_200_000 + 50 * HOUR_MS,
            ..all.clone()
        };
        let inside = |c: &&ClickRow| (span.from_ms..span.to_ms).contains(&c.ts_ms);
        for d in [Dim::Offer, Dim::Country, Dim::Day] {
            let rows = s.rollup(&RollupQuery { group: vec![d], ..span.clone() }).unwrap();
            for (k, m) in &rows {
                let want = clicks
                    .iter()
                    .filter(inside)
                    .filter(|c| match (&k[0], d) {
                        (DimValue::Key(o), _) => c.offer.unwrap_or(0) == *o,
                        (DimValue::Text(t), _) => &c.country == t,
                        (DimValue::Hour(day), _) => c.ts_ms.div_euclid(DAY_MS) * DAY_MS == *day,
                    })
                    .count() as u64;
                assert_eq!(m.clicks, want, "{d:?} {k:?}");
            }
            let sum: u64 = rows.iter().map(|(_, m)| m.clicks).sum();
            assert_eq!(sum, clicks.iter().filter(inside).count() as u64, "{d:?}");
        }
    }
}

#[cfg(test)]
mod dedup_properties {
    use super::*;
    use proptest::prelude::*;
    use smartlink_core::conversion::Transition;

    fn status() -> impl Strategy<Value = ConvStatus> {
        prop::sample::select(ConvStatus::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever postbacks arrive, in whatever order and batching, each
        /// (click, event, txid) is one conversion whose status is what the
        /// status machine gives for that sequence, and the rollup agrees.
        #[test]
        fn dedup_and_status_follow_the_model(
            seq in prop::collection::vec((0..3u8, 0..2u8, 0..2u8, status()), 1..40),
            split in 1..10usize,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let s = SqliteStore::open_dir(dir.path()).unwrap();
            let mut model: std::collections::BTreeMap<(u8, u8, u8), ConvStatus> = Default::default();
            let pbs: Vec<PostbackIn> = seq.iter().map(|&(c, e, t, st)| {
                match model.get(&(c, e, t)) {
                    None => { model.insert((c, e, t), st); }
                    Some(cur) => if cur.transition(st) == Transition::Change { model.insert((c, e, t), st); },
                }
                PostbackIn {
                    click_id: format!("click{c}"),
                    event: format!("ev{e}"),
                    txid: if t == 0 { String::new() } else { format!("tx{t}") },
                    status: st,
                    payout: Some(1.0),
                    currency: "USD".into(),
                    payout_base: Some(1.0),
                    smartlink: 1,
                    offer: 1,
                    affiliate: None,
                    country: "US".into(),
                    device: "mobile".into(),
                    os: "ios".into(),
                    browser: "safari".into(),
                    language: String::new(),
                    quality: String::new(),
                    quality_flags: String::new(),
                    click_ts_ms: 0,
                    ts_ms: 1000,
                    over_cap: false,
                    default_payout: 1.0,
                    default_payout_base: 1.0,
                    source: "postback".into(),
                    reason: None,
                    outbound: vec![],
                    cost_base: 0.0,
                }
            }).collect();
            for chunk in pbs.chunks(split) {
                s.record_postbacks(chunk).unwrap().into_iter().collect::<Result<Vec<_>>>().unwrap();
            }
            let rows = s.conversions(&ConversionFilter { limit: 1000, ..Default::default() }).unwrap();
            prop_assert_eq!(rows.len(), model.len());
            for r in &rows {
                let c: u8 = r.click_id[5..].parse().unwrap();
                let e: u8 = r.event[2..].parse().unwrap();
                let t: u8 = if r.txid.is_empty() { 0 } else { r.txid[2..].parse().unwrap() };
                prop_assert_eq!(Some(&r.status), model.get(&(c, e, t)));
            }
            let total = s.rollup(&RollupQuery { from_ms: 0, to_ms: i64::MAX, ..Default::default() }).unwrap()[0].1;
            let count = |st| model.values().filter(|v| **v == st).count() as u64;
            prop_assert_eq!(
                (total.approved, total.pending, total.rejected, total.chargebacks),
                (count(ConvStatus::Approved), count(ConvStatus::Pending), count(ConvStatus::Rejected), count(ConvStatus::Chargeback))
            );
        }
    }
}
