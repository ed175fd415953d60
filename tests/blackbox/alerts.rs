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

#[test]
fn reaching_a_cap_is_recorded_in_the_offer_s_history_by_the_system() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = ONE.replace(r#"payout: 2.0}"#, r#"payout: 2.0, caps: {daily_clicks: 2}}"#).replace(
        r#"fallback_url: "https://f.example/"}"#,
        r#"fallback_url: "https://f.example/", strategy: priority}"#,
    );
    let cfg = write_config(dir.path(), &yaml);
    let text =
        std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", "server:\n  alerts: {interval_secs: 1}\n", 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    for i in 0..4 {
        s.get(&format!("/s/s?sub1={i}"), &[("User-Agent", ua), ("Accept", "*/*"), ("Accept-Language", "en")]);
    }
    let event = (0..40)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let h = s.admin("GET", "/api/v1/history?kind=offer&id=o1", None).json();
            h["changes"].as_array().unwrap().iter().find(|c| c["action"] == "event").cloned()
        })
        .expect("the cap is recorded");
    assert_eq!(event["actor"], "system");
    assert_eq!(event["fields"][0]["new"], "capped (daily_clicks)", "{event}");
}
