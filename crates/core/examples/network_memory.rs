//! Memory and decision time of a large network's routers: 1,000 smartlinks,
//! each routing over 50 of the network's 2,000 offers, fed realistic
//! country / device / OS traffic (100 countries, Zipf-skewed; smartlinks
//! Zipf-skewed too, so most are small) over simulated hours, with
//! conversions whose rate depends on the offer and the country.
//!
//! `cargo run --release -p smartlink-core --example network_memory -- [clicks] [hours]`
//! (default 10,000,000 clicks over 24 hours: 116 clicks a second across
//! the network; the routers' refresh cadence is in event time, so the
//! rate matters). Prints, at each quarter of the run: the process's
//! resident memory, the learned cells summed over all routers and those
//! folded so far, the cached policies, and the mean time of one decision
//! (`choose` + `on_click`) over that quarter. Deterministic (seeded).
//! `NETWORK=secs`: the network prior rebuilt every `secs` of simulated time
//! and handed to every router (as the server does); prints its cost.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_core::router::{Candidate, Context, ConversionStatus, NetworkPrior, RouterState};

const SMARTLINKS: usize = 1_000;
const NETWORK_OFFERS: u32 = 2_000;
const POOL: usize = 50;
const T0: i64 = 1_767_571_200_000;

const COUNTRIES: [&str; 100] = [
    "US", "IN", "BR", "ID", "MX", "GB", "DE", "FR", "PH", "VN", "TH", "TR", "EG", "NG", "PK", "BD", "RU", "JP", "KR",
    "IT", "ES", "CA", "AU", "AR", "CO", "PE", "CL", "ZA", "KE", "MA", "DZ", "SA", "AE", "IR", "IQ", "UA", "PL", "NL",
    "BE", "SE", "NO", "DK", "FI", "AT", "CH", "CZ", "SK", "HU", "RO", "BG", "GR", "PT", "IE", "IL", "JO", "LB", "TN",
    "GH", "CI", "SN", "CM", "ET", "TZ", "UG", "MY", "SG", "TW", "HK", "NZ", "VE", "EC", "BO", "PY", "UY", "GT", "HN",
    "SV", "NI", "CR", "PA", "DO", "CU", "JM", "TT", "KZ", "UZ", "AZ", "GE", "AM", "BY", "LT", "LV", "EE", "RS", "HR",
    "SI", "BA", "AL", "MK", "NP",
];

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0)
}

/// An index in `0..n`, low indices most frequent (1/k).
fn zipf(rng: &mut Pcg64, cdf: &[f64]) -> usize {
    let x = rng.random::<f64>() * cdf[cdf.len() - 1];
    cdf.partition_point(|c| *c < x).min(cdf.len() - 1)
}

fn cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    (1..=n)
        .map(|k| {
            acc += 1.0 / (k as f64).powf(s);
            acc
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let clicks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let hours: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(24.0);
    let mut rng = Pcg64::seed_from_u64(7);
    let base = rss_mib();
    let payout: Vec<f64> = (0..=NETWORK_OFFERS).map(|_| rng.random_range(0.5..8.0)).collect();
    let pools: Vec<Vec<Candidate>> = (0..SMARTLINKS)
        .map(|_| {
            let mut keys: Vec<u32> = Vec::with_capacity(POOL);
            while keys.len() < POOL {
                let k = rng.random_range(1..=NETWORK_OFFERS);
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            keys.into_iter()
                .map(|key| Candidate { key, payout: payout[key as usize], caps: Default::default() })
                .collect()
        })
        .collect();
    let mut routers: Vec<RouterState> = (0..SMARTLINKS).map(|_| RouterState::new()).collect();
    let countries: Vec<Country> = COUNTRIES.iter().map(|c| Country::parse(c).unwrap()).collect();
    let (link_cdf, country_cdf) = (cdf(SMARTLINKS, 1.0), cdf(COUNTRIES.len(), 1.1));
    // An offer's conversion rate in a country: a base rate times a
    // per-(offer, country) factor (hashed, so no table).
    let cr = |offer: u32, country: usize, device: usize| {
        let h = ((offer as u64 * 2_654_435_761) ^ (country as u64 * 40_503)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let factor = 0.2 + 1.6 * (h % 1000) as f64 / 1000.0;
        (0.004 + 0.02 * (offer % 7) as f64 / 7.0) * factor * [1.0, 0.8, 1.2][device]
    };
    println!("{SMARTLINKS} smartlinks × {POOL} offers (of {NETWORK_OFFERS}), {clicks} clicks over {hours} hours");
    println!(
        "{:>12} {:>10} {:>14} {:>14} {:>16} {:>16}",
        "clicks", "RSS MiB", "learned cells", "folded cells", "cached policies", "ns per decision"
    );
    let step = ((hours * 3_600_000.0 / clicks as f64) as i64).max(1);
    let mut now = T0;
    let quarter = clicks.div_ceil(4);
    // NETWORK=secs: rebuild the network prior every `secs` of simulated
    // time and give it to every router, as `server::priors` does.
    let network_every: Option<i64> =
        std::env::var("NETWORK").ok().and_then(|v| v.parse::<i64>().ok()).map(|s| s * 1000);
    let mut next_network = T0 + network_every.unwrap_or(0);
    let mut rebuilds = Vec::new();
    let mut t = Instant::now();
    for i in 1..=clicks {
        now += step;
        if let Some(every) = network_every.filter(|_| now >= next_network) {
            next_network = now + every;
            let started = Instant::now();
            let prior = std::sync::Arc::new(NetworkPrior::build(routers.iter(), now));
            for r in &mut routers {
                r.set_network(Some(prior.clone()));
            }
            rebuilds.push(started.elapsed().as_secs_f64() * 1000.0);
            // Not counted as decision time.
            t += started.elapsed();
        }
        let link = zipf(&mut rng, &link_cdf);
        let country = zipf(&mut rng, &country_cdf);
        // Device::ALL is desktop, mobile, tablet: 30%, 60%, 10%.
        let device = match rng.random_range(0..10) {
            0..=2 => 0,
            3..=8 => 1,
            _ => 2,
        };
        let os = match device {
            0 => [Os::Windows, Os::Macos, Os::Linux][rng.random_range(0..3)],
            _ => [Os::Android, Os::Android, Os::Ios][rng.random_range(0..3)],
        };
        let segment = Segment { country: countries[country], device: Device::ALL[device], os };
        let ctx = Context { segment, hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
        let r = &mut routers[link];
        let choice = r.choose(&pools[link], &ctx, &mut rng);
        let offer = pools[link][choice.index].key;
        r.on_click(offer, &ctx);
        if rng.random::<f64>() < cr(offer, country, device) {
            r.on_conversion(offer, segment, now, now, None, ConversionStatus::Approved);
        }
        if i % quarter == 0 || i == clicks {
            let per = t.elapsed().as_nanos() as f64 / (i - (i - 1) / quarter * quarter) as f64;
            let cells: usize = routers.iter().map(RouterState::cells).sum();
            let folded: u64 = routers.iter().map(RouterState::folded_cells).sum();
            let policies: usize = routers.iter().map(RouterState::cached_policies).sum();
            println!("{i:>12} {:>10.0} {cells:>14} {folded:>14} {policies:>16} {per:>16.0}", rss_mib() - base);
            t = Instant::now();
        }
    }
    if let Some(last) = rebuilds.last() {
        let mean = rebuilds.iter().sum::<f64>() / rebuilds.len() as f64;
        println!(
            "network prior: {} rebuilds (build + hand-over to every router), mean {mean:.0} ms, last {last:.0} ms",
            rebuilds.len()
        );
    }
}
