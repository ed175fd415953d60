//! The web dashboard: its files and headers, sign-in and its session
//! cookie, CSRF on changes made with the cookie, sign-out, the sign-in
//! rate limit, and affiliate sessions scoped as their keys.

use std::collections::BTreeSet;

use crate::harness::*;

fn start(dir: &std::path::Path) -> Server {
    Server::start(dir, &write_config(dir, TWO))
}

/// A signed-in session: its cookie (`name=value`) and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

fn sign_in(s: &Server, token: &str) -> Resp {
    let body = serde_json::json!({ "token": token }).to_string();
    s.request("POST", "/ui/session", &[("Content-Type", "application/json")], Some(&body))
}

fn session(s: &Server, token: &str) -> Session {
    let r = sign_in(s, token);
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    Session { cookie, csrf: r.json()["csrf_token"].as_str().unwrap().to_string() }
}

impl Session {
    fn get(&self, s: &Server, path: &str) -> Resp {
        s.request("GET", path, &[("Cookie", &self.cookie)], None)
    }
    /// A change with the cookie, with these extra headers.
    fn change(&self, s: &Server, method: &str, path: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
        let mut h = vec![("Cookie", self.cookie.as_str()), ("Content-Type", "application/json")];
        h.extend_from_slice(extra);
        s.request(method, path, &h, Some(body))
    }
    fn csrf(&self) -> [(&str, &str); 1] {
        [("X-CSRF-Token", self.csrf.as_str())]
    }
}

#[test]
fn signing_in_sets_an_http_only_strict_session_cookie_that_authenticates_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let r = sign_in(&s, ADMIN);
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap();
    let attrs: BTreeSet<&str> = cookie.split(';').map(str::trim).skip(1).collect();
    for a in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(a), "{a} missing: {cookie}");
    }
    assert!(!attrs.contains("Secure"), "plain HTTP: no Secure: {cookie}");
    let id = cookie.split(';').next().unwrap().strip_prefix("smartlink_session=").unwrap();
    assert_eq!(id.len(), 64, "256 bits, hex");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let j = r.json();
    assert_eq!(j["role"], "admin");
    assert_eq!(j["csrf_token"].as_str().unwrap().len(), 64);
    assert!(!r.body.contains(id), "the answer does not repeat the session id");

    let me = Session { cookie: format!("smartlink_session={id}"), csrf: j["csrf_token"].as_str().unwrap().into() };
    assert_eq!(me.get(&s, "/api/v1/offers").status, 200);
    assert_eq!(me.get(&s, "/ui/session").json()["csrf_token"], j["csrf_token"]);
    // Another session id is no session; no cookie is no access.
    let other = Session { cookie: format!("smartlink_session={}", "0".repeat(64)), csrf: String::new() };
    assert_eq!(other.get(&s, "/api/v1/offers").status, 401);
    assert_eq!(other.get(&s, "/ui/session").status, 204, "not signed in");
    assert_eq!(s.get("/api/v1/offers", &[]).status, 401);
    // A bearer token is unchanged, and wins over a cookie.
    let bearer = s.request("GET", "/api/v1/offers", &[("Authorization", "Bearer nope"), ("Cookie", &me.cookie)], None);
    assert_eq!(bearer.status, 401);
    // Two sign-ins are two sessions.
    assert_ne!(session(&s, ADMIN).cookie, me.cookie);
}

#[test]
fn the_session_cookie_is_secure_behind_tls() {
    use crate::domains::{make_cert, tls_connect, tls_entry, with_tls_listen, LINKS};
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "one", "one.example");
    let yaml = format!("{LINKS}domains:\n{}", tls_entry(dir.path(), "one.example", "one", "all"));
    let cfg = with_tls_listen(&write_config(dir.path(), &yaml), 0);
    let s = Server::start(dir.path(), &cfg);
    let body = serde_json::json!({ "token": ADMIN }).to_string();
    let mut tls = tls_connect(s.tls_addr.as_deref().unwrap(), "one.example").unwrap();
    let r =
        exchange(&mut tls, "one.example", "POST", "/ui/session", &[("Content-Type", "application/json")], Some(&body));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("set-cookie").unwrap().contains("; Secure"), "{:?}", r.header("set-cookie"));
    // The same server over plain HTTP: not Secure.
    let plain = s.request("POST", "/ui/session", &[("Content-Type", "application/json")], Some(&body));
    assert!(!plain.header("set-cookie").unwrap().contains("Secure"));
}

#[test]
fn a_trusted_proxy_saying_https_makes_the_cookie_secure() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), TWO).to_string_lossy().to_string();
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", "server:\n  trust_proxy: true\n", 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), std::path::Path::new(&cfg));
    let body = serde_json::json!({ "token": ADMIN }).to_string();
    let h = [("Content-Type", "application/json"), ("X-Forwarded-Proto", "https")];
    let r = s.request("POST", "/ui/session", &h, Some(&body));
    assert!(r.header("set-cookie").unwrap().ends_with("; Secure"), "{:?}", r.header("set-cookie"));

    // Without trust_proxy the header is the client's claim: ignored.
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let r = s.request("POST", "/ui/session", &h, Some(&body));
    assert!(!r.header("set-cookie").unwrap().contains("Secure"));
}

#[test]
fn wrong_tokens_are_401_and_repeated_failures_from_an_address_are_429() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for i in 0..5 {
        let r = sign_in(&s, &format!("wrong-{i}"));
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
        assert!(r.header("set-cookie").is_none());
    }
    let r = sign_in(&s, "wrong-again");
    assert_eq!(r.status, 429, "{}", r.body);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Blocked means blocked: the right token waits too.
    let r = sign_in(&s, ADMIN);
    assert_eq!(r.status, 429);
    assert!(r.header("set-cookie").is_none());
    // A malformed body is a 400, not a failure.
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for _ in 0..6 {
        let r = s.request("POST", "/ui/session", &[("Content-Type", "application/json")], Some("{\"tok\": 1}"));
        assert_eq!(r.status, 400, "{}", r.body);
    }
    assert_eq!(sign_in(&s, ADMIN).status, 200);
}

#[test]
fn a_change_with_the_cookie_needs_the_csrf_token_and_the_same_origin() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let me = session(&s, ADMIN);
    let patch = r#"{"payout": 3.5}"#;
    let r = me.change(&s, "PATCH", "/api/v1/offers/o1", patch, &[]);
    assert_eq!(r.status, 403, "no token: {}", r.body);
    assert!(r.body.contains("X-CSRF-Token"), "{}", r.body);
    let r = me.change(&s, "PATCH", "/api/v1/offers/o1", patch, &[("X-CSRF-Token", &"a".repeat(64))]);
    assert_eq!(r.status, 403, "a wrong token");
    let other = session(&s, ADMIN);
    let r = me.change(&s, "PATCH", "/api/v1/offers/o1", patch, &other.csrf());
    assert_eq!(r.status, 403, "another session's token");
    let evil = [("X-CSRF-Token", me.csrf.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(me.change(&s, "PATCH", "/api/v1/offers/o1", patch, &evil).status, 403, "another origin");
    let cross = [("X-CSRF-Token", me.csrf.as_str()), ("Sec-Fetch-Site", "cross-site")];
    assert_eq!(me.change(&s, "PATCH", "/api/v1/offers/o1", patch, &cross).status, 403, "a cross-site request");
    assert_eq!(s.admin("GET", "/api/v1/offers/o1", None).json()["payout"], 2.0, "nothing changed");

    let same = format!("http://{}", s.addr);
    let ok = [("X-CSRF-Token", me.csrf.as_str()), ("Origin", same.as_str()), ("Sec-Fetch-Site", "same-origin")];
    let r = me.change(&s, "PATCH", "/api/v1/offers/o1", patch, &ok);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.admin("GET", "/api/v1/offers/o1", None).json()["payout"], 3.5);
    // The API's validation errors come back as they do for a token.
    let r = me.change(&s, "PATCH", "/api/v1/offers/o1", r#"{"payout": -1}"#, &me.csrf());
    assert_eq!(r.status, 422, "{}", r.body);
    // Reads need no CSRF token.
    assert_eq!(me.get(&s, "/api/v1/report").status, 200);
    // A sign-in from another origin is refused too.
    let body = serde_json::json!({ "token": ADMIN }).to_string();
    let h = [("Content-Type", "application/json"), ("Origin", "http://evil.example")];
    assert_eq!(s.request("POST", "/ui/session", &h, Some(&body)).status, 403);
}

#[test]
fn signing_out_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let me = session(&s, ADMIN);
    let r = me.change(&s, "DELETE", "/ui/session", "", &[]);
    assert_eq!(r.status, 403, "sign-out needs the CSRF token: {}", r.body);
    assert_eq!(me.get(&s, "/api/v1/offers").status, 200, "still signed in");
    let r = me.change(&s, "DELETE", "/ui/session", "", &me.csrf());
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(me.get(&s, "/api/v1/offers").status, 401);
    assert_eq!(me.get(&s, "/ui/session").status, 204);
    assert_eq!(me.change(&s, "PATCH", "/api/v1/offers/o1", r#"{"payout": 9}"#, &me.csrf()).status, 401);
}

#[test]
fn an_affiliate_session_sees_only_what_its_key_sees_and_ends_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for (slug, sub) in [("s1", "mine"), ("s2", "theirs-private"), ("s2", "theirs-2")] {
        let r = s.get(&format!("/s/{slug}?sub1={sub}"), &[("User-Agent", IPHONE), ("Accept", "*/*")]);
        assert_eq!(r.status, 302);
    }
    s.wait_stored(3);
    let one = session(&s, "key-one");
    let who = one.get(&s, "/ui/session").json();
    assert_eq!((who["role"].as_str(), who["affiliate"].as_str()), (Some("affiliate"), Some("aff1")));
    let r = one.get(&s, "/api/v1/report?affiliate=aff2&group_by=smartlink,sub1").json();
    assert_eq!(r["totals"]["clicks"], 1, "{r}");
    assert_eq!(r["rows"][0]["smartlink"], "s1");
    assert!(!r.to_string().contains("theirs-private"));
    let csv = one.get(&s, "/api/v1/report?group_by=sub1&format=csv").body;
    assert!(csv.contains("mine") && !csv.contains("theirs"), "{csv}");
    assert_eq!(one.get(&s, "/api/v1/smartlinks/s2").status, 404);
    assert_eq!(one.get(&s, "/api/v1/smartlinks").json().as_array().unwrap().len(), 1);
    for path in ["/api/v1/offers", "/api/v1/affiliates", "/api/v1/alerts", "/api/v1/history"] {
        assert_eq!(one.get(&s, path).status, 403, "{path}");
    }
    // Read-only, CSRF token or not.
    let r = one.change(&s, "PATCH", "/api/v1/smartlinks/s1", r#"{"fallback_url": "https://x.example/"}"#, &one.csrf());
    assert_eq!(r.status, 403);
    let two = session(&s, "key-two");
    assert_eq!(two.get(&s, "/api/v1/report").json()["totals"]["clicks"], 2);

    // A key changed through the admin API ends the sessions signed in with it.
    let r = s.admin("PATCH", "/api/v1/affiliates/aff1", Some(r#"{"api_key": "key-one-new"}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(one.get(&s, "/api/v1/report").status, 401);
    assert_eq!(one.get(&s, "/ui/session").status, 204);
    assert_eq!(two.get(&s, "/api/v1/report").status, 200);
}

/// The files a page loads: `src` and `href` of `/ui/` files in the page,
/// and every module a script imports, transitively.
fn files_of(s: &Server) -> BTreeSet<String> {
    let page = s.get("/ui/", &[]).body;
    let mut todo: Vec<String> = page
        .split(['"', '\''])
        .filter(|p| p.starts_with("/ui/") && p.len() > 4)
        .map(|p| p.trim_start_matches("/ui/").to_string())
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) || !f.ends_with(".js") {
            continue;
        }
        let js = s.get(&format!("/ui/{f}"), &[]).body;
        for part in js.split("from '").skip(1) {
            let module = part.split('\'').next().unwrap();
            todo.push(module.trim_start_matches("./").to_string());
        }
    }
    seen
}

#[test]
fn the_dashboard_and_its_files_are_served_with_their_types_and_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let files = files_of(&s);
    for f in [
        "app.js",
        "style.css",
        "favicon.svg",
        "overview.js",
        "breakdowns.js",
        "chart.js",
        "api.js",
        "traffic.js",
        "audit.js",
        "explain.js",
        "coverage.js",
        "quality.js",
        "logs.js",
        "history.js",
        "defs.js",
        "events.js",
    ] {
        assert!(files.contains(f), "{f} is not loaded by the page: {files:?}");
    }
    let mut pages = vec![("/".to_string(), "text/html")];
    pages.push(("/ui/".into(), "text/html"));
    for f in &files {
        let ty = match f.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "svg" => "image/svg+xml",
            other => panic!("unexpected file type {other}"),
        };
        pages.push((format!("/ui/{f}"), ty));
    }
    for (path, ty) in &pages {
        let r = s.get(path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty), "{path}: {:?}", r.header("content-type"));
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert!(r.header("cache-control").is_some(), "{path}");
        // Nothing is loaded from anywhere else (the SVG namespace is a name).
        let body = r.body.replace("http://www.w3.org/2000/svg", "");
        for scheme in ["http://", "https://", "//cdn", "@import"] {
            assert!(!body.contains(scheme), "{path} names {scheme}");
        }
        if ty == &"text/html" {
            assert!(!r.body.contains("<script>") && !r.body.contains(" onload="), "{path}: an inline script");
        }
    }
    // Unchanged files are not sent again.
    let r = s.get("/ui/app.js", &[]);
    let etag = r.header("etag").unwrap().to_string();
    let again = s.get("/ui/app.js", &[("If-None-Match", &etag)]);
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    let none = s.get("/ui/nothing.js", &[]);
    assert_eq!(none.status, 404);
    assert_eq!(none.header("x-content-type-options"), Some("nosniff"));
    // The session endpoints are never cached and carry the headers too.
    let r = s.get("/ui/session", &[]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
}
