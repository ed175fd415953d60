//! The decision side of the router: the cached per-segment Thompson
//! distribution, the pacing shadow prices, and a small fast generator for
//! the Monte-Carlo draws.
//!
//! Nothing here is learned from outcomes: after a restart it is recomputed
//! on the first clicks, from the replayed statistics.

use std::sync::atomic::{AtomicU32, Ordering};

use rand::RngCore;

/// The policy's distribution over one candidate list for one segment and
/// hour: `cum[i]` is the probability of choosing candidate `0..=i`.
#[derive(Debug, Default)]
pub(super) struct PolicyEntry {
    /// The packed segment the entry is for.
    pub seg: u32,
    pub sig: u64,
    pub hour: u8,
    pub generation: u64,
    pub computed_ms: i64,
    /// `Learned::conversions` when computed.
    pub conversions: u64,
    pub cum: Vec<f64>,
    /// The candidate with the highest posterior-mean score.
    pub best: u32,
    /// Clicks that picked from it (also from the shared board): how much a
    /// policy for this segment is used, for the next one's draws.
    pub uses: AtomicU32,
}

impl Clone for PolicyEntry {
    fn clone(&self) -> Self {
        PolicyEntry {
            seg: self.seg,
            sig: self.sig,
            hour: self.hour,
            generation: self.generation,
            computed_ms: self.computed_ms,
            conversions: self.conversions,
            cum: self.cum.clone(),
            best: self.best,
            uses: AtomicU32::new(self.uses.load(Ordering::Relaxed)),
        }
    }
}

impl PolicyEntry {
    /// Whether the entry is for this segment (packed `seg`), candidate list
    /// (`sig`, `n` candidates) and hour, computed no later than the click
    /// and less than `max_age_ms` before it. The router also asks that
    /// nothing was learned since that would change it; a click that finds
    /// the router's lock held cannot ask that (see `shared`).
    pub fn serves(&self, seg: u32, sig: u64, n: usize, ctx: &super::Context, max_age_ms: i64) -> bool {
        // `n` too: the signature is a hash, and a policy for a longer list
        // could pick an index past the candidates.
        self.seg == seg
            && self.sig == sig
            && self.cum.len() == n
            && self.hour == ctx.hour
            && ctx.now_ms >= self.computed_ms
            && ctx.now_ms - self.computed_ms < max_age_ms
    }

    /// The candidate that the uniform draw `u` in `[0, 1)` selects.
    pub fn sample(&self, u: f64) -> super::Choice {
        self.uses.fetch_add(1, Ordering::Relaxed);
        let n = self.cum.len();
        let mut i = self.cum.partition_point(|&c| c <= u);
        if i >= n {
            // Only reachable through rounding: take the last candidate with
            // a positive probability.
            i = (0..n).rev().find(|&j| self.cum[j] > if j == 0 { 0.0 } else { self.cum[j - 1] }).unwrap_or(0);
        }
        let propensity = self.cum[i] - if i == 0 { 0.0 } else { self.cum[i - 1] };
        let reason = if i as u32 == self.best { super::Reason::BestScore } else { super::Reason::Exploration };
        super::Choice { index: i, reason, propensity }
    }
}

/// Shadow prices of one offer's daily caps. A price is the share of the
/// offer's value (or, for clicks, of its average value per click) that a
/// click must give up to use the capped resource; it rises while the offer
/// is projected to run out before its caps reset and falls otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Pacing {
    pub updated_ms: i64,
    /// Price of an approved conversion, as a share of the payout.
    pub conversions: f64,
    /// Price of budget, as a share of the payout.
    pub budget: f64,
    /// Price of a click, in units of the offer's mean value per click.
    pub clicks: f64,
}

impl Pacing {
    /// Share of the value kept after the conversion and budget prices.
    pub fn keep(&self) -> f64 {
        (1.0 - self.conversions - self.budget).max(0.0)
    }
}

/// Signature of a candidate list: keys and payouts in order. Caps' remaining
/// counts are left out on purpose (they change on every click).
pub(super) fn signature(cands: &[super::Candidate]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ cands.len() as u64;
    for c in cands {
        h = (h ^ c.key as u64).wrapping_mul(0x100_0000_01b3).rotate_left(17);
        h = (h ^ c.payout.to_bits()).wrapping_mul(0x100_0000_01b3).rotate_left(17);
    }
    h
}

/// xoshiro256++: the Monte-Carlo draws of one refresh, seeded from the
/// caller's generator so runs stay reproducible.
pub(super) struct Xoshiro([u64; 4]);

impl Xoshiro {
    pub fn seeded(mut seed: u64) -> Xoshiro {
        let mut s = [0u64; 4];
        for v in &mut s {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *v = z ^ (z >> 31);
        }
        Xoshiro(s)
    }
}

impl RngCore for Xoshiro {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A uniform number in `[0, 1)` from 53 random bits.
#[inline]
pub(super) fn unit(rng: &mut dyn RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
