//! The smartlink domain core.
//!
//! Everything that decides where a click goes lives here: the validated
//! model ([`model`]), targeting, daily caps, URL macro expansion, signed click
//! ids, User-Agent classification and the router. Nothing in this crate does
//! I/O: the clock and the random number generator are passed in, so the
//! server and the simulator drive exactly the same code.
//!
//! **Architecture invariant:** this crate never touches the network, the disk
//! or a database, and never reads the wall clock.

pub mod bot;
pub mod caps;
pub mod clickid;
pub mod conversion;
pub mod engine;
pub mod model;
pub mod quality;
pub mod router;
pub mod targeting;
pub mod template;
pub mod time;
pub mod ua;
pub mod ua_cache;

pub use engine::{apply_conversion, decide, ClickInput, Decision, FallbackReason, Outcome};
pub use model::*;
