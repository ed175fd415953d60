//! The PostgreSQL implementation of [`Store`] (issue 19), for several
//! stateless nodes on one database. Same observable behaviour as
//! [`crate::SqliteStore`]; `tests/conformance.rs` runs one suite on both.
//!
//! - Migrations are versioned (`schema_migrations`) and run by one node at
//!   a time under a session advisory lock; a second connect is a no-op.
//! - Writers that SQLite serialises with its one write lock are serialised
//!   here with transaction-level advisory locks: definition changes (two
//!   nodes applying at once both land, never lost), and the writers of each
//!   table the change feed follows (clicks, conversion history, cost
//!   imports), so that a feed mark (a `bigserial` id) seen committed has
//!   every smaller id of that table committed too, as SQLite's row ids do.
//! - Click batches are loaded with binary `COPY` into a per-connection
//!   temporary table, then moved into `clicks` by an anti-join on the
//!   (second, click id) key under the clicks lock (a replayed row counts
//!   once); the inserted rows (`RETURNING`) are aggregated in Rust
//!   and added to the hourly and daily rollups in the same transaction, one
//!   `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE` per table,
//!   in key order (two writers take row locks in the same order).
//! - Conversions dedup on the unique (click, event, txid) key: a postback
//!   looks its conversion up with `FOR UPDATE` and inserts with
//!   `ON CONFLICT DO NOTHING` when none exists; a racing insert from another
//!   node makes it look up again, never insert twice.
//! - Every writer of the rollups (click batches, postback batches, cost
//!   imports) adds to them once, at its end, tables in one order and cells
//!   in key order: they lock rollup rows in one global order and cannot
//!   deadlock on them. A transaction that dies on a deadlock or a
//!   serialisation failure all the same is run again from the start (a few
//!   times).
//! - Connections come from a small pool of our own ([`Pool`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, NoTls, Row, Transaction};

use crate::feed::{micros, FeedClick, FeedConversion, FeedMarks};
use crate::sqlite::{
    coarse_table, conversion_cell, conversion_measures, event_json, kind_of, now_ms, raw_dim, rollup_in_parts,
    rollup_tables, CellKey, DAY_MS, HOUR_MS, LEVELS,
};
use crate::{
    quality_class, AlertRow, AlertStore, Attempt, AttemptRow, AuditClickRow, Change, ClickQuery, ClickRow, ConvStatus,
    ConversionFilter, ConversionRow, ConversionStore, CostImport, CostImportRow, CostImported, DigestAttempt,
    DigestRow, DigestStore, Dim, DimValue, Entity, HistoryEntry, HistoryRow, Kind, Measures, OutboxItem, OutboxState,
    PostbackIn, QualityStore, Recorded, Result, RollupQuery, RollupStore, SourceCounts, SourceQuery, Store, StoreError,
};
use smartlink_core::conversion::Transition;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        // Only reads run under a statement timeout.
        if e.code() == Some(&SqlState::QUERY_CANCELED) {
            return StoreError::Timeout;
        }
        StoreError::Pg(e)
    }
}

/// A deadlock or a serialisation failure: the transaction is run again.
fn transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Pg(p) if matches!(p.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
        || *c == SqlState::T_R_SERIALIZATION_FAILURE))
}

/// Advisory lock keys (one 64-bit space per database): "smartlk" + a byte.
const LOCK_MIGRATE: i64 = 0x736d_6172_746c_6b00;
const LOCK_DEFINITIONS: i64 = LOCK_MIGRATE + 1;
const LOCK_CLICKS: i64 = LOCK_MIGRATE + 2;
const LOCK_CONVERSIONS: i64 = LOCK_MIGRATE + 3;
const LOCK_COST_IMPORTS: i64 = LOCK_MIGRATE + 4;
/// Session locks: the definitions lock a whole admin change holds (read,
/// compute, write), and the leader lease.
const LOCK_ADMIN: i64 = LOCK_MIGRATE + 5;
const LOCK_LEADER: i64 = LOCK_MIGRATE + 6;

/// The channel `NOTIFY` signals definition and meta changes on.
const DEFINITIONS_CHANNEL: &str = "smartlink_definitions";

/// How often a transaction is tried when it dies on a deadlock or a
/// serialisation failure.
const TRIES: usize = 8;

/// The schema, one entry per version, applied in order and never edited
/// once released: a change is a new version.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "the store as of SQLite's schema with costs and digests", V1),
    (2, "a definitions version, bumped and signalled (NOTIFY) by every change of entities or meta", V2),
    (3, "click-cap units taken per offer and local day, and held per node (cap leases)", V3),
    (4, "the node that loaded each click row and recorded each conversion history row (learning)", V4),
    (5, "the admin token kept as its hash, not in clear", V5),
];

/// `cap_usage.taken` is what every node took in total (never above the cap
/// the taker passed: the row is locked, read, and raised by at most what is
/// left); `cap_leases.held` is each node's share of it not yet given back.
/// Units are given back only by the node holding them.
const V3: &str = r#"
CREATE TABLE cap_usage (
    offer BIGINT NOT NULL, day BIGINT NOT NULL, taken BIGINT NOT NULL CHECK (taken >= 0),
    PRIMARY KEY (offer, day));
CREATE TABLE cap_leases (
    offer BIGINT NOT NULL, day BIGINT NOT NULL, node TEXT COLLATE "C" NOT NULL,
    held BIGINT NOT NULL CHECK (held >= 0), updated_ms BIGINT NOT NULL,
    PRIMARY KEY (offer, day, node));
"#;

/// Which node wrote a row: nodes learn from each other's rows and skip
/// their own (numbered 4: 3 is the cap leases'; every version not yet
/// applied runs, so the order the two arrive in does not matter).
const V4: &str = r#"
ALTER TABLE clicks ADD COLUMN node BIGINT;
ALTER TABLE conversion_history ADD COLUMN node BIGINT;
"#;

/// Nodes check the admin token against its hash (`sha256:` + hex, the
/// form affiliate keys are kept in): a store that held the token in clear
/// keeps only the hash from here on.
const V5: &str = r#"
INSERT INTO meta (key, value)
    SELECT 'admin_token_sha256', 'sha256:' || encode(sha256(convert_to(value, 'UTF8')), 'hex')
    FROM meta WHERE key = 'admin_token'
    ON CONFLICT (key) DO NOTHING;
DELETE FROM meta WHERE key = 'admin_token';
"#;

const V2: &str = r#"
CREATE TABLE definitions_version (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version BIGINT NOT NULL);
INSERT INTO definitions_version (one, version) VALUES (TRUE, 0);
CREATE FUNCTION smartlink_definitions_changed() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    UPDATE definitions_version SET version = version + 1;
    PERFORM pg_notify('smartlink_definitions', '');
    RETURN NULL;
END
$f$;
CREATE TRIGGER entities_changed AFTER INSERT OR UPDATE OR DELETE ON entities
    FOR EACH STATEMENT EXECUTE FUNCTION smartlink_definitions_changed();
CREATE TRIGGER meta_changed AFTER INSERT OR UPDATE OR DELETE ON meta
    FOR EACH STATEMENT EXECUTE FUNCTION smartlink_definitions_changed();
"#;

const V1: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entity_keys (
    kind TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, key BIGINT NOT NULL,
    PRIMARY KEY (kind, id), UNIQUE (kind, key));
CREATE TABLE entities (
    kind TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, spec TEXT NOT NULL, updated_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE entity_history (
    id BIGSERIAL PRIMARY KEY, ts_ms BIGINT NOT NULL, kind TEXT COLLATE "C" NOT NULL, entity TEXT COLLATE "C" NOT NULL,
    action TEXT NOT NULL, old_spec TEXT, new_spec TEXT, actor TEXT NOT NULL);
CREATE INDEX entity_history_entity ON entity_history (kind, entity, id);
-- rid: the insertion order the change feed follows (SQLite's rowid).
CREATE TABLE clicks (
    rid BIGSERIAL PRIMARY KEY,
    click_id TEXT COLLATE "C" NOT NULL, ts_ms BIGINT NOT NULL, smartlink BIGINT NOT NULL,
    offer BIGINT, affiliate BIGINT,
    sub1 TEXT NOT NULL, sub2 TEXT NOT NULL, sub3 TEXT NOT NULL, sub4 TEXT NOT NULL, sub5 TEXT NOT NULL,
    ip TEXT NOT NULL, country TEXT NOT NULL, device TEXT NOT NULL, os TEXT NOT NULL,
    browser TEXT NOT NULL, language TEXT NOT NULL, referrer TEXT NOT NULL, user_agent TEXT NOT NULL,
    reason TEXT NOT NULL, fallback_reason TEXT, propensity DOUBLE PRECISION NOT NULL CHECK (propensity <> 'NaN'),
    quality TEXT NOT NULL DEFAULT 'human', quality_score BIGINT NOT NULL DEFAULT 0,
    quality_reasons TEXT NOT NULL DEFAULT '', cost DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (cost <> 'NaN'),
    source BIGINT);
-- Keyed by (second, click id) as in SQLite: the click id carries its second.
CREATE UNIQUE INDEX clicks_key ON clicks ((ts_ms / 1000), click_id);
CREATE INDEX clicks_affiliate ON clicks (affiliate, ts_ms);
CREATE TABLE conversions (
    id BIGSERIAL PRIMARY KEY, click_id TEXT COLLATE "C" NOT NULL, event TEXT COLLATE "C" NOT NULL,
    txid TEXT COLLATE "C" NOT NULL, status TEXT NOT NULL,
    payout DOUBLE PRECISION NOT NULL CHECK (payout <> 'NaN'), currency TEXT NOT NULL,
    payout_base DOUBLE PRECISION NOT NULL CHECK (payout_base <> 'NaN'),
    smartlink BIGINT NOT NULL, offer BIGINT NOT NULL, affiliate BIGINT,
    country TEXT NOT NULL, device TEXT NOT NULL, os TEXT NOT NULL, browser TEXT NOT NULL, language TEXT NOT NULL,
    click_ts_ms BIGINT NOT NULL, ts_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, approved_ms BIGINT,
    over_cap BIGINT NOT NULL, ctit_secs BIGINT NOT NULL,
    quality TEXT NOT NULL DEFAULT 'human', quality_flags TEXT NOT NULL DEFAULT '',
    cost DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (cost <> 'NaN'),
    UNIQUE (click_id, event, txid));
CREATE INDEX conversions_ts ON conversions (ts_ms);
CREATE INDEX conversions_approved ON conversions (approved_ms);
CREATE INDEX conversions_click_ts ON conversions (click_ts_ms);
CREATE TABLE conversion_history (
    rid BIGSERIAL PRIMARY KEY, conversion_id BIGINT NOT NULL, ts_ms BIGINT NOT NULL, from_status TEXT,
    to_status TEXT NOT NULL, source TEXT NOT NULL, reason TEXT);
CREATE INDEX conversion_history_id ON conversion_history (conversion_id);
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY, conversion_id BIGINT NOT NULL, status TEXT NOT NULL,
    target TEXT NOT NULL, url TEXT NOT NULL, payout_share DOUBLE PRECISION NOT NULL CHECK (payout_share <> 'NaN'),
    state TEXT NOT NULL, attempts BIGINT NOT NULL, next_at_ms BIGINT NOT NULL, last_http_status BIGINT,
    last_error TEXT, created_ms BIGINT NOT NULL,
    UNIQUE (conversion_id, status, target));
CREATE INDEX outbox_due ON outbox (state, next_at_ms);
CREATE TABLE outbox_attempts (
    rid BIGSERIAL PRIMARY KEY, outbox_id BIGINT NOT NULL, ts_ms BIGINT NOT NULL, url TEXT NOT NULL,
    http_status BIGINT, latency_ms BIGINT NOT NULL, error TEXT);
CREATE INDEX outbox_attempts_id ON outbox_attempts (outbox_id);
CREATE TABLE rollup_hour (
    hour_ms BIGINT NOT NULL, smartlink BIGINT NOT NULL, offer BIGINT NOT NULL, affiliate BIGINT NOT NULL,
    country TEXT NOT NULL, device TEXT NOT NULL, os TEXT NOT NULL, browser TEXT NOT NULL, language TEXT NOT NULL,
    quality TEXT NOT NULL DEFAULT 'human', @MEASURES@,
    PRIMARY KEY (hour_ms, smartlink, offer, affiliate, country, device, os, browser, language, quality));
@COARSE@
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY, ts_ms BIGINT NOT NULL, kind TEXT NOT NULL, smartlink TEXT NOT NULL,
    offer TEXT, segment TEXT, message TEXT NOT NULL, dedup TEXT NOT NULL UNIQUE);
CREATE TABLE digests (
    id BIGSERIAL PRIMARY KEY, smartlink TEXT NOT NULL, period_start_ms BIGINT NOT NULL,
    period_end_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL, body TEXT NOT NULL,
    delivery TEXT, attempts BIGINT NOT NULL DEFAULT 0, next_at_ms BIGINT NOT NULL,
    last_http_status BIGINT, last_error TEXT, delivered_ms BIGINT,
    UNIQUE (smartlink, period_start_ms));
CREATE INDEX digests_due ON digests (delivery, next_at_ms);
CREATE TABLE cost_imports (
    id BIGSERIAL PRIMARY KEY, ts_ms BIGINT NOT NULL, actor TEXT NOT NULL,
    from_ms BIGINT NOT NULL, to_ms BIGINT NOT NULL, description TEXT NOT NULL,
    amount DOUBLE PRECISION NOT NULL, clicks BIGINT NOT NULL);
"#;

const MEASURES: &str = "clicks BIGINT NOT NULL DEFAULT 0, fallback_clicks BIGINT NOT NULL DEFAULT 0,
    approved BIGINT NOT NULL DEFAULT 0, pending BIGINT NOT NULL DEFAULT 0, rejected BIGINT NOT NULL DEFAULT 0,
    chargebacks BIGINT NOT NULL DEFAULT 0, revenue DOUBLE PRECISION NOT NULL DEFAULT 0,
    cost DOUBLE PRECISION NOT NULL DEFAULT 0";

fn is_key_dim(d: Dim) -> bool {
    matches!(d, Dim::Smartlink | Dim::Offer | Dim::Affiliate | Dim::Source)
}

/// A migration's SQL with the generated parts filled in.
fn migration_sql(sql: &str) -> String {
    let mut coarse = String::new();
    for (name, dims) in LEVELS {
        for day in [false, true] {
            let (table, time) = coarse_table(name, day);
            let cols: Vec<String> = dims
                .iter()
                .map(|d| format!("{} {} NOT NULL", d.column(), if is_key_dim(*d) { "BIGINT" } else { "TEXT" }))
                .collect();
            let key = dims.iter().map(|d| d.column()).collect::<Vec<_>>().join(", ");
            coarse.push_str(&format!(
                "CREATE TABLE {table} ({time} BIGINT NOT NULL, {}, {MEASURES}, PRIMARY KEY ({time}, {key}));\n",
                cols.join(", ")
            ));
        }
    }
    sql.replace("@MEASURES@", MEASURES).replace("@COARSE@", &coarse)
}

/// A small connection pool: idle connections are reused, at most `max` are
/// open, a caller waits for one when all are busy, and a broken connection
/// is dropped and replaced on demand (one idle for a while is checked with
/// a round trip first, so a database restart costs no failed call). (r2d2 would do; its last release is
/// from 2022, it brings a thread pool of its own, and this is all we use.)
pub(crate) struct Pool {
    config: postgres::Config,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
    /// The read time limit, ms (0: none).
    limit_ms: AtomicU64,
}

struct PoolState {
    /// Idle connections with the statement timeout each has set and when
    /// each was returned.
    idle: Vec<(Client, u64, std::time::Instant)>,
    open: usize,
}

/// A connection idle longer than this is checked before it is handed out.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How long a caller waits for a connection before giving up.
const POOL_WAIT: Duration = Duration::from_secs(30);

impl Pool {
    fn get(&self) -> Result<Conn<'_>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = std::time::Instant::now() + POOL_WAIT;
        loop {
            if let Some((mut client, timeout_ms, since)) = st.idle.pop() {
                if !client.is_closed() && since.elapsed() > IDLE_CHECK {
                    drop(st);
                    let ok = client.is_valid(Duration::from_secs(5)).is_ok();
                    st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    if ok {
                        return Ok(Conn { pool: self, client: Some(client), timeout_ms });
                    }
                    st.open -= 1;
                    continue;
                }
                if client.is_closed() {
                    st.open -= 1;
                    continue;
                }
                return Ok(Conn { pool: self, client: Some(client), timeout_ms });
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Conn { pool: self, client: Some(client), timeout_ms: 0 }),
                    Err(e) => {
                        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        st.open -= 1;
                        self.freed.notify_one();
                        Err(e.into())
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(StoreError::Invalid(format!(
                    "no PostgreSQL connection free within {} s (all {} busy)",
                    POOL_WAIT.as_secs(),
                    self.max
                )));
            }
            st = self.freed.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// A connection for reads, under the read time limit.
    fn read(&self) -> Result<Conn<'_>> {
        let mut c = self.get()?;
        c.set_timeout(self.limit_ms.load(Ordering::Relaxed))?;
        Ok(c)
    }

    /// A connection for writes (no time limit).
    fn write(&self) -> Result<Conn<'_>> {
        let mut c = self.get()?;
        c.set_timeout(0)?;
        Ok(c)
    }
}

/// A pooled connection, returned to the pool when dropped.
pub(crate) struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    timeout_ms: u64,
}

impl Conn<'_> {
    fn set_timeout(&mut self, ms: u64) -> Result<()> {
        if self.timeout_ms != ms {
            self.batch_execute(&format!("SET statement_timeout = {ms}"))?;
            self.timeout_ms = ms;
        }
        Ok(())
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a pooled connection")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a pooled connection")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        let mut st = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        if client.is_closed() {
            st.open -= 1;
        } else {
            st.idle.push((client, self.timeout_ms, std::time::Instant::now()));
        }
        self.pool.freed.notify_one();
    }
}

/// How long opening a connection may take (unless the URL says).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections a store opens at most.
const POOL_SIZE: usize = 8;

/// The PostgreSQL store. Cheap to share between threads (`Arc`).
pub struct PgStore {
    pool: Pool,
    /// The URL without its password, for messages.
    url: String,
    /// This node's id (random, positive), written on the click and
    /// conversion history rows it writes.
    node: i64,
}

/// A random positive id for a node (std's hasher keys come from the OS's
/// random source; the time and process id only add to them).
fn random_node() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    ((h.finish() >> 1) | 1) as i64
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`, or
    /// libpq's `key=value` form) and brings the schema up to date: the
    /// migrations not yet recorded in `schema_migrations` run, in order,
    /// each in its own transaction, while this node holds an advisory lock
    /// (another node starting at the same time waits, then finds nothing to
    /// do). TLS is not supported yet (`sslmode=disable` or `prefer`).
    pub fn connect(url: &str) -> Result<PgStore> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| StoreError::Invalid(format!("store URL {}: {e}", crate::redact_url(url))))?;
        // An unreachable server fails a call within seconds (a postback
        // answers 503 then) instead of waiting for the kernel's TCP
        // timeouts; a URL's own `connect_timeout` wins.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives_idle(Duration::from_secs(10));
        let store = PgStore {
            pool: Pool {
                config,
                max: POOL_SIZE,
                state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
                freed: Condvar::new(),
                limit_ms: AtomicU64::new(0),
            },
            url: crate::redact_url(url),
            node: random_node(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        let mut c = self.pool.write()?;
        c.execute("SELECT pg_advisory_lock($1)", &[&LOCK_MIGRATE])?;
        let r = (|| -> Result<()> {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,
                   applied_ms BIGINT NOT NULL, description TEXT NOT NULL)",
            )?;
            let have: Vec<i64> =
                c.query("SELECT version FROM schema_migrations", &[])?.iter().map(|r| r.get(0)).collect();
            for (version, description, sql) in MIGRATIONS.iter().filter(|(v, _, _)| !have.contains(v)) {
                let mut tx = c.transaction()?;
                tx.batch_execute(&migration_sql(sql))?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_ms, description) VALUES ($1, $2, $3)",
                    &[version, &now_ms(), description],
                )?;
                tx.commit()?;
            }
            Ok(())
        })();
        c.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_MIGRATE])?;
        r
    }

    /// The schema versions applied, oldest first.
    pub fn schema_versions(&self) -> Result<Vec<i64>> {
        let mut c = self.pool.read()?;
        Ok(c.query("SELECT version FROM schema_migrations ORDER BY version", &[])?.iter().map(|r| r.get(0)).collect())
    }

    /// How long one read query may run before PostgreSQL cancels it and the
    /// caller gets [`StoreError::Timeout`] (`None`, the default: no limit).
    pub fn set_query_timeout(&self, limit: Option<Duration>) {
        let ms = limit.map_or(0, |d| (d.as_millis() as u64).max(1));
        self.pool.limit_ms.store(ms, Ordering::Relaxed);
    }

    /// The store's URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The plan PostgreSQL picks for the click log's query, or (`None`) for
    /// the lookup of one click. For tests.
    #[doc(hidden)]
    pub fn explain_click_query(&self, q: Option<&ClickQuery>) -> Result<String> {
        let (sql, args) = match q {
            Some(q) => click_log_sql(q),
            None => (
                format!("SELECT {CLICK_COLS} FROM clicks WHERE ts_ms / 1000 = $1 AND click_id = $2"),
                vec![Box::new(1i64) as Param, Box::new("x".to_string())],
            ),
        };
        let mut c = self.pool.read()?;
        let rows = c.query(&format!("EXPLAIN {sql}"), &refs(&args))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n"))
    }

    /// Runs `f` in a write transaction holding the given advisory locks
    /// (always taken in the order given: callers list them in key order),
    /// again from the start when it dies on a deadlock or a serialisation
    /// failure.
    fn write_tx<T>(&self, locks: &[i64], mut f: impl FnMut(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut c = self.pool.write()?;
        let mut tries = 0;
        loop {
            tries += 1;
            let r = (|| {
                let mut tx = c.transaction()?;
                for l in locks {
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[l])?;
                }
                let v = f(&mut tx)?;
                tx.commit()?;
                Ok(v)
            })();
            match r {
                Err(e) if tries < TRIES && transient(&e) => {
                    std::thread::sleep(Duration::from_millis(5 * tries as u64));
                    continue;
                }
                r => return r,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parameters and rows.

type Param = Box<dyn ToSql + Sync + Send>;

fn refs(args: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// `v` as a parameter, and the cast that types it.
fn dim_param(v: &DimValue) -> (Param, &'static str) {
    match v {
        DimValue::Key(k) => (Box::new(*k as i64), "bigint"),
        DimValue::Text(t) => (Box::new(t.clone()), "text"),
        DimValue::Hour(h) => (Box::new(*h), "bigint"),
    }
}

/// Appends ` AND expr IN ($n, ...)` for each non-empty filter.
fn push_filters(
    sql: &mut String,
    args: &mut Vec<Param>,
    filters: &[(Dim, Vec<DimValue>)],
    expr: impl Fn(Dim) -> String,
) {
    for (d, values) in filters.iter().filter(|(_, v)| !v.is_empty()) {
        let mut marks = Vec::with_capacity(values.len());
        for v in values {
            let (p, ty) = dim_param(v);
            args.push(p);
            marks.push(format!("${}::{ty}", args.len()));
        }
        sql.push_str(&format!(" AND {} IN ({})", expr(*d), marks.join(", ")));
    }
}

/// ` AND (reasons LIKE ... OR ...)` for quality reason codes.
fn push_reasons(sql: &mut String, args: &mut Vec<Param>, reasons: &[String], col: &str) {
    if reasons.is_empty() {
        return;
    }
    sql.push_str(" AND (");
    for (i, r) in reasons.iter().enumerate() {
        args.push(Box::new(format!("%,{r},%")));
        sql.push_str(if i == 0 { "" } else { " OR " });
        sql.push_str(&format!("(',' || {col} || ',') LIKE ${}::text", args.len()));
    }
    sql.push(')');
}

fn key(r: &Row, i: usize) -> u32 {
    r.get::<_, i64>(i) as u32
}

fn opt_key(r: &Row, i: usize) -> Option<u32> {
    r.get::<_, Option<i64>>(i).map(|k| k as u32)
}

/// The group key of a result row whose first columns are `group`.
fn row_key(r: &Row, group: &[Dim]) -> Vec<DimValue> {
    group
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            d if is_key_dim(*d) => DimValue::Key(key(r, i)),
            Dim::Hour | Dim::Day => DimValue::Hour(r.get(i)),
            _ => DimValue::Text(r.get(i)),
        })
        .collect()
}

fn status_of(s: &str) -> Result<ConvStatus> {
    ConvStatus::ALL
        .into_iter()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| StoreError::Invalid(format!("stored conversion status {s:?} is unknown")))
}

fn n_of(x: u64) -> i64 {
    x as i64
}

const CLICK_COLS: &str = "click_id, ts_ms, smartlink, offer, affiliate, sub1, sub2, sub3, sub4, sub5, ip, country,
    device, os, browser, language, referrer, user_agent, reason, fallback_reason, propensity, quality, quality_score,
    quality_reasons, cost, source";

fn row_to_click(r: &Row) -> ClickRow {
    ClickRow {
        click_id: r.get(0),
        ts_ms: r.get(1),
        smartlink: key(r, 2),
        offer: opt_key(r, 3),
        affiliate: opt_key(r, 4),
        subs: [r.get(5), r.get(6), r.get(7), r.get(8), r.get(9)],
        ip: r.get(10),
        country: r.get(11),
        device: r.get(12),
        os: r.get(13),
        browser: r.get(14),
        language: r.get(15),
        referrer: r.get(16),
        user_agent: r.get(17),
        reason: r.get(18),
        fallback_reason: r.get(19),
        propensity: r.get(20),
        quality: r.get(21),
        quality_score: r.get::<_, i64>(22).clamp(0, 255) as u8,
        quality_reasons: r.get(23),
        cost: r.get(24),
        source: opt_key(r, 25),
    }
}

const CONVERSION_COLS: &str = "c.id, c.click_id, c.event, c.txid, c.status, c.payout, c.currency, c.payout_base,
    c.smartlink, c.offer, c.affiliate, c.country, c.device, c.os, c.click_ts_ms, c.ts_ms, c.updated_ms,
    c.over_cap, c.ctit_secs, k.sub1, k.sub2, k.sub3, k.sub4, k.sub5, c.browser, c.language, c.quality, c.quality_flags,
    c.cost";

/// Joins a conversion `c` to its click row `k` (by second and click id).
const CLICK_JOIN: &str = "LEFT JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id";

fn row_to_conversion(r: &Row) -> Result<ConversionRow> {
    let sub1: Option<String> = r.get(19);
    let subs = sub1.map(|s1| [s1, r.get(20), r.get(21), r.get(22), r.get(23)]);
    Ok(ConversionRow {
        id: r.get(0),
        click_id: r.get(1),
        event: r.get(2),
        txid: r.get(3),
        status: status_of(r.get(4))?,
        payout: r.get(5),
        currency: r.get(6),
        payout_base: r.get(7),
        smartlink: key(r, 8),
        offer: key(r, 9),
        affiliate: opt_key(r, 10),
        country: r.get(11),
        device: r.get(12),
        os: r.get(13),
        click_ts_ms: r.get(14),
        ts_ms: r.get(15),
        updated_ms: r.get(16),
        over_cap: r.get::<_, i64>(17) != 0,
        ctit_secs: r.get(18),
        subs,
        browser: r.get(24),
        language: r.get(25),
        quality: r.get(26),
        quality_flags: r.get(27),
        cost: r.get(28),
    })
}

const OUTBOX_SELECT: &str = "SELECT c.id, c.click_id, c.event, c.txid, c.status, c.payout, c.currency, c.payout_base,
    c.smartlink, c.offer, c.affiliate, c.country, c.device, c.os, c.click_ts_ms, c.ts_ms, c.updated_ms,
    c.over_cap, c.ctit_secs, k.sub1, k.sub2, k.sub3, k.sub4, k.sub5, c.browser, c.language, c.quality, c.quality_flags,
    c.cost, o.id, o.status, o.target, o.url, o.payout_share, o.state, o.attempts, o.next_at_ms, o.last_http_status,
    o.last_error, (SELECT COUNT(*) FROM outbox_attempts a WHERE a.outbox_id = o.id)
    FROM outbox o JOIN conversions c ON c.id = o.conversion_id
    LEFT JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id";

fn row_to_outbox(r: &Row) -> Result<OutboxItem> {
    Ok(OutboxItem {
        conversion: row_to_conversion(r)?,
        id: r.get(29),
        status: status_of(r.get(30))?,
        target: r.get(31),
        url: r.get(32),
        payout_share: r.get(33),
        state: OutboxState::parse(r.get(34)).unwrap_or(OutboxState::Failed),
        attempts: r.get::<_, i64>(35) as u32,
        next_at_ms: r.get(36),
        last_http_status: r.get::<_, Option<i64>>(37).map(|s| s as u16),
        last_error: r.get(38),
        total_attempts: r.get::<_, i64>(39) as u32,
    })
}

const DIGEST_COLS: &str = "id, smartlink, period_start_ms, period_end_ms, created_ms, body, delivery, attempts,
    next_at_ms, last_http_status, last_error, delivered_ms";

fn row_to_digest(r: &Row) -> DigestRow {
    let delivery: Option<String> = r.get(6);
    DigestRow {
        id: r.get(0),
        smartlink: r.get(1),
        period_start_ms: r.get(2),
        period_end_ms: r.get(3),
        created_ms: r.get(4),
        body: r.get(5),
        delivery: delivery.as_deref().and_then(OutboxState::parse),
        attempts: r.get::<_, i64>(7) as u32,
        next_at_ms: r.get(8),
        last_http_status: r.get::<_, Option<i64>>(9).map(|s| s as u16),
        last_error: r.get(10),
        delivered_ms: r.get(11),
    }
}

// ---------------------------------------------------------------------------
// Rollups.

/// One part of a rollup cell's key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Part {
    I(i64),
    T(String),
}

fn part_of(k: &CellKey, d: Dim) -> Part {
    match d {
        Dim::Smartlink => Part::I(k.1 as i64),
        Dim::Offer => Part::I(k.2 as i64),
        Dim::Affiliate => Part::I(k.3 as i64),
        Dim::Country => Part::T(k.4.clone()),
        Dim::Device => Part::T(k.5.clone()),
        Dim::Os => Part::T(k.6.clone()),
        Dim::Browser => Part::T(k.7.clone()),
        Dim::Language => Part::T(k.8.clone()),
        _ => Part::T(k.9.clone()),
    }
}

/// Measures as added to a cell: six counts, revenue, cost.
#[derive(Clone, Copy, Default)]
struct Delta([i64; 6], f64, f64);

impl Delta {
    fn add(&mut self, m: &Measures, sign: i64) {
        for (i, v) in
            [m.clicks, m.fallback_clicks, m.approved, m.pending, m.rejected, m.chargebacks].into_iter().enumerate()
        {
            self.0[i] += sign * n_of(v);
        }
        self.1 += sign as f64 * m.revenue;
        self.2 += sign as f64 * m.cost;
    }
}

const HOUR_DIMS: [Dim; 9] = [
    Dim::Smartlink,
    Dim::Offer,
    Dim::Affiliate,
    Dim::Country,
    Dim::Device,
    Dim::Os,
    Dim::Browser,
    Dim::Language,
    Dim::Quality,
];

/// Adds (or with `sign` −1 removes) hourly cells to the hourly rollup and
/// the coarse ones: each table's distinct cells summed in Rust, then one
/// upsert per table, cells in key order, tables always in the same order.
fn add_to_rollups<'a>(
    tx: &mut impl GenericClient,
    cells: impl IntoIterator<Item = (&'a CellKey, Measures, i64)>,
) -> Result<()> {
    // (table, time column, dimensions) in a fixed order.
    let mut tables: Vec<(String, &'static str, &'static [Dim], i64)> =
        vec![("rollup_hour".to_string(), "hour_ms", &HOUR_DIMS, HOUR_MS)];
    for (name, dims) in LEVELS {
        for day in [false, true] {
            let (table, time) = coarse_table(name, day);
            tables.push((table, time, dims, if day { DAY_MS } else { HOUR_MS }));
        }
    }
    let mut agg: Vec<BTreeMap<(i64, Vec<Part>), Delta>> = vec![BTreeMap::new(); tables.len()];
    for (k, m, sign) in cells {
        for (i, (_, _, dims, unit)) in tables.iter().enumerate() {
            let t = k.0.div_euclid(*unit) * unit;
            let parts = dims.iter().map(|d| part_of(k, *d)).collect();
            agg[i].entry((t, parts)).or_default().add(&m, sign);
        }
    }
    for ((table, time, dims, _), cells) in tables.iter().zip(agg) {
        if cells.is_empty() {
            continue;
        }
        upsert_cells(tx, table, time, dims, cells)?;
    }
    Ok(())
}

fn upsert_cells(
    tx: &mut impl GenericClient,
    table: &str,
    time: &str,
    dims: &[Dim],
    cells: BTreeMap<(i64, Vec<Part>), Delta>,
) -> Result<()> {
    let n = cells.len();
    let mut times = Vec::with_capacity(n);
    let mut ints: Vec<Vec<i64>> = dims.iter().map(|_| Vec::with_capacity(n)).collect();
    let mut texts: Vec<Vec<String>> = dims.iter().map(|_| Vec::with_capacity(n)).collect();
    let mut counts: [Vec<i64>; 6] = Default::default();
    let (mut revenue, mut cost) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for ((t, parts), d) in cells {
        times.push(t);
        for (i, p) in parts.into_iter().enumerate() {
            match p {
                Part::I(v) => ints[i].push(v),
                Part::T(v) => texts[i].push(v),
            }
        }
        for (i, c) in d.0.into_iter().enumerate() {
            counts[i].push(c);
        }
        revenue.push(d.1);
        cost.push(d.2);
    }
    let mut args: Vec<&(dyn ToSql + Sync)> = vec![&times];
    let mut casts = vec!["$1::bigint[]".to_string()];
    for (i, d) in dims.iter().enumerate() {
        args.push(if is_key_dim(*d) { &ints[i] as &(dyn ToSql + Sync) } else { &texts[i] });
        casts.push(format!("${}::{}[]", args.len(), if is_key_dim(*d) { "bigint" } else { "text" }));
    }
    for c in &counts {
        args.push(c);
        casts.push(format!("${}::bigint[]", args.len()));
    }
    for f in [&revenue, &cost] {
        args.push(f);
        casts.push(format!("${}::float8[]", args.len()));
    }
    let cols = dims.iter().map(|d| d.column()).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "INSERT INTO {table} ({time}, {cols}, clicks, fallback_clicks, approved, pending, rejected, chargebacks,
           revenue, cost)
         SELECT * FROM unnest({})
         ON CONFLICT ({time}, {cols}) DO UPDATE SET clicks = {table}.clicks + excluded.clicks,
           fallback_clicks = {table}.fallback_clicks + excluded.fallback_clicks,
           approved = {table}.approved + excluded.approved, pending = {table}.pending + excluded.pending,
           rejected = {table}.rejected + excluded.rejected,
           chargebacks = {table}.chargebacks + excluded.chargebacks,
           revenue = {table}.revenue + excluded.revenue, cost = {table}.cost + excluded.cost",
        casts.join(", ")
    );
    tx.execute(&sql, &args)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Store.

/// The staging table a click batch is copied into (per connection, emptied
/// at commit).
const CLICKS_IN: &str = r#"CREATE TEMP TABLE IF NOT EXISTS clicks_in (
    n BIGINT NOT NULL, click_id TEXT COLLATE "C" NOT NULL, ts_ms BIGINT NOT NULL, smartlink BIGINT NOT NULL,
    offer BIGINT, affiliate BIGINT,
    sub1 TEXT NOT NULL, sub2 TEXT NOT NULL, sub3 TEXT NOT NULL, sub4 TEXT NOT NULL, sub5 TEXT NOT NULL,
    ip TEXT NOT NULL, country TEXT NOT NULL, device TEXT NOT NULL, os TEXT NOT NULL,
    browser TEXT NOT NULL, language TEXT NOT NULL, referrer TEXT NOT NULL, user_agent TEXT NOT NULL,
    reason TEXT NOT NULL, fallback_reason TEXT, propensity DOUBLE PRECISION NOT NULL,
    quality TEXT NOT NULL, quality_score BIGINT NOT NULL, quality_reasons TEXT NOT NULL,
    cost DOUBLE PRECISION NOT NULL, source BIGINT) ON COMMIT DELETE ROWS"#;

fn copy_clicks(tx: &mut Transaction<'_>, batch: &[&ClickRow]) -> Result<()> {
    tx.batch_execute(&format!("SET LOCAL client_min_messages = warning; {CLICKS_IN}"))?;
    let sink = tx.copy_in(&format!("COPY clicks_in (n, {CLICK_COLS}) FROM STDIN (FORMAT binary)"))?;
    let (int8, t, f8) = (Type::INT8, Type::TEXT, Type::FLOAT8);
    let types = [
        int8.clone(),
        t.clone(),
        int8.clone(),
        int8.clone(),
        int8.clone(),
        int8.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        t.clone(),
        f8.clone(),
        t.clone(),
        int8.clone(),
        t.clone(),
        f8,
        int8,
    ];
    let mut w = BinaryCopyInWriter::new(sink, &types);
    for (n, k) in batch.iter().enumerate() {
        let (n, sl, offer, aff, score, source) = (
            n as i64,
            k.smartlink as i64,
            k.offer.map(|o| o as i64),
            k.affiliate.map(|a| a as i64),
            k.quality_score as i64,
            k.source.map(|s| s as i64),
        );
        let quality = quality_class(&k.quality);
        w.write(&[
            &n,
            &k.click_id,
            &k.ts_ms,
            &sl,
            &offer,
            &aff,
            &k.subs[0],
            &k.subs[1],
            &k.subs[2],
            &k.subs[3],
            &k.subs[4],
            &k.ip,
            &k.country,
            &k.device,
            &k.os,
            &k.browser,
            &k.language,
            &k.referrer,
            &k.user_agent,
            &k.reason,
            &k.fallback_reason,
            &k.propensity,
            &quality,
            &score,
            &k.quality_reasons,
            &k.cost,
            &source,
        ])?;
    }
    w.finish()?;
    Ok(())
}

impl Store for PgStore {
    fn entities(&self) -> Result<Vec<Entity>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT e.kind, e.id, k.key, e.spec FROM entities e
             JOIN entity_keys k ON k.kind = e.kind AND k.id = e.id ORDER BY e.kind, k.key",
            &[],
        )?;
        let mut out: Vec<Entity> = rows
            .iter()
            .filter_map(|r| kind_of(r.get(0)).map(|kind| Entity { kind, id: r.get(1), key: key(r, 2), spec: r.get(3) }))
            .collect();
        out.sort_by_key(|e| (e.kind, e.key));
        Ok(out)
    }

    fn keys(&self) -> Result<Vec<(Kind, String, u32)>> {
        let mut c = self.pool.read()?;
        let rows = c.query("SELECT kind, id, key FROM entity_keys ORDER BY kind, key", &[])?;
        let mut out = Vec::new();
        for r in &rows {
            let Some(kind) = kind_of(r.get(0)) else { continue };
            let (id, k): (String, u32) = (r.get(1), key(r, 2));
            if kind == Kind::Offer {
                let link = smartlink_core::model::direct_link_key(k);
                out.push((Kind::Smartlink, crate::direct_link_name(&id), link));
            }
            out.push((kind, id, k));
        }
        Ok(out)
    }

    fn apply(&self, changes: &[Change], actor: &str) -> Result<()> {
        self.write_tx(&[LOCK_DEFINITIONS], |tx| {
            let now = now_ms();
            for ch in changes {
                let (kind, id) = match ch {
                    Change::Put { kind, id, .. } | Change::Delete { kind, id } => (kind, id),
                };
                let old: Option<String> = tx
                    .query_opt("SELECT spec FROM entities WHERE kind = $1 AND id = $2", &[&kind.as_str(), id])?
                    .map(|r| r.get(0));
                let (action, new) = match ch {
                    Change::Put { spec, .. } => (if old.is_some() { "update" } else { "create" }, Some(spec.as_str())),
                    Change::Delete { .. } => ("delete", None),
                };
                if old.as_deref() != new {
                    tx.execute(
                        "INSERT INTO entity_history (ts_ms, kind, entity, action, old_spec, new_spec, actor)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[&now, &kind.as_str(), id, &action, &old, &new, &actor],
                    )?;
                }
                match ch {
                    Change::Put { kind, id, spec } => {
                        let known = tx
                            .query_opt(
                                "SELECT key FROM entity_keys WHERE kind = $1 AND id = $2",
                                &[&kind.as_str(), id],
                            )?
                            .is_some();
                        if !known {
                            let next: i64 = tx
                                .query_one(
                                    "SELECT COALESCE(MAX(key), 0) + 1 FROM entity_keys WHERE kind = $1",
                                    &[&kind.as_str()],
                                )?
                                .get(0);
                            // As in SQLite: 23 bits for offers and smartlinks
                            // (a link key's top bit marks a direct link), 24
                            // for the others.
                            let bits = if matches!(kind, Kind::Offer | Kind::Smartlink) { 23 } else { 24 };
                            if next >= 1 << bits {
                                return Err(StoreError::KeysExhausted(kind.as_str()));
                            }
                            tx.execute(
                                "INSERT INTO entity_keys (kind, id, key) VALUES ($1, $2, $3)",
                                &[&kind.as_str(), id, &next],
                            )?;
                        }
                        tx.execute(
                            "INSERT INTO entities (kind, id, spec, updated_ms) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (kind, id) DO UPDATE SET spec = excluded.spec,
                               updated_ms = excluded.updated_ms",
                            &[&kind.as_str(), id, spec, &now],
                        )?;
                    }
                    Change::Delete { kind, id } => {
                        tx.execute("DELETE FROM entities WHERE kind = $1 AND id = $2", &[&kind.as_str(), id])?;
                    }
                }
            }
            Ok(())
        })
    }

    fn record_event(&self, kind: Kind, id: &str, event: &str, ts_ms: i64) -> Result<()> {
        let mut c = self.pool.write()?;
        c.execute(
            "INSERT INTO entity_history (ts_ms, kind, entity, action, old_spec, new_spec, actor)
             VALUES ($1, $2, $3, 'event', NULL, $4, 'system')",
            &[&ts_ms, &kind.as_str(), &id, &event_json(event)],
        )?;
        Ok(())
    }

    fn history(&self, kind: Option<Kind>, id: Option<&str>, limit: usize) -> Result<Vec<HistoryRow>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT id, ts_ms, kind, entity, action, old_spec, new_spec, actor FROM entity_history
             WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR entity = $2) ORDER BY id DESC LIMIT $3",
            &[&kind.map(|k| k.as_str()), &id, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| HistoryRow {
                id: r.get(0),
                ts_ms: r.get(1),
                kind: kind_of(r.get(2)).unwrap_or(Kind::Offer),
                entity: r.get(3),
                action: r.get(4),
                old_spec: r.get(5),
                new_spec: r.get(6),
                actor: r.get(7),
            })
            .collect())
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let mut c = self.pool.read()?;
        Ok(c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?.map(|r| r.get(0)))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let mut c = self.pool.write()?;
        c.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String> {
        let mut c = self.pool.write()?;
        c.execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", &[&key, &value])?;
        Ok(c.query_one("SELECT value FROM meta WHERE key = $1", &[&key])?.get(0))
    }

    fn shared(&self) -> Option<&dyn crate::SharedStore> {
        Some(self)
    }

    fn insert_clicks(&self, batch: &[ClickRow]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // A row repeated within the batch counts once (the first, as in
        // SQLite's row-by-row `INSERT OR IGNORE`).
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        let rows: Vec<&ClickRow> =
            batch.iter().filter(|k| seen.insert((k.ts_ms / 1000, k.click_id.as_str()))).collect();
        self.write_tx(&[LOCK_CLICKS], |tx| {
            copy_clicks(tx, &rows)?;
            // Only the rows actually inserted count: a replayed row is
            // already in the rollups. Under the clicks lock no other
            // transaction inserts clicks, so an anti-join finds the rows
            // already stored (40% faster than `ON CONFLICT DO NOTHING`'s
            // speculative insertion; the unique key still refuses a
            // duplicate should anything insert without the lock). Probing
            // the key per row: a hash join would read every stored click.
            tx.batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")?;
            let inserted = tx.query(
                &format!(
                    "INSERT INTO clicks ({CLICK_COLS}, node) SELECT {CLICK_COLS}, $1::bigint FROM clicks_in i
                     WHERE NOT EXISTS (SELECT 1 FROM clicks c
                       WHERE c.ts_ms / 1000 = i.ts_ms / 1000 AND c.click_id = i.click_id)
                     ORDER BY n
                     RETURNING ts_ms, smartlink, offer, affiliate, country, device, os, browser, language, quality,
                       cost"
                ),
                &[&self.node],
            )?;
            tx.batch_execute("SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on")?;
            let mut cells: HashMap<CellKey, Measures> = HashMap::new();
            for r in &inserted {
                let offer = opt_key(r, 2);
                let ts: i64 = r.get(0);
                let cell: CellKey = (
                    ts.div_euclid(HOUR_MS) * HOUR_MS,
                    key(r, 1),
                    offer.unwrap_or(0),
                    opt_key(r, 3).unwrap_or(0),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                );
                let m = cells.entry(cell).or_default();
                m.clicks += 1;
                m.fallback_clicks += offer.is_none() as u64;
                m.cost += r.get::<_, f64>(10);
            }
            add_to_rollups(tx, cells.iter().map(|(k, m)| (k, *m, 1)))
        })
    }

    fn click_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64)>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT offer, COUNT(*) FROM clicks WHERE ts_ms / 1000 BETWEEN $1::bigint / 1000 AND $2::bigint / 1000
             AND ts_ms >= $1 AND ts_ms < $2 AND offer IS NOT NULL GROUP BY offer",
            &[&from_ms, &to_ms],
        )?;
        Ok(rows.iter().map(|r| (key(r, 0), r.get::<_, i64>(1) as u64)).collect())
    }

    fn count_clicks(&self) -> Result<u64> {
        let mut c = self.pool.read()?;
        Ok(c.query_one("SELECT COUNT(*) FROM clicks", &[])?.get::<_, i64>(0) as u64)
    }

    fn import_costs(&self, imp: &CostImport) -> Result<CostImported> {
        if !(imp.amount.is_finite() && imp.amount >= 0.0 && imp.amount < 1e12) {
            return Err(StoreError::Invalid(format!("amount: expected 0 or more, got {}", imp.amount)));
        }
        if imp.to_ms <= imp.from_ms {
            return Err(StoreError::Invalid("the period is empty: `to` must be after `from`".into()));
        }
        self.write_tx(&[LOCK_CLICKS, LOCK_COST_IMPORTS], |tx| {
            let mut sql = String::from(
                "SELECT rid, ts_ms, smartlink, COALESCE(offer, 0), COALESCE(affiliate, 0), country, device, os,
                 browser, language, quality, cost FROM clicks k
                 WHERE ts_ms / 1000 BETWEEN $1::bigint / 1000 AND $2::bigint / 1000 AND ts_ms >= $1 AND ts_ms < $2",
            );
            let mut args: Vec<Param> = vec![Box::new(imp.from_ms), Box::new(imp.to_ms)];
            push_filters(&mut sql, &mut args, &imp.filters, |d| raw_dim(d, "k"));
            sql.push_str(" ORDER BY ts_ms / 1000, click_id FOR UPDATE");
            let covered: Vec<(i64, CellKey, f64)> = tx
                .query(&sql, &refs(&args))?
                .iter()
                .map(|r| {
                    let ts: i64 = r.get(1);
                    let cell: CellKey = (
                        ts.div_euclid(HOUR_MS) * HOUR_MS,
                        key(r, 2),
                        key(r, 3),
                        key(r, 4),
                        r.get(5),
                        r.get(6),
                        r.get(7),
                        r.get(8),
                        r.get(9),
                        quality_class(r.get(10)).to_string(),
                    );
                    (r.get(0), cell, r.get(11))
                })
                .collect();
            if covered.is_empty() {
                return Err(StoreError::Invalid(
                    "no clicks match this period and scope: there is nothing to spread the amount over".into(),
                ));
            }
            // As in SQLite: shares in millionths, as even as integers allow,
            // the remainder one millionth each to the earliest clicks.
            let total = (imp.amount * 1e6).round() as i64;
            let n = covered.len() as i64;
            let (each, rest) = (total / n, total % n);
            let mut deltas: HashMap<CellKey, Measures> = HashMap::new();
            let mut replaced = 0.0;
            let (mut rids, mut shares) = (Vec::with_capacity(covered.len()), Vec::with_capacity(covered.len()));
            for (i, (rid, cell, old)) in covered.iter().enumerate() {
                let share = (each + ((i as i64) < rest) as i64) as f64 / 1e6;
                rids.push(*rid);
                shares.push(share);
                replaced += old;
                deltas.entry(cell.clone()).or_default().cost += share - old;
            }
            tx.execute(
                "UPDATE clicks SET cost = u.cost FROM unnest($1::bigint[], $2::float8[]) AS u(rid, cost)
                 WHERE clicks.rid = u.rid",
                &[&rids, &shares],
            )?;
            add_to_rollups(tx, deltas.iter().map(|(k, m)| (k, *m, 1)))?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO cost_imports (ts_ms, actor, from_ms, to_ms, description, amount, clicks)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[&imp.ts_ms, &imp.actor, &imp.from_ms, &imp.to_ms, &imp.description, &(total as f64 / 1e6), &n],
                )?
                .get(0);
            Ok(CostImported { id, clicks: n as u64, replaced })
        })
    }

    fn cost_imports(&self, limit: usize) -> Result<Vec<CostImportRow>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT id, ts_ms, actor, from_ms, to_ms, description, amount, clicks FROM cost_imports
             ORDER BY id DESC LIMIT $1",
            &[&(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| CostImportRow {
                id: r.get(0),
                ts_ms: r.get(1),
                actor: r.get(2),
                from_ms: r.get(3),
                to_ms: r.get(4),
                description: r.get(5),
                amount: r.get(6),
                clicks: r.get::<_, i64>(7) as u64,
            })
            .collect())
    }

    fn clicks_since(&self, from_ms: i64, after: Option<&str>, limit: usize) -> Result<Vec<ClickRow>> {
        let mut c = self.pool.read()?;
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = match after {
            None => c.query(
                &format!(
                    "SELECT {CLICK_COLS} FROM clicks WHERE ts_ms / 1000 >= $1::bigint / 1000 AND ts_ms >= $1
                     ORDER BY ts_ms / 1000, click_id LIMIT $2"
                ),
                &[&from_ms, &limit],
            )?,
            Some(id) => c.query(
                &format!(
                    "SELECT {CLICK_COLS} FROM clicks WHERE (ts_ms / 1000, click_id) > ($1::bigint / 1000, $2::text)
                     ORDER BY ts_ms / 1000, click_id LIMIT $3"
                ),
                &[&from_ms, &id, &limit],
            )?,
        };
        Ok(rows.iter().map(row_to_click).collect())
    }

    fn click_log(&self, q: &ClickQuery) -> Result<Vec<ClickRow>> {
        let (sql, args) = click_log_sql(q);
        let mut c = self.pool.read()?;
        Ok(c.query(&sql, &refs(&args))?.iter().map(row_to_click).collect())
    }

    fn click(&self, second: i64, click_id: &str) -> Result<Option<ClickRow>> {
        let mut c = self.pool.read()?;
        Ok(c.query_opt(
            &format!("SELECT {CLICK_COLS} FROM clicks WHERE ts_ms / 1000 = $1 AND click_id = $2"),
            &[&second, &click_id],
        )?
        .map(|r| row_to_click(&r)))
    }
}

/// The click log's SQL and its parameters (see [`Store::click_log`]).
fn click_log_sql(q: &ClickQuery) -> (String, Vec<Param>) {
    // Newest first by (ts_ms, click_id); the second bounds let the
    // (second, click id) key serve the scan, as in SQLite.
    let lo = q.from_ms.unwrap_or(i64::MIN);
    let hi = [q.to_ms.map(|t| t.saturating_sub(1)), q.before.as_ref().map(|(t, _)| *t)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(i64::MAX);
    let mut sql = format!(
        "SELECT {CLICK_COLS} FROM clicks WHERE ts_ms / 1000 BETWEEN $1::bigint AND $2::bigint
         AND ts_ms BETWEEN $3::bigint AND $4::bigint"
    );
    let mut args: Vec<Param> = vec![Box::new(lo / 1000), Box::new(hi / 1000), Box::new(lo), Box::new(hi)];
    if let Some(to) = q.to_ms {
        args.push(Box::new(to));
        sql.push_str(&format!(" AND ts_ms < ${}::bigint", args.len()));
    }
    if let Some((ts, id)) = &q.before {
        args.push(Box::new(*ts));
        args.push(Box::new(id.clone()));
        let (a, b) = (args.len() - 1, args.len());
        sql.push_str(&format!(" AND (ts_ms < ${a}::bigint OR (ts_ms = ${a}::bigint AND click_id < ${b}::text))"));
    }
    // One affiliate (not "none"): its own index (affiliate, ts_ms) serves
    // the order, sorting only within a millisecond.
    let one_affiliate =
        q.filters.iter().any(|(d, vs)| *d == Dim::Affiliate && vs.len() == 1 && vs[0] != DimValue::Key(0));
    push_filters(&mut sql, &mut args, &q.filters, |d| match d {
        Dim::Affiliate if one_affiliate => "affiliate".into(),
        d => raw_dim(d, "clicks"),
    });
    push_reasons(&mut sql, &mut args, &q.reasons, "quality_reasons");
    args.push(Box::new(q.limit.min(i64::MAX as usize) as i64));
    sql.push_str(&format!(
        " ORDER BY {} LIMIT ${}",
        if one_affiliate { "ts_ms DESC, click_id DESC" } else { "ts_ms / 1000 DESC, ts_ms DESC, click_id DESC" },
        args.len()
    ));
    (sql, args)
}

// ---------------------------------------------------------------------------
// Conversions.

fn queue_outbound(tx: &mut Transaction<'_>, id: i64, p: &PostbackIn, status: ConvStatus) -> Result<()> {
    for t in p.outbound.iter().filter(|t| t.statuses.contains(&status)) {
        tx.execute(
            "INSERT INTO outbox (conversion_id, status, target, url, payout_share, state, attempts, next_at_ms,
             created_ms) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) ON CONFLICT DO NOTHING",
            &[&id, &status.as_str(), &t.target, &t.url, &t.payout_share, &p.ts_ms],
        )?;
    }
    Ok(())
}

/// Records one postback; what it adds to the rollups goes to `deltas`,
/// applied once for the whole batch (see `record_postbacks`); its history
/// row carries `node`.
fn record_one(
    tx: &mut Transaction<'_>,
    p: &PostbackIn,
    node: i64,
    deltas: &mut Vec<(CellKey, Measures, i64)>,
) -> Result<Recorded> {
    const FIND: &str = "SELECT id, status, payout_base, cost FROM conversions
        WHERE click_id = $1 AND event = $2 AND txid = $3 FOR UPDATE";
    let find = |tx: &mut Transaction<'_>| -> Result<Option<(i64, String, f64, f64)>> {
        Ok(tx.query_opt(FIND, &[&p.click_id, &p.event, &p.txid])?.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
    };
    let history = |tx: &mut Transaction<'_>, id: i64, from: Option<ConvStatus>| -> Result<()> {
        tx.execute(
            "INSERT INTO conversion_history (conversion_id, ts_ms, from_status, to_status, source, reason, node)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&id, &p.ts_ms, &from.map(|f| f.as_str()), &p.status.as_str(), &p.source, &p.reason, &node],
        )?;
        Ok(())
    };
    let approved_ms = p.status.pays().then_some(p.ts_ms);
    // Looked up first (no id spent on a repeat); the unique key decides a
    // race with another node: the loser finds the winner's row.
    let mut existing = find(tx)?;
    if existing.is_none() {
        let payout_base = p.payout_base.unwrap_or(p.default_payout_base);
        let inserted = tx.query_opt(
            "INSERT INTO conversions (click_id, event, txid, status, payout, currency, payout_base, smartlink, offer,
             affiliate, country, device, os, click_ts_ms, ts_ms, updated_ms, approved_ms, over_cap, ctit_secs,
             browser, language, quality, quality_flags, cost)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17, $18, $19, $20,
             $21, $22, $23)
             ON CONFLICT (click_id, event, txid) DO NOTHING RETURNING id",
            &[
                &p.click_id,
                &p.event,
                &p.txid,
                &p.status.as_str(),
                &p.payout.unwrap_or(p.default_payout),
                &p.currency,
                &payout_base,
                &(p.smartlink as i64),
                &(p.offer as i64),
                &p.affiliate.map(|a| a as i64),
                &p.country,
                &p.device,
                &p.os,
                &p.click_ts_ms,
                &p.ts_ms,
                &approved_ms,
                &(p.over_cap as i64),
                &((p.ts_ms - p.click_ts_ms).max(0) / 1000),
                &p.browser,
                &p.language,
                &quality_class(&p.quality),
                &p.quality_flags,
                &p.cost_base,
            ],
        )?;
        match inserted {
            Some(r) => {
                let id: i64 = r.get(0);
                history(tx, id, None)?;
                deltas.push((conversion_cell(p), conversion_measures(p.status, payout_base, p.cost_base), 1));
                queue_outbound(tx, id, p, p.status)?;
                return Ok(Recorded::New { id });
            }
            None => existing = find(tx)?,
        }
    }
    let Some((id, cur, base, cost)) = existing else {
        return Err(StoreError::Invalid("a conversion vanished while it was recorded".into()));
    };
    let cur = status_of(&cur)?;
    match cur.transition(p.status) {
        Transition::Duplicate => Ok(Recorded::Duplicate { id }),
        Transition::Forbidden => Ok(Recorded::Forbidden { id, current: cur }),
        Transition::Change => {
            tx.execute(
                "UPDATE conversions SET status = $2, updated_ms = $3, approved_ms = COALESCE($4, approved_ms),
                 payout = COALESCE($5, payout), payout_base = COALESCE($6, payout_base),
                 over_cap = GREATEST(over_cap, $7) WHERE id = $1",
                &[&id, &p.status.as_str(), &p.ts_ms, &approved_ms, &p.payout, &p.payout_base, &(p.over_cap as i64)],
            )?;
            history(tx, id, Some(cur))?;
            let cell = conversion_cell(p);
            deltas.push((cell.clone(), conversion_measures(cur, base, cost), -1));
            deltas.push((cell, conversion_measures(p.status, p.payout_base.unwrap_or(base), cost), 1));
            queue_outbound(tx, id, p, p.status)?;
            Ok(Recorded::Updated { id, previous: cur, payout_base: p.payout_base.unwrap_or(base) })
        }
    }
}

impl ConversionStore for PgStore {
    fn record_postbacks(&self, batch: &[PostbackIn]) -> Result<Vec<Result<Recorded>>> {
        // Conversion history rows are the feed's mark: one writer at a time.
        self.write_tx(&[LOCK_CONVERSIONS], |tx| {
            let mut out = Vec::with_capacity(batch.len());
            // The rollup changes of the postbacks that committed, applied
            // at the end in one upsert per table, cells in key order, as a
            // click batch does: two such transactions lock rollup rows in
            // the same order and cannot deadlock on them.
            let mut deltas = Vec::new();
            for p in batch {
                // A savepoint per postback: one the database refuses is
                // rolled back alone; a deadlock retries the whole batch.
                let mut sp = tx.transaction()?;
                let mut own = Vec::new();
                match record_one(&mut sp, p, self.node, &mut own) {
                    Ok(r) => {
                        sp.commit()?;
                        deltas.append(&mut own);
                        out.push(Ok(r));
                    }
                    Err(e) if transient(&e) => return Err(e),
                    Err(e) => {
                        sp.rollback()?;
                        out.push(Err(e));
                    }
                }
            }
            add_to_rollups(tx, deltas.iter().map(|(k, m, sign)| (k, *m, *sign)))?;
            Ok(out)
        })
    }

    fn conversions(&self, f: &ConversionFilter) -> Result<Vec<ConversionRow>> {
        let mut c = self.pool.read()?;
        let sql = format!(
            "SELECT {CONVERSION_COLS} FROM conversions c {CLICK_JOIN}
             WHERE ($1::bigint IS NULL OR c.ts_ms >= $1) AND ($2::bigint IS NULL OR c.ts_ms < $2)
             AND ($3::bigint IS NULL OR c.offer = $3) AND ($4::bigint IS NULL OR c.smartlink = $4)
             AND ($5::bigint IS NULL OR c.affiliate = $5) AND ($6::text IS NULL OR c.status = $6)
             AND ($7::bigint IS NULL OR c.id < $7) {} ORDER BY c.id DESC LIMIT $8",
            if f.click_id.is_some() { "AND c.click_id = $9" } else { "AND $9::text IS NULL" }
        );
        let rows = c.query(
            &sql,
            &[
                &f.from_ms,
                &f.to_ms,
                &f.offer.map(|x| x as i64),
                &f.smartlink.map(|x| x as i64),
                &f.affiliate.map(|x| x as i64),
                &f.status.map(|s| s.as_str()),
                &f.before,
                &(f.limit.min(i64::MAX as usize) as i64),
                &f.click_id,
            ],
        )?;
        rows.iter().map(row_to_conversion).collect()
    }

    fn conversion(&self, id: i64) -> Result<Option<ConversionRow>> {
        let mut c = self.pool.read()?;
        c.query_opt(&format!("SELECT {CONVERSION_COLS} FROM conversions c {CLICK_JOIN} WHERE c.id = $1"), &[&id])?
            .map(|r| row_to_conversion(&r))
            .transpose()
    }

    fn conversion_history(&self, id: i64) -> Result<Vec<HistoryEntry>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT ts_ms, from_status, to_status, source, reason FROM conversion_history WHERE conversion_id = $1
             ORDER BY rid",
            &[&id],
        )?;
        rows.iter()
            .map(|r| {
                let from: Option<&str> = r.get(1);
                Ok((r.get(0), from.map(status_of).transpose()?, status_of(r.get(2))?, r.get(3), r.get(4)))
            })
            .collect()
    }

    fn approved_totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64, f64)>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT offer, COUNT(*), SUM(payout_base) FROM conversions
             WHERE status = 'approved' AND approved_ms >= $1 AND approved_ms < $2 GROUP BY offer",
            &[&from_ms, &to_ms],
        )?;
        Ok(rows.iter().map(|r| (key(r, 0), r.get::<_, i64>(1) as u64, r.get(2))).collect())
    }

    fn due_outbox(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!(
                "{OUTBOX_SELECT} WHERE o.state = 'pending' AND o.next_at_ms <= $1 ORDER BY o.next_at_ms, o.id LIMIT $2"
            ),
            &[&now_ms, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        rows.iter().map(row_to_outbox).collect()
    }

    /// Several nodes may deliver: the due rows are locked with
    /// `FOR UPDATE SKIP LOCKED` (a node never waits for, nor takes, what
    /// another is claiming) and leased by moving their next attempt to
    /// `now_ms + lease_ms`.
    fn claim_outbox(&self, now_ms: i64, limit: usize, lease_ms: i64) -> Result<Vec<OutboxItem>> {
        let until = now_ms.saturating_add(lease_ms.max(0));
        let ids: Vec<i64> = self.write_tx(&[], |tx| {
            let ids: Vec<i64> = tx
                .query(
                    "SELECT id FROM outbox WHERE state = 'pending' AND next_at_ms <= $1
                     ORDER BY next_at_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED",
                    &[&now_ms, &(limit.min(i64::MAX as usize) as i64)],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute("UPDATE outbox SET next_at_ms = $2 WHERE id = ANY($1)", &[&ids, &until])?;
            Ok(ids)
        })?;
        let mut c = self.pool.read()?;
        let mut items: Vec<OutboxItem> = c
            .query(&format!("{OUTBOX_SELECT} WHERE o.id = ANY($1)"), &[&ids])?
            .iter()
            .map(row_to_outbox)
            .collect::<Result<_>>()?;
        items.sort_by_key(|o| ids.iter().position(|i| *i == o.id));
        Ok(items)
    }

    fn outbox(&self, state: Option<OutboxState>, limit: usize) -> Result<Vec<OutboxItem>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!("{OUTBOX_SELECT} WHERE ($1::text IS NULL OR o.state = $1) ORDER BY o.id DESC LIMIT $2"),
            &[&state.map(|s| s.as_str()), &(limit.min(i64::MAX as usize) as i64)],
        )?;
        rows.iter().map(row_to_outbox).collect()
    }

    fn record_attempt(&self, outbox_id: i64, a: &Attempt) -> Result<()> {
        let status = a.http_status.map(|s| s as i64);
        self.write_tx(&[], |tx| {
            tx.execute(
                "INSERT INTO outbox_attempts (outbox_id, ts_ms, url, http_status, latency_ms, error)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&outbox_id, &a.ts_ms, &a.url, &status, &a.latency_ms, &a.error],
            )?;
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, state = $2, next_at_ms = $3, last_http_status = $4,
                 last_error = $5 WHERE id = $1",
                &[&outbox_id, &a.next.as_str(), &a.next_at_ms, &status, &a.error],
            )?;
            Ok(())
        })
    }

    fn postpone_outbox(&self, outbox_id: i64, next_at_ms: i64) -> Result<()> {
        let mut c = self.pool.write()?;
        c.execute("UPDATE outbox SET next_at_ms = $2 WHERE id = $1 AND state = 'pending'", &[&outbox_id, &next_at_ms])?;
        Ok(())
    }

    fn retry_outbox(&self, outbox_id: i64, now_ms: i64) -> Result<bool> {
        let mut c = self.pool.write()?;
        let n = c.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_at_ms = $2 WHERE id = $1 AND state = 'failed'",
            &[&outbox_id, &now_ms],
        )?;
        Ok(n == 1)
    }

    fn outbox_item(&self, outbox_id: i64) -> Result<Option<(OutboxItem, Vec<AttemptRow>)>> {
        let mut c = self.pool.read()?;
        let Some(row) = c.query_opt(&format!("{OUTBOX_SELECT} WHERE o.id = $1"), &[&outbox_id])? else {
            return Ok(None);
        };
        let item = row_to_outbox(&row)?;
        let attempts = c
            .query(
                "SELECT ts_ms, url, http_status, latency_ms, error FROM outbox_attempts WHERE outbox_id = $1
                 ORDER BY rid",
                &[&outbox_id],
            )?
            .iter()
            .map(|r| AttemptRow {
                ts_ms: r.get(0),
                url: r.get(1),
                http_status: r.get::<_, Option<i64>>(2).map(|s| s as u16),
                latency_ms: r.get(3),
                error: r.get(4),
            })
            .collect();
        Ok(Some((item, attempts)))
    }
}

// ---------------------------------------------------------------------------
// Reports.

impl RollupStore for PgStore {
    /// Exact on any window, as SQLite's: whole hours from the rollups, the
    /// partial hours at either edge from the raw rows, merged by key.
    fn rollup(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        rollup_in_parts(q, |q| self.rollup_whole_hours(q), |q| self.rollup_from_rows(q))
    }
}

impl PgStore {
    /// The rollup tables' rows for whole hours: the smallest coarse level
    /// that has every dimension asked for (its daily table for whole days),
    /// else the full hourly rollup.
    fn rollup_whole_hours(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        let parts = rollup_tables(q);
        let mut rows = Vec::new();
        for (table, from, to) in parts {
            rows.extend(self.rollup_table(q, &table, from, to)?);
        }
        Ok(rows)
    }

    fn rollup_table(&self, q: &RollupQuery, table: &str, from: i64, to: i64) -> Result<Vec<(Vec<DimValue>, Measures)>> {
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
            "SUM(clicks)::bigint, SUM(fallback_clicks)::bigint, SUM(approved)::bigint, SUM(pending)::bigint, \
             SUM(rejected)::bigint, SUM(chargebacks)::bigint, SUM(revenue), SUM(cost) FROM {table} \
             WHERE {time} >= $1::bigint AND {time} < $2::bigint"
        ));
        let mut args: Vec<Param> = vec![Box::new(from), Box::new(to)];
        push_filters(&mut sql, &mut args, &q.filters, col);
        if !q.group.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&(1..=q.group.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
        }
        let mut c = self.pool.read()?;
        let n = q.group.len();
        Ok(c.query(&sql, &refs(&args))?
            .iter()
            .map(|r| {
                let g = |i: usize| r.get::<_, Option<i64>>(n + i).unwrap_or(0).max(0) as u64;
                let m = Measures {
                    clicks: g(0),
                    fallback_clicks: g(1),
                    approved: g(2),
                    pending: g(3),
                    rejected: g(4),
                    chargebacks: g(5),
                    revenue: r.get::<_, Option<f64>>(n + 6).unwrap_or(0.0),
                    cost: r.get::<_, Option<f64>>(n + 7).unwrap_or(0.0),
                };
                (row_key(r, &q.group), m)
            })
            .collect())
    }

    /// [`RollupStore::rollup`] from raw rows (see SQLite's: same cohort
    /// semantics; conversions read from their own rows unless the query
    /// needs what only the click row has).
    fn rollup_from_rows(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        let click_only = q.needs_raw_rows();
        // Grouped by reason, a click row is one row per reason code it
        // carries (one empty code when it has none).
        let reasons_of = if q.group.contains(&Dim::Reason) {
            " CROSS JOIN LATERAL unnest(CASE WHEN k.quality_reasons = '' THEN ARRAY['']
               ELSE string_to_array(k.quality_reasons, ',') END) AS r(value)"
        } else {
            ""
        };
        let on_clicks = (
            "k.ts_ms / 1000 BETWEEN $1::bigint / 1000 AND $2::bigint / 1000 AND k.ts_ms >= $1 AND k.ts_ms < $2",
            &(|d: Dim| raw_dim(d, "k")) as &dyn Fn(Dim) -> String,
        );
        let on_conversions = (
            "c.click_ts_ms >= $1::bigint AND c.click_ts_ms < $2::bigint",
            &(|d: Dim| match d {
                Dim::Offer => "c.offer".to_string(),
                Dim::Hour => format!("(c.click_ts_ms / {HOUR_MS}) * {HOUR_MS}"),
                Dim::Day => format!("(c.click_ts_ms / {DAY_MS}) * {DAY_MS}"),
                other => raw_dim(other, "c"),
            }) as &dyn Fn(Dim) -> String,
        );
        let select = |measures: &str, from: &str, (time, col): (&str, &dyn Fn(Dim) -> String)| {
            let mut args: Vec<Param> = vec![Box::new(q.from_ms), Box::new(q.to_ms)];
            let mut cond = time.to_string();
            push_filters(&mut cond, &mut args, &q.filters, col);
            push_reasons(&mut cond, &mut args, &q.reasons, "k.quality_reasons");
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
        let mut c = self.pool.read()?;
        let mut found = Vec::new();
        {
            let from = format!("clicks k{reasons_of}");
            let (sql, args) =
                select("COUNT(*), COUNT(*) FILTER (WHERE k.offer IS NULL), SUM(k.cost)", &from, on_clicks);
            for r in c.query(&sql, &refs(&args))? {
                let m = Measures {
                    clicks: r.get::<_, i64>(n) as u64,
                    fallback_clicks: r.get::<_, i64>(n + 1) as u64,
                    cost: r.get::<_, Option<f64>>(n + 2).unwrap_or(0.0),
                    ..Default::default()
                };
                found.push((row_key(&r, &q.group), m));
            }
        }
        {
            let measures =
                "COUNT(*) FILTER (WHERE c.status = 'approved'), COUNT(*) FILTER (WHERE c.status = 'pending'),
                 COUNT(*) FILTER (WHERE c.status = 'rejected'), COUNT(*) FILTER (WHERE c.status = 'chargeback'),
                 SUM(CASE WHEN c.status = 'approved' THEN c.payout_base ELSE 0 END),
                 SUM(CASE WHEN c.status = 'approved' THEN c.cost ELSE 0 END)";
            let (sql, args) = if click_only {
                let joined = format!(
                    "conversions c JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id{reasons_of}"
                );
                select(measures, &joined, on_clicks)
            } else {
                select(measures, "conversions c", on_conversions)
            };
            for r in c.query(&sql, &refs(&args))? {
                let g = |i: usize| r.get::<_, i64>(n + i) as u64;
                let m = Measures {
                    approved: g(0),
                    pending: g(1),
                    rejected: g(2),
                    chargebacks: g(3),
                    revenue: r.get::<_, Option<f64>>(n + 4).unwrap_or(0.0),
                    cost: r.get::<_, Option<f64>>(n + 5).unwrap_or(0.0),
                    ..Default::default()
                };
                // An ungrouped query over no conversion still answers one
                // row of zeros, as SQLite's does.
                found.push((row_key(&r, &q.group), m));
            }
        }
        Ok(crate::merge_rows(found, !q.group.is_empty()))
    }
}

impl QualityStore for PgStore {
    fn source_counts(&self, q: &SourceQuery) -> Result<Vec<SourceCounts>> {
        let sub_col = match q.sub {
            None => "''".to_string(),
            Some(n @ 1..=5) => format!("sub{n}"),
            Some(n) => return Err(StoreError::Invalid(format!("sub{n}: expected sub1..sub5"))),
        };
        let owner = if q.by_source { "source" } else { "affiliate" };
        let mut c = self.pool.read()?;
        let mut out: BTreeMap<(u32, String), SourceCounts> = BTreeMap::new();
        let rows = c.query(
            &format!(
                "SELECT COALESCE({owner}, 0), {sub_col}::text, quality, quality_reasons, COUNT(*) FROM clicks
                 WHERE ts_ms / 1000 BETWEEN $2::bigint / 1000 AND $3::bigint / 1000 AND ts_ms >= $2 AND ts_ms < $3
                   AND smartlink = $1 GROUP BY 1, 2, 3, 4"
            ),
            &[&(q.smartlink as i64), &q.from_ms, &q.to_ms],
        )?;
        for r in &rows {
            let (aff, sub, class, reasons, n): (u32, String, &str, &str, u64) =
                (key(r, 0), r.get(1), r.get(2), r.get(3), r.get::<_, i64>(4) as u64);
            let e = out.entry((aff, sub.clone())).or_insert_with(|| SourceCounts {
                affiliate: aff,
                sub,
                ..Default::default()
            });
            e.clicks += n;
            let i = ["human", "suspect", "bot", "preview"].iter().position(|c| *c == quality_class(class)).unwrap_or(0);
            e.classes[i] += n;
            for code in reasons.split(',').filter(|c| !c.is_empty()) {
                *e.reasons.entry(code.to_string()).or_default() += n;
            }
        }
        let sub_k = if q.sub.is_some() { format!("COALESCE(k.{sub_col}, '')") } else { "''::text".into() };
        let rows = c.query(
            &format!(
                "SELECT COALESCE({}, 0), {sub_k}, c.status, c.quality_flags, c.ctit_secs FROM conversions c
                 {CLICK_JOIN} WHERE c.smartlink = $1 AND c.click_ts_ms >= $2 AND c.click_ts_ms < $3",
                if q.by_source { "k.source" } else { "c.affiliate" }
            ),
            &[&(q.smartlink as i64), &q.from_ms, &q.to_ms],
        )?;
        for r in &rows {
            let (aff, sub, status, flags, ctit): (u32, String, &str, &str, i64) =
                (key(r, 0), r.get(1), r.get(2), r.get(3), r.get(4));
            let e = out.entry((aff, sub.clone())).or_insert_with(|| SourceCounts {
                affiliate: aff,
                sub,
                ..Default::default()
            });
            e.conversions += 1;
            match status_of(status)? {
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
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT k.country, k.device, k.os, k.offer, k.propensity,
               COALESCE((SELECT SUM(c.payout_base) FROM conversions c
                         WHERE c.click_id = k.click_id AND c.status = 'approved'), 0.0),
               k.cost + COALESCE((SELECT SUM(c.cost) FROM conversions c
                         WHERE c.click_id = k.click_id AND c.status = 'approved'), 0.0)
             FROM clicks k
             WHERE k.ts_ms / 1000 BETWEEN $2::bigint / 1000 AND $3::bigint / 1000 AND k.ts_ms >= $2 AND k.ts_ms < $3
               AND k.smartlink = $1 AND k.quality IN ('human', 'suspect')
             ORDER BY k.rid",
            &[&(smartlink as i64), &from_ms, &to_ms],
        )?;
        Ok(rows
            .iter()
            .map(|r| AuditClickRow {
                country: r.get(0),
                device: r.get(1),
                os: r.get(2),
                offer: opt_key(r, 3),
                propensity: r.get(4),
                revenue: r.get(5),
                cost: r.get(6),
            })
            .collect())
    }

    fn fallback_segments(
        &self,
        smartlink: u32,
        from_ms: i64,
        to_ms: i64,
        classes: &[&str],
    ) -> Result<Vec<(String, String, String, u64)>> {
        let classes: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT country, device, COALESCE(fallback_reason, ''), COUNT(*) FROM clicks
             WHERE ts_ms / 1000 BETWEEN $2::bigint / 1000 AND $3::bigint / 1000 AND ts_ms >= $2 AND ts_ms < $3
               AND smartlink = $1 AND quality = ANY($4) GROUP BY 1, 2, 3",
            &[&(smartlink as i64), &from_ms, &to_ms, &classes],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, i64>(3) as u64)).collect())
    }
}

impl AlertStore for PgStore {
    fn record_alerts(&self, alerts: &[(AlertRow, String)]) -> Result<Vec<Option<i64>>> {
        self.write_tx(&[], |tx| {
            let mut out = Vec::with_capacity(alerts.len());
            for (a, dedup) in alerts {
                let id = tx
                    .query_opt(
                        "INSERT INTO alerts (ts_ms, kind, smartlink, offer, segment, message, dedup)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup) DO NOTHING RETURNING id",
                        &[&a.ts_ms, &a.kind, &a.smartlink, &a.offer, &a.segment, &a.message, dedup],
                    )?
                    .map(|r| r.get(0));
                out.push(id);
            }
            Ok(out)
        })
    }

    fn alerts(&self, limit: usize) -> Result<Vec<AlertRow>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT id, ts_ms, kind, smartlink, offer, segment, message FROM alerts ORDER BY id DESC LIMIT $1",
            &[&(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| AlertRow {
                id: r.get(0),
                ts_ms: r.get(1),
                kind: r.get(2),
                smartlink: r.get(3),
                offer: r.get(4),
                segment: r.get(5),
                message: r.get(6),
            })
            .collect())
    }
}

impl DigestStore for PgStore {
    fn insert_digest(&self, d: &DigestRow) -> Result<(i64, bool)> {
        self.write_tx(&[], |tx| {
            let new = tx.query_opt(
                "INSERT INTO digests (smartlink, period_start_ms, period_end_ms, created_ms, body, delivery,
                   attempts, next_at_ms, last_http_status, last_error, delivered_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (smartlink, period_start_ms) DO NOTHING RETURNING id",
                &[
                    &d.smartlink,
                    &d.period_start_ms,
                    &d.period_end_ms,
                    &d.created_ms,
                    &d.body,
                    &d.delivery.map(OutboxState::as_str),
                    &(d.attempts as i64),
                    &d.next_at_ms,
                    &d.last_http_status.map(|s| s as i64),
                    &d.last_error,
                    &d.delivered_ms,
                ],
            )?;
            if let Some(r) = new {
                return Ok((r.get(0), true));
            }
            let id = tx
                .query_one(
                    "SELECT id FROM digests WHERE smartlink = $1 AND period_start_ms = $2",
                    &[&d.smartlink, &d.period_start_ms],
                )?
                .get(0);
            Ok((id, false))
        })
    }

    fn has_digest(&self, smartlink: &str, period_start_ms: i64) -> Result<bool> {
        let mut c = self.pool.read()?;
        Ok(c.query_opt(
            "SELECT 1 FROM digests WHERE smartlink = $1 AND period_start_ms = $2",
            &[&smartlink, &period_start_ms],
        )?
        .is_some())
    }

    fn digests(&self, smartlink: Option<&str>, limit: usize) -> Result<Vec<DigestRow>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!(
                "SELECT {DIGEST_COLS} FROM digests WHERE $1::text IS NULL OR smartlink = $1
                 ORDER BY period_start_ms DESC, id DESC LIMIT $2"
            ),
            &[&smartlink, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows.iter().map(row_to_digest).collect())
    }

    fn digest(&self, id: i64) -> Result<Option<DigestRow>> {
        let mut c = self.pool.read()?;
        Ok(c.query_opt(&format!("SELECT {DIGEST_COLS} FROM digests WHERE id = $1"), &[&id])?.map(|r| row_to_digest(&r)))
    }

    fn due_digests(&self, now_ms: i64, limit: usize) -> Result<Vec<DigestRow>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!(
                "SELECT {DIGEST_COLS} FROM digests WHERE delivery = 'pending' AND next_at_ms <= $1
                 ORDER BY next_at_ms, id LIMIT $2"
            ),
            &[&now_ms, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows.iter().map(row_to_digest).collect())
    }

    fn record_digest_attempt(&self, id: i64, a: &DigestAttempt) -> Result<()> {
        let mut c = self.pool.write()?;
        c.execute(
            "UPDATE digests SET attempts = attempts + 1, delivery = $2, next_at_ms = $3, last_http_status = $4,
               last_error = $5, delivered_ms = CASE WHEN $2 = 'delivered' THEN $6 ELSE delivered_ms END
             WHERE id = $1",
            &[&id, &a.next.as_str(), &a.next_at_ms, &a.http_status.map(|s| s as i64), &a.error, &a.ts_ms],
        )?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The change feed (see `feed.rs`): `rid` / `id` columns play SQLite's row ids.

const FEED_CONVERSION: &str = "SELECT c.id, k.rid, c.click_ts_ms, c.smartlink, c.offer, COALESCE(c.affiliate, 0),
    COALESCE(k.source, 0), c.country, c.device, c.os, c.browser, c.language, c.quality,
    COALESCE(k.quality_reasons, ''), COALESCE(k.sub1, ''), COALESCE(k.sub2, ''), COALESCE(k.sub3, ''),
    COALESCE(k.sub4, ''), COALESCE(k.sub5, ''), c.status, c.payout_base, c.cost, c.quality_flags, c.ctit_secs
    FROM conversions c
    LEFT JOIN clicks k ON k.ts_ms / 1000 = c.click_ts_ms / 1000 AND k.click_id = c.click_id";

fn row_to_feed_conversion(r: &Row) -> FeedConversion {
    FeedConversion {
        id: r.get(0),
        click_rid: r.get(1),
        click_ts_ms: r.get(2),
        smartlink: key(r, 3),
        offer: key(r, 4),
        affiliate: key(r, 5),
        source: key(r, 6),
        country: r.get(7),
        device: r.get(8),
        os: r.get(9),
        browser: r.get(10),
        language: r.get(11),
        quality: quality_class(r.get(12)).to_string(),
        quality_reasons: r.get(13),
        subs: [r.get(14), r.get(15), r.get(16), r.get(17), r.get(18)],
        status: r.get(19),
        payout_micros: micros(r.get(20)),
        cost_micros: micros(r.get(21)),
        quality_flags: r.get(22),
        ctit_secs: r.get(23),
    }
}

impl crate::FeedSource for PgStore {
    fn feed_marks(&self) -> Result<FeedMarks> {
        let mut c = self.pool.read()?;
        let r = c.query_one(
            "SELECT (SELECT COALESCE(MAX(rid), 0) FROM clicks),
                    (SELECT COALESCE(MAX(rid), 0) FROM conversion_history),
                    (SELECT COALESCE(MAX(id), 0) FROM cost_imports)",
            &[],
        )?;
        Ok(FeedMarks { clicks: r.get(0), conversions: r.get(1), cost_imports: r.get(2) })
    }

    fn feed_clicks(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<FeedClick>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT rid, ts_ms, smartlink, COALESCE(offer, 0), COALESCE(affiliate, 0), COALESCE(source, 0),
               country, device, os, browser, language, quality, quality_reasons, COALESCE(fallback_reason, ''),
               sub1, sub2, sub3, sub4, sub5, propensity, cost
             FROM clicks WHERE rid > $1 AND rid <= $2 ORDER BY rid LIMIT $3",
            &[&after, &upto, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| FeedClick {
                rid: r.get(0),
                ts_ms: r.get(1),
                smartlink: key(r, 2),
                offer: key(r, 3),
                affiliate: key(r, 4),
                source: key(r, 5),
                country: r.get(6),
                device: r.get(7),
                os: r.get(8),
                browser: r.get(9),
                language: r.get(10),
                quality: quality_class(r.get(11)).to_string(),
                quality_reasons: r.get(12),
                fallback_reason: r.get(13),
                subs: [r.get(14), r.get(15), r.get(16), r.get(17), r.get(18)],
                propensity: r.get(19),
                cost_micros: micros(r.get(20)),
            })
            .collect())
    }

    fn feed_all_conversions(&self, after: i64, limit: usize) -> Result<Vec<FeedConversion>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!("{FEED_CONVERSION} WHERE c.id > $1 ORDER BY c.id LIMIT $2"),
            &[&after, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows.iter().map(row_to_feed_conversion).collect())
    }

    fn feed_changed_conversions(&self, after: i64, upto: i64) -> Result<Vec<FeedConversion>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!(
                "{FEED_CONVERSION} WHERE c.id IN (SELECT conversion_id FROM conversion_history
                   WHERE rid > $1 AND rid <= $2) ORDER BY c.id"
            ),
            &[&after, &upto],
        )?;
        Ok(rows.iter().map(row_to_feed_conversion).collect())
    }

    fn feed_conversions(&self, ids: &[i64]) -> Result<Vec<FeedConversion>> {
        let mut c = self.pool.read()?;
        let rows = c.query(&format!("{FEED_CONVERSION} WHERE c.id = ANY($1)"), &[&ids])?;
        let mut found: HashMap<i64, FeedConversion> =
            rows.iter().map(row_to_feed_conversion).map(|f| (f.id, f)).collect();
        // In the order asked for, as SQLite's.
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    fn feed_cost_imports(&self, after: i64, upto: i64) -> Result<Vec<(i64, i64, i64)>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT id, from_ms, to_ms FROM cost_imports WHERE id > $1 AND id <= $2 ORDER BY id",
            &[&after, &upto],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    fn feed_click_costs(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, i64)>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            "SELECT rid, cost FROM clicks
             WHERE ts_ms / 1000 BETWEEN $1::bigint / 1000 AND $2::bigint / 1000 AND ts_ms >= $1 AND ts_ms < $2",
            &[&from_ms, &to_ms],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), micros(r.get(1)))).collect())
    }

    fn delete_raw_clicks_before(&self, before_ms: i64, limit: usize) -> Result<usize> {
        let mut c = self.pool.write()?;
        let n = c.execute(
            "DELETE FROM clicks WHERE rid IN (SELECT rid FROM clicks
               WHERE ts_ms / 1000 < $1::bigint / 1000 OR (ts_ms / 1000 = $1::bigint / 1000 AND ts_ms < $1)
               LIMIT $2)",
            &[&before_ms, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(n as usize)
    }
}

// ---------------------------------------------------------------------------
// Several nodes: the definitions lock, change signals, the leader lease.

/// A connection of its own holding a session advisory lock; dropping it
/// unlocks (and closing the connection would too).
struct SessionLock {
    client: Client,
    key: i64,
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        let _ = self.client.execute("SELECT pg_advisory_unlock($1)", &[&self.key]);
    }
}

impl crate::Lease for SessionLock {
    fn held(&mut self) -> bool {
        // A lost connection lost the lock: another node may hold it now.
        !self.client.is_closed() && self.client.is_valid(Duration::from_secs(5)).is_ok()
    }
}

/// How often the definitions watcher checks the version without a signal
/// (a missed `NOTIFY` while reconnecting costs at most this).
const WATCH_CHECK: Duration = Duration::from_secs(5);

impl PgStore {
    fn dedicated(&self) -> Result<Client> {
        Ok(self.pool.config.connect(NoTls)?)
    }

    /// The watcher's loop: one connection listening, a version check on
    /// every (re)connect, every signal and every [`WATCH_CHECK`].
    fn watch(config: postgres::Config, url: String, mut changed: Box<dyn FnMut() -> bool + Send>) {
        let mut seen: Option<i64> = None;
        let mut failures = 0u32;
        loop {
            let r = (|| -> Result<bool> {
                let mut c = config.connect(NoTls)?;
                c.batch_execute(&format!("LISTEN {DEFINITIONS_CHANNEL}"))?;
                failures = 0;
                loop {
                    let v: i64 = c.query_one("SELECT version FROM definitions_version", &[])?.get(0);
                    if seen != Some(v) {
                        seen = Some(v);
                        if !changed() {
                            return Ok(false);
                        }
                    }
                    // Wait for a signal (or the periodic check), then take
                    // every signal already queued: one reload covers them.
                    {
                        let mut n = c.notifications();
                        if n.timeout_iter(WATCH_CHECK).next()?.is_some() {
                            while n.iter().next()?.is_some() {}
                        }
                    }
                    if c.is_closed() {
                        return Err(StoreError::Invalid("the listening connection closed".into()));
                    }
                }
            })();
            match r {
                Ok(_) => return,
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(store = %url, error = %e, "watching definition changes failed; reconnecting");
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
}

impl crate::SharedStore for PgStore {
    fn lock_definitions(&self) -> Result<Box<dyn Send>> {
        let mut client = self.dedicated()?;
        client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_ADMIN])?;
        Ok(Box::new(SessionLock { client, key: LOCK_ADMIN }))
    }

    fn definitions_version(&self) -> Result<i64> {
        let mut c = self.pool.read()?;
        Ok(c.query_one("SELECT version FROM definitions_version", &[])?.get(0))
    }

    fn watch_definitions(&self, changed: Box<dyn FnMut() -> bool + Send>) -> Result<()> {
        let (config, url) = (self.pool.config.clone(), self.url.clone());
        std::thread::Builder::new()
            .name("definitions-watch".into())
            .spawn(move || PgStore::watch(config, url, changed))
            .map_err(|e| StoreError::Invalid(format!("starting the definitions watcher: {e}")))?;
        Ok(())
    }

    fn try_lead(&self) -> Result<Option<Box<dyn crate::Lease>>> {
        let mut client = self.dedicated()?;
        let got: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_LEADER])?.get(0);
        Ok(got.then(|| Box::new(SessionLock { client, key: LOCK_LEADER }) as Box<dyn crate::Lease>))
    }

    fn take_cap_units(&self, t: &crate::CapTake<'_>) -> Result<crate::CapGrant> {
        let (offer, day) = (t.offer as i64, t.day as i64);
        // Both tables are locked in one order (usage, then the node's
        // lease) by takes and returns alike.
        self.write_tx(&[], |tx| {
            tx.execute(
                "INSERT INTO cap_usage (offer, day, taken) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
                &[&offer, &day],
            )?;
            // The row lock makes concurrent takes wait and read the taken
            // total their predecessor committed.
            let taken: i64 = tx
                .query_one("SELECT taken FROM cap_usage WHERE offer = $1 AND day = $2 FOR UPDATE", &[&offer, &day])?
                .get(0);
            let taken = taken as u64;
            let granted = t.want.min(t.cap.saturating_sub(taken));
            if granted > 0 {
                let g = n_of(granted);
                tx.execute(
                    "UPDATE cap_usage SET taken = taken + $3 WHERE offer = $1 AND day = $2",
                    &[&offer, &day, &g],
                )?;
                tx.execute(
                    "INSERT INTO cap_leases (offer, day, node, held, updated_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (offer, day, node) DO UPDATE
                     SET held = cap_leases.held + EXCLUDED.held, updated_ms = EXCLUDED.updated_ms",
                    &[&offer, &day, &t.node, &g, &t.now_ms],
                )?;
            }
            Ok(crate::CapGrant { granted, taken: taken + granted })
        })
    }

    fn return_cap_units(&self, node: &str, offer: u32, day: u32, units: u64, now_ms: i64) -> Result<u64> {
        let (offer, day) = (offer as i64, day as i64);
        self.write_tx(&[], |tx| {
            let Some(row) =
                tx.query_opt("SELECT taken FROM cap_usage WHERE offer = $1 AND day = $2 FOR UPDATE", &[&offer, &day])?
            else {
                return Ok(0);
            };
            let taken: i64 = row.get(0);
            let held: i64 = tx
                .query_opt(
                    "SELECT held FROM cap_leases WHERE offer = $1 AND day = $2 AND node = $3 FOR UPDATE",
                    &[&offer, &day, &node],
                )?
                .map_or(0, |r| r.get(0));
            let back = n_of(units).min(held).min(taken);
            if back == 0 {
                return Ok(taken as u64);
            }
            tx.execute(
                "UPDATE cap_leases SET held = held - $4, updated_ms = $5 WHERE offer = $1 AND day = $2 AND node = $3",
                &[&offer, &day, &node, &back, &now_ms],
            )?;
            tx.execute(
                "UPDATE cap_usage SET taken = taken - $3 WHERE offer = $1 AND day = $2",
                &[&offer, &day, &back],
            )?;
            Ok((taken - back) as u64)
        })
    }

    fn cap_units(&self, offer: u32, day: u32) -> Result<crate::CapUnits> {
        let (offer, day) = (offer as i64, day as i64);
        let mut c = self.pool.read()?;
        let taken: i64 = c
            .query_opt("SELECT taken FROM cap_usage WHERE offer = $1 AND day = $2", &[&offer, &day])?
            .map_or(0, |r| r.get(0));
        let held = c
            .query(
                "SELECT node, held FROM cap_leases WHERE offer = $1 AND day = $2 AND held > 0 ORDER BY node",
                &[&offer, &day],
            )?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect();
        Ok(crate::CapUnits { taken: taken as u64, held })
    }

    fn forget_cap_units_before(&self, day: u32) -> Result<u64> {
        let day = day as i64;
        self.write_tx(&[], |tx| {
            let leases = tx.execute("DELETE FROM cap_leases WHERE day < $1", &[&day])?;
            Ok(leases + tx.execute("DELETE FROM cap_usage WHERE day < $1", &[&day])?)
        })
    }

    fn node(&self) -> i64 {
        self.node
    }

    fn learn_marks(&self) -> Result<crate::LearnMarks> {
        let mut c = self.pool.read()?;
        let r = c.query_one(
            "SELECT (SELECT COALESCE(MAX(rid), 0) FROM clicks), (SELECT COALESCE(MAX(rid), 0) FROM conversion_history)",
            &[],
        )?;
        Ok(crate::LearnMarks { clicks: r.get(0), conversions: r.get(1) })
    }

    fn replay_clicks(
        &self,
        from_ms: i64,
        after: Option<&str>,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<crate::LearnClick>> {
        let mut c = self.pool.read()?;
        let limit = limit.min(i64::MAX as usize) as i64;
        // The pages of `clicks_since`, rows past the mark left out.
        let rows = c.query(
            &format!(
                "SELECT {LEARN_CLICK_COLS} FROM clicks WHERE {} AND rid <= $3
                 ORDER BY ts_ms / 1000, click_id LIMIT $4",
                if after.is_none() {
                    "ts_ms / 1000 >= $1::bigint / 1000 AND ts_ms >= $1 AND $2::text IS NULL"
                } else {
                    "(ts_ms / 1000, click_id) > ($1::bigint / 1000, $2::text)"
                }
            ),
            &[&from_ms, &after, &upto, &limit],
        )?;
        Ok(rows.iter().map(row_to_learn_click).collect())
    }

    fn replay_conversions(&self, from_ms: i64, upto: i64) -> Result<Vec<crate::LearnConversion>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!(
                "SELECT 0::bigint, c.id, c.ts_ms, {LEARN_CONVERSION_COLS}, NULL::text, h.to_status FROM conversions c
                 JOIN LATERAL (SELECT to_status FROM conversion_history
                   WHERE conversion_id = c.id AND rid <= $2 ORDER BY rid DESC LIMIT 1) h ON TRUE
                 WHERE c.ts_ms >= $1 ORDER BY c.ts_ms, c.id"
            ),
            &[&from_ms, &upto],
        )?;
        rows.iter().map(row_to_learn_conversion).collect()
    }

    fn learn_clicks(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<crate::LearnClick>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!(
                "SELECT {LEARN_CLICK_COLS} FROM clicks
                 WHERE rid > $1 AND rid <= $2 AND node IS DISTINCT FROM $3 ORDER BY rid LIMIT $4"
            ),
            &[&after, &upto, &self.node, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        Ok(rows.iter().map(row_to_learn_click).collect())
    }

    fn learn_conversions(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<crate::LearnConversion>> {
        let mut c = self.pool.read()?;
        let rows = c.query(
            &format!(
                "SELECT h.rid, c.id, h.ts_ms, {LEARN_CONVERSION_COLS}, h.from_status, h.to_status
                 FROM conversion_history h
                 JOIN conversions c ON c.id = h.conversion_id
                 WHERE h.rid > $1 AND h.rid <= $2 AND h.node IS DISTINCT FROM $3 ORDER BY h.rid LIMIT $4"
            ),
            &[&after, &upto, &self.node, &(limit.min(i64::MAX as usize) as i64)],
        )?;
        rows.iter().map(row_to_learn_conversion).collect()
    }
}

const LEARN_CLICK_COLS: &str = "rid, click_id, ts_ms, smartlink, offer, country, device, os, quality";

fn row_to_learn_click(r: &Row) -> crate::LearnClick {
    crate::LearnClick {
        rid: r.get(0),
        click_id: r.get(1),
        ts_ms: r.get(2),
        smartlink: key(r, 3),
        offer: opt_key(r, 4),
        country: r.get(5),
        device: r.get(6),
        os: r.get(7),
        quality: quality_class(r.get(8)).to_string(),
    }
}

/// A conversion event's columns between (history rid, conversion id,
/// event time) and (from status, to status).
const LEARN_CONVERSION_COLS: &str = "c.click_ts_ms, c.smartlink, c.offer, c.country, c.device, c.os, c.quality";

fn row_to_learn_conversion(r: &Row) -> Result<crate::LearnConversion> {
    Ok(crate::LearnConversion {
        rid: r.get(0),
        conversion_id: r.get(1),
        ts_ms: r.get(2),
        click_ts_ms: r.get(3),
        smartlink: key(r, 4),
        offer: key(r, 5),
        country: r.get(6),
        device: r.get(7),
        os: r.get(8),
        quality: quality_class(r.get(9)).to_string(),
        previous: r.get::<_, Option<String>>(10).as_deref().map(status_of).transpose()?,
        status: status_of(r.get(11))?,
    })
}
