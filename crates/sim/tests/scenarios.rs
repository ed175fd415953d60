//! The simulator's integration tests: small, fast scenarios with fixed
//! seeds. Each module pins one behaviour; `support` holds the helpers.

mod support;

mod determinism;
mod errors;
mod properties;
mod router_behaviour;
mod semantics;
