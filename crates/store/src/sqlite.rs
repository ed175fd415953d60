//! The embedded SQLite implementation of [`Store`].
//!
//! WAL mode: readers never block the writer. `synchronous = FULL` so that a
//! committed transaction survives a power cut, not only a process crash;
//! click batches amortise the fsync (one per batch, not per click).

use std::path::{Path, PathBuf};

use parking_lot_free::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Change, ClickRow, Entity, Kind, Result, Store, StoreError};

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
    click_id TEXT PRIMARY KEY, ts_ms INTEGER NOT NULL, smartlink INTEGER NOT NULL,
    offer INTEGER, affiliate INTEGER,
    sub1 TEXT NOT NULL, sub2 TEXT NOT NULL, sub3 TEXT NOT NULL, sub4 TEXT NOT NULL, sub5 TEXT NOT NULL,
    ip TEXT NOT NULL, country TEXT NOT NULL, device TEXT NOT NULL, os TEXT NOT NULL,
    browser TEXT NOT NULL, language TEXT NOT NULL, referrer TEXT NOT NULL, user_agent TEXT NOT NULL,
    reason TEXT NOT NULL, fallback_reason TEXT, propensity REAL NOT NULL);
CREATE INDEX IF NOT EXISTS clicks_ts ON clicks (ts_ms);
";

pub struct SqliteStore {
    path: PathBuf,
    write: Mutex<Connection>,
    read: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn open(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    Ok(c)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn kind_of(s: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == s)
}

impl SqliteStore {
    /// Opens (creating if needed) `smartlink.db` in `data_dir`.
    pub fn open_dir(data_dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
        SqliteStore::open(&data_dir.join("smartlink.db"))
    }

    pub fn open(path: &Path) -> Result<SqliteStore> {
        let write = open(path)?;
        write.execute_batch(SCHEMA)?;
        let read = open(path)?;
        Ok(SqliteStore { path: path.to_path_buf(), write: Mutex::new(write), read: Mutex::new(read) })
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
        out.sort_by(|a, b| (a.kind, a.key).cmp(&(b.kind, b.key)));
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
                out.push((kind, id, key));
            }
        }
        Ok(out)
    }

    fn apply(&self, changes: &[Change]) -> Result<()> {
        let mut c = self.write.lock();
        let tx = c.transaction()?;
        let now = now_ms();
        for ch in changes {
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
                        // Click ids carry keys in 24 bits.
                        if next >= 1 << 24 {
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
        let mut c = self.write.lock();
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO clicks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                 ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
            )?;
            for k in batch {
                st.execute(params![
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
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn click_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64)>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached(
            "SELECT offer, COUNT(*) FROM clicks WHERE ts_ms >= ?1 AND ts_ms < ?2 AND offer IS NOT NULL GROUP BY offer",
        )?;
        let rows = st.query_map(params![from_ms, to_ms], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u64>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn count_clicks(&self) -> Result<u64> {
        let c = self.read.lock();
        Ok(c.query_row("SELECT COUNT(*) FROM clicks", [], |r| r.get(0))?)
    }

    fn clicks_since(&self, from_ms: i64, limit: usize) -> Result<Vec<ClickRow>> {
        let c = self.read.lock();
        let mut st = c.prepare_cached("SELECT * FROM clicks WHERE ts_ms >= ?1 ORDER BY ts_ms, click_id LIMIT ?2")?;
        let rows = st.query_map(params![from_ms, limit as i64], row_to_click)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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
    fn keys_are_stable_and_survive_deletes() {
        let (_d, s) = store();
        s.apply(&[put(Kind::Offer, "a", "{}"), put(Kind::Offer, "b", "{}")]).unwrap();
        s.apply(&[Change::Delete { kind: Kind::Offer, id: "a".into() }]).unwrap();
        s.apply(&[put(Kind::Offer, "c", "{}"), put(Kind::Offer, "a", "{\"x\":1}")]).unwrap();
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
        let batch =
            vec![click("x", 10, Some(1)), click("y", 20, Some(1)), click("z", 30, None), click("w", 40, Some(2))];
        s.insert_clicks(&batch).unwrap();
        s.insert_clicks(&batch[..2]).unwrap();
        assert_eq!(s.count_clicks().unwrap(), 4);
        assert_eq!(s.click_counts(0, 35).unwrap(), vec![(1, 2)]);
        let since: Vec<_> = s.clicks_since(20, 10).unwrap().into_iter().map(|c| c.click_id).collect();
        assert_eq!(since, vec!["y", "z", "w"]);
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
