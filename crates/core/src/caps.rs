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
}
