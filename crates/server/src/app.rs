//! The whole HTTP application: the routes and the handlers that belong to
//! no room of their own (`/healthz`, `/metrics`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::OpenApi;

use crate::metrics::StoreFailure;
use crate::openapi::{ApiDoc, ApiRouter};
use crate::routes;
use crate::state::AppState;

/// The whole HTTP application. Every route is registered with its
/// OpenAPI description ([`api`]); the document is served as is.
pub fn router(state: Arc<AppState>) -> Router {
    let (router, _) = api(Some(state.clone())).split_for_parts();
    router
        .fallback(crate::click::fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_store_failures))
        .layer(axum::middleware::from_fn(require_host))
        .with_state(state)
}

/// Counts the API answers that failed in the store (`ApiError` marks them
/// with a [`StoreFailure`] extension) into `smartlink_api_store_errors_total`.
async fn count_store_failures(
    State(app): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    if let Some(f) = resp.extensions().get::<StoreFailure>() {
        app.metrics.store_failure(*f);
    }
    resp
}

/// The OpenAPI document of [`router`]: the same routes, described.
pub fn api_doc() -> utoipa::openapi::OpenApi {
    api(None).into_openapi()
}

/// Every route with its description; `/api/v1` (but its document) behind
/// the bearer-token layer when `auth` has the state it reads. Routes are
/// added only through [`routes!`](crate::routes), which registers a
/// handler and its `#[utoipa::path]` together (a test refuses any other way).
pub fn api(auth: Option<Arc<AppState>>) -> ApiRouter<Arc<AppState>> {
    let v1 = ApiRouter::new()
        .merge(crate::conversions::routes())
        .merge(crate::clicks::routes())
        .merge(crate::admin::routes())
        .merge(crate::digests::routes())
        .merge(crate::simulations::routes());
    let v1 = match auth {
        Some(state) => v1.layer(axum::middleware::from_fn_with_state(state, crate::auth::auth)),
        None => v1,
    };
    ApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(crate::click::click => crate::click::__path_click))
        .routes(routes!(crate::click::direct => crate::click::__path_direct))
        .routes(routes!(crate::postback::postback_get => crate::postback::__path_postback_get, crate::postback::postback_post => crate::postback::__path_postback_post))
        .routes(routes!(crate::pixel::pixel => crate::pixel::__path_pixel))
        .routes(routes!(crate::pixel::script => crate::pixel::__path_script))
        .routes(routes!(healthz => __path_healthz))
        .routes(routes!(readyz => __path_readyz))
        .routes(routes!(metrics => __path_metrics))
        .routes(routes!(crate::openapi::openapi_json => crate::openapi::__path_openapi_json))
        .routes(routes!(crate::openapi::docs => crate::openapi::__path_docs))
        .merge(crate::dashboard::routes())
        .nest("/api/v1", v1)
        .with_session_cookie()
}

/// Whether the process answers (for liveness probes); see `/readyz`.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// RFC 9112 section 3.2 on hyper's side (the fast path hands such requests
/// here): a missing, repeated or invalid `Host` is a 400.
async fn require_host(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let http11 = req.version() == axum::http::Version::HTTP_11;
    let hosts = req.headers().get_all(header::HOST).into_iter().map(HeaderValue::as_bytes);
    if crate::http::host_ok(http11, hosts) {
        next.run(req).await
    } else {
        (
            axum::http::StatusCode::BAD_REQUEST,
            "bad request: an HTTP/1.1 request needs exactly one Host header with a valid host[:port]\n",
        )
            .into_response()
    }
}

/// `/readyz`: whether this node should get traffic. Ready when the store
/// answers a read within 2 s, the click journal's directory takes a write,
/// and the journal not yet loaded into the store is under
/// `server.ready_max_backlog_mib`. `200` or `503` (with `Retry-After`),
/// each check named with its result. (`/healthz` says only that the
/// process answers.)
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = crate::openapi::Readiness),
              (status = 503, description = "Not ready: the failing checks say why (`Retry-After`)", body = crate::openapi::Readiness)))]
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let store = app.store.clone();
    let read = tokio::task::spawn_blocking(move || store.meta("config_hash").map(|_| ()));
    let store_ok = match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".to_string()),
    };
    let dir = app.journal_dir.clone();
    let journal_ok = tokio::task::spawn_blocking(move || {
        let probe = dir.join(".ready-probe");
        let r = std::fs::write(&probe, b"ok").and_then(|_| std::fs::remove_file(&probe));
        r.map_err(|e| format!("{}: {e}", dir.display()))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let backlog = app.metrics.log.journal_backlog.load(std::sync::atomic::Ordering::Relaxed);
    let backlog_ok = if backlog <= app.ready_max_backlog_bytes {
        Ok(())
    } else {
        Err(format!("{backlog} bytes of click journal wait to be loaded (limit {})", app.ready_max_backlog_bytes))
    };
    let check = |r: &Result<(), String>| match r {
        Ok(()) => serde_json::json!({ "ok": true }),
        Err(e) => serde_json::json!({ "ok": false, "error": e }),
    };
    let ready = store_ok.is_ok() && journal_ok.is_ok() && backlog_ok.is_ok();
    let body = serde_json::json!({
        "ready": ready,
        "checks": { "store": check(&store_ok), "journal": check(&journal_ok), "backlog": check(&backlog_ok) },
        "journal_backlog_bytes": backlog,
    });
    let mut r = (
        if ready { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE },
        axum::Json(body),
    )
        .into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !ready {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Every metric", content_type = "text/plain", body = String)))]
async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let router = app.catalog.load().smartlinks.iter().map(|sl| sl.router.busy()).sum();
    // Rows loaded by the loader and by queries catching up (an atomic read).
    if let Some(c) = app.analyzed.columnar() {
        app.metrics.analytics_loaded.store(c.loaded_rows(), std::sync::atomic::Ordering::Relaxed);
    }
    let mut r = app.metrics.render(router).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

#[cfg(test)]
mod tests {
    /// The router and the OpenAPI document are built by the same
    /// `routes!` calls; a route added any other way (`.route`, a nested
    /// service) would be served but not described. So no module's code
    /// (outside its tests) may add one.
    #[test]
    fn every_route_is_added_with_its_openapi_description() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // `openapi.rs` holds `ApiRouter::routes`, the one place that adds a route.
            if path.extension().and_then(|e| e.to_str()) != Some("rs") || path.ends_with("openapi.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for needle in [".route(", ".route_service(", ".nest_service(", "routing::get(", "routing::post("] {
                for (i, line) in code.lines().enumerate() {
                    if line.contains(needle) && !line.trim_start().starts_with("//") {
                        found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
        assert!(found.is_empty(), "routes added without their OpenAPI description:\n{}", found.join("\n"));
    }

    #[test]
    fn the_document_describes_every_route_with_its_answers_and_who_may_call_it() {
        let doc = serde_json::to_value(super::api_doc()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut operations = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let responses = op["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path} lists no answer");
                let public = !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json";
                if !public {
                    assert!(op["security"].as_array().is_some_and(|s| !s.is_empty()), "{method} {path}: no security");
                    for status in ["401", "403"] {
                        assert!(responses.contains_key(status), "{method} {path} does not list {status}");
                    }
                }
            }
        }
        assert!(operations >= 50, "only {operations} operations");
        let ids: Vec<&str> = paths
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len(), "operation ids repeat: {ids:?}");
    }
}
