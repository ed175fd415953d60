//! Who is calling the API: the bearer-token middleware, its [`Scope`] (the
//! admin token, or an affiliate key forced to its own data), and the
//! constant-time token comparison postbacks use too.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Constant-time comparison (on digests, so lengths leak nothing either).
pub fn token_matches(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn auth(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(t) = given.map(str::trim) else { return ApiError::Unauthorized.into_response() };
    let mut req = req;
    if token_matches(t, app.admin_token.expose()) {
        req.extensions_mut().insert(Scope::Admin);
        return next.run(req).await;
    }
    // Keys are stored hashed: hash what was sent and compare the hashes.
    // Every key is compared, so the time taken says nothing about which matched.
    let given = crate::defs::hashed_api_key(t);
    let pbc = app.postbacks.load();
    let mut found = None;
    for (k, key, id) in &pbc.api_keys {
        if token_matches(&given, k.expose()) {
            found = Some((*key, id.clone()));
        }
    }
    let Some((key, id)) = found else { return ApiError::Unauthorized.into_response() };
    match scope_request(&mut req, &id) {
        Ok(()) => {
            req.extensions_mut().insert(Scope::Affiliate { key, id });
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Who is calling the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The admin token: everything.
    Admin,
    /// An affiliate's `api_key`: read-only, its own data only.
    Affiliate { key: u32, id: String },
}

/// What an affiliate key may do: read reports, clicks and conversions
/// (forced to its own affiliate) and its own smartlinks. Anything else is
/// 403.
fn scope_request(req: &mut axum::extract::Request, affiliate: &str) -> Result<(), ApiError> {
    let forbidden =
        || ApiError::Forbidden("an affiliate key may only read its reports, clicks, conversions and smartlinks".into());
    if req.method() != axum::http::Method::GET {
        return Err(forbidden());
    }
    let path = req.uri().path().to_string();
    let rel = path.strip_prefix("/api/v1").unwrap_or(&path);
    let force_filter = match rel {
        "/report" | "/conversions" | "/clicks" => true,
        p if p.starts_with("/conversions/")
            || p.starts_with("/clicks/")
            || p == "/smartlinks"
            || p.starts_with("/smartlinks/") =>
        {
            false
        }
        _ => return Err(forbidden()),
    };
    if force_filter {
        // Whatever affiliate filter was asked for, it is this affiliate's.
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k != "affiliate")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.push(("affiliate".into(), affiliate.into()));
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let uri = format!("{path}?{query}").parse().map_err(|_| ApiError::BadRequest("bad query string".into()))?;
        *req.uri_mut() = uri;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_accepts_only_the_exact_token() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("", "abc"));
        assert!(!token_matches("abcd", "abc"));
    }
}
