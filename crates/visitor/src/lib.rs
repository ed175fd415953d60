//! Who is clicking.
//!
//! The visitor's attributes as validated types ([`types`]: country, device
//! class, OS, browser, language), the fast User-Agent classifier ([`ua`],
//! [`ua_cache`]), the bot and link-preview lists ([`bot`]) and the per-click
//! traffic-quality verdict ([`quality`]). The routing core builds its model
//! from these types and reads the verdict; the server feeds the classifier
//! what it knows of the request (headers, IP databases, block list).
//!
//! **Architecture invariant:** pure, like the core: no network, disk,
//! database or wall clock (time is passed in), and no allocation on the
//! per-click calls. The only state is [`quality::Behaviour`]: fixed size,
//! allocated once, updated with atomics.

pub mod bot;
pub mod quality;
pub mod types;
pub mod ua;
pub mod ua_cache;

pub use types::{Browser, Country, Device, Language, Os, ParseError};
