//! The analytics queries over the fact tables: one SQL statement per table
//! (clicks, then conversions counted under their click), merged by key.

use std::collections::BTreeMap;

use duckdb::arrow::array::{Array, Int64Array, StringArray};
use duckdb::types::Value;
use smartlink_store::{
    AuditClickRow, Dim, DimValue, Measures, Result, RollupQuery, SourceCounts, SourceQuery, StoreError, Zone,
};

use super::{click_table, Columnar, Dict, APPROVED};

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

/// A dimension as an expression over a fact table whose time column is `ts`,
/// for a query over `window` (local time needs the zone's offsets there).
fn expr(d: Dim, ts: &str, window: (i64, i64)) -> String {
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
        // Grouped first by the stored list (a few dozen distinct lists),
        // split into codes on the grouped rows: see [`by_reason`].
        Dim::Reason => "reasons".into(),
        Dim::Hour => format!("({ts} // {HOUR_MS}) * {HOUR_MS}"),
        Dim::Day => format!("({ts} // {DAY_MS}) * {DAY_MS}"),
        Dim::HourOfDay(z) => format!("({}) // {HOUR_MS} % 24", local_ms(z, ts, window)),
        // Day 0 (1970-01-01) was a Thursday: 3 with Monday as 0.
        Dim::Weekday(z) => format!("(({}) // {DAY_MS} + 3) % 7", local_ms(z, ts, window)),
    }
}

/// The local time of the start of the UTC hour `ts` is in, as epoch ms
/// shifted by the zone's offset then (a `CASE` over the offset's changes in
/// the window: one or two in a month). With whole-hour offsets the hour's
/// start is left out: shifting `ts` itself lands in the same local hour.
fn local_ms(z: Zone, ts: &str, (from, to): (i64, i64)) -> String {
    let offsets = z.offsets(from, to);
    let whole = offsets.iter().all(|(_, o)| o % HOUR_MS == 0);
    let base = if whole { ts.to_string() } else { format!("({ts} // {HOUR_MS}) * {HOUR_MS}") };
    match &offsets[..] {
        [] => base,
        [(_, o)] => format!("{base} + {o}"),
        [(_, first), rest @ ..] => {
            let mut case = String::from("CASE");
            let mut prev = *first;
            for (at, o) in rest {
                case.push_str(&format!(" WHEN {ts} < {at} THEN {prev}"));
                prev = *o;
            }
            format!("{base} + {case} ELSE {prev} END")
        }
    }
}

/// A group key column of a result batch.
enum KeyColumn {
    Int(Int64Array),
    Text(StringArray),
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
        let col = expr(*d, ts, (q.from_ms, q.to_ms));
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

/// `SELECT {outer} FROM (SELECT {inner}, measures ... GROUP BY ...)`:
/// groups on the stored (narrow) columns, casts the few result rows. Keys
/// are named `g0`, `g1`, …; measures `{prefix}0`, `{prefix}1`, ….
///
/// Hours and days are grouped by their UTC number and scaled back to epoch
/// ms on the grouped rows (a multiplication per row cost ~7 ms a 10 M
/// scan). Weekdays are grouped by local day number (a month is ~31) and
/// turned into weekdays on the grouped rows, adding up the days that fall
/// on each: a modulo on every fact row cost more (weekday × language 151 →
/// 141 ms at 10 M clicks, docs/benchmarks.md). Hours of the day stay a
/// per-row expression: grouping by UTC hour (720 a month × the other keys)
/// was slower.
fn grouped(group: &[Dim], ts: &str, window: (i64, i64), prefix: &str, measures: &[&str], from_where: &str) -> String {
    let inner: Vec<String> = group
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Hour => format!("{ts} // {HOUR_MS} AS g{i}"),
            Dim::Day => format!("{ts} // {DAY_MS} AS g{i}"),
            Dim::Weekday(z) => format!("({}) // {DAY_MS} AS g{i}", local_ms(*z, ts, window)),
            d => format!("{} AS g{i}", expr(*d, ts, window)),
        })
        .collect();
    let local = group.iter().any(|d| matches!(d, Dim::Weekday(_)));
    let keys: Vec<String> = group
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            _ if textual(*d) => format!("g{i}"),
            Dim::Hour => format!("(g{i} * {HOUR_MS})::BIGINT AS g{i}"),
            Dim::Day => format!("(g{i} * {DAY_MS})::BIGINT AS g{i}"),
            // Day 0 (1970-01-01) was a Thursday: 3 with Monday as 0.
            Dim::Weekday(_) => format!("((g{i} + 3) % 7)::BIGINT AS g{i}"),
            _ => format!("g{i}::BIGINT AS g{i}"),
        })
        .collect();
    let outer: Vec<String> = keys
        .into_iter()
        .chain((0..measures.len()).map(|i| {
            if local {
                format!("SUM({prefix}{i})::BIGINT AS {prefix}{i}")
            } else {
                format!("{prefix}{i}::BIGINT AS {prefix}{i}")
            }
        }))
        .collect();
    let inner_cols: Vec<String> =
        inner.into_iter().chain(measures.iter().enumerate().map(|(i, m)| format!("{m} AS {prefix}{i}"))).collect();
    let positions = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let by = if group.is_empty() { String::new() } else { format!(" GROUP BY {}", positions(group.len())) };
    let regroup = if local { format!(" GROUP BY {}", positions(group.len())) } else { String::new() };
    format!("SELECT {} FROM (SELECT {} {from_where}{by}){regroup}", outer.join(", "), inner_cols.join(", "))
}

/// Grouped by quality reason, a fact row counts once under each code of its
/// list (`''` is one empty code). `sql` grouped by the stored list; this
/// splits each grouped row's list and adds the rows up again by code: the
/// split runs on a few hundred grouped rows instead of every fact row
/// (unnesting 10 M rows was half of the breakdown's time, docs/benchmarks.md).
/// Exact, as every measure is a count or a sum.
fn by_reason(group: &[Dim], prefix: &str, measures: usize, sql: String) -> String {
    let Some(at) = group.iter().position(|d| *d == Dim::Reason) else {
        return sql;
    };
    // Every reason column of the grouping is the one code (as a grouping
    // `[reason, offer, reason]` over unnested rows would be).
    let split: Vec<String> = (0..group.len())
        .filter(|i| *i == at || group[*i] != Dim::Reason)
        .map(|i| if i == at { format!("unnest(string_split(g{i}, ',')) AS g{i}") } else { format!("g{i}") })
        .chain((0..measures).map(|i| format!("{prefix}{i}")))
        .collect();
    let keys: Vec<String> = (0..group.len())
        .map(|i| if group[i] == Dim::Reason { format!("g{at} AS g{i}") } else { format!("g{i}") })
        .collect();
    let sums = (0..measures).map(|i| format!("SUM({prefix}{i})::BIGINT AS {prefix}{i}"));
    format!(
        "SELECT {}, {} FROM (SELECT {} FROM ({sql})) GROUP BY {}",
        keys.join(", "),
        sums.collect::<Vec<_>>().join(", "),
        split.join(", "),
        (1..=group.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    )
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
        let facts = |table: &str, wh: &str| format!("FROM {table} WHERE {wh}");
        let dict = self.dict.read();
        // The click tables that can hold the classes the filters let through.
        let classes = q.filters.iter().filter(|(d, _)| *d == Dim::Quality).fold(None::<Vec<u32>>, |acc, (_, vs)| {
            let codes: Vec<u32> = vs
                .iter()
                .filter_map(|v| match v {
                    DimValue::Text(t) => dict.code(t),
                    _ => None,
                })
                .collect();
            Some(match acc {
                Some(a) => a.into_iter().filter(|c| codes.contains(c)).collect(),
                None => codes,
            })
        });
        let clicks = format!("{} AS clicks", click_table(classes.as_deref()));
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
        let window = (q.from_ms, q.to_ms);
        let csql = grouped(
            &q.group,
            "ts_ms",
            window,
            "m",
            &["COUNT(*)", "COUNT(*) FILTER (WHERE offer = 0)", "COALESCE(SUM(cost), 0)"],
            &facts(&clicks, &cwhere),
        );
        let csql = by_reason(&q.group, "m", 3, csql);
        let approved = format!("status = {APPROVED}");
        let vsql = grouped(
            &q.group,
            "click_ts_ms",
            window,
            "n",
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
        let vsql = by_reason(&q.group, "n", 6, vsql);
        // One statement: both aggregates, joined on the group key (every
        // key column is NOT NULL, so `USING` pairs each key once), so each
        // result row is one group and nothing is merged here.
        let n = q.group.len();
        let measures =
            ["m0", "m1", "m2", "n0", "n1", "n2", "n3", "n4", "n5"].map(|m| format!("COALESCE({m}, 0)")).join(", ");
        let sql = if n == 0 {
            format!("WITH k AS ({csql}), v AS ({vsql}) SELECT {measures} FROM k, v")
        } else {
            let keys = (0..n).map(|i| format!("g{i}")).collect::<Vec<_>>().join(", ");
            format!("WITH k AS ({csql}), v AS ({vsql}) SELECT {keys}, {measures} FROM k FULL JOIN v USING ({keys})")
        };
        let args: Vec<Value> = cargs.into_iter().chain(vargs).collect();
        // Read as Arrow batches (a column at a time): row-by-row access
        // cost ~2 µs a group, a tenth of a 10 M-click breakdown's time at
        // 10,000 groups.
        let rows: Vec<(Vec<Part>, [i64; 9])> = self.read(|c| {
            // Cached: planning the statement is ~3 ms of a breakdown, and a
            // dashboard asks for the same ones again (the window is a
            // parameter; zones' offsets are in the text).
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = Vec::new();
            for batch in st.query_arrow(duckdb::params_from_iter(args.iter()))? {
                let ints = |i: usize| batch.column(i).as_any().downcast_ref::<Int64Array>().cloned();
                let keys: Vec<KeyColumn> = (0..n)
                    .map(|i| match ints(i) {
                        Some(a) => Ok(KeyColumn::Int(a)),
                        None => batch
                            .column(i)
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .map(|a| KeyColumn::Text(a.clone()))
                            .ok_or_else(|| {
                                duckdb::Error::InvalidColumnType(i, format!("g{i}"), duckdb::types::Type::Any)
                            }),
                    })
                    .collect::<duckdb::Result<_>>()?;
                let measures: Vec<Int64Array> = (n..n + 9)
                    .map(|i| {
                        ints(i).ok_or_else(|| {
                            duckdb::Error::InvalidColumnType(i, format!("m{i}"), duckdb::types::Type::BigInt)
                        })
                    })
                    .collect::<duckdb::Result<_>>()?;
                for r in 0..batch.num_rows() {
                    let key = keys
                        .iter()
                        .map(|k| match k {
                            KeyColumn::Int(a) => Part::Int(a.value(r)),
                            KeyColumn::Text(a) => Part::Text(a.value(r).to_string()),
                        })
                        .collect();
                    rows.push((key, std::array::from_fn(|m| measures[m].value(r))));
                }
            }
            Ok(rows)
        })?;
        let dict = self.dict.read();
        let out = rows
            .into_iter()
            .map(|(k, [clicks, fallback, click_cost, approved, pending, rejected, chargebacks, revenue, cpa_cost])| {
                let m = Measures {
                    clicks: clicks as u64,
                    fallback_clicks: fallback as u64,
                    approved: approved as u64,
                    pending: pending as u64,
                    rejected: rejected as u64,
                    chargebacks: chargebacks as u64,
                    // Money summed as integers (micros) per group, converted once.
                    revenue: micros_f64(revenue),
                    cost: micros_f64(click_cost + cpa_cost),
                };
                (q.group.iter().zip(&k).map(|(d, p)| decode(*d, p, &dict)).collect(), m)
            })
            .collect();
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
            "SELECT {owner}::BIGINT, {sub}, quality::BIGINT, reasons, COUNT(*)::BIGINT FROM {} AS clicks
             WHERE smartlink = ? AND ts_ms >= ? AND ts_ms < ? GROUP BY 1, 2, 3, 4",
            click_table(None)
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
        let (classes, table) = self.class_filter("k.quality", &["human", "suspect"]);
        let sql = format!(
            "SELECT k.country::BIGINT, k.device::BIGINT, k.os::BIGINT, k.offer::BIGINT, k.propensity,
               COALESCE(c.payout, 0)::BIGINT, (k.cost + COALESCE(c.cost, 0))::BIGINT
             FROM {table} k LEFT JOIN (
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
        let (classes, table) = self.class_filter("quality", classes);
        let sql = format!(
            "SELECT country::BIGINT, device::BIGINT, fallback_reason::BIGINT, COUNT(*)::BIGINT FROM {table}
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

    /// `col` is one of the quality classes (nothing when none is known),
    /// and the click table(s) holding them.
    fn class_filter(&self, col: &str, classes: &[&str]) -> (String, &'static str) {
        let dict = self.dict.read();
        let codes: Vec<u32> = classes.iter().filter_map(|c| dict.code(c)).collect();
        (int_in(col, codes.iter().copied().map(i64::from).collect()), click_table(Some(&codes)))
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
