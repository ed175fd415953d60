//! The digest over a store holding two weeks of known traffic: its
//! breakdowns are the report's numbers, its changes are week over week.

use serde_json::{json, Value};
use smartlink_analysis::digest::{digest, Period, Schedule};
use smartlink_core::model::Catalog;
use smartlink_store::{Change, ClickRow, ConvStatus, ConversionStore, Kind, PostbackIn, SqliteStore, Store};

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

const HOSTILE: &str = "<b onclick='x'>sub</b>";

struct Seed {
    clicks: Vec<ClickRow>,
    conversions: Vec<PostbackIn>,
}

impl Seed {
    /// `n` clicks at `ts` (a second apart) in a segment, on `offer` (None:
    /// the fallback); the first `converting` of them convert for `payout`.
    #[allow(clippy::too_many_arguments)]
    fn clicks(
        &mut self,
        ts: i64,
        n: usize,
        country: &str,
        offer: Option<u32>,
        converting: usize,
        payout: f64,
        quality: &str,
        affiliate: u32,
        sub1: &str,
    ) {
        for i in 0..n {
            let id = format!("c{:08}", self.clicks.len());
            let t = ts + i as i64 * 1000;
            self.clicks.push(ClickRow {
                click_id: id.clone(),
                ts_ms: t,
                smartlink: 1,
                offer,
                affiliate: Some(affiliate),
                subs: [sub1.into(), String::new(), String::new(), String::new(), String::new()],
                country: country.into(),
                device: "mobile".into(),
                os: "android".into(),
                quality: quality.into(),
                fallback_reason: offer.is_none().then(|| "no_targeting_match".to_string()),
                reason: if offer.is_none() { "fallback".into() } else { "explore".into() },
                propensity: 0.5,
                ..Default::default()
            });
            if i < converting {
                self.conversions.push(PostbackIn {
                    click_id: id,
                    event: "conversion".into(),
                    txid: String::new(),
                    status: ConvStatus::Approved,
                    payout: Some(payout),
                    currency: "USD".into(),
                    payout_base: Some(payout),
                    smartlink: 1,
                    offer: offer.unwrap_or(0),
                    affiliate: Some(affiliate),
                    country: country.into(),
                    device: "mobile".into(),
                    os: "android".into(),
                    browser: String::new(),
                    language: String::new(),
                    quality: quality.into(),
                    quality_flags: String::new(),
                    click_ts_ms: t,
                    ts_ms: t + 3_600_000,
                    over_cap: false,
                    default_payout: payout,
                    default_payout_base: payout,
                    source: "test".into(),
                    outbound: vec![],
                    reason: None,
                    cost_base: 0.0,
                });
            }
        }
    }
}

/// Previous week (Nov 23–30): o1 100 US clicks, 5 × $2; o2 50 DE clicks,
/// none converting. This week (Nov 30–Dec 7): o1 150 US clicks, 6 × $2;
/// o2 40 US clicks, 2 × $1; 30 BR clicks to the fallback; and 60 bot
/// clicks from one hostile sub-id.
fn seeded() -> (tempfile::TempDir, SqliteStore) {
    let d = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_dir(d.path()).unwrap();
    let put = |kind, id: &str, spec: &str| Change::Put { kind, id: id.into(), spec: spec.into() };
    s.apply(
        &[
            put(Kind::Advertiser, "adv", r#"{"id":"adv"}"#),
            put(Kind::Affiliate, "a1", r#"{"id":"a1"}"#),
            put(Kind::Offer, "o1", r#"{"id":"o1","advertiser":"adv","url":"https://o1.example/","payout":2.0}"#),
            put(Kind::Offer, "o2", r#"{"id":"o2","advertiser":"adv","url":"https://o2.example/","payout":1.0}"#),
            put(Kind::Smartlink, "s", r#"{"slug":"s","offers":["o1","o2"],"fallback_url":"https://f.example/"}"#),
        ],
        "test",
    )
    .unwrap();
    let mut seed = Seed { clicks: vec![], conversions: vec![] };
    let prev = ms("2026-11-25T10:00:00Z");
    seed.clicks(prev, 100, "US", Some(1), 5, 2.0, "human", 1, "p1");
    seed.clicks(prev + 3_600_000, 50, "DE", Some(2), 0, 1.0, "human", 1, "p1");
    let cur = ms("2026-12-02T10:00:00Z");
    seed.clicks(cur, 150, "US", Some(1), 6, 2.0, "human", 1, "p1");
    seed.clicks(cur + 3_600_000, 40, "US", Some(2), 2, 1.0, "human", 1, "p1");
    seed.clicks(cur + 2 * 3_600_000, 30, "BR", None, 0, 0.0, "human", 1, "p2");
    seed.clicks(cur + 3 * 3_600_000, 60, "US", None, 0, 0.0, "bot", 1, HOSTILE);
    s.insert_clicks(&seed.clicks).unwrap();
    s.record_postbacks(&seed.conversions).unwrap().into_iter().collect::<Result<Vec<_>, _>>().unwrap();
    (d, s)
}

fn week() -> Period {
    Period { start_ms: ms("2026-11-30T00:00:00Z"), end_ms: ms("2026-12-07T00:00:00Z") }
}

fn run(s: &SqliteStore) -> Value {
    let now = ms("2026-12-07T08:00:00Z");
    assert_eq!(Schedule::default().latest_due(now), week());
    digest(s, &Catalog::new(vec![], vec![], vec![]), "s", week(), chrono_tz::UTC, now).unwrap()
}

fn row<'a>(d: &'a Value, dim: &str, key: Value) -> &'a Value {
    d[format!("by_{dim}")].as_array().unwrap().iter().find(|r| r[dim] == key).unwrap_or_else(|| panic!("{key} in {d}"))
}

#[test]
fn the_breakdowns_are_the_report_s_rows_for_the_same_window() {
    let (_d, s) = seeded();
    let d = run(&s);
    for dim in ["offer", "country", "device"] {
        let req = smartlink_analysis::report::ReportRequest {
            from: Some(week().start_ms.to_string()),
            to: Some(week().end_ms.to_string()),
            group_by: vec![dim.into()],
            filters: vec![("smartlink".into(), "s".into())],
            ..Default::default()
        };
        let report = smartlink_analysis::report::run(&s, &req, week().end_ms).unwrap();
        for r in report["rows"].as_array().unwrap() {
            let mut want = r.clone();
            let key = want.as_object_mut().unwrap().remove(dim).unwrap();
            want.as_object_mut().unwrap().remove("blended_epc");
            assert_eq!(row(&d, dim, key)["current"], want, "{dim}");
        }
        let mut totals = report["totals"].clone();
        totals.as_object_mut().unwrap().remove("blended_epc");
        assert_eq!(d["totals"]["current"], totals);
    }
    // Bots are left out, as in the report: 150 + 40 + 30 human clicks.
    assert_eq!(d["totals"]["current"]["clicks"], 220);
    assert_eq!(d["totals"]["previous"]["clicks"], 150);
}

#[test]
fn changes_are_week_over_week_per_offer_country_and_device() {
    let (_d, s) = seeded();
    let d = run(&s);
    assert_eq!(d["totals"]["change"]["clicks"], 70);
    assert_eq!(d["totals"]["change"]["revenue"], json!(4.0), "14 − 10");
    assert_eq!(d["totals"]["change_pct"]["clicks"], json!(0.466667));
    let o1 = row(&d, "offer", json!("o1"));
    assert_eq!(o1["current"]["clicks"], 150);
    assert_eq!(o1["previous"]["clicks"], 100);
    assert_eq!(
        o1["change"],
        json!({"clicks": 50, "conversions": 1, "revenue": 2.0, "epc": -0.02, "cost": 0.0, "profit": 2.0, "roi": null})
    );
    assert_eq!(
        o1["change_pct"],
        json!({"clicks": 0.5, "conversions": 0.2, "revenue": 0.2, "epc": -0.2, "cost": null, "profit": 0.2, "roi": null})
    );
    let o2 = row(&d, "offer", json!("o2"));
    assert_eq!(o2["change"]["clicks"], -10);
    assert_eq!(o2["change_pct"]["conversions"], Value::Null, "nothing to compare with");
    let fallback = row(&d, "offer", Value::Null);
    assert_eq!((fallback["current"]["clicks"].clone(), fallback["previous"]["clicks"].clone()), (json!(30), json!(0)));
    // A country with traffic only last week is still listed, at zero.
    let de = row(&d, "country", json!("DE"));
    assert_eq!((de["current"]["clicks"].clone(), de["change"]["clicks"].clone()), (json!(0), json!(-50)));
    assert_eq!(d["by_country"].as_array().unwrap().last().unwrap()["country"], "DE");
    assert_eq!(row(&d, "device", json!("mobile"))["change"]["clicks"], 70);
    assert_eq!(d["columns"], json!(["clicks", "conversions", "revenue", "epc", "cost", "profit", "roi"]));
    assert_eq!(d["period"]["label"], "2026-11-30 – 2026-12-06");
}

#[test]
fn the_digest_carries_the_explanation_new_gaps_flagged_sources_and_both_bodies() {
    let (_d, s) = seeded();
    let d = run(&s);
    assert!(d["epc_change"]["summary"].as_str().unwrap().starts_with("EPC"), "{}", d["epc_change"]);
    let gaps: Vec<(&str, &str)> = d["coverage"]["new_gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["country"].as_str().unwrap(), g["device"].as_str().unwrap()))
        .collect();
    assert_eq!(gaps, [("BR", "mobile")], "BR fell back this week only");
    let flagged = d["flagged_sources"].as_array().unwrap();
    assert!(flagged.iter().any(|f| f["by"] == "sub1" && f["sub"] == HOSTILE), "{flagged:?}");
    assert!(d["recommendations"].is_array() && d["audit"]["segments_audited"].is_u64());
    let html = d["html"].as_str().unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains(HOSTILE) && html.contains("&lt;b onclick=&#39;x&#39;&gt;sub&lt;/b&gt;"), "{html}");
    let text = d["text"].as_str().unwrap();
    assert!(text.contains("By offer") && text.contains("(fallback)") && text.contains("+50.0%"), "{text}");
    let e = digest(&s, &Catalog::new(vec![], vec![], vec![]), "nope", week(), chrono_tz::UTC, 0).unwrap_err();
    assert!(e.to_string().contains("unknown smartlink"), "{e}");
}
