//! Click-id decoding never panics on any string, and an id only verifies
//! if it is exactly what encoding those facts gives (no second encoding).
#![no_main]

use smartlink_core::clickid::ClickIdCodec;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let codec = ClickIdCodec::new(b"fuzz-secret");
    let Ok(id) = std::str::from_utf8(data) else { return };
    if let Ok(facts) = codec.decode(id) {
        assert_eq!(codec.encode(&facts), id, "a decoded id re-encodes to itself");
    }
});
