//! The weekly (or daily) digest of one smartlink: what happened in a
//! period against the period of the same length before it, what the audit
//! recommends, why EPC changed, which coverage gaps are new and which
//! traffic sources are flagged, as one JSON document with a rendered HTML
//! body and a plain-text body ready to paste in mail or chat.
//!
//! Nothing is computed twice: the breakdowns are [`crate::report::run`]
//! rows (so every column the report gains flows into `current` and
//! `previous`), the recommendations are [`crate::insight::audit`]'s, the
//! decomposition [`crate::insight::explain`]'s, the gaps
//! [`crate::coverage::report`]'s and the flags [`crate::quality::report`]'s,
//! each run over the period's explicit bounds.
//!
//! Periods are aligned by a [`Schedule`]: local days, or weeks that start
//! on the scheduled weekday at local midnight; a period's digest is due at
//! the scheduled hour on the day it ends (the delay leaves time for late
//! postbacks and the click backlog).

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};
use smartlink_core::model::Catalog;
use smartlink_store::Store;

use crate::report::ReportError;

/// The report columns each breakdown shows and compares period over
/// period, in order. The one place to list them: when report rows carry
/// `cost`, `profit` and `roi`, adding them here adds them to the JSON
/// deltas, the HTML and the text.
pub const COLUMNS: &[&str] = &["clicks", "conversions", "revenue", "epc", "cost", "profit", "roi"];

/// The breakdowns: report `group_by` dimensions.
pub const BREAKDOWNS: &[&str] = &["offer", "country", "device"];

/// How often digests are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    Daily,
    Weekly,
}

/// When periods start and end, and when their digests are due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub every: Every,
    /// Weekly: periods start (and end) on this weekday at local midnight.
    pub weekday: chrono::Weekday,
    /// Local hour (0..=23) on the day a period ends when its digest is due.
    pub hour: u32,
    pub tz: Tz,
}

impl Default for Schedule {
    /// ISO weeks (Monday to Monday) in UTC, due Monday 08:00.
    fn default() -> Self {
        Schedule { every: Every::Weekly, weekday: chrono::Weekday::Mon, hour: 8, tz: chrono_tz::UTC }
    }
}

/// A period `[start_ms, end_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Period {
    /// The period of the same length just before this one.
    pub fn previous(self) -> Period {
        Period { start_ms: 2 * self.start_ms - self.end_ms, end_ms: self.start_ms }
    }
}

/// `date` at local `hour`:00 in `tz` (the earliest instant when the clock
/// shows it twice; the first instant after a gap when it never does).
fn local_ms(tz: Tz, date: NaiveDate, hour: u32) -> i64 {
    let mut t = date.and_hms_opt(hour.min(23), 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(x) = tz.from_local_datetime(&t).earliest() {
            return x.timestamp_millis();
        }
        t += chrono::Duration::minutes(30);
    }
    tz.from_utc_datetime(&t).timestamp_millis()
}

impl Schedule {
    fn days(&self) -> i64 {
        match self.every {
            Every::Daily => 1,
            Every::Weekly => 7,
        }
    }

    /// The local date of the first day of the period containing `date`.
    fn first_day(&self, date: NaiveDate) -> NaiveDate {
        match self.every {
            Every::Daily => date,
            Every::Weekly => {
                let back = (date.weekday().num_days_from_monday() + 7 - self.weekday.num_days_from_monday()) % 7;
                date - chrono::Duration::days(back as i64)
            }
        }
    }

    /// The period that contains the local date `date`.
    pub fn period_containing(&self, date: NaiveDate) -> Period {
        let first = self.first_day(date);
        let end = first + chrono::Duration::days(self.days());
        Period { start_ms: local_ms(self.tz, first, 0), end_ms: local_ms(self.tz, end, 0) }
    }

    /// When the digest of `p` is due: the scheduled hour of the day it ends.
    pub fn due_ms(&self, p: Period) -> i64 {
        let end = self.tz.timestamp_millis_opt(p.end_ms).single().map(|t| t.date_naive()).unwrap_or_default();
        local_ms(self.tz, end, self.hour)
    }

    /// The latest period whose digest is due at `now_ms`.
    pub fn latest_due(&self, now_ms: i64) -> Period {
        let today = self.tz.timestamp_millis_opt(now_ms).single().map(|t| t.date_naive()).unwrap_or_default();
        // The period that ended last (at or before today's midnight)...
        let mut p = self.period_containing(today - chrono::Duration::days(1));
        if p.end_ms > now_ms {
            p = self.period_containing(today - chrono::Duration::days(1 + self.days()));
        }
        // ...unless its digest is not due yet.
        if self.due_ms(p) > now_ms {
            let first = self.tz.timestamp_millis_opt(p.start_ms).single().map(|t| t.date_naive()).unwrap_or_default();
            p = self.period_containing(first - chrono::Duration::days(1));
        }
        p
    }
}

/// Parses a weekday as the configuration writes it: `mon` .. `sun` (or the
/// full English name).
pub fn parse_weekday(s: &str) -> Option<chrono::Weekday> {
    s.parse().ok()
}

fn bad(param: &'static str, message: String) -> ReportError {
    ReportError::Bad { param, message }
}

/// Builds the digest of `smartlink` for `period` (compared with the period
/// of the same length before it), rendered times in `tz`. `catalog` tells
/// coverage which offers could take a gap; `now_ms` is when it is made.
pub fn digest(
    store: &dyn Store,
    catalog: &Catalog,
    smartlink: &str,
    period: Period,
    tz: Tz,
    now_ms: i64,
) -> Result<Value, ReportError> {
    if period.end_ms <= period.start_ms {
        return Err(bad("period", "must end after it starts".into()));
    }
    let prev = period.previous();
    let ms = |t: i64| t.to_string();

    // Breakdowns: the report's rows for both periods, joined by key.
    let report = |p: Period, group: Option<&str>| {
        let req = crate::report::ReportRequest {
            from: Some(ms(p.start_ms)),
            to: Some(ms(p.end_ms)),
            group_by: group.map(|g| vec![g.to_string()]).unwrap_or_default(),
            filters: vec![("smartlink".into(), smartlink.into())],
            ..Default::default()
        };
        crate::report::run(store, &req, now_ms)
    };
    // The report does not know a smartlink by name it never saw: say so.
    if !store.keys()?.iter().any(|(k, id, _)| *k == smartlink_store::Kind::Smartlink && id == smartlink) {
        return Err(bad("smartlink", format!("unknown smartlink {smartlink:?}")));
    }
    let (cur_total, prev_total) = (report(period, None)?, report(prev, None)?);
    let totals = compare(Some(&cur_total["totals"]), Some(&prev_total["totals"]));
    let mut out = Map::new();
    out.insert("smartlink".into(), smartlink.into());
    out.insert("period".into(), period_json(period, tz));
    out.insert("previous_period".into(), period_json(prev, tz));
    out.insert("tz".into(), tz.name().into());
    out.insert("generated_ms".into(), now_ms.into());
    out.insert("complete".into(), (now_ms >= period.end_ms).into());
    out.insert("columns".into(), json!(COLUMNS));
    out.insert("totals".into(), totals);
    for dim in BREAKDOWNS {
        let (c, p) = (report(period, Some(dim))?, report(prev, Some(dim))?);
        out.insert(format!("by_{dim}"), Value::Array(join_rows(dim, &c["rows"], &p["rows"])));
    }

    // The audit's recommendations (the smartlink vs the best single offer).
    let audit = crate::insight::audit(store, smartlink, Some(&ms(period.start_ms)), period.end_ms - 1)?;
    let segments = audit["segments"].as_array().cloned().unwrap_or_default();
    let recommendations: Vec<Value> = segments
        .iter()
        .filter(|s| !s["recommendation"].is_null())
        .map(|s| {
            json!({
                "segment": s["segment"],
                "clicks": s["clicks"],
                "smartlink_epc": s["smartlink_epc"],
                "smartlink_ci": s["smartlink_ci"],
                "recommendation": s["recommendation"],
            })
        })
        .collect();
    out.insert("recommendations".into(), Value::Array(recommendations));
    out.insert("direct_links".into(), Value::Array(direct_links(&audit)));
    out.insert(
        "audit".into(),
        json!({
            "segments_audited": segments.len(),
            "thin_segments": audit["thin_segments"].as_array().map_or(0, Vec::len),
            "estimator": audit["estimator"],
        }),
    );

    // Why EPC changed, against the previous period.
    let explain = crate::insight::explain(
        store,
        smartlink,
        Some(&ms(period.start_ms)),
        Some(&ms(period.end_ms)),
        Some(&format!("{}..{}", prev.start_ms, prev.end_ms)),
        now_ms,
    )?;
    out.insert(
        "epc_change".into(),
        json!({
            "summary": explain["summary"],
            "baseline": explain["baseline"],
            "current": explain["current"],
            "change": explain["change"],
            "parts": explain["parts"],
            "contributors": explain["contributors"],
        }),
    );

    // Coverage gaps present now and not in the previous period.
    let coverage = |p: Period| {
        let req = crate::coverage::CoverageRequest {
            smartlink: smartlink.into(),
            period: Some(ms(p.start_ms)),
            tz: Some(tz.name().into()),
        };
        crate::coverage::report(store, catalog, &req, p.end_ms - 1)
    };
    let (cov, cov_prev) = (coverage(period)?, coverage(prev)?);
    let seg = |g: &Value| (g["country"].to_string(), g["device"].to_string());
    let before: Vec<_> = cov_prev["gaps"].as_array().into_iter().flatten().map(seg).collect();
    let new_gaps: Vec<Value> =
        cov["gaps"].as_array().into_iter().flatten().filter(|g| !before.contains(&seg(g))).cloned().collect();
    out.insert(
        "coverage".into(),
        json!({
            "clicks": cov["clicks"],
            "fallback_clicks": cov["fallback_clicks"],
            "fallback_share": cov["fallback_share"],
            "previous_fallback_share": cov_prev["fallback_share"],
            "gaps": cov["gaps"].as_array().map_or(0, Vec::len),
            "new_gaps": new_gaps,
        }),
    );

    // Traffic sources the quality report flags, per affiliate and per sub1.
    let mut flagged = Vec::new();
    for by in [None, Some("sub1")] {
        let req = crate::quality::QualityRequest {
            smartlink: smartlink.into(),
            period: Some(ms(period.start_ms)),
            by: by.map(String::from),
        };
        let q = crate::quality::report(store, &req, period.end_ms - 1)?;
        for s in q["sources"].as_array().into_iter().flatten().filter(|s| s["flagged"] == true) {
            flagged.push(json!({
                "by": by.unwrap_or("affiliate"),
                "affiliate": s["affiliate"],
                "sub": s["sub"],
                "clicks": s["clicks"],
                "bot_share": s["bot_share"],
                "suspect_share": s["suspect_share"],
                "flags": s["flags"],
            }));
        }
    }
    out.insert("flagged_sources".into(), Value::Array(flagged));

    let mut v = Value::Object(out);
    let (html, text) = (render_html(&v), render_text(&v));
    v["html"] = html.into();
    v["text"] = text.into();
    Ok(v)
}

fn period_json(p: Period, tz: Tz) -> Value {
    let local = |t: i64| tz.timestamp_millis_opt(t).single().map(|t| t.to_rfc3339()).unwrap_or_default();
    let day =
        |t: i64| tz.timestamp_millis_opt(t).single().map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default();
    json!({
        "start_ms": p.start_ms,
        "end_ms": p.end_ms,
        "start": local(p.start_ms),
        "end": local(p.end_ms),
        // The last day is the one before the (exclusive) end.
        "label": if p.end_ms - p.start_ms <= 25 * 3_600_000 {
            day(p.start_ms)
        } else {
            format!("{} – {}", day(p.start_ms), day(p.end_ms - 1))
        },
    })
}

/// A report row without its key and without `blended_epc` (the report's
/// all-rows EPC, which is `totals.current.epc` here).
fn measures(row: &Value, key: Option<&str>) -> Value {
    let mut m = row.as_object().cloned().unwrap_or_default();
    if let Some(k) = key {
        m.remove(k);
    }
    m.remove("blended_epc");
    Value::Object(m)
}

/// `{current, previous, change, change_pct}` for one row (either side may
/// be missing: zeros).
fn compare(cur: Option<&Value>, prev: Option<&Value>) -> Value {
    let zeros = |other: &Value| {
        Value::Object(
            other
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.is_number())
                .map(|(k, v)| (k.clone(), if v.is_f64() { json!(0.0) } else { json!(0) }))
                .collect(),
        )
    };
    let (c, p) = match (cur, prev) {
        (Some(c), Some(p)) => (c.clone(), p.clone()),
        (Some(c), None) => (c.clone(), zeros(c)),
        (None, Some(p)) => (zeros(p), p.clone()),
        (None, None) => (json!({}), json!({})),
    };
    let (c, p) = (measures(&c, None), measures(&p, None));
    let mut change = Map::new();
    let mut pct = Map::new();
    for col in COLUMNS {
        // ROI without cost on either side is no number: no change either.
        if *col == "roi" && (c[*col].is_null() || p[*col].is_null()) {
            change.insert(col.to_string(), Value::Null);
            pct.insert(col.to_string(), Value::Null);
            continue;
        }
        let (a, b) = (c[*col].as_f64().unwrap_or(0.0), p[*col].as_f64().unwrap_or(0.0));
        let d = a - b;
        let is_int = c[*col].is_u64() && p[*col].is_u64() || c[*col].is_i64() && p[*col].is_i64();
        change.insert(col.to_string(), if is_int { json!(d as i64) } else { json!(round(d)) });
        pct.insert(col.to_string(), if b == 0.0 { Value::Null } else { json!(round(d / b)) });
    }
    json!({ "current": c, "previous": p, "change": change, "change_pct": pct })
}

/// Joins the report rows of two periods by their `dim` value: rows of the
/// current period in its order (most clicks first), then those only in the
/// previous one.
fn join_rows(dim: &str, cur: &Value, prev: &Value) -> Vec<Value> {
    let cur = cur.as_array().cloned().unwrap_or_default();
    let prev = prev.as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for c in &cur {
        let p = prev.iter().find(|p| p[dim] == c[dim]);
        out.push(keyed(
            dim,
            &c[dim],
            compare(Some(&measures(c, Some(dim))), p.map(|p| measures(p, Some(dim))).as_ref()),
        ));
    }
    for p in prev.iter().filter(|p| !cur.iter().any(|c| c[dim] == p[dim])) {
        out.push(keyed(dim, &p[dim], compare(None, Some(&measures(p, Some(dim))))));
    }
    out
}

fn keyed(dim: &str, key: &Value, mut cmp: Value) -> Value {
    let mut m = Map::new();
    m.insert(dim.to_string(), key.clone());
    if let Some(o) = cmp.as_object_mut() {
        m.append(o);
    }
    Value::Object(m)
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A value as a cell: numbers by column (counts whole, money 2 places,
/// EPC 4), null as `—`.
fn cell(col: &str, v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            match col {
                _ if n.is_i64() || n.is_u64() => n.to_string(),
                "epc" | "cr" => format!("{x:.4}"),
                "roi" => format!("{:.1}%", x * 100.0),
                _ => format!("{x:.2}"),
            }
        }
        other => other.to_string(),
    }
}

/// A change as `+12.5%`, `new` (nothing before) or `—` (nothing either time).
/// The audit's direct-link comparisons (every segment, audited or thin),
/// one entry per (segment, direct link) with a sentence saying it.
fn direct_links(audit: &Value) -> Vec<Value> {
    let money = |v: &Value| format!("{:.2}", v.as_f64().unwrap_or(0.0));
    let segments =
        ["segments", "thin_segments"].into_iter().flat_map(|k| audit[k].as_array().cloned().unwrap_or_default());
    let mut out = Vec::new();
    for s in segments {
        let seg = &s["segment"];
        let label = match seg["os"].as_str() {
            Some(os) => {
                format!("{}/{}/{os}", seg["country"].as_str().unwrap_or("?"), seg["device"].as_str().unwrap_or("?"))
            }
            None => format!("{}/{}", seg["country"].as_str().unwrap_or("?"), seg["device"].as_str().unwrap_or("?")),
        };
        for d in s["direct_links"].as_array().into_iter().flatten() {
            let ci = &d["vs_smartlink_ci_per_1000"];
            let text = format!(
                "{label}: {} earned {} per click over {} clicks vs the smartlink; {} per 1,000 clicks (95% CI [{}, {}]), profit {} per 1,000 clicks: {}",
                d["link"].as_str().unwrap_or(""),
                money(&d["epc"]),
                d["clicks"],
                money(&d["vs_smartlink_epc_per_1000"]),
                money(&ci[0]),
                money(&ci[1]),
                money(&d["vs_smartlink_profit_per_1000"]),
                match d["better"].as_str() {
                    Some("direct") => "the direct link wins",
                    Some("smartlink") => "the smartlink wins",
                    _ => "not conclusive yet",
                }
            );
            let mut entry = d.clone();
            entry["segment"] = seg.clone();
            entry["text"] = text.into();
            out.push(entry);
        }
    }
    out
}

fn change_cell(row: &Value, col: &str) -> String {
    match row["change_pct"][col].as_f64() {
        Some(p) => format!("{:+.1}%", p * 100.0),
        None if row["current"][col].as_f64().unwrap_or(0.0) != 0.0 => "new".into(),
        None => "—".into(),
    }
}

fn key_label(dim: &str, v: &Value) -> String {
    match (dim, v) {
        ("offer", Value::Null) => "(fallback)".into(),
        (_, Value::Null) => "(none)".into(),
        (_, Value::String(s)) => s.clone(),
        (_, v) => v.to_string(),
    }
}

fn source_label(s: &Value) -> String {
    let aff = s["affiliate"].as_str().unwrap_or("(no affiliate)");
    match s["sub"].as_str() {
        Some(sub) => format!("{aff} sub1={sub}"),
        None => aff.to_string(),
    }
}

fn flags_text(s: &Value) -> String {
    crate::quality::flag_texts(s).join("; ")
}

fn title(d: &Value) -> String {
    format!("Smartlink {} — {}", d["smartlink"].as_str().unwrap_or(""), d["period"]["label"].as_str().unwrap_or(""))
}

/// The digest as a self-contained HTML document: inline styles only, no
/// external resource, every value from the data escaped.
pub fn render_html(d: &Value) -> String {
    const TD: &str = "padding:4px 8px;border-bottom:1px solid #e5e5e5;text-align:right";
    const TDL: &str = "padding:4px 8px;border-bottom:1px solid #e5e5e5;text-align:left";
    const TH: &str = "padding:4px 8px;border-bottom:2px solid #999;text-align:right;font-weight:600";
    const H2: &str = "font-size:16px;margin:24px 0 8px 0";
    let e = |s: &str| escape_html(s);
    let colour = |row: &Value, col: &str| match row["change"][col].as_f64() {
        Some(x) if x > 0.0 => "color:#1a7f37",
        Some(x) if x < 0.0 => "color:#cf222e",
        _ => "color:#666",
    };
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>");
    h.push_str(&e(&title(d)));
    h.push_str("</title></head><body style=\"margin:0;padding:16px;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#222;background:#fff\">");
    h.push_str(&format!("<h1 style=\"font-size:20px;margin:0 0 4px 0\">{}</h1>", e(&title(d))));
    h.push_str(&format!(
        "<p style=\"margin:0 0 16px 0;color:#666\">{} to {} ({}), compared with {} to {}</p>",
        e(d["period"]["start"].as_str().unwrap_or("")),
        e(d["period"]["end"].as_str().unwrap_or("")),
        e(d["tz"].as_str().unwrap_or("")),
        e(d["previous_period"]["start"].as_str().unwrap_or("")),
        e(d["previous_period"]["end"].as_str().unwrap_or("")),
    ));
    let table = |h: &mut String, heading: &str, dim: Option<&str>, rows: &[Value]| {
        h.push_str(&format!("<h2 style=\"{H2}\">{}</h2>", e(heading)));
        h.push_str("<table style=\"border-collapse:collapse;font-size:13px\"><tr>");
        if let Some(dim) = dim {
            h.push_str(&format!("<th style=\"{TH};text-align:left\">{}</th>", e(dim)));
        }
        for col in COLUMNS {
            h.push_str(&format!("<th style=\"{TH}\">{}</th><th style=\"{TH}\">vs prev.</th>", e(col)));
        }
        h.push_str("</tr>");
        for r in rows {
            h.push_str("<tr>");
            if let Some(dim) = dim {
                h.push_str(&format!("<td style=\"{TDL}\">{}</td>", e(&key_label(dim, &r[dim]))));
            }
            for col in COLUMNS {
                h.push_str(&format!(
                    "<td style=\"{TD}\">{}</td><td style=\"{TD};{}\">{}</td>",
                    e(&cell(col, &r["current"][*col])),
                    colour(r, col),
                    e(&change_cell(r, col))
                ));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    };
    table(&mut h, "Totals", None, std::slice::from_ref(&d["totals"]));
    for dim in BREAKDOWNS {
        let rows = d[format!("by_{dim}")].as_array().cloned().unwrap_or_default();
        table(&mut h, &format!("By {dim}"), Some(dim), &rows);
    }
    h.push_str(&format!("<h2 style=\"{H2}\">Why EPC changed</h2>"));
    h.push_str(&format!(
        "<p style=\"margin:0 0 4px 0\">{}</p><ul style=\"margin:0\">",
        e(d["epc_change"]["summary"].as_str().unwrap_or(""))
    ));
    for c in d["epc_change"]["contributors"].as_array().into_iter().flatten() {
        h.push_str(&format!("<li>{}</li>", e(c["text"].as_str().unwrap_or(""))));
    }
    h.push_str("</ul>");
    h.push_str(&format!("<h2 style=\"{H2}\">Audit: the smartlink vs the best single offer</h2>"));
    let recs = d["recommendations"].as_array().cloned().unwrap_or_default();
    if recs.is_empty() {
        h.push_str(&format!(
            "<p style=\"margin:0\">No offer beats the smartlink with confidence in the {} segments audited ({} with too few clicks).</p>",
            e(&d["audit"]["segments_audited"].to_string()),
            e(&d["audit"]["thin_segments"].to_string())
        ));
    } else {
        h.push_str("<ul style=\"margin:0\">");
        for r in &recs {
            h.push_str(&format!("<li>{}</li>", e(r["recommendation"]["text"].as_str().unwrap_or(""))));
        }
        h.push_str("</ul>");
    }
    h.push_str(&format!("<h2 style=\"{H2}\">Direct links vs the smartlink</h2>"));
    let direct = d["direct_links"].as_array().cloned().unwrap_or_default();
    if direct.is_empty() {
        h.push_str("<p style=\"margin:0\">No direct link to the smartlink's offers had clicks in its segments.</p>");
    } else {
        h.push_str("<ul style=\"margin:0\">");
        for x in &direct {
            h.push_str(&format!("<li>{}</li>", e(x["text"].as_str().unwrap_or(""))));
        }
        h.push_str("</ul>");
    }
    h.push_str(&format!("<h2 style=\"{H2}\">New coverage gaps</h2>"));
    let gaps = d["coverage"]["new_gaps"].as_array().cloned().unwrap_or_default();
    if gaps.is_empty() {
        h.push_str("<p style=\"margin:0\">None.</p>");
    } else {
        h.push_str("<ul style=\"margin:0\">");
        for g in &gaps {
            h.push_str(&format!(
                "<li>{} (~{} missed)</li>",
                e(g["advice"].as_str().unwrap_or("")),
                e(&cell("revenue", &g["missed_revenue_estimate"]))
            ));
        }
        h.push_str("</ul>");
    }
    h.push_str(&format!("<h2 style=\"{H2}\">Flagged traffic sources</h2>"));
    let flagged = d["flagged_sources"].as_array().cloned().unwrap_or_default();
    if flagged.is_empty() {
        h.push_str("<p style=\"margin:0\">None.</p>");
    } else {
        h.push_str("<ul style=\"margin:0\">");
        for s in &flagged {
            h.push_str(&format!(
                "<li>{}: {} clicks — {}</li>",
                e(&source_label(s)),
                e(&s["clicks"].to_string()),
                e(&flags_text(s))
            ));
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

/// Text from the data with control characters (newlines included) made
/// spaces, so a hostile sub-id cannot forge lines of the text body.
fn plain(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The digest as plain text (aligned tables, one list item a line).
pub fn render_text(d: &Value) -> String {
    let mut t = format!(
        "{}\n{} to {} ({}), compared with the period before\n",
        plain(&title(d)),
        d["period"]["start"].as_str().unwrap_or(""),
        d["period"]["end"].as_str().unwrap_or(""),
        d["tz"].as_str().unwrap_or("")
    );
    let table = |t: &mut String, heading: &str, dim: Option<&str>, rows: &[Value]| {
        t.push_str(&format!("\n{heading}\n"));
        let mut lines: Vec<Vec<String>> = Vec::new();
        let mut head: Vec<String> = dim.map(|d| vec![d.to_string()]).unwrap_or_default();
        for col in COLUMNS {
            head.push(col.to_string());
            head.push("vs prev.".into());
        }
        lines.push(head);
        for r in rows {
            let mut l: Vec<String> = dim.map(|dim| vec![plain(&key_label(dim, &r[dim]))]).unwrap_or_default();
            for col in COLUMNS {
                l.push(cell(col, &r["current"][*col]));
                l.push(change_cell(r, col));
            }
            lines.push(l);
        }
        let widths: Vec<usize> =
            (0..lines[0].len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
        for l in &lines {
            let cells: Vec<String> = l
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| if i == 0 && dim.is_some() { format!("{c:<w$}") } else { format!("{c:>w$}") })
                .collect();
            t.push_str(&format!("  {}\n", cells.join("  ").trim_end()));
        }
    };
    table(&mut t, "Totals", None, std::slice::from_ref(&d["totals"]));
    for dim in BREAKDOWNS {
        let rows = d[format!("by_{dim}")].as_array().cloned().unwrap_or_default();
        table(&mut t, &format!("By {dim}"), Some(dim), &rows);
    }
    t.push_str(&format!("\nWhy EPC changed\n  {}\n", d["epc_change"]["summary"].as_str().unwrap_or("")));
    for c in d["epc_change"]["contributors"].as_array().into_iter().flatten() {
        t.push_str(&format!("  - {}\n", plain(c["text"].as_str().unwrap_or(""))));
    }
    t.push_str("\nAudit: the smartlink vs the best single offer\n");
    let recs = d["recommendations"].as_array().cloned().unwrap_or_default();
    if recs.is_empty() {
        t.push_str(&format!(
            "  No offer beats the smartlink with confidence in the {} segments audited ({} with too few clicks).\n",
            d["audit"]["segments_audited"], d["audit"]["thin_segments"]
        ));
    }
    for r in &recs {
        t.push_str(&format!("  - {}\n", plain(r["recommendation"]["text"].as_str().unwrap_or(""))));
    }
    t.push_str("\nDirect links vs the smartlink\n");
    let direct = d["direct_links"].as_array().cloned().unwrap_or_default();
    if direct.is_empty() {
        t.push_str("  No direct link to the smartlink's offers had clicks in its segments.\n");
    }
    for x in &direct {
        t.push_str(&format!("  - {}\n", plain(x["text"].as_str().unwrap_or(""))));
    }
    t.push_str("\nNew coverage gaps\n");
    let gaps = d["coverage"]["new_gaps"].as_array().cloned().unwrap_or_default();
    if gaps.is_empty() {
        t.push_str("  None.\n");
    }
    for g in &gaps {
        t.push_str(&format!(
            "  - {} (~{} missed)\n",
            plain(g["advice"].as_str().unwrap_or("")),
            cell("revenue", &g["missed_revenue_estimate"])
        ));
    }
    t.push_str("\nFlagged traffic sources\n");
    let flagged = d["flagged_sources"].as_array().cloned().unwrap_or_default();
    if flagged.is_empty() {
        t.push_str("  None.\n");
    }
    for s in &flagged {
        t.push_str(&format!("  - {}: {} clicks — {}\n", plain(&source_label(s)), s["clicks"], flags_text(s)));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn weekly(weekday: Weekday, hour: u32, tz: Tz) -> Schedule {
        Schedule { every: Every::Weekly, weekday, hour, tz }
    }

    #[test]
    fn the_latest_due_week_is_the_iso_week_that_ended_once_its_hour_has_come() {
        let s = Schedule::default();
        let week = Period { start_ms: ms("2026-11-30T00:00:00Z"), end_ms: ms("2026-12-07T00:00:00Z") };
        let before = Period { start_ms: ms("2026-11-23T00:00:00Z"), end_ms: ms("2026-11-30T00:00:00Z") };
        assert_eq!(s.latest_due(ms("2026-12-07T08:00:00Z")), week);
        assert_eq!(s.latest_due(ms("2026-12-09T15:00:00Z")), week, "mid-week: still the last full week");
        assert_eq!(s.latest_due(ms("2026-12-13T23:59:59Z")), week);
        assert_eq!(s.latest_due(ms("2026-12-07T07:59:59Z")), before, "not due before 08:00 on Monday");
        assert_eq!(s.due_ms(week), ms("2026-12-07T08:00:00Z"));
        assert_eq!(s.period_containing(NaiveDate::from_ymd_opt(2026, 12, 6).unwrap()), week);
        assert_eq!(week.previous(), before);
    }

    #[test]
    fn weeks_start_on_the_scheduled_weekday_at_local_midnight_in_the_configured_timezone() {
        let s = weekly(Weekday::Wed, 9, chrono_tz::Europe::Berlin);
        let p = s.latest_due(ms("2026-12-07T12:00:00Z"));
        assert_eq!(p, Period { start_ms: ms("2026-11-25T00:00:00+01:00"), end_ms: ms("2026-12-02T00:00:00+01:00") });
        assert_eq!(s.due_ms(p), ms("2026-12-02T09:00:00+01:00"));
    }

    #[test]
    fn a_daily_period_is_yesterday_from_its_hour_on() {
        let s = Schedule { every: Every::Daily, hour: 6, ..Schedule::default() };
        let day = |d: &str, e: &str| Period { start_ms: ms(d), end_ms: ms(e) };
        assert_eq!(s.latest_due(ms("2026-12-07T06:00:00Z")), day("2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z"));
        assert_eq!(s.latest_due(ms("2026-12-07T05:00:00Z")), day("2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z"));
    }

    #[test]
    fn a_week_across_a_daylight_saving_change_is_an_hour_longer_and_still_aligned() {
        let s = weekly(Weekday::Mon, 8, chrono_tz::Europe::Berlin);
        let p = s.period_containing(NaiveDate::from_ymd_opt(2026, 10, 28).unwrap());
        assert_eq!(p.start_ms, ms("2026-10-26T00:00:00+01:00"));
        let p = s.period_containing(NaiveDate::from_ymd_opt(2026, 10, 25).unwrap());
        assert_eq!((p.start_ms, p.end_ms), (ms("2026-10-19T00:00:00+02:00"), ms("2026-10-26T00:00:00+01:00")));
        assert_eq!(p.end_ms - p.start_ms, 7 * 86_400_000 + 3_600_000);
    }

    /// A digest document with hostile names where the data puts names.
    fn hostile() -> Value {
        let evil = "<script>alert('x')</script>&\"";
        let row = |dim: &str| {
            let mut r = compare(Some(&json!({"clicks": 10, "conversions": 1, "revenue": 2.5, "epc": 0.25})), None);
            r[dim] = json!(evil);
            r
        };
        json!({
            "smartlink": evil,
            "period": {"label": evil, "start": evil, "end": "e"},
            "previous_period": {"start": "s", "end": "e"},
            "tz": "UTC",
            "totals": compare(Some(&json!({"clicks": 10, "conversions": 1, "revenue": 2.5, "epc": 0.25})), None),
            "by_offer": [row("offer")],
            "by_country": [row("country")],
            "by_device": [row("device")],
            "epc_change": {"summary": evil, "contributors": [{"text": evil}]},
            "recommendations": [{"recommendation": {"text": evil}}],
            "audit": {"segments_audited": 1, "thin_segments": 0},
            "coverage": {"new_gaps": [{"advice": evil, "missed_revenue_estimate": 1.0}]},
            "flagged_sources": [{"affiliate": evil, "sub": "<img src=x onerror=alert(1)>\nFAKE LINE", "clicks": 60,
                                 "flags": [{"signal": "bot_share", "value": 0.9, "rest": 0.1}]}],
        })
    }

    #[test]
    fn every_name_in_the_html_body_is_escaped_and_nothing_is_loaded_from_elsewhere() {
        let h = render_html(&hostile());
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"), "{h}");
        assert!(h.contains("&lt;img src=x onerror=alert(1)&gt;"));
        for external in ["src=", "href=", "<link", "<style", "url("] {
            assert!(!h.replace("&lt;img src=x", "").contains(external), "{external} in {h}");
        }
    }

    #[test]
    fn a_hostile_sub_id_cannot_forge_a_line_of_the_text_body() {
        let t = render_text(&hostile());
        assert!(t.lines().all(|l| !l.starts_with("FAKE LINE")), "{t}");
        assert!(t.contains("sub1=<img src=x onerror=alert(1)> FAKE LINE"), "{t}");
    }

    #[test]
    fn each_direct_link_beside_the_smartlink_gets_a_line_with_its_ci_and_verdict() {
        let audit = json!({
            "segments": [{"segment": {"country": "US", "device": "mobile", "os": null}, "direct_links": [
                {"link": "direct:o1", "clicks": 300, "epc": 0.8, "vs_smartlink_epc_per_1000": 120.0,
                 "vs_smartlink_ci_per_1000": [40.0, 200.0], "vs_smartlink_profit_per_1000": 90.5, "better": "direct"}]}],
            "thin_segments": [{"segment": {"country": "DE", "device": "desktop", "os": "windows"}, "direct_links": [
                {"link": "direct:o2", "clicks": 3, "epc": 0.0, "vs_smartlink_epc_per_1000": -10.0,
                 "vs_smartlink_ci_per_1000": [-90.0, 70.0], "vs_smartlink_profit_per_1000": -12.0, "better": "unclear"}]},
                {"segment": {"country": "FR", "device": "mobile", "os": null}, "direct_links": []}],
        });
        let lines = direct_links(&audit);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0]["text"],
            "US/mobile: direct:o1 earned 0.80 per click over 300 clicks vs the smartlink; 120.00 per 1,000 clicks \
             (95% CI [40.00, 200.00]), profit 90.50 per 1,000 clicks: the direct link wins"
        );
        assert!(lines[1]["text"].as_str().unwrap().starts_with("DE/desktop/windows: direct:o2"));
        assert!(lines[1]["text"].as_str().unwrap().ends_with("not conclusive yet"));
        assert_eq!(lines[1]["segment"]["country"], "DE");
    }

    #[test]
    fn changes_are_absolute_and_relative_to_the_previous_period() {
        let c = compare(
            Some(&json!({"clicks": 150, "conversions": 3, "revenue": 6.0, "epc": 0.04})),
            Some(&json!({"clicks": 100, "conversions": 0, "revenue": 5.0, "epc": 0.05})),
        );
        assert_eq!(
            c["change"],
            json!({"clicks": 50, "conversions": 3, "revenue": 1.0, "epc": -0.01, "cost": 0.0, "profit": 0.0, "roi": null})
        );
        assert_eq!(
            c["change_pct"],
            json!({"clicks": 0.5, "conversions": null, "revenue": 0.2, "epc": -0.2, "cost": null, "profit": null,
                   "roi": null})
        );
        assert_eq!(change_cell(&c, "conversions"), "new");
        assert_eq!(change_cell(&c, "clicks"), "+50.0%");
    }
}
