//! The User-Agent classifier, the bot matcher and the quality verdict never
//! panic on any header value.
#![no_main]

use smartlink_visitor::quality::{judge, NetworkSignals, Reasons, RequestSignals};
use smartlink_visitor::ua::{classify, ClientHints};
use smartlink_visitor::types::Country;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(ua) = std::str::from_utf8(data) else { return };
    let (ua, platform) = ua.split_once('\n').unwrap_or((ua, ""));
    let hints = ClientHints { mobile: Some("?1"), platform: Some(platform) };
    let info = classify(ua, hints);
    let _ = smartlink_visitor::bot::classify_ua(ua);
    let _ = judge(
        &RequestSignals {
            ua,
            ua_info: info,
            hints,
            country: Country::UNKNOWN,
            language: None,
            has_accept_language: false,
            has_accept: true,
            network: NetworkSignals::default(),
        },
        Reasons::NONE,
    );
});
