//! The router as request threads share it (`SharedRouter`): what a click that
//! finds the lock held may pick from, and that its learning is never lost.

use rand::SeedableRng;
use rand_pcg::Pcg64;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_core::router::{Busy, Candidate, CapView, Context, RouterState, SharedRouter};

const T0: i64 = 1_767_571_200_000;

fn ctx(country: &str, hour: u8, now_ms: i64) -> Context {
    let segment = Segment { country: Country::parse(country).unwrap(), device: Device::Mobile, os: Os::Android };
    Context { segment, hour, now_ms }
}

fn cands() -> Vec<Candidate> {
    (1..=3).map(|key| Candidate { key, payout: key as f64, caps: CapView::default() }).collect()
}

/// A shared router with a board, whose `US` policy at hour 0 is published.
fn published() -> SharedRouter {
    let shared = SharedRouter::default();
    let mut rng = Pcg64::seed_from_u64(1);
    {
        let _held = shared.lock();
        assert!(shared.choose_published(&cands(), &ctx("US", 0, T0), &mut rng).is_none(), "no board yet");
    }
    shared.lock().choose(&cands(), &ctx("US", 0, T0), &mut rng);
    shared
}

#[test]
fn a_published_policy_gives_the_choices_and_propensities_of_the_lock_holder() {
    let shared = published();
    let (mut a, mut b) = (Pcg64::seed_from_u64(7), Pcg64::seed_from_u64(7));
    let c = ctx("US", 0, T0 + 1000);
    for _ in 0..50 {
        let from_board = {
            let _held = shared.lock();
            shared.choose_published(&cands(), &c, &mut a).expect("published")
        };
        let locked = shared.lock().choose(&cands(), &c, &mut b);
        assert_eq!(from_board, locked);
    }
    assert_eq!(shared.busy(), Busy { published: 50, waited: 0 });
}

#[test]
fn a_published_policy_is_not_used_for_another_segment_candidate_list_hour_or_past_its_age() {
    let shared = published();
    let mut rng = Pcg64::seed_from_u64(2);
    let _held = shared.lock();
    let pick = |cands: &[Candidate], c: Context, rng: &mut Pcg64| shared.choose_published(cands, &c, rng);
    assert!(pick(&cands(), ctx("US", 0, T0 + 1000), &mut rng).is_some());
    assert!(pick(&cands(), ctx("DE", 0, T0 + 1000), &mut rng).is_none(), "another segment");
    assert!(pick(&cands()[..2], ctx("US", 0, T0 + 1000), &mut rng).is_none(), "an offer dropped out");
    let mut repriced = cands();
    repriced[1].payout = 9.0;
    assert!(pick(&repriced, ctx("US", 0, T0 + 1000), &mut rng).is_none(), "a payout changed");
    assert!(pick(&cands(), ctx("US", 1, T0 + 1000), &mut rng).is_none(), "another hour");
    assert!(pick(&cands(), ctx("US", 0, T0 + 300_000), &mut rng).is_none(), "older than policy_refresh_secs");
    assert!(pick(&cands(), ctx("US", 0, T0 - 1), &mut rng).is_none(), "computed after the click");
    assert!(pick(&cands()[..1], ctx("DE", 5, T0), &mut rng).is_some(), "a single candidate needs no policy");
}

#[test]
fn deferred_clicks_are_learned_in_order_before_anyone_else_reads_the_state() {
    let shared = SharedRouter::default();
    let mut reference = RouterState::new();
    let clicks: Vec<(u32, Context)> =
        (0..SharedRouter::MAX_PENDING as i64 + 1).map(|i| (1 + i as u32 % 3, ctx("US", 0, T0 + i * 10))).collect();
    for (key, c) in &clicks {
        shared.defer_click(*key, c);
        reference.on_click(*key, c);
    }
    // The list is full at MAX_PENDING: the click past it waits for the lock
    // and is learned after the pending ones.
    assert_eq!(shared.busy(), Busy { published: 0, waited: 1 });
    assert!(shared.lock().same_learning(&reference));

    shared.defer_click(2, &ctx("BR", 3, T0 + 60_000));
    reference.on_click(2, &ctx("BR", 3, T0 + 60_000));
    assert!(shared.try_lock().expect("free").same_learning(&reference), "try_lock applies them too");
}
