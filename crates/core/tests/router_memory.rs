//! A router's memory follows the variety of its recent traffic: the cells
//! of segments unseen for a while fold into their parents, and the policy
//! cache keeps only what a click can still use (issue 20).

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_core::router::{Candidate, CapView, Context, ConversionStatus, RouterState};

const T0: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z
const HOUR: i64 = 3_600_000;

fn seg(country: &str, device: Device, os: Os) -> Segment {
    Segment { country: Country::parse(country).unwrap(), device, os }
}

/// Every ISO 3166-1 country code the router tells apart.
fn countries() -> Vec<Country> {
    (b'A'..=b'Z')
        .flat_map(|a| (b'A'..=b'Z').map(move |b| [a, b]))
        .filter_map(|b| Country::parse(std::str::from_utf8(&b).ok()?).ok())
        .collect()
}

fn cands() -> Vec<Candidate> {
    (1..=4).map(|key| Candidate { key, payout: 1.0 + key as f64 * 0.5, caps: CapView::default() }).collect()
}

fn ctx(segment: Segment, now: i64) -> Context {
    Context { segment, hour: ((now / HOUR) % 24) as u8, now_ms: now }
}

/// One routed click in `segment` at `now`, converting with probability
/// `cr` × the offer's key (reported at once).
fn click(r: &mut RouterState, segment: Segment, now: i64, cr: f64, rng: &mut Pcg64) {
    let cands = cands();
    let c = ctx(segment, now);
    let key = cands[r.choose(&cands, &c, rng).index].key;
    r.on_click(key, &c);
    if rng.random::<f64>() < cr * key as f64 {
        r.on_conversion(key, segment, now, now, None, ConversionStatus::Approved);
    }
}

/// `hours` of traffic from `from`, a click every `gap_ms`, in the
/// segments `pick` chooses, converting at `cr` × the offer's key; returns
/// the time of the last click.
fn traffic(
    r: &mut RouterState,
    (from, hours, gap_ms): (i64, i64, i64),
    cr: f64,
    rng: &mut Pcg64,
    mut pick: impl FnMut(&mut Pcg64) -> Segment,
) -> i64 {
    let mut now = from;
    while now < from + hours * HOUR {
        now += gap_ms;
        let s = pick(rng);
        click(r, s, now, cr, rng);
    }
    now
}

#[test]
fn a_segment_unseen_for_a_day_folds_into_its_parent_and_routes_like_a_never_seen_sibling() {
    let mut rng = Pcg64::seed_from_u64(3);
    let mut r = RouterState::new();
    let head = seg("US", Device::Mobile, Os::Android);
    let tail = seg("US", Device::Mobile, Os::Ios);
    let never = seg("US", Device::Mobile, Os::Other);
    // Six hours of the head with a trickle of the tail (which never
    // converts), then two days of the head alone.
    let mut now = T0;
    for i in 0..4_000 {
        now += 5_000;
        if i % 50 == 0 {
            click(&mut r, tail, now, 0.0, &mut rng);
        } else {
            click(&mut r, head, now, 0.05, &mut rng);
        }
    }
    let cells = r.cells();
    assert_ne!(
        r.estimates(&cands(), &ctx(tail, now)),
        r.estimates(&cands(), &ctx(never, now)),
        "the tail has cells of its own while it is seen"
    );
    let now = traffic(&mut r, (now, 48, 5_000), 0.05, &mut rng, |_| head);
    assert!(r.folded_cells() > 0, "nothing folded: {} cells, {} before", r.cells(), cells);
    assert!(r.cells() < cells, "{} cells after folding, {} before", r.cells(), cells);
    // Folded: its clicks are still in the parent's counts, and it is
    // estimated exactly like a segment of the same device never seen.
    assert_eq!(r.estimates(&cands(), &ctx(tail, now)), r.estimates(&cands(), &ctx(never, now)));
    // And it learns again from its next clicks.
    click(&mut r, tail, now + 1_000, 0.0, &mut rng);
    assert_ne!(
        r.estimates(&cands(), &ctx(tail, now + 2_000)),
        r.estimates(&cands(), &ctx(never, now + 2_000)),
        "a folded segment that comes back gets cells again"
    );
}

#[test]
fn cells_stay_bounded_while_segments_churn_for_nine_days() {
    // Every day a new set of 25 countries × 3 devices, converting rarely:
    // without folding the cells grow with every day's new segments.
    let countries = countries();
    let mut rng = Pcg64::seed_from_u64(5);
    let mut r = RouterState::new();
    let mut now = T0;
    let mut after_two_days = 0;
    for day in 0..9 {
        let todays = &countries[day * 25..day * 25 + 25];
        now = traffic(&mut r, (now, 24, 20_000), 0.002, &mut rng, |rng| Segment {
            country: todays[rng.random_range(0..todays.len())],
            device: Device::ALL[rng.random_range(0..3)],
            os: Os::Android,
        });
        if day == 1 {
            after_two_days = r.cells();
        }
    }
    let (kept, folded) = (r.cells(), r.folded_cells() as usize);
    assert!(folded > 2 * kept, "{kept} cells kept, {folded} folded of the {} ever learned", kept + folded);
    // A day's variety and the one before it stay; a week's do not.
    assert!(kept <= after_two_days * 3 / 2, "{kept} cells after 9 days of churn, {after_two_days} after 2");
}

#[test]
fn folding_keeps_replays_bit_identical() {
    // Two routers fed the same events fold the same cells at the same
    // times: the server's replay at start-up rebuilds the folded state.
    let run = || {
        let mut rng = Pcg64::seed_from_u64(9);
        let mut r = RouterState::new();
        let segments = [
            seg("US", Device::Mobile, Os::Android),
            seg("DE", Device::Desktop, Os::Windows),
            seg("BR", Device::Mobile, Os::Ios),
        ];
        let mut now = T0;
        for (i, s) in segments.iter().enumerate() {
            now = traffic(&mut r, (now, 30, 10_000 + i as i64), 0.05, &mut rng, |_| *s);
        }
        r
    };
    let (a, b) = (run(), run());
    assert!(a.folded_cells() > 0);
    assert!(a.same_learning(&b));
}

#[test]
fn the_policy_cache_keeps_only_policies_a_click_can_still_use() {
    let mut rng = Pcg64::seed_from_u64(11);
    let mut r = RouterState::new();
    let mut now = T0;
    // 300 segments in two and a half minutes, then one segment for an hour.
    let countries = countries();
    for i in 0..300 {
        now += 500;
        let s = Segment { country: countries[i % 100], device: Device::ALL[i / 100], os: Os::Android };
        click(&mut r, s, now, 0.05, &mut rng);
    }
    assert_eq!(r.cached_policies(), 300);
    traffic(&mut r, (now, 1, 10_000), 0.05, &mut rng, |_| seg("US", Device::Mobile, Os::Android));
    assert!(r.cached_policies() <= 2, "{} policies an hour later", r.cached_policies());
}

#[test]
fn a_segment_seen_once_gets_a_coarse_policy_and_a_busy_one_a_fine_one() {
    // Equal offers, nothing learned: the draws split evenly, so a policy's
    // propensities are the share of its draws each offer won.
    let cands: Vec<Candidate> = (1..=5).map(|key| Candidate { key, payout: 1.0, caps: CapView::default() }).collect();
    let mut rng = Pcg64::seed_from_u64(2);
    let mut r = RouterState::new();
    let s = seg("US", Device::Mobile, Os::Android);
    let (p, _) = r.probabilities(&cands, &ctx(s, T0), &mut rng);
    assert!(p.iter().all(|p| (p * 16.0).fract() == 0.0), "a new segment's policy is drawn 16 times: {p:?}");
    // Used by 100 clicks, then stale: the next one is drawn 128 times.
    for _ in 0..100 {
        r.choose(&cands, &ctx(s, T0 + 1), &mut rng);
    }
    let (p, _) = r.probabilities(&cands, &ctx(s, T0 + 3_600_000), &mut rng);
    assert!(p.iter().all(|p| (p * 128.0).fract() == 0.0));
    assert!(p.iter().any(|p| (p * 16.0).fract() != 0.0), "a busy segment's policy is drawn 128 times: {p:?}");
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}
