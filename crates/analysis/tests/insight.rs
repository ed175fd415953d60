//! The audit and the EPC-change explanation over a store filled with
//! traffic whose truth is known.

use rand::{Rng, SeedableRng};
use smartlink_store::{Change, ClickRow, ConvStatus, ConversionStore, Kind, PostbackIn, SqliteStore, Store};

const HOUR: i64 = 3_600_000;

/// The wall clock: the store's rollups and the relative periods (`1d`,
/// `48h..24h`) are read against it, as the server does.
fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_dir(d.path()).unwrap();
    let put = |kind, id: &str, spec: &str| Change::Put { kind, id: id.into(), spec: spec.into() };
    s.apply(
        &[
            put(Kind::Advertiser, "adv", r#"{"id":"adv"}"#),
            put(Kind::Offer, "o1", r#"{"id":"o1","advertiser":"adv","url":"https://o1.example/","payout":2.0}"#),
            put(Kind::Offer, "o2", r#"{"id":"o2","advertiser":"adv","url":"https://o2.example/","payout":1.0}"#),
            put(Kind::Smartlink, "s", r#"{"slug":"s","offers":["o1","o2"],"fallback_url":"https://f.example/"}"#),
        ],
        "test",
    )
    .unwrap();
    (d, s)
}

/// Writes one click and, when it converts, its approved conversion.
struct Traffic<'a> {
    store: &'a SqliteStore,
    n: usize,
    clicks: Vec<ClickRow>,
    conversions: Vec<PostbackIn>,
}

impl Traffic<'_> {
    #[allow(clippy::too_many_arguments)]
    fn click(&mut self, ts: i64, country: &str, device: &str, offer: u32, propensity: f64, revenue: Option<f64>) {
        self.n += 1;
        let id = format!("c{:08}", self.n);
        self.clicks.push(ClickRow {
            click_id: id.clone(),
            ts_ms: ts,
            smartlink: 1,
            offer: Some(offer),
            country: country.into(),
            device: device.into(),
            os: "android".into(),
            quality: "human".into(),
            propensity,
            ..Default::default()
        });
        if let Some(r) = revenue {
            self.conversions.push(PostbackIn {
                click_id: id,
                event: "conversion".into(),
                txid: String::new(),
                status: ConvStatus::Approved,
                payout: Some(r),
                currency: "USD".into(),
                payout_base: Some(r),
                smartlink: 1,
                offer,
                affiliate: None,
                country: country.into(),
                device: device.into(),
                os: "android".into(),
                browser: String::new(),
                language: String::new(),
                quality: "human".into(),
                quality_flags: String::new(),
                click_ts_ms: ts / 1000 * 1000,
                ts_ms: ts + 60_000,
                over_cap: false,
                default_payout: r,
                default_payout_base: r,
                source: "test".into(),
                reason: None,
                outbound: vec![],
                cost_base: 0.0,
            });
        }
    }

    fn flush(self) {
        for chunk in self.clicks.chunks(5000) {
            self.store.insert_clicks(chunk).unwrap();
        }
        self.store.record_postbacks(&self.conversions).unwrap().into_iter().collect::<Result<Vec<_>, _>>().unwrap();
    }
}

#[test]
fn the_audit_recommends_the_offer_that_truly_beats_the_smartlink_and_stays_silent_where_data_is_thin() {
    let (_d, s) = store();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut t = Traffic { store: &s, n: 0, clicks: vec![], conversions: vec![] };
    let t0 = now() - 2 * HOUR;
    // US/mobile: the router split 50/50; o1 converts 10% at $1, o2 2% at $1.
    for i in 0..4000 {
        let offer = if rng.random_bool(0.5) { 1 } else { 2 };
        let cr = if offer == 1 { 0.10 } else { 0.02 };
        let rev = rng.random_bool(cr).then_some(1.0);
        t.click(t0 + i * 100, "US", "mobile", offer, 0.5, rev);
    }
    // DE/desktop: 50 clicks, too few to judge.
    for i in 0..50 {
        t.click(t0 + i * 100, "DE", "desktop", 1, 1.0, None);
    }
    t.flush();
    let out = smartlink_analysis::insight::audit(&s, "s", Some("1d"), now()).unwrap();
    let us = out["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["segment"]["country"] == "US" && x["segment"]["os"].is_null())
        .expect("the US/mobile segment is audited")
        .clone();
    let rec = &us["recommendation"];
    assert_eq!(rec["offer"], "o1", "{us}");
    // Truth: o1 earns 0.10 per click, the 50/50 smartlink 0.06: +$40 per 1,000.
    let uplift = rec["uplift_per_1000"].as_f64().unwrap();
    assert!((25.0..55.0).contains(&uplift), "{uplift}");
    assert!(rec["ci_per_1000"][0].as_f64().unwrap() > 0.0);
    assert_eq!(rec["apply"]["path"], "/api/v1/smartlinks/s/overrides");
    assert_eq!(rec["apply"]["body"]["offer"], "o1");
    let text = smartlink_analysis::insight::render_audit(&out);
    assert!(text.contains("  recommend: US/mobile → offer o1: +$"), "{text}");
    assert!(text.contains("/api/v1/smartlinks/s/overrides"), "{text}");
    assert!(text.contains("DE/desktop: "), "{text}");
    let o1 = us["offers"].as_array().unwrap().iter().find(|o| o["offer"] == "o1").unwrap();
    assert!((o1["dr_epc"].as_f64().unwrap() - 0.10).abs() < 0.02, "{o1}");
    let thin = out["thin_segments"].as_array().unwrap();
    assert!(thin.iter().any(|x| x["segment"]["country"] == "DE"), "{out}");
    assert!(out["segments"].as_array().unwrap().iter().all(|x| x["segment"]["country"] != "DE"));
    // An unknown smartlink is named.
    let e = smartlink_analysis::insight::audit(&s, "nope", None, now()).unwrap_err().to_string();
    assert!(e.contains("unknown smartlink"), "{e}");
}

#[test]
fn a_constructed_pause_is_explained_as_the_offer_pool_naming_the_offer_and_the_parts_sum_to_the_change() {
    let (_d, s) = store();
    let mut t = Traffic { store: &s, n: 0, clicks: vec![], conversions: vec![] };
    let (base, cur) = (now() - 40 * HOUR, now() - 10 * HOUR);
    // Baseline: 500 clicks to o1 ($2, 10%) and 500 to o2 ($1, 10%): EPC 0.15.
    for i in 0..1000 {
        let offer = if i % 2 == 0 { 1 } else { 2 };
        let rev = (i % 20 < 2).then_some(if offer == 1 { 2.0 } else { 1.0 });
        t.click(base + i * 1000, "US", "mobile", offer, 1.0, rev);
    }
    // Current: o1 paused, everything to o2 (same 10% at $1): EPC 0.10.
    for i in 0..1000 {
        t.click(cur + i * 1000, "US", "mobile", 2, 1.0, (i % 10 == 0).then_some(1.0));
    }
    t.flush();
    // The pause, as the change history records it (now, inside the current period).
    s.apply(
        &[Change::Put {
            kind: Kind::Offer,
            id: "o1".into(),
            spec: r#"{"id":"o1","advertiser":"adv","url":"https://o1.example/","payout":2.0,"status":"paused"}"#.into(),
        }],
        "api",
    )
    .unwrap();
    let out = smartlink_analysis::insight::explain(&s, "s", Some("12h"), None, Some("48h..24h"), now() + 1).unwrap();
    let change = out["change"].as_f64().unwrap();
    assert!((change + 0.05).abs() < 1e-6, "{out}");
    let parts = &out["parts"];
    let sum: f64 = ["traffic_mix", "offer_pool", "payout", "conversion_rate", "approval"]
        .iter()
        .map(|p| parts[*p].as_f64().unwrap())
        .sum();
    assert!((sum - change).abs() < 1e-5, "{parts}");
    assert!((parts["offer_pool"].as_f64().unwrap() - change).abs() < 1e-6, "{parts}");
    let top = &out["contributors"][0];
    assert_eq!((top["part"].as_str(), top["offer"].as_str()), (Some("offer_pool"), Some("o1")), "{out}");
    assert!(top["text"].as_str().unwrap().contains("paused"), "{top}");
    let text = smartlink_analysis::insight::render_explain(&out);
    assert!(text.starts_with("EPC fell") && text.contains("paused"), "{text}");
}
