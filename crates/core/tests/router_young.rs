//! A young router (a fresh smartlink, minutes of history) must not lock in:
//! issue 20's cases, as found through the server, replayed on the router.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use smartlink_core::model::{Country, Device, Os, Segment};
use smartlink_core::router::{Candidate, CapView, Context, ConversionStatus, RouterState};

const T0: i64 = 1_767_571_200_000;

fn seg() -> Segment {
    Segment { country: Country::parse("US").unwrap(), device: Device::Mobile, os: Os::Android }
}

fn cand(key: u32, payout: f64) -> Candidate {
    Candidate { key, payout, caps: CapView::default() }
}

/// Routes `clicks` clicks, one every `gap_ms`, through `r` over `cands`,
/// each converting (approved, reported at once) with its offer's rate in
/// `cr`. Returns the clicks each candidate got and the time of the last.
fn burst(
    r: &mut RouterState,
    cands: &[Candidate],
    cr: &[f64],
    clicks: usize,
    gap_ms: i64,
    from: i64,
    rng: &mut Pcg64,
) -> (Vec<usize>, i64) {
    let mut got = vec![0; cands.len()];
    let mut now = from;
    for _ in 0..clicks {
        now += gap_ms;
        let ctx = Context { segment: seg(), hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
        let c = r.choose(cands, &ctx, rng);
        got[c.index] += 1;
        let key = cands[c.index].key;
        r.on_click(key, &ctx);
        if rng.random::<f64>() < cr[c.index] {
            r.on_conversion(key, seg(), now, now, None, ConversionStatus::Approved);
        }
    }
    (got, now)
}

/// `f` on each of the seeds 1..=`seeds`.
fn per_seed(seeds: u64, f: impl Fn(&mut Pcg64) -> (usize, usize)) -> Vec<(usize, usize)> {
    (1..=seeds).map(|s| f(&mut Pcg64::seed_from_u64(s))).collect()
}

#[test]
fn a_fresh_smartlink_fed_a_burst_does_not_lock_in_on_the_worse_of_two_offers() {
    // Equal payouts, true CR 0.25 vs 0.15, 800 clicks in about 13 minutes.
    let runs = per_seed(20, |rng| {
        let mut r = RouterState::new();
        let (got, _) = burst(&mut r, &[cand(1, 1.0), cand(2, 1.0)], &[0.15, 0.25], 800, 1_000, T0, rng);
        (got[0], got[1])
    });
    eprintln!("worse, better: {runs:?}");
    let locked = runs.iter().filter(|(worse, _)| *worse > 600).count();
    assert!(locked == 0, "the worse offer took > 600 of 800 clicks on {locked} of 20 seeds: {runs:?}");
}

#[test]
fn an_offer_with_no_conversion_yet_is_not_starved_by_one_with_half_its_rate() {
    // CR 0.05 vs 0.10: the better offer must be tried enough to show it.
    let runs = per_seed(20, |rng| {
        let mut r = RouterState::new();
        let (got, _) = burst(&mut r, &[cand(1, 1.0), cand(2, 1.0)], &[0.05, 0.10], 1_000, 1_000, T0, rng);
        (got[0], got[1])
    });
    eprintln!("worse, better: {runs:?}");
    let starved = runs.iter().filter(|(_, better)| *better < 100).count();
    assert!(starved == 0, "the better offer got < 100 of 1,000 clicks on {starved} of 20 seeds: {runs:?}");
}

#[test]
fn a_payout_cut_on_a_young_router_moves_the_next_clicks() {
    // The better offer takes most of 800 clicks (13 minutes); then its
    // payout is cut so that the other is worth 2.4 times more. The next 400
    // clicks move at once (no statistics refresh in between) wherever the
    // other offer's few clicks have not shown it to be poor; where they
    // have (no conversion in 11 or 20 clicks, as 4% of seeds do at its true
    // rate of 0.15), it still gets a share and recovers as it converts.
    let runs = per_seed(20, |rng| {
        let mut r = RouterState::new();
        let (_, now) = burst(&mut r, &[cand(1, 1.0), cand(2, 1.0)], &[0.25, 0.15], 800, 1_000, T0, rng);
        let cut = 0.15 / 0.25 / 2.4;
        let (got, _) = burst(&mut r, &[cand(1, cut), cand(2, 1.0)], &[0.25, 0.15], 400, 1_000, now, rng);
        (got[0], got[1])
    });
    eprintln!("cut, other: {runs:?}");
    let moved = runs.iter().filter(|(cut, _)| *cut < 100).count();
    assert!(moved >= 16, "most of the next 400 clicks left the cut offer on only {moved} of 20 seeds: {runs:?}");
    assert!(runs.iter().all(|(_, other)| *other >= 20), "the other offer was shut out on a seed: {runs:?}");
}
