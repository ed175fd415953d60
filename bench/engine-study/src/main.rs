//! Issue 17 engine study: the same generated clicks and conversions, ingested
//! in journal-sized batches and queried with the same breakdowns, in DuckDB
//! (`--features duckdb`) or DataFusion over Parquet (`--features datafusion`).
//!
//! `engine-study <duckdb|datafusion|datafusion-mem> [clicks=10000000] [days=30] [dir=data]`
//!
//! Prints ingest cost per row, on-disk size, and the median of 5 runs of each
//! breakdown; every breakdown is checked against the generator's own sums
//! (clicks, approved and pending conversions, revenue and cost in
//! micro-units), so a wrong or inexact answer fails the run.

mod gen;
#[cfg(feature = "datafusion")]
mod df;
#[cfg(feature = "duckdb")]
mod duck;

use std::path::{Path, PathBuf};
use std::time::Instant;

use gen::{Batch, Gen, Totals};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Rows per ingest batch: what the journal ingester hands over at a time.
pub const BATCH: usize = 10_000;
/// 2025-12-01T00:00:00Z: a fixed start keeps runs comparable.
const START: i64 = 1_764_547_200_000;

pub trait Engine {
    /// Appends one batch of clicks and its conversions.
    fn ingest(&mut self, b: &Batch) -> Res<()>;
    /// Off-hot-path work after ingest (DuckDB: checkpoint; DataFusion:
    /// compaction of the per-batch Parquet files).
    fn finish(&mut self) -> Res<()>;
    /// Runs one report; returns (rows, column sums of the 5 metrics).
    fn query(&mut self, sql: &str, ndims: usize) -> Res<(usize, Totals)>;
    /// SQL for integer division.
    fn div(&self) -> &'static str;
    /// Time spent compacting during ingest (already inside ingest's time).
    fn compaction_secs(&self) -> f64 {
        0.0
    }
}

#[derive(Clone, Copy)]
enum Dim {
    Col(&'static str),
    Day,
    HourOfDay,
}

impl Dim {
    fn expr(self, div: &str) -> String {
        match self {
            Dim::Col(c) => c.to_string(),
            Dim::Day => format!("(ts_ms {div} 86400000)"),
            Dim::HourOfDay => format!("((ts_ms {div} 3600000) % 24)"),
        }
    }
}

struct Query {
    name: &'static str,
    dims: Vec<Dim>,
    filter: Option<&'static str>,
    limit: Option<usize>,
    window: Option<(i64, i64)>,
}

/// One report: clicks and cost from the click table, conversions and revenue
/// from the conversion table (counted at click time), summed per group.
fn sql(q: &Query, from: i64, to: i64, div: &str) -> String {
    let exprs: Vec<String> = q.dims.iter().map(|d| d.expr(div)).collect();
    let sel = exprs.iter().enumerate().map(|(i, e)| format!("{e} AS d{i}")).collect::<Vec<_>>().join(", ");
    let grp = exprs.join(", ");
    let outer = (0..exprs.len()).map(|i| format!("d{i}")).collect::<Vec<_>>().join(", ");
    let filter = q.filter.map(|f| format!(" AND {f}")).unwrap_or_default();
    let wh = format!("ts_ms >= {from} AND ts_ms < {to}{filter}");
    let limit = q.limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    format!(
        "SELECT {outer}, CAST(SUM(clicks) AS BIGINT) AS clicks, CAST(SUM(approved) AS BIGINT) AS approved, \
         CAST(SUM(pending) AS BIGINT) AS pending, CAST(SUM(revenue) AS BIGINT) AS revenue, \
         CAST(SUM(cost) AS BIGINT) AS cost FROM (\
         SELECT {sel}, COUNT(*) AS clicks, CAST(0 AS BIGINT) AS approved, CAST(0 AS BIGINT) AS pending, \
         CAST(0 AS BIGINT) AS revenue, CAST(SUM(cost_micros) AS BIGINT) AS cost \
         FROM clicks WHERE {wh} GROUP BY {grp} \
         UNION ALL \
         SELECT {sel}, CAST(0 AS BIGINT), \
         CAST(SUM(CASE WHEN status = 'approved' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN status = 'approved' THEN revenue_micros ELSE 0 END) AS BIGINT), CAST(0 AS BIGINT) \
         FROM conversions WHERE {wh} GROUP BY {grp}\
         ) t GROUP BY {outer} ORDER BY clicks DESC{limit}"
    )
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) };
    rd.flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn open(engine: &str, dir: &Path) -> Res<Box<dyn Engine>> {
    match engine {
        #[cfg(feature = "duckdb")]
        "duckdb" => Ok(Box::new(duck::Duck::open(dir)?)),
        #[cfg(feature = "datafusion")]
        "datafusion" => Ok(Box::new(df::Df::open(dir, false)?)),
        #[cfg(feature = "datafusion")]
        "datafusion-mem" => Ok(Box::new(df::Df::open(dir, true)?)),
        _ => Err(format!("engine {engine} not compiled in (features: duckdb, datafusion)").into()),
    }
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let engine = args.next().unwrap_or_else(|| "duckdb".into());
    let clicks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let days: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "data".into())).join(&engine);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut e = open(&engine, &dir)?;
    let mut g = Gen::new(clicks, days, START);

    // Ingest: generation is not timed, only the engine's append of each batch.
    let (mut t_ingest, mut t_gen, mut convs) = (0.0, 0.0, 0usize);
    loop {
        let t = Instant::now();
        let Some(b) = g.batch(BATCH) else { break };
        t_gen += t.elapsed().as_secs_f64();
        convs += b.conv.len();
        let t = Instant::now();
        e.ingest(&b)?;
        t_ingest += t.elapsed().as_secs_f64();
    }
    let disk_before = dir_bytes(&dir);
    let t = Instant::now();
    e.finish()?;
    let t_finish = t.elapsed().as_secs_f64();
    let disk = dir_bytes(&dir);
    let t_compact = e.compaction_secs();
    t_ingest -= t_compact;
    println!("engine {engine}: {clicks} clicks, {convs} conversions over {days} days, batches of {BATCH}");
    println!(
        "ingest {:.1} s = {:.2} us/click row (generation {:.1} s not included); finish (checkpoint/compaction) {:.1} s = {:.2} us/row",
        t_ingest,
        t_ingest * 1e6 / clicks as f64,
        t_gen,
        t_finish,
        t_finish * 1e6 / clicks as f64
    );
    println!(
        "compaction during ingest {:.1} s = {:.2} us/row (not in the ingest figure above)",
        t_compact,
        t_compact * 1e6 / clicks as f64
    );
    println!(
        "disk {:.1} MB before finish, {:.1} MB after = {:.1} bytes/click",
        disk_before as f64 / 1e6,
        disk as f64 / 1e6,
        disk as f64 / clicks as f64
    );

    let full = (START, START + days * 86_400_000);
    use Dim::*;
    let q = |name, dims: Vec<Dim>| Query { name, dims, filter: None, limit: None, window: None };
    let queries = vec![
        q("by offer", vec![Col("offer")]),
        q("by country", vec![Col("country")]),
        q("by smartlink x offer", vec![Col("smartlink"), Col("offer")]),
        q("by day x offer (UTC)", vec![Day, Col("offer")]),
        q("by os x browser", vec![Col("os"), Col("browser")]),
        Query { filter: Some("smartlink = 1"), ..q("country x device, one smartlink", vec![Col("country"), Col("device")]) },
        Query { limit: Some(50), ..q("top-50 sub1 by clicks", vec![Col("sub1")]) },
        q("country x device x os x browser", vec![Col("country"), Col("device"), Col("os"), Col("browser")]),
        q("hour-of-day x offer (UTC)", vec![HourOfDay, Col("offer")]),
        Query { window: Some(g.window), ..q("29.5-min exact window by sub1", vec![Col("sub1")]) },
    ];
    println!("{:<34} {:>9} {:>8} {:>8} {:>7}  check", "query (5 runs)", "median ms", "min", "max", "rows");
    let mut failed = false;
    for qu in &queries {
        let (from, to) = qu.window.unwrap_or(full);
        let s = sql(qu, from, to, e.div());
        let mut times = Vec::new();
        let mut last = (0, Totals::default());
        for _ in 0..5 {
            let t = Instant::now();
            last = e.query(&s, qu.dims.len())?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let want = if qu.window.is_some() {
            Some(g.win)
        } else if qu.filter.is_some() {
            Some(g.sl1)
        } else if qu.limit.is_some() {
            None
        } else {
            Some(g.all)
        };
        let check = match want {
            Some(w) if w == last.1 => "exact".to_string(),
            Some(w) => {
                failed = true;
                format!("MISMATCH got {:?} want {:?}", last.1, w)
            }
            None if last.0 <= 50 => "(top-N)".to_string(),
            None => {
                failed = true;
                "MISMATCH: more than 50 rows".to_string()
            }
        };
        println!("{:<34} {:>9.1} {:>8.1} {:>8.1} {:>7}  {check}", qu.name, times[2], times[0], times[4], last.0);
    }
    println!("totals {:?}; window {:?}: {:?}", g.all, g.window, g.win);
    println!("peak RSS {:.0} MB", peak_rss_mb());
    if failed {
        return Err("a report did not reconcile".into());
    }
    Ok(())
}
