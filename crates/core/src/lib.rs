//! The smartlink domain core.
//!
//! Everything that decides where a click goes lives here: the validated
//! model ([`model`]), targeting, daily caps, URL macro expansion, signed click
//! ids, the per-click decision ([`engine`]) and the learning router. Who is
//! clicking (the visitor's attributes, User-Agent and bot classification, the
//! quality verdict) is the `smartlink-visitor` crate's. Nothing in this crate does
//! I/O: the clock and the random number generator are passed in, so the
//! server and the simulator drive exactly the same code.
//!
//! **Architecture invariant:** this crate never touches the network, the disk
//! or a database, and never reads the wall clock.

pub mod caps;
pub mod clickid;
pub mod conversion;
pub mod engine;
pub mod model;
pub mod router;
pub mod targeting;
pub mod template;
pub mod time;

pub use engine::{apply_conversion, decide, ClickInput, Decision, FallbackReason, Outcome};
pub use model::*;
