//! Cost of [`classify`] on the click path: a mix of 20 UAs shaped like real
//! traffic (phones first, then desktops, tablets, in-app browsers and a
//! couple of oddities), classified in turn. Criterion reports the time for
//! the whole mix; the per-UA median is printed at the end.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smartlink_visitor::ua::{classify, ClientHints};

const MIX: [&str; 20] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.3.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
    "Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36 Instagram 315.0.0.29.109 Android (31/12; 420dpi; 1080x2400; samsung; SM-A525F; a52q; qcom; en_US; 556277216)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/122.0.6261.89 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 YaBrowser/24.1.5.82.00 SA/3 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; U; Android 9; en-US; SM-A105F Build/PPR1.180610.011) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/78.0.3904.108 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:124.0) Gecko/124.0 Firefox/124.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.92",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 OPR/108.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 9; KFMAWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/122.1.1 like Chrome/122.0.6261.105 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
    "Dalvik/2.1.0 (Linux; U; Android 13; SM-G991B Build/TP1A.220624.014)",
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ua");
    g.throughput(Throughput::Elements(MIX.len() as u64));
    g.bench_function("classify_mix_of_20", |b| {
        b.iter(|| {
            for ua in MIX {
                black_box(classify(black_box(ua), ClientHints::default()));
            }
        })
    });
    g.finish();
    report_median_per_ua();
}

/// Criterion's estimate is for the mix; this prints the median over many
/// timed rounds of the mix, divided by its size, as the per-UA figure.
/// A round takes well under a millisecond, so on a shared machine most
/// rounds run without being descheduled and the median is the CPU cost;
/// criterion's samples last tens of milliseconds and, under load, include
/// time spent waiting for a core.
fn report_median_per_ua() {
    const ROUNDS: usize = 2001;
    const REPS: u32 = 20;
    let mut per_ua_ns: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..REPS {
                for ua in MIX {
                    black_box(classify(black_box(ua), ClientHints::default()));
                }
            }
            t.elapsed().as_nanos() as f64 / f64::from(REPS) / MIX.len() as f64
        })
        .collect();
    per_ua_ns.sort_by(f64::total_cmp);
    let median = per_ua_ns[ROUNDS / 2];
    let fastest = per_ua_ns[0];
    println!(
        "ua/classify: median {median:.1} ns per UA (fastest round {fastest:.1} ns) over {ROUNDS} rounds of the {}-UA mix",
        MIX.len()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
