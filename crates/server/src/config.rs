//! The configuration file (YAML) and the definition documents it shares
//! with the admin API, and their validation into a core [`Catalog`].
//!
//! Parse, don't validate: specs are plain serde DTOs with
//! `deny_unknown_fields`; [`build_catalog`] turns a complete set of them into
//! the core model or into a list of [`FieldError`]s, each naming the path of
//! the bad key and what was expected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smartlink_core::caps::OfferCounters;
use smartlink_core::conversion::Status as ConvStatus;
use smartlink_core::model::*;
use smartlink_core::router::SharedRouter;
use smartlink_core::targeting::{CountrySet, Targeting, ALL_HOURS};
use smartlink_core::template::{MacroSet, Template};
use smartlink_store::Kind;

/// Whether `url` names a store this build can open: a `postgres://` or
/// `postgresql://` URL. The message never shows a password.
pub fn check_store_url(url: &str) -> Result<(), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(format!(
            "expected a postgres://user@host/database URL (absent: SQLite in the data directory), got {:?}",
            smartlink_store::redact_url(url)
        ))
    }
}

/// A string that never prints: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// The shared store several nodes use: a `postgres://` URL (also
    /// `--store` and `SMARTLINK_STORE`). Absent: SQLite in the data
    /// directory. A secret: it may carry a password, which is never shown.
    pub store: Option<Secret>,
    /// A MaxMind-format country database; the built-in registry data is used
    /// when absent.
    pub geoip: Option<PathBuf>,
    /// Believe `X-Forwarded-For` and `CF-IPCountry` from the proxies in
    /// `trusted_proxies`.
    #[serde(default)]
    pub trust_proxy: bool,
    /// Addresses or CIDRs of the proxies in front (with `trust_proxy`).
    /// Default loopback (`127.0.0.0/8`, `::1`): a proxy on the same machine.
    pub trusted_proxies: Option<Vec<String>>,
    pub admin_token: Option<Secret>,
    /// Capacity of the in-memory click queue (rows). Default 100 000.
    pub queue_capacity: Option<usize>,
    /// CPU priority of loading journaled click rows into the store:
    /// `low` (default: redirects come first, the store catches up when
    /// the CPU is free) or `normal`.
    pub ingest_priority: Option<IngestPriority>,
    /// Journal backlog (MiB) past which rows are also loaded at normal
    /// priority, so the backlog stays bounded under sustained load.
    /// Default 512.
    pub ingest_catch_up_mib: Option<u64>,
    /// While the machine's CPUs are nearly all busy (under 10% idle), the
    /// low-priority loader waits up to this many seconds before loading
    /// journaled rows, so a burst is served first and stored after; 0
    /// never waits. Default 30.
    pub ingest_defer_secs: Option<u64>,
    /// Scheduler time slice the request threads ask for, microseconds:
    /// 0 (the kernel's default) or 100 to 100000. Default 100. See
    /// [`smartlink_clicklog::sched::request_slice`].
    pub request_slice_us: Option<u32>,
    /// First retry delay of outbound postbacks, seconds (doubles each
    /// attempt, capped at 12 h). Default 60.
    pub outbound_retry_base_secs: Option<f64>,
    /// Delivery attempts before an outbound postback is marked failed.
    /// Default 14 (26 h to 79 h depending on jitter, with the default base).
    pub outbound_max_attempts: Option<u32>,
    /// Accepted clock skew of signed postbacks (`ts`), seconds. Default 300.
    pub signed_postback_window_secs: Option<u64>,
    /// Seconds a client has to send a request head (from connecting, or
    /// from the head's first byte), and to read the answers it asked for.
    /// Default 10.
    pub header_timeout_secs: Option<u64>,
    /// Seconds an idle keep-alive connection is kept. Default 60.
    pub idle_timeout_secs: Option<u64>,
    /// Seconds allowed between two chunks of a request body. Default 10.
    pub body_timeout_secs: Option<u64>,
    /// Open connections at most; at the limit idle keep-alive connections
    /// are closed to make room. Default: the process's open-file limit
    /// less 64 (raised to its hard limit at start-up), at most 16384.
    pub max_connections: Option<usize>,
    /// Seconds one store read (a report, an analysis, a listing) may run
    /// before it is stopped with a 503 naming the limit; 0: no limit.
    /// Default 30.
    pub query_timeout_secs: Option<u64>,
    /// `text` (default) or `json`: one JSON object per log line on stderr
    /// (`--log-format` and `SMARTLINK_LOG_FORMAT` override it).
    pub log_format: Option<String>,
    /// `/readyz` answers 503 while more than this many MiB of the click
    /// journal wait to be loaded into the store. Default 1024.
    pub ready_max_backlog_mib: Option<u64>,
    /// Days each click's raw row (sub-ids, source, quality reasons, IP, user
    /// agent) is kept, in the columnar analytics store and in the click
    /// table; the hourly and daily rollups keep the aggregates for ever.
    /// 0 keeps raw rows for ever. Default 90.
    pub raw_retention_days: Option<u32>,
    /// Seconds requests in progress may take after SIGTERM before their
    /// connections are cut (the click queue and journal are flushed
    /// either way). Default 10.
    pub shutdown_grace_secs: Option<u64>,
    /// Address (`host:port`) of the TLS listener; certificates come from
    /// the `domains:` entries' `tls` files. None: no TLS (a proxy in front
    /// terminates it).
    pub tls_listen: Option<String>,
    /// Seconds between checks of the certificate files for changes (they
    /// are reloaded when one changed; SIGHUP reloads at once); 0: SIGHUP
    /// only. Default 10.
    pub tls_poll_secs: Option<u64>,
    /// On a shared store, seconds between the passes that apply other
    /// nodes' clicks and conversions to this node's routers. Default 2.
    pub learn_interval_secs: Option<f64>,
    /// Seconds between rebuilds of the network prior: what every `auto`
    /// smartlink's router learned about each offer, the prior above each
    /// one's own learning (`priors.rs`); 0: off, each smartlink learns from
    /// its own traffic only. Default 300.
    pub network_prior_secs: Option<u64>,
    /// Traffic-quality inputs: network databases, block list, rate windows.
    #[serde(default)]
    pub quality: QualitySettings,
    /// The drift-alert detector.
    #[serde(default)]
    pub alerts: AlertSettings,
    /// The scheduled per-smartlink digest.
    #[serde(default)]
    pub digests: DigestSettings,
}

/// `server.ingest_priority`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestPriority {
    #[default]
    Low,
    Normal,
}

/// `server.alerts`: every key optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// How often the detector runs, seconds. Default 300; 0 turns it off.
    pub interval_secs: Option<u64>,
    /// Each new alert is POSTed here as JSON.
    pub webhook_url: Option<Secret>,
}

/// `server.digests`: every key optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSettings {
    /// `weekly` (default), `daily` or `off`.
    pub every: Option<DigestEvery>,
    /// Weekly: the weekday periods start and end on, `mon` .. `sun`.
    /// Default `mon` (ISO weeks).
    pub weekday: Option<String>,
    /// Local hour (0..23) on the day a period ends when its digest is
    /// made and sent. Default 8.
    pub hour: Option<u32>,
    /// IANA timezone of the periods. Default UTC.
    pub timezone: Option<String>,
    /// Each new digest is POSTed here as JSON (retried with backoff).
    pub webhook_url: Option<Secret>,
    /// `all` (default) or a list of smartlink slugs.
    pub smartlinks: Option<DigestSmartlinks>,
}

/// `server.digests.every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestEvery {
    Weekly,
    Daily,
    Off,
}

/// `server.digests.smartlinks`: `all` or a list of slugs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DigestSmartlinks {
    All(String),
    Only(Vec<String>),
}

impl DigestSettings {
    /// The schedule, or `None` when digests are off. Call on validated
    /// settings (an invalid weekday or zone reads as the default).
    pub fn schedule(&self) -> Option<smartlink_analysis::digest::Schedule> {
        use smartlink_analysis::digest::{Every, Schedule};
        let d = Schedule::default();
        let every = match self.every.unwrap_or(DigestEvery::Weekly) {
            DigestEvery::Off => return None,
            DigestEvery::Weekly => Every::Weekly,
            DigestEvery::Daily => Every::Daily,
        };
        Some(Schedule {
            every,
            weekday: self.weekday.as_deref().and_then(smartlink_analysis::digest::parse_weekday).unwrap_or(d.weekday),
            hour: self.hour.unwrap_or(d.hour),
            tz: self.timezone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(d.tz),
        })
    }

    /// Whether digests are made for `slug`.
    pub fn includes(&self, slug: &str) -> bool {
        match &self.smartlinks {
            None | Some(DigestSmartlinks::All(_)) => true,
            Some(DigestSmartlinks::Only(list)) => list.iter().any(|s| s == slug),
        }
    }
}

/// Default `server.request_slice_us`.
pub const DEFAULT_REQUEST_SLICE_US: u32 = 100;

/// Default `server.quality.capacity_ips`: 1,000,000 clicks per window
/// (about 16,700 clicks/s with the default 60 s window) in about 5.3 MB.
/// Undersized counters flag clean visitors, which costs real revenue;
/// memory is the cheaper side to err on.
pub const DEFAULT_RATE_CAPACITY: u64 = 1_000_000;

/// `server.quality`: every key optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualitySettings {
    /// A MaxMind-format ASN database (GeoLite2-ASN layout): hosting and
    /// cloud networks are `datacenter`.
    pub asn_db: Option<PathBuf>,
    /// A MaxMind-format anonymous-IP database (GeoIP2-Anonymous-IP layout):
    /// VPNs, proxies and Tor exits are `anonymous_proxy`, hosting ranges
    /// `datacenter`.
    pub anonymous_ip_db: Option<PathBuf>,
    /// More hosting ASNs, beyond the built-in list of large clouds.
    #[serde(default)]
    pub datacenter_asns: Vec<u32>,
    /// Addresses or CIDRs whose clicks are always `bot` (`blocked_ip`).
    #[serde(default)]
    pub block_ips: Vec<String>,
    /// Sliding window of the click-rate counters, seconds. Default 60.
    pub window_secs: Option<u32>,
    /// Clicks per IP per window that make it suspect. Default 20; 0 off;
    /// at most 4095 (the counters saturate there).
    pub ip_suspect: Option<u32>,
    /// Clicks per IP per window that make it a bot. Default 60; 0 off.
    pub ip_bot: Option<u32>,
    /// Clicks per IP and User-Agent per window that make it suspect.
    /// Default 10; 0 off.
    pub ip_ua_suspect: Option<u32>,
    /// The same visitor, smartlink and sub-ids again within this many
    /// seconds is a `duplicate`. Default 10.
    pub duplicate_secs: Option<u32>,
    /// Clicks per window the rate counters and the duplicate memory are
    /// sized for (about 5.3 bytes each). Past it, rate estimates grow and
    /// clean visitors start to look like floods: size it for the busiest
    /// window (clicks per second × `window_secs`). Default
    /// [`DEFAULT_RATE_CAPACITY`].
    pub capacity_ips: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvertiserSpec {
    pub id: String,
    /// Shared token the advertiser sends as `token` on every postback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, write_only)]
    pub postback_token: Option<Secret>,
    /// When set, postbacks must carry `ts` and `sig` = hex HMAC-SHA256 of
    /// the canonical query under this secret (replay protection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, write_only)]
    pub postback_secret: Option<Secret>,
    /// When set, postbacks are accepted only from these addresses (CIDRs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_ips: Option<Vec<String>>,
    /// Accept the browser conversion pixel (`/pixel`) for this advertiser's
    /// offers, authenticated by `postback_token` alone (a browser can sign
    /// nothing and comes from anywhere, so `postback_secret` and
    /// `postback_ips` do not apply to it). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_pixel: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AffiliateSpec {
    pub id: String,
    /// Outbound postback to the affiliate / traffic source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_url: Option<String>,
    /// Which statuses fire it. Default `[approved]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_statuses: Option<Vec<String>>,
    /// The affiliate's cut of the payout reported in `{payout}`. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_share: Option<f64>,
    /// Per-offer cuts that override `payout_share`: offer id → share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_shares: Option<BTreeMap<String, f64>>,
    /// Bearer key for the affiliate's own read-only API access (reports,
    /// conversions and smartlinks, scoped to this affiliate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, write_only)]
    pub api_key: Option<Secret>,
    /// Where this affiliate's direct-link clicks go when the offer cannot
    /// take them (paused, capped, not targeted) and names no fallback of
    /// its own. Same macros as a smartlink's `fallback_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_url: Option<String>,
}

/// How a link's or source's clicks cost when the click URL carries no
/// `cost`: `{model: cpc|cpm|cpa, amount: 0.02, currency: EUR}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostSpec {
    pub model: CostModelSpec,
    /// Per click (CPC), per 1,000 clicks (CPM) or per approved conversion
    /// (CPA).
    pub amount: f64,
    /// Default: the source's currency, else the base currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CostModelSpec {
    Cpc,
    Cpm,
    Cpa,
}

/// A traffic source: where clicks are bought.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub id: String,
    /// The source's own names for the click-URL parameters it fills:
    /// `{sub1: zoneid, cost: price}` reads its `zoneid` into `sub1` and its
    /// `price` as the click's cost. Keys: `sub1`..`sub5`, `cost`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The currency its `cost` parameter is in. Default: the base currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// How its clicks cost when it passes no `cost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSpec>,
    /// Outbound postback to the source on its clicks' conversions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_url: Option<String>,
    /// Which statuses fire it. Default `[approved]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_statuses: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetingSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browsers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_clicks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_conversions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_budget: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusSpec {
    #[default]
    Active,
    Paused,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferSpec {
    pub id: String,
    pub advertiser: String,
    pub url: String,
    pub payout: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub targeting: TargetingSpec,
    #[serde(default, skip_serializing_if = "is_default")]
    pub caps: CapsSpec,
    #[serde(default)]
    pub status: StatusSpec,
    /// Postbacks for clicks older than this are refused. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution_window_days: Option<u32>,
    /// Conversions sooner than this after the click are flagged
    /// `short_ctit`. Default 5; 0 disables the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ctit_secs: Option<u32>,
    /// Where the offer's direct link (`/o/{id}`) sends a click the offer
    /// cannot take (paused, capped, not targeted). Same macros as a
    /// smartlink's `fallback_url`. At most one of this and
    /// `fallback_smartlink`; with neither, the affiliate's `fallback_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_url: Option<String>,
    /// A smartlink the direct link hands such a click to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_smartlink: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Vec<String>>,
    pub offer: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StrategySpec {
    #[default]
    Auto,
    Weighted,
    Priority,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmartlinkSpec {
    pub slug: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affiliate: Option<String>,
    pub offers: Vec<String>,
    pub fallback_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<OverrideSpec>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub strategy: StrategySpec,
    /// For `strategy: weighted`: one weight per offer, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// Outbound postback for this smartlink's conversions (in addition to
    /// the affiliate's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_statuses: Option<Vec<String>>,
    /// What to do with bot, suspect and link-preview clicks.
    #[serde(default, skip_serializing_if = "is_default")]
    pub quality: QualitySpec,
    /// The traffic source of clicks whose URL names none (`src`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How this link's clicks cost when the URL carries no `cost` (before
    /// the source's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSpec>,
}

/// `quality:` on a smartlink: `{bot: block, suspect: allow, preview: block,
/// safe_page: URL}`; each action one of `block|fallback|safe_page|allow`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QualitySpec {
    /// Default `fallback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<QualityActionSpec>,
    /// Default `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect: Option<QualityActionSpec>,
    /// Default `block` (a blank 204).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<QualityActionSpec>,
    /// Neutral page for the `safe_page` action (same macros as
    /// `fallback_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_page: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QualityActionSpec {
    Block,
    Fallback,
    SafePage,
    Allow,
}

impl From<QualityActionSpec> for QualityAction {
    fn from(a: QualityActionSpec) -> QualityAction {
        match a {
            QualityActionSpec::Block => QualityAction::Block,
            QualityActionSpec::Fallback => QualityAction::Fallback,
            QualityActionSpec::SafePage => QualityAction::SafePage,
            QualityActionSpec::Allow => QualityAction::Allow,
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Every definition, in one place (a file, the store, or both merged).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definitions {
    /// Code of the currency reports and routing use. Default USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_currency: Option<String>,
    /// Value of one unit of each other currency, in the base currency.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub currencies: BTreeMap<String, f64>,
    /// The largest payout one conversion may carry, in the base currency
    /// (an offer's payout, or one a postback sends, after conversion).
    /// Default [`DEFAULT_MAX_PAYOUT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payout: Option<f64>,
    #[serde(default)]
    pub advertisers: Vec<AdvertiserSpec>,
    #[serde(default)]
    pub affiliates: Vec<AffiliateSpec>,
    #[serde(default)]
    pub offers: Vec<OfferSpec>,
    #[serde(default)]
    pub smartlinks: Vec<SmartlinkSpec>,
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
}

/// The whole file: server settings plus definitions (read by
/// [`load_file`], which keeps key paths in its errors).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileConfig {
    pub server: ServerSettings,
    /// Custom tracking domains: read from the file at every start (and on
    /// SIGHUP), never stored.
    pub domains: Vec<crate::domains::DomainSpec>,
    pub definitions: Definitions,
}

/// One invalid value (defined with the API's errors, which carry it).
pub use crate::error::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: invalid configuration:\n{}", .errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid { file: String, errors: Vec<FieldError> },
}

impl ConfigError {
    /// The same error, naming `file`.
    fn in_file(self, file: &str) -> ConfigError {
        match self {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax { file: file.into(), message },
            ConfigError::Invalid { errors, .. } => ConfigError::Invalid { file: file.into(), errors },
            e => e,
        }
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` with environment values.
pub fn interpolate_env(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            let line = text[..text.len() - rest.len() + start].lines().count().max(1);
            format!("line {line}: unclosed ${{ in environment reference")
        })?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match env(name).filter(|v| !v.is_empty()).or(default.map(str::to_string)) {
            Some(v) => out.push_str(&v),
            None => {
                let line = text[..text.len() - rest.len() + start].lines().count().max(1);
                return Err(format!(
                    "line {line}: environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses YAML (or JSON) into a tree: `serde-saphyr` (pure Rust, no
/// `unsafe`, panic-free on malformed input) reads the text into a
/// `serde_json::Value`, which the typed deserialization then walks with
/// key paths. An empty document is an empty mapping.
fn yaml_tree(text: &str) -> Result<serde_json::Value, String> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    // YAML 1.2 as the previous parser read it: only true/false are
    // booleans (`every: off` stays the string "off"), and `.nan`/`.inf`
    // arrive as text, so a numeric setting refuses them naming its key.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    serde_saphyr::from_str_with_options::<serde_json::Value>(text, options).map_err(|e| e.to_string())
}

/// Parses YAML (or JSON) into `T`, with errors that name the key path.
pub fn parse_yaml<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    from_value(yaml_tree(text)?)
        .map_err(|(path, inner)| if path.is_empty() { inner } else { format!("{path}: {inner}") })
}

/// Reads a configuration file, parses it, interpolates the environment into
/// its string values and checks the server settings (structure and ranges;
/// call [`build_catalog`] to validate the definitions as a whole).
///
/// `${NAME}` references are replaced *after* parsing, inside string values
/// only, so a value can never change the file's structure (a `#` or a
/// newline in a token stays in the token). A value that is exactly one
/// reference whose text is a number or `true`/`false` takes that type, so
/// `queue_capacity: ${QUEUE}` works.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let file = path.display().to_string();
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
    parse_file_text(&raw, |k| std::env::var(k).ok()).map_err(|e| e.in_file(&file))
}

/// [`load_file`] on text already read, with an injected environment.
pub fn parse_file_text(raw: &str, env: impl Fn(&str) -> Option<String>) -> Result<FileConfig, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax { file: String::new(), message };
    let mut doc = yaml_tree(raw).map_err(syntax)?;
    interpolate_value(&mut doc, "", &env).map_err(syntax)?;
    let serde_json::Value::Object(mut top) = doc else {
        return Err(syntax("expected a mapping of server settings and definitions".into()));
    };
    let server = top.remove("server");
    let mut errors = Vec::new();
    let settings: ServerSettings = match server {
        None | Some(serde_json::Value::Null) => ServerSettings::default(),
        Some(v) => match from_value(v) {
            Ok(s) => s,
            Err((path, message)) => {
                errors.push(FieldError { path: join_path("server", &path), message });
                ServerSettings::default()
            }
        },
    };
    let domains: Vec<crate::domains::DomainSpec> = match top.remove("domains") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => match from_value(v) {
            Ok(d) => d,
            Err((path, message)) => {
                errors.push(FieldError { path: join_path("domains", &path), message });
                Vec::new()
            }
        },
    };
    let definitions: Definitions = match from_value(serde_json::Value::Object(top)) {
        Ok(d) => d,
        Err((path, message)) => {
            errors.push(FieldError { path, message });
            Definitions::default()
        }
    };
    if errors.is_empty() {
        errors.extend(validate_settings(&settings));
        errors.extend(duplicate_ids(&definitions));
        // Hosts and names here; whether the links exist once the store's
        // definitions are known (`prepare`).
        if let Err(e) = crate::domains::Domains::build(&domains, |_| true, |_| true) {
            errors.extend(e);
        }
    }
    if errors.is_empty() {
        Ok(FileConfig { server: settings, domains, definitions })
    } else {
        Err(ConfigError::Invalid { file: String::new(), errors })
    }
}

fn join_path(prefix: &str, path: &str) -> String {
    match path {
        "" => prefix.to_string(),
        p if p.starts_with('[') => format!("{prefix}{p}"),
        p => format!("{prefix}.{p}"),
    }
}

/// Deserializes with the key path of the first error.
fn from_value<T: for<'de> Deserialize<'de>>(v: serde_json::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        (if path == "." { String::new() } else { path }, e.into_inner().to_string())
    })
}

/// Replaces `${NAME}` / `${NAME:-default}` in every string value of `v`
/// (not in keys); `path` names where, for errors.
fn interpolate_value(
    v: &mut serde_json::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains("${") => {
            let out =
                interpolate_env(s, env).map_err(|e| format!("{}: {e}", if path.is_empty() { "." } else { path }))?;
            let whole = s.trim().starts_with("${") && s.trim().ends_with('}') && s.matches("${").count() == 1;
            *v = match (whole, out.trim()) {
                (true, "true") => Value::Bool(true),
                (true, "false") => Value::Bool(false),
                (true, t) if t.parse::<i64>().is_ok() => Value::Number(t.parse::<i64>().unwrap_or_default().into()),
                (true, t) if t.parse::<u64>().is_ok() => Value::Number(t.parse::<u64>().unwrap_or_default().into()),
                (true, t) if t.parse::<f64>().is_ok_and(f64::is_finite) => {
                    serde_json::Number::from_f64(t.parse::<f64>().unwrap_or_default())
                        .map_or_else(|| Value::String(out.clone()), Value::Number)
                }
                _ => Value::String(out),
            };
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{i}]"), env)?;
            }
        }
        Value::Object(m) => {
            for (key, item) in m.iter_mut() {
                interpolate_value(item, join_path(path, key).trim_start_matches('.'), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Ids (and slugs) given twice in one file: merging would keep only the
/// last, silently.
fn duplicate_ids(defs: &Definitions) -> Vec<FieldError> {
    let mut errs = Errs(Vec::new());
    let mut dup = |section: &str, field: &str, ids: Vec<&str>| {
        let mut seen = HashSet::new();
        for (i, id) in ids.into_iter().enumerate() {
            if !seen.insert(id) {
                errs.push(format!("{section}[{i}].{field}"), format!("duplicate {field} {id:?}"));
            }
        }
    };
    dup("advertisers", "id", defs.advertisers.iter().map(|a| a.id.as_str()).collect());
    dup("affiliates", "id", defs.affiliates.iter().map(|a| a.id.as_str()).collect());
    dup("offers", "id", defs.offers.iter().map(|o| o.id.as_str()).collect());
    dup("smartlinks", "slug", defs.smartlinks.iter().map(|s| s.slug.as_str()).collect());
    errs.0
}

/// Every server setting out of its range, each with its key path. The
/// ranges keep values that would crash, exhaust memory or silently act
/// as something else out.
pub fn validate_settings(s: &ServerSettings) -> Vec<FieldError> {
    let mut e = Errs(Vec::new());
    fn range<T: PartialOrd + Copy + std::fmt::Display>(
        e: &mut Errs,
        key: &str,
        v: Option<T>,
        lo: T,
        hi: T,
        what: &str,
    ) {
        if let Some(v) = v {
            if !(v >= lo && v <= hi) {
                e.push(key, format!("{v} is out of range; expected {what} from {lo} to {hi}"));
            }
        }
    }
    if let Some(l) = &s.listen {
        if l.parse::<std::net::SocketAddr>().is_err() {
            e.push("server.listen", format!("expected an address and port such as 127.0.0.1:8080, got {l:?}"));
        }
    }
    if let Some(url) = s.store.as_ref().filter(|u| !u.expose().is_empty()) {
        if let Err(m) = check_store_url(url.expose()) {
            e.push("server.store", m);
        }
    }
    if let Some(l) = &s.tls_listen {
        if l.parse::<std::net::SocketAddr>().is_err() {
            e.push("server.tls_listen", format!("expected an address and port such as 0.0.0.0:443, got {l:?}"));
        }
    }
    range(&mut e, "server.tls_poll_secs", s.tls_poll_secs, 0, 86_400, "seconds");
    range(&mut e, "server.learn_interval_secs", s.learn_interval_secs, 0.1, 3_600.0, "seconds");
    range(&mut e, "server.network_prior_secs", s.network_prior_secs, 0, 86_400, "seconds");
    range(&mut e, "server.queue_capacity", s.queue_capacity, 1, 10_000_000, "a number of rows");
    range(&mut e, "server.ingest_catch_up_mib", s.ingest_catch_up_mib, 1, 1 << 20, "MiB");
    range(&mut e, "server.ingest_defer_secs", s.ingest_defer_secs, 0, 3_600, "seconds");
    if let Some(v) = s.request_slice_us {
        if !(v == 0 || (100..=100_000).contains(&v)) {
            e.push(
                "server.request_slice_us",
                format!("{v} is out of range; expected 0 (the kernel's default) or 100 to 100000"),
            );
        }
    }
    range(&mut e, "server.outbound_retry_base_secs", s.outbound_retry_base_secs, 0.1, 86_400.0, "seconds");
    range(&mut e, "server.outbound_max_attempts", s.outbound_max_attempts, 1, 100, "attempts");
    range(&mut e, "server.signed_postback_window_secs", s.signed_postback_window_secs, 1, 86_400, "seconds");
    range(&mut e, "server.header_timeout_secs", s.header_timeout_secs, 1, 600, "seconds");
    range(&mut e, "server.idle_timeout_secs", s.idle_timeout_secs, 1, 3_600, "seconds");
    range(&mut e, "server.body_timeout_secs", s.body_timeout_secs, 1, 600, "seconds");
    range(&mut e, "server.max_connections", s.max_connections, 1, 1_000_000, "connections");
    range(&mut e, "server.shutdown_grace_secs", s.shutdown_grace_secs, 0, 3_600, "seconds");
    range(&mut e, "server.query_timeout_secs", s.query_timeout_secs, 0, 3_600, "seconds");
    range(&mut e, "server.ready_max_backlog_mib", s.ready_max_backlog_mib, 1, 1 << 20, "MiB");
    range(&mut e, "server.raw_retention_days", s.raw_retention_days.map(u64::from), 0, 36_500, "days");
    if let Some(f) = s.log_format.as_deref().filter(|f| !LOG_FORMATS.contains(f)) {
        e.push("server.log_format", format!("expected text or json, got {f:?}"));
    }
    for (i, c) in s.trusted_proxies.iter().flatten().enumerate() {
        if let Err(m) = Cidr::parse(c) {
            e.push(format!("server.trusted_proxies[{i}]"), m);
        }
    }
    let q = &s.quality;
    for (i, c) in q.block_ips.iter().enumerate() {
        if let Err(m) = Cidr::parse(c) {
            e.push(format!("server.quality.block_ips[{i}]"), m);
        }
    }
    range(&mut e, "server.quality.window_secs", q.window_secs, 1, 3_600, "seconds");
    for (key, v) in [("ip_suspect", q.ip_suspect), ("ip_bot", q.ip_bot), ("ip_ua_suspect", q.ip_ua_suspect)] {
        range(
            &mut e,
            &format!("server.quality.{key}"),
            v,
            0,
            smartlink_visitor::quality::Behaviour::MAX_THRESHOLD,
            "clicks per window (0 turns it off; the counters saturate at 4095)",
        );
    }
    range(&mut e, "server.quality.duplicate_secs", q.duplicate_secs, 0, 3_600, "seconds");
    let (lo, hi) = (
        *smartlink_visitor::quality::Behaviour::CAPACITY_RANGE.start() as u64,
        *smartlink_visitor::quality::Behaviour::CAPACITY_RANGE.end() as u64,
    );
    range(&mut e, "server.quality.capacity_ips", q.capacity_ips, lo, hi, "clicks per window");
    range(&mut e, "server.alerts.interval_secs", s.alerts.interval_secs, 0, 86_400, "seconds");
    let d = &s.digests;
    if let Some(w) = &d.weekday {
        if smartlink_analysis::digest::parse_weekday(w).is_none() {
            e.push("server.digests.weekday", format!("expected mon, tue, wed, thu, fri, sat or sun, got {w:?}"));
        }
    }
    range(&mut e, "server.digests.hour", d.hour, 0, 23, "an hour");
    if let Some(z) = &d.timezone {
        if z.parse::<chrono_tz::Tz>().is_err() {
            e.push("server.digests.timezone", format!("expected an IANA timezone such as Europe/Berlin, got {z:?}"));
        }
    }
    if let Some(DigestSmartlinks::All(a)) = &d.smartlinks {
        if a != "all" {
            e.push("server.digests.smartlinks", format!("expected all or a list of smartlink slugs, got {a:?}"));
        }
    }
    for (key, url) in
        [("server.alerts.webhook_url", &s.alerts.webhook_url), ("server.digests.webhook_url", &d.webhook_url)]
    {
        if let Some(u) = url {
            let u = u.expose();
            let ok = (u.starts_with("https://") || u.starts_with("http://"))
                && u.parse::<axum::http::Uri>().is_ok_and(|p| p.host().is_some_and(|h| !h.is_empty()));
            if !ok {
                e.push(key, "expected an absolute http:// or https:// URL");
            }
        }
    }
    e.0
}

/// A stable hash of the definitions (not of the server settings), used to
/// apply a file only when it changed since it was last applied.
pub fn definitions_hash(defs: &Definitions) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(defs).unwrap_or_default();
    let digest = sha2::Sha256::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Numeric keys by (kind, id), as assigned by the store.
pub type Keys = HashMap<(Kind, String), u32>;

struct Errs(Vec<FieldError>);

impl Errs {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { path: path.into(), message: message.into() });
    }
    fn list<T>(
        &mut self,
        path: &str,
        items: &Option<Vec<String>>,
        parse: impl Fn(&str) -> Result<T, ParseError>,
    ) -> Option<Vec<T>> {
        let items = items.as_ref()?;
        if items.is_empty() {
            self.push(path, "expected a non-empty list (omit the key to accept everything)");
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, s) in items.iter().enumerate() {
            match parse(s) {
                Ok(v) => out.push(v),
                Err(e) => self.push(format!("{path}[{i}]"), e.0),
            }
        }
        Some(out)
    }
}

fn check_ids<'a>(errs: &mut Errs, section: &str, ids: impl Iterator<Item = &'a str>, field: &str) {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if let Err(e) = Id::parse(id) {
            errs.push(format!("{section}[{i}].{field}"), e.0);
        } else if !seen.insert(id) {
            errs.push(format!("{section}[{i}].{field}"), format!("duplicate {field} {id:?}"));
        }
    }
}

/// Validates a complete set of definitions and builds the click path's
/// catalog. Every problem is reported, not just the first.
fn quality_actions(errs: &mut Errs, p: &str, q: &QualitySpec) -> QualityActions {
    let d = QualityActions::default();
    let safe_page = q.safe_page.as_ref().and_then(|u| {
        Template::parse(u, MacroSet::Redirect).map_err(|e| errs.push(format!("{p}.safe_page"), e.to_string())).ok()
    });
    let actions = QualityActions {
        bot: q.bot.map_or(d.bot, Into::into),
        suspect: q.suspect.map_or(d.suspect, Into::into),
        preview: q.preview.map_or(d.preview, Into::into),
        safe_page,
    };
    if q.safe_page.is_none() {
        for (name, a) in [("bot", actions.bot), ("suspect", actions.suspect), ("preview", actions.preview)] {
            if a == QualityAction::SafePage {
                errs.push(format!("{p}.{name}"), "action safe_page needs quality.safe_page: URL");
            }
        }
    }
    actions
}

/// The log formats `server.log_format` and `--log-format` take.
pub const LOG_FORMATS: [&str; 2] = ["text", "json"];

/// Default of `max_payout`, in the base currency.
pub const DEFAULT_MAX_PAYOUT: f64 = 100_000.0;

/// The largest accepted exchange rate: with [`DEFAULT_MAX_PAYOUT`]-sized
/// payouts, products stay far from overflow.
pub const MAX_RATE: f64 = 1e9;

/// `max_payout` as configured, or its default.
pub fn max_payout(defs: &Definitions) -> f64 {
    defs.max_payout.unwrap_or(DEFAULT_MAX_PAYOUT)
}

pub fn build_catalog(defs: &Definitions, keys: &Keys) -> Result<Catalog, Vec<FieldError>> {
    let mut errs = Errs(Vec::new());
    let max_payout = max_payout(defs);
    if !(max_payout.is_finite() && max_payout > 0.0 && max_payout <= 1e12) {
        errs.push("max_payout", "expected a positive amount of at most 1e12 in the base currency");
    }
    let base = match &defs.base_currency {
        None => Currency::USD,
        Some(c) => Currency::parse(c).unwrap_or_else(|e| {
            errs.push("base_currency", e.0);
            Currency::USD
        }),
    };
    let mut rates: HashMap<Currency, f64> = HashMap::new();
    rates.insert(base, 1.0);
    for (code, rate) in &defs.currencies {
        match Currency::parse(code) {
            Ok(c) if rate.is_finite() && *rate > 0.0 && *rate <= MAX_RATE => {
                rates.insert(c, *rate);
            }
            Ok(_) => errs.push(format!("currencies.{code}"), "expected a positive exchange rate of at most 1e9"),
            Err(e) => errs.push(format!("currencies.{code}"), e.0),
        }
    }

    check_ids(&mut errs, "advertisers", defs.advertisers.iter().map(|a| a.id.as_str()), "id");
    check_ids(&mut errs, "affiliates", defs.affiliates.iter().map(|a| a.id.as_str()), "id");
    check_ids(&mut errs, "offers", defs.offers.iter().map(|o| o.id.as_str()), "id");
    check_ids(&mut errs, "smartlinks", defs.smartlinks.iter().map(|s| s.slug.as_str()), "slug");
    check_ids(&mut errs, "sources", defs.sources.iter().map(|s| s.id.as_str()), "id");
    let advertisers: HashSet<&str> = defs.advertisers.iter().map(|a| a.id.as_str()).collect();

    let key_of = |kind: Kind, id: &str| keys.get(&(kind, id.to_string())).copied();

    for (i, a) in defs.advertisers.iter().enumerate() {
        if a.allow_pixel == Some(true) && a.postback_token.as_ref().is_none_or(|t| t.expose().is_empty()) {
            errs.push(
                format!("advertisers[{i}].allow_pixel"),
                "the pixel authenticates with postback_token alone: set postback_token too",
            );
        }
        for (j, c) in a.postback_ips.iter().flatten().enumerate() {
            if let Err(e) = Cidr::parse(c) {
                errs.push(format!("advertisers[{i}].postback_ips[{j}]"), e);
            }
        }
    }
    let mut keys_seen: HashMap<&str, usize> = HashMap::new();
    for (i, a) in defs.affiliates.iter().enumerate() {
        if let Some(k) = &a.api_key {
            if let Some(j) = keys_seen.insert(k.expose(), i) {
                errs.push(format!("affiliates[{i}].api_key"), format!("the same key as affiliates[{j}]"));
            }
        }
        outbound_checks(&mut errs, &format!("affiliates[{i}]"), &a.postback_url, &a.postback_statuses);
        let share_ok = |s: f64| s.is_finite() && s > 0.0 && s <= 1.0;
        if a.payout_share.is_some_and(|s| !share_ok(s)) {
            errs.push(format!("affiliates[{i}].payout_share"), "expected a share in (0, 1], e.g. 0.7");
        }
        for (offer, share) in a.payout_shares.iter().flatten() {
            if !defs.offers.iter().any(|o| &o.id == offer) {
                errs.push(format!("affiliates[{i}].payout_shares.{offer}"), format!("unknown offer {offer:?}"));
            } else if !share_ok(*share) {
                errs.push(format!("affiliates[{i}].payout_shares.{offer}"), "expected a share in (0, 1], e.g. 0.8");
            }
        }
    }
    for (i, s) in defs.smartlinks.iter().enumerate() {
        outbound_checks(&mut errs, &format!("smartlinks[{i}]"), &s.postback_url, &s.postback_statuses);
    }

    let mut affiliates = Vec::new();
    for (i, a) in defs.affiliates.iter().enumerate() {
        let fallback_url = redirect_template(&mut errs, &format!("affiliates[{i}].fallback_url"), &a.fallback_url);
        if let (Ok(id), Some(key)) = (Id::parse(&a.id), key_of(Kind::Affiliate, &a.id)) {
            affiliates.push(Affiliate { key, id, fallback_url });
        }
    }
    let rate_of = |errs: &mut Errs, p: &str, c: &Option<String>| -> f64 {
        let Some(c) = c else { return 1.0 };
        match Currency::parse(c) {
            Ok(c) => rates.get(&c).copied().unwrap_or_else(|| {
                errs.push(p, format!("no exchange rate for {c}; add it under currencies"));
                1.0
            }),
            Err(e) => {
                errs.push(p, e.0);
                1.0
            }
        }
    };
    let cost_model = |errs: &mut Errs, p: &str, c: &Option<CostSpec>, default_rate: f64| -> Option<CostModel> {
        let c = c.as_ref()?;
        let rate =
            if c.currency.is_some() { rate_of(errs, &format!("{p}.currency"), &c.currency) } else { default_rate };
        if !(c.amount.is_finite() && (0.0..=MAX_COST).contains(&c.amount)) {
            errs.push(format!("{p}.amount"), format!("expected an amount from 0 to {MAX_COST}"));
            return None;
        }
        let v = c.amount * rate;
        Some(match c.model {
            CostModelSpec::Cpc => CostModel::Cpc(v),
            CostModelSpec::Cpm => CostModel::Cpm(v),
            CostModelSpec::Cpa => CostModel::Cpa(v),
        })
    };
    let mut sources = Vec::new();
    for (i, src) in defs.sources.iter().enumerate() {
        let p = format!("sources[{i}]");
        let cost_rate = rate_of(&mut errs, &format!("{p}.currency"), &src.currency);
        let model = cost_model(&mut errs, &format!("{p}.cost"), &src.cost, cost_rate);
        let mut sub_params: [Option<Box<str>>; 5] = Default::default();
        let mut cost_param: Box<str> = "cost".into();
        for (ours, theirs) in &src.params {
            let ok = !theirs.is_empty()
                && theirs.len() <= 64
                && theirs.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b));
            if !ok {
                errs.push(
                    format!("{p}.params.{ours}"),
                    "expected a parameter name of 1 to 64 characters from A-Z a-z 0-9 _ - . [ ]",
                );
                continue;
            }
            match ours.as_str() {
                "cost" => cost_param = theirs.as_str().into(),
                s => {
                    match s.strip_prefix("sub").and_then(|n| n.parse::<usize>().ok()).filter(|n| (1..=5).contains(n)) {
                        Some(n) => sub_params[n - 1] = Some(theirs.as_str().into()),
                        None => errs
                            .push(format!("{p}.params.{ours}"), "expected one of sub1, sub2, sub3, sub4, sub5, cost"),
                    }
                }
            }
        }
        if ["aff", "src"].iter().any(|r| src.params.values().any(|v| v == r)) {
            errs.push(format!("{p}.params"), "aff and src are smartlink's own parameters; map other names");
        }
        outbound_checks(&mut errs, &p, &src.postback_url, &src.postback_statuses);
        if let (Ok(id), Some(key)) = (Id::parse(&src.id), key_of(Kind::Source, &src.id)) {
            sources.push(Source { key, id, sub_params, cost_param, cost_rate, cost_model: model });
        }
    }
    let source_pos: HashMap<&str, usize> = sources.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();

    let mut offers = Vec::new();
    let mut offer_index: HashMap<&str, usize> = HashMap::new();
    for (i, o) in defs.offers.iter().enumerate() {
        let p = format!("offers[{i}]");
        let before = errs.0.len();
        if !advertisers.contains(o.advertiser.as_str()) {
            errs.push(
                format!("{p}.advertiser"),
                format!("unknown advertiser {:?}; define it under advertisers", o.advertiser),
            );
        }
        let url =
            Template::parse(&o.url, MacroSet::Redirect).map_err(|e| errs.push(format!("{p}.url"), e.to_string())).ok();
        if !(o.payout.is_finite() && o.payout >= 0.0) {
            errs.push(format!("{p}.payout"), "expected a payout of zero or more");
        }
        let currency = match &o.currency {
            None => Some(base),
            Some(c) => Currency::parse(c).map_err(|e| errs.push(format!("{p}.currency"), e.0)).ok(),
        };
        let rate = currency.and_then(|c| {
            let r = rates.get(&c).copied();
            if r.is_none() {
                errs.push(format!("{p}.currency"), format!("no exchange rate for {c}; add it under currencies"));
            }
            r
        });
        if let Some(r) = rate.filter(|_| o.payout.is_finite() && o.payout >= 0.0) {
            let base = o.payout * r;
            if !base.is_finite() || base > max_payout {
                errs.push(
                    format!("{p}.payout"),
                    format!("{base:?} in the base currency is more than max_payout ({max_payout:?})"),
                );
            }
        }
        let targeting = targeting(&mut errs, &format!("{p}.targeting"), &o.targeting);
        let c = &o.caps;
        if c.daily_budget.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            errs.push(format!("{p}.caps.daily_budget"), "expected a budget of zero or more");
        }
        if o.fallback_url.is_some() && o.fallback_smartlink.is_some() {
            errs.push(format!("{p}.fallback_smartlink"), "give fallback_url or fallback_smartlink, not both");
        }
        redirect_template(&mut errs, &format!("{p}.fallback_url"), &o.fallback_url);
        if let Some(sl) = &o.fallback_smartlink {
            if !defs.smartlinks.iter().any(|s| &s.slug == sl) {
                errs.push(format!("{p}.fallback_smartlink"), format!("unknown smartlink {sl:?}"));
            }
        }
        let key = key_of(Kind::Offer, &o.id);
        if errs.0.len() > before {
            continue;
        }
        let (Ok(id), Ok(advertiser), Some(url), Some(currency), Some(rate), Some(targeting), Some(key)) =
            (Id::parse(&o.id), Id::parse(&o.advertiser), url, currency, rate, targeting, key)
        else {
            continue;
        };
        offer_index.insert(o.id.as_str(), offers.len());
        offers.push(Offer {
            key,
            id,
            advertiser,
            url,
            payout: o.payout,
            currency,
            payout_base: o.payout * rate,
            targeting,
            caps: Caps {
                daily_clicks: c.daily_clicks,
                daily_conversions: c.daily_conversions,
                daily_budget: c.daily_budget,
            },
            status: match o.status {
                StatusSpec::Active => Status::Active,
                StatusSpec::Paused => Status::Paused,
            },
            attribution_window_secs: o.attribution_window_days.unwrap_or(30) as u64 * 86_400,
            min_ctit_secs: o.min_ctit_secs.unwrap_or(5),
            counters: Arc::new(OfferCounters::default()),
        });
    }

    let affiliate_pos: HashMap<&str, usize> = affiliates.iter().enumerate().map(|(i, a)| (a.id.as_str(), i)).collect();
    let mut smartlinks = Vec::new();
    for (i, s) in defs.smartlinks.iter().enumerate() {
        let p = format!("smartlinks[{i}]");
        let before = errs.0.len();
        let affiliate = s.affiliate.as_ref().and_then(|a| {
            let pos = affiliate_pos.get(a.as_str()).copied();
            if pos.is_none() {
                errs.push(format!("{p}.affiliate"), format!("unknown affiliate {a:?}; define it under affiliates"));
            }
            pos
        });
        let mut pool = Vec::new();
        let mut seen = HashSet::new();
        for (j, oid) in s.offers.iter().enumerate() {
            match offer_index.get(oid.as_str()) {
                Some(&k) if seen.insert(k) => pool.push(k),
                Some(_) => errs.push(format!("{p}.offers[{j}]"), format!("offer {oid:?} is listed twice")),
                None if defs.offers.iter().any(|o| &o.id == oid) => {} // invalid offer, reported above
                None => errs.push(format!("{p}.offers[{j}]"), format!("unknown offer {oid:?}; define it under offers")),
            }
        }
        let fallback = Template::parse(&s.fallback_url, MacroSet::Redirect)
            .map_err(|e| errs.push(format!("{p}.fallback_url"), e.to_string()))
            .ok();
        let mut overrides = Vec::new();
        for (j, ov) in s.overrides.iter().enumerate() {
            let q = format!("{p}.overrides[{j}]");
            let countries = errs.list(&format!("{q}.countries"), &ov.countries, Country::parse);
            let devices = errs.list(&format!("{q}.devices"), &ov.devices, Device::parse);
            let os = errs.list(&format!("{q}.os"), &ov.os, Os::parse);
            match s.offers.iter().position(|o| o == &ov.offer) {
                Some(offer) => overrides.push(Override { countries, devices, os, offer }),
                None => {
                    errs.push(format!("{q}.offer"), format!("offer {:?} is not in this smartlink's offers", ov.offer))
                }
            }
        }
        let strategy = match s.strategy {
            StrategySpec::Auto => Strategy::Auto,
            StrategySpec::Priority => Strategy::Priority,
            StrategySpec::Weighted => match &s.weights {
                Some(w) if w.len() == s.offers.len() && w.iter().all(|x| x.is_finite() && *x >= 0.0) => {
                    Strategy::Weighted(w.clone())
                }
                _ => {
                    errs.push(
                        format!("{p}.weights"),
                        format!("strategy weighted needs {} non-negative weights, one per offer", s.offers.len()),
                    );
                    Strategy::Auto
                }
            },
        };
        if s.strategy != StrategySpec::Weighted && s.weights.is_some() {
            errs.push(format!("{p}.weights"), "weights are only used with strategy: weighted");
        }
        let quality = quality_actions(&mut errs, &format!("{p}.quality"), &s.quality);
        let source = s.source.as_ref().and_then(|src| {
            let pos = source_pos.get(src.as_str()).copied();
            if pos.is_none() {
                errs.push(format!("{p}.source"), format!("unknown source {src:?}; define it under sources"));
            }
            pos
        });
        let source_rate = source.map_or(1.0, |i| sources[i].cost_rate);
        let cost_currency_rate = match s.cost.as_ref().and_then(|c| c.currency.as_ref()) {
            Some(_) => {
                rate_of(&mut errs, &format!("{p}.cost.currency"), &s.cost.as_ref().and_then(|c| c.currency.clone()))
            }
            None => source_rate,
        };
        let link_cost = cost_model(&mut errs, &format!("{p}.cost"), &s.cost, source_rate);
        let key = key_of(Kind::Smartlink, &s.slug);
        if errs.0.len() > before {
            continue;
        }
        let (Ok(slug), Some(fallback_url), Some(key)) = (Id::parse(&s.slug), fallback, key) else {
            continue;
        };
        smartlinks.push(Smartlink {
            key,
            slug,
            affiliate,
            offers: pool,
            fallback_url: Some(fallback_url),
            fallback_link: None,
            source,
            cost_model: link_cost,
            cost_rate: cost_currency_rate,
            overrides,
            strategy,
            quality,
            router: Arc::new(SharedRouter::default()),
        });
    }

    // One direct link per offer (`/o/{id}`): the same click path with a
    // pool of one, no routing, and the offer's fallback.
    let slug_pos: HashMap<&str, usize> = smartlinks.iter().enumerate().map(|(i, s)| (s.slug.as_str(), i)).collect();
    let direct_links = offers
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let spec = defs.offers.iter().find(|s| s.id == o.id.as_str());
            let fallback_url =
                spec.and_then(|s| s.fallback_url.as_ref()).and_then(|u| Template::parse(u, MacroSet::Redirect).ok());
            let fallback_link =
                spec.and_then(|s| s.fallback_smartlink.as_ref()).and_then(|sl| slug_pos.get(sl.as_str()).copied());
            Smartlink {
                key: smartlink_core::model::direct_link_key(o.key),
                slug: o.id.clone(),
                affiliate: None,
                offers: vec![i],
                fallback_url,
                fallback_link,
                source: None,
                cost_model: None,
                cost_rate: 1.0,
                overrides: Vec::new(),
                strategy: Strategy::Priority,
                quality: QualityActions::default(),
                router: Arc::new(SharedRouter::default()),
            }
        })
        .collect();

    if errs.0.is_empty() {
        Ok(Catalog::with_direct_links(offers, smartlinks, direct_links, affiliates, sources))
    } else {
        Err(errs.0)
    }
}

/// The largest cost of one click or model amount, in its currency.
pub const MAX_COST: f64 = 100_000.0;

/// An optional redirect URL template, checked.
fn redirect_template(errs: &mut Errs, p: &str, url: &Option<String>) -> Option<Template> {
    let u = url.as_ref()?;
    Template::parse(u, MacroSet::Redirect).map_err(|e| errs.push(p, e.to_string())).ok()
}

fn outbound_checks(errs: &mut Errs, p: &str, url: &Option<String>, statuses: &Option<Vec<String>>) {
    if let Some(u) = url {
        if let Err(e) = Template::parse(u, MacroSet::Postback) {
            errs.push(format!("{p}.postback_url"), e.to_string());
        }
    }
    let parse = |s: &str| {
        ConvStatus::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            ParseError(format!("expected a status (pending, approved, rejected, chargeback), got {s:?}"))
        })
    };
    errs.list(&format!("{p}.postback_statuses"), statuses, parse);
}

/// An IPv4 or IPv6 network in CIDR notation (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("expected an address or CIDR such as 203.0.113.0/24, got {s:?}");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net: std::net::IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn targeting(errs: &mut Errs, p: &str, t: &TargetingSpec) -> Option<Targeting> {
    let before = errs.0.len();
    let set = |v: Option<Vec<Country>>| v.map(CountrySet::from_iter);
    let countries = set(errs.list(&format!("{p}.countries"), &t.countries, Country::parse));
    let exclude_countries = set(errs.list(&format!("{p}.exclude_countries"), &t.exclude_countries, Country::parse));
    let devices =
        errs.list(&format!("{p}.devices"), &t.devices, Device::parse).map_or(u8::MAX, |d| Targeting::device_mask(&d));
    let os = errs.list(&format!("{p}.os"), &t.os, Os::parse).map_or(u8::MAX, |o| Targeting::os_mask(&o));
    let browsers = errs
        .list(&format!("{p}.browsers"), &t.browsers, Browser::parse)
        .map_or(u16::MAX, |b| Targeting::browser_mask(&b));
    let languages = errs.list(&format!("{p}.languages"), &t.languages, Language::parse);
    let mut hours = ALL_HOURS;
    if let Some(hs) = &t.hours {
        hours = 0;
        if hs.is_empty() {
            errs.push(format!("{p}.hours"), "expected a non-empty list of hours 0-23 (omit the key for all hours)");
        }
        for (i, h) in hs.iter().enumerate() {
            if (0..24).contains(h) {
                hours |= 1 << h;
            } else {
                errs.push(format!("{p}.hours[{i}]"), format!("expected an hour from 0 to 23, got {h}"));
            }
        }
    }
    let timezone = match &t.timezone {
        None => chrono_tz::UTC,
        Some(z) => z.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
            errs.push(
                format!("{p}.timezone"),
                format!("expected an IANA timezone such as UTC or America/New_York, got {z:?}"),
            );
            chrono_tz::UTC
        }),
    };
    (errs.0.len() == before).then_some(Targeting {
        countries,
        exclude_countries,
        devices,
        os,
        browsers,
        languages,
        hours,
        timezone,
    })
}

/// Assigns provisional keys for ids the store has not seen (validation of a
/// proposed change happens before the store assigns real keys).
pub fn provisional_keys(defs: &Definitions, keys: &Keys) -> Keys {
    let mut out = keys.clone();
    let mut next: HashMap<Kind, u32> = HashMap::new();
    // Direct links (listed with the smartlinks' keys) are not assigned.
    for ((k, _), v) in keys.iter().filter(|(_, v)| smartlink_core::model::direct_link_offer(**v).is_none()) {
        let e = next.entry(*k).or_insert(0);
        *e = (*e).max(*v);
    }
    let mut add = |kind: Kind, id: &str| {
        let n = next.entry(kind).or_insert(0);
        out.entry((kind, id.to_string())).or_insert_with(|| {
            *n += 1;
            *n
        });
    };
    defs.advertisers.iter().for_each(|a| add(Kind::Advertiser, &a.id));
    defs.affiliates.iter().for_each(|a| add(Kind::Affiliate, &a.id));
    defs.offers.iter().for_each(|o| add(Kind::Offer, &o.id));
    defs.smartlinks.iter().for_each(|s| add(Kind::Smartlink, &s.slug));
    defs.sources.iter().for_each(|s| add(Kind::Source, &s.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
advertisers: [{id: adv1, postback_token: s3cret}]
affiliates: [{id: aff1}]
offers:
  - id: o1
    advertiser: adv1
    url: "https://adv.example/lp?clickid={click_id}&s1={sub1}"
    payout: 2.5
    targeting: {countries: [US, CA], devices: [mobile], hours: [8, 9], timezone: America/New_York}
    caps: {daily_clicks: 10}
smartlinks:
  - slug: global
    affiliate: aff1
    offers: [o1]
    fallback_url: "https://example.com/more?c={country}"
    overrides: [{countries: [US], devices: [desktop], offer: o1}]
"#;

    fn check(yaml: &str) -> Result<Catalog, Vec<String>> {
        let defs: Definitions = parse_yaml(yaml).map_err(|e| vec![e])?;
        let keys = provisional_keys(&defs, &Keys::new());
        build_catalog(&defs, &keys).map_err(|es| es.into_iter().map(|e| e.to_string()).collect())
    }

    fn errors_of(yaml_edit: (&str, &str)) -> Vec<String> {
        let yaml = GOOD.replace(yaml_edit.0, yaml_edit.1);
        assert_ne!(yaml, GOOD, "edit {:?} did not apply", yaml_edit.0);
        check(&yaml).err().unwrap_or_default()
    }

    #[test]
    fn per_offer_payout_shares_and_pixel_permission_are_accepted_when_valid() {
        let yaml = GOOD
            .replace("affiliates: [{id: aff1}]", "affiliates: [{id: aff1, payout_share: 0.5, payout_shares: {o1: 1}}]")
            .replace("{id: adv1, postback_token: s3cret}", "{id: adv1, postback_token: s3cret, allow_pixel: true}");
        assert!(check(&yaml).is_ok(), "{:?}", check(&yaml).err());
    }

    #[test]
    fn the_documented_example_is_valid() {
        let cat = check(GOOD).unwrap();
        assert_eq!(cat.offers.len(), 1);
        assert_eq!(cat.smartlinks[0].overrides.len(), 1);
    }

    #[test]
    fn each_config_error_names_the_path_and_expectation() {
        let cases: &[((&str, &str), &str)] = &[
            (
                ("countries: [US, CA]", "countries: [US, UK]"),
                "offers[0].targeting.countries[1]: expected an ISO 3166-1",
            ),
            (("offers: [o1]", "offers: [o2]"), "smartlinks[0].offers[0]: unknown offer \"o2\""),
            (("payout: 2.5", "payout: -1"), "offers[0].payout: expected a payout of zero or more"),
            (("{click_id}&s1", "{clik_id}&s1"), "offers[0].url: unknown macro {clik_id}"),
            (("https://adv.example", "ftp://adv.example"), "offers[0].url: expected an absolute http"),
            (("devices: [mobile]", "devices: [phone]"), "offers[0].targeting.devices[0]: expected a device"),
            (("hours: [8, 9]", "hours: [8, 24]"), "offers[0].targeting.hours[1]: expected an hour from 0 to 23"),
            (("America/New_York", "Mars/Base"), "offers[0].targeting.timezone: expected an IANA timezone"),
            (("affiliates: [{id: aff1}]", "affiliates: [{id: aff1}, {id: aff1}]"), "affiliates[1].id: duplicate id"),
            (("advertiser: adv1", "advertiser: adv2"), "offers[0].advertiser: unknown advertiser"),
            (("affiliate: aff1", "affiliate: nobody"), "smartlinks[0].affiliate: unknown affiliate"),
            (("slug: global", "slug: \"a b\""), "smartlinks[0].slug: expected an id"),
            (("{countries: [US], devices: [desktop], offer: o1}", "{offer: zzz}"), "smartlinks[0].overrides[0].offer"),
            (("payout: 2.5", "payout: 2.5\n    currency: EUR"), "offers[0].currency: no exchange rate for EUR"),
            (
                ("caps: {daily_clicks: 10}", "caps: {daily_clickz: 10}"),
                "offers[0].caps.daily_clickz: unknown field `daily_clickz`",
            ),
            (
                ("payout: 2.5", "payout: 1.7e308"),
                "offers[0].payout: 1.7e308 in the base currency is more than max_payout (100000.0)",
            ),
            (
                ("payout: 2.5", "payout: 100001"),
                "offers[0].payout: 100001.0 in the base currency is more than max_payout (100000.0)",
            ),
            (
                ("advertisers: [", "max_payout: 2\nadvertisers: ["),
                "offers[0].payout: 2.5 in the base currency is more than max_payout (2.0)",
            ),
            (
                ("advertisers: [", "max_payout: .nan\nadvertisers: ["),
                "max_payout: invalid type: string \".nan\", expected f64",
            ),
            (("advertisers: [", "max_payout: -1\nadvertisers: ["), "max_payout: expected a positive amount"),
            (("advertisers: [", "currencies: {GBP: 1.0e300}\nadvertisers: ["), "currencies.GBP: expected a positive"),
            (
                ("affiliates: [{id: aff1}]", "affiliates: [{id: aff1, payout_shares: {o1: 1.5}}]"),
                "affiliates[0].payout_shares.o1: expected a share in (0, 1]",
            ),
            (
                ("affiliates: [{id: aff1}]", "affiliates: [{id: aff1, payout_shares: {o1: 0}}]"),
                "affiliates[0].payout_shares.o1: expected a share in (0, 1]",
            ),
            (
                ("affiliates: [{id: aff1}]", "affiliates: [{id: aff1, payout_shares: {o9: 0.5}}]"),
                "affiliates[0].payout_shares.o9: unknown offer \"o9\"",
            ),
            (
                ("[{id: adv1, postback_token: s3cret}]", "[{id: adv1, postback_secret: s3cret, allow_pixel: true}]"),
                "advertisers[0].allow_pixel: the pixel authenticates with postback_token alone",
            ),
        ];
        for (edit, want) in cases {
            let errs = errors_of(*edit);
            assert!(errs.iter().any(|e| e.contains(want)), "edit {edit:?}: wanted {want:?}, got {errs:?}");
        }
    }

    #[test]
    fn environment_references_are_interpolated() {
        let env = |k: &str| (k == "TOKEN").then(|| "abc".to_string());
        assert_eq!(interpolate_env("t: ${TOKEN}", env).unwrap(), "t: abc");
        assert_eq!(interpolate_env("t: ${NOPE:-dflt}", env).unwrap(), "t: dflt");
        let err = interpolate_env("a: 1\nt: ${NOPE}", env).unwrap_err();
        assert!(err.contains("line 2") && err.contains("NOPE"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        let a = AdvertiserSpec {
            id: "a".into(),
            postback_token: Some(s),
            postback_secret: None,
            postback_ips: None,
            allow_pixel: None,
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn definitions_hash_changes_with_content_only() {
        let a: Definitions = parse_yaml(GOOD).unwrap();
        let b: Definitions = parse_yaml(&GOOD.replace("payout: 2.5", "payout:   2.5")).unwrap();
        let c: Definitions = parse_yaml(&GOOD.replace("payout: 2.5", "payout: 2.6")).unwrap();
        assert_eq!(definitions_hash(&a), definitions_hash(&b));
        assert_ne!(definitions_hash(&a), definitions_hash(&c));
    }
}

#[cfg(test)]
mod cidr_tests {
    use super::Cidr;

    #[test]
    fn cidr_table() {
        for (net, ip, want) in [
            ("203.0.113.0/24", "203.0.113.9", true),
            ("203.0.113.0/24", "203.0.114.9", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("10.1.2.3", "10.1.2.4", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("203.0.113.0/24", "::ffff:203.0.113.5", true),
        ] {
            assert_eq!(Cidr::parse(net).unwrap().contains(ip.parse().unwrap()), want, "{net} {ip}");
        }
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        parse_with_env(text, &[])
    }

    fn parse_with_env(text: &str, vars: &[(&str, &str)]) -> Result<FileConfig, String> {
        let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        parse_file_text(text, env).map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_top_level_and_server_keys_are_rejected() {
        let e = parse("bogus: 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("server: {listn: x}\n").unwrap_err();
        assert!(e.contains("server") && e.contains("listn"), "{e}");
        let ok = parse("server: {listen: '127.0.0.1:1'}\noffers: []\n").unwrap();
        assert_eq!(ok.server.listen.as_deref(), Some("127.0.0.1:1"));
    }

    #[test]
    fn a_bad_key_inside_a_definition_names_its_path() {
        let e = parse("offers:\n  - {id: o1, advertiser: a, url: 'https://o.example/', payuot: 2.5}\n").unwrap_err();
        assert!(e.contains("offers[0]") && e.contains("payuot"), "{e}");
        let e = parse("smartlinks:\n  - {slug: s, offers: [o1], fallback_url: 'https://f.example/', strategy: 7}\n")
            .unwrap_err();
        assert!(e.contains("smartlinks[0].strategy"), "{e}");
        let e = parse("affiliates:\n  - {id: a, payout_share: lots}\n").unwrap_err();
        assert!(e.contains("affiliates[0].payout_share"), "{e}");
    }

    #[test]
    fn environment_values_are_interpolated_into_string_values_only() {
        let text = "server:\n  admin_token: ${TOKEN}\n  queue_capacity: ${QUEUE}\n  trust_proxy: ${TRUST}\n";
        let vars = [("TOKEN", "strongpart #weakpart"), ("QUEUE", "5000"), ("TRUST", "true")];
        let f = parse_with_env(text, &vars).unwrap();
        assert_eq!(f.server.admin_token.unwrap().expose(), "strongpart #weakpart", "a # stays in the value");
        assert_eq!(f.server.queue_capacity, Some(5000), "a whole numeric reference is a number");
        assert!(f.server.trust_proxy);
        // A newline in a value cannot add a key.
        let f = parse_with_env(text, &[("TOKEN", "x\ntrust_proxy: true"), ("QUEUE", "1"), ("TRUST", "false")]).unwrap();
        assert_eq!(f.server.admin_token.unwrap().expose(), "x\ntrust_proxy: true");
        assert!(!f.server.trust_proxy);
        // Inside a longer string the value is text; a missing variable names where.
        let f = parse_with_env("server: {listen: '127.0.0.1:${PORT}'}\n", &[("PORT", "9000")]).unwrap();
        assert_eq!(f.server.listen.as_deref(), Some("127.0.0.1:9000"));
        let e = parse("server:\n  admin_token: ${NOPE}\n").unwrap_err();
        assert!(e.contains("server.admin_token") && e.contains("NOPE"), "{e}");
        assert_eq!(
            parse_with_env("server: {admin_token: '${T:-dflt}'}\n", &[]).unwrap().server.admin_token.unwrap().expose(),
            "dflt"
        );
    }

    #[test]
    fn every_out_of_range_setting_is_an_error_naming_its_key() {
        let cases: &[(&str, &str)] = &[
            ("outbound_retry_base_secs: .nan", "server.outbound_retry_base_secs"),
            ("outbound_retry_base_secs: -1", "server.outbound_retry_base_secs"),
            ("queue_capacity: 1000000000000", "server.queue_capacity"),
            ("queue_capacity: 0", "server.queue_capacity"),
            ("signed_postback_window_secs: 18446744073709551615", "server.signed_postback_window_secs"),
            ("outbound_max_attempts: 0", "server.outbound_max_attempts"),
            ("request_slice_us: 50", "server.request_slice_us"),
            ("listen: nowhere", "server.listen"),
            ("trusted_proxies: [nope]", "server.trusted_proxies[0]"),
            ("quality: {ip_bot: 10000000}", "server.quality.ip_bot"),
            ("quality: {ip_suspect: 4096}", "server.quality.ip_suspect"),
            ("quality: {block_ips: [10.0.0.0/33]}", "server.quality.block_ips[0]"),
            ("quality: {capacity_ips: 5}", "server.quality.capacity_ips"),
            ("alerts: {webhook_url: 'not a url'}", "server.alerts.webhook_url"),
            ("alerts: {webhook_url: 'ftp://x.example/'}", "server.alerts.webhook_url"),
            ("ingest_catch_up_mib: 18446744073709551615", "server.ingest_catch_up_mib"),
            ("digests: {hour: 24}", "server.digests.hour"),
            ("digests: {weekday: funday}", "server.digests.weekday"),
            ("digests: {timezone: Mars/Olympus}", "server.digests.timezone"),
            ("digests: {smartlinks: some}", "server.digests.smartlinks"),
            ("digests: {every: hourly}", "server.digests.every"),
            ("digests: {webhook_url: 'mailto:x@example.com'}", "server.digests.webhook_url"),
        ];
        for (line, key) in cases {
            let e = parse(&format!("server:\n  {line}\n")).unwrap_err();
            assert!(e.contains(key), "{line}: wanted {key}, got {e}");
        }
        let ok = "server:\n  queue_capacity: 200000\n  outbound_retry_base_secs: 1.5\n  quality: {ip_bot: 4095}\n  alerts: {webhook_url: 'https://hooks.example/x'}\n";
        parse(ok).unwrap();
    }

    #[test]
    fn digests_are_weekly_by_default_and_follow_their_settings() {
        use smartlink_analysis::digest::{Every, Schedule};
        let f = parse("server: {}\n").unwrap();
        assert_eq!(f.server.digests.schedule(), Some(Schedule::default()));
        assert!(f.server.digests.includes("any"));
        let f = parse(
            "server:\n  digests: {every: daily, hour: 6, timezone: Europe/Berlin, weekday: fri, smartlinks: [a, b]}\n",
        )
        .unwrap();
        let s = f.server.digests.schedule().unwrap();
        assert_eq!(
            (s.every, s.hour, s.tz, s.weekday),
            (Every::Daily, 6, chrono_tz::Europe::Berlin, chrono::Weekday::Fri)
        );
        assert!(f.server.digests.includes("b") && !f.server.digests.includes("c"));
        assert!(parse("server: {digests: {smartlinks: all}}\n").unwrap().server.digests.includes("c"));
        assert_eq!(parse("server: {digests: {every: off}}\n").unwrap().server.digests.schedule(), None);
    }

    #[test]
    fn an_id_given_twice_in_one_file_is_an_error() {
        let text = "advertisers: [{id: a}, {id: a}]\nsmartlinks:\n  - {slug: s, offers: [o], fallback_url: 'https://f.example/'}\n  - {slug: s, offers: [o], fallback_url: 'https://f.example/'}\n";
        let e = parse(text).unwrap_err();
        assert!(
            e.contains("advertisers[1].id: duplicate id") && e.contains("smartlinks[1].slug: duplicate slug"),
            "{e}"
        );
    }
}
