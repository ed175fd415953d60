//! The per-source quality report: each affiliate's (or sub-id's) clicks by
//! quality class and reason, and the flagging rule (a source whose bot or
//! suspect share is significantly above the smartlink's).

/// A quality report request (`GET /api/v1/quality`, `smartlink quality`).
#[derive(Clone, Debug, Default)]
pub struct QualityRequest {
    pub smartlink: String,
    /// `7d`, `24h`, `today`, ... (the report's `from` syntax). Default 7d.
    pub period: Option<String>,
    /// `affiliate` (default), `source` (the traffic sources), or
    /// `sub1`..`sub5`: split each affiliate's traffic by this sub-id.
    pub by: Option<String>,
}

/// Sources need this many clicks (conversions, for conversion signals)
/// before they are compared with the rest of the smartlink.
pub const MIN_CLICKS: u64 = 50;
pub const MIN_CONVERSIONS: u64 = 10;
/// A share must sit this many standard errors above the rest's...
const Z: f64 = 3.0;
/// ...and exceed it by this much, to flag the source.
const MIN_EXCESS: f64 = 0.05;

/// CTIT buckets of the report: upper bounds in seconds.
const CTIT_BUCKETS: [(&str, i64); 6] =
    [("<10s", 10), ("10s-1m", 60), ("1m-10m", 600), ("10m-1h", 3600), ("1h-1d", 86_400), (">1d", i64::MAX)];

/// Two-proportion z statistic of `k1/n1` against `k0/n0`.
fn z_score(k1: u64, n1: u64, k0: u64, n0: u64) -> f64 {
    if n1 == 0 || n0 == 0 {
        return 0.0;
    }
    let (p1, p0) = (k1 as f64 / n1 as f64, k0 as f64 / n0 as f64);
    let p = (k1 + k0) as f64 / (n1 + n0) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n0 as f64)).sqrt();
    if se == 0.0 {
        return 0.0;
    }
    (p1 - p0) / se
}

/// Builds the per-source quality table of one smartlink.
pub fn report(
    store: &dyn smartlink_store::Store,
    req: &QualityRequest,
    now_ms: i64,
) -> Result<serde_json::Value, crate::report::ReportError> {
    use serde_json::json;
    use smartlink_store::{Kind, SourceCounts, SourceQuery};
    let bad = |param: &'static str, message: String| crate::report::ReportError::Bad { param, message };
    let keys = store.keys()?;
    let smartlink = keys
        .iter()
        .find(|(k, id, _)| *k == Kind::Smartlink && *id == req.smartlink)
        .map(|(_, _, key)| *key)
        .ok_or_else(|| bad("smartlink", format!("unknown smartlink {:?}", req.smartlink)))?;
    let period = req.period.as_deref().unwrap_or("7d");
    let from = crate::report::parse_time(period, chrono_tz::UTC, now_ms, "period")?;
    let by_source = req.by.as_deref() == Some("source");
    let sub = match req.by.as_deref() {
        None | Some("") | Some("affiliate") | Some("source") => None,
        Some(s) => match s.strip_prefix("sub").and_then(|n| n.parse::<u8>().ok()) {
            Some(n @ 1..=5) => Some(n),
            _ => return Err(bad("by", format!("expected affiliate, source or sub1..sub5, got {s:?}"))),
        },
    };
    let sources = store.source_counts(&SourceQuery { smartlink, from_ms: from, to_ms: now_ms + 1, sub, by_source })?;
    let mut total = SourceCounts::default();
    for s in &sources {
        total.clicks += s.clicks;
        for i in 0..4 {
            total.classes[i] += s.classes[i];
        }
        total.conversions += s.conversions;
        total.rejected += s.rejected;
        total.chargebacks += s.chargebacks;
        total.short_ctit += s.short_ctit;
    }
    let name_of =
        |kind: Kind, key: u32| keys.iter().find(|(k, _, v)| *k == kind && *v == key).map(|(_, id, _)| id.clone());
    let affiliate_name = |key: u32| if by_source { None } else { name_of(Kind::Affiliate, key) };
    let ratio = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let mut rows = Vec::new();
    for s in &sources {
        let bots = s.classes[2] + s.classes[3];
        // Each signal: (name, this source's k and n, the rest's k and n, enough data).
        let signals = [
            (
                "bot_share",
                bots,
                s.clicks,
                total.classes[2] + total.classes[3] - bots,
                total.clicks - s.clicks,
                s.clicks >= MIN_CLICKS,
            ),
            (
                "suspect_share",
                s.classes[1],
                s.clicks,
                total.classes[1] - s.classes[1],
                total.clicks - s.clicks,
                s.clicks >= MIN_CLICKS,
            ),
            (
                "rejection_rate",
                s.rejected,
                s.conversions,
                total.rejected - s.rejected,
                total.conversions - s.conversions,
                s.conversions >= MIN_CONVERSIONS,
            ),
            (
                "chargeback_rate",
                s.chargebacks,
                s.conversions,
                total.chargebacks - s.chargebacks,
                total.conversions - s.conversions,
                s.conversions >= MIN_CONVERSIONS,
            ),
            (
                "short_ctit_share",
                s.short_ctit,
                s.conversions,
                total.short_ctit - s.short_ctit,
                total.conversions - s.conversions,
                s.conversions >= MIN_CONVERSIONS,
            ),
        ];
        let mut flags = Vec::new();
        for (name, k1, n1, k0, n0, enough) in signals {
            if !enough {
                continue;
            }
            let (p1, p0) = (ratio(k1, n1), ratio(k0, n0));
            let z = z_score(k1, n1, k0, n0);
            if z >= Z && p1 - p0 >= MIN_EXCESS {
                flags.push(json!({ "signal": name, "value": round(p1), "rest": round(p0), "z": round(z) }));
            }
        }
        let mut ctit = serde_json::Map::new();
        for (i, (label, hi)) in CTIT_BUCKETS.iter().enumerate() {
            let lo = if i == 0 { i64::MIN } else { CTIT_BUCKETS[i - 1].1 };
            ctit.insert(label.to_string(), s.ctit_secs.iter().filter(|&&t| t >= lo && t < *hi).count().into());
        }
        let mut sorted = s.ctit_secs.clone();
        sorted.sort_unstable();
        let median_ctit = sorted.get(sorted.len() / 2).copied();
        rows.push(json!({
            "affiliate": affiliate_name(s.affiliate),
            "source": if by_source { json!(name_of(Kind::Source, s.affiliate)) } else { serde_json::Value::Null },
            "sub": if sub.is_some() { json!(s.sub) } else { serde_json::Value::Null },
            "clicks": s.clicks,
            "human": s.classes[0],
            "suspect": s.classes[1],
            "bot": s.classes[2],
            "preview": s.classes[3],
            "bot_share": round(ratio(bots, s.clicks)),
            "suspect_share": round(ratio(s.classes[1], s.clicks)),
            "reasons": s.reasons,
            "conversions": s.conversions,
            "approved": s.approved,
            "rejected": s.rejected,
            "chargebacks": s.chargebacks,
            "rejection_rate": round(ratio(s.rejected, s.conversions)),
            "chargeback_rate": round(ratio(s.chargebacks, s.conversions)),
            "short_ctit": s.short_ctit,
            "bot_click_conversions": s.bot_click_conversions,
            "ctit": ctit,
            "median_ctit_secs": median_ctit,
            "flagged": !flags.is_empty(),
            "flags": flags,
        }));
    }
    rows.sort_by(|a, b| {
        (b["flagged"].as_bool(), b["clicks"].as_u64()).cmp(&(a["flagged"].as_bool(), a["clicks"].as_u64()))
    });
    Ok(json!({
        "smartlink": req.smartlink,
        "from": from,
        "to": now_ms,
        "by": req.by.clone().unwrap_or_else(|| "affiliate".into()),
        "min_clicks": MIN_CLICKS,
        "min_conversions": MIN_CONVERSIONS,
        "totals": {
            "clicks": total.clicks,
            "bot_share": round(ratio(total.classes[2] + total.classes[3], total.clicks)),
            "suspect_share": round(ratio(total.classes[1], total.clicks)),
            "conversions": total.conversions,
            "rejection_rate": round(ratio(total.rejected, total.conversions)),
            "chargeback_rate": round(ratio(total.chargebacks, total.conversions)),
        },
        "sources": rows,
    }))
}

fn round(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// A source row's flags in words: `bot_share 42.0% vs 3.1%` each.
pub fn flag_texts(row: &serde_json::Value) -> Vec<String> {
    row["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{} {:.1}% vs {:.1}%",
                f["signal"].as_str().unwrap_or(""),
                f["value"].as_f64().unwrap_or(0.0) * 100.0,
                f["rest"].as_f64().unwrap_or(0.0) * 100.0
            )
        })
        .collect()
}

/// The quality table as text (the CLI's default format).
pub fn render(report: &serde_json::Value) -> String {
    let mut lines = vec![vec![
        "affiliate".to_string(),
        "sub".into(),
        "clicks".into(),
        "bot%".into(),
        "suspect%".into(),
        "conv".into(),
        "reject%".into(),
        "chargeback%".into(),
        "ctit_med_s".into(),
        "short_ctit".into(),
        "flags".into(),
    ]];
    let pct = |v: &serde_json::Value| format!("{:.1}", v.as_f64().unwrap_or(0.0) * 100.0);
    for r in report["sources"].as_array().into_iter().flatten() {
        let flags = flag_texts(r);
        lines.push(vec![
            r["affiliate"].as_str().unwrap_or("-").to_string(),
            r["sub"].as_str().unwrap_or("-").to_string(),
            r["clicks"].to_string(),
            pct(&r["bot_share"]),
            pct(&r["suspect_share"]),
            r["conversions"].to_string(),
            pct(&r["rejection_rate"]),
            pct(&r["chargeback_rate"]),
            r["median_ctit_secs"].as_i64().map_or("-".into(), |v| v.to_string()),
            r["short_ctit"].to_string(),
            if flags.is_empty() { "-".into() } else { flags.join("; ") },
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len()).map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
    lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| if i == l.len() - 1 { c.clone() } else { format!("{c:>w$}") })
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The sources as CSV (the API's `format=csv`): one row per source, its
/// reason counts as `code=n` pairs and its flags as `signal value vs rest`,
/// each list joined with `; `.
pub fn csv(report: &serde_json::Value) -> String {
    const COLUMNS: [&str; 20] = [
        "affiliate",
        "sub",
        "clicks",
        "human",
        "suspect",
        "bot",
        "preview",
        "bot_share",
        "suspect_share",
        "conversions",
        "approved",
        "rejected",
        "chargebacks",
        "rejection_rate",
        "chargeback_rate",
        "short_ctit",
        "bot_click_conversions",
        "median_ctit_secs",
        "flagged",
        "flags",
    ];
    let records = report["sources"].as_array().into_iter().flatten().map(|r| {
        let mut rec: Vec<String> = COLUMNS[..COLUMNS.len() - 1].iter().map(|c| crate::export::cell(&r[*c])).collect();
        let flags: Vec<String> = r["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| format!("{} {} vs {}", crate::export::cell(&f["signal"]), f["value"], f["rest"]))
            .collect();
        rec.push(flags.join("; "));
        let reasons: Vec<String> =
            r["reasons"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
        rec.push(reasons.join("; "));
        rec
    });
    crate::export::csv(COLUMNS.iter().chain(&["reasons"]), records)
}
