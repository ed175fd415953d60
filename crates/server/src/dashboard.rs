//! The web dashboard: its static files (hand-written HTML, CSS and ES
//! modules under `assets/`, embedded in the binary; no build step) and its
//! session endpoints (sign-in, who am I, sign-out).
//!
//! The dashboard's script reads and changes everything through the public
//! `/api/v1` API, authenticated by the session cookie
//! ([`crate::auth::auth`] accepts it where it accepts a bearer token, and
//! scopes it the same way); this module never reads the store.
//!
//! Where: always under `/ui/`, and at `/` when the request's host has no
//! `default_link` (no `domains:` configured, or a host whose entry names
//! none). A host with a `default_link` keeps `/` as a click on it, and an
//! unknown host keeps its unknown-host page ([`crate::click::fallback`]).
//!
//! Every answer here carries a strict Content-Security-Policy (only this
//! origin's scripts, styles and requests; no inline script), `nosniff`,
//! `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.

use std::sync::{Arc, LazyLock};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Scope;
use crate::domains::Lookup;
use crate::error::ApiPath;
use crate::openapi::{ApiRouter, ErrorBody};
use crate::routes;
use crate::session::{self, Credential};
use crate::state::AppState;

pub fn routes() -> ApiRouter<Arc<AppState>> {
    ApiRouter::new()
        .routes(routes!(root => __path_root))
        .routes(routes!(ui_index => __path_ui_index))
        .routes(routes!(asset => __path_asset))
        .routes(routes!(whoami => __path_whoami, sign_in => __path_sign_in, sign_out => __path_sign_out))
}

/// The policy of every dashboard answer: this origin only, no inline
/// script or style, never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                       object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, body: include_bytes!(concat!("../assets/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("util.js", JS),
    asset!("chart.js", JS),
    asset!("overview.js", JS),
    asset!("breakdowns.js", JS),
    asset!("offers.js", JS),
    asset!("events.js", JS),
    asset!("traffic.js", JS),
    asset!("audit.js", JS),
    asset!("explain.js", JS),
    asset!("coverage.js", JS),
    asset!("quality.js", JS),
    asset!("logs.js", JS),
    asset!("history.js", JS),
    asset!("defs.js", JS),
    asset!("simulator.js", JS),
];

/// Each asset's entity tag (a digest of its bytes), in [`ASSETS`] order.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    ASSETS
        .iter()
        .map(|a| {
            let d = Sha256::digest(a.body);
            let hex: String = d.iter().take(12).map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex digits")
        })
        .collect()
});

/// The names of the embedded files (for tests that check every one).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// Adds the dashboard's security headers.
fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// An embedded file; `no-cache` with its entity tag, so a browser checks
/// for a new binary's files and gets a `304` when unchanged.
fn serve_asset(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        let r = (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such file\n");
        return secured(r.into_response());
    };
    let (a, etag) = (&ASSETS[i], &ETAGS[i]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag.to_str().unwrap_or("") || t.trim() == "*"));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type))], a.body).into_response()
    };
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert(header::ETAG, etag.clone());
    secured(r)
}

/// The dashboard, unless this host's `/` is a link (see the module doc).
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard's page (when the host has no `default_link`)", content_type = "text/html", body = String),
              (status = 302, description = "A click on the host's `default_link` (custom tracking domains)"),
              (status = 404, description = "A host no `domains:` entry names", content_type = "text/html", body = String)))]
async fn root(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let dashboard = match app.domains.load().lookup(crate::click::request_host(&req)) {
        Lookup::Open => true,
        Lookup::Domain(d) => d.default_path.is_none(),
        Lookup::Unknown => false,
    };
    if dashboard {
        serve_asset("index.html", req.headers())
    } else {
        crate::click::fallback(State(app), req).await
    }
}

/// The dashboard, on every host.
#[utoipa::path(get, path = "/ui/", tag = "dashboard",
    responses((status = 200, description = "The dashboard's page", content_type = "text/html", body = String)))]
async fn ui_index(headers: HeaderMap) -> Response {
    serve_asset("index.html", &headers)
}

/// The dashboard's files: its script modules, style sheet and icon.
#[utoipa::path(get, path = "/ui/{file}", tag = "dashboard",
    params(("file" = String, Path, description = "A file name, e.g. `app.js`")),
    responses((status = 200, description = "The file (JavaScript, CSS, SVG or HTML); `ETag` is its entity tag",
               content((String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"), (String = "text/html")),
               headers(("etag" = String, description = "The file's entity tag"))),
              (status = 304, description = "`If-None-Match` names the file's entity tag"),
              (status = 400, description = "A malformed path", body = ErrorBody),
              (status = 404, description = "No such file", content_type = "text/plain", body = String)))]
async fn asset(ApiPath(file): ApiPath<String>, headers: HeaderMap) -> Response {
    serve_asset(&file, &headers)
}

/// Sign-in: the admin token or an affiliate's API key.
#[derive(Deserialize, ToSchema)]
pub struct SignIn {
    pub token: String,
}

/// A dashboard session: who it is and the token its changes carry.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// `admin` or `affiliate`.
    pub role: String,
    /// The affiliate's id (an affiliate session).
    pub affiliate: Option<String>,
    /// Send it as `X-CSRF-Token` with every request that changes something.
    pub csrf_token: String,
    /// When the session ends (unix ms).
    pub expires_ms: i64,
}

fn session_json(scope: &Scope, s: &session::Session) -> Response {
    let (role, affiliate) = match scope {
        Scope::Admin => ("admin", None),
        Scope::Affiliate { id, .. } => ("affiliate", Some(id.clone())),
    };
    Json(SessionInfo { role: role.into(), affiliate, csrf_token: s.csrf.clone(), expires_ms: s.expires_ms })
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Session answers are never stored by a cache.
fn private(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secured(r)
}

/// Whether the client reached this server over TLS: the TLS listener, or
/// a trusted proxy saying `X-Forwarded-Proto: https`.
fn over_tls(app: &AppState, req: &Request) -> bool {
    if req.extensions().get::<crate::http::OverTls>().is_some() {
        return true;
    }
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    peer.is_some_and(|p| app.proxies.trusts(p))
        && req.headers().get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The current session, if the cookie names a live one whose credential
/// still holds.
fn current(app: &AppState, headers: &HeaderMap) -> Option<(String, session::Session, Scope)> {
    let id = session::cookie(headers)?;
    let s = app.sessions.get(id, (app.clock)())?;
    let scope = crate::auth::session_scope(app, &s.credential)?;
    Some((id.to_string(), s, scope))
}

/// The signed-in session (the page asks on load). Not signed in is a
/// `204`, not an error: a page that shows the sign-in form has nothing
/// to complain about (a 4xx would be a console error in every browser).
#[utoipa::path(get, path = "/ui/session", tag = "dashboard",
    responses((status = 200, description = "Signed in", body = SessionInfo),
              (status = 204, description = "Not signed in (no cookie, or its session ended)")))]
async fn whoami(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    private(match current(&app, &headers) {
        Some((_, s, scope)) => session_json(&scope, &s),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Signs in with the admin token or an affiliate's API key; the answer
/// sets the session cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`,
/// `Secure` over TLS). Failures are counted per client address: past
/// five in a minute, `429` until the minute ends.
#[utoipa::path(post, path = "/ui/session", tag = "dashboard",
    request_body(content = SignIn, content_type = "application/json"),
    responses((status = 200, description = "Signed in; `Set-Cookie` holds the session id", body = SessionInfo,
               headers(("set-cookie" = String, description = "The session cookie"))),
              (status = 400, description = "The body is not `{\"token\": \"…\"}`", body = ErrorBody),
              (status = 401, description = "Neither the admin token nor an affiliate key", body = ErrorBody),
              (status = 403, description = "From another origin", body = ErrorBody),
              (status = 429, description = "Too many failures from this address (`Retry-After`)", body = ErrorBody,
               headers(("retry-after" = String, description = "Seconds to wait")))))]
async fn sign_in(State(app): State<Arc<AppState>>, req: Request) -> Response {
    if !session::same_origin(req.headers()) {
        return private(error(StatusCode::FORBIDDEN, "sign in from this server's own page"));
    }
    let ip = crate::postback::client_ip(&app, &req);
    let now = (app.clock)();
    if let Some(secs) = app.sessions.blocked(ip, now) {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "too many failed sign-ins from this address: wait");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return private(r);
    }
    let secure = over_tls(&app, &req);
    let previous = session::cookie(req.headers()).map(String::from);
    let Ok(body) = axum::body::to_bytes(req.into_body(), 16 * 1024).await else {
        return private(error(StatusCode::BAD_REQUEST, "the body is not {\"token\": \"...\"}"));
    };
    let Ok(SignIn { token }) = serde_json::from_slice::<SignIn>(&body) else {
        return private(error(StatusCode::BAD_REQUEST, "the body is not {\"token\": \"...\"}"));
    };
    let Some(scope) = crate::auth::identify(&app, token.trim()) else {
        app.sessions.failed(ip, now);
        return private(error(StatusCode::UNAUTHORIZED, "this is neither the admin token nor an affiliate's API key"));
    };
    app.sessions.succeeded(ip);
    if let Some(old) = previous {
        app.sessions.remove(&old);
    }
    let credential = match scope {
        Scope::Admin => Credential::Admin,
        Scope::Affiliate { .. } => Credential::Affiliate { hashed_key: crate::defs::hashed_api_key(token.trim()) },
    };
    let (id, s) = app.sessions.create(credential, now);
    let mut r = session_json(&scope, &s);
    r.headers_mut().insert(header::SET_COOKIE, session::set_cookie(Some(&id), secure));
    private(r)
}

/// Signs out: the session ends and the cookie is cleared. With a live
/// session it needs the session's `X-CSRF-Token`.
#[utoipa::path(delete, path = "/ui/session", tag = "dashboard",
    params(("X-CSRF-Token" = Option<String>, Header, description = "The session's CSRF token")),
    responses((status = 204, description = "Signed out (or was not signed in)",
               headers(("set-cookie" = String, description = "Clears the session cookie"))),
              (status = 403, description = "Without the session's CSRF token, or from another origin", body = ErrorBody)))]
async fn sign_out(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let headers = req.headers();
    if let Some(id) = session::cookie(headers) {
        if let Some(s) = app.sessions.get(id, (app.clock)()) {
            if !session::same_origin(headers) || !crate::auth::csrf_ok(headers, &s) {
                return private(error(StatusCode::FORBIDDEN, "signing out needs the session's X-CSRF-Token header"));
            }
            app.sessions.remove(id);
        }
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, session::set_cookie(None, over_tls(&app, &req)));
    private(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_once_and_names_no_other_host() {
        let mut names = std::collections::BTreeSet::new();
        for a in ASSETS {
            assert!(names.insert(a.name), "{} twice", a.name);
            let text = std::str::from_utf8(a.body).unwrap();
            // The SVG namespace is a name, never fetched.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for scheme in ["http://", "https://"] {
                assert!(!text.contains(scheme), "{} names a URL ({scheme})", a.name);
            }
        }
        // Every file the directory holds is served.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(names.contains(name.as_str()), "assets/{name} is not embedded");
        }
    }
}
