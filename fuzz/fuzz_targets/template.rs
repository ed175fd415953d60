//! URL templates: parsing never panics, and expanding any values keeps the
//! template's scheme and host, yields no whitespace or control character,
//! and no value makes more `.`/`..` path segments than empty values do
//! (the template's own literals may, that is the author's choice).
#![no_main]

use smartlink_core::template::{Macro, MacroSet, MacroValues, Template};

struct Values<'a>(&'a str);

impl MacroValues for Values<'_> {
    fn write(&self, _m: Macro, out: &mut String) {
        out.push_str(self.0);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // "template\nvalue"
    let (src, value) = text.split_once('\n').unwrap_or((text, ".."));
    for set in [MacroSet::Redirect, MacroSet::Postback] {
        let Ok(t) = Template::parse(src, set) else { continue };
        let out = t.expand(&Values(value));
        let prefix_len = src.find("://").map(|i| i + 3).unwrap_or(0);
        let authority_end = src[prefix_len..].find(['/', '?', '#']).map_or(src.len(), |i| prefix_len + i);
        assert_eq!(&out[..authority_end], &src[..authority_end], "scheme and host are the template's");
        assert!(!out.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()), "{out:?}");
        let path_of = |u: &str| u[authority_end..].split(['?', '#']).next().unwrap_or("").to_string();
        let dot_segments = |p: &str| p.split('/').filter(|s| *s == "." || *s == "..").count();
        let empty = t.expand(&Values(""));
        assert!(dot_segments(&path_of(&out)) <= dot_segments(&path_of(&empty)), "{out:?} against {empty:?}");
    }
});
