//! The click path (`GET|HEAD /s/{slug}`): [`click_answer`] is transport
//! neutral; the fast path ([`crate::http`]) and the axum route both call it
//! and write its [`ClickAnswer`] out.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::hash::BuildHasher;
use std::io::Write as _;

use smartlink_core::engine::{decide, divert, ClickInput, Outcome};
use smartlink_core::model::{Catalog, Country, Language, QualityAction, Segment, Smartlink, Source};
use smartlink_core::targeting::Visitor;
use smartlink_visitor::quality::{judge_classified, RequestSignals};
use smartlink_visitor::ua::{apply_hints, ClientHints};

use crate::config::Cidr;
use crate::domains::Lookup;
use crate::state::AppState;
use smartlink_clicklog::writer::ClickEvent;
use smartlink_visitor::quality::QualityClass;

/// Largest accepted sub-id, in bytes.
pub const MAX_SUB_LEN: usize = 256;

fn header_str<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The request headers the click path reads, whichever HTTP layer parsed
/// them: hyper's [`HeaderMap`] (the axum route) or the fast path's parsed
/// slice ([`crate::http`]).
pub trait ClickHeaders {
    /// The first value of header `name`, when it is visible ASCII.
    fn get_str(&self, name: &HeaderName) -> Option<&str>;
}

impl ClickHeaders for HeaderMap {
    fn get_str(&self, name: &HeaderName) -> Option<&str> {
        header_str(self, name)
    }
}

// Header names the click path reads, built once: a lookup by `&str` parses
// and validates the name on every call.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static CF_IPCOUNTRY: HeaderName = HeaderName::from_static("cf-ipcountry");
static SEC_CH_UA_MOBILE: HeaderName = HeaderName::from_static("sec-ch-ua-mobile");
static SEC_CH_UA_PLATFORM: HeaderName = HeaderName::from_static("sec-ch-ua-platform");

/// The proxies whose forwarded headers (`X-Forwarded-For`, `CF-IPCountry`)
/// are believed: `server.trust_proxy` with `server.trusted_proxies`
/// (loopback by default). Empty: none, every visitor is its socket peer.
#[derive(Clone, Debug, Default)]
pub struct Proxies(Vec<Cidr>);

impl Proxies {
    pub fn new(trusted: Vec<Cidr>) -> Proxies {
        Proxies(trusted)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// The visitor's address. A request from a trusted proxy is attributed to
/// the right-most address in `X-Forwarded-For` that is not itself a
/// trusted proxy (each proxy appends the address it saw, so addresses to
/// the left of the first untrusted hop are the client's own claims; as
/// nginx's `real_ip_recursive`). A request from anyone else is its socket
/// peer, whatever headers it sends.
pub fn client_ip(proxies: &Proxies, headers: &(impl ClickHeaders + ?Sized), peer: Option<IpAddr>) -> Option<IpAddr> {
    client(proxies, headers, peer).0
}

/// [`client_ip`], and whether the request came from a trusted proxy (whose
/// `CF-IPCountry` is believed too): the peer is looked up once.
fn client(proxies: &Proxies, headers: &(impl ClickHeaders + ?Sized), peer: Option<IpAddr>) -> (Option<IpAddr>, bool) {
    let Some(peer) = peer else { return (None, false) };
    if !proxies.trusts(peer) {
        return (Some(peer), false);
    }
    let mut client = peer;
    if let Some(xff) = headers.get_str(&X_FORWARDED_FOR) {
        for hop in xff.rsplit(',') {
            // An entry that is not an address ends the chain: what a trusted
            // hop reported so far stands.
            let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
            client = ip;
            if !proxies.trusts(ip) {
                break;
            }
        }
    }
    (Some(client), true)
}

/// Whether `bytes` make a valid header value, by `HeaderValue`'s rule (no
/// control characters but tab; literal non-ASCII bytes pass), checked
/// without building one: on the fast path the URL is written as it is.
fn is_header_value(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// At most `max` bytes, cut on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Debug, Default)]
struct ClickParams {
    subs: [String; 5],
    aff: Option<String>,
    src: Option<String>,
    /// The `cost` parameter (or the source's name for it), in the
    /// source's currency.
    cost: Option<f64>,
}

/// The `src` parameter, if any (read before the rest: it says which names
/// the other parameters go by).
fn source_param(query: Option<&str>) -> Option<String> {
    let q = query.filter(|q| q.contains("src="))?;
    form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "src").map(|(_, v)| v.into_owned())
}

const SUB_NAMES: [&str; 5] = ["sub1", "sub2", "sub3", "sub4", "sub5"];

/// Reads the click's parameters: `sub1`..`sub5`, `aff`, `src` and `cost`,
/// or the names `source` gives them. The first occurrence of each wins.
fn parse_params(query: Option<&str>, source: Option<&Source>) -> Result<ClickParams, String> {
    let mut p = ClickParams::default();
    let cost_name = source.map_or("cost", |s| &s.cost_param);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match source.and_then(|s| s.sub_params.iter().position(|n| n.as_deref() == Some(&*k))) {
            Some(slot) => slot,
            None => match &*k {
                "aff" => {
                    p.aff.get_or_insert_with(|| v.into_owned());
                    continue;
                }
                "src" => {
                    p.src.get_or_insert_with(|| v.into_owned());
                    continue;
                }
                name if name == cost_name || name == "cost" => {
                    if p.cost.is_none() && !v.is_empty() {
                        p.cost = Some(parse_cost(&k, &v)?);
                    }
                    continue;
                }
                name => match SUB_NAMES.iter().position(|s| *s == name) {
                    Some(slot) => slot,
                    None => continue, // traffic sources append their own parameters
                },
            },
        };
        if v.len() > MAX_SUB_LEN {
            return Err(format!("{k} is {} bytes; at most {MAX_SUB_LEN} are accepted", v.len()));
        }
        if p.subs[slot].is_empty() {
            p.subs[slot] = v.into_owned();
        }
    }
    Ok(p)
}

/// A click's cost as the source sent it: a plain decimal from 0 to
/// [`MAX_COST`](crate::config::MAX_COST).
fn parse_cost(name: &str, v: &str) -> Result<f64, String> {
    let ok = v.len() <= 32 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match v.parse::<f64>() {
        Ok(c) if ok && (0.0..=crate::config::MAX_COST).contains(&c) => Ok(c),
        _ => Err(format!(
            "{name}: expected the click's cost as a decimal number from 0 to {}, such as 0.0125; got {v:?}",
            crate::config::MAX_COST
        )),
    }
}

/// A click on a smartlink (the click fast path answers most of them the same way).
#[utoipa::path(get, path = "/s/{slug}", tag = "clicks",
    params(("slug" = String, Path, description = "The smartlink's slug"),
           ("sub1" = Option<String>, Query, description = "Sub-ids `sub1`..`sub5`, `src`, `cost` and the source's own parameter names are read too")),
    responses((status = 302, description = "To the chosen offer (or the fallback or safe page)",
               headers(("location" = String, description = "Where the click goes"))),
              (status = 204, description = "A link preview, blocked: nothing to unfurl"),
              (status = 400, description = "A bad parameter (e.g. `cost`), named", content_type = "text/plain", body = String),
              (status = 403, description = "Refused (the quality action `block`)", content_type = "text/html", body = String),
              (status = 404, description = "No such link", content_type = "text/html", body = String),
              (status = 502, description = "The link's URL template is misconfigured", content_type = "text/html", body = String),
              (status = 503, description = "The offer is not available right now", content_type = "text/html", body = String)))]
pub(crate) async fn click(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let host = request_host(&req);
    click_answer(&app, req.uri().path(), req.uri().query(), req.headers(), peer, host).into_response()
}

/// A click on an offer's direct link (`/o/{offer}`), answered as a
/// smartlink click with the offer alone in its pool.
#[utoipa::path(get, path = "/o/{offer}", tag = "clicks",
    params(("offer" = String, Path, description = "The offer's id (every offer has one)"),
           ("sub1" = Option<String>, Query, description = "Sub-ids `sub1`..`sub5`, `src`, `cost` and the source's own parameter names are read too")),
    responses((status = 302, description = "To the offer (or the link's fallback)",
               headers(("location" = String, description = "Where the click goes"))),
              (status = 204, description = "A link preview, blocked: nothing to unfurl"),
              (status = 400, description = "A bad parameter (e.g. `cost`), named", content_type = "text/plain", body = String),
              (status = 403, description = "Refused (the quality action `block`)", content_type = "text/html", body = String),
              (status = 404, description = "No such direct link", content_type = "text/html", body = String),
              (status = 502, description = "The offer's URL template is misconfigured", content_type = "text/html", body = String),
              (status = 503, description = "The offer cannot take a click now (paused, capped) and the link has no fallback", content_type = "text/html", body = String)))]
pub(crate) async fn direct(state: State<Arc<AppState>>, req: Request) -> Response {
    click(state, req).await
}

/// The host a request on hyper's side names: the target's authority in
/// absolute form (RFC 9112 section 3.2.2), else `Host`.
pub(crate) fn request_host(req: &Request) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| header_str(req.headers(), &header::HOST))
}

/// Every path no route takes (`/` included). With `domains:`, a host with
/// a `default_link` answers with a click on it (the query kept), an
/// unknown host gets the unknown-host page; without, a bare 404 as ever.
pub(crate) async fn fallback(State(app): State<Arc<AppState>>, req: Request) -> Response {
    let domains = app.domains.load();
    let host = request_host(&req);
    let default = match domains.lookup(host) {
        // The API's unknown paths are its JSON 404 on every host.
        _ if req.uri().path().starts_with("/api/") => return crate::error::api_not_found(req.uri().path()),
        Lookup::Open => return StatusCode::NOT_FOUND.into_response(),
        Lookup::Unknown => {
            app.metrics.clicks_unknown_host.fetch_add(1, Relaxed);
            return ClickAnswer::Page(StatusCode::NOT_FOUND, UNKNOWN_HOST_PAGE).into_response();
        }
        Lookup::Domain(d) => d.default_path.clone(),
    };
    let Some(path) = default else {
        return ClickAnswer::Page(StatusCode::NOT_FOUND, NOT_FOUND_PAGE).into_response();
    };
    if !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD) {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let catalog = app.catalog.load();
    match link_of(&catalog, &path) {
        Some(sl) => answer_link(&app, &catalog, sl, req.uri().query(), req.headers(), peer).into_response(),
        None => {
            app.metrics.clicks_unknown_slug.fetch_add(1, Relaxed);
            ClickAnswer::Page(StatusCode::NOT_FOUND, NOT_FOUND_PAGE).into_response()
        }
    }
}

/// What the click path answers. The HTTP layer that parsed the request
/// writes it out ([`IntoResponse`] for the axum route,
/// [`ClickAnswer::encode`] for the fast path): both send the same status,
/// headers and body.
#[derive(Debug, PartialEq)]
pub enum ClickAnswer {
    /// `302 Found` to this expanded URL (every byte valid in a header value).
    Redirect(String),
    /// A small HTML page with this status: 404 unknown link, 403 refused,
    /// 502 misconfigured.
    Page(StatusCode, &'static str),
    /// `400`, plain text naming what is wrong.
    BadRequest(String),
    /// `204`: a link preview gets nothing to unfurl.
    NoContent,
}

const NOT_FOUND_PAGE: &str = "<!doctype html><title>Not found</title><p>This link does not exist.</p>\n";
const UNKNOWN_HOST_PAGE: &str =
    "<!doctype html><title>Unknown host</title><p>This domain is not configured on this server.</p>\n";
const FORBIDDEN_PAGE: &str = "<!doctype html><title>Forbidden</title><p>This request was refused.</p>\n";
const UNAVAILABLE_PAGE: &str =
    "<!doctype html><title>Unavailable</title><p>This offer is not available right now.</p>\n";
const MISCONFIGURED_PAGE: &str = "<!doctype html><title>Error</title><p>This link is misconfigured.</p>\n";

impl IntoResponse for ClickAnswer {
    fn into_response(self) -> Response {
        match self {
            ClickAnswer::Redirect(url) => match HeaderValue::from_maybe_shared(axum::body::Bytes::from(url)) {
                Ok(loc) => {
                    let mut r = StatusCode::FOUND.into_response();
                    let h = r.headers_mut();
                    h.insert(header::LOCATION, loc);
                    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
                    r
                }
                // Unreachable: click_answer checked every byte.
                Err(_) => text(StatusCode::BAD_GATEWAY, MISCONFIGURED_PAGE),
            },
            ClickAnswer::Page(status, body) => text(status, body),
            ClickAnswer::BadRequest(msg) => (StatusCode::BAD_REQUEST, msg).into_response(),
            ClickAnswer::NoContent => {
                let mut r = StatusCode::NO_CONTENT.into_response();
                r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
        }
    }
}

impl ClickAnswer {
    /// Appends the whole HTTP/1.1 response as the fast path sends it: the
    /// status and headers [`IntoResponse`] gives, plus `content-length`,
    /// `connection` when given, and `date` (an IMF-fixdate); no body for a
    /// `HEAD` request.
    pub fn encode(&self, out: &mut Vec<u8>, head: bool, connection: Option<&str>, date: &[u8]) {
        let body: &[u8] = match self {
            ClickAnswer::Redirect(url) => {
                out.extend_from_slice(b"HTTP/1.1 302 Found\r\nlocation: ");
                out.extend_from_slice(url.as_bytes());
                out.extend_from_slice(
                    b"\r\ncache-control: no-store\r\nreferrer-policy: no-referrer\r\ncontent-length: 0\r\n",
                );
                b""
            }
            ClickAnswer::Page(status, body) => {
                let _ = write!(out, "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: {}\r\n", body.len());
                body.as_bytes()
            }
            ClickAnswer::BadRequest(msg) => {
                let _ = write!(
                    out,
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
                    msg.len()
                );
                msg.as_bytes()
            }
            ClickAnswer::NoContent => {
                out.extend_from_slice(b"HTTP/1.1 204 No Content\r\ncache-control: no-store\r\n");
                b""
            }
        };
        if let Some(c) = connection {
            out.extend_from_slice(b"connection: ");
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n\r\n");
        if !head {
            out.extend_from_slice(body);
        }
    }
}

/// The click path proper: routes the click on `path` (`/s/{slug}`) with
/// `query`, records it, and says what to answer. Never waits: everything
/// it reads is in memory and the click row goes to the bounded queue.
pub fn click_answer(
    app: &AppState,
    path: &str,
    query: Option<&str>,
    headers: &(impl ClickHeaders + ?Sized),
    peer: Option<IpAddr>,
    host: Option<&str>,
) -> ClickAnswer {
    // With `domains:`, the host must serve this link; a link bound to
    // another host is as unknown here as a slug that does not exist.
    match app.domains.load().lookup(host) {
        Lookup::Open => {}
        Lookup::Domain(d) if d.serves(path) => {}
        Lookup::Domain(_) => {
            app.metrics.clicks_unknown_slug.fetch_add(1, Relaxed);
            return ClickAnswer::Page(StatusCode::NOT_FOUND, NOT_FOUND_PAGE);
        }
        Lookup::Unknown => {
            app.metrics.clicks_unknown_host.fetch_add(1, Relaxed);
            return ClickAnswer::Page(StatusCode::NOT_FOUND, UNKNOWN_HOST_PAGE);
        }
    }
    let catalog = app.catalog.load();
    let Some(sl) = link_of(&catalog, path) else {
        app.metrics.clicks_unknown_slug.fetch_add(1, Relaxed);
        return ClickAnswer::Page(StatusCode::NOT_FOUND, NOT_FOUND_PAGE);
    };
    answer_link(app, &catalog, sl, query, headers, peer)
}

/// A smartlink (`/s/{slug}`) or an offer's direct link (`/o/{offer}`).
fn link_of<'c>(catalog: &'c Catalog, path: &str) -> Option<&'c Smartlink> {
    match path.strip_prefix("/s/") {
        Some(slug) => catalog.smartlink(slug),
        None => path.strip_prefix("/o/").and_then(|offer| catalog.direct_link(offer)),
    }
}

/// The click on link `sl`, once the host may serve it.
fn answer_link(
    app: &AppState,
    catalog: &Catalog,
    sl: &Smartlink,
    query: Option<&str>,
    headers: &(impl ClickHeaders + ?Sized),
    peer: Option<IpAddr>,
) -> ClickAnswer {
    let started = Instant::now();
    // The traffic source: the one `src` names, else the link's.
    let named = source_param(query);
    let source = match named.as_deref() {
        Some(id) => catalog.source_index.get(id).copied().or_else(|| {
            app.metrics.unknown_source.fetch_add(1, Relaxed);
            sl.source
        }),
        None => sl.source,
    };
    let src = source.map(|i| &catalog.sources[i]);
    let params = match parse_params(query, src) {
        Ok(p) => p,
        Err(msg) => {
            app.metrics.clicks_bad_request.fetch_add(1, Relaxed);
            return ClickAnswer::BadRequest(msg);
        }
    };
    // What the click cost, in the base currency: as the source sent it,
    // else the link's cost model, else the source's.
    let cost = match params.cost {
        Some(c) => c * src.map_or(sl.cost_rate, |s| s.cost_rate),
        None => sl.cost_model.or(src.and_then(|s| s.cost_model)).map_or(0.0, |m| m.per_click()),
    };
    let (ip, via_proxy) = client(&app.proxies, headers, peer);
    let cf_country = if via_proxy { headers.get_str(&CF_IPCOUNTRY).and_then(|c| Country::parse(c).ok()) } else { None };
    let country = cf_country.or_else(|| ip.map(|ip| app.geo.country(ip))).unwrap_or(Country::UNKNOWN);
    let ua = headers.get_str(&header::USER_AGENT).unwrap_or("");
    let hints =
        ClientHints { mobile: headers.get_str(&SEC_CH_UA_MOBILE), platform: headers.get_str(&SEC_CH_UA_PLATFORM) };

    // The UA's own reading and bot verdict (cached: UAs repeat), then the
    // hints applied on top for routing; the quality check compares the two.
    let (ua_info, ua_verdict) = app.ua_cache.read(ua);
    let info = apply_hints(ua_info, hints);
    let accept_language = headers.get_str(&header::ACCEPT_LANGUAGE);
    let language = accept_language.and_then(Language::from_accept_language);
    let visitor =
        Visitor { segment: Segment { country, device: info.device, os: info.os }, browser: info.browser, language };
    let now_ms = (app.clock)();

    // Traffic quality: every signal is in memory; nothing here waits.
    let dup_key = foldhash::fast::FixedState::default().hash_one((sl.key, &params.subs));
    let behaviour = app.behaviour.observe(ip, ua, dup_key, now_ms);
    let quality = judge_classified(
        &RequestSignals {
            ua,
            ua_info,
            hints,
            country,
            language,
            has_accept_language: accept_language.is_some(),
            has_accept: headers.get_str(&header::ACCEPT).is_some(),
            network: app.network.signals(ip),
        },
        ua_verdict,
        behaviour,
    );
    let class = smartlink_visitor::quality::class_of(&quality);
    app.metrics.quality[class as usize].fetch_add(1, Relaxed);
    let action = match class {
        QualityClass::Human => QualityAction::Allow,
        QualityClass::Suspect => sl.quality.suspect,
        QualityClass::Bot => sl.quality.bot,
        QualityClass::Preview => sl.quality.preview,
    };

    let input = ClickInput {
        now_ms,
        visitor,
        subs: [&params.subs[0], &params.subs[1], &params.subs[2], &params.subs[3], &params.subs[4]],
        aff: params.aff.as_deref(),
        source,
        counted: quality.counts(),
        flags: quality.flags(),
    };
    let rng = &mut rand::rng();
    let d = match action {
        QualityAction::Allow => decide(catalog, sl, &input, &app.codec, rng),
        QualityAction::Block | QualityAction::Fallback => divert(catalog, sl, &input, None, &app.codec, rng),
        QualityAction::SafePage => divert(catalog, sl, &input, sl.quality.safe_page.as_ref(), &app.codec, rng),
    };
    app.metrics.observe_decision(started.elapsed().as_nanos() as u64);

    let blocked = action == QualityAction::Block;
    let (offer_key, fallback_reason) = match d.outcome {
        Outcome::Offer(i) => {
            app.metrics.clicks_offer.fetch_add(1, Relaxed);
            (Some(catalog.offers[i].key), None)
        }
        Outcome::Fallback(r) => {
            if blocked {
                app.metrics.clicks_blocked.fetch_add(1, Relaxed);
            } else {
                app.metrics.clicks_fallback.fetch_add(1, Relaxed);
                app.metrics.fallback(r);
            }
            (None, Some(r))
        }
    };
    if d.unknown_aff {
        app.metrics.unknown_affiliate.fetch_add(1, Relaxed);
    }
    // Never redirect to something that is not a valid header value.
    // Unreachable in practice: templates are validated and every macro
    // value is percent-encoded.
    let url_ok = is_header_value(d.url.as_bytes());
    let ClickParams { subs, .. } = params;
    app.clicks.push(ClickEvent {
        click_id: d.click_id,
        ts_ms: now_ms,
        smartlink: sl.key,
        offer: offer_key,
        affiliate: d.facts.affiliate,
        subs,
        ip,
        country,
        device: info.device,
        os: info.os,
        browser: info.browser,
        language,
        referrer: truncate(headers.get_str(&header::REFERER).unwrap_or(""), 1024).into(),
        user_agent: truncate(ua, 1024).into(),
        reason: d.reason,
        fallback_reason,
        propensity: d.propensity,
        quality,
        class,
        cost,
        source: src.map(|s| s.key),
    });

    if blocked {
        // Previews get a blank answer (nothing to unfurl); others a 403.
        return if class == QualityClass::Preview {
            ClickAnswer::NoContent
        } else {
            ClickAnswer::Page(StatusCode::FORBIDDEN, FORBIDDEN_PAGE)
        };
    }
    if !url_ok {
        tracing::error!(smartlink = %sl.slug, "expanded URL is not a valid header value");
        return ClickAnswer::Page(StatusCode::BAD_GATEWAY, MISCONFIGURED_PAGE);
    }
    if d.url.is_empty() {
        // A direct link whose offer cannot take the click and that has no
        // fallback (the offer's, the affiliate's or a smartlink).
        return ClickAnswer::Page(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_PAGE);
    }
    ClickAnswer::Redirect(d.url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_right_most_untrusted_hop_first() {
        let cidrs = |v: &[&str]| Proxies::new(v.iter().map(|c| Cidr::parse(c).unwrap()).collect());
        let local = cidrs(&["127.0.0.0/8", "::1"]);
        let chain = cidrs(&["127.0.0.0/8", "10.0.0.0/8"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // (trusted proxies, X-Forwarded-For, peer, the visitor)
        let cases: &[(&Proxies, Option<&str>, &str, &str)] = &[
            (&local, Some("203.0.113.7"), "127.0.0.1", "203.0.113.7"),
            (&local, Some("203.0.113.7"), "198.51.100.1", "198.51.100.1"), // direct: headers ignored
            (&local, Some("1.2.3.4, 203.0.113.7"), "127.0.0.1", "203.0.113.7"), // spoofed left part
            (&local, Some("garbage, 203.0.113.7, 10.0.0.1"), "127.0.0.1", "10.0.0.1"),
            (&chain, Some("garbage, 203.0.113.7, 10.0.0.1"), "127.0.0.1", "203.0.113.7"),
            (&chain, Some("203.0.113.7, garbage, 10.0.0.1"), "127.0.0.1", "10.0.0.1"),
            (&chain, Some("10.0.0.2, 10.0.0.1"), "127.0.0.1", "10.0.0.2"), // all trusted: the left-most
            (&local, None, "127.0.0.1", "127.0.0.1"),
            (&Proxies::default(), Some("203.0.113.7"), "127.0.0.1", "127.0.0.1"), // trust_proxy off
            (&local, Some("203.0.113.7"), "::1", "203.0.113.7"),
        ];
        for (proxies, xff, peer, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(x) = xff {
                h.insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
            }
            assert_eq!(client_ip(proxies, &h, ip(peer)), ip(want), "{xff:?} from {peer}");
        }
    }

    #[test]
    fn the_header_value_check_agrees_with_header_value_on_every_byte() {
        for b in 0..=255u8 {
            let bytes = [b'a', b, b'z'];
            assert_eq!(is_header_value(&bytes), HeaderValue::from_bytes(&bytes).is_ok(), "byte {b:#04x}");
        }
    }

    #[test]
    fn sub_ids_are_limited_and_first_occurrence_wins() {
        let p = parse_params(Some("sub1=a%26b&sub1=zzz&aff=x&utm=1"), None).unwrap();
        assert_eq!(p.subs[0], "a&b");
        assert_eq!(p.aff.as_deref(), Some("x"));
        let long = format!("sub3={}", "x".repeat(257));
        assert!(parse_params(Some(&long), None).unwrap_err().contains("sub3"));
    }

    fn source() -> Source {
        Source {
            key: 1,
            id: smartlink_core::model::Id::parse("pop").unwrap(),
            sub_params: [Some("zoneid".into()), None, Some("cid".into()), None, None],
            cost_param: "price".into(),
            cost_rate: 1.0,
            cost_model: None,
        }
    }

    /// What parsing a query should give: (subs, cost) or the error's start.
    type Want = Result<([&'static str; 5], Option<f64>), &'static str>;

    /// (query, source) -> (subs, cost) or the error's start.
    #[test]
    fn a_source_names_its_own_parameters_and_the_standard_names_still_work() {
        let pop = source();
        let cases: &[(&str, Option<&Source>, Want)] = &[
            ("zoneid=z7&cid=c1&price=0.002", Some(&pop), Ok((["z7", "", "c1", "", ""], Some(0.002)))),
            ("sub2=s2&cost=0.5", Some(&pop), Ok((["", "s2", "", "", ""], Some(0.5)))),
            ("zoneid=z7&sub1=ignored", Some(&pop), Ok((["z7", "", "", "", ""], None))),
            ("zoneid=z7&price=1", None, Ok((["", "", "", "", ""], None))),
            ("sub1=a&cost=0.0125&src=pop", None, Ok((["a", "", "", "", ""], Some(0.0125)))),
            ("cost=", None, Ok((["", "", "", "", ""], None))),
            ("cost=0", None, Ok((["", "", "", "", ""], Some(0.0)))),
            ("cost=-1", None, Err("cost: expected")),
            ("cost={cost}", None, Err("cost: expected")),
            ("cost=1e3", None, Err("cost: expected")),
            ("cost=NaN", None, Err("cost: expected")),
            ("cost=100001", None, Err("cost: expected")),
            ("price=abc", Some(&pop), Err("price: expected")),
        ];
        for (q, src, want) in cases {
            let got = parse_params(Some(q), *src);
            match (got, want) {
                (Ok(p), Ok((subs, cost))) => {
                    assert_eq!(p.subs.iter().map(String::as_str).collect::<Vec<_>>(), subs.to_vec(), "{q}");
                    assert_eq!(p.cost, *cost, "{q}");
                }
                (Err(e), Err(start)) => assert!(e.starts_with(start), "{q}: {e}"),
                (got, want) => panic!("{q}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(source_param(Some("a=1&src=pop&src=other")).as_deref(), Some("pop"));
        assert_eq!(source_param(Some("a=1")), None);
    }
}
