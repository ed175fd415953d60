//! User-Agent classification into device class, OS family and browser family.
//! (Placeholder: being replaced by the real classifier.)

use crate::model::{Browser, Device, Os};

/// What the click path needs to know about a User-Agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UaInfo {
    pub device: Device,
    pub os: Os,
    pub browser: Browser,
}

/// User-Agent client hints, when the browser sent them.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientHints<'a> {
    /// `Sec-CH-UA-Mobile` (`?1` / `?0`).
    pub mobile: Option<&'a str>,
    /// `Sec-CH-UA-Platform` (`"Android"`, `"Windows"`, ...).
    pub platform: Option<&'a str>,
}

pub fn classify(_ua: &str, _hints: ClientHints<'_>) -> UaInfo {
    UaInfo { device: Device::Desktop, os: Os::Other, browser: Browser::Other }
}
