//! Coverage gaps and each offer's daily share of a smartlink's clicks.

use crate::harness::*;

const POOL: &str = r#"
advertisers: [{id: adv, postback_token: t}]
offers:
  - id: us-only
    advertiser: adv
    url: "https://us.example/?cid={click_id}"
    payout: 2.0
    targeting: {countries: [US]}
  - id: se-capped
    advertiser: adv
    url: "https://se.example/?cid={click_id}"
    payout: 1.0
    targeting: {countries: [SE]}
    caps: {daily_clicks: 1}
  - id: gb-paused
    advertiser: adv
    url: "https://gb.example/?cid={click_id}"
    payout: 1.0
    targeting: {countries: [GB]}
    status: paused
smartlinks:
  - slug: pool
    offers: [us-only, se-capped, gb-paused]
    strategy: priority
    fallback_url: "https://fallback.example/"
"#;

#[test]
fn fallback_traffic_is_reported_by_reason_and_segment_with_its_likely_cost_and_daily_offer_shares() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), POOL);
    let geo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/maxmind/GeoIP2-Country-Test.mmdb");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "server:\n",
        &format!("server:\n  trust_proxy: true\n  geoip: {}\n", geo.display()),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    let visit = |ip: &str, i: usize| {
        let h = [("User-Agent", IPHONE), ("X-Forwarded-For", ip), ("Accept", "*/*"), ("Accept-Language", "en")];
        s.get(&format!("/s/pool?sub1=v{i}"), &h).header("location").unwrap().to_string()
    };
    // US → us-only (6); SE → se-capped once, then all capped (2); GB → no offer targets it (4).
    let us: Vec<String> = (0..6).map(|i| visit("216.160.83.56", i)).collect();
    assert!(us.iter().all(|l| l.starts_with("https://us.example/")));
    for i in 0..3 {
        visit("89.160.20.112", i);
    }
    for i in 0..4 {
        assert_eq!(visit("81.2.69.160", i), "https://fallback.example/");
    }
    let cid = us[0].split("cid=").nth(1).unwrap();
    assert_eq!(s.get(&format!("/postback?click_id={cid}&token=t&payout=2"), &[]).status, 200);

    s.wait_stored(13);
    let r = s.admin("GET", "/api/v1/coverage?smartlink=pool&period=1d", None).json();
    assert_eq!(r["clicks"], 13, "{r}");
    assert_eq!(r["fallback_clicks"], 6, "{r}");
    assert_eq!(r["by_reason"], serde_json::json!({"all_capped": 2, "no_targeting_match": 4}));
    let gaps = r["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 2, "{r}");
    // Routed EPC: 2.0 earned on 7 routed clicks; neither GB nor SE has 100
    // routed clicks of its own, so the smartlink's is the reference.
    let (gb, se) = (&gaps[0], &gaps[1]);
    assert_eq!((gb["country"].as_str(), gb["eligible_offers"].as_u64()), (Some("GB"), Some(0)));
    assert_eq!(gb["missed_revenue_estimate"], 1.1429);
    assert!(gb["advice"].as_str().unwrap().starts_with("GB/mobile: 30.8% of clicks, 0 eligible offers"), "{gb}");
    // A paused offer of the pool targets GB: resuming it is the advice.
    assert_eq!(gb["paused_offers"], serde_json::json!(["gb-paused"]));
    assert!(gb["advice"].as_str().unwrap().contains("gb-paused in the pool target it but paused"), "{gb}");
    assert_eq!((se["country"].as_str(), se["eligible_offers"].as_u64()), (Some("SE"), Some(1)));
    assert_eq!(se["reasons"], serde_json::json!({"all_capped": 2}));
    assert!(se["advice"].as_str().unwrap().contains("all capped"), "{se}");
    // Shares per day add up to the day's clicks; the fallback is a row of its own.
    let shares = r["daily_share"].as_array().unwrap();
    let total: f64 = shares.iter().map(|d| d["share"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-3, "{shares:?}");
    let of = |offer: serde_json::Value| shares.iter().find(|d| d["offer"] == offer).unwrap()["clicks"].clone();
    assert_eq!(
        (of("us-only".into()), of("se-capped".into()), of(serde_json::Value::Null)),
        (6.into(), 1.into(), 6.into())
    );

    s.stop();
    let out = std::process::Command::new(bin())
        .args(["coverage", "--smartlink", "pool", "--period", "1d", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("GB/mobile: 30.8% of clicks, 0 eligible offers"), "{text}");
    assert_eq!(unknown_smartlink_exit_code(&dir), 1);
}

/// The CLI names an unknown smartlink and exits non-zero.
fn unknown_smartlink_exit_code(dir: &tempfile::TempDir) -> i32 {
    let out = std::process::Command::new(bin())
        .args(["coverage", "--smartlink", "nope", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown smartlink"), "{out:?}");
    out.status.code().unwrap_or(-1)
}
