//! The admin API (`/api/v1/...`, bearer token) and the one code path that
//! changes definitions: validate the complete proposed set, persist it, then
//! swap a new catalog in. Used by the API, by start-up and by `import`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use smartlink_core::model::Catalog;
use smartlink_store::{Change, Kind, Store};

use crate::app::AppState;
use crate::config::*;
use crate::error::ApiError;
use crate::postback::PostbackConfig;

/// The definitions as stored, with their numeric keys.
#[derive(Debug, Default, Clone)]
pub struct DefsState {
    pub defs: Definitions,
    pub keys: Keys,
}

const CURRENCY_META: &str = "currency_settings";

#[derive(Serialize, serde::Deserialize, Default)]
struct CurrencySettings {
    base_currency: Option<String>,
    currencies: std::collections::BTreeMap<String, f64>,
}

/// Reads every definition from the store.
pub fn load_defs(store: &dyn Store) -> anyhow::Result<DefsState> {
    use anyhow::Context as _;
    let mut defs = Definitions::default();
    if let Some(c) = store.meta(CURRENCY_META)? {
        let c: CurrencySettings = serde_json::from_str(&c).context("stored currency settings")?;
        defs.base_currency = c.base_currency;
        defs.currencies = c.currencies;
    }
    for e in store.entities()? {
        let ctx = || format!("stored {} {:?}", e.kind.as_str(), e.id);
        match e.kind {
            Kind::Advertiser => defs.advertisers.push(serde_json::from_str(&e.spec).with_context(ctx)?),
            Kind::Affiliate => defs.affiliates.push(serde_json::from_str(&e.spec).with_context(ctx)?),
            Kind::Offer => defs.offers.push(serde_json::from_str(&e.spec).with_context(ctx)?),
            Kind::Smartlink => defs.smartlinks.push(serde_json::from_str(&e.spec).with_context(ctx)?),
        }
    }
    let keys = store.keys()?.into_iter().map(|(k, id, key)| ((k, id), key)).collect();
    Ok(DefsState { defs, keys })
}

fn changes_between(old: &Definitions, new: &Definitions) -> anyhow::Result<Vec<Change>> {
    fn diff<T: Serialize + PartialEq>(
        kind: Kind,
        old: &[T],
        new: &[T],
        id: impl Fn(&T) -> &str,
        out: &mut Vec<Change>,
    ) -> anyhow::Result<()> {
        for n in new {
            if !old.iter().any(|o| id(o) == id(n) && o == n) {
                out.push(Change::Put { kind, id: id(n).to_string(), spec: serde_json::to_string(n)? });
            }
        }
        for o in old {
            if !new.iter().any(|n| id(n) == id(o)) {
                out.push(Change::Delete { kind, id: id(o).to_string() });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    diff(Kind::Advertiser, &old.advertisers, &new.advertisers, |a| &a.id, &mut out)?;
    diff(Kind::Affiliate, &old.affiliates, &new.affiliates, |a| &a.id, &mut out)?;
    diff(Kind::Offer, &old.offers, &new.offers, |o| &o.id, &mut out)?;
    diff(Kind::Smartlink, &old.smartlinks, &new.smartlinks, |s| &s.slug, &mut out)?;
    Ok(out)
}

/// Why a proposed set of definitions was not applied.
#[derive(Debug)]
pub enum ApplyError {
    Invalid(Vec<FieldError>),
    Store(anyhow::Error),
}

/// Validates `new` as a whole, persists the difference to the store in one
/// transaction, and returns the catalog to swap in (carrying live counters
/// and router state over from `current`).
pub fn commit_defs(
    store: &dyn Store,
    state: &mut DefsState,
    new: Definitions,
    current: &Catalog,
    actor: &str,
) -> Result<(Catalog, PostbackConfig), ApplyError> {
    build_catalog(&new, &provisional_keys(&new, &state.keys)).map_err(ApplyError::Invalid)?;
    let changes = changes_between(&state.defs, &new).map_err(ApplyError::Store)?;
    store.apply(&changes, actor).map_err(|e| ApplyError::Store(e.into()))?;
    let cs = CurrencySettings { base_currency: new.base_currency.clone(), currencies: new.currencies.clone() };
    store
        .set_meta(CURRENCY_META, &serde_json::to_string(&cs).unwrap_or_default())
        .map_err(|e| ApplyError::Store(e.into()))?;
    let reloaded = load_defs(store).map_err(ApplyError::Store)?;
    let mut catalog = build_catalog(&reloaded.defs, &reloaded.keys).map_err(ApplyError::Invalid)?;
    catalog.inherit_state(current);
    let postbacks = PostbackConfig::from_defs(&reloaded.defs, &reloaded.keys);
    *state = reloaded;
    Ok((catalog, postbacks))
}

/// Upserts every definition of `file` into `base` (what `import` does:
/// definitions absent from the file are kept).
pub fn merge(base: &Definitions, file: &Definitions) -> Definitions {
    fn upsert<T: Clone>(into: &mut Vec<T>, from: &[T], id: impl Fn(&T) -> &str) {
        for f in from {
            match into.iter_mut().find(|x| id(x) == id(f)) {
                Some(x) => *x = f.clone(),
                None => into.push(f.clone()),
            }
        }
    }
    let mut out = base.clone();
    if file.base_currency.is_some() {
        out.base_currency = file.base_currency.clone();
    }
    out.currencies.extend(file.currencies.clone());
    upsert(&mut out.advertisers, &file.advertisers, |a| &a.id);
    upsert(&mut out.affiliates, &file.affiliates, |a| &a.id);
    upsert(&mut out.offers, &file.offers, |o| &o.id);
    upsert(&mut out.smartlinks, &file.smartlinks, |s| &s.slug);
    out
}

// ---------------------------------------------------------------- HTTP ----

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/{kind}", get(list).post(create))
        .route("/{kind}/{id}", get(get_one).put(put).patch(patch).delete(delete))
        .route("/smartlinks/{slug}/overrides", axum::routing::post(add_override))
        .layer(middleware::from_fn_with_state(state, auth))
}

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
    // Every key is compared, so the time taken says nothing about which matched.
    let pbc = app.postbacks.load();
    let mut found = None;
    for (k, key, id) in &pbc.api_keys {
        if token_matches(t, k.expose()) {
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

/// What an affiliate key may do: read reports and conversions (forced to
/// its own affiliate) and its own smartlinks. Anything else is 403.
fn scope_request(req: &mut axum::extract::Request, affiliate: &str) -> Result<(), ApiError> {
    let forbidden =
        || ApiError::Forbidden("an affiliate key may only read its reports, conversions and smartlinks".into());
    if req.method() != axum::http::Method::GET {
        return Err(forbidden());
    }
    let path = req.uri().path().to_string();
    let rel = path.strip_prefix("/api/v1").unwrap_or(&path);
    let force_filter = match rel {
        "/report" | "/conversions" => true,
        p if p.starts_with("/conversions/") || p == "/smartlinks" || p.starts_with("/smartlinks/") => false,
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Advertisers,
    Affiliates,
    Offers,
    Smartlinks,
}

impl Section {
    fn parse(s: &str) -> Result<Section, ApiError> {
        Ok(match s {
            "advertisers" => Section::Advertisers,
            "affiliates" => Section::Affiliates,
            "offers" => Section::Offers,
            "smartlinks" => Section::Smartlinks,
            _ => {
                return Err(ApiError::NotFound(format!(
                    "unknown collection {s:?}; expected advertisers, affiliates, offers or smartlinks"
                )))
            }
        })
    }
    fn name(self) -> &'static str {
        match self {
            Section::Advertisers => "advertisers",
            Section::Affiliates => "affiliates",
            Section::Offers => "offers",
            Section::Smartlinks => "smartlinks",
        }
    }
    fn id_field(self) -> &'static str {
        if self == Section::Smartlinks {
            "slug"
        } else {
            "id"
        }
    }
    fn singular(self) -> &'static str {
        match self {
            Section::Advertisers => "advertiser",
            Section::Affiliates => "affiliate",
            Section::Offers => "offer",
            Section::Smartlinks => "smartlink",
        }
    }
}

fn to_values<T: Serialize>(items: &[T]) -> Vec<Value> {
    items.iter().map(|i| serde_json::to_value(i).unwrap_or(Value::Null)).collect()
}

/// The documents of one section, as the API shows them (secrets hidden).
fn section_values(defs: &Definitions, s: Section) -> Vec<Value> {
    match s {
        Section::Advertisers => defs
            .advertisers
            .iter()
            .map(|a| serde_json::json!({ "id": a.id, "postback_token_set": a.postback_token.is_some() }))
            .collect(),
        Section::Affiliates => to_values(&defs.affiliates)
            .into_iter()
            .map(|mut v| {
                let set = v.as_object_mut().and_then(|o| o.remove("api_key")).is_some();
                v["api_key_set"] = set.into();
                v
            })
            .collect(),
        Section::Offers => to_values(&defs.offers),
        Section::Smartlinks => to_values(&defs.smartlinks),
    }
}

/// The stored document (with secrets), for merge patches.
fn stored_value(defs: &Definitions, s: Section, id: &str) -> Option<Value> {
    let v = match s {
        Section::Advertisers => to_values(&defs.advertisers),
        Section::Affiliates => to_values(&defs.affiliates),
        Section::Offers => to_values(&defs.offers),
        Section::Smartlinks => to_values(&defs.smartlinks),
    };
    v.into_iter().find(|v| v.get(s.id_field()).and_then(Value::as_str) == Some(id))
}

fn parse_doc<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        ApiError::Invalid(vec![FieldError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }])
    })
}

/// Replaces (or inserts, or with `None` removes) one document.
fn with_doc(defs: &Definitions, s: Section, id: &str, doc: Option<Value>) -> Result<Definitions, ApiError> {
    fn set<T: Clone>(v: &mut Vec<T>, id: &str, key: impl Fn(&T) -> &str, new: Option<T>) {
        match (v.iter().position(|x| key(x) == id), new) {
            (Some(i), Some(n)) => v[i] = n,
            (Some(i), None) => {
                v.remove(i);
            }
            (None, Some(n)) => v.push(n),
            (None, None) => {}
        }
    }
    let mut d = defs.clone();
    match s {
        Section::Advertisers => set(&mut d.advertisers, id, |a| &a.id, doc.map(parse_doc).transpose()?),
        Section::Affiliates => set(&mut d.affiliates, id, |a| &a.id, doc.map(parse_doc).transpose()?),
        Section::Offers => set(&mut d.offers, id, |o| &o.id, doc.map(parse_doc).transpose()?),
        Section::Smartlinks => set(&mut d.smartlinks, id, |x| &x.slug, doc.map(parse_doc).transpose()?),
    }
    Ok(d)
}

fn position(defs: &Definitions, s: Section, id: &str) -> Option<usize> {
    match s {
        Section::Advertisers => defs.advertisers.iter().position(|a| a.id == id),
        Section::Affiliates => defs.affiliates.iter().position(|a| a.id == id),
        Section::Offers => defs.offers.iter().position(|o| o.id == id),
        Section::Smartlinks => defs.smartlinks.iter().position(|x| x.slug == id),
    }
}

/// Validates and applies a proposed change; errors about the changed
/// document are 422 with paths relative to it, errors it causes elsewhere
/// (a smartlink left pointing at a deleted offer) are 409.
async fn apply(app: &Arc<AppState>, s: Section, id: &str, new: Definitions) -> Result<(), ApiError> {
    let mut state = app.defs.lock().await;
    let current = app.catalog.load_full();
    let store = app.store.clone();
    let mut working = state.clone();
    let res = tokio::task::spawn_blocking(move || {
        let r = commit_defs(&*store, &mut working, new.clone(), &current, "api");
        (r, working, new)
    })
    .await
    .map_err(|e| ApiError::Unexpected(e.into()))?;
    match res {
        (Ok((catalog, postbacks)), working, _) => {
            *state = working;
            app.postbacks.store(Arc::new(postbacks));
            app.catalog.store(Arc::new(catalog));
            Ok(())
        }
        (Err(ApplyError::Store(e)), ..) => Err(ApiError::Unexpected(e)),
        (Err(ApplyError::Invalid(errors)), _, new) => {
            let prefix = position(&new, s, id).map(|i| format!("{}[{i}]", s.name()));
            let (own, other): (Vec<_>, Vec<_>) =
                errors.into_iter().partition(|e| prefix.as_ref().is_some_and(|p| e.path.starts_with(p.as_str())));
            if !own.is_empty() {
                let p = prefix.unwrap_or_default();
                let own = own
                    .into_iter()
                    .map(|e| FieldError {
                        path: e.path[p.len()..].trim_start_matches('.').to_string(),
                        message: e.message,
                    })
                    .collect();
                Err(ApiError::Invalid(own))
            } else {
                Err(ApiError::Conflict(
                    format!("this change would leave other definitions invalid ({} {id:?} is in use)", s.singular()),
                    other,
                ))
            }
        }
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest("request body must be a JSON object".into()));
    }
    Ok(v)
}

/// Whether an affiliate may see this document (only its own smartlinks).
fn visible(scope: &Scope, s: Section, doc: &Value) -> bool {
    match scope {
        Scope::Admin => true,
        Scope::Affiliate { id, .. } => {
            s == Section::Smartlinks && doc.get("affiliate").and_then(Value::as_str) == Some(id)
        }
    }
}

async fn list(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<Scope>,
    Path(kind): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = Section::parse(&kind)?;
    let st = app.defs.lock().await;
    Ok(Json(Value::Array(section_values(&st.defs, s).into_iter().filter(|d| visible(&scope, s, d)).collect())))
}

async fn get_one(
    State(app): State<Arc<AppState>>,
    axum::Extension(scope): axum::Extension<Scope>,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let s = Section::parse(&kind)?;
    let st = app.defs.lock().await;
    let missing = || ApiError::NotFound(format!("no {} {id:?}", s.singular()));
    let pos = position(&st.defs, s, &id).ok_or_else(missing)?;
    let doc = section_values(&st.defs, s).swap_remove(pos);
    if !visible(&scope, s, &doc) {
        return Err(missing());
    }
    Ok(Json(doc))
}

async fn shown(app: &Arc<AppState>, s: Section, id: &str) -> Json<Value> {
    let st = app.defs.lock().await;
    let v = position(&st.defs, s, id).map(|p| section_values(&st.defs, s).swap_remove(p)).unwrap_or(Value::Null);
    Json(v)
}

async fn create(State(app): State<Arc<AppState>>, Path(kind): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let s = Section::parse(&kind)?;
    let doc = parse_body(&body)?;
    let id = doc.get(s.id_field()).and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
        ApiError::Invalid(vec![FieldError { path: s.id_field().into(), message: "missing field".into() }])
    })?;
    let defs = app.defs.lock().await.defs.clone();
    if position(&defs, s, &id).is_some() {
        return Err(ApiError::Conflict(
            format!("{} {id:?} already exists; use PUT or PATCH to change it", s.singular()),
            vec![],
        ));
    }
    let new = with_doc(&defs, s, &id, Some(doc))?;
    apply(&app, s, &id, new).await?;
    Ok((StatusCode::CREATED, shown(&app, s, &id).await).into_response())
}

fn check_id_matches(s: Section, id: &str, doc: &mut Value) -> Result<(), ApiError> {
    match doc.get(s.id_field()).and_then(Value::as_str) {
        Some(got) if got != id => Err(ApiError::Invalid(vec![FieldError {
            path: s.id_field().into(),
            message: format!("does not match the URL ({got:?} vs {id:?}); ids cannot be renamed"),
        }])),
        Some(_) => Ok(()),
        None => {
            doc[s.id_field()] = Value::String(id.to_string());
            Ok(())
        }
    }
}

async fn put(
    State(app): State<Arc<AppState>>,
    Path((kind, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = Section::parse(&kind)?;
    let mut doc = parse_body(&body)?;
    check_id_matches(s, &id, &mut doc)?;
    let defs = app.defs.lock().await.defs.clone();
    let existed = position(&defs, s, &id).is_some();
    let new = with_doc(&defs, s, &id, Some(doc))?;
    apply(&app, s, &id, new).await?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, shown(&app, s, &id).await).into_response())
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

async fn patch(
    State(app): State<Arc<AppState>>,
    Path((kind, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let s = Section::parse(&kind)?;
    let p = parse_body(&body)?;
    let defs = app.defs.lock().await.defs.clone();
    let mut doc =
        stored_value(&defs, s, &id).ok_or_else(|| ApiError::NotFound(format!("no {} {id:?}", s.singular())))?;
    merge_patch(&mut doc, &p);
    check_id_matches(s, &id, &mut doc)?;
    let new = with_doc(&defs, s, &id, Some(doc))?;
    apply(&app, s, &id, new).await?;
    Ok(shown(&app, s, &id).await)
}

/// `POST /api/v1/smartlinks/{slug}/overrides` with one override
/// (`{countries, devices, os, offer}`): puts it first in the smartlink's
/// overrides, so an audit recommendation is applied with one call.
async fn add_override(
    State(app): State<Arc<AppState>>,
    Path(slug): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let ov = parse_body(&body)?;
    if !ov.is_object() {
        return Err(ApiError::BadRequest("expected a JSON object: {countries, devices, os, offer}".into()));
    }
    let s = Section::Smartlinks;
    let defs = app.defs.lock().await.defs.clone();
    let mut doc = stored_value(&defs, s, &slug).ok_or_else(|| ApiError::NotFound(format!("no smartlink {slug:?}")))?;
    let mut list = doc.get("overrides").and_then(Value::as_array).cloned().unwrap_or_default();
    list.insert(0, ov);
    doc["overrides"] = Value::Array(list);
    let new = with_doc(&defs, s, &slug, Some(doc))?;
    apply(&app, s, &slug, new).await?;
    Ok((StatusCode::CREATED, shown(&app, s, &slug).await))
}

async fn delete(
    State(app): State<Arc<AppState>>,
    Path((kind, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let s = Section::parse(&kind)?;
    let defs = app.defs.lock().await.defs.clone();
    if position(&defs, s, &id).is_none() {
        return Err(ApiError::NotFound(format!("no {} {id:?}", s.singular())));
    }
    let new = with_doc(&defs, s, &id, None)?;
    apply(&app, s, &id, new).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = serde_json::json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(&mut t, &serde_json::json!({"a": null, "b": {"c": 9}, "e": [2], "f": "x"}));
        assert_eq!(t, serde_json::json!({"b": {"c": 9, "d": 3}, "e": [2], "f": "x"}));
    }

    #[test]
    fn token_comparison_accepts_only_the_exact_token() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("", "abc"));
        assert!(!token_matches("abcd", "abc"));
    }
}
