//! The router's learned state is a pure function of the clicks and
//! conversions it was told about: the server rebuilds it at start-up by
//! replaying them in time order.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_core::router::{Candidate, Context, ConversionStatus, RouterState};

const T0: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

#[derive(Clone, Copy, Debug)]
enum Event {
    Click {
        key: u32,
        ctx: Context,
    },
    Conversion {
        key: u32,
        seg: Segment,
        click_ms: i64,
        at: i64,
        previous: Option<ConversionStatus>,
        status: ConversionStatus,
    },
}

fn segment(i: usize) -> Segment {
    let countries = ["US", "DE", "BR"];
    Segment {
        country: Country::parse(countries[i % 3]).unwrap(),
        device: Device::ALL[i % 3],
        os: [Os::Ios, Os::Android][i % 2],
    }
}

/// Drives a router live for `clicks` clicks (choose + on_click, then
/// delayed conversions, some rejected and some later approved) and returns
/// it with the event log in the order it saw the events.
fn live(clicks: usize, seed: u64) -> (RouterState, Vec<Event>) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut router = RouterState::new();
    let mut log = Vec::new();
    let mut pending: Vec<(i64, Event)> = Vec::new();
    let cands: Vec<Candidate> =
        (1..=5).map(|k| Candidate { key: k, payout: k as f64 * 0.7, caps: Default::default() }).collect();
    for i in 0..clicks {
        let now = T0 + i as i64 * 9_000;
        pending.sort_by_key(|p| std::cmp::Reverse(p.0));
        while pending.last().is_some_and(|p| p.0 <= now) {
            let (_, e) = pending.pop().unwrap();
            if let Event::Conversion { key, seg, click_ms, at, previous, status } = e {
                router.on_conversion(key, seg, click_ms, at, previous, status);
            }
            log.push(e);
        }
        let seg = segment(rng.random_range(0..6));
        let ctx = Context { segment: seg, hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
        let choice = router.choose(&cands, &ctx, &mut rng);
        let key = cands[choice.index].key;
        router.on_click(key, &ctx);
        log.push(Event::Click { key, ctx });
        if rng.random::<f64>() < 0.02 * key as f64 {
            let at = now + rng.random_range(0..7_200_000);
            let status = if rng.random::<f64>() < 0.3 {
                ConversionStatus::Pending
            } else if rng.random::<f64>() < 0.2 {
                ConversionStatus::Rejected
            } else {
                ConversionStatus::Approved
            };
            pending.push((at, Event::Conversion { key, seg, click_ms: now, at, previous: None, status }));
            if status == ConversionStatus::Pending {
                let later = at + 3_600_000;
                pending.push((
                    later,
                    Event::Conversion {
                        key,
                        seg,
                        click_ms: now,
                        at: later,
                        previous: Some(status),
                        status: ConversionStatus::Approved,
                    },
                ));
            }
        }
    }
    (router, log)
}

fn replay(log: &[Event]) -> RouterState {
    let mut r = RouterState::new();
    for e in log {
        match *e {
            Event::Click { key, ctx } => r.on_click(key, &ctx),
            Event::Conversion { key, seg, click_ms, at, previous, status } => {
                r.on_conversion(key, seg, click_ms, at, previous, status)
            }
        }
    }
    r
}

#[test]
fn replaying_clicks_and_conversions_rebuilds_exactly_what_was_learned() {
    let (router, log) = live(12_000, 1);
    assert!(
        log.iter().any(|e| matches!(e, Event::Conversion { previous: Some(_), .. })),
        "status changes are exercised"
    );
    let rebuilt = replay(&log);
    assert!(rebuilt.same_learning(&router), "replay differs from the live router");
}

#[test]
fn a_different_history_is_a_different_state() {
    let (router, log) = live(5_000, 2);
    let rebuilt = replay(&log[..log.len() - 10]);
    assert!(!rebuilt.same_learning(&router));
}

#[test]
fn a_rebuilt_router_makes_the_same_estimates() {
    let (router, log) = live(8_000, 3);
    let rebuilt = replay(&log);
    let cands: Vec<Candidate> = (1..=5).map(|k| Candidate { key: k, payout: 1.0, caps: Default::default() }).collect();
    let ctx = Context { segment: segment(1), hour: 3, now_ms: T0 + 8_000 * 9_000 };
    assert_eq!(router.estimates(&cands, &ctx), rebuilt.estimates(&cands, &ctx));
}
