//! Admin API for conversions and the outbound postback queue:
//! `GET /api/v1/conversions`, `GET|PATCH /api/v1/conversions/{id}`,
//! `GET /api/v1/postbacks/outbound?state=failed`,
//! `POST /api/v1/postbacks/outbound/{id}/retry`.

use std::sync::Arc;

use crate::openapi::ApiRouter;
use crate::routes;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use smartlink_analysis::report::{Money, PayoutShares};
use smartlink_core::clickid::ClickFacts;
use smartlink_core::conversion::Status as ConvStatus;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_store::{ConversionFilter, ConversionRow, HistoryEntry, OutboxItem, OutboxState, PostbackIn, Store};

use crate::auth::Scope;
use crate::error::{ApiError, ApiPath};
use crate::metrics::QueryKind;
use crate::openapi as doc;
use crate::state::AppState;

/// Conversions, the outbox, reports, cost imports and the analyses. The
/// caller adds the auth layer.
pub fn routes() -> ApiRouter<Arc<AppState>> {
    ApiRouter::new()
        .routes(routes!(list => __path_list))
        .routes(routes!(get_one => __path_get_one, patch => __path_patch))
        .routes(routes!(report => __path_report))
        .routes(routes!(cost_imports => __path_cost_imports, import_costs => __path_import_costs))
        .routes(routes!(quality => __path_quality))
        .routes(routes!(coverage => __path_coverage))
        .routes(routes!(history => __path_history))
        .routes(routes!(audit => __path_audit))
        .routes(routes!(alerts => __path_alerts))
        .routes(routes!(explain => __path_explain))
        .routes(routes!(policy => __path_policy))
        .routes(routes!(outbound_list => __path_outbound_list))
        .routes(routes!(outbound_one => __path_outbound_one))
        .routes(routes!(outbound_retry => __path_outbound_retry))
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
pub const CONVERSION_COLUMNS: [&str; 27] = [
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
    "cost",
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

/// Whose money the caller sees: the admin the gross payout and what the
/// affiliate earns of it, an affiliate key its own share only.
pub fn money_of<'a>(scope: &Scope, shares: &'a PayoutShares) -> Money<'a> {
    match scope {
        Scope::Admin => Money::Admin(shares),
        Scope::Affiliate { key, .. } => Money::Affiliate { key: *key, shares },
    }
}

/// A conversion as the API and CLI show it (ids, not numeric keys), its
/// money as `money`'s viewer sees it: the one place conversions are scaled.
pub fn conversion_json(c: &ConversionRow, names: &Names, money: Money) -> Value {
    // Scaled amounts are rounded to millionths, as reports round theirs.
    let scaled =
        |v: f64, shares: &PayoutShares| (v * shares.share(c.affiliate.unwrap_or(0), c.offer) * 1e6).round() / 1e6;
    let (payout, payout_base) = match money {
        Money::Affiliate { shares, .. } => (scaled(c.payout, shares), scaled(c.payout_base, shares)),
        _ => (c.payout, c.payout_base),
    };
    let mut v = json!({
        "id": c.id,
        "click_id": c.click_id,
        "event": c.event,
        "txid": if c.txid.is_empty() { Value::Null } else { c.txid.clone().into() },
        "status": c.status.as_str(),
        "payout": payout,
        "currency": c.currency,
        "payout_base": payout_base,
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
    });
    if let Money::Admin(shares) = money {
        v["affiliate_payout"] = scaled(c.payout, shares).into();
        v["affiliate_payout_base"] = scaled(c.payout_base, shares).into();
        // What the conversion costs while approved (a CPA model): the
        // network's cost, not the affiliate's business.
        v["cost"] = c.cost.into();
    }
    v
}

/// One status change as the caller sees it: who (`actor`: `postback`,
/// `pixel`, `admin`; `by`: the name an admin gave) and why (`reason`). An
/// affiliate sees what changed and why, not the network's staff names.
fn history_json(h: &HistoryEntry, scope: &Scope) -> Value {
    let (ts, from, to, source, reason) = h;
    let (actor, by) = match source.split_once(':') {
        Some((actor, by)) => (actor, Some(by)),
        None => (source.as_str(), None),
    };
    let mut v = json!({"time_ms": ts, "from": from.map(|f| f.as_str()), "to": to.as_str(), "actor": actor,
                       "reason": reason});
    if *scope == Scope::Admin {
        v["source"] = source.as_str().into();
        v["by"] = by.into();
    }
    v
}

pub use smartlink_analysis::names::Names;

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    off_runtime(move || f().map_err(ApiError::Unexpected)).await
}

/// Runs `f` off the async workers: every store call goes through here (or
/// [`blocking`], [`analysis`]), since PostgreSQL's client must not block a
/// runtime thread.
pub(crate) async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Unexpected(e.into()))?
}

#[utoipa::path(get, path = "/conversions", operation_id = "list_conversions", tag = "conversions", security(("admin_token" = []), ("affiliate_key" = [])),
    params(("from" = Option<String>, Query, description = "Arrival from: any of the report date forms (`2026-01-31`, `today`, `7d`, `24h`, unix ms, RFC 3339)"),
           ("to" = Option<String>, Query, description = "Arrival before: any of the report date forms (`2026-01-31`, `today`, `7d`, `24h`, unix ms, RFC 3339)"),
           ("tz" = Option<String>, Query, description = "IANA timezone of dates (default UTC)"),
           ("offer" = Option<String>, Query, description = "Offer id"),
           ("smartlink" = Option<String>, Query, description = "Smartlink slug"),
           ("affiliate" = Option<String>, Query, description = "Affiliate id (forced to its own for an affiliate key)"),
           ("status" = Option<String>, Query, description = "`pending`, `approved`, `rejected` or `chargeback`"),
           ("before" = Option<i64>, Query, description = "Cursor: the `next` of the previous page"),
           ("limit" = Option<usize>, Query, description = "Page size, 1 to 1,000 (default 100)"),
           ("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    responses((status = 200, description = "Conversions, newest first (CSV with `format=csv`)", content((doc::ConversionPage = "application/json"), (String = "text/csv"))),
              (status = 400, description = "A bad parameter (the message starts with its name)", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 404, description = "An unknown offer, smartlink or affiliate", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn list(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<Scope>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let format = Format::parse(q.format.as_deref())?;
    let store = app.store.clone();
    let now = (app.clock)();
    let limit = q.limit;
    let scope2 = scope.clone();
    // Resolving the filter's names reads the store too.
    let (rows, names) = off_runtime(move || {
        let mut f = filter(&*store, &q, now)?;
        if let Scope::Affiliate { key, .. } = scope2 {
            f.affiliate = Some(key);
        }
        let rows = store.conversions(&f).map_err(|e| ApiError::Unexpected(e.into()))?;
        let names = Names::load(&*store).map_err(|e| ApiError::Unexpected(e.into()))?;
        Ok((rows, names))
    })
    .await?;
    let next = (rows.len() == limit.unwrap_or(100).clamp(1, 1000)).then(|| rows.last().map(|r| r.id)).flatten();
    let pbc = app.postbacks.load();
    let money = money_of(&scope, &pbc.shares);
    let rows: Vec<Value> = rows.iter().map(|c| conversion_json(c, &names, money)).collect();
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

#[utoipa::path(get, path = "/conversions/{id}", operation_id = "get_conversion", tag = "conversions", security(("admin_token" = []), ("affiliate_key" = [])),
    params(("id" = i64, Path, description = "The conversion id")),
    responses((status = 200, description = "The conversion with its status history", body = doc::Conversion),
              (status = 400, description = "A malformed id", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 404, description = "No such conversion (or not this affiliate's)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn get_one(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<Scope>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let store = app.store.clone();
    let (row, history, names) =
        blocking(move || Ok((store.conversion(id)?, store.conversion_history(id)?, Names::load(&*store)?))).await?;
    let row = row
        .filter(|r| match &scope {
            Scope::Admin => true,
            Scope::Affiliate { key, .. } => r.affiliate == Some(*key),
        })
        .ok_or_else(|| ApiError::NotFound(format!("no conversion {id}")))?;
    let pbc = app.postbacks.load();
    let mut v = conversion_json(&row, &names, money_of(&scope, &pbc.shares));
    v["history"] = history.iter().map(|h| history_json(h, &scope)).collect();
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    status: String,
    /// Why, kept in the status history.
    #[serde(default)]
    reason: Option<String>,
    /// Who made the change (a name), for the audit trail.
    #[serde(default)]
    by: Option<String>,
}

/// The longest `reason` and `by` a status change may carry, in bytes.
const MAX_REASON: usize = 1000;
const MAX_BY: usize = 100;

/// The statuses the network sets by hand (`reversal` is a chargeback).
fn manual_status(s: &str) -> Option<ConvStatus> {
    match s {
        "approved" => Some(ConvStatus::Approved),
        "rejected" => Some(ConvStatus::Rejected),
        "chargeback" | "reversal" => Some(ConvStatus::Chargeback),
        _ => None,
    }
}

fn invalid(path: &str, message: impl Into<String>) -> ApiError {
    ApiError::Invalid(vec![crate::config::FieldError { path: path.into(), message: message.into() }])
}

/// Facts for the router and counters, rebuilt from a stored conversion.
fn facts_of(row: &ConversionRow) -> ClickFacts {
    ClickFacts {
        time_secs: (row.click_ts_ms / 1000) as u32,
        smartlink: row.smartlink,
        offer: Some(row.offer),
        affiliate: row.affiliate,
        source: None,
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

/// A manual status change by the network (admin only: affiliate keys are
/// refused before this), recorded with its actor, name and reason.
#[utoipa::path(patch, path = "/conversions/{id}", operation_id = "change_conversion_status", tag = "conversions", security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The conversion id")),
    request_body(content = doc::StatusChangeRequest),
    responses((status = 200, description = "Changed (`updated`), or already so (`duplicate`)", body = doc::Converted),
              (status = 400, description = "A malformed id or body", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 404, description = "No such conversion", body = doc::ErrorBody),
              (status = 422, description = "An unknown status or an illegal transition; a `reason` or `by` too long", body = doc::ErrorBody),
              (status = 503, description = "The change could not be stored; retry", body = doc::ErrorBody)))]
async fn patch(State(app): State<Arc<AppState>>, ApiPath(id): ApiPath<i64>, body: Bytes) -> Result<Response, ApiError> {
    let b: PatchBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("body must be {{\"status\": ..., \"reason\": ..., \"by\": ...}}: {e}"))
    })?;
    let status = manual_status(&b.status).ok_or_else(|| {
        invalid("status", format!("expected approved, rejected or chargeback (reversal), got {:?}", b.status))
    })?;
    let reason = b.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON || r.chars().any(char::is_control)) {
        return Err(invalid(
            "reason",
            format!("expected at most {MAX_REASON} bytes of text without control characters"),
        ));
    }
    let by = b.by.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| "api".into());
    if by.len() > MAX_BY || by.chars().any(char::is_control) {
        return Err(invalid("by", format!("expected a name of at most {MAX_BY} bytes without control characters")));
    }
    let store = app.store.clone();
    let row = blocking(move || Ok(store.conversion(id)?))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no conversion {id}")))?;
    let source = app.codec.decode(&row.click_id).ok().and_then(|f| f.source);
    let outbound = app.postbacks.load().outbound(row.affiliate, row.smartlink, row.offer, source);
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
        source: format!("admin:{by}"),
        reason,
        outbound,
        // A status change keeps the recorded cost.
        cost_base: 0.0,
    };
    match crate::postback::record_and_learn(&app, input, &facts_of(&row)).await {
        Ok(r) => Ok(r.into_response()),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => Err(invalid("status", e.message)),
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
        "attempts": o.total_attempts,
        "attempts_since_retry": o.attempts,
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

#[utoipa::path(get, path = "/postbacks/outbound", tag = "outbound", security(("admin_token" = [])),
    params(("state" = Option<String>, Query, description = "`pending`, `delivered` or `failed`"),
           ("limit" = Option<usize>, Query, description = "1 to 1,000 (default 100)")),
    responses((status = 200, description = "Outbound postbacks", body = doc::OutboundPage),
              (status = 400, description = "A bad parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
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

/// `GET /api/v1/postbacks/outbound/{id}`: one delivery and every attempt
/// at it (time, URL requested, HTTP status, latency, error), oldest first.
#[utoipa::path(get, path = "/postbacks/outbound/{id}", tag = "outbound", security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The outbound postback id")),
    responses((status = 200, description = "One delivery and every attempt at it", body = doc::OutboundPostback),
              (status = 400, description = "A malformed id", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 404, description = "No such outbound postback", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn outbound_one(State(app): State<Arc<AppState>>, ApiPath(id): ApiPath<i64>) -> Result<Json<Value>, ApiError> {
    let store = app.store.clone();
    let (item, attempts) = blocking(move || Ok(store.outbox_item(id)?))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no outbound postback {id}")))?;
    let mut v = outbox_json(&item);
    v["attempt_log"] = attempts
        .iter()
        .map(|a| {
            json!({ "time_ms": a.ts_ms, "url": a.url, "http_status": a.http_status, "latency_ms": a.latency_ms,
                    "error": a.error })
        })
        .collect();
    Ok(Json(v))
}

#[utoipa::path(post, path = "/postbacks/outbound/{id}/retry", tag = "outbound", security(("admin_token" = [])),
    params(("id" = i64, Path, description = "The outbound postback id")),
    responses((status = 202, description = "Queued for a fresh round of attempts", body = doc::RetryQueued),
              (status = 400, description = "A malformed id", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 404, description = "No failed outbound postback with this id", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn outbound_retry(State(app): State<Arc<AppState>>, ApiPath(id): ApiPath<i64>) -> Result<Response, ApiError> {
    let store = app.store.clone();
    let now = (app.clock)();
    if blocking(move || Ok(store.retry_outbox(id, now)?)).await? {
        Ok((StatusCode::ACCEPTED, Json(json!({ "result": "queued", "id": id }))).into_response())
    } else {
        Err(ApiError::NotFound(format!("no failed outbound postback {id}")))
    }
}

#[utoipa::path(get, path = "/report", tag = "reports", security(("admin_token" = []), ("affiliate_key" = [])),
    params(("from" = Option<String>, Query, description = "Start: any of the report date forms (`2026-01-31`, `today`, `7d`, `24h`, unix ms, RFC 3339) (default `7d`)"),
           ("to" = Option<String>, Query, description = "End (default now)"),
           ("tz" = Option<String>, Query, description = "IANA timezone of dates and local hours (default UTC)"),
           ("group_by" = Option<String>, Query, description = "Comma-separated dimensions: smartlink (link), offer, affiliate, source, country, device, os, browser, language, quality, reason, hour, weekday, day, sub1..sub5"),
           ("sort" = Option<String>, Query, description = "A column or dimension, `-` for descending (default `-clicks`)"),
           ("limit" = Option<usize>, Query, description = "Top N rows"),
           ("include_bots" = Option<bool>, Query, description = "Count bot and preview clicks"),
           ("format" = Option<String>, Query, description = "`json` (default) or `csv`"),
           ("smartlink" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("offer" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("affiliate" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("country" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("device" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("os" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("browser" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("language" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("quality" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("reason" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("sub1" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("sub2" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("sub3" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("sub4" = Option<String>, Query, description = "Filter: comma-separated values"),
           ("sub5" = Option<String>, Query, description = "Filter: comma-separated values")),
    responses((status = 200, description = "The report (CSV with `format=csv`)", content((doc::Report = "application/json"), (String = "text/csv"))),
              (status = 400, description = "A bad parameter (the message starts with its name)", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn report(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<Scope>,
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
    let pbc = app.postbacks.load_full();
    let out = analysis(&app.metrics, QueryKind::Report, move || {
        smartlink_analysis::report::run_as(&*store, &req, money_of(&scope, &pbc.shares), now)
    })
    .await?;
    Ok(respond(out.0, format, |v| smartlink_analysis::report::render(v, true)))
}

#[utoipa::path(get, path = "/quality", tag = "reports", security(("admin_token" = [])),
    params(("smartlink" = String, Query, description = "The smartlink"),
           ("period" = Option<String>, Query, description = "e.g. `7d` (default)"),
           ("by" = Option<String>, Query, description = "`affiliate` (default), `source` or `sub1`..`sub5`"),
           ("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    responses((status = 200, description = "Traffic quality per source (CSV with `format=csv`)", content((doc::Analysis = "application/json"), (String = "text/csv"))),
              (status = 400, description = "A bad or missing parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
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
    let out =
        analysis(&app.metrics, QueryKind::Quality, move || smartlink_analysis::quality::report(&*store, &req, now))
            .await?;
    Ok(respond(out.0, format, smartlink_analysis::quality::csv))
}

#[utoipa::path(get, path = "/coverage", tag = "reports", security(("admin_token" = [])),
    params(("smartlink" = String, Query, description = "The smartlink"),
           ("period" = Option<String>, Query, description = "e.g. `7d` (default)"),
           ("tz" = Option<String>, Query, description = "IANA timezone (default UTC)"),
           ("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    responses((status = 200, description = "Coverage gaps and where traffic went (CSV with `format=csv`)", content((doc::Analysis = "application/json"), (String = "text/csv"))),
              (status = 400, description = "A bad or missing parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
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
    let out = analysis(&app.metrics, QueryKind::Coverage, move || {
        smartlink_analysis::coverage::report(&*store, &catalog, &req, now)
    })
    .await?;
    Ok(respond(out.0, format, smartlink_analysis::coverage::csv))
}

#[utoipa::path(get, path = "/history", tag = "reports", security(("admin_token" = [])),
    params(("kind" = Option<String>, Query, description = "`advertiser`, `affiliate`, `offer`, `smartlink` or `source`"),
           ("id" = Option<String>, Query, description = "The entity id"),
           ("limit" = Option<usize>, Query, description = "1 to 10,000 (default 100)")),
    responses((status = 200, description = "Changes, newest first", body = doc::HistoryPage),
              (status = 400, description = "A bad parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
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
/// Runs an analytics query off the async workers, timing it into
/// `smartlink_report_query_seconds{query}`.
pub(crate) async fn analysis(
    metrics: &crate::metrics::Metrics,
    query: QueryKind,
    f: impl FnOnce() -> Result<Value, smartlink_analysis::report::ReportError> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    let start = std::time::Instant::now();
    let out = off_runtime(move || f().map_err(ApiError::from)).await.map(Json);
    metrics.observe_query(query, start.elapsed());
    out
}

/// `POST /api/v1/costs`: one billed amount (a JSON object) or several (an
/// array), each spread over the clicks it covers; applied one by one, the
/// answer lists what each did. A line that fails stops the request with
/// its error (naming its index); the lines before it stay applied.
#[utoipa::path(post, path = "/costs", tag = "reports", security(("admin_token" = [])),
    request_body(content = doc::CostImportRequest),
    responses((status = 201, description = "Each line spread over the clicks it covers", body = doc::CostImportAnswer),
              (status = 400, description = "The body is not JSON", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 422, description = "A line at fault: `fields` names its field (unknown link or source, no clicks in scope, bad amount or currency)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn import_costs(State(app): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    use smartlink_analysis::costs::CostLine;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body must be a cost line or an array of them: {e}")))?;
    let many = v.is_array();
    let items = if many { v.as_array().cloned().unwrap_or_default() } else { vec![v] };
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let line: CostLine = serde_path_to_error::deserialize(item).map_err(|e| {
            let at = if many { format!("[{i}].") } else { String::new() };
            ApiError::Invalid(vec![crate::config::FieldError {
                path: format!("{at}{}", e.path()),
                message: e.into_inner().to_string(),
            }])
        })?;
        lines.push(line);
    }
    let store = app.store.clone();
    let pbc = app.postbacks.load_full();
    let now = (app.clock)();
    let out = tokio::task::spawn_blocking(move || {
        let rate = |c: Option<&str>| match c {
            None => Some(1.0),
            Some(c) => pbc.rates.get(&c.to_ascii_uppercase()).copied(),
        };
        let mut done = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            match smartlink_analysis::costs::import(&*store, line, &rate, "api", now) {
                Ok(v) => done.push(v),
                Err(smartlink_analysis::costs::CostError::Bad { field, message }) if many => {
                    return Err(smartlink_analysis::costs::CostError::Bad { field: format!("[{i}].{field}"), message })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    })
    .await
    .map_err(|e| ApiError::Unexpected(e.into()))??;
    let body = if many { json!({ "imports": out }) } else { out.into_iter().next().unwrap_or(Value::Null) };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/v1/costs`: recorded cost imports, newest first.
#[utoipa::path(get, path = "/costs", tag = "reports", security(("admin_token" = [])),
    params(("limit" = Option<usize>, Query, description = "1 to 10,000 (default 100)")),
    responses((status = 200, description = "Cost imports, newest first", body = doc::CostImportList),
              (status = 400, description = "A bad parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn cost_imports(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let limit = only_limit(q)?;
    let store = app.store.clone();
    let rows = blocking(move || Ok(store.cost_imports(limit)?)).await?;
    Ok(Json(json!({ "imports": rows.iter().map(smartlink_analysis::costs::row_json).collect::<Vec<_>>() })))
}

/// The query of a listing that takes only `limit` (default 100, clamped to
/// 1..=10,000); anything else is a `400`.
fn only_limit(q: Vec<(String, String)>) -> Result<usize, ApiError> {
    let mut limit = 100usize;
    for (k, v) in q {
        match k.as_str() {
            "limit" => {
                limit = v.parse().map_err(|_| ApiError::BadRequest(format!("limit: expected a number, got {v:?}")))?
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    Ok(limit.clamp(1, 10_000))
}

/// The `smartlink` parameter the per-smartlink analyses need.
fn required_smartlink(slug: &str) -> Result<(), ApiError> {
    if slug.is_empty() {
        return Err(ApiError::BadRequest("smartlink: required".into()));
    }
    Ok(())
}

#[utoipa::path(get, path = "/audit", tag = "reports", security(("admin_token" = [])),
    params(("smartlink" = String, Query, description = "The smartlink"),
           ("period" = Option<String>, Query, description = "e.g. `7d` (default)")),
    responses((status = 200, description = "The smartlink against the best hand-picked offer, per segment", body = doc::Analysis),
              (status = 400, description = "A bad or missing parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
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
    analysis(&app.metrics, QueryKind::Audit, move || {
        smartlink_analysis::insight::audit(&*store, &smartlink, period.as_deref(), now)
    })
    .await
}

#[utoipa::path(get, path = "/explain", tag = "reports", security(("admin_token" = [])),
    params(("smartlink" = String, Query, description = "The smartlink"),
           ("from" = Option<String>, Query, description = "Current period start (default `24h`)"),
           ("to" = Option<String>, Query, description = "Current period end"),
           ("vs" = Option<String>, Query, description = "Baseline period, e.g. `48h..24h`")),
    responses((status = 200, description = "Why EPC changed", body = doc::Analysis),
              (status = 400, description = "A bad or missing parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
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
    analysis(&app.metrics, QueryKind::Explain, move || {
        smartlink_analysis::insight::explain(&*store, &smartlink, from.as_deref(), to.as_deref(), vs.as_deref(), now)
    })
    .await
}

/// `GET /api/v1/policy?smartlink=SLUG`: the router's current policy for
/// the busiest segments (`smartlink_analysis::policy`), read from the live
/// catalog (its routers hold what was learned).
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
                    v.parse().ok().filter(|n| (1..=smartlink_analysis::policy::MAX_SEGMENTS).contains(n)).ok_or_else(
                        || {
                            ApiError::BadRequest(format!(
                                "limit: expected 1 to {}, got {v:?}",
                                smartlink_analysis::policy::MAX_SEGMENTS
                            ))
                        },
                    )?
            }
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    required_smartlink(&smartlink)?;
    let store = app.store.clone();
    let catalog = app.catalog.load_full();
    let now = (app.clock)();
    analysis(&app.metrics, QueryKind::Policy, move || {
        let rng = &mut rand::rng();
        smartlink_analysis::policy::report(&*store, &catalog, &smartlink, period.as_deref(), limit, now, rng)
    })
    .await
}

#[utoipa::path(get, path = "/alerts", tag = "reports", security(("admin_token" = [])),
    params(("limit" = Option<usize>, Query, description = "1 to 10,000 (default 100)")),
    responses((status = 200, description = "Drift alerts, newest first", body = doc::AlertList),
              (status = 400, description = "A bad parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key (an affiliate key reads its reports, clicks, conversions and smartlinks only)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past `server.query_timeout_secs`: narrow the query (`Retry-After`)", body = doc::ErrorBody)))]
async fn alerts(
    State(app): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let limit = only_limit(q)?;
    let store = app.store.clone();
    let rows = blocking(move || Ok(store.alerts(limit)?)).await?;
    Ok(Json(json!({ "alerts": rows.iter().map(smartlink_analysis::alerts::row_json).collect::<Vec<_>>() })))
}
