//! `GET /api/v1/policy`: the router's current policy per busiest segment
//! (the dashboard's "where the traffic went" page), admin only.

use crate::harness::*;

const CONFIG: &str = r#"
advertisers: [{id: adv, postback_token: tok}]
affiliates: [{id: aff1, api_key: key-one}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?c={click_id}", payout: 2.0}
  - {id: o2, advertiser: adv, url: "https://o2.example/?c={click_id}", payout: 1.0}
  - {id: o3, advertiser: adv, url: "https://o3.example/?c={click_id}", payout: 1.0, targeting: {devices: [desktop]}}
smartlinks:
  - {slug: auto, affiliate: aff1, offers: [o1, o2, o3], fallback_url: "https://f.example/"}
  - slug: w
    offers: [o1, o2]
    strategy: weighted
    weights: [1, 3]
    fallback_url: "https://f.example/"
    overrides: [{devices: [desktop], offer: o2}]
"#;

fn segments(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["segments"].as_array().unwrap_or_else(|| panic!("no segments: {v}")).clone()
}

/// `offer → probability` of a segment.
fn chances(seg: &serde_json::Value) -> Vec<(String, f64)> {
    seg["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["offer"].as_str().unwrap().to_string(), o["probability"].as_f64().unwrap()))
        .collect()
}

#[test]
fn the_policy_endpoint_shows_each_busiest_segments_offers_with_their_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), CONFIG));
    let phone = [("User-Agent", IPHONE), ("Accept", "text/html"), ("Accept-Language", "en")];
    for (slug, n) in [("auto", 3), ("w", 2)] {
        for i in 0..n {
            assert_eq!(s.get(&format!("/s/{slug}?sub1=p{i}"), &phone).status, 302);
        }
        assert_eq!(s.get(&format!("/s/{slug}?sub1=d"), BROWSER).status, 302);
    }
    s.wait_stored(7);

    // auto: the phones' segment first (3 clicks), then the desktop one.
    let r = s.admin("GET", "/api/v1/policy?smartlink=auto", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!((v["smartlink"].as_str(), v["strategy"].as_str()), (Some("auto"), Some("auto")));
    let segs = segments(&v);
    assert_eq!(segs.len(), 2, "{v}");
    let (mobile, desktop) = (&segs[0], &segs[1]);
    assert_eq!((mobile["segment"]["device"].as_str(), mobile["segment"]["os"].as_str()), (Some("mobile"), Some("ios")));
    assert_eq!(mobile["clicks"], 3);
    assert_eq!(mobile["segment"]["browser"], "safari");
    assert_eq!((desktop["segment"]["device"].as_str(), desktop["clicks"].as_u64()), (Some("desktop"), Some(1)));
    for seg in [mobile, desktop] {
        assert_eq!(seg["decided_by"], "auto", "{seg}");
        let p = chances(seg);
        let total: f64 = p.iter().map(|x| x.1).sum();
        assert!((total - 1.0).abs() < 1e-3, "probabilities sum to {total}: {seg}");
        assert!(p.iter().all(|x| (0.0..=1.0).contains(&x.1)), "{seg}");
        let best = seg["offers"].as_array().unwrap().iter().filter(|o| o["best"] == true).count();
        assert_eq!(best, 1, "one offer is the router's best: {seg}");
    }
    // o3 takes desktops only.
    let names = |seg: &serde_json::Value| chances(seg).into_iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(names(mobile), ["o1", "o2"]);
    assert_eq!(names(desktop), ["o1", "o2", "o3"]);
    let one = s.admin("GET", "/api/v1/policy?smartlink=auto&limit=1&period=1h", None).json();
    assert_eq!(segments(&one).len(), 1);

    // Weighted: the weights, except where an override decides.
    let v = s.admin("GET", "/api/v1/policy?smartlink=w", None).json();
    assert_eq!(v["strategy"], "weighted");
    let segs = segments(&v);
    assert_eq!(segs[0]["decided_by"], "weighted");
    assert_eq!(chances(&segs[0]), [("o1".to_string(), 0.25), ("o2".to_string(), 0.75)]);
    assert_eq!(segs[1]["decided_by"], "override");
    assert_eq!(chances(&segs[1]), [("o1".to_string(), 0.0), ("o2".to_string(), 1.0)]);

    // Nothing eligible: the fallback and why.
    for o in ["o1", "o2"] {
        let r = s.admin("PATCH", &format!("/api/v1/offers/{o}"), Some(r#"{"status": "paused"}"#));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let v = s.admin("GET", "/api/v1/policy?smartlink=auto", None).json();
    let segs = segments(&v);
    assert_eq!(segs[0]["decided_by"], "fallback");
    assert_eq!(segs[0]["fallback_reason"], "no_targeting_match");
    assert_eq!(segs[0]["offers"], serde_json::json!([]));
    assert_eq!(chances(&segs[1]), [("o3".to_string(), 1.0)]);

    // Bad parameters name themselves; an affiliate key may not read it.
    for (q, param) in [
        ("", "smartlink"),
        ("smartlink=nope", "smartlink"),
        ("smartlink=auto&limit=0", "limit"),
        ("smartlink=auto&limit=51", "limit"),
        ("smartlink=auto&period=soon", "period"),
        ("smartlink=auto&x=1", "x"),
    ] {
        let r = s.admin("GET", &format!("/api/v1/policy?{q}"), None);
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains(param), "{q}: {}", r.body);
    }
    let r = s.get("/api/v1/policy?smartlink=auto", &[("Authorization", "Bearer key-one")]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(s.get("/api/v1/policy?smartlink=auto", &[]).status, 401);
    // Described in the OpenAPI document.
    let doc = s.get("/api/v1/openapi.json", &[]).json();
    assert!(doc["paths"]["/api/v1/policy"]["get"].is_object());
}
