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
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .nest("/api/v1", crate::conversions::routes(state.clone()).merge(crate::admin::routes(state.clone())))
        .with_state(state)
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let router = app.catalog.load().smartlinks.iter().map(|sl| sl.router.busy()).sum();
    let mut r = app.metrics.render(router).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
