//! The baseline strategies and the scoring, on scenarios small enough to
//! check by hand.

use smartlink_sim::Strategy::{self, GreedyEpc, Oracle, Random, RoundRobin};

use crate::support::{clicks, run_yaml};

fn one_segment(hours: u32, cph: u32, offers: &str) -> String {
    format!(
        "name: t\nduration_hours: {hours}\ntraffic: {{clicks_per_hour: {cph}, segments: [{{country: US, device: mobile, os: android, share: 1}}]}}\noffers:\n{offers}\n"
    )
}

#[test]
fn expected_revenue_is_the_sum_of_true_expected_values() {
    // EV per click = 0.5 × 0.8 × 2.5 = 1.0, so expected revenue = clicks.
    let r = run_yaml(&one_segment(3, 200, "  - {id: a, payout: 2.5, cr: 0.5, approval_rate: 0.8}"), 1, &Strategy::ALL);
    for s in &r.results {
        assert!((s.expected_revenue - r.clicks as f64).abs() < 1e-6, "{}", s.strategy.name());
        assert_eq!(s.oracle_ratio, 1.0);
        // About 50% convert, 80% of those are approved and paid 2.5.
        let conv = (s.conversions + s.rejected) as f64 / r.clicks as f64;
        assert!((conv - 0.5).abs() < 0.08, "{conv}");
        assert!((s.revenue - 2.5 * s.conversions as f64).abs() < 1e-6);
    }
}

#[test]
fn the_oracle_picks_the_best_eligible_offer_and_respects_targeting() {
    let yaml = "name: t
duration_hours: 2
traffic: {clicks_per_hour: 300, segments: [{country: US, device: mobile, os: ios, share: 1}, {country: DE, device: mobile, os: ios, share: 1}]}
offers:
  - {id: a, payout: 1.0, cr: 0.02}
  - {id: b, payout: 1.0, cr: 0.05, targeting: {countries: [US]}}
";
    let r = run_yaml(yaml, 2, &[]);
    let o = r.result(Oracle).unwrap();
    let us = r.clicks as f64 / 2.0;
    let b = clicks(&r, Oracle, 1, 0..2) as f64;
    assert!((b - us).abs() < us * 0.2, "b gets the US clicks only: {b} of ~{us}");
    assert_eq!(clicks(&r, Oracle, 0, 0..2) + clicks(&r, Oracle, 1, 0..2), r.clicks);
    assert_eq!(o.fallback_clicks, 0);
}

#[test]
fn a_click_no_offer_accepts_goes_to_the_fallback_and_earns_nothing() {
    let yaml = "name: t
duration_hours: 1
traffic: {clicks_per_hour: 200, segments: [{country: FR, device: desktop, os: linux, share: 1}]}
offers:
  - {id: a, payout: 1.0, cr: 0.5, targeting: {countries: [US]}}
";
    let r = run_yaml(yaml, 3, &Strategy::ALL);
    for s in &r.results {
        assert_eq!(s.fallback_clicks, r.clicks, "{}", s.strategy.name());
        assert_eq!(s.expected_revenue, 0.0);
    }
}

#[test]
fn random_picks_uniformly_among_eligible_offers() {
    let r = run_yaml(&one_segment(4, 1500, "  - {id: a, payout: 1, cr: 0.1}\n  - {id: b, payout: 1, cr: 0.1}\n  - {id: c, payout: 1, cr: 0.1, targeting: {hours: [0]}}"), 4, &[Random]);
    let (a, b, c) = (clicks(&r, Random, 0, 0..4), clicks(&r, Random, 1, 0..4), clicks(&r, Random, 2, 0..4));
    let hour0 = r.result(Random).unwrap().hourly[0].offer_clicks.iter().sum::<u32>() as f64;
    assert!((c as f64 - hour0 / 3.0).abs() < hour0 * 0.06, "c only in hour 0, a third of it: {c} of {hour0}");
    assert!((a as f64 - b as f64).abs() < (a + b) as f64 * 0.06, "{a} vs {b}");
}

#[test]
fn round_robin_cycles_through_eligible_offers_per_segment() {
    let r = run_yaml(
        &one_segment(
            2,
            301,
            "  - {id: a, payout: 1, cr: 0.1}\n  - {id: b, payout: 1, cr: 0.1}\n  - {id: c, payout: 1, cr: 0.1}",
        ),
        5,
        &[RoundRobin],
    );
    let n: Vec<u64> = (0..3).map(|o| clicks(&r, RoundRobin, o, 0..2)).collect();
    assert!(n.iter().max().unwrap() - n.iter().min().unwrap() <= 1, "{n:?}");
}

#[test]
fn greedy_epc_tries_each_offer_100_times_then_follows_the_best_epc() {
    // a never converts, b always does: after 100 clicks each in the window,
    // everything goes to b.
    let r = run_yaml(
        &one_segment(6, 200, "  - {id: a, payout: 1, cr: 0.0}\n  - {id: b, payout: 1, cr: 1.0}"),
        6,
        &[GreedyEpc],
    );
    assert_eq!(clicks(&r, GreedyEpc, 0, 0..6), 100);
    assert_eq!(clicks(&r, GreedyEpc, 1, 0..6), r.clicks - 100);
}

#[test]
fn a_daily_click_cap_is_honoured_and_resets_at_midnight() {
    let yaml = one_segment(
        48,
        100,
        "  - {id: a, payout: 2, cr: 0.1, daily_cap: {clicks: 500}}\n  - {id: b, payout: 1, cr: 0.1}",
    );
    let r = run_yaml(&yaml, 7, &Strategy::ALL);
    for s in Strategy::ALL {
        for day in 0..2 {
            let n = clicks(&r, s, 0, day * 24..(day + 1) * 24);
            assert!(n <= 500, "{} sent {n} clicks to a on day {day}", s.name());
        }
    }
    assert_eq!(clicks(&r, Oracle, 0, 0..24), 500, "the oracle uses the whole cap");
    assert_eq!(clicks(&r, Oracle, 0, 24..48), 500, "and again the next day");
}

#[test]
fn a_conversion_cap_counts_approved_conversions_on_the_day_they_arrive() {
    // Conversions are immediate and b never converts: the oracle stops
    // sending clicks to a at exactly 30 approved conversions a day
    // (rejected ones do not count).
    let yaml = one_segment(48, 200, "  - {id: a, payout: 2, cr: 0.5, approval_rate: 0.5, daily_cap: {conversions: 30}}\n  - {id: b, payout: 0.1, cr: 0.0}");
    let r = run_yaml(&yaml, 8, &[]);
    let o = r.result(Oracle).unwrap();
    assert_eq!(o.conversions, 60);
    assert!(o.rejected > 30, "rejected conversions do not stop a: {}", o.rejected);
    assert!(clicks(&r, Oracle, 1, 0..24) > 4000, "the rest of the day goes to b");
}

#[test]
fn the_cr_override_with_the_fewest_wildcards_wins() {
    let yaml = "name: t
duration_hours: 1
traffic: {clicks_per_hour: 10, segments: [{country: US, device: mobile, os: ios, share: 1}]}
offers:
  - {id: a, payout: 1, cr: 0.1, cr_by_segment: {\"*/mobile/*\": 0.2, \"US/*/*\": 0.3, \"US/mobile/*\": 0.4, \"*/*/ios\": 0.5}}
";
    let sc = smartlink_sim::parse_scenario(yaml).unwrap();
    let seg = sc.traffic.segments[0].0;
    assert_eq!(sc.offers[0].cr_for(&seg), 0.4);
}
