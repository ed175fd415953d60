//! `cargo run --release -p smartlink-sim --example hourly -- FILE [SEED]`:
//! a diagnostic of one scenario run. Per simulated day the `oracle_ratio`
//! of `smartlink` and `greedy_epc` over that day; then, for every 6-hour
//! block, the share of clicks each strategy (oracle first) gave each offer.

use std::process::ExitCode;

use smartlink_sim::{load_scenario, run, Strategy};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: hourly FILE [SEED]");
        return ExitCode::from(2);
    };
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let sc = match load_scenario(std::path::Path::new(&file)) {
        Ok(sc) => sc,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let r = run(&sc, seed, &[Strategy::Smartlink, Strategy::GreedyEpc]);
    let hourly = |s| &r.result(s).expect("strategy ran").hourly;
    let (o, s, g) = (hourly(Strategy::Oracle), hourly(Strategy::Smartlink), hourly(Strategy::GreedyEpc));
    let n = o.len();
    println!("offers: {:?}", r.offers);
    for d in 0..n.div_ceil(24) {
        let hs = d * 24..((d + 1) * 24).min(n);
        let sum = |v: &Vec<smartlink_sim::HourStats>| v[hs.clone()].iter().map(|h| h.expected).sum::<f64>();
        let oe = sum(o);
        println!("day {d}: smartlink {:.3} greedy {:.3}", sum(s) / oe, sum(g) / oe);
    }
    for b in (0..n).step_by(6) {
        let hs = b..(b + 6).min(n);
        let shares = |v: &Vec<smartlink_sim::HourStats>| {
            let mut c = vec![0u64; r.offers.len()];
            for h in &v[hs.clone()] {
                for (i, &x) in h.offer_clicks.iter().enumerate() {
                    c[i] += x as u64;
                }
            }
            let t = c.iter().sum::<u64>().max(1) as f64;
            c.iter().map(|&x| format!("{:3.0}", 100.0 * x as f64 / t)).collect::<Vec<_>>().join(" ")
        };
        let ratio = s[hs.clone()].iter().map(|h| h.expected).sum::<f64>()
            / o[hs.clone()].iter().map(|h| h.expected).sum::<f64>().max(1e-12);
        println!("h{:3}-{:3} {ratio:.3} | oracle {} | smart {}", hs.start, hs.end, shares(o), shares(s));
    }
    ExitCode::SUCCESS
}
