//! The HTTP edge of smartlink.
pub mod config;
