//! The definitions as stored and the one code path that changes them:
//! validate the complete proposed set, persist the difference with its
//! history, reload, and build the catalog (and postback configuration) to
//! swap in. Used by the admin API, by start-up and by `import`.

use serde::Serialize;
use smartlink_core::model::Catalog;
use smartlink_store::{Change, Kind, Store};

use crate::config::*;
use crate::postback_config::PostbackConfig;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_payout: Option<f64>,
}

/// How a stored affiliate API key starts: the key itself is never stored,
/// only `sha256:` and the hex SHA-256 of it.
const API_KEY_HASH: &str = "sha256:";

/// The stored form of an affiliate API key.
pub fn hashed_api_key(key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("{API_KEY_HASH}{hex}")
}

/// Replaces every affiliate API key given in clear with its hash. A key
/// already in the stored form (`sha256:` + 64 hex digits, as `export`
/// writes it, or as an operator may put it in a file) is kept as it is.
pub fn hash_api_keys(defs: &mut Definitions) {
    for a in &mut defs.affiliates {
        if let Some(k) = &a.api_key {
            if !is_hashed_api_key(k.expose()) {
                a.api_key = Some(Secret::new(hashed_api_key(k.expose())));
            }
        }
    }
}

fn is_hashed_api_key(k: &str) -> bool {
    k.strip_prefix(API_KEY_HASH).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Affiliates whose API key is the admin token (which would let the
/// token's holder act as that affiliate and the affiliate guess the
/// token), as errors on their `api_key`.
/// `admin_hash` is the token's hash ([`hashed_api_key`]); keys may be given
/// in clear or hashed.
pub fn keys_equal_to_admin_token(defs: &Definitions, admin_hash: &str) -> Vec<FieldError> {
    // Configuration, not a request: a plain comparison of hashes.
    let same = |k: &str| if is_hashed_api_key(k) { k == admin_hash } else { hashed_api_key(k) == admin_hash };
    defs.affiliates
        .iter()
        .enumerate()
        .filter(|(_, a)| a.api_key.as_ref().is_some_and(|k| same(k.expose())))
        .map(|(i, _)| FieldError {
            path: format!("affiliates[{i}].api_key"),
            message: "must not be the admin token".into(),
        })
        .collect()
}

/// Whether any affiliate API key is in clear (a store from before keys
/// were hashed, rewritten once at start-up).
pub fn has_clear_api_keys(defs: &Definitions) -> bool {
    defs.affiliates.iter().any(|a| a.api_key.as_ref().is_some_and(|k| !is_hashed_api_key(k.expose())))
}

/// Reads every definition from the store.
pub fn load_defs(store: &dyn Store) -> anyhow::Result<DefsState> {
    use anyhow::Context as _;
    let mut defs = Definitions::default();
    if let Some(c) = store.meta(CURRENCY_META)? {
        let c: CurrencySettings = serde_json::from_str(&c).context("stored currency settings")?;
        defs.base_currency = c.base_currency;
        defs.currencies = c.currencies;
        defs.max_payout = c.max_payout;
    }
    for e in store.entities()? {
        let ctx = || format!("stored {} {:?}", e.kind.as_str(), e.id);
        match e.kind {
            Kind::Advertiser => defs.advertisers.push(serde_json::from_str(&e.spec).with_context(ctx)?),
            Kind::Affiliate => defs.affiliates.push(serde_json::from_str(&e.spec).with_context(ctx)?),
            Kind::Offer => defs.offers.push(serde_json::from_str(&e.spec).with_context(ctx)?),
            Kind::Smartlink => defs.smartlinks.push(serde_json::from_str(&e.spec).with_context(ctx)?),
            Kind::Source => defs.sources.push(serde_json::from_str(&e.spec).with_context(ctx)?),
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
    diff(Kind::Source, &old.sources, &new.sources, |s| &s.id, &mut out)?;
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
    mut new: Definitions,
    current: &Catalog,
    actor: &str,
) -> Result<(Catalog, PostbackConfig), ApplyError> {
    hash_api_keys(&mut new);
    build_catalog(&new, &provisional_keys(&new, &state.keys)).map_err(ApplyError::Invalid)?;
    let changes = changes_between(&state.defs, &new).map_err(ApplyError::Store)?;
    store.apply(&changes, actor).map_err(|e| ApplyError::Store(e.into()))?;
    let cs = CurrencySettings {
        base_currency: new.base_currency.clone(),
        currencies: new.currencies.clone(),
        max_payout: new.max_payout,
    };
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
    if file.max_payout.is_some() {
        out.max_payout = file.max_payout;
    }
    if file.base_currency.is_some() {
        out.base_currency = file.base_currency.clone();
    }
    out.currencies.extend(file.currencies.clone());
    upsert(&mut out.advertisers, &file.advertisers, |a| &a.id);
    upsert(&mut out.affiliates, &file.affiliates, |a| &a.id);
    upsert(&mut out.offers, &file.offers, |o| &o.id);
    upsert(&mut out.smartlinks, &file.smartlinks, |s| &s.slug);
    upsert(&mut out.sources, &file.sources, |s| &s.id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_keys(keys: &[Option<&str>]) -> Definitions {
        let mut d = Definitions::default();
        for (i, k) in keys.iter().enumerate() {
            let yaml = match k {
                Some(k) => format!("{{id: a{i}, api_key: \"{k}\"}}"),
                None => format!("{{id: a{i}}}"),
            };
            d.affiliates.push(crate::config::parse_yaml(&yaml).unwrap());
        }
        d
    }

    fn keys(d: &Definitions) -> Vec<Option<String>> {
        d.affiliates.iter().map(|a| a.api_key.as_ref().map(|k| k.expose().to_string())).collect()
    }

    #[test]
    fn api_keys_are_hashed_once_and_hashed_ones_are_kept() {
        let stored = hashed_api_key("already");
        let mut d = with_keys(&[Some("key-one"), None, Some(&stored)]);
        assert!(has_clear_api_keys(&d));
        hash_api_keys(&mut d);
        assert!(!has_clear_api_keys(&d));
        assert_eq!(keys(&d), vec![Some(hashed_api_key("key-one")), None, Some(stored.clone())]);
        let again = d.clone();
        hash_api_keys(&mut d);
        assert_eq!(d, again, "hashing is idempotent");
        assert!(hashed_api_key("key-one").starts_with("sha256:") && hashed_api_key("key-one").len() == 71);
        // Something that only looks like the stored form is hashed.
        let mut d = with_keys(&[Some("sha256:short")]);
        hash_api_keys(&mut d);
        assert_eq!(keys(&d), vec![Some(hashed_api_key("sha256:short"))]);
    }
}
