//! Helpers shared by the scenario tests.

use smartlink_sim::{parse_scenario, run, SimReport, Strategy};

/// Parses `yaml` (panicking with the error, which names the field) and runs
/// it with `seed` on `strategies` (the oracle always runs).
pub fn run_yaml(yaml: &str, seed: u64, strategies: &[Strategy]) -> SimReport {
    let sc = parse_scenario(yaml).unwrap_or_else(|e| panic!("test scenario is invalid: {e}"));
    run(&sc, seed, strategies)
}

/// Share of `strategy`'s clicks in `hours` that went to offer index `offer`
/// (pool order).
pub fn share(r: &SimReport, strategy: Strategy, offer: usize, hours: std::ops::Range<usize>) -> f64 {
    let res = r.result(strategy).expect("strategy ran");
    let (mut hit, mut all) = (0u64, 0u64);
    for h in &res.hourly[hours] {
        hit += h.offer_clicks[offer] as u64;
        all += h.offer_clicks.iter().map(|&c| c as u64).sum::<u64>();
    }
    hit as f64 / all.max(1) as f64
}

/// Clicks `strategy` sent to `offer` in `hours`.
pub fn clicks(r: &SimReport, strategy: Strategy, offer: usize, hours: std::ops::Range<usize>) -> u64 {
    r.result(strategy).expect("strategy ran").hourly[hours].iter().map(|h| h.offer_clicks[offer] as u64).sum()
}

/// Expected revenue of `strategy` in `hours`.
pub fn expected(r: &SimReport, strategy: Strategy, hours: std::ops::Range<usize>) -> f64 {
    r.result(strategy).expect("strategy ran").hourly[hours].iter().map(|h| h.expected).sum()
}
