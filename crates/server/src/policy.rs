//! `GET /api/v1/policy?smartlink=SLUG`: the router's current policy for a
//! smartlink's busiest segments — which offer each would send a click to,
//! and with what probability — read from the live catalog and router state
//! (the dashboard's "where the traffic went" page shows it). Admin only.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};
use smartlink_analysis::report::{parse_time, ReportError};
use smartlink_core::model::{Browser, Catalog, Country, Device, Language, Os, Segment, Strategy};
use smartlink_core::targeting::Visitor;
use smartlink_store::{Dim, DimValue, RollupQuery, Store};

use crate::error::ApiError;
use crate::openapi as doc;
use crate::openapi::ApiRouter;
use crate::routes;
use crate::state::AppState;

/// The policy route. The caller adds the auth layer (an affiliate key
/// gets `403`: the path is not one it may read).
pub fn routes() -> ApiRouter<Arc<AppState>> {
    ApiRouter::new().routes(routes!(policy => __path_policy))
}

/// Segments shown at most.
const MAX_SEGMENTS: usize = 50;

#[utoipa::path(get, path = "/policy", tag = "reports", security(("admin_token" = [])),
    params(("smartlink" = String, Query, description = "The smartlink"),
           ("period" = Option<String>, Query, description = "Which segments are the busiest: human and suspect clicks since then (default `7d`)"),
           ("limit" = Option<usize>, Query, description = "Segments, 1 to 50 (default 5)")),
    responses((status = 200, description = "The busiest segments, each with every eligible offer's current probability of taking a click", body = doc::Analysis),
              (status = 400, description = "A bad or missing parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn policy(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let (mut smartlink, mut period, mut limit) = (String::new(), None, 5usize);
    for (k, v) in q {
        match k.as_str() {
            "smartlink" => smartlink = v,
            "period" => period = Some(v),
            "limit" => {
                limit =
                    v.parse().ok().filter(|n| (1..=MAX_SEGMENTS).contains(n)).ok_or_else(|| {
                        ApiError::BadRequest(format!("limit: expected 1 to {MAX_SEGMENTS}, got {v:?}"))
                    })?
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    if smartlink.is_empty() {
        return Err(ApiError::BadRequest("smartlink: required".into()));
    }
    let store = app.store.clone();
    let catalog = app.catalog.load_full();
    let now = (app.clock)();
    crate::conversions::analysis(move || answer(&*store, &catalog, &smartlink, period.as_deref(), limit, now)).await
}

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

fn answer(
    store: &dyn Store,
    catalog: &Catalog,
    slug: &str,
    period: Option<&str>,
    limit: usize,
    now_ms: i64,
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

    let rng = &mut rand::rng();
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
