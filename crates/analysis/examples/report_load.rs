//! Fills a store with realistic traffic through the normal write path and
//! times grouped reports over it.
//!
//! `cargo run --release -p smartlink-analysis --example report_load -- [clicks] [days] [dir]`
//! (default 10,000,000 clicks over 30 days in a temporary directory; pass a
//! directory to keep the store and re-time it without refilling).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use smartlink_analysis::report::{run, ReportRequest};
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

fn main() {
    let mut args = std::env::args().skip(1);
    let clicks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let days: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("report_load_{}", std::process::id())));
    let store = SqliteStore::open_dir(&dir).expect("open store");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    if store.count_clicks().unwrap() == 0 {
        fill(&store, clicks, days, now);
    }
    println!("store: {} clicks in {}", store.count_clicks().unwrap(), dir.display());
    let period = format!("{days}d");
    for (name, group, filters) in [
        ("by offer", vec!["offer"], vec![]),
        ("by country", vec!["country"], vec![]),
        ("by smartlink, offer", vec!["smartlink", "offer"], vec![]),
        ("by day, offer (UTC days)", vec!["day", "offer"], vec![]),
        (
            "by country, device, one smartlink",
            vec!["country", "device"],
            vec![("smartlink".to_string(), "sl1".to_string())],
        ),
        ("by os, browser", vec!["os", "browser"], vec![]),
    ] {
        let req = ReportRequest {
            from: Some(period.clone()),
            group_by: group.into_iter().map(String::from).collect(),
            filters,
            ..Default::default()
        };
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let out = run(&store, &req, now).expect("report");
                std::hint::black_box(out);
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        println!("{name:<36} median {:>7.1} ms (min {:.1}, max {:.1})", times[2], times[0], times[4]);
    }
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
