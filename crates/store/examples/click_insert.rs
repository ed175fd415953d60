//! Measures the click writer's store cost: rows per second for realistic
//! click batches. `cargo run --release -p smartlink-store --example click_insert -- [rows] [batch]`
use smartlink_store::{ClickRow, SqliteStore, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let dir = std::env::temp_dir().join(format!("click_insert_{}", std::process::id()));
    let store = SqliteStore::open_dir(&dir).expect("open store");
    let uas = [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    ];
    let countries = ["US", "DE", "BR", "IN", "FR", "GB", "JP", "MX"];
    let t0_ms = 1_790_000_000_000i64;
    let make = |i: usize| ClickRow {
        click_id: format!("{:048x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)),
        ts_ms: t0_ms + (i as i64) / 40,
        smartlink: 1 + (i % 3) as u32,
        offer: Some(1 + (i * 7 % 50) as u32),
        affiliate: Some(1),
        subs: [format!("pub{}", i % 500), format!("cr{}", i % 20), String::new(), String::new(), String::new()],
        ip: format!("203.0.{}.{}", i % 250, i % 199),
        country: countries[i % countries.len()].into(),
        device: "mobile".into(),
        os: "android".into(),
        browser: "chrome".into(),
        language: "en".into(),
        referrer: String::new(),
        user_agent: uas[i % uas.len()].into(),
        reason: "exploit".into(),
        fallback_reason: None,
        propensity: 0.8,
        quality: "human".into(),
        quality_score: 0,
        quality_reasons: String::new(),
        cost: 0.0,
        source: None,
    };
    let all: Vec<ClickRow> = (0..rows).map(make).collect();
    let started = std::time::Instant::now();
    for chunk in all.chunks(batch) {
        store.insert_clicks(chunk).expect("insert");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{rows} rows in batches of {batch}: {:.0} rows/s, {:.2} µs/row",
        rows as f64 / secs,
        secs * 1e6 / rows as f64
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
