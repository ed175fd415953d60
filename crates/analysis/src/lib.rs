//! What the numbers say.
//!
//! Every analysis the API, the CLI and the alert task show: reports over the
//! rollups ([`report`]), coverage gaps ([`coverage`]), the smartlink against
//! the best hand-picked offer ([`audit`], off-policy estimates with
//! confidence intervals), why EPC changed ([`explain`], an exact Shapley
//! decomposition), drift-alert detection ([`alerts`]), the change history in
//! plain words ([`history`]), the per-source quality report
//! ([`quality`]), the click log ([`clicks`]), cost imports ([`costs`]) and
//! the scheduled digest that gathers them for one period ([`digest`]).
//! [`insight`] is the glue from the store to `audit` and `explain`;
//! [`export`] writes every table as CSV; [`names`] shows entity keys as ids.
//!
//! **Architecture invariant:** no HTTP, no async runtime, no clock: inputs
//! come from the [`smartlink_store::Store`] trait and an explicit `now_ms`,
//! results are values (JSON documents and plain text renderings). The maths
//! of `audit` and `explain` takes plain rows and does not touch the store at
//! all. The server only wires these functions to routes, the CLI to
//! commands.

pub mod alerts;
pub mod audit;
pub mod clicks;
pub mod costs;
pub mod coverage;
pub mod digest;
pub mod explain;
pub mod export;
pub mod history;
pub mod insight;
pub mod names;
pub mod policy;
pub mod quality;
pub mod report;
