//! Cost of the traffic-quality check on the click path: [`Behaviour::observe`]
//! then [`judge`], as the server calls them, over a mix of 16 browser UAs and
//! 4 bots and previews, from 50,000 IPs (each click a new IP from the pool,
//! so the sketch's cache lines are as cold as under real traffic). The
//! behaviour counters are pre-filled with a minute of traffic. Criterion
//! reports the time for 20 clicks; at the end the median per click is
//! printed, for browsers and for bots separately.

mod support;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use support::median;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smartlink_visitor::quality::{judge, Behaviour, BehaviourConfig, NetworkSignals, Reasons, RequestSignals};
use smartlink_visitor::types::{Country, Language};
use smartlink_visitor::ua::{classify, ClientHints};

const BROWSERS: [&str; 16] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.3.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
    "Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36 Instagram 315.0.0.29.109 Android (31/12; 420dpi; 1080x2400; samsung; SM-A525F; a52q; qcom; en_US; 556277216)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:124.0) Gecko/124.0 Firefox/124.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/300.0.598994205 Mobile/15E148 Safari/604.1",
];

const BOTS: [&str; 4] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "curl/8.4.0",
];

const IPS: u32 = 50_000;
const T0: i64 = 1_767_571_200_000;

/// One click as the server has it before the quality check.
struct Click {
    ua: &'static str,
    req: RequestSignals<'static>,
    dup_key: u64,
}

fn mix() -> Vec<Click> {
    let countries = ["US", "DE", "BR", "IN", "GB"];
    let languages = ["en", "de", "pt", "hi", "en"];
    BROWSERS
        .iter()
        .chain(BOTS.iter())
        .enumerate()
        .map(|(i, &ua)| {
            let desktop_chrome = ua.contains("Windows NT") && ua.contains("Chrome/");
            let hints = if desktop_chrome {
                ClientHints { mobile: Some("?0"), platform: Some("\"Windows\"") }
            } else {
                ClientHints::default()
            };
            let req = RequestSignals {
                ua,
                ua_info: classify(ua, ClientHints::default()),
                hints,
                country: Country::parse(countries[i % 5]).unwrap(),
                language: Some(Language::parse(languages[i % 5]).unwrap()),
                has_accept_language: true,
                has_accept: true,
                network: NetworkSignals { datacenter: i % 7 == 0, ..NetworkSignals::default() },
            };
            Click { ua, req, dup_key: i as u64 * 0x9e37_79b9 }
        })
        .collect()
}

/// A pseudo-random IPv4 address from the pool.
fn ip(n: u32) -> Option<IpAddr> {
    let x = (n % IPS).wrapping_mul(2_654_435_761) ^ 0x5bd1_e995;
    Some(IpAddr::V4(Ipv4Addr::from(x)))
}

/// A behaviour pre-filled with a minute of traffic from the pool.
fn warm_behaviour(clicks: &[Click]) -> Behaviour {
    let b = Behaviour::new(BehaviourConfig::default());
    for n in 0..IPS {
        let c = &clicks[n as usize % clicks.len()];
        b.observe(ip(n), c.ua, c.dup_key, T0 + i64::from(n));
    }
    b
}

fn bench(c: &mut Criterion) {
    smartlink_visitor::bot::warm_up();
    let clicks = mix();
    let behaviour = warm_behaviour(&clicks);
    println!("quality/behaviour: {} bytes", behaviour.memory_bytes());
    let mut n = 0u32;
    let mut g = c.benchmark_group("quality");
    g.throughput(Throughput::Elements(clicks.len() as u64));
    g.bench_function("observe_and_judge_mix_of_20", |b| {
        b.iter(|| {
            for click in &clicks {
                n = n.wrapping_add(7919);
                let now = T0 + 60_000 + i64::from(n % 60_000);
                let reasons = behaviour.observe(ip(n), click.ua, click.dup_key, now);
                black_box(judge(black_box(&click.req), reasons));
            }
        })
    });
    // The rate counters as a busy server sizes them (`capacity_ips`
    // 5,000,000: 26 MB of cells, far beyond the caches), so nearly every
    // access misses, as on the redirect benchmark.
    let big = Behaviour::with_capacity(BehaviourConfig::default(), 5_000_000);
    g.throughput(Throughput::Elements(1));
    g.bench_function("observe_sized_for_5m_ips", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919);
            let click = &clicks[n as usize % clicks.len()];
            black_box(big.observe(
                Some(IpAddr::V4(Ipv4Addr::from(n.wrapping_mul(2_654_435_761)))),
                click.ua,
                0,
                T0 + i64::from(n % 60_000),
            ))
        })
    });
    g.finish();
    report_medians(&behaviour, &clicks);
}

/// Median time per click: each click of the mix is timed on its own (many
/// calls per sample, each from another IP; many samples), and the median of
/// the per-click medians is reported, with browsers and bots separately.
fn report_medians(behaviour: &Behaviour, clicks: &[Click]) {
    const SAMPLES: usize = 301;
    const CALLS: u32 = 200;
    let mut n = 0u32;
    let per_click: Vec<f64> = clicks
        .iter()
        .map(|click| {
            let mut samples: Vec<f64> = (0..SAMPLES)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..CALLS {
                        n = n.wrapping_add(7919);
                        let now = T0 + 120_000 + i64::from(n % 60_000);
                        let reasons = behaviour.observe(black_box(ip(n)), black_box(click.ua), click.dup_key, now);
                        black_box(judge(black_box(&click.req), reasons));
                    }
                    t.elapsed().as_nanos() as f64 / f64::from(CALLS)
                })
                .collect();
            median(&mut samples)
        })
        .collect();
    let time = |f: &mut dyn FnMut(&Click)| {
        let mut per: Vec<f64> = clicks
            .iter()
            .map(|click| {
                let mut samples: Vec<f64> = (0..SAMPLES)
                    .map(|_| {
                        let t = Instant::now();
                        for _ in 0..CALLS {
                            f(click);
                        }
                        t.elapsed().as_nanos() as f64 / f64::from(CALLS)
                    })
                    .collect();
                median(&mut samples)
            })
            .collect();
        median(&mut per)
    };
    let observe = time(&mut |click| {
        n = n.wrapping_add(7919);
        let now = T0 + 180_000 + i64::from(n % 60_000);
        black_box(behaviour.observe(black_box(ip(n)), black_box(click.ua), click.dup_key, now));
    });
    let judge_only = time(&mut |click| {
        black_box(judge(black_box(&click.req), Reasons::NONE));
    });
    println!("quality/parts: median observe {observe:.0} ns, judge {judge_only:.0} ns per click");
    let (browsers, bots) = per_click.split_at(BROWSERS.len());
    println!(
        "quality/observe+judge: median {:.0} ns per click over the {}-UA mix (browsers {:.0} ns, bots {:.0} ns; slowest {:.0} ns)",
        median(&mut per_click.clone()),
        clicks.len(),
        median(&mut browsers.to_vec()),
        median(&mut bots.to_vec()),
        per_click.iter().copied().fold(0.0, f64::max),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
