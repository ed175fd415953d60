//! Several nodes on one PostgreSQL store (issue 19): three real servers on
//! loopback ports, each with its own data directory (journal, columnar
//! file), sharing one database the test makes and drops. Needs the
//! machine's PostgreSQL (`SMARTLINK_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432/test`); without it these fail, they
//! never skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

fn admin_url() -> String {
    std::env::var("SMARTLINK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of this test's own, dropped (connections and all) when this
/// is, also when the test panics.
struct TestDb {
    url: String,
    name: String,
}

impl TestDb {
    fn create() -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = admin_url();
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL is unreachable at {admin} ({e}): set SMARTLINK_TEST_PG"));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("smartlink_bb_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (head, _) = admin.rsplit_once('/').unwrap();
        TestDb { url: format!("{head}/{name}"), name }
    }

    /// The same database through `port` on loopback (a [`Gate`]).
    fn url_via(&self, port: u16) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let (auth, path) = rest.split_once('/').unwrap();
        let user = auth.rsplit_once('@').map_or(String::new(), |(u, _)| format!("{u}@"));
        format!("{scheme}://{user}127.0.0.1:{port}/{path}")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// Offers without caps.
const DEFS: &str = r#"
advertisers: [{id: adv, postback_token: adv-token}]
affiliates: [{id: aff1}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?cid={click_id}", payout: 2.0}
  - {id: o2, advertiser: adv, url: "https://o2.example/?cid={click_id}", payout: 3.0}
smartlinks:
  - {slug: s1, affiliate: aff1, offers: [o1], fallback_url: "https://f.example/"}
  - {slug: s2, affiliate: aff1, offers: [o2], fallback_url: "https://f.example/"}
"#;

/// A node's configuration: its own data directory, the shared store.
fn node_config(dir: &Path, store: &str, with_admin_token: bool, defs: &str) -> PathBuf {
    let cfg = dir.join("smartlink.yaml");
    let token = if with_admin_token { format!("  admin_token: {ADMIN}\n") } else { String::new() };
    let text = format!(
        "server:\n{token}  data_dir: {}\n  ingest_defer_secs: 0\n  store: {store}\n{defs}",
        dir.join("data").display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn click(s: &Server, path: &str) -> String {
    let r = s.get(path, &[("User-Agent", IPHONE)]);
    assert_eq!(r.status, 302, "{}", r.body);
    r.header("location").unwrap().split("cid=").nth(1).unwrap().split('&').next().unwrap().to_string()
}

fn report(s: &Server) -> serde_json::Value {
    let r = s.admin("GET", "/api/v1/report?from=1d&group_by=offer,country,device&include_bots=true", None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn three_nodes_share_definitions_conversions_secrets_and_reports() {
    let db = TestDb::create();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = Server::start(dirs[0].path(), &node_config(dirs[0].path(), &db.url, true, DEFS));
    let b = Server::start(dirs[1].path(), &node_config(dirs[1].path(), &db.url, true, DEFS));
    // C is given only the store: no definitions, no admin token and no
    // click-id secret of its own; it takes all three from the store.
    let c_cfg = node_config(dirs[2].path(), &db.url, false, "");
    let c = Server::try_start_with(dirs[2].path(), &c_cfg, &[("SMARTLINK_SECRET", "")])
        .unwrap_or_else(|e| panic!("node C did not start: {e}"));
    let nodes = [&a, &b, &c];

    // The store keeps the admin token's hash, never the token: C checks
    // the token it was never given against the hash.
    let mut pg = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let meta: Vec<(String, String)> =
        pg.query("SELECT key, value FROM meta", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(meta.iter().all(|(_, v)| !v.contains(ADMIN)), "the admin token is stored in clear: {meta:?}");
    let hash = meta.iter().find(|(k, _)| k == "admin_token_sha256").map(|(_, v)| v.clone());
    assert!(hash.as_deref().is_some_and(|h| h.starts_with("sha256:") && h.len() == 7 + 64), "{meta:?}");
    assert_eq!(c.admin("GET", "/api/v1/offers", None).status, 200, "node C refuses the admin token");
    assert_eq!(c.get("/api/v1/offers", &[("Authorization", "Bearer not-the-token")]).status, 401);

    // A change through A routes on C within a second.
    let r = a.admin("PATCH", "/api/v1/offers/o1", Some(r#"{"url": "https://changed.example/?cid={click_id}"}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let changed = Instant::now();
    loop {
        let loc = c.get("/s/s1", &[("User-Agent", IPHONE)]).header("location").unwrap_or_default().to_string();
        if loc.starts_with("https://changed.example/") {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "node C still routes to {loc} after 1 s");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Two changes at once on two nodes: both land, neither is lost.
    std::thread::scope(|sc| {
        let pa = sc.spawn(|| a.admin("PATCH", "/api/v1/offers/o1", Some(r#"{"payout": 5}"#)).status);
        let pb = sc.spawn(|| b.admin("PATCH", "/api/v1/offers/o2", Some(r#"{"payout": 7}"#)).status);
        assert_eq!((pa.join().unwrap(), pb.join().unwrap()), (200, 200));
    });
    for n in nodes {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let o1 = n.admin("GET", "/api/v1/offers/o1", None).json();
            let o2 = n.admin("GET", "/api/v1/offers/o2", None).json();
            if o1["payout"] == 5.0 && o2["payout"] == 7.0 && o1["url"] == "https://changed.example/?cid={click_id}" {
                break;
            }
            assert!(Instant::now() < deadline, "a concurrent change was lost: {o1} {o2}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // A postback on B for a click from A is recorded once; a repeat on C
    // (which checks A's signature with the store's secret) is a duplicate.
    let cid = click(&a, "/s/s1?sub1=from-a");
    let r = b.get(&format!("/postback?click_id={cid}&token=adv-token&txid=T1"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"], "recorded");
    let r = c.get(&format!("/postback?click_id={cid}&token=adv-token&txid=T1"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"], "duplicate");
    let listed = c.admin("GET", "/api/v1/conversions?offer=o1&affiliate=aff1", None).json();
    assert_eq!(listed["conversions"].as_array().unwrap().len(), 1, "{listed}");

    // Clicks on every node; once loaded, every node's report is the same.
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..4 {
            click(n, &format!("/s/s{}?sub1=n{i}", 1 + j % 2));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    // The probe clicks on C, the click from A and twelve more: at least 13;
    // rows and totals compared (the window's bounds move with the clock).
    let reports = loop {
        let rs: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                let r = report(n);
                serde_json::json!({"rows": r["rows"], "totals": r["totals"]})
            })
            .collect();
        let clicks: Vec<u64> = rs.iter().map(|r| r["totals"]["clicks"].as_u64().unwrap()).collect();
        if clicks.iter().all(|c| *c == clicks[0]) && clicks[0] >= 13 && rs.iter().all(|r| r == &rs[0]) {
            break rs;
        }
        assert!(Instant::now() < deadline, "reports never agreed: clicks {clicks:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(reports[0]["totals"]["conversions"], 1, "{}", reports[0]);
    assert_eq!(reports[0]["totals"]["revenue"], 5.0, "{}", reports[0]);

    // A graceful stop on a shared store exits cleanly (its connections are
    // closed off the async runtime).
    let mut c = c;
    let _ = std::process::Command::new("kill").args(["-TERM", &c.child.id().to_string()]).status();
    let status = c.child.wait().unwrap();
    let mut err = String::new();
    if let Some(e) = c.child.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "node C stopped with {status}: {err}");
}

#[test]
fn a_node_on_a_shared_store_takes_caps_and_refuses_a_secret_other_than_the_stores() {
    let db = TestDb::create();
    let d = tempfile::tempdir().unwrap();
    // Caps are leased from the store: a node on it takes them.
    let capped = DEFS.replace("payout: 2.0}", "payout: 2.0, caps: {daily_clicks: 10}}");
    let ok = Server::start(d.path(), &node_config(d.path(), &db.url, true, &capped));
    // Another node with another click-id secret is refused, naming it.
    let d2 = tempfile::tempdir().unwrap();
    let cfg2 = node_config(d2.path(), &db.url, true, "");
    let err = Server::try_start_with(d2.path(), &cfg2, &[("SMARTLINK_SECRET", "another-secret-0123456789abcdef01")])
        .err()
        .expect("refused");
    assert!(err.contains("SMARTLINK_SECRET") && err.contains("differs"), "{err}");
    // So is a node given another admin token.
    let d3 = tempfile::tempdir().unwrap();
    let cfg3 = node_config(d3.path(), &db.url, true, "");
    let text = std::fs::read_to_string(&cfg3).unwrap().replace(ADMIN, "another-admin-token-0123456789");
    std::fs::write(&cfg3, text).unwrap();
    let err = Server::try_start_with(d3.path(), &cfg3, &[("SMARTLINK_SECRET", "")]).err().expect("refused");
    assert!(err.contains("admin token") && err.contains("differs"), "{err}");
    // A cap added through the API is taken too.
    let r = ok.admin("PATCH", "/api/v1/offers/o2", Some(r#"{"caps": {"daily_conversions": 3}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// o1 has a daily click cap of 200 and comes first; o2 takes what o1
/// cannot. o3's cap is far away (for what nodes hold unspent).
const CAPPED: &str = r#"
advertisers: [{id: adv, postback_token: adv-token}]
affiliates: [{id: aff1}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?cid={click_id}", payout: 2.0, caps: {daily_clicks: 200}}
  - {id: o2, advertiser: adv, url: "https://o2.example/?cid={click_id}", payout: 3.0}
  - {id: o3, advertiser: adv, url: "https://o3.example/?cid={click_id}", payout: 1.0, caps: {daily_clicks: 100000}}
smartlinks:
  - {slug: s1, affiliate: aff1, offers: [o1, o2], strategy: priority, fallback_url: "https://f.example/"}
  - {slug: s3, affiliate: aff1, offers: [o3], fallback_url: "https://f.example/"}
"#;

/// Where a click went: the host of its redirect.
fn routed(s: &Server, path: &str) -> String {
    let r = s.get(path, &[("User-Agent", IPHONE)]);
    assert_eq!(r.status, 302, "{}", r.body);
    let loc = r.header("location").unwrap();
    loc.trim_start_matches("https://").split('/').next().unwrap().to_string()
}

/// The units taken in the store for `offer` (all days), and what each
/// node holds of them.
fn cap_units(db: &TestDb, offer: &str) -> (i64, Vec<i64>) {
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let key: i64 =
        c.query_one("SELECT key FROM entity_keys WHERE kind = 'offer' AND id = $1", &[&offer]).unwrap().get(0);
    let taken: i64 =
        c.query_one("SELECT COALESCE(SUM(taken), 0)::BIGINT FROM cap_usage WHERE offer = $1", &[&key]).unwrap().get(0);
    let held = c
        .query("SELECT held FROM cap_leases WHERE offer = $1 AND held > 0 ORDER BY node", &[&key])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (taken, held)
}

#[test]
fn a_daily_click_cap_holds_exactly_across_three_nodes_and_a_dead_node_strands_only_what_it_held() {
    let db = TestDb::create();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Every click from one address: the click-rate checks would call them
    // floods (bot clicks take no unit), so they are off here.
    let config = |d: &Path| {
        let cfg = node_config(d, &db.url, true, CAPPED);
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "  ingest_defer_secs: 0\n",
            "  ingest_defer_secs: 0\n  quality: {ip_suspect: 0, ip_bot: 0, ip_ua_suspect: 0}\n",
        );
        std::fs::write(&cfg, text).unwrap();
        cfg
    };
    let nodes: Vec<Server> = dirs.iter().map(|d| Server::start(d.path(), &config(d.path()))).collect();

    // Clicks dealt round-robin over the three nodes, in rounds with a short
    // pause (a node's allowance is topped up every 50 ms): o1 never gets
    // more than 200 in total, and gets all 200 while clicks keep coming to
    // every node.
    let (mut o1, mut o2, mut sent) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    while o1 < 200 {
        for i in 0..30 {
            match routed(&nodes[i % 3], &format!("/s/s1?sub1=c{sent}")).as_str() {
                "o1.example" => o1 += 1,
                "o2.example" => o2 += 1,
                other => panic!("a click went to {other}"),
            }
            sent += 1;
        }
        assert!(o1 <= 200, "{o1} clicks reached o1 past its cap of 200 ({sent} sent)");
        assert!(Instant::now() < deadline, "o1 got {o1} of its 200 after {sent} clicks");
        std::thread::sleep(Duration::from_millis(60));
    }
    assert_eq!(o1 + o2, sent);
    // Past the cap, every click goes to o2, on every node.
    for i in 0..30 {
        assert_eq!(routed(&nodes[i % 3], &format!("/s/s1?sub1=p{i}")), "o2.example", "a click past the cap");
    }
    assert_eq!(cap_units(&db, "o1").0, 200, "the store handed out exactly the cap");
    // Units were spent where they were taken: no node holds any of o1's.
    let (taken, held) = cap_units(&db, "o1");
    assert_eq!((taken, held.iter().sum::<i64>()), (200, 200), "{held:?}: held counts what was spent too");

    // What nodes hold unspent: 90 clicks on o3, then a moment for the
    // allowances to settle (no clicks: no more blocks).
    // A sudden burst on an offer that had no clicks: the first few on each
    // node may find the minimum block spent and the next not yet there,
    // and go to the fallback.
    // Three rounds of 30 with a pause: the later rounds find blocks sized
    // by the rate the first one showed.
    let mut spent = 0;
    for i in 0..90 {
        match routed(&nodes[i % 3], &format!("/s/s3?sub1=t{i}")).as_str() {
            "o3.example" => spent += 1,
            "f.example" => {}
            other => panic!("a click went to {other}"),
        }
        if i % 30 == 29 {
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    assert!(spent >= 60, "only {spent} of 90 clicks reached o3, far from its cap");
    let held_now = || -> Vec<f64> { nodes.iter().map(|n| n.metric("smartlink_cap_units_held")).collect() };
    let settled = Instant::now() + Duration::from_secs(10);
    let mut last = held_now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = held_now();
        if now == last {
            break;
        }
        assert!(Instant::now() < settled, "allowances never settled: {now:?}");
        last = now;
    }
    let (taken, _) = cap_units(&db, "o3");
    assert_eq!(taken as f64, spent as f64 + last.iter().sum::<f64>(), "taken = spent + held by the nodes: {last:?}");
    // A node holds at most ~5 s of its click rate on the offer (low-water
    // mark 1 s, block 4 s): its 30 clicks all in one 50 ms tick would be
    // 600 a second, 3,000 units.
    assert!(last.iter().all(|&h| (1.0..=3_000.0).contains(&h)), "{last:?}");

    // C dies holding its units; A and B stop gracefully and give theirs
    // back. What stays taken is what was spent plus what C held.
    let mut nodes = nodes;
    let c = nodes.pop().unwrap();
    let held_by_c = last[2] as i64;
    c.kill9();
    for n in nodes {
        n.stop();
    }
    let (taken, held) = cap_units(&db, "o3");
    assert_eq!(taken, spent + held_by_c, "A's and B's unspent units are back; C's {held_by_c} stay stranded");
    let (o1_taken, _) = cap_units(&db, "o1");
    assert_eq!(o1_taken, 200, "spent units never go back");
    // The lease rows: what each node holds of o3 is what it spent, and C's
    // share adds what it held when it died.
    assert_eq!(held.iter().sum::<i64>(), taken, "{held:?}");
}

/// A TCP forwarder to the machine's PostgreSQL that the test can cut:
/// while down it resets every connection through it and refuses new ones.
struct Gate {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Gate {
    fn start() -> Gate {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, open2) = (up.clone(), open.clone());
        let target = admin_url();
        let target = target.split("://").nth(1).unwrap().rsplit_once('@').map_or(target.as_str(), |(_, h)| h);
        let target = target.split('/').next().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else { continue };
                let mut o = open2.lock().unwrap();
                o.push(client.try_clone().unwrap());
                o.push(server.try_clone().unwrap());
                drop(o);
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Gate { port, up, open }
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn while_the_store_is_unreachable_clicks_are_served_and_postbacks_answer_503_with_retry_after() {
    let db = TestDb::create();
    let gate = Gate::start();
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), &node_config(d.path(), &db.url_via(gate.port), true, DEFS));
    let before = click(&s, "/s/s1");
    gate.set(false);
    // Clicks are served (and journaled) throughout.
    let during: Vec<String> = (0..5).map(|_| click(&s, "/s/s1")).collect();
    let r = s.get(&format!("/postback?click_id={before}&token=adv-token"), &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some(), "no Retry-After: {:?}", r.headers);
    // An API read that needs the store is a 503 to retry (not a 500),
    // counted as such.
    let r = s.admin("GET", "/api/v1/conversions", None);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("unreachable"), "{}", r.body);
    assert!(r.header("retry-after").is_some(), "no Retry-After: {:?}", r.headers);
    let failed = |kind: &str| s.metric(&format!("smartlink_api_store_errors_total{{kind=\"{kind}\"}}"));
    assert_eq!((failed("unavailable"), failed("failed")), (1.0, 0.0));
    // Back up: the same postback is recorded (it was not before), and
    // the clicks journaled meanwhile reach the store.
    gate.set(true);
    retry_until_recorded(&s, &before, Instant::now() + Duration::from_secs(30));
    assert_eq!(during.len(), 5);
    let deadline = Instant::now() + Duration::from_secs(60);
    while report(&s)["totals"]["clicks"] != 6 {
        assert!(Instant::now() < deadline, "the journaled clicks never reached the store: {}", report(&s));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two offers on one smartlink for the learning tests, and server keys
/// that keep thousands of clicks from one loopback address human.
const DUO: &str = r#"  quality: {ip_suspect: 0, ip_bot: 0, ip_ua_suspect: 0, duplicate_secs: 0}
advertisers: [{id: adv, postback_token: adv-token}]
affiliates: [{id: aff1}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?cid={click_id}", payout: 2.0}
  - {id: o2, advertiser: adv, url: "https://o2.example/?cid={click_id}", payout: 2.0}
smartlinks:
  - {slug: duo, affiliate: aff1, offers: [o1, o2], fallback_url: "https://f.example/"}
"#;

const PHONE: &[(&str, &str)] = &[("User-Agent", IPHONE), ("Accept", "text/html"), ("Accept-Language", "en")];

/// A click on `duo`: the offer it went to and its click id.
fn duo_click(s: &Server, i: usize) -> (String, String) {
    let r = s.get(&format!("/s/duo?sub1=c{i}"), PHONE);
    assert_eq!(r.status, 302, "{}", r.body);
    let loc = r.header("location").unwrap();
    let offer = loc.split("://").nth(1).unwrap().split('.').next().unwrap().to_string();
    (offer, loc.split("cid=").nth(1).unwrap().split('&').next().unwrap().to_string())
}

fn convert(s: &Server, cid: &str) {
    let r = s.get(&format!("/postback?click_id={cid}&token=adv-token&txid=T"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"], "recorded", "{}", r.body);
}

/// The router's policy for `duo`'s one segment: `(o1's probability, the
/// offer it scores best)`.
fn duo_policy(s: &Server) -> Option<(f64, String)> {
    let v = s.admin("GET", "/api/v1/policy?smartlink=duo", None).json();
    let seg = v["segments"].as_array()?.first()?.clone();
    let offers = seg["offers"].as_array()?;
    let p1 = offers.iter().find(|o| o["offer"] == "o1")?["probability"].as_f64()?;
    let best = offers.iter().find(|o| o["best"] == true)?["offer"].as_str()?.to_string();
    Some((p1, best))
}

/// Waits until both nodes' routers put at least `share` of the segment
/// on `offer`, and agree within `tolerance`; returns both policies.
fn wait_agreeing(a: &Server, b: &Server, offer: &str, share: f64, tolerance: f64) -> ((f64, String), (f64, String)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (pa, pb) = (duo_policy(a), duo_policy(b));
        if let (Some(pa), Some(pb)) = (&pa, &pb) {
            let chance = |p: &(f64, String)| if offer == "o1" { p.0 } else { 1.0 - p.0 };
            if pa.1 == offer
                && pb.1 == offer
                && chance(pa) >= share
                && chance(pb) >= share
                && (pa.0 - pb.0).abs() <= tolerance
            {
                return (pa.clone(), pb.clone());
            }
        }
        assert!(Instant::now() < deadline, "the nodes never agreed on {offer}: A {pa:?}, B {pb:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the metric reaches `n` on `s`, then checks it is exactly
/// `n`: every row learned once.
fn wait_exactly(s: &Server, name: &str, n: f64) {
    s.wait_metric(name, n);
    assert_eq!(s.metric(name), n, "{name}");
}

const LEARNED_CLICKS: &str = "smartlink_cluster_learned_rows_total{kind=\"click\"}";
const LEARNED_CONVERSIONS: &str = "smartlink_cluster_learned_rows_total{kind=\"conversion\"}";

/// Issue 19's learning: B serves nothing and learns A's clicks and
/// conversions, so its router prefers what A's prefers; then conversions
/// posted on B for A's clicks turn A's router the other way.
///
/// The tolerance: each node draws a segment's policy from 128 posterior
/// samples (its win shares carry a Monte Carlo error of at most
/// sqrt(0.25 / 128) = 0.044 each, 0.063 for the difference of two nodes),
/// and the two learned the same evidence in a different order (a node
/// learns another's rows seconds late, discounted by seconds of a 48-hour
/// half-life); 0.2 is three standard errors of that difference. A node
/// that had learned nothing would split the segment about evenly between
/// two offers of equal payout, which `share` (0.75) rules out.
#[test]
fn two_nodes_route_like_one_learning_each_others_clicks_and_conversions() {
    let db = TestDb::create();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = Server::start(dirs[0].path(), &node_config(dirs[0].path(), &db.url, true, DUO));
    let b = Server::start(dirs[1].path(), &node_config(dirs[1].path(), &db.url, true, DUO));

    // Every click on A, before any conversion: both offers get traffic.
    let clicks: Vec<(String, String)> = (0..240).map(|i| duo_click(&a, i)).collect();
    let of = |offer: &str| clicks.iter().filter(|(o, _)| o == offer).map(|(_, c)| c.clone()).collect::<Vec<_>>();
    let (o1, o2) = (of("o1"), of("o2"));
    assert!(o1.len() >= 40 && o2.len() >= 40, "both offers are explored: {} and {}", o1.len(), o2.len());
    // o1 converts one click in two, o2 never; posted on A.
    let phase1: Vec<&String> = o1.iter().step_by(2).collect();
    for cid in &phase1 {
        convert(&a, cid);
    }
    let ((pa, _), (pb, _)) = wait_agreeing(&a, &b, "o1", 0.75, 0.2);
    eprintln!("o1's share after A's conversions: A {pa:.3}, B {pb:.3}");
    // B learned each of A's clicks and conversions once; A learned nothing
    // (B served nothing).
    wait_exactly(&b, LEARNED_CLICKS, 240.0);
    wait_exactly(&b, LEARNED_CONVERSIONS, phase1.len() as f64);
    assert_eq!(a.metric(LEARNED_CLICKS), 0.0);
    assert_eq!(a.metric(LEARNED_CONVERSIONS), 0.0);
    assert!(b.metric("smartlink_cluster_learn_lag_seconds") < 60.0);

    // Conversions posted on B for A's o2 clicks, all of them: A learns
    // them from the store and turns to o2 like B.
    for cid in &o2 {
        convert(&b, cid);
    }
    let ((pa, _), (pb, _)) = wait_agreeing(&a, &b, "o2", 0.75, 0.2);
    eprintln!("o1's share after B's conversions: A {pa:.3}, B {pb:.3}");
    wait_exactly(&a, LEARNED_CONVERSIONS, o2.len() as f64);
    assert_eq!(b.metric(LEARNED_CONVERSIONS), phase1.len() as f64, "B does not learn its own conversions again");
    assert_eq!(a.metric(LEARNED_CLICKS), 0.0);

    // A node started now rebuilds the same from the store at start-up
    // (every row up to its marks) and learns nothing twice after them.
    let d3 = tempfile::tempdir().unwrap();
    let c = Server::start(d3.path(), &node_config(d3.path(), &db.url, true, DUO));
    let ((pa, _), (pc, _)) = wait_agreeing(&a, &c, "o2", 0.75, 0.2);
    eprintln!("o1's share on a node started afterwards: A {pa:.3}, C {pc:.3}");
    assert_eq!((c.metric(LEARNED_CLICKS), c.metric(LEARNED_CONVERSIONS)), (0.0, 0.0));
}

/// One click over a fresh connection, without panicking when the node is
/// gone: the click id of a 302, else `None`.
fn try_click(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in PHONE {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    if !text.starts_with("HTTP/1.1 302") {
        return None;
    }
    let loc = text.lines().find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))?;
    Some(loc.split("cid=").nth(1)?.split('&').next()?.trim().to_string())
}

/// Clicks `addr` one after another (so that the node queues their rows
/// in the order they are answered) until `stop` or a click fails;
/// returns the click ids answered, in order.
fn click_until(addr: String, tag: &'static str, stop: Arc<AtomicBool>, answered: Arc<AtomicU32>) -> Vec<String> {
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match try_click(&addr, &format!("/s/duo?sub1={tag}{}", out.len())) {
            Some(cid) => {
                out.push(cid);
                answered.fetch_add(1, Ordering::SeqCst);
            }
            None => break,
        }
    }
    out
}

fn wait_count(n: &AtomicU32, at_least: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while n.load(Ordering::SeqCst) < at_least {
        assert!(Instant::now() < deadline, "{what} never reached {at_least}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Node A is killed with SIGKILL while clicks flow to it and to B, at a
/// moment its journal holds clicks PostgreSQL has not got (A's store
/// connection is cut first). Restarted, it loads its journal: every click
/// it answered whose row had reached its journal when it was killed (the
/// first `smartlink_clicks_journaled_total` ones, read just before the
/// kill: one client answered in order, so those are the first clicks it
/// answered) is stored exactly once; the few answered in the last
/// milliseconds, still in memory, may be lost (documented), never
/// doubled. B serves throughout and every click it answered is stored
/// once; both nodes' reports then equal the store, and B learned each of
/// A's rows exactly once (the restarted A writes as a new node).
#[test]
fn a_node_killed_mid_traffic_drains_its_journal_and_every_journaled_click_is_stored_once() {
    let db = TestDb::create();
    let gate = Gate::start();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a_cfg = node_config(dirs[0].path(), &db.url_via(gate.port), true, DUO);
    let a = Server::start(dirs[0].path(), &a_cfg);
    let b = Server::start(dirs[1].path(), &node_config(dirs[1].path(), &db.url, true, DUO));

    let (stop_a, stop_b) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (on_a, on_b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let ta = {
        let (addr, stop, n) = (a.addr.clone(), stop_a.clone(), on_a.clone());
        std::thread::spawn(move || click_until(addr, "a", stop, n))
    };
    let tb = {
        let (addr, stop, n) = (b.addr.clone(), stop_b.clone(), on_b.clone());
        std::thread::spawn(move || click_until(addr, "b", stop, n))
    };
    wait_count(&on_a, 150, "clicks on A");
    // A's store goes away: its clicks are served and journaled only.
    gate.set(false);
    let cut = on_a.load(Ordering::SeqCst);
    wait_count(&on_a, cut + 300, "clicks on A after its store was cut");
    // At least 200 rows only the journal holds (the journal thread may
    // trail the answers on a busy machine: waited for, traffic going on).
    a.wait_metric("smartlink_clicks_journaled_total", (cut + 200) as f64);
    let journaled = a.metric("smartlink_clicks_journaled_total");
    a.kill9();
    let killed_at = on_b.load(Ordering::SeqCst);
    let answered_a = ta.join().unwrap();
    // B keeps serving.
    wait_count(&on_b, killed_at + 100, "clicks on B after A was killed");
    stop_b.store(true, Ordering::SeqCst);
    stop_a.store(true, Ordering::SeqCst);
    let answered_b = tb.join().unwrap();
    assert!(journaled.is_finite() && journaled >= (cut + 200) as f64, "journaled {journaled}");
    let safe = (journaled as usize).min(answered_a.len());

    // Restarted with its store back, A loads its journal before it serves.
    gate.set(true);
    let a = Server::start(dirs[0].path(), &a_cfg);
    b.wait_stored(answered_b.len() as u64);
    let stored = stored_click_counts(&db.url);
    let mut pg = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let doubled: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "clicks stored twice: {doubled:?}");
    let lost: Vec<_> = answered_a[..safe].iter().filter(|c| !stored.contains_key(*c)).collect();
    assert!(lost.is_empty(), "{} of the {safe} journaled clicks A answered are not stored: {lost:?}", lost.len());
    let at_risk = &answered_a[safe..];
    let lost_late = at_risk.iter().filter(|c| !stored.contains_key(*c)).count();
    eprintln!(
        "A answered {} clicks ({safe} journaled when killed); of the {} after them {lost_late} were lost",
        answered_a.len(),
        at_risk.len()
    );
    let lost_b: Vec<_> = answered_b.iter().filter(|c| !stored.contains_key(*c)).collect();
    assert!(lost_b.is_empty(), "clicks B answered are not stored: {lost_b:?}");
    let total = stored.len() as u64;
    assert!(total as usize <= answered_a.len() + 1 + answered_b.len(), "more rows than clicks served");

    // Reports on both nodes reconcile with the store.
    let mut by_offer: Vec<i64> =
        pg.query("SELECT COUNT(*) FROM clicks GROUP BY offer", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    by_offer.sort();
    assert_eq!(by_offer.iter().sum::<i64>() as u64, total);
    for n in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = n.admin("GET", "/api/v1/report?from=1d&group_by=offer&include_bots=true", None).json();
            if r["totals"]["clicks"].as_u64() == Some(total) {
                let mut rows: Vec<i64> =
                    r["rows"].as_array().unwrap().iter().map(|row| row["clicks"].as_i64().unwrap()).collect();
                rows.sort();
                assert_eq!(rows, by_offer, "each offer's clicks as stored: {r}");
                break;
            }
            assert!(Instant::now() < deadline, "a report never reached the store's {total} clicks: {r}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // B learned every row A wrote (before the kill and from its journal
    // after it) exactly once, and none of its own.
    wait_exactly(&b, LEARNED_CLICKS, (total - answered_b.len() as u64) as f64);
}

/// Retries a postback for `cid` as its sender would while the store is
/// away (503), until it is recorded (200, `recorded`) or `deadline`.
fn retry_until_recorded(s: &Server, cid: &str, deadline: Instant) {
    loop {
        let r = s.get(&format!("/postback?click_id={cid}&token=adv-token"), &[]);
        if r.status == 200 {
            assert_eq!(r.json()["result"], "recorded", "{}", r.body);
            return;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(Instant::now() < deadline, "postbacks never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A PostgreSQL server of the test's own: `initdb` into a temporary
/// directory, served on a free loopback port, stopped and started by the
/// test (the machine's shared server is never touched). Run as the
/// `postgres` user when the test runs as root (PostgreSQL refuses root).
struct OwnedPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnedPg {
    fn start() -> OwnedPg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let as_postgres =
            std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let dir = tempfile::tempdir().unwrap();
        if as_postgres {
            let ok = std::process::Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown to postgres");
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = OwnedPg { dir, bin, port, as_postgres };
        let data = pg.dir.path().join("data");
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        pg.up();
        pg
    }

    /// One of PostgreSQL's tools, as the `postgres` user under root.
    fn command(&self, tool: &str, args: &[&str]) -> std::process::Command {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        };
        c.args(args);
        c
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool, args).output().unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn up(&self) {
        let (data, log) = (self.dir.path().join("data"), self.dir.path().join("log"));
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &opts, "-w", "start"]);
    }

    /// Stops the server at once (`immediate`: no shutdown checkpoint, as a
    /// crash), every connection cut.
    fn down(&self) {
        self.run("pg_ctl", &["-D", self.dir.path().join("data").to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for OwnedPg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.command("pg_ctl", &["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "stop"]).output();
    }
}

/// PostgreSQL itself (a server of the test's own) stopped for 10 s while
/// clicks flow: clicks are served throughout, postbacks answer 503 with
/// `Retry-After` while it is down and are recorded once it is back, and
/// afterwards every click answered and every postback acknowledged is in
/// the store exactly once.
#[test]
fn postgresql_stopped_for_10_s_mid_load_loses_no_click_and_no_acknowledged_postback() {
    let pg = OwnedPg::start();
    postgres::Client::connect(&pg.url("postgres"), postgres::NoTls)
        .unwrap()
        .batch_execute("CREATE DATABASE t")
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), &node_config(d.path(), &pg.url("t"), true, DUO));
    let (stop, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));
    let load = {
        let (addr, stop, n) = (s.addr.clone(), stop.clone(), answered.clone());
        std::thread::spawn(move || click_until(addr, "l", stop, n))
    };
    wait_count(&answered, 100, "clicks before the stop");
    let before = try_click(&s.addr, "/s/duo?sub1=before").expect("a click");

    pg.down();
    let stopped = Instant::now();
    let at_stop = answered.load(Ordering::SeqCst);
    let mut refused = vec![before];
    while stopped.elapsed() < Duration::from_secs(10) {
        let cid = try_click(&s.addr, &format!("/s/duo?sub1=down{}", refused.len())).expect("clicks are served");
        let r = s.get(&format!("/postback?click_id={cid}&token=adv-token"), &[]);
        assert_eq!(r.status, 503, "a postback while PostgreSQL is down: {}", r.body);
        assert!(r.header("retry-after").is_some(), "no Retry-After: {:?}", r.headers);
        refused.push(cid);
        std::thread::sleep(Duration::from_millis(250));
    }
    let during = answered.load(Ordering::SeqCst) - at_stop;
    assert!(during >= 100, "only {during} clicks answered in the 10 s PostgreSQL was down");

    pg.up();
    // Each refused postback, retried as its sender would, is recorded once;
    // a second retry is a duplicate.
    let deadline = Instant::now() + Duration::from_secs(60);
    for cid in &refused {
        retry_until_recorded(&s, cid, deadline);
        let again = s.get(&format!("/postback?click_id={cid}&token=adv-token"), &[]);
        assert_eq!((again.status, again.json()["result"].clone()), (200, "duplicate".into()), "{}", again.body);
    }
    stop.store(true, Ordering::SeqCst);
    let loaded = load.join().unwrap();
    let total = loaded.len() + refused.len();
    s.wait_stored(total as u64);

    let stored = stored_click_counts(&pg.url("t"));
    let mut c = postgres::Client::connect(&pg.url("t"), postgres::NoTls).unwrap();
    let missing = loaded.iter().chain(&refused).filter(|c| stored.get(*c) != Some(&1)).count();
    assert_eq!(missing, 0, "clicks answered but not stored exactly once");
    assert_eq!(stored.len(), total, "rows for clicks never answered");
    for cid in &refused {
        let n: i64 = c.query_one("SELECT COUNT(*) FROM conversions WHERE click_id = $1", &[cid]).unwrap().get(0);
        assert_eq!(n, 1, "the postback for {cid} is stored {n} times");
    }
}

/// How many times each click id is stored in the PostgreSQL store at `url`.
fn stored_click_counts(url: &str) -> std::collections::HashMap<String, i64> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query("SELECT click_id, COUNT(*) FROM clicks GROUP BY click_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}
