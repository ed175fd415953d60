//! `RouterState::choose` on a 50-offer pool: the steady state (the cached
//! per-segment policy is reused, as for almost every click) and the
//! refresh (Monte-Carlo Thompson draws, once per segment every few minutes
//! or when the candidates change), plus `on_click`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_core::router::{Candidate, Context, ConversionStatus, RouterState};

const T0: i64 = 1_767_571_200_000;
const OFFERS: u32 = 50;

fn segment(i: usize) -> Segment {
    let countries = ["US", "GB", "DE", "FR", "BR", "IN", "ID", "MX"];
    Segment {
        country: Country::parse(countries[i % 8]).unwrap(),
        device: Device::ALL[i % 3],
        os: [Os::Android, Os::Ios, Os::Windows][i % 3],
    }
}

/// A router that has seen a day of traffic on 50 offers and 24 segments.
fn trained() -> (RouterState, Vec<Candidate>, i64) {
    let mut rng = Pcg64::seed_from_u64(1);
    let mut r = RouterState::new();
    let cands: Vec<Candidate> =
        (1..=OFFERS).map(|k| Candidate { key: k, payout: 0.5 + k as f64 * 0.1, caps: Default::default() }).collect();
    let segments: Vec<Segment> = (0..24).map(segment).collect();
    let mut now = T0;
    for i in 0..200_000 {
        now += 400;
        let seg = segments[i % 24];
        let key = rng.random_range(1..=OFFERS);
        let ctx = Context { segment: seg, hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
        r.on_click(key, &ctx);
        if rng.random::<f64>() < 0.02 + 0.001 * key as f64 {
            r.on_conversion(key, seg, now, now, None, ConversionStatus::Approved);
        }
    }
    (r, cands, now)
}

fn bench(c: &mut Criterion) {
    let (mut r, cands, start) = trained();
    let mut rng = Pcg64::seed_from_u64(2);
    let seg = segment(0);

    // One click every 100 ms on this segment (36 000 an hour): the cached
    // policy is refreshed every few thousand clicks.
    let mut now = start;
    c.bench_function("choose/50 offers/steady state", |b| {
        b.iter(|| {
            now += 100;
            let ctx = Context { segment: seg, hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
            black_box(r.choose(black_box(&cands), &ctx, &mut rng))
        })
    });

    // Every call sees a changed candidate list, so every call recomputes the
    // policy: the worst case.
    let mut alt = cands.clone();
    let mut flip = false;
    c.bench_function("choose/50 offers/policy refresh", |b| {
        b.iter(|| {
            flip = !flip;
            alt[0].payout = if flip { 1.0 } else { 1.1 };
            let ctx = Context { segment: seg, hour: 12, now_ms: now };
            black_box(r.choose(black_box(&alt), &ctx, &mut rng))
        })
    });

    let segments: Vec<Segment> = (0..24).map(segment).collect();
    let mut key = 0u32;
    c.bench_function("on_click", |b| {
        b.iter(|| {
            now += 50;
            key = key % OFFERS + 1;
            let ctx =
                Context { segment: segments[key as usize % 24], hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
            r.on_click(black_box(key), &ctx)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
