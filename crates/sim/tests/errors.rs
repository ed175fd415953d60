//! A scenario that breaks FORMAT.md is rejected with an error naming the
//! field and what was expected.

use smartlink_sim::{load_scenario, parse_scenario};

const GOOD: &str = "name: ok
duration_hours: 2
traffic: {clicks_per_hour: 10, segments: [{country: US, device: mobile, os: ios, share: 1}]}
offers:
  - {id: a, payout: 1.0, cr: 0.1}
";

/// Replaces `from` by `to` in the good scenario and returns the error text.
fn error_of(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    match parse_scenario(&GOOD.replacen(from, to, 1)) {
        Ok(_) => panic!("accepted: {to}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_good_scenario_is_accepted() {
    let sc = parse_scenario(GOOD).unwrap();
    assert_eq!(sc.offers.len(), 1);
    assert_eq!(sc.start_ms, 1_767_571_200_000, "default start is 2026-01-05T00:00:00Z");
}

#[test]
fn each_broken_field_is_named_with_what_was_expected() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("duration_hours: 2", "duration_hours: two", &["duration_hours", "invalid", "line 2"]),
        ("duration_hours: 2", "duration_hours: 0", &["duration_hours", "expected"]),
        ("duration_hours: 2\n", "", &["duration_hours"]),
        ("clicks_per_hour: 10", "clicks_per_hour: -5", &["traffic.clicks_per_hour", ">= 0"]),
        ("country: US", "country: UK", &["traffic.segments[0].country", "ISO 3166-1"]),
        ("device: mobile", "device: phone", &["traffic.segments[0].device", "desktop, mobile, tablet"]),
        ("os: ios", "os: beos", &["traffic.segments[0].os", "windows"]),
        ("share: 1", "share: 0", &["traffic.segments", "sum"]),
        ("payout: 1.0", "payout: 1.0, payot: 2", &["offers[0]", "payot"]),
        ("cr: 0.1", "cr: 1.5", &["offers[0].cr", "between 0 and 1"]),
        ("cr: 0.1", "cr: 0.1, cr_by_segment: {\"US/mobile\": 0.2}", &["offers[0].cr_by_segment", "COUNTRY/device/os"]),
        ("cr: 0.1", "cr: 0.1, cr_by_hour: [1, 2]", &["offers[0].cr_by_hour", "24"]),
        ("cr: 0.1", "cr: 0.1, approval_rate: 2", &["offers[0].approval_rate", "between 0 and 1"]),
        ("cr: 0.1", "cr: 0.1, status: sleeping", &["offers[0].status", "active or paused"]),
        ("cr: 0.1", "cr: 0.1, targeting: {hours: [25]}", &["offers[0].targeting.hours[0]", "0..23"]),
        ("cr: 0.1", "cr: 0.1, daily_cap: {conversions: -1}", &["offers[0].daily_cap.conversions"]),
        ("{id: a,", "{id: \"a b\",", &["offers[0].id"]),
        ("name: ok", "name: ok\nstart: yesterday", &["start", "RFC 3339"]),
        ("name: ok", "name: ok\nevents: [{at_hour: 1, offer: zz, payout: 2}]", &["events[0].offer", "zz"]),
        ("name: ok", "name: ok\nevents: [{at_hour: 1, offer: a}]", &["events[0]", "payout, status"]),
        (
            "name: ok",
            "name: ok\nevents: [{at_hour: 1, add_offer: {id: a, payout: 1}}]",
            &["events[0].add_offer.id", "already exists"],
        ),
    ];
    for (from, to, needles) in cases {
        let msg = error_of(from, to);
        for n in *needles {
            assert!(msg.contains(n), "error for {to:?} should mention {n:?}: {msg}");
        }
    }
}

#[test]
fn a_load_error_names_the_file() {
    let dir = std::env::temp_dir().join(format!("smartlink-sim-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, GOOD.replace("payout: 1.0", "payout: -1")).unwrap();
    let msg = load_scenario(&path).unwrap_err().to_string();
    assert!(msg.contains("bad.yaml") && msg.contains("offers[0].payout"), "{msg}");
    let missing = load_scenario(&dir.join("nope.yaml")).unwrap_err().to_string();
    assert!(missing.contains("nope.yaml"), "{missing}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_public_scenarios_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let sc = load_scenario(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!sc.offers.is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "expected the four public scenario families (basic, daypart, drift, slow-postbacks) in {}, found {seen}",
        dir.display()
    );
}
