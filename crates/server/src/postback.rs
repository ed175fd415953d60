//! Inbound postbacks (advertiser → smartlink): authentication, attribution
//! from the signed click id, dedup and status changes, durable group commit.
//!
//! A postback is answered only after its transaction is committed
//! (`synchronous = FULL`). Postbacks arriving together share one commit: a
//! dedicated writer thread drains the queue and commits each batch at once,
//! so throughput does not pay one fsync per postback.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use smartlink_core::clickid::ClickIdError;
use smartlink_core::conversion::Status as ConvStatus;
use smartlink_core::engine::apply_conversion;
use smartlink_core::template::encode_into;
use smartlink_store::{PostbackIn, Recorded};

use crate::auth::token_matches;
use crate::state::AppState;

// ----------------------------------------------------------- handler -----

/// A postback refused: the status and the parameter at fault.
#[derive(Debug)]
pub struct PostbackError {
    pub status: StatusCode,
    /// The parameter at fault, as the client sent its name.
    pub parameter: Option<Cow<'static, str>>,
    pub message: String,
}

fn err(status: StatusCode, parameter: Option<&'static str>, message: impl Into<String>) -> PostbackError {
    PostbackError { status, parameter: parameter.map(Cow::Borrowed), message: message.into() }
}

impl IntoResponse for PostbackError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(p) = self.parameter {
            body["parameter"] = p.into();
        }
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The store could not commit (unreachable, or the queue full):
            // nothing was recorded, and the sender should try again soon.
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        }
        resp
    }
}

/// The first value among a parameter's accepted names.
fn param<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()))
}

/// Every parameter name a postback reads (with its aliases).
const KNOWN_PARAMS: [&str; 17] = [
    "click_id",
    "clickid",
    "subid",
    "cid",
    "token",
    "ts",
    "sig",
    "status",
    "currency",
    "payout",
    "sum",
    "amount",
    "event",
    "goal",
    "txid",
    "transaction_id",
    "tid",
];

/// Canonical form signed in signed mode: every parameter except `sig`, its
/// name and value (decoded) percent-encoded to RFC 3986 unreserved
/// characters, sorted by encoded name then value, as `name=value` joined
/// with `&`. Encoding makes the form unambiguous (as AWS SigV4's is): no
/// name or value can contain the `=` or `&` that separate them, so the
/// same bytes cannot be re-split into other parameters.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut v: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "sig")
        .map(|(k, val)| {
            let (mut ek, mut ev) = (String::new(), String::new());
            encode_into(k, &mut ek);
            encode_into(val, &mut ev);
            (ek, ev)
        })
        .collect();
    v.sort();
    v.iter().map(|(k, val)| format!("{k}={val}")).collect::<Vec<_>>().join("&")
}

/// [`signed_shape_error`]'s verdict as a plain result: the name of the
/// parameter at fault and why (for the fuzz target and callers outside).
#[doc(hidden)]
pub fn signed_shape_check(params: &[(String, String)]) -> Result<(), (String, String)> {
    match signed_shape_error(params) {
        None => Ok(()),
        Some(e) => Err((e.parameter.map(|p| p.into_owned()).unwrap_or_default(), e.message)),
    }
}

/// What signed mode refuses before it looks at the signature: a parameter
/// sent twice (which one would count?) or one no postback reads (a place
/// to move signed bytes to). Returns the parameter at fault.
fn signed_shape_error(params: &[(String, String)]) -> Option<PostbackError> {
    for (i, (k, _)) in params.iter().enumerate() {
        if !KNOWN_PARAMS.contains(&k.as_str()) {
            return Some(PostbackError {
                status: StatusCode::BAD_REQUEST,
                parameter: Some(Cow::Owned(k.clone())),
                message: format!("unknown parameter {k:?}: a signed postback sends only the parameters it means"),
            });
        }
        if params[..i].iter().any(|(p, _)| p == k) {
            return Some(PostbackError {
                status: StatusCode::BAD_REQUEST,
                parameter: Some(Cow::Owned(k.clone())),
                message: format!("parameter {k:?} is repeated: a signed postback sends each parameter once"),
            });
        }
    }
    None
}

/// Whether `ts` (unix seconds) is within `window_secs` of now, without
/// overflow for any `ts`.
fn fresh(now_ms: i64, ts: i64, window_secs: u64) -> bool {
    (now_ms / 1000).abs_diff(ts) <= window_secs
}

pub fn sign(secret: &str, canonical: &str) -> String {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(canonical.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The advertiser's postback, parameters in the query string.
#[utoipa::path(get, path = "/postback", tag = "postbacks", security(("postback_token" = []), ()),
    params(("click_id" = String, Query, description = "The click id (aliases `clickid`, `subid`, `cid`)"),
           ("payout" = Option<String>, Query, description = "Payout (aliases `sum`, `amount`); default the offer's"),
           ("currency" = Option<String>, Query, description = "Currency of `payout` (default the offer's)"),
           ("status" = Option<String>, Query, description = "`approved` (default), `pending`, `rejected`, `chargeback`; `1`/`2`/`3`, `lead`/`sale`"),
           ("txid" = Option<String>, Query, description = "Transaction id (aliases `transaction_id`, `tid`), at most 256 bytes"),
           ("event" = Option<String>, Query, description = "Event name (alias `goal`; default `conversion`), at most 64 bytes"),
           ("ts" = Option<i64>, Query, description = "Signed mode: unix seconds, within the signed window"),
           ("sig" = Option<String>, Query, description = "Signed mode: hex HMAC-SHA256 of the canonical query")),
    responses((status = 200, description = "Recorded (or a duplicate, or a status update), once committed", body = crate::openapi::Converted),
              (status = 400, description = "A missing, malformed or forged click id; in signed mode an unknown or repeated parameter", body = crate::openapi::PostbackErrorBody),
              (status = 401, description = "A missing or wrong token, or an advertiser that accepts no postbacks", body = crate::openapi::PostbackErrorBody),
              (status = 403, description = "An address not allowed, a bad signature or a stale `ts`", body = crate::openapi::PostbackErrorBody),
              (status = 404, description = "An unknown smartlink or offer, or a fallback click", body = crate::openapi::PostbackErrorBody),
              (status = 410, description = "The click is older than the offer's attribution window", body = crate::openapi::PostbackErrorBody),
              (status = 422, description = "A bad value (status, currency, payout, event, txid)", body = crate::openapi::PostbackErrorBody),
              (status = 503, description = "The conversion could not be stored; retry", body = crate::openapi::PostbackErrorBody)))]
pub async fn postback_get(state: State<Arc<AppState>>, req: Request) -> Response {
    postback(state, req).await
}

/// The advertiser's postback, parameters in a form body (and the query string).
#[utoipa::path(post, path = "/postback", tag = "postbacks", security(("postback_token" = []), ()),
    request_body(content = crate::openapi::PostbackForm, content_type = "application/x-www-form-urlencoded",
                 description = "The postback's parameters"),
    responses((status = 200, description = "Recorded (or a duplicate, or a status update), once committed", body = crate::openapi::Converted),
              (status = 400, description = "A missing, malformed or forged click id; in signed mode an unknown or repeated parameter", body = crate::openapi::PostbackErrorBody),
              (status = 401, description = "A missing or wrong token, or an advertiser that accepts no postbacks", body = crate::openapi::PostbackErrorBody),
              (status = 403, description = "An address not allowed, a bad signature or a stale `ts`", body = crate::openapi::PostbackErrorBody),
              (status = 404, description = "An unknown smartlink or offer, or a fallback click", body = crate::openapi::PostbackErrorBody),
              (status = 410, description = "The click is older than the offer's attribution window", body = crate::openapi::PostbackErrorBody),
              (status = 415, description = "A body that is not a form", body = crate::openapi::PostbackErrorBody),
              (status = 422, description = "A bad value (status, currency, payout, event, txid)", body = crate::openapi::PostbackErrorBody),
              (status = 503, description = "The conversion could not be stored; retry", body = crate::openapi::PostbackErrorBody)))]
pub async fn postback_post(state: State<Arc<AppState>>, req: Request) -> Response {
    postback(state, req).await
}

async fn postback(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let app_metrics = app.metrics.clone();
    match handle(app, req).await {
        Ok(r) => r.into_response(),
        Err(e) => {
            log_refused(&app_metrics, "postback", &e);
            e.into_response()
        }
    }
}

/// Counts a refused postback or pixel and logs one structured line: the
/// status, the parameter and the reason (which never quote a token or
/// signature).
pub fn log_refused(metrics: &crate::metrics::Metrics, channel: &'static str, e: &PostbackError) {
    metrics.conversion(channel, "refused", e.status.as_u16(), parameter_label(e.parameter.as_deref()));
    let parameter = e.parameter.as_deref().unwrap_or("");
    tracing::info!(channel, status = e.status.as_u16(), parameter, reason = %e.message, "conversion refused");
}

/// The `parameter` label of a refusal: a name the postback reads (its
/// first alias, so `clickid` and `subid` count as `click_id`), `other` for
/// any other name a client sent (unbounded, so never a label of its own),
/// `none` when no one parameter is at fault.
fn parameter_label(p: Option<&str>) -> &'static str {
    match p {
        None => "none",
        Some("click_id" | "clickid" | "subid" | "cid") => "click_id",
        Some("payout" | "sum" | "amount") => "payout",
        Some("event" | "goal") => "event",
        Some("txid" | "transaction_id" | "tid") => "txid",
        Some(p) => KNOWN_PARAMS.iter().find(|k| **k == p).copied().unwrap_or("other"),
    }
}

/// How a conversion reached the server, which decides how it is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The advertiser's server (`/postback`): token, IP list, signature.
    Postback,
    /// A browser pixel (`/pixel`): the token alone, for advertisers that
    /// allow it (`allow_pixel`).
    Pixel,
}

impl Channel {
    fn source(self) -> &'static str {
        match self {
            Channel::Postback => "postback",
            Channel::Pixel => "pixel",
        }
    }
}

/// The query string's parameters.
pub fn query_params(req: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect()
}

/// The client address, through trusted proxies.
pub fn client_ip(app: &AppState, req: &Request) -> Option<IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    crate::click::client_ip(&app.proxies, req.headers(), peer)
}

async fn handle(app: Arc<AppState>, req: Request) -> Result<Converted, PostbackError> {
    let ip = client_ip(&app, &req);
    let mut params = query_params(&req);
    if req.method() == Method::POST {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(err(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "send parameters in the query string or as application/x-www-form-urlencoded",
            ));
        }
        let body: Bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
            .await
            .map_err(|_| err(StatusCode::BAD_REQUEST, None, "request body is unreadable or larger than 64 KiB"))?;
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    convert(&app, &params, ip, Channel::Postback).await
}

/// Authenticates, attributes and records one conversion from its
/// parameters (a postback's or a pixel's), answering only once it is
/// durably stored.
pub async fn convert(
    app: &Arc<AppState>,
    params: &[(String, String)],
    ip: Option<IpAddr>,
    channel: Channel,
) -> Result<Converted, PostbackError> {
    let now_ms = (app.clock)();
    let click_id =
        param(params, &["click_id", "clickid", "subid", "cid"]).filter(|v| !v.is_empty()).ok_or_else(|| {
            err(StatusCode::BAD_REQUEST, Some("click_id"), "click_id is required (aliases: clickid, subid, cid)")
        })?;
    let facts = app.codec.decode(click_id).map_err(|e| match e {
        ClickIdError::BadSignature => {
            err(StatusCode::BAD_REQUEST, Some("click_id"), "click_id signature does not verify: forged or altered")
        }
        _ => err(StatusCode::BAD_REQUEST, Some("click_id"), format!("click_id is malformed: {e}")),
    })?;

    let catalog = app.catalog.load_full();
    let pbc = app.postbacks.load_full();
    if catalog.smartlink_by_key(facts.smartlink).is_none() {
        return Err(err(StatusCode::NOT_FOUND, Some("click_id"), "click_id belongs to an unknown smartlink"));
    }
    let offer_key = facts.offer.ok_or_else(|| {
        err(StatusCode::NOT_FOUND, Some("click_id"), "this click went to the fallback URL: there is no offer to credit")
    })?;
    let offer = catalog
        .offer_by_key(offer_key)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, Some("click_id"), "the offer of this click no longer exists"))?;

    // Authentication: the offer's advertiser.
    let auth = pbc.advertisers.get(offer.advertiser.as_str());
    let auth = match auth {
        Some(a) if a.token.is_some() || a.secret.is_some() => a,
        _ => {
            return Err(err(
                StatusCode::UNAUTHORIZED,
                Some("token"),
                format!(
                    "advertiser {} accepts no postbacks: configure its postback_token or postback_secret",
                    offer.advertiser
                ),
            ))
        }
    };
    if channel == Channel::Pixel {
        // A browser can sign nothing and comes from anywhere: the pixel is
        // the token alone, and only where the advertiser allows that.
        let token = auth.token.as_ref().filter(|_| auth.allow_pixel).ok_or_else(|| {
            err(
                StatusCode::FORBIDDEN,
                None,
                format!("advertiser {} accepts no conversion pixel (allow_pixel is not set)", offer.advertiser),
            )
        })?;
        if !token_matches(param(params, &["token"]).unwrap_or(""), token.expose()) {
            return Err(err(StatusCode::UNAUTHORIZED, Some("token"), "token is missing or wrong"));
        }
    } else if let Some(t) = &auth.token {
        let given = param(params, &["token"]).unwrap_or("");
        if !token_matches(given, t.expose()) {
            return Err(err(StatusCode::UNAUTHORIZED, Some("token"), "token is missing or wrong"));
        }
    }
    if channel == Channel::Postback
        && !auth.ips.is_empty()
        && !ip.is_some_and(|ip| auth.ips.iter().any(|c| c.contains(ip)))
    {
        let shown = ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown".into());
        return Err(err(
            StatusCode::FORBIDDEN,
            None,
            format!("postbacks from {shown} are not allowed for this advertiser"),
        ));
    }
    if let Some(secret) = auth.secret.as_ref().filter(|_| channel == Channel::Postback) {
        if let Some(e) = signed_shape_error(params) {
            return Err(e);
        }
        let ts: i64 = param(params, &["ts"])
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| err(StatusCode::FORBIDDEN, Some("ts"), "signed postbacks need ts (unix seconds)"))?;
        if !fresh(now_ms, ts, app.signed_window_secs) {
            return Err(err(
                StatusCode::FORBIDDEN,
                Some("ts"),
                "ts is outside the accepted window (replayed or clock skew)",
            ));
        }
        let sig = param(params, &["sig"]).unwrap_or("");
        if !token_matches(&sign(secret.expose(), &canonical_query(params)), &sig.to_ascii_lowercase()) {
            return Err(err(
                StatusCode::FORBIDDEN,
                Some("sig"),
                "sig does not match the HMAC-SHA256 of the canonical query",
            ));
        }
    }

    let click_ms = facts.time_secs as i64 * 1000;
    if now_ms - click_ms > offer.attribution_window_secs as i64 * 1000 {
        return Err(err(StatusCode::GONE, Some("click_id"), "the click is older than the offer's attribution window"));
    }
    let status = match param(params, &["status"]) {
        None => ConvStatus::Approved,
        Some(s) => ConvStatus::parse(s).ok_or_else(|| {
            err(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("status"),
                format!("unknown status {s:?}; expected approved, pending, rejected, chargeback (or 1, 2, 3)"),
            )
        })?,
    };
    let currency = match param(params, &["currency"]) {
        None | Some("") => offer.currency.as_str().to_string(),
        Some(c) => c.to_ascii_uppercase(),
    };
    let rate = *pbc.rates.get(&currency).ok_or_else(|| {
        err(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("currency"),
            format!("unknown currency {currency:?}: add its rate under currencies"),
        )
    })?;
    let payout = match param(params, &["payout", "sum", "amount"]) {
        None | Some("") => None,
        Some(p) => Some(p.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
            err(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("payout"),
                format!("payout must be a number of zero or more, got {p:?}"),
            )
        })?),
    };
    let event = param(params, &["event", "goal"]).filter(|e| !e.is_empty()).unwrap_or("conversion");
    if event.len() > 64 {
        return Err(err(StatusCode::UNPROCESSABLE_ENTITY, Some("event"), "event is longer than 64 bytes"));
    }
    let txid = param(params, &["txid", "transaction_id", "tid"]).unwrap_or("");
    if txid.len() > 256 {
        return Err(err(StatusCode::UNPROCESSABLE_ENTITY, Some("txid"), "txid is longer than 256 bytes"));
    }
    if let Some(p) = payout {
        let base = p * rate;
        if !(base.is_finite() && base <= pbc.max_payout) {
            return Err(err(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("payout"),
                format!(
                    "payout {p:?} {currency} is {base:?} in the base currency, more than max_payout ({:?})",
                    pbc.max_payout
                ),
            ));
        }
    }
    // A new conversion without a payout earns the offer's current payout.
    let (payout, payout_currency, rate) = match payout {
        Some(p) => (Some(p), currency, rate),
        None => {
            (None, offer.currency.as_str().to_string(), pbc.rates.get(offer.currency.as_str()).copied().unwrap_or(1.0))
        }
    };
    let day = smartlink_core::time::local(offer.targeting.timezone, now_ms).day;
    let over_cap = status.pays()
        && offer.counters.reached(&offer.caps, day).is_some_and(|k| k != smartlink_core::caps::CapKind::Clicks);
    let outbound = pbc.outbound(facts.affiliate, facts.smartlink, offer_key, facts.source);
    // A CPA cost model (the link's, else its source's) charges each
    // approved conversion.
    let cost_base = catalog
        .smartlink_by_key(facts.smartlink)
        .and_then(|l| l.cost_model)
        .or_else(|| facts.source.and_then(|s| catalog.source_by_key(s)).and_then(|s| s.cost_model))
        .map_or(0.0, |m| m.per_conversion());
    // Conversion-side quality: the click's class travels in its id; a
    // conversion sooner after its click than the offer allows is too fast
    // for a person.
    let class = smartlink_visitor::quality::QualityClass::from_flags(facts.flags);
    let mut quality_flags = Vec::new();
    if class.is_bot() {
        quality_flags.push("bot_click");
    }
    if offer.min_ctit_secs > 0 && now_ms - click_ms < offer.min_ctit_secs as i64 * 1000 {
        quality_flags.push("short_ctit");
    }
    let input = PostbackIn {
        click_id: click_id.to_string(),
        event: event.to_string(),
        txid: txid.to_string(),
        status,
        payout,
        currency: payout_currency,
        payout_base: payout.map(|p| p * rate),
        smartlink: facts.smartlink,
        offer: offer_key,
        affiliate: facts.affiliate,
        country: facts.segment.country.to_string(),
        device: facts.segment.device.as_str().into(),
        os: facts.segment.os.as_str().into(),
        browser: facts.browser.as_str().into(),
        language: facts.language.map(|l| l.to_string()).unwrap_or_default(),
        quality: class.as_str().into(),
        quality_flags: quality_flags.join(","),
        click_ts_ms: click_ms,
        ts_ms: now_ms,
        over_cap,
        default_payout: offer.payout,
        default_payout_base: offer.payout_base,
        source: channel.source().into(),
        reason: None,
        outbound,
        cost_base,
    };
    let recorded = record_and_learn(app, input, &facts).await?;
    app.metrics.conversion(channel.source(), recorded.result, 200, "none");
    Ok(recorded)
}

/// A conversion durably stored: what was done (`recorded`, `duplicate`,
/// `updated`) and its id. Answers `200` with both as JSON.
#[derive(Clone, Copy, Debug)]
pub struct Converted {
    pub result: &'static str,
    pub conversion_id: i64,
}

impl IntoResponse for Converted {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "result": self.result, "conversion_id": self.conversion_id });
        (StatusCode::OK, Json(body)).into_response()
    }
}

/// Commits a postback (or admin change) and, once durable, feeds it to the
/// cap counters and the router.
pub async fn record_and_learn(
    app: &Arc<AppState>,
    input: PostbackIn,
    facts: &smartlink_core::clickid::ClickFacts,
) -> Result<Converted, PostbackError> {
    let now_ms = input.ts_ms;
    let status = input.status;
    let sent_payout_base = input.payout_base;
    let default_base = input.default_payout_base;
    let recorded = app.conversions.record(input).await.map_err(|e| {
        tracing::error!(error = %e, "postback not recorded");
        err(StatusCode::SERVICE_UNAVAILABLE, None, "the postback could not be stored; retry later")
    })?;
    let catalog = app.catalog.load();
    let (result, id) = match recorded {
        Recorded::New { id } => {
            apply_conversion(
                &catalog,
                facts,
                now_ms,
                None,
                status.for_router(),
                sent_payout_base.unwrap_or(default_base),
            );
            ("recorded", id)
        }
        Recorded::Updated { id, previous, payout_base } => {
            apply_conversion(&catalog, facts, now_ms, Some(previous.for_router()), status.for_router(), payout_base);
            ("updated", id)
        }
        Recorded::Duplicate { id } => ("duplicate", id),
        Recorded::Forbidden { current, .. } => {
            return Err(err(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("status"),
                format!("status cannot change from {} to {}", current.as_str(), status.as_str()),
            ))
        }
    };
    Ok(Converted { result, conversion_id: id })
}

/// Is this an address a redirect must never lead to?
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10 carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_query_sorts_and_skips_sig() {
        let p = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let q = p(&[("ts", "5"), ("click_id", "x"), ("sig", "zz"), ("payout", "1.5")]);
        assert_eq!(canonical_query(&q), "click_id=x&payout=1.5&ts=5");
        assert_eq!(sign("k", "a=1").len(), 64);
    }

    #[test]
    fn canonical_query_encodes_names_and_values_so_no_re_split_collides() {
        let p = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let honest = p(&[("payout", "1.5"), ("transaction_id", "T-77")]);
        let re_split = p(&[("payout=1.5&transaction_id", "T-77")]);
        assert_ne!(canonical_query(&honest), canonical_query(&re_split));
        assert_eq!(canonical_query(&re_split), "payout%3D1.5%26transaction_id=T-77");
        assert_eq!(canonical_query(&p(&[("txid", "a&b=c d/é")])), "txid=a%26b%3Dc%20d%2F%C3%A9");
    }

    #[test]
    fn freshness_is_checked_without_overflow_for_any_ts() {
        let now_ms = 1_767_571_200_000;
        for (ts, window, want) in [
            (1_767_571_200, 300, true),
            (1_767_571_500, 300, true),
            (1_767_571_501, 300, false),
            (1_767_570_899, 300, false),
            (i64::MIN, 300, false),
            (i64::MAX, 300, false),
            (1_767_571_200 - (1i64 << 62), u64::MAX, true),
        ] {
            assert_eq!(fresh(now_ms, ts, window), want, "ts {ts} window {window}");
        }
    }

    #[test]
    fn signed_mode_refuses_repeated_and_unknown_parameters_by_name() {
        let p = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let named = |v: &[(&str, &str)]| signed_shape_error(&p(v)).and_then(|e| e.parameter).map(|c| c.into_owned());
        assert_eq!(named(&[("click_id", "x"), ("payout", "1"), ("ts", "1"), ("sig", "s")]), None);
        assert_eq!(named(&[("click_id", "x"), ("payout", "1"), ("payout", "2")]), Some("payout".into()));
        assert_eq!(named(&[("click_id", "x"), ("payout=1&txid", "2")]), Some("payout=1&txid".into()));
        assert_eq!(named(&[("cid", "x"), ("goal", "g"), ("tid", "t"), ("amount", "1")]), None);
    }

    #[test]
    fn private_addresses_table() {
        for (ip, want) in [
            ("10.0.0.1", true),
            ("192.168.1.1", true),
            ("127.0.0.1", true),
            ("169.254.1.1", true),
            ("100.64.0.1", true),
            ("8.8.8.8", false),
            ("::1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("::ffff:10.0.0.1", true),
            ("2001:4860::1", false),
        ] {
            assert_eq!(is_private(ip.parse().unwrap()), want, "{ip}");
        }
    }
}
