//! The click log (`GET /api/v1/clicks`, `smartlink clicks`): raw clicks,
//! newest first, with the report's filters, a time window and an exact
//! cursor; and one click with its routing decision.
//!
//! Pages follow the store's (`ts_ms`, `click_id`) order from the newest
//! click down. A cursor is the key of the last row of a page, so the next
//! page starts strictly below it: every click is listed once, and clicks
//! that arrive while a client pages through are newer than page one and
//! land before it, never in a later page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use smartlink_store::{quality_class, ClickQuery, ClickRow, Kind, Store};

use crate::names::Names;
use crate::report::{parse_filters, parse_time, ReportError};

/// Page size when none is asked for, and the largest allowed.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// A click-log request, as parsed from query parameters or CLI flags.
#[derive(Clone, Debug, Default)]
pub struct ClickLogRequest {
    /// Clicks at or after / before these times ([`parse_time`]'s forms);
    /// unbounded when absent.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Timezone of dates and local times in `from`/`to` (default UTC).
    pub tz: Option<String>,
    /// Report filters (name → comma-separated values), see
    /// [`crate::report::FILTERS`].
    pub filters: Vec<(String, String)>,
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One output field of a click: its name and how it is read from the row.
type Field = (&'static str, fn(&ClickRow, &Names) -> Value);

/// Every field of a click as the API (JSON and CSV) and the CLI show it,
/// in CSV column order. A new `ClickRow` field is one line here.
pub const CLICK_FIELDS: &[Field] = &[
    ("click_id", |c, _| c.click_id.clone().into()),
    ("time_ms", |c, _| c.ts_ms.into()),
    ("time", |c, _| {
        chrono::DateTime::from_timestamp_millis(c.ts_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .into()
    }),
    ("smartlink", |c, n| n.get(Kind::Smartlink, c.smartlink).into()),
    ("source", |c, n| c.source.map(|s| n.get(Kind::Source, s)).into()),
    ("offer", |c, n| c.offer.map(|o| n.get(Kind::Offer, o)).into()),
    ("affiliate", |c, n| c.affiliate.map(|a| n.get(Kind::Affiliate, a)).into()),
    ("sub1", |c, _| c.subs[0].clone().into()),
    ("sub2", |c, _| c.subs[1].clone().into()),
    ("sub3", |c, _| c.subs[2].clone().into()),
    ("sub4", |c, _| c.subs[3].clone().into()),
    ("sub5", |c, _| c.subs[4].clone().into()),
    ("ip", |c, _| c.ip.clone().into()),
    ("country", |c, _| c.country.clone().into()),
    ("device", |c, _| c.device.clone().into()),
    ("os", |c, _| c.os.clone().into()),
    ("browser", |c, _| c.browser.clone().into()),
    ("language", |c, _| c.language.clone().into()),
    ("referrer", |c, _| c.referrer.clone().into()),
    ("user_agent", |c, _| c.user_agent.clone().into()),
    ("reason", |c, _| c.reason.clone().into()),
    ("fallback_reason", |c, _| c.fallback_reason.clone().into()),
    ("propensity", |c, _| c.propensity.into()),
    ("cost", |c, _| ((c.cost * 1e6).round() / 1e6).into()),
    ("quality", |c, _| quality_class(&c.quality).into()),
    ("quality_score", |c, _| c.quality_score.into()),
    ("quality_reasons", |c, _| reasons(c).into()),
];

/// Fields only the admin sees: an affiliate key never sees IPs.
const ADMIN_ONLY: [&str; 1] = ["ip"];

fn reasons(c: &ClickRow) -> Vec<String> {
    c.quality_reasons.split(',').filter(|r| !r.is_empty()).map(String::from).collect()
}

fn fields(show_ip: bool) -> impl Iterator<Item = &'static Field> {
    CLICK_FIELDS.iter().filter(move |(name, _)| show_ip || !ADMIN_ONLY.contains(name))
}

/// The click log's CSV columns (without `ip` for an affiliate).
pub fn columns(show_ip: bool) -> Vec<&'static str> {
    fields(show_ip).map(|(name, _)| *name).collect()
}

/// A click as the API shows it: ids, not numeric keys; `ip` only when
/// `show_ip` (the admin), absent otherwise.
pub fn click_json(c: &ClickRow, names: &Names, show_ip: bool) -> Value {
    Value::Object(fields(show_ip).map(|(name, get)| (name.to_string(), get(c, names))).collect::<Map<_, _>>())
}

/// Why the click went where it went.
pub fn decision_json(c: &ClickRow) -> Value {
    json!({
        "reason": c.reason,
        "fallback_reason": c.fallback_reason,
        "propensity": c.propensity,
        "quality": { "class": quality_class(&c.quality), "score": c.quality_score, "reasons": reasons(c) },
    })
}

/// The opaque cursor for the page after `c`.
pub fn cursor_of(c: &ClickRow) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", c.ts_ms, c.click_id))
}

/// The (`ts_ms`, `click_id`) key a cursor stands for.
pub fn parse_cursor(s: &str) -> Result<(i64, String), ReportError> {
    let fail = || ReportError::Bad {
        param: "cursor",
        message: format!("{s:?} is not a cursor: pass the next_cursor of the previous page as it is"),
    };
    let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| fail())?;
    let text = String::from_utf8(raw).map_err(|_| fail())?;
    let (ts, id) = text.split_once('.').ok_or_else(fail)?;
    let ts: i64 = ts.parse().map_err(|_| fail())?;
    let id_ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !id_ok {
        return Err(fail());
    }
    Ok((ts, id.to_string()))
}

/// One page of the click log: `{"clicks": [...], "next_cursor": ...}`,
/// `next_cursor` null on the last page.
pub fn log(store: &dyn Store, req: &ClickLogRequest, now_ms: i64, show_ip: bool) -> Result<Value, ReportError> {
    let bad = |param: &'static str, message: String| ReportError::Bad { param, message };
    let tz: chrono_tz::Tz = match &req.tz {
        None => chrono_tz::UTC,
        Some(z) => z.parse().map_err(|_| bad("tz", format!("expected an IANA timezone, got {z:?}")))?,
    };
    let from = req.from.as_deref().map(|s| parse_time(s, tz, now_ms, "from")).transpose()?;
    let to = req.to.as_deref().map(|s| parse_time(s, tz, now_ms, "to")).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            return Err(bad("to", "must be after from".into()));
        }
    }
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad("limit", format!("expected 1 to {MAX_LIMIT}, got {limit}")));
    }
    let before = req.cursor.as_deref().map(parse_cursor).transpose()?;
    let keys = store.keys()?;
    let (filters, reasons) = parse_filters(&keys, &req.filters)?;
    // One row more than the page tells whether another page follows.
    let q = ClickQuery { from_ms: from, to_ms: to, filters, reasons, before, limit: limit + 1 };
    let mut rows = store.click_log(&q)?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor_of)
    } else {
        None
    };
    let names = Names::from_keys(keys);
    Ok(json!({
        "clicks": rows.iter().map(|c| click_json(c, &names, show_ip)).collect::<Vec<_>>(),
        "next_cursor": next,
    }))
}

/// A page of the click log as CSV (the columns of [`columns`]).
pub fn csv(page: &Value, show_ip: bool) -> String {
    crate::export::objects(&columns(show_ip), page["clicks"].as_array().into_iter().flatten())
}

/// A page of the click log as a text table (the CLI's default format).
pub fn render(page: &Value) -> String {
    let cols = ["time", "smartlink", "offer", "affiliate", "country", "device", "os", "quality", "reason", "sub1"];
    let mut lines: Vec<Vec<String>> = vec![cols.iter().map(|c| c.to_string()).chain(["click_id".into()]).collect()];
    for c in page["clicks"].as_array().into_iter().flatten() {
        let mut l: Vec<String> = cols
            .iter()
            .map(|k| match &c[*k] {
                Value::Null => "-".to_string(),
                v => crate::export::cell(v).replace(['\n', '\r', '\t'], " "),
            })
            .collect();
        l.push(crate::export::cell(&c["click_id"]));
        lines.push(l);
    }
    let widths: Vec<usize> =
        (0..lines[0].len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    lines
        .iter()
        .map(|l| {
            l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartlink_store::SqliteStore;

    fn store_with(rows: &[ClickRow]) -> (tempfile::TempDir, SqliteStore) {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(d.path()).unwrap();
        s.insert_clicks(rows).unwrap();
        (d, s)
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused_naming_the_cursor() {
        let c = ClickRow { click_id: "AbC-_9".into(), ts_ms: 1_764_547_200_123, ..Default::default() };
        assert_eq!(parse_cursor(&cursor_of(&c)).unwrap(), (c.ts_ms, c.click_id.clone()));
        for bad in ["", "!!!", "bm90IGEgY3Vyc29y", &URL_SAFE_NO_PAD.encode("12.a b"), &URL_SAFE_NO_PAD.encode("x.abc")]
        {
            let e = parse_cursor(bad).unwrap_err().to_string();
            assert!(e.starts_with("cursor: "), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_log_pages_newest_first_and_the_last_page_has_no_cursor() {
        let rows: Vec<ClickRow> =
            (0..5).map(|i| ClickRow { click_id: format!("c{i}"), ts_ms: 1_000 * i, ..Default::default() }).collect();
        let (_d, s) = store_with(&rows);
        let mut req = ClickLogRequest { limit: Some(2), ..Default::default() };
        let mut ids = Vec::new();
        let mut pages = 0;
        loop {
            let page = log(&s, &req, 10_000, true).unwrap();
            pages += 1;
            ids.extend(page["clicks"].as_array().unwrap().iter().map(|c| c["click_id"].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(c) => req.cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(ids, ["c4", "c3", "c2", "c1", "c0"]);
        assert_eq!(pages, 3);
        req = ClickLogRequest { limit: Some(5), ..Default::default() };
        assert_eq!(log(&s, &req, 10_000, true).unwrap()["next_cursor"], Value::Null, "exactly one full page");
        for (limit, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
            let r = log(&s, &ClickLogRequest { limit: Some(limit), ..Default::default() }, 10_000, true);
            assert_eq!(r.is_ok(), ok, "limit {limit}");
        }
    }

    #[test]
    fn an_affiliate_view_of_a_click_has_no_ip_field_at_all() {
        let c =
            ClickRow { click_id: "x".into(), ip: "203.0.113.9".into(), user_agent: "UA".into(), ..Default::default() };
        let names = Names::from_keys(vec![]);
        let admin = click_json(&c, &names, true);
        let aff = click_json(&c, &names, false);
        assert_eq!(admin["ip"], "203.0.113.9");
        assert!(aff.get("ip").is_none(), "{aff}");
        assert_eq!(aff["user_agent"], "UA");
        assert!(!columns(false).contains(&"ip"));
        assert_eq!(columns(true).len(), CLICK_FIELDS.len());
    }

    #[test]
    fn click_log_csv_round_trips_sub_ids_with_commas_quotes_and_line_breaks() {
        let nasty = ["a,b", "say \"hi\"", "two\nlines", "x\r\ny"];
        let rows: Vec<ClickRow> = nasty
            .iter()
            .enumerate()
            .map(|(i, v)| ClickRow {
                click_id: format!("c{i}"),
                ts_ms: 1_000 * i as i64,
                subs: [v.to_string(), "s2".into(), String::new(), String::new(), "x,\"y\"\nz".into()],
                user_agent: "Mozilla/5.0 (X11, Linux)".into(),
                ..Default::default()
            })
            .collect();
        let (_d, s) = store_with(&rows);
        let page = log(&s, &ClickLogRequest::default(), 10_000, false).unwrap();
        let out = csv(&page, false);
        let mut r = csv::Reader::from_reader(out.as_bytes());
        let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, columns(false));
        let sub1 = header.iter().position(|h| h == "sub1").unwrap();
        let sub5 = header.iter().position(|h| h == "sub5").unwrap();
        let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        let back: Vec<&str> = recs.iter().map(|rec| &rec[sub1]).collect();
        assert_eq!(back, nasty.iter().rev().copied().collect::<Vec<_>>());
        assert!(recs.iter().all(|rec| &rec[sub5] == "x,\"y\"\nz" && rec.len() == header.len()));
    }
}
