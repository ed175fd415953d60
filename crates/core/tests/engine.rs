//! Properties of the whole per-click decision (`engine::decide`), of
//! diverted clicks (`engine::divert`) and of conversions
//! (`engine::apply_conversion`).

use std::sync::Arc;

use proptest::prelude::*;
use rand::SeedableRng;
use smartlink_core::caps::OfferCounters;
use smartlink_core::clickid::{ClickFacts, ClickIdCodec};
use smartlink_core::engine::{
    apply_conversion, decide, divert, ClickInput, ConversionEffect, Decision, FallbackReason, Outcome,
};
use smartlink_core::model::{
    Affiliate, Browser, Caps, Catalog, Country, Currency, Device, Id, Offer, Os, Override, Segment, Smartlink, Status,
    Strategy as Routing,
};
use smartlink_core::router::{ConversionStatus, Reason, SharedRouter};
use smartlink_core::targeting::{CountrySet, Targeting, Visitor};
use smartlink_core::template::{MacroSet, Template};

const COUNTRIES: [&str; 4] = ["US", "DE", "BR", "IN"];
const T0: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

#[derive(Clone, Debug)]
struct OfferGen {
    paused: bool,
    countries: Option<Vec<usize>>,
    devices: Option<Vec<usize>>,
    cap: Option<u64>,
    payout: f64,
}

fn offer_gen() -> impl Strategy<Value = OfferGen> {
    (
        prop::bool::weighted(0.2),
        prop::option::of(prop::collection::vec(0..4usize, 1..3)),
        prop::option::of(prop::collection::vec(0..3usize, 1..3)),
        prop::option::of(0..20u64),
        0.1..10.0f64,
    )
        .prop_map(|(paused, countries, devices, cap, payout)| OfferGen { paused, countries, devices, cap, payout })
}

fn catalog(gens: &[OfferGen], strategy: Routing) -> Catalog {
    let offers = gens
        .iter()
        .enumerate()
        .map(|(i, g)| Offer {
            key: i as u32 + 1,
            id: Id::parse(&format!("o{i}")).unwrap(),
            advertiser: Id::parse("adv").unwrap(),
            url: Template::parse(&format!("https://o{i}.example/?c={{click_id}}&s={{sub1}}"), MacroSet::Redirect)
                .unwrap(),
            payout: g.payout,
            currency: Currency::USD,
            payout_base: g.payout,
            targeting: Targeting {
                countries: g
                    .countries
                    .as_ref()
                    .map(|cs| CountrySet::from_iter(cs.iter().map(|&c| Country::parse(COUNTRIES[c]).unwrap()))),
                devices: g.devices.as_ref().map_or(u8::MAX, |d| {
                    Targeting::device_mask(&d.iter().map(|&i| Device::ALL[i]).collect::<Vec<_>>())
                }),
                ..Default::default()
            },
            caps: Caps { daily_clicks: g.cap, ..Default::default() },
            status: if g.paused { Status::Paused } else { Status::Active },
            attribution_window_secs: 30 * 86_400,
            min_ctit_secs: 0,
            counters: Arc::new(OfferCounters::default()),
        })
        .collect();
    let sl = Smartlink {
        key: 1,
        slug: Id::parse("s").unwrap(),
        affiliate: None,
        offers: (0..gens.len()).collect(),
        fallback_url: Some(Template::parse("https://fallback.example/?c={country}", MacroSet::Redirect).unwrap()),
        fallback_link: None,
        source: None,
        cost_model: None,
        cost_rate: 1.0,
        overrides: vec![],
        strategy,
        quality: Default::default(),
        router: Arc::new(SharedRouter::default()),
    };
    Catalog::new(offers, vec![sl], vec![])
}

fn visitor(c: usize, d: usize) -> Visitor {
    Visitor {
        segment: Segment { country: Country::parse(COUNTRIES[c]).unwrap(), device: Device::ALL[d], os: Os::Android },
        browser: Browser::Chrome,
        language: None,
    }
}

fn eligible(g: &OfferGen, v: &Visitor) -> bool {
    !g.paused
        && g.countries.as_ref().is_none_or(|cs| cs.iter().any(|&c| COUNTRIES[c] == v.segment.country.as_str()))
        && g.devices.as_ref().is_none_or(|ds| ds.iter().any(|&d| Device::ALL[d] == v.segment.device))
}

fn strategies() -> impl Strategy<Value = Routing> {
    prop_oneof![
        Just(Routing::Auto),
        Just(Routing::Priority),
        Just(Routing::Weighted(vec![1.0, 0.0, 2.0, 3.0, 1.0, 1.0]))
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Paused, non-matching and capped offers are never chosen; daily click
    /// caps are never exceeded; a fallback happens only when nothing is
    /// eligible, with the right reason.
    #[test]
    fn only_eligible_offers_are_chosen_and_caps_hold(
        gens in prop::collection::vec(offer_gen(), 0..6),
        clicks in prop::collection::vec((0..4usize, 0..3usize), 1..300),
        strategy in strategies(),
        seed in any::<u64>(),
    ) {
        let cat = catalog(&gens, strategy);
        let sl = &cat.smartlinks[0];
        let codec = ClickIdCodec::new(b"k");
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut taken = vec![0u64; gens.len()];
        for (i, (c, d)) in clicks.into_iter().enumerate() {
            let v = visitor(c, d);
            let input = ClickInput { now_ms: T0 + i as i64 * 1000, visitor: v, subs: [""; 5], aff: None, counted: true, flags: 0, source: None };
            let dec = decide(&cat, sl, &input, &codec, &mut rng);
            let open: Vec<usize> = (0..gens.len()).filter(|&k| eligible(&gens[k], &v) && gens[k].cap.is_none_or(|cap| taken[k] < cap)).collect();
            match dec.outcome {
                Outcome::Offer(k) => {
                    prop_assert!(open.contains(&k), "chose ineligible offer {k}; open {open:?}");
                    taken[k] += 1;
                    prop_assert!(dec.propensity > 0.0 && dec.propensity <= 1.0);
                    let prefix = format!("https://o{k}.example/?c=");
                    prop_assert!(dec.url.starts_with(&prefix));
                }
                Outcome::Fallback(reason) => {
                    prop_assert!(open.is_empty(), "fell back ({reason:?}) with {open:?} open");
                    let want = if gens.is_empty() { FallbackReason::EmptyPool }
                        else if gens.iter().all(|g| g.paused) { FallbackReason::AllPaused }
                        else if !gens.iter().any(|g| eligible(g, &v)) { FallbackReason::NoTargetingMatch }
                        else { FallbackReason::AllCapped };
                    prop_assert_eq!(reason, want);
                    prop_assert_eq!(dec.reason, Reason::Fallback);
                    prop_assert!(dec.url.starts_with("https://fallback.example/?c="));
                }
            }
            prop_assert_eq!(codec.decode(&dec.click_id).unwrap(), dec.facts);
        }
        for (k, g) in gens.iter().enumerate() {
            if let Some(cap) = g.cap {
                prop_assert!(taken[k] <= cap);
                prop_assert_eq!(cat.offers[k].counters.clicks(20458), taken[k]);
            }
        }
    }
}

#[test]
fn override_wins_when_its_offer_is_eligible_and_yields_when_not() {
    let gens = vec![
        OfferGen { paused: false, countries: None, devices: None, cap: Some(1), payout: 1.0 },
        OfferGen { paused: false, countries: None, devices: None, cap: None, payout: 9.0 },
    ];
    let mut cat = catalog(&gens, Routing::Priority);
    cat.smartlinks[0].overrides.push(Override {
        countries: Some(vec![Country::parse("US").unwrap()]),
        devices: None,
        os: None,
        offer: 0,
    });
    let sl = &cat.smartlinks[0];
    let codec = ClickIdCodec::new(b"k");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let click = |c| ClickInput {
        now_ms: T0,
        visitor: visitor(c, 0),
        subs: [""; 5],
        aff: None,
        counted: true,
        flags: 0,
        source: None,
    };
    let d = decide(&cat, sl, &click(0), &codec, &mut rng);
    assert_eq!((d.outcome, d.reason, d.propensity), (Outcome::Offer(0), Reason::Override, 1.0));
    // The override's offer is now capped: routing falls through to the pool.
    let d = decide(&cat, sl, &click(0), &codec, &mut rng);
    assert_eq!((d.outcome, d.reason), (Outcome::Offer(1), Reason::Priority));
    // Other countries never match the override.
    let d = decide(&cat, sl, &click(1), &codec, &mut rng);
    assert_eq!(d.outcome, Outcome::Offer(1));
}

#[test]
fn weighted_strategy_follows_weights_and_reports_them_as_propensity() {
    let g = OfferGen { paused: false, countries: None, devices: None, cap: None, payout: 1.0 };
    let cat = catalog(&[g.clone(), g.clone(), g], Routing::Weighted(vec![1.0, 0.0, 3.0]));
    let sl = &cat.smartlinks[0];
    let codec = ClickIdCodec::new(b"k");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let mut n = [0u32; 3];
    for i in 0..4000 {
        let d = decide(
            &cat,
            sl,
            &ClickInput {
                now_ms: T0 + i,
                visitor: visitor(0, 0),
                subs: [""; 5],
                aff: None,
                counted: true,
                flags: 0,
                source: None,
            },
            &codec,
            &mut rng,
        );
        let Outcome::Offer(k) = d.outcome else { panic!("fallback") };
        n[k] += 1;
        assert_eq!(d.propensity, [0.25, 0.0, 0.75][k]);
    }
    assert_eq!(n[1], 0, "zero weight is never chosen");
    assert!((2800..3200).contains(&n[2]), "{n:?}");
}

#[test]
fn macros_in_the_redirect_are_expanded_and_encoded() {
    let g = OfferGen { paused: false, countries: None, devices: None, cap: None, payout: 1.0 };
    let cat = catalog(&[g], Routing::Priority);
    let codec = ClickIdCodec::new(b"k");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let input = ClickInput {
        now_ms: T0,
        visitor: visitor(0, 0),
        subs: ["&x=1#", "", "", "", ""],
        aff: None,
        counted: true,
        flags: 0,
        source: None,
    };
    let d = decide(&cat, &cat.smartlinks[0], &input, &codec, &mut rng);
    assert_eq!(d.url, format!("https://o0.example/?c={}&s=%26x%3D1%23", d.click_id));
}

#[test]
fn clicks_that_do_not_count_take_no_cap_unit_and_teach_the_router_nothing() {
    let g = |cap| OfferGen { paused: false, countries: None, devices: None, cap, payout: 1.0 };
    let cat = catalog(&[g(Some(1)), g(None)], Routing::Priority);
    let sl = &cat.smartlinks[0];
    let codec = ClickIdCodec::new(b"k");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
    let click = |counted, flags| ClickInput {
        now_ms: T0,
        visitor: visitor(0, 0),
        subs: [""; 5],
        aff: None,
        counted,
        flags,
        source: None,
    };
    for _ in 0..5 {
        let d = decide(&cat, sl, &click(false, 0b0110), &codec, &mut rng);
        assert_eq!(d.outcome, Outcome::Offer(0), "a bot click is routed but takes no unit of the cap");
        assert_eq!(codec.decode(&d.click_id).unwrap().flags, 0b0110, "the verdict travels in the click id");
    }
    assert_eq!(decide(&cat, sl, &click(true, 0), &codec, &mut rng).outcome, Outcome::Offer(0));
    assert_eq!(decide(&cat, sl, &click(true, 0), &codec, &mut rng).outcome, Outcome::Offer(1), "now capped");

    let cat = catalog(&[g(None), g(None)], Routing::Auto);
    let sl = &cat.smartlinks[0];
    let cands: Vec<_> = cat
        .offers
        .iter()
        .map(|o| smartlink_core::router::Candidate { key: o.key, payout: o.payout, caps: Default::default() })
        .collect();
    let ctx = smartlink_core::router::Context { segment: visitor(0, 0).segment, hour: 12, now_ms: T0 + 60_000 };
    let beliefs = || format!("{:?}", sl.router.lock().estimates(&cands, &ctx));
    let before = beliefs();
    for _ in 0..200 {
        decide(&cat, sl, &click(false, 2), &codec, &mut rng);
    }
    assert_eq!(beliefs(), before, "bot clicks are not exposure");
    for _ in 0..200 {
        decide(&cat, sl, &click(true, 0), &codec, &mut rng);
    }
    assert_ne!(beliefs(), before, "counted clicks are");
}

#[test]
fn a_click_that_finds_the_router_lock_held_is_routed_from_the_published_policy_and_learned_later() {
    let g = || OfferGen { paused: false, countries: None, devices: None, cap: None, payout: 1.0 };
    let (held_cat, free_cat) = (catalog(&[g(), g(), g()], Routing::Auto), catalog(&[g(), g(), g()], Routing::Auto));
    let (held_sl, free_sl) = (&held_cat.smartlinks[0], &free_cat.smartlinks[0]);
    let codec = ClickIdCodec::new(b"k");
    let click = |i: i64| ClickInput {
        now_ms: T0 + 60_000 + i * 1000,
        visitor: visitor(0, 0),
        subs: [""; 5],
        aff: None,
        counted: true,
        flags: 0,
        source: None,
    };
    // The board is set up the first time a click finds the lock held.
    let ctx = smartlink_core::router::Context { segment: visitor(0, 0).segment, hour: 0, now_ms: T0 + 60_000 };
    let cands: Vec<_> = held_cat
        .offers
        .iter()
        .map(|o| smartlink_core::router::Candidate { key: o.key, payout: o.payout_base, caps: Default::default() })
        .collect();
    {
        let _held = held_sl.router.lock();
        let mut other = rand_pcg::Pcg64Mcg::seed_from_u64(99);
        assert!(held_sl.router.choose_published(&cands, &ctx, &mut other).is_none(), "nothing published yet");
    }

    let (mut held_rng, mut free_rng) = (rand_pcg::Pcg64Mcg::seed_from_u64(5), rand_pcg::Pcg64Mcg::seed_from_u64(5));
    let first = decide(&held_cat, held_sl, &click(0), &codec, &mut held_rng);
    let second = std::thread::scope(|s| {
        let held = held_sl.router.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let (cat, codec, mut rng) = (&held_cat, &codec, held_rng.clone());
        s.spawn(move || {
            let d = decide(cat, &cat.smartlinks[0], &click(1), codec, &mut rng);
            tx.send(d).unwrap();
        });
        // Bounded only so that a broken path fails instead of hanging.
        let d = rx.recv_timeout(std::time::Duration::from_secs(60));
        drop(held);
        d.expect("the click was answered while the router lock was held")
    });

    let free_first = decide(&free_cat, free_sl, &click(0), &codec, &mut free_rng);
    let free_second = decide(&free_cat, free_sl, &click(1), &codec, &mut free_rng);
    let summary = |d: &smartlink_core::engine::Decision| (d.outcome, d.reason, d.propensity);
    assert_eq!(summary(&first), summary(&free_first));
    assert_eq!(summary(&second), summary(&free_second), "the published policy is the one the lock holder uses");
    assert_eq!(held_sl.router.busy(), smartlink_core::router::Busy { published: 1, waited: 0 });
    assert!(
        held_sl.router.lock().same_learning(&free_sl.router.lock()),
        "the deferred click is learned by the next lock holder"
    );
}

#[test]
fn clicks_decided_on_many_threads_at_once_are_all_learned() {
    let g = || OfferGen { paused: false, countries: None, devices: None, cap: None, payout: 1.0 };
    let cat = catalog(&[g(), g(), g(), g()], Routing::Auto);
    let sl = &cat.smartlinks[0];
    let codec = ClickIdCodec::new(b"k");
    let (threads, per_thread) = (4u64, 5_000i64);
    let routed: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (cat, codec) = (&cat, &codec);
                s.spawn(move || {
                    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(t);
                    let mut routed = 0u64;
                    for i in 0..per_thread {
                        let v = visitor(i as usize % 4, i as usize % 3);
                        let input = ClickInput {
                            now_ms: T0 + i,
                            visitor: v,
                            subs: [""; 5],
                            aff: None,
                            counted: true,
                            flags: 0,
                            source: None,
                        };
                        routed += matches!(decide(cat, sl, &input, codec, &mut rng).outcome, Outcome::Offer(_)) as u64;
                    }
                    routed
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(routed, threads * per_thread as u64, "every click had an eligible offer");
    // Clicks that found the lock held were learned by a later holder.
    assert_eq!(sl.router.lock().events(), routed);
}

/// The local day of `T0` in UTC (2026-01-05).
const DAY: u32 = 20458;

/// An active offer with no targeting and no cap.
fn open() -> OfferGen {
    OfferGen { paused: false, countries: None, devices: None, cap: None, payout: 1.0 }
}

/// A counted human click from `visitor(0, 0)` (US, desktop, Android, Chrome).
fn click_at(now_ms: i64) -> ClickInput<'static> {
    ClickInput { now_ms, visitor: visitor(0, 0), subs: [""; 5], aff: None, counted: true, flags: 0, source: None }
}

fn rng() -> rand_pcg::Pcg64Mcg {
    rand_pcg::Pcg64Mcg::seed_from_u64(1)
}

/// A random number generator whose every draw is the same number: it pins
/// a weighted pick to one point of the cumulative weights (at `draw / 2^64`
/// of the total).
struct Draw(u64);

impl rand::RngCore for Draw {
    fn next_u32(&mut self) -> u32 {
        self.0 as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(0);
    }
}

#[test]
fn fallback_reasons_have_stable_distinct_names() {
    let names: Vec<&str> = FallbackReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, ["empty_pool", "all_paused", "no_targeting_match", "all_capped", "quality"]);
}

#[test]
fn a_click_with_nowhere_to_go_falls_back_for_the_first_reason_that_applies() {
    let paused = || OfferGen { paused: true, ..open() };
    let german = || OfferGen { countries: Some(vec![1]), ..open() };
    let capped = || OfferGen { cap: Some(0), ..open() };
    let check = |pool: &[OfferGen], want: FallbackReason| {
        for strategy in [Routing::Priority, Routing::Auto, Routing::Weighted(vec![1.0; 4])] {
            let cat = catalog(pool, strategy.clone());
            let d = decide(&cat, &cat.smartlinks[0], &click_at(T0), &ClickIdCodec::new(b"k"), &mut rng());
            assert_eq!(d.outcome, Outcome::Fallback(want), "{pool:?} {strategy:?}");
            assert_eq!((d.reason, d.propensity, d.facts.offer), (Reason::Fallback, 1.0, None));
            assert_eq!(d.url, "https://fallback.example/?c=US");
        }
    };
    check(&[], FallbackReason::EmptyPool);
    check(&[paused()], FallbackReason::AllPaused);
    check(&[paused(), paused()], FallbackReason::AllPaused);
    check(&[german()], FallbackReason::NoTargetingMatch);
    check(&[paused(), german()], FallbackReason::NoTargetingMatch);
    check(&[capped()], FallbackReason::AllCapped);
    check(&[paused(), german(), capped(), capped()], FallbackReason::AllCapped);
}

/// Pools of up to 64 eligible offers are gathered on the stack and larger
/// ones on the heap; the same pick must land on the same offer either way.
#[test]
fn a_pool_of_more_than_64_offers_routes_like_a_small_one() {
    const HALF: u64 = 1 << 63;
    let codec = ClickIdCodec::new(b"k");
    for n in [1usize, 2, 3, 63, 64, 65, 66, 100, 129] {
        let mut last_only = vec![0.0; n];
        last_only[n - 1] = 1.0;
        // (strategy, offer chosen by a draw half-way through, propensity)
        let cases = [
            ("weight on the last offer only", Routing::Weighted(last_only), n - 1, 1.0),
            ("equal weights", Routing::Weighted(vec![1.0; n]), n / 2, 1.0 / n as f64),
            ("priority", Routing::Priority, 0, 1.0),
        ];
        for (name, strategy, want, propensity) in cases {
            let cat = catalog(&vec![open(); n], strategy);
            let d = decide(&cat, &cat.smartlinks[0], &click_at(T0), &codec, &mut Draw(HALF));
            assert_eq!((d.outcome, d.propensity), (Outcome::Offer(want), propensity), "{n} offers, {name}");
            assert_eq!(d.facts.offer, Some(cat.offers[want].key), "{n} offers, {name}");
            assert_eq!(cat.offers[want].counters.clicks(DAY), 1, "{n} offers, {name}");
        }
        let cat = catalog(&vec![open(); n], Routing::Auto);
        let d = decide(&cat, &cat.smartlinks[0], &click_at(T0), &codec, &mut rng());
        let Outcome::Offer(k) = d.outcome else { panic!("{n} offers, auto: fell back") };
        assert!(matches!(d.reason, Reason::BestScore | Reason::Exploration), "{n} offers, auto: {:?}", d.reason);
        assert_eq!(d.facts.offer, Some(cat.offers[k].key), "{n} offers, auto");
        assert_eq!(cat.smartlinks[0].router.lock().events(), 1, "{n} offers, auto: the click is learned");
    }
}

/// A weighted pick takes the offer whose stretch of the cumulative weights
/// holds the draw; zero, negative and missing weights are never picked
/// unless every weight is zero, and then the pick is uniform.
#[test]
fn a_weighted_pick_lands_where_the_draw_falls_in_the_cumulative_weights() {
    const HALF: u64 = 1 << 63;
    let check = |offers: usize, weights: &[f64], draw: u64, want: usize, propensity: f64| {
        let cat = catalog(&vec![open(); offers], Routing::Weighted(weights.to_vec()));
        let d = decide(&cat, &cat.smartlinks[0], &click_at(T0), &ClickIdCodec::new(b"k"), &mut Draw(draw));
        let got = (d.outcome, d.reason, d.propensity);
        assert_eq!(got, (Outcome::Offer(want), Reason::Weighted, propensity), "{weights:?} drawn at {draw:#x}");
    };
    check(3, &[1.0, 0.0, 3.0], 0, 0, 0.25);
    check(3, &[1.0, 0.0, 3.0], HALF, 2, 0.75);
    check(3, &[1.0, 0.0, 3.0], u64::MAX, 2, 0.75);
    // A zero weight at the start is skipped even by the lowest draw.
    check(2, &[0.0, 1.0], 0, 1, 1.0);
    // A draw exactly on a boundary belongs to the next offer; just below, to the one before.
    check(2, &[1.0, 1.0], HALF, 1, 0.5);
    check(2, &[1.0, 1.0], HALF - (1 << 11), 0, 0.5);
    // A negative weight counts as zero, and so does a missing one.
    check(2, &[-1.0, 2.0], 0, 1, 1.0);
    check(3, &[0.0, 2.0], u64::MAX, 1, 1.0);
    // All zero (or none at all): uniform, the draw modulo the pool size.
    check(3, &[0.0, 0.0, 0.0], 5, 2, 1.0 / 3.0);
    check(3, &[], 4, 1, 1.0 / 3.0);
    // 0.1 + 0.2 + 0.3 rounds up, so the largest draw runs past every offer:
    // the last offer with a weight takes it, never the zero-weight one after it.
    check(4, &[0.1, 0.2, 0.3, 0.0], u64::MAX, 2, 0.3 / (0.1 + 0.2 + 0.3));
}

/// `cat` rebuilt with `affiliates` (the catalog indexes them when built).
fn with_affiliates(mut cat: Catalog, affiliates: Vec<Affiliate>) -> Catalog {
    Catalog::new(std::mem::take(&mut cat.offers), std::mem::take(&mut cat.smartlinks), affiliates)
}

fn affiliate(key: u32, id: &str) -> Affiliate {
    Affiliate { key, id: Id::parse(id).unwrap(), fallback_url: None }
}

/// Targeting hours and daily caps follow each offer's own clock, also in a
/// pool spread over more timezones than one click's clock caches.
#[test]
fn each_offer_is_targeted_and_capped_by_its_own_local_clock() {
    // At T0 + 3 h (2026-01-05 03:00 UTC): (timezone, local hour, local day).
    let zones: [(&str, u32, u32); 6] = [
        ("UTC", 3, DAY),
        ("Asia/Tokyo", 12, DAY),
        ("America/New_York", 22, DAY - 1),
        ("Europe/Berlin", 4, DAY),
        ("Asia/Kolkata", 8, DAY),
        ("Australia/Sydney", 14, DAY),
    ];
    let now = T0 + 3 * 3_600_000;
    for (open_zone, &(tz, _, day)) in zones.iter().enumerate() {
        // Every offer accepts only its local hour, except that all but one
        // accept the hour after it.
        let mut cat = catalog(&vec![open(); zones.len()], Routing::Priority);
        for (k, (o, &(zone, hour, _))) in cat.offers.iter_mut().zip(&zones).enumerate() {
            o.targeting.timezone = zone.parse().unwrap();
            o.targeting.hours = 1 << if k == open_zone { hour } else { (hour + 1) % 24 };
        }
        let d = decide(&cat, &cat.smartlinks[0], &click_at(now), &ClickIdCodec::new(b"k"), &mut rng());
        assert_eq!(d.outcome, Outcome::Offer(open_zone), "only the {tz} offer is in its hour");
        assert_eq!(cat.offers[open_zone].counters.clicks(day), 1, "the click counts on {tz}'s day");
    }
}

/// (macro in the offer and fallback URLs, whether the click reaches the
/// offer, the `aff` parameter) -> what the macro expands to.
#[test]
fn every_redirect_macro_expands_to_the_clicks_own_value() {
    let visitor = Visitor {
        segment: Segment { country: Country::parse("DE").unwrap(), device: Device::Mobile, os: Os::Ios },
        browser: Browser::Safari,
        language: None,
    };
    let check = |name: &str, routed: bool, aff: Option<&str>, want: &str| {
        let url = |host: &str| Template::parse(&format!("https://{host}.example/?v={{{name}}}"), MacroSet::Redirect);
        let mut cat = catalog(&[OfferGen { paused: !routed, ..open() }], Routing::Priority);
        cat.offers[0].url = url("offer").unwrap();
        cat.offers[0].payout = 2.5;
        cat.offers[0].currency = Currency::parse("EUR").unwrap();
        cat.smartlinks[0].fallback_url = Some(url("fallback").unwrap());
        let cat = with_affiliates(cat, vec![affiliate(7, "a7")]);
        let subs = ["one", "two", "three", "four", "five"];
        let input = ClickInput { now_ms: T0, visitor, subs, aff, counted: true, flags: 0, source: None };
        let d = decide(&cat, &cat.smartlinks[0], &input, &ClickIdCodec::new(b"k"), &mut rng());
        let host = if routed { "offer" } else { "fallback" };
        let want = want.replace("<click id>", &d.click_id);
        assert_eq!(d.url, format!("https://{host}.example/?v={want}"), "{{{name}}}, routed: {routed}, aff: {aff:?}");
    };
    check("click_id", true, None, "<click id>");
    check("click_id", false, None, "<click id>");
    check("sub1", true, None, "one");
    check("sub2", true, None, "two");
    check("sub3", true, None, "three");
    check("sub4", true, None, "four");
    check("sub5", true, None, "five");
    check("sub5", false, None, "five");
    check("country", true, None, "DE");
    check("device", true, None, "mobile");
    check("os", true, None, "ios");
    check("browser", true, None, "safari");
    check("browser", false, None, "safari");
    check("offer_id", true, None, "o0");
    check("offer_id", false, None, "");
    check("smartlink", true, None, "s");
    check("affiliate", true, Some("a7"), "a7");
    check("affiliate", false, Some("a7"), "a7");
    check("affiliate", true, Some("nobody"), "");
    check("affiliate", true, None, "");
    check("payout", true, None, "2.5");
    check("payout", false, None, "");
    check("currency", true, None, "EUR");
    check("currency", false, None, "");
}

/// (aff parameter, smartlink owner, target URL, flags) -> (URL, affiliate
/// credited, whether the aff was unknown, flags in the click id).
#[test]
fn a_diverted_click_is_signed_credited_and_sent_to_its_target() {
    type Want<'a> = (&'a str, Option<usize>, bool, u8);
    let safe = Template::parse("https://safe.example/?c={country}", MacroSet::Redirect).unwrap();
    let codec = ClickIdCodec::new(b"k");
    let check = |aff: Option<&str>, owner: Option<usize>, target: Option<&Template>, flags: u8, want: Want| {
        let mut cat = catalog(&[open()], Routing::Auto);
        cat.smartlinks[0].affiliate = owner;
        let cat = with_affiliates(cat, vec![affiliate(7, "a7"), affiliate(8, "b8")]);
        let sl = &cat.smartlinks[0];
        let d = divert(&cat, sl, &ClickInput { aff, flags, ..click_at(T0) }, target, &codec, &mut rng());
        let case = format!("aff {aff:?}, owner {owner:?}, flags {flags:#06b}");
        assert_eq!((d.url.as_str(), d.affiliate, d.unknown_aff, d.facts.flags), want, "{case}");
        let routing = (d.outcome, d.reason, d.propensity);
        assert_eq!(routing, (Outcome::Fallback(FallbackReason::Quality), Reason::Fallback, 1.0), "{case}");
        assert_eq!(codec.decode(&d.click_id), Ok(d.facts), "{case}");
        assert_eq!(d.facts.offer, None, "{case}");
        assert_eq!(d.facts.affiliate, d.affiliate.map(|a| cat.affiliates[a].key), "{case}");
        assert_eq!(cat.offers[0].counters.clicks(DAY), 0, "{case}: no cap unit is taken");
        assert_eq!(sl.router.lock().events(), 0, "{case}: the router learns nothing");
    };
    const FALLBACK: &str = "https://fallback.example/?c=US";
    const SAFE: &str = "https://safe.example/?c=US";
    check(None, None, None, 0, (FALLBACK, None, false, 0));
    check(None, None, Some(&safe), 0, (SAFE, None, false, 0));
    check(Some("a7"), None, None, 0, (FALLBACK, Some(0), false, 0));
    check(Some("b8"), Some(0), Some(&safe), 0, (SAFE, Some(1), false, 0));
    check(None, Some(1), None, 0, (FALLBACK, Some(1), false, 0));
    check(Some("nobody"), Some(1), None, 0, (FALLBACK, Some(1), true, 0));
    check(Some("nobody"), None, None, 0, (FALLBACK, None, true, 0));
    check(None, None, None, 0b0110, (FALLBACK, None, false, 0b0110));
    check(None, None, None, 0b1111, (FALLBACK, None, false, 0b1111));
    // Only the four flag bits travel.
    check(None, None, None, 0xf2, (FALLBACK, None, false, 0b0010));
}

/// (strategy, whether the click counts) -> clicks the router learns when an
/// override routes the click.
#[test]
fn an_override_teaches_an_auto_router_only_about_counted_clicks() {
    let check = |strategy: Routing, counted: bool, learned: u64| {
        let mut cat = catalog(&[open(), open()], strategy.clone());
        cat.smartlinks[0].overrides.push(Override { countries: None, devices: None, os: None, offer: 1 });
        let sl = &cat.smartlinks[0];
        let d = decide(&cat, sl, &ClickInput { counted, ..click_at(T0) }, &ClickIdCodec::new(b"k"), &mut rng());
        assert_eq!((d.outcome, d.reason), (Outcome::Offer(1), Reason::Override), "{strategy:?}, counted: {counted}");
        assert_eq!(sl.router.lock().events(), learned, "{strategy:?}, counted: {counted}");
    };
    check(Routing::Auto, true, 1);
    check(Routing::Auto, false, 0);
    check(Routing::Priority, true, 0);
    check(Routing::Weighted(vec![1.0, 1.0]), true, 0);
}

#[test]
fn an_auto_smartlink_routes_by_its_router_and_learns_each_counted_click() {
    let cat = catalog(&[open(), open(), open()], Routing::Auto);
    let sl = &cat.smartlinks[0];
    let (codec, mut rng) = (ClickIdCodec::new(b"k"), rng());
    for i in 1..=20u64 {
        let d = decide(&cat, sl, &click_at(T0 + i as i64 * 1000), &codec, &mut rng);
        assert!(matches!(d.reason, Reason::BestScore | Reason::Exploration), "click {i}: {:?}", d.reason);
        assert_eq!(sl.router.lock().events(), i);
    }
}

/// Polls `ready` until it holds. The click on the other thread is meant to
/// be waiting meanwhile: an answer from it fails the test. Bounded only so
/// that a broken path fails instead of hanging.
fn wait_until(ready: impl Fn() -> bool, answer: &std::sync::mpsc::Receiver<Decision>) {
    use std::sync::mpsc::TryRecvError;
    for _ in 0..60_000 {
        if ready() {
            return;
        }
        match answer.try_recv() {
            Ok(d) => panic!("the click was answered without waiting for the router: {:?}", d.outcome),
            Err(TryRecvError::Disconnected) => panic!("the click's thread died"),
            Err(TryRecvError::Empty) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    panic!("the click never waited for the router");
}

/// Several nodes (`CapMode::Leased`): a capped offer takes clicks only
/// while this node's allowance lasts, however far its cap; an empty
/// allowance sends the click on as if the offer were capped; an uncapped
/// offer needs none.
#[test]
fn with_leased_caps_an_offer_takes_clicks_only_while_the_node_holds_units() {
    let mut cat = catalog(&[OfferGen { cap: Some(1_000), ..open() }, open()], Routing::Priority);
    cat.cap_mode = smartlink_core::caps::CapMode::Leased;
    let (sl, codec, mut rng) = (&cat.smartlinks[0], ClickIdCodec::new(b"k"), rng());
    let mut go = || decide(&cat, sl, &click_at(T0), &codec, &mut rng).outcome;
    assert_eq!(go(), Outcome::Offer(1), "no units leased yet");
    cat.offers[0].counters.grant(DAY, 2, 2);
    let mut go = || decide(&cat, sl, &click_at(T0), &codec, &mut rng).outcome;
    assert_eq!([go(), go(), go()], [Outcome::Offer(0), Outcome::Offer(0), Outcome::Offer(1)]);
    assert_eq!((cat.offers[0].counters.clicks(DAY), cat.offers[0].counters.allowance(DAY)), (2, 0));
    assert_eq!(cat.offers[1].counters.clicks(DAY), 2, "the uncapped offer counts without units");

    // A new catalog version keeps the mode and the allowance.
    let mut next = catalog(&[OfferGen { cap: Some(1_000), ..open() }, open()], Routing::Priority);
    cat.offers[0].counters.grant(DAY, 1, 3);
    next.inherit_state(&cat);
    assert_eq!(next.cap_mode, smartlink_core::caps::CapMode::Leased);
    let out = decide(&next, &next.smartlinks[0], &click_at(T0), &codec, &mut rng).outcome;
    assert_eq!(out, Outcome::Offer(0));
}

/// A click that waits for the router lock can find, once it has it, that
/// other clicks took the last unit of a cap it counted on: it tries the
/// other candidates and falls back when none is left, never exceeding a cap.
/// (Offers whose last unit goes while the click waits) -> where it goes.
#[test]
fn a_click_that_loses_the_last_cap_unit_while_it_waits_for_the_router_tries_the_others() {
    let check = |taken: &[usize], want: Outcome| {
        let cat = Arc::new(catalog(
            &[OfferGen { cap: Some(1), ..open() }, OfferGen { cap: Some(1), ..open() }],
            Routing::Auto,
        ));
        let codec = ClickIdCodec::new(b"k");
        let held = cat.smartlinks[0].router.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        let clicker = {
            let (cat, codec) = (cat.clone(), codec.clone());
            std::thread::spawn(move || {
                let _ = tx.send(decide(&cat, &cat.smartlinks[0], &click_at(T0), &codec, &mut rng()));
            })
        };
        // Both offers were open when the click gathered its candidates;
        // nothing is published for two candidates, so it waits for the lock.
        wait_until(|| cat.smartlinks[0].router.busy().waited == 1, &rx);
        for &k in taken {
            let o = &cat.offers[k];
            assert!(o.counters.try_reserve_click(&o.caps, DAY));
        }
        drop(held);
        let d = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the click is answered");
        clicker.join().unwrap();
        assert_eq!(d.outcome, want, "units taken meanwhile: {taken:?}");
        for o in &cat.offers {
            assert_eq!(o.counters.clicks(DAY), 1, "{taken:?}: each cap is reached and none exceeded");
        }
    };
    check(&[0, 1], Outcome::Fallback(FallbackReason::AllCapped));
    check(&[0], Outcome::Offer(1));
    check(&[1], Outcome::Offer(0));
}

/// What a click id says about a click at `T0` on smartlink 0 of `cat`.
fn facts_of(cat: &Catalog, offer: Option<usize>, flags: u8) -> ClickFacts {
    ClickFacts {
        time_secs: (T0 / 1000) as u32,
        smartlink: cat.smartlinks[0].key,
        offer: offer.map(|k| cat.offers[k].key),
        affiliate: None,
        source: None,
        segment: visitor(0, 0).segment,
        browser: Browser::Chrome,
        language: None,
        flags,
        nonce: [0; 6],
    }
}

/// (approved conversions today, the status the router was last told, the
/// new status) -> approved conversions today after it; each one adds its
/// payout to today's spend.
#[test]
fn a_conversion_status_change_moves_todays_approved_count_and_spend() {
    use ConversionStatus::{Approved, Pending, Rejected};
    let check = |before: u64, previous: Option<ConversionStatus>, status: ConversionStatus, after: u64| {
        let cat = catalog(&[open()], Routing::Priority);
        let counters = &cat.offers[0].counters;
        counters.seed(DAY, 0, before, before as f64 * 2.5);
        let effect = apply_conversion(&cat, &facts_of(&cat, Some(0), 0), T0 + 60_000, previous, status, 2.5);
        let case = format!("{before} approved, then {previous:?} -> {status:?}");
        assert_eq!((counters.conversions(DAY), counters.spent(DAY)), (after, after as f64 * 2.5), "{case}");
        assert_eq!(effect, ConversionEffect { over_cap: false }, "{case}");
    };
    check(0, None, Approved, 1);
    check(0, None, Pending, 0);
    check(0, None, Rejected, 0);
    check(0, Some(Pending), Approved, 1);
    check(0, Some(Pending), Pending, 0);
    check(0, Some(Pending), Rejected, 0);
    check(1, Some(Approved), Approved, 1);
    check(1, Some(Approved), Rejected, 0);
    check(1, Some(Approved), Pending, 0);
    check(1, Some(Rejected), Rejected, 1);
}

#[test]
fn a_conversion_counts_on_its_offers_local_day_and_reports_a_cap_already_reached() {
    let mut cat = catalog(&[open()], Routing::Priority);
    cat.offers[0].targeting.timezone = "America/New_York".parse().unwrap();
    cat.offers[0].caps = Caps { daily_conversions: Some(1), ..Default::default() };
    let facts = facts_of(&cat, Some(0), 0);
    // At T0 + 3 h it is still Jan 4 in New York.
    let now = T0 + 3 * 3_600_000;
    let approve = || apply_conversion(&cat, &facts, now, None, ConversionStatus::Approved, 1.0).over_cap;
    assert!(!approve(), "the first conversion is under the cap");
    assert!(approve(), "the second arrives with the cap reached, and is still counted");
    let counters = &cat.offers[0].counters;
    assert_eq!((counters.conversions(DAY - 1), counters.conversions(DAY)), (2, 0));

    // A click id naming no offer of this catalog changes nothing.
    for offer in [None, Some(999)] {
        let facts = ClickFacts { offer, ..facts };
        let effect = apply_conversion(&cat, &facts, now, None, ConversionStatus::Approved, 1.0);
        assert_eq!(effect, ConversionEffect { over_cap: false });
        assert_eq!(counters.conversions(DAY - 1), 2);
    }
}

/// (flags of the click) -> whether the router learns from its conversion:
/// bot and preview clicks were never exposure, so their conversions teach
/// nothing; the others teach exactly what the postback says.
#[test]
fn a_conversion_teaches_the_router_only_when_its_click_counted() {
    let now = T0 + 600_000;
    for (flags, learns) in [(0b0000, true), (0b0001, true), (0b0010, false), (0b0100, false), (0b0101, false)] {
        let cat = catalog(&[open()], Routing::Auto);
        let facts = facts_of(&cat, Some(0), flags);
        apply_conversion(&cat, &facts, now, None, ConversionStatus::Approved, 1.0);
        let told = SharedRouter::default();
        if learns {
            told.lock().on_conversion(cat.offers[0].key, facts.segment, T0, now, None, ConversionStatus::Approved);
        }
        assert!(cat.smartlinks[0].router.lock().same_learning(&told.lock()), "flags {flags:#06b}");
    }
}

/// A catalog with `o0`'s direct link (paused or not), the smartlink `s`
/// and affiliates `a7` (with a fallback URL) and `a8` (without).
fn direct_catalog(paused: bool, offer_fallback: Option<&str>, hand_to_smartlink: bool) -> Catalog {
    let mut cat = catalog(&[OfferGen { paused, ..open() }], Routing::Priority);
    let offers = std::mem::take(&mut cat.offers);
    let smartlinks = std::mem::take(&mut cat.smartlinks);
    let direct = Smartlink {
        key: smartlink_core::model::direct_link_key(offers[0].key),
        slug: offers[0].id.clone(),
        affiliate: None,
        offers: vec![0],
        fallback_url: offer_fallback.map(|u| Template::parse(u, MacroSet::Redirect).unwrap()),
        fallback_link: hand_to_smartlink.then_some(0),
        source: None,
        cost_model: None,
        cost_rate: 1.0,
        overrides: vec![],
        strategy: Routing::Priority,
        quality: Default::default(),
        router: Arc::new(SharedRouter::default()),
    };
    let a7 = Affiliate {
        fallback_url: Some(Template::parse("https://a7.example/?c={click_id}", MacroSet::Redirect).unwrap()),
        ..affiliate(7, "a7")
    };
    Catalog::with_direct_links(offers, smartlinks, vec![direct], vec![a7, affiliate(8, "a8")], vec![])
}

/// (offer paused, the offer's fallback URL, hand to the smartlink, `aff`,
/// where the click goes).
type DirectCase = (bool, Option<&'static str>, bool, Option<&'static str>, &'static str);

/// (offer paused, the offer's fallback URL, hand to the smartlink, `aff`)
/// -> where the direct link's click goes.
#[test]
fn a_direct_link_sends_what_its_offer_cannot_take_down_the_fallback_chain() {
    let cases: &[DirectCase] = &[
        (false, Some("https://of.example/"), true, Some("a7"), "https://o0.example/"),
        (true, Some("https://of.example/"), true, Some("a7"), "https://of.example/"),
        (true, None, true, Some("a7"), "/s/s?aff=a7&sub1=z%20z"),
        (true, None, false, Some("a7"), "https://a7.example/?c="),
        (true, None, false, Some("a8"), ""),
        (true, None, false, None, ""),
        (true, None, true, None, "/s/s?sub1=z%20z"),
    ];
    for &(paused, offer_fallback, hand, aff, want) in cases {
        let cat = direct_catalog(paused, offer_fallback, hand);
        let link = cat.direct_link("o0").expect("the direct link is found by its offer's id");
        assert!(link.is_direct());
        assert!(std::ptr::eq(cat.smartlink_by_key(link.key).unwrap(), link), "and by its link key");
        let input = ClickInput { aff, subs: ["z z", "", "", "", ""], ..click_at(T0) };
        let d = decide(&cat, link, &input, &ClickIdCodec::new(b"k"), &mut rng());
        assert!(
            d.url.starts_with(want) && (!want.is_empty() || d.url.is_empty()),
            "{paused} {offer_fallback:?} {hand} {aff:?}: {}",
            d.url
        );
        assert_eq!(d.facts.smartlink, link.key, "the click id names the direct link");
        let routed = !paused;
        assert_eq!(matches!(d.outcome, Outcome::Offer(0)), routed);
        if !routed {
            assert_eq!(d.outcome, Outcome::Fallback(FallbackReason::AllPaused));
        }
    }
    // A direct link learns nothing from its conversions.
    let cat = direct_catalog(false, None, false);
    let link = cat.direct_link("o0").unwrap();
    let d = decide(&cat, link, &click_at(T0), &ClickIdCodec::new(b"k"), &mut rng());
    apply_conversion(&cat, &d.facts, T0 + 1000, None, ConversionStatus::Approved, 1.0);
    assert_eq!(link.router.lock().events(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `policy` names exactly the offers `decide` may choose for a visitor,
    /// with probabilities that add up to 1, and the click decided next is
    /// chosen with the probability `policy` gave its offer.
    #[test]
    fn the_policy_is_the_distribution_the_next_click_is_drawn_from(
        gens in prop::collection::vec(offer_gen(), 0..6),
        strategy in strategies(),
        (c, d) in (0..4usize, 0..3usize),
        seed in any::<u64>(),
    ) {
        let cat = catalog(&gens, strategy);
        let sl = &cat.smartlinks[0];
        let codec = ClickIdCodec::new(b"k");
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let v = visitor(c, d);
        let p = smartlink_core::engine::policy(&cat, sl, &v, T0, &mut rng);
        let open: Vec<usize> = (0..gens.len()).filter(|&k| eligible(&gens[k], &v) && gens[k].cap != Some(0)).collect();
        prop_assert_eq!(p.offers.iter().map(|x| x.0).collect::<Vec<_>>(), open.clone());
        let input = ClickInput { now_ms: T0, visitor: v, subs: [""; 5], aff: None, counted: false, flags: 0, source: None };
        let dec = decide(&cat, sl, &input, &codec, &mut rng);
        if open.is_empty() {
            prop_assert!(p.fallback.is_some());
            prop_assert_eq!(Outcome::Fallback(p.fallback.unwrap()), dec.outcome);
        } else {
            prop_assert!(p.fallback.is_none());
            let total: f64 = p.offers.iter().map(|x| x.1).sum();
            prop_assert!((total - 1.0).abs() < 1e-9, "{:?}", p);
            let Outcome::Offer(k) = dec.outcome else { panic!("fell back with {open:?} open") };
            let chance = p.offers.iter().find(|x| x.0 == k).unwrap().1;
            prop_assert!(chance > 0.0, "chose {} that the policy gives no chance: {:?}", k, p);
            prop_assert!((chance - dec.propensity).abs() < 1e-9, "policy {} vs propensity {}", chance, dec.propensity);
        }
    }
}
