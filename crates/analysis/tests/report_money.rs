//! Whose money a report shows: the admin's gross revenue with the
//! affiliates' payout and the margin, or an affiliate's own payout only.

use smartlink_analysis::report::{run, run_as, Money, PayoutShares, ReportRequest};
use smartlink_store::{Change, ClickRow, ConvStatus, ConversionStore, Kind, PostbackIn, SqliteStore, Store};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Two affiliates over two offers; `a1` earns 0.5 by default and 0.8 on
/// `o2`, `a2` earns 0.7. Returns the store, the shares and the key lookup.
fn store() -> (tempfile::TempDir, SqliteStore, PayoutShares, impl Fn(Kind, &str) -> u32) {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_dir(d.path()).unwrap();
    let put = |kind, id: &str, spec: &str| Change::Put { kind, id: id.into(), spec: spec.into() };
    s.apply(
        &[
            put(Kind::Advertiser, "adv", r#"{"id":"adv"}"#),
            put(Kind::Affiliate, "a1", r#"{"id":"a1"}"#),
            put(Kind::Affiliate, "a2", r#"{"id":"a2"}"#),
            put(Kind::Offer, "o1", r#"{"id":"o1","advertiser":"adv","url":"https://o1.example/","payout":2.0}"#),
            put(Kind::Offer, "o2", r#"{"id":"o2","advertiser":"adv","url":"https://o2.example/","payout":1.0}"#),
            put(Kind::Smartlink, "s", r#"{"slug":"s","offers":["o1","o2"],"fallback_url":"https://f.example/"}"#),
        ],
        "test",
    )
    .unwrap();
    let keys = s.keys().unwrap();
    let key = move |kind: Kind, id: &str| keys.iter().find(|(k, i, _)| *k == kind && i == id).unwrap().2;
    let mut shares = PayoutShares::default();
    shares.affiliates.insert(key(Kind::Affiliate, "a1"), 0.5);
    shares.affiliates.insert(key(Kind::Affiliate, "a2"), 0.7);
    shares.offers.insert((key(Kind::Affiliate, "a1"), key(Kind::Offer, "o2")), 0.8);
    (d, s, shares, key)
}

/// (affiliate, offer, country, gross payout or None for a click only).
const TRAFFIC: [(&str, &str, &str, Option<f64>); 9] = [
    ("a1", "o1", "US", Some(3.33)),
    ("a1", "o1", "DE", Some(1.17)),
    ("a1", "o2", "US", Some(2.49)),
    ("a1", "o2", "US", None),
    ("a2", "o1", "US", Some(4.01)),
    ("a2", "o2", "DE", Some(0.93)),
    ("a2", "o2", "DE", None),
    ("a2", "o1", "FR", None),
    ("a1", "o2", "FR", Some(7.77)),
];

fn fill(s: &SqliteStore, key: &impl Fn(Kind, &str) -> u32) {
    let ts = now() - 3_600_000;
    let mut clicks = Vec::new();
    let mut conversions = Vec::new();
    for (i, (aff, offer, country, payout)) in TRAFFIC.iter().enumerate() {
        let click_id = format!("c{i:04}");
        let (affiliate, offer) = (key(Kind::Affiliate, aff), key(Kind::Offer, offer));
        clicks.push(ClickRow {
            click_id: click_id.clone(),
            ts_ms: ts,
            smartlink: key(Kind::Smartlink, "s"),
            offer: Some(offer),
            affiliate: Some(affiliate),
            country: country.to_string(),
            device: "mobile".into(),
            os: "ios".into(),
            quality: "human".into(),
            propensity: 1.0,
            ..Default::default()
        });
        if let Some(p) = payout {
            conversions.push(PostbackIn {
                click_id,
                event: "conversion".into(),
                txid: String::new(),
                status: ConvStatus::Approved,
                payout: Some(*p),
                currency: "USD".into(),
                payout_base: Some(*p),
                smartlink: key(Kind::Smartlink, "s"),
                offer,
                affiliate: Some(affiliate),
                country: country.to_string(),
                device: "mobile".into(),
                os: "ios".into(),
                browser: String::new(),
                language: String::new(),
                quality: "human".into(),
                quality_flags: String::new(),
                click_ts_ms: ts / 1000 * 1000,
                ts_ms: ts + 60_000,
                over_cap: false,
                default_payout: *p,
                default_payout_base: *p,
                source: "test".into(),
                reason: None,
                cost_base: 0.0,
                outbound: vec![],
            });
        }
    }
    s.insert_clicks(&clicks).unwrap();
    s.record_postbacks(&conversions).unwrap().into_iter().collect::<Result<Vec<_>, _>>().unwrap();
}

/// Σ gross × share, conversion by conversion, for the affiliates given.
fn expected_payout(affiliates: &[&str]) -> f64 {
    let share = |aff: &str, offer: &str| match (aff, offer) {
        ("a1", "o2") => 0.8,
        ("a1", _) => 0.5,
        _ => 0.7,
    };
    TRAFFIC.iter().filter(|(a, ..)| affiliates.contains(a)).filter_map(|(a, o, _, p)| p.map(|p| p * share(a, o))).sum()
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Figures agree to the cent (and in fact to the micro-unit they are
/// rounded to, summing at most a few roundings).
fn same_money(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

fn req(group_by: &[&str], filters: &[(&str, &str)]) -> ReportRequest {
    ReportRequest {
        from: Some("1d".into()),
        group_by: group_by.iter().map(|g| g.to_string()).collect(),
        filters: filters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

#[test]
fn the_admin_sees_revenue_payout_and_margin_that_add_up_to_the_cent_in_rows_and_totals() {
    let (_d, s, shares, key) = store();
    fill(&s, &key);
    let gross: f64 = TRAFFIC.iter().filter_map(|t| t.3).sum();
    let payout = expected_payout(&["a1", "a2"]);
    for group in [vec![], vec!["offer"], vec!["country"], vec!["affiliate", "offer"], vec!["day", "device"]] {
        let r = run_as(&s, &req(&group, &[]), Money::Admin(&shares), now()).unwrap();
        let t = &r["totals"];
        assert!(same_money(num(&t["revenue"]), gross), "{group:?}: {r}");
        assert!(same_money(num(&t["payout"]), payout), "{group:?}: {r}");
        assert!(same_money(num(&t["margin"]), gross - payout), "{group:?}: {r}");
        let rows = r["rows"].as_array().unwrap();
        for row in rows {
            assert!(same_money(num(&row["margin"]), num(&row["revenue"]) - num(&row["payout"])), "{row}");
        }
        for col in ["revenue", "payout", "margin"] {
            let sum: f64 = rows.iter().map(|row| num(&row[col])).sum();
            assert!(same_money(sum, num(&t[col])), "{group:?}: rows' {col} add up to the total: {r}");
        }
    }
    // By affiliate: each row's payout is that affiliate's, offer overrides included.
    let r = run_as(&s, &req(&["affiliate"], &[]), Money::Admin(&shares), now()).unwrap();
    for row in r["rows"].as_array().unwrap() {
        let a = row["affiliate"].as_str().unwrap();
        assert!(same_money(num(&row["payout"]), expected_payout(&[a])), "{row}");
    }
}

#[test]
fn an_affiliate_report_shows_only_its_own_rows_with_its_share_of_the_money_and_no_gross() {
    let (_d, s, shares, key) = store();
    fill(&s, &key);
    let a1 = key(Kind::Affiliate, "a1");
    // The filter asks for a2: the affiliate's view replaces it.
    let r = run_as(&s, &req(&["offer"], &[("affiliate", "a2")]), Money::Affiliate { key: a1, shares: &shares }, now())
        .unwrap();
    let t = &r["totals"];
    assert_eq!(t["clicks"], 5, "{r}");
    assert!(same_money(num(&t["revenue"]), expected_payout(&["a1"])), "{r}");
    assert!(t.get("payout").is_none() && t.get("margin").is_none(), "{r}");
    let epc = t["epc"].as_f64().unwrap();
    assert!((epc - expected_payout(&["a1"]) / 5.0).abs() < 1e-6, "EPC is the affiliate's too: {r}");
    let o2 = r["rows"].as_array().unwrap().iter().find(|row| row["offer"] == "o2").unwrap();
    assert!(same_money(num(&o2["revenue"]), (2.49 + 7.77) * 0.8), "the offer's own share: {o2}");
    let o1 = r["rows"].as_array().unwrap().iter().find(|row| row["offer"] == "o1").unwrap();
    assert!(same_money(num(&o1["revenue"]), 2.25), "(3.33 + 1.17) × 0.5, not the gross 4.50: {o1}");
}

#[test]
fn the_gross_report_is_unchanged_and_has_no_payout_columns() {
    let (_d, s, _shares, key) = store();
    fill(&s, &key);
    let r = run(&s, &req(&["offer"], &[]), now()).unwrap();
    let gross: f64 = TRAFFIC.iter().filter_map(|t| t.3).sum();
    assert!(same_money(num(&r["totals"]["revenue"]), gross), "{r}");
    assert!(r["totals"].get("payout").is_none(), "{r}");
    let table = smartlink_analysis::report::render(&r, false);
    assert!(!table.contains("margin"), "{table}");
}
