//! Postback parameters: the signed canonical form never panics and is
//! unambiguous (decoding it gives back exactly the sorted parameters, so no
//! two parameter lists share a signature), and signed mode's shape check
//! never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let params: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let canonical = smartlink_server::postback::canonical_query(&params);
    let mut expected: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "sig").cloned().collect();
    let enc = |s: &str| {
        let mut o = String::new();
        smartlink_core::template::encode_into(s, &mut o);
        o
    };
    expected.sort_by_key(|(k, v)| (enc(k), enc(v)));
    let decoded: Vec<(String, String)> = if canonical.is_empty() {
        Vec::new()
    } else {
        canonical
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("every pair has one '='");
                let dec = |s: &str| {
                    let bytes: Vec<u8> = percent_decode(s.as_bytes());
                    String::from_utf8(bytes).expect("decodes to the UTF-8 it encoded")
                };
                (dec(k), dec(v))
            })
            .collect()
    };
    assert_eq!(decoded, expected);
    let _ = smartlink_server::postback::signed_shape_check(&params);
});

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let h = std::str::from_utf8(&s[i + 1..i + 3]).expect("two hex digits");
            out.push(u8::from_str_radix(h, 16).expect("hex"));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}
