//! The `smartlink` binary: a thin clap front over the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use smartlink_server::{admin, config, Options};
use smartlink_store::{SqliteStore, Store};

#[derive(Parser)]
#[command(
    name = "smartlink",
    version,
    about = "Self-hosted smartlink engine: one tracking URL, the best offer for every click."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
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
}

fn data_dir(flag: Option<PathBuf>, file: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    let eff = smartlink_server::effective(&Options { config: file.cloned(), listen: None, data_dir: flag })?;
    Ok(eff.data_dir)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match real_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve { config, listen, data_dir } => {
            let eff = smartlink_server::effective(&Options { config, listen, data_dir })?;
            let prepared = smartlink_server::prepare(&eff, smartlink_server::app::system_clock)?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&prepared.listen)
                    .await
                    .with_context(|| format!("binding {}", prepared.listen))?;
                let addr = listener.local_addr()?;
                tracing::info!(%addr, data_dir = %eff.data_dir.display(), "smartlink listening");
                // A line on stdout that scripts and tests can wait for.
                println!("listening on http://{addr}");
                smartlink_server::run(listener, prepared, smartlink_server::shutdown_signal()).await
            })
        }
        Cmd::Import { file, data_dir: dd } => {
            let cfg = config::load_file(&file)?;
            let dir = data_dir(dd, Some(&file))?;
            let store = SqliteStore::open_dir(&dir)?;
            smartlink_server::apply_file(&store, &file, &cfg, true)?;
            let n = store.entities()?.len();
            eprintln!("imported {} into {} ({n} definitions stored)", file.display(), dir.display());
            Ok(())
        }
        Cmd::Export { data_dir: dd } => {
            let dir = data_dir(dd, None)?;
            let store = SqliteStore::open_dir(&dir)?;
            let defs = admin::load_defs(&store)?.defs;
            print!("{}", serde_yaml_ng::to_string(&defs)?);
            Ok(())
        }
    }
}
