//! The click fast path's request parser against hyper's side: whatever the
//! fast path answers, hyper would have accepted the same way, and the Host
//! rule gives the same verdict on both paths (`http::check_against_hyper`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    smartlink_server::http::check_against_hyper(data);
});
