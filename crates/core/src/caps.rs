//! Daily caps: exact, lock-free counters per offer.
//!
//! Each counter packs the local day number (high 24 bits) and the count (low
//! 40 bits) into one `AtomicU64`, so "reset at midnight" and "increment unless
//! the cap is reached" are a single compare-and-swap: a click cap can never be
//! exceeded by concurrent clicks on one node.
//!
//! Several nodes on one store cannot count a click cap each on its own. There
//! a node spends *leased* units instead ([`CapMode::Leased`]): an allowance,
//! one more packed counter, that a background task tops up with blocks taken
//! from the store (never more than the cap in total) and that a click takes
//! one unit from with a compare-and-swap. An empty allowance makes the offer
//! capped for that click, never over its cap. [`LeasePlan`] decides when to
//! take a block and how large, from the node's click rate; it is pure (the
//! clock is passed in) so the refill rule is tested here.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::Caps;
use crate::router::CapView;

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

#[derive(Debug, Default)]
struct DayCounter(AtomicU64);

impl DayCounter {
    fn get(&self, day: u32) -> u64 {
        let v = self.0.load(Ordering::Acquire);
        if (v >> COUNT_BITS) as u32 == day {
            v & COUNT_MASK
        } else {
            0
        }
    }

    /// Adds `n` unless that would take today's count above `limit`.
    fn try_add(&self, day: u32, n: u64, limit: Option<u64>) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let count = if (cur >> COUNT_BITS) as u32 == day { cur & COUNT_MASK } else { 0 };
            if limit.is_some_and(|l| count + n > l) {
                return false;
            }
            let next = ((day as u64) << COUNT_BITS) | ((count + n) & COUNT_MASK);
            match self.0.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    fn set(&self, day: u32, n: u64) {
        self.0.store(((day as u64) << COUNT_BITS) | (n & COUNT_MASK), Ordering::Release);
    }

    /// Takes `n` if today's count has `n`; a counter of another day has none.
    fn try_sub(&self, day: u32, n: u64) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            if (cur >> COUNT_BITS) as u32 != day || cur & COUNT_MASK < n {
                return false;
            }
            match self.0.compare_exchange_weak(cur, cur - n, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Empties the counter in one swap and returns what `day` had in it (0
    /// when it held another day's count), so nothing taken concurrently is
    /// counted twice.
    fn take_all(&self, day: u32) -> u64 {
        let v = self.0.swap((day as u64) << COUNT_BITS, Ordering::AcqRel);
        if (v >> COUNT_BITS) as u32 == day {
            v & COUNT_MASK
        } else {
            0
        }
    }
}

/// How a node counts click caps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CapMode {
    /// One node: the counters are the whole truth (SQLite).
    #[default]
    Local,
    /// Several nodes on one store: a capped click spends a unit of the
    /// node's leased allowance ([`OfferCounters::grant`]); conversion and
    /// budget counts are refreshed from the store's totals.
    Leased,
}

/// Which cap stops an offer today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapKind {
    Clicks,
    Conversions,
    Budget,
}

impl CapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CapKind::Clicks => "daily_clicks",
            CapKind::Conversions => "daily_conversions",
            CapKind::Budget => "daily_budget",
        }
    }
}

/// Today's counts of one offer. Shared across catalog versions.
#[derive(Debug, Default)]
pub struct OfferCounters {
    clicks: DayCounter,
    conversions: DayCounter,
    /// Approved payout today, in micro-units of the base currency.
    budget_micros: DayCounter,
    /// [`CapMode::Leased`]: click-cap units this node may still spend today.
    allowance: DayCounter,
    /// [`CapMode::Leased`]: units taken by all nodes today, as the store
    /// said at this node's last take or return.
    taken: DayCounter,
    /// [`CapMode::Leased`]: clicks that found the allowance empty today.
    missed: DayCounter,
}

fn micros(v: f64) -> u64 {
    (v.max(0.0) * 1e6).round() as u64
}

impl OfferCounters {
    pub fn clicks(&self, day: u32) -> u64 {
        self.clicks.get(day)
    }
    pub fn conversions(&self, day: u32) -> u64 {
        self.conversions.get(day)
    }
    pub fn spent(&self, day: u32) -> f64 {
        self.budget_micros.get(day) as f64 / 1e6
    }

    /// The cap that makes the offer ineligible today, if any.
    pub fn reached(&self, caps: &Caps, day: u32) -> Option<CapKind> {
        if caps.daily_clicks.is_some_and(|c| self.clicks(day) >= c) {
            Some(CapKind::Clicks)
        } else {
            self.conversion_cap_reached(caps, day)
        }
    }

    /// The conversion or budget cap reached today, if any (counted the same
    /// way on one node and on several).
    fn conversion_cap_reached(&self, caps: &Caps, day: u32) -> Option<CapKind> {
        if caps.daily_conversions.is_some_and(|c| self.conversions(day) >= c) {
            Some(CapKind::Conversions)
        } else if caps.daily_budget.is_some_and(|b| self.budget_micros.get(day) >= micros(b)) {
            Some(CapKind::Budget)
        } else {
            None
        }
    }

    /// Counts a click unless the daily click cap is already reached.
    pub fn try_reserve_click(&self, caps: &Caps, day: u32) -> bool {
        self.clicks.try_add(day, 1, caps.daily_clicks)
    }

    /// Counts an approved conversion paying `payout` (base currency).
    /// Returns true when the offer was already at or over a conversion or
    /// budget cap before this one (the conversion is still counted: the
    /// advertiser sent it).
    pub fn add_conversion(&self, caps: &Caps, day: u32, payout: f64) -> bool {
        let over = self.reached(caps, day).is_some_and(|k| k != CapKind::Clicks);
        self.conversions.try_add(day, 1, None);
        self.budget_micros.try_add(day, micros(payout), None);
        over
    }

    /// Reverses an approved conversion (chargeback or status change).
    pub fn remove_conversion(&self, day: u32, payout: f64) {
        let c = self.conversions.get(day);
        let b = self.budget_micros.get(day);
        if c > 0 {
            self.conversions.set(day, c - 1);
        }
        self.budget_micros.set(day, b.saturating_sub(micros(payout)));
    }

    /// Sets today's counts (rebuilding from the store at start-up).
    pub fn seed(&self, day: u32, clicks: u64, conversions: u64, spent: f64) {
        self.clicks.set(day, clicks);
        self.conversions.set(day, conversions);
        self.budget_micros.set(day, micros(spent));
    }

    pub fn view(&self, caps: &Caps, day: u32, secs_to_reset: u32) -> CapView {
        CapView {
            clicks_left: caps.daily_clicks.map(|c| c.saturating_sub(self.clicks(day))),
            conversions_left: caps.daily_conversions.map(|c| c.saturating_sub(self.conversions(day))),
            budget_left: caps.daily_budget.map(|b| (b - self.spent(day)).max(0.0)),
            secs_to_reset,
        }
    }

    // -- CapMode::Leased -------------------------------------------------

    /// [`CapMode::Leased`]: the cap that keeps a click from the offer on
    /// this node now. A click cap stops it when the node's allowance is
    /// empty (the total may still have room: a block is on its way).
    pub fn reached_leased(&self, caps: &Caps, day: u32) -> Option<CapKind> {
        if caps.daily_clicks.is_some() && self.allowance.get(day) == 0 {
            self.missed.try_add(day, 1, None);
            Some(CapKind::Clicks)
        } else {
            self.conversion_cap_reached(caps, day)
        }
    }

    /// [`CapMode::Leased`]: the cap reached by all nodes together, as far as
    /// this node knows (for alerts: an allowance running dry for a moment
    /// is not the cap).
    pub fn reached_in_total(&self, caps: &Caps, day: u32) -> Option<CapKind> {
        if caps.daily_clicks.is_some_and(|c| self.taken.get(day) >= c && self.allowance.get(day) == 0) {
            Some(CapKind::Clicks)
        } else {
            self.conversion_cap_reached(caps, day)
        }
    }

    /// [`CapMode::Leased`]: counts a click, spending a unit of the node's
    /// allowance when the offer has a click cap. False: no unit left here.
    pub fn try_spend_click(&self, caps: &Caps, day: u32) -> bool {
        if caps.daily_clicks.is_some() && !self.allowance.try_sub(day, 1) {
            self.missed.try_add(day, 1, None);
            return false;
        }
        self.clicks.try_add(day, 1, None);
        true
    }

    /// [`CapMode::Leased`]: adds `units` taken from the store to today's
    /// allowance (an allowance of an earlier day is dropped: its units
    /// were for that day); `taken` is the total the store now counts.
    pub fn grant(&self, day: u32, units: u64, taken: u64) {
        self.allowance.try_add(day, units, None);
        self.taken.set(day, taken);
    }

    /// [`CapMode::Leased`]: empties the allowance and returns the units it
    /// held for `day`, to give back to the store.
    pub fn withdraw(&self, day: u32) -> u64 {
        self.allowance.take_all(day)
    }

    /// [`CapMode::Leased`]: the store's total after a return.
    pub fn set_taken(&self, day: u32, taken: u64) {
        self.taken.set(day, taken);
    }

    /// [`CapMode::Leased`]: units this node may still spend today.
    pub fn allowance(&self, day: u32) -> u64 {
        self.allowance.get(day)
    }

    /// [`CapMode::Leased`]: units all nodes had taken at the last take.
    pub fn taken(&self, day: u32) -> u64 {
        self.taken.get(day)
    }

    /// [`CapMode::Leased`]: today's demand on this node: clicks counted
    /// plus clicks that found the allowance empty (what the rate that sizes
    /// blocks is measured on: spent units alone would stop growing exactly
    /// when more are needed).
    pub fn demand(&self, day: u32) -> u64 {
        self.clicks.get(day) + self.missed.get(day)
    }

    /// [`CapMode::Leased`]: today's approved conversions and spend of all
    /// nodes, from the store (the click count is left alone).
    pub fn set_conversions(&self, day: u32, conversions: u64, spent: f64) {
        self.conversions.set(day, conversions);
        self.budget_micros.set(day, micros(spent));
    }

    /// [`CapMode::Leased`]: what the router is told is left. Clicks: what
    /// the store had not handed out at the last take plus this node's
    /// allowance (other nodes' allowances count as spent).
    pub fn view_leased(&self, caps: &Caps, day: u32, secs_to_reset: u32) -> CapView {
        let clicks_left =
            caps.daily_clicks.map(|c| c.saturating_sub(self.taken.get(day)).saturating_add(self.allowance.get(day)));
        CapView { clicks_left, ..self.view(&Caps { daily_clicks: None, ..*caps }, day, secs_to_reset) }
    }
}

/// When a node takes a block of click-cap units from the store, and how
/// many; see [`LeasePlan`]. Times in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeaseSettings {
    /// The low-water mark: a block is taken when the allowance covers less
    /// than this much of the node's click rate on the offer (it must outlast
    /// a refill: the task's tick plus a store round trip).
    pub low_water_ms: u64,
    /// A block covers this much of the rate.
    pub block_ms: u64,
    /// The low-water mark and the block are at least these many units.
    pub min_low: u64,
    pub min_block: u64,
    /// A block is at most this many units...
    pub max_block: u64,
    /// ...and at most 1/`share_of_left` of what the store had left at the
    /// last take (at least 1), so blocks shrink near the cap and what nodes
    /// hold unused there stays small.
    pub share_of_left: u64,
    /// The click rate is an exponential average with this time constant
    /// falling (rising: an eighth of it).
    pub rate_tau_ms: u64,
    /// An allowance no click has touched for this long goes back to the
    /// store when it is more than 1/`share_of_left` of what is left (near
    /// the cap: another node may need it); no block is taken again until a
    /// click finds the allowance empty.
    pub idle_return_ms: u64,
    /// After a take that found the cap used up, the next try waits this
    /// long (other nodes may return units).
    pub exhausted_retry_ms: u64,
}

impl Default for LeaseSettings {
    fn default() -> LeaseSettings {
        LeaseSettings {
            low_water_ms: 1_000,
            block_ms: 4_000,
            min_low: 2,
            min_block: 4,
            max_block: 10_000,
            share_of_left: 8,
            rate_tau_ms: 2_000,
            idle_return_ms: 60_000,
            exhausted_retry_ms: 1_000,
        }
    }
}

/// What the lease task does for one offer now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseStep {
    Hold,
    /// Take a block of this many units (the store may grant fewer).
    Take(u64),
    /// Give the whole allowance back.
    Return,
}

/// One offer's refill state on one node: the measured click rate and when
/// the last click and the last take were. Pure: the lease task passes the
/// clock and the counters in and carries out the step.
#[derive(Clone, Debug, Default)]
pub struct LeasePlan {
    /// Demand, clicks a second (an exponential average).
    rate: f64,
    /// The last observation: (ms, demand).
    last: Option<(i64, u64)>,
    last_demand_ms: i64,
    last_take_ms: Option<i64>,
    /// Returned while idle: take nothing until a click misses.
    parked: bool,
}

impl LeasePlan {
    /// The measured demand, clicks a second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The next step for an offer with daily click cap `cap`, given today's
    /// `demand` on this node ([`OfferCounters::demand`]), its `allowance`
    /// and the store's `taken` as last seen.
    pub fn step(
        &mut self,
        s: &LeaseSettings,
        now_ms: i64,
        demand: u64,
        allowance: u64,
        cap: u64,
        taken: u64,
    ) -> LeaseStep {
        match self.last {
            Some((at, seen)) if demand >= seen && now_ms > at => {
                let dt = (now_ms - at) as f64;
                let now_rate = (demand - seen) as f64 * 1_000.0 / dt;
                // Up eight times faster than down: a burst is met within a
                // few ticks, a lull does not shrink the blocks at once.
                let tau = if now_rate > self.rate { s.rate_tau_ms / 8 } else { s.rate_tau_ms };
                let alpha = 1.0 - (-dt / tau.max(1) as f64).exp();
                self.rate += alpha * (now_rate - self.rate);
                if demand > seen {
                    self.last_demand_ms = now_ms;
                    self.parked = false;
                }
            }
            // A first look, or a new day (its counts start again).
            None => self.last_demand_ms = now_ms,
            _ => {}
        }
        self.last = Some((now_ms, demand));

        let left = cap.saturating_sub(taken);
        let idle = now_ms - self.last_demand_ms >= s.idle_return_ms as i64;
        if allowance > 0 && idle && left < s.share_of_left.saturating_mul(allowance) {
            self.parked = true;
            return LeaseStep::Return;
        }
        let per = |ms: u64| (self.rate * ms as f64 / 1_000.0).ceil() as u64;
        let low = per(s.low_water_ms).max(s.min_low);
        if self.parked || allowance >= low {
            return LeaseStep::Hold;
        }
        if left == 0 && self.last_take_ms.is_some_and(|t| now_ms - t < s.exhausted_retry_ms as i64) {
            return LeaseStep::Hold;
        }
        let block = per(s.block_ms).max(s.min_block).max(low - allowance).min(s.max_block);
        let near_cap = left.div_ceil(s.share_of_left.max(1)).max(1);
        self.last_take_ms = Some(now_ms);
        LeaseStep::Take(block.min(near_cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_cap_stops_at_the_limit_and_resets_next_day() {
        let c = OfferCounters::default();
        let caps = Caps { daily_clicks: Some(3), ..Default::default() };
        let taken = (0..10).filter(|_| c.try_reserve_click(&caps, 100)).count();
        assert_eq!(taken, 3);
        assert_eq!(c.reached(&caps, 100), Some(CapKind::Clicks));
        assert!(c.try_reserve_click(&caps, 101), "a new day starts from zero");
        assert_eq!(c.clicks(101), 1);
    }

    #[test]
    fn conversions_over_cap_are_counted_and_flagged() {
        let c = OfferCounters::default();
        let caps = Caps { daily_conversions: Some(2), ..Default::default() };
        assert!(!c.add_conversion(&caps, 5, 1.0));
        assert!(!c.add_conversion(&caps, 5, 1.0));
        assert!(c.add_conversion(&caps, 5, 1.0), "third is over the cap");
        assert_eq!(c.conversions(5), 3);
        assert_eq!(c.reached(&caps, 5), Some(CapKind::Conversions));
    }

    #[test]
    fn budget_cap_counts_payout() {
        let c = OfferCounters::default();
        let caps = Caps { daily_budget: Some(5.0), ..Default::default() };
        c.add_conversion(&caps, 1, 2.5);
        assert_eq!(c.reached(&caps, 1), None);
        c.add_conversion(&caps, 1, 2.5);
        assert_eq!(c.reached(&caps, 1), Some(CapKind::Budget));
        c.remove_conversion(1, 2.5);
        assert_eq!(c.reached(&caps, 1), None);
    }

    #[test]
    fn concurrent_clicks_never_exceed_the_cap() {
        let c = std::sync::Arc::new(OfferCounters::default());
        let caps = Caps { daily_clicks: Some(1000), ..Default::default() };
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).filter(|_| c.try_reserve_click(&caps, 9)).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
        assert_eq!(c.clicks(9), 1000);
    }

    const DAY: u32 = 20458;

    fn caps(daily_clicks: Option<u64>, daily_conversions: Option<u64>, daily_budget: Option<f64>) -> Caps {
        Caps { daily_clicks, daily_conversions, daily_budget }
    }

    #[test]
    fn every_cap_kind_has_its_configuration_name() {
        for (kind, name) in [
            (CapKind::Clicks, "daily_clicks"),
            (CapKind::Conversions, "daily_conversions"),
            (CapKind::Budget, "daily_budget"),
        ] {
            assert_eq!(kind.as_str(), name);
        }
    }

    /// (caps, today's clicks, approved conversions and spend) -> the cap
    /// that stops the offer today; checked in that order.
    #[test]
    fn each_cap_kind_stops_the_offer_exactly_at_its_limit() {
        let check = |caps: Caps, (clicks, conversions, spent): (u64, u64, f64), want: Option<CapKind>| {
            let c = OfferCounters::default();
            c.seed(DAY, clicks, conversions, spent);
            assert_eq!(
                c.reached(&caps, DAY),
                want,
                "{caps:?} with {clicks} clicks, {conversions} conversions, {spent} spent"
            );
        };
        check(caps(None, None, None), (1_000, 1_000, 1e6), None);
        check(caps(Some(3), None, None), (2, 9, 9.0), None);
        check(caps(Some(3), None, None), (3, 0, 0.0), Some(CapKind::Clicks));
        check(caps(Some(3), None, None), (4, 0, 0.0), Some(CapKind::Clicks));
        check(caps(None, Some(2), None), (9, 1, 9.0), None);
        check(caps(None, Some(2), None), (0, 2, 0.0), Some(CapKind::Conversions));
        check(caps(None, Some(2), None), (0, 3, 0.0), Some(CapKind::Conversions));
        check(caps(None, None, Some(5.0)), (9, 9, 4.999_999), None);
        check(caps(None, None, Some(5.0)), (0, 0, 5.0), Some(CapKind::Budget));
        check(caps(None, None, Some(5.0)), (0, 0, 5.000_001), Some(CapKind::Budget));
        check(caps(Some(0), Some(0), Some(0.0)), (0, 0, 0.0), Some(CapKind::Clicks));
        check(caps(Some(1), Some(0), Some(0.0)), (0, 0, 0.0), Some(CapKind::Conversions));
        check(caps(Some(1), Some(1), Some(0.0)), (0, 0, 0.0), Some(CapKind::Budget));
        check(caps(Some(1), Some(1), Some(0.5)), (0, 0, 0.0), None);
    }

    #[test]
    fn seeded_counts_are_todays_and_no_other_days() {
        let c = OfferCounters::default();
        c.seed(DAY, 7, 3, 12.345_678);
        let today = |day| (c.clicks(day), c.conversions(day), c.spent(day));
        assert_eq!(today(DAY), (7, 3, 12.345_678));
        assert_eq!(today(DAY - 1), (0, 0, 0.0));
        assert_eq!(today(DAY + 1), (0, 0, 0.0));
        c.seed(DAY + 1, 0, 0, 0.0);
        assert_eq!(today(DAY), (0, 0, 0.0), "one day is kept: the latest");
    }

    /// Payouts are counted to the micro-unit.
    #[test]
    fn approved_payouts_add_up_to_todays_spend() {
        let c = OfferCounters::default();
        let none = Caps::default();
        for (payout, spent) in
            [(2.5, 2.5), (0.000_001, 2.500_001), (0.1, 2.600_001), (-3.0, 2.600_001), (0.0, 2.600_001)]
        {
            c.add_conversion(&none, DAY, payout);
            assert_eq!(c.spent(DAY), spent, "after a conversion paying {payout}");
        }
        assert_eq!(c.conversions(DAY), 5);
        assert_eq!(c.spent(DAY + 1), 0.0);
    }

    /// (approved conversions and spend today, payout taken back) -> what is left.
    #[test]
    fn removing_a_conversion_takes_back_one_and_its_payout_never_below_zero() {
        let check = |(conversions, spent): (u64, f64), payout: f64, want: (u64, f64)| {
            let c = OfferCounters::default();
            c.seed(DAY, 5, conversions, spent);
            c.remove_conversion(DAY, payout);
            assert_eq!((c.conversions(DAY), c.spent(DAY)), want, "{conversions} worth {spent}, less {payout}");
            assert_eq!(c.clicks(DAY), 5, "clicks are untouched");
        };
        check((3, 7.5), 2.5, (2, 5.0));
        check((2, 5.0), 2.5, (1, 2.5));
        check((1, 2.5), 2.5, (0, 0.0));
        check((1, 1.0), 2.5, (0, 0.0));
        check((3, 7.5), 0.0, (2, 7.5));
        check((0, 0.0), 2.5, (0, 0.0));
    }

    #[test]
    fn a_conversion_taken_back_after_midnight_leaves_the_new_day_at_zero() {
        let c = OfferCounters::default();
        c.seed(DAY, 4, 2, 5.0);
        c.remove_conversion(DAY + 1, 2.5);
        assert_eq!((c.conversions(DAY + 1), c.spent(DAY + 1)), (0, 0.0));
    }

    #[test]
    fn a_conversion_is_flagged_only_when_a_conversion_or_budget_cap_was_already_reached() {
        // (caps, today's clicks, conversions and spend) -> flagged
        let check = |caps: Caps, (clicks, conversions, spent): (u64, u64, f64), flagged: bool| {
            let c = OfferCounters::default();
            c.seed(DAY, clicks, conversions, spent);
            assert_eq!(c.add_conversion(&caps, DAY, 1.0), flagged, "{caps:?} {clicks}/{conversions}/{spent}");
            assert_eq!(c.conversions(DAY), conversions + 1, "it is counted either way");
        };
        check(caps(Some(1), None, None), (1, 0, 0.0), false);
        check(caps(None, Some(1), None), (0, 0, 0.0), false);
        check(caps(None, Some(1), None), (0, 1, 0.0), true);
        check(caps(None, None, Some(2.0)), (0, 0, 1.0), false);
        check(caps(None, None, Some(2.0)), (0, 0, 2.0), true);
    }

    /// (caps, today's clicks, conversions and spend) -> what the router is
    /// told is left of each cap.
    #[test]
    fn the_cap_view_shows_what_is_left_of_each_cap_today() {
        let check = |caps: Caps,
                     (clicks, conversions, spent): (u64, u64, f64),
                     want: (Option<u64>, Option<u64>, Option<f64>)| {
            let c = OfferCounters::default();
            c.seed(DAY, clicks, conversions, spent);
            let (clicks_left, conversions_left, budget_left) = want;
            let view = CapView { clicks_left, conversions_left, budget_left, secs_to_reset: 600 };
            assert_eq!(c.view(&caps, DAY, 600), view, "{caps:?} {clicks}/{conversions}/{spent}");
        };
        check(caps(None, None, None), (3, 1, 1.5), (None, None, None));
        check(caps(Some(10), Some(4), Some(4.0)), (3, 1, 1.5), (Some(7), Some(3), Some(2.5)));
        check(caps(Some(10), Some(4), Some(4.0)), (10, 4, 4.0), (Some(0), Some(0), Some(0.0)));
        check(caps(Some(10), Some(4), Some(4.0)), (12, 6, 6.5), (Some(0), Some(0), Some(0.0)));
        let c = OfferCounters::default();
        c.seed(DAY, 3, 1, 1.5);
        let fresh =
            CapView { clicks_left: Some(10), conversions_left: Some(4), budget_left: Some(4.0), secs_to_reset: 60 };
        assert_eq!(c.view(&caps(Some(10), Some(4), Some(4.0)), DAY + 1, 60), fresh, "a new day has all of every cap");
    }

    #[test]
    fn a_leased_click_spends_the_allowance_and_an_empty_one_caps_the_offer_here() {
        let c = OfferCounters::default();
        let caps = caps(Some(100), None, None);
        assert_eq!(c.reached_leased(&caps, DAY), Some(CapKind::Clicks), "nothing granted yet");
        c.grant(DAY, 3, 3);
        assert_eq!(c.reached_leased(&caps, DAY), None);
        assert_eq!((0..5).filter(|_| c.try_spend_click(&caps, DAY)).count(), 3);
        assert_eq!((c.allowance(DAY), c.clicks(DAY)), (0, 3));
        assert_eq!(c.demand(DAY), 1 + 3 + 2, "one look while empty, three spent, two refused");
        assert_eq!(c.reached_in_total(&caps, DAY), None, "the store had 97 left at the last take");
        c.grant(DAY, 0, 100);
        assert_eq!(c.reached_in_total(&caps, DAY), Some(CapKind::Clicks));
        assert_eq!(c.view_leased(&caps, DAY, 60).clicks_left, Some(0));
    }

    #[test]
    fn an_uncapped_offer_spends_nothing_in_leased_mode() {
        let c = OfferCounters::default();
        assert!((0..10).all(|_| c.try_spend_click(&Caps::default(), DAY)));
        assert_eq!((c.clicks(DAY), c.allowance(DAY), c.demand(DAY)), (10, 0, 10));
    }

    #[test]
    fn a_withdrawal_returns_todays_units_once_and_a_new_day_starts_empty() {
        let c = OfferCounters::default();
        c.grant(DAY, 5, 5);
        assert_eq!(c.withdraw(DAY), 5);
        assert_eq!(c.withdraw(DAY), 0, "nothing is returned twice");
        c.grant(DAY, 7, 12);
        assert_eq!(c.allowance(DAY + 1), 0, "yesterday's units are not today's");
        assert_eq!(c.withdraw(DAY + 1), 0);
        c.grant(DAY + 1, 2, 2);
        assert_eq!((c.allowance(DAY + 1), c.taken(DAY + 1)), (2, 2));
        let view = c.view_leased(&caps(Some(10), None, None), DAY + 1, 60);
        assert_eq!(view.clicks_left, Some(10), "what the store has left plus what this node holds");
    }

    /// Clicks spending while the lease task takes the allowance back:
    /// every granted unit is spent or returned, exactly once.
    #[test]
    fn concurrent_spends_and_a_withdrawal_account_for_every_unit_once() {
        let c = std::sync::Arc::new(OfferCounters::default());
        let caps = caps(Some(1_000_000), None, None);
        c.grant(DAY, 20_000, 20_000);
        let spenders: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..10_000).filter(|_| c.try_spend_click(&caps, DAY)).count() as u64)
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_micros(200));
        let returned = c.withdraw(DAY);
        let spent: u64 = spenders.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(spent + returned, 20_000, "spent {spent}, returned {returned}");
        assert_eq!(c.clicks(DAY), spent);
    }

    /// The refill rule on an injected clock: a node with a steady click
    /// rate, a 50 ms tick and a block that arrives one tick after it was
    /// asked for.
    struct Node {
        plan: LeasePlan,
        s: LeaseSettings,
        counters: OfferCounters,
        caps: Caps,
        cap: u64,
        /// The store: units taken by every node.
        taken: u64,
        now: i64,
        pending: Option<u64>,
        missed: u64,
        largest_hold: u64,
        blocks: Vec<u64>,
    }

    impl Node {
        fn new(cap: u64, taken: u64) -> Node {
            Node {
                plan: LeasePlan::default(),
                s: LeaseSettings::default(),
                counters: OfferCounters::default(),
                caps: caps(Some(cap), None, None),
                cap,
                taken,
                now: 1_000_000,
                pending: None,
                missed: 0,
                largest_hold: 0,
                blocks: Vec::new(),
            }
        }

        /// `clicks` clicks spread over the next 50 ms, then the task's tick.
        fn tick(&mut self, clicks: u64) {
            for _ in 0..clicks {
                let eligible = self.counters.reached_leased(&self.caps, DAY).is_none();
                if !(eligible && self.counters.try_spend_click(&self.caps, DAY)) {
                    self.missed += 1;
                }
            }
            self.now += 50;
            if let Some(want) = self.pending.take() {
                let granted = want.min(self.cap - self.taken);
                self.taken += granted;
                self.counters.grant(DAY, granted, self.taken);
                self.blocks.push(granted);
            }
            let (demand, allowance) = (self.counters.demand(DAY), self.counters.allowance(DAY));
            self.largest_hold = self.largest_hold.max(allowance);
            match self.plan.step(&self.s, self.now, demand, allowance, self.cap, self.counters.taken(DAY)) {
                LeaseStep::Hold => {}
                LeaseStep::Take(n) => self.pending = Some(n),
                LeaseStep::Return => {
                    let back = self.counters.withdraw(DAY);
                    self.taken -= back;
                    self.counters.set_taken(DAY, self.taken);
                }
            }
        }
    }

    #[test]
    fn a_steady_rate_is_served_ahead_of_demand_with_blocks_of_about_four_seconds() {
        let mut n = Node::new(10_000_000, 0);
        for _ in 0..100 {
            n.tick(10); // 200 clicks a second
        }
        let misses_warming_up = n.missed;
        for _ in 0..400 {
            n.tick(10);
        }
        // Two ticks pass before the first block arrives (nothing is known
        // of the rate at the first), then one more before a large one.
        assert!(misses_warming_up <= 30, "{misses_warming_up} clicks missed while the rate was measured");
        assert_eq!(n.missed, misses_warming_up, "once the rate is known no click finds the allowance empty");
        assert!((190.0..210.0).contains(&n.plan.rate()), "rate {}", n.plan.rate());
        let last = *n.blocks.last().unwrap();
        assert!((700..=900).contains(&last), "a block covers ~4 s of 200 clicks/s, not {last}");
        assert!(n.largest_hold <= 1_100, "a node holds at most ~5 s of its rate: {}", n.largest_hold);
    }

    #[test]
    fn a_fresh_offer_takes_a_small_block_and_then_holds_without_clicks() {
        let mut n = Node::new(1_000, 0);
        for _ in 0..200 {
            n.tick(0);
        }
        assert_eq!(n.blocks, vec![4], "one minimum block, kept while far from the cap");
        assert_eq!(n.counters.allowance(DAY), 4);
    }

    #[test]
    fn near_the_cap_blocks_shrink_and_the_total_never_passes_it() {
        let mut n = Node::new(200, 0);
        let mut served = 0;
        for _ in 0..400 {
            let before = n.counters.clicks(DAY);
            n.tick(10);
            served += n.counters.clicks(DAY) - before;
        }
        assert_eq!(served, 200, "every unit is spent, none beyond the cap");
        assert_eq!(n.taken, 200);
        assert!(n.blocks.iter().all(|&b| b <= 25), "at most 1/8 of what was left: {:?}", n.blocks);
        let tail: Vec<u64> = n.blocks.iter().copied().filter(|&b| b > 0).rev().take(5).collect();
        assert_eq!(tail, vec![1; 5], "the last units go one at a time");
    }

    #[test]
    fn a_used_up_cap_is_asked_again_once_a_second_not_every_tick() {
        let mut n = Node::new(100, 100);
        let mut asks = 0;
        for _ in 0..100 {
            n.tick(1);
            asks += n.pending.is_some() as u32;
        }
        // 5 s of ticks: the first ask, then one a second.
        assert!((5..=6).contains(&asks), "{asks} asks");
        assert_eq!(n.counters.clicks(DAY), 0);
    }

    #[test]
    fn an_idle_allowance_near_the_cap_goes_back_and_comes_again_when_a_click_misses() {
        // Other nodes took 60 of 100: this one's blocks are small, and what
        // it holds is a good part of what is left.
        let mut n = Node::new(100, 60);
        for _ in 0..10 {
            n.tick(2);
        }
        let (held, left) = (n.counters.allowance(DAY), 100 - n.taken);
        assert!(held > 0 && 8 * held > left, "holding {held}, {left} left");
        let t0 = n.now;
        while n.counters.allowance(DAY) > 0 {
            n.tick(0);
            assert!(n.now - t0 <= 61_000, "still holding after a minute idle");
        }
        assert!(n.now - t0 >= 59_000, "returned after {} ms", n.now - t0);
        assert_eq!(n.taken, 100 - left - held, "what was held is back in the store");
        for _ in 0..20 {
            n.tick(0);
        }
        assert_eq!(n.counters.allowance(DAY), 0, "parked: nothing taken without clicks");
        n.tick(1);
        n.tick(0);
        assert!(n.counters.allowance(DAY) > 0, "a missed click asks again");
    }

    #[test]
    fn an_idle_allowance_far_from_the_cap_stays() {
        let mut n = Node::new(1_000_000, 0);
        for _ in 0..10 {
            n.tick(2);
        }
        let held = n.counters.allowance(DAY);
        for _ in 0..2_400 {
            n.tick(0);
        }
        assert_eq!(n.counters.allowance(DAY), held, "two idle minutes, nothing returned");
    }
}
