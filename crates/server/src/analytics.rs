//! The columnar analytics store's loader: a background thread, in the idle
//! scheduling class, that follows the transactional store's change feed
//! and applies retention. Queries never wait for it: each catches up with
//! what little is missing itself (`smartlink_columnar::Analyzed`).

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use smartlink_columnar::Analyzed;

use crate::metrics::Metrics;

/// How often the loader looks for new rows.
const POLL: Duration = Duration::from_millis(500);
/// How often retention runs.
const COMPACT_EVERY: Duration = Duration::from_secs(3600);

/// Starts the loader; it stops once the store is dropped.
pub fn start_loader(store: Weak<Analyzed>, metrics: Arc<Metrics>, clock: fn() -> i64, leader: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new().name("analytics-load".into()).spawn(move || {
        smartlink_clicklog::sched::background_thread();
        let mut compacted: Option<Instant> = None;
        let mut last_error: Option<Instant> = None;
        loop {
            let Some(a) = store.upgrade() else { return };
            match a.load() {
                Ok(_) => {}
                Err(e) => {
                    metrics.analytics_errors.fetch_add(1, Relaxed);
                    // Once a minute at most: a failing load retries every poll.
                    if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::error!(error = %e, "loading the analytics store failed; retrying");
                        last_error = Some(Instant::now());
                    }
                }
            }
            if let Some(c) = a.columnar() {
                // Queries load what they need too: count every load.
                metrics.analytics_loaded.store(c.loaded_rows(), Relaxed);
                if let Ok((_, behind)) = c.backlog(&**a.tx()) {
                    metrics.analytics_lag.store(behind.max(0) as u64, Relaxed);
                }
            }
            if compacted.is_none_or(|t| t.elapsed() > COMPACT_EVERY) {
                // Every node compacts its own columnar file; only the
                // leader the shared store's raw rows.
                match a.compact(clock(), leader.load(Relaxed)) {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "raw rows past the retention period deleted"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "applying the raw-row retention failed"),
                }
                compacted = Some(Instant::now());
            }
            drop(a);
            std::thread::sleep(POLL);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the analytics loader; queries load what they need");
    }
}
