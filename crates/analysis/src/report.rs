//! Reports: `GET /api/v1/report` and `smartlink report`. The store answers
//! the grouped sums ([`smartlink_store::RollupStore`]): the server's
//! columnar analytics store from its fact rows, or the transactional store
//! from its hourly rollups and, for what they cannot answer (quality
//! reasons, sub-ids, the traffic source, the partial hours at a window's
//! edges), from raw rows.
//!
//! Rows are keyed by the `group_by` names; `clicks` counts every click,
//! fallback clicks included (their `offer` is `null`); conversions count in
//! the hour of their click, with their latest status. Grouped by `reason`,
//! a click counts under each quality reason it carries (`""`: none), so the
//! rows add up to more than the totals, which are asked for apart. Local
//! `hour` and `day` (in `tz`) are derived from UTC hours after the query,
//! so any IANA zone works; a zone with a non-whole-hour offset is rounded
//! to the UTC hour.

use std::collections::HashMap;

use chrono::{TimeZone, Timelike};
use serde_json::{json, Map, Value};
use smartlink_store::{Dim, DimValue, Kind, Measures, RollupQuery, Store};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{param}: {message}")]
    Bad { param: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] smartlink_store::StoreError),
}

fn bad(param: &'static str, message: impl Into<String>) -> ReportError {
    ReportError::Bad { param, message: message.into() }
}

/// A report request, as parsed from query parameters or CLI flags.
#[derive(Clone, Debug, Default)]
pub struct ReportRequest {
    pub from: Option<String>,
    pub to: Option<String>,
    pub tz: Option<String>,
    pub group_by: Vec<String>,
    /// Filters: name → comma-separated values.
    pub filters: Vec<(String, String)>,
    /// A column name, `-` prefix for descending. Default `-clicks`.
    pub sort: Option<String>,
    pub limit: Option<usize>,
    /// Count bot and link-preview clicks (and their conversions) too. By
    /// default they are left out of every figure, EPC included, and
    /// reported apart under `excluded`.
    pub include_bots: bool,
}

/// Query parameters that filter a report (comma-separated values).
pub const FILTERS: [&str; 16] = [
    "smartlink",
    "source",
    "offer",
    "affiliate",
    "country",
    "device",
    "os",
    "browser",
    "language",
    "quality",
    "reason",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
];

const GROUPS: [&str; 21] = [
    "smartlink",
    "link",
    "source",
    "offer",
    "affiliate",
    "country",
    "device",
    "os",
    "browser",
    "language",
    "quality",
    "reason",
    "hour",
    "hour_of_day",
    "weekday",
    "day",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
];
/// Columns only the admin's reports have.
const ADMIN_COLUMNS: [&str; 2] = ["payout", "margin"];
const COLUMNS: [&str; 15] = [
    "clicks",
    "fallback_clicks",
    "conversions",
    "pending",
    "rejected",
    "chargebacks",
    "revenue",
    "cost",
    "profit",
    "roi",
    "cpa",
    "cpc",
    "cr",
    "epc",
    "blended_epc",
];

fn dim_of(name: &str) -> Option<Dim> {
    Some(match name {
        "smartlink" | "link" => Dim::Smartlink,
        "source" => Dim::Source,
        "offer" => Dim::Offer,
        "affiliate" => Dim::Affiliate,
        "country" => Dim::Country,
        "device" => Dim::Device,
        "os" => Dim::Os,
        "browser" => Dim::Browser,
        "language" => Dim::Language,
        "quality" => Dim::Quality,
        "reason" => Dim::Reason,
        "sub1" => Dim::Sub(1),
        "sub2" => Dim::Sub(2),
        "sub3" => Dim::Sub(3),
        "sub4" => Dim::Sub(4),
        "sub5" => Dim::Sub(5),
        "hour" | "hour_of_day" | "weekday" | "day" => Dim::Hour,
        _ => return None,
    })
}

fn kind_of(d: Dim) -> Option<Kind> {
    match d {
        Dim::Smartlink => Some(Kind::Smartlink),
        Dim::Offer => Some(Kind::Offer),
        Dim::Affiliate => Some(Kind::Affiliate),
        Dim::Source => Some(Kind::Source),
        _ => None,
    }
}

/// Affiliates' payout shares: the part of a conversion's gross payout its
/// affiliate earns, per affiliate (numeric key) with per-offer overrides.
/// Traffic of an affiliate not listed (or of none) earns a share of 1.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PayoutShares {
    /// Affiliate key → its share (`payout_share`).
    pub affiliates: HashMap<u32, f64>,
    /// (affiliate key, offer key) → the share on that offer (`payout_shares`).
    pub offers: HashMap<(u32, u32), f64>,
}

impl PayoutShares {
    /// The share an affiliate earns on an offer (offer key 0: its default).
    pub fn share(&self, affiliate: u32, offer: u32) -> f64 {
        self.offers.get(&(affiliate, offer)).or_else(|| self.affiliates.get(&affiliate)).copied().unwrap_or(1.0)
    }
}

/// Whose money a report shows.
#[derive(Clone, Copy, Debug)]
pub enum Money<'a> {
    /// The network's gross figures only.
    Gross,
    /// The admin: gross `revenue`, plus `payout` (what the affiliates earn
    /// of it: gross × share of each conversion's affiliate and offer) and
    /// `margin` (revenue − payout).
    Admin(&'a PayoutShares),
    /// An affiliate's key: forced to its own rows, and every money figure
    /// (revenue, EPC and what derives from them) is its own: gross × share.
    Affiliate { key: u32, shares: &'a PayoutShares },
}

impl Money<'_> {
    /// Dimensions a rollup query must also be grouped by so that each row
    /// has one share (the report folds them back afterwards).
    fn share_dims(&self) -> Vec<Dim> {
        match self {
            Money::Gross => vec![],
            Money::Admin(s) if !s.offers.is_empty() => vec![Dim::Affiliate, Dim::Offer],
            Money::Admin(s) if s.affiliates.values().any(|v| *v != 1.0) => vec![Dim::Affiliate],
            Money::Admin(_) => vec![],
            Money::Affiliate { key, shares } if shares.offers.keys().any(|(a, _)| a == key) => vec![Dim::Offer],
            Money::Affiliate { .. } => vec![],
        }
    }

    /// The share of a rollup row with these affiliate and offer keys (when
    /// grouped by them).
    fn share(&self, affiliate: Option<u32>, offer: Option<u32>) -> f64 {
        match self {
            Money::Gross => 1.0,
            Money::Admin(s) => s.share(affiliate.unwrap_or(0), offer.unwrap_or(0)),
            Money::Affiliate { key, shares } => shares.share(*key, offer.unwrap_or(0)),
        }
    }
}

/// A rollup row's measures and the affiliates' payout of its revenue. In
/// the affiliate view `m.revenue` already is the affiliate's payout.
#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    m: Measures,
    payout: f64,
}

impl Cell {
    fn add(&mut self, o: &Cell) {
        self.m.add(&o.m);
        self.payout += o.payout;
    }
}

/// Runs a rollup query with the payout shares applied: the one place a
/// report's money is scaled. The query is grouped additionally by what the
/// shares vary with (affiliate, offer), appended after `q.group`, so every
/// row has one share; callers fold those rows back by their own keys.
fn rollup_money(
    store: &dyn Store,
    mut q: RollupQuery,
    money: &Money,
) -> Result<Vec<(Vec<DimValue>, Cell)>, ReportError> {
    for d in money.share_dims() {
        if !q.group.contains(&d) {
            q.group.push(d);
        }
    }
    let pos = |d: Dim| q.group.iter().position(|x| *x == d);
    let (aff, offer) = (pos(Dim::Affiliate), pos(Dim::Offer));
    let key = |k: &[DimValue], p: Option<usize>| match p.map(|p| &k[p]) {
        Some(DimValue::Key(v)) => Some(*v),
        _ => None,
    };
    Ok(store
        .rollup(&q)?
        .into_iter()
        .map(|(k, mut m)| {
            let payout = m.revenue * money.share(key(&k, aff), key(&k, offer));
            if let Money::Affiliate { .. } = money {
                m.revenue = payout;
            }
            (k, Cell { m, payout })
        })
        .collect())
}

/// What [`parse_time`] accepts, for its error message and the docs.
pub const TIME_FORMS: &str = "a date (2026-12-01, midnight in tz), a local date and time (2026-12-01T10:00 or \
     2026-12-01T10:00:30), RFC 3339 with an offset (2026-12-01T10:00:00+01:00), a time ago (7d, 24h, 30m), now, today, \
     yesterday or unix milliseconds (1764547200000)";

/// Parses a point in time (`from`, `to`, `period`, ... everywhere, API
/// and CLI alike): see [`TIME_FORMS`]. Dates and local times are read in
/// `tz`; relative times count back from `now_ms`.
pub fn parse_time(s: &str, tz: chrono_tz::Tz, now_ms: i64, param: &'static str) -> Result<i64, ReportError> {
    let local_midnight = |days_back: i64| -> i64 {
        let day = smartlink_core::time::local(tz, now_ms).day as i64 - days_back;
        smartlink_core::time::day_range_ms(tz, day.max(0) as u32).0
    };
    let s = s.trim();
    let fail = || bad(param, format!("expected {TIME_FORMS}; got {s:?}"));
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| fail());
    }
    match s {
        "now" => return Ok(now_ms),
        "today" => return Ok(local_midnight(0)),
        "yesterday" => return Ok(local_midnight(1)),
        _ => {}
    }
    for (unit, ms) in [('d', 86_400_000i64), ('h', 3_600_000), ('m', 60_000)] {
        if let Some(n) = s.strip_suffix(unit).filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            let ago = n.parse::<i64>().ok().and_then(|n| n.checked_mul(ms)).ok_or_else(fail)?;
            return Ok(now_ms.saturating_sub(ago));
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let local = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok())
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").ok())
        .ok_or_else(fail)?;
    // A local time that a DST change skips reads as the first valid one
    // after it; one it repeats, as the earlier.
    (0..=2 * 60)
        .find_map(|m| tz.from_local_datetime(&(local + chrono::Duration::minutes(m))).earliest())
        .map(|t| t.timestamp_millis())
        .ok_or_else(fail)
}

/// Parses report filters (name → comma-separated values, names from
/// [`FILTERS`]) into store filters, entity ids resolved to their keys (an
/// unknown id matches nothing), and the quality reasons asked for.
#[allow(clippy::type_complexity)]
pub fn parse_filters(
    keys: &[(Kind, String, u32)],
    given: &[(String, String)],
) -> Result<(Vec<(Dim, Vec<DimValue>)>, Vec<String>), ReportError> {
    let key_of = |kind: Kind, id: &str| keys.iter().find(|(k, i, _)| *k == kind && i == id).map(|(_, _, v)| *v);
    let mut filters = Vec::new();
    let mut reasons = Vec::new();
    for (name, values) in given {
        if name == "reason" {
            for v in values.split(',').filter(|v| !v.is_empty()) {
                if smartlink_visitor::quality::Reason::parse(v).is_none() {
                    return Err(bad("reason", format!("unknown quality reason {v:?}")));
                }
                reasons.push(v.to_string());
            }
            continue;
        }
        let d = dim_of(name)
            .filter(|d| *d != Dim::Hour)
            .ok_or_else(|| bad("filter", format!("cannot filter by {name:?}")))?;
        let mut vs = Vec::new();
        for v in values.split(',').filter(|v| !v.is_empty()) {
            if d == Dim::Quality && smartlink_visitor::quality::QualityClass::parse(v).is_none() {
                return Err(bad("quality", format!("unknown quality {v:?}; expected human, suspect, bot or preview")));
            }
            vs.push(match kind_of(d) {
                // An unknown id matches nothing (key 0 is "none").
                Some(kind) => DimValue::Key(key_of(kind, v).unwrap_or(u32::MAX)),
                None => DimValue::Text(v.to_string()),
            });
        }
        filters.push((d, vs));
    }
    Ok((filters, reasons))
}

/// Runs a report with the network's gross figures (see [`run_as`]).
pub fn run(store: &dyn Store, req: &ReportRequest, now_ms: i64) -> Result<Value, ReportError> {
    run_as(store, req, Money::Gross, now_ms)
}

/// Runs a report for `money`'s viewer and returns the API's JSON shape.
pub fn run_as(store: &dyn Store, req: &ReportRequest, money: Money, now_ms: i64) -> Result<Value, ReportError> {
    let tz: chrono_tz::Tz = match &req.tz {
        None => chrono_tz::UTC,
        Some(z) => z.parse().map_err(|_| bad("tz", format!("expected an IANA timezone, got {z:?}")))?,
    };
    let from = parse_time(req.from.as_deref().unwrap_or("7d"), tz, now_ms, "from")?;
    let to = match req.from.as_deref() {
        Some("yesterday") if req.to.is_none() => parse_time("today", tz, now_ms, "to")?,
        _ => parse_time(req.to.as_deref().unwrap_or("now"), tz, now_ms, "to")?,
    };
    if to <= from {
        return Err(bad("to", "must be after from"));
    }
    let mut group: Vec<&str> = Vec::new();
    for g in &req.group_by {
        if !GROUPS.contains(&g.as_str()) {
            return Err(bad("group_by", format!("unknown {g:?}; expected any of {}", GROUPS.join(", "))));
        }
        if !group.contains(&g.as_str()) {
            group.push(g);
        }
    }
    let keys = store.keys()?;
    let name_of =
        |kind: Kind, key: u32| keys.iter().find(|(k, _, v)| *k == kind && *v == key).map(|(_, id, _)| id.clone());

    let (mut filters, reasons) = parse_filters(&keys, &req.filters)?;
    // An affiliate's view is its own rows, whatever was asked for.
    if let Money::Affiliate { key, .. } = money {
        filters.retain(|(d, _)| *d != Dim::Affiliate);
        filters.push((Dim::Affiliate, vec![DimValue::Key(key)]));
    }
    // Bots and previews are left out unless asked for (or filtered on),
    // and reported apart under `excluded`.
    let text = |xs: &[&str]| xs.iter().map(|x| DimValue::Text(x.to_string())).collect::<Vec<_>>();
    let wants_excluded = !(req.include_bots || filters.iter().any(|(d, _)| *d == Dim::Quality));
    // Whole UTC days can come from the daily rollups; local days and hours
    // are derived from hours.
    let utc_days = tz == chrono_tz::UTC && !group.iter().any(|g| matches!(*g, "hour" | "hour_of_day" | "weekday"));
    // Hour of day and weekday are grouped where the rows are (the store
    // knows the zone); hours and local days are re-keyed here.
    let zone = smartlink_store::Zone(tz);
    let dim_for = |g: &str| match g {
        "day" if utc_days => Some(Dim::Day),
        "hour" | "hour_of_day" => Some(Dim::HourOfDay(zone)),
        "weekday" => Some(Dim::Weekday(zone)),
        _ => dim_of(g),
    };
    let mut dims: Vec<Dim> = group.iter().filter_map(|g| dim_for(g)).collect();
    dims.dedup();
    // A click with several quality reasons is in several reason rows, so
    // the totals of such a report (and its excluded clicks) are asked for
    // apart. Otherwise, when the grouping has few rows, one query grouped
    // by quality class too answers both the rows and `excluded`: one scan
    // instead of two. Grouped by sub-ids or time (thousands of rows, each
    // split up to four ways) two scans were faster (measured at 10 M clicks,
    // docs/benchmarks.md).
    let by_reason = dims.contains(&Dim::Reason);
    let many_rows = dims.iter().any(|d| matches!(d, Dim::Sub(_) | Dim::Hour | Dim::Day));
    // A store that keeps bots and previews apart answers the two scans
    // faster still (each reads only its own rows).
    let split_quality = wants_excluded && !by_reason && !many_rows && !store.classes_apart();
    // Grouped by reason with bots left out, one scan by quality class
    // answers both the totals and `excluded`.
    let mut totals_known: Option<Cell> = None;
    let excluded = if wants_excluded && by_reason {
        let q = RollupQuery {
            from_ms: from,
            to_ms: to,
            filters: filters.clone(),
            group: vec![Dim::Quality],
            reasons: reasons.clone(),
        };
        let (mut out, mut kept) = (Cell::default(), Cell::default());
        for (key, c) in rollup_money(store, q, &money)? {
            match key.first() {
                Some(DimValue::Text(t)) if matches!(t.as_str(), "bot" | "preview") => out.add(&c),
                Some(DimValue::Text(t)) if matches!(t.as_str(), "human" | "suspect") => kept.add(&c),
                _ => {}
            }
        }
        totals_known = Some(kept);
        filters.push((Dim::Quality, text(&["human", "suspect"])));
        Some(out)
    } else if wants_excluded && !split_quality {
        let mut f = filters.clone();
        f.push((Dim::Quality, text(&["bot", "preview"])));
        let q = RollupQuery { from_ms: from, to_ms: to, filters: f, group: vec![], reasons: reasons.clone() };
        let mut sum = Cell::default();
        for (_, c) in rollup_money(store, q, &money)? {
            sum.add(&c);
        }
        filters.push((Dim::Quality, text(&["human", "suspect"])));
        Some(sum)
    } else {
        None
    };
    let totals_apart = (by_reason && totals_known.is_none()).then(|| RollupQuery {
        from_ms: from,
        to_ms: to,
        filters: filters.clone(),
        group: vec![],
        reasons: reasons.clone(),
    });
    let mut qdims = dims.clone();
    if split_quality && !qdims.contains(&Dim::Quality) {
        qdims.push(Dim::Quality);
    }
    let quality_at = qdims.iter().position(|d| *d == Dim::Quality);
    let q = RollupQuery { from_ms: from, to_ms: to, filters, group: qdims, reasons };
    let mut raw = rollup_money(store, q, &money)?;
    let excluded = if split_quality {
        let mut sum = Cell::default();
        // As the filters would: human and suspect stay, bot and preview
        // are `excluded`, anything else is neither.
        raw.retain(|(key, c)| {
            let class = match quality_at.and_then(|i| key.get(i)) {
                Some(DimValue::Text(t)) => t.as_str(),
                _ => "",
            };
            if matches!(class, "bot" | "preview") {
                sum.add(c);
            }
            matches!(class, "human" | "suspect")
        });
        Some(sum)
    } else {
        excluded
    };

    // Re-key: entity names, local hour/day; merge rows that map together
    // (rows split only by the share dimensions fold back here). Each
    // distinct stored value is rendered once per column (a breakdown by
    // hour of day has 720 UTC hours × its other keys), and rows are merged
    // under the numbers of their rendered values.
    let cols: Vec<(usize, Dim)> = group
        .iter()
        .map(|g| {
            let d = dim_for(g).unwrap_or(Dim::Hour);
            (dims.iter().position(|x| *x == d).unwrap_or(0), d)
        })
        .collect();
    let render = |g: &str, d: Dim, v: &DimValue| -> Value {
        match (v, kind_of(d)) {
            (DimValue::Key(h), _) if matches!(d, Dim::HourOfDay(_)) => Value::from(*h),
            (DimValue::Key(w), _) if matches!(d, Dim::Weekday(_)) => {
                Value::from(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][*w as usize % 7])
            }
            (DimValue::Key(0), Some(_)) => Value::Null,
            (DimValue::Key(k), Some(kind)) => name_of(kind, *k).map(Value::from).unwrap_or(Value::Null),
            (DimValue::Text(t), _) => Value::from(t.clone()),
            (DimValue::Hour(h), _) => {
                let t = tz.timestamp_millis_opt(*h).single().unwrap_or_else(|| tz.timestamp_millis_opt(0).unwrap());
                if matches!(g, "hour" | "hour_of_day") {
                    Value::from(t.hour())
                } else if g == "weekday" {
                    Value::from(t.format("%a").to_string())
                } else {
                    Value::from(t.format("%Y-%m-%d").to_string())
                }
            }
            (DimValue::Key(k), None) => Value::from(*k),
        }
    };
    // Per column: stored value → number of its rendered value; the
    // rendered values by number.
    let mut seen: Vec<HashMap<DimValue, u32>> = vec![HashMap::new(); group.len()];
    let mut numbers: Vec<HashMap<String, u32>> = vec![HashMap::new(); group.len()];
    let mut values: Vec<Vec<Value>> = vec![Vec::new(); group.len()];
    let mut merged: HashMap<Vec<u32>, Cell> = HashMap::new();
    let mut totals = Cell::default();
    for (key, m) in raw {
        totals.add(&m);
        let mut ids = Vec::with_capacity(group.len());
        for (c, (g, (pos, d))) in group.iter().zip(&cols).enumerate() {
            let stored = &key[*pos];
            let id = match seen[c].get(stored) {
                Some(id) => *id,
                None => {
                    let v = render(g, *d, &key[*pos]);
                    let next = values[c].len() as u32;
                    let id = *numbers[c].entry(v.to_string()).or_insert(next);
                    if id == next {
                        values[c].push(v);
                    }
                    seen[c].insert(stored.clone(), id);
                    id
                }
            };
            ids.push(id);
        }
        merged.entry(ids).or_default().add(&m);
    }
    if let Some(q) = totals_apart {
        totals = Cell::default();
        for (_, c) in rollup_money(store, q, &money)? {
            totals.add(&c);
        }
    }
    if let Some(t) = totals_known {
        totals = t;
    }
    let blended = if totals.m.clicks > 0 { totals.m.revenue / totals.m.clicks as f64 } else { 0.0 };
    let admin = matches!(money, Money::Admin(_));
    let columns: Vec<&str> = COLUMNS.iter().chain(ADMIN_COLUMNS.iter().filter(|_| admin)).copied().collect();
    let row = |cell: &Cell, obj: &mut Map<String, Value>| {
        for c in &columns {
            obj.insert((*c).into(), measure(cell, blended, c));
        }
    };
    let sort = req.sort.clone().unwrap_or_else(|| "-clicks".into());
    let (desc, col) = match sort.strip_prefix('-') {
        Some(c) => (true, c.to_string()),
        None => (false, sort.clone()),
    };
    let by_group = group.iter().position(|g| *g == col);
    if !columns.contains(&col.as_str()) && by_group.is_none() {
        return Err(bad("sort", format!("unknown column {col:?}")));
    }
    // Sorted before any row is built (a sub-id breakdown has thousands of
    // rows and keeps fifty): by the sort column, ties in the order of the
    // group values.
    let key_order = |a: &[u32], b: &[u32]| {
        (0..a.len()).map(|c| cmp_values(&values[c][a[c] as usize], &values[c][b[c] as usize])).find(|o| o.is_ne())
    };
    let sort_value = |ids: &[u32], cell: &Cell| match by_group {
        Some(c) => values[c][ids[c] as usize].clone(),
        None => measure(cell, blended, &col),
    };
    let mut keyed: Vec<(Value, Vec<u32>, Cell)> =
        merged.into_iter().map(|(ids, cell)| (sort_value(&ids, &cell), ids, cell)).collect();
    keyed.sort_by(|a, b| {
        let o = cmp_values(&a.0, &b.0);
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| key_order(&a.1, &b.1).unwrap_or(std::cmp::Ordering::Equal))
    });
    if let Some(n) = req.limit {
        keyed.truncate(n);
    }
    let rows: Vec<Value> = keyed
        .into_iter()
        .map(|(_, ids, cell)| {
            let mut obj = Map::new();
            for (c, (g, id)) in group.iter().zip(&ids).enumerate() {
                obj.insert(g.to_string(), values[c][*id as usize].clone());
            }
            row(&cell, &mut obj);
            Value::Object(obj)
        })
        .collect();
    let mut t = Map::new();
    row(&totals, &mut t);
    let excluded = excluded.map(|Cell { m, .. }| {
        json!({ "quality": ["bot", "preview"], "clicks": m.clicks, "conversions": m.approved,
                "revenue": round(m.revenue), "cost": round(m.cost) })
    });
    // Built by moving the rows in: `json!` would serialize (copy) them.
    let mut out = Map::new();
    out.insert("from".into(), from.into());
    out.insert("to".into(), to.into());
    out.insert("tz".into(), tz.name().into());
    out.insert("group_by".into(), group.iter().map(|g| Value::from(*g)).collect());
    out.insert("rows".into(), Value::Array(rows));
    out.insert("totals".into(), Value::Object(t));
    out.insert("excluded".into(), excluded.unwrap_or(Value::Null));
    Ok(Value::Object(out))
}

/// One measure column of a report row (or its totals) by name, as the
/// report shows it: money rounded, ratios of the rounded parts where they
/// must add up. `blended` is the report's blended EPC.
fn measure(cell: &Cell, blended: f64, col: &str) -> Value {
    let m = &cell.m;
    let c = m.clicks as f64;
    match col {
        "clicks" => m.clicks.into(),
        "fallback_clicks" => m.fallback_clicks.into(),
        "conversions" => m.approved.into(),
        "pending" => m.pending.into(),
        "rejected" => m.rejected.into(),
        "chargebacks" => m.chargebacks.into(),
        "revenue" => round(m.revenue).into(),
        "cr" => if c > 0.0 { m.approved as f64 / c } else { 0.0 }.into(),
        "epc" => if c > 0.0 { round(m.revenue / c) } else { 0.0 }.into(),
        "blended_epc" => round(blended).into(),
        // Rounded parts, so the three shown add up exactly.
        "payout" => round(cell.payout).into(),
        "margin" => round(round(m.revenue) - round(cell.payout)).into(),
        money => money_column(m, money),
    }
}

/// `cost`, `profit` (revenue − cost), `roi` (profit / cost as a ratio:
/// 0.5 is +50%; `null` without cost), `cpa` (cost per approved
/// conversion; `null` without one) and `cpc` (cost per click).
pub fn money_columns(m: &Measures, obj: &mut Map<String, Value>) {
    for col in ["cost", "profit", "roi", "cpa", "cpc"] {
        obj.insert(col.into(), money_column(m, col));
    }
}

/// One of [`money_columns`] by name (`Null` for a name it does not have).
fn money_column(m: &Measures, col: &str) -> Value {
    let per = |n: f64| if n > 0.0 { Value::from(round(m.cost / n)) } else { Value::Null };
    match col {
        "cost" => round(m.cost).into(),
        "profit" => round(m.revenue - m.cost).into(),
        "roi" => {
            if m.cost > 0.0 {
                Value::from(round((m.revenue - m.cost) / m.cost))
            } else {
                Value::Null
            }
        }
        "cpa" => per(m.approved as f64),
        "cpc" => {
            if m.clicks > 0 {
                Value::from(round(m.cost / m.clicks as f64))
            } else {
                0.0.into()
            }
        }
        _ => Value::Null,
    }
}

fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            _ => a.to_string().cmp(&b.to_string()),
        },
    }
}

/// Renders a report as a text table or CSV (the CLI's formats; CSV is the
/// API's `format=csv` too): the `group_by` columns, the measures, and a
/// last `TOTAL` row. CSV cells are exact (null is empty), table cells
/// rounded for reading.
pub fn render(report: &Value, csv: bool) -> String {
    let group: Vec<String> = report["group_by"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let columns: Vec<&str> =
        COLUMNS.iter().chain(ADMIN_COLUMNS.iter()).copied().filter(|c| !report["totals"][*c].is_null()).collect();
    let cols: Vec<String> = group.iter().cloned().chain(columns.iter().map(|c| c.to_string())).collect();
    let cell = |v: &Value| match v {
        _ if csv => crate::export::cell(v),
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    };
    let mut lines: Vec<Vec<String>> = Vec::new();
    for r in report["rows"].as_array().into_iter().flatten() {
        lines.push(cols.iter().map(|c| cell(&r[c])).collect());
    }
    let mut total: Vec<String> =
        group.iter().enumerate().map(|(i, _)| if i == 0 { "TOTAL".into() } else { String::new() }).collect();
    total.extend(columns.iter().map(|c| cell(&report["totals"][*c])));
    lines.push(total);
    if csv {
        return crate::export::csv(&cols, lines);
    }
    lines.insert(0, cols.clone());
    let widths: Vec<usize> =
        (0..cols.len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    lines
        .iter()
        .map(|l| l.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  "))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_590_400_000; // 2025-12-01T12:00:00Z

    #[test]
    fn every_time_form_parses_and_a_bad_one_names_the_parameter_and_the_forms() {
        let utc = chrono_tz::UTC;
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let cases: [(&str, chrono_tz::Tz, i64); 14] = [
            ("1764547200000", utc, 1_764_547_200_000),
            ("now", utc, NOW),
            ("today", utc, 1_764_547_200_000),
            ("yesterday", utc, 1_764_547_200_000 - 86_400_000),
            ("7d", utc, NOW - 7 * 86_400_000),
            ("24h", utc, NOW - 86_400_000),
            ("30m", utc, NOW - 1_800_000),
            ("2025-12-01", utc, 1_764_547_200_000),
            ("2025-12-01", berlin, 1_764_547_200_000 - 3_600_000),
            ("2025-12-01T10:00", utc, 1_764_583_200_000),
            ("2025-12-01T10:00:30", utc, 1_764_583_230_000),
            ("2025-12-01T10:00", berlin, 1_764_583_200_000 - 3_600_000),
            ("2025-12-01T10:00:00+01:00", utc, 1_764_583_200_000 - 3_600_000),
            ("2025-12-01T10:00:00Z", berlin, 1_764_583_200_000),
        ];
        for (s, tz, want) in cases {
            assert_eq!(parse_time(s, tz, NOW, "from").unwrap(), want, "{s} in {tz}");
        }
        // A local time a DST change skips reads as the first one after it.
        assert_eq!(
            parse_time("2026-03-29T02:30", berlin, NOW, "from").unwrap(),
            parse_time("2026-03-29T03:00", berlin, NOW, "from").unwrap()
        );
        for bad in ["", "soon", "7w", "-5d", "d", "2025-13-01", "2025-12-01T25:00", "99999999999999999999", "1.5h"] {
            let e = parse_time(bad, utc, NOW, "to").unwrap_err().to_string();
            assert!(e.starts_with("to: expected a date (2026-12-01"), "{bad:?}: {e}");
            assert!(e.contains("7d, 24h, 30m") && e.contains("unix milliseconds"), "{e}");
            assert!(e.ends_with(&format!("got {bad:?}")), "{e}");
        }
    }

    #[test]
    fn report_csv_round_trips_sub_ids_with_commas_quotes_and_line_breaks() {
        let d = tempfile::tempdir().unwrap();
        let s = smartlink_store::SqliteStore::open_dir(d.path()).unwrap();
        let nasty = ["a,b", "say \"hi\"", "two\nlines", "plain"];
        let rows: Vec<smartlink_store::ClickRow> = nasty
            .iter()
            .enumerate()
            .map(|(i, v)| smartlink_store::ClickRow {
                click_id: format!("c{i}"),
                ts_ms: NOW - 60_000 * (i as i64 + 1),
                smartlink: 1,
                subs: [v.to_string(), String::new(), String::new(), String::new(), String::new()],
                quality: "human".into(),
                ..Default::default()
            })
            .collect();
        s.insert_clicks(&rows).unwrap();
        let req = ReportRequest { from: Some("1h".into()), group_by: vec!["sub1".into()], ..Default::default() };
        let out = render(&run(&s, &req, NOW).unwrap(), true);
        let mut r = csv::Reader::from_reader(out.as_bytes());
        assert_eq!(&r.headers().unwrap()[0], "sub1");
        let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        let mut subs: Vec<&str> = recs.iter().map(|rec| &rec[0]).collect();
        assert_eq!(subs.pop(), Some("TOTAL"));
        subs.sort();
        let mut want = nasty.to_vec();
        want.sort();
        assert_eq!(subs, want);
        assert!(recs.iter().all(|rec| &rec[1] == "1" || &rec[0] == "TOTAL"));
    }
}
