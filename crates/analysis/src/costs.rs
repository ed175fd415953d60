//! Cost imports: `POST /api/v1/costs` and `smartlink costs import FILE.csv`.
//!
//! A source that bills after the fact says "these clicks cost this much":
//! a link or a source (or both), a period, optionally a segment (country,
//! device, OS) or sub-ids, and an amount in a currency. [`plan`] turns one
//! such line into a [`CostImport`] (names to keys, dates to instants, the
//! amount to the base currency); the store spreads it over the covered
//! clicks exactly (see [`CostImport`]).

use serde::Deserialize;
use serde_json::{json, Value};
use smartlink_store::{CostImport, CostImportRow, CostImported, Dim, DimValue, Kind, Store};

use crate::report::parse_time;

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("{field}: {message}")]
    Bad { field: String, message: String },
    #[error(transparent)]
    Store(#[from] smartlink_store::StoreError),
}

fn bad(field: &str, message: impl Into<String>) -> CostError {
    CostError::Bad { field: field.into(), message: message.into() }
}

/// One billed amount, as the API's JSON or a CSV row gives it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostLine {
    /// A smartlink's slug or `direct:{offer}`.
    #[serde(default)]
    pub link: Option<String>,
    /// A traffic source's id.
    #[serde(default)]
    pub source: Option<String>,
    /// Start of the period (inclusive): any form reports take.
    pub from: String,
    /// End of the period (exclusive).
    pub to: String,
    pub amount: f64,
    /// Default: the base currency.
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub sub1: Option<String>,
    #[serde(default)]
    pub sub2: Option<String>,
    #[serde(default)]
    pub sub3: Option<String>,
    #[serde(default)]
    pub sub4: Option<String>,
    #[serde(default)]
    pub sub5: Option<String>,
}

impl CostLine {
    /// What the import said, for the record.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut push = |k: &str, v: &Option<String>| {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={v}"));
            }
        };
        push("link", &self.link);
        push("source", &self.source);
        push("country", &self.country);
        push("device", &self.device);
        push("os", &self.os);
        push("sub1", &self.sub1);
        push("sub2", &self.sub2);
        push("sub3", &self.sub3);
        push("sub4", &self.sub4);
        push("sub5", &self.sub5);
        parts.push(format!("amount={} {}", self.amount, self.currency.as_deref().unwrap_or("(base currency)")));
        parts.join(" ")
    }
}

/// Turns `line` into what the store applies. `rate` gives the value of one
/// unit of a currency in the base currency (`None`: unknown currency).
pub fn plan(
    store: &dyn Store,
    line: &CostLine,
    rate: &dyn Fn(Option<&str>) -> Option<f64>,
    actor: &str,
    now_ms: i64,
) -> Result<CostImport, CostError> {
    let utc = chrono_tz::UTC;
    let from = parse_time(&line.from, utc, now_ms, "from").map_err(|e| bad("from", strip(e)))?;
    let to = parse_time(&line.to, utc, now_ms, "to").map_err(|e| bad("to", strip(e)))?;
    if to <= from {
        return Err(bad("to", "must be after from"));
    }
    if !(line.amount.is_finite() && line.amount >= 0.0) {
        return Err(bad("amount", format!("expected an amount of 0 or more, got {}", line.amount)));
    }
    let r = rate(line.currency.as_deref())
        .ok_or_else(|| bad("currency", format!("no exchange rate for {:?}", line.currency.as_deref().unwrap_or(""))))?;
    let keys = store.keys()?;
    let key = |kind: Kind, id: &str| keys.iter().find(|(k, i, _)| *k == kind && i == id).map(|(_, _, v)| *v);
    let given = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_string);
    let mut filters = Vec::new();
    if let Some(l) = given(&line.link) {
        let k = key(Kind::Smartlink, &l).ok_or_else(|| bad("link", format!("unknown link {l:?}")))?;
        filters.push((Dim::Smartlink, vec![DimValue::Key(k)]));
    }
    if let Some(s) = given(&line.source) {
        let k = key(Kind::Source, &s).ok_or_else(|| bad("source", format!("unknown source {s:?}")))?;
        filters.push((Dim::Source, vec![DimValue::Key(k)]));
    }
    if filters.is_empty() {
        return Err(bad("link", "give a link, a source or both: the clicks the amount was billed for"));
    }
    if let Some(c) = given(&line.country) {
        let c = smartlink_core::model::Country::parse(&c).map_err(|e| bad("country", e.0))?;
        filters.push((Dim::Country, vec![DimValue::Text(c.to_string())]));
    }
    if let Some(d) = given(&line.device) {
        let d = smartlink_core::model::Device::parse(&d).map_err(|e| bad("device", e.0))?;
        filters.push((Dim::Device, vec![DimValue::Text(d.as_str().into())]));
    }
    if let Some(o) = given(&line.os) {
        let o = smartlink_core::model::Os::parse(&o).map_err(|e| bad("os", e.0))?;
        filters.push((Dim::Os, vec![DimValue::Text(o.as_str().into())]));
    }
    for (i, s) in [&line.sub1, &line.sub2, &line.sub3, &line.sub4, &line.sub5].into_iter().enumerate() {
        if let Some(v) = given(s) {
            filters.push((Dim::Sub(i as u8 + 1), vec![DimValue::Text(v)]));
        }
    }
    Ok(CostImport {
        from_ms: from,
        to_ms: to,
        filters,
        amount: line.amount * r,
        description: line.describe(),
        actor: actor.into(),
        ts_ms: now_ms,
    })
}

/// The message of a report error, without its parameter name (the cost
/// error names its own field).
fn strip(e: crate::report::ReportError) -> String {
    match e {
        crate::report::ReportError::Bad { message, .. } => message,
        other => other.to_string(),
    }
}

/// Plans and applies `line`; the API's answer for it.
pub fn import(
    store: &dyn Store,
    line: &CostLine,
    rate: &dyn Fn(Option<&str>) -> Option<f64>,
    actor: &str,
    now_ms: i64,
) -> Result<Value, CostError> {
    let imp = plan(store, line, rate, actor, now_ms)?;
    let done: CostImported = store.import_costs(&imp).map_err(|e| match e {
        smartlink_store::StoreError::Invalid(m) => bad("period", m),
        e => CostError::Store(e),
    })?;
    Ok(json!({
        "id": done.id,
        "clicks": done.clicks,
        "amount": round(imp.amount),
        "replaced": round(done.replaced),
        "from": imp.from_ms,
        "to": imp.to_ms,
        "description": imp.description,
    }))
}

/// Reads cost lines from CSV with a header row naming [`CostLine`]'s
/// fields (`link,source,from,to,amount,currency,country,device,os,sub1..sub5`;
/// only `from`, `to`, `amount` and a link or a source are required, empty
/// cells are absent). An error names the line (the header is line 1).
pub fn read_csv(text: &str) -> Result<Vec<CostLine>, CostError> {
    let mut r = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (i, rec) in r.deserialize::<CostLine>().enumerate() {
        out.push(rec.map_err(|e| bad(&format!("line {}", i + 2), e.to_string()))?);
    }
    Ok(out)
}

/// A recorded import as the API shows it.
pub fn row_json(r: &CostImportRow) -> Value {
    json!({
        "id": r.id, "ts_ms": r.ts_ms, "actor": r.actor, "from": r.from_ms, "to": r.to_ms,
        "description": r.description, "amount": round(r.amount), "clicks": r.clicks,
    })
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}
