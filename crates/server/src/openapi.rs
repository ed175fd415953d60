//! The OpenAPI 3.1 document of the HTTP API and its docs page.
//!
//! The document is generated from the code: every route is registered
//! through [`routes!`](crate::routes) from a handler carrying its
//! `#[utoipa::path]` (method, path, parameters, bodies, every status it
//! answers), so the router [`crate::app::router`] serves and the document
//! [`document`] describes are built by the same calls and cannot drift
//! apart (a test checks that no route bypasses them). This module holds
//! what the handlers share: the document's root ([`ApiDoc`]: info, tags,
//! security schemes), the schemas of JSON answers that handlers build as
//! `serde_json::Value` (each mirrors one `*_json` function; the contract
//! test, `tests/contract/run.sh`, checks real answers against them), and
//! the two routes that serve the document: `/api/v1/openapi.json` and the
//! offline docs page `/api/docs` (no script, font or style from anywhere
//! else: the page is rendered here, once, from the document).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::config::FieldError;

/// The document's root; the paths are added by the router (see
/// [`crate::app::api`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "smartlink",
        description = "The HTTP API of smartlink, a self-hosted smartlink engine: clicks, postbacks, \
                       the admin API (definitions, conversions, outbound postbacks), reports and analyses. \
                       Generated from the server's code; the docs page is `/api/docs`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ErrorBody, PostbackErrorBody, FieldError)),
    modifiers(&Security),
    tags(
        (name = "clicks", description = "The tracking links: `/s/{slug}` (the click fast path serves most of them)."),
        (name = "postbacks", description = "Conversions in: the advertiser's postback and the browser pixel."),
        (name = "definitions", description = "Offers, smartlinks, advertisers, affiliates, traffic sources and overrides (admin token; an affiliate key reads its own smartlinks)."),
        (name = "conversions", description = "Stored conversions and manual status changes."),
        (name = "outbound", description = "The outbound postback outbox."),
        (name = "reports", description = "Reports, the click log, cost imports and the analyses."),
        (name = "digests", description = "Scheduled digests (admin token)."),
        (name = "simulator", description = "The traffic simulator on a bundled or uploaded scenario: scores and the HTML report (admin token)."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
        (name = "dashboard", description = "The web dashboard (`/`, `/ui/`): its files and its session (sign-in with the admin token or an affiliate key; the cookie then authenticates `/api/v1` too)."),
    )
)]
pub struct ApiDoc;

/// The security schemes: the admin token and affiliate keys are both
/// bearer tokens (`Authorization: Bearer …`); a postback's or pixel's
/// token is the `token` query parameter.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (`admin_token` in the configuration, else generated into \
                         `DATA_DIR/admin_token` on first run): everything.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "affiliate_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An affiliate's `api_key`: read-only, forced to the affiliate's own reports, clicks, \
                         conversions and smartlinks; anything else is 403.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::session::COOKIE,
                "The dashboard's session (`POST /ui/session` signs in with the admin token or an affiliate key \
                 and sets it), scoped as the key it was signed in with. A request other than GET or HEAD \
                 also needs the session's `X-CSRF-Token` header and must come from the same origin.",
            ))),
        );
        components.add_security_scheme(
            "postback_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The advertiser's `postback_token` (signed postbacks send `ts` and `sig` instead or as well).",
            ))),
        );
    }
}

/// Every API error: a message for people and, for validation errors, the
/// fields at fault (paths relative to the document sent).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong; a parameter error starts with the parameter's name.
    pub error: String,
    /// The invalid values (422) or the definitions a change would break (409).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// A refused postback: why, and the parameter at fault when there is one.
#[derive(Serialize, ToSchema)]
pub struct PostbackErrorBody {
    pub error: String,
    /// The parameter at fault, as the client named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

/// What a postback (or a manual status change) did.
#[derive(Serialize, ToSchema)]
pub struct Converted {
    pub result: ConvertedResult,
    pub conversion_id: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConvertedResult {
    Recorded,
    Duplicate,
    Updated,
}

/// An advertiser as the API shows it: its tokens only as whether they are set.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvertiserShown {
    pub id: String,
    pub postback_token_set: bool,
    pub allow_pixel: bool,
}

/// An affiliate as the API shows it: its key only as `api_key_set`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AffiliateShown {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postback_statuses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_shares: Option<BTreeMap<String, f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_url: Option<String>,
    pub api_key_set: bool,
}

/// A conversion (`conversions::conversion_json`). `payout`, `payout_base`
/// are the caller's money: the gross for the admin, the affiliate's share
/// for an affiliate key; `affiliate_payout*` and `cost` are the admin's only.
#[derive(Serialize, ToSchema)]
pub struct Conversion {
    pub id: i64,
    pub click_id: String,
    pub event: String,
    pub txid: Option<String>,
    pub status: ConversionStatus,
    pub payout: f64,
    pub currency: String,
    pub payout_base: f64,
    pub offer: String,
    pub smartlink: String,
    pub affiliate: Option<String>,
    pub country: String,
    pub device: String,
    pub os: String,
    /// `sub1`..`sub5` of the click, when its row was stored.
    pub subs: Option<Vec<String>>,
    pub click_time_ms: i64,
    pub time_ms: i64,
    pub updated_ms: i64,
    /// Seconds from click to conversion.
    pub ctit_secs: i64,
    pub over_cap: bool,
    pub quality: String,
    pub quality_flags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliate_payout: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affiliate_payout_base: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Status changes, oldest first (`GET /api/v1/conversions/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<StatusChange>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversionStatus {
    Pending,
    Approved,
    Rejected,
    Chargeback,
}

/// One status change of a conversion: who (`actor`: `postback`, `pixel`,
/// `admin`; `by`, `source`: admin only) and why.
#[derive(Serialize, ToSchema)]
pub struct StatusChange {
    pub time_ms: i64,
    pub from: Option<ConversionStatus>,
    pub to: ConversionStatus,
    pub actor: String,
    pub reason: Option<String>,
    /// The name an admin gave (admin only).
    pub by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A page of conversions, newest first; `next` is the `before` of the next page.
#[derive(Serialize, ToSchema)]
pub struct ConversionPage {
    pub conversions: Vec<Conversion>,
    pub next: Option<i64>,
}

/// A manual status change: `approved`, `rejected` or `chargeback`
/// (`reversal` is a chargeback).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChangeRequest {
    #[schema(example = "rejected")]
    pub status: String,
    /// Why (at most 1,000 bytes), kept in the status history.
    pub reason: Option<String>,
    /// Who (at most 100 bytes; default `api`).
    pub by: Option<String>,
}

/// One outbound postback (a delivery to an affiliate or source).
#[derive(Serialize, ToSchema)]
pub struct OutboundPostback {
    pub id: i64,
    pub conversion_id: i64,
    /// The conversion status it reports.
    pub status: String,
    pub target: String,
    pub state: OutboxState,
    /// Every attempt made.
    pub attempts: i64,
    /// Attempts since the last manual retry.
    pub attempts_since_retry: i64,
    pub next_attempt_ms: i64,
    pub last_http_status: Option<i64>,
    pub last_error: Option<String>,
    /// Every attempt, oldest first (`GET /api/v1/postbacks/outbound/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<OutboundAttempt>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Pending,
    Delivered,
    Failed,
}

#[derive(Serialize, ToSchema)]
pub struct OutboundAttempt {
    pub time_ms: i64,
    pub url: String,
    pub http_status: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OutboundPage {
    pub postbacks: Vec<OutboundPostback>,
}

#[derive(Serialize, ToSchema)]
pub struct RetryQueued {
    /// `queued`.
    pub result: String,
    pub id: i64,
}

/// A report: `rows` by the `group_by` dimensions (each row has the
/// dimensions asked for and the measures), `totals`, and what was
/// `excluded` (bot and preview traffic, unless `include_bots`).
#[derive(Serialize, ToSchema)]
pub struct Report {
    pub from: i64,
    pub to: i64,
    pub tz: String,
    pub group_by: Vec<String>,
    pub rows: Vec<BTreeMap<String, Value>>,
    pub totals: BTreeMap<String, Value>,
    pub excluded: Option<BTreeMap<String, Value>>,
}

/// One page of the click log; `next_cursor` is null on the last page.
#[derive(Serialize, ToSchema)]
pub struct ClickPage {
    /// Clicks as `smartlink_analysis::clicks::CLICK_FIELDS` lists them
    /// (no `ip` for an affiliate key).
    pub clicks: Vec<BTreeMap<String, Value>>,
    pub next_cursor: Option<String>,
}

/// One click, its routing decision and its conversions.
#[derive(Serialize, ToSchema)]
pub struct ClickDetail {
    pub click: BTreeMap<String, Value>,
    pub decision: BTreeMap<String, Value>,
    pub conversions: Vec<Conversion>,
}

/// A billed amount spread over the clicks it covers (a link or a source,
/// a period, and optional segment and sub-id filters).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostLine {
    /// A smartlink's slug or `direct:{offer}`.
    pub link: Option<String>,
    /// A traffic source's id.
    pub source: Option<String>,
    /// Start of the period (inclusive), in any of the report date forms.
    pub from: String,
    /// End of the period (exclusive).
    pub to: String,
    pub amount: f64,
    /// Default: the base currency.
    pub currency: Option<String>,
    pub country: Option<String>,
    pub device: Option<String>,
    pub os: Option<String>,
    pub sub1: Option<String>,
    pub sub2: Option<String>,
    pub sub3: Option<String>,
    pub sub4: Option<String>,
    pub sub5: Option<String>,
}

/// `POST /api/v1/costs`'s body: one cost line, or an array of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum CostImportRequest {
    One(Box<CostLine>),
    Many(Vec<CostLine>),
}

/// What one cost line did.
#[derive(Serialize, ToSchema)]
pub struct CostImported {
    pub id: i64,
    pub clicks: i64,
    pub amount: f64,
    /// The cost these clicks carried before.
    pub replaced: f64,
    pub from: i64,
    pub to: i64,
    pub description: String,
}

/// The answer to a cost import: one line's result, or `imports` for an array.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum CostImportAnswer {
    One(CostImported),
    Many { imports: Vec<CostImported> },
}

/// A recorded cost import.
#[derive(Serialize, ToSchema)]
pub struct CostImportRow {
    pub id: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub from: i64,
    pub to: i64,
    pub description: String,
    pub amount: f64,
    pub clicks: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CostImportList {
    pub imports: Vec<CostImportRow>,
}

/// An analysis document (quality, coverage, audit, explain): its fields
/// are described in docs/reports.md and docs/quality.md.
#[derive(Serialize, ToSchema)]
pub struct Analysis(pub BTreeMap<String, Value>);

/// One change of a definition, field by field (secrets redacted).
#[derive(Serialize, ToSchema)]
pub struct HistoryChange {
    pub id: i64,
    pub time_ms: i64,
    pub kind: String,
    pub entity: String,
    pub action: String,
    pub actor: String,
    pub fields: Vec<FieldChange>,
}

#[derive(Serialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    pub changes: Vec<HistoryChange>,
}

/// A drift alert.
#[derive(Serialize, ToSchema)]
pub struct Alert {
    pub id: i64,
    pub time_ms: i64,
    pub kind: String,
    pub smartlink: String,
    pub offer: Option<String>,
    pub segment: Option<String>,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<Alert>,
}

/// A stored digest and its delivery state (`digests::row_json`); `digest`
/// (the document, with its `html` and `text` bodies) only when asked for one.
#[derive(Serialize, ToSchema)]
pub struct Digest(pub BTreeMap<String, Value>);

#[derive(Serialize, ToSchema)]
pub struct DigestList {
    pub digests: Vec<Digest>,
}

/// `/readyz`: each check with its result.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: BTreeMap<String, ReadyCheck>,
    pub journal_backlog_bytes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ----------------------------------------------------------- serving ----

/// The whole document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    crate::app::api_doc()
}

static DOCUMENT_JSON: LazyLock<String> =
    LazyLock::new(|| document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));

static DOCS_PAGE: LazyLock<String> =
    LazyLock::new(|| docs_page(&serde_json::from_str(&DOCUMENT_JSON).unwrap_or(Value::Null)));

/// The OpenAPI document itself. No token needed: it says what the API
/// takes, never what the store holds.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json",
               body = Object)))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], DOCUMENT_JSON.as_str()).into_response()
}

/// The API's documentation as one self-contained HTML page, rendered from
/// the document: nothing is loaded from anywhere, so it works offline.
#[utoipa::path(get, path = "/api/docs", tag = "operations",
    responses((status = 200, description = "The API documentation (HTML, self-contained)", content_type = "text/html",
               body = String)))]
pub async fn docs() -> Response {
    let mut r = ([(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))], DOCS_PAGE.as_str())
        .into_response();
    // Inline styles only; nothing may load or run.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

/// A schema in one line: `$ref`s by name, arrays as `[T]`, unions with `|`.
fn type_of(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    for k in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = s.get(k).and_then(Value::as_array) {
            return list.iter().map(type_of).collect::<Vec<_>>().join(if k == "allOf" { " &amp; " } else { " | " });
        }
    }
    let t = match s.get("type") {
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>(),
        Some(Value::String(t)) => vec![t.clone()],
        _ => vec![],
    };
    let t: Vec<String> = t
        .into_iter()
        .map(|t| match t.as_str() {
            "array" => format!("[{}]", s.get("items").map(type_of).unwrap_or_default()),
            _ => esc(&t),
        })
        .collect();
    let mut out = if t.is_empty() { "any".to_string() } else { t.join(" | ") };
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        out = e.iter().map(|v| esc(&v.to_string())).collect::<Vec<_>>().join(" | ");
    }
    out
}

/// The docs page: every operation with its parameters, body and answers,
/// then every schema with its properties.
fn docs_page(doc: &Value) -> String {
    let mut h = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    h.push_str(&format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} API</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>\
         body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;line-height:1.4;color:#222}}\
         code,pre{{font-family:ui-monospace,monospace;font-size:.9em}}\
         table{{border-collapse:collapse;margin:.5rem 0}}td,th{{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}}\
         .op{{border-left:4px solid #888;padding:.2rem .8rem;margin:1.2rem 0}}.m{{font-weight:bold;text-transform:uppercase}}\
         .get{{border-color:#2a7}}.post{{border-color:#27c}}.put{{border-color:#c82}}.patch{{border-color:#a5c}}.delete{{border-color:#c33}}\
         </style></head><body><h1>{} API <small>{}</small></h1><p>{}</p>\
         <p>The machine-readable document: <a href=\"/api/v1/openapi.json\"><code>/api/v1/openapi.json</code></a> \
         (OpenAPI {}).</p>",
        esc(title),
        esc(title),
        esc(doc["info"]["version"].as_str().unwrap_or("")),
        esc(doc["info"]["description"].as_str().unwrap_or("")),
        esc(doc["openapi"].as_str().unwrap_or("")),
    ));
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
        h.push_str("<h2>Authentication</h2><table><tr><th>scheme</th><th>how</th><th></th></tr>");
        for (name, s) in schemes {
            let how = match s["type"].as_str() {
                Some("http") => "<code>Authorization: Bearer …</code>".to_string(),
                Some("apiKey") => format!(
                    "<code>{}</code> in the {}",
                    esc(s["name"].as_str().unwrap_or("")),
                    esc(s["in"].as_str().unwrap_or(""))
                ),
                _ => String::new(),
            };
            h.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{how}</td><td>{}</td></tr>",
                esc(name),
                esc(s["description"].as_str().unwrap_or(""))
            ));
        }
        h.push_str("</table>");
    }
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["name"].as_str().unwrap_or("").to_string(), t["description"].as_str().unwrap_or("").to_string()))
        .collect();
    h.push_str("<h2>Operations</h2><ul>");
    for (t, d) in &tags {
        h.push_str(&format!("<li><a href=\"#tag-{0}\">{0}</a>: {1}</li>", esc(t), esc(d)));
    }
    h.push_str("</ul>");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (tag, desc) in &tags {
        h.push_str(&format!("<h2 id=\"tag-{0}\">{0}</h2><p>{1}</p>", esc(tag), esc(desc)));
        for (path, item) in &paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                let Some(op) = item.get(method) else { continue };
                if !op["tags"].as_array().is_some_and(|ts| ts.iter().any(|t| t.as_str() == Some(tag))) {
                    continue;
                }
                h.push_str(&operation(method, path, op));
            }
        }
    }
    h.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, s) in schemas {
            h.push_str(&format!("<h3 id=\"schema-{0}\">{0}</h3>", esc(name)));
            if let Some(d) = s["description"].as_str() {
                h.push_str(&format!("<p>{}</p>", esc(d)));
            }
            match s["properties"].as_object() {
                Some(props) => {
                    let required: Vec<&str> =
                        s["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    h.push_str("<table><tr><th>field</th><th>type</th><th></th></tr>");
                    for (p, ps) in props {
                        h.push_str(&format!(
                            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                            esc(p),
                            if required.contains(&p.as_str()) { " (required)" } else { "" },
                            type_of(ps),
                            esc(ps["description"].as_str().unwrap_or(""))
                        ));
                    }
                    h.push_str("</table>");
                }
                None => h.push_str(&format!("<p>{}</p>", type_of(s))),
            }
        }
    }
    h.push_str("</body></html>\n");
    h
}

fn operation(method: &str, path: &str, op: &Value) -> String {
    let mut h = format!(
        "<div class=\"op {method}\"><p><span class=\"m\">{method}</span> <code>{}</code> — {}</p>",
        esc(path),
        esc(op["summary"].as_str().unwrap_or(""))
    );
    if let Some(d) = op["description"].as_str() {
        h.push_str(&format!("<p>{}</p>", esc(d)));
    }
    let security: Vec<String> = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default())
        .collect();
    if !security.is_empty() {
        h.push_str(&format!("<p>Auth: {}</p>", esc(&security.join(", "))));
    }
    if let Some(params) = op["parameters"].as_array() {
        h.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>");
        for p in params {
            h.push_str(&format!(
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                if p["required"] == true { " (required)" } else { "" },
                esc(p["in"].as_str().unwrap_or("")),
                type_of(&p["schema"]),
                esc(p["description"].as_str().unwrap_or(""))
            ));
        }
        h.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (ct, c) in content {
            h.push_str(&format!("<p>Body (<code>{}</code>): {}</p>", esc(ct), type_of(&c["schema"])));
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        h.push_str("<table><tr><th>status</th><th>when</th><th>body</th></tr>");
        for (status, r) in responses {
            let body = r["content"]
                .as_object()
                .map(|c| {
                    c.iter()
                        .map(|(ct, c)| format!("{} <code>{}</code>", type_of(&c["schema"]), esc(ct)))
                        .collect::<Vec<_>>()
                        .join("<br>")
                })
                .unwrap_or_default();
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{body}</td></tr>",
                esc(status),
                esc(r["description"].as_str().unwrap_or(""))
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("</div>");
    h
}

/// A postback's parameters as a form body (`POST /postback`); the names
/// and aliases of `GET /postback`'s query.
#[derive(Serialize, ToSchema)]
pub struct PostbackForm {
    pub click_id: String,
    pub token: Option<String>,
    pub payout: Option<String>,
    pub currency: Option<String>,
    pub status: Option<String>,
    pub txid: Option<String>,
    pub event: Option<String>,
    pub ts: Option<i64>,
    pub sig: Option<String>,
}

// ------------------------------------------------------------ router ----

/// An axum router and the OpenAPI document of its routes, built together:
/// [`routes!`](crate::routes) adds a handler at the path and methods of
/// its `#[utoipa::path]` and that description to the document, so what is
/// served and what is described are one list. (What `utoipa-axum` does;
/// written here because its releases for utoipa 5 depend on the
/// unmaintained `paste`, RUSTSEC-2024-0436, and utoipa 6 enables a `syn`
/// feature that rebuilds DuckDB's C++ library.)
pub struct ApiRouter<S = ()>(axum::Router<S>, utoipa::openapi::OpenApi);

/// What [`routes!`](crate::routes) makes of handlers sharing one path.
pub struct Operations<S> {
    pub path: String,
    pub method_router: axum::routing::MethodRouter<S>,
    pub item: Vec<(Vec<utoipa::openapi::path::HttpMethod>, utoipa::openapi::path::Operation)>,
    pub schemas: Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
}

/// The axum method filter of an OpenAPI method.
pub fn method_filter(m: &utoipa::openapi::path::HttpMethod) -> axum::routing::MethodFilter {
    use axum::routing::MethodFilter;
    use utoipa::openapi::path::HttpMethod;
    match m {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
    }
}

/// Handlers (each `handler => its __path_ struct`) served at one path,
/// with their descriptions, for [`ApiRouter::routes`].
#[macro_export]
macro_rules! routes {
    ($( $handler:path => $doc:path ),+ $(,)?) => {{
        #[allow(unused_imports)]
        use utoipa::__dev::{SchemaReferences as _, Tags as _};
        let mut path = String::new();
        let mut method_router = axum::routing::MethodRouter::new();
        let mut item = Vec::new();
        let mut schemas = Vec::new();
        $(
            let methods = <$doc as utoipa::Path>::methods();
            for m in &methods {
                method_router = method_router.on($crate::openapi::method_filter(m), $handler);
            }
            let this = <$doc as utoipa::Path>::path();
            assert!(path.is_empty() || path == this, "routes! takes handlers of one path: {path} and {this}");
            path = this;
            let mut operation = <$doc as utoipa::Path>::operation();
            let tags = <$doc as utoipa::__dev::Tags>::tags();
            if !tags.is_empty() {
                operation.tags.get_or_insert_with(Vec::new).extend(tags.iter().map(|t| t.to_string()));
            }
            <$doc as utoipa::__dev::SchemaReferences>::schemas(&mut schemas);
            item.push((methods, operation));
        )+
        $crate::openapi::Operations { path, method_router, item, schemas }
    }};
}

impl<S: Clone + Send + Sync + 'static> Default for ApiRouter<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> ApiRouter<S> {
    pub fn new() -> Self {
        Self::with_openapi(utoipa::openapi::OpenApiBuilder::new().build())
    }

    /// Starts from `doc` (info, tags, security schemes).
    pub fn with_openapi(doc: utoipa::openapi::OpenApi) -> Self {
        ApiRouter(axum::Router::new(), doc)
    }

    /// Serves and describes the operations of one path.
    pub fn routes(mut self, ops: Operations<S>) -> Self {
        let router = self.0.route(&ops.path, ops.method_router);
        let mut paths = utoipa::openapi::path::Paths::new();
        for (methods, operation) in ops.item {
            paths.add_path_operation(&ops.path, methods, operation);
        }
        self.1.paths.merge(paths);
        self.1.components.get_or_insert_with(Default::default).schemas.extend(ops.schemas);
        ApiRouter(router, self.1)
    }

    pub fn merge(self, other: ApiRouter<S>) -> Self {
        let mut doc = self.1;
        doc.merge(other.1);
        ApiRouter(self.0.merge(other.0), doc)
    }

    /// `other`'s routes under `prefix`, described there too.
    pub fn nest(self, prefix: &str, other: ApiRouter<S>) -> Self {
        let doc = self.1.nest(prefix, other.1);
        ApiRouter(self.0.nest(prefix, other.0), doc)
    }

    /// Lists the dashboard's session cookie as one more way to call every
    /// operation that has a security requirement (the auth layer accepts
    /// it wherever it accepts a bearer token, [`crate::auth::auth`]).
    pub fn with_session_cookie(mut self) -> Self {
        let cookie = utoipa::openapi::security::SecurityRequirement::new("session_cookie", Vec::<String>::new());
        for item in self.1.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                if let Some(security) = op.security.as_mut().filter(|s| !s.is_empty()) {
                    security.push(cookie.clone());
                }
            }
        }
        self
    }

    /// A layer around every route added so far (the document is unchanged).
    pub fn layer<L>(self, layer: L) -> Self
    where
        L: tower_layer::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower_service::Service<axum::extract::Request> + Clone + Send + Sync + 'static,
        <L::Service as tower_service::Service<axum::extract::Request>>::Response: IntoResponse + 'static,
        <L::Service as tower_service::Service<axum::extract::Request>>::Error: Into<std::convert::Infallible> + 'static,
        <L::Service as tower_service::Service<axum::extract::Request>>::Future: Send + 'static,
    {
        ApiRouter(self.0.layer(layer), self.1)
    }

    pub fn split_for_parts(self) -> (axum::Router<S>, utoipa::openapi::OpenApi) {
        (self.0, self.1)
    }

    pub fn into_openapi(self) -> utoipa::openapi::OpenApi {
        self.1
    }
}
