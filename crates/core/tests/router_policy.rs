//! The learning router as a policy: what it chooses, why, and with what
//! probability.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_core::router::{Candidate, CapView, Context, ConversionStatus, Reason, RouterState};

const T0: i64 = 1_767_571_200_000;

fn seg(country: &str) -> Segment {
    Segment { country: Country::parse(country).unwrap(), device: Device::Mobile, os: Os::Android }
}

fn cand(key: u32, payout: f64) -> Candidate {
    Candidate { key, payout, caps: CapView::default() }
}

/// Teaches `router` that offer `key` converts at `cr` in `segment`, with
/// immediate approved postbacks, over `clicks` clicks spread from `from`.
fn teach(
    router: &mut RouterState,
    key: u32,
    segment: Segment,
    cr: f64,
    clicks: usize,
    from: i64,
    rng: &mut Pcg64,
) -> i64 {
    let mut now = from;
    for _ in 0..clicks {
        now += 2_000;
        let ctx = Context { segment, hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
        router.on_click(key, &ctx);
        if rng.random::<f64>() < cr {
            router.on_conversion(key, segment, now, now, None, ConversionStatus::Approved);
        }
    }
    now
}

#[test]
fn propensity_is_the_probability_the_policy_chooses_with() {
    let mut rng = Pcg64::seed_from_u64(1);
    let mut r = RouterState::new();
    let s = seg("US");
    let mut now = T0;
    // Close offers, so the policy is genuinely random between them.
    for (key, cr) in [(1, 0.05), (2, 0.045), (3, 0.04)] {
        now = teach(&mut r, key, s, cr, 1500, now, &mut rng);
    }
    let cands = [cand(1, 1.0), cand(2, 1.0), cand(3, 1.0)];
    let ctx = Context { segment: s, hour: 1, now_ms: now };
    let n = 20_000;
    let mut count = [0u32; 3];
    let mut prop = [0.0f64; 3];
    for _ in 0..n {
        let c = r.choose(&cands, &ctx, &mut rng);
        count[c.index] += 1;
        prop[c.index] = c.propensity;
    }
    let sum: f64 = prop.iter().filter(|p| **p > 0.0).sum();
    assert!((sum - 1.0).abs() < 1e-9 || count.contains(&0), "propensities {prop:?}");
    for i in 0..3 {
        let freq = count[i] as f64 / n as f64;
        assert!((freq - prop[i]).abs() < 0.015, "offer {i}: chosen {freq:.3}, propensity {:.3}", prop[i]);
    }
    assert!(count.iter().filter(|&&c| c > 0).count() >= 2, "close offers share traffic: {count:?}");
}

#[test]
fn the_offer_with_the_best_posterior_mean_is_chosen_as_best_score_and_others_as_exploration() {
    let mut rng = Pcg64::seed_from_u64(2);
    let mut r = RouterState::new();
    let s = seg("DE");
    let mut now = T0;
    for (key, cr) in [(1, 0.03), (2, 0.06), (3, 0.028)] {
        now = teach(&mut r, key, s, cr, 800, now, &mut rng);
    }
    let cands = [cand(1, 1.0), cand(2, 1.0), cand(3, 1.0)];
    let ctx = Context { segment: s, hour: 2, now_ms: now };
    let est = r.estimates(&cands, &ctx);
    let best = (0..3).max_by(|&a, &b| est[a].score.total_cmp(&est[b].score)).unwrap();
    assert_eq!(cands[best].key, 2);
    let mut best_hits = 0;
    for _ in 0..2000 {
        let c = r.choose(&cands, &ctx, &mut rng);
        assert_eq!(c.reason == Reason::BestScore, c.index == best, "{c:?}");
        best_hits += (c.index == best) as u32;
    }
    assert!(best_hits > 1800, "a clearly better offer gets most clicks: {best_hits}");
}

#[test]
fn a_single_candidate_is_chosen_with_certainty() {
    let mut r = RouterState::new();
    let c =
        r.choose(&[cand(9, 2.0)], &Context { segment: seg("BR"), hour: 0, now_ms: T0 }, &mut Pcg64::seed_from_u64(3));
    assert_eq!((c.index, c.reason, c.propensity), (0, Reason::BestScore, 1.0));
}

#[test]
fn value_is_learned_conversion_rate_times_the_current_payout() {
    let mut rng = Pcg64::seed_from_u64(4);
    let mut r = RouterState::new();
    let s = seg("US");
    let mut now = T0;
    for (key, cr) in [(1, 0.05), (2, 0.05)] {
        now = teach(&mut r, key, s, cr, 3000, now, &mut rng);
    }
    let ctx = Context { segment: s, hour: 5, now_ms: now };
    let before = r.estimates(&[cand(1, 2.0), cand(2, 1.5)], &ctx);
    let after = r.estimates(&[cand(1, 0.5), cand(2, 1.5)], &ctx);
    // (Only the prior of an offer with no data depends on payouts.)
    assert!((after[0].value / before[0].value - 0.25).abs() < 0.005, "a payout cut scales the value at once");
    assert!((before[0].cr / after[0].cr - 1.0).abs() < 0.02, "the conversion rate is what is learned");
    let mut to_two = 0;
    for _ in 0..500 {
        to_two += (r.choose(&[cand(1, 0.5), cand(2, 1.5)], &ctx, &mut rng).index == 1) as u32;
    }
    assert!(to_two > 450, "the next clicks follow the new payouts: {to_two}");
}

#[test]
fn rejected_conversions_lower_the_value_of_an_offer() {
    let mut rng = Pcg64::seed_from_u64(5);
    let mut r = RouterState::new();
    let s = seg("GB");
    let mut now = T0;
    for i in 0..6000 {
        now += 2_000;
        let key = 1 + (i % 2) as u32;
        let ctx = Context { segment: s, hour: 0, now_ms: now };
        r.on_click(key, &ctx);
        if rng.random::<f64>() < 0.06 {
            // Offer 1's conversions are approved a third of the time, and
            // first arrive as pending.
            let approved = key == 2 || rng.random::<f64>() < 0.33;
            let last = if approved { ConversionStatus::Approved } else { ConversionStatus::Rejected };
            r.on_conversion(key, s, now, now, None, ConversionStatus::Pending);
            r.on_conversion(key, s, now, now + 1000, Some(ConversionStatus::Pending), last);
        }
    }
    let est = r.estimates(&[cand(1, 1.0), cand(2, 1.0)], &Context { segment: s, hour: 0, now_ms: now + 2000 });
    assert!((est[0].approval - 0.33).abs() < 0.1, "{:?}", est[0]);
    assert!(est[1].approval > 0.9);
    assert!(est[0].value < est[1].value * 0.5);
}

#[test]
fn young_clicks_are_not_counted_as_failures() {
    // Conversions take an hour to report. A burst of clicks in the last ten
    // minutes must not drag the estimate down.
    let mut rng = Pcg64::seed_from_u64(6);
    let mut r = RouterState::new();
    let s = seg("FR");
    let mut now = T0;
    let mut inflight = Vec::new();
    for _ in 0..20_000 {
        now += 3_000;
        r.on_click(1, &Context { segment: s, hour: 0, now_ms: now });
        if rng.random::<f64>() < 0.05 {
            let delay = (-(rng.random::<f64>().max(1e-12)).ln() * 3_600_000.0) as i64;
            inflight.push((now + delay, now));
        }
        inflight.retain(|&(at, click)| {
            if at <= now {
                r.on_conversion(1, s, click, at, None, ConversionStatus::Approved);
                false
            } else {
                true
            }
        });
    }
    let ctx = |t| Context { segment: s, hour: 0, now_ms: t };
    let settled = r.estimates(&[cand(1, 1.0)], &ctx(now))[0].cr;
    for _ in 0..2_000 {
        now += 300;
        r.on_click(1, &ctx(now));
    }
    let after_burst = r.estimates(&[cand(1, 1.0)], &ctx(now))[0].cr;
    assert!((settled - 0.05).abs() < 0.01, "estimate {settled}");
    assert!(after_burst > settled * 0.9, "a burst of young clicks moved the estimate from {settled} to {after_burst}");
}

#[test]
fn an_offer_about_to_hit_its_conversion_cap_gives_way_where_its_edge_is_small() {
    let mut rng = Pcg64::seed_from_u64(7);
    let mut r = RouterState::new();
    let (us, de) = (seg("US"), seg("DE"));
    let mut now = T0;
    now = teach(&mut r, 1, us, 0.1, 3000, now, &mut rng);
    now = teach(&mut r, 1, de, 0.1, 3000, now, &mut rng);
    now = teach(&mut r, 2, us, 0.02, 3000, now, &mut rng);
    now = teach(&mut r, 2, de, 0.09, 3000, now, &mut rng);
    // Offer 1 wins everywhere, but has only 150 conversions left for the
    // 2.5 hours to its reset, about half the US traffic's worth: its shadow
    // price rises until DE, where its edge is small, goes to offer 2, and
    // what is left of its cap goes to the US.
    let start = now;
    let mut left = 150i64;
    let mut de_to_1 = 0;
    let mut us_to_1 = 0;
    for i in 0..6000 {
        now += 1_500;
        let s = if i % 2 == 0 { us } else { de };
        let ctx = Context { segment: s, hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
        let caps = CapView {
            conversions_left: Some(left.max(0) as u64),
            secs_to_reset: (9_000 - (now - start) / 1000).max(1) as u32,
            ..Default::default()
        };
        let cands = [Candidate { key: 1, payout: 1.0, caps }, cand(2, 1.0)];
        let c = r.choose(if left > 0 { &cands[..] } else { &cands[1..] }, &ctx, &mut rng);
        let key = if left > 0 { cands[c.index].key } else { 2 };
        r.on_click(key, &ctx);
        // Offer 2 converts too (0.02 in the US, 0.09 in DE): a router that
        // learns hour-of-day effects within hours would otherwise take its
        // silence in these hours for a daily pattern.
        let cr = if key == 1 {
            0.1
        } else if s == us {
            0.02
        } else {
            0.09
        };
        if rng.random::<f64>() < cr {
            if key == 1 {
                left -= 1;
            }
            r.on_conversion(key, s, now, now, None, ConversionStatus::Approved);
        }
        if i >= 2000 && key == 1 {
            if s == de {
                de_to_1 += 1;
            } else {
                us_to_1 += 1;
            }
        }
    }
    assert!(de_to_1 * 5 < us_to_1, "offer 1's clicks go where its edge is large: US {us_to_1}, DE {de_to_1}");
    assert!(us_to_1 > 300, "and keeps using its cap in the US: {us_to_1} (DE {de_to_1}, left {left})");
    assert!(left <= 20, "its cap is used: {left} left");
}

#[test]
fn probabilities_are_the_propensities_the_next_clicks_are_drawn_with() {
    let mut rng = Pcg64::seed_from_u64(7);
    let mut r = RouterState::new();
    let s = seg("FR");
    let mut now = T0;
    for (key, cr) in [(1, 0.05), (2, 0.045), (3, 0.01)] {
        now = teach(&mut r, key, s, cr, 1500, now, &mut rng);
    }
    let cands = [cand(1, 1.0), cand(2, 1.0), cand(3, 1.0)];
    let ctx = Context { segment: s, hour: 3, now_ms: now };
    let (p, best) = r.probabilities(&cands, &ctx, &mut rng);
    assert_eq!(p.len(), 3);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
    assert!(best < 3);
    // The clicks that follow draw from exactly that policy.
    for _ in 0..200 {
        let c = r.choose(&cands, &ctx, &mut rng);
        assert!((c.propensity - p[c.index]).abs() < 1e-12, "{} vs {:?}", c.propensity, p);
    }
    // Reading it again without anything learned changes nothing.
    assert_eq!(r.probabilities(&cands, &ctx, &mut rng), (p, best));
    // One candidate: certain.
    assert_eq!(r.probabilities(&cands[..1], &ctx, &mut rng), (vec![1.0], 0));
}

#[test]
fn a_country_with_a_handful_of_clicks_is_routed_by_what_its_region_shows() {
    // Offer 1 is better in Western Europe (DE, FR, NL), offer 2 in South
    // America (BR, AR, CO); overall they are even. Austria (Western
    // Europe) and Chile (South America) have five clicks each.
    let mut rng = Pcg64::seed_from_u64(7);
    let mut r = RouterState::new();
    let mut now = T0;
    for (country, cr1, cr2) in [
        ("DE", 0.08, 0.03),
        ("FR", 0.08, 0.03),
        ("NL", 0.08, 0.03),
        ("BR", 0.03, 0.08),
        ("AR", 0.03, 0.08),
        ("CO", 0.03, 0.08),
    ] {
        now = teach(&mut r, 1, seg(country), cr1, 800, now, &mut rng);
        now = teach(&mut r, 2, seg(country), cr2, 800, now, &mut rng);
    }
    for country in ["AT", "CL"] {
        now = teach(&mut r, 1, seg(country), 0.0, 5, now, &mut rng);
        now = teach(&mut r, 2, seg(country), 0.0, 5, now, &mut rng);
    }
    let cands = [cand(1, 1.0), cand(2, 1.0)];
    let value = |r: &RouterState, country: &str| {
        let e = r.estimates(&cands, &Context { segment: seg(country), hour: 1, now_ms: now });
        (e[0].value, e[1].value)
    };
    let (at1, at2) = value(&r, "AT");
    let (cl1, cl2) = value(&r, "CL");
    assert!(at1 > 1.5 * at2, "Austria: offer 1 {at1:.4} vs offer 2 {at2:.4}");
    assert!(cl2 > 1.5 * cl1, "Chile: offer 2 {cl2:.4} vs offer 1 {cl1:.4}");
}
