//! The change feed a derived store (the columnar analytics store) follows:
//! new click rows in insertion order, conversions changed since a mark, cost
//! imports since a mark, each read from one consistent snapshot.
//!
//! Marks are SQLite row ids. With one writer at a time (SQLite's write
//! lock), a row id that a reader sees committed has every smaller row id of
//! that table committed too, so "everything after mark M" never skips a row.
//! [`FeedSource`] is the same feed as a trait, so that the analytics store
//! can follow PostgreSQL too (`PgStore`, whose `bigserial` ids are the marks
//! and whose writers of each fed table hold an advisory lock for the same
//! guarantee).

use rusqlite::params;

use crate::sqlite::SqliteStore;
use crate::{quality_class, Result};

/// How far the transactional store has got: the largest row id of each fed
/// table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedMarks {
    /// `clicks.rowid`.
    pub clicks: i64,
    /// `conversion_history.rowid`: every conversion insert or status change
    /// appends one.
    pub conversions: i64,
    /// `cost_imports.id`.
    pub cost_imports: i64,
}

/// A click as the analytics store keeps it (no IP, user agent or referrer).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedClick {
    pub rid: i64,
    pub ts_ms: i64,
    pub smartlink: u32,
    /// 0: a fallback click (no offer).
    pub offer: u32,
    pub affiliate: u32,
    pub source: u32,
    pub country: String,
    pub device: String,
    pub os: String,
    pub browser: String,
    pub language: String,
    /// Quality class (`human` when unset).
    pub quality: String,
    pub quality_reasons: String,
    /// Empty when the click was routed.
    pub fallback_reason: String,
    pub subs: [String; 5],
    pub propensity: f64,
    /// Base currency, rounded to millionths.
    pub cost_micros: i64,
}

/// A conversion with its latest status and the dimensions of its click.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedConversion {
    pub id: i64,
    /// The click's row id, `None` when the click row is not (or no longer)
    /// in the store.
    pub click_rid: Option<i64>,
    pub click_ts_ms: i64,
    pub smartlink: u32,
    pub offer: u32,
    pub affiliate: u32,
    /// From the click row (0 without one).
    pub source: u32,
    pub country: String,
    pub device: String,
    pub os: String,
    pub browser: String,
    pub language: String,
    pub quality: String,
    /// From the click row (empty without one).
    pub quality_reasons: String,
    pub subs: [String; 5],
    /// `pending`, `approved`, `rejected`, `chargeback`.
    pub status: String,
    /// Payout in the base currency, millionths.
    pub payout_micros: i64,
    /// CPA cost in the base currency, millionths (counted while approved).
    pub cost_micros: i64,
    pub quality_flags: String,
    pub ctit_secs: i64,
}

/// Rounds a base-currency amount to millionths.
pub fn micros(x: f64) -> i64 {
    (x * 1e6).round() as i64
}

const FEED_CONVERSION: &str = "SELECT c.id, k.rowid, c.click_ts_ms, c.smartlink, c.offer, COALESCE(c.affiliate, 0),
    COALESCE(k.source, 0), c.country, c.device, c.os, c.browser, c.language, c.quality,
    COALESCE(k.quality_reasons, ''), COALESCE(k.sub1, ''), COALESCE(k.sub2, ''), COALESCE(k.sub3, ''),
    COALESCE(k.sub4, ''), COALESCE(k.sub5, ''), c.status, c.payout_base, c.cost, c.quality_flags, c.ctit_secs
    FROM conversions c
    LEFT JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id";

fn row_to_feed_conversion(r: &rusqlite::Row<'_>) -> rusqlite::Result<FeedConversion> {
    Ok(FeedConversion {
        id: r.get(0)?,
        click_rid: r.get(1)?,
        click_ts_ms: r.get(2)?,
        smartlink: r.get(3)?,
        offer: r.get(4)?,
        affiliate: r.get(5)?,
        source: r.get(6)?,
        country: r.get(7)?,
        device: r.get(8)?,
        os: r.get(9)?,
        browser: r.get(10)?,
        language: r.get(11)?,
        quality: quality_class(&r.get::<_, String>(12)?).to_string(),
        quality_reasons: r.get(13)?,
        subs: [r.get(14)?, r.get(15)?, r.get(16)?, r.get(17)?, r.get(18)?],
        status: r.get(19)?,
        payout_micros: micros(r.get(20)?),
        cost_micros: micros(r.get(21)?),
        quality_flags: r.get(22)?,
        ctit_secs: r.get(23)?,
    })
}

impl SqliteStore {
    /// The current marks.
    pub fn feed_marks(&self) -> Result<FeedMarks> {
        let c = self.read.lock();
        let m = c.query_row(
            "SELECT (SELECT COALESCE(MAX(rowid), 0) FROM clicks),
                    (SELECT COALESCE(MAX(rowid), 0) FROM conversion_history),
                    (SELECT COALESCE(MAX(id), 0) FROM cost_imports)",
            [],
            |r| Ok(FeedMarks { clicks: r.get(0)?, conversions: r.get(1)?, cost_imports: r.get(2)? }),
        )?;
        Ok(m)
    }

    /// Click rows with `after < rowid <= upto`, in row id order, at most
    /// `limit`.
    pub fn feed_clicks(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<FeedClick>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT rowid, ts_ms, smartlink, COALESCE(offer, 0), COALESCE(affiliate, 0), COALESCE(source, 0),
               country, device, os, browser, language, quality, quality_reasons, COALESCE(fallback_reason, ''),
               sub1, sub2, sub3, sub4, sub5, propensity, cost
             FROM clicks WHERE rowid > ?1 AND rowid <= ?2 ORDER BY rowid LIMIT ?3",
        )?;
        let rows = st.query_map(params![after, upto, limit as i64], |r| {
            Ok(FeedClick {
                rid: r.get(0)?,
                ts_ms: r.get(1)?,
                smartlink: r.get(2)?,
                offer: r.get(3)?,
                affiliate: r.get(4)?,
                source: r.get(5)?,
                country: r.get(6)?,
                device: r.get(7)?,
                os: r.get(8)?,
                browser: r.get(9)?,
                language: r.get(10)?,
                quality: quality_class(&r.get::<_, String>(11)?).to_string(),
                quality_reasons: r.get(12)?,
                fallback_reason: r.get(13)?,
                subs: [r.get(14)?, r.get(15)?, r.get(16)?, r.get(17)?, r.get(18)?],
                propensity: r.get(19)?,
                cost_micros: micros(r.get(20)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Conversions with `after < id`, in id order, at most `limit` (a full
    /// load).
    pub fn feed_all_conversions(&self, after: i64, limit: usize) -> Result<Vec<FeedConversion>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(&format!("{FEED_CONVERSION} WHERE c.id > ?1 ORDER BY c.id LIMIT ?2"))?;
        let rows = st.query_map(params![after, limit as i64], row_to_feed_conversion)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Conversions inserted or changed with `after < history rowid <= upto`,
    /// each once, as they are now.
    pub fn feed_changed_conversions(&self, after: i64, upto: i64) -> Result<Vec<FeedConversion>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(&format!(
            "{FEED_CONVERSION} WHERE c.id IN (SELECT conversion_id FROM conversion_history
               WHERE rowid > ?1 AND rowid <= ?2) ORDER BY c.id"
        ))?;
        let rows = st.query_map(params![after, upto], row_to_feed_conversion)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The given conversions as they are now (those that exist).
    pub fn feed_conversions(&self, ids: &[i64]) -> Result<Vec<FeedConversion>> {
        let c = self.read.lock();
        let mut out = Vec::with_capacity(ids.len());
        let mut st = c.prepare_cached(&format!("{FEED_CONVERSION} WHERE c.id = ?1"))?;
        for id in ids {
            if let Some(f) = st.query_map(params![id], row_to_feed_conversion)?.next() {
                out.push(f?);
            }
        }
        Ok(out)
    }

    /// Cost imports with `after < id <= upto`: `(id, from_ms, to_ms)`.
    pub fn feed_cost_imports(&self, after: i64, upto: i64) -> Result<Vec<(i64, i64, i64)>> {
        let c = self.read.lock();
        let mut st =
            c.prepare_cached("SELECT id, from_ms, to_ms FROM cost_imports WHERE id > ?1 AND id <= ?2 ORDER BY id")?;
        let rows = st.query_map(params![after, upto], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// `(rowid, cost in millionths)` of the click rows with
    /// `from_ms <= ts_ms < to_ms` (what a cost import rewrote).
    pub fn feed_click_costs(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, i64)>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT rowid, cost FROM clicks
             WHERE ts_ms / 1000 BETWEEN ?1 / 1000 AND ?2 / 1000 AND ts_ms >= ?1 AND ts_ms < ?2",
        )?;
        let rows = st.query_map(params![from_ms, to_ms], |r| Ok((r.get(0)?, micros(r.get(1)?))))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes up to `limit` raw click rows older than `before_ms` (the
    /// rollups keep their aggregates); returns how many went.
    pub fn delete_raw_clicks_before(&self, before_ms: i64, limit: usize) -> Result<usize> {
        let c = self.clicks.lock();
        let n = c.execute(
            "DELETE FROM clicks WHERE rowid IN (SELECT rowid FROM clicks
               WHERE ts_ms / 1000 < ?1 / 1000 OR (ts_ms / 1000 = ?1 / 1000 AND ts_ms < ?1) LIMIT ?2)",
            params![before_ms, limit as i64],
        )?;
        Ok(n)
    }
}

/// The change feed as a trait, implemented by every transactional store
/// (see the inherent methods of [`SqliteStore`] for each one's meaning).
pub trait FeedSource: Send + Sync {
    /// The current marks.
    fn feed_marks(&self) -> Result<FeedMarks>;
    /// Click rows with `after < mark <= upto`, in mark order, at most `limit`.
    fn feed_clicks(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<FeedClick>>;
    /// Conversions with `after < id`, in id order, at most `limit`.
    fn feed_all_conversions(&self, after: i64, limit: usize) -> Result<Vec<FeedConversion>>;
    /// Conversions inserted or changed with `after < history mark <= upto`,
    /// each once, as they are now.
    fn feed_changed_conversions(&self, after: i64, upto: i64) -> Result<Vec<FeedConversion>>;
    /// The given conversions as they are now (those that exist).
    fn feed_conversions(&self, ids: &[i64]) -> Result<Vec<FeedConversion>>;
    /// Cost imports with `after < id <= upto`: `(id, from_ms, to_ms)`.
    fn feed_cost_imports(&self, after: i64, upto: i64) -> Result<Vec<(i64, i64, i64)>>;
    /// `(mark, cost in millionths)` of the click rows with
    /// `from_ms <= ts_ms < to_ms`.
    fn feed_click_costs(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, i64)>>;
    /// Deletes up to `limit` raw click rows older than `before_ms`.
    fn delete_raw_clicks_before(&self, before_ms: i64, limit: usize) -> Result<usize>;
}

impl FeedSource for SqliteStore {
    fn feed_marks(&self) -> Result<FeedMarks> {
        SqliteStore::feed_marks(self)
    }
    fn feed_clicks(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<FeedClick>> {
        SqliteStore::feed_clicks(self, after, upto, limit)
    }
    fn feed_all_conversions(&self, after: i64, limit: usize) -> Result<Vec<FeedConversion>> {
        SqliteStore::feed_all_conversions(self, after, limit)
    }
    fn feed_changed_conversions(&self, after: i64, upto: i64) -> Result<Vec<FeedConversion>> {
        SqliteStore::feed_changed_conversions(self, after, upto)
    }
    fn feed_conversions(&self, ids: &[i64]) -> Result<Vec<FeedConversion>> {
        SqliteStore::feed_conversions(self, ids)
    }
    fn feed_cost_imports(&self, after: i64, upto: i64) -> Result<Vec<(i64, i64, i64)>> {
        SqliteStore::feed_cost_imports(self, after, upto)
    }
    fn feed_click_costs(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, i64)>> {
        SqliteStore::feed_click_costs(self, from_ms, to_ms)
    }
    fn delete_raw_clicks_before(&self, before_ms: i64, limit: usize) -> Result<usize> {
        SqliteStore::delete_raw_clicks_before(self, before_ms, limit)
    }
}
