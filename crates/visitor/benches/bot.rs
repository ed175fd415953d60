//! Cost of [`classify_ua`] on the click path, over a mix of 20 UAs: twelve
//! browsers and in-app browsers (the common case, where nothing matches)
//! and eight bots, previews and tools (where rules are checked and ranked).
//! Criterion reports the time for the whole mix; at the end the median per
//! UA is printed, and the median for browsers and for bots separately,
//! because the two paths cost differently.

mod support;
use std::hint::black_box;
use std::time::{Duration, Instant};
use support::median;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smartlink_visitor::bot::{classify_ua, warm_up};

const BROWSERS: [&str; 12] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.3.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
    "Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36 Instagram 315.0.0.29.109 Android (31/12; 420dpi; 1080x2400; samsung; SM-A525F; a52q; qcom; en_US; 556277216)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Snapchat/12.77.0.44 (like Safari/604.1)",
    "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.92",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/300.0.598994205 Mobile/15E148 Safari/604.1",
];

const BOTS: [&str; 8] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "curl/8.4.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 Safari/537.36",
    "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
];

fn mix() -> Vec<&'static str> {
    BROWSERS.iter().chain(BOTS.iter()).copied().collect()
}

fn bench(c: &mut Criterion) {
    let t = Instant::now();
    warm_up();
    println!("bot/warm_up: matcher built in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let mix = mix();
    let mut g = c.benchmark_group("bot");
    g.throughput(Throughput::Elements(mix.len() as u64));
    g.bench_function("classify_ua_mix_of_20", |b| {
        b.iter(|| {
            for ua in &mix {
                black_box(classify_ua(black_box(ua)));
            }
        })
    });
    g.finish();
    report_medians(&mix);
}

/// Median time per UA: each UA is timed on its own (many calls per sample,
/// many samples), and the median of the per-UA medians is reported, with the
/// browser and bot halves separately.
fn report_medians(mix: &[&str]) {
    const SAMPLES: usize = 301;
    const CALLS: u32 = 200;
    let per_ua: Vec<f64> = mix
        .iter()
        .map(|ua| {
            let mut samples: Vec<f64> = (0..SAMPLES)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..CALLS {
                        black_box(classify_ua(black_box(ua)));
                    }
                    t.elapsed().as_nanos() as f64 / f64::from(CALLS)
                })
                .collect();
            median(&mut samples)
        })
        .collect();
    let (browsers, bots) = per_ua.split_at(BROWSERS.len());
    println!(
        "bot/classify_ua: median {:.0} ns per UA over the {}-UA mix (browsers {:.0} ns, bots {:.0} ns; slowest UA {:.0} ns)",
        median(&mut per_ua.clone()),
        mix.len(),
        median(&mut browsers.to_vec()),
        median(&mut bots.to_vec()),
        per_ua.iter().copied().fold(0.0, f64::max),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
