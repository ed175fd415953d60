//! The router: picks one offer among a smartlink's eligible offers for one
//! click (`choose`), and learns from the clicks it routed (`on_click`) and
//! the conversions that come back (`on_conversion`).
//!
//! # Model
//! The value of offer `o` for a click is `CR × approval × current payout`:
//! the router learns rates, never EPC, so a payout change counts from the
//! next click on.
//!
//! * **Conversion rate**, Gamma–Poisson over the hierarchy
//!   pool → offer → offer×region (the country's UN M49 sub-region) →
//!   offer×country → offer×country×device → offer×country×device×os.
//!   Each level is estimated from the data of the
//!   level below that is *not* on the click's path (its siblings), with its
//!   parent's estimate as the prior, and the leaf from its own data, so every
//!   click counts once. A prior has the parent's mean and variance
//!   `μ²/κ + Var(parent)`; the strengths `κ` (how much cells differ) are
//!   re-estimated by empirical Bayes (a weighted method of moments with the
//!   cell left out of its parent), taken one standard error on the
//!   "heterogeneous" side because over-pooling is the costly mistake. A
//!   rare segment is routed by what its country and the offer have shown
//!   until it has data of its own. An offer the router has never seen is
//!   assumed as good as the pool's average click (its rate prior is the
//!   pool's value per click over its payout), so it is tried promptly.
//! * **Delayed conversions.** The click→postback delay is learned per offer
//!   (exponential, shrunk to the pool's, corrected for the long delays not
//!   seen yet by a truncated maximum-likelihood fit on a thinned sample of
//!   the conversions that spans up to a week, so it stays stable when
//!   postbacks take hours).
//!   Each click counts as exposure in proportion to the delay CDF at its
//!   age, kept incrementally with two decayed sums, so young clicks are not
//!   taken for failures.
//! * **Drift.** Everything is discounted with a 48 h half-life. On top, per
//!   offer, a likelihood-ratio test over change points in click time
//!   (15-minute bins, the last 24 h) compares the conversions of the clicks
//!   of well-known cells since each candidate change point with what the
//!   model predicted for those clicks when they were made (the window's
//!   own ratio, weighed within ×0.5…×2; negative binomial where the hour
//!   model is unsure of its shape); when it fires, the offer's cells (and
//!   its hour statistics) are re-levelled by the observed ratio, keeping the
//!   segment structure learned over days.
//!   The detector arms after an offer's first day (before that a change
//!   cannot be told from a time-of-day pattern), and its predictions include
//!   the learned hour-of-day effect.
//! * **Approval** (Beta around the pool's) from the final status of each
//!   conversion, including later status changes (`previous`).
//! * **Hour of day**: per offer, a smooth daily cycle of the log rate (a
//!   Gaussian process on the circle: six harmonics with shrinking prior
//!   variances), fitted to conversions against the hour-free model's
//!   expectation per UTC hour; its amplitude and smoothness are chosen by
//!   the data (marginal likelihood over a small grid, averaged), with the
//!   smartlink's other offers as part of the prior (`hours.rs`).
//!   Neighbouring hours share evidence, so a daily pattern shows within a
//!   day or two.
//!
//! # Policy
//! Thompson sampling over the value posterior (its variance scaled by
//! [`RouterConfig::variance_scale`] for calibration). Per segment and hour
//! the router draws the posterior many times (Monte Carlo), caches the share
//! of draws each candidate wins, and samples each click from that cached
//! distribution: the logged propensity is then the exact probability of the
//! policy in force, and a click costs a look-up. A click picks one draw's
//! winner, so it is marginally a Thompson sample whatever the number of
//! draws: a segment gets four draws per click its last policy served
//! (16 to [`RouterConfig::draws`]), and only the candidates whose score
//! bounds (5σ) let them win a draw are drawn.
//!
//! # Memory
//! Cells of segments untouched for a day (a week while they still hold a
//! conversion's worth of evidence) fold into their parents at the hourly
//! check of a statistics refresh, least recently touched first past a
//! per-router budget; a parent already counts every event of its children,
//! so a folded segment is routed like one never seen. Cached policies older
//! than `policy_refresh_secs` (unusable) are dropped at each refresh. The cache is recomputed
//! when the candidate list or payouts change, the hour turns, the estimates
//! jump, the router has learned a tenth more, or after
//! `policy_refresh_secs`. The reason is `BestScore` when the chosen offer
//! has the highest posterior-mean score, `Exploration` otherwise.
//!
//! **Caps.** An offer with a daily cap gets a shadow price per capped
//! resource (click, approved conversion, budget) that rises while its
//! projected use until the reset exceeds what is left (its share of the
//! pool's recent clicks × the pool's traffic expected until the reset,
//! learned per UTC hour, counting only conversions that will arrive before
//! the reset, plus those in flight) and falls otherwise. Its score becomes
//! `value × (1 − price)` (clicks: `value − price × mean value`), so its
//! limited volume goes to the segments where its edge over the next-best
//! offer is largest.
//!
//! # Restarts
//! The learned statistics change only in `on_click` and `on_conversion`, and
//! their periodic re-estimation is scheduled by event time and event counts:
//! replaying the same clicks and conversions in time order rebuilds a
//! bit-identical state (see [`RouterState::same_learning`]). The policy
//! cache and the shadow prices are recomputed from it within minutes.

use std::sync::Arc;

use rand::RngCore;

use crate::model::Segment;

mod hours;
mod network;
mod policy;
mod regions;
mod shared;
mod stats;

pub use network::{NetworkBuilder, NetworkPrior};
pub use shared::{Busy, RouterGuard, SharedRouter};

use policy::{signature, unit, Pacing, PolicyEntry, Xoshiro};
use stats::{pack_segment, FastMap, Learned, Rates, StatusChange, LEVELS, MS_PER_HOUR};

/// The conversions from which an offer's posterior is taken to be as
/// conservative as the calibration of [`RouterConfig::variance_scale`] found.
const CALIBRATED_CONVERSIONS: f64 = 10.0;

/// Remaining daily capacity of a candidate, as the router may use it to pace.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CapView {
    pub clicks_left: Option<u64>,
    pub conversions_left: Option<u64>,
    /// Remaining daily budget in the base currency.
    pub budget_left: Option<f64>,
    /// Seconds until the offer's caps reset (its local midnight).
    pub secs_to_reset: u32,
}

/// One eligible offer, as the router sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Stable numeric offer key (the same across restarts and config changes).
    pub key: u32,
    /// Current payout per approved conversion, in the base currency.
    pub payout: f64,
    pub caps: CapView,
}

/// What the router knows about the click it routes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Context {
    pub segment: Segment,
    /// Hour of the day, UTC, `0..24`.
    pub hour: u8,
    /// Click time, milliseconds since the Unix epoch.
    pub now_ms: i64,
}

/// Why an offer (or the fallback) was chosen; stored with the click.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Override,
    BestScore,
    Exploration,
    Weighted,
    Priority,
    Fallback,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Override => "override",
            Reason::BestScore => "best_score",
            Reason::Exploration => "exploration",
            Reason::Weighted => "weighted",
            Reason::Priority => "priority",
            Reason::Fallback => "fallback",
        }
    }
}

/// The router's answer: an index into the candidates, why, and the
/// probability that this candidate would be chosen for this click.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    pub index: usize,
    pub reason: Reason,
    pub propensity: f64,
}

/// The final status of a conversion as the router learns from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversionStatus {
    Approved,
    Pending,
    Rejected,
}

/// Settings of the learning router. [`RouterConfig::default`] is what
/// `smartlink serve` and the simulator use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RouterConfig {
    /// Half-life of everything learned, in hours.
    pub half_life_hours: f64,
    /// CUSUM threshold (a log-likelihood ratio) above which an offer's
    /// recent conversions are taken to contradict the model's predictions.
    pub drift_threshold: f64,
    /// Thompson draws per policy refresh.
    pub draws: u32,
    /// Maximum age of a cached per-segment policy, in seconds.
    pub policy_refresh_secs: u32,
    /// How often the pooling strengths, delay and hourly multipliers are
    /// re-estimated, in seconds of event time.
    pub stats_refresh_secs: u32,
    /// Assumed mean click→postback delay before any conversion is seen.
    pub prior_delay_minutes: f64,
    /// Half-life of the consumption rate that pacing projects, in minutes.
    pub pacing_half_life_minutes: f64,
    /// Time constant of the shadow prices, in minutes.
    pub pacing_time_constant_minutes: f64,
    /// Whether capped offers are paced at all.
    pub pacing: bool,
    /// Multiplier of the posterior variance Thompson sampling draws from.
    /// The hierarchical posterior is conservative (each level is estimated
    /// without its own child's data, and everything is discounted): on the
    /// public and our own scenarios its standardized errors had an RMS of
    /// 0.5–0.9 instead of 1, i.e. about twice the variance it should have.
    /// 0.5 brings it back to calibrated and stops paying for that excess
    /// exploration.
    pub variance_scale: f64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            half_life_hours: 48.0,
            drift_threshold: 10.0,
            draws: 128,
            policy_refresh_secs: 300,
            stats_refresh_secs: 600,
            prior_delay_minutes: 30.0,
            pacing_half_life_minutes: 15.0,
            pacing_time_constant_minutes: 30.0,
            pacing: true,
            variance_scale: 0.5,
        }
    }
}

impl RouterConfig {
    fn rates(&self) -> Rates {
        let per_ms = |hours: f64| std::f64::consts::LN_2 / (hours.max(1e-6) * MS_PER_HOUR);
        Rates {
            lam: per_ms(self.half_life_hours),
            lam_usage: per_ms(self.pacing_half_life_minutes / 60.0),
            drift_threshold: self.drift_threshold,
            prior_delay_ms: self.prior_delay_minutes.max(0.0) * 60_000.0,
            refresh_ms: self.stats_refresh_secs as i64 * 1000,
        }
    }
}

/// Per-candidate numbers of one policy refresh.
#[derive(Clone, Copy, Debug, Default)]
struct Scored {
    /// Posterior mean value per click.
    value: f64,
    /// Squared coefficient of variation of the value.
    cv2: f64,
    /// Share of the value kept after the conversion/budget shadow prices.
    keep: f64,
    /// Click shadow price, in value units.
    click_price: f64,
}

/// What the router currently believes about one candidate for one click.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub key: u32,
    /// Posterior mean conversion rate for this segment and hour.
    pub cr: f64,
    /// Posterior mean approval rate.
    pub approval: f64,
    /// `cr × approval × payout`.
    pub value: f64,
    /// Posterior standard deviation of `value`, relative to it.
    pub uncertainty: f64,
    /// Value net of the caps' shadow prices: what the policy ranks by.
    pub score: f64,
}

/// Learned state of one smartlink.
#[derive(Clone)]
pub struct RouterState {
    cfg: RouterConfig,
    rates: Rates,
    learned: Learned,
    pacing: FastMap<u32, Pacing>,
    policies: FastMap<u32, Arc<PolicyEntry>>,
    scored: Vec<Scored>,
    wins: Vec<u32>,
    gammas: Vec<Option<rand_distr::Gamma<f64>>>,
    racing: Vec<usize>,
    network: Option<Arc<NetworkPrior>>,
    /// How closely this router follows the network
    /// (`NetworkPrior::link_kappa_for`), refitted at each statistics
    /// refresh.
    link_kappa: f64,
}

impl std::fmt::Debug for RouterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterState")
            .field("offers", &self.learned.offers.len())
            .field("cells", &self.learned.cells.len())
            .field("cached_policies", &self.policies.len())
            .finish()
    }
}

impl Default for RouterState {
    fn default() -> Self {
        RouterState::new()
    }
}

/// Cached policies kept at most; past this the cache starts over.
const MAX_POLICIES: usize = 50_000;

/// Thompson draws of a policy for a segment whose previous policy was
/// used `used` times: four per expected use, at least `MIN_DRAWS`, at most
/// the configured `draws`.
///
/// A click picks one draw's winner at random, so whatever the number of
/// draws, each click is marginally a Thompson sample and its logged
/// propensity (wins / draws) is exact; more draws only decorrelate the
/// clicks that share the cached policy. A segment seen once every few
/// minutes uses each policy about once, and 128 draws × 50 offers there
/// cost ~100 µs of gamma sampling per click (measured on the
/// `network_memory` example, where they were two thirds of all time).
fn policy_draws(max: u32, used: u32) -> u32 {
    let max = max.max(1);
    (used.min(1 << 24) * 4).next_power_of_two().clamp(MIN_DRAWS.min(max), max)
}

/// The fewest Thompson draws of a policy: propensities in 1/16ths.
const MIN_DRAWS: u32 = 16;

/// How far out (in standard deviations of a normal) the bounds of a
/// candidate's Thompson draw are taken when deciding whether it can win
/// one: a draw lands beyond them with probability under 3·10⁻⁷.
const DRAW_BOUND_Z: f64 = 5.0;

/// Lower and upper bounds of a candidate's Thompson score draw: its value
/// drawn from a gamma of mean `value` and squared coefficient of variation
/// `cv2` (the Wilson–Hilferty normal approximation of the gamma's
/// quantiles, which errs on the wide side for a shape of 1 and above;
/// below that the draw is left unbounded), net of its shadow prices.
fn score_bounds(s: &Scored, drawn: bool) -> (f64, f64) {
    let net = |x: f64| x * s.keep - s.click_price;
    if !drawn {
        return (net(s.value), net(s.value));
    }
    let shape = (1.0 / s.cv2).clamp(1e-3, 1e9);
    if shape < 1.0 {
        return (net(0.0), f64::INFINITY);
    }
    let c = 1.0 / (9.0 * shape);
    let q = |z: f64| s.value * (1.0 - c + z * c.sqrt()).max(0.0).powi(3);
    (net(q(-DRAW_BOUND_Z)), net(q(DRAW_BOUND_Z)))
}

impl RouterState {
    pub fn new() -> RouterState {
        RouterState::with_config(RouterConfig::default())
    }

    pub fn with_config(cfg: RouterConfig) -> RouterState {
        let rates = cfg.rates();
        RouterState {
            cfg,
            rates,
            learned: Learned::new(&rates),
            pacing: FastMap::default(),
            policies: FastMap::default(),
            scored: Vec::new(),
            wins: Vec::new(),
            gammas: Vec::new(),
            racing: Vec::new(),
            network: None,
            link_kappa: 0.0,
        }
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Uses what the network has learned about each offer as the prior
    /// above this router's own learning (`None`: the pool's average, as a
    /// router alone). Changes estimates, never what is learned; cached
    /// policies are recomputed.
    pub fn set_network(&mut self, network: Option<Arc<NetworkPrior>>) {
        self.network = network;
        self.policies.clear();
        self.fit_link(self.learned.last_refresh.max(self.network.as_ref().map_or(0, |n| n.built_ms())));
    }

    fn fit_link(&mut self, now: i64) {
        if let Some(net) = &self.network {
            self.link_kappa = net.link_kappa_for(self, now);
        }
    }

    pub fn network(&self) -> Option<&Arc<NetworkPrior>> {
        self.network.as_ref()
    }

    /// Picks one of `cands` (never empty).
    pub fn choose(&mut self, cands: &[Candidate], ctx: &Context, rng: &mut dyn RngCore) -> Choice {
        self.choose_and_share(cands, ctx, rng).0
    }

    /// [`choose`](Self::choose), also returning the policy it picked from
    /// (none for a single candidate), for [`SharedRouter`] to publish.
    fn choose_and_share(
        &mut self,
        cands: &[Candidate],
        ctx: &Context,
        rng: &mut dyn RngCore,
    ) -> (Choice, Option<&Arc<PolicyEntry>>) {
        if cands.len() <= 1 {
            return (Choice { index: 0, reason: Reason::BestScore, propensity: 1.0 }, None);
        }
        let seg = self.fresh_policy(cands, ctx, rng);
        let e = &self.policies[&seg];
        (e.sample(unit(rng)), Some(e))
    }

    /// Makes sure the segment's cached policy is the one a click of `ctx`
    /// with these candidates (at least two) would draw from, recomputing
    /// it when stale; returns the packed segment it is cached under.
    fn fresh_policy(&mut self, cands: &[Candidate], ctx: &Context, rng: &mut dyn RngCore) -> u32 {
        let n = cands.len();
        let seg = pack_segment(ctx.segment);
        let sig = signature(cands);
        let max_age = self.cfg.policy_refresh_secs as i64 * 1000;
        let generation = self.learned.generation;
        let known = self.learned.conversions;
        let fresh = self.policies.get(&seg).is_some_and(|e| {
            e.serves(seg, sig, n, ctx, max_age)
                && e.generation == generation
                && known < e.conversions + e.conversions / 10 + 3
        });
        if !fresh {
            self.refresh_policy(seg, sig, cands, ctx, rng);
        }
        seg
    }

    /// The distribution a click of `ctx` would now be drawn from: each
    /// candidate's probability of being chosen, in the candidates' order,
    /// and the index of the one with the best posterior-mean score. Like
    /// the click it stands for, it refreshes the segment's cached policy
    /// when that is stale (a cache, not learning: nothing learned changes).
    pub fn probabilities(&mut self, cands: &[Candidate], ctx: &Context, rng: &mut dyn RngCore) -> (Vec<f64>, usize) {
        if cands.len() <= 1 {
            return (vec![1.0; cands.len()], 0);
        }
        let seg = self.fresh_policy(cands, ctx, rng);
        let e = &self.policies[&seg];
        let p = e.cum.iter().scan(0.0, |prev, &c| {
            let p = c - *prev;
            *prev = c;
            Some(p)
        });
        (p.collect(), e.best as usize)
    }

    /// A click was sent to `offer_key` (called after the cap reservation).
    pub fn on_click(&mut self, offer_key: u32, ctx: &Context) {
        let before = self.learned.last_refresh;
        self.learned.on_click(offer_key, ctx.segment, ctx.hour as usize % 24, ctx.now_ms, &self.rates);
        if self.learned.last_refresh != before {
            self.after_refresh(ctx.now_ms);
        }
    }

    /// At each statistics refresh: drops the cached policies no click can
    /// use any more (older than `policy_refresh_secs`:
    /// `PolicyEntry::serves` refuses them), so the cache holds the segments
    /// of the last few minutes' traffic rather than every segment ever
    /// seen; and refits how closely the router follows the network.
    fn after_refresh(&mut self, now: i64) {
        self.fit_link(now);
        let max_age = self.cfg.policy_refresh_secs as i64 * 1000;
        self.policies.retain(|_, e| now - e.computed_ms < max_age);
        if self.policies.capacity() > 4 * self.policies.len().max(16) {
            self.policies.shrink_to_fit();
        }
    }

    /// A conversion (or a status change of one) arrived for a click.
    /// `previous` is the status the router was last told of (`None` for a
    /// conversion it has not seen); `click_ms` is the click's time and
    /// `now_ms` the postback's.
    pub fn on_conversion(
        &mut self,
        offer_key: u32,
        segment: Segment,
        click_ms: i64,
        now_ms: i64,
        previous: Option<ConversionStatus>,
        status: ConversionStatus,
    ) {
        let is = |s: Option<ConversionStatus>, want| (s == Some(want)) as i32 as f64;
        let change = StatusChange {
            new_conversion: previous.is_none(),
            approved: is(Some(status), ConversionStatus::Approved) - is(previous, ConversionStatus::Approved),
            rejected: is(Some(status), ConversionStatus::Rejected) - is(previous, ConversionStatus::Rejected),
        };
        if !change.new_conversion && change.approved == 0.0 && change.rejected == 0.0 {
            return;
        }
        let before = self.learned.last_refresh;
        self.learned.on_conversion(offer_key, segment, click_ms, now_ms, change, &self.rates);
        if self.learned.last_refresh != before {
            self.after_refresh(now_ms);
        }
    }

    /// Clicks and conversions learned from since the router was created.
    pub fn events(&self) -> u64 {
        self.learned.total_events
    }

    /// True when both routers have learned exactly the same thing (the
    /// policy cache and shadow prices, which are recomputed on demand, are
    /// not compared). Replaying the clicks and conversions a router saw, in
    /// the same order, into a fresh one yields `true`.
    pub fn same_learning(&self, other: &RouterState) -> bool {
        self.cfg == other.cfg && self.learned == other.learned
    }

    /// Learned cells (offer × segment level), the part of the state that
    /// grows with the traffic's variety (bounded by folding the cells of
    /// segments unseen for a while into their parents).
    pub fn cells(&self) -> usize {
        self.learned.cells.len()
    }

    /// Cells folded into their parents since the router was created.
    pub fn folded_cells(&self) -> u64 {
        self.learned.folded
    }

    /// Cached per-segment policies.
    pub fn cached_policies(&self) -> usize {
        self.policies.len()
    }

    /// One line on the re-estimated constants (for debugging and tuning).
    #[doc(hidden)]
    pub fn diagnostics(&self) -> String {
        let d = &self.learned.derived;
        format!(
            "kappa {:.2?} hour {:.2} pool_cr {:.4} approval {:.3} delay {:.0}s offers {} cells {} folded {} relevels {}",
            &d.kappa[1..],
            d.hour_scale,
            d.pool_cr,
            d.pool_approval,
            d.delay_ms / 1000.0,
            self.learned.offers.len(),
            self.learned.cells.len(),
            self.learned.folded,
            self.learned.relevels
        ) + &self
            .learned
            .offers
            .iter()
            .map(|o| {
                let mn = o.hour_mult.iter().cloned().fold(f64::MAX, f64::min);
                let mx = o.hour_mult.iter().cloned().fold(0.0, f64::max);
                format!(" [{} {:.2}-{:.2}]", o.key, mn, mx)
            })
            .collect::<String>()
    }

    /// What the router believes about each candidate for this click, in the
    /// candidates' order (for explanations and tests; does not change any
    /// state).
    pub fn estimates(&self, cands: &[Candidate], ctx: &Context) -> Vec<Estimate> {
        let epc = (self.pool_epc(cands, ctx.now_ms), self.link_factor(ctx.now_ms));
        cands
            .iter()
            .map(|c| {
                let (s, cr, approval) = self.score(c, ctx, epc, self.pacing.get(&c.key).copied().unwrap_or_default());
                Estimate {
                    key: c.key,
                    cr,
                    approval,
                    value: s.value,
                    uncertainty: s.cv2.sqrt(),
                    score: s.value * s.keep - s.click_price,
                }
            })
            .collect()
    }

    /// The EPC a brand-new offer is assumed to have: the candidates' pooled
    /// value per click (so a newcomer is a priori as good as the offers it
    /// competes with, whatever its payout, and gets tried promptly).
    fn pool_epc(&self, cands: &[Candidate], now: i64) -> f64 {
        let l = &self.learned;
        let lam = self.rates.lam;
        let (mut num, mut den, mut pay) = (0.0, 0.0, 0.0);
        for c in cands {
            pay += c.payout.max(0.0);
            if let Some(oi) = l.offer(c.key) {
                let o = &l.offers[oi];
                let (n, k) = l.cells[o.top as usize].exp.read(now, lam, o.mu);
                num += k * l.approval(Some(oi), now, lam).0 * c.payout.max(0.0);
                den += n;
            }
        }
        let d = &l.derived;
        let epc0 = d.pool_cr * d.pool_approval * pay / cands.len().max(1) as f64;
        let s = 1.0 / d.pool_cr;
        (num + epc0 * s) / (den + s)
    }

    /// How this smartlink's traffic converts against the network's rates
    /// for the same offers (1 without a network prior): the common factor
    /// of its offers' network priors.
    fn link_factor(&self, now: i64) -> f64 {
        let Some(net) = &self.network else { return 1.0 };
        let l = &self.learned;
        let lam = self.rates.lam;
        NetworkPrior::factor(net.expected(l.offers.iter().map(|o| {
            let (n, k) = l.cells[o.top as usize].exp.read(now, lam, o.mu);
            (o.key, n, k)
        })))
    }

    /// Posterior value of one candidate, with its shadow prices applied,
    /// given the pool's value per click and the link's quality factor
    /// (`(epc, factor)`). Returns the scored numbers, the conversion-rate
    /// mean and the approval mean.
    fn score(&self, c: &Candidate, ctx: &Context, (epc, factor): (f64, f64), pace: Pacing) -> (Scored, f64, f64) {
        let l = &self.learned;
        let now = ctx.now_ms;
        let lam = self.rates.lam;
        let oi = l.offer(c.key);
        let net = self.network.as_deref();
        let (am, av) = match net.and_then(|n| n.approval(c.key)) {
            Some(prior) => l.approval_with(oi, now, lam, prior),
            None => l.approval(oi, now, lam),
        };
        let payout = c.payout.max(0.0);
        let prior = if payout > 0.0 && am > 0.0 { (epc / (payout * am)).clamp(1e-7, 0.5) } else { l.derived.pool_cr };
        let kappa = &l.derived.kappa;
        let h = ctx.hour as usize % 24;
        let (m, var, top_mean, hm, hcv2, seen) = match oi {
            Some(oi) => {
                let path = l.path(oi, ctx.segment);
                let (m, var) = l.posterior(oi, &path, now, lam, prior);
                let o = &l.offers[oi];
                let (n1, k1) = l.cells[o.top as usize].exp.read(now, lam, o.mu);
                let top = (kappa[1] + k1) / (kappa[1] / prior + n1);
                (m, var, top, o.hour_mult[h], o.hour_cv2[h], k1)
            }
            None => {
                let mut var = prior * prior / kappa[1];
                for k in &kappa[2..LEVELS] {
                    var += prior * prior / k;
                }
                (prior, var, prior, 1.0, 0.0, 0.0)
            }
        };
        // The network's rate, a second source beside the router's own
        // posterior (both Gammas; their product).
        let (m, var) = match net.and_then(|n| n.gamma(c.key, ctx.segment, factor, self.link_kappa)) {
            Some((shape, rate)) if m > 0.0 && var > 0.0 => {
                let (a, b) = (m * m / var + shape, m / var + rate);
                (a / b, a / (b * b))
            }
            _ => (m, var),
        };
        // The network's hour-of-day effect of the offer, until the
        // router's own fit rests on enough conversions.
        let (hm, hcv2) = match net.and_then(|n| n.hour(c.key, h)) {
            Some((nm, ncv2, _)) => {
                let w = (seen / network::OWN_HOUR_CONVERSIONS).min(1.0);
                (w * hm + (1.0 - w) * nm, w * hcv2 + (1.0 - w) * ncv2)
            }
            None => (hm, hcv2),
        };
        let cr = m * hm;
        let value = payout * cr * am;
        let cv2 =
            if m > 0.0 && am > 0.0 { (1.0 + var / (m * m)) * (1.0 + hcv2) * (1.0 + av / (am * am)) - 1.0 } else { 0.0 };
        let cv2 = cv2 * self.variance_scale(seen);
        let scored = Scored { value, cv2, keep: pace.keep(), click_price: pace.clicks * payout * top_mean * am };
        (scored, cr, am)
    }

    /// The factor Thompson sampling scales an offer's posterior variance
    /// by, given the (discounted) conversions it has shown: the configured
    /// [`RouterConfig::variance_scale`] once it has shown
    /// [`CALIBRATED_CONVERSIONS`], 1 (the posterior as it is) with none, and
    /// in between in proportion. The calibration behind the configured
    /// scale was measured on offers with data; an offer with few or no
    /// conversions has a posterior dominated by its prior, and narrowing
    /// that starves it: 34 clicks without a conversion (true rate 0.10 vs
    /// 0.05) were enough to stop routing to it for good.
    fn variance_scale(&self, seen: f64) -> f64 {
        let s = self.cfg.variance_scale;
        s + (1.0 - s) * (1.0 - seen / CALIBRATED_CONVERSIONS).max(0.0)
    }

    fn refresh_policy(&mut self, seg: u32, sig: u64, cands: &[Candidate], ctx: &Context, rng: &mut dyn RngCore) {
        let n = cands.len();
        let epc = (self.pool_epc(cands, ctx.now_ms), self.link_factor(ctx.now_ms));
        self.scored.clear();
        for c in cands {
            let pace = self.pace(c, ctx.now_ms);
            let s = self.score(c, ctx, epc, pace).0;
            self.scored.push(s);
        }

        self.gammas.clear();
        for s in &self.scored {
            let g = if s.value > 0.0 && s.cv2 > 1e-12 {
                let shape = (1.0 / s.cv2).clamp(1e-3, 1e9);
                rand_distr::Gamma::new(shape, s.value / shape).ok()
            } else {
                None
            };
            self.gammas.push(g);
        }
        // Only candidates that can win a draw are drawn: one whose score's
        // upper bound is below another's lower bound (each `DRAW_BOUND_Z`
        // standard deviations out, where a draw lands once in millions)
        // would only cost its gamma draws. With 50 offers most are out of
        // the race in a segment the router knows.
        let bounds: Vec<(f64, f64)> =
            self.scored.iter().zip(&self.gammas).map(|(s, g)| score_bounds(s, g.is_some())).collect();
        let floor = bounds.iter().map(|b| b.0).fold(f64::NEG_INFINITY, f64::max);
        self.racing.clear();
        self.racing.extend((0..n).filter(|&i| bounds[i].1 >= floor));
        if self.racing.is_empty() {
            // Only with no comparable bound at all (NaN values).
            self.racing.extend(0..n);
        }
        self.wins.clear();
        self.wins.resize(n, 0);
        let mut local = Xoshiro::seeded(rng.next_u64());
        let used = self.policies.get(&seg).map_or(0, |e| e.uses.load(std::sync::atomic::Ordering::Relaxed));
        let draws = policy_draws(self.cfg.draws, used);
        for _ in 0..draws {
            let mut best = f64::NEG_INFINITY;
            let mut bi = self.racing[0];
            for &i in &self.racing {
                let s = &self.scored[i];
                let x = match &self.gammas[i] {
                    Some(g) => rand_distr::Distribution::sample(g, &mut local),
                    None => s.value,
                };
                let score = x * s.keep - s.click_price;
                if score > best {
                    best = score;
                    bi = i;
                }
            }
            self.wins[bi] += 1;
        }

        let mut best = 0u32;
        let mut best_score = f64::NEG_INFINITY;
        for (i, s) in self.scored.iter().enumerate() {
            let score = s.value * s.keep - s.click_price;
            if score > best_score {
                best_score = score;
                best = i as u32;
            }
        }

        if self.policies.len() >= MAX_POLICIES && !self.policies.contains_key(&seg) {
            self.policies.clear();
        }
        let e = Arc::make_mut(self.policies.entry(seg).or_default());
        e.seg = seg;
        e.sig = sig;
        e.hour = ctx.hour;
        e.generation = self.learned.generation;
        e.computed_ms = ctx.now_ms;
        e.conversions = self.learned.conversions;
        e.best = best;
        e.uses = Default::default();
        e.cum.clear();
        let mut acc = 0u32;
        for &w in &self.wins {
            acc += w;
            e.cum.push(acc as f64 / draws as f64);
        }
        if let Some(last) = e.cum.last_mut() {
            *last = 1.0;
        }
    }

    /// Updates (at most once a minute) and returns the shadow prices of a
    /// candidate's caps.
    ///
    /// Projected use until the reset = the offer's current consumption rate
    /// × the traffic expected until then (learned per UTC hour), counting
    /// only conversions that will arrive before the reset, plus conversions
    /// already in flight. Each price moves by `ln(projected / left)` per
    /// time constant: up while the offer would run out early, down while
    /// capacity would be left over.
    fn pace(&mut self, c: &Candidate, now: i64) -> Pacing {
        let caps = c.caps;
        let capped = caps.clicks_left.is_some() || caps.conversions_left.is_some() || caps.budget_left.is_some();
        if !capped || !self.cfg.pacing {
            self.pacing.remove(&c.key);
            return Pacing::default();
        }
        let l = &self.learned;
        let p = self.pacing.entry(c.key).or_default();
        if p.updated_ms != 0 && now - p.updated_ms < 60_000 {
            return *p;
        }
        let dt = if p.updated_ms == 0 { 0.0 } else { (now - p.updated_ms).min(600_000) as f64 };
        p.updated_ms = now;
        let Some(oi) = l.offer(c.key) else { return *p };
        let o = &l.offers[oi];
        let r = &self.rates;
        // The offer's share of the pool's recent clicks, and its predicted
        // approved conversions per pool click, times the pool's expected
        // clicks until the reset.
        let (clicks, convs) = o.usage.read(now, r.lam_usage);
        let pool = l.pool_usage.read(now, r.lam_usage).0.max(1e-9);
        let t = caps.secs_to_reset as f64;
        let pool_clicks = l.traffic.expected(now, t);
        let delay = 1.0 / o.mu / 1000.0;
        let arriving = 1.0 - (-t / delay).exp();
        // Conversions of clicks in the last stretch before the reset land
        // after it: only the clicks whose postbacks arrive in time count.
        let in_time = if t > 0.0 { (1.0 - delay * arriving / t).clamp(0.0, 1.0) } else { 0.0 };
        let click_need = clicks / pool * pool_clicks;
        let conv_need = convs / pool * pool_clicks * in_time;
        let pending = o.pending.read(now, o.mu).0 * arriving;
        let step = dt / (self.cfg.pacing_time_constant_minutes.max(1.0) * 60_000.0);
        let nudge = |price: f64, need: f64, left: f64, unit: f64, max: f64| {
            let ratio = (need + unit) / (left.max(0.0) + unit);
            (price + ratio.ln().clamp(-2.0, 2.0) * step).clamp(0.0, max)
        };
        p.conversions = match caps.conversions_left {
            Some(left) => nudge(p.conversions, conv_need, left as f64 - pending, 0.5, 1.0),
            None => 0.0,
        };
        let pay = c.payout.max(1e-9);
        p.budget = match caps.budget_left {
            Some(left) => nudge(p.budget, conv_need * pay, left - pending * pay, 0.5 * pay, 1.0),
            None => 0.0,
        };
        p.clicks = match caps.clicks_left {
            Some(left) => nudge(p.clicks, click_need, left as f64, 1.0, 4.0),
            None => 0.0,
        };
        *p
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn a_thompson_draw_stays_within_the_bounds_that_decide_whether_a_candidate_races() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
        for (cv2, keep, click_price) in [(1.0, 1.0, 0.0), (0.3, 0.7, 0.01), (0.01, 1.0, 0.0), (1e-4, 0.5, 0.2)] {
            let s = Scored { value: 0.8, cv2, keep, click_price };
            let (lo, hi) = score_bounds(&s, true);
            let shape = 1.0 / cv2;
            let g = rand_distr::Gamma::new(shape, s.value / shape).unwrap();
            for _ in 0..200_000 {
                let x: f64 = rand_distr::Distribution::sample(&g, &mut rng);
                let score = x * keep - click_price;
                assert!(lo <= score && score <= hi, "cv2 {cv2}: {score} outside [{lo}, {hi}]");
            }
            assert!(lo < hi);
        }
        // Below a shape of 1 the draw is not bounded above.
        let (_, hi) = score_bounds(&Scored { value: 0.8, cv2: 2.0, keep: 1.0, click_price: 0.0 }, true);
        assert_eq!(hi, f64::INFINITY);
    }

    #[test]
    fn a_policy_is_drawn_four_times_per_use_of_the_last_within_its_limits() {
        assert_eq!(policy_draws(128, 0), 16);
        assert_eq!(policy_draws(128, 5), 32);
        assert_eq!(policy_draws(128, 31), 128);
        assert_eq!(policy_draws(128, u32::MAX), 128);
        assert_eq!(policy_draws(8, 0), 8);
        assert_eq!(policy_draws(0, 0), 1);
    }
}
