//! Invariants over random small scenarios: a cap is never exceeded, and the
//! engine never chooses an offer the simulator deems ineligible (paused,
//! outside its targeting or hours, or capped) nor falls back while one is
//! eligible.

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use smartlink_sim::Strategy;

use crate::support::{clicks, run_yaml};

const COUNTRIES: [&str; 3] = ["US", "DE", "BR"];

#[derive(Clone, Debug)]
struct Gen {
    payout: f64,
    cr: f64,
    countries: Option<Vec<usize>>,
    hours: Option<Vec<u8>>,
    click_cap: Option<u64>,
    conv_cap: Option<u64>,
    paused: bool,
}

fn offer() -> impl proptest::strategy::Strategy<Value = Gen> {
    (
        0.1..5.0f64,
        0.0..0.3f64,
        prop::option::of(prop::collection::vec(0..3usize, 1..3)),
        prop::option::of(prop::collection::vec(0..24u8, 1..12)),
        prop::option::of(0..60u64),
        prop::option::of(0..8u64),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(payout, cr, countries, hours, click_cap, conv_cap, paused)| Gen {
            payout,
            cr,
            countries,
            hours,
            click_cap,
            conv_cap,
            paused,
        })
}

fn yaml(offers: &[Gen], events: &[(u32, usize, u8)]) -> String {
    let mut s = String::from(
        "name: prop\nduration_hours: 30\ntraffic: {clicks_per_hour: 40, segments: [{country: US, device: mobile, os: ios, share: 1}, {country: DE, device: desktop, os: windows, share: 1}, {country: BR, device: tablet, os: android, share: 1}]}\nconversion_delay_minutes: {mean: 45}\noffers:\n",
    );
    for (i, g) in offers.iter().enumerate() {
        s += &format!("  - {{id: o{i}, payout: {:.3}, cr: {:.4}", g.payout, g.cr);
        let mut t = Vec::new();
        if let Some(c) = &g.countries {
            t.push(format!("countries: [{}]", c.iter().map(|&i| COUNTRIES[i]).collect::<Vec<_>>().join(", ")));
        }
        if let Some(h) = &g.hours {
            t.push(format!("hours: {h:?}"));
        }
        if !t.is_empty() {
            s += &format!(", targeting: {{{}}}", t.join(", "));
        }
        let mut caps = Vec::new();
        if let Some(c) = g.click_cap {
            caps.push(format!("clicks: {c}"));
        }
        if let Some(c) = g.conv_cap {
            caps.push(format!("conversions: {c}"));
        }
        if !caps.is_empty() {
            s += &format!(", daily_cap: {{{}}}", caps.join(", "));
        }
        if g.paused {
            s += ", status: paused";
        }
        s += "}\n";
    }
    if !events.is_empty() {
        s += "events:\n";
        for &(at, o, kind) in events {
            let o = o % offers.len();
            s += &match kind % 4 {
                0 => format!("  - {{at_hour: {at}, offer: o{o}, status: paused}}\n"),
                1 => format!("  - {{at_hour: {at}, offer: o{o}, status: active}}\n"),
                2 => format!("  - {{at_hour: {at}, offer: o{o}, daily_cap: {{clicks: 5}}}}\n"),
                _ => format!("  - {{at_hour: {at}, offer: o{o}, payout: 0.5}}\n"),
            };
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn caps_are_never_exceeded_and_the_engine_agrees_on_eligibility(
        offers in prop::collection::vec(offer(), 1..5),
        events in prop::collection::vec((0..30u32, 0..5usize, 0..4u8), 0..4),
        seed in 0..1000u64,
    ) {
        let mut events = events;
        events.sort_by_key(|e| e.0);
        let r = run_yaml(&yaml(&offers, &events), seed, &Strategy::ALL);
        let sl = r.result(Strategy::Smartlink).unwrap();
        prop_assert_eq!(sl.engine_mismatches, 0, "engine and simulator disagree on eligibility");
        // A click cap no event changes holds on both days.
        for (i, g) in offers.iter().enumerate() {
            let touched = events.iter().any(|e| e.1 % offers.len() == i && e.2 % 4 == 2);
            if let (Some(cap), false) = (g.click_cap, touched) {
                for s in Strategy::ALL {
                    for day in [0..24, 24..30] {
                        let n = clicks(&r, s, i, day.clone());
                        prop_assert!(n <= cap, "{} sent {} clicks to o{} (cap {})", s.name(), n, i, cap);
                    }
                }
            }
            if g.paused && !events.iter().any(|e| e.1 % offers.len() == i && e.2 % 4 == 1) {
                for s in Strategy::ALL {
                    prop_assert_eq!(clicks(&r, s, i, 0..30), 0, "{} chose paused o{}", s.name(), i);
                }
            }
        }
        // Without caps, only targeting and status decide the fallback, the
        // same for every strategy on the shared click stream.
        let uncapped = offers.iter().all(|g| g.click_cap.is_none() && g.conv_cap.is_none()) && events.iter().all(|e| e.2 % 4 != 2);
        if uncapped {
            let fb = r.results[0].fallback_clicks;
            for s in &r.results {
                prop_assert_eq!(s.fallback_clicks, fb, "{} fell back differently", s.strategy.name());
            }
        }
    }
}
