//! Fills a store with realistic traffic through the normal write path, loads
//! it into the columnar analytics store, and times grouped reports over both
//! paths: the transactional store's (hourly rollups and raw rows) and the
//! columnar store's.
//!
//! `cargo run --release -p smartlink-analysis --example report_load -- [clicks] [days] [dir]`
//! (default 10,000,000 clicks over 30 days in a temporary directory; pass a
//! directory to keep the store and re-time it without refilling).
//! `RUNS=n` takes the median of n runs (default 5), `CASES=a,b` times only
//! the breakdowns whose names contain one of these.
//! `OLD_PATH=0` skips the transactional path (seconds per query at 10 M).
//! `SYNTH=1` writes the facts straight into the columnar file with SQL
//! (same definitions, same distributions, no transactional rows): the
//! 100 M-click measurement, where filling SQLite through the write path
//! would take an hour and 25 GB; only the columnar path is timed then.
//! `STORE=postgres://…/db` fills that (empty) PostgreSQL database instead
//! of SQLite in `dir` (the columnar file stays in `dir`, loaded from
//! PostgreSQL's feed, as on a node of a shared store): the old path is then
//! PostgreSQL's rollups and raw rows.

use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use smartlink_analysis::report::{run, ReportRequest};
use smartlink_columnar::{Analyzed, Options};
use smartlink_store::{Change, ClickRow, ConvStatus, Kind, PostbackIn, SqliteStore, Store, TxStore};

fn zipf(rng: &mut impl Rng, n: usize) -> usize {
    // Inverse-CDF of a truncated 1/k distribution: a few values dominate.
    let h: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
    let mut x = rng.random::<f64>() * h;
    for k in 1..=n {
        x -= 1.0 / k as f64;
        if x <= 0.0 {
            return k - 1;
        }
    }
    n - 1
}

/// A timed breakdown: name, group_by, filters, sort, limit, exact window.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(String, String)>, Option<&'a str>, Option<usize>, Option<(i64, i64)>);

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0)
}

fn file_mib(p: &std::path::Path) -> f64 {
    ["", "-wal", ".wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", p.display())).ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / (1 << 20) as f64
}

/// Equal JSON, numbers within one unit of their 6th decimal.
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            (x - y).abs() <= 1.01e-6 * x.abs().max(1.0)
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Object(x), Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w))),
        _ => a == b,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let clicks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let days: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("report_load_{}", std::process::id())));
    let synth = std::env::var("SYNTH").is_ok_and(|v| v == "1");
    let old_path = !synth && std::env::var("OLD_PATH").map_or(true, |v| v != "0");
    let store: Arc<dyn TxStore> = match std::env::var("STORE").ok().filter(|s| !s.is_empty()) {
        Some(url) => {
            assert!(!synth, "SYNTH=1 writes no transactional rows: it needs no STORE");
            Arc::new(smartlink_store::PgStore::connect(&url).expect("open PostgreSQL"))
        }
        None => Arc::new(SqliteStore::open_dir(&dir).expect("open store")),
    };
    let now = match store.meta("report_load_now").unwrap() {
        Some(t) => t.parse().unwrap(),
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
    };
    if store.meta("report_load_now").unwrap().is_none() {
        if synth {
            definitions(&*store);
            synthesize(&dir, clicks, days, now);
        } else {
            fill(&*store, clicks, days, now);
        }
        store.set_meta("report_load_now", &now.to_string()).unwrap();
    }
    let n = if synth { clicks as u64 } else { store.count_clicks().unwrap() };
    println!("store: {n} clicks in {}", dir.display());
    let analyzed =
        Analyzed::open(store.clone(), &dir, Options { retention_days: 0, ..Default::default() }).expect("analytics");
    let t = Instant::now();
    let loaded = analyzed.load().expect("load");
    let secs = t.elapsed().as_secs_f64();
    if loaded.clicks > 0 {
        println!(
            "columnar load: {} clicks + {} conversions in {secs:.1} s = {:.2} µs per click row (feed read included)",
            loaded.clicks,
            loaded.conversions,
            secs * 1e6 / loaded.clicks as f64
        );
    }
    let (db, duck) = (dir.join("smartlink.db"), dir.join("analytics.duckdb"));
    if std::env::var("STORE").is_ok_and(|s| !s.is_empty()) {
        println!(
            "disk: columnar {:.0} MiB (PostgreSQL's: psql -c \"SELECT pg_database_size(current_database())\")",
            file_mib(&duck)
        );
    } else {
        println!(
            "disk: transactional {:.0} MiB ({:.0} B/click), columnar {:.0} MiB ({:.1} B/click)",
            file_mib(&db),
            file_mib(&db) * (1 << 20) as f64 / n as f64,
            file_mib(&duck),
            file_mib(&duck) * (1 << 20) as f64 / n as f64
        );
    }
    let period = format!("{days}d");
    let window_from = (now - 2 * 86_400_000) / 3_600_000 * 3_600_000 + 17 * 60_000 + 3_123;
    let f = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let cases: Vec<Case> = vec![
        ("offer", vec!["offer"], vec![], None, None, None),
        ("country", vec!["country"], vec![], None, None, None),
        ("smartlink x offer", vec!["smartlink", "offer"], vec![], None, None, None),
        ("day x offer (UTC)", vec!["day", "offer"], vec![], None, None, None),
        ("country x device, one smartlink", vec!["country", "device"], f("smartlink", "sl1"), None, None, None),
        ("os x browser", vec!["os", "browser"], vec![], None, None, None),
        ("top-50 sub1 by clicks", vec!["sub1"], vec![], Some("-clicks"), Some(50), None),
        ("hour of day x offer", vec!["hour_of_day", "offer"], vec![], None, None, None),
        ("country x device x os x browser", vec!["country", "device", "os", "browser"], vec![], None, None, None),
        ("weekday x language", vec!["weekday", "language"], vec![], None, None, None),
        ("top-50 sub1 x offer by revenue", vec!["sub1", "offer"], vec![], Some("-revenue"), Some(50), None),
        ("quality reason", vec!["reason"], vec![], None, None, None),
        ("source x day", vec!["source", "day"], vec![], None, None, None),
        ("29.5-min window by sub1", vec!["sub1"], vec![], None, None, Some((window_from, window_from + 1_770_500))),
    ];
    println!("now_ms {now}, window_from_ms {window_from} (bench/duckdb_sql.py takes both)");
    // `RUNS=n` times each breakdown n times (median; default 5); `CASES=a,b`
    // only the breakdowns whose names contain one of these.
    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let only: Vec<String> =
        std::env::var("CASES").map(|v| v.split(',').map(String::from).collect()).unwrap_or_default();
    println!("{:<34} {:>12} {:>12} {:>6}", format!("breakdown (median of {runs})"), "columnar ms", "old ms", "rows");
    for (name, group, filters, sort, limit, window) in cases {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        let req = ReportRequest {
            from: Some(window.map_or(period.clone(), |(a, _)| a.to_string())),
            to: window.map(|(_, b)| b.to_string()),
            group_by: group.into_iter().map(String::from).collect(),
            filters,
            sort: sort.map(String::from),
            limit,
            ..Default::default()
        };
        let time = |store: &dyn Store, runs: usize| -> (f64, serde_json::Value) {
            let mut out = serde_json::Value::Null;
            let mut times: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    out = run(store, &req, now).expect("report");
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(|a, b| a.total_cmp(b));
            (times[runs / 2], out)
        };
        let (new_ms, new_out) = time(&analyzed, runs);
        let rows = new_out["rows"].as_array().map_or(0, |r| r.len());
        let old = if old_path {
            let (ms, out) = time(&*store, 3);
            // The old path sums money as floats: a derived ratio (CPA, CPC)
            // can round the other way in its 6th decimal.
            assert!(close(&out["rows"], &new_out["rows"]), "{name}: both paths give the same rows");
            assert!(close(&out["totals"], &new_out["totals"]), "{name}: both paths give the same totals");
            format!("{ms:.1}")
        } else {
            "-".into()
        };
        println!("{name:<34} {new_ms:>12.1} {old:>12} {rows:>6}");
    }
    println!("peak RSS {:.0} MiB", peak_rss_mib());
}

fn definitions(store: &dyn Store) {
    let put = |kind, id: String, spec: String| Change::Put { kind, id, spec };
    let mut defs = vec![put(Kind::Advertiser, "adv".into(), r#"{"id":"adv"}"#.into())];
    for o in 1..=50 {
        defs.push(put(
            Kind::Offer,
            format!("o{o}"),
            format!(
                r#"{{"id":"o{o}","advertiser":"adv","url":"https://o.example/","payout":{}}}"#,
                0.5 + o as f64 / 20.0
            ),
        ));
    }
    for a in 1..=10 {
        defs.push(put(Kind::Affiliate, format!("aff{a}"), format!(r#"{{"id":"aff{a}"}}"#)));
    }
    for s in 1..=3 {
        defs.push(put(Kind::Source, format!("src{s}"), format!(r#"{{"id":"src{s}"}}"#)));
    }
    for s in 1..=5 {
        defs.push(put(
            Kind::Smartlink,
            format!("sl{s}"),
            format!(r#"{{"slug":"sl{s}","offers":["o1"],"fallback_url":"https://f.example/"}}"#),
        ));
    }
    store.apply(&defs, "report_load").expect("definitions");
}

const COUNTRIES: [&str; 40] = [
    "US", "IN", "BR", "ID", "MX", "DE", "GB", "FR", "PH", "VN", "TR", "TH", "EG", "NG", "PK", "BD", "RU", "JP", "IT",
    "ES", "CA", "AU", "KR", "AR", "CO", "PL", "ZA", "MY", "SA", "NL", "UA", "PE", "CL", "RO", "KE", "MA", "DZ", "IQ",
    "SE", "BE",
];
const OS: [&str; 7] = ["android", "ios", "windows", "macos", "linux", "chromeos", "other"];
const BROWSERS: [&str; 8] = ["chrome", "safari", "samsung", "edge", "firefox", "opera", "uc", "other"];
const LANGS: [&str; 12] = ["en", "es", "pt", "hi", "id", "de", "fr", "ru", "ar", "tr", "vi", ""];

/// The facts of `clicks` clicks (and 2% conversions) written by DuckDB
/// itself into a fresh `analytics.duckdb`, with the same definitions' keys
/// and about the same distributions as [`fill`] (skewed by a power law
/// instead of Zipf). The file's feed marks are set past the empty
/// transactional store's, so the store answers from it.
fn synthesize(dir: &std::path::Path, clicks: usize, days: i64, now: i64) {
    // The store creates the file and its layout, then lets go of it.
    drop(Analyzed::open(
        Arc::new(SqliteStore::open_dir(dir).expect("store")),
        dir,
        Options { retention_days: 0, ..Default::default() },
    ));
    let t0 = Instant::now();
    let c = duckdb::Connection::open(dir.join("analytics.duckdb")).expect("open");
    let mut values: Vec<&str> =
        vec!["human", "suspect", "bot", "preview", "mobile", "tablet", "desktop", "", "no_offer"];
    for v in COUNTRIES.iter().chain(&OS).chain(&BROWSERS).chain(&LANGS) {
        if !values.contains(v) {
            values.push(v);
        }
    }
    let code = |v: &str| values.iter().position(|x| *x == v).unwrap();
    // The store seeds the dictionary with the quality classes, in the
    // order `values` starts with.
    let seeded: i64 = c.query_row("SELECT count(*) FROM dict", [], |r| r.get(0)).unwrap();
    for (i, v) in values.iter().enumerate().skip(seeded as usize) {
        c.execute("INSERT INTO dict VALUES (?, ?)", duckdb::params![i as u32, v]).unwrap();
    }
    let list = |xs: &[&str]| format!("[{}]", xs.iter().map(|x| code(x).to_string()).collect::<Vec<_>>().join(", "));
    let step = days * 86_400_000 / clicks as i64;
    let start = now - days * 86_400_000;
    // u(k): a uniform draw in [0, 1) per row and salt; skew(n, k): an
    // index in 0..n, low indices most frequent.
    let u = |k: u32| format!("((hash(i * 31 + {k}) % 1000003) / 1000003.0)");
    let skew = |n: usize, k: u32| format!("floor({n} * pow({}, 2.5))::INTEGER", u(k));
    let (r3, r4) = (format!("floor(3 * {})::INTEGER", u(12)), format!("floor(4 * {})::INTEGER", u(12)));
    let (sub2, c4) = (format!("floor(20 * {})::INTEGER", u(14)), format!("floor(4 * {})::INTEGER", u(15)));
    // Every click into a scratch table first, then each into the table of
    // its class (the store keeps bots and previews apart).
    c.execute_batch("CREATE TABLE synth_clicks AS SELECT * FROM clicks LIMIT 0").expect("scratch table");
    let sql = format!(
        "INSERT INTO synth_clicks SELECT i + 1, {start} + i * {step}, 1 + {sl}, offer, 1 + {aff}, source,
           {countries}[{country} + 1], CASE WHEN os_i < 2 THEN (CASE WHEN {u7} < 0.85 THEN {mobile} ELSE {tablet} END)
             ELSE {desktop} END,
           {oses}[os_i + 1], {browsers}[{browser} + 1], {langs}[{lang} + 1], {classes}[q + 1],
           CASE WHEN offer = 0 THEN {no_offer} ELSE {none} END,
           CASE q WHEN 1 THEN ['rate_ip', 'datacenter', 'language_mismatch'][{r3} + 1]
                  WHEN 2 THEN ['http_library', 'datacenter,rate_ip_flood', 'crawler', 'headless,datacenter'][{r4} + 1]
                  WHEN 3 THEN 'preview' ELSE '' END,
           'src' || {sub1}, 'cr' || {sub2}, '', '', '', 0.8, 1000 * (1 + {c4})
         FROM (SELECT i, {os} AS os_i,
                 CASE WHEN {u2} < 0.06 THEN 0 ELSE 1 + {offer} END AS offer,
                 CASE WHEN {u5} < 0.25 THEN 0 ELSE 1 + floor(3 * {u6})::INTEGER END AS source,
                 CASE WHEN {u8} < 0.86 THEN 0 WHEN {u8} < 0.95 THEN 1 WHEN {u8} < 0.99 THEN 2 ELSE 3 END AS q
               FROM range({clicks}) t(i))",
        sl = skew(5, 1),
        aff = skew(10, 3),
        countries = list(&COUNTRIES),
        country = skew(40, 9),
        u7 = u(7),
        mobile = code("mobile"),
        tablet = code("tablet"),
        desktop = code("desktop"),
        oses = list(&OS),
        browsers = list(&BROWSERS),
        browser = skew(8, 10),
        langs = list(&LANGS),
        lang = skew(12, 11),
        classes = list(&["human", "suspect", "bot", "preview"]),
        no_offer = code("no_offer"),
        none = code(""),
        sub1 = skew(300, 13),
        os = skew(7, 4),
        u2 = u(2),
        offer = skew(50, 0),
        u5 = u(5),
        u6 = u(6),
        u8 = u(8),
    );
    c.execute_batch(&sql).expect("clicks");
    let conversions = "INSERT INTO conversions SELECT row_number() OVER (ORDER BY rid), rid, ts_ms // 1000 * 1000,
           smartlink, offer, affiliate, source, country, device, os, browser, language, quality, reasons,
           sub1, sub2, sub3, sub4, sub5, CASE WHEN hash(rid * 17) % 100 < 85 THEN 1 ELSE 2 END,
           (1000000 + offer * 100000), 0, '', 3600
         FROM synth_clicks WHERE offer > 0 AND hash(rid * 7) % 1000 < 20";
    c.execute_batch(conversions).expect("conversions");
    c.execute_batch(
        "INSERT INTO clicks SELECT * FROM synth_clicks WHERE quality NOT IN (2, 3) ORDER BY rid;
         INSERT INTO bot_clicks SELECT * FROM synth_clicks WHERE quality IN (2, 3) ORDER BY rid;
         DROP TABLE synth_clicks;",
    )
    .expect("clicks by class");
    let n: i64 = c.query_row("SELECT count(*) FROM conversions", [], |r| r.get(0)).unwrap();
    c.execute(
        "INSERT OR REPLACE INTO meta VALUES ('clicks', ?), ('conversions', ?)",
        duckdb::params![clicks as i64, n],
    )
    .unwrap();
    c.execute_batch("CHECKPOINT").unwrap();
    eprintln!("synthesized {clicks} clicks and {n} conversions in {:.0} s", t0.elapsed().as_secs_f64());
}

fn fill(store: &dyn Store, clicks: usize, days: i64, now: i64) {
    definitions(store);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let start = now - days * 86_400_000;
    let step = (days * 86_400_000) as f64 / clicks as f64;
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(50_000);
    let mut pbs = Vec::new();
    for i in 0..clicks {
        let ts = start + (i as f64 * step) as i64;
        let os_i = zipf(&mut rng, OS.len());
        let device = match OS[os_i] {
            "android" | "ios" => {
                if rng.random_bool(0.85) {
                    "mobile"
                } else {
                    "tablet"
                }
            }
            _ => "desktop",
        };
        let offer = (rng.random::<f64>() > 0.06).then(|| 1 + zipf(&mut rng, 50) as u32);
        let quality = match rng.random::<f64>() {
            x if x < 0.86 => "human",
            x if x < 0.95 => "suspect",
            x if x < 0.99 => "bot",
            _ => "preview",
        };
        let row = ClickRow {
            click_id: format!("{i:012}-{:08x}", rng.random::<u32>()),
            ts_ms: ts,
            smartlink: 1 + zipf(&mut rng, 5) as u32,
            offer,
            affiliate: Some(1 + zipf(&mut rng, 10) as u32),
            subs: [
                format!("src{}", zipf(&mut rng, 300)),
                format!("cr{}", rng.random_range(0..20)),
                String::new(),
                String::new(),
                String::new(),
            ],
            ip: format!("10.{}.{}.{}", rng.random::<u8>(), rng.random::<u8>(), rng.random::<u8>()),
            country: COUNTRIES[zipf(&mut rng, COUNTRIES.len())].into(),
            device: device.into(),
            os: OS[os_i].into(),
            browser: BROWSERS[zipf(&mut rng, BROWSERS.len())].into(),
            language: LANGS[zipf(&mut rng, LANGS.len())].into(),
            reason: "exploit".into(),
            propensity: 0.8,
            quality: quality.into(),
            quality_reasons: match quality {
                "suspect" => ["rate_ip", "datacenter", "language_mismatch"][rng.random_range(0..3)],
                "bot" => ["http_library", "datacenter,rate_ip_flood", "crawler", "headless,datacenter"]
                    [rng.random_range(0..4)],
                "preview" => "preview",
                _ => "",
            }
            .into(),
            // CPC traffic from three sources at their own prices, the rest
            // without a source or a cost.
            source: (rng.random_range(0..4) != 0).then(|| rng.random_range(1..=3)),
            cost: 0.001 * rng.random_range(1..=4) as f64,
            ..Default::default()
        };
        if let Some(o) = row.offer.filter(|_| rng.random_bool(0.02)) {
            pbs.push(PostbackIn {
                click_id: row.click_id.clone(),
                event: "conversion".into(),
                txid: String::new(),
                status: if rng.random_bool(0.85) { ConvStatus::Approved } else { ConvStatus::Rejected },
                payout: Some(1.0 + o as f64 / 10.0),
                currency: "USD".into(),
                payout_base: Some(1.0 + o as f64 / 10.0),
                smartlink: row.smartlink,
                offer: o,
                affiliate: row.affiliate,
                country: row.country.clone(),
                device: row.device.clone(),
                os: row.os.clone(),
                browser: row.browser.clone(),
                language: row.language.clone(),
                quality: row.quality.clone(),
                quality_flags: String::new(),
                click_ts_ms: ts / 1000 * 1000,
                ts_ms: ts + 3_600_000,
                over_cap: false,
                default_payout: 1.0,
                default_payout_base: 1.0,
                source: "report_load".into(),
                reason: None,
                outbound: vec![],
                cost_base: 0.0,
            });
        }
        batch.push(row);
        if batch.len() == 50_000 {
            store.insert_clicks(&batch).expect("clicks");
            store
                .record_postbacks(&pbs)
                .expect("conversions")
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .expect("conversions");
            batch.clear();
            pbs.clear();
            if i % 1_000_000 < 50_000 {
                eprintln!("{} clicks written ({:.0} s)", i + 1, t0.elapsed().as_secs_f64());
            }
        }
    }
    store.insert_clicks(&batch).expect("clicks");
    store.record_postbacks(&pbs).expect("conversions").into_iter().collect::<Result<Vec<_>, _>>().expect("conversions");
    eprintln!("filled {clicks} clicks in {:.0} s", t0.elapsed().as_secs_f64());
}
