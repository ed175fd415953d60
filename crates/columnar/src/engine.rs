//! The DuckDB engine behind [`Columnar`] (the `engine` feature, on by
//! default): the file, its dictionary and its connections; loading in
//! [`sync`], queries in [`query`].

mod query;
mod sync;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use smartlink_store::{FeedMarks, Result, StoreError};

use crate::{is_lock_error, Options};

/// The file's layout version; a file of another version is rebuilt.
/// 2: the dictionary starts with the quality classes (codes 0..=3).
/// 3: bot and preview clicks in their own table, `bot_clicks` (migrated in
/// place from 2).
const SCHEMA_VERSION: i64 = 3;

/// The first dictionary codes: the quality classes, so that the reports'
/// default "human and suspect" filter is the range `quality <= 1`, which
/// DuckDB answers from the scan itself (an `IN` of two scattered codes is
/// evaluated as an `OR` and cost ~100 ms over 10 M rows).
const SEEDED: [&str; 4] = ["human", "suspect", "bot", "preview"];

/// The quality codes whose clicks are kept in `bot_clicks` (bot, preview),
/// apart from the rest in `clicks`. Reports leave them out by default and
/// count them apart (`excluded`): a breakdown then scans only `clicks`,
/// with no class to filter or group by, and `excluded` is a scan of the
/// small table (4-way breakdown at 10 M clicks −29%, by language −37%,
/// docs/benchmarks.md).
const APART: [u32; 2] = [2, 3];

/// Where a query over clicks of these quality codes reads them (`None`:
/// every class): `clicks`, `bot_clicks`, or both.
fn click_table(classes: Option<&[u32]>) -> &'static str {
    let Some(classes) = classes else { return ALL_CLICKS };
    match (classes.iter().any(|c| APART.contains(c)), classes.iter().any(|c| !APART.contains(c))) {
        (true, false) => "bot_clicks",
        (false, _) => "clicks",
        (true, true) => ALL_CLICKS,
    }
}

/// Both click tables as one.
const ALL_CLICKS: &str = "(SELECT * FROM clicks UNION ALL SELECT * FROM bot_clicks)";

/// The columns of both click tables.
macro_rules! click_columns {
    () => {
        "rid BIGINT NOT NULL, ts_ms BIGINT NOT NULL, smartlink UINTEGER NOT NULL, offer UINTEGER NOT NULL,
    affiliate UINTEGER NOT NULL, source UINTEGER NOT NULL, country UINTEGER NOT NULL, device UINTEGER NOT NULL,
    os UINTEGER NOT NULL, browser UINTEGER NOT NULL, language UINTEGER NOT NULL, quality UINTEGER NOT NULL,
    fallback_reason UINTEGER NOT NULL, reasons VARCHAR NOT NULL,
    sub1 VARCHAR NOT NULL, sub2 VARCHAR NOT NULL, sub3 VARCHAR NOT NULL, sub4 VARCHAR NOT NULL, sub5 VARCHAR NOT NULL,
    propensity DOUBLE NOT NULL, cost BIGINT NOT NULL"
    };
}

/// Moves the bot and preview clicks of a version-2 file into `bot_clicks`.
/// `clicks` is rewritten rather than deleted from: DuckDB keeps deleted
/// rows as marks that every later scan has to skip.
const MIGRATE_TO_3: &str = concat!(
    "
BEGIN TRANSACTION;
INSERT INTO bot_clicks SELECT * FROM clicks WHERE quality IN (2, 3) ORDER BY rid;
CREATE TABLE kept_clicks (",
    click_columns!(),
    ");
INSERT INTO kept_clicks SELECT * FROM clicks WHERE quality NOT IN (2, 3) ORDER BY rid;
DROP TABLE clicks;
ALTER TABLE kept_clicks RENAME TO clicks;
UPDATE meta SET value = 3 WHERE key = 'schema';
COMMIT;
CHECKPOINT;
"
);

const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS dict (code UINTEGER NOT NULL, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS clicks (",
    click_columns!(),
    ");
CREATE TABLE IF NOT EXISTS bot_clicks (",
    click_columns!(),
    ");
CREATE TABLE IF NOT EXISTS conversions (
    id BIGINT NOT NULL, click_rid BIGINT, click_ts_ms BIGINT NOT NULL, smartlink UINTEGER NOT NULL,
    offer UINTEGER NOT NULL, affiliate UINTEGER NOT NULL, source UINTEGER NOT NULL, country UINTEGER NOT NULL,
    device UINTEGER NOT NULL, os UINTEGER NOT NULL, browser UINTEGER NOT NULL, language UINTEGER NOT NULL,
    quality UINTEGER NOT NULL, reasons VARCHAR NOT NULL,
    sub1 VARCHAR NOT NULL, sub2 VARCHAR NOT NULL, sub3 VARCHAR NOT NULL, sub4 VARCHAR NOT NULL, sub5 VARCHAR NOT NULL,
    status UTINYINT NOT NULL, payout BIGINT NOT NULL, cost BIGINT NOT NULL, flags VARCHAR NOT NULL,
    ctit_secs BIGINT NOT NULL);
"
);

/// Conversion statuses as stored (`status` column).
const STATUSES: [&str; 4] = ["pending", "approved", "rejected", "chargeback"];
const APPROVED: u8 = 1;

/// Text dimension values as integer codes; append-only.
#[derive(Default)]
struct Dict {
    values: Vec<String>,
    codes: HashMap<String, u32>,
}

impl Dict {
    fn code(&self, v: &str) -> Option<u32> {
        self.codes.get(v).copied()
    }
    fn value(&self, code: i64) -> String {
        usize::try_from(code).ok().and_then(|i| self.values.get(i)).cloned().unwrap_or_default()
    }
}

/// The columnar store: one writer (the feed loader) and a pool of readers.
pub struct Columnar {
    path: PathBuf,
    writer: Mutex<duckdb::Connection>,
    readers: Vec<Mutex<duckdb::Connection>>,
    next_reader: AtomicUsize,
    dict: RwLock<Dict>,
    /// The feed marks loaded (also in the file's `meta`).
    marks: Mutex<FeedMarks>,
    /// Raw rows before this instant were compacted away (hour-aligned);
    /// `i64::MIN` when nothing was.
    raw_from_ms: AtomicI64,
    /// Click and conversion rows loaded by this process (by the loader or
    /// by a query catching up).
    loaded: std::sync::atomic::AtomicU64,
    pub(crate) opts: Options,
}

fn db_err(e: duckdb::Error) -> StoreError {
    StoreError::Analytics(e.to_string())
}

impl Columnar {
    /// Opens (or creates) `analytics.duckdb` in `data_dir`. A file of another
    /// layout version, or one DuckDB cannot open, is moved aside and rebuilt
    /// from the feed (it holds nothing the transactional store lacks).
    pub fn open(data_dir: &Path, opts: Options) -> Result<Columnar> {
        let path = data_dir.join("analytics.duckdb");
        let conn = match Self::open_file(&path) {
            Ok(c) => c,
            Err(StoreError::Analytics(msg)) if is_lock_error(&msg) => return Err(StoreError::Analytics(msg)),
            Err(e) if !opts.rebuild_damaged => return Err(e),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "the analytics store cannot be opened: moving it aside and rebuilding it from the transactional store");
                for suffix in ["", ".wal"] {
                    let p = PathBuf::from(format!("{}{suffix}", path.display()));
                    if p.exists() {
                        std::fs::rename(&p, format!("{}.broken", p.display()))
                            .map_err(|source| StoreError::Io { path: p.display().to_string(), source })?;
                    }
                }
                Self::open_file(&path)?
            }
        };
        let readers = (0..opts.readers.max(1))
            .map(|_| conn.try_clone().map(Mutex::new).map_err(db_err))
            .collect::<Result<Vec<_>>>()?;
        let meta = |k: &str| -> Result<Option<i64>> {
            let mut st = conn.prepare("SELECT value FROM meta WHERE key = ?").map_err(db_err)?;
            let mut rows = st.query([k]).map_err(db_err)?;
            Ok(match rows.next().map_err(db_err)? {
                Some(r) => Some(r.get(0).map_err(db_err)?),
                None => None,
            })
        };
        let marks = FeedMarks {
            clicks: meta("clicks")?.unwrap_or(0),
            conversions: meta("conversions")?.unwrap_or(0),
            cost_imports: meta("cost_imports")?.unwrap_or(0),
        };
        let raw_from = meta("raw_from_ms")?.unwrap_or(i64::MIN);
        let mut dict = Dict::default();
        {
            let mut st = conn.prepare("SELECT code, value FROM dict ORDER BY code").map_err(db_err)?;
            let mut rows = st.query([]).map_err(db_err)?;
            while let Some(r) = rows.next().map_err(db_err)? {
                let (code, value): (u32, String) = (r.get(0).map_err(db_err)?, r.get(1).map_err(db_err)?);
                if code as usize != dict.values.len() {
                    return Err(StoreError::Analytics(format!("{}: dictionary has a gap at {code}", path.display())));
                }
                dict.codes.insert(value.clone(), code);
                dict.values.push(value);
            }
        }
        if dict.values.is_empty() {
            for (code, v) in SEEDED.iter().enumerate() {
                conn.execute("INSERT INTO dict VALUES (?, ?)", duckdb::params![code as u32, v]).map_err(db_err)?;
                dict.codes.insert(v.to_string(), code as u32);
                dict.values.push(v.to_string());
            }
        }
        Ok(Columnar {
            path,
            writer: Mutex::new(conn),
            readers,
            next_reader: AtomicUsize::new(0),
            dict: RwLock::new(dict),
            marks: Mutex::new(marks),
            raw_from_ms: AtomicI64::new(raw_from),
            loaded: Default::default(),
            opts,
        })
    }

    fn open_file(path: &Path) -> Result<duckdb::Connection> {
        let conn = duckdb::Connection::open(path).map_err(db_err)?;
        if let Some(dir) = path.parent() {
            // The file holds what the click table holds: owner-only, as the
            // SQLite files are.
            let _ = smartlink_store::private_dir(dir);
        }
        let _ = smartlink_store::private_file(path);
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        let version: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0))
            .map(Some)
            .or_else(|e| if matches!(e, duckdb::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })
            .map_err(db_err)?;
        match version {
            Some(SCHEMA_VERSION) => {}
            Some(2) => conn.execute_batch(MIGRATE_TO_3).map_err(db_err)?,
            None => {
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", [SCHEMA_VERSION]).map_err(db_err)?;
            }
            Some(v) => {
                return Err(StoreError::Analytics(format!(
                    "{}: layout version {v}, this build reads {SCHEMA_VERSION}",
                    path.display()
                )))
            }
        }
        Ok(conn)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The feed marks loaded so far.
    pub fn marks(&self) -> FeedMarks {
        *self.marks.lock()
    }

    /// Click and conversion rows this process has loaded.
    pub fn loaded_rows(&self) -> u64 {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Raw rows before this instant were compacted away; `None` if none were.
    pub fn raw_from_ms(&self) -> Option<i64> {
        Some(self.raw_from_ms.load(Ordering::Acquire)).filter(|t| *t != i64::MIN)
    }

    /// Runs `f` on a read connection within the query time limit.
    fn read<T>(&self, f: impl FnOnce(&duckdb::Connection) -> duckdb::Result<T>) -> Result<T> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let guard = (0..n)
            .find_map(|i| self.readers[(start + i) % n].try_lock())
            .unwrap_or_else(|| self.readers[start % n].lock());
        let handle = guard.interrupt_handle();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let timeout = self.opts.query_timeout;
        let watchdog = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(timeout) {
                handle.interrupt();
                return true;
            }
            false
        });
        let out = f(&guard);
        let _ = done.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        match out {
            Ok(v) => Ok(v),
            Err(_) if timed_out => Err(StoreError::Timeout),
            Err(e) => Err(db_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Analyzed;

    #[test]
    fn a_query_past_its_time_limit_is_interrupted_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let opts = Options { query_timeout: Duration::from_millis(200), ..Default::default() };
        let c = Columnar::open(d.path(), opts).unwrap();
        // 10^10 rows: minutes of work, stopped by the watchdog.
        let err = c
            .read(|c| {
                c.query_row("SELECT SUM(a.range * b.range) FROM range(100000) a, range(100000) b", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Timeout), "{err}");
        // The connection serves the next query.
        assert_eq!(c.read(|c| c.query_row("SELECT 42", [], |r| r.get::<_, i64>(0))).unwrap(), 42);
    }

    #[test]
    fn bots_and_previews_are_stored_apart_and_a_version_2_file_is_moved_over_answering_the_same() {
        use smartlink_store::{ClickRow, Dim, DimValue, RollupQuery, RollupStore, SqliteStore, Store};
        let d = tempfile::tempdir().unwrap();
        let sqlite = std::sync::Arc::new(SqliteStore::open_dir(d.path()).unwrap());
        let classes = ["human", "suspect", "bot", "preview", "bot", "human"];
        let clicks: Vec<ClickRow> = classes
            .iter()
            .enumerate()
            .map(|(i, q)| ClickRow {
                click_id: format!("c{i}"),
                ts_ms: 1_000 + i as i64,
                smartlink: 1,
                quality: q.to_string(),
                ..Default::default()
            })
            .collect();
        sqlite.insert_clicks(&clicks).unwrap();
        let count = |c: &Columnar, table: &str| -> i64 {
            c.read(|c| c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))).unwrap()
        };
        let by_class = |a: &Analyzed| {
            let q = RollupQuery { from_ms: 0, to_ms: 10_000, group: vec![Dim::Quality], ..Default::default() };
            let mut rows: Vec<(String, u64)> =
                a.rollup(&q).unwrap().into_iter().map(|(k, m)| (format!("{:?}", k[0]), m.clicks)).collect();
            rows.sort();
            rows
        };
        let only = |a: &Analyzed, classes: &[&str]| {
            let values = classes.iter().map(|c| DimValue::Text(c.to_string())).collect();
            let q =
                RollupQuery { from_ms: 0, to_ms: 10_000, filters: vec![(Dim::Quality, values)], ..Default::default() };
            a.rollup(&q).unwrap().iter().map(|(_, m)| m.clicks).sum::<u64>()
        };
        let a = Analyzed::open(sqlite.clone(), d.path(), Options::default()).unwrap();
        a.load().unwrap();
        let expected = by_class(&a);
        assert_eq!(expected.iter().map(|(_, n)| n).sum::<u64>(), 6);
        let c = a.columnar().unwrap();
        assert_eq!((count(c, "clicks"), count(c, "bot_clicks")), (3, 3), "bots and previews apart");
        assert_eq!(
            (only(&a, &["human", "suspect"]), only(&a, &["bot", "preview"]), only(&a, &["suspect", "bot"])),
            (3, 3, 3)
        );
        // As version 2 wrote it: every click in `clicks`.
        c.writer
            .lock()
            .execute_batch(
                "INSERT INTO clicks SELECT * FROM bot_clicks; DELETE FROM bot_clicks;
                 UPDATE meta SET value = 2 WHERE key = 'schema'; CHECKPOINT;",
            )
            .unwrap();
        drop(a);
        let a = Analyzed::open(sqlite, d.path(), Options::default()).unwrap();
        let c = a.columnar().unwrap();
        assert_eq!((count(c, "clicks"), count(c, "bot_clicks")), (3, 3), "moved over on opening");
        assert_eq!(by_class(&a), expected);
        assert_eq!(c.marks().clicks, 6, "nothing reloaded");
    }

    /// The loader runs in the idle scheduling class: on a busy machine it
    /// can hold its lock for as long as the CPU stays busy. A query then
    /// gets the transactional store's (exact) answer instead of waiting.
    #[test]
    fn a_query_does_not_wait_behind_the_loader_holding_its_lock() {
        use smartlink_store::{ClickRow, RollupQuery, RollupStore, SqliteStore, Store};
        let d = tempfile::tempdir().unwrap();
        let sqlite = std::sync::Arc::new(SqliteStore::open_dir(d.path()).unwrap());
        let a = std::sync::Arc::new(Analyzed::open(sqlite.clone(), d.path(), Options::default()).unwrap());
        let click = ClickRow { click_id: "c1".into(), ts_ms: 1_000, smartlink: 1, ..Default::default() };
        sqlite.insert_clicks(&[click]).unwrap();
        let held = a.columnar().unwrap().writer.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let q = RollupQuery { from_ms: 0, to_ms: 10_000, ..Default::default() };
        let a2 = a.clone();
        std::thread::spawn(move || tx.send(a2.rollup(&q).map(|r| r[0].1.clicks)).unwrap());
        let answer = rx.recv_timeout(Duration::from_secs(20)).expect("the query waited for the loader");
        assert_eq!(answer.unwrap(), 1, "answered by the transactional store");
        assert_eq!(a.columnar().unwrap().marks().clicks, 0, "the columnar store loaded nothing");
        drop(held);
    }
}
