//! Black-box tests: the real `smartlink` binary on port 0 with a temporary
//! data directory, driven over HTTP.

mod harness;

mod admin;
mod alerts;
mod analytics;
mod clicklog;
mod clicks;
mod config;
mod coverage;
mod dashboard;
mod digests;
mod domains;
mod http;
mod money;
// Several nodes on the machine's PostgreSQL (a build with the `postgres`
// feature, the default).
#[cfg(feature = "postgres")]
mod nodes;
mod openapi;
mod pixel;
mod playbook;
mod policy;
mod postbacks;
mod quality;
mod scoping;
mod simulations;
