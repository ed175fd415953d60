//! Whose money the API shows (an affiliate key its own share, the admin the
//! gross revenue, the affiliates' payout and the margin), and manual status
//! changes by the network with their actor and reason.

use crate::harness::*;

const NETWORK: &str = r#"
advertisers: [{id: adv, postback_token: adv-secret}]
affiliates:
  - {id: aff1, api_key: key-one, payout_share: 0.5, payout_shares: {o2: 0.8}}
  - {id: aff2, api_key: key-two, payout_share: 0.7}
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?cid={click_id}", payout: 2.0}
  - {id: o2, advertiser: adv, url: "https://o2.example/?cid={click_id}", payout: 3.0}
smartlinks:
  - {slug: s1, affiliate: aff1, offers: [o1], fallback_url: "https://f.example/"}
  - {slug: s1b, affiliate: aff1, offers: [o2], fallback_url: "https://f.example/"}
  - {slug: s2, affiliate: aff2, offers: [o1], fallback_url: "https://f.example/"}
"#;

fn as_key(s: &Server, key: &str, method: &str, path: &str, body: Option<&str>) -> Resp {
    let auth = format!("Bearer {key}");
    s.request(method, path, &[("Authorization", &auth), ("Content-Type", "application/json")], body)
}

fn click(s: &Server, slug: &str) -> String {
    let r = s.get(&format!("/s/{slug}"), &[("User-Agent", IPHONE), ("Accept", "*/*"), ("Accept-Language", "en")]);
    assert_eq!(r.status, 302, "{}", r.body);
    r.header("location").unwrap().split("cid=").nth(1).unwrap().to_string()
}

/// Clicks `slug` and converts it with `query` (payout, status, txid);
/// returns the conversion id.
fn convert(s: &Server, slug: &str, query: &str) -> i64 {
    let cid = click(s, slug);
    let r = s.get(&format!("/postback?click_id={cid}&token=adv-secret&{query}"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["conversion_id"].as_i64().unwrap()
}

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), NETWORK));
    (dir, s)
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Figures agree to the cent (and in fact to the micro-unit they are
/// rounded to, summing at most a few roundings).
fn same_money(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

fn close(v: &serde_json::Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

#[test]
fn an_affiliate_key_sees_only_its_share_of_its_own_money_never_the_gross() {
    let (_d, s) = start();
    // aff1: 3.33 on o1 (share 0.5) and 2.49 on o2 (its override, 0.8);
    // aff2: 4.01 on o1 (share 0.7).
    let mine = convert(&s, "s1", "payout=3.33");
    convert(&s, "s1b", "payout=2.49");
    let theirs = convert(&s, "s2", "payout=4.01");
    s.wait_stored(3);
    let own = 3.33 * 0.5 + 2.49 * 0.8;

    let r = as_key(&s, "key-one", "GET", "/api/v1/report?group_by=offer&affiliate=aff2", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let report = r.json();
    assert_eq!(report["totals"]["clicks"], 2, "only its own rows: {report}");
    assert!(same_money(num(&report["totals"]["revenue"]), own), "{report}");
    assert!(close(&report["totals"]["epc"], (own / 2.0 * 1e6).round() / 1e6), "{report}");
    let o2 = report["rows"].as_array().unwrap().iter().find(|row| row["offer"] == "o2").unwrap().clone();
    assert!(close(&o2["revenue"], 2.49 * 0.8), "the per-offer share: {o2}");
    assert!(report["totals"].get("payout").is_none() && report["totals"].get("margin").is_none(), "{report}");
    for gross in ["3.33", "2.49", "4.01", "5.82", "9.83"] {
        assert!(!r.body.contains(gross), "the gross {gross} leaks into the report: {}", r.body);
    }

    let list = as_key(&s, "key-one", "GET", "/api/v1/conversions?affiliate=aff2", None);
    let convs = list.json()["conversions"].as_array().unwrap().clone();
    assert_eq!(convs.len(), 2, "{}", list.body);
    let mut payouts: Vec<f64> = convs.iter().map(|c| num(&c["payout"])).collect();
    payouts.sort_by(f64::total_cmp);
    assert!(same_money(payouts[0], 3.33 * 0.5) && same_money(payouts[1], 2.49 * 0.8), "{payouts:?}");
    for c in &convs {
        assert_eq!(c["payout"], c["payout_base"], "USD is the base currency");
        assert!(c.get("affiliate_payout").is_none(), "{c}");
    }
    for gross in ["3.33", "2.49", "4.01"] {
        assert!(!list.body.contains(gross), "the gross {gross} leaks into the list: {}", list.body);
    }

    let one = as_key(&s, "key-one", "GET", &format!("/api/v1/conversions/{mine}"), None);
    assert!(close(&one.json()["payout"], 3.33 * 0.5), "{}", one.body);
    assert!(!one.body.contains("3.33"), "{}", one.body);
    assert_eq!(as_key(&s, "key-one", "GET", &format!("/api/v1/conversions/{theirs}"), None).status, 404);
    let other = as_key(&s, "key-two", "GET", &format!("/api/v1/conversions/{theirs}"), None).json();
    assert!(close(&other["payout"], 4.01 * 0.7), "{other}");
}

#[test]
fn the_admin_sees_revenue_payout_and_margin_that_add_up_to_the_cent() {
    let (_d, s) = start();
    let mine = convert(&s, "s1", "payout=3.33");
    convert(&s, "s1b", "payout=2.49");
    convert(&s, "s2", "payout=4.01");
    convert(&s, "s2", "payout=0.07&status=rejected");
    s.wait_stored(4);
    let by_aff = [("aff1", 3.33 * 0.5 + 2.49 * 0.8), ("aff2", 4.01 * 0.7)];
    let gross = 3.33 + 2.49 + 4.01;
    let payout: f64 = by_aff.iter().map(|(_, p)| p).sum();

    for group in ["", "affiliate", "offer", "smartlink,country"] {
        let r = s.admin("GET", &format!("/api/v1/report?group_by={group}"), None).json();
        let t = &r["totals"];
        assert!(same_money(num(&t["revenue"]), gross), "{group}: {r}");
        assert!(same_money(num(&t["payout"]), payout), "{group}: {r}");
        assert!(same_money(num(&t["margin"]), gross - payout), "{group}: {r}");
        let rows = r["rows"].as_array().unwrap();
        for row in rows {
            assert!(same_money(num(&row["margin"]), num(&row["revenue"]) - num(&row["payout"])), "{row}");
        }
        for col in ["revenue", "payout", "margin"] {
            let sum: f64 = rows.iter().map(|row| num(&row[col])).sum();
            assert!(same_money(sum, num(&t[col])), "{group}: the rows' {col} add up to the total: {r}");
        }
        if group == "affiliate" {
            for (aff, want) in by_aff {
                let row = rows.iter().find(|row| row["affiliate"] == aff).unwrap();
                assert!(close(&row["payout"], (want * 1e6_f64).round() / 1e6), "{row}");
            }
        }
    }
    let c = s.admin("GET", &format!("/api/v1/conversions/{mine}"), None).json();
    assert_eq!(c["payout"], 3.33, "the admin sees the gross payout: {c}");
    assert!(close(&c["affiliate_payout"], 3.33 * 0.5), "{c}");
}

#[test]
fn the_network_changes_a_status_with_its_actor_and_reason_in_the_history() {
    let (_d, s) = start();
    let pending = convert(&s, "s1", "payout=3&status=pending&txid=P");
    let path = format!("/api/v1/conversions/{pending}");

    let r = s.admin("PATCH", &path, Some(r#"{"status": "approved", "reason": "verified by phone", "by": "alice"}"#));
    assert_eq!((r.status, r.json()["result"].as_str()), (200, Some("updated")), "{}", r.body);
    let r = s.admin("PATCH", &path, Some(r#"{"status": "reversal", "reason": "card charged back", "by": "bob"}"#));
    assert_eq!(r.status, 200, "{}", r.body);

    let c = s.admin("GET", &path, None).json();
    assert_eq!(c["status"], "chargeback");
    let h = c["history"].as_array().unwrap();
    assert_eq!(h.len(), 3, "{c}");
    assert_eq!((h[0]["actor"].as_str(), h[0]["reason"].as_str()), (Some("postback"), None));
    fn said(e: &serde_json::Value) -> (&str, &str, &str, &str) {
        let f = |k: &str| e[k].as_str().unwrap();
        (f("to"), f("actor"), f("by"), f("reason"))
    }
    assert_eq!(said(&h[1]), ("approved", "admin", "alice", "verified by phone"));
    assert_eq!(said(&h[2]), ("chargeback", "admin", "bob", "card charged back"));

    // The affiliate sees what changed and why, not who at the network did it.
    let theirs = as_key(&s, "key-one", "GET", &path, None);
    let h = theirs.json()["history"].as_array().unwrap().clone();
    assert_eq!((h[2]["actor"].as_str(), h[2]["reason"].as_str()), (Some("admin"), Some("card charged back")));
    assert!(!theirs.body.contains("bob") && !theirs.body.contains("alice"), "{}", theirs.body);

    // An affiliate key cannot change a status.
    let r = as_key(&s, "key-one", "PATCH", &path, Some(r#"{"status": "approved"}"#));
    assert_eq!(r.status, 403, "{}", r.body);

    // Illegal transitions and bad bodies are 4xx naming what is wrong.
    let r = s.admin("PATCH", &path, Some(r#"{"status": "approved", "reason": "oops"}"#));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("chargeback to approved") && r.body.contains("\"status\""), "{}", r.body);
    let long = "x".repeat(1001);
    for (body, status, names) in [
        (r#"{"status": "pending"}"#.to_string(), 422, "status"),
        (r#"{"status": "maybe"}"#.to_string(), 422, "status"),
        (format!(r#"{{"status": "rejected", "reason": "{long}"}}"#), 422, "reason"),
        (r#"{"status": "rejected", "by": "a\u0000b"}"#.to_string(), 422, "by"),
        (r#"{"status": "rejected", "why": "x"}"#.to_string(), 400, "why"),
        ("not json".to_string(), 400, "body"),
    ] {
        let r = s.admin("PATCH", &path, Some(&body));
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body.contains(names), "{body}: {}", r.body);
    }
    assert_eq!(s.admin("PATCH", "/api/v1/conversions/999", Some(r#"{"status": "rejected"}"#)).status, 404);
    assert_eq!(s.admin("GET", &path, None).json()["history"].as_array().unwrap().len(), 3, "nothing refused was kept");

    // The report follows: the charged-back conversion pays nothing.
    let t = s.admin("GET", "/api/v1/report", None).json()["totals"].clone();
    assert_eq!((t["revenue"].as_f64(), t["chargebacks"].as_u64()), (Some(0.0), Some(1)), "{t}");
}
