//! Configuration loading never panics on any text, with or without
//! environment references, and what it accepts builds a catalog or reports
//! errors (never panics) too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |k: &str| (k == "FUZZ").then(|| "x\ny: #z".to_string());
    if let Ok(file) = smartlink_server::config::parse_file_text(text, env) {
        let keys = smartlink_server::config::provisional_keys(&file.definitions, &Default::default());
        let _ = smartlink_server::config::build_catalog(&file.definitions, &keys);
    }
});
