//! The click log: `GET /api/v1/clicks` (newest first, the report's filters,
//! a cursor, JSON or CSV) and `GET /api/v1/clicks/{click_id}` (the click,
//! its routing decision and its conversions). An affiliate key sees only
//! its own clicks (the auth layer forces its `affiliate` filter) and never
//! an IP.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use smartlink_analysis::clicks::{click_json, decision_json, ClickLogRequest};
use smartlink_core::clickid::ClickIdError;
use smartlink_store::ConversionFilter;

use crate::auth::Scope;
use crate::conversions::{analysis, blocking, conversion_json, csv_response, Format, Names};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/clicks", get(list))
        .route("/clicks/{click_id}", get(get_one))
        .layer(middleware::from_fn_with_state(state, crate::auth::auth))
}

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
    let Json(page) = analysis(move || smartlink_analysis::clicks::log(&*store, &req, now, show_ip)).await?;
    Ok(match format {
        Format::Json => Json(page).into_response(),
        Format::Csv => csv_response(smartlink_analysis::clicks::csv(&page, show_ip)),
    })
}

async fn get_one(
    State(app): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Path(id): Path<String>,
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
