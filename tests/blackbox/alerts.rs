//! The drift-alert detector running in the server.

use crate::harness::*;

const ONE: &str = r#"
advertisers: [{id: adv}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?c={click_id}", payout: 2.0}
  - {id: o2, advertiser: adv, url: "https://o2.example/?c={click_id}", payout: 1.0}
smartlinks:
  - {slug: s, offers: [o1, o2], fallback_url: "https://f.example/"}
"#;

#[test]
fn a_pause_and_a_payout_cut_raise_alerts_once_in_the_api_and_the_webhook_and_a_raise_does_not() {
    let hook = Recorder::start(vec![200]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ONE);
    let server = format!("server:\n  alerts:\n    interval_secs: 1\n    webhook_url: http://{}/hook\n", hook.addr);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", &server, 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(s.admin("GET", "/api/v1/alerts", None).json()["alerts"], serde_json::json!([]), "steady: nothing");
    assert_eq!(s.admin("PATCH", "/api/v1/offers/o1", Some(r#"{"status": "paused"}"#)).status, 200);
    assert_eq!(s.admin("PATCH", "/api/v1/offers/o2", Some(r#"{"payout": 0.5}"#)).status, 200);
    assert_eq!(s.admin("PATCH", "/api/v1/offers/o1", Some(r#"{"payout": 3.0}"#)).status, 200);
    let seen = hook.wait_for(2, 10);
    assert_eq!(seen, vec!["/hook", "/hook"]);
    let alerts = s.admin("GET", "/api/v1/alerts", None).json()["alerts"].as_array().unwrap().clone();
    let mut kinds: Vec<(String, String)> = alerts
        .iter()
        .map(|a| (a["kind"].as_str().unwrap().to_string(), a["offer"].as_str().unwrap().to_string()))
        .collect();
    kinds.sort();
    assert_eq!(kinds, [("offer_paused".into(), "o1".into()), ("payout_cut".into(), "o2".into())]);
    assert!(alerts.iter().any(|a| a["message"] == "s: offer o2 payout 1.00 → 0.50"), "{alerts:?}");
    // Raised once: later runs do not repeat them.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    assert_eq!(s.admin("GET", "/api/v1/alerts", None).json()["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(hook.wait_for(3, 0).len(), 2);
}

/// The cap events an offer's history holds, oldest first.
fn cap_events(s: &Server, offer: &str) -> Vec<String> {
    let h = s.admin("GET", &format!("/api/v1/history?kind=offer&id={offer}"), None).json();
    let mut out: Vec<String> = h["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "event")
        .map(|c| c["fields"][0]["new"].as_str().unwrap_or("").to_string())
        .collect();
    out.reverse();
    out
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..60 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what}: not within 6 s");
}

#[test]
fn reaching_a_cap_is_recorded_alerted_per_smartlink_and_a_restart_neither_repeats_it_nor_misses_its_end() {
    let hook = Hook::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = ONE.replace(r#"payout: 2.0}"#, r#"payout: 2.0, caps: {daily_clicks: 2}}"#).replace(
        r#"fallback_url: "https://f.example/"}"#,
        r#"fallback_url: "https://f.example/", strategy: priority}"#,
    );
    let cfg = write_config(dir.path(), &yaml);
    let server = format!("server:\n  alerts: {{interval_secs: 1, webhook_url: \"http://{}/hook\"}}\n", hook.addr);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", &server, 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    for i in 0..4 {
        s.get(&format!("/s/s?sub1={i}"), &[("User-Agent", ua), ("Accept", "*/*"), ("Accept-Language", "en")]);
    }
    wait_until("the cap is recorded", || !cap_events(&s, "o1").is_empty());
    assert_eq!(cap_events(&s, "o1"), ["capped (daily_clicks)"]);
    let h = s.admin("GET", "/api/v1/history?kind=offer&id=o1", None).json();
    assert_eq!(h["changes"][0]["actor"], "system");

    // A `capped` alert names the smartlink, and the webhook carries its stored id.
    let bodies = hook.wait_for(1, 10);
    let sent: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let alerts = s.admin("GET", "/api/v1/alerts", None).json()["alerts"].as_array().unwrap().clone();
    let capped = alerts.iter().find(|a| a["kind"] == "capped").unwrap_or_else(|| panic!("{alerts:?}"));
    assert_eq!((capped["smartlink"].as_str(), capped["offer"].as_str()), (Some("s"), Some("o1")));
    assert_eq!(sent["id"], capped["id"], "the webhook's id is the stored one: {sent}");
    assert_ne!(sent["id"], 0);

    // A restart while still capped records nothing more.
    let s = s.restart();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(cap_events(&s, "o1"), ["capped (daily_clicks)"], "no second `capped` after a restart");
    // The cap is lifted while the server is down: the next run records it.
    s.stop();
    let raised = yaml.replace("daily_clicks: 2", "daily_clicks: 100");
    let file = dir.path().join("raised.yaml");
    std::fs::write(&file, raised).unwrap();
    let out = std::process::Command::new(bin())
        .args(["import", file.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = Server::start(dir.path(), &cfg);
    let o1 = s.admin("GET", "/api/v1/offers/o1", None).json();
    assert_eq!(o1["caps"]["daily_clicks"], 100, "the unchanged serve file does not undo the import: {o1}");
    wait_until("the cap's end is recorded", || cap_events(&s, "o1").len() == 2);
    assert_eq!(cap_events(&s, "o1"), ["capped (daily_clicks)", "resumed (cap no longer reached)"]);
}
