//! Prometheus metrics, hand-rolled on atomics: a click touches a few relaxed
//! counters and one histogram bucket, with no lock and no allocation.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use smartlink_clicklog::LogMetrics;

use smartlink_core::engine::FallbackReason;
use smartlink_core::router::Busy;
use smartlink_visitor::quality::QualityClass;

/// The `kind` label of `smartlink_http_timeouts_total`.
pub const HTTP_TIMEOUT_KINDS: [&str; 3] = ["header", "idle", "send"];

/// Upper bounds of the decision latency buckets, in seconds.
const BUCKETS: [f64; 12] = [1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1];

/// Upper bounds of the analytics query duration buckets, in seconds.
const QUERY_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// An analytics query the API runs (the `query` label of
/// `smartlink_report_query_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    Report,
    Quality,
    Coverage,
    Audit,
    Explain,
    Policy,
    Clicks,
}

impl QueryKind {
    pub const ALL: [QueryKind; 7] = [
        QueryKind::Report,
        QueryKind::Quality,
        QueryKind::Coverage,
        QueryKind::Audit,
        QueryKind::Explain,
        QueryKind::Policy,
        QueryKind::Clicks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::Report => "report",
            QueryKind::Quality => "quality",
            QueryKind::Coverage => "coverage",
            QueryKind::Audit => "audit",
            QueryKind::Explain => "explain",
            QueryKind::Policy => "policy",
            QueryKind::Clicks => "clicks",
        }
    }
}

/// How an API request failed in the store (the `kind` label of
/// `smartlink_api_store_errors_total`): a read stopped by
/// `server.query_timeout_secs` (503), a store that could not be reached
/// (503), or any other failure (500).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFailure {
    Timeout,
    Unavailable,
    Failed,
}

impl StoreFailure {
    pub const ALL: [StoreFailure; 3] = [StoreFailure::Timeout, StoreFailure::Unavailable, StoreFailure::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreFailure::Timeout => "timeout",
            StoreFailure::Unavailable => "unavailable",
            StoreFailure::Failed => "failed",
        }
    }
}

/// A latency histogram on atomics (cumulative buckets rendered at scrape).
#[derive(Debug)]
struct Histogram<const N: usize> {
    /// One count per bound, and the last for above every bound.
    buckets: [AtomicU64; N],
    sum_ns: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_ns: AtomicU64::new(0) }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&self, bounds: &[f64], nanos: u64) {
        let secs = nanos as f64 / 1e9;
        let i = bounds.iter().position(|b| secs <= *b).unwrap_or(bounds.len()).min(N - 1);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(nanos, Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels`
    /// (`key="value",` pairs, trailing comma included, or empty).
    fn render(&self, s: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let mut cum = 0;
        for (b, c) in bounds.iter().zip(&self.buckets) {
            cum += c.load(Relaxed);
            let _ = writeln!(s, "{name}_bucket{{{labels}le=\"{b:e}\"}} {cum}");
        }
        cum += self.buckets[N - 1].load(Relaxed);
        let _ = writeln!(s, "{name}_bucket{{{labels}le=\"+Inf\"}} {cum}");
        let bare = labels.trim_end_matches(',');
        let braces = if bare.is_empty() { String::new() } else { format!("{{{bare}}}") };
        let _ = writeln!(s, "{name}_sum{braces} {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(s, "{name}_count{braces} {cum}");
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub clicks_offer: AtomicU64,
    pub clicks_fallback: AtomicU64,
    pub clicks_unknown_slug: AtomicU64,
    /// Requests whose `Host` no `domains:` entry names (answered 404).
    pub clicks_unknown_host: AtomicU64,
    pub clicks_bad_request: AtomicU64,
    /// Clicks answered 403/204 by a quality `block` action.
    pub clicks_blocked: AtomicU64,
    /// Clicks by quality class, in [`QualityClass::NAMES`] order.
    pub quality: [AtomicU64; 4],
    pub fallback: [AtomicU64; 5],
    pub unknown_affiliate: AtomicU64,
    pub unknown_source: AtomicU64,
    /// The click log's counters (queue, journal, store loads).
    pub log: Arc<LogMetrics>,
    /// Clicks the rate counters saw in the last whole window, and the
    /// clicks per window they are sized for.
    pub rate_window_clicks: AtomicU64,
    pub rate_capacity: AtomicU64,
    /// Cap leases on a shared store (`leases`): click-cap units this node
    /// holds unspent now, units taken from and given back to the store,
    /// and takes or returns that failed.
    pub cap_units_held: AtomicU64,
    pub cap_units_taken: AtomicU64,
    pub cap_units_returned: AtomicU64,
    pub cap_lease_errors: AtomicU64,
    /// Connections the click fast path handed to hyper (a request other
    /// than a plain click).
    pub http_handoffs: AtomicU64,
    /// Open HTTP connections.
    pub http_open: AtomicU64,
    /// Connections closed for taking too long: waiting for a head, idle,
    /// not reading answers (in [`HTTP_TIMEOUT_KINDS`] order).
    pub http_timeouts: [AtomicU64; 3],
    /// Times the connection limit asked idle connections to close, and new
    /// connections closed at once because it was still reached.
    pub http_drains: AtomicU64,
    pub http_refused: AtomicU64,
    /// Connections cut when the shutdown grace period ran out.
    pub http_shutdown_cut: AtomicU64,
    /// TLS connections accepted, and handshakes that failed or timed out.
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_errors: AtomicU64,
    /// Certificate (and `domains:`) reloads that took effect, and that
    /// failed (the previous ones stay in use).
    pub tls_reloads: AtomicU64,
    pub tls_reload_errors: AtomicU64,
    /// Conversions in by (channel, outcome, HTTP status): `recorded`,
    /// `duplicate`, `updated` (200) or `refused` (the 4xx/5xx answered).
    /// Off the click path; a few dozen cells at most.
    conversions: std::sync::Mutex<std::collections::BTreeMap<ConversionCell, u64>>,
    /// Outbound postback attempts by result: `delivered`, `retry`, `failed`.
    pub outbound: [AtomicU64; 3],
    /// Alerts raised (stored as new).
    pub alerts_raised: AtomicU64,
    /// Rows the columnar analytics store has loaded from the feed.
    pub analytics_loaded: AtomicU64,
    /// Click rows the columnar analytics store is behind the transactional store.
    pub analytics_lag: AtomicU64,
    /// Failed analytics loads.
    pub analytics_errors: AtomicU64,
    decision: Histogram<{ BUCKETS.len() + 1 }>,
    /// Analytics query durations, in [`QueryKind::ALL`] order.
    queries: [Histogram<{ QUERY_BUCKETS.len() + 1 }>; QueryKind::ALL.len()],
    /// API requests that failed in the store, in [`StoreFailure::ALL`] order.
    store_failures: [AtomicU64; StoreFailure::ALL.len()],
    /// The git revision of the build (`smartlink_build_info`), if known.
    pub revision: &'static str,
    /// Learning from other nodes' rows (a shared store only).
    pub learn: LearnMetrics,
}

/// What `/metrics` shows of learning from other nodes' rows
/// (`crate::learn`; rendered only on a shared store).
#[derive(Debug, Default)]
pub struct LearnMetrics {
    /// The task runs (a node on a shared store).
    pub enabled: AtomicBool,
    /// Other nodes' click rows and conversion events applied.
    pub clicks: AtomicU64,
    pub conversions: AtomicU64,
    /// Passes that failed (the store unreachable): retried next time.
    pub errors: AtomicU64,
    /// Wall-clock time (ms) at which the marks learned up to were read.
    pub learned_at_ms: AtomicI64,
}

impl LearnMetrics {
    /// Appends the learning metrics (nothing on a store of one node).
    pub fn render(&self, out: &mut String, now_ms: i64) {
        use std::fmt::Write as _;
        if !self.enabled.load(Relaxed) {
            return;
        }
        let lag = (now_ms - self.learned_at_ms.load(Relaxed)).max(0) as f64 / 1000.0;
        let _ = write!(
            out,
            "# HELP smartlink_cluster_learn_lag_seconds How old the newest rows this node's routers learned from other \
             nodes can be: the time since the marks it has applied every row up to were read.\n\
             # TYPE smartlink_cluster_learn_lag_seconds gauge\nsmartlink_cluster_learn_lag_seconds {lag}\n\
             # HELP smartlink_cluster_learned_rows_total Other nodes' click rows and conversion events applied to \
             this node's routers.\n# TYPE smartlink_cluster_learned_rows_total counter\n\
             smartlink_cluster_learned_rows_total{{kind=\"click\"}} {}\n\
             smartlink_cluster_learned_rows_total{{kind=\"conversion\"}} {}\n\
             # HELP smartlink_cluster_learn_errors_total Learning passes that failed (retried).\n\
             # TYPE smartlink_cluster_learn_errors_total counter\nsmartlink_cluster_learn_errors_total {}\n",
            self.clicks.load(Relaxed),
            self.conversions.load(Relaxed),
            self.errors.load(Relaxed),
        );
    }
}

/// A `smartlink_postbacks_total` series: channel, outcome, status, parameter.
type ConversionCell = (&'static str, &'static str, u16, &'static str);

/// The `result` label of `smartlink_outbound_postbacks_total`.
pub const OUTBOUND_RESULTS: [&str; 3] = ["delivered", "retry", "failed"];

impl Metrics {
    /// Metrics of a build whose git revision is `revision` (empty: unknown).
    pub fn with_revision(revision: &'static str) -> Metrics {
        Metrics { revision, ..Default::default() }
    }

    /// Counts one conversion that came in by `channel` (`postback`,
    /// `pixel`) with its `outcome`, answer `status` and, for a refusal, the
    /// `parameter` at fault (a bounded set of names: `none`, `other`, or one
    /// the postback reads).
    pub fn conversion(&self, channel: &'static str, outcome: &'static str, status: u16, parameter: &'static str) {
        let mut m = self.conversions.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((channel, outcome, status, parameter)).or_default() += 1;
    }

    pub fn fallback(&self, r: FallbackReason) {
        let i = FallbackReason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.fallback[i].fetch_add(1, Relaxed);
    }

    pub fn observe_decision(&self, nanos: u64) {
        self.decision.observe(&BUCKETS, nanos);
    }

    /// Records how long an analytics query took (answered or failed).
    pub fn observe_query(&self, q: QueryKind, took: std::time::Duration) {
        let i = QueryKind::ALL.iter().position(|x| *x == q).unwrap_or(0);
        self.queries[i].observe(&QUERY_BUCKETS, took.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// Counts an API request that failed in the store.
    pub fn store_failure(&self, f: StoreFailure) {
        let i = StoreFailure::ALL.iter().position(|x| *x == f).unwrap_or(0);
        self.store_failures[i].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition format. `router` sums the
    /// smartlinks' router lock counters, which live with the routers.
    pub fn render(&self, router: Busy) -> String {
        let mut s = String::with_capacity(2048);
        let g = |a: &AtomicU64| a.load(Relaxed);
        s.push_str("# HELP smartlink_clicks_total Clicks by outcome.\n# TYPE smartlink_clicks_total counter\n");
        for (o, v) in [
            ("offer", g(&self.clicks_offer)),
            ("fallback", g(&self.clicks_fallback)),
            ("unknown_slug", g(&self.clicks_unknown_slug)),
            ("unknown_host", g(&self.clicks_unknown_host)),
            ("bad_request", g(&self.clicks_bad_request)),
            ("blocked", g(&self.clicks_blocked)),
        ] {
            let _ = writeln!(s, "smartlink_clicks_total{{outcome=\"{o}\"}} {v}");
        }
        s.push_str("# HELP smartlink_click_quality_total Clicks by quality class.\n# TYPE smartlink_click_quality_total counter\n");
        for (c, v) in QualityClass::NAMES.iter().zip(&self.quality) {
            let _ = writeln!(s, "smartlink_click_quality_total{{class=\"{c}\"}} {}", g(v));
        }
        s.push_str("# HELP smartlink_fallback_clicks_total Fallback clicks by reason.\n# TYPE smartlink_fallback_clicks_total counter\n");
        for (r, v) in FallbackReason::ALL.iter().zip(&self.fallback) {
            let _ = writeln!(s, "smartlink_fallback_clicks_total{{reason=\"{}\"}} {}", r.as_str(), g(v));
        }
        // One-sample metrics: (name, type, help, value).
        let single: [(&str, &str, &str, i64); 13] = [
            ("smartlink_unknown_affiliate_total", "counter", "Clicks whose aff parameter named no known affiliate.", g(&self.unknown_affiliate) as i64),
            ("smartlink_unknown_source_total", "counter", "Clicks whose src parameter named no known traffic source.", g(&self.unknown_source) as i64),
            ("smartlink_click_queue_depth", "gauge", "Click rows in memory waiting for the journal.", self.log.queue_depth.load(Relaxed)),
            ("smartlink_clicks_dropped_total", "counter", "Click rows dropped because the write queue was full (the redirect was still served).", g(&self.log.clicks_dropped) as i64),
            ("smartlink_clicks_written_total", "counter", "Click rows committed to the store.", g(&self.log.clicks_written) as i64),
            ("smartlink_clicks_journaled_total", "counter", "Click rows appended to the click journal.", g(&self.log.clicks_journaled) as i64),
            ("smartlink_click_journal_backlog_bytes", "gauge", "Journaled click bytes not yet loaded into the store.", g(&self.log.journal_backlog) as i64),
            ("smartlink_quality_rate_window_clicks", "gauge", "Clicks the click-rate counters saw in their last whole window.", g(&self.rate_window_clicks) as i64),
            ("smartlink_quality_rate_capacity", "gauge", "Clicks per window the click-rate counters are sized for (server.quality.capacity_ips); past it clean visitors start to look like floods.", g(&self.rate_capacity) as i64),
            ("smartlink_click_journal_damaged_total", "counter", "Damaged click journal records or missing segments (their rows are lost; each is logged).", g(&self.log.journal_damaged) as i64),
            ("smartlink_http_handoffs_total", "counter", "Connections the click fast path handed to the full HTTP stack (a request other than a plain GET/HEAD click).", g(&self.http_handoffs) as i64),
            ("smartlink_store_write_errors_total", "counter", "Failed loads of journaled clicks into the store (retried).", g(&self.log.write_errors) as i64),
            ("smartlink_click_journal_errors_total", "counter", "Failed click journal appends (the batch is kept and retried).", g(&self.log.journal_errors) as i64),
        ];
        for (name, kind, help, v) in single {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        s.push_str("# HELP smartlink_http_timeouts_total Connections closed for taking too long, by what was awaited (header: a request head; idle: the next request; send: a client that does not read its answers).\n# TYPE smartlink_http_timeouts_total counter\n");
        for (k, v) in HTTP_TIMEOUT_KINDS.iter().zip(&self.http_timeouts) {
            let _ = writeln!(s, "smartlink_http_timeouts_total{{kind=\"{k}\"}} {}", g(v));
        }
        for (name, kind, help, v) in [
            (
                "smartlink_cap_units_held",
                "gauge",
                "Click-cap units this node took from the shared store and has not spent or given back (0 on SQLite).",
                g(&self.cap_units_held),
            ),
            (
                "smartlink_cap_units_taken_total",
                "counter",
                "Click-cap units this node took from the shared store in blocks.",
                g(&self.cap_units_taken),
            ),
            (
                "smartlink_cap_units_returned_total",
                "counter",
                "Click-cap units this node gave back to the shared store (idle near the cap, cap lowered, day over, shutdown).",
                g(&self.cap_units_returned),
            ),
            (
                "smartlink_cap_lease_errors_total",
                "counter",
                "Cap-unit takes or returns that failed (the store unreachable): no units taken, or units stranded until the day ends.",
                g(&self.cap_lease_errors),
            ),
            ("smartlink_http_connections", "gauge", "Open HTTP connections.", g(&self.http_open)),
            (
                "smartlink_http_connection_drains_total",
                "counter",
                "Times the connection limit (server.max_connections) asked idle keep-alive connections to close.",
                g(&self.http_drains),
            ),
            (
                "smartlink_http_connections_refused_total",
                "counter",
                "New connections closed at once because server.max_connections was reached.",
                g(&self.http_refused),
            ),
            (
                "smartlink_http_shutdown_cut_total",
                "counter",
                "Connections cut when the shutdown grace period (server.shutdown_grace_secs) ran out.",
                g(&self.http_shutdown_cut),
            ),
            (
                "smartlink_tls_handshakes_total",
                "counter",
                "TLS handshakes completed on server.tls_listen.",
                g(&self.tls_handshakes),
            ),
            (
                "smartlink_tls_handshake_errors_total",
                "counter",
                "TLS handshakes that failed (no certificate for the name, bad client hello) or timed out.",
                g(&self.tls_handshake_errors),
            ),
            (
                "smartlink_tls_reloads_total",
                "counter",
                "Reloads of the certificates and domains (SIGHUP or a certificate file changed) that took effect.",
                g(&self.tls_reloads),
            ),
            (
                "smartlink_tls_reload_errors_total",
                "counter",
                "Reloads that failed (each logged); the previous certificates and domains stay in use.",
                g(&self.tls_reload_errors),
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        s.push_str("# HELP smartlink_postbacks_total Conversions in (postbacks and pixels) by channel, outcome (recorded, duplicate, updated, refused), the HTTP status answered and, for a refusal, the parameter at fault (none: not one parameter's fault; other: a parameter no postback reads).\n# TYPE smartlink_postbacks_total counter\n");
        for ((channel, outcome, status, parameter), v) in
            self.conversions.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            let _ = writeln!(
                s,
                "smartlink_postbacks_total{{channel=\"{channel}\",outcome=\"{outcome}\",status=\"{status}\",parameter=\"{parameter}\"}} {v}"
            );
        }
        s.push_str("# HELP smartlink_outbound_postbacks_total Outbound postback attempts by result (delivered; retry: failed, tried again later; failed: given up).\n# TYPE smartlink_outbound_postbacks_total counter\n");
        for (r, v) in OUTBOUND_RESULTS.iter().zip(&self.outbound) {
            let _ = writeln!(s, "smartlink_outbound_postbacks_total{{result=\"{r}\"}} {}", g(v));
        }
        let _ = writeln!(
            s,
            "# HELP smartlink_alerts_raised_total Drift alerts raised.\n# TYPE smartlink_alerts_raised_total counter\nsmartlink_alerts_raised_total {}",
            g(&self.alerts_raised)
        );
        let _ = writeln!(
            s,
            "# HELP smartlink_analytics_loaded_rows_total Click and conversion rows loaded into the columnar analytics store.\n# TYPE smartlink_analytics_loaded_rows_total counter\nsmartlink_analytics_loaded_rows_total {}\n# HELP smartlink_analytics_lag_rows Click rows stored but not yet in the analytics store.\n# TYPE smartlink_analytics_lag_rows gauge\nsmartlink_analytics_lag_rows {}\n# HELP smartlink_analytics_load_errors_total Failed loads into the analytics store (retried).\n# TYPE smartlink_analytics_load_errors_total counter\nsmartlink_analytics_load_errors_total {}",
            g(&self.analytics_loaded),
            g(&self.analytics_lag),
            g(&self.analytics_errors)
        );
        let _ = writeln!(
            s,
            "# HELP smartlink_build_info The running build: its version and git revision.\n# TYPE smartlink_build_info gauge\nsmartlink_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            if self.revision.is_empty() { "unknown" } else { self.revision }
        );
        process_metrics(&mut s);
        let _ = writeln!(
            s,
            "# HELP smartlink_router_busy_total Clicks that found their smartlink's router lock held: picked from the segment's published policy, or waited for the lock.\n# TYPE smartlink_router_busy_total counter\nsmartlink_router_busy_total{{path=\"published\"}} {}\nsmartlink_router_busy_total{{path=\"waited\"}} {}",
            router.published, router.waited
        );
        s.push_str("# HELP smartlink_decision_seconds Time to route one click (enrichment, eligibility, pick, click id, URL).\n# TYPE smartlink_decision_seconds histogram\n");
        self.decision.render(&mut s, "smartlink_decision_seconds", "", &BUCKETS);
        s.push_str("# HELP smartlink_report_query_seconds Time the API's analytics queries took (reports, quality, coverage, audit, explain, policy, click log), answered or failed.\n# TYPE smartlink_report_query_seconds histogram\n");
        for (q, h) in QueryKind::ALL.iter().zip(&self.queries) {
            h.render(&mut s, "smartlink_report_query_seconds", &format!("query=\"{}\",", q.as_str()), &QUERY_BUCKETS);
        }
        s.push_str("# HELP smartlink_api_store_errors_total API requests that failed in the store: timeout (ran past server.query_timeout_secs, answered 503), unavailable (the store could not be reached, answered 503) or failed (answered 500, logged).\n# TYPE smartlink_api_store_errors_total counter\n");
        for (f, v) in StoreFailure::ALL.iter().zip(&self.store_failures) {
            let _ = writeln!(s, "smartlink_api_store_errors_total{{kind=\"{}\"}} {}", f.as_str(), g(v));
        }
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.learn.render(&mut s, now_ms);
        s
    }
}

/// Process metrics from `/proc/self` (Linux; nothing elsewhere): resident
/// memory, open file descriptors, CPU seconds, start time.
fn process_metrics(s: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // Fields after the command name (which may hold spaces, in parentheses).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK) as f64, libc::sysconf(libc::_SC_PAGESIZE) as f64) };
    let ticks = if ticks > 0.0 { ticks } else { 100.0 };
    // utime, stime (fields 14, 15 of stat: 11, 12 here), rss pages (24: 21).
    let cpu = (num(11) + num(12)) / ticks;
    let rss = num(21) * page;
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<f64>().ok())))
        .unwrap_or(0.0);
    let start = boot + num(19) / ticks;
    for (name, kind, help, v) in [
        ("process_cpu_seconds_total", "counter", "User and system CPU time spent, seconds.", cpu),
        ("process_resident_memory_bytes", "gauge", "Resident memory size, bytes.", rss),
        ("process_open_fds", "gauge", "Open file descriptors.", fds as f64),
        ("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, seconds.", start),
    ] {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_lock_counters_are_rendered_by_path() {
        let text = Metrics::default().render(Busy { published: 3, waited: 1 });
        assert!(text.contains("# TYPE smartlink_router_busy_total counter\n"));
        assert!(text.contains("\nsmartlink_router_busy_total{path=\"published\"} 3\n"));
        assert!(text.contains("\nsmartlink_router_busy_total{path=\"waited\"} 1\n"));
    }

    #[test]
    fn query_durations_land_in_cumulative_buckets_per_query_and_the_rest_stay_zero() {
        let m = Metrics::default();
        m.observe_query(QueryKind::Report, std::time::Duration::from_millis(30));
        m.observe_query(QueryKind::Report, std::time::Duration::from_secs(20));
        m.store_failure(StoreFailure::Timeout);
        let text = m.render(Busy::default());
        let q = "smartlink_report_query_seconds";
        assert!(text.contains(&format!("\n{q}_bucket{{query=\"report\",le=\"2.5e-2\"}} 0\n")), "{text}");
        assert!(text.contains(&format!("\n{q}_bucket{{query=\"report\",le=\"5e-2\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("\n{q}_bucket{{query=\"report\",le=\"1e1\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("\n{q}_bucket{{query=\"report\",le=\"+Inf\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("\n{q}_sum{{query=\"report\"}} 20.03\n")), "{text}");
        assert!(text.contains(&format!("\n{q}_count{{query=\"report\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("\n{q}_count{{query=\"audit\"}} 0\n")), "{text}");
        assert!(text.contains("\nsmartlink_api_store_errors_total{kind=\"timeout\"} 1\n"), "{text}");
        assert!(text.contains("\nsmartlink_api_store_errors_total{kind=\"failed\"} 0\n"), "{text}");
        assert!(text.contains("\nsmartlink_decision_seconds_count 0\n"), "{text}");
        assert!(text.contains(",revision=\"unknown\"} 1\n"), "{text}");
    }

    #[test]
    fn the_learning_metrics_show_only_on_a_shared_store_with_the_lag_since_the_marks_were_read() {
        let m = LearnMetrics::default();
        let mut out = String::new();
        m.render(&mut out, 10_000);
        assert_eq!(out, "");
        m.enabled.store(true, Relaxed);
        m.learned_at_ms.store(7_500, Relaxed);
        m.clicks.store(12, Relaxed);
        m.render(&mut out, 10_000);
        assert!(out.contains("smartlink_cluster_learn_lag_seconds 2.5\n"), "{out}");
        assert!(out.contains("smartlink_cluster_learned_rows_total{kind=\"click\"} 12\n"), "{out}");
        assert!(out.contains("smartlink_cluster_learned_rows_total{kind=\"conversion\"} 0\n"), "{out}");
    }
}
