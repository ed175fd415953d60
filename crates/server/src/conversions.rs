//! Admin API for conversions and the outbound postback queue:
//! `GET /api/v1/conversions`, `GET|PATCH /api/v1/conversions/{id}`,
//! `GET /api/v1/postbacks/outbound?state=failed`,
//! `POST /api/v1/postbacks/outbound/{id}/retry`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use smartlink_core::clickid::ClickFacts;
use smartlink_core::conversion::Status as ConvStatus;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_store::{ConversionFilter, ConversionRow, OutboxItem, OutboxState, PostbackIn, Store};

use crate::error::ApiError;
use crate::state::AppState;

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/conversions", get(list))
        .route("/conversions/{id}", get(get_one).patch(patch))
        .route("/report", get(report))
        .route("/quality", get(quality))
        .route("/coverage", get(coverage))
        .route("/history", get(history))
        .route("/audit", get(audit))
        .route("/alerts", get(alerts))
        .route("/explain", get(explain))
        .route("/postbacks/outbound", get(outbound_list))
        .route("/postbacks/outbound/{id}/retry", post(outbound_retry))
        .layer(middleware::from_fn_with_state(state, crate::auth::auth))
}

/// Query parameters of the conversion list (shared with the CLI).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Arrival time bounds, in any of `report::parse_time`'s forms.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Timezone of dates and local times in `from`/`to` (default UTC).
    pub tz: Option<String>,
    pub offer: Option<String>,
    pub smartlink: Option<String>,
    pub affiliate: Option<String>,
    pub status: Option<String>,
    /// Pagination cursor: the `next` value of the previous page.
    pub before: Option<i64>,
    pub limit: Option<usize>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

fn key_of(store: &dyn Store, kind: smartlink_store::Kind, id: &str) -> Result<u32, ApiError> {
    let keys = store.keys().map_err(|e| ApiError::Unexpected(e.into()))?;
    keys.into_iter()
        .find(|(k, i, _)| *k == kind && i == id)
        .map(|(_, _, key)| key)
        .ok_or_else(|| ApiError::NotFound(format!("no {} {id:?}", kind.as_str())))
}

/// Turns a list query into a store filter (names resolved to keys, times
/// read at `now_ms`).
pub fn filter(store: &dyn Store, q: &ListQuery, now_ms: i64) -> Result<ConversionFilter, ApiError> {
    use smartlink_store::Kind;
    let status = match &q.status {
        None => None,
        Some(s) => Some(ConvStatus::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            ApiError::BadRequest(format!("status must be pending, approved, rejected or chargeback, got {s:?}"))
        })?),
    };
    let tz: chrono_tz::Tz = match &q.tz {
        None => chrono_tz::UTC,
        Some(z) => z.parse().map_err(|_| ApiError::BadRequest(format!("tz: expected an IANA timezone, got {z:?}")))?,
    };
    let time = |v: &Option<String>, param| {
        v.as_deref().map(|s| smartlink_analysis::report::parse_time(s, tz, now_ms, param)).transpose()
    };
    Ok(ConversionFilter {
        from_ms: time(&q.from, "from")?,
        to_ms: time(&q.to, "to")?,
        offer: q.offer.as_deref().map(|o| key_of(store, Kind::Offer, o)).transpose()?,
        smartlink: q.smartlink.as_deref().map(|s| key_of(store, Kind::Smartlink, s)).transpose()?,
        affiliate: q.affiliate.as_deref().map(|a| key_of(store, Kind::Affiliate, a)).transpose()?,
        status,
        before: q.before,
        click_id: None,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    })
}

/// The CSV columns of a conversion (`format=csv`): [`conversion_json`]'s
/// fields, its sub-ids as `sub1..sub5`.
pub const CONVERSION_COLUMNS: [&str; 26] = [
    "id",
    "click_id",
    "event",
    "txid",
    "status",
    "payout",
    "currency",
    "payout_base",
    "offer",
    "smartlink",
    "affiliate",
    "country",
    "device",
    "os",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "click_time_ms",
    "time_ms",
    "updated_ms",
    "ctit_secs",
    "over_cap",
    "quality",
    "quality_flags",
];

/// Conversions (as [`conversion_json`] shows them) as CSV.
pub fn conversions_csv(rows: &[Value]) -> String {
    use smartlink_analysis::export::cell;
    let records = rows.iter().map(|c| {
        CONVERSION_COLUMNS
            .iter()
            .map(|col| match col.strip_prefix("sub").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => cell(&c["subs"][n - 1]),
                None => cell(&c[*col]),
            })
            .collect::<Vec<_>>()
    });
    smartlink_analysis::export::csv(CONVERSION_COLUMNS, records)
}

/// A conversion as the API and CLI show it (ids, not numeric keys).
pub fn conversion_json(c: &ConversionRow, names: &Names) -> Value {
    json!({
        "id": c.id,
        "click_id": c.click_id,
        "event": c.event,
        "txid": if c.txid.is_empty() { Value::Null } else { c.txid.clone().into() },
        "status": c.status.as_str(),
        "payout": c.payout,
        "currency": c.currency,
        "payout_base": c.payout_base,
        "offer": names.get(smartlink_store::Kind::Offer, c.offer),
        "smartlink": names.get(smartlink_store::Kind::Smartlink, c.smartlink),
        "affiliate": c.affiliate.map(|a| names.get(smartlink_store::Kind::Affiliate, a)),
        "country": c.country,
        "device": c.device,
        "os": c.os,
        "subs": c.subs,
        "click_time_ms": c.click_ts_ms,
        "time_ms": c.ts_ms,
        "updated_ms": c.updated_ms,
        "ctit_secs": c.ctit_secs,
        "over_cap": c.over_cap,
        "quality": c.quality,
        "quality_flags": if c.quality_flags.is_empty() { Vec::new() } else { c.quality_flags.split(',').collect() },
    })
}

pub use smartlink_analysis::names::Names;

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Unexpected(e.into()))?.map_err(ApiError::Unexpected)
}

async fn list(
    State(app): State<Arc<AppState>>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let format = Format::parse(q.format.as_deref())?;
    let store = app.store.clone();
    let f = filter(&*store, &q, (app.clock)())?;
    let (rows, names) = blocking(move || Ok((store.conversions(&f)?, Names::load(&*store)?))).await?;
    let next = (rows.len() == q.limit.unwrap_or(100).clamp(1, 1000)).then(|| rows.last().map(|r| r.id)).flatten();
    let rows: Vec<Value> = rows.iter().map(|c| conversion_json(c, &names)).collect();
    Ok(match format {
        Format::Csv => csv_response(conversions_csv(&rows)),
        Format::Json => Json(json!({ "conversions": rows, "next": next })).into_response(),
    })
}

/// How a listing or report is answered: JSON (default) or CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    /// The `format` parameter; absent is JSON.
    pub fn parse(v: Option<&str>) -> Result<Format, ApiError> {
        match v {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(ApiError::BadRequest(format!("format: expected json or csv, got {other:?}"))),
        }
    }
}

/// A CSV answer (`text/csv; charset=utf-8`).
pub fn csv_response(body: String) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// An analysis as JSON, or as CSV by `csv`.
fn respond(v: Value, format: Format, csv: fn(&Value) -> String) -> Response {
    match format {
        Format::Json => Json(v).into_response(),
        Format::Csv => csv_response(csv(&v)),
    }
}

async fn get_one(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<crate::auth::Scope>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store.clone();
    let (row, history, names) =
        blocking(move || Ok((store.conversion(id)?, store.conversion_history(id)?, Names::load(&*store)?))).await?;
    let row = row
        .filter(|r| match &scope {
            crate::auth::Scope::Admin => true,
            crate::auth::Scope::Affiliate { key, .. } => r.affiliate == Some(*key),
        })
        .ok_or_else(|| ApiError::NotFound(format!("no conversion {id}")))?;
    let mut v = conversion_json(&row, &names);
    v["history"] = history
        .into_iter()
        .map(|(ts, from, to, source)| json!({"time_ms": ts, "from": from.map(|f| f.as_str()), "to": to.as_str(), "source": source}))
        .collect();
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    status: String,
    /// Who made the change, for the audit trail.
    #[serde(default)]
    by: Option<String>,
}

/// Facts for the router and counters, rebuilt from a stored conversion.
fn facts_of(row: &ConversionRow) -> ClickFacts {
    ClickFacts {
        time_secs: (row.click_ts_ms / 1000) as u32,
        smartlink: row.smartlink,
        offer: Some(row.offer),
        affiliate: row.affiliate,
        segment: Segment {
            country: Country::parse(&row.country).unwrap_or(Country::UNKNOWN),
            device: Device::parse(&row.device).unwrap_or(Device::Desktop),
            os: Os::parse(&row.os).unwrap_or(Os::Other),
        },
        browser: smartlink_core::model::Browser::Other,
        language: None,
        flags: smartlink_visitor::quality::QualityClass::parse(&row.quality).map_or(0, |c| c.flags()),
        nonce: [0; 6],
    }
}

async fn patch(State(app): State<Arc<AppState>>, Path(id): Path<i64>, body: Bytes) -> Result<Response, ApiError> {
    let b: PatchBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body must be {{\"status\": ..., \"by\": ...}}: {e}")))?;
    let status = ConvStatus::ALL.into_iter().find(|s| s.as_str() == b.status).ok_or_else(|| {
        ApiError::Invalid(vec![crate::config::FieldError {
            path: "status".into(),
            message: "expected pending, approved, rejected or chargeback".into(),
        }])
    })?;
    let store = app.store.clone();
    let row = blocking(move || Ok(store.conversion(id)?))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no conversion {id}")))?;
    let pbc = app.postbacks.load_full();
    let mut outbound = Vec::new();
    if let Some(t) = row.affiliate.and_then(|a| pbc.affiliates.get(&a)) {
        outbound.push(t.clone());
    }
    if let Some(t) = pbc.smartlinks.get(&row.smartlink) {
        outbound.push(t.clone());
    }
    let input = PostbackIn {
        click_id: row.click_id.clone(),
        event: row.event.clone(),
        txid: row.txid.clone(),
        status,
        payout: None,
        currency: row.currency.clone(),
        payout_base: None,
        smartlink: row.smartlink,
        offer: row.offer,
        affiliate: row.affiliate,
        country: row.country.clone(),
        device: row.device.clone(),
        os: row.os.clone(),
        browser: row.browser.clone(),
        language: row.language.clone(),
        quality: row.quality.clone(),
        quality_flags: row.quality_flags.clone(),
        click_ts_ms: row.click_ts_ms,
        ts_ms: (app.clock)(),
        over_cap: false,
        default_payout: row.payout,
        default_payout_base: row.payout_base,
        source: format!("admin:{}", b.by.unwrap_or_else(|| "api".into())),
        outbound,
    };
    match crate::postback::record_and_learn(&app, input, &facts_of(&row)).await {
        Ok(r) => Ok(r),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            Err(ApiError::Invalid(vec![crate::config::FieldError { path: "status".into(), message: e.message }]))
        }
        Err(e) => Err(ApiError::Unexpected(anyhow::anyhow!(e.message))),
    }
}

fn outbox_json(o: &OutboxItem) -> Value {
    json!({
        "id": o.id,
        "conversion_id": o.conversion.id,
        "status": o.status.as_str(),
        "target": o.target,
        "state": o.state.as_str(),
        "attempts": o.attempts,
        "next_attempt_ms": o.next_at_ms,
        "last_http_status": o.last_http_status,
        "last_error": o.last_error,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn outbound_list(
    State(app): State<Arc<AppState>>,
    q: Result<Query<OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let state =
        match q.state.as_deref() {
            None => None,
            Some(s) => Some(OutboxState::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!("state must be pending, delivered or failed, got {s:?}"))
            })?),
        };
    let store = app.store.clone();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = blocking(move || Ok(store.outbox(state, limit)?)).await?;
    Ok(Json(json!({ "postbacks": items.iter().map(outbox_json).collect::<Vec<_>>() })))
}

async fn outbound_retry(State(app): State<Arc<AppState>>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let now = (app.clock)();
    if blocking(move || Ok(store.retry_outbox(id, now)?)).await? {
        Ok((StatusCode::ACCEPTED, Json(json!({ "result": "queued", "id": id }))).into_response())
    } else {
        Err(ApiError::NotFound(format!("no failed outbound postback {id}")))
    }
}

async fn report(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut req = smartlink_analysis::report::ReportRequest::default();
    let mut format = Format::Json;
    for (k, v) in q {
        match k.as_str() {
            "format" => format = Format::parse(Some(&v))?,
            "from" => req.from = Some(v),
            "to" => req.to = Some(v),
            "tz" => req.tz = Some(v),
            "group_by" => req.group_by.extend(v.split(',').filter(|s| !s.is_empty()).map(String::from)),
            "sort" => req.sort = Some(v),
            "include_bots" => {
                req.include_bots = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(ApiError::BadRequest(format!("include_bots: expected true or false, got {v:?}"))),
                }
            }
            "limit" => {
                req.limit =
                    Some(v.parse().map_err(|_| ApiError::BadRequest(format!("limit: expected a number, got {v:?}")))?)
            }
            f if smartlink_analysis::report::FILTERS.contains(&f) => req.filters.push((k, v)),
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    let store = app.store.clone();
    let now = (app.clock)();
    let out = analysis(move || smartlink_analysis::report::run(&*store, &req, now)).await?;
    Ok(respond(out.0, format, |v| smartlink_analysis::report::render(v, true)))
}

async fn quality(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut req = smartlink_analysis::quality::QualityRequest::default();
    let mut format = Format::Json;
    for (k, v) in q {
        match k.as_str() {
            "format" => format = Format::parse(Some(&v))?,
            "smartlink" => req.smartlink = v,
            "period" => req.period = Some(v),
            "by" => req.by = Some(v),
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    required_smartlink(&req.smartlink)?;
    let store = app.store.clone();
    let now = (app.clock)();
    let out = analysis(move || smartlink_analysis::quality::report(&*store, &req, now)).await?;
    Ok(respond(out.0, format, smartlink_analysis::quality::csv))
}

async fn coverage(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut req = smartlink_analysis::coverage::CoverageRequest::default();
    let mut format = Format::Json;
    for (k, v) in q {
        match k.as_str() {
            "format" => format = Format::parse(Some(&v))?,
            "smartlink" => req.smartlink = v,
            "period" => req.period = Some(v),
            "tz" => req.tz = Some(v),
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    required_smartlink(&req.smartlink)?;
    let store = app.store.clone();
    let catalog = app.catalog.load_full();
    let now = (app.clock)();
    let out = analysis(move || smartlink_analysis::coverage::report(&*store, &catalog, &req, now)).await?;
    Ok(respond(out.0, format, smartlink_analysis::coverage::csv))
}

async fn history(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let (mut kind, mut id, mut limit) = (None, None, 100usize);
    for (k, v) in q {
        match k.as_str() {
            "kind" => {
                kind = Some(smartlink_store::Kind::ALL.into_iter().find(|x| x.as_str() == v).ok_or_else(|| {
                    ApiError::BadRequest(format!("kind: expected advertiser, affiliate, offer or smartlink, got {v:?}"))
                })?)
            }
            "id" => id = Some(v),
            "limit" => {
                limit = v.parse().map_err(|_| ApiError::BadRequest(format!("limit: expected a number, got {v:?}")))?
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    let store = app.store.clone();
    let rows = blocking(move || Ok(store.history(kind, id.as_deref(), limit.clamp(1, 10_000))?)).await?;
    Ok(Json(json!({ "changes": rows.iter().map(smartlink_analysis::history::row_json).collect::<Vec<_>>() })))
}

/// Runs an analysis (report, quality, coverage, audit, explain) off the
/// async workers; its errors name the parameter at fault.
pub(crate) async fn analysis(
    f: impl FnOnce() -> Result<Value, smartlink_analysis::report::ReportError> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    let out = tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(Json(out?))
}

/// The `smartlink` parameter the per-smartlink analyses need.
fn required_smartlink(slug: &str) -> Result<(), ApiError> {
    if slug.is_empty() {
        return Err(ApiError::BadRequest("smartlink: required".into()));
    }
    Ok(())
}

async fn audit(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let (mut smartlink, mut period) = (String::new(), None);
    for (k, v) in q {
        match k.as_str() {
            "smartlink" => smartlink = v,
            "period" => period = Some(v),
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    required_smartlink(&smartlink)?;
    let store = app.store.clone();
    let now = (app.clock)();
    analysis(move || smartlink_analysis::insight::audit(&*store, &smartlink, period.as_deref(), now)).await
}

async fn explain(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let (mut smartlink, mut from, mut to, mut vs) = (String::new(), None, None, None);
    for (k, v) in q {
        match k.as_str() {
            "smartlink" => smartlink = v,
            "from" => from = Some(v),
            "to" => to = Some(v),
            "vs" => vs = Some(v),
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    required_smartlink(&smartlink)?;
    let store = app.store.clone();
    let now = (app.clock)();
    analysis(move || {
        smartlink_analysis::insight::explain(&*store, &smartlink, from.as_deref(), to.as_deref(), vs.as_deref(), now)
    })
    .await
}

async fn alerts(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut limit = 100usize;
    for (k, v) in q {
        match k.as_str() {
            "limit" => {
                limit = v.parse().map_err(|_| ApiError::BadRequest(format!("limit: expected a number, got {v:?}")))?
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    let store = app.store.clone();
    let rows = blocking(move || Ok(store.alerts(limit.clamp(1, 10_000))?)).await?;
    Ok(Json(json!({ "alerts": rows.iter().map(smartlink_analysis::alerts::row_json).collect::<Vec<_>>() })))
}
