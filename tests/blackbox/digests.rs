//! The scheduled digest: made once per smartlink and period (a restart does
//! not make or send it again), delivered to the webhook, listed and
//! rendered by the API.

use std::io::Read;
use std::time::Duration;

use crate::harness::*;

const ONE: &str = r#"
advertisers: [{id: adv}]
affiliates: [{id: aff1, api_key: key-one}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?c={click_id}", payout: 2.0}
smartlinks:
  - {slug: s, affiliate: aff1, offers: [o1], fallback_url: "https://f.example/"}
  - {slug: quiet, offers: [o1], fallback_url: "https://f.example/"}
"#;

#[test]
fn a_missed_digest_is_made_and_sent_once_at_start_up_and_a_restart_sends_nothing_more() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ONE);
    let server = format!(
        "server:\n  digests: {{every: daily, hour: 0, webhook_url: 'http://{}/digest?token=t0ps3cret'}}\n",
        hook.addr
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", &server, 1);
    std::fs::write(&cfg, text).unwrap();
    // The first start stores the definitions: nothing happened yesterday.
    Server::start(dir.path(), &cfg).stop();
    assert!(hook.wait_for(1, 1).is_empty(), "no traffic, no digest");
    // Yesterday's traffic, as if the server had been down since.
    {
        use smartlink_store::Store as _;
        let store = smartlink_store::SqliteStore::open(&dir.path().join("data/smartlink.db")).unwrap();
        let keys = store.keys().unwrap();
        let key = |kind, id: &str| keys.iter().find(|(k, i, _)| *k == kind && i == id).unwrap().2;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let yesterday_noon = now.div_euclid(86_400_000) * 86_400_000 - 12 * 3_600_000;
        let rows: Vec<smartlink_store::ClickRow> = (0..25)
            .map(|i| smartlink_store::ClickRow {
                click_id: format!("c{i:04}"),
                ts_ms: yesterday_noon + i * 1000,
                smartlink: key(smartlink_store::Kind::Smartlink, "s"),
                offer: Some(key(smartlink_store::Kind::Offer, "o1")),
                subs: ["<script>x</script>".into(), String::new(), String::new(), String::new(), String::new()],
                country: "US".into(),
                device: "mobile".into(),
                os: "ios".into(),
                quality: "human".into(),
                reason: "explore".into(),
                propensity: 1.0,
                ..Default::default()
            })
            .collect();
        store.insert_clicks(&rows).unwrap();
    }
    let s = Server::start(dir.path(), &cfg);
    let sent = hook.wait_for(1, 20);
    assert_eq!(sent.len(), 1, "one digest: s had traffic, quiet had none");
    let posted: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(posted["smartlink"], "s");
    assert_eq!(posted["digest"]["totals"]["current"]["clicks"], 25);
    assert_eq!(posted["digest"]["by_offer"][0]["offer"], "o1");
    assert!(posted["digest"]["html"].as_str().unwrap().starts_with("<!DOCTYPE html>"));
    assert!(posted["digest"]["text"].as_str().unwrap().contains("By country"));

    // Listed, with its delivery recorded.
    let listed = (0..100)
        .find_map(|_| {
            let l = s.admin("GET", "/api/v1/digests?smartlink=s", None).json();
            let d = l["digests"].as_array().unwrap().clone();
            if d.len() == 1 && d[0]["delivery"]["state"] == "delivered" {
                return Some(d);
            }
            std::thread::sleep(Duration::from_millis(100));
            None
        })
        .expect("the digest is listed as delivered");
    assert_eq!(listed[0]["delivery"]["attempts"], 1);
    assert!(listed[0].get("digest").is_none(), "the list carries no bodies");
    assert_eq!(s.admin("GET", "/api/v1/digests?smartlink=quiet", None).json()["digests"], serde_json::json!([]));
    let id = listed[0]["id"].as_i64().unwrap();

    // One digest, three renderings.
    let one = s.admin("GET", &format!("/api/v1/digests/{id}"), None);
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["digest"]["smartlink"], "s");
    let html = s.admin("GET", &format!("/api/v1/digests/{id}.html"), None);
    assert_eq!(html.status, 200);
    assert!(html.header("content-type").unwrap().starts_with("text/html"));
    assert!(html.header("content-security-policy").unwrap().contains("default-src 'none'"));
    assert_eq!(html.body, posted["digest"]["html"].as_str().unwrap());
    let text = s.admin("GET", &format!("/api/v1/digests/{id}?format=text"), None);
    assert!(text.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(text.body, posted["digest"]["text"].as_str().unwrap());
    assert_eq!(s.admin("GET", "/api/v1/digests/999999", None).status, 404);
    assert_eq!(s.admin("GET", "/api/v1/digests/nope", None).status, 400);
    assert_eq!(s.admin("GET", &format!("/api/v1/digests/{id}?format=pdf"), None).status, 400);
    assert_eq!(s.admin("GET", "/api/v1/digests?colour=red", None).status, 400);
    // An affiliate key does not read digests, not even of its own smartlink.
    let aff = |path: &str| s.request("GET", path, &[("Authorization", "Bearer key-one")], None).status;
    assert_eq!(aff("/api/v1/digests?smartlink=s"), 403);
    assert_eq!(aff(&format!("/api/v1/digests/{id}")), 403);

    // A restart (the same period still the latest due) makes and sends nothing.
    let mut s = s.restart();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(hook.wait_for(2, 0).len(), 1, "no second delivery");
    assert_eq!(s.admin("GET", "/api/v1/digests", None).json()["digests"].as_array().unwrap().len(), 1);
    let log = {
        let mut err = String::new();
        let _ = s.child.kill();
        let _ = s.child.wait();
        s.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        err
    };
    assert!(!log.contains("t0ps3cret"), "the webhook URL is never logged: {log}");
}
