//! The server's state: what every handler and background task shares. The
//! click path reads only the catalog (an `ArcSwap`), the lock-free caches
//! and counters, and the click queue.

use std::sync::Arc;

use arc_swap::ArcSwap;
use smartlink_core::clickid::ClickIdCodec;

use smartlink_core::model::Catalog;
use smartlink_store::Store;

use crate::config::Secret;
use crate::defs::DefsState;
use crate::geo::Geo;
use crate::metrics::Metrics;
use crate::postback_config::PostbackConfig;
use crate::postback_writer::PostbackQueue;
use smartlink_clicklog::writer::ClickQueue;

pub struct AppState {
    /// What the click path reads; swapped atomically on every change.
    pub catalog: ArcSwap<Catalog>,
    /// Custom tracking domains: which links each host serves (empty: every
    /// host serves every link). Swapped on SIGHUP.
    pub domains: ArcSwap<crate::domains::Domains>,
    /// Definitions and keys as stored; admin changes serialise on this lock
    /// (never taken on the click path).
    pub defs: tokio::sync::Mutex<DefsState>,
    pub codec: ClickIdCodec,
    pub geo: Geo,
    /// Hosting/anonymous networks and the operator block list.
    pub network: crate::network::Network,
    /// UA readings and bot verdicts by UA (lock-free, fixed size).
    pub ua_cache: smartlink_visitor::ua_cache::UaCache,
    /// Click-rate windows per IP and IP+UA (lock-free, bounded memory).
    pub behaviour: smartlink_visitor::quality::Behaviour,
    /// Whose forwarded headers are believed (empty without `trust_proxy`).
    pub proxies: crate::click::Proxies,
    /// The admin token's hash (`sha256:` + hex); the token itself is not kept.
    pub admin_token_hash: Secret,
    pub metrics: Arc<Metrics>,
    pub clicks: ClickQueue,
    /// Postback credentials, outbound targets and rates; swapped with the catalog.
    pub postbacks: ArcSwap<PostbackConfig>,
    /// The group-commit postback writer.
    pub conversions: PostbackQueue,
    pub signed_window_secs: u64,
    pub store: Arc<dyn Store>,
    /// The same store, typed: `/metrics` reads the columnar store's loaded
    /// rows from it (queries load rows too, not only the idle-class loader).
    pub analyzed: Arc<smartlink_columnar::Analyzed>,
    /// The click journal's directory (`/readyz` checks it takes writes).
    pub journal_dir: std::path::PathBuf,
    /// `/readyz` reports not ready past this much journal not yet loaded.
    pub ready_max_backlog_bytes: u64,
    /// Dashboard sessions and sign-in failures (in memory: a restart
    /// signs everyone out).
    pub sessions: crate::session::Sessions,
    /// The simulator's runs this node keeps, and its one-at-a-time gate.
    pub simulations: crate::simulation_runs::Simulations,
    /// Whether this node runs the work that runs once across nodes
    /// (alerts, digests, retention in the shared store): always on SQLite;
    /// on a shared store, while it holds the leader lease.
    pub leader: Arc<std::sync::atomic::AtomicBool>,
    /// Injected clock (milliseconds since the epoch); tests may fix it.
    pub clock: fn() -> i64,
}

impl AppState {
    /// Whether this node runs the once-across-nodes work now.
    pub fn leads(&self) -> bool {
        self.leader.load(std::sync::atomic::Ordering::Relaxed)
    }
}

pub fn system_clock() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
