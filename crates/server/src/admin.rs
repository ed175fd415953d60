//! The admin API (`/api/v1/...`, bearer token): CRUD on definitions and
//! smartlink overrides. Every change goes through [`crate::defs::commit_defs`]
//! and then swaps the new catalog in.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::auth::{auth, Scope};
use crate::config::*;
use crate::defs::{commit_defs, ApplyError};
use crate::error::ApiError;
use crate::state::AppState;

// ---------------------------------------------------------------- HTTP ----

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/{kind}", get(list).post(create))
        .route("/{kind}/{id}", get(get_one).put(put).patch(patch).delete(delete))
        .route("/smartlinks/{slug}/overrides", axum::routing::post(add_override))
        .layer(middleware::from_fn_with_state(state, auth))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Advertisers,
    Affiliates,
    Offers,
    Smartlinks,
    Sources,
}

impl Section {
    fn parse(s: &str) -> Result<Section, ApiError> {
        Ok(match s {
            "advertisers" => Section::Advertisers,
            "affiliates" => Section::Affiliates,
            "offers" => Section::Offers,
            "smartlinks" => Section::Smartlinks,
            "sources" => Section::Sources,
            _ => {
                return Err(ApiError::NotFound(format!(
                    "unknown collection {s:?}; expected advertisers, affiliates, offers, smartlinks or sources"
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
            Section::Sources => "sources",
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
            Section::Sources => "source",
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
            .map(|a| {
                serde_json::json!({ "id": a.id, "postback_token_set": a.postback_token.is_some(),
                                    "allow_pixel": a.allow_pixel == Some(true) })
            })
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
        Section::Sources => to_values(&defs.sources),
    }
}

/// The stored document (with secrets), for merge patches.
fn stored_value(defs: &Definitions, s: Section, id: &str) -> Option<Value> {
    let v = match s {
        Section::Advertisers => to_values(&defs.advertisers),
        Section::Affiliates => to_values(&defs.affiliates),
        Section::Offers => to_values(&defs.offers),
        Section::Smartlinks => to_values(&defs.smartlinks),
        Section::Sources => to_values(&defs.sources),
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
        Section::Sources => set(&mut d.sources, id, |x| &x.id, doc.map(parse_doc).transpose()?),
    }
    Ok(d)
}

fn position(defs: &Definitions, s: Section, id: &str) -> Option<usize> {
    match s {
        Section::Advertisers => defs.advertisers.iter().position(|a| a.id == id),
        Section::Affiliates => defs.affiliates.iter().position(|a| a.id == id),
        Section::Offers => defs.offers.iter().position(|o| o.id == id),
        Section::Smartlinks => defs.smartlinks.iter().position(|x| x.slug == id),
        Section::Sources => defs.sources.iter().position(|x| x.id == id),
    }
}

/// Applies one change. `change` says what a request does to the definitions:
/// the proposed set, and a value for the answer. The proposed set is built by it from the
/// definitions *under the lock* that serialises every change, validated as a
/// whole, persisted, and swapped in before the lock is released; so
/// concurrent requests apply one after the other, each to what the one
/// before left, and none undoes another. Errors about the changed document
/// are 422 with paths relative to it, errors it causes elsewhere (a
/// smartlink left pointing at a deleted offer) are 409. Returns `change`'s
/// value and the document as shown afterwards with its entity tag (`None`
/// once deleted).
async fn apply<T>(
    app: &Arc<AppState>,
    s: Section,
    id: &str,
    change: impl FnOnce(&Definitions) -> Result<(Definitions, T), ApiError> + Send,
) -> Result<(T, Option<(Value, String)>), ApiError> {
    let mut state = app.defs.lock().await;
    let (new, out) = change(&state.defs)?;
    let same_as_admin = crate::defs::keys_equal_to_admin_token(&new, app.admin_token.expose());
    if !same_as_admin.is_empty() {
        return Err(ApiError::Invalid(vec![FieldError {
            path: "api_key".into(),
            message: "must not be the admin token".into(),
        }]));
    }
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
            let after = shown(&state.defs, s, id);
            // One line per change: who, what; never the document (secrets).
            let action = if after.is_some() { "put" } else { "delete" };
            tracing::info!(actor = "api", kind = s.singular(), id, action, "definition changed");
            Ok((out, after))
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

/// The entity tag of a document as the API shows it: a digest of its JSON,
/// so it changes whenever anything visible changes (secrets are shown only
/// as `*_set`, and rotating one changes the stored value, which is hashed
/// too via `stored`).
fn etag(shown: &Value, stored: Option<&Value>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(shown).unwrap_or_default());
    if let Some(v) = stored {
        h.update(serde_json::to_vec(v).unwrap_or_default());
    }
    let d = h.finalize();
    let hex: String = d.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// `id` as the API shows it, with its entity tag, if it exists.
fn shown(defs: &Definitions, s: Section, id: &str) -> Option<(Value, String)> {
    let p = position(defs, s, id)?;
    let doc = section_values(defs, s).swap_remove(p);
    let tag = etag(&doc, stored_value(defs, s, id).as_ref());
    Some((doc, tag))
}

/// The current entity tag of `id`, if it exists.
fn current_etag(defs: &Definitions, s: Section, id: &str) -> Option<String> {
    shown(defs, s, id).map(|(_, tag)| tag)
}

/// RFC 9110 `If-Match`: `*` matches any existing document; otherwise one of
/// the listed strong tags must be the current one. Checked under the lock,
/// so a read-modify-write with the tag from a `GET` cannot overwrite a
/// change made in between.
fn check_if_match(headers: &HeaderMap, defs: &Definitions, s: Section, id: &str) -> Result<(), ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(()) };
    let v = v.to_str().map_err(|_| ApiError::BadRequest("If-Match: not a list of entity tags".into()))?;
    let current = current_etag(defs, s, id);
    let ok = match &current {
        None => false,
        Some(_) if v.trim() == "*" => true,
        Some(tag) => v.split(',').any(|t| t.trim() == tag),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed(match current {
            None => format!("If-Match: no {} {id:?} exists", s.singular()),
            Some(tag) => format!("If-Match: {} {id:?} has changed (its entity tag is now {tag})", s.singular()),
        }))
    }
}

/// A document answered with its `ETag`.
fn with_etag(status: StatusCode, (doc, tag): (Value, String)) -> Response {
    let mut r = (status, Json(doc)).into_response();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
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
) -> Result<Response, ApiError> {
    let s = Section::parse(&kind)?;
    let st = app.defs.lock().await;
    let missing = || ApiError::NotFound(format!("no {} {id:?}", s.singular()));
    let (doc, tag) = shown(&st.defs, s, &id).ok_or_else(missing)?;
    if !visible(&scope, s, &doc) {
        return Err(missing());
    }
    Ok(with_etag(StatusCode::OK, (doc, tag)))
}

/// The answer to a change that leaves the document in place.
fn changed(status: StatusCode, after: Option<(Value, String)>) -> Result<Response, ApiError> {
    after
        .map(|d| with_etag(status, d))
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("the changed document is missing after the change")))
}

async fn create(State(app): State<Arc<AppState>>, Path(kind): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let s = Section::parse(&kind)?;
    let doc = parse_body(&body)?;
    let id = doc.get(s.id_field()).and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
        ApiError::Invalid(vec![FieldError { path: s.id_field().into(), message: "missing field".into() }])
    })?;
    let change = |defs: &Definitions| {
        if position(defs, s, &id).is_some() {
            return Err(ApiError::Conflict(
                format!("{} {id:?} already exists; use PUT or PATCH to change it", s.singular()),
                vec![],
            ));
        }
        Ok((with_doc(defs, s, &id, Some(doc))?, ()))
    };
    let ((), after) = apply(&app, s, &id, change).await?;
    changed(StatusCode::CREATED, after)
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
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = Section::parse(&kind)?;
    let mut doc = parse_body(&body)?;
    check_id_matches(s, &id, &mut doc)?;
    let change = |defs: &Definitions| {
        check_if_match(&headers, defs, s, &id)?;
        let existed = position(defs, s, &id).is_some();
        Ok((with_doc(defs, s, &id, Some(doc))?, existed))
    };
    let (existed, after) = apply(&app, s, &id, change).await?;
    changed(if existed { StatusCode::OK } else { StatusCode::CREATED }, after)
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
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = Section::parse(&kind)?;
    let p = parse_body(&body)?;
    let change = |defs: &Definitions| {
        check_if_match(&headers, defs, s, &id)?;
        let mut doc =
            stored_value(defs, s, &id).ok_or_else(|| ApiError::NotFound(format!("no {} {id:?}", s.singular())))?;
        merge_patch(&mut doc, &p);
        check_id_matches(s, &id, &mut doc)?;
        Ok((with_doc(defs, s, &id, Some(doc))?, ()))
    };
    let ((), after) = apply(&app, s, &id, change).await?;
    changed(StatusCode::OK, after)
}

/// `POST /api/v1/smartlinks/{slug}/overrides` with one override
/// (`{countries, devices, os, offer}`): puts it first in the smartlink's
/// overrides, so an audit recommendation is applied with one call.
async fn add_override(
    State(app): State<Arc<AppState>>,
    Path(slug): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ov = parse_body(&body)?;
    if !ov.is_object() {
        return Err(ApiError::BadRequest("expected a JSON object: {countries, devices, os, offer}".into()));
    }
    let s = Section::Smartlinks;
    let change = |defs: &Definitions| {
        let mut doc =
            stored_value(defs, s, &slug).ok_or_else(|| ApiError::NotFound(format!("no smartlink {slug:?}")))?;
        let mut list = doc.get("overrides").and_then(Value::as_array).cloned().unwrap_or_default();
        list.insert(0, ov);
        doc["overrides"] = Value::Array(list);
        Ok((with_doc(defs, s, &slug, Some(doc))?, ()))
    };
    let ((), after) = apply(&app, s, &slug, change).await?;
    changed(StatusCode::CREATED, after)
}

async fn delete(
    State(app): State<Arc<AppState>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let s = Section::parse(&kind)?;
    let change = |defs: &Definitions| {
        if position(defs, s, &id).is_none() {
            return Err(ApiError::NotFound(format!("no {} {id:?}", s.singular())));
        }
        check_if_match(&headers, defs, s, &id)?;
        Ok((with_doc(defs, s, &id, None)?, ()))
    };
    apply(&app, s, &id, change).await?;
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
}
