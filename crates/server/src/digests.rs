//! The digest task and its API: once a period of the schedule
//! (`server.digests`) is due, the digest of each smartlink
//! ([`smartlink_analysis::digest`]) is made once and stored under
//! (smartlink, period start), so a restart or a second run never makes a
//! second one; a period that came due while the server was down is made at
//! start-up. With a webhook, each new digest is POSTed as JSON from the
//! store's delivery state, retried with the outbound postbacks' backoff
//! until it succeeds or runs out of attempts (a crash between a delivery
//! and its record can send it twice; nothing sends it twice otherwise).
//!
//! `GET /api/v1/digests?smartlink=SLUG` lists them, newest period first;
//! `GET /api/v1/digests/{id}` is one as JSON, `{id}.html` / `{id}.txt` (or
//! `?format=html|text`) its rendered body. Admin only: a digest shows every
//! affiliate's traffic on the smartlink, so affiliate keys get 403.

use std::sync::Arc;
use std::time::Duration;

use crate::openapi::ApiRouter;
use crate::routes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use smartlink_analysis::digest::{Period, Schedule};
use smartlink_store::{DigestAttempt, DigestRow, OutboxState};

use crate::config::DigestSettings;
use crate::error::{ApiError, ApiPath};
use crate::openapi as doc;
use crate::outbound::RetryPolicy;
use crate::state::AppState;

/// Makes the digests of the latest due period that are not stored yet;
/// returns the ids of the new ones. Blocking (store reads and the
/// analyses): call it off the async workers.
pub fn produce(
    app: &AppState,
    settings: &DigestSettings,
    schedule: &Schedule,
    now_ms: i64,
) -> anyhow::Result<Vec<i64>> {
    let period = schedule.latest_due(now_ms);
    let catalog = app.catalog.load_full();
    let store = &*app.store;
    if let Some(crate::config::DigestSmartlinks::Only(list)) = &settings.smartlinks {
        for slug in list.iter().filter(|s| catalog.smartlink(s).is_none()) {
            tracing::warn!(smartlink = %slug, "server.digests.smartlinks names an unknown smartlink; skipped");
        }
    }
    let mut made = Vec::new();
    for sl in catalog.smartlinks.iter().filter(|s| settings.includes(s.slug.as_str())) {
        let slug = sl.slug.to_string();
        if store.has_digest(&slug, period.start_ms)? {
            continue;
        }
        let d = smartlink_analysis::digest::digest(store, &catalog, &slug, period, schedule.tz, now_ms)?;
        // Nothing happened in either period: nothing to say.
        if d["totals"]["current"]["clicks"] == 0 && d["totals"]["previous"]["clicks"] == 0 {
            continue;
        }
        let row = DigestRow {
            id: 0,
            smartlink: slug.clone(),
            period_start_ms: period.start_ms,
            period_end_ms: period.end_ms,
            created_ms: now_ms,
            body: d.to_string(),
            delivery: settings.webhook_url.as_ref().map(|_| OutboxState::Pending),
            attempts: 0,
            next_at_ms: now_ms,
            last_http_status: None,
            last_error: None,
            delivered_ms: None,
        };
        let (id, new) = store.insert_digest(&row)?;
        if new {
            tracing::info!(smartlink = %slug, id, period = %d["period"]["label"], "digest made");
            made.push(id);
        }
    }
    Ok(made)
}

/// One delivery attempt of a stored digest to the webhook, recorded in
/// the store. Blocking.
pub fn attempt(app: &AppState, agent: &ureq::Agent, url: &str, row: &DigestRow, policy: RetryPolicy) {
    let now = (app.clock)();
    let body = row_json(row, true).to_string();
    let sent = agent.post(url).header("content-type", "application/json").send(body).map(|r| r.status().as_u16());
    let (http_status, error) = match sent {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let ok = http_status.is_some_and(|s| (200..300).contains(&s));
    let attempts = row.attempts + 1;
    let (next, next_at_ms) = if ok {
        (OutboxState::Delivered, now)
    } else if attempts >= policy.max_attempts {
        (OutboxState::Failed, now)
    } else {
        (OutboxState::Pending, now + policy.delay_ms(row.attempts, rand::random::<f64>()))
    };
    // The webhook URL may carry a token: never logged.
    match next {
        OutboxState::Delivered => {
            tracing::info!(smartlink = %row.smartlink, id = row.id, http_status, "digest delivered")
        }
        OutboxState::Pending => {
            tracing::warn!(smartlink = %row.smartlink, id = row.id, http_status, error, attempts, "digest delivery failed; will retry")
        }
        OutboxState::Failed => {
            tracing::error!(smartlink = %row.smartlink, id = row.id, http_status, error, attempts, "digest delivery failed for good")
        }
    }
    let a = DigestAttempt { ts_ms: now, http_status, error, next, next_at_ms };
    if let Err(e) = app.store.record_digest_attempt(row.id, &a) {
        tracing::error!(error = %e, "recording a digest delivery failed");
    }
}

/// Makes each period's digests when they come due (and, at start-up, the
/// latest due period's if they are missing) and delivers pending ones,
/// forever (until the task is dropped).
pub async fn run(app: Arc<AppState>, settings: DigestSettings, policy: RetryPolicy, poll: Duration) {
    let Some(schedule) = settings.schedule() else { return };
    let webhook = settings.webhook_url.as_ref().map(|u| u.expose().to_string());
    let agent = crate::outbound::agent();
    let mut done: Option<Period> = None;
    loop {
        if !app.leads() {
            // Another node holds the leader lease and makes the digests.
            tokio::time::sleep(poll).await;
            continue;
        }
        let now = (app.clock)();
        let due = schedule.latest_due(now);
        if done != Some(due) {
            let (app2, settings2) = (app.clone(), settings.clone());
            match tokio::task::spawn_blocking(move || produce(&app2, &settings2, &schedule, now)).await {
                Ok(Ok(_)) => done = Some(due),
                Ok(Err(e)) => tracing::error!(error = %e, "making digests failed; retrying"),
                Err(e) => tracing::error!(error = %e, "making digests panicked"),
            }
        }
        if let Some(url) = &webhook {
            let store = app.store.clone();
            if let Ok(Ok(rows)) = tokio::task::spawn_blocking(move || store.due_digests(now, 20)).await {
                for row in rows {
                    let (app2, agent2, url2) = (app.clone(), agent.clone(), url.clone());
                    let _ = tokio::task::spawn_blocking(move || attempt(&app2, &agent2, &url2, &row, policy)).await;
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// A stored digest as the API (and the webhook) show it; `full` includes
/// the digest document itself.
pub fn row_json(r: &DigestRow, full: bool) -> Value {
    let doc: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    let mut v = json!({
        "id": r.id,
        "smartlink": r.smartlink,
        "period_start_ms": r.period_start_ms,
        "period_end_ms": r.period_end_ms,
        "label": doc["period"]["label"],
        "created_ms": r.created_ms,
        "delivery": {
            "state": r.delivery.map_or("none", OutboxState::as_str),
            "attempts": r.attempts,
            "next_attempt_ms": r.delivery.filter(|s| *s == OutboxState::Pending).map(|_| r.next_at_ms),
            "last_http_status": r.last_http_status,
            "last_error": r.last_error,
            "delivered_ms": r.delivered_ms,
        },
    });
    if full {
        v["digest"] = doc;
    }
    v
}

/// The digest routes; the caller adds the auth layer.
pub fn routes() -> ApiRouter<Arc<AppState>> {
    ApiRouter::new().routes(routes!(list => __path_list)).routes(routes!(one => __path_one))
}

fn admin_only(scope: &crate::auth::Scope) -> Result<(), ApiError> {
    match scope {
        crate::auth::Scope::Admin => Ok(()),
        crate::auth::Scope::Affiliate { .. } => {
            Err(ApiError::Forbidden("digests show every affiliate's traffic: admin token only".into()))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    smartlink: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/digests", operation_id = "list_digests", tag = "digests", security(("admin_token" = [])),
    params(("smartlink" = Option<String>, Query, description = "Only this smartlink's"),
           ("limit" = Option<usize>, Query, description = "1 to 100 (default 20)")),
    responses((status = 200, description = "Digests, newest period first, with their delivery state", body = doc::DigestList),
              (status = 400, description = "A bad parameter", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "An affiliate key", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past its time limit", body = doc::ErrorBody)))]
async fn list(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<crate::auth::Scope>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&scope)?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let store = app.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.digests(q.smartlink.as_deref(), limit))
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(Json(json!({ "digests": rows.iter().map(|r| row_json(r, false)).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneQuery {
    format: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Html,
    Text,
}

/// `12`, `12.json`, `12.html`, `12.txt` and `?format=`: the id and the format.
fn parse_target(id: &str, format: Option<&str>) -> Result<(i64, Format), ApiError> {
    let parse_format = |f: &str| match f {
        "json" => Some(Format::Json),
        "html" => Some(Format::Html),
        "text" | "txt" => Some(Format::Text),
        _ => None,
    };
    let (num, ext) = match id.split_once('.') {
        Some((n, ext)) => (
            n,
            Some(parse_format(ext).ok_or_else(|| {
                ApiError::BadRequest(format!("unknown extension {ext:?}; expected .json, .html or .txt"))
            })?),
        ),
        None => (id, None),
    };
    let id: i64 = num.parse().map_err(|_| ApiError::BadRequest(format!("expected a digest id, got {num:?}")))?;
    let asked = match format {
        None => None,
        Some(f) => Some(
            parse_format(f)
                .ok_or_else(|| ApiError::BadRequest(format!("format: expected json, html or text, got {f:?}")))?,
        ),
    };
    match (ext, asked) {
        (Some(a), Some(b)) if a != b => Err(ApiError::BadRequest("the extension and format= disagree".into())),
        (a, b) => Ok((id, a.or(b).unwrap_or(Format::Json))),
    }
}

#[utoipa::path(get, path = "/digests/{id}", operation_id = "get_digest", tag = "digests", security(("admin_token" = [])),
    params(("id" = String, Path, description = "The digest id, optionally with `.json`, `.html` or `.txt`"),
           ("format" = Option<String>, Query, description = "`json` (default), `html` or `text`")),
    responses((status = 200, description = "The digest with its document; its HTML or text body for `.html`, `.txt` or `format=`", content((doc::Digest = "application/json"), (String = "text/html"), (String = "text/plain"))),
              (status = 400, description = "A malformed id, extension or format", body = doc::ErrorBody),
              (status = 401, description = "Missing or invalid token", body = doc::ErrorBody),
              (status = 403, description = "An affiliate key", body = doc::ErrorBody),
              (status = 404, description = "No such digest", body = doc::ErrorBody),
              (status = 503, description = "The store read ran past its time limit", body = doc::ErrorBody)))]
async fn one(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<crate::auth::Scope>,
    ApiPath(id): ApiPath<String>,
    q: Result<Query<OneQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    admin_only(&scope)?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (id, format) = parse_target(&id, q.format.as_deref())?;
    let store = app.store.clone();
    let row = tokio::task::spawn_blocking(move || store.digest(id))
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?
        .map_err(|e| ApiError::Unexpected(e.into()))?
        .ok_or_else(|| ApiError::NotFound(format!("no digest {id}")))?;
    let v = row_json(&row, true);
    let body = |key: &str| v["digest"][key].as_str().unwrap_or("").to_string();
    let mut resp = match format {
        Format::Json => return Ok(Json(v).into_response()),
        Format::Html => {
            let mut r = body("html").into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            // The body is self-contained: nothing may load or run.
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            r
        }
        Format::Text => {
            let mut r = body("text").into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            r
        }
    };
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_target_names_its_format_by_extension_or_parameter_and_refuses_a_mismatch() {
        let ok = |id: &str, f: Option<&str>| parse_target(id, f).ok().map(|(i, f)| (i, f as u8));
        assert_eq!(ok("12", None), Some((12, Format::Json as u8)));
        assert_eq!(ok("12.html", None), Some((12, Format::Html as u8)));
        assert_eq!(ok("12.txt", None), Some((12, Format::Text as u8)));
        assert_eq!(ok("12", Some("text")), Some((12, Format::Text as u8)));
        assert_eq!(ok("12.html", Some("html")), Some((12, Format::Html as u8)));
        for (id, f) in [("12.html", Some("text")), ("12.exe", None), ("x", None), ("12", Some("pdf"))] {
            assert!(matches!(parse_target(id, f), Err(ApiError::BadRequest(_))), "{id} {f:?}");
        }
    }
}
