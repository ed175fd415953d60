//! Click-id decoding never panics on any string, and an id only verifies
//! if it is exactly what encoding those facts gives (no second encoding).
//! An id of the older version (48 characters) re-encodes as the current
//! version, carrying the same facts.
#![no_main]

use smartlink_core::clickid::{ClickIdCodec, ENCODED_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let codec = ClickIdCodec::new(b"fuzz-secret");
    let Ok(id) = std::str::from_utf8(data) else { return };
    if let Ok(facts) = codec.decode(id) {
        let again = codec.encode(&facts);
        if id.len() == ENCODED_LEN {
            assert_eq!(again, id, "a decoded id re-encodes to itself");
        }
        assert_eq!(codec.decode(&again), Ok(facts), "the facts survive re-encoding");
    }
});
