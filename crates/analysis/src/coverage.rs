//! Coverage gaps and routing transparency (`GET /api/v1/coverage`,
//! `smartlink coverage`): where a smartlink's traffic fell through to the
//! fallback URL and why, what that likely cost, which segments would gain
//! most from a new offer, and each offer's share of the clicks per day.
//!
//! Counts cover human and suspect clicks (bots and previews are diverted on
//! purpose, not gaps). Missed revenue is an estimate: the segment's fallback
//! clicks times the EPC the smartlink earned on routed clicks from the same
//! country in the period (its overall routed EPC when the country has fewer
//! than [`MIN_REFERENCE_CLICKS`]).

use std::collections::{BTreeMap, HashMap};

use chrono::TimeZone;
use serde_json::{json, Value};
use smartlink_core::model::{Catalog, Country, Device, Status};
use smartlink_store::{Dim, DimValue, Kind, Measures, RollupQuery, Store};

use crate::report::ReportError;

/// Routed clicks a country needs before its own EPC is the reference.
pub const MIN_REFERENCE_CLICKS: u64 = 100;
/// Gaps smaller than this share of the smartlink's traffic are not listed.
const MIN_GAP_SHARE: f64 = 0.005;

#[derive(Clone, Debug, Default)]
pub struct CoverageRequest {
    pub smartlink: String,
    /// `7d`, `24h`, `today`, ... Default 7d.
    pub period: Option<String>,
    /// IANA timezone of the daily shares. Default UTC.
    pub tz: Option<String>,
}

fn bad(param: &'static str, message: String) -> ReportError {
    ReportError::Bad { param, message }
}

/// Offers of the smartlink that are active and whose country and device
/// targeting accept the segment (hours, OS, browser, language and caps
/// aside: this is about the pool's reach, not one moment).
/// The pool's offers whose targeting takes the country and device: how
/// many are active, and the ids of the paused ones.
fn reachable(cat: &Catalog, slug: &str, country: Country, device: Device) -> (usize, Vec<String>) {
    let Some(sl) = cat.smartlink(slug) else { return (0, Vec::new()) };
    let targeting = sl.offers.iter().map(|&i| &cat.offers[i]).filter(|o| {
        let t = &o.targeting;
        t.countries.as_ref().is_none_or(|c| c.contains(country))
            && !t.exclude_countries.as_ref().is_some_and(|c| c.contains(country))
            && t.devices & (1 << device.index()) != 0
    });
    let (active, paused): (Vec<_>, Vec<_>) = targeting.partition(|o| o.status == Status::Active);
    (active.len(), paused.iter().map(|o| o.id.to_string()).collect())
}

pub fn report(store: &dyn Store, cat: &Catalog, req: &CoverageRequest, now_ms: i64) -> Result<Value, ReportError> {
    let keys = store.keys()?;
    let sl_key = keys
        .iter()
        .find(|(k, id, _)| *k == Kind::Smartlink && *id == req.smartlink)
        .map(|(_, _, key)| *key)
        .ok_or_else(|| bad("smartlink", format!("unknown smartlink {:?}", req.smartlink)))?;
    let tz: chrono_tz::Tz = match &req.tz {
        None => chrono_tz::UTC,
        Some(z) => z.parse().map_err(|_| bad("tz", format!("expected an IANA timezone, got {z:?}")))?,
    };
    let from = crate::report::parse_time(req.period.as_deref().unwrap_or("7d"), tz, now_ms, "period")?;
    let to = now_ms + 1;
    let counted = ["human", "suspect"];

    // Clicks per (country, device) and fallback reason.
    let rows = store.fallback_segments(sl_key, from, to, &counted)?;
    let mut total = 0u64;
    let mut fallback_total = 0u64;
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut segments: BTreeMap<(String, String), (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for (country, device, reason, n) in rows {
        total += n;
        let seg = segments.entry((country, device)).or_default();
        seg.0 += n;
        if !reason.is_empty() {
            fallback_total += n;
            *by_reason.entry(reason.clone()).or_default() += n;
            *seg.1.entry(reason).or_default() += n;
        }
    }

    // Reference EPC of routed traffic, per country and overall (rollups).
    let quality = (Dim::Quality, counted.iter().map(|c| DimValue::Text(c.to_string())).collect());
    let base = RollupQuery {
        from_ms: from,
        to_ms: to,
        filters: vec![(Dim::Smartlink, vec![DimValue::Key(sl_key)]), quality],
        group: vec![Dim::Country, Dim::Offer],
        reasons: vec![],
    };
    let mut routed: HashMap<String, Measures> = HashMap::new();
    let mut routed_all = Measures::default();
    for (key, m) in store.rollup(&base)? {
        if let [DimValue::Text(country), DimValue::Key(offer)] = &key[..] {
            if *offer != 0 {
                routed.entry(country.clone()).or_default().add(&m);
                routed_all.add(&m);
            }
        }
    }
    let epc = |m: &Measures| if m.clicks == 0 { 0.0 } else { m.revenue / m.clicks as f64 };
    let overall_epc = epc(&routed_all);

    let mut gaps = Vec::new();
    for ((country, device), (clicks, reasons)) in &segments {
        let fb: u64 = reasons.values().sum();
        if fb == 0 || (total > 0 && (fb as f64) < MIN_GAP_SHARE * total as f64) {
            continue;
        }
        let (reference, basis) = match routed.get(country) {
            Some(m) if m.clicks >= MIN_REFERENCE_CLICKS => (epc(m), "country"),
            _ => (overall_epc, "smartlink"),
        };
        let (eligible, paused) = match (Country::parse(country), Device::parse(device)) {
            (Ok(c), Ok(d)) => reachable(cat, &req.smartlink, c, d),
            _ => (0, Vec::new()),
        };
        let share = if total == 0 { 0.0 } else { *clicks as f64 / total as f64 };
        let main = reasons.iter().max_by_key(|(_, n)| **n).map(|(r, _)| r.as_str()).unwrap_or("");
        let advice = match (eligible, main) {
            (0, _) if !paused.is_empty() => format!(
                "{country}/{device}: {:.1}% of clicks, 0 eligible offers: {} in the pool target it but paused; \
                 resume one or add an offer that targets it",
                share * 100.0,
                paused.join(", ")
            ),
            (0, _) => format!(
                "{country}/{device}: {:.1}% of clicks, 0 eligible offers: add an offer that targets it",
                share * 100.0
            ),
            (_, "all_capped") => format!(
                "{country}/{device}: {:.1}% of clicks, {eligible} offers but all capped: raise caps or add an offer",
                share * 100.0
            ),
            (_, "all_paused") => format!("{country}/{device}: {eligible} offers, all paused"),
            (_, "no_targeting_match") => format!(
                "{country}/{device}: {eligible} offers target it, but not this traffic's OS, browser, language or hours"
            ),
            _ => format!("{country}/{device}: {:.1}% of clicks fell back ({main})", share * 100.0),
        };
        gaps.push(json!({
            "country": country,
            "device": device,
            "clicks": clicks,
            "share_of_clicks": round(share),
            "fallback_clicks": fb,
            "fallback_share": round(fb as f64 / *clicks as f64),
            "reasons": reasons,
            "eligible_offers": eligible,
            "paused_offers": paused,
            "reference_epc": round(reference),
            "reference": basis,
            "missed_revenue_estimate": round(fb as f64 * reference),
            "advice": advice,
        }));
    }
    gaps.sort_by(|a, b| {
        let (x, y) = (a["missed_revenue_estimate"].as_f64(), b["missed_revenue_estimate"].as_f64());
        y.partial_cmp(&x)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b["fallback_clicks"].as_u64().cmp(&a["fallback_clicks"].as_u64()))
    });

    // Each offer's share of the clicks, per local day.
    let daily = RollupQuery { group: vec![Dim::Hour, Dim::Offer], ..base };
    let mut days: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    for (key, m) in store.rollup(&daily)? {
        if let [DimValue::Hour(h), DimValue::Key(offer)] = &key[..] {
            let day =
                tz.timestamp_millis_opt(*h).single().map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default();
            *days.entry(day).or_default().entry(*offer).or_default() += m.clicks;
        }
    }
    let name = |key: u32| keys.iter().find(|(k, _, v)| *k == Kind::Offer && *v == key).map(|(_, id, _)| id.clone());
    let mut daily_share = Vec::new();
    for (day, offers) in &days {
        let n: u64 = offers.values().sum();
        let mut rows: Vec<_> = offers.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1));
        for (offer, clicks) in rows {
            daily_share.push(json!({
                "day": day,
                "offer": if *offer == 0 { Value::Null } else { json!(name(*offer)) },
                "clicks": clicks,
                "share": round(*clicks as f64 / n.max(1) as f64),
            }));
        }
    }

    Ok(json!({
        "smartlink": req.smartlink,
        "from": from,
        "to": now_ms,
        "clicks": total,
        "fallback_clicks": fallback_total,
        "fallback_share": round(if total == 0 { 0.0 } else { fallback_total as f64 / total as f64 }),
        "by_reason": by_reason,
        "routed_epc": round(overall_epc),
        "gaps": gaps,
        "daily_share": daily_share,
    }))
}

fn round(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// The coverage report as text (the CLI's default format).
pub fn render(r: &Value) -> String {
    let mut out = format!(
        "{}: {} clicks, {} to the fallback ({:.1}%)",
        r["smartlink"].as_str().unwrap_or(""),
        r["clicks"],
        r["fallback_clicks"],
        r["fallback_share"].as_f64().unwrap_or(0.0) * 100.0
    );
    if let Some(m) = r["by_reason"].as_object() {
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if !parts.is_empty() {
            out.push_str(&format!(" — {}", parts.join(", ")));
        }
    }
    out.push_str("\n\nGaps (largest estimated missed revenue first):\n");
    let gaps = r["gaps"].as_array().cloned().unwrap_or_default();
    if gaps.is_empty() {
        out.push_str("  none\n");
    }
    for g in gaps {
        out.push_str(&format!(
            "  {}  (~{:.2} missed, EPC {:.4} by {})\n",
            g["advice"].as_str().unwrap_or(""),
            g["missed_revenue_estimate"].as_f64().unwrap_or(0.0),
            g["reference_epc"].as_f64().unwrap_or(0.0),
            g["reference"].as_str().unwrap_or("")
        ));
    }
    out.push_str("\nShare of clicks per offer per day:\n");
    for d in r["daily_share"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}  {:<24} {:>8}  {:>5.1}%\n",
            d["day"].as_str().unwrap_or(""),
            d["offer"].as_str().unwrap_or("(fallback)"),
            d["clicks"],
            d["share"].as_f64().unwrap_or(0.0) * 100.0
        ));
    }
    out
}

/// The coverage gaps as CSV (the API's `format=csv`), largest estimated
/// missed revenue first; each gap's fallback reasons as `reason=n` pairs
/// joined with `; `. The daily offer shares are in the JSON only.
pub fn csv(r: &Value) -> String {
    const COLUMNS: [&str; 10] = [
        "country",
        "device",
        "clicks",
        "share_of_clicks",
        "fallback_clicks",
        "fallback_share",
        "eligible_offers",
        "reference_epc",
        "reference",
        "missed_revenue_estimate",
    ];
    let records = r["gaps"].as_array().into_iter().flatten().map(|g| {
        let mut rec: Vec<String> = COLUMNS.iter().map(|c| crate::export::cell(&g[*c])).collect();
        let reasons: Vec<String> = match &g["reasons"] {
            Value::Object(m) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            other => vec![crate::export::cell(other)],
        };
        rec.push(reasons.join("; "));
        rec.push(crate::export::cell(&g["advice"]));
        rec
    });
    crate::export::csv(COLUMNS.iter().chain(&["reasons", "advice"]), records)
}
