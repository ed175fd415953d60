//! Same file + seed + strategy ⇒ byte-identical output.

use std::sync::atomic::AtomicBool;

use smartlink_sim::{parse_scenario, render_json, run_until, Strategy};

use crate::support::run_yaml;

const YAML: &str = "name: det
duration_hours: 6
traffic: {clicks_per_hour: 400, segments: [{country: US, device: mobile, os: ios, share: 2}, {country: DE, device: desktop, os: windows, share: 1}]}
offers:
  - {id: a, payout: 1.5, cr: 0.04, approval_rate: 0.8, daily_cap: {clicks: 500}}
  - {id: b, payout: 1.0, cr: 0.05, cr_by_segment: {\"DE/*/*\": 0.01}}
conversion_delay_minutes: {mean: 30}
events:
  - {at_hour: 2, offer: b, payout: 1.2}
  - {at_hour: 3, add_offer: {id: c, payout: 3.0, cr: 0.02}}
";

#[test]
fn the_same_seed_gives_byte_identical_json() {
    let a = render_json(&run_yaml(YAML, 42, &Strategy::ALL));
    let b = render_json(&run_yaml(YAML, 42, &Strategy::ALL));
    assert_eq!(a, b);
    let c = render_json(&run_yaml(YAML, 43, &Strategy::ALL));
    assert_ne!(a, c, "another seed gives another run");
}

#[test]
fn a_strategys_result_does_not_depend_on_which_others_run() {
    let all = run_yaml(YAML, 42, &Strategy::ALL);
    let alone = run_yaml(YAML, 42, &[Strategy::Smartlink]);
    assert_eq!(all.result(Strategy::Smartlink), alone.result(Strategy::Smartlink));
    assert_eq!(alone.results.len(), 2, "the oracle always runs");
    assert_eq!(alone.results[0].strategy, Strategy::Oracle);
}

#[test]
fn json_has_the_documented_shape() {
    let r = run_yaml(YAML, 42, &Strategy::ALL);
    let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
    assert_eq!(v["scenario"], "det");
    assert_eq!(v["seed"], 42);
    assert_eq!(v["clicks"].as_u64(), Some(r.clicks));
    let names: Vec<&str> = v["results"].as_array().unwrap().iter().map(|x| x["strategy"].as_str().unwrap()).collect();
    assert_eq!(names, ["oracle", "smartlink", "random", "round_robin", "greedy_epc"]);
    for x in v["results"].as_array().unwrap() {
        for key in ["expected_revenue", "revenue", "oracle_ratio"] {
            assert!(x[key].is_f64() || x[key].is_u64(), "{key} is a number");
        }
        assert!(x["conversions"].is_u64());
    }
    assert_eq!(v["results"][0]["oracle_ratio"], 1.0);
}

#[test]
fn a_run_nobody_stops_is_the_plain_run_and_a_stopped_one_gives_nothing() {
    let sc = parse_scenario(YAML).unwrap();
    let plain = run_yaml(YAML, 42, &Strategy::ALL);
    assert_eq!(run_until(&sc, 42, &Strategy::ALL, &AtomicBool::new(false)), Some(plain));
    assert_eq!(run_until(&sc, 42, &Strategy::ALL, &AtomicBool::new(true)), None);
}

#[test]
fn expected_clicks_sum_each_hours_rate_from_the_start_hour() {
    let sc = parse_scenario(YAML).unwrap();
    assert_eq!(sc.expected_clicks(), 6.0 * 400.0);
    assert_eq!(sc.offer_count(), 3, "two offers and one added by an event");
    // A profile that doubles UTC hour 23 and silences hour 0; the run
    // starts at 22:00, so it covers 22, 23, 0 and 1.
    let mut profile = vec!["1"; 24];
    profile[23] = "2";
    profile[0] = "0";
    let yaml = format!(
        "duration_hours: 4\nstart: 2026-01-05T22:00:00Z\ntraffic: {{clicks_per_hour: 100, hourly_profile: [{}], segments: [{{country: US, device: mobile, os: ios, share: 1}}]}}\noffers: [{{id: a, payout: 1, cr: 0.1}}]\n",
        profile.join(", ")
    );
    let sc = parse_scenario(&yaml).unwrap();
    assert_eq!(sc.expected_clicks(), 100.0 * (1.0 + 2.0 + 0.0 + 1.0));
}
