//! Custom tracking domains (`domains:` in the configuration file): which
//! links each hostname serves, what `/` and unknown paths get there, and
//! what a request for a host that no entry names gets. Pure: the table is
//! built from the specs and the catalog, and looked up per request by the
//! `Host` the client sent.
//!
//! With no `domains:` every host is served every link, as before the table
//! existed ([`Lookup::Open`]). With entries, a request's host is lowercased,
//! its port and a trailing dot stripped, and looked up exactly; an
//! internationalised name matches in the IDNA (punycode, `xn--`) form that
//! browsers send, which is also the only form the configuration accepts.
//! A host no entry names falls to the `"*"` entry when there is one, else
//! gets a clear 404 ([`Lookup::Unknown`]).
//!
//! Only the click paths (`/s/{slug}`, `/o/{offer}`), `/` and unknown paths
//! depend on the host; postbacks, the pixel, the admin API, `/metrics`,
//! `/healthz` and `/readyz` answer on every host (advertisers and scrapers
//! are given whatever name or address reaches the server).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// One `domains:` entry as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// A hostname in lowercase ASCII (IDNA names in their `xn--` form), an
    /// IPv4 address, or `"*"`: every host no other entry names.
    pub host: String,
    /// `all`, or the links served here: smartlink slugs and `direct:{offer}`.
    pub links: LinksSpec,
    /// What `/` and unknown paths on this host get: a click on this link
    /// (slug or `direct:{offer}`), query string kept. Without it, a 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_link: Option<String>,
    /// Certificate chain and private key (PEM files) served for this host
    /// on `server.tls_listen`; the `"*"` entry's is served to clients that
    /// send no name or a name no entry has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
}

/// `links:` — `all` or a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LinksSpec {
    All(String),
    List(Vec<String>),
}

/// `tls: {cert, key}`: PEM files, read at start-up and again when they
/// change or on SIGHUP.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (certbot's `fullchain.pem`).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The host of the catch-all entry.
pub const ANY_HOST: &str = "*";

/// A link a domain names: a smartlink by slug or an offer's direct link.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinkName {
    Smartlink(String),
    Direct(String),
}

impl LinkName {
    /// `slug` or `direct:{offer}`, as reports name links.
    pub fn parse(s: &str) -> LinkName {
        match s.strip_prefix("direct:") {
            Some(offer) => LinkName::Direct(offer.to_string()),
            None => LinkName::Smartlink(s.to_string()),
        }
    }

    /// The click path that serves it.
    pub fn path(&self) -> String {
        match self {
            LinkName::Smartlink(s) => format!("/s/{s}"),
            LinkName::Direct(o) => format!("/o/{o}"),
        }
    }
}

/// One entry, ready for lookups.
#[derive(Clone, Debug, PartialEq)]
pub struct Domain {
    pub host: String,
    /// `None`: every link.
    smartlinks: Option<HashSet<String>>,
    offers: Option<HashSet<String>>,
    /// The click path of the default link (`/s/{slug}` or `/o/{offer}`).
    pub default_path: Option<String>,
    pub tls: Option<TlsFiles>,
}

impl Domain {
    /// Whether this host serves the click path `path` (`/s/{slug}` or
    /// `/o/{offer}`; anything else is not a link).
    pub fn serves(&self, path: &str) -> bool {
        if let Some(slug) = path.strip_prefix("/s/") {
            self.smartlinks.as_ref().is_none_or(|s| s.contains(slug))
        } else if let Some(offer) = path.strip_prefix("/o/") {
            self.offers.as_ref().is_none_or(|s| s.contains(offer))
        } else {
            false
        }
    }
}

/// Every entry, by host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Domains {
    entries: Vec<Domain>,
    by_host: HashMap<String, usize>,
    any: Option<usize>,
}

/// What a request's host is, for the click paths.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    /// No `domains:`: every host serves every link.
    Open,
    /// The entry for this host (or the `"*"` entry).
    Domain(&'a Domain),
    /// A host no entry names, and no `"*"` entry.
    Unknown,
}

impl Domains {
    /// The table of `specs`, checked against the links that exist. Every
    /// problem is reported, each with its key path (`domains[1].links[0]`).
    pub fn build(
        specs: &[DomainSpec],
        smartlink_exists: impl Fn(&str) -> bool,
        offer_exists: impl Fn(&str) -> bool,
    ) -> Result<Domains, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut err = |path: String, message: String| errs.push(FieldError { path, message });
        let exists = |name: &LinkName| match name {
            LinkName::Smartlink(s) => smartlink_exists(s),
            LinkName::Direct(o) => offer_exists(o),
        };
        let mut out = Domains::default();
        for (i, spec) in specs.iter().enumerate() {
            let p = format!("domains[{i}]");
            let host = match check_host(&spec.host) {
                Ok(h) => h,
                Err(m) => {
                    err(format!("{p}.host"), m);
                    continue;
                }
            };
            let (mut smartlinks, mut offers) = (None, None);
            match &spec.links {
                LinksSpec::All(a) if a == "all" => {}
                LinksSpec::All(a) => err(format!("{p}.links"), format!("expected all or a list of links, got {a:?}")),
                LinksSpec::List(list) => {
                    let (mut s, mut o) = (HashSet::new(), HashSet::new());
                    for (j, name) in list.iter().enumerate() {
                        let link = LinkName::parse(name);
                        if !exists(&link) {
                            err(format!("{p}.links[{j}]"), unknown_link(name));
                        }
                        match link {
                            LinkName::Smartlink(slug) => s.insert(slug),
                            LinkName::Direct(offer) => o.insert(offer),
                        };
                    }
                    (smartlinks, offers) = (Some(s), Some(o));
                }
            }
            let default_path = spec.default_link.as_deref().map(|name| {
                let link = LinkName::parse(name);
                if !exists(&link) {
                    err(format!("{p}.default_link"), unknown_link(name));
                }
                link.path()
            });
            if host == ANY_HOST {
                if out.any.is_some() {
                    err(format!("{p}.host"), "duplicate host \"*\"".into());
                    continue;
                }
                out.any = Some(out.entries.len());
            } else if out.by_host.insert(host.clone(), out.entries.len()).is_some() {
                err(format!("{p}.host"), format!("duplicate host {host:?} (hosts are compared case-insensitively)"));
                continue;
            }
            out.entries.push(Domain { host, smartlinks, offers, default_path, tls: spec.tls.clone() });
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Domain] {
        &self.entries
    }

    /// The entry for a request's `Host` value (`host[:port]`, any case);
    /// `None` when the request named no host (HTTP/1.0).
    pub fn lookup(&self, host: Option<&str>) -> Lookup<'_> {
        if self.entries.is_empty() {
            return Lookup::Open;
        }
        let found = host.map(normalize).and_then(|h| self.by_host.get(h.as_ref()).copied()).or(self.any);
        match found {
            Some(i) => Lookup::Domain(&self.entries[i]),
            None => Lookup::Unknown,
        }
    }
}

fn unknown_link(name: &str) -> String {
    match name.strip_prefix("direct:") {
        Some(offer) => format!("unknown offer {offer:?} (direct:{{offer}} names an offer's direct link)"),
        None => format!("unknown smartlink {name:?} (expected a smartlink slug or direct:{{offer}})"),
    }
}

/// A `Host` value as looked up: without its port or a trailing dot, in
/// lowercase (borrowed when it already is).
pub fn normalize(host: &str) -> Cow<'_, str> {
    let h = host.trim_ascii();
    let h = if h.starts_with('[') {
        // An IPv6 literal keeps its brackets: `[::1]:8080` -> `[::1]`.
        h.find(']').map_or(h, |end| &h[..=end])
    } else {
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// A configured host, checked and normalised: lowercase, no trailing dot.
fn check_host(host: &str) -> Result<String, String> {
    if host == ANY_HOST {
        return Ok(host.to_string());
    }
    if !host.is_ascii() {
        return Err(format!(
            "{host:?} is not ASCII: write an internationalised name in its IDNA form as browsers send it \
             (e.g. xn--bcher-kva.example for bücher.example)"
        ));
    }
    let h = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if h.contains(':') || h.contains('[') {
        return Err(format!("{host:?}: expected a hostname without a port (every port of the host is served)"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        return Err(format!(
            "expected a hostname such as track.example.com (letters, digits and hyphens in dot-separated labels) \
             or \"*\", got {host:?}"
        ));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &str, links: &[&str], default: Option<&str>) -> DomainSpec {
        DomainSpec {
            host: host.into(),
            links: if links == ["all"] {
                LinksSpec::All("all".into())
            } else {
                LinksSpec::List(links.iter().map(|s| s.to_string()).collect())
            },
            default_link: default.map(Into::into),
            tls: None,
        }
    }

    fn build(specs: &[DomainSpec]) -> Result<Domains, Vec<FieldError>> {
        Domains::build(specs, |s| ["a", "b", "c"].contains(&s), |o| o == "offer-1")
    }

    #[test]
    fn a_host_is_matched_without_its_port_case_or_trailing_dot() {
        for (raw, want) in [
            ("track.example.com", "track.example.com"),
            ("Track.Example.COM:8443", "track.example.com"),
            ("track.example.com.", "track.example.com"),
            ("track.example.com.:80", "track.example.com"),
            ("[2001:DB8::1]:443", "[2001:db8::1]"),
            ("203.0.113.9:8080", "203.0.113.9"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("", ""),
        ] {
            assert_eq!(normalize(raw), want, "{raw:?}");
        }
        assert!(matches!(normalize("already.lower"), Cow::Borrowed(_)), "no allocation on the usual case");
    }

    #[test]
    fn each_host_serves_its_own_links_and_an_unknown_host_gets_the_catch_all_or_nothing() {
        let d = build(&[spec("one.example", &["a", "direct:offer-1"], Some("b")), spec("two.example", &["all"], None)])
            .unwrap();
        let Lookup::Domain(one) = d.lookup(Some("ONE.example:443")) else { panic!() };
        assert!(one.serves("/s/a") && one.serves("/o/offer-1"));
        assert!(!one.serves("/s/b") && !one.serves("/s/c") && !one.serves("/o/offer-2") && !one.serves("/x"));
        assert_eq!(one.default_path.as_deref(), Some("/s/b"));
        let Lookup::Domain(two) = d.lookup(Some("two.example")) else { panic!() };
        assert!(two.serves("/s/c") && two.serves("/o/anything"));
        assert_eq!(d.lookup(Some("three.example")), Lookup::Unknown);
        assert_eq!(d.lookup(None), Lookup::Unknown, "HTTP/1.0 without Host");

        let with_any = build(&[spec("one.example", &["a"], None), spec("*", &[], Some("direct:offer-1"))]).unwrap();
        let Lookup::Domain(any) = with_any.lookup(Some("three.example")) else { panic!() };
        assert_eq!(any.host, "*");
        assert!(!any.serves("/s/a"));
        assert_eq!(any.default_path.as_deref(), Some("/o/offer-1"));
        assert_eq!(Domains::default().lookup(Some("whatever")), Lookup::Open);
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let errs = build(&[
            spec("one.example", &["a", "nope", "direct:gone"], Some("missing")),
            spec("ONE.example.", &["all"], None),
            spec("bad host", &["all"], None),
            spec("bücher.example", &["all"], None),
            spec("one.example:8080", &["all"], None),
            DomainSpec { links: LinksSpec::All("every".into()), ..spec("two.example", &[], None) },
            spec("*", &[], None),
            spec("*", &[], None),
        ])
        .unwrap_err();
        let got: Vec<(&str, &str)> = errs.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
        let want = [
            ("domains[0].links[1]", "unknown smartlink \"nope\""),
            ("domains[0].links[2]", "unknown offer \"gone\""),
            ("domains[0].default_link", "unknown smartlink \"missing\""),
            ("domains[1].host", "duplicate host \"one.example\""),
            ("domains[2].host", "expected a hostname"),
            ("domains[3].host", "\"bücher.example\" is not ASCII"),
            ("domains[4].host", "\"one.example:8080\": expected a hostname without a port"),
            ("domains[5].links", "expected all or a list of links, got \"every\""),
            ("domains[7].host", "duplicate host \"*\""),
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for ((path, msg), (wpath, wmsg)) in got.iter().zip(want) {
            assert_eq!(*path, wpath);
            assert!(msg.starts_with(wmsg), "{path}: {msg}");
        }
    }
}
