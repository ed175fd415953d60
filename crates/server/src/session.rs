//! Dashboard sessions: who signed in (the admin token or an affiliate's
//! API key), the session's CSRF token, and the sign-in failures counted
//! per client address.
//!
//! A session id is 256 bits from the operating system's RNG, sent to the
//! browser as an `HttpOnly`, `SameSite=Strict` cookie and never stored:
//! the table is keyed by its SHA-256, so a lookup's timing says nothing
//! about any stored id. Sessions live in memory only (a restart signs
//! everyone out) and expire [`SESSION_TTL_MS`] after sign-in.
//!
//! A session remembers the credential's kind, not the credential: an
//! affiliate session keeps the hash of its key (as the definitions store
//! it), and every request looks the hash up again, so a key removed or
//! changed through the admin API ends the sessions signed in with it.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderValue};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "smartlink_session";
/// The header that carries a session's CSRF token on every request that
/// changes something.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after sign-in (12 hours).
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;
/// At most this many sessions; signing in past it ends the one closest to
/// expiring.
const MAX_SESSIONS: usize = 10_000;
/// Failed sign-ins an address may make in [`FAILURE_WINDOW_MS`] before
/// it is answered 429 until the window ends.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW_MS: i64 = 60_000;
/// Addresses tracked at most (the oldest windows are forgotten first).
const MAX_TRACKED: usize = 10_000;

/// What a session was signed in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The admin token.
    Admin,
    /// An affiliate key, by its stored hash (`defs::hashed_api_key`).
    Affiliate { hashed_key: String },
}

#[derive(Clone, Debug)]
pub struct Session {
    pub credential: Credential,
    /// Sent back in [`CSRF_HEADER`] by every change made with this session.
    pub csrf: String,
    pub expires_ms: i64,
}

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    since_ms: i64,
    count: u32,
}

/// 32 bytes from the OS RNG, hex-encoded.
fn random_hex() -> String {
    use rand::TryRngCore as _;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut b).expect("the operating system's random number generator failed");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Starts a session; returns its id (for the cookie) and the session.
    pub fn create(&self, credential: Credential, now_ms: i64) -> (String, Session) {
        let id = random_hex();
        let session = Session { credential, csrf: random_hex(), expires_ms: now_ms + SESSION_TTL_MS };
        let mut live = self.live.lock();
        live.retain(|_, s| s.expires_ms > now_ms);
        if live.len() >= MAX_SESSIONS {
            if let Some(k) = live.iter().min_by_key(|(_, s)| s.expires_ms).map(|(k, _)| *k) {
                live.remove(&k);
            }
        }
        live.insert(key(&id), session.clone());
        (id, session)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<Session> {
        let mut live = self.live.lock();
        let k = key(id);
        match live.get(&k) {
            Some(s) if s.expires_ms > now_ms => Some(s.clone()),
            Some(_) => {
                live.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.live.lock().remove(&key(id));
    }

    /// `Some(seconds)` to wait when `ip` has failed too often lately.
    pub fn blocked(&self, ip: Option<IpAddr>, now_ms: i64) -> Option<u64> {
        let f = *self.failures.lock().get(&ip?)?;
        let ends = f.since_ms + FAILURE_WINDOW_MS;
        (f.count >= MAX_FAILURES && ends > now_ms).then(|| ((ends - now_ms + 999) / 1000) as u64)
    }

    /// Counts a failed sign-in from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>, now_ms: i64) {
        let Some(ip) = ip else { return };
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&ip) {
            failures.retain(|_, f| f.since_ms + FAILURE_WINDOW_MS > now_ms);
            if failures.len() >= MAX_TRACKED {
                if let Some(oldest) = failures.iter().min_by_key(|(_, f)| f.since_ms).map(|(k, _)| *k) {
                    failures.remove(&oldest);
                }
            }
        }
        let f = failures.entry(ip).or_insert(Failures { since_ms: now_ms, count: 0 });
        if f.since_ms + FAILURE_WINDOW_MS <= now_ms {
            *f = Failures { since_ms: now_ms, count: 0 };
        }
        f.count += 1;
    }

    /// A successful sign-in clears the address's failures.
    pub fn succeeded(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.failures.lock().remove(&ip);
        }
    }
}

/// The session id the request's `Cookie` headers carry, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for a new session (`None`: one that ends it).
pub fn set_cookie(id: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = match id {
        Some(id) => {
            format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", SESSION_TTL_MS / 1000)
        }
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&v).expect("a cookie of hex digits is a valid header value")
}

/// Whether a request that changes something comes from a page of this
/// server: `Sec-Fetch-Site`, when the browser sends it, must be
/// `same-origin` (or `none`: typed by the user), and `Origin`, when sent,
/// must name the host the request was sent to. (`SameSite=Strict` keeps
/// the cookie off cross-site requests already; this is the second line.)
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(site) = get("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or("");
        let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
        if authority.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_session_is_found_by_its_id_until_it_expires() {
        let s = Sessions::default();
        let (id, session) = s.create(Credential::Admin, 1_000);
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert!(s.get(&id, 1_000 + SESSION_TTL_MS - 1).is_some());
        assert!(s.get("0".repeat(64).as_str(), 1_000).is_none());
        assert!(s.get(&id, 1_000 + SESSION_TTL_MS).is_none());
        assert!(s.get(&id, 1_000).is_none(), "an expired session is gone");
        let (id, _) = s.create(Credential::Admin, 1_000);
        s.remove(&id);
        assert!(s.get(&id, 1_000).is_none());
    }

    #[test]
    fn failures_past_the_limit_block_an_address_until_its_window_ends() {
        let s = Sessions::default();
        let ip: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let other: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
        for i in 0..MAX_FAILURES {
            assert_eq!(s.blocked(ip, 10_000), None, "after {i} failures");
            s.failed(ip, 10_000);
        }
        assert_eq!(s.blocked(ip, 10_000), Some(60));
        assert_eq!(s.blocked(ip, 10_000 + FAILURE_WINDOW_MS - 1_500), Some(2));
        assert_eq!(s.blocked(other, 10_000), None);
        assert_eq!(s.blocked(ip, 10_000 + FAILURE_WINDOW_MS), None);
        s.failed(ip, 10_000 + FAILURE_WINDOW_MS);
        assert_eq!(s.blocked(ip, 10_000 + FAILURE_WINDOW_MS), None, "a new window starts from one failure");
        s.succeeded(ip);
        assert_eq!(s.blocked(ip, 10_000), None);
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        assert_eq!(cookie(&headers(&[("cookie", "a=1; smartlink_session=abc; b=2")])), Some("abc"));
        assert_eq!(cookie(&headers(&[("cookie", "a=1"), ("cookie", "smartlink_session=x")])), Some("x"));
        assert_eq!(cookie(&headers(&[("cookie", "xsmartlink_session=abc")])), None);
        assert_eq!(cookie(&headers(&[("cookie", "smartlink_session=")])), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let v = set_cookie(Some("ab"), false);
        let v = v.to_str().unwrap();
        assert!(v.starts_with("smartlink_session=ab;") && v.contains("HttpOnly") && v.contains("SameSite=Strict"));
        assert!(v.contains("Path=/") && !v.contains("Secure"), "{v}");
        assert!(set_cookie(Some("ab"), true).to_str().unwrap().ends_with("; Secure"));
        assert!(set_cookie(None, false).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn only_same_origin_requests_pass() {
        let ok = [
            vec![("host", "127.0.0.1:8080")],
            vec![("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "same-origin")],
            vec![("host", "Dash.Example"), ("origin", "https://dash.example")],
        ];
        for h in ok {
            assert!(same_origin(&headers(&h)), "{h:?}");
        }
        let refused = [
            vec![("host", "127.0.0.1:8080"), ("origin", "http://evil.example")],
            vec![("host", "127.0.0.1:8080"), ("origin", "null")],
            vec![("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")],
            vec![("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")],
            vec![("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:9090")],
        ];
        for h in refused {
            assert!(!same_origin(&headers(&h)), "{h:?}");
        }
    }
}
