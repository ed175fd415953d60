//! The analytics queries over the fact tables: one SQL statement per table
//! (clicks, then conversions counted under their click), merged by key.

use std::collections::{BTreeMap, HashMap};

use duckdb::types::Value;
use smartlink_store::{
    AuditClickRow, Dim, DimValue, Measures, Result, RollupQuery, SourceCounts, SourceQuery, StoreError,
};

use super::{Columnar, Dict, APPROVED};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
const CLASSES: [&str; 4] = ["human", "suspect", "bot", "preview"];

/// Whether a dimension is stored as a dictionary code.
fn coded(d: Dim) -> bool {
    matches!(d, Dim::Country | Dim::Device | Dim::Os | Dim::Browser | Dim::Language | Dim::Quality)
}

/// Whether a dimension is stored (or derived) as text.
fn textual(d: Dim) -> bool {
    matches!(d, Dim::Sub(_) | Dim::Reason)
}

/// A dimension as an expression over a fact table whose time column is `ts`.
fn expr(d: Dim, ts: &str) -> String {
    match d {
        Dim::Smartlink => "smartlink".into(),
        Dim::Offer => "offer".into(),
        Dim::Affiliate => "affiliate".into(),
        Dim::Source => "source".into(),
        Dim::Country => "country".into(),
        Dim::Device => "device".into(),
        Dim::Os => "os".into(),
        Dim::Browser => "browser".into(),
        Dim::Language => "language".into(),
        Dim::Quality => "quality".into(),
        Dim::Sub(n) => format!("sub{}", n.clamp(1, 5)),
        Dim::Reason => "reason".into(),
        Dim::Hour => format!("({ts} // {HOUR_MS}) * {HOUR_MS}"),
        Dim::Day => format!("({ts} // {DAY_MS}) * {DAY_MS}"),
    }
}

/// One part of a group key as read back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Part {
    Int(i64),
    Text(String),
}

fn decode(d: Dim, p: &Part, dict: &Dict) -> DimValue {
    match (d, p) {
        (Dim::Hour | Dim::Day, Part::Int(v)) => DimValue::Hour(*v),
        (d, Part::Int(v)) if coded(d) => DimValue::Text(dict.value(*v)),
        (_, Part::Int(v)) => DimValue::Key(*v as u32),
        (_, Part::Text(t)) => DimValue::Text(t.clone()),
    }
}

/// `col` is one of `values` (integers), written the way DuckDB evaluates
/// fastest: `=`, a range, a bit mask for small codes, else `IN` (which it
/// runs as an `OR` of comparisons, several times slower than a range).
fn int_in(col: &str, mut values: Vec<i64>) -> String {
    values.sort_unstable();
    values.dedup();
    match values[..] {
        [] => "FALSE".into(),
        [v] => format!("{col} = {v}"),
        [a, .., b] if b - a + 1 == values.len() as i64 => format!("{col} BETWEEN {a} AND {b}"),
        _ if values.iter().all(|v| (0..64).contains(v)) => {
            let mask = values.iter().fold(0u64, |m, v| m | 1 << v);
            format!("((1::UBIGINT << {col}) & {mask}::UBIGINT) <> 0")
        }
        _ => format!("{col} IN ({})", values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// The WHERE clause of a query over a fact table: window, filters, reasons.
fn conditions(q: &RollupQuery, ts: &str, dict: &Dict, args: &mut Vec<Value>) -> Result<String> {
    let mut sql = format!("{ts} >= ? AND {ts} < ?");
    args.push(Value::BigInt(q.from_ms));
    args.push(Value::BigInt(q.to_ms));
    for (d, values) in q.filters.iter().filter(|(_, v)| !v.is_empty()) {
        let col = expr(*d, ts);
        if textual(*d) {
            let mut marks = Vec::with_capacity(values.len());
            for v in values {
                let DimValue::Text(t) = v else {
                    return Err(StoreError::Invalid(format!("{col}: expected text")));
                };
                args.push(Value::Text(t.clone()));
                marks.push("?");
            }
            sql.push_str(&format!(" AND {col} IN ({})", marks.join(", ")));
            continue;
        }
        // Integers (codes, keys, hours) are written into the statement.
        let ints: Vec<i64> = values
            .iter()
            .filter_map(|v| match v {
                // A value never seen matches nothing.
                DimValue::Text(t) if coded(*d) => dict.code(t).map(i64::from),
                DimValue::Text(_) => None,
                DimValue::Key(k) => Some(i64::from(*k)),
                DimValue::Hour(h) => Some(*h),
            })
            .collect();
        sql.push_str(&format!(" AND {}", int_in(&col, ints)));
    }
    if !q.reasons.is_empty() {
        sql.push_str(" AND (");
        for (i, r) in q.reasons.iter().enumerate() {
            sql.push_str(if i == 0 { "" } else { " OR " });
            sql.push_str("list_contains(string_split(reasons, ','), ?)");
            args.push(Value::Text(r.clone()));
        }
        sql.push(')');
    }
    Ok(sql)
}

fn key_parts(r: &duckdb::Row<'_>, group: &[Dim]) -> duckdb::Result<Vec<Part>> {
    group
        .iter()
        .enumerate()
        .map(|(i, d)| Ok(if textual(*d) { Part::Text(r.get(i)?) } else { Part::Int(r.get(i)?) }))
        .collect()
}

/// `SELECT {outer} FROM (SELECT {inner}, measures ... GROUP BY ...)`:
/// groups on the stored (narrow) columns, casts the few result rows.
fn grouped(group: &[Dim], ts: &str, measures: &[&str], from_where: &str) -> String {
    let inner: Vec<String> = group.iter().enumerate().map(|(i, d)| format!("{} AS g{i}", expr(*d, ts))).collect();
    let outer: Vec<String> = group
        .iter()
        .enumerate()
        .map(|(i, d)| if textual(*d) { format!("g{i}") } else { format!("g{i}::BIGINT") })
        .chain((0..measures.len()).map(|i| format!("m{i}::BIGINT")))
        .collect();
    let inner_cols: Vec<String> =
        inner.into_iter().chain(measures.iter().enumerate().map(|(i, m)| format!("{m} AS m{i}"))).collect();
    let by = if group.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {}", (0..group.len()).map(|i| format!("g{i}")).collect::<Vec<_>>().join(", "))
    };
    format!("SELECT {} FROM (SELECT {} {from_where}{by})", outer.join(", "), inner_cols.join(", "))
}

fn micros_f64(m: i64) -> f64 {
    m as f64 / 1e6
}

impl Columnar {
    /// [`smartlink_store::RollupStore::rollup`] over the fact rows: exact on
    /// any window, any filters and grouping.
    pub fn rollup(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        q.check()?;
        let click_only = q.needs_raw_rows();
        // Grouped by reason, a fact row is one row per reason code it
        // carries (`string_split('', ',')` is one empty code).
        let facts = |table: &str, wh: &str| {
            if q.group.contains(&Dim::Reason) {
                format!("FROM (SELECT *, unnest(string_split(reasons, ',')) AS reason FROM {table} WHERE {wh})")
            } else {
                format!("FROM {table} WHERE {wh}")
            }
        };
        let dict = self.dict.read();
        let (mut cargs, mut vargs) = (Vec::new(), Vec::new());
        let cwhere = conditions(q, "ts_ms", &dict, &mut cargs)?;
        let mut vwhere = conditions(q, "click_ts_ms", &dict, &mut vargs)?;
        if click_only {
            // As the transactional store's raw path: a conversion counts under
            // what only its click row has (sub-ids, source, reasons) when that
            // row is there.
            vwhere.push_str(" AND click_rid IS NOT NULL");
        }
        drop(dict);
        let csql = grouped(
            &q.group,
            "ts_ms",
            &["COUNT(*)", "COUNT(*) FILTER (WHERE offer = 0)", "COALESCE(SUM(cost), 0)"],
            &facts("clicks", &cwhere),
        );
        let approved = format!("status = {APPROVED}");
        let vsql = grouped(
            &q.group,
            "click_ts_ms",
            &[
                &format!("COUNT(*) FILTER (WHERE {approved})"),
                "COUNT(*) FILTER (WHERE status = 0)",
                "COUNT(*) FILTER (WHERE status = 2)",
                "COUNT(*) FILTER (WHERE status = 3)",
                &format!("COALESCE(SUM(payout) FILTER (WHERE {approved}), 0)"),
                &format!("COALESCE(SUM(cost) FILTER (WHERE {approved}), 0)"),
            ],
            &facts("conversions", &vwhere),
        );
        let n = q.group.len();
        // Money summed as integers per cell, converted once.
        type Cell = (Measures, i64, i64);
        let mut cells: Vec<(Vec<Part>, Cell)> = Vec::new();
        let mut index: HashMap<Vec<Part>, usize> = HashMap::new();
        let mut add = |key: Vec<Part>, f: &dyn Fn(&mut Cell)| {
            let i = *index.entry(key.clone()).or_insert_with(|| {
                cells.push((key, (Measures::default(), 0, 0)));
                cells.len() - 1
            });
            f(&mut cells[i].1);
        };
        let (clicks, convs) = self.read(|c| {
            let mut st = c.prepare(&csql)?;
            let clicks: Vec<(Vec<Part>, [i64; 3])> = st
                .query_map(duckdb::params_from_iter(cargs.iter()), |r| {
                    Ok((key_parts(r, &q.group)?, [r.get(n)?, r.get(n + 1)?, r.get(n + 2)?]))
                })?
                .collect::<duckdb::Result<_>>()?;
            let mut st = c.prepare(&vsql)?;
            let convs: Vec<(Vec<Part>, [i64; 6])> = st
                .query_map(duckdb::params_from_iter(vargs.iter()), |r| {
                    Ok((
                        key_parts(r, &q.group)?,
                        [r.get(n)?, r.get(n + 1)?, r.get(n + 2)?, r.get(n + 3)?, r.get(n + 4)?, r.get(n + 5)?],
                    ))
                })?
                .collect::<duckdb::Result<_>>()?;
            Ok((clicks, convs))
        })?;
        for (key, [clicks, fallback, cost]) in clicks {
            add(key, &|c: &mut Cell| {
                c.0.clicks += clicks as u64;
                c.0.fallback_clicks += fallback as u64;
                c.2 += cost;
            });
        }
        for (key, [approved, pending, rejected, chargebacks, revenue, cost]) in convs {
            add(key, &|c: &mut Cell| {
                c.0.approved += approved as u64;
                c.0.pending += pending as u64;
                c.0.rejected += rejected as u64;
                c.0.chargebacks += chargebacks as u64;
                c.1 += revenue;
                c.2 += cost;
            });
        }
        // Every cell came from at least one row, so none is zero; an
        // ungrouped query has at most the one empty key.
        let dict = self.dict.read();
        let mut out: Vec<(Vec<DimValue>, Measures)> = cells
            .into_iter()
            .map(|(k, (mut m, rev, cost))| {
                m.revenue = micros_f64(rev);
                m.cost = micros_f64(cost);
                (q.group.iter().zip(&k).map(|(d, p)| decode(*d, p, &dict)).collect(), m)
            })
            .collect();
        if q.group.is_empty() && out.is_empty() {
            out.push((Vec::new(), Measures::default()));
        }
        Ok(out)
    }

    /// [`smartlink_store::QualityStore::source_counts`].
    pub fn source_counts(&self, q: &SourceQuery) -> Result<Vec<SourceCounts>> {
        let sub = match q.sub {
            None => "''".to_string(),
            Some(n @ 1..=5) => format!("sub{n}"),
            Some(n) => return Err(StoreError::Invalid(format!("sub{n}: expected sub1..sub5"))),
        };
        let owner = if q.by_source { "source" } else { "affiliate" };
        let csql = format!(
            "SELECT {owner}::BIGINT, {sub}, quality::BIGINT, reasons, COUNT(*)::BIGINT FROM clicks
             WHERE smartlink = ? AND ts_ms >= ? AND ts_ms < ? GROUP BY 1, 2, 3, 4"
        );
        let vsql = format!(
            "SELECT {owner}::BIGINT, {sub}, status::BIGINT, flags, ctit_secs FROM conversions
             WHERE smartlink = ? AND click_ts_ms >= ? AND click_ts_ms < ?"
        );
        let args = [Value::BigInt(q.smartlink as i64), Value::BigInt(q.from_ms), Value::BigInt(q.to_ms)];
        type ClickCount = (i64, String, i64, String, i64);
        type ConvRow = (i64, String, i64, String, i64);
        let (clicks, convs) = self.read(|c| {
            let row5 = |r: &duckdb::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?));
            let clicks: Vec<ClickCount> = c
                .prepare(&csql)?
                .query_map(duckdb::params_from_iter(args.iter()), row5)?
                .collect::<duckdb::Result<_>>()?;
            let convs: Vec<ConvRow> = c
                .prepare(&vsql)?
                .query_map(duckdb::params_from_iter(args.iter()), row5)?
                .collect::<duckdb::Result<_>>()?;
            Ok((clicks, convs))
        })?;
        let dict = self.dict.read();
        let mut out: BTreeMap<(u32, String), SourceCounts> = BTreeMap::new();
        fn entry(out: &mut BTreeMap<(u32, String), SourceCounts>, aff: i64, sub: String) -> &mut SourceCounts {
            out.entry((aff as u32, sub.clone())).or_insert_with(|| SourceCounts {
                affiliate: aff as u32,
                sub,
                ..Default::default()
            })
        }
        for (aff, sub, class, reasons, n) in clicks {
            let e = entry(&mut out, aff, sub);
            let n = n as u64;
            e.clicks += n;
            let class = dict.value(class);
            let i = CLASSES.iter().position(|c| *c == class).unwrap_or(0);
            e.classes[i] += n;
            for code in reasons.split(',').filter(|c| !c.is_empty()) {
                *e.reasons.entry(code.to_string()).or_default() += n;
            }
        }
        for (aff, sub, status, flags, ctit) in convs {
            let e = entry(&mut out, aff, sub);
            e.conversions += 1;
            match status {
                1 => e.approved += 1,
                2 => e.rejected += 1,
                3 => e.chargebacks += 1,
                _ => {}
            }
            e.short_ctit += flags.split(',').any(|f| f == "short_ctit") as u64;
            e.bot_click_conversions += flags.split(',').any(|f| f == "bot_click") as u64;
            e.ctit_secs.push(ctit);
        }
        Ok(out.into_values().collect())
    }

    /// [`smartlink_store::QualityStore::audit_clicks`].
    pub fn audit_clicks(&self, smartlink: u32, from_ms: i64, to_ms: i64) -> Result<Vec<AuditClickRow>> {
        let classes = self.class_filter("k.quality", &["human", "suspect"]);
        let sql = format!(
            "SELECT k.country::BIGINT, k.device::BIGINT, k.os::BIGINT, k.offer::BIGINT, k.propensity,
               COALESCE(c.payout, 0)::BIGINT, (k.cost + COALESCE(c.cost, 0))::BIGINT
             FROM clicks k LEFT JOIN (
               SELECT click_rid, SUM(payout) AS payout, SUM(cost) AS cost FROM conversions
               WHERE status = {APPROVED} AND click_rid IS NOT NULL AND click_ts_ms >= ?2 AND click_ts_ms < ?3
               GROUP BY click_rid) c ON c.click_rid = k.rid
             WHERE k.smartlink = ?1 AND k.ts_ms >= ?2 AND k.ts_ms < ?3 AND {classes}
             ORDER BY k.rid"
        );
        type Raw = (i64, i64, i64, i64, f64, i64, i64);
        let rows: Vec<Raw> = self.read(|c| {
            c.prepare(&sql)?
                .query_map(duckdb::params![smartlink as i64, from_ms, to_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })?
                .collect::<duckdb::Result<_>>()
        })?;
        let dict = self.dict.read();
        Ok(rows
            .into_iter()
            .map(|(country, device, os, offer, propensity, revenue, cost)| AuditClickRow {
                country: dict.value(country),
                device: dict.value(device),
                os: dict.value(os),
                offer: (offer != 0).then_some(offer as u32),
                propensity,
                revenue: micros_f64(revenue),
                cost: micros_f64(cost),
            })
            .collect())
    }

    /// [`smartlink_store::QualityStore::fallback_segments`].
    pub fn fallback_segments(
        &self,
        smartlink: u32,
        from_ms: i64,
        to_ms: i64,
        classes: &[&str],
    ) -> Result<Vec<(String, String, String, u64)>> {
        let classes = self.class_filter("quality", classes);
        let sql = format!(
            "SELECT country::BIGINT, device::BIGINT, fallback_reason::BIGINT, COUNT(*)::BIGINT FROM clicks
             WHERE smartlink = ? AND ts_ms >= ? AND ts_ms < ? AND {classes} GROUP BY 1, 2, 3"
        );
        let rows: Vec<(i64, i64, i64, i64)> = self.read(|c| {
            c.prepare(&sql)?
                .query_map(duckdb::params![smartlink as i64, from_ms, to_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<duckdb::Result<_>>()
        })?;
        let dict = self.dict.read();
        Ok(rows.into_iter().map(|(c, d, f, n)| (dict.value(c), dict.value(d), dict.value(f), n as u64)).collect())
    }

    /// `col` is one of the quality classes (nothing when none is known).
    fn class_filter(&self, col: &str, classes: &[&str]) -> String {
        let dict = self.dict.read();
        int_in(col, classes.iter().filter_map(|c| dict.code(c)).map(i64::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::int_in;

    #[test]
    fn integer_filters_are_written_as_equality_range_mask_or_in() {
        assert_eq!(int_in("q", vec![]), "FALSE");
        assert_eq!(int_in("q", vec![3, 3]), "q = 3");
        assert_eq!(int_in("q", vec![1, 0]), "q BETWEEN 0 AND 1");
        assert_eq!(int_in("q", vec![5, 31]), "((1::UBIGINT << q) & 2147483680::UBIGINT) <> 0");
        assert_eq!(int_in("q", vec![70, 2]), "q IN (2, 70)");
    }
}
