//! The router as request threads share it: a click never waits for the
//! smartlink's lock when its segment's policy is published.
//!
//! Every click of an `auto` smartlink needs the smartlink's [`RouterState`]:
//! to pick (the segment's cached policy) and to learn (`on_click`). One mutex
//! guards it, held for a few microseconds per click. That is rarely contended,
//! but when the thread holding it is preempted (more runnable threads than
//! cores), a thread that waits for it stalls every connection it serves until
//! the holder runs again: milliseconds. On the co-located redirect bench, 1% of
//! picks found the lock held and about 60 a second waited over a millisecond.
//!
//! So the click path tries the lock instead of waiting for it:
//! - while holding it, a thread publishes the policy it picks from on a small
//!   board (one slot per segment hash), once any click has found the lock
//!   held — idle smartlinks never allocate a board;
//! - a click that finds the lock held picks from its segment's published
//!   policy if the router would still use it (same candidate list, same hour,
//!   younger than `policy_refresh_secs`), and leaves its learning update in a
//!   pending list;
//! - whoever takes the lock next applies the pending updates before anything
//!   else, so every reader of the state has seen every click;
//! - with no usable published policy, the click waits for the lock as before.
//!
//! A published policy may be older than the one the holder is computing: a
//! conversion that just arrived is not in it. Only clicks that found the lock
//! held use it, and the next click that takes the lock refreshes it.
//!
//! One thread alone (the simulator, the tests) never finds the lock held, so
//! its decisions and learned state are exactly those of a plain mutex.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, MutexGuard};
use rand::RngCore;

use super::policy::{signature, unit, PolicyEntry};
use super::stats::pack_segment;
use super::{Candidate, Choice, Context, Reason, RouterState};

/// Slots on a board (a power of two); segments that share a slot take turns.
const BOARD_SLOTS: usize = 4096;

type Board = Box<[Mutex<Option<Arc<PolicyEntry>>>]>;

/// A smartlink's [`RouterState`] behind its lock, with the published
/// policies and pending updates that let a click go on while it is held.
pub struct SharedRouter {
    state: Mutex<RouterState>,
    max_age_ms: i64,
    board: OnceLock<Board>,
    pending: Mutex<Vec<(u32, Context)>>,
    has_pending: AtomicBool,
    published_picks: AtomicU64,
    waits: AtomicU64,
}

impl std::fmt::Debug for SharedRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRouter").field("busy", &self.busy()).finish_non_exhaustive()
    }
}

impl Default for SharedRouter {
    fn default() -> Self {
        SharedRouter::new(RouterState::new())
    }
}

/// How often clicks found a smartlink's router lock held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Busy {
    /// Picked from a published policy instead of waiting.
    pub published: u64,
    /// Waited for the lock: no usable policy was published.
    pub waited: u64,
}

impl std::iter::Sum for Busy {
    fn sum<I: Iterator<Item = Busy>>(iter: I) -> Busy {
        iter.fold(Busy::default(), |a, b| Busy { published: a.published + b.published, waited: a.waited + b.waited })
    }
}

impl SharedRouter {
    /// Learning updates left pending at most; past this a click waits for
    /// the lock.
    pub const MAX_PENDING: usize = 4096;

    pub fn new(state: RouterState) -> SharedRouter {
        SharedRouter {
            max_age_ms: state.config().policy_refresh_secs as i64 * 1000,
            state: Mutex::new(state),
            board: OnceLock::new(),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
            published_picks: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        }
    }

    /// The state, once every pending update is applied; waits for the lock.
    pub fn lock(&self) -> RouterGuard<'_> {
        self.guard(self.state.lock())
    }

    /// [`lock`](Self::lock) without waiting: `None` while another thread
    /// holds it.
    pub fn try_lock(&self) -> Option<RouterGuard<'_>> {
        self.state.try_lock().map(|g| self.guard(g))
    }

    /// [`lock`](Self::lock) after [`choose_published`](Self::choose_published)
    /// found nothing usable: counted as a wait.
    pub fn lock_after_busy(&self) -> RouterGuard<'_> {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.lock()
    }

    fn guard<'a>(&'a self, mut state: MutexGuard<'a, RouterState>) -> RouterGuard<'a> {
        if self.has_pending.load(Ordering::Acquire) {
            let batch = {
                let mut pending = self.pending.lock();
                self.has_pending.store(false, Ordering::Release);
                std::mem::take(&mut *pending)
            };
            for (key, ctx) in &batch {
                state.on_click(*key, ctx);
            }
        }
        RouterGuard { state, shared: self }
    }

    /// Picks one of `cands` (never empty) from the segment's published
    /// policy, for a click that found the lock held. `None` when none is
    /// usable: the caller then waits for the lock.
    pub fn choose_published(&self, cands: &[Candidate], ctx: &Context, rng: &mut dyn RngCore) -> Option<Choice> {
        if cands.len() <= 1 {
            return Some(Choice { index: 0, reason: Reason::BestScore, propensity: 1.0 });
        }
        let seg = pack_segment(ctx.segment);
        let board = self.board.get_or_init(|| (0..BOARD_SLOTS).map(|_| Mutex::new(None)).collect());
        let entry = board[slot(seg)].try_lock()?.clone()?;
        if !entry.serves(seg, signature(cands), cands.len(), ctx, self.max_age_ms) {
            return None;
        }
        self.published_picks.fetch_add(1, Ordering::Relaxed);
        Some(entry.sample(unit(rng)))
    }

    /// Learns from a click that was picked without the lock: applied by the
    /// next holder, or now (waiting) when too many are pending.
    pub fn defer_click(&self, offer_key: u32, ctx: &Context) {
        {
            let mut pending = self.pending.lock();
            if pending.len() < Self::MAX_PENDING {
                pending.push((offer_key, *ctx));
                self.has_pending.store(true, Ordering::Release);
                return;
            }
        }
        self.lock_after_busy().on_click(offer_key, ctx);
    }

    /// Learns from a click: now if the lock is free, else deferred.
    pub fn record_click(&self, offer_key: u32, ctx: &Context) {
        match self.try_lock() {
            Some(mut r) => r.on_click(offer_key, ctx),
            None => self.defer_click(offer_key, ctx),
        }
    }

    /// Clicks that found the lock held, since start.
    pub fn busy(&self) -> Busy {
        Busy { published: self.published_picks.load(Ordering::Relaxed), waited: self.waits.load(Ordering::Relaxed) }
    }
}

fn slot(seg: u32) -> usize {
    (seg.wrapping_mul(0x9E37_79B9) >> 20) as usize & (BOARD_SLOTS - 1)
}

/// Exclusive access to a smartlink's [`RouterState`].
pub struct RouterGuard<'a> {
    state: MutexGuard<'a, RouterState>,
    shared: &'a SharedRouter,
}

impl RouterGuard<'_> {
    /// [`RouterState::choose`], publishing the policy it picked from once
    /// the smartlink has a board.
    pub fn choose(&mut self, cands: &[Candidate], ctx: &Context, rng: &mut dyn RngCore) -> Choice {
        let (choice, entry) = self.state.choose_and_share(cands, ctx, rng);
        // Held only by the router's cache, the policy is not on the board
        // (new, recomputed, or displaced by a segment sharing its slot).
        if let (Some(entry), Some(board)) = (entry, self.shared.board.get()) {
            if Arc::strong_count(entry) == 1 {
                // A reader copying the slot's entry holds it for an instant;
                // publishing can wait for the next click.
                if let Some(mut published) = board[slot(entry.seg)].try_lock() {
                    *published = Some(entry.clone());
                }
            }
        }
        choice
    }
}

impl Deref for RouterGuard<'_> {
    type Target = RouterState;
    fn deref(&self) -> &RouterState {
        &self.state
    }
}

impl DerefMut for RouterGuard<'_> {
    fn deref_mut(&mut self) -> &mut RouterState {
        &mut self.state
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::model::{Country, Device, Os, Segment};
    use crate::router::CapView;

    #[test]
    fn a_segment_sharing_a_board_slot_never_picks_from_anothers_policy() {
        // Two segments whose policies would take the same slot.
        let letters = b'A'..=b'Z';
        let mut by_slot = std::collections::HashMap::new();
        let (first, twin) = letters
            .clone()
            .flat_map(|a| letters.clone().map(move |b| Country::from_bytes([a, b])))
            .flat_map(|country| {
                Device::ALL.iter().flat_map(move |&device| Os::ALL.iter().map(move |&os| (country, device, os)))
            })
            .map(|(country, device, os)| Segment { country, device, os })
            .find_map(|s| match by_slot.insert(slot(pack_segment(s)), s) {
                Some(prev) if pack_segment(prev) != pack_segment(s) => Some((prev, s)),
                _ => None,
            })
            .expect("more segments than slots");
        let cands: Vec<Candidate> =
            (1..=3).map(|key| Candidate { key, payout: 1.0, caps: CapView::default() }).collect();
        let ctx = |segment| Context { segment, hour: 0, now_ms: 1_767_571_200_000 };
        let shared = SharedRouter::default();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
        {
            let _held = shared.lock();
            assert!(shared.choose_published(&cands, &ctx(first), &mut rng).is_none(), "no board yet");
        }
        shared.lock().choose(&cands, &ctx(first), &mut rng);
        let _held = shared.lock();
        assert!(shared.choose_published(&cands, &ctx(first), &mut rng).is_some(), "{first:?}'s policy is on the board");
        assert!(shared.choose_published(&cands, &ctx(twin), &mut rng).is_none(), "{twin:?} shares its slot");
    }
}
