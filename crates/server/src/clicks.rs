//! The click log: `GET /api/v1/clicks` (newest first, the report's filters,
//! a cursor, JSON or CSV) and `GET /api/v1/clicks/{click_id}` (the click,
//! its routing decision and its conversions). An affiliate key sees only
//! its own clicks (the auth layer forces its `affiliate` filter) and never
//! an IP.

use std::sync::Arc;

use crate::openapi::ApiRouter;
use crate::routes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use smartlink_analysis::clicks::{click_json, decision_json, ClickLogRequest};
use smartlink_core::clickid::ClickIdError;
use smartlink_store::ConversionFilter;

use crate::auth::Scope;
use crate::conversions::{analysis, blocking, conversion_json, csv_response, Format, Names};
use crate::error::{ApiError, ApiPath};
use crate::openapi as doc;
use crate::state::AppState;

/// The click log routes; the caller adds the auth layer.
pub fn routes() -> ApiRouter<Arc<AppState>> {
    ApiRouter::new().routes(routes!(list => __path_list)).routes(routes!(get_one => __path_get_one))
}

#[utoipa::path(get, path = "/clicks", operation_id = "list_clicks", tag = "reports",
    security(("admin_token" = []), ("affiliate_key" = [])),
    params(("from" = Option<String>, Query, description = "Start, in any of the report date forms (default `24h`)"),
           ("to" = Option<String>, Query, description = "End (default now)"),
           ("tz" = Option<String>, Query, description = "IANA timezone of dates (default UTC)"),
           ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
           ("limit" = Option<usize>, Query, description = "Page size, 1 to 1,000 (default 100)"),
           ("format" = Option<String>, Query, description = "`json` (default) or `csv`"),
           ("smartlink" = Option<String>, Query, description = "Filter: comma-separated values"), ("offer" = Option<String>, Query, description = "Filter: comma-separated values"), ("affiliate" = Option<String>, Query, description = "Filter: comma-separated values"), ("country" = Option<String>, Query, description = "Filter: comma-separated values"), ("device" = Option<String>, Query, description = "Filter: comma-separated values"), ("os" = Option<String>, Query, description = "Filter: comma-separated values"), ("browser" = Option<String>, Query, description = "Filter: comma-separated values"), ("language" = Option<String>, Query, description = "Filter: comma-separated values"), ("quality" = Option<String>, Query, description = "Filter: comma-separated values"), ("reason" = Option<String>, Query, description = "Filter: comma-separated values"), ("sub1" = Option<String>, Query, description = "Filter: comma-separated values"), ("sub2" = Option<String>, Query, description = "Filter: comma-separated values"), ("sub3" = Option<String>, Query, description = "Filter: comma-separated values"), ("sub4" = Option<String>, Query, description = "Filter: comma-separated values"), ("sub5" = Option<String>, Query, description = "Filter: comma-separated values")),
    responses((status = 200, description = "Clicks, newest first (CSV with `format=csv`)", content((doc::ClickPage = "application/json"), (String = "text/csv"))),
              (status = 400, description = "A bad parameter (the message starts with its name)", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past its time limit", body = doc::ErrorBody)))]
async fn list(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut req = ClickLogRequest::default();
    let mut format = Format::Json;
    for (k, v) in q {
        match k.as_str() {
            "from" => req.from = Some(v),
            "to" => req.to = Some(v),
            "tz" => req.tz = Some(v),
            "cursor" => req.cursor = Some(v),
            "format" => format = Format::parse(Some(&v))?,
            "limit" => {
                req.limit = Some(v.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "limit: expected a number from 1 to {}, got {v:?}",
                        smartlink_analysis::clicks::MAX_LIMIT
                    ))
                })?)
            }
            f if smartlink_analysis::report::FILTERS.contains(&f) => req.filters.push((k, v)),
            other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    let show_ip = scope == Scope::Admin;
    let store = app.store.clone();
    let now = (app.clock)();
    let Json(page) = analysis(&app.metrics, crate::metrics::QueryKind::Clicks, move || {
        smartlink_analysis::clicks::log(&*store, &req, now, show_ip)
    })
    .await?;
    Ok(match format {
        Format::Json => Json(page).into_response(),
        Format::Csv => csv_response(smartlink_analysis::clicks::csv(&page, show_ip)),
    })
}

#[utoipa::path(get, path = "/clicks/{click_id}", operation_id = "get_click", tag = "reports",
    security(("admin_token" = []), ("affiliate_key" = [])),
    params(("click_id" = String, Path, description = "A click id as in a redirect")),
    responses((status = 200, description = "The click, its routing decision and its conversions", body = doc::ClickDetail),
              (status = 400, description = "A malformed click id", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "Not for this key", body = doc::ErrorBody),
              (status = 404, description = "No such click (or not this affiliate's)", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past its time limit", body = doc::ErrorBody)))]
async fn get_one(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    // The id's signed second keys the lookup; an id this server did not
    // sign names no click.
    let facts = match app.codec.decode(&id) {
        Ok(f) => f,
        Err(ClickIdError::Malformed) => {
            return Err(ApiError::BadRequest(format!(
                "click_id: expected {} URL-safe base64 characters (48 for ids from before version 2) as in a redirect's click id, got {id:?}",
                smartlink_core::clickid::ENCODED_LEN
            )))
        }
        Err(_) => return Err(ApiError::NotFound(format!("no click {id}"))),
    };
    let store = app.store.clone();
    let key = id.clone();
    let (row, conversions, names) = blocking(move || {
        let row = store.click(facts.time_secs as i64, &key)?;
        let f = ConversionFilter { click_id: Some(key), limit: 1000, ..Default::default() };
        Ok((row, store.conversions(&f)?, Names::load(&*store)?))
    })
    .await?;
    let row = row
        .filter(|r| match &scope {
            Scope::Admin => true,
            Scope::Affiliate { key, .. } => r.affiliate == Some(*key),
        })
        .ok_or_else(|| ApiError::NotFound(format!("no click {id}")))?;
    let show_ip = scope == Scope::Admin;
    let pbc = app.postbacks.load();
    let money = crate::conversions::money_of(&scope, &pbc.shares);
    Ok(Json(json!({
        "click": click_json(&row, &names, show_ip),
        "decision": decision_json(&row),
        "conversions": conversions.iter().map(|c| conversion_json(c, &names, money)).collect::<Vec<_>>(),
    })))
}
