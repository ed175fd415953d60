//! The one HTTP error type: logs the detail, shows the client a safe,
//! specific message as JSON `{"error": ..., "fields": [...]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use smartlink_analysis::report::ReportError;

use crate::metrics::StoreFailure;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String, Vec<FieldError>),
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// An `If-Match` that does not match the current document (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Well-formed but not something the server will do, with the fields
    /// at fault (422), when one message says more than "validation failed".
    #[error("{0}")]
    Unprocessable(String, Vec<FieldError>),
    /// A bounded resource is taken: try again shortly (429, `Retry-After`).
    #[error("{0}")]
    Busy(String),
    #[error("internal error")]
    Unexpected(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, fields) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, vec![]),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, vec![]),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, vec![]),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, vec![]),
            ApiError::Conflict(_, f) => (StatusCode::CONFLICT, f.clone()),
            ApiError::Invalid(f) => (StatusCode::UNPROCESSABLE_ENTITY, f.clone()),
            ApiError::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, vec![]),
            ApiError::Unprocessable(_, f) => (StatusCode::UNPROCESSABLE_ENTITY, f.clone()),
            ApiError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, vec![]),
            ApiError::Unexpected(e) if is_timeout(e) => {
                // A read past the store's time limit: the client's to narrow.
                let mut resp = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({ "error": smartlink_store::StoreError::Timeout.to_string() })),
                )
                    .into_response();
                resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("10"));
                resp.extensions_mut().insert(StoreFailure::Timeout);
                return resp;
            }
            ApiError::Unexpected(e) if is_unavailable(e) => {
                // The shared store cut off: the client's to retry.
                tracing::warn!(error = %e, "the store is unreachable");
                let mut resp = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(serde_json::json!({ "error": "the store is unreachable; retry later" })),
                )
                    .into_response();
                resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("5"));
                resp.extensions_mut().insert(StoreFailure::Unavailable);
                return resp;
            }
            ApiError::Unexpected(e) if invalid_query(e).is_some() => {
                // A query the store refuses (e.g. sub-ids before the raw
                // retention horizon): the message says what to change.
                let msg = invalid_query(e).unwrap_or_default();
                return (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": msg }))).into_response();
            }
            ApiError::Unexpected(e) => {
                tracing::error!(error = ?e, "unexpected error in an API request");
                (StatusCode::INTERNAL_SERVER_ERROR, vec![])
            }
        };
        let mut body = serde_json::json!({ "error": self.to_string() });
        if !fields.is_empty() {
            body["fields"] = serde_json::to_value(fields).unwrap_or_default();
        }
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // Counted by the app's metrics layer (`count_store_failures`).
            resp.extensions_mut().insert(StoreFailure::Failed);
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("5"));
        }
        resp
    }
}

/// A path parameter whose rejection is an [`ApiError`] (a JSON `400`
/// naming what is wrong) rather than axum's plain-text one.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(ApiPath(t)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Whether `e` is a store read stopped by its time limit.
fn is_timeout(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<smartlink_store::StoreError>(), Some(smartlink_store::StoreError::Timeout)))
}

/// Whether `e` is a store that could not be reached.
fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<smartlink_store::StoreError>().is_some_and(|s| s.is_unavailable()))
}

/// The message of a query the store refused as invalid, if `e` is one.
fn invalid_query(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| match c.downcast_ref::<smartlink_store::StoreError>() {
        Some(smartlink_store::StoreError::Invalid(m)) => Some(m.clone()),
        _ => None,
    })
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Bad { param, message } => ApiError::BadRequest(format!("{param}: {message}")),
            ReportError::Store(smartlink_store::StoreError::Invalid(m)) => ApiError::BadRequest(m),
            ReportError::Store(e) => ApiError::Unexpected(e.into()),
        }
    }
}

impl From<smartlink_analysis::costs::CostError> for ApiError {
    fn from(e: smartlink_analysis::costs::CostError) -> Self {
        use smartlink_analysis::costs::CostError;
        match e {
            CostError::Bad { field, message } => ApiError::Invalid(vec![FieldError { path: field, message }]),
            CostError::Store(e) => ApiError::Unexpected(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_read_past_its_time_limit_is_a_503_that_says_so() {
        for e in [
            ApiError::Unexpected(smartlink_store::StoreError::Timeout.into()),
            ApiError::from(ReportError::Store(smartlink_store::StoreError::Timeout)),
            ApiError::Unexpected(anyhow::Error::from(smartlink_store::StoreError::Timeout).context("report")),
        ] {
            let r = e.into_response();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"10"[..]));
        }
        let other = ApiError::Unexpected(anyhow::anyhow!("disk on fire")).into_response();
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

/// No API route at `path`: the API's JSON 404 (the router's fallback
/// answers every other path, `crate::click::fallback`).
pub(crate) fn api_not_found(path: &str) -> Response {
    ApiError::NotFound(format!("no API route {path:?}; see /api/docs")).into_response()
}

/// One invalid value: where it is and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
