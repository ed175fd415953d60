//! The columnar analytics store (issue 17): every click and conversion as a
//! fact row in an embedded DuckDB file, `analytics.duckdb` in the data
//! directory, answering the report, audit, explain, coverage, alert and
//! quality queries ([`RollupStore`], [`QualityStore`]).
//!
//! It is **derived**: the transactional SQLite store stays the system of
//! record (definitions, conversions' status machine, outbox, caps, the click
//! log), and this store follows its change feed
//! ([`SqliteStore::feed_marks`]): new click rows in row id order,
//! conversions changed since a mark, cost imports since a mark. The marks it
//! has reached are written in the same DuckDB transaction as the rows, so a
//! crash never loads a row twice or skips one; a missing or unreadable file
//! is rebuilt from the feed.
//!
//! Reads are exact: before answering, a query catches up with the feed
//! (everything SQLite had committed when the query started is counted).
//! Money is integer millionths of the base currency, so sums are exact.
//! Text dimensions (country, device, OS, browser, language, quality class,
//! fallback reason) are stored as integer codes of a dictionary kept in the
//! file: grouping by integers is what keeps a 4-way breakdown of 10 M clicks
//! under 100 ms on two cores.

#[cfg(not(feature = "engine"))]
mod absent;
mod analyzed;
#[cfg(feature = "engine")]
mod engine;

use std::time::Duration;

#[cfg(not(feature = "engine"))]
pub use absent::Columnar;
pub use analyzed::Analyzed;
#[cfg(feature = "engine")]
pub use engine::Columnar;

/// How the analytics store behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Raw rows older than this many days are deleted (here and in the
    /// transactional store's click table); the hourly and daily rollups
    /// keep their aggregates. 0 keeps raw rows for ever.
    pub retention_days: u32,
    /// A query running longer is interrupted ([`StoreError::Timeout`]).
    pub query_timeout: Duration,
    /// Read connections: queries beyond this many wait for one.
    pub readers: usize,
    /// A query catches up with the feed itself when at most this many click
    /// rows are missing; further behind (a first load), it is answered by
    /// the transactional store instead, exactly, while the loader catches up.
    pub catch_up_limit: i64,
    /// Move a file DuckDB cannot open (or of another layout version) aside
    /// and rebuild it. Only the process that owns the data directory (the
    /// server, holding the journal lock) may; a command beside it must not.
    pub rebuild_damaged: bool,
    /// Click rows per DuckDB transaction while loading. A backlog longer
    /// than one batch is read from the feed on a second thread while the
    /// previous batch is appended.
    pub load_batch: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            retention_days: 90,
            query_timeout: Duration::from_secs(30),
            readers: 4,
            catch_up_limit: 200_000,
            rebuild_damaged: true,
            load_batch: 50_000,
        }
    }
}

/// What one [`Columnar::sync`] loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub clicks: u64,
    pub conversions: u64,
    pub cost_imports: u64,
}

/// Whether DuckDB refused because another process holds the file.
fn is_lock_error(msg: &str) -> bool {
    msg.contains("Could not set lock") || msg.contains("Conflicting lock")
}
