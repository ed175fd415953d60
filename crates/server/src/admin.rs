//! The admin API (`/api/v1/...`, bearer token): CRUD on definitions and
//! smartlink overrides. Every change goes through [`crate::defs::commit_defs`]
//! and then swaps the new catalog in.

use std::sync::Arc;

use crate::openapi::ApiRouter;
use crate::routes;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::auth::Scope;
use crate::config::*;
use crate::defs::{commit_defs, ApplyError};
use crate::error::{ApiError, ApiPath};
use crate::openapi::{AdvertiserShown, AffiliateShown, ErrorBody};
use crate::state::AppState;

// ---------------------------------------------------------------- HTTP ----

/// The definitions API, one set of routes per collection (the same URLs
/// as `/{kind}` and `/{kind}/{id}`, described one by one in the OpenAPI
/// document). The caller adds the auth layer.
pub fn routes() -> ApiRouter<Arc<AppState>> {
    ApiRouter::new()
        .routes(routes!(offers::list_offers => offers::__path_list_offers, offers::create_offer => offers::__path_create_offer))
        .routes(routes!(offers::get_offer => offers::__path_get_offer, offers::put_offer => offers::__path_put_offer, offers::patch_offer => offers::__path_patch_offer, offers::delete_offer => offers::__path_delete_offer))
        .routes(routes!(smartlinks::list_smartlinks => smartlinks::__path_list_smartlinks, smartlinks::create_smartlink => smartlinks::__path_create_smartlink))
        .routes(routes!(smartlinks::get_smartlink => smartlinks::__path_get_smartlink, smartlinks::put_smartlink => smartlinks::__path_put_smartlink, smartlinks::patch_smartlink => smartlinks::__path_patch_smartlink, smartlinks::delete_smartlink => smartlinks::__path_delete_smartlink))
        .routes(routes!(add_override => __path_add_override))
        .routes(routes!(advertisers::list_advertisers => advertisers::__path_list_advertisers, advertisers::create_advertiser => advertisers::__path_create_advertiser))
        .routes(routes!(advertisers::get_advertiser => advertisers::__path_get_advertiser, advertisers::put_advertiser => advertisers::__path_put_advertiser, advertisers::patch_advertiser => advertisers::__path_patch_advertiser, advertisers::delete_advertiser => advertisers::__path_delete_advertiser))
        .routes(routes!(affiliates::list_affiliates => affiliates::__path_list_affiliates, affiliates::create_affiliate => affiliates::__path_create_affiliate))
        .routes(routes!(affiliates::get_affiliate => affiliates::__path_get_affiliate, affiliates::put_affiliate => affiliates::__path_put_affiliate, affiliates::patch_affiliate => affiliates::__path_patch_affiliate, affiliates::delete_affiliate => affiliates::__path_delete_affiliate))
        .routes(routes!(sources::list_sources => sources::__path_list_sources, sources::create_source => sources::__path_create_source))
        .routes(routes!(sources::get_source => sources::__path_get_source, sources::put_source => sources::__path_put_source, sources::patch_source => sources::__path_patch_source, sources::delete_source => sources::__path_delete_source))
}

/// The handlers of one collection: thin wrappers over the shared ones
/// below, each with its own path and schemas in the OpenAPI document.
macro_rules! collection {
    (
        $module:ident, $section:expr, tag = $tag:literal,
        list = ($list:ident, $coll:literal, [$($list_sec:tt)*]),
        one = ($item:literal, $idname:literal, $iddesc:literal, [$($item_sec:tt)*]),
        fns = ($create:ident, $get:ident, $put:ident, $patch:ident, $delete:ident),
        shown = $shown:ident, spec = $spec:ident
    ) => {
        pub(crate) mod $module {
            use super::*;

            /// Lists the collection (an affiliate key: only its own smartlinks).
            #[utoipa::path(get, path = $coll, tag = $tag, security($($list_sec)*),
                responses((status = 200, description = "Every document, secrets shown only as `*_set`", body = Vec<$shown>),
                          (status = 401, description = "Missing or invalid token", body = ErrorBody),
                          (status = 403, description = "Not for this key", body = ErrorBody)))]
            pub(crate) async fn $list(
                State(app): State<Arc<AppState>>,
                axum::Extension(scope): axum::Extension<Scope>,
            ) -> Result<Json<Value>, ApiError> {
                super::list(app, scope, $section).await
            }

            /// Creates a document (`409` if its id exists).
            #[utoipa::path(post, path = $coll, tag = $tag, security(("admin_token" = [])),
                request_body(content = $spec, description = "The whole document, its id included"),
                responses((status = 201, description = "Created; `ETag` is its entity tag", body = $shown,
                           headers(("etag" = String, description = "The document's entity tag"))),
                          (status = 400, description = "The body is not a JSON object", body = ErrorBody),
                          (status = 401, description = "Missing or invalid token", body = ErrorBody),
                          (status = 403, description = "An affiliate key", body = ErrorBody),
                          (status = 409, description = "It exists, or the change would break another definition", body = ErrorBody),
                          (status = 422, description = "Invalid: `fields` names each value at fault", body = ErrorBody)))]
            pub(crate) async fn $create(State(app): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
                super::create(app, $section, body).await
            }

            /// Reads one document with its `ETag`.
            #[utoipa::path(get, path = $item, tag = $tag, security($($item_sec)*),
                params(($idname = String, Path, description = $iddesc)),
                responses((status = 200, description = "The document; `ETag` is its entity tag", body = $shown,
                           headers(("etag" = String, description = "The document's entity tag"))),
                          (status = 400, description = "A malformed path", body = ErrorBody),
                          (status = 401, description = "Missing or invalid token", body = ErrorBody),
                          (status = 403, description = "Not for this key", body = ErrorBody),
                          (status = 404, description = "No such document", body = ErrorBody)))]
            pub(crate) async fn $get(
                State(app): State<Arc<AppState>>,
                axum::Extension(scope): axum::Extension<Scope>,
                ApiPath(id): ApiPath<String>,
            ) -> Result<Response, ApiError> {
                super::get_one(app, scope, $section, id).await
            }

            /// Replaces (or creates) a document; `If-Match` makes it conditional.
            #[utoipa::path(put, path = $item, tag = $tag, security(("admin_token" = [])),
                params(($idname = String, Path, description = $iddesc),
                       ("If-Match" = Option<String>, Header, description = "Change only if the document's entity tag is one of these (`*`: if it exists)")),
                request_body(content = $spec, description = "The whole document; its id may be left out, and must match the URL's"),
                responses((status = 200, description = "Replaced", body = $shown,
                           headers(("etag" = String, description = "The document's entity tag"))),
                          (status = 201, description = "Created", body = $shown,
                           headers(("etag" = String, description = "The document's entity tag"))),
                          (status = 400, description = "The body is not a JSON object, or a malformed `If-Match`", body = ErrorBody),
                          (status = 401, description = "Missing or invalid token", body = ErrorBody),
                          (status = 403, description = "An affiliate key", body = ErrorBody),
                          (status = 409, description = "The change would break another definition", body = ErrorBody),
                          (status = 412, description = "`If-Match` does not match", body = ErrorBody),
                          (status = 422, description = "Invalid: `fields` names each value at fault", body = ErrorBody)))]
            pub(crate) async fn $put(
                State(app): State<Arc<AppState>>,
                ApiPath(id): ApiPath<String>,
                headers: HeaderMap,
                body: Bytes,
            ) -> Result<Response, ApiError> {
                super::put(app, $section, id, headers, body).await
            }

            /// Changes a document by JSON merge patch (RFC 7386).
            #[utoipa::path(patch, path = $item, tag = $tag, security(("admin_token" = [])),
                params(($idname = String, Path, description = $iddesc),
                       ("If-Match" = Option<String>, Header, description = "Change only if the document's entity tag is one of these (`*`: if it exists)")),
                request_body(content = Object, description = "A JSON merge patch: the fields to change, `null` to remove one"),
                responses((status = 200, description = "Changed", body = $shown,
                           headers(("etag" = String, description = "The document's entity tag"))),
                          (status = 400, description = "The body is not a JSON object, or a malformed `If-Match`", body = ErrorBody),
                          (status = 401, description = "Missing or invalid token", body = ErrorBody),
                          (status = 403, description = "An affiliate key", body = ErrorBody),
                          (status = 404, description = "No such document", body = ErrorBody),
                          (status = 409, description = "The change would break another definition", body = ErrorBody),
                          (status = 412, description = "`If-Match` does not match", body = ErrorBody),
                          (status = 422, description = "Invalid: `fields` names each value at fault", body = ErrorBody)))]
            pub(crate) async fn $patch(
                State(app): State<Arc<AppState>>,
                ApiPath(id): ApiPath<String>,
                headers: HeaderMap,
                body: Bytes,
            ) -> Result<Response, ApiError> {
                super::patch(app, $section, id, headers, body).await
            }

            /// Deletes a document (`409` while another definition uses it).
            #[utoipa::path(delete, path = $item, tag = $tag, security(("admin_token" = [])),
                params(($idname = String, Path, description = $iddesc),
                       ("If-Match" = Option<String>, Header, description = "Delete only if the document's entity tag is one of these")),
                responses((status = 204, description = "Deleted"),
                          (status = 400, description = "A malformed path or `If-Match`", body = ErrorBody),
                          (status = 401, description = "Missing or invalid token", body = ErrorBody),
                          (status = 403, description = "An affiliate key", body = ErrorBody),
                          (status = 404, description = "No such document", body = ErrorBody),
                          (status = 409, description = "Another definition uses it", body = ErrorBody),
                          (status = 412, description = "`If-Match` does not match", body = ErrorBody)))]
            pub(crate) async fn $delete(
                State(app): State<Arc<AppState>>,
                ApiPath(id): ApiPath<String>,
                headers: HeaderMap,
            ) -> Result<StatusCode, ApiError> {
                super::delete(app, $section, id, headers).await
            }
        }
    };
}

collection!(
    offers,
    Section::Offers,
    tag = "definitions",
    list = (list_offers, "/offers", [("admin_token" = [])]),
    one = ("/offers/{id}", "id", "The offer's id", [("admin_token" = [])]),
    fns = (create_offer, get_offer, put_offer, patch_offer, delete_offer),
    shown = OfferSpec,
    spec = OfferSpec
);
collection!(
    smartlinks,
    Section::Smartlinks,
    tag = "definitions",
    list = (list_smartlinks, "/smartlinks", [("admin_token" = []), ("affiliate_key" = [])]),
    one = ("/smartlinks/{slug}", "slug", "The smartlink's slug", [("admin_token" = []), ("affiliate_key" = [])]),
    fns = (create_smartlink, get_smartlink, put_smartlink, patch_smartlink, delete_smartlink),
    shown = SmartlinkSpec,
    spec = SmartlinkSpec
);
collection!(
    advertisers,
    Section::Advertisers,
    tag = "definitions",
    list = (list_advertisers, "/advertisers", [("admin_token" = [])]),
    one = ("/advertisers/{id}", "id", "The advertiser's id", [("admin_token" = [])]),
    fns = (create_advertiser, get_advertiser, put_advertiser, patch_advertiser, delete_advertiser),
    shown = AdvertiserShown,
    spec = AdvertiserSpec
);
collection!(
    affiliates,
    Section::Affiliates,
    tag = "definitions",
    list = (list_affiliates, "/affiliates", [("admin_token" = [])]),
    one = ("/affiliates/{id}", "id", "The affiliate's id", [("admin_token" = [])]),
    fns = (create_affiliate, get_affiliate, put_affiliate, patch_affiliate, delete_affiliate),
    shown = AffiliateShown,
    spec = AffiliateSpec
);
collection!(
    sources,
    Section::Sources,
    tag = "definitions",
    list = (list_sources, "/sources", [("admin_token" = [])]),
    one = ("/sources/{id}", "id", "The traffic source's id", [("admin_token" = [])]),
    fns = (create_source, get_source, put_source, patch_source, delete_source),
    shown = SourceSpec,
    spec = SourceSpec
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Advertisers,
    Affiliates,
    Offers,
    Smartlinks,
    Sources,
}

impl Section {
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
    // On a shared store the change is read, computed and written under
    // the cluster-wide definitions lock, from the definitions as stored
    // now: a change another node made a moment ago is the base, never
    // overwritten (its own reload may still be on its way here).
    let mut _cluster_lock = UnlockOffThread(None);
    if app.store.shared().is_some() {
        let store = app.store.clone();
        let (lock, fresh) = crate::conversions::blocking(move || {
            let lock = store.shared().map(|s| s.lock_definitions()).transpose()?;
            Ok((lock, crate::defs::load_defs(&*store)?))
        })
        .await?;
        _cluster_lock = UnlockOffThread(lock);
        *state = fresh;
    }
    let (new, out) = change(&state.defs)?;
    let same_as_admin = crate::defs::keys_equal_to_admin_token(&new, app.admin_token_hash.expose());
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

/// A held cluster-wide lock, released on a thread of its own: releasing
/// it is a blocking database call, which must not run on the async runtime.
struct UnlockOffThread(Option<Box<dyn Send>>);

impl Drop for UnlockOffThread {
    fn drop(&mut self) {
        if let Some(lock) = self.0.take() {
            let _ = std::thread::Builder::new().name("definitions-unlock".into()).spawn(move || drop(lock));
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

async fn list(app: Arc<AppState>, scope: Scope, s: Section) -> Result<Json<Value>, ApiError> {
    let st = app.defs.lock().await;
    Ok(Json(Value::Array(section_values(&st.defs, s).into_iter().filter(|d| visible(&scope, s, d)).collect())))
}

async fn get_one(app: Arc<AppState>, scope: Scope, s: Section, id: String) -> Result<Response, ApiError> {
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

async fn create(app: Arc<AppState>, s: Section, body: Bytes) -> Result<Response, ApiError> {
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
    app: Arc<AppState>,
    s: Section,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
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
    app: Arc<AppState>,
    s: Section,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
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
#[utoipa::path(post, path = "/smartlinks/{slug}/overrides", tag = "definitions", security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The smartlink's slug")),
    request_body(content = OverrideSpec, description = "One override; it goes first in the smartlink's list"),
    responses((status = 201, description = "Added; the smartlink as it is now", body = SmartlinkSpec,
               headers(("etag" = String, description = "The smartlink's entity tag"))),
              (status = 400, description = "The body is not a JSON object", body = ErrorBody),
              (status = 401, description = "Missing or invalid token", body = ErrorBody),
              (status = 403, description = "An affiliate key", body = ErrorBody),
              (status = 404, description = "No such smartlink", body = ErrorBody),
              (status = 409, description = "The change would break another definition", body = ErrorBody),
              (status = 422, description = "Invalid: `fields` names each value at fault", body = ErrorBody)))]
async fn add_override(
    State(app): State<Arc<AppState>>,
    ApiPath(slug): ApiPath<String>,
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

async fn delete(app: Arc<AppState>, s: Section, id: String, headers: HeaderMap) -> Result<StatusCode, ApiError> {
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
