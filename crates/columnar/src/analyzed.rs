//! [`Analyzed`]: the transactional store with the columnar store answering
//! its analytics queries. Everything else is the transactional store's.

use std::path::Path;
use std::sync::Arc;

use smartlink_store::*;

use crate::{Columnar, Options, Synced};

/// A [`Store`]: the transactional store (SQLite or PostgreSQL) for
/// everything transactional, the columnar store for [`RollupStore`] and
/// [`QualityStore`].
pub struct Analyzed {
    sqlite: Arc<dyn TxStore>,
    /// `None`: the transactional store answers everything (another process
    /// owns the columnar file).
    col: Option<Columnar>,
}

impl Analyzed {
    /// Opens the columnar store of `data_dir` over `sqlite`. Fails when
    /// another process holds the file (a running server): such a caller
    /// reads the transactional store alone.
    #[cfg(feature = "engine")]
    pub fn open(sqlite: Arc<dyn TxStore>, data_dir: &Path, opts: Options) -> Result<Analyzed> {
        let col = Columnar::open(data_dir, opts)?;
        col.adopt_horizon(&*sqlite)?;
        Ok(Analyzed { col: Some(col), sqlite })
    }

    /// Without the engine: the transactional store alone.
    #[cfg(not(feature = "engine"))]
    pub fn open(sqlite: Arc<dyn TxStore>, _data_dir: &Path, _opts: Options) -> Result<Analyzed> {
        Ok(Self::transactional(sqlite))
    }

    /// For a command beside a running server: the columnar store when this
    /// process can open it, else the transactional store alone, whose
    /// rollups and raw rows give the same answers from a consistent (WAL)
    /// snapshot, more slowly.
    pub fn open_or_transactional(sqlite: Arc<dyn TxStore>, data_dir: &Path, opts: Options) -> Analyzed {
        let opts = Options { rebuild_damaged: false, ..opts };
        let col = Columnar::open(data_dir, opts).ok().filter(|c| c.adopt_horizon(&*sqlite).is_ok());
        Analyzed { col, sqlite }
    }

    /// The transactional store alone (a command beside a running server,
    /// which owns the columnar file).
    pub fn transactional(sqlite: Arc<dyn TxStore>) -> Analyzed {
        Analyzed { col: None, sqlite }
    }

    /// The columnar store, when this process has it open.
    pub fn columnar(&self) -> Option<&Columnar> {
        self.col.as_ref()
    }

    /// The transactional store (SQLite or PostgreSQL).
    pub fn tx(&self) -> &Arc<dyn TxStore> {
        &self.sqlite
    }

    /// Loads what the feed has (the background loader calls this).
    pub fn load(&self) -> Result<Synced> {
        match &self.col {
            Some(c) => c.sync(&*self.sqlite),
            None => Ok(Synced::default()),
        }
    }

    /// Retention (the background loader calls this now and then). With
    /// several nodes on one store only the leader passes `shared_too`: it
    /// deletes the shared store's raw rows, every node its own columnar
    /// rows (see [`Columnar::compact`]).
    pub fn compact(&self, now_ms: i64, shared_too: bool) -> Result<u64> {
        match &self.col {
            Some(c) => c.compact(&*self.sqlite, now_ms, shared_too),
            None => Ok(0),
        }
    }

    /// Whether the columnar store can answer exactly now: it has everything
    /// the feed has, after catching up itself when little is missing.
    fn fresh(&self) -> Result<Option<&Columnar>> {
        let Some(col) = &self.col else { return Ok(None) };
        let (target, behind) = col.backlog(&*self.sqlite)?;
        if col.has(&target) {
            return Ok(Some(col));
        }
        if behind > col.opts.catch_up_limit {
            return Ok(None);
        }
        match col.try_sync(&*self.sqlite, CATCH_UP_WAIT) {
            // The loader is at work (maybe starved of CPU in its idle
            // class), or another process (a server started since) writes
            // the file: the transactional store answers, exactly.
            Ok(None) => return Ok(None),
            Err(StoreError::Analytics(m)) if crate::is_lock_error(&m) => return Ok(None),
            r => r?,
        };
        Ok(col.has(&target).then_some(col))
    }

    fn retention_error(col: &Columnar, h: i64) -> StoreError {
        let at = chrono::DateTime::from_timestamp_millis(h)
            .map(|t| t.format("%Y-%m-%dT%H:%MZ").to_string())
            .unwrap_or_else(|| h.to_string());
        StoreError::Invalid(format!(
            "sub-ids, traffic sources and quality reasons are kept with each click for {} days \
             (server.raw_retention_days); start the period at {at} or later",
            col.opts.retention_days
        ))
    }
}

/// How long a query waits for the loader's lock before the transactional
/// store answers it instead.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

impl RollupStore for Analyzed {
    fn classes_apart(&self) -> bool {
        self.col.is_some()
    }

    fn rollup(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        // Before the raw horizon only the rollups remain, whichever store
        // answers: what needs raw rows is refused, never answered in part.
        if let Some((col, h)) = self.col.as_ref().and_then(|c| Some((c, c.raw_from_ms()?))) {
            if q.from_ms < h && q.needs_raw_rows() {
                return Err(Self::retention_error(col, h));
            }
        }
        let Some(col) = self.fresh()? else { return self.sqlite.rollup(q) };
        match col.raw_from_ms() {
            Some(h) if q.from_ms < h => {
                if q.to_ms <= h {
                    return self.sqlite.rollup(q);
                }
                let old = self.sqlite.rollup(&RollupQuery { to_ms: h, ..q.clone() })?;
                let new = col.rollup(&RollupQuery { from_ms: h, ..q.clone() })?;
                Ok(merge_rows(old.into_iter().chain(new), !q.group.is_empty()))
            }
            _ => col.rollup(q),
        }
    }
}

impl QualityStore for Analyzed {
    fn source_counts(&self, q: &SourceQuery) -> Result<Vec<SourceCounts>> {
        match self.fresh()? {
            Some(col) => col.source_counts(q),
            None => self.sqlite.source_counts(q),
        }
    }

    fn audit_clicks(&self, smartlink: u32, from_ms: i64, to_ms: i64) -> Result<Vec<AuditClickRow>> {
        match self.fresh()? {
            Some(col) => col.audit_clicks(smartlink, from_ms, to_ms),
            None => self.sqlite.audit_clicks(smartlink, from_ms, to_ms),
        }
    }

    fn fallback_segments(
        &self,
        smartlink: u32,
        from_ms: i64,
        to_ms: i64,
        classes: &[&str],
    ) -> Result<Vec<(String, String, String, u64)>> {
        match self.fresh()? {
            Some(col) => col.fallback_segments(smartlink, from_ms, to_ms, classes),
            None => self.sqlite.fallback_segments(smartlink, from_ms, to_ms, classes),
        }
    }
}

// Everything else is the transactional store's.

impl Store for Analyzed {
    fn entities(&self) -> Result<Vec<Entity>> {
        self.sqlite.entities()
    }
    fn keys(&self) -> Result<Vec<(Kind, String, u32)>> {
        self.sqlite.keys()
    }
    fn apply(&self, changes: &[Change], actor: &str) -> Result<()> {
        self.sqlite.apply(changes, actor)
    }
    fn record_event(&self, kind: Kind, id: &str, event: &str, ts_ms: i64) -> Result<()> {
        self.sqlite.record_event(kind, id, event, ts_ms)
    }
    fn history(&self, kind: Option<Kind>, id: Option<&str>, limit: usize) -> Result<Vec<HistoryRow>> {
        self.sqlite.history(kind, id, limit)
    }
    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.sqlite.meta(key)
    }
    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.sqlite.set_meta(key, value)
    }
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String> {
        self.sqlite.meta_or_insert(key, value)
    }
    fn shared(&self) -> Option<&dyn SharedStore> {
        self.sqlite.shared()
    }
    fn insert_clicks(&self, batch: &[ClickRow]) -> Result<()> {
        self.sqlite.insert_clicks(batch)
    }
    fn click_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64)>> {
        self.sqlite.click_counts(from_ms, to_ms)
    }
    fn count_clicks(&self) -> Result<u64> {
        self.sqlite.count_clicks()
    }
    fn clicks_since(&self, from_ms: i64, after: Option<&str>, limit: usize) -> Result<Vec<ClickRow>> {
        self.sqlite.clicks_since(from_ms, after, limit)
    }
    fn import_costs(&self, import: &CostImport) -> Result<CostImported> {
        self.sqlite.import_costs(import)
    }
    fn cost_imports(&self, limit: usize) -> Result<Vec<CostImportRow>> {
        self.sqlite.cost_imports(limit)
    }
    fn click_log(&self, q: &ClickQuery) -> Result<Vec<ClickRow>> {
        self.sqlite.click_log(q)
    }
    fn click(&self, second: i64, click_id: &str) -> Result<Option<ClickRow>> {
        self.sqlite.click(second, click_id)
    }
}

impl ConversionStore for Analyzed {
    fn record_postbacks(&self, batch: &[PostbackIn]) -> Result<Vec<Result<Recorded>>> {
        self.sqlite.record_postbacks(batch)
    }
    fn conversions(&self, f: &ConversionFilter) -> Result<Vec<ConversionRow>> {
        self.sqlite.conversions(f)
    }
    fn conversion(&self, id: i64) -> Result<Option<ConversionRow>> {
        self.sqlite.conversion(id)
    }
    fn conversion_history(&self, id: i64) -> Result<Vec<HistoryEntry>> {
        self.sqlite.conversion_history(id)
    }
    fn approved_totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64, f64)>> {
        self.sqlite.approved_totals(from_ms, to_ms)
    }
    fn due_outbox(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>> {
        self.sqlite.due_outbox(now_ms, limit)
    }
    fn claim_outbox(&self, now_ms: i64, limit: usize, lease_ms: i64) -> Result<Vec<OutboxItem>> {
        self.sqlite.claim_outbox(now_ms, limit, lease_ms)
    }
    fn outbox(&self, state: Option<OutboxState>, limit: usize) -> Result<Vec<OutboxItem>> {
        self.sqlite.outbox(state, limit)
    }
    fn record_attempt(&self, outbox_id: i64, attempt: &Attempt) -> Result<()> {
        self.sqlite.record_attempt(outbox_id, attempt)
    }
    fn postpone_outbox(&self, outbox_id: i64, next_at_ms: i64) -> Result<()> {
        self.sqlite.postpone_outbox(outbox_id, next_at_ms)
    }
    fn retry_outbox(&self, outbox_id: i64, now_ms: i64) -> Result<bool> {
        self.sqlite.retry_outbox(outbox_id, now_ms)
    }
    fn outbox_item(&self, outbox_id: i64) -> Result<Option<(OutboxItem, Vec<AttemptRow>)>> {
        self.sqlite.outbox_item(outbox_id)
    }
}

impl AlertStore for Analyzed {
    fn record_alerts(&self, alerts: &[(AlertRow, String)]) -> Result<Vec<Option<i64>>> {
        self.sqlite.record_alerts(alerts)
    }
    fn alerts(&self, limit: usize) -> Result<Vec<AlertRow>> {
        self.sqlite.alerts(limit)
    }
}

impl DigestStore for Analyzed {
    fn insert_digest(&self, d: &DigestRow) -> Result<(i64, bool)> {
        self.sqlite.insert_digest(d)
    }
    fn has_digest(&self, smartlink: &str, period_start_ms: i64) -> Result<bool> {
        self.sqlite.has_digest(smartlink, period_start_ms)
    }
    fn digests(&self, smartlink: Option<&str>, limit: usize) -> Result<Vec<DigestRow>> {
        self.sqlite.digests(smartlink, limit)
    }
    fn digest(&self, id: i64) -> Result<Option<DigestRow>> {
        self.sqlite.digest(id)
    }
    fn due_digests(&self, now_ms: i64, limit: usize) -> Result<Vec<DigestRow>> {
        self.sqlite.due_digests(now_ms, limit)
    }
    fn record_digest_attempt(&self, id: i64, attempt: &DigestAttempt) -> Result<()> {
        self.sqlite.record_digest_attempt(id, attempt)
    }
}
