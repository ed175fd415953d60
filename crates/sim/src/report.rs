//! Text outputs of a run: the human table and FORMAT.md's JSON object.

use serde::Serialize;

use crate::run::SimReport;

/// Rounds to 4 decimals so the JSON carries no float noise.
fn r4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

#[derive(Serialize)]
struct JsonReport<'a> {
    scenario: &'a str,
    seed: u64,
    clicks: u64,
    results: Vec<JsonResult>,
}

#[derive(Serialize)]
struct JsonResult {
    strategy: &'static str,
    expected_revenue: f64,
    revenue: f64,
    conversions: u64,
    oracle_ratio: f64,
    rejected: u64,
    fallback_clicks: u64,
}

/// The run as FORMAT.md's one JSON object (plus the `rejected` and
/// `fallback_clicks` fields), without a trailing newline.
pub fn render_json(r: &SimReport) -> String {
    let j = JsonReport {
        scenario: &r.scenario,
        seed: r.seed,
        clicks: r.clicks,
        results: r
            .results
            .iter()
            .map(|s| JsonResult {
                strategy: s.strategy.name(),
                expected_revenue: r4(s.expected_revenue),
                revenue: r4(s.revenue),
                conversions: s.conversions,
                oracle_ratio: r4(s.oracle_ratio),
                rejected: s.rejected,
                fallback_clicks: s.fallback_clicks,
            })
            .collect(),
    };
    serde_json::to_string(&j).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A plain-text table: strategy, expected revenue, % of oracle, revenue,
/// conversions, rejected.
pub fn render_table(r: &SimReport) -> String {
    let mut out = format!("scenario {}  seed {}  clicks {}\n\n", r.scenario, r.seed, r.clicks);
    out.push_str(&format!(
        "{:<12} {:>16} {:>12} {:>12} {:>12} {:>10}\n",
        "strategy", "expected rev.", "% of oracle", "revenue", "conversions", "rejected"
    ));
    for s in &r.results {
        out.push_str(&format!(
            "{:<12} {:>16.2} {:>11.1}% {:>12.2} {:>12} {:>10}\n",
            s.strategy.name(),
            s.expected_revenue,
            s.oracle_ratio * 100.0,
            s.revenue,
            s.conversions,
            s.rejected
        ));
    }
    out
}
