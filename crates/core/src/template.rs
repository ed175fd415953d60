//! URL templates with `{macro}` placeholders (offer URLs, fallback URLs,
//! outbound postback URLs).
//!
//! A template is parsed once, when the configuration is loaded: an unknown
//! macro, a macro in the scheme or host, or a URL that is not absolute
//! http(s) is an error there, never a silent blank at click time. Every
//! expanded value is percent-encoded so that only RFC 3986 *unreserved*
//! characters remain: a value can never add a query parameter, a path
//! segment or a fragment, whatever component it lands in.

use std::fmt::Write as _;

/// Every macro smartlink knows. Which ones a template may use depends on
/// where it is used (see [`MacroSet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Macro {
    ClickId,
    Sub(u8),
    Country,
    Device,
    Os,
    Browser,
    OfferId,
    Smartlink,
    Affiliate,
    Payout,
    Currency,
    Status,
    Event,
    Txid,
}

impl Macro {
    fn parse(name: &str) -> Option<Macro> {
        Some(match name {
            "click_id" => Macro::ClickId,
            "sub1" => Macro::Sub(1),
            "sub2" => Macro::Sub(2),
            "sub3" => Macro::Sub(3),
            "sub4" => Macro::Sub(4),
            "sub5" => Macro::Sub(5),
            "country" => Macro::Country,
            "device" => Macro::Device,
            "os" => Macro::Os,
            "browser" => Macro::Browser,
            "offer_id" => Macro::OfferId,
            "smartlink" => Macro::Smartlink,
            "affiliate" => Macro::Affiliate,
            "payout" => Macro::Payout,
            "currency" => Macro::Currency,
            "status" => Macro::Status,
            "event" => Macro::Event,
            "txid" => Macro::Txid,
            _ => return None,
        })
    }
}

/// The macros allowed in one kind of template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacroSet {
    /// Offer and fallback URLs (the redirect).
    Redirect,
    /// Outbound postback URLs (smartlink → affiliate).
    Postback,
}

impl MacroSet {
    fn allows(self, m: Macro) -> bool {
        match self {
            MacroSet::Redirect => !matches!(m, Macro::Status | Macro::Event | Macro::Txid),
            MacroSet::Postback => !matches!(m, Macro::Device | Macro::Os | Macro::Browser | Macro::Affiliate),
        }
    }

    fn names(self) -> &'static str {
        match self {
            MacroSet::Redirect => "{click_id} {sub1}..{sub5} {country} {device} {os} {browser} {offer_id} {smartlink} {affiliate} {payout} {currency}",
            MacroSet::Postback => "{click_id} {sub1}..{sub5} {payout} {currency} {status} {event} {offer_id} {smartlink} {country} {txid}",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown macro {{{name}}}; expected one of {allowed}")]
    UnknownMacro { name: String, allowed: &'static str },
    #[error("unclosed '{{' at byte {0}; write macros as {{name}}")]
    Unclosed(usize),
    #[error("expected an absolute http:// or https:// URL with a host")]
    NotHttp,
    #[error("macros are not allowed in the scheme or host; put them in the path or query")]
    MacroInHost,
    #[error("URL contains whitespace or control characters; percent-encode them")]
    BadChar,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Macro(Macro),
}

/// A parsed URL template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    literal_len: usize,
}

/// Supplies macro values during expansion. Values are raw (unencoded).
pub trait MacroValues {
    fn write(&self, m: Macro, out: &mut String);
}

impl Template {
    pub fn parse(src: &str, set: MacroSet) -> Result<Template, TemplateError> {
        if src.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(TemplateError::BadChar);
        }
        let rest =
            src.strip_prefix("https://").or_else(|| src.strip_prefix("http://")).ok_or(TemplateError::NotHttp)?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if authority.contains(['{', '}']) {
            return Err(TemplateError::MacroInHost);
        }
        let host = authority.rsplit('@').next().unwrap_or("");
        let host_ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
            && !host.starts_with(':');
        if !host_ok {
            return Err(TemplateError::NotHttp);
        }

        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        let bytes = src.as_bytes();
        while i < bytes.len() {
            if bytes[i] == b'{' {
                let end = src[i..].find('}').ok_or(TemplateError::Unclosed(i))? + i;
                let name = &src[i + 1..end];
                let m = Macro::parse(name)
                    .filter(|m| set.allows(*m))
                    .ok_or_else(|| TemplateError::UnknownMacro { name: name.to_string(), allowed: set.names() })?;
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Macro(m));
                i = end + 1;
            } else {
                let ch_len = src[i..].chars().next().map_or(1, char::len_utf8);
                lit.push_str(&src[i..i + ch_len]);
                i += ch_len;
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        let literal_len = parts.iter().map(|p| if let Part::Lit(s) = p { s.len() } else { 0 }).sum();
        Ok(Template { source: src.to_string(), parts, literal_len })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn uses(&self, m: Macro) -> bool {
        self.parts.contains(&Part::Macro(m))
    }

    /// Expands the template, percent-encoding every macro value. In the
    /// path (before `?` or `#`), a value made only of dots is left out: `.`
    /// and `..` would be dot-segments that a browser resolves (and so are
    /// `%2E` forms, so encoding cannot help), letting a sub-id walk the
    /// offer's path.
    pub fn expand(&self, values: &dyn MacroValues) -> String {
        let mut out = String::with_capacity(self.literal_len + 64);
        let mut in_path = true;
        for p in &self.parts {
            match p {
                Part::Lit(s) => {
                    in_path &= !s.contains(['?', '#']);
                    out.push_str(s);
                }
                Part::Macro(m) => {
                    // The raw value goes on the end of `out`; only a value
                    // that needs encoding is taken off and put back encoded
                    // (most values — click ids, countries, plain sub-ids —
                    // need none, and cost no allocation).
                    let start = out.len();
                    values.write(*m, &mut out);
                    if in_path && out.len() > start && out.as_bytes()[start..].iter().all(|&b| b == b'.') {
                        out.truncate(start);
                    } else if !out.as_bytes()[start..].iter().all(|&b| unreserved(b)) {
                        let raw = out.split_off(start);
                        encode_into(&raw, &mut out);
                    }
                }
            }
        }
        out
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub fn encode_into(raw: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in raw.as_bytes() {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

/// Formats a money amount without float noise (`2.5`, `0.1`, `3`).
pub fn format_amount(v: f64, out: &mut String) {
    let rounded = (v * 1e6).round() / 1e6;
    let _ = write!(out, "{rounded}");
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V<'a>(&'a [(Macro, &'a str)]);
    impl MacroValues for V<'_> {
        fn write(&self, m: Macro, out: &mut String) {
            if let Some((_, v)) = self.0.iter().find(|(k, _)| *k == m) {
                out.push_str(v);
            }
        }
    }

    fn expand(t: &str, vals: &[(Macro, &str)]) -> String {
        Template::parse(t, MacroSet::Redirect).unwrap().expand(&V(vals))
    }

    #[test]
    fn a_dots_only_value_never_makes_a_dot_segment_in_the_path() {
        let dots = |t: &str, v: &str| expand(t, &[(Macro::Sub(1), v), (Macro::Sub(2), v)]);
        // (template, value, expanded)
        for (t, v, want) in [
            ("https://o.example/lp/{sub1}/x", "..", "https://o.example/lp//x"),
            ("https://o.example/lp/{sub1}/x", ".", "https://o.example/lp//x"),
            ("https://o.example/{sub1}{sub2}/x", ".", "https://o.example//x"),
            ("https://o.example/lp/.{sub1}", ".", "https://o.example/lp/."),
            // Dots with anything else are an ordinary value, and the query keeps them.
            ("https://o.example/lp/{sub1}/x", "..a", "https://o.example/lp/..a/x"),
            ("https://o.example/lp/{sub1}/x", "%2e%2e", "https://o.example/lp/%252e%252e/x"),
            ("https://o.example/lp?s={sub1}", "..", "https://o.example/lp?s=.."),
            ("https://o.example/lp#{sub1}", "..", "https://o.example/lp#.."),
        ] {
            assert_eq!(dots(t, v), want, "{t} with {v:?}");
        }
    }

    #[test]
    fn macro_expansion_table() {
        type Case<'a> = (&'a str, &'a [(Macro, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("https://a.example/lp?c={click_id}", &[(Macro::ClickId, "AbC-_9")], "https://a.example/lp?c=AbC-_9"),
            (
                "https://a.example/lp?s1={sub1}&x=1",
                &[(Macro::Sub(1), "&x=1#")],
                "https://a.example/lp?s1=%26x%3D1%23&x=1",
            ),
            ("https://a.example/{sub2}/lp", &[(Macro::Sub(2), "../admin?")], "https://a.example/..%2Fadmin%3F/lp"),
            ("https://a.example/lp#{sub3}", &[(Macro::Sub(3), "a b")], "https://a.example/lp#a%20b"),
            (
                "https://a.example/lp?geo={country}&p={payout}",
                &[(Macro::Country, "US"), (Macro::Payout, "2.5")],
                "https://a.example/lp?geo=US&p=2.5",
            ),
            ("https://a.example/lp?s={sub4}", &[], "https://a.example/lp?s="),
            ("https://a.example/lp?u={sub5}", &[(Macro::Sub(5), "ü€")], "https://a.example/lp?u=%C3%BC%E2%82%AC"),
        ];
        for (t, vals, want) in cases {
            assert_eq!(&expand(t, vals), want, "{t}");
        }
    }

    #[test]
    fn template_errors_name_the_problem() {
        let err = |t: &str| Template::parse(t, MacroSet::Redirect).unwrap_err();
        assert!(
            matches!(err("https://a.example/?x={nope}"), TemplateError::UnknownMacro { name, .. } if name == "nope")
        );
        assert_eq!(err("ftp://a.example/"), TemplateError::NotHttp);
        assert_eq!(err("/relative"), TemplateError::NotHttp);
        assert_eq!(err("https:///path"), TemplateError::NotHttp);
        assert_eq!(err("https://{sub1}.example/"), TemplateError::MacroInHost);
        assert_eq!(err("https://a.example/?x={sub1"), TemplateError::Unclosed(21));
        assert_eq!(err("https://a.example/ x"), TemplateError::BadChar);
        assert!(matches!(err("https://a.example/?s={status}"), TemplateError::UnknownMacro { .. }));
        assert!(Template::parse("https://a.example/?s={status}", MacroSet::Postback).is_ok());
    }

    #[test]
    fn amounts_format_without_float_noise() {
        let f = |v| {
            let mut s = String::new();
            format_amount(v, &mut s);
            s
        };
        assert_eq!(f(2.5), "2.5");
        assert_eq!(f(0.1 + 0.2), "0.3");
        assert_eq!(f(3.0), "3");
    }

    proptest::proptest! {
        #[test]
        fn a_macro_value_never_breaks_out_of_its_component(v in ".*") {
            let url = expand("https://a.example/p?a={sub1}&b=2#f", &[(Macro::Sub(1), &v)]);
            let value = url.strip_prefix("https://a.example/p?a=").unwrap().strip_suffix("&b=2#f").unwrap();
            proptest::prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        }
    }

    /// (name) -> (macro, allowed in redirect URLs, allowed in postback URLs).
    const MACROS: [(&str, Macro, bool, bool); 18] = [
        ("click_id", Macro::ClickId, true, true),
        ("sub1", Macro::Sub(1), true, true),
        ("sub2", Macro::Sub(2), true, true),
        ("sub3", Macro::Sub(3), true, true),
        ("sub4", Macro::Sub(4), true, true),
        ("sub5", Macro::Sub(5), true, true),
        ("country", Macro::Country, true, true),
        ("device", Macro::Device, true, false),
        ("os", Macro::Os, true, false),
        ("browser", Macro::Browser, true, false),
        ("offer_id", Macro::OfferId, true, true),
        ("smartlink", Macro::Smartlink, true, true),
        ("affiliate", Macro::Affiliate, true, false),
        ("payout", Macro::Payout, true, true),
        ("currency", Macro::Currency, true, true),
        ("status", Macro::Status, false, true),
        ("event", Macro::Event, false, true),
        ("txid", Macro::Txid, false, true),
    ];

    #[test]
    fn every_macro_name_parses_to_its_own_value() {
        for (name, m, _, _) in MACROS {
            assert_eq!(Macro::parse(name), Some(m), "{name}");
        }
        for name in ["", "sub", "sub0", "sub6", "Country", "click-id", "offer", "{sub1}", " sub1"] {
            assert_eq!(Macro::parse(name), None, "{name:?}");
        }
    }

    /// Each macro in each kind of template: accepted where it has a value,
    /// refused elsewhere with an error that lists the macros allowed there.
    #[test]
    fn each_template_kind_takes_exactly_its_macros_and_names_them_when_refusing() {
        for (name, m, redirect, postback) in MACROS {
            for (set, allowed) in [(MacroSet::Redirect, redirect), (MacroSet::Postback, postback)] {
                let listed = set
                    .names()
                    .split(' ')
                    .any(|n| n == format!("{{{name}}}") || (n == "{sub1}..{sub5}" && matches!(m, Macro::Sub(_))));
                assert_eq!(listed, allowed, "{name} listed for {set:?}");
                match Template::parse(&format!("https://a.example/p?v={{{name}}}"), set) {
                    Ok(t) => {
                        assert!(allowed, "{name} accepted in a {set:?} URL");
                        assert!(t.uses(m), "{name}");
                    }
                    Err(e) => {
                        assert!(!allowed, "{name} refused in a {set:?} URL: {e}");
                        assert_eq!(e, TemplateError::UnknownMacro { name: name.to_string(), allowed: set.names() });
                    }
                }
            }
        }
    }

    #[test]
    fn a_template_uses_exactly_the_macros_it_names_and_keeps_its_source() {
        let src = "https://a.example/{sub2}/lp?c={click_id}&geo={country}";
        let t = Template::parse(src, MacroSet::Redirect).unwrap();
        assert_eq!(t.as_str(), src);
        for (_, m, _, _) in MACROS {
            assert_eq!(t.uses(m), matches!(m, Macro::Sub(2) | Macro::ClickId | Macro::Country), "{m:?}");
        }
        let plain = Template::parse("https://a.example/lp?x=1", MacroSet::Redirect).unwrap();
        assert!(MACROS.iter().all(|&(_, m, _, _)| !plain.uses(m)));
    }

    /// (URL) -> whether it is accepted as a template.
    #[test]
    fn only_absolute_http_urls_with_a_plain_host_are_templates() {
        let check = |src: &str, want: Result<(), TemplateError>| {
            assert_eq!(Template::parse(src, MacroSet::Redirect).map(|_| ()), want, "{src}");
        };
        check("https://a.example", Ok(()));
        check("http://a.example/", Ok(()));
        check("https://a.example?x={sub1}", Ok(()));
        check("https://a.example#{sub1}", Ok(()));
        check("https://a-b_c.example:8080/p", Ok(()));
        check("https://user:pw@a.example/p", Ok(()));
        check("https://[::1]:8080/p", Ok(()));
        check("https://10.0.0.1/p", Ok(()));
        check("https://", Err(TemplateError::NotHttp));
        check("https://:8080/p", Err(TemplateError::NotHttp));
        check("https://user@/p", Err(TemplateError::NotHttp));
        check("https://a%2e.example/p", Err(TemplateError::NotHttp));
        check("https://a!.example/p", Err(TemplateError::NotHttp));
        check("https://a.example/\u{7f}", Err(TemplateError::BadChar));
        check("https://a.example/\tp", Err(TemplateError::BadChar));
        check("https://a.{sub1}/p", Err(TemplateError::MacroInHost));
        check("https://a.example/{sub1}{sub2", Err(TemplateError::Unclosed(24)));
    }

    /// (template, values) -> expansion: literals are kept byte for byte,
    /// adjacent macros and multi-byte characters included.
    #[test]
    fn literals_around_macros_are_kept_exactly() {
        type Case<'a> = (&'a str, &'a [(Macro, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("https://a.example", &[], "https://a.example"),
            ("https://a.example/{sub1}{sub2}", &[(Macro::Sub(1), "x"), (Macro::Sub(2), "y")], "https://a.example/xy"),
            ("https://a.example/é{sub1}ü/", &[(Macro::Sub(1), "é")], "https://a.example/é%C3%A9ü/"),
            ("https://a.example/?a={sub1}&b={sub1}", &[(Macro::Sub(1), "~._-")], "https://a.example/?a=~._-&b=~._-"),
            ("https://a.example/?k={sub1}", &[(Macro::Sub(1), "\u{0}\u{10}/+")], "https://a.example/?k=%00%10%2F%2B"),
        ];
        for (t, vals, want) in cases {
            assert_eq!(&expand(t, vals), want, "{t}");
        }
    }
}
