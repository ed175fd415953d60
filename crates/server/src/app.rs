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
        .route("/postback", get(crate::postback::postback).post(crate::postback::postback))
        .route("/pixel", get(crate::pixel::pixel))
        .route("/pixel.js", get(crate::pixel::script))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .nest(
            "/api/v1",
            crate::conversions::routes(state.clone())
                .merge(crate::clicks::routes(state.clone()))
                .merge(crate::admin::routes(state.clone()))
                .merge(crate::digests::routes(state.clone())),
        )
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

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let router = app.catalog.load().smartlinks.iter().map(|sl| sl.router.busy()).sum();
    let mut r = app.metrics.render(router).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
