//! Daily caps: exact, lock-free counters per offer.
//!
//! Each counter packs the local day number (high 24 bits) and the count (low
//! 40 bits) into one `AtomicU64`, so "reset at midnight" and "increment unless
//! the cap is reached" are a single compare-and-swap: a click cap can never be
//! exceeded by concurrent clicks on one node.

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
        } else if caps.daily_conversions.is_some_and(|c| self.conversions(day) >= c) {
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
}
