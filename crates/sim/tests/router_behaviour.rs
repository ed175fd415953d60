//! Scenario-level checks of what the production router must handle: each
//! scenario is built so that a router lacking the behaviour fails it.

use smartlink_sim::Strategy::{self, GreedyEpc, Smartlink};

use crate::support::{clicks, expected, run_yaml, share};

const ONE_SEGMENT: &str = "{country: US, device: mobile, os: android, share: 1}";

fn scenario(hours: u32, cph: u32, offers: &str, extra: &str) -> String {
    format!(
        "name: t\nduration_hours: {hours}\ntraffic: {{clicks_per_hour: {cph}, segments: [{ONE_SEGMENT}]}}\noffers:\n{offers}\n{extra}\n"
    )
}

#[test]
fn a_payout_cut_moves_traffic_within_the_hour() {
    let yaml = scenario(
        8,
        600,
        "  - {id: a, payout: 2.0, cr: 0.05}\n  - {id: b, payout: 1.2, cr: 0.05}",
        "events:\n  - {at_hour: 6, offer: a, payout: 0.5}",
    );
    let r = run_yaml(&yaml, 11, &[Smartlink]);
    assert!(share(&r, Smartlink, 0, 2..6) > 0.7, "before the cut the higher payout wins");
    let first = share(&r, Smartlink, 1, 6..7);
    let next = share(&r, Smartlink, 1, 7..8);
    assert!(first > 0.5, "in the hour of the cut {:.0}% went to the now better offer", first * 100.0);
    assert!(next > 0.95, "and {:.0}% in the hour after", next * 100.0);
}

#[test]
fn a_paused_offer_gets_zero_clicks_from_every_strategy() {
    let yaml = scenario(
        6,
        300,
        "  - {id: a, payout: 2.0, cr: 0.05}\n  - {id: b, payout: 1.0, cr: 0.05}\n  - {id: c, payout: 9.0, cr: 0.05, status: paused}",
        "events:\n  - {at_hour: 2, offer: a, status: paused}\n  - {at_hour: 4, offer: a, status: active}",
    );
    let r = run_yaml(&yaml, 3, &Strategy::ALL);
    for s in Strategy::ALL {
        assert_eq!(clicks(&r, s, 0, 2..4), 0, "{} sent clicks to a while paused", s.name());
        assert_eq!(clicks(&r, s, 2, 0..6), 0, "{} sent clicks to an offer paused from the start", s.name());
    }
    assert!(share(&r, Smartlink, 0, 5..6) > 0.7, "a resumed offer is used again");
}

#[test]
fn a_new_better_offer_is_found_within_an_hour() {
    let yaml = scenario(
        12,
        600,
        "  - {id: a, payout: 1.0, cr: 0.05}\n  - {id: b, payout: 1.0, cr: 0.04}",
        "events:\n  - {at_hour: 6, add_offer: {id: c, payout: 1.0, cr: 0.08}}",
    );
    let r = run_yaml(&yaml, 5, &[Smartlink]);
    let first = share(&r, Smartlink, 2, 6..7);
    let settled = share(&r, Smartlink, 2, 8..12);
    assert!(first > 0.3, "c got {:.0}% of its first hour", first * 100.0);
    assert!(settled > 0.85, "c got {:.0}% two hours on", settled * 100.0);
}

#[test]
fn a_silent_halving_of_the_best_offers_conversion_rate_is_detected() {
    // The detector arms after a day of history (within the first day a
    // change cannot be told from a time-of-day pattern).
    let yaml = scenario(
        36,
        600,
        "  - {id: a, payout: 1.0, cr: 0.06}\n  - {id: b, payout: 1.0, cr: 0.04}",
        "conversion_delay_minutes: {mean: 20}\nevents:\n  - {at_hour: 30, offer: a, cr_multiplier: 0.5}",
    );
    // Over twelve seeds: one seed's path decides too much (over seeds 1-60
    // the share moved ranges from 0.01 to 1.00; seed 7 alone went from 0.87
    // to 0.49 with a change that raised the 60-seed mean from 0.82 to 0.86).
    let mut moved = Vec::new();
    for seed in 1..=12 {
        let r = run_yaml(&yaml, seed, &[Smartlink]);
        assert!(share(&r, Smartlink, 0, 24..30) > 0.8, "seed {seed}: a is the best offer before the change");
        // Thirty hours of history at 0.06 would outweigh three at 0.03 for
        // days without change detection (48 h half-life).
        moved.push(share(&r, Smartlink, 1, 33..36));
    }
    let mean = moved.iter().sum::<f64>() / moved.len() as f64;
    assert!(mean > 0.75, "on average only {:.0}% moved to b: {moved:.2?}", mean * 100.0);
    let most = moved.iter().filter(|m| **m > 0.5).count();
    assert!(most >= 8, "most traffic moved to b on only {most} of 12 seeds: {moved:.2?}");
}

#[test]
fn an_offer_whose_conversions_are_mostly_rejected_is_demoted() {
    let yaml = scenario(
        12,
        600,
        "  - {id: a, payout: 1.0, cr: 0.06, approval_rate: 0.3}\n  - {id: b, payout: 1.0, cr: 0.03}",
        "",
    );
    let r = run_yaml(&yaml, 9, &[Smartlink]);
    let b = share(&r, Smartlink, 1, 6..12);
    assert!(b > 0.8, "b (fewer conversions, all approved) got only {:.0}%", b * 100.0);
    assert!(r.result(Smartlink).unwrap().rejected > 0);
}

#[test]
fn a_capped_offer_is_paced_toward_the_segment_where_its_edge_is_largest() {
    // a is best everywhere but only by a hair in DE; its cap covers 83 % of
    // the US traffic. Greedy routing spends the cap on whatever comes first
    // and caps out at 10:00; pacing keeps a for the US all day.
    let yaml = "name: cap
duration_hours: 48
traffic: {clicks_per_hour: 400, segments: [{country: US, device: mobile, os: android, share: 0.5}, {country: DE, device: mobile, os: android, share: 0.5}]}
offers:
  - {id: a, payout: 1.0, cr: 0.1, daily_cap: {conversions: 400}}
  - {id: b, payout: 1.0, cr: 0.09, cr_by_segment: {\"US/*/*\": 0.02}}
conversion_delay_minutes: {mean: 15}
";
    let r = run_yaml(yaml, 13, &[Smartlink, GreedyEpc]);
    let day2 = expected(&r, Smartlink, 24..48) / expected(&r, Strategy::Oracle, 24..48);
    assert!(day2 > 1.08, "paced smartlink made {:.3} of the greedy oracle on day 2", day2);
    let (s, g) = (r.result(Smartlink).unwrap().expected_revenue, r.result(GreedyEpc).unwrap().expected_revenue);
    assert!(s > g * 1.03, "smartlink {s:.1} vs greedy_epc {g:.1}");
}

#[test]
fn a_long_tail_of_sparse_segments_is_routed_well_by_pooling() {
    // 60 segments of ~10 clicks an hour each: per-segment learning would
    // need a day; pooling through the offer and country levels does not.
    let countries = [
        "US", "GB", "DE", "FR", "BR", "IN", "ID", "MX", "ES", "IT", "PL", "NL", "SE", "TR", "JP", "KR", "AU", "CA",
        "AR", "CO",
    ];
    let mut segs = Vec::new();
    for c in countries {
        for (d, o) in [("mobile", "android"), ("mobile", "ios"), ("desktop", "windows")] {
            segs.push(format!("{{country: {c}, device: {d}, os: {o}, share: 1}}"));
        }
    }
    let yaml = format!(
        "name: tail\nduration_hours: 16\ntraffic: {{clicks_per_hour: 600, segments: [{}]}}\noffers:\n  - {{id: a, payout: 1.0, cr: 0.04}}\n  - {{id: b, payout: 1.0, cr: 0.025}}\n  - {{id: c, payout: 2.0, cr: 0.007}}\n",
        segs.join(", ")
    );
    let r = run_yaml(&yaml, 17, &[Smartlink, GreedyEpc]);
    let s = expected(&r, Smartlink, 4..16) / expected(&r, Strategy::Oracle, 4..16);
    let g = expected(&r, GreedyEpc, 4..16) / expected(&r, Strategy::Oracle, 4..16);
    assert!(s > 0.9, "smartlink made {s:.3} of the oracle after 4 h");
    assert!(s > g + 0.1, "smartlink {s:.3} vs greedy_epc {g:.3}");
}

#[test]
fn clicks_younger_than_the_conversion_delay_do_not_count_as_failures() {
    // Postbacks take three hours on average. A better offer joins at hour
    // 6: judged on its young clicks as failures it would look worthless for
    // hours; with the delay modelled it takes over.
    let yaml = scenario(
        16,
        600,
        "  - {id: a, payout: 1.0, cr: 0.05}\n  - {id: b, payout: 1.0, cr: 0.03}",
        "conversion_delay_minutes: {mean: 180}\nevents:\n  - {at_hour: 6, add_offer: {id: c, payout: 1.0, cr: 0.09}}",
    );
    let r = run_yaml(&yaml, 19, &[Smartlink]);
    assert!(share(&r, Smartlink, 0, 3..6) > 0.7, "a leads before c joins, despite the delay");
    let c = share(&r, Smartlink, 2, 11..16);
    assert!(c > 0.75, "c got {:.0}% of hours 11-16", c * 100.0);
}

#[test]
fn an_offer_that_converts_only_in_the_morning_gets_the_mornings() {
    let mut mult = vec!["2.0"; 12];
    mult.extend(vec!["0.25"; 12]);
    let yaml = scenario(
        96,
        200,
        &format!(
            "  - {{id: a, payout: 1.0, cr: 0.04, cr_by_hour: [{}]}}\n  - {{id: b, payout: 1.0, cr: 0.05}}",
            mult.join(", ")
        ),
        "",
    );
    let r = run_yaml(&yaml, 23, &[Smartlink]);
    let last = 72..96;
    let ratio = expected(&r, Smartlink, last.clone()) / expected(&r, Strategy::Oracle, last);
    // Ignoring the hour, a averages 0.045 < 0.05 and would never be chosen:
    // 0.77 of the oracle.
    assert!(ratio > 0.9, "made {ratio:.3} of the oracle on day 4");
    assert!(share(&r, Smartlink, 0, 84..96) < 0.2, "a is avoided in the afternoon");
}
