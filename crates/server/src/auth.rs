//! Who is calling the API: the bearer-token (or dashboard session cookie)
//! middleware, its [`Scope`] (the admin token, or an affiliate key forced
//! to its own data), and the constant-time token comparison postbacks use
//! too. The dashboard's sessions are scoped here, by the same code as
//! bearer tokens: there is one implementation of what a key may see.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
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

/// The API's gate: a bearer token (the admin token or an affiliate key),
/// else the dashboard's session cookie. A cookie-authenticated request
/// other than `GET`/`HEAD` must also carry the session's CSRF token and
/// come from this server's own pages ([`crate::session`]). Either way the
/// caller ends up with one [`Scope`], applied by [`admit`].
pub async fn auth(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let who = match headers.get("authorization") {
        Some(v) => {
            let given = v.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
            let Some(t) = given.map(str::trim) else { return ApiError::Unauthorized.into_response() };
            identify(&app, t)
        }
        None => match by_cookie(&app, &headers, req.method()) {
            Ok(who) => who,
            Err(e) => return e.into_response(),
        },
    };
    match who {
        Some(who) => admit(req, who, next).await,
        None => ApiError::Unauthorized.into_response(),
    }
}

/// Who a token is: the admin token, an affiliate key, or nobody.
pub fn identify(app: &AppState, token: &str) -> Option<Scope> {
    // The admin token and affiliate keys are kept hashed: hash what was
    // sent and compare the hashes.
    let hashed = crate::defs::hashed_api_key(token);
    if token_matches(&hashed, app.admin_token_hash.expose()) {
        return Some(Scope::Admin);
    }
    affiliate_by_hash(app, &hashed)
}

/// The affiliate whose stored key hash this is. Every key is compared, so
/// the time taken says nothing about which matched.
fn affiliate_by_hash(app: &AppState, hashed: &str) -> Option<Scope> {
    let pbc = app.postbacks.load();
    let mut found = None;
    for (k, key, id) in &pbc.api_keys {
        if token_matches(hashed, k.expose()) {
            found = Some(Scope::Affiliate { key: *key, id: id.clone() });
        }
    }
    found
}

/// The scope of the session the cookie names (`Ok(None)`: no cookie, or
/// no live session, or its key is gone); a change without the session's
/// CSRF token or from another origin is 403.
fn by_cookie(app: &AppState, headers: &HeaderMap, method: &Method) -> Result<Option<Scope>, ApiError> {
    let Some(id) = crate::session::cookie(headers) else { return Ok(None) };
    let Some(session) = app.sessions.get(id, (app.clock)()) else { return Ok(None) };
    if !matches!(*method, Method::GET | Method::HEAD) {
        if !crate::session::same_origin(headers) {
            return Err(ApiError::Forbidden("a change must come from this server's own pages".into()));
        }
        if !csrf_ok(headers, &session) {
            return Err(ApiError::Forbidden(
                "a change made with the session cookie needs the session's X-CSRF-Token header".into(),
            ));
        }
    }
    Ok(session_scope(app, &session.credential))
}

/// Whether `headers` carry `session`'s CSRF token (compared in constant time).
pub fn csrf_ok(headers: &HeaderMap, session: &crate::session::Session) -> bool {
    let given = headers.get(crate::session::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    !given.is_empty() && token_matches(given, &session.csrf)
}

/// The scope a session's credential has now (`None`: its key is gone).
pub fn session_scope(app: &AppState, credential: &crate::session::Credential) -> Option<Scope> {
    match credential {
        crate::session::Credential::Admin => Some(Scope::Admin),
        crate::session::Credential::Affiliate { hashed_key } => affiliate_by_hash(app, hashed_key),
    }
}

/// Lets the request through as `who`: an affiliate's is first forced to
/// its own data ([`scope_request`]).
async fn admit(mut req: axum::extract::Request, who: Scope, next: Next) -> Response {
    if let Scope::Affiliate { id, .. } = &who {
        if let Err(e) = scope_request(&mut req, id) {
            return e.into_response();
        }
    }
    req.extensions_mut().insert(who);
    next.run(req).await
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
    if req.method() != Method::GET {
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
