//! The router's current policy for a smartlink's busiest segments: which
//! offer a click of each would go to now, and with what probability
//! (`GET /api/v1/policy`, the dashboard's "where the traffic went" page).
//! Reads the segments' clicks from the store and the policy from the live
//! catalog, so only the server (which holds the routers) can answer it.

use rand::RngCore;
use serde_json::{json, Value};
use smartlink_core::model::{Browser, Catalog, Country, Device, Language, Os, Segment, Strategy};
use smartlink_core::targeting::Visitor;
use smartlink_store::{Dim, DimValue, RollupQuery, Store};

use crate::report::{parse_time, ReportError};

/// Segments shown at most.
pub const MAX_SEGMENTS: usize = 50;

/// A visitor the router would see: the segment, with its most common
/// browser and language (targeting may name them).
struct Busiest {
    segment: Segment,
    browser: Browser,
    language: Option<Language>,
    clicks: u64,
    /// Clicks of the (browser, language) kept.
    top: u64,
}

/// `GET /api/v1/policy?smartlink=SLUG&period=7d&limit=5`: the `limit`
/// busiest segments of the smartlink (human and suspect clicks since
/// `period`), each with where a click of it would go now
/// ([`smartlink_core::engine::policy`] on the live catalog, whose routers
/// hold what was learned). `rng` draws a stale segment policy afresh, as
/// that segment's next click would.
pub fn report(
    store: &dyn Store,
    catalog: &Catalog,
    slug: &str,
    period: Option<&str>,
    limit: usize,
    now_ms: i64,
    rng: &mut dyn RngCore,
) -> Result<Value, ReportError> {
    let bad = |message: String| ReportError::Bad { param: "smartlink", message };
    let sl = catalog.smartlink(slug).ok_or_else(|| bad(format!("unknown smartlink {slug:?}")))?;
    let from = parse_time(period.unwrap_or("7d"), chrono_tz::UTC, now_ms, "period")?;
    let q = RollupQuery {
        from_ms: from,
        to_ms: now_ms + 1,
        filters: vec![
            (Dim::Smartlink, vec![DimValue::Key(sl.key)]),
            (Dim::Quality, vec![DimValue::Text("human".into()), DimValue::Text("suspect".into())]),
        ],
        group: vec![Dim::Country, Dim::Device, Dim::Os, Dim::Browser, Dim::Language],
        reasons: vec![],
    };
    let mut segments: Vec<Busiest> = Vec::new();
    for (k, m) in store.rollup(&q)? {
        let text = |i: usize| match k.get(i) {
            Some(DimValue::Text(t)) => t.as_str(),
            _ => "",
        };
        let Ok(device) = Device::parse(text(1)) else { continue };
        let segment = Segment {
            country: Country::parse(text(0)).unwrap_or(Country::UNKNOWN),
            device,
            os: Os::parse(text(2)).unwrap_or(Os::Other),
        };
        let browser = Browser::parse(text(3)).unwrap_or(Browser::Other);
        let language = Language::parse(text(4)).ok();
        match segments.iter_mut().find(|b| b.segment == segment) {
            Some(b) => {
                b.clicks += m.clicks;
                if m.clicks > b.top {
                    (b.browser, b.language, b.top) = (browser, language, m.clicks);
                }
            }
            None => segments.push(Busiest { segment, browser, language, clicks: m.clicks, top: m.clicks }),
        }
    }
    segments.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.segment.to_string().cmp(&b.segment.to_string())));
    segments.truncate(limit);

    let rows: Vec<Value> = segments
        .iter()
        .map(|b| {
            let visitor = Visitor { segment: b.segment, browser: b.browser, language: b.language };
            let p = smartlink_core::engine::policy(catalog, sl, &visitor, now_ms, rng);
            let offers: Vec<Value> = p
                .offers
                .iter()
                .enumerate()
                .map(|(i, &(oi, prob))| {
                    json!({
                        "offer": catalog.offers[oi].id.as_str(),
                        "probability": (prob * 1e4).round() / 1e4,
                        "best": p.best == Some(i),
                    })
                })
                .collect();
            json!({
                "segment": {
                    "country": b.segment.country.as_str(),
                    "device": b.segment.device.as_str(),
                    "os": b.segment.os.as_str(),
                    "browser": b.browser.as_str(),
                    "language": b.language.as_ref().map(|l| l.as_str().to_string()),
                },
                "clicks": b.clicks,
                "decided_by": if p.fallback.is_some() { "fallback" } else if p.overridden { "override" } else { strategy(&sl.strategy) },
                "fallback_reason": p.fallback.map(|f| f.as_str()),
                "offers": offers,
            })
        })
        .collect();
    Ok(json!({
        "smartlink": slug,
        "strategy": strategy(&sl.strategy),
        "from": from,
        "time_ms": now_ms,
        "segments": rows,
    }))
}

fn strategy(s: &Strategy) -> &'static str {
    match s {
        Strategy::Auto => "auto",
        Strategy::Weighted(_) => "weighted",
        Strategy::Priority => "priority",
    }
}
