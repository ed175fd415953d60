//! Change history: every definition change (who, when, old → new), from the
//! store's `entity_history`, as field-level differences with secrets
//! redacted (`GET /api/v1/history`, `smartlink history`).

use serde_json::{json, Map, Value};
use smartlink_store::{HistoryRow, Kind, Store};

/// Fields whose values never leave the store.
const SECRET_FIELDS: [&str; 3] = ["postback_token", "postback_secret", "api_key"];

/// Field-level differences between two specs: (dotted path, old, new).
/// Objects are compared key by key, anything else as a whole value.
pub fn diff(old: &Value, new: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<(String, Value, Value)>) {
    let empty = Map::new();
    fn as_object<'a>(v: &'a Value, empty: &'a Map<String, Value>) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Null => Some(empty),
            Value::Object(m) => Some(m),
            _ => None,
        }
    }
    match (as_object(old, &empty), as_object(new, &empty)) {
        // A created or deleted document is listed field by field too, so
        // secrets inside it are redacted like any other change.
        (Some(a), Some(b)) if !(old.is_null() && new.is_null()) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(&p, a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if old != new => {
            let (a, b) = (old, new);
            let secret = SECRET_FIELDS.iter().any(|s| path.rsplit('.').next() == Some(s));
            let hide = |v: &Value| if secret && !v.is_null() { json!("<redacted>") } else { v.clone() };
            out.push((path.to_string(), hide(a), hide(b)));
        }
        _ => {}
    }
}

fn parse(spec: &Option<String>) -> Value {
    spec.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null)
}

/// One history row as the API shows it.
pub fn row_json(r: &HistoryRow) -> Value {
    let fields: Vec<Value> = diff(&parse(&r.old_spec), &parse(&r.new_spec))
        .into_iter()
        .map(|(field, old, new)| json!({ "field": field, "old": old, "new": new }))
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), r.id.into());
    m.insert("time_ms".into(), r.ts_ms.into());
    m.insert("kind".into(), r.kind.as_str().into());
    m.insert("entity".into(), r.entity.clone().into());
    m.insert("action".into(), r.action.clone().into());
    m.insert("actor".into(), r.actor.clone().into());
    m.insert("fields".into(), fields.into());
    Value::Object(m)
}

/// Things that happened to offers in `[from_ms, to_ms)`, in plain words,
/// for explanations: (offer id, time, what).
pub fn offer_events(store: &dyn Store, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<(String, i64, String)>> {
    let mut out = Vec::new();
    for r in store.history(Some(Kind::Offer), None, 100_000)? {
        if r.ts_ms < from_ms || r.ts_ms >= to_ms {
            continue;
        }
        let what = match r.action.as_str() {
            "create" => vec!["added".to_string()],
            "delete" => vec!["removed".to_string()],
            "event" => parse(&r.new_spec)["event"].as_str().map(String::from).into_iter().collect(),
            _ => diff(&parse(&r.old_spec), &parse(&r.new_spec))
                .into_iter()
                .filter_map(|(field, old, new)| match field.as_str() {
                    "status" => Some(if new == "paused" { "paused".into() } else { "resumed".into() }),
                    "payout" => Some(format!("payout {} → {}", num(&old), num(&new))),
                    f if f.starts_with("caps") => Some(format!("{f} {} → {}", num(&old), num(&new))),
                    f if f.starts_with("targeting") => Some("targeting changed".into()),
                    _ => None,
                })
                .collect(),
        };
        for w in what {
            out.push((r.entity.clone(), r.ts_ms, w));
        }
    }
    out.sort_by_key(|e| e.1);
    out.dedup();
    Ok(out)
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| format!("{f:.2}")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_listed_per_field_with_secrets_redacted() {
        let old = json!({"id": "o1", "payout": 2.0, "caps": {"daily_clicks": 10}, "postback_token": "a"});
        let new = json!({"id": "o1", "payout": 1.5, "caps": {"daily_clicks": 10, "daily_conversions": 5}, "postback_token": "b"});
        let d = diff(&old, &new);
        assert_eq!(
            d,
            vec![
                ("caps.daily_conversions".into(), Value::Null, json!(5)),
                ("payout".into(), json!(2.0), json!(1.5)),
                ("postback_token".into(), json!("<redacted>"), json!("<redacted>")),
            ]
        );
        assert!(diff(&old, &old).is_empty());
    }
}
