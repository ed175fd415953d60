//! A build without the DuckDB engine (`--no-default-features`, as the fuzz
//! targets build the server): no [`Columnar`] can exist, so [`Analyzed`]
//! is the transactional store alone, whose rollups and raw rows give the
//! same answers, more slowly. Saves compiling DuckDB's C++ sources.
//!
//! [`Analyzed`]: crate::Analyzed

use std::convert::Infallible;
use std::path::Path;

use smartlink_store::*;

use crate::{Options, Synced};

/// Uninhabited: this build has no columnar store.
pub struct Columnar {
    pub(crate) opts: Options,
    never: Infallible,
}

impl Columnar {
    pub fn open(_data_dir: &Path, _opts: Options) -> Result<Columnar> {
        Err(StoreError::Analytics("this build has no columnar engine (the `engine` feature is off)".into()))
    }
    pub fn path(&self) -> &Path {
        match self.never {}
    }
    pub fn marks(&self) -> FeedMarks {
        match self.never {}
    }
    pub fn loaded_rows(&self) -> u64 {
        match self.never {}
    }
    pub fn raw_from_ms(&self) -> Option<i64> {
        match self.never {}
    }
    pub fn backlog(&self, _src: &dyn TxStore) -> Result<(FeedMarks, i64)> {
        match self.never {}
    }
    pub fn has(&self, _target: &FeedMarks) -> bool {
        match self.never {}
    }
    pub fn sync(&self, _src: &dyn TxStore) -> Result<Synced> {
        match self.never {}
    }
    pub fn try_sync(&self, _src: &dyn TxStore, _wait: std::time::Duration) -> Result<Option<Synced>> {
        match self.never {}
    }
    pub fn compact(&self, _src: &dyn TxStore, _now_ms: i64, _shared_too: bool) -> Result<u64> {
        match self.never {}
    }
    pub fn adopt_horizon(&self, _src: &dyn TxStore) -> Result<()> {
        match self.never {}
    }
    pub fn rollup(&self, _q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        match self.never {}
    }
    pub fn source_counts(&self, _q: &SourceQuery) -> Result<Vec<SourceCounts>> {
        match self.never {}
    }
    pub fn audit_clicks(&self, _smartlink: u32, _from_ms: i64, _to_ms: i64) -> Result<Vec<AuditClickRow>> {
        match self.never {}
    }
    pub fn fallback_segments(
        &self,
        _smartlink: u32,
        _from_ms: i64,
        _to_ms: i64,
        _classes: &[&str],
    ) -> Result<Vec<(String, String, String, u64)>> {
        match self.never {}
    }
}
