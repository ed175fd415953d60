//! Network priors (issue 20): what the network's routers learned about an
//! offer is the prior above a smartlink's own learning, so a new smartlink
//! routes well from its first clicks, and one with data of its own still
//! follows it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_core::router::{Candidate, CapView, Context, ConversionStatus, NetworkPrior, RouterState};

const T0: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

fn segments() -> [Segment; 3] {
    let s = |c: &str| Segment { country: Country::parse(c).unwrap(), device: Device::Mobile, os: Os::Android };
    [s("US"), s("DE"), s("BR")]
}

fn cands() -> Vec<Candidate> {
    (1..=3).map(|key| Candidate { key, payout: 1.0, caps: CapView::default() }).collect()
}

/// True conversion rates: each segment has its own best offer, 2–3× the
/// others, and the offers are equal overall.
const CR: [[f64; 3]; 3] = [[0.10, 0.05, 0.03], [0.03, 0.10, 0.05], [0.05, 0.03, 0.10]];

/// Routes `clicks` clicks (one every 5 s from `from`, segments in turn)
/// through `r`, conversions at `cr` reported at once; returns the share
/// of them that went to their segment's best offer under `cr`.
fn route(r: &mut RouterState, cr: &[[f64; 3]; 3], clicks: usize, from: i64, rng: &mut Pcg64) -> f64 {
    let cands = cands();
    let mut best = 0;
    for i in 0..clicks {
        let now = from + i as i64 * 5_000;
        let si = i % 3;
        let seg = segments()[si];
        let ctx = Context { segment: seg, hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
        let pick = r.choose(&cands, &ctx, rng).index;
        let top = (0..3).max_by(|&a, &b| cr[si][a].total_cmp(&cr[si][b])).unwrap();
        best += (pick == top) as usize;
        r.on_click(cands[pick].key, &ctx);
        if rng.random::<f64>() < cr[si][pick] {
            r.on_conversion(cands[pick].key, seg, now, now, None, ConversionStatus::Approved);
        }
    }
    best as f64 / clicks as f64
}

/// A router that has seen two days of traffic under `cr`.
fn learned(cr: &[[f64; 3]; 3], seed: u64) -> RouterState {
    // Trained once per (rates, seed) for all the tests of this file.
    type Cache = Mutex<HashMap<(u64, u64), RouterState>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let id = (cr[0][0].to_bits(), seed);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().unwrap().get(&id) {
        return r.clone();
    }
    let mut r = RouterState::new();
    route(&mut r, cr, 34_560, T0, &mut Pcg64::seed_from_u64(seed));
    cache.lock().unwrap().insert(id, r.clone());
    r
}

#[test]
fn a_new_smartlink_over_offers_learned_elsewhere_routes_like_the_old_one_within_its_first_100_clicks() {
    // Shares of clicks sent to their segment's best offer: the old router,
    // a new one given the network learned from it, a new one alone; over
    // the first 50 clicks and the next 50.
    let start = T0 + 2 * 86_400_000;
    let mut shares = [[0.0; 2]; 3];
    let seeds = 1..=6u64;
    for seed in seeds.clone() {
        // Three smartlinks over the same offers and traffic.
        let mut old = learned(&CR, seed);
        let (b, c) = (learned(&CR, seed + 10), learned(&CR, seed + 20));
        let net = Arc::new(NetworkPrior::build([&old, &b, &c], start));
        assert_eq!(net.routers(), 3);
        assert!(net.knows(1) && !net.knows(4));
        let mut new = RouterState::new();
        new.set_network(Some(net));
        let mut alone = RouterState::new();
        for (i, r) in [&mut old, &mut new, &mut alone].into_iter().enumerate() {
            let mut rng = Pcg64::seed_from_u64(100 + seed);
            shares[i][0] += route(r, &CR, 50, start, &mut rng);
            shares[i][1] += route(r, &CR, 50, start + 250_000, &mut rng);
        }
    }
    let n = seeds.count() as f64;
    let [old, with, alone] = shares.map(|s| s.map(|x| x / n));
    eprintln!(
        "clicks 1-50 and 51-100 to the best offer: old {old:.2?}, new with the network {with:.2?}, alone {alone:.2?}"
    );
    assert!(with[1] >= old[1] - 0.05, "clicks 51-100: new {:.2} vs old {:.2}", with[1], old[1]);
    assert!(with[0] >= alone[0] + 0.3, "clicks 1-50: with the network {:.2}, alone {:.2}", with[0], alone[0]);
}

#[test]
fn a_smartlink_whose_own_traffic_differs_follows_its_own_data_over_the_network() {
    // The network learned one ranking; this smartlink's traffic has the
    // opposite one in every segment, and two days of it.
    let reversed: [[f64; 3]; 3] = std::array::from_fn(|s| std::array::from_fn(|o| CR[s][2 - o]));
    let start = T0 + 2 * 86_400_000;
    let mut share = 0.0;
    for seed in 1..=3u64 {
        let elsewhere = learned(&CR, seed);
        let mut mine = learned(&reversed, 50 + seed);
        let net = Arc::new(NetworkPrior::build([&elsewhere, &mine], start));
        mine.set_network(Some(net));
        share += route(&mut mine, &reversed, 300, start, &mut Pcg64::seed_from_u64(200 + seed)) / 3.0;
    }
    assert!(share >= 0.8, "{share:.2} of its clicks to its own best offers");
}

#[test]
fn a_network_prior_changes_estimates_never_what_a_router_learns() {
    let start = T0 + 2 * 86_400_000;
    let old = learned(&CR, 7);
    let net = Arc::new(NetworkPrior::build([&old], start));
    let (mut a, mut b) = (RouterState::new(), RouterState::new());
    b.set_network(Some(net));
    let seg = segments()[0];
    let ctx = Context { segment: seg, hour: 0, now_ms: start };
    assert_ne!(a.estimates(&cands(), &ctx), b.estimates(&cands(), &ctx));
    for i in 0..200 {
        let now = start + i * 1_000;
        let ctx = Context { segment: seg, hour: 0, now_ms: now };
        a.on_click(1 + (i % 3) as u32, &ctx);
        b.on_click(1 + (i % 3) as u32, &ctx);
        if i % 7 == 0 {
            a.on_conversion(1, seg, now, now, None, ConversionStatus::Approved);
            b.on_conversion(1, seg, now, now, None, ConversionStatus::Approved);
        }
    }
    assert!(a.same_learning(&b));
}

#[test]
fn a_young_smartlink_whose_traffic_ranks_the_offers_otherwise_is_not_starved_by_the_network() {
    // Three routers agree on a ranking; a new smartlink's traffic has the
    // opposite one in two of the three segments. It must find its own best
    // offers (alone it does within ~1,000 clicks).
    let reversed: [[f64; 3]; 3] = std::array::from_fn(|s| std::array::from_fn(|o| CR[s][2 - o]));
    let start = T0 + 2 * 86_400_000;
    for seed in 1..=3u64 {
        let routers = [learned(&CR, seed), learned(&CR, seed + 10), learned(&CR, seed + 20)];
        let net = Arc::new(NetworkPrior::build(&routers, start));
        let mut mine = RouterState::new();
        mine.set_network(Some(net));
        let mut rng = Pcg64::seed_from_u64(300 + seed);
        let mut shares = Vec::new();
        for block in 0..8 {
            shares.push(route(&mut mine, &reversed, 500, start + block * 2_500_000, &mut rng));
        }
        eprintln!("seed {seed}: share to its own best offers per 500 clicks {shares:.2?}");
        assert!(shares[7] >= 0.9, "seed {seed}: still {:.2} after 3,500 clicks: {shares:.2?}", shares[7]);
    }
}
