//! The HTTP layer as a client sees it: clicks on the fast path, everything
//! else on hyper, on the same connection, with keep-alive, pipelining,
//! `HEAD`, HTTP/1.0 and bad input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;

const POOL: &str = r#"
advertisers: [{id: adv}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/lp?cid={click_id}&s1={sub1}", payout: 1.0}
smartlinks:
  - {slug: main, offers: [o1], fallback_url: "https://fallback.example/", quality: {bot: allow, suspect: allow, preview: allow}}
"#;

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), POOL);
    let s = Server::start(dir.path(), &cfg);
    (dir, s)
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Reads exactly `n` responses (heads plus `content-length` bodies; no body
/// for answers to `HEAD`, flagged in `head`).
fn read_responses(c: &mut TcpStream, head: &[bool]) -> Vec<Resp> {
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut at = 0;
    while out.len() < head.len() {
        if let Some(end) = find(&raw[at..], b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&raw[at..at + end]).to_string();
            let mut lines = text.lines();
            let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
            let headers: Vec<(String, String)> =
                lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let len: usize = if head[out.len()] {
                0
            } else {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap())
            };
            let body_at = at + end + 4;
            if raw.len() >= body_at + len {
                let body = String::from_utf8_lossy(&raw[body_at..body_at + len]).to_string();
                out.push(Resp { status, headers, body });
                at = body_at + len;
                continue;
            }
        }
        let n = c.read(&mut buf).expect("response");
        assert!(
            n > 0,
            "connection closed after {} of {} responses: {:?}",
            out.len(),
            head.len(),
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
    assert_eq!(at, raw.len(), "no bytes beyond the expected responses: {:?}", String::from_utf8_lossy(&raw[at..]));
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request on `c` and reads its answer.
fn exchange(c: &mut TcpStream, raw: &[u8]) -> Resp {
    c.write_all(raw).unwrap();
    read_responses(c, &[raw.starts_with(b"HEAD ")]).pop().unwrap()
}

/// Metrics of `s`, read over HTTP: each read is itself a request the fast
/// path hands to hyper, so hand-offs are counted without the reads.
struct Metrics<'a> {
    s: &'a Server,
    reads: f64,
}

impl Metrics<'_> {
    fn get(&mut self, name: &str) -> f64 {
        self.reads += 1.0;
        self.s.metric(name)
    }

    /// Connections the click fast path handed to hyper so far, not
    /// counting these reads.
    fn handoffs(&mut self) -> f64 {
        self.get("smartlink_http_handoffs_total") - self.reads
    }
}

fn metrics(s: &Server) -> Metrics<'_> {
    Metrics { s, reads: 0.0 }
}

fn closed(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(c.read(&mut b), Ok(0))
}

#[test]
fn pipelined_clicks_on_one_connection_are_answered_in_order_and_all_recorded() {
    let (_d, s) = start();
    let mut m = metrics(&s);
    let mut c = connect(&s);
    let req = |sub: &str| format!("GET /s/main?sub1={sub} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n");
    c.write_all(format!("{}{}{}", req("a"), req("b"), req("c")).as_bytes()).unwrap();
    let r = read_responses(&mut c, &[false, false, false]);
    for (resp, sub) in r.iter().zip(["a", "b", "c"]) {
        assert_eq!(resp.status, 302);
        let loc = resp.header("location").unwrap();
        assert!(loc.starts_with("https://o1.example/lp?cid=") && loc.ends_with(&format!("&s1={sub}")), "{loc}");
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(resp.header("content-length"), Some("0"));
        assert!(resp.header("date").is_some_and(|d| d.ends_with(" GMT")), "{:?}", resp.headers);
    }
    // The connection stays open for more.
    assert_eq!(exchange(&mut c, req("d").as_bytes()).status, 302);
    assert_eq!(m.handoffs(), 0.0, "all on the fast path");
    s.wait_stored(4);
    let subs: Vec<String> = stored_clicks(&s.db()).into_iter().map(|r| r.subs[0].clone()).collect();
    assert_eq!(subs.len(), 4);
    for sub in ["a", "b", "c", "d"] {
        assert!(subs.iter().any(|x| x == sub), "{sub} in {subs:?}");
    }
}

#[test]
fn other_requests_on_a_click_connection_are_served_by_the_full_stack() {
    let (_d, s) = start();
    let mut m = metrics(&s);
    let mut c = connect(&s);
    // A click, then health and an authenticated admin call, then a click
    // again, all on one keep-alive connection.
    assert_eq!(exchange(&mut c, b"GET /s/main HTTP/1.1\r\nHost: x\r\n\r\n").status, 302);
    assert_eq!(m.handoffs(), 0.0, "the click took the fast path");
    let admin = format!("GET /api/v1/offers/o1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n");
    c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n{admin}").as_bytes()).unwrap();
    let r = read_responses(&mut c, &[false, false]);
    assert_eq!((r[0].status, r[0].body.as_str()), (200, "ok\n"));
    assert_eq!(r[1].status, 200, "{}", r[1].body);
    assert_eq!(r[1].json()["id"], "o1");
    assert_eq!(m.handoffs(), 1.0, "the connection went to hyper once");
    let r = exchange(&mut c, b"GET /s/main?sub1=after HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().ends_with("&s1=after"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

#[test]
fn a_click_with_a_body_or_an_unusual_method_goes_to_the_full_stack() {
    let (_d, s) = start();
    let mut m = metrics(&s);
    let mut c = connect(&s);
    let r = exchange(&mut c, b"GET /s/main?sub1=body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().ends_with("&s1=body"));
    assert_eq!(m.handoffs(), 1.0);
    assert_eq!(exchange(&mut c, b"POST /s/main HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").status, 405);
}

#[test]
fn head_gets_the_redirect_without_a_body_and_unknown_links_get_the_404_page() {
    let (_d, s) = start();
    let mut m = metrics(&s);
    let mut c = connect(&s);
    c.write_all(b"HEAD /s/main HTTP/1.1\r\nHost: x\r\n\r\nHEAD /s/nope HTTP/1.1\r\nHost: x\r\n\r\nGET /s/nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_responses(&mut c, &[true, true, false]);
    assert_eq!(r[0].status, 302);
    assert!(r[0].header("location").unwrap().starts_with("https://o1.example/"));
    assert_eq!(r[1].status, 404);
    assert_eq!(r[1].header("content-length"), r[2].header("content-length"), "HEAD announces the GET's length");
    assert_eq!(r[2].status, 404);
    assert!(r[2].body.contains("This link does not exist."), "{}", r[2].body);
    assert_eq!(r[2].header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(m.get("smartlink_clicks_total{outcome=\"unknown_slug\"}"), 2.0);
    assert_eq!(m.handoffs(), 0.0, "all on the fast path");
}

#[test]
fn connection_close_and_http_1_0_are_honoured() {
    let (_d, s) = start();
    let mut m = metrics(&s);
    let mut c = connect(&s);
    let r = exchange(&mut c, b"GET /s/main HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((r.status, r.header("connection")), (302, Some("close")));
    assert!(closed(&mut c), "closed after the answer");

    let mut c = connect(&s);
    assert_eq!(exchange(&mut c, b"GET /s/main HTTP/1.0\r\n\r\n").status, 302);
    assert!(closed(&mut c), "HTTP/1.0 closes unless asked to keep alive");

    let mut c = connect(&s);
    let keep = b"GET /s/main HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    assert_eq!(exchange(&mut c, keep).header("connection"), Some("keep-alive"));
    assert_eq!(exchange(&mut c, keep).status, 302);
    assert_eq!(m.handoffs(), 0.0, "all on the fast path");
}

#[test]
fn malformed_and_oversized_requests_get_clear_errors_or_still_work() {
    let (_d, s) = start();
    let mut m = metrics(&s);
    let mut c = connect(&s);
    assert_eq!(
        exchange(&mut c, b"GET /s/main HTTP/1.1\r\nHost x\r\n\r\n").status,
        400,
        "a header line without a colon"
    );

    // A request target with characters outside RFC 3986 is left to hyper.
    let mut c = connect(&s);
    assert_eq!(exchange(&mut c, b"GET /s/main?sub1=<x> HTTP/1.1\r\nHost: x\r\n\r\n").status, 400);

    // A head larger than the fast path's buffer is still served.
    let mut c = connect(&s);
    let big = "y".repeat(12_000);
    let r = exchange(&mut c, format!("GET /s/main?sub1=big HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().ends_with("&s1=big"));
    assert_eq!(m.handoffs(), 3.0, "each of the three went to hyper");

    // A request split across writes is put together.
    let mut c = connect(&s);
    c.write_all(b"GET /s/main?sub1=sp").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.write_all(b"lit HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let r = exchange(&mut c, b"\r\n");
    assert!(r.header("location").unwrap().ends_with("&s1=split"));
    assert_eq!(m.handoffs(), 3.0, "on the fast path");
}

#[test]
fn the_first_of_repeated_headers_is_the_one_read() {
    let (_d, s) = start();
    let mut c = connect(&s);
    let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    let req = format!("GET /s/main HTTP/1.1\r\nHost: x\r\nUser-Agent: {ua}\r\nUser-Agent: curl/8\r\n\r\n");
    assert_eq!(exchange(&mut c, req.as_bytes()).status, 302);
    s.wait_stored(1);
    let row = stored_clicks(&s.db()).pop().unwrap();
    assert_eq!(row.user_agent, ua);
}

#[test]
fn stopping_the_server_closes_idle_keep_alive_connections() {
    let (_d, s) = start();
    let mut c = connect(&s);
    assert_eq!(exchange(&mut c, b"GET /s/main HTTP/1.1\r\nHost: x\r\n\r\n").status, 302);
    let mut h = connect(&s);
    assert_eq!(exchange(&mut h, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
    // Both connections stay open: a server that waited for them would
    // never exit.
    assert!(s.stop_within(Duration::from_secs(10)), "the server stopped with idle connections open");
    assert!(closed(&mut c));
    assert!(closed(&mut h));
}

#[test]
fn a_template_with_literal_non_ascii_bytes_still_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        r#"
advertisers: [{id: adv}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/café?cid={click_id}", payout: 1.0}
smartlinks:
  - {slug: main, offers: [o1], fallback_url: "https://fallback.example/", quality: {bot: allow, suspect: allow, preview: allow}}
"#,
    );
    let s = Server::start(dir.path(), &cfg);
    let r = s.get("/s/main", &[]);
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(r.header("location").unwrap().starts_with("https://o1.example/café?cid="), "{:?}", r.headers);
}

#[test]
fn a_missing_repeated_or_invalid_host_is_a_400_on_both_paths() {
    let (_d, s) = start();
    // (request head, expected status): clicks (the fast path) and an API
    // path (hyper) alike, as RFC 9112 section 3.2 requires.
    let cases: &[(&str, u16)] = &[
        ("GET /s/main HTTP/1.1\r\n\r\n", 400),
        ("GET /s/main HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET /s/main HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("GET /s/main HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("GET /s/main HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400),
        ("GET /healthz HTTP/1.1\r\n\r\n", 400),
        ("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        ("HEAD /s/main HTTP/1.1\r\n\r\n", 400),
        // Valid hosts, and HTTP/1.0, which needs none.
        ("GET /s/main HTTP/1.1\r\nHost: click.example.com:8080\r\n\r\n", 302),
        ("GET /s/main HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", 302),
        ("GET /s/main HTTP/1.1\r\nHost: 203.0.113.9\r\n\r\n", 302),
        ("GET /s/main HTTP/1.1\r\nHost: \r\n\r\n", 302),
        ("GET /s/main HTTP/1.0\r\n\r\n", 302),
        ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    ];
    for (raw, want) in cases {
        let mut c = connect(&s);
        c.write_all(raw.as_bytes()).unwrap();
        let r = read_responses(&mut c, &[raw.starts_with("HEAD ")]).pop().unwrap();
        assert_eq!(r.status, *want, "{raw:?}: {}", r.body);
        if *want == 400 {
            assert!(raw.starts_with("HEAD ") || r.body.contains("Host"), "{raw:?}: the answer names Host: {}", r.body);
        }
    }
}

/// A server whose `server:` section gets `extra` lines.
fn start_with(extra: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), POOL);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", &format!("server:\n{extra}"), 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    (dir, s)
}

/// Whether the server closes `c` within `within` (reading and discarding
/// whatever it answers first).
fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
    }
}

#[test]
fn idle_and_half_sent_connections_are_closed_after_their_timeouts_on_both_paths() {
    let (_d, s) = start_with("  header_timeout_secs: 1\n  idle_timeout_secs: 2\n  body_timeout_secs: 1\n");
    let within = Duration::from_secs(8);
    // Connected, nothing sent.
    assert!(closed_within(&mut connect(&s), within), "a silent connection");
    // Half a head.
    let mut c = connect(&s);
    c.write_all(b"GET /s/main HTTP/1.1\r\nHost: x\r\nUser-Ag").unwrap();
    assert!(closed_within(&mut c, within), "a half-sent head");
    // Keep-alive after a click (fast path), and after /healthz (hyper).
    for req in [&b"GET /s/main HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"] {
        let mut c = connect(&s);
        assert!(exchange(&mut c, req).status < 400);
        assert!(closed_within(&mut c, within), "idle after {}", String::from_utf8_lossy(req));
    }
    // A body that never finishes (hyper): answered or closed, not held.
    let mut c = connect(&s);
    c.write_all(b"POST /postback HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nclick_id=").unwrap();
    assert!(closed_within(&mut c, within), "a half-sent body");
    let m = s.metric("smartlink_http_timeouts_total{kind=\"header\"}")
        + s.metric("smartlink_http_timeouts_total{kind=\"idle\"}");
    assert!(m >= 3.0, "fast-path timeouts are counted: {m}");
}

#[test]
fn at_the_connection_limit_idle_connections_make_room_for_new_clicks() {
    let (_d, s) = start_with("  max_connections: 4\n  idle_timeout_secs: 600\n");
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = connect(&s);
            assert_eq!(exchange(&mut c, b"GET /s/main HTTP/1.1\r\nHost: x\r\n\r\n").status, 302);
            c
        })
        .collect();
    // A fifth client still gets its click answered.
    let mut c = connect(&s);
    assert_eq!(exchange(&mut c, b"GET /s/main HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status, 302);
    assert!(idle.iter_mut().any(|c| closed_within(c, Duration::from_secs(5))), "an idle connection made room");
    assert!(s.metric("smartlink_http_connection_drains_total") >= 1.0);
}

#[test]
fn sigterm_finishes_within_the_grace_period_while_clients_hold_connections_and_keeps_every_click() {
    let (d, s) = start_with(
        "  shutdown_grace_secs: 1\n  header_timeout_secs: 120\n  body_timeout_secs: 120\n  idle_timeout_secs: 120\n",
    );
    for i in 0..20 {
        assert_eq!(s.get(&format!("/s/main?sub1=k{i}"), &[]).status, 302);
    }
    // A partial postback body (hyper), a partial head over 8 KiB (handed to
    // hyper), and a client pipelining clicks without reading the answers.
    let mut body = connect(&s);
    body.write_all(b"POST /postback HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nclick_id=").unwrap();
    let mut big = connect(&s);
    big.write_all(format!("GET /s/main HTTP/1.1\r\nHost: x\r\nX-Big: {}", "a".repeat(9000)).as_bytes()).unwrap();
    let flood = connect(&s);
    let mut writer = flood.try_clone().unwrap();
    let pusher = std::thread::spawn(move || {
        let req = b"GET /s/main?sub1=flood HTTP/1.1\r\nHost: x\r\n\r\n";
        for _ in 0..200_000 {
            if writer.write_all(req).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let db = s.db();
    assert!(s.stop_within(Duration::from_secs(20)), "SIGTERM did not finish within the grace period");
    drop((body, big, flood));
    pusher.join().unwrap();
    let rows = stored_clicks(&db);
    for i in 0..20 {
        assert!(rows.iter().any(|r| r.subs[0] == format!("k{i}")), "click k{i} was flushed");
    }
    drop(d);
}

#[test]
fn readyz_says_ready_with_each_check_and_not_ready_when_the_journal_cannot_take_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let s = Server::start(dir.path(), &cfg);
    let r = s.get("/readyz", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["ready"], true);
    for check in ["store", "journal", "backlog"] {
        assert_eq!(v["checks"][check]["ok"], true, "{v}");
    }
    assert_eq!(s.get("/healthz", &[]).status, 200);
    // The journal's directory gone: not ready, and it says which check failed.
    std::fs::rename(dir.path().join("data/journal"), dir.path().join("journal-moved")).unwrap();
    let r = s.get("/readyz", &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("5"));
    let v = r.json();
    assert_eq!((v["ready"].as_bool(), v["checks"]["journal"]["ok"].as_bool()), (Some(false), Some(false)), "{v}");
    assert_eq!(v["checks"]["store"]["ok"], true);
    std::fs::rename(dir.path().join("journal-moved"), dir.path().join("data/journal")).unwrap();
    assert_eq!(s.get("/readyz", &[]).status, 200);
}

#[test]
fn json_logs_give_one_object_per_line_for_refused_postbacks_and_admin_changes_without_secrets() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "advertisers: [{id: adv, postback_token: very-secret-token}]\n");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", "server:\n  log_format: json\n", 1);
    std::fs::write(&cfg, text).unwrap();
    let mut s = Server::try_start_with(dir.path(), &cfg, &[("RUST_LOG", "info")]).unwrap();
    assert_eq!(s.get("/postback?click_id=nope&token=very-secret-token", &[]).status, 400);
    let r = s.admin("POST", "/api/v1/affiliates", Some(r#"{"id": "a1", "api_key": "aff-secret-key"}"#));
    assert_eq!(r.status, 201, "{}", r.body);
    let mut child_err = s.child.stderr.take().unwrap();
    s.stop();
    let mut err = String::new();
    child_err.read_to_string(&mut err).unwrap();
    let lines: Vec<serde_json::Value> =
        err.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let refused =
        lines.iter().find(|l| l["fields"]["message"] == "conversion refused").expect("a refused postback line");
    assert_eq!(
        (refused["fields"]["channel"].as_str(), refused["fields"]["status"].as_u64()),
        (Some("postback"), Some(400))
    );
    assert_eq!(refused["fields"]["parameter"], "click_id");
    let changed = lines.iter().find(|l| l["fields"]["message"] == "definition changed").expect("an admin change line");
    assert_eq!((changed["fields"]["kind"].as_str(), changed["fields"]["id"].as_str()), (Some("affiliate"), Some("a1")));
    assert!(!err.contains("very-secret-token") && !err.contains("aff-secret-key"), "a secret in the logs: {err}");
    assert!(!err.contains('\u{1b}'), "no colour codes");
}

#[test]
fn every_metric_the_sample_grafana_dashboard_queries_is_exported() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json"))
            .unwrap(),
    )
    .expect("the dashboard is JSON");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let s = Server::start(dir.path(), &cfg);
    let exported = s.get("/metrics", &[]).body;
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find(|c: char| c.is_ascii_lowercase()) {
                let word: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[i + word.len()..];
                if word.starts_with("smartlink_") || word.starts_with("process_") {
                    names.push(word.trim_end_matches("_bucket").to_string());
                }
            }
        }
    }
    assert!(names.len() >= 15, "{names:?}");
    for n in names {
        assert!(
            exported.contains(&format!("# TYPE {n} ")),
            "the dashboard queries {n}, which /metrics does not export"
        );
    }
}
