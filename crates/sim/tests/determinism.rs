//! Same file + seed + strategy ⇒ byte-identical output.

use smartlink_sim::{render_json, Strategy};

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
