//! `cargo run --release -p smartlink-sim --example simulate -- --scenario FILE
//! [--seed N] [--strategies a,b] [--json] [--report DIR]`: the same
//! arguments as `smartlink simulate`, for timing the simulator on its own.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut opts = smartlink_sim::Options::default();
    let mut json = false;
    let mut report = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scenario" => opts.scenario_path = args.next().unwrap_or_default().into(),
            "--seed" => opts.seed = args.next().and_then(|s| s.parse().ok()),
            "--strategies" => opts.strategies = args.next().map(|s| s.split(',').map(str::to_string).collect()),
            "--json" => json = true,
            "--report" => report = args.next(),
            other => {
                eprintln!("unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let started = std::time::Instant::now();
    let r = match smartlink_sim::simulate(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", smartlink_sim::render_json(&r));
    } else {
        print!("{}", smartlink_sim::render_table(&r));
    }
    if let Some(dir) = report {
        match smartlink_sim::write_html_report(&r, dir.as_ref()) {
            Ok(p) => eprintln!("report: {}", p.display()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let Some(chunk) = std::env::var("SIM_HOURLY").ok().and_then(|v| v.parse::<usize>().ok()) {
        let oracle = &r.results[0];
        for s in &r.results[1..] {
            let ratios: Vec<String> = s
                .hourly
                .chunks(chunk)
                .zip(oracle.hourly.chunks(chunk))
                .map(|(a, o)| {
                    let (x, y): (f64, f64) = (a.iter().map(|h| h.expected).sum(), o.iter().map(|h| h.expected).sum());
                    format!("{:.0}", 100.0 * x / y.max(1e-9))
                })
                .collect();
            eprintln!("{:<12} {}", s.strategy.name(), ratios.join(" "));
        }
    }
    if std::env::var_os("SIM_SHARES").is_some() {
        for s in &r.results[1..] {
            let rows: Vec<String> = s
                .hourly
                .iter()
                .map(|h| {
                    let t: u32 = h.offer_clicks.iter().sum();
                    h.offer_clicks
                        .iter()
                        .map(|&c| format!("{:.0}", 100.0 * c as f64 / t.max(1) as f64))
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect();
            eprintln!("{:<12} {}", s.strategy.name(), rows.join(" "));
        }
    }
    eprintln!("elapsed: {:.2?}", started.elapsed());
    ExitCode::SUCCESS
}
