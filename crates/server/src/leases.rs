//! Daily caps across nodes on a shared store (issue 19), off the click path.
//!
//! A click cap cannot be counted by each node alone (N nodes would let N
//! caps through), and the click path must not wait on the store. So each
//! node spends units of an allowance it holds in memory
//! (`core::caps::CapMode::Leased`, one compare-and-swap a click), and this
//! module's thread keeps every capped offer's allowance topped up ahead of
//! demand: every [`TICK`] it asks `core::caps::LeasePlan` what to do and
//! takes blocks of units from the store (`SharedStore::take_cap_units`,
//! which never hands out more than the cap in total) or gives them back.
//!
//! Units go back to the store when the offer's day ends, when its cap is
//! lowered or removed, when it is paused or deleted, when an allowance near
//! the cap sat unused for `idle_return_ms`, and at shutdown. A node that
//! dies strands what it held for the rest of that day: nobody can know how
//! many of those units it spent (its journal holds the clicks, maybe not yet
//! loaded), so they are never handed out again. That is at most one
//! node's allowance per capped offer: about five seconds of its clicks on
//! the offer, at most 1/8 of what was left when it last took, and at most
//! `max_block` plus the low-water mark.
//!
//! Conversion and budget caps count approved conversions, which are
//! recorded in the store by whichever node received the postback: every
//! [`CONVERSIONS_EVERY`] this thread sets each such offer's counters to the
//! store's totals for its local day, so another node's conversions stop an
//! offer here within about a second (the node that recorded one counts it
//! at once).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use smartlink_core::caps::{LeasePlan, LeaseSettings, LeaseStep, OfferCounters};
use smartlink_core::model::{Catalog, Status};
use smartlink_core::time::{day_range_ms, local};
use smartlink_store::{CapTake, SharedStore, Store};

use crate::metrics::Metrics;
use crate::state::AppState;

/// How often allowances are checked: the low-water mark (one second of the
/// node's clicks) covers several ticks and a slow store round trip.
pub const TICK: Duration = Duration::from_millis(50);
/// How often conversion and budget counts are refreshed from the store.
pub const CONVERSIONS_EVERY: Duration = Duration::from_secs(1);
/// How often cap units of past days are forgotten in the store.
const FORGET_EVERY: Duration = Duration::from_secs(3_600);

/// One capped offer's lease on this node.
struct OfferLease {
    /// The counters spent from (kept after the offer leaves the catalog,
    /// so that what it holds can still be given back).
    counters: Arc<OfferCounters>,
    day: u32,
    cap: u64,
    plan: LeasePlan,
}

/// This node's cap leases: what the lease thread owns.
pub struct Leases {
    node: String,
    settings: LeaseSettings,
    offers: HashMap<u32, OfferLease>,
    last_conversions_ms: Option<i64>,
    last_forget_ms: Option<i64>,
    failures: u64,
    backoff: Backoff,
}

/// The longest wait between rounds while the store fails: a store that is
/// down is not asked 20 times a second by every node.
const MAX_BACKOFF_MS: i64 = 2_000;

/// Rounds while the store keeps failing: after a failed round the next
/// waits one tick, then twice as long per failed round up to
/// [`MAX_BACKOFF_MS`]; a round without failure ends the wait.
#[derive(Debug, Default)]
struct Backoff {
    retry_at_ms: Option<i64>,
    wait_ms: i64,
}

impl Backoff {
    fn due(&self, now_ms: i64) -> bool {
        self.retry_at_ms.is_none_or(|t| now_ms >= t)
    }

    fn failed(&mut self, now_ms: i64) {
        self.wait_ms = (self.wait_ms * 2).clamp(TICK.as_millis() as i64, MAX_BACKOFF_MS);
        self.retry_at_ms = Some(now_ms + self.wait_ms);
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

impl Leases {
    /// `node` names this process in the store's lease rows (unique per
    /// process run: a restarted node holds nothing it held before).
    pub fn new(node: String, settings: LeaseSettings) -> Leases {
        Leases {
            node,
            settings,
            offers: HashMap::new(),
            last_conversions_ms: None,
            last_forget_ms: None,
            failures: 0,
            backoff: Backoff::default(),
        }
    }

    /// One round over the catalog at `now_ms`.
    pub fn tick(&mut self, catalog: &Catalog, store: &dyn Store, metrics: &Metrics, now_ms: i64) {
        if !self.backoff.due(now_ms) {
            return;
        }
        let before = self.failures;
        self.round(catalog, store, metrics, now_ms);
        if self.failures > before {
            self.backoff.failed(now_ms);
        } else {
            self.backoff.succeeded();
        }
    }

    fn round(&mut self, catalog: &Catalog, store: &dyn Store, metrics: &Metrics, now_ms: i64) {
        let Some(sh) = store.shared() else { return };
        let Leases { node, settings, offers, failures, .. } = self;
        let mut seen = HashSet::new();
        let mut held = 0;
        for o in &catalog.offers {
            let Some(cap) = o.caps.daily_clicks.filter(|_| o.status == Status::Active) else { continue };
            seen.insert(o.key);
            let day = local(o.targeting.timezone, now_ms).day;
            let lease = offers.entry(o.key).or_insert_with(|| OfferLease {
                counters: o.counters.clone(),
                day,
                cap,
                plan: LeasePlan::default(),
            });
            if lease.day != day {
                // The day is over (or the offer's timezone changed): its
                // units can no longer be spent.
                *failures += give_back(sh, node, o.key, lease, metrics, now_ms);
                lease.day = day;
            }
            if cap < lease.cap {
                // A lowered cap: what this node holds goes back, so that the
                // total can come down to the new cap.
                *failures += give_back(sh, node, o.key, lease, metrics, now_ms);
            }
            lease.cap = cap;
            let c = &lease.counters;
            match lease.plan.step(settings, now_ms, c.demand(day), c.allowance(day), cap, c.taken(day)) {
                LeaseStep::Hold => {}
                LeaseStep::Return => *failures += give_back(sh, node, o.key, lease, metrics, now_ms),
                LeaseStep::Take(want) => {
                    let t = CapTake { node, offer: o.key, day, cap, want, now_ms };
                    match sh.take_cap_units(&t) {
                        Ok(g) => {
                            c.grant(day, g.granted, g.taken);
                            metrics.cap_units_taken.fetch_add(g.granted, Relaxed);
                        }
                        Err(e) => {
                            *failures += 1;
                            metrics.cap_lease_errors.fetch_add(1, Relaxed);
                            if *failures == 1 || failures.is_multiple_of(200) {
                                tracing::warn!(offer = %o.id, error = %e, "taking click-cap units failed; the offer \
                                               takes clicks here only while this node's allowance lasts");
                            }
                        }
                    }
                }
            }
            held += lease.counters.allowance(day);
        }
        // Offers no longer capped, paused or deleted: their units go back.
        let gone: Vec<u32> = offers.keys().filter(|k| !seen.contains(k)).copied().collect();
        for key in gone {
            if let Some(lease) = offers.remove(&key) {
                *failures += give_back(sh, node, key, &lease, metrics, now_ms);
            }
        }
        metrics.cap_units_held.store(held, Relaxed);

        if self.last_conversions_ms.is_none_or(|t| now_ms - t >= CONVERSIONS_EVERY.as_millis() as i64) {
            self.last_conversions_ms = Some(now_ms);
            if let Err(e) = refresh_conversions(catalog, store, now_ms) {
                tracing::debug!(error = %e, "reading today's approved conversions failed");
            }
        }
        if self.last_forget_ms.is_none_or(|t| now_ms - t >= FORGET_EVERY.as_millis() as i64) {
            self.last_forget_ms = Some(now_ms);
            // Two days back from today in UTC is past every timezone's today.
            let before = local(chrono_tz::UTC, now_ms).day.saturating_sub(2);
            if let Err(e) = sh.forget_cap_units_before(before) {
                tracing::debug!(error = %e, "forgetting past days' cap units failed");
            }
        }
    }

    /// Gives back everything this node holds (shutdown).
    pub fn give_back_all(&mut self, store: &dyn Store, metrics: &Metrics, now_ms: i64) {
        let Some(sh) = store.shared() else { return };
        for (key, lease) in self.offers.drain() {
            give_back(sh, &self.node, key, &lease, metrics, now_ms);
        }
        metrics.cap_units_held.store(0, Relaxed);
    }
}

/// Empties the offer's allowance for its lease day and gives the units back
/// to the store; 1 if that failed (the units are then stranded for the
/// day: safe, never handed out twice), else 0.
fn give_back(sh: &dyn SharedStore, node: &str, key: u32, lease: &OfferLease, metrics: &Metrics, now_ms: i64) -> u64 {
    let units = lease.counters.withdraw(lease.day);
    if units == 0 {
        return 0;
    }
    match sh.return_cap_units(node, key, lease.day, units, now_ms) {
        Ok(taken) => {
            lease.counters.set_taken(lease.day, taken);
            metrics.cap_units_returned.fetch_add(units, Relaxed);
            0
        }
        Err(e) => {
            metrics.cap_lease_errors.fetch_add(1, Relaxed);
            tracing::warn!(offer = key, units, error = %e, "giving click-cap units back failed: they stay unused today");
            1
        }
    }
}

/// Sets the conversion and budget counts of every offer with such a cap to
/// the store's approved totals for its local day (all nodes' conversions).
fn refresh_conversions(catalog: &Catalog, store: &dyn Store, now_ms: i64) -> smartlink_store::Result<()> {
    let mut totals: HashMap<(chrono_tz::Tz, u32), HashMap<u32, (u64, f64)>> = HashMap::new();
    for o in &catalog.offers {
        if o.caps.daily_conversions.is_none() && o.caps.daily_budget.is_none() {
            continue;
        }
        let tz = o.targeting.timezone;
        let day = local(tz, now_ms).day;
        let day_totals = match totals.entry((tz, day)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let (from, to) = day_range_ms(tz, day);
                e.insert(store.approved_totals(from, to)?.into_iter().map(|(k, n, s)| (k, (n, s))).collect())
            }
        };
        let (n, spent) = day_totals.get(&o.key).copied().unwrap_or((0, 0.0));
        o.counters.set_conversions(day, n, spent);
    }
    Ok(())
}

/// The lease thread; [`Handle::stop`] ends it, giving every unit back.
pub struct Handle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Stops the thread and waits for it to give back what it holds.
    /// Blocking: call off the async runtime.
    pub fn stop(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the lease thread when the store is shared (None otherwise: on
/// one node the counters are exact and there is nothing to lease). The
/// first round runs before this returns, so capped offers hold units
/// before the first click.
///
/// The node's leases are held under the shared store's node id (the one its
/// click and conversion rows carry), in hex.
pub fn start(app: &Arc<AppState>, settings: LeaseSettings) -> anyhow::Result<Option<Handle>> {
    let Some(shared) = app.store.shared() else {
        return Ok(None);
    };
    let mut leases = Leases::new(format!("{:016x}", shared.node()), settings);
    leases.tick(&app.catalog.load(), &*app.store, &app.metrics, (app.clock)());
    let stop = Arc::new(AtomicBool::new(false));
    let weak: Weak<AppState> = Arc::downgrade(app);
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new().name("cap-leases".into()).spawn(move || loop {
        std::thread::sleep(TICK);
        let Some(app) = weak.upgrade() else { return };
        let now = (app.clock)();
        if stop2.load(Relaxed) {
            leases.give_back_all(&*app.store, &app.metrics, now);
            return;
        }
        leases.tick(&app.catalog.load(), &*app.store, &app.metrics, now);
    })?;
    Ok(Some(Handle { stop, thread: Some(thread) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_wait_longer_after_each_failed_round_up_to_two_seconds_and_not_after_a_good_one() {
        let mut b = Backoff::default();
        assert!(b.due(0));
        let mut waits = Vec::new();
        let mut now = 0;
        for _ in 0..8 {
            b.failed(now);
            let next = b.retry_at_ms.unwrap();
            assert!(!b.due(next - 1));
            assert!(b.due(next));
            waits.push(next - now);
            now = next;
        }
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        b.succeeded();
        assert!(b.due(now));
        b.failed(now);
        assert_eq!(b.retry_at_ms, Some(now + 50), "a good round starts the waits again from one tick");
    }
}
