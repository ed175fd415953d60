//! The whole HTTP application: the routes and the handlers that belong to
//! no room of their own (`/healthz`, `/metrics`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/s/{slug}", get(crate::click::click))
        .route("/o/{offer}", get(crate::click::click))
        .route("/postback", get(crate::postback::postback).post(crate::postback::postback))
        .route("/pixel", get(crate::pixel::pixel))
        .route("/pixel.js", get(crate::pixel::script))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest(
            "/api/v1",
            crate::conversions::routes(state.clone())
                .merge(crate::clicks::routes(state.clone()))
                .merge(crate::admin::routes(state.clone()))
                .merge(crate::digests::routes(state.clone())),
        )
        .fallback(crate::click::fallback)
        .layer(axum::middleware::from_fn(require_host))
        .with_state(state)
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

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let router = app.catalog.load().smartlinks.iter().map(|sl| sl.router.busy()).sum();
    let mut r = app.metrics.render(router).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
