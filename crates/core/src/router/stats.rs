//! What the router has learned: time-discounted, delay-aware counts of
//! clicks and conversions per offer and per segment cell, approval and
//! delay statistics, and the empirical-Bayes constants derived from them.
//!
//! Everything here changes only through `on_click` and `on_conversion`
//! (including the periodic re-estimation, which is scheduled by event time),
//! so replaying the same events in the same order rebuilds a bit-identical
//! state. Containers that are iterated are `Vec`s in insertion order; hash
//! maps are used for look-ups only.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::Segment;

use super::hours;

pub(super) const NONE: u32 = u32::MAX;
pub(super) const MS_PER_HOUR: f64 = 3_600_000.0;

/// Levels of the pooling hierarchy, coarsest first. Level 0 is the pool
/// prior (no cell); 1 = offer, 2 = offer×region (the country's M49
/// sub-region, `regions.rs`), 3 = offer×country, 4 = offer×country×device,
/// 5 = offer×country×device×os.
pub(super) const LEVELS: usize = 6;

/// Posterior mean and variance of a conversion rate down the hierarchy
/// (see [`Learned::posterior`]), from the data of each level of a path
/// (`data[level]`, `data[LEVELS]` empty), the level-1 prior `(mean,
/// strength)` and, per level from 2, `(ratio, kappa)`: the prior of a
/// level is its parent's estimate times `ratio` with strength `kappa` (how
/// much cells differ around that). Without a network prior every ratio is
/// 1 and `kappa` the router's own; with one (`network.rs`) the ratios are
/// the network's relative effects of the segment and `kappa` how closely
/// a link follows them. `means`, when given, receives each level's mean.
pub(super) fn chain(
    data: &[(f64, f64); LEVELS + 1],
    (prior, strength): (f64, f64),
    steps: &[(f64, f64); LEVELS],
    mut means: Option<&mut [f64; LEVELS]>,
) -> (f64, f64) {
    let own = |level: usize| {
        let (n, k) = data[level];
        let (nc, kc) = data[level + 1];
        ((n - nc).max(0.0), (k - kc).max(0.0))
    };
    let (n, k) = own(1);
    let a = strength + k;
    let b = strength / prior + n;
    let (mut mean, mut var) = (a / b, a / (b * b));
    if let Some(m) = means.as_deref_mut() {
        m[1] = mean;
    }
    for (level, &(ratio, kap)) in steps.iter().enumerate().skip(2) {
        let (n, k) = own(level);
        let (pm, pv) = (mean * ratio, var * ratio * ratio);
        let strength = pm * pm / (pm * pm / kap + pv);
        let a = strength + k;
        let b = strength / pm + n;
        mean = a / b;
        var = a / (b * b);
        if let Some(m) = means.as_deref_mut() {
            m[level] = mean;
        }
    }
    (mean, var)
}

/// A fast, deterministic hasher for the integer keys used here.
#[derive(Default, Clone, Copy)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // A multiply only moves entropy upward; hash tables index with the
        // low bits, so mix the high bits back down (splitmix64's finalizer).
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// Packs a segment into 15 bits: country index (10), device (2), os (3).
#[inline]
pub(super) fn pack_segment(s: Segment) -> u32 {
    ((s.country.index() as u32) << 5) | ((s.device.index() as u32) << 3) | s.os.index() as u32
}

/// The key of the cell of `offer` at `level` for segment `seg`.
#[inline]
pub(super) fn cell_key(offer: u32, level: usize, seg: Segment) -> u64 {
    let s = pack_segment(seg) as u64;
    let part = match level {
        1 => 0,
        2 => super::regions::region(seg.country) as u64,
        3 => s & !0x1f,
        4 => s & !0x07,
        _ => s,
    };
    ((offer as u64) << 24) | ((level as u64) << 16) | part
}

#[inline]
pub(super) fn hour_of(ms: i64) -> usize {
    ms.div_euclid(3_600_000).rem_euclid(24) as usize
}

/// Discounted exposure and conversions of one cell.
///
/// `a` is the discounted click weight, `b` the part of it whose conversion
/// window is still open: it decays at `lam + mu` where `mu` is the rate of
/// the (exponential) click→postback delay. `a - b` is therefore
/// `Σ wᵢ·e^{-lam·ageᵢ}·F(ageᵢ)` with `F` the delay CDF: the exposure that
/// could already have reported a conversion. A click younger than the
/// typical delay thus counts as a fraction of a failure, not a whole one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Exposure {
    pub t: i64,
    pub a: f64,
    pub b: f64,
    pub k: f64,
}

impl Exposure {
    pub fn at(t: i64) -> Exposure {
        Exposure { t, ..Default::default() }
    }

    #[inline]
    fn advance(&mut self, now: i64, lam: f64, mu: f64) {
        if now > self.t {
            let dt = (now - self.t) as f64;
            let da = (-lam * dt).exp();
            self.a *= da;
            self.k *= da;
            self.b *= (-(lam + mu) * dt).exp();
            self.t = now;
        }
    }

    /// Adds a click of weight `w` made at `at` (usually `now`).
    #[inline]
    pub fn add_click(&mut self, now: i64, at: i64, w: f64, lam: f64, mu: f64) {
        self.advance(now, lam, mu);
        let age = (self.t - at).max(0) as f64;
        if age == 0.0 {
            self.a += w;
            self.b += w;
        } else {
            self.a += w * (-lam * age).exp();
            self.b += w * (-(lam + mu) * age).exp();
        }
    }

    /// Adds a conversion of the click made at `at`, discounted by the
    /// click's age so that it matches the exposure it belongs to.
    #[inline]
    pub fn add_conversion(&mut self, now: i64, at: i64, w: f64, lam: f64, mu: f64) {
        self.advance(now, lam, mu);
        let age = (self.t - at).max(0) as f64;
        self.k += w * (-lam * age).exp();
    }

    /// Adds `other` as of `now`, its exposure scaled by `scale` (its
    /// conversions are not).
    pub fn absorb(&mut self, other: &Exposure, scale: f64, now: i64, lam: f64, mu: f64) {
        let mut o = *other;
        o.advance(now, lam, mu);
        self.advance(now, lam, mu);
        self.a += scale * o.a;
        self.b += scale * o.b;
        self.k += o.k;
    }

    /// `(exposure, conversions)` as of `now`.
    #[inline]
    pub fn read(&self, now: i64, lam: f64, mu: f64) -> (f64, f64) {
        if now <= self.t {
            return ((self.a - self.b).max(0.0), self.k);
        }
        let dt = (now - self.t) as f64;
        let da = (-lam * dt).exp();
        let db = (-(lam + mu) * dt).exp();
        ((self.a * da - self.b * db).max(0.0), self.k * da)
    }
}

/// A discounted pair of sums.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Pair {
    pub t: i64,
    pub x: f64,
    pub y: f64,
}

impl Pair {
    #[inline]
    pub fn add(&mut self, now: i64, dx: f64, dy: f64, rate: f64) {
        if now > self.t {
            let d = (-rate * (now - self.t) as f64).exp();
            self.x *= d;
            self.y *= d;
            self.t = now;
        }
        self.x = (self.x + dx).max(0.0);
        self.y = (self.y + dy).max(0.0);
    }

    #[inline]
    pub fn read(&self, now: i64, rate: f64) -> (f64, f64) {
        if now <= self.t {
            return (self.x, self.y);
        }
        let d = (-rate * (now - self.t) as f64).exp();
        (self.x * d, self.y * d)
    }
}

/// One cell of the hierarchy: an offer, or an offer in part of a segment.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cell {
    pub exp: Exposure,
    /// Index of the next coarser cell, `NONE` at level 1.
    pub parent: u32,
    /// Index into `Learned::offers`.
    pub offer: u32,
    pub level: u8,
    /// Index into `Learned::country_ext` for cells at `EXT_LEVEL`, `NONE`
    /// else.
    pub ext: u32,
}

/// What is kept per offer×country×device beyond the cell itself.
///
/// The hour statistics keep raw exposure per cell, and are compared with
/// the *current* model's rates when they are evaluated: predictions made at
/// click time would carry the model's early mistakes into them and look
/// like hour effects.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CountryExt {
    /// Exposure (unweighted) and conversions per UTC hour of the click.
    pub hours: [Exposure; 24],
}

/// The change detector's evidence for the clicks of one stretch of click
/// time (`DRIFT_BIN_MS`), undiscounted: each click weighted by what the
/// model predicted for it when it was made (so `a - b` of `exp` is the
/// number of its conversions expected to have arrived by now), and the
/// conversions of those clicks that did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct DriftBin {
    pub start: i64,
    pub exp: Exposure,
}

/// Per-offer statistics that are not per segment.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct OfferStats {
    pub key: u32,
    /// Rate of the click→postback delay, per millisecond.
    pub mu: f64,
    /// The offer's level-1 cell.
    pub top: u32,
    /// Every cell of this offer (for re-levelling after a detected change).
    pub cells: Vec<u32>,
    /// The offer's cells at `EXT_LEVEL` (those with a `CountryExt`).
    pub countries: Vec<u32>,
    /// The hour statistics of the offer's `EXT_LEVEL` cells that were
    /// folded away (`Learned::fold`), their exposure weighted by the cell's
    /// predicted rate when it was folded: the expected conversions those
    /// clicks stand for, per UTC hour, beside their actual conversions.
    pub folded_hours: [Exposure; 24],
    /// Approved (`x`) and rejected (`y`) conversions, discounted.
    pub approval: Pair,
    /// Sum of delays in ms (`x`) and number of delays (`y`), discounted.
    pub delay: Pair,
    /// Multiplier of the conversion rate by UTC hour, shrunk toward 1.
    pub hour_mult: [f64; 24],
    /// Squared coefficient of variation of each multiplier.
    pub hour_cv2: [f64; 24],
    /// Posterior weights of the hour model's prior grid (`hours::fit`).
    pub hour_weights: [f64; hours::GRID],
    /// Posterior mean scale of the last hour fit (`hours::HourFit::scale`).
    pub hour_scale: f64,
    /// Event time of the last hour fit (`i64::MIN`: none yet, or due at
    /// the next refresh), and the offer's discounted conversions then (see
    /// `HOUR_REFIT_MS`).
    pub hour_fit_ms: i64,
    pub hour_fit_k: f64,
    /// When the router first heard of the offer.
    pub first_seen: i64,
    /// Conversions reported since the offer's last hour fit.
    pub fit_conversions: u32,
    /// The change detector's evidence by click time, oldest first, over at
    /// most `DRIFT_WINDOW_MS` (clicks of cells the model knows well only).
    pub drift: std::collections::VecDeque<DriftBin>,
    /// Clicks before this time are not in the detector's evidence (0 =
    /// detector off).
    pub drift_since: i64,
    pub drift_checked: i64,
    /// Recent clicks (`x`) and predicted approved conversions (`y`),
    /// discounted with a short half-life: the offer's current consumption
    /// rate, for pacing.
    pub usage: Pair,
    /// Predicted approved conversions still in flight (decays at `mu`).
    pub pending: Pair,
}

impl OfferStats {
    fn new(key: u32, top: u32, mu: f64) -> OfferStats {
        OfferStats {
            key,
            mu,
            top,
            cells: Vec::new(),
            countries: Vec::new(),
            folded_hours: [Exposure::default(); 24],
            approval: Pair::default(),
            delay: Pair::default(),
            hour_mult: [1.0; 24],
            hour_cv2: [0.0; 24],
            hour_weights: hours::base_prior(),
            hour_scale: 0.0,
            hour_fit_ms: i64::MIN,
            hour_fit_k: 0.0,
            first_seen: 0,
            fit_conversions: 0,
            drift: std::collections::VecDeque::new(),
            drift_since: 0,
            drift_checked: 0,
            usage: Pair::default(),
            pending: Pair::default(),
        }
    }
}

/// Constants re-estimated from the data every few minutes.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Derived {
    /// Prior strength (pseudo-conversions) of each level around its parent.
    pub kappa: [f64; LEVELS],
    /// Mean over the offers of the hour effect's estimated scale (the
    /// standard deviation of its log-multiplier over the day).
    pub hour_scale: f64,
    /// Conversion rate of the whole pool.
    pub pool_cr: f64,
    /// Approval rate of the whole pool.
    pub pool_approval: f64,
    /// Mean click→postback delay of the pool, ms.
    pub delay_ms: f64,
}

/// Fixed parameters of the statistics, derived from the configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Rates {
    /// Discount rate of the learned statistics, per ms.
    pub lam: f64,
    /// Discount rate of the consumption estimate used for pacing, per ms.
    pub lam_usage: f64,
    pub drift_threshold: f64,
    pub prior_delay_ms: f64,
    pub refresh_ms: i64,
}

/// Default prior strengths, used until the data says otherwise.
pub(super) const KAPPA_DEFAULT: [f64; LEVELS] = [0.0, 1.0, 2.0, 4.0, 4.0, 8.0];
/// Weight of the default in the empirical-Bayes estimates: as many cells
/// of this many expected conversions.
pub(super) const EB_PRIOR_CELLS: f64 = 3.0;
pub(super) const EB_PRIOR_CELL_SIZE: f64 = 10.0;
/// Strength of the pool's approval rate as a prior for one offer's.
pub(super) const KAPPA_APPROVAL: f64 = 4.0;
/// Minimum discounted conversions of an offer before its change detector
/// runs: below that, a mismatch between prediction and outcome is learning,
/// not drift.
const DRIFT_MIN_CONVERSIONS: f64 = 30.0;
const DRIFT_CHECK_MS: i64 = 60_000;
/// Discounted conversions an offer×country×device cell needs before its
/// outcomes count as evidence of a change.
const DRIFT_MATURE_CONVERSIONS: f64 = 10.0;
/// Click time covered by one bin of the change detector's evidence (the
/// resolution of the change point it finds).
const DRIFT_BIN_MS: i64 = 15 * 60_000;
/// Click time the change detector looks back over: long enough for the
/// conversions of a change to arrive with postbacks that take hours, short
/// enough to stay small (96 bins an offer); older mismatches are left to
/// the discount.
const DRIFT_WINDOW_MS: i64 = 24 * 3_600_000;
/// The change ratios the detector weighs evidence at: a window whose
/// ratio lies beyond is weighed at the nearest bound. A few hours where
/// the model is far off (the edge of a sharp daily peak a smooth cycle
/// cannot follow, a handful of conversions) then do not add up to a
/// change as fast as a sustained shift of the whole offer.
const DRIFT_RATIO_RANGE: (f64, f64) = (0.5, 2.0);
/// Pseudo-conversions (at ratio 1) in the change ratio applied when the
/// detector fires: a change found on few conversions is not taken at face
/// value.
const DRIFT_RATIO_PRIOR: f64 = 2.0;
/// The detector arms once the offer has a full day of history: within its
/// first day a change cannot be told from a time-of-day pattern.
const DRIFT_MIN_AGE_MS: i64 = 86_400_000;
/// The level whose cells keep hour and change-detection statistics
/// (offer×country×device): fine enough that the routing's traffic mix
/// within a cell barely moves, coarse enough to stay small.
const EXT_LEVEL: usize = 4;
/// An offer's hour model is refitted at the first statistics refresh 30
/// minutes (of event time) after its last fit, or sooner when its discounted
/// conversions are a tenth more than then (a young offer), or after a
/// detected change. A fit costs a few
/// hundred microseconds per offer; the hour statistics gain one hour of
/// the day's data an hour, so refitting at every refresh (600 s) mostly
/// repeated the same fit under the smartlink's lock. (An hour's cadence
/// cost less still but moved the halving test's seed 7 below its bar.)
const HOUR_REFIT_MS: i64 = 1_800_000;
/// The growth of an offer's hour conversions that triggers a refit sooner.
const HOUR_REFIT_GROWTH: f64 = 1.1;
/// Hour fits one refresh runs at most (the longest overdue first; the
/// rest at the next refresh). A fit costs a few hundred microseconds and a
/// refresh runs on a click under the smartlink's lock: a pool of 50 offers
/// all due at once would hold it for over 10 ms.
const MAX_REFITS_PER_REFRESH: usize = 8;
/// The fewest events between two count-triggered re-estimations. Small, so
/// that a young router re-estimates after its first conversions: with 2,000
/// here, a fresh smartlink kept the 30-minute prior delay for its first ten
/// minutes, took its first clicks' instant conversions for a conversion
/// rate near 1 (76 clicks counted as 4 clicks of exposure) and sent the
/// other offer nothing until the time-triggered refresh.
const EVENTS_PER_REFRESH: u64 = 16;
/// Least time between two count-triggered refreshes.
const MIN_YOUNG_REFRESH_MS: i64 = 1_000;
/// How often (event time) a refresh looks for cells to fold.
const FOLD_CHECK_MS: i64 = 3_600_000;
/// A cell untouched this long folds into its parent unless its own
/// evidence still counts (`FOLD_KEEP_CONVERSIONS`).
const FOLD_IDLE_MS: i64 = 24 * 3_600_000;
/// Discounted conversions that keep an idle cell until `FOLD_FORGET_MS`.
const FOLD_KEEP_CONVERSIONS: f64 = 1.0;
/// A cell untouched this long folds whatever it holds: 3.5 half-lives of
/// the default discount, its data weighs under a tenth of what it did.
const FOLD_FORGET_MS: i64 = 7 * 24 * 3_600_000;
/// Cells one router keeps at most; past this the least recently touched
/// cells without children fold first (a guard against traffic of unbounded
/// variety, far above what real segment mixes reach in `FOLD_IDLE_MS`).
pub(super) const CELL_BUDGET: usize = 200_000;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Learned {
    pub offers: Vec<OfferStats>,
    pub offer_index: FastMap<u32, u32>,
    pub cells: Vec<Cell>,
    pub cell_index: FastMap<u64, u32>,
    pub country_ext: Vec<CountryExt>,
    /// The pool's traffic by UTC hour, for pacing's forecast.
    pub traffic: Traffic,
    /// The pool's recent clicks (`x`), discounted like `OfferStats::usage`.
    pub pool_usage: Pair,
    /// Pool-wide delay sum (`x`, ms) and count (`y`).
    pub delay: Pair,
    /// (click, postback) times of a thinned sample of the conversions, for
    /// the truncation-corrected delay estimate (`DelaySample`).
    pub recent_delays: DelaySample,
    pub derived: Derived,
    pub last_refresh: i64,
    /// Event time of the last look for cells to fold.
    pub last_fold: i64,
    /// Cells folded into their parents so far.
    pub folded: u64,
    /// Events since the last re-estimation, and ever.
    pub events: u32,
    pub total_events: u64,
    /// Conversions ever reported (not discounted): how much the router
    /// knows, for refreshing policies sooner while it knows little.
    pub conversions: u64,
    /// Bumped whenever the estimates jump (a detected change), so cached
    /// policies are recomputed.
    pub generation: u64,
    /// Changes detected so far.
    pub relevels: u64,
}

impl Learned {
    pub fn new(rates: &Rates) -> Learned {
        Learned {
            offers: Vec::new(),
            offer_index: FastMap::default(),
            cells: Vec::new(),
            cell_index: FastMap::default(),
            country_ext: Vec::new(),
            traffic: Traffic::default(),
            pool_usage: Pair::default(),
            delay: Pair::default(),
            recent_delays: DelaySample::default(),
            derived: Derived {
                kappa: KAPPA_DEFAULT,
                hour_scale: 0.0,
                pool_cr: 0.01,
                pool_approval: 0.9,
                delay_ms: rates.prior_delay_ms,
            },
            last_refresh: i64::MIN,
            last_fold: i64::MIN,
            folded: 0,
            events: 0,
            total_events: 0,
            conversions: 0,
            generation: 0,
            relevels: 0,
        }
    }

    pub fn offer(&self, key: u32) -> Option<usize> {
        self.offer_index.get(&key).map(|&i| i as usize)
    }

    fn offer_or_insert(&mut self, key: u32, now: i64) -> usize {
        if let Some(i) = self.offer(key) {
            return i;
        }
        let oi = self.offers.len();
        let top = self.cells.len() as u32;
        self.cells.push(Cell { exp: Exposure::at(now), parent: NONE, offer: oi as u32, level: 1, ext: NONE });
        self.cell_index.insert(cell_key(key, 1, any_segment()), top);
        let mut o = OfferStats::new(key, top, 1.0 / self.derived.delay_ms.max(1000.0));
        o.cells.push(top);
        o.first_seen = now;
        self.offers.push(o);
        self.offer_index.insert(key, oi as u32);
        oi
    }

    /// The leaf cell of (offer, segment), creating the chain as needed.
    fn leaf_or_insert(&mut self, oi: usize, seg: Segment, now: i64) -> u32 {
        let key = self.offers[oi].key;
        if let Some(&c) = self.cell_index.get(&cell_key(key, LEVELS - 1, seg)) {
            return c;
        }
        let mut parent = self.offers[oi].top;
        for level in 2..LEVELS {
            let ck = cell_key(key, level, seg);
            parent = match self.cell_index.get(&ck) {
                Some(&c) => c,
                None => {
                    let c = self.cells.len() as u32;
                    let mut ext = NONE;
                    if level == EXT_LEVEL {
                        ext = self.country_ext.len() as u32;
                        self.country_ext.push(CountryExt { hours: [Exposure::at(now); 24] });
                        self.offers[oi].countries.push(c);
                    }
                    self.cells.push(Cell { exp: Exposure::at(now), parent, offer: oi as u32, level: level as u8, ext });
                    self.cell_index.insert(ck, c);
                    self.offers[oi].cells.push(c);
                    c
                }
            };
        }
        parent
    }

    /// The cells of (offer, segment) from level 1 to 4; `NONE` where the
    /// router has never seen that part of the segment.
    pub fn path(&self, oi: usize, seg: Segment) -> [u32; LEVELS] {
        let mut path = [NONE; LEVELS];
        let key = self.offers[oi].key;
        let mut start = NONE;
        for level in (2..LEVELS).rev() {
            if let Some(&c) = self.cell_index.get(&cell_key(key, level, seg)) {
                start = c;
                break;
            }
        }
        let mut c = if start == NONE { self.offers[oi].top } else { start };
        while c != NONE {
            let cell = &self.cells[c as usize];
            path[cell.level as usize] = c;
            c = cell.parent;
        }
        path
    }

    /// Posterior mean and variance of the conversion rate at the leaf of
    /// `path` (hour-free), given a level-1 prior mean.
    ///
    /// Gamma–Poisson down the hierarchy. Each level is estimated from the
    /// data that is *not* in the next level of the path (the siblings), with
    /// its parent's estimate as the prior; the leaf from its own data. So
    /// every click counts once: a cell with little data of its own is not
    /// made more certain by seeing the same clicks again at each level. A
    /// level's prior has the parent's mean and the variance `μ²/κ` (how much
    /// cells differ) plus the parent's own variance, so an unseen segment of
    /// a well-known offer is uncertain only by how much segments differ, and
    /// a cell under an uncertain parent learns mostly from its own data.
    pub fn posterior(&self, oi: usize, path: &[u32; LEVELS], now: i64, lam: f64, prior: f64) -> (f64, f64) {
        let kappa = &self.derived.kappa;
        let steps: [(f64, f64); LEVELS] = std::array::from_fn(|l| (1.0, kappa[l]));
        chain(&self.path_data(oi, path, now, lam), (prior, kappa[1]), &steps, None)
    }

    /// `(exposure, conversions)` of each level of `path` (index = level;
    /// 0 and `LEVELS` stay empty).
    pub fn path_data(&self, oi: usize, path: &[u32; LEVELS], now: i64, lam: f64) -> [(f64, f64); LEVELS + 1] {
        let mu = self.offers[oi].mu;
        let mut data = [(0.0, 0.0); LEVELS + 1];
        for level in 1..LEVELS {
            data[level] = self.read(path[level], now, lam, mu);
        }
        data
    }

    /// Posterior mean only, with the pool prior: the model's own
    /// prediction for a click in the cell `leaf` (any level).
    fn predict(&self, oi: usize, leaf: u32, now: i64, lam: f64) -> f64 {
        let mut path = [NONE; LEVELS];
        let mut c = leaf;
        while c != NONE {
            let cell = &self.cells[c as usize];
            path[cell.level as usize] = c;
            c = cell.parent;
        }
        self.posterior(oi, &path, now, lam, self.derived.pool_cr).0
    }

    #[inline]
    fn read(&self, c: u32, now: i64, lam: f64, mu: f64) -> (f64, f64) {
        if c == NONE {
            (0.0, 0.0)
        } else {
            self.cells[c as usize].exp.read(now, lam, mu)
        }
    }

    /// Posterior mean and variance of an offer's approval rate.
    pub fn approval(&self, oi: Option<usize>, now: i64, lam: f64) -> (f64, f64) {
        self.approval_with(oi, now, lam, (self.derived.pool_approval, KAPPA_APPROVAL))
    }

    /// [`approval`](Self::approval) around a given prior `(mean,
    /// strength)` (the network's, `network.rs`).
    pub fn approval_with(&self, oi: Option<usize>, now: i64, lam: f64, (m0, kappa): (f64, f64)) -> (f64, f64) {
        let (a, r) = oi.map_or((0.0, 0.0), |i| self.offers[i].approval.read(now, lam));
        let s = a + r + kappa;
        let m = (a + kappa * m0) / s;
        (m, m * (1.0 - m) / (s + 1.0))
    }

    pub fn on_click(&mut self, key: u32, seg: Segment, hour: usize, now: i64, r: &Rates) {
        self.maybe_refresh(now, r);
        let oi = self.offer_or_insert(key, now);
        let leaf = self.leaf_or_insert(oi, seg, now);
        let base = self.predict(oi, leaf, now, r.lam);
        let approval = self.approval(Some(oi), now, r.lam).0;
        let o = &self.offers[oi];
        let (mu, w) = (o.mu, o.hour_mult[hour]);
        let armed = o.drift_since > 0;
        let predicted = base * o.hour_mult[hour];
        let mut known = false;
        let mut c = leaf;
        while c != NONE {
            let cell = &mut self.cells[c as usize];
            cell.exp.add_click(now, now, w, r.lam, mu);
            if cell.ext != NONE {
                // Just advanced to `now`: `k` is current.
                known = cell.exp.k >= DRIFT_MATURE_CONVERSIONS;
                let x = &mut self.country_ext[cell.ext as usize];
                x.hours[hour_of(now)].add_click(now, now, 1.0, r.lam, mu);
            }
            c = cell.parent;
        }
        let o = &mut self.offers[oi];
        if armed && known {
            let start = now - now.rem_euclid(DRIFT_BIN_MS);
            if o.drift.back().is_none_or(|b| b.start < start) {
                o.drift.push_back(DriftBin { start, exp: Exposure::at(now) });
            }
            if let Some(b) = o.drift.back_mut() {
                b.exp.add_click(now, now, predicted, 0.0, mu);
            }
        }
        o.usage.add(now, 1.0, base * w * approval, r.lam_usage);
        o.pending.add(now, base * w * approval, 0.0, mu);
        self.traffic.click(now);
        self.pool_usage.add(now, 1.0, 0.0, r.lam_usage);
        self.check_drift(oi, now, r);
    }

    pub fn on_conversion(&mut self, key: u32, seg: Segment, click_ms: i64, now: i64, change: StatusChange, r: &Rates) {
        self.maybe_refresh(now, r);
        let oi = self.offer_or_insert(key, now);
        let click_ms = click_ms.min(now);
        if change.new_conversion {
            self.conversions += 1;
            self.offers[oi].fit_conversions += 1;
            let leaf = self.leaf_or_insert(oi, seg, now);
            let mu = self.offers[oi].mu;
            let mut known = false;
            let mut c = leaf;
            while c != NONE {
                let cell = &mut self.cells[c as usize];
                cell.exp.add_conversion(now, click_ms, 1.0, r.lam, mu);
                if cell.ext != NONE {
                    known = cell.exp.k >= DRIFT_MATURE_CONVERSIONS;
                    let x = &mut self.country_ext[cell.ext as usize];
                    x.hours[hour_of(click_ms)].add_conversion(now, click_ms, 1.0, r.lam, mu);
                }
                c = cell.parent;
            }
            // Into the bin of its click, if that click is in the evidence
            // (its cell known well, after the detector armed or last fired).
            let o = &mut self.offers[oi];
            if known && o.drift.front().is_some_and(|b| b.start <= click_ms) {
                let i = o.drift.partition_point(|b| b.start <= click_ms) - 1;
                let b = &mut o.drift[i];
                if click_ms < b.start + DRIFT_BIN_MS {
                    b.exp.add_conversion(now, click_ms, 1.0, 0.0, mu);
                }
            }
            let delay = (now - click_ms) as f64;
            self.delay.add(now, delay, 1.0, r.lam);
            self.recent_delays.push(click_ms, now);
            let o = &mut self.offers[oi];
            o.delay.add(now, delay, 1.0, r.lam);
        }
        if change.approved != 0.0 || change.rejected != 0.0 {
            self.offers[oi].approval.add(now, change.approved, change.rejected, r.lam);
        }
        self.check_drift(oi, now, r);
    }

    /// Tests whether the offer's recent outcomes still agree with the
    /// model's predictions; if not, re-levels every cell of the offer by the
    /// observed ratio. A silent change of an offer's conversion rate is
    /// usually multiplicative across segments, so this adapts within hours
    /// without forgetting the segment structure learned over days.
    ///
    /// The test is a generalized likelihood ratio over change points in
    /// *click* time: for every start `τ` among the bins of the last
    /// `DRIFT_WINDOW_MS`, the conversions that have arrived for the clicks
    /// since `τ` (`k`) against what the model predicted for those clicks
    /// when they were made, hour of day included, and expects to have
    /// arrived by now (`e`), at the window's own ratio (within
    /// `DRIFT_RATIO_RANGE`); the likelihood is Poisson widened to a
    /// negative binomial by the hour model's own uncertainty about its
    /// shape at the window's hours, so where the smooth daily cycle is
    /// unsure (the edges of a sharp peak) a miss counts for less, and where
    /// it is sure (no daily pattern) the test is plain Poisson. Grouping by
    /// click time keeps the conversions of clicks made before a change out
    /// of the evidence about it (with postbacks taking minutes to hours
    /// they would dilute the first hours after it).
    fn check_drift(&mut self, oi: usize, now: i64, r: &Rates) {
        let o = &self.offers[oi];
        if now - o.drift_checked < DRIFT_CHECK_MS {
            return;
        }
        let mu = o.mu;
        let k1 = self.cells[o.top as usize].exp.read(now, r.lam, mu).1;
        let o = &mut self.offers[oi];
        o.drift_checked = now;
        if o.drift_since == 0 {
            if k1 >= DRIFT_MIN_CONVERSIONS && now - o.first_seen >= DRIFT_MIN_AGE_MS {
                o.drift_since = now;
                o.drift.clear();
            }
            return;
        }
        while o.drift.front().is_some_and(|b| b.start < now - DRIFT_WINDOW_MS) {
            o.drift.pop_front();
        }
        // How uncertain the hour model's shape is at each hour (its
        // log-variance there beyond that of its best-known hour, which is
        // the level's, what the detector is there to question).
        let floor = o.hour_cv2.iter().cloned().fold(f64::INFINITY, f64::min);
        let shape = o.hour_cv2.map(|v| (v - floor).max(0.0));
        let mut by_hour = [0.0; 24];
        let (mut e, mut k, mut var) = (0.0, 0.0, 0.0);
        let (mut best, mut rho) = (0.0, 1.0);
        for b in o.drift.iter().rev() {
            let (be, bk) = b.exp.read(now, 0.0, mu);
            let h = hour_of(b.start);
            var += shape[h] * be * (2.0 * by_hour[h] + be);
            by_hour[h] += be;
            e += be;
            k += bk;
            if e < 1.0 {
                continue;
            }
            // Conversions are Poisson around a prediction that is itself
            // uncertain where the hour model is (a Gamma multiplier of
            // variance `var / e²`, errors shared by the window's clicks of
            // one hour of the day): negative binomial with shape `n`, whose
            // log-likelihood ratio of "rate × alt" to "rate as predicted"
            // is `k ln alt + (k + n) ln((e + n) / (alt e + n))` (Poisson as
            // `n → ∞`). The alternative's ratio is the window's own within
            // `DRIFT_RATIO_RANGE`, the nearest bound beyond it.
            let alt = (k / e).clamp(DRIFT_RATIO_RANGE.0, DRIFT_RATIO_RANGE.1);
            let llr = if var > 1e-12 * e * e {
                let n = e * e / var;
                k * alt.ln() + (k + n) * ((e + n) / (alt * e + n)).ln()
            } else {
                k * alt.ln() - (alt - 1.0) * e
            };
            if llr > best {
                best = llr;
                rho = (k + DRIFT_RATIO_PRIOR) / (e + DRIFT_RATIO_PRIOR);
            }
        }
        if best <= r.drift_threshold {
            return;
        }
        let rho = rho.clamp(0.02, 50.0);
        // The evidence starts over: the clicks still in their conversion
        // window were predicted at the old rate, and would make the
        // detector fire again on the same mistake while their postbacks
        // arrive.
        o.drift.clear();
        for &c in &o.cells {
            self.cells[c as usize].exp.k *= rho;
        }
        // The hour statistics likewise: compared with the re-levelled
        // rates, the hours before the change would otherwise read as a
        // daily peak and the hours since it as a trough.
        for &c in &o.countries {
            for x in &mut self.country_ext[self.cells[c as usize].ext as usize].hours {
                x.k *= rho;
            }
        }
        for x in &mut self.offers[oi].folded_hours {
            x.k *= rho;
        }
        self.offers[oi].hour_fit_ms = i64::MIN;
        self.relevels += 1;
        self.generation += 1;
    }

    fn maybe_refresh(&mut self, now: i64, r: &Rates) {
        self.events = self.events.saturating_add(1);
        self.total_events += 1;
        // By event time, and also by count while the router is young (each
        // time it has seen a tenth more), when estimates move fastest. A
        // refresh walks every cell under the smartlink's lock, so count-
        // triggered ones are at least a second apart: a burst of traffic
        // into a new smartlink would otherwise refresh dozens of times in
        // its first second and stall the clicks waiting for the lock.
        // A router that sees fewer events than `EVENTS_PER_REFRESH` per
        // refresh period (a tail smartlink) waits for that many: each
        // refresh walks all its cells, and on a click every few minutes it
        // would run on nearly every click for estimates that barely moved.
        let enough = self.events as u64 >= EVENTS_PER_REFRESH;
        let young = enough && self.events as u64 * 10 >= self.total_events;
        let due = self.last_refresh == i64::MIN
            || (enough && now - self.last_refresh >= r.refresh_ms)
            || (young && now - self.last_refresh >= MIN_YOUNG_REFRESH_MS);
        if due {
            self.refresh(now, r);
        }
    }

    /// Re-estimates the pool means, the delay, the pooling strengths
    /// (empirical Bayes) and the hourly multipliers.
    fn refresh(&mut self, now: i64, r: &Rates) {
        self.last_refresh = now;
        self.events = 0;
        let lam = r.lam;

        // Delay: the pool's mean, and each offer's shrunk toward it. Plain
        // means of the delays seen so far are biased short (long delays have
        // not arrived yet); the pool's truncation-corrected estimate from
        // recent conversions rescales them.
        let (dsum, dn) = self.delay.read(now, lam);
        let naive = (dsum + r.prior_delay_ms) / (dn + 1.0);
        let corrected = truncated_exponential_mean(&self.recent_delays, now)
            .map_or(naive, |m| (m * dn + r.prior_delay_ms) / (dn + 1.0));
        let factor = (corrected / naive.max(1.0)).clamp(1.0, 20.0);
        self.derived.delay_ms = naive * factor;
        for o in &mut self.offers {
            let (s, n) = o.delay.read(now, lam);
            let mean = (s + 3.0 * naive) / (n + 3.0) * factor;
            o.mu = 1.0 / mean.max(1000.0);
        }

        let vals: Vec<(f64, f64)> =
            self.cells.iter().map(|c| c.exp.read(now, lam, self.offers[c.offer as usize].mu)).collect();

        // Pool means.
        let (mut n1, mut k1) = (0.0, 0.0);
        for o in &self.offers {
            let (n, k) = vals[o.top as usize];
            n1 += n;
            k1 += k;
        }
        self.derived.pool_cr = (k1 + 1.0) / (n1 + 100.0);
        let (mut ap, mut rj) = (0.0, 0.0);
        for o in &self.offers {
            let (a, r) = o.approval.read(now, lam);
            ap += a;
            rj += r;
        }
        self.derived.pool_approval = (ap + 1.8) / (ap + rj + 2.0);

        // Pooling strengths: how much cells differ from their parent beyond
        // Poisson noise. For e expected conversions (from the parent, with
        // the cell left out), Var(k) = e + e²/κ, so each cell gives an
        // estimate t = ((k − e)² − e − Var(e)) / e² of 1/κ. Those are
        // averaged with weights ∝ 1/Var(t) (iterated from the previous
        // estimate, as in Paule–Mandel), so a huge cell counts as one
        // observation of heterogeneity rather than drowning the rest, and
        // a prior worth a few cells keeps the estimate stable while data is
        // scarce.
        let mut num = [0.0; LEVELS];
        let mut den = [0.0; LEVELS];
        let prev: [f64; LEVELS] = std::array::from_fn(|l| 1.0 / self.derived.kappa[l].max(1e-9));
        for (i, c) in self.cells.iter().enumerate() {
            if c.parent == NONE {
                continue;
            }
            let (n, k) = vals[i];
            let (np, kp) = vals[c.parent as usize];
            let (n_rest, k_rest) = (np - n, kp - k);
            if n <= 0.0 || n_rest <= 0.0 || k_rest < 3.0 {
                continue;
            }
            let m = k_rest / n_rest;
            let e = n * m;
            if e < 0.5 {
                continue;
            }
            let var_e = n * n * m / n_rest;
            let l = c.level as usize;
            let t = ((k - e) * (k - e) - e - var_e) / (e * e);
            let w = eb_weight(prev[l], e, var_e);
            num[l] += w * t;
            den[l] += w;
        }
        // Pooling too strongly is the costly mistake (a confident wrong
        // estimate locks an offer out), so the strength used is one
        // standard error on the heterogeneous side of the estimate.
        for l in 2..LEVELS {
            let w0 = EB_PRIOR_CELLS * eb_weight(1.0 / KAPPA_DEFAULT[l], EB_PRIOR_CELL_SIZE, 0.0);
            let inv = (num[l] + w0 / KAPPA_DEFAULT[l]) / (den[l] + w0);
            let se = (2.0 / (den[l] + w0)).sqrt();
            self.derived.kappa[l] = 1.0 / (inv + se).clamp(1.0 / 500.0, 1.0 / 0.25);
        }

        // Hourly multipliers: per offer and UTC hour, actual conversions vs
        // those expected from the current hour-free rate of each country,
        // fitted as a smooth daily cycle whose amplitude and smoothness the
        // data chooses (`hours::fit`). The prior over those is pooled: half
        // a fixed default, half what the smartlink's other offers showed.
        // Only the offers whose fit is due (`HOUR_REFIT_MS`) are refitted.
        // An offer without a conversion since its last fit is not refitted
        // on time alone: its clicks since then move the fit little (each a
        // fraction of an expected conversion), and a tail smartlink's 50
        // offers refitted every 30 minutes cost more per click than the
        // rest of the router together (`network_memory`).
        let mut hv = vec![[(0.0, 0.0); 24]; self.offers.len()];
        let mut due = vec![false; self.offers.len()];
        let mut overdue: Vec<(i64, usize)> = Vec::new();
        for (oi, o) in self.offers.iter().enumerate() {
            if o.hour_fit_ms == i64::MIN
                || (o.fit_conversions > 0 && now - o.hour_fit_ms >= HOUR_REFIT_MS)
                || vals[o.top as usize].1 > HOUR_REFIT_GROWTH * o.hour_fit_k + 1.0
            {
                overdue.push((o.hour_fit_ms, oi));
            }
        }
        overdue.sort_unstable();
        for &(_, oi) in overdue.iter().take(MAX_REFITS_PER_REFRESH) {
            due[oi] = true;
        }
        for (oi, o) in self.offers.iter().enumerate() {
            if !due[oi] {
                continue;
            }
            let (mut se, mut sk) = (0.0, 0.0);
            for &c in &o.countries {
                let rate = self.predict(oi, c, now, lam);
                let x = &self.country_ext[self.cells[c as usize].ext as usize];
                for (i, v) in hv[oi].iter_mut().enumerate() {
                    let (n, k) = x.hours[i].read(now, lam, o.mu);
                    v.0 += n * rate;
                    v.1 += k;
                    se += n * rate;
                    sk += k;
                }
            }
            for (v, x) in hv[oi].iter_mut().zip(&o.folded_hours) {
                let (e, k) = x.read(now, lam, o.mu);
                v.0 += e;
                v.1 += k;
                se += e;
                sk += k;
            }
            let scale = (sk + 1.0) / (se + 1.0);
            for v in hv[oi].iter_mut() {
                v.0 *= scale;
            }
        }
        let base = hours::base_prior();
        let mut pooled = [0.0; hours::GRID];
        for o in &self.offers {
            for (p, w) in pooled.iter_mut().zip(&o.hour_weights) {
                *p += w;
            }
        }
        let n_offers = self.offers.len() as f64;
        let mut scale_sum = 0.0;
        for (oi, o) in self.offers.iter_mut().enumerate() {
            if !due[oi] {
                scale_sum += o.hour_scale;
                continue;
            }
            let mut prior = base;
            if n_offers > 1.0 {
                for (g, p) in prior.iter_mut().enumerate() {
                    *p = 0.5 * *p + 0.5 * (pooled[g] - o.hour_weights[g]) / (n_offers - 1.0);
                }
            }
            let mut e = [0.0; 24];
            let mut k = [0.0; 24];
            for h in 0..24 {
                (e[h], k[h]) = hv[oi][h];
            }
            let fit = hours::fit(&e, &k, &prior);
            o.hour_mult = fit.mult;
            o.hour_cv2 = fit.var;
            o.hour_weights = fit.weights;
            o.hour_scale = fit.scale;
            o.hour_fit_ms = now;
            o.hour_fit_k = vals[o.top as usize].1;
            o.fit_conversions = 0;
            scale_sum += fit.scale;
        }
        self.derived.hour_scale = if n_offers > 0.0 { scale_sum / n_offers } else { 0.0 };

        if self.last_fold == i64::MIN {
            self.last_fold = now;
        } else if now - self.last_fold >= FOLD_CHECK_MS {
            self.last_fold = now;
            self.fold(now, r, CELL_BUDGET);
        }
    }

    /// Folds the cells of segments unseen for a while into their parents,
    /// so a router's memory follows the variety of its recent traffic, not
    /// of all it has ever seen.
    ///
    /// A parent's counts already include every click and conversion of its
    /// children (each event is added along the whole path), so folding a
    /// childless cell is removing it: its evidence stays in its parent,
    /// where its segment's clicks are routed from if it comes back (a new
    /// cell then starts from nothing under it, as for any unseen segment).
    /// The hour statistics of a folded `EXT_LEVEL` cell move to its offer's
    /// `folded_hours`, weighted by the rate the model predicts for the cell
    /// now, so the hour fit keeps every conversion it has seen.
    ///
    /// A cell folds when untouched for `FOLD_IDLE_MS` with fewer than
    /// `FOLD_KEEP_CONVERSIONS` discounted conversions, or for
    /// `FOLD_FORGET_MS` whatever it holds; and, while more than `budget`
    /// cells are left, the least recently touched childless cells fold too.
    /// Cells fold deepest first (a parent only once its children have), in
    /// an order fixed by the state alone, so replays stay bit-identical.
    pub(super) fn fold(&mut self, now: i64, r: &Rates, budget: usize) {
        let n = self.cells.len();
        let mut children = vec![0u32; n];
        for c in &self.cells {
            if c.parent != NONE {
                children[c.parent as usize] += 1;
            }
        }
        let mut gone = vec![false; n];
        let mut left = n;
        // A child always comes after its parent in `cells`, so walking
        // backwards sees a cell after everything under it.
        for i in (0..n).rev() {
            let c = &self.cells[i];
            if c.level < 2 || children[i] > 0 {
                continue;
            }
            let idle = now - c.exp.t;
            let stale = idle >= FOLD_FORGET_MS
                || (idle >= FOLD_IDLE_MS
                    && c.exp.read(now, r.lam, self.offers[c.offer as usize].mu).1 < FOLD_KEEP_CONVERSIONS);
            if stale {
                gone[i] = true;
                left -= 1;
                children[c.parent as usize] -= 1;
            }
        }
        if left > budget {
            // Least recently touched first; a parent joins once its last
            // child has gone (it was touched no earlier than any of them).
            use std::cmp::Reverse;
            let mut idle: std::collections::BinaryHeap<Reverse<(i64, u32)>> = (0..n)
                .filter(|&i| !gone[i] && children[i] == 0 && self.cells[i].level >= 2)
                .map(|i| Reverse((self.cells[i].exp.t, i as u32)))
                .collect();
            while left > budget {
                let Some(Reverse((_, i))) = idle.pop() else { break };
                gone[i as usize] = true;
                left -= 1;
                let p = self.cells[i as usize].parent as usize;
                children[p] -= 1;
                if children[p] == 0 && self.cells[p].level >= 2 {
                    idle.push(Reverse((self.cells[p].exp.t, p as u32)));
                }
            }
        }
        if left == n {
            return;
        }
        // Hour statistics of folded cells to their offers, at the rate the
        // model predicts for each now (before any cell is gone).
        for (i, &g) in gone.iter().enumerate() {
            let c = &self.cells[i];
            if !g || c.ext == NONE {
                continue;
            }
            let oi = c.offer as usize;
            let rate = self.predict(oi, i as u32, now, r.lam);
            let mu = self.offers[oi].mu;
            let hours = self.country_ext[c.ext as usize].hours;
            for (into, from) in self.offers[oi].folded_hours.iter_mut().zip(&hours) {
                into.absorb(from, rate, now, r.lam, mu);
            }
        }
        self.compact(&gone);
        self.folded += (n - left) as u64;
    }

    /// Drops the cells marked `gone` (none with a child left), renumbering
    /// the rest in their order.
    fn compact(&mut self, gone: &[bool]) {
        let mut map = vec![NONE; self.cells.len()];
        let mut ext_map = vec![NONE; self.country_ext.len()];
        let mut cells = Vec::with_capacity(gone.len() - gone.iter().filter(|&&g| g).count());
        let mut exts = Vec::new();
        for (i, c) in self.cells.iter().enumerate() {
            if gone[i] {
                continue;
            }
            map[i] = cells.len() as u32;
            let mut c = c.clone();
            if c.parent != NONE {
                c.parent = map[c.parent as usize];
                debug_assert!(c.parent != NONE, "a parent folded before its child");
            }
            if c.ext != NONE {
                ext_map[c.ext as usize] = exts.len() as u32;
                exts.push(self.country_ext[c.ext as usize].clone());
                c.ext = ext_map[c.ext as usize];
            }
            cells.push(c);
        }
        self.cells = cells;
        self.country_ext = exts;
        self.cell_index.retain(|_, v| {
            *v = map[*v as usize];
            *v != NONE
        });
        self.cell_index.shrink_to_fit();
        for o in &mut self.offers {
            o.top = map[o.top as usize];
            for list in [&mut o.cells, &mut o.countries] {
                list.retain_mut(|c| {
                    *c = map[*c as usize];
                    *c != NONE
                });
                list.shrink_to_fit();
            }
        }
    }
}

/// Clicks per UTC hour of the day, learned from completed hours.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Traffic {
    /// The hour being counted (hours since the epoch) and its clicks so far.
    hour: i64,
    count: f64,
    /// Smoothed clicks of each UTC hour on the days seen.
    rate: [Option<f64>; 24],
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic { hour: i64::MIN, count: 0.0, rate: [None; 24] }
    }
}

impl Traffic {
    fn click(&mut self, now: i64) {
        let hour = now.div_euclid(3_600_000);
        if hour > self.hour {
            if self.hour != i64::MIN {
                // Close the finished hour, and any silent ones after it.
                let last = hour.min(self.hour + 25);
                let mut h = self.hour;
                let mut n = self.count;
                while h < last {
                    let slot = &mut self.rate[h.rem_euclid(24) as usize];
                    *slot = Some(slot.map_or(n, |r| 0.5 * r + 0.5 * n));
                    n = 0.0;
                    h += 1;
                }
            }
            self.hour = hour;
            self.count = 0.0;
        }
        self.count += 1.0;
    }

    /// Expected clicks from `now` for the next `secs` seconds.
    pub fn expected(&self, now: i64, secs: f64) -> f64 {
        let known: Vec<f64> = self.rate.iter().flatten().copied().collect();
        let fallback = if known.is_empty() {
            // Nothing complete yet: extrapolate the current hour.
            let into = (now.rem_euclid(3_600_000) as f64 / 3_600_000.0).max(1.0 / 60.0);
            self.count / into
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        let per_hour = |h: i64| self.rate[h.rem_euclid(24) as usize].unwrap_or(fallback);
        let mut t = now as f64;
        let end = now as f64 + secs * 1000.0;
        let mut total = 0.0;
        while t < end {
            let h = (t / 3_600_000.0).floor();
            let next = ((h + 1.0) * 3_600_000.0).min(end);
            total += per_hour(h as i64) * (next - t) / 3_600_000.0;
            t = next;
        }
        total
    }
}

/// Conversions kept for the delay estimate.
const RECENT_DELAYS: usize = 1000;
/// Span of arrivals the delay sample reaches before it starts forgetting
/// the oldest (until then it thins instead).
const DELAY_SPAN_MS: i64 = 7 * 86_400_000;

/// A sample of (click, postback) times from which the delay is fitted.
///
/// Every `stride`-th conversion is kept; when the sample is full it keeps
/// every other entry and doubles the stride, so it covers a growing span of
/// arrivals at a uniform sampling rate (which the truncated likelihood
/// does not need to know). A delay of 12 h with 75 conversions an hour
/// would otherwise be fitted from the last 7 hours of arrivals only, whose
/// doubly truncated likelihood says little: estimates swung by ×3, and each
/// swing re-weighted every young click's exposure and read as a change of
/// the offers' rates. Once the sample spans `DELAY_SPAN_MS` it forgets its
/// oldest entries instead (and the fit truncates below), so a change of
/// the delay is still followed.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct DelaySample {
    pub seen: std::collections::VecDeque<(i64, i64)>,
    stride: u64,
    count: u64,
    /// Whether entries have been forgotten from the front (then arrivals
    /// before the front's are not in the sample).
    pub truncated: bool,
}

impl DelaySample {
    fn push(&mut self, click: i64, at: i64) {
        self.stride = self.stride.max(1);
        self.count += 1;
        if !self.count.is_multiple_of(self.stride) {
            return;
        }
        if self.seen.len() == RECENT_DELAYS {
            let span = at - self.seen.front().map_or(at, |e| e.1);
            if span < DELAY_SPAN_MS && !self.truncated {
                let mut i = 0u32;
                self.seen.retain(|_| {
                    i += 1;
                    i.is_multiple_of(2)
                });
                self.stride *= 2;
            } else {
                self.seen.pop_front();
                self.truncated = true;
            }
        }
        self.seen.push_back((click, at));
    }
}

/// Maximum-likelihood mean of an exponential delay from the conversions in
/// `seen` (oldest arrival first). A conversion of a click made at `c` is in
/// the sample only if it arrived by `now` (delay ≤ `now − c`) and, once the
/// sample has started forgetting old entries, not before the oldest kept
/// arrival `t0` (delay ≥ `t0 − c`): each contributes the doubly truncated
/// density `e^{-d/θ} / θ / (e^{-L/θ} − e^{-U/θ})`. Plain means are biased
/// short while long delays are still on their way. `None` with too little
/// data.
fn truncated_exponential_mean(sample: &DelaySample, now: i64) -> Option<f64> {
    let seen = &sample.seen;
    if seen.len() < 20 {
        return None;
    }
    let t0 = if sample.truncated { seen.front().map_or(i64::MIN, |e| e.1) } else { i64::MIN };
    let nll = |theta: f64| -> f64 {
        seen.iter()
            .map(|&(click, at)| {
                let d = (at - click).max(0) as f64;
                let upper = ((now - click).max(1) as f64).max(d);
                let lower = if t0 == i64::MIN { 0.0 } else { ((t0 - click).max(0) as f64).min(d) };
                let mass = (-lower / theta).exp() - (-upper / theta).exp();
                theta.ln() + d / theta + mass.max(1e-300).ln()
            })
            .sum()
    };
    // Golden-section search on log θ between one second and thirty days.
    let (mut lo, mut hi) = (1000f64.ln(), (30.0 * 86_400_000f64).ln());
    let g = 0.618_033_988_75;
    let (mut x1, mut x2) = (hi - g * (hi - lo), lo + g * (hi - lo));
    let (mut f1, mut f2) = (nll(x1.exp()), nll(x2.exp()));
    for _ in 0..40 {
        if f1 < f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = nll(x1.exp());
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = nll(x2.exp());
        }
    }
    Some(((lo + hi) / 2.0).exp())
}

/// What a conversion event changes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct StatusChange {
    /// First time the router hears of this conversion.
    pub new_conversion: bool,
    pub approved: f64,
    pub rejected: f64,
}

/// Inverse variance of one cell's estimate `((k − e)² − e − v) / e²` of
/// `1/κ`, when `1/κ = inv`, `e` conversions are expected and `v` is the
/// variance of `e` itself.
pub(super) fn eb_weight(inv: f64, e: f64, v: f64) -> f64 {
    let sd = inv + 1.0 / e + v / (e * e);
    1.0 / (sd * sd)
}

fn any_segment() -> Segment {
    Segment {
        country: crate::model::Country::UNKNOWN,
        device: crate::model::Device::Desktop,
        os: crate::model::Os::Windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Country, Device, Os};

    const T0: i64 = 1_767_571_200_000;

    fn learned_over(segments: usize) -> (Learned, Rates, i64) {
        let r = super::super::RouterConfig::default().rates();
        let mut l = Learned::new(&r);
        let countries: Vec<Country> = (b'A'..=b'Z')
            .flat_map(|a| (b'A'..=b'Z').map(move |b| [a, b]))
            .filter_map(|b| Country::parse(std::str::from_utf8(&b).ok()?).ok())
            .collect();
        let mut now = T0;
        for i in 0..segments * 20 {
            now += 7_000;
            let seg = Segment { country: countries[i % segments], device: Device::ALL[i % 3], os: Os::Android };
            let key = 1 + (i % 4) as u32;
            l.on_click(key, seg, hour_of(now), now, &r);
            if i % 9 == 0 {
                let change = StatusChange { new_conversion: true, approved: 1.0, rejected: 0.0 };
                l.on_conversion(key, seg, now - 1_000, now, change, &r);
            }
        }
        (l, r, now)
    }

    /// Per UTC hour, the hour statistics' conversions of every cell and
    /// the folded ones, per offer.
    fn hour_conversions(l: &Learned, now: i64, lam: f64) -> Vec<[f64; 24]> {
        l.offers
            .iter()
            .map(|o| {
                let mut k = [0.0; 24];
                for &c in &o.countries {
                    for (h, x) in l.country_ext[l.cells[c as usize].ext as usize].hours.iter().enumerate() {
                        k[h] += x.read(now, lam, o.mu).1;
                    }
                }
                for (h, x) in o.folded_hours.iter().enumerate() {
                    k[h] += x.read(now, lam, o.mu).1;
                }
                k
            })
            .collect()
    }

    #[test]
    fn folding_to_a_budget_keeps_every_parent_and_every_conversion_of_the_hour_statistics() {
        let (mut l, r, now) = learned_over(200);
        let before = hour_conversions(&l, now, r.lam);
        let tops: Vec<(f64, f64)> =
            l.offers.iter().map(|o| l.cells[o.top as usize].exp.read(now, r.lam, o.mu)).collect();
        let n = l.cells.len();
        l.fold(now, &r, n / 2);
        assert!(l.cells.len() <= n / 2, "{} cells of {n} left for a budget of {}", l.cells.len(), n / 2);
        assert_eq!(l.folded as usize, n - l.cells.len());
        // Every parent is still there, every index points at the right cell.
        for (i, c) in l.cells.iter().enumerate() {
            if c.parent != NONE {
                assert_eq!(l.cells[c.parent as usize].level + 1, c.level, "cell {i}");
                assert_eq!(l.cells[c.parent as usize].offer, c.offer);
            }
            assert_eq!(c.ext != NONE, c.level as usize == EXT_LEVEL);
        }
        assert_eq!(l.cell_index.len(), l.cells.len());
        for (oi, (o, top)) in l.offers.iter().zip(&tops).enumerate() {
            assert_eq!(l.cells[o.top as usize].exp.read(now, r.lam, o.mu), *top, "an offer's own counts");
            assert!(o.cells.iter().chain(&o.countries).all(|&c| l.cells[c as usize].offer as usize == oi));
            assert_eq!(o.countries.len(), o.cells.iter().filter(|&&c| l.cells[c as usize].ext != NONE).count());
        }
        for (&key, &c) in &l.cell_index {
            assert_eq!(l.offers[l.cells[c as usize].offer as usize].key as u64, key >> 24);
            assert_eq!(l.cells[c as usize].level as u64, (key >> 16) & 0xff);
        }
        let after = hour_conversions(&l, now, r.lam);
        for (b, a) in before.iter().zip(&after) {
            for h in 0..24 {
                assert!((b[h] - a[h]).abs() <= 1e-9 * b[h].max(1.0), "hour {h}: {} before, {} after", b[h], a[h]);
            }
        }
    }
}
