//! Glue between the store and the pure analyses: the audit
//! ([`crate::audit`]) and the EPC-change explanation ([`crate::explain`]),
//! shared by the HTTP API and the CLI.

use serde_json::{json, Value};
use smartlink_store::{Dim, DimValue, Kind, RollupQuery, Store};

use crate::report::{parse_time, ReportError};

fn bad(param: &'static str, message: String) -> ReportError {
    ReportError::Bad { param, message }
}

fn smartlink_key(keys: &[(Kind, String, u32)], slug: &str) -> Result<u32, ReportError> {
    keys.iter()
        .find(|(k, id, _)| *k == Kind::Smartlink && id == slug)
        .map(|(_, _, key)| *key)
        .ok_or_else(|| bad("smartlink", format!("unknown smartlink {slug:?}")))
}

fn offer_name(keys: &[(Kind, String, u32)], key: u32) -> String {
    keys.iter()
        .find(|(k, _, v)| *k == Kind::Offer && *v == key)
        .map(|(_, id, _)| id.clone())
        .unwrap_or_else(|| format!("#{key}"))
}

/// `GET /api/v1/audit?smartlink=SLUG&period=7d`, `smartlink audit`.
/// `SLUG` may be a direct link (`direct:OFFER`) too. For a smartlink,
/// each segment also compares the smartlink with the direct links to the
/// offers it routed to, on the same segment's logged clicks (see
/// [`direct_links`]).
pub fn audit(store: &dyn Store, smartlink: &str, period: Option<&str>, now_ms: i64) -> Result<Value, ReportError> {
    let keys = store.keys()?;
    let sl = smartlink_key(&keys, smartlink)?;
    let from = parse_time(period.unwrap_or("7d"), chrono_tz::UTC, now_ms, "period")?;
    let rows = store.audit_clicks(sl, from, now_ms + 1)?;
    let clicks: Vec<crate::audit::AuditClick> = rows
        .iter()
        .map(|r| crate::audit::AuditClick {
            country: r.country.clone(),
            device: r.device.clone(),
            os: r.os.clone(),
            offer: r.offer.map(|k| offer_name(&keys, k)),
            propensity: r.propensity,
            revenue: r.revenue,
        })
        .collect();
    let mut out = crate::audit::audit(&clicks, &crate::audit::AuditOptions::default());
    // Each recommendation can be applied as an override with one API call.
    if let Some(segments) = out["segments"].as_array_mut() {
        for s in segments {
            let Some(offer) = s["recommendation"]["offer"].as_str().map(String::from) else { continue };
            let mut ov = json!({ "countries": [s["segment"]["country"]], "devices": [s["segment"]["device"]],
                                 "offer": offer });
            if let Some(os) = s["segment"]["os"].as_str() {
                ov["os"] = json!([os]);
            }
            s["recommendation"]["apply"] = json!({
                "method": "POST",
                "path": format!("/api/v1/smartlinks/{smartlink}/overrides"),
                "body": ov,
            });
        }
    }
    if smartlink_core::model::direct_link_offer(sl).is_none() {
        direct_links(store, &keys, &rows, &mut out, from, now_ms)?;
    }
    out["smartlink"] = smartlink.into();
    out["from"] = from.into();
    out["to"] = now_ms.into();
    Ok(out)
}

/// Per-click mean and its standard error, and the mean cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Epc {
    n: u64,
    epc: f64,
    se: f64,
    cost: f64,
}

fn epc_of<'a>(rows: impl Iterator<Item = &'a smartlink_store::AuditClickRow>) -> Epc {
    let (mut n, mut sum, mut sq, mut cost) = (0u64, 0.0, 0.0, 0.0);
    for r in rows {
        n += 1;
        sum += r.revenue;
        sq += r.revenue * r.revenue;
        cost += r.cost;
    }
    if n == 0 {
        return Epc::default();
    }
    let nf = n as f64;
    let mean = sum / nf;
    let var = if n > 1 { ((sq - nf * mean * mean) / (nf - 1.0)).max(0.0) } else { 0.0 };
    Epc { n, epc: mean, se: (var / nf).sqrt(), cost: cost / nf }
}

/// Adds `direct_links` to each segment (audited or thin): for every offer the
/// smartlink routed to whose direct link (`/o/{offer}`) got clicks in the
/// segment over the same period, the direct link's realised EPC and profit
/// per click next to the smartlink's, and their difference per 1,000
/// clicks with a 95% CI (normal approximation over the two independent
/// samples of logged clicks). Both sides are what happened to real
/// traffic, so they compare only as far as the two links got comparable
/// traffic (the same segment and period; a source that sends its best
/// placements to the direct link makes it look better than the offer is).
fn direct_links(
    store: &dyn Store,
    keys: &[(Kind, String, u32)],
    rows: &[smartlink_store::AuditClickRow],
    out: &mut Value,
    from: i64,
    now_ms: i64,
) -> Result<(), ReportError> {
    let mut offers: Vec<u32> = rows.iter().filter_map(|r| r.offer).collect();
    offers.sort_unstable();
    offers.dedup();
    let mut direct = Vec::new();
    for o in offers {
        let clicks = store.audit_clicks(smartlink_core::model::direct_link_key(o), from, now_ms + 1)?;
        if !clicks.is_empty() {
            direct.push((offer_name(keys, o), clicks));
        }
    }
    // Thin segments too: a realised EPC with its CI says how little is known.
    let Some(obj) = out.as_object_mut() else { return Ok(()) };
    let lists = obj.iter_mut().filter(|(k, _)| *k == "segments" || *k == "thin_segments");
    for s in lists.filter_map(|(_, v)| v.as_array_mut()).flatten() {
        let (country, device) = (s["segment"]["country"].as_str(), s["segment"]["device"].as_str());
        let os = s["segment"]["os"].as_str();
        let inside = |r: &&smartlink_store::AuditClickRow| {
            Some(r.country.as_str()) == country && Some(r.device.as_str()) == device && os.is_none_or(|o| r.os == o)
        };
        let smart = epc_of(rows.iter().filter(inside));
        let list: Vec<Value> = direct
            .iter()
            .filter_map(|(offer, clicks)| {
                let d = epc_of(clicks.iter().filter(inside));
                if d.n == 0 {
                    return None;
                }
                let diff = d.epc - smart.epc;
                let half = 1.96 * (d.se * d.se + smart.se * smart.se).sqrt();
                let profit = |e: &Epc| e.epc - e.cost;
                Some(json!({
                    "link": smartlink_store::direct_link_name(offer),
                    "offer": offer,
                    "clicks": d.n,
                    "epc": round(d.epc),
                    "ci": [round(d.epc - 1.96 * d.se), round(d.epc + 1.96 * d.se)],
                    "cost_per_click": round(d.cost),
                    "profit_per_click": round(profit(&d)),
                    "vs_smartlink_epc_per_1000": round(diff * 1000.0),
                    "vs_smartlink_ci_per_1000": [round((diff - half) * 1000.0), round((diff + half) * 1000.0)],
                    "vs_smartlink_profit_per_1000": round((profit(&d) - profit(&smart)) * 1000.0),
                    "better": if diff - half > 0.0 { "direct" } else if diff + half < 0.0 { "smartlink" } else { "unclear" },
                }))
            })
            .collect();
        if !list.is_empty() {
            s["smartlink_cost_per_click"] = round(smart.cost).into();
            s["smartlink_profit_per_click"] = round(smart.epc - smart.cost).into();
        }
        s["direct_links"] = Value::Array(list);
    }
    Ok(())
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Parses `C..D` (the baseline period of `explain`).
fn parse_range(s: &str, now_ms: i64) -> Result<(i64, i64), ReportError> {
    let (a, b) = s.split_once("..").ok_or_else(|| bad("vs", format!("expected FROM..TO, got {s:?}")))?;
    Ok((parse_time(a, chrono_tz::UTC, now_ms, "vs")?, parse_time(b, chrono_tz::UTC, now_ms, "vs")?))
}

fn cells(
    store: &dyn Store,
    sl: u32,
    from: i64,
    to: i64,
    keys: &[(Kind, String, u32)],
) -> Result<Vec<crate::explain::Cell>, ReportError> {
    let q = RollupQuery {
        from_ms: from,
        to_ms: to,
        filters: vec![
            (Dim::Smartlink, vec![DimValue::Key(sl)]),
            (Dim::Quality, vec![DimValue::Text("human".into()), DimValue::Text("suspect".into())]),
        ],
        group: vec![Dim::Country, Dim::Device, Dim::Offer],
        reasons: vec![],
    };
    Ok(store
        .rollup(&q)?
        .into_iter()
        .filter_map(|(k, m)| match &k[..] {
            [DimValue::Text(c), DimValue::Text(d), DimValue::Key(o)] => Some(crate::explain::Cell {
                segment: format!("{c}/{d}"),
                offer: (*o != 0).then(|| offer_name(keys, *o)),
                clicks: m.clicks,
                conversions: m.approved + m.pending + m.rejected + m.chargebacks,
                approved: m.approved,
                revenue: m.revenue,
            }),
            _ => None,
        })
        .collect())
}

/// `GET /api/v1/explain?smartlink=SLUG&from=A&to=B&vs=C..D`, `smartlink explain`.
/// The current period is `[from, to)` (default the last 24 h); the
/// baseline `vs` defaults to the same length just before it.
pub fn explain(
    store: &dyn Store,
    smartlink: &str,
    from: Option<&str>,
    to: Option<&str>,
    vs: Option<&str>,
    now_ms: i64,
) -> Result<Value, ReportError> {
    let keys = store.keys()?;
    let sl = smartlink_key(&keys, smartlink)?;
    let b_from = parse_time(from.unwrap_or("24h"), chrono_tz::UTC, now_ms, "from")?;
    let b_to = parse_time(to.unwrap_or("now"), chrono_tz::UTC, now_ms, "to")?;
    if b_to <= b_from {
        return Err(bad("to", "must be after from".into()));
    }
    let (a_from, a_to) = match vs {
        Some(v) => parse_range(v, now_ms)?,
        None => (b_from - (b_to - b_from), b_from),
    };
    if a_to <= a_from {
        return Err(bad("vs", "the baseline must end after it starts".into()));
    }
    let baseline = cells(store, sl, a_from, a_to, &keys)?;
    let current = cells(store, sl, b_from, b_to, &keys)?;
    let events: Vec<crate::explain::OfferEvent> = crate::history::offer_events(store, b_from.min(a_to), b_to)
        .map_err(|e| bad("history", e.to_string()))?
        .into_iter()
        .map(|(offer, ts_ms, what)| crate::explain::OfferEvent { offer, ts_ms, what })
        .collect();
    let mut out = crate::explain::explain(&baseline, &current, &events);
    out["smartlink"] = smartlink.into();
    out["periods"] = json!({ "baseline": [a_from, a_to], "current": [b_from, b_to] });
    Ok(out)
}

/// The audit as text (the CLI's default).
pub fn render_audit(out: &Value) -> String {
    let mut text = String::new();
    let seg = |s: &Value| {
        format!(
            "{}/{}{}",
            s["country"].as_str().unwrap_or(""),
            s["device"].as_str().unwrap_or(""),
            s["os"].as_str().map(|o| format!("/{o}")).unwrap_or_default()
        )
    };
    for s in out["segments"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "{}: {} clicks, smartlink EPC {:.4}\n",
            seg(&s["segment"]),
            s["clicks"],
            s["smartlink_epc"].as_f64().unwrap_or(0.0)
        ));
        let rec = &s["recommendation"];
        if let Some(t) = rec["text"].as_str() {
            text.push_str(&format!("  recommend: {t}\n"));
            let a = &rec["apply"];
            text.push_str(&format!(
                "  apply: curl -X POST -H 'Authorization: Bearer $TOKEN' -d '{}' http://HOST{}\n",
                a["body"],
                a["path"].as_str().unwrap_or("")
            ));
        } else {
            let note = s["note"].as_str().unwrap_or("no offer beats the smartlink with confidence");
            text.push_str(&format!("  {note}\n"));
        }
    }
    for t in out["thin_segments"].as_array().into_iter().flatten() {
        text.push_str(&format!("{}: {}\n", seg(&t["segment"]), t["note"].as_str().unwrap_or("")));
    }
    text
}

/// The explanation as text (the CLI's default).
pub fn render_explain(out: &Value) -> String {
    let mut text = format!("{}\n", out["summary"].as_str().unwrap_or(""));
    for c in out["contributors"].as_array().into_iter().flatten() {
        text.push_str(&format!("  {}\n", c["text"].as_str().unwrap_or("")));
    }
    text
}
