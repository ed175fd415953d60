//! The `--report DIR` page: one self-contained `index.html` with inline SVG
//! charts (no scripts, no fonts, no network fetches), readable on a laptop
//! and printable. Its icon is an empty `data:` URL, so a browser showing
//! it over HTTP (the server's `/api/v1/simulations/{id}.html`) does not
//! ask the host for `/favicon.ico` either.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::run::{EventMark, SimReport, Strategy};
use crate::SimError;

const W: f64 = 960.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 36.0;

/// Twenty distinct hues: ten light, then ten dark, so neighbours in the
/// stack never look alike.
const OFFER_COLORS: [&str; 20] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
    "#1f3d7a", "#8c2d04", "#6a3d9a", "#01665e", "#c51b7d", "#7fbc41", "#543005", "#35978f", "#fdb863", "#404040",
];

fn strategy_color(s: Strategy) -> &'static str {
    match s {
        Strategy::Oracle => "#222222",
        Strategy::Smartlink => "#d62728",
        Strategy::Random => "#9e9e9e",
        Strategy::RoundRobin => "#8c6d31",
        Strategy::GreedyEpc => "#1f77b4",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Maps data to the plot area.
struct Frame {
    hours: usize,
    y_min: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, hour: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * hour / self.hours.max(1) as f64
    }
    fn y(&self, v: f64) -> f64 {
        let t = (v - self.y_min) / (self.y_max - self.y_min).max(1e-12);
        TOP + (H - TOP - BOTTOM) * (1.0 - t.clamp(0.0, 1.0))
    }
}

/// Axes, grid, hour ticks and the event markers.
fn axes(out: &mut String, f: &Frame, y_ticks: &[(f64, String)], events: &[EventMark]) {
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="#fff" stroke="#ccc"/>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    for (v, label) in y_ticks {
        let y = f.y(*v);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(label)
        );
    }
    let step = if f.hours <= 48 {
        6
    } else if f.hours <= 24 * 8 {
        24
    } else {
        24 * 7
    };
    let mut h = 0;
    while h <= f.hours {
        let x = f.x(h as f64);
        let label = if step >= 24 { format!("day {}", h / 24) } else { format!("{h} h") };
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#f2f2f2"/><text x="{x:.1}" y="{}" text-anchor="middle" class="tick">{label}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
        h += step;
    }
    for (i, e) in events.iter().enumerate() {
        let x = f.x(e.at_hour as f64);
        let _ = write!(
            out,
            r##"<g class="event"><title>hour {}: {}</title><line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}" stroke="#7b3294" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" class="evlabel">{}</text></g>"##,
            e.at_hour,
            esc(&e.label),
            H - BOTTOM,
            x + 3.0,
            TOP + 12.0 + 11.0 * (i % 4) as f64,
            i + 1
        );
    }
}

fn polyline(out: &mut String, f: &Frame, values: &[f64], color: &str, width: f64, title: &str) {
    let mut pts = String::new();
    for (i, v) in values.iter().enumerate() {
        if v.is_finite() {
            let _ = write!(pts, "{:.1},{:.1} ", f.x(i as f64 + 0.5), f.y(*v));
        }
    }
    let _ = write!(
        out,
        r##"<polyline fill="none" stroke="{color}" stroke-width="{width}" stroke-linejoin="round" points="{pts}"><title>{}</title></polyline>"##,
        esc(title)
    );
}

fn svg_open(out: &mut String, label: &str) {
    let _ = write!(
        out,
        r##"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"##,
        esc(label)
    );
}

fn legend(items: &[(String, &str)]) -> String {
    let mut out = String::from(r#"<div class="legend">"#);
    for (name, color) in items {
        let _ = write!(out, r#"<span><i style="background:{color}"></i>{}</span>"#, esc(name));
    }
    out.push_str("</div>");
    out
}

fn nice_ticks(max: f64, fmt: impl Fn(f64) -> String) -> (f64, Vec<(f64, String)>) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let top = (max / step).ceil() * step;
    let ticks = (0..=((top / step).round() as usize)).map(|i| (i as f64 * step, fmt(i as f64 * step))).collect();
    (top, ticks)
}

/// Hourly expected revenue as a share of the oracle's.
fn ratio_chart(r: &SimReport) -> String {
    let hours = r.duration_hours as usize;
    let oracle = &r.results[0];
    let f = Frame { hours, y_min: 0.0, y_max: 1.2 };
    let mut out = String::new();
    svg_open(&mut out, "hourly percentage of the oracle's expected revenue");
    let ticks: Vec<(f64, String)> = (0..=6).map(|i| (i as f64 * 0.2, format!("{}%", i * 20))).collect();
    axes(&mut out, &f, &ticks, &r.events);
    let y = f.y(1.0);
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#222" stroke-width="0.8"/>"##,
        W - RIGHT
    );
    for s in r.results.iter().skip(1) {
        let vals: Vec<f64> = s
            .hourly
            .iter()
            .zip(&oracle.hourly)
            .map(|(a, o)| if o.expected > 0.0 { a.expected / o.expected } else { f64::NAN })
            .collect();
        let width = if s.strategy == Strategy::Smartlink { 2.2 } else { 1.3 };
        polyline(&mut out, &f, &vals, strategy_color(s.strategy), width, s.strategy.name());
    }
    out.push_str("</svg>");
    out
}

/// Oracle's cumulative expected revenue minus each strategy's.
fn regret_chart(r: &SimReport) -> String {
    let hours = r.duration_hours as usize;
    let oracle = &r.results[0];
    let series: Vec<(Strategy, Vec<f64>)> = r
        .results
        .iter()
        .skip(1)
        .map(|s| {
            let mut acc = 0.0;
            let v = s
                .hourly
                .iter()
                .zip(&oracle.hourly)
                .map(|(a, o)| {
                    acc += o.expected - a.expected;
                    acc
                })
                .collect();
            (s.strategy, v)
        })
        .collect();
    let max = series.iter().flat_map(|s| s.1.iter().copied()).fold(0.0, f64::max);
    let min = series.iter().flat_map(|s| s.1.iter().copied()).fold(0.0, f64::min);
    let (top, mut ticks) = nice_ticks(max, |v| format!("{v:.0}"));
    let f = Frame { hours, y_min: min.min(0.0), y_max: top };
    if min < 0.0 {
        ticks.insert(0, (min, format!("{min:.0}")));
    }
    let mut out = String::new();
    svg_open(&mut out, "cumulative regret against the oracle");
    axes(&mut out, &f, &ticks, &r.events);
    for (s, v) in &series {
        let width = if *s == Strategy::Smartlink { 2.2 } else { 1.3 };
        polyline(&mut out, &f, v, strategy_color(*s), width, s.name());
    }
    out.push_str("</svg>");
    out
}

/// Share of the smartlink strategy's clicks per offer, per hour, stacked.
fn share_chart(r: &SimReport, s: Strategy) -> Option<String> {
    let res = r.result(s)?;
    let hours = r.duration_hours as usize;
    let n = r.offers.len();
    let f = Frame { hours, y_min: 0.0, y_max: 1.0 };
    let mut out = String::new();
    svg_open(&mut out, "share of clicks per offer over time");
    let totals: Vec<f64> = res.hourly.iter().map(|h| h.offer_clicks.iter().map(|&c| c as f64).sum()).collect();
    let mut base = vec![0.0; hours];
    for o in 0..n {
        let top: Vec<f64> = (0..hours)
            .map(|h| base[h] + if totals[h] > 0.0 { res.hourly[h].offer_clicks[o] as f64 / totals[h] } else { 0.0 })
            .collect();
        if top.iter().zip(&base).all(|(t, b)| t - b < 1e-9) {
            continue;
        }
        let mut d = String::new();
        for (h, &y) in top.iter().enumerate() {
            let (x0, x1) = (f.x(h as f64), f.x(h as f64 + 1.0));
            let _ = write!(d, "{}{x0:.1},{:.1} {x1:.1},{:.1} ", if h == 0 { "M" } else { "L" }, f.y(y), f.y(y));
        }
        for (h, &y) in base.iter().enumerate().rev() {
            let (x0, x1) = (f.x(h as f64), f.x(h as f64 + 1.0));
            let _ = write!(d, "L{x1:.1},{:.1} {x0:.1},{:.1} ", f.y(y), f.y(y));
        }
        let _ = write!(
            out,
            r##"<path d="{d}Z" fill="{}" fill-opacity="0.9"><title>{}</title></path>"##,
            OFFER_COLORS[o % 20],
            esc(&r.offers[o])
        );
        base = top;
    }
    let ticks: Vec<(f64, String)> = (0..=4).map(|i| (i as f64 * 0.25, format!("{}%", i * 25))).collect();
    // Axes last so the grid and event markers are drawn over the areas.
    let mut frame = String::new();
    axes(&mut frame, &f, &ticks, &r.events);
    let frame = frame.replacen(r##"fill="#fff""##, r##"fill="none""##, 1);
    out.push_str(&frame);
    out.push_str("</svg>");
    Some(out)
}

fn results_table(r: &SimReport) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>strategy</th><th>expected revenue</th><th>% of oracle</th><th>revenue</th><th>conversions</th><th>rejected</th><th>fallback clicks</th></tr></thead><tbody>",
    );
    for s in &r.results {
        let _ = write!(
            out,
            r#"<tr><td><i class="sw" style="background:{}"></i>{}</td><td>{:.2}</td><td>{:.1}%</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            strategy_color(s.strategy),
            s.strategy.name(),
            s.expected_revenue,
            s.oracle_ratio * 100.0,
            s.revenue,
            s.conversions,
            s.rejected,
            s.fallback_clicks
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The whole page.
pub fn render_html(r: &SimReport) -> String {
    let start = chrono::DateTime::from_timestamp_millis(r.start_ms)
        .map_or(String::new(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
    let strategies: Vec<(String, &str)> =
        r.results.iter().skip(1).map(|s| (s.strategy.name().to_string(), strategy_color(s.strategy))).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>smartlink simulation: {name}</title>
<link rel="icon" href="data:,">
<style>
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto; max-width: 1000px; padding: 24px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 17px; margin: 28px 0 4px; }}
p.sub, p.note {{ color: #555; margin: 2px 0 8px; }}
table {{ border-collapse: collapse; margin: 8px 0; }} th, td {{ padding: 5px 12px; border-bottom: 1px solid #e4e4e4; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }} th {{ font-weight: 600; background: #fafafa; }}
svg {{ width: 100%; height: auto; display: block; }} .tick {{ font-size: 11px; fill: #666; }} .evlabel {{ font-size: 10px; fill: #7b3294; font-weight: 600; }}
.legend span {{ margin-right: 16px; white-space: nowrap; font-size: 13px; }} .legend i, i.sw {{ display: inline-block; width: 11px; height: 11px; margin-right: 5px; vertical-align: -1px; border-radius: 2px; }}
ol.events {{ color: #444; font-size: 13px; margin: 4px 0; padding-left: 22px; }}
</style></head><body>
<h1>Scenario “{name}”</h1>
<p class="sub">seed {seed} · {clicks} clicks over {hours} h from {start} · {offers} offers</p>
<h2>Results</h2>
{table}
<p class="note">Expected revenue sums the true expected value of each chosen offer; % of oracle compares it with the greedy oracle that knows the true rates, on the same clicks.</p>
"#,
        name = esc(&r.scenario),
        seed = r.seed,
        clicks = r.clicks,
        hours = r.duration_hours,
        start = start,
        offers = r.offers.len(),
        table = results_table(r),
    );
    if !r.events.is_empty() {
        out.push_str("<h2>Events</h2><ol class=\"events\">");
        for e in &r.events {
            let _ = write!(out, "<li>hour {}: {}</li>", e.at_hour, esc(&e.label));
        }
        out.push_str("</ol><p class=\"note\">Numbered dashed lines mark them on the charts.</p>");
    }
    let _ = write!(
        out,
        "<h2>Hourly expected revenue, % of the oracle</h2>{}{}<h2>Cumulative regret against the oracle</h2><p class=\"note\">Oracle's cumulative expected revenue minus the strategy's; flatter is better.</p>{}{}",
        legend(&strategies),
        ratio_chart(r),
        legend(&strategies),
        regret_chart(r)
    );
    if let Some(chart) = share_chart(r, Strategy::Smartlink) {
        let offers: Vec<(String, &str)> =
            r.offers.iter().enumerate().map(|(i, o)| (o.clone(), OFFER_COLORS[i % 20])).collect();
        let _ = write!(
            out,
            "<h2>Where smartlink sent the clicks: share per offer, per hour</h2>{}{}",
            legend(&offers),
            chart
        );
    }
    out.push_str("</body></html>\n");
    out
}

/// Writes `dir/index.html` (creating `dir`) and returns its path.
pub fn write_html_report(r: &SimReport, dir: &Path) -> Result<PathBuf, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::Report { path: dir.to_path_buf(), source: e })?;
    let path = dir.join("index.html");
    std::fs::write(&path, render_html(r)).map_err(|e| SimError::Report { path: path.clone(), source: e })?;
    Ok(path)
}
