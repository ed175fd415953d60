//! What the whole network knows about each offer, as a prior above every
//! smartlink's own learning: a new smartlink over offers learned elsewhere
//! routes from its first click by what they showed there.
//!
//! A [`NetworkPrior`] is a snapshot: the learned counts of every router
//! handed to [`NetworkPrior::build`], summed per (offer, segment level)
//! cell, with the network's own pooling strengths (empirical Bayes, as a
//! router estimates its own). For an offer in a segment the network gives
//! a rate (its hierarchical estimate there) that a router uses as a second,
//! independent source beside its own posterior:
//!
//! * scaled by the link's **quality factor** — how this smartlink's
//!   traffic converts against the network's rates on the same offers
//!   (shrunk toward 1), since a link's traffic is usually better or worse
//!   on every offer at once;
//! * worth `κ` conversions, `κ` being **how closely links follow the
//!   network** in a segment once their factor is accounted for, estimated
//!   from the data: across the network's routers for the network-wide
//!   value, and from each router's own cells for its own (the network's
//!   value worth a few cells), so a link whose traffic ranks the offers
//!   otherwise loosens its prior as its data shows it.
//!
//! The router's own posterior (its hierarchy from the pool's average) and
//! the network's Gamma multiply: a router with no data routes by the
//! network, one with plenty by its own data. Where the network knows
//! nothing of an offer, everything is as before. Built off the click path
//! (the server rebuilds it every few minutes from its routers) and shared
//! read-only: it changes what a router estimates, never what it learns, so
//! replays stay exact.

use super::stats::{
    cell_key, chain, eb_weight, FastMap, EB_PRIOR_CELLS, EB_PRIOR_CELL_SIZE, KAPPA_DEFAULT, LEVELS, NONE,
};
use super::RouterState;
use crate::model::Segment;

/// How closely a link follows the network in a segment before data says
/// so: its rate of an offer there within about ±30% of the network's
/// (times its factor), a Gamma worth 10 conversions.
const LINK_KAPPA_DEFAULT: f64 = 10.0;
/// Weight of the default (network-wide) or of the network-wide estimate
/// (one router's own): as many cells of this many expected conversions.
const LINK_PRIOR_CELLS: f64 = 3.0;
const LINK_PRIOR_CELL_SIZE: f64 = 10.0;
/// Least conversions of the other routers in a cell for it to count in
/// the estimate of how closely links follow them.
const LINK_MIN_OTHERS: f64 = 3.0;
/// Bounds of the estimated strength.
const LINK_KAPPA_RANGE: (f64, f64) = (0.5, 50.0);
/// Most conversions the network's approval rate of an offer counts for in
/// a router's prior.
const NET_APPROVAL_KAPPA: f64 = 20.0;
/// Own conversions of an offer from which a router's own hour-of-day fit
/// is used alone; below, it is mixed with the network's in proportion.
pub(super) const OWN_HOUR_CONVERSIONS: f64 = 30.0;
/// Bounds of the network's own pooling strengths (as a router's).
const POOLING_KAPPA_RANGE: (f64, f64) = (0.25, 500.0);
/// Pseudo-conversions at the network's rates in a link's quality factor.
const LINK_FACTOR_PRIOR: f64 = 5.0;

/// The network's learned counts per offer and segment cell, and the
/// strengths derived from them. Immutable once built.
#[derive(Clone, Debug, Default)]
pub struct NetworkPrior {
    /// `(exposure, conversions)` per cell key, summed over the routers.
    cells: FastMap<u64, (f64, f64)>,
    /// Pooling strength of each level within the network's own data.
    kappa: [f64; LEVELS],
    /// How closely a link follows the network in a segment (network-wide).
    link_kappa: f64,
    /// Conversion rate of the whole network.
    pool_cr: f64,
    /// Per offer: its approval and hour-of-day effect over the network.
    offers: FastMap<u32, NetOffer>,
    routers: usize,
    built_ms: i64,
}

/// What the network knows of one offer beyond its conversion rates.
#[derive(Clone, Debug, Default)]
struct NetOffer {
    /// Approved and rejected conversions (discounted), summed.
    approved: f64,
    rejected: f64,
    /// Hour-of-day multipliers and their squared coefficients of
    /// variation, the routers' fits mixed by the conversions behind them.
    hour_mult: [f64; 24],
    hour_cv2: [f64; 24],
    /// Discounted conversions behind the hour fits.
    hour_weight: f64,
}

/// Sums routers into a [`NetworkPrior`] one at a time, so a caller can hold
/// each router's lock only while its own counts are read.
#[derive(Debug)]
pub struct NetworkBuilder {
    now: i64,
    /// Each router's cells; kept until `finish` for the estimate of how
    /// closely links follow the network (32 bytes a cell).
    per_router: Vec<Vec<OwnCell>>,
    cells: FastMap<u64, (f64, f64)>,
    parents: FastMap<u64, u64>,
    offers: FastMap<u32, NetOffer>,
    /// Per offer and hour, the weighted second moment of the hour fits.
    second: FastMap<u32, [f64; 24]>,
}

impl NetworkBuilder {
    /// Counts are read as of `now` (event time).
    pub fn new(now: i64) -> NetworkBuilder {
        NetworkBuilder {
            now,
            per_router: Vec::new(),
            cells: FastMap::default(),
            parents: FastMap::default(),
            offers: FastMap::default(),
            second: FastMap::default(),
        }
    }

    /// Adds what one router has learned.
    pub fn add(&mut self, r: &RouterState) {
        let now = self.now;
        let mine = cells_of(r, now);
        for c in &mine {
            let e = self.cells.entry(c.key).or_default();
            e.0 += c.n;
            e.1 += c.k;
            self.parents.insert(c.key, c.parent);
        }
        self.per_router.push(mine);
        // Approval and hour effects per offer. Hour fits are mixed, each
        // router's weighted by the offer's conversions there: the mean
        // multiplier, and the spread of the fits around it on top of their
        // own uncertainty.
        let l = &r.learned;
        for o in &l.offers {
            let e = self.offers.entry(o.key).or_default();
            let (a, rj) = o.approval.read(now, r.rates.lam);
            e.approved += a;
            e.rejected += rj;
            if o.hour_fit_ms == i64::MIN {
                continue;
            }
            let w = l.cells[o.top as usize].exp.read(now, r.rates.lam, o.mu).1;
            let s2 = self.second.entry(o.key).or_insert([0.0; 24]);
            for (h, (&m, &cv2)) in o.hour_mult.iter().zip(&o.hour_cv2).enumerate() {
                e.hour_mult[h] += w * m;
                s2[h] += w * m * m * (1.0 + cv2);
            }
            e.hour_weight += w;
        }
    }

    /// The prior: the summed counts and the strengths estimated from them.
    pub fn finish(self) -> NetworkPrior {
        let NetworkBuilder { now, per_router, cells, parents, mut offers, second } = self;
        let (mut n1, mut k1) = (0.0, 0.0);
        for r in &per_router {
            for c in r.iter().filter(|c| c.parent == u64::MAX) {
                n1 += c.n;
                k1 += c.k;
            }
        }
        let pool_cr = (k1 + 1.0) / (n1 + 100.0);

        // Pooling within the network: each network cell against the rest
        // of its parent, as a router estimates its own (cells in key order,
        // so the sums do not depend on the hash map's).
        let mut keys: Vec<u64> = cells.keys().copied().collect();
        keys.sort_unstable();
        let mut pooling = Moments::new(KAPPA_DEFAULT, (EB_PRIOR_CELLS, EB_PRIOR_CELL_SIZE));
        for &key in &keys {
            let parent = parents[&key];
            if parent != u64::MAX {
                let (n, k) = cells[&key];
                let (np, kp) = cells[&parent];
                pooling.add(level_of(key), (n, k), n * k_rate(kp - k, np - n), kp - k);
            }
        }
        let mut kappa = pooling.kappa(true, POOLING_KAPPA_RANGE);
        kappa[0] = KAPPA_DEFAULT[0];
        kappa[1] = KAPPA_DEFAULT[1];

        for (key, e) in offers.iter_mut() {
            let Some(s2) = second.get(key) else { continue };
            if e.hour_weight <= 0.0 {
                e.hour_mult = [1.0; 24];
                continue;
            }
            for ((mult, cv2), second) in e.hour_mult.iter_mut().zip(e.hour_cv2.iter_mut()).zip(s2) {
                let m = *mult / e.hour_weight;
                *mult = m;
                *cv2 = if m > 0.0 { (second / e.hour_weight / (m * m) - 1.0).max(0.0) } else { 0.0 };
            }
        }

        let mut net = NetworkPrior {
            cells,
            kappa,
            link_kappa: LINK_KAPPA_DEFAULT,
            pool_cr,
            offers,
            routers: per_router.len(),
            built_ms: now,
        };
        let mut link = Moments::new([LINK_KAPPA_DEFAULT; LEVELS], (LINK_PRIOR_CELLS, LINK_PRIOR_CELL_SIZE));
        for r in &per_router {
            net.link_moments(&mut link, r);
        }
        net.link_kappa = link.kappa(false, LINK_KAPPA_RANGE)[LEVELS - 1];
        net
    }
}

impl NetworkPrior {
    /// Sums what `routers` have learned, as of `now`, and estimates the
    /// strengths. Deterministic for the same routers in the same order.
    pub fn build<'a>(routers: impl IntoIterator<Item = &'a RouterState>, now: i64) -> NetworkPrior {
        let mut b = NetworkBuilder::new(now);
        for r in routers {
            b.add(r);
        }
        b.finish()
    }

    /// How closely `r`'s own cells have followed the network: the
    /// network-wide strength (worth `LINK_PRIOR_CELLS` cells) updated by
    /// this router's cells alone.
    pub(super) fn link_kappa_for(&self, r: &RouterState, now: i64) -> f64 {
        let mut link = Moments::new([self.link_kappa; LEVELS], (LINK_PRIOR_CELLS, LINK_PRIOR_CELL_SIZE));
        self.link_moments(&mut link, &cells_of(r, now));
        link.kappa(false, LINK_KAPPA_RANGE)[LEVELS - 1]
    }

    /// Adds a router's leaf cells to the estimate of how closely links
    /// follow the network: each against what the other routers' clicks
    /// predict for it (the network's sums less the router's own: a router
    /// built into the network is not compared with itself; one that was
    /// not has its others slightly undercounted) times its quality factor.
    fn link_moments(&self, link: &mut Moments, mine: &[OwnCell]) {
        let factor = Self::factor(
            self.expected(mine.iter().filter(|c| c.parent == u64::MAX).map(|c| ((c.key >> 24) as u32, c.n, c.k))),
        );
        for c in mine {
            if level_of(c.key) != LEVELS - 1 {
                continue;
            }
            let (nn, kn) = self.cells.get(&c.key).copied().unwrap_or_default();
            let (on, ok) = ((nn - c.n).max(0.0), (kn - c.k).max(0.0));
            if on <= 0.0 || ok < LINK_MIN_OTHERS {
                continue;
            }
            link.add(LEVELS - 1, (c.n, c.k), c.n * factor * ok / on, ok);
        }
    }

    /// Routers summed.
    pub fn routers(&self) -> usize {
        self.routers
    }

    /// When it was built (event time).
    pub fn built_ms(&self) -> i64 {
        self.built_ms
    }

    /// Whether the network has seen clicks of the offer.
    pub fn knows(&self, offer: u32) -> bool {
        self.cells.get(&cell_key(offer, 1, any())).is_some_and(|c| c.0 > 0.0)
    }

    /// `(own conversions, conversions expected at the network's rates)`
    /// over a router's `offers` (`(key, own exposure, own conversions)`),
    /// for its quality factor.
    pub(super) fn expected(&self, offers: impl Iterator<Item = (u32, f64, f64)>) -> (f64, f64) {
        let (mut k, mut e) = (0.0, 0.0);
        for (key, n, own) in offers {
            if let Some(&(nn, kn)) = self.cells.get(&cell_key(key, 1, any())) {
                if nn > 0.0 {
                    k += own;
                    e += n * (kn + self.kappa[1] * self.pool_cr) / (nn + self.kappa[1]);
                }
            }
        }
        (k, e)
    }

    /// A link's quality factor from `expected`: its conversions against
    /// those the network's rates predict, shrunk toward one and never below
    /// it. A link that converts better than the network on the offers it
    /// has tried is taken to on the others too, or they would look worse
    /// than the tried ones and never be tried; one that converts worse is
    /// not, because that is also what a link whose traffic ranks the
    /// offers otherwise shows on the network's favourites, and scaling the
    /// others down would starve exactly the offers that win there.
    pub(super) fn factor((k, e): (f64, f64)) -> f64 {
        ((k + LINK_FACTOR_PRIOR) / (e + LINK_FACTOR_PRIOR)).max(1.0)
    }

    /// The network's estimate of `offer`'s conversion rate in `seg`:
    /// `(mean, squared coefficient of variation)`; `None` when the network
    /// has not seen the offer.
    pub(super) fn rate(&self, offer: u32, seg: Segment) -> Option<(f64, f64)> {
        if !self.knows(offer) {
            return None;
        }
        let mut data = [(0.0, 0.0); LEVELS + 1];
        for (level, d) in data.iter_mut().enumerate().take(LEVELS).skip(1) {
            *d = self.cells.get(&cell_key(offer, level, seg)).copied().unwrap_or_default();
        }
        let steps: [(f64, f64); LEVELS] = std::array::from_fn(|l| (1.0, self.kappa[l]));
        let (m, v) = chain(&data, (self.pool_cr, self.kappa[1]), &steps, None);
        Some((m, v / (m * m)))
    }

    /// The network's approval rate of `offer`: `(mean, strength)` of a
    /// Beta prior for a router's own, worth at most `NET_APPROVAL_KAPPA`
    /// conversions (links differ in how their conversions are approved).
    pub(super) fn approval(&self, offer: u32) -> Option<(f64, f64)> {
        let o = self.offers.get(&offer)?;
        let n = o.approved + o.rejected;
        if n <= 0.0 {
            return None;
        }
        Some(((o.approved + 0.5) / (n + 1.0), n.min(NET_APPROVAL_KAPPA)))
    }

    /// The network's hour-of-day effect of `offer` at UTC hour `h`:
    /// `(multiplier, squared coefficient of variation, conversions behind
    /// it)`.
    pub(super) fn hour(&self, offer: u32, h: usize) -> Option<(f64, f64, f64)> {
        let o = self.offers.get(&offer)?;
        (o.hour_weight > 0.0).then(|| (o.hour_mult[h], o.hour_cv2[h], o.hour_weight))
    }

    /// The network's Gamma for `offer` in `seg` on a link with quality
    /// `factor` that follows the network with strength `link_kappa`:
    /// `(shape, rate)`.
    pub(super) fn gamma(&self, offer: u32, seg: Segment, factor: f64, link_kappa: f64) -> Option<(f64, f64)> {
        let (m, cv2) = self.rate(offer, seg)?;
        let shape = 1.0 / (1.0 / link_kappa + cv2);
        Some((shape, shape / (m * factor)))
    }
}

/// One of a router's cells as the network sees it.
#[derive(Debug)]
struct OwnCell {
    key: u64,
    /// The parent's key, `u64::MAX` for an offer's level-1 cell.
    parent: u64,
    /// Exposure and conversions as of the build.
    n: f64,
    k: f64,
}

/// A router's cells, in its cells' order.
fn cells_of(r: &RouterState, now: i64) -> Vec<OwnCell> {
    let l = &r.learned;
    let mut keys = vec![0u64; l.cells.len()];
    for (&k, &i) in &l.cell_index {
        keys[i as usize] = k;
    }
    l.cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (n, k) = c.exp.read(now, r.rates.lam, l.offers[c.offer as usize].mu);
            let parent = if c.parent == NONE { u64::MAX } else { keys[c.parent as usize] };
            OwnCell { key: keys[i], parent, n, k }
        })
        .collect()
}

/// A rate from counts, 0 without exposure.
fn k_rate(k: f64, n: f64) -> f64 {
    if n > 0.0 {
        k.max(0.0) / n
    } else {
        0.0
    }
}

fn level_of(key: u64) -> usize {
    ((key >> 16) & 0xff) as usize
}

fn any() -> Segment {
    Segment {
        country: crate::model::Country::UNKNOWN,
        device: crate::model::Device::Desktop,
        os: crate::model::Os::Windows,
    }
}

/// The weighted method of moments of `stats::Learned::refresh`, per level:
/// each cell's `t = ((k − e)² − e − Var e) / e²` estimates `1/κ`, weighted
/// by `1/Var t`, with a default worth a few cells.
struct Moments {
    num: [f64; LEVELS],
    den: [f64; LEVELS],
    default: [f64; LEVELS],
    prior: (f64, f64),
}

impl Moments {
    fn new(default: [f64; LEVELS], prior: (f64, f64)) -> Moments {
        Moments { num: [0.0; LEVELS], den: [0.0; LEVELS], default, prior }
    }

    /// A cell with `(n, k)` expected to have `e` conversions from a
    /// reference rate measured on `k_ref` conversions (`Var e = e² /
    /// k_ref`, as in `Learned::refresh`).
    fn add(&mut self, level: usize, (n, k): (f64, f64), e: f64, k_ref: f64) {
        if level == 0 || level >= LEVELS || n <= 0.0 || e < 0.5 || k_ref < 3.0 {
            return;
        }
        let var_e = e * e / k_ref;
        let inv = 1.0 / self.default[level].max(1e-9);
        let t = ((k - e) * (k - e) - e - var_e) / (e * e);
        let w = eb_weight(inv, e, var_e);
        self.num[level] += w * t;
        self.den[level] += w;
    }

    /// The strengths, within `range`; `margin`: one standard error on the
    /// heterogeneous side, as a router's own pooling takes it (over-pooling
    /// there locks an offer out). A link's prior goes without: it is a
    /// second source beside the link's own data, which outweighs it as it
    /// comes in.
    fn kappa(&self, margin: bool, range: (f64, f64)) -> [f64; LEVELS] {
        std::array::from_fn(|l| {
            if l == 0 {
                return self.default[0];
            }
            let d = self.default[l].max(1e-9);
            let w0 = self.prior.0 * eb_weight(1.0 / d, self.prior.1, 0.0);
            let inv = (self.num[l] + w0 / d) / (self.den[l] + w0);
            let se = if margin { (2.0 / (self.den[l] + w0)).sqrt() } else { 0.0 };
            1.0 / (inv + se).clamp(1.0 / range.1, 1.0 / range.0)
        })
    }
}
