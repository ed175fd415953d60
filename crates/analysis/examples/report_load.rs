//! Fills a store with realistic traffic through the normal write path, loads
//! it into the columnar analytics store, and times grouped reports over both
//! paths: the transactional store's (hourly rollups and raw rows) and the
//! columnar store's.
//!
//! `cargo run --release -p smartlink-analysis --example report_load -- [clicks] [days] [dir]`
//! (default 10,000,000 clicks over 30 days in a temporary directory; pass a
//! directory to keep the store and re-time it without refilling).
//! `OLD_PATH=0` skips the transactional path (seconds per query at 10 M).

use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use smartlink_analysis::report::{run, ReportRequest};
use smartlink_columnar::{Analyzed, Options};
use smartlink_store::{Change, ClickRow, ConvStatus, ConversionStore, Kind, PostbackIn, SqliteStore, Store};

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

fn main() {
    let mut args = std::env::args().skip(1);
    let clicks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let days: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("report_load_{}", std::process::id())));
    let old_path = std::env::var("OLD_PATH").map_or(true, |v| v != "0");
    let sqlite = Arc::new(SqliteStore::open_dir(&dir).expect("open store"));
    let now = match sqlite.meta("report_load_now").unwrap() {
        Some(t) => t.parse().unwrap(),
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
    };
    if sqlite.count_clicks().unwrap() == 0 {
        fill(&sqlite, clicks, days, now);
        sqlite.set_meta("report_load_now", &now.to_string()).unwrap();
    }
    let n = sqlite.count_clicks().unwrap();
    println!("store: {n} clicks in {}", dir.display());
    let analyzed =
        Analyzed::open(sqlite.clone(), &dir, Options { retention_days: 0, ..Default::default() }).expect("analytics");
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
    println!(
        "disk: transactional {:.0} MiB ({:.0} B/click), columnar {:.0} MiB ({:.1} B/click)",
        file_mib(&db),
        file_mib(&db) * (1 << 20) as f64 / n as f64,
        file_mib(&duck),
        file_mib(&duck) * (1 << 20) as f64 / n as f64
    );
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
        ("29.5-min window by sub1", vec!["sub1"], vec![], None, None, Some((window_from, window_from + 1_770_500))),
    ];
    println!("{:<34} {:>12} {:>12} {:>6}", "breakdown (median of 5)", "columnar ms", "old ms", "rows");
    for (name, group, filters, sort, limit, window) in cases {
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
        let (new_ms, new_out) = time(&analyzed, 5);
        let rows = new_out["rows"].as_array().map_or(0, |r| r.len());
        let old = if old_path {
            let (ms, out) = time(&*sqlite, 3);
            assert_eq!(out["rows"], new_out["rows"], "{name}: both paths give the same rows");
            assert_eq!(out["totals"], new_out["totals"], "{name}: both paths give the same totals");
            format!("{ms:.1}")
        } else {
            "-".into()
        };
        println!("{name:<34} {new_ms:>12.1} {old:>12} {rows:>6}");
    }
    println!("peak RSS {:.0} MiB", peak_rss_mib());
}

fn fill(store: &SqliteStore, clicks: usize, days: i64, now: i64) {
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
    for s in 1..=5 {
        defs.push(put(
            Kind::Smartlink,
            format!("sl{s}"),
            format!(r#"{{"slug":"sl{s}","offers":["o1"],"fallback_url":"https://f.example/"}}"#),
        ));
    }
    store.apply(&defs, "report_load").expect("definitions");
    const COUNTRIES: [&str; 40] = [
        "US", "IN", "BR", "ID", "MX", "DE", "GB", "FR", "PH", "VN", "TR", "TH", "EG", "NG", "PK", "BD", "RU", "JP",
        "IT", "ES", "CA", "AU", "KR", "AR", "CO", "PL", "ZA", "MY", "SA", "NL", "UA", "PE", "CL", "RO", "KE", "MA",
        "DZ", "IQ", "SE", "BE",
    ];
    const OS: [&str; 7] = ["android", "ios", "windows", "macos", "linux", "chromeos", "other"];
    const BROWSERS: [&str; 8] = ["chrome", "safari", "samsung", "edge", "firefox", "opera", "uc", "other"];
    const LANGS: [&str; 12] = ["en", "es", "pt", "hi", "id", "de", "fr", "ru", "ar", "tr", "vi", ""];
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
