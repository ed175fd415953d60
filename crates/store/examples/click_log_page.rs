//! Measures a click-log page (`Store::click_log`) as the clicks table grows:
//! a page costs about the clicks of the seconds it touches (they are sorted
//! by millisecond), not the table's size.
//! `cargo run --release -p smartlink-store --example click_log_page -- [rows] [clicks per second]`
use smartlink_store::{ClickQuery, ClickRow, Dim, DimValue, SqliteStore, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let rate: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000).max(1);
    let dir = std::env::temp_dir().join(format!("click_log_page_{}", std::process::id()));
    let store = SqliteStore::open_dir(&dir).expect("open store");
    let t0_ms = 1_790_000_000_000i64;
    let make = |i: usize| ClickRow {
        click_id: format!("{:048x}", (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)),
        ts_ms: t0_ms + (i as i64) * 1000 / rate,
        smartlink: 1 + (i % 3) as u32,
        offer: Some(1 + (i * 7 % 50) as u32),
        // One click in ten thousand is affiliate 9's.
        affiliate: Some(if i.is_multiple_of(10_000) { 9 } else { 1 + (i % 5) as u32 }),
        country: ["US", "DE", "BR"][i % 3].into(),
        quality: "human".into(),
        ..Default::default()
    };
    let mut done = 0;
    for target in [10_000, rows / 10, rows] {
        while done < target {
            let n = (target - done).min(5_000);
            let batch: Vec<ClickRow> = (done..done + n).map(make).collect();
            store.insert_clicks(&batch).expect("insert");
            done += n;
        }
        let page = |q: &ClickQuery| {
            let t = std::time::Instant::now();
            let mut n = 0;
            for _ in 0..5 {
                n = store.click_log(q).expect("page").len();
            }
            (n, t.elapsed().as_secs_f64() * 1e3 / 5.0)
        };
        let newest = ClickQuery { limit: 101, ..Default::default() };
        let deep =
            ClickQuery { before: Some((t0_ms + (done as i64) / 80, "8".into())), limit: 101, ..Default::default() };
        let country = ClickQuery {
            filters: vec![(Dim::Country, vec![DimValue::Text("BR".into())])],
            limit: 101,
            ..Default::default()
        };
        let rare =
            ClickQuery { filters: vec![(Dim::Affiliate, vec![DimValue::Key(9)])], limit: 101, ..Default::default() };
        for (name, q) in [("newest", &newest), ("mid-cursor", &deep), ("country", &country), ("rare affiliate", &rare)]
        {
            let (n, ms) = page(q);
            println!("{done:>9} clicks ({rate}/s)  {name:<15} {n:>4} rows  {ms:>8.2} ms");
        }
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
