//! Admin changes made at the same time: each is applied to the definitions
//! as the ones before it left them, so none undoes another; and clients can
//! read, modify and write safely with `ETag` / `If-Match`.

use crate::harness::*;

/// `n` offers `o0..o{n-1}` and a smartlink over the first.
fn offers(n: usize) -> String {
    let mut y = String::from("advertisers: [{id: adv}]\noffers:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - {{id: o{i}, advertiser: adv, url: \"https://o{i}.example/?c={{click_id}}\", payout: 1}}\n"
        ));
    }
    y.push_str("smartlinks:\n  - {slug: s, offers: [o0], fallback_url: \"https://f.example/\"}\n");
    y
}

fn server(n: usize) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &offers(n));
    let s = Server::start(dir.path(), &cfg);
    (dir, s)
}

fn offer_ids(s: &Server) -> Vec<String> {
    let mut ids: Vec<String> = s
        .admin("GET", "/api/v1/offers", None)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn parallel_creates_of_distinct_offers_all_survive() {
    let (_d, s) = server(1);
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    let body = format!(r#"{{"id": "p{i}", "advertiser": "adv", "url": "https://p.example/?c={{click_id}}", "payout": 2}}"#);
                    s.admin("POST", "/api/v1/offers", Some(&body)).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&st| st == 201), "{statuses:?}");
    let ids = offer_ids(&s);
    assert_eq!(ids.len(), 21, "every created offer is there: {ids:?}");
    for i in 0..20 {
        assert!(ids.contains(&format!("p{i}")), "p{i} missing from {ids:?}");
    }
    // Nobody asked for a delete, so the history records none.
    let history = s.admin("GET", "/api/v1/history?kind=offer&limit=1000", None).json();
    let deletes =
        history["changes"].as_array().map(|a| a.iter().filter(|c| c["action"] == "delete").count()).unwrap_or(0);
    assert_eq!(deletes, 0, "{history}");
}

#[test]
fn parallel_patches_of_different_offers_all_take_effect() {
    let (_d, s) = server(12);
    std::thread::scope(|sc| {
        for i in 0..12 {
            let s = &s;
            sc.spawn(move || {
                let body = format!(r#"{{"payout": {}}}"#, 100 + i);
                assert_eq!(s.admin("PATCH", &format!("/api/v1/offers/o{i}"), Some(&body)).status, 200);
            });
        }
    });
    for i in 0..12 {
        let o = s.admin("GET", &format!("/api/v1/offers/o{i}"), None).json();
        assert_eq!(o["payout"], serde_json::json!(100.0 + i as f64), "o{i}: {o}");
    }
}

#[test]
fn a_delete_racing_a_patch_never_brings_the_offer_back() {
    let (_d, s) = server(1);
    for round in 0..15 {
        let id = format!("r{round}");
        let body = format!(r#"{{"id": "{id}", "advertiser": "adv", "url": "https://r.example/", "payout": 1}}"#);
        assert_eq!(s.admin("POST", "/api/v1/offers", Some(&body)).status, 201);
        let path = format!("/api/v1/offers/{id}");
        let (deleted, patched) = std::thread::scope(|sc| {
            let d = sc.spawn(|| s.admin("DELETE", &path, None).status);
            let p = sc.spawn(|| s.admin("PATCH", &path, Some(r#"{"payout": 7}"#)).status);
            (d.join().unwrap(), p.join().unwrap())
        });
        assert_eq!(deleted, 204, "round {round}");
        assert!(patched == 200 || patched == 404, "round {round}: PATCH answered {patched}");
        assert_eq!(s.admin("GET", &format!("/api/v1/offers/{id}"), None).status, 404, "round {round}: {id} is back");
    }
}

#[test]
fn a_write_with_a_stale_if_match_is_refused_and_a_current_one_applies() {
    let (_d, s) = server(1);
    let first = s.admin("GET", "/api/v1/offers/o0", None);
    let etag = first.header("etag").expect("GET answers an ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong entity tag: {etag}");
    let with = |method: &str, tag: &str, body: Option<&str>| {
        let auth = format!("Bearer {ADMIN}");
        s.request(
            method,
            "/api/v1/offers/o0",
            &[("Authorization", &auth), ("Content-Type", "application/json"), ("If-Match", tag)],
            body,
        )
    };
    // Someone else changes the offer: the tag we hold is now stale.
    let other = s.admin("PATCH", "/api/v1/offers/o0", Some(r#"{"payout": 3}"#));
    assert_eq!(other.status, 200);
    let fresh = other.header("etag").expect("a change answers the new ETag").to_string();
    assert_ne!(fresh, etag);
    let stale = with("PATCH", &etag, Some(r#"{"payout": 9}"#));
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert!(stale.body.contains("If-Match"), "{}", stale.body);
    assert_eq!(with("DELETE", &etag, None).status, 412);
    assert_eq!(s.admin("GET", "/api/v1/offers/o0", None).json()["payout"], serde_json::json!(3.0));
    // With the current tag the change applies, and `*` matches any existing offer.
    let ok = with("PATCH", &fresh, Some(r#"{"payout": 9}"#));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["payout"], serde_json::json!(9.0));
    assert_eq!(
        with("PUT", "*", Some(r#"{"advertiser": "adv", "url": "https://o0.example/", "payout": 4}"#)).status,
        200
    );
    let missing = s.request(
        "PUT",
        "/api/v1/offers/nope",
        &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json"), ("If-Match", "*")],
        Some(r#"{"advertiser": "adv", "url": "https://n.example/", "payout": 4}"#),
    );
    assert_eq!(missing.status, 412, "If-Match: * on a missing offer: {}", missing.body);
}

#[test]
fn an_offer_payout_past_max_payout_is_refused_at_the_api_naming_the_field() {
    let (_d, s) = server(1);
    let r = s.admin(
        "POST",
        "/api/v1/offers",
        Some(r#"{"id": "big", "advertiser": "adv", "url": "https://b.example/", "payout": 1.7e308}"#),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["fields"][0]["path"], "payout", "{}", r.body);
    assert_eq!(s.admin("PATCH", "/api/v1/offers/o0", Some(r#"{"payout": 1e300}"#)).status, 422);
}
