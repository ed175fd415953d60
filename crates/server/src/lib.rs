//! The HTTP edge of smartlink: the click redirect, the admin API, metrics,
//! configuration loading and the background click writer. The only crate
//! that knows HTTP and JSON.
//!
//! Entry points: [`prepare`] opens the data directory and builds the state;
//! [`run`] serves an already-bound listener until a shutdown future
//! resolves, then flushes the click queue (tests bind port 0 and pass their
//! own shutdown; production passes Ctrl-C/SIGTERM).

use smartlink_clicklog::{journal, writer};

pub mod admin;
pub mod alerts;
pub mod analytics;
pub mod app;
pub mod auth;
pub mod click;
pub mod clicks;
pub mod config;
pub mod conversions;
pub mod dashboard;
pub mod defs;
pub mod digests;
pub mod domains;
pub mod error;
pub mod geo;
pub mod http;
pub mod learn;
pub mod leases;
pub mod metrics;
pub mod network;
pub mod openapi;
pub mod outbound;
pub mod pixel;
pub mod postback;
pub mod postback_config;
pub mod postback_writer;
pub mod priors;
pub mod rate_load;
pub mod session;
pub mod simulation_runs;
pub mod simulations;
pub mod state;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use arc_swap::ArcSwap;
use smartlink_core::clickid::ClickIdCodec;
use smartlink_core::model::Catalog;
use smartlink_core::time::{day_range_ms, local};
use smartlink_store::{LearnClick, LearnConversion, SqliteStore, Store, TxStore};

pub use app::router;
use config::{FileConfig, Secret, ServerSettings};
pub use state::AppState;

/// Where the effective settings come from: the file, overridden by flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// The shared store's URL (overrides `SMARTLINK_STORE` and
    /// `server.store`).
    pub store: Option<String>,
    /// The build's git revision (`smartlink_build_info`); empty: unknown.
    pub revision: &'static str,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";
const CONFIG_HASH: &str = "config_hash";

/// Default of `server.ready_max_backlog_mib`.
pub const DEFAULT_READY_BACKLOG_MIB: u64 = 1024;
/// Days raw click rows are kept by default (`server.raw_retention_days`).
pub const DEFAULT_RAW_RETENTION_DAYS: u32 = 90;

/// Settings after layering flags over the file.
#[derive(Debug, Clone)]
pub struct Effective {
    pub listen: String,
    pub data_dir: PathBuf,
    /// A shared store (`postgres://`); `None`: SQLite in `data_dir`.
    pub store: Option<Secret>,
    pub settings: ServerSettings,
    pub file: Option<(PathBuf, FileConfig)>,
    /// The build's git revision; empty: unknown.
    pub revision: &'static str,
}

pub fn effective(opts: &Options) -> anyhow::Result<Effective> {
    let file = match &opts.config {
        Some(p) => Some((p.clone(), config::load_file(p)?)),
        None => None,
    };
    let settings = file.as_ref().map(|(_, f)| f.server.clone()).unwrap_or_default();
    let listen = opts.listen.clone().or(settings.listen.clone()).unwrap_or_else(|| DEFAULT_LISTEN.into());
    // The flag, else SMARTLINK_DATA_DIR, else the file's server.data_dir.
    let env = std::env::var_os("SMARTLINK_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    let data_dir =
        opts.data_dir.clone().or(env).or(settings.data_dir.clone()).unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let store = store_url(opts.store.as_deref(), settings.store.as_ref())?;
    Ok(Effective { listen, data_dir, store, settings, file, revision: opts.revision })
}

/// The shared store's URL: the flag, else `SMARTLINK_STORE`, else the
/// file's `server.store`; checked (its password never shown).
pub fn store_url(flag: Option<&str>, file: Option<&Secret>) -> anyhow::Result<Option<Secret>> {
    let env = std::env::var("SMARTLINK_STORE").ok().filter(|v| !v.is_empty());
    let (url, from) = match (flag.filter(|f| !f.is_empty()), env, file) {
        (Some(f), _, _) => (Secret::new(f), "--store"),
        (None, Some(e), _) => (Secret::new(e), "SMARTLINK_STORE"),
        // Empty (e.g. `${SMARTLINK_STORE:-}` unset) is absent: SQLite.
        (None, None, Some(f)) if !f.expose().is_empty() => (f.clone(), "server.store"),
        (None, None, _) => return Ok(None),
    };
    if let Err(message) = config::check_store_url(url.expose()) {
        bail!(config::ConfigError::Invalid {
            file: from.into(),
            errors: vec![config::FieldError { path: "server.store".into(), message }],
        });
    }
    Ok(Some(url))
}

/// Opens the transactional store: PostgreSQL at `url` (shared by several
/// nodes), else SQLite in `data_dir`; reads under `query_timeout`.
pub fn open_store(
    data_dir: &Path,
    url: Option<&Secret>,
    query_timeout: Option<std::time::Duration>,
) -> anyhow::Result<Arc<dyn TxStore>> {
    match url {
        None => {
            let s = SqliteStore::open_dir(data_dir)
                .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
            s.set_query_timeout(query_timeout);
            Ok(Arc::new(s))
        }
        Some(url) => open_shared(url.expose(), query_timeout),
    }
}

#[cfg(feature = "postgres")]
fn open_shared(url: &str, query_timeout: Option<std::time::Duration>) -> anyhow::Result<Arc<dyn TxStore>> {
    let s = smartlink_store::PgStore::connect(url)
        .with_context(|| format!("opening the store {}", smartlink_store::redact_url(url)))?;
    s.set_query_timeout(query_timeout);
    Ok(Arc::new(s))
}

#[cfg(not(feature = "postgres"))]
fn open_shared(url: &str, _query_timeout: Option<std::time::Duration>) -> anyhow::Result<Arc<dyn TxStore>> {
    bail!(
        "the store {} is PostgreSQL, and this build has no PostgreSQL support (the `postgres` feature is off)",
        smartlink_store::redact_url(url)
    )
}

/// The meta keys a shared store keeps the node-wide secrets under.
const CLICK_SECRET_META: &str = "click_id_secret";
/// The admin token's hash (`sha256:` + hex, as affiliate keys are kept):
/// the token itself is never stored (PostgreSQL migration 5 replaced the
/// clear `admin_token` key of earlier stores by its hash).
const ADMIN_TOKEN_META: &str = "admin_token_sha256";

/// A node-wide secret on a shared store: the store's `key`, which the
/// first node to start stores (`given`, else 32 random bytes in hex) and
/// every node reads. A node given another value (its file or environment)
/// refuses to start: nodes signing or checking with different secrets
/// would refuse each other's click ids or tokens. `what` names the setting.
fn shared_secret(store: &dyn Store, given: Option<&str>, key: &str, what: &str) -> anyhow::Result<String> {
    let stored = store.meta_or_insert(key, given.unwrap_or(&random_hex()))?;
    if given.is_some_and(|g| g != stored) {
        bail!(
            "{what} differs from the one the shared store holds (meta key {key}): every node uses the same; \
             leave it unset to take the store's, or change the store's first"
        );
    }
    Ok(stored)
}

/// The admin token's hash on a shared store. A node given a token (its
/// file or `SMARTLINK_ADMIN_TOKEN`) stores its hash if the store has none
/// and refuses to start if the store holds another. A node given none takes
/// the stored hash (it checks tokens without knowing the token); the first
/// node of a new store given none generates a token into `file` (mode 0600),
/// where the operator reads it, and stores its hash.
fn shared_admin_token_hash(store: &dyn Store, given: Option<&str>, file: &Path) -> anyhow::Result<String> {
    if let Some(t) = given {
        let hash = defs::hashed_api_key(t);
        if store.meta_or_insert(ADMIN_TOKEN_META, &hash)? != hash {
            bail!(
                "the admin token differs from the one the shared store holds the hash of (meta key \
                 {ADMIN_TOKEN_META}): every node uses the same; leave it unset to take the store's, or change the \
                 store's first"
            );
        }
        return Ok(hash);
    }
    if let Some(hash) = store.meta(ADMIN_TOKEN_META)? {
        tracing::info!(
            "no admin_token configured: checking tokens against the shared store's hash (meta key \
             {ADMIN_TOKEN_META}, the same on every node)"
        );
        return Ok(hash);
    }
    let token = secret("SMARTLINK_ADMIN_TOKEN", file)?;
    let hash = defs::hashed_api_key(&token);
    let stored = store.meta_or_insert(ADMIN_TOKEN_META, &hash)?;
    if stored == hash {
        tracing::info!(file = %file.display(), "no admin_token configured: generated one into this file; the shared \
            store keeps only its hash");
    } else {
        // Another node stored its token's hash first: this file's token
        // would not be accepted anywhere, so it must not be left to be read.
        std::fs::remove_file(file).with_context(|| format!("removing {}", file.display()))?;
        tracing::info!("no admin_token configured: another node set the shared store's first; using its hash");
    }
    Ok(stored)
}

/// A non-empty environment variable.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a secret from `env` or from `file` in the data directory, creating
/// the file (mode 0600) with 32 random bytes on first run.
fn secret(env: &str, file: &Path) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(env) {
        if !v.is_empty() {
            return Ok(v);
        }
    }
    if let Ok(v) = std::fs::read_to_string(file) {
        let v = v.trim().to_string();
        if !v.is_empty() {
            return Ok(v);
        }
    }
    let v = random_hex();
    write_private(file, &v).with_context(|| format!("writing {}", file.display()))?;
    Ok(v)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(contents.as_bytes())
}

/// Applies the file's definitions when they changed since they were last
/// applied (or always, with `force`, as `smartlink import` does). Returns
/// whether anything was applied.
pub fn apply_file(store: &dyn Store, path: &Path, file: &FileConfig, force: bool) -> anyhow::Result<bool> {
    let actor = format!("{}:{}", if force { "import" } else { "file" }, path.display());
    let hash = config::definitions_hash(&file.definitions);
    if !force && store.meta(CONFIG_HASH)?.as_deref() == Some(hash.as_str()) {
        return Ok(false);
    }
    let mut state = defs::load_defs(store)?;
    let merged = defs::merge(&state.defs, &file.definitions);
    match defs::commit_defs(store, &mut state, merged, &Catalog::default(), &actor).map(|_| ()) {
        Ok(_) => {}
        Err(defs::ApplyError::Invalid(errors)) => {
            return Err(config::ConfigError::Invalid { file: path.display().to_string(), errors }.into());
        }
        Err(defs::ApplyError::Store(e)) => return Err(e),
    }
    // The hash remembers the file `serve` applies, not an import: an
    // import recorded as "the file last applied" would make the serve
    // file look changed and undo the import at the next start.
    if !force {
        store.set_meta(CONFIG_HASH, &hash)?;
    }
    Ok(true)
}

/// Everything `run` needs, built from the effective settings.
pub struct Prepared {
    pub state: Arc<AppState>,
    pub writer: writer::WriterHandle,
    pub postback_writer: postback_writer::PostbackWriter,
    pub retry: outbound::RetryPolicy,
    /// Timeouts, the connection limit and the shutdown grace period.
    pub limits: http::Limits,
    pub alerts: config::AlertSettings,
    pub digests: config::DigestSettings,
    pub listen: String,
    /// The TLS listener's address and its certificates (`server.tls_listen`).
    pub tls_listen: Option<String>,
    pub tls: Option<Arc<tls::Tls>>,
    /// What SIGHUP re-reads `domains:` from, and how often certificate
    /// files are checked for changes (zero: never).
    pub config_file: Option<PathBuf>,
    pub tls_poll: std::time::Duration,
    /// Time slice for request threads, µs (0: the kernel's default).
    pub request_slice_us: u32,
    /// Held until the server stops: this process owns the click journal.
    pub journal_lock: std::fs::File,
    /// On a shared store, the thread that leases click-cap units
    /// (`leases`); stopped, giving its units back, after the last click.
    pub leases: Option<leases::Handle>,
}

/// Opens the store, applies the config file if it changed, builds the
/// catalog and rebuilds in-memory state (today's cap counters, the router's
/// learned state) from stored events.
pub fn prepare(eff: &Effective, clock: fn() -> i64) -> anyhow::Result<Prepared> {
    // One process owns a data directory: take its lock before anything is
    // written (a refused second server must not have applied its file).
    let journal_dir = eff.data_dir.join("journal");
    let journal_lock = journal::lock_dir(&journal_dir)?;
    let tx = open_store(
        &eff.data_dir,
        eff.store.as_ref(),
        match eff.settings.query_timeout_secs.unwrap_or(30) {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        },
    )?;
    let query_timeout = std::time::Duration::from_secs(match eff.settings.query_timeout_secs.unwrap_or(30) {
        0 => 365 * 86_400,
        secs => secs,
    });
    let analyzed = Arc::new(
        smartlink_columnar::Analyzed::open(
            tx,
            &eff.data_dir,
            smartlink_columnar::Options {
                retention_days: eff.settings.raw_retention_days.unwrap_or(DEFAULT_RAW_RETENTION_DAYS),
                query_timeout,
                ..Default::default()
            },
        )
        .with_context(|| format!("opening the analytics store in {}", eff.data_dir.display()))?,
    );
    let store: Arc<dyn Store> = analyzed.clone();
    let shared = store.shared().is_some();
    let geo = match &eff.settings.geoip {
        Some(p) => geo::Geo::open(p)?,
        None => geo::Geo::BuiltIn,
    };
    // Ranges are checked in one place, with key paths (`load_file` already
    // did for a file; settings can also come from defaults only).
    let invalid = config::validate_settings(&eff.settings);
    if !invalid.is_empty() {
        let file = eff.file.as_ref().map_or("server settings".into(), |(p, _)| p.display().to_string());
        bail!(config::ConfigError::Invalid { file, errors: invalid });
    }
    let request_slice_us = eff.settings.request_slice_us.unwrap_or(config::DEFAULT_REQUEST_SLICE_US);
    let cidrs = |list: &[String]| {
        list.iter().map(|c| config::Cidr::parse(c).map_err(anyhow::Error::msg)).collect::<anyhow::Result<Vec<_>>>()
    };
    let q = &eff.settings.quality;
    let blocked = cidrs(&q.block_ips)?;
    let proxies = if eff.settings.trust_proxy {
        let listed = eff.settings.trusted_proxies.clone().unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1".into()]);
        click::Proxies::new(cidrs(&listed)?)
    } else {
        click::Proxies::default()
    };
    let network =
        network::Network::open(q.asn_db.as_deref(), q.anonymous_ip_db.as_deref(), &q.datacenter_asns, blocked)?;
    let d = smartlink_visitor::quality::BehaviourConfig::default();
    use smartlink_visitor::quality::Behaviour;
    let capacity = q.capacity_ips.unwrap_or(config::DEFAULT_RATE_CAPACITY) as usize;
    let behaviour = Behaviour::with_capacity(
        smartlink_visitor::quality::BehaviourConfig {
            window_secs: q.window_secs.unwrap_or(d.window_secs).max(1),
            ip_suspect: q.ip_suspect.unwrap_or(d.ip_suspect),
            ip_bot: q.ip_bot.unwrap_or(d.ip_bot),
            ip_ua_suspect: q.ip_ua_suspect.unwrap_or(d.ip_ua_suspect),
            duplicate_secs: q.duplicate_secs.unwrap_or(d.duplicate_secs),
        },
        capacity,
    );
    let configured = eff.settings.admin_token.as_ref().filter(|t| !t.expose().is_empty());
    // Only the token's hash is kept past this point: requests are checked
    // against it, and a shared store never holds the token in clear.
    let admin_token_hash = match configured {
        _ if shared => {
            let given = configured.map(|t| t.expose().to_string()).or_else(|| env_value("SMARTLINK_ADMIN_TOKEN"));
            shared_admin_token_hash(&*store, given.as_deref(), &eff.data_dir.join("admin_token"))?
        }
        Some(t) => defs::hashed_api_key(t.expose()),
        _ => {
            let path = eff.data_dir.join("admin_token");
            let t = secret("SMARTLINK_ADMIN_TOKEN", &path)?;
            if env_value("SMARTLINK_ADMIN_TOKEN").is_some() {
                tracing::info!("admin token from SMARTLINK_ADMIN_TOKEN");
            } else {
                tracing::info!(file = %path.display(), "no admin_token configured: using the token stored in this file");
            }
            defs::hashed_api_key(&t)
        }
    };
    let admin_token_hash = Secret::new(admin_token_hash);
    if let Some((path, file)) = &eff.file {
        let same_as_admin = defs::keys_equal_to_admin_token(&file.definitions, admin_token_hash.expose());
        if !same_as_admin.is_empty() {
            bail!(config::ConfigError::Invalid { file: path.display().to_string(), errors: same_as_admin });
        }
    }
    if let Some((path, file)) = &eff.file {
        if apply_file(&*store, path, file, false)? {
            tracing::info!(file = %path.display(), "applied definitions from the configuration file");
        }
    }
    let mut defs = defs::load_defs(&*store)?;
    if defs::has_clear_api_keys(&defs.defs) {
        // A store from before API keys were hashed: rewrite them once.
        let same = defs.defs.clone();
        match defs::commit_defs(&*store, &mut defs, same, &Catalog::default(), "system: hash api keys") {
            Ok(_) => tracing::info!("affiliate API keys are now stored as hashes"),
            Err(defs::ApplyError::Invalid(errors)) => {
                bail!(config::ConfigError::Invalid { file: "stored definitions".into(), errors })
            }
            Err(defs::ApplyError::Store(e)) => return Err(e),
        }
    }
    let mut catalog = match config::build_catalog(&defs.defs, &defs.keys) {
        Ok(c) => c,
        Err(errors) => bail!(config::ConfigError::Invalid { file: "stored definitions".into(), errors }),
    };
    if shared {
        // Several nodes count click caps from units leased from the store;
        // every later catalog inherits the mode.
        catalog.cap_mode = smartlink_core::caps::CapMode::Leased;
    }
    let config_name = eff.file.as_ref().map_or("server settings".into(), |(p, _)| p.display().to_string());
    let domain_specs = eff.file.as_ref().map(|(_, f)| f.domains.as_slice()).unwrap_or_default();
    let (domains, certs) = load_domains(domain_specs, &catalog, eff.settings.tls_listen.is_some())
        .map_err(|errors| config::ConfigError::Invalid { file: config_name, errors })?;
    let tls = certs.map(tls::Tls::new).transpose()?.map(Arc::new);
    // Rows a previous run journaled but did not load count for caps and
    // routing: load them before rebuilding from the store.
    let recovered = journal::recover(&journal_dir, &*store)?;
    // On a shared store the replay stops at marks read first, and the
    // learning task applies other nodes' rows after them: every row once.
    let replay = match store.shared() {
        Some(sh) => {
            tracing::info!(node = sh.node(), "this node's id on the shared store (on the rows it writes)");
            Replay::Shared(sh, sh.learn_marks()?)
        }
        None => Replay::Local(&*store),
    };
    rebuild_state(&*store, replay, &catalog, clock())?;
    let learn_from = match replay {
        Replay::Shared(_, marks) => Some(marks),
        Replay::Local(_) => None,
    };

    let click_secret = if shared {
        let given = env_value("SMARTLINK_SECRET");
        shared_secret(&*store, given.as_deref(), CLICK_SECRET_META, "SMARTLINK_SECRET (the click-id secret)")?
    } else {
        secret("SMARTLINK_SECRET", &eff.data_dir.join("secret"))?
    };
    let same_as_admin = defs::keys_equal_to_admin_token(&defs.defs, admin_token_hash.expose());
    if !same_as_admin.is_empty() {
        bail!(config::ConfigError::Invalid { file: "stored definitions".into(), errors: same_as_admin });
    }
    let metrics = Arc::new(metrics::Metrics::with_revision(eff.revision));
    // With a shared store, work that must run once across nodes (alerts,
    // digests, retention in the shared store) runs on the lease holder.
    let leader = Arc::new(std::sync::atomic::AtomicBool::new(!shared));
    if shared {
        start_leader_lease(Arc::downgrade(&analyzed), Arc::downgrade(&leader));
    }
    analytics::start_loader(Arc::downgrade(&analyzed), metrics.clone(), clock, leader.clone());
    metrics.log.journal_damaged.store(recovered.damaged, std::sync::atomic::Ordering::Relaxed);
    let defaults = writer::WriterSettings::default();
    let (clicks, writer) = writer::start(
        store.clone(),
        &journal_dir,
        writer::WriterSettings {
            capacity: eff.settings.queue_capacity.unwrap_or(defaults.capacity),
            low_priority_ingest: eff.settings.ingest_priority.unwrap_or_default() == config::IngestPriority::Low,
            catch_up_bytes: eff.settings.ingest_catch_up_mib.map_or(defaults.catch_up_bytes, |m| m << 20),
            defer_when_busy: eff
                .settings
                .ingest_defer_secs
                .map_or(defaults.defer_when_busy, std::time::Duration::from_secs),
        },
        metrics.log.clone(),
    )?;
    let (conversions, postback_writer) = postback_writer::start_writer(store.clone());
    let postbacks = postback_config::PostbackConfig::from_defs(&defs.defs, &defs.keys);
    let default_retry = outbound::RetryPolicy::default();
    let retry = outbound::RetryPolicy {
        base_secs: eff.settings.outbound_retry_base_secs.unwrap_or(default_retry.base_secs),
        max_attempts: eff.settings.outbound_max_attempts.unwrap_or(default_retry.max_attempts).max(1),
    };
    let state = Arc::new(AppState {
        analyzed: analyzed.clone(),
        catalog: ArcSwap::from_pointee(catalog),
        domains: ArcSwap::from_pointee(domains),
        defs: tokio::sync::Mutex::new(defs),
        codec: ClickIdCodec::new(click_secret.as_bytes()),
        geo,
        network,
        ua_cache: smartlink_visitor::ua_cache::UaCache::new(65_536),
        behaviour,
        proxies,
        admin_token_hash,
        metrics,
        clicks,
        postbacks: ArcSwap::from_pointee(postbacks),
        conversions,
        signed_window_secs: eff.settings.signed_postback_window_secs.unwrap_or(300),
        store,
        journal_dir: journal_dir.clone(),
        ready_max_backlog_bytes: eff.settings.ready_max_backlog_mib.unwrap_or(DEFAULT_READY_BACKLOG_MIB) << 20,
        sessions: session::Sessions::default(),
        simulations: simulation_runs::Simulations::default(),
        leader,
        clock,
    });
    if let Some(marks) = learn_from {
        let secs = eff.settings.learn_interval_secs.unwrap_or(learn::DEFAULT_INTERVAL_SECS);
        learn::start(&state, marks, std::time::Duration::from_secs_f64(secs));
    }
    match eff.settings.network_prior_secs.unwrap_or(priors::DEFAULT_INTERVAL_SECS) {
        0 => {}
        secs => priors::start(&state, std::time::Duration::from_secs(secs)),
    }
    if let Some(sh) = state.store.shared() {
        // A change through any node reaches this one's click path: the
        // same reload as after a local change.
        let weak = Arc::downgrade(&state);
        sh.watch_definitions(Box::new(move || {
            let Some(app) = weak.upgrade() else { return false };
            match reload_definitions(&app) {
                Ok(true) => tracing::info!("definitions changed through another node: reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "reloading changed definitions failed; the previous ones stay"),
            }
            true
        }))?;
    }
    let leases = leases::start(&state, smartlink_core::caps::LeaseSettings::default())?;
    Ok(Prepared {
        leases,
        state,
        writer,
        postback_writer,
        retry,
        limits: limits(&eff.settings),
        alerts: eff.settings.alerts.clone(),
        digests: eff.settings.digests.clone(),
        listen: eff.listen.clone(),
        tls_listen: eff.settings.tls_listen.clone(),
        tls,
        config_file: eff.file.as_ref().map(|(p, _)| p.clone()),
        tls_poll: std::time::Duration::from_secs(eff.settings.tls_poll_secs.unwrap_or(DEFAULT_TLS_POLL_SECS)),
        request_slice_us,
        journal_lock,
    })
}

/// Reloads the definitions from the store and swaps in the catalog and the
/// postback configuration when they changed (another node changed them):
/// the same path as after a local change, counters and router state
/// carried over. `Ok(false)` when nothing changed. Off the async runtime.
pub fn reload_definitions(app: &AppState) -> anyhow::Result<bool> {
    let mut st = app.defs.blocking_lock();
    let fresh = defs::load_defs(&*app.store)?;
    if fresh.defs == st.defs && fresh.keys == st.keys {
        return Ok(false);
    }
    let mut catalog = config::build_catalog(&fresh.defs, &fresh.keys)
        .map_err(|errors| config::ConfigError::Invalid { file: "stored definitions".into(), errors })?;
    catalog.inherit_state(&app.catalog.load_full());
    app.postbacks.store(Arc::new(postback_config::PostbackConfig::from_defs(&fresh.defs, &fresh.keys)));
    app.catalog.store(Arc::new(catalog));
    *st = fresh;
    Ok(true)
}

/// How often the leader lease is tried, or checked while held.
const LEASE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Holds the shared store's leader lease when no other node does, and
/// sets `leader` while it is held (a thread; stops with the store).
fn start_leader_lease(
    store: std::sync::Weak<smartlink_columnar::Analyzed>,
    leader: std::sync::Weak<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let spawned = std::thread::Builder::new().name("leader-lease".into()).spawn(move || {
        let mut lease: Option<Box<dyn smartlink_store::Lease>> = None;
        loop {
            let (Some(a), Some(flag)) = (store.upgrade(), leader.upgrade()) else { return };
            if let Some(l) = &mut lease {
                if !l.held() {
                    tracing::warn!(
                        "lost the leader lease (its connection broke): alerts, digests and retention stop here"
                    );
                    lease = None;
                    flag.store(false, Relaxed);
                }
            } else {
                match a.shared().map(|s| s.try_lead()) {
                    Some(Ok(Some(l))) => {
                        tracing::info!("this node holds the leader lease: it runs alerts, digests and retention");
                        lease = Some(l);
                        flag.store(true, Relaxed);
                    }
                    Some(Ok(None)) | None => {}
                    Some(Err(e)) => tracing::debug!(error = %e, "trying the leader lease failed"),
                }
            }
            drop((a, flag));
            std::thread::sleep(LEASE_CHECK);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the leader lease thread; this node never leads");
    }
}

/// Default of `server.tls_poll_secs`.
pub const DEFAULT_TLS_POLL_SECS: u64 = 10;

/// The `domains:` table checked against the catalog's links, and with a
/// TLS listener the certificates its entries name; every problem with its
/// key path.
pub fn load_domains(
    specs: &[domains::DomainSpec],
    catalog: &Catalog,
    tls_listener: bool,
) -> Result<(domains::Domains, Option<tls::Certs>), Vec<config::FieldError>> {
    let table = domains::Domains::build(
        specs,
        |slug| catalog.smartlink(slug).is_some(),
        |offer| catalog.direct_link(offer).is_some(),
    )?;
    let with_tls = table.entries().iter().position(|d| d.tls.is_some());
    let err = |path: String, message: &str| Err(vec![config::FieldError { path, message: message.into() }]);
    match (tls_listener, with_tls) {
        (false, Some(i)) => err(format!("domains[{i}].tls"), "is served only on a TLS listener: set server.tls_listen"),
        (true, None) => err(
            "server.tls_listen".into(),
            "no domains: entry has tls: {cert, key}, so there is no certificate to serve",
        ),
        (false, None) => Ok((table, None)),
        (true, Some(_)) => {
            let certs = tls::Certs::load(&table)?;
            Ok((table, Some(certs)))
        }
    }
}

/// Reloads on SIGHUP (`domains:` from the configuration file, and the
/// certificates) and when a certificate file changes (checked every
/// `poll`). A reload that fails is logged and counted; what was in use
/// stays.
async fn reload_task(
    state: Arc<AppState>,
    tls: Option<Arc<tls::Tls>>,
    config_file: Option<PathBuf>,
    poll: std::time::Duration,
    mut hangup: Hangup,
) {
    let mut tick = tokio::time::interval(if poll.is_zero() { std::time::Duration::from_secs(86_400) } else { poll });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let reread = tokio::select! {
            () = next_hangup(&mut hangup) => true,
            _ = tick.tick(), if !poll.is_zero() && tls.is_some() => false,
        };
        let state2 = state.clone();
        let (tls2, file2) = (tls.clone(), config_file.clone());
        let outcome = tokio::task::spawn_blocking(move || reload(&state2, tls2.as_deref(), file2.as_deref(), reread))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match outcome {
            Ok(false) => {}
            Ok(true) => {
                state.metrics.tls_reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(domains = state.domains.load().entries().len(), "reloaded domains and certificates");
            }
            Err(e) => {
                state.metrics.tls_reload_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "reload failed; the previous domains and certificates stay in use");
            }
        }
    }
}

/// One reload: with `reread` (SIGHUP) the file's `domains:` and every
/// certificate; otherwise the certificates only, and only when a file
/// changed. `Ok(true)` when something was swapped in.
fn reload(state: &AppState, tls: Option<&tls::Tls>, file: Option<&Path>, reread: bool) -> Result<bool, String> {
    let current = state.domains.load_full();
    if !reread && !tls.is_some_and(|t| t.changed(&current)) {
        return Ok(false);
    }
    let specs = match (reread, file) {
        (true, Some(path)) => Some(config::load_file(path).map_err(|e| e.to_string())?.domains),
        _ => None,
    };
    let name = file.map_or("server settings".into(), |p| p.display().to_string());
    let invalid = |errors| config::ConfigError::Invalid { file: name.clone(), errors }.to_string();
    let catalog = state.catalog.load();
    let (table, certs) = match &specs {
        Some(specs) => load_domains(specs, &catalog, tls.is_some()).map_err(invalid)?,
        None if tls.is_some() => ((*current).clone(), Some(tls::Certs::load(&current).map_err(invalid)?)),
        None => return Ok(false),
    };
    if let (Some(tls), Some(certs)) = (tls, certs) {
        tls.replace(certs);
    }
    if specs.is_some() {
        state.domains.store(Arc::new(table));
    }
    Ok(true)
}

/// How far back the router's learned state is rebuilt from stored clicks.
const REPLAY_DAYS: i64 = 7;

/// Where the start-up replay reads the router's history: the store of
/// one node, or a shared store up to the marks the learning task starts
/// from.
#[derive(Clone, Copy)]
enum Replay<'a> {
    Local(&'a dyn Store),
    Shared(&'a dyn smartlink_store::SharedStore, smartlink_store::LearnMarks),
}

impl Replay<'_> {
    fn clicks(&self, from_ms: i64, after: Option<&str>, limit: usize) -> anyhow::Result<Vec<LearnClick>> {
        Ok(match self {
            Replay::Shared(sh, marks) => sh.replay_clicks(from_ms, after, marks.clicks, limit)?,
            Replay::Local(store) => store
                .clicks_since(from_ms, after, limit)?
                .into_iter()
                .map(|c| LearnClick {
                    rid: 0,
                    click_id: c.click_id,
                    ts_ms: c.ts_ms,
                    smartlink: c.smartlink,
                    offer: c.offer,
                    country: c.country,
                    device: c.device,
                    os: c.os,
                    quality: c.quality,
                })
                .collect(),
        })
    }

    /// Conversions that arrived since `from_ms`, each in its latest status.
    fn conversions(&self, from_ms: i64) -> anyhow::Result<Vec<LearnConversion>> {
        Ok(match self {
            Replay::Shared(sh, marks) => sh.replay_conversions(from_ms, marks.conversions)?,
            Replay::Local(store) => store
                .conversions(&smartlink_store::ConversionFilter {
                    from_ms: Some(from_ms),
                    limit: 10_000_000,
                    ..Default::default()
                })?
                .into_iter()
                .map(|c| LearnConversion {
                    rid: 0,
                    conversion_id: c.id,
                    ts_ms: c.ts_ms,
                    click_ts_ms: c.click_ts_ms,
                    smartlink: c.smartlink,
                    offer: c.offer,
                    country: c.country,
                    device: c.device,
                    os: c.os,
                    quality: c.quality,
                    previous: None,
                    status: c.status,
                })
                .collect(),
        })
    }
}

/// Today's click counters per offer (in each offer's timezone) and the
/// router's click history, from the store.
fn rebuild_state(store: &dyn Store, replay: Replay<'_>, catalog: &Catalog, now_ms: i64) -> anyhow::Result<()> {
    // Today's totals per offer, queried once per distinct (timezone, day).
    type DayTotals = (HashMap<u32, u64>, HashMap<u32, (u64, f64)>);
    let mut by_day: HashMap<(chrono_tz::Tz, u32), DayTotals> = HashMap::new();
    for o in &catalog.offers {
        let tz = o.targeting.timezone;
        let day = local(tz, now_ms).day;
        let (clicks, conversions) = match by_day.entry((tz, day)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let (from, to) = day_range_ms(tz, day);
                let clicks = store.click_counts(from, to)?.into_iter().collect();
                let conversions = store.approved_totals(from, to)?.into_iter().map(|(k, n, s)| (k, (n, s))).collect();
                e.insert((clicks, conversions))
            }
        };
        let (n, spent) = conversions.get(&o.key).copied().unwrap_or((0, 0.0));
        o.counters.seed(day, clicks.get(&o.key).copied().unwrap_or(0), n, spent);
    }
    // Conversions are replayed in time order between the clicks, each as
    // a new conversion in its latest status.
    let since = now_ms - REPLAY_DAYS * 86_400_000;
    let mut conversions = replay.conversions(since)?;
    conversions.sort_by_key(|c| (c.ts_ms, c.conversion_id));
    let mut conv_iter = conversions.into_iter().peekable();
    let mut learn_until = |until_ms: i64| {
        while let Some(c) = conv_iter.next_if(|c| c.ts_ms <= until_ms) {
            learn::apply_conversion(catalog, &c);
        }
    };
    let mut from = since;
    let mut after: Option<String> = None;
    let mut replayed = 0u64;
    loop {
        let page = replay.clicks(from, after.as_deref(), 50_000)?;
        let Some(last) = page.last() else { break };
        let full = page.len() == 50_000;
        (from, after) = (last.ts_ms, Some(last.click_id.clone()));
        for c in &page {
            learn_until(c.ts_ms);
            replayed += learn::apply_clicks(catalog, std::slice::from_ref(c));
        }
        if !full {
            break;
        }
    }
    learn_until(i64::MAX);
    tracing::info!(clicks = replayed, "rebuilt routing state from stored clicks and conversions");
    Ok(())
}

/// Serves until `shutdown` resolves, then stops accepting, finishes
/// in-flight requests and flushes the click queue to the store.
/// With `tls_listener`, TLS connections there too (certificates from
/// `prepared.tls`).
pub async fn run(
    listener: tokio::net::TcpListener,
    tls_listener: Option<tokio::net::TcpListener>,
    prepared: Prepared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Prepared {
        state,
        writer,
        postback_writer,
        retry,
        alerts,
        digests,
        journal_lock,
        limits,
        tls,
        config_file,
        tls_poll,
        leases,
        ..
    } = prepared;
    // Registered before the first connection is served: from then on a
    // SIGHUP reloads instead of ending the process.
    let hangup = hangup_signal()?;
    let reloader = tokio::spawn(reload_task(state.clone(), tls.clone(), config_file, tls_poll, hangup));
    let poll = std::time::Duration::from_secs_f64((retry.base_secs / 4.0).clamp(0.05, 1.0));
    let outbound = tokio::spawn(outbound::run(state.clone(), retry, poll));
    let detector = match alerts.interval_secs.unwrap_or(300) {
        0 => None,
        secs => Some(tokio::spawn(alerts::run(
            state.clone(),
            std::time::Duration::from_secs(secs),
            alerts.webhook_url.map(|u| u.expose().to_string()),
        ))),
    };
    let rate_load = tokio::spawn(rate_load::watch_rate_load(state.clone()));
    let digest_task = tokio::spawn(digests::run(state.clone(), digests, retry, poll));
    let app = router(state.clone());
    let tls = match (tls_listener, tls) {
        (Some(l), Some(t)) => Some((l, t)),
        (None, _) => None,
        (Some(_), None) => bail!("a TLS listener without certificates (server.tls_listen needs domains with tls)"),
    };
    http::serve(listener, tls, app, Some(state.clone()), limits, state.metrics.clone(), shutdown).await;
    if let Some(l) = leases {
        // No click spends a unit any more: what is left goes back.
        tokio::task::spawn_blocking(move || l.stop()).await.ok();
    }
    reloader.abort();
    let _ = reloader.await;
    outbound.abort();
    let _ = outbound.await;
    rate_load.abort();
    let _ = rate_load.await;
    digest_task.abort();
    let _ = digest_task.await;
    if let Some(d) = detector {
        d.abort();
        let _ = d.await;
    }
    // Every sender lives in `state`; dropping the last one lets the writers
    // drain their queues and stop.
    drop(state);
    tokio::task::spawn_blocking(move || {
        writer.join();
        postback_writer.join();
    })
    .await
    .ok();
    drop(journal_lock);
    tracing::info!("click queue flushed; bye");
    Ok(())
}

/// The HTTP limits from the settings; the connection limit by default
/// follows the open-file limit, raised to its hard limit first.
fn limits(s: &ServerSettings) -> http::Limits {
    let d = http::Limits::default();
    let secs = |v: Option<u64>, dflt: std::time::Duration| v.map_or(dflt, std::time::Duration::from_secs);
    http::Limits {
        header: secs(s.header_timeout_secs, d.header),
        idle: secs(s.idle_timeout_secs, d.idle),
        body: secs(s.body_timeout_secs, d.body),
        max_connections: s.max_connections.unwrap_or_else(default_max_connections),
        shutdown_grace: secs(s.shutdown_grace_secs, d.shutdown_grace),
    }
}

/// The open-file limit (its soft value raised to the hard one) less 64
/// descriptors for the store, the journal and the listener, between 64
/// and 16384.
fn default_max_connections() -> usize {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit on a stack value this function owns.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
            if r.rlim_cur < r.rlim_max {
                let raised = libc::rlimit { rlim_cur: r.rlim_max.min(1 << 20), rlim_max: r.rlim_max };
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                    r.rlim_cur = raised.rlim_cur;
                }
            }
            return (r.rlim_cur as usize).saturating_sub(64).clamp(64, 16_384);
        }
    }
    http::Limits::default().max_connections
}

/// SIGHUP, as a stream of signals (nothing off Unix).
#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

fn hangup_signal() -> anyhow::Result<Hangup> {
    #[cfg(unix)]
    return tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler");
    #[cfg(not(unix))]
    Ok(())
}

/// Resolves on the next SIGHUP.
async fn next_hangup(h: &mut Hangup) {
    #[cfg(unix)]
    if h.recv().await.is_some() {
        return;
    }
    let _ = h;
    std::future::pending::<()>().await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
