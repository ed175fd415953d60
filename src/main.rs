//! The `smartlink` binary: a thin clap front over the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use smartlink_server::{config, defs, Options};
use smartlink_store::{ConversionStore, SqliteStore, Store};

#[derive(Parser)]
#[command(
    name = "smartlink",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SMARTLINK_GIT_REV"), ")"),
    about = "Self-hosted smartlink engine: one tracking URL, the best offer for every click."
)]
struct Cli {
    /// Log lines on stderr: text (default) or json, one object per line.
    /// Also SMARTLINK_LOG_FORMAT, and `server.log_format` for `serve`.
    #[arg(long, global = true, value_parser = config::LOG_FORMATS)]
    log_format: Option<String>,
    /// The shared store several nodes use, a postgres://user@host/db URL
    /// (also SMARTLINK_STORE, and `server.store` for `serve`). Absent:
    /// SQLite in the data directory.
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Cmd {
    /// Serve clicks, postbacks and the admin API.
    Serve {
        /// YAML configuration file (server settings and definitions).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Data directory (overrides server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Apply a YAML file's definitions to the store now (upsert).
    Import {
        file: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print every stored definition as YAML (round-trips through import).
    Export {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Score routing strategies against an oracle on a traffic scenario
    /// (format: examples/scenarios/FORMAT.md).
    Simulate {
        #[arg(long)]
        scenario: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Comma-separated subset, e.g. smartlink,greedy_epc (the oracle always runs).
        #[arg(long, value_delimiter = ',')]
        strategies: Option<Vec<String>>,
        /// Print FORMAT.md's JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write an HTML report with charts into this directory.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Prints a shell completion script: bash, zsh, fish, elvish or
    /// powershell (e.g. `smartlink completions bash > /etc/bash_completion.d/smartlink`).
    Completions { shell: clap_complete::Shell },
    /// Prints the man page (roff) to stdout: `smartlink man > smartlink.1`.
    Man,
    /// Cost imports: what a traffic source billed, spread over its clicks.
    Costs {
        #[command(subcommand)]
        cmd: CostsCmd,
    },
    /// Clicks, conversions, revenue, cost, profit, ROI, CR and EPC from the hourly rollups.
    Report {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// 2026-12-01, 2026-12-01T10:00[:00], RFC 3339, 7d, 24h, 30m, today, yesterday, now or unix ms (default 7d)
        #[arg(long)]
        from: Option<String>,
        /// Same forms as --from (default now).
        #[arg(long)]
        to: Option<String>,
        /// IANA timezone for hour/day grouping, dates and today/yesterday.
        #[arg(long)]
        tz: Option<String>,
        /// Comma-separated: smartlink,source,offer,affiliate,country,device,os,browser,language,quality,hour,day,sub1..sub5
        #[arg(long, value_delimiter = ',')]
        group_by: Vec<String>,
        #[command(flatten)]
        filters: Filters,
        /// Count bot and link-preview clicks too (left out by default).
        #[arg(long)]
        include_bots: bool,
        /// Column to sort by, `-` for descending (default -clicks).
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        /// table | csv | json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Traffic quality per source (affiliate × sub-id): bot and suspect
    /// shares, reasons, CTIT, rejections and chargebacks, with abnormal
    /// sources flagged against the rest of the smartlink.
    Quality {
        #[command(flatten)]
        window: Window,
        /// affiliate (default) or sub1..sub5
        #[arg(long)]
        by: Option<String>,
        /// table or json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Coverage gaps: fallback clicks by reason and segment with their
    /// estimated missed revenue, and each offer's share of clicks per day.
    Coverage {
        #[command(flatten)]
        window: Window,
        /// IANA timezone of the days (default UTC)
        #[arg(long)]
        tz: Option<String>,
        /// table or json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Definition changes (who, when, old → new), newest first.
    History {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// advertiser, affiliate, offer or smartlink
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Smartlink vs the best hand-picked offer per segment (IPS / doubly
    /// robust estimates from logged propensities, 95% CIs, recommendations).
    Audit {
        #[command(flatten)]
        window: Window,
        #[arg(long)]
        json: bool,
    },
    /// Why did EPC change? Decomposes the change between two periods into
    /// traffic mix, offer pool, payout, conversion rate and approval.
    Explain {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        smartlink: String,
        /// Current period start (default 24h).
        #[arg(long)]
        from: Option<String>,
        /// Current period end (default now).
        #[arg(long)]
        to: Option<String>,
        /// Baseline period FROM..TO (default: the same length just before).
        #[arg(long)]
        vs: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The digest of one smartlink for one week (or day), computed on demand
    /// from the store (not stored, not sent): breakdowns with changes
    /// against the period before, recommendations, why EPC changed, new
    /// coverage gaps and flagged sources.
    Digest {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        smartlink: String,
        /// Any day of the ISO week (Monday to Monday) to digest, YYYY-MM-DD.
        /// Default: the last complete week.
        #[arg(long)]
        week: Option<String>,
        /// One day instead of a week, YYYY-MM-DD.
        #[arg(long, conflicts_with = "week")]
        day: Option<String>,
        /// IANA timezone of the period (default UTC).
        #[arg(long)]
        tz: Option<String>,
        /// text, html or json (the document, with both bodies)
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// The click log: clicks newest first, with the report's filters and a
    /// cursor for the next page.
    Clicks {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Clicks at or after this time: 2026-12-01, 2026-12-01T10:00[:00], RFC 3339, 7d, 24h, 30m, today, now or unix ms.
        #[arg(long)]
        from: Option<String>,
        /// Clicks before this time (same forms as --from).
        #[arg(long)]
        to: Option<String>,
        /// IANA timezone of dates and local times in --from/--to (default UTC).
        #[arg(long)]
        tz: Option<String>,
        #[command(flatten)]
        filters: Filters,
        /// Clicks per page, 1 to 1000.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// The next cursor printed with the previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// table | csv | json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// List conversions, newest first.
    Conversions {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Only conversions that arrived at or after this time: 2026-12-01, 2026-12-01T10:00[:00], RFC 3339, 7d, 24h, 30m, today, now or unix ms.
        #[arg(long)]
        from: Option<String>,
        /// Only conversions that arrived before this time (same forms as --from).
        #[arg(long)]
        to: Option<String>,
        /// IANA timezone of dates and local times in --from/--to (default UTC).
        #[arg(long)]
        tz: Option<String>,
        #[arg(long)]
        offer: Option<String>,
        #[arg(long)]
        smartlink: Option<String>,
        #[arg(long)]
        affiliate: Option<String>,
        /// pending | approved | rejected | chargeback
        #[arg(long)]
        status: Option<String>,
        /// Only conversions with a smaller id (the `next` of the previous page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// table | csv | json (one JSON object per line)
        #[arg(long, default_value = "table")]
        format: String,
        /// Same as --format json.
        #[arg(long)]
        json: bool,
    },
}

/// The filters the report and the click log take, as on the API
/// (comma-separated values).
#[derive(clap::Args)]
struct Filters {
    /// A smartlink's slug or a direct link, `direct:OFFER`.
    #[arg(long)]
    smartlink: Option<String>,
    /// A traffic source's id.
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    offer: Option<String>,
    #[arg(long)]
    affiliate: Option<String>,
    /// ISO country codes.
    #[arg(long)]
    country: Option<String>,
    #[arg(long)]
    device: Option<String>,
    #[arg(long)]
    os: Option<String>,
    #[arg(long)]
    browser: Option<String>,
    #[arg(long)]
    language: Option<String>,
    /// human, suspect, bot or preview.
    #[arg(long)]
    quality: Option<String>,
    /// Quality reason codes: only clicks carrying one.
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    sub1: Option<String>,
    #[arg(long)]
    sub2: Option<String>,
    #[arg(long)]
    sub3: Option<String>,
    #[arg(long)]
    sub4: Option<String>,
    #[arg(long)]
    sub5: Option<String>,
}

impl Filters {
    /// (name, values) pairs as `report::FILTERS` names them.
    fn pairs(self) -> Vec<(String, String)> {
        let Filters {
            smartlink,
            source,
            offer,
            affiliate,
            country,
            device,
            os,
            browser,
            language,
            quality,
            reason,
            sub1,
            sub2,
            sub3,
            sub4,
            sub5,
        } = self;
        [
            ("smartlink", smartlink),
            ("source", source),
            ("offer", offer),
            ("affiliate", affiliate),
            ("country", country),
            ("device", device),
            ("os", os),
            ("browser", browser),
            ("language", language),
            ("quality", quality),
            ("reason", reason),
            ("sub1", sub1),
            ("sub2", sub2),
            ("sub3", sub3),
            ("sub4", sub4),
            ("sub5", sub5),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
    }
}

#[derive(Subcommand)]
enum CostsCmd {
    /// Imports a CSV of billed amounts (header:
    /// link,source,from,to,amount,currency,country,device,os,sub1..sub5;
    /// a link or a source, from, to and amount are required). Each line is
    /// spread over the clicks it covers, replacing their cost; the lines
    /// before a failing one stay applied.
    Import {
        file: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Lists the recorded imports, newest first.
    List {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is no error.
fn print_all(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// The store a command that reads (or adds to) existing data opens: a
/// missing one is an error naming where it was looked for, never a new
/// empty store whose reports say zero. Its analytics come from the columnar
/// store when this process can open it; while a running server owns that
/// file, from the transactional store's consistent (WAL) snapshot instead:
/// the same answers, computed from its rollups and raw rows.
fn open_existing(dir: &std::path::Path, store: Option<&str>) -> anyhow::Result<smartlink_columnar::Analyzed> {
    if let Some(url) = smartlink_server::store_url(store, None)? {
        // A shared store: every node's columnar file is its own; read the
        // store itself (its rollups and raw rows give the same answers).
        let tx = smartlink_server::open_store(dir, Some(&url), None)?;
        return Ok(smartlink_columnar::Analyzed::transactional(tx));
    }
    if !dir.join("smartlink.db").is_file() {
        anyhow::bail!(
            "no smartlink store in {} (no smartlink.db there): pass --data-dir DIR or set SMARTLINK_DATA_DIR to the \
             server's data directory (server.data_dir)",
            dir.display()
        );
    }
    let sqlite: std::sync::Arc<dyn smartlink_store::TxStore> = std::sync::Arc::new(SqliteStore::open_dir(dir)?);
    // A running server holds the journal lock and writes the columnar file:
    // then read SQLite alone. The lock is only probed, not kept, so a server
    // can start while this command runs.
    if smartlink_clicklog::journal::lock_dir(&dir.join("journal")).is_err() {
        return Ok(smartlink_columnar::Analyzed::transactional(sqlite));
    }
    Ok(smartlink_columnar::Analyzed::open_or_transactional(sqlite, dir, Default::default()))
}

fn data_dir(flag: Option<PathBuf>, file: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    let eff = smartlink_server::effective(&Options { config: file.cloned(), data_dir: flag, ..Default::default() })?;
    Ok(eff.data_dir)
}

/// The log format: the flag, else `SMARTLINK_LOG_FORMAT`, else the served
/// config file's `server.log_format`, else text.
fn log_format(cli: &Cli) -> String {
    let from_file = || match &cli.cmd {
        Cmd::Serve { config: Some(p), .. } => config::load_file(p).ok().and_then(|f| f.server.log_format),
        _ => None,
    };
    cli.log_format
        .clone()
        .or_else(|| std::env::var("SMARTLINK_LOG_FORMAT").ok().filter(|f| config::LOG_FORMATS.contains(&f.as_str())))
        .or_else(from_file)
        .unwrap_or_else(|| "text".into())
}

fn main() -> ExitCode {
    use std::io::IsTerminal as _;
    // Everything this process creates is its owner's alone: the data
    // directory's files hold tokens, secrets and visitors' data, and some
    // are created by libraries (DuckDB's write-ahead log) with default modes.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // rustls warns once per handshake about odd but harmless client hellos
    // (an IP address sent as SNI, as wrk and many bots do): any client could
    // fill the log with them. Its errors stay; RUST_LOG naming rustls wins.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rustls")) {
        if let Ok(quiet) = "rustls=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if log_format(&cli) == "json" {
        logs.json().with_current_span(false).init();
    } else {
        // Colour only for a person at a terminal, never into a log file.
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A bad configuration value is the operator's to fix: exit 2,
            // as for a bad command line; anything else 1.
            if e.chain().any(|c| c.downcast_ref::<config::ConfigError>().is_some()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The data directory, smartlink and period an analysis command reads.
#[derive(clap::Args)]
struct Window {
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    smartlink: String,
    /// 7d, 24h, today, ... (default 7d)
    #[arg(long)]
    period: Option<String>,
}

impl Window {
    fn store(&self, store: Option<&str>) -> anyhow::Result<smartlink_columnar::Analyzed> {
        open_existing(&data_dir(self.data_dir.clone(), None)?, store)
    }
}

/// The affiliates' payout shares as the stored definitions set them (the
/// CLI is the operator: it sees the gross figures and the affiliates' part).
fn payout_shares(store: &dyn Store) -> anyhow::Result<smartlink_analysis::report::PayoutShares> {
    let defs = smartlink_server::defs::load_defs(store)?;
    Ok(smartlink_server::postback_config::PostbackConfig::from_defs(&defs.defs, &defs.keys).shares)
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let store_flag = cli.store.clone();
    let store = store_flag.as_deref();
    match cli.cmd {
        Cmd::Serve { config, listen, data_dir } => {
            let eff = smartlink_server::effective(&Options {
                config,
                listen,
                data_dir,
                store: store_flag.clone(),
                revision: env!("SMARTLINK_GIT_REV"),
            })?;
            let prepared = smartlink_server::prepare(&eff, smartlink_server::state::system_clock)?;
            let slice = prepared.request_slice_us;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .on_thread_start(move || {
                    if slice > 0 && !smartlink_clicklog::sched::request_slice(slice) {
                        tracing::debug!(slice, "the kernel refused the request threads' time slice");
                    }
                })
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&prepared.listen)
                    .await
                    .with_context(|| format!("binding {}", prepared.listen))?;
                let addr = listener.local_addr()?;
                tracing::info!(%addr, data_dir = %eff.data_dir.display(), "smartlink listening");
                let tls_listener = match &prepared.tls_listen {
                    Some(at) => Some(
                        tokio::net::TcpListener::bind(at)
                            .await
                            .with_context(|| format!("binding {at} (server.tls_listen)"))?,
                    ),
                    None => None,
                };
                // A line on stdout that scripts and tests can wait for (and
                // one more for the TLS listener).
                println!("listening on http://{addr}");
                if let Some(l) = &tls_listener {
                    let tls_addr = l.local_addr()?;
                    tracing::info!(addr = %tls_addr, "smartlink listening for TLS");
                    println!("listening on https://{tls_addr}");
                }
                smartlink_server::run(listener, tls_listener, prepared, smartlink_server::shutdown_signal()).await
            })
        }
        Cmd::Import { file, data_dir: dd } => {
            let cfg = config::load_file(&file)?;
            if let Some(url) = smartlink_server::store_url(store, cfg.server.store.as_ref())? {
                // A shared store: running nodes pick the change up within a
                // second; it is made under the cluster-wide definitions lock,
                // as an admin change on any node is.
                let dir = data_dir(dd, Some(&file))?;
                let store = smartlink_server::open_store(&dir, Some(&url), None)?;
                let _lock = store.shared().map(|s| s.lock_definitions()).transpose()?;
                smartlink_server::apply_file(&*store, &file, &cfg, true)?;
                let n = store.entities()?.len();
                eprintln!(
                    "imported {} into {} ({n} definitions stored)",
                    file.display(),
                    smartlink_store::redact_url(url.expose())
                );
                return Ok(());
            }
            let dir = data_dir(dd, Some(&file))?;
            // A running server keeps its definitions in memory and would not
            // see the import (and would overwrite it on its next change):
            // refuse while one owns the directory.
            let _lock = smartlink_clicklog::journal::lock_dir(&dir.join("journal")).map_err(|_| {
                anyhow::anyhow!(
                    "a running smartlink server owns this data directory ({}): change its definitions through its \
                     admin API (POST/PUT/PATCH/DELETE /api/v1/{{offers,smartlinks,affiliates,advertisers}}), or stop it \
                     and import again",
                    dir.display()
                )
            })?;
            let store = SqliteStore::open_dir(&dir)?;
            smartlink_server::apply_file(&store, &file, &cfg, true)?;
            let n = store.entities()?.len();
            eprintln!("imported {} into {} ({n} definitions stored)", file.display(), dir.display());
            Ok(())
        }
        Cmd::Simulate { scenario, seed, strategies, json, report } => {
            let opts = smartlink_sim::Options { scenario_path: scenario, seed, strategies };
            let result = smartlink_sim::simulate(&opts)?;
            if json {
                println!("{}", smartlink_sim::render_json(&result));
            } else {
                print!("{}", smartlink_sim::render_table(&result));
            }
            if let Some(dir) = report {
                let page = smartlink_sim::write_html_report(&result, &dir)?;
                eprintln!("report written to {}", page.display());
            }
            Ok(())
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "smartlink", &mut out);
            print_all(&out)
        }
        Cmd::Man => {
            use clap::CommandFactory as _;
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            print_all(&out)
        }
        Cmd::Costs { cmd: CostsCmd::Import { file, data_dir: dd } } => {
            use smartlink_analysis::costs;
            let text = std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let lines = costs::read_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let store = open_existing(&data_dir(dd, None)?, store)?;
            let defs = smartlink_server::defs::load_defs(&store)?;
            let rates = smartlink_server::postback_config::PostbackConfig::from_defs(&defs.defs, &defs.keys).rates;
            let rate = |c: Option<&str>| match c.filter(|c| !c.is_empty()) {
                None => Some(1.0),
                Some(c) => rates.get(&c.to_ascii_uppercase()).copied(),
            };
            let actor = format!("import:{}", file.display());
            let now = smartlink_server::state::system_clock();
            for (i, line) in lines.iter().enumerate() {
                let done = costs::import(&store, line, &rate, &actor, now)
                    .map_err(|e| anyhow::anyhow!("{} line {}: {e}", file.display(), i + 2))?;
                println!("{done}");
            }
            eprintln!("{} cost line(s) imported", lines.len());
            Ok(())
        }
        Cmd::Costs { cmd: CostsCmd::List { data_dir: dd, limit } } => {
            let store = open_existing(&data_dir(dd, None)?, store)?;
            for r in store.cost_imports(limit.clamp(1, 10_000))? {
                println!("{}", smartlink_analysis::costs::row_json(&r));
            }
            Ok(())
        }
        Cmd::Report { data_dir: dd, from, to, tz, group_by, filters, include_bots, sort, limit, format } => {
            let dir = data_dir(dd, None)?;
            let store = open_existing(&dir, store)?;
            let filters = filters.pairs();
            let req = smartlink_analysis::report::ReportRequest {
                from,
                to,
                tz,
                group_by,
                filters,
                sort,
                limit,
                include_bots,
            };
            let shares = payout_shares(&store)?;
            let out = smartlink_analysis::report::run_as(
                &store,
                &req,
                smartlink_analysis::report::Money::Admin(&shares),
                smartlink_server::state::system_clock(),
            )?;
            match format.as_str() {
                "json" => println!("{out}"),
                "csv" => print!("{}", smartlink_analysis::report::render(&out, true)),
                "table" => print!("{}", smartlink_analysis::report::render(&out, false)),
                other => anyhow::bail!("--format: expected table, csv or json, got {other:?}"),
            }
            Ok(())
        }
        Cmd::Quality { window, by, format } => {
            let store = window.store(store)?;
            let Window { smartlink, period, .. } = window;
            let req = smartlink_analysis::quality::QualityRequest { smartlink, period, by };
            let out = smartlink_analysis::quality::report(&store, &req, smartlink_server::state::system_clock())?;
            emit(&out, &format, smartlink_analysis::quality::render)
        }
        Cmd::Coverage { window, tz, format } => {
            let store = window.store(store)?;
            let Window { smartlink, period, .. } = window;
            let defs = defs::load_defs(&store)?;
            let catalog = config::build_catalog(&defs.defs, &defs.keys)
                .map_err(|errors| config::ConfigError::Invalid { file: "stored definitions".into(), errors })?;
            let req = smartlink_analysis::coverage::CoverageRequest { smartlink, period, tz };
            let out =
                smartlink_analysis::coverage::report(&store, &catalog, &req, smartlink_server::state::system_clock())?;
            emit(&out, &format, smartlink_analysis::coverage::render)
        }
        Cmd::History { data_dir: dd, kind, id, limit } => {
            use smartlink_store::Store as _;
            let store = open_existing(&data_dir(dd, None)?, store)?;
            let kind = match kind {
                None => None,
                Some(k) => Some(
                    smartlink_store::Kind::ALL
                        .into_iter()
                        .find(|x| x.as_str() == k)
                        .ok_or_else(|| anyhow::anyhow!("--kind: expected advertiser, affiliate, offer or smartlink"))?,
                ),
            };
            for r in store.history(kind, id.as_deref(), limit)? {
                let j = smartlink_analysis::history::row_json(&r);
                let fields: Vec<String> = j["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| format!("{}: {} → {}", f["field"].as_str().unwrap_or(""), f["old"], f["new"]))
                    .collect();
                println!(
                    "{}  {} {} {} by {}  {}",
                    chrono::DateTime::from_timestamp_millis(r.ts_ms).map(|t| t.to_rfc3339()).unwrap_or_default(),
                    r.action,
                    r.kind.as_str(),
                    r.entity,
                    r.actor,
                    fields.join("; ")
                );
            }
            Ok(())
        }
        Cmd::Audit { window, json } => {
            let out = smartlink_analysis::insight::audit(
                &window.store(store)?,
                &window.smartlink,
                window.period.as_deref(),
                smartlink_server::state::system_clock(),
            )?;
            emit(&out, if json { "json" } else { "table" }, smartlink_analysis::insight::render_audit)
        }
        Cmd::Digest { data_dir: dd, smartlink, week, day, tz, format } => {
            use smartlink_analysis::digest::{Every, Schedule};
            if !["text", "html", "json"].contains(&format.as_str()) {
                anyhow::bail!("--format: expected text, html or json, got {format:?}");
            }
            let tz: chrono_tz::Tz = match tz.as_deref() {
                None => chrono_tz::UTC,
                Some(z) => z.parse().map_err(|_| anyhow::anyhow!("--tz: expected an IANA timezone, got {z:?}"))?,
            };
            let every = if day.is_some() { Every::Daily } else { Every::Weekly };
            let schedule = Schedule { every, hour: 0, tz, ..Schedule::default() };
            let now = smartlink_server::state::system_clock();
            let period = match week.as_deref().or(day.as_deref()) {
                None => schedule.latest_due(now),
                Some(d) => schedule.period_containing(
                    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .map_err(|_| anyhow::anyhow!("--week/--day: expected YYYY-MM-DD, got {d:?}"))?,
                ),
            };
            let store = open_existing(&data_dir(dd, None)?, store)?;
            let defs = defs::load_defs(&store)?;
            let catalog = config::build_catalog(&defs.defs, &defs.keys)
                .map_err(|errors| config::ConfigError::Invalid { file: "stored definitions".into(), errors })?;
            let out = smartlink_analysis::digest::digest(&store, &catalog, &smartlink, period, tz, now)?;
            match format.as_str() {
                "json" => println!("{out}"),
                "html" => print!("{}", out["html"].as_str().unwrap_or("")),
                _ => print!("{}", out["text"].as_str().unwrap_or("")),
            }
            Ok(())
        }
        Cmd::Explain { data_dir: dd, smartlink, from, to, vs, json } => {
            let store = open_existing(&data_dir(dd, None)?, store)?;
            let out = smartlink_analysis::insight::explain(
                &store,
                &smartlink,
                from.as_deref(),
                to.as_deref(),
                vs.as_deref(),
                smartlink_server::state::system_clock(),
            )?;
            emit(&out, if json { "json" } else { "table" }, smartlink_analysis::insight::render_explain)
        }
        Cmd::Clicks { data_dir: dd, from, to, tz, filters, limit, cursor, format } => {
            let store = open_existing(&data_dir(dd, None)?, store)?;
            let req = smartlink_analysis::clicks::ClickLogRequest {
                from,
                to,
                tz,
                filters: filters.pairs(),
                limit: Some(limit),
                cursor,
            };
            // The operator's own store: every field, the IP included.
            let page = smartlink_analysis::clicks::log(&store, &req, smartlink_server::state::system_clock(), true)?;
            match format.as_str() {
                "json" => println!("{page}"),
                "csv" => print!("{}", smartlink_analysis::clicks::csv(&page, true)),
                "table" => print!("{}", smartlink_analysis::clicks::render(&page)),
                other => anyhow::bail!("--format: expected table, csv or json, got {other:?}"),
            }
            if format != "json" {
                match page["next_cursor"].as_str() {
                    Some(c) => eprintln!("next page: --cursor {c}"),
                    None => eprintln!("last page"),
                }
            }
            Ok(())
        }
        Cmd::Conversions {
            data_dir: dd,
            from,
            to,
            tz,
            offer,
            smartlink,
            affiliate,
            status,
            before,
            limit,
            format,
            json,
        } => {
            use smartlink_server::conversions::{conversion_json, conversions_csv, filter, ListQuery, Names};
            let format = if json { "json".to_string() } else { format };
            if !["table", "csv", "json"].contains(&format.as_str()) {
                anyhow::bail!("--format: expected table, csv or json, got {format:?}");
            }
            let dir = data_dir(dd, None)?;
            let store = open_existing(&dir, store)?;
            let q = ListQuery {
                from,
                to,
                tz,
                offer,
                smartlink,
                affiliate,
                status,
                before,
                limit: Some(limit),
                format: None,
            };
            let f = filter(&store, &q, smartlink_server::state::system_clock()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let rows = store.conversions(&f)?;
            let names = Names::load(&store)?;
            let shares = payout_shares(&store)?;
            let money = smartlink_analysis::report::Money::Admin(&shares);
            if format == "json" {
                for c in &rows {
                    println!("{}", conversion_json(c, &names, money));
                }
            } else if format == "csv" {
                let rows: Vec<serde_json::Value> = rows.iter().map(|c| conversion_json(c, &names, money)).collect();
                print!("{}", conversions_csv(&rows));
            } else {
                println!(
                    "{:>6}  {:<10}  {:<14}  {:<12}  {:<10}  {:>9}  {:<3}  {:<7}  {:>8}  click_id",
                    "id", "status", "offer", "smartlink", "affiliate", "payout", "cur", "segment", "ctit_s"
                );
                for c in &rows {
                    let v = conversion_json(c, &names, money);
                    println!(
                        "{:>6}  {:<10}  {:<14}  {:<12}  {:<10}  {:>9.2}  {:<3}  {:<7}  {:>8}  {}",
                        c.id,
                        c.status.as_str(),
                        v["offer"].as_str().unwrap_or(""),
                        v["smartlink"].as_str().unwrap_or(""),
                        v["affiliate"].as_str().unwrap_or("-"),
                        c.payout,
                        c.currency,
                        format!("{}/{}", c.country, c.device),
                        c.ctit_secs,
                        c.click_id
                    );
                }
                eprintln!("{} conversion(s)", rows.len());
            }
            Ok(())
        }
        Cmd::Export { data_dir: dd } => {
            let dir = data_dir(dd, None)?;
            let store = open_existing(&dir, store)?;
            let defs = defs::load_defs(&store)?.defs;
            print!("{}", serde_saphyr::to_string(&defs)?);
            Ok(())
        }
    }
}

/// Prints an analysis as JSON or as its text rendering.
fn emit(out: &serde_json::Value, format: &str, render: fn(&serde_json::Value) -> String) -> anyhow::Result<()> {
    match format {
        "json" => println!("{out}"),
        "table" => print!("{}", render(out)),
        other => anyhow::bail!("--format: expected table or json, got {other:?}"),
    }
    Ok(())
}
