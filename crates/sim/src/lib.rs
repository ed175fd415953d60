//! The traffic simulator: scores routing strategies against an oracle on
//! scenarios with known true conversion rates (see FORMAT.md).
//!
//! The `smartlink` strategy is the production router itself: the simulator
//! builds a [`smartlink_core::model::Catalog`] from the scenario, routes each
//! click with [`smartlink_core::engine::decide`] and feeds postbacks back with
//! [`smartlink_core::engine::apply_conversion`]; announced events rebuild the
//! catalog and carry state over with `Catalog::inherit_state`, exactly as the
//! server does on a configuration change. There is no second copy of the
//! routing logic.
//!
//! # API
//! ```no_run
//! use smartlink_sim::{simulate, render_json, render_table, write_html_report, Options};
//! # fn main() -> Result<(), smartlink_sim::SimError> {
//! let opts = Options { scenario_path: "drift.yaml".into(), seed: None, strategies: None };
//! let report = simulate(&opts)?;            // load + validate + run
//! println!("{}", render_table(&report));    // human table
//! println!("{}", render_json(&report));     // FORMAT.md's JSON object
//! write_html_report(&report, "report".as_ref())?; // report/index.html
//! # Ok(()) }
//! ```
//! Lower level: [`load_scenario`] / [`parse_scenario`] and
//! [`run`]`(&scenario, seed, &[Strategy])`; [`run_until`] takes a stop flag
//! too (the server bounds a run's time with it). [`EXAMPLES`] are the
//! public scenarios of `examples/scenarios/`, embedded.
//!
//! Determinism: the click stream and every strategy's RNG streams are
//! `rand_pcg` generators seeded from the seed and a fixed label, and no
//! output depends on hash-map order, so the same file, seed and strategy
//! give byte-identical JSON.

use std::path::PathBuf;

mod examples;
mod html;
mod report;
mod run;
mod scenario;

pub use examples::{example, Example, EXAMPLES};
pub use html::{render_html, write_html_report};
pub use report::{render_json, render_table};
pub use run::{run, run_until, EventMark, HourStats, SimReport, Strategy, StrategyResult};
pub use scenario::{
    load_scenario, parse_scenario, DailyCap, Event, EventAction, OfferSpec, Scenario, SegmentPattern, TargetingSpec,
    Traffic,
};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is not a scenario (YAML syntax, wrong type, unknown or
    /// missing field); `message` names the field.
    #[error("{}{message}", file_prefix(file))]
    Parse { file: Option<PathBuf>, message: String },
    /// A value is out of range or inconsistent.
    #[error("{}{field}: {message}", file_prefix(file))]
    Invalid { file: Option<PathBuf>, field: String, message: String },
    #[error("unknown strategy {0:?}; expected oracle, smartlink, random, round_robin or greedy_epc")]
    UnknownStrategy(String),
    #[error("cannot write the report to {}: {source}", path.display())]
    Report { path: PathBuf, source: std::io::Error },
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    file.as_ref().map_or(String::new(), |f| format!("{}: ", f.display()))
}

impl SimError {
    pub(crate) fn in_file(self, path: &std::path::Path) -> SimError {
        match self {
            SimError::Parse { message, .. } => SimError::Parse { file: Some(path.to_path_buf()), message },
            SimError::Invalid { field, message, .. } => {
                SimError::Invalid { file: Some(path.to_path_buf()), field, message }
            }
            other => other,
        }
    }
}

/// What `smartlink simulate` was asked to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub scenario_path: PathBuf,
    /// Overrides the file's seed.
    pub seed: Option<u64>,
    /// Strategy names to run (the oracle always runs); all when `None`.
    pub strategies: Option<Vec<String>>,
}

/// Loads the scenario, resolves seed and strategies, and runs it.
pub fn simulate(opts: &Options) -> Result<SimReport, SimError> {
    let sc = load_scenario(&opts.scenario_path)?;
    let strategies = match &opts.strategies {
        None => Strategy::ALL.to_vec(),
        Some(names) => names.iter().map(|n| Strategy::parse(n)).collect::<Result<Vec<_>, _>>()?,
    };
    Ok(run(&sc, opts.seed.unwrap_or(sc.seed), &strategies))
}
