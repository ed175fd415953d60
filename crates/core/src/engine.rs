//! The whole per-click decision, shared by the server and the simulator:
//! overrides, eligibility (status, targeting, caps), the routing strategy,
//! the exact cap reservation, the signed click id and the expanded URL.
//!
//! Everything is in memory; the only shared mutable state touched is the
//! offers' atomic counters and the smartlink's router mutex, which is held
//! for the pick alone (never across I/O). With several nodes on one store
//! a click cap is spent from the node's leased allowance, an atomic too
//! (`caps::CapMode::Leased`): no store round trip on the click path.

use rand::RngCore;

use crate::caps::CapMode;
use crate::clickid::{ClickFacts, ClickIdCodec};
use crate::model::{Catalog, Offer, Smartlink, Status, Strategy};
use crate::router::{Candidate, Choice, Context, ConversionStatus, Reason, RouterGuard};
use crate::targeting::Visitor;
use crate::template::{format_amount, Macro, MacroValues, Template};
use crate::time::{local, LocalTime};
use smartlink_visitor::quality::Quality;

/// Everything about one click that the decision needs.
#[derive(Clone, Copy, Debug)]
pub struct ClickInput<'a> {
    /// Click time, milliseconds since the Unix epoch (the injected clock).
    pub now_ms: i64,
    pub visitor: Visitor,
    /// `sub1`..`sub5`, empty when absent.
    pub subs: [&'a str; 5],
    /// The `aff` query parameter, if sent.
    pub aff: Option<&'a str>,
    /// The traffic source the click came from (index into
    /// [`Catalog::sources`]), carried in the click id.
    pub source: Option<usize>,
    /// Whether the click counts: human and suspect clicks reserve click caps
    /// and train the router; bot and preview clicks are still routed (when
    /// the smartlink's quality action allows it) but do neither.
    pub counted: bool,
    /// The quality verdict's four bits, carried in the click id.
    pub flags: u8,
}

/// Why a click went to the fallback URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The smartlink has no offers at all.
    EmptyPool,
    /// Every offer in the pool is paused.
    AllPaused,
    /// Active offers exist but none accepts this visitor.
    NoTargetingMatch,
    /// Offers accept the visitor but all reached a daily cap.
    AllCapped,
    /// The smartlink's quality action kept the click away from the offers
    /// (blocked, sent to the fallback or to the safe page).
    Quality,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 5] = [
        FallbackReason::EmptyPool,
        FallbackReason::AllPaused,
        FallbackReason::NoTargetingMatch,
        FallbackReason::AllCapped,
        FallbackReason::Quality,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::EmptyPool => "empty_pool",
            FallbackReason::AllPaused => "all_paused",
            FallbackReason::NoTargetingMatch => "no_targeting_match",
            FallbackReason::AllCapped => "all_capped",
            FallbackReason::Quality => "quality",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Index into [`Catalog::offers`].
    Offer(usize),
    Fallback(FallbackReason),
}

/// The result of routing one click.
#[derive(Clone, Debug)]
pub struct Decision {
    pub outcome: Outcome,
    pub reason: Reason,
    /// Probability that this outcome would be chosen for this click.
    pub propensity: f64,
    /// Index into [`Catalog::affiliates`] of the credited affiliate.
    pub affiliate: Option<usize>,
    /// True when an `aff` parameter named no known affiliate.
    pub unknown_aff: bool,
    pub facts: ClickFacts,
    pub click_id: String,
    /// Where to redirect: the expanded offer or fallback URL.
    pub url: String,
}

struct Values<'a> {
    cat: &'a Catalog,
    sl: &'a Smartlink,
    offer: Option<&'a Offer>,
    input: &'a ClickInput<'a>,
    affiliate: Option<usize>,
    click_id: &'a str,
}

impl MacroValues for Values<'_> {
    fn write(&self, m: Macro, out: &mut String) {
        let seg = &self.input.visitor.segment;
        match m {
            Macro::ClickId => out.push_str(self.click_id),
            Macro::Sub(i) => out.push_str(self.input.subs[(i as usize).clamp(1, 5) - 1]),
            Macro::Country => out.push_str(seg.country.as_str()),
            Macro::Device => out.push_str(seg.device.as_str()),
            Macro::Os => out.push_str(seg.os.as_str()),
            Macro::Browser => out.push_str(self.input.visitor.browser.as_str()),
            Macro::OfferId => out.push_str(self.offer.map_or("", |o| o.id.as_str())),
            Macro::Smartlink => out.push_str(self.sl.slug.as_str()),
            Macro::Affiliate => out.push_str(self.affiliate.map_or("", |a| self.cat.affiliates[a].id.as_str())),
            Macro::Payout => {
                if let Some(o) = self.offer {
                    format_amount(o.payout, out)
                }
            }
            Macro::Currency => out.push_str(self.offer.map_or("", |o| o.currency.as_str())),
            Macro::Status | Macro::Event | Macro::Txid => {}
        }
    }
}

/// Per-click scratch space: the local time in each offer's timezone is
/// computed once per distinct zone.
struct Clock {
    now_ms: i64,
    cache: [(chrono_tz::Tz, LocalTime); 4],
    len: usize,
}

impl Clock {
    fn new(now_ms: i64) -> Clock {
        let utc = local(chrono_tz::UTC, now_ms);
        Clock { now_ms, cache: [(chrono_tz::UTC, utc); 4], len: 1 }
    }

    fn at(&mut self, tz: chrono_tz::Tz) -> LocalTime {
        if let Some((_, t)) = self.cache[..self.len].iter().find(|(z, _)| *z == tz) {
            return *t;
        }
        let t = local(tz, self.now_ms);
        if self.len < self.cache.len() {
            self.cache[self.len] = (tz, t);
            self.len += 1;
        }
        t
    }
}

/// Most pools are far smaller; larger ones spill to the heap.
const INLINE: usize = 64;

/// Routes one click on smartlink `sl` of catalog `cat`.
pub fn decide(
    cat: &Catalog,
    sl: &Smartlink,
    input: &ClickInput<'_>,
    codec: &ClickIdCodec,
    rng: &mut dyn RngCore,
) -> Decision {
    let mut clock = Clock::new(input.now_ms);
    let utc = clock.at(chrono_tz::UTC);
    let seg = input.visitor.segment;

    let (affiliate, unknown_aff) = match input.aff {
        Some(a) => match cat.affiliate_index.get(a) {
            Some(&i) => (Some(i), false),
            None => (sl.affiliate, true),
        },
        None => (sl.affiliate, false),
    };

    // Eligibility. `slots` holds positions in `sl.offers`.
    let mut slots: smallvec_lite::Vec64 = smallvec_lite::Vec64::new();
    let mut cands: Vec<Candidate> = Vec::new();
    let mut inline_cands = [Candidate { key: 0, payout: 0.0, caps: Default::default() }; INLINE];
    let mut n = 0usize;
    let tally = eligible(cat, sl, &input.visitor, &mut clock, |slot, c| {
        if n < INLINE {
            inline_cands[n] = c;
        } else {
            if cands.is_empty() {
                cands.extend_from_slice(&inline_cands);
            }
            cands.push(c);
        }
        slots.push(slot);
        n += 1;
    });
    let cand_slice: &mut [Candidate] = if n <= INLINE { &mut inline_cands[..n] } else { &mut cands[..] };

    let ctx = Context { segment: seg, hour: utc.hour, now_ms: input.now_ms };
    let picked = pick(cat, sl, input, &ctx, cand_slice, slots.as_mut_slice(), &mut clock, rng);

    let (outcome, reason, propensity) = match picked {
        Some((slot, choice)) => (Outcome::Offer(sl.offers[slot]), choice.reason, choice.propensity),
        None => (Outcome::Fallback(tally.fallback(sl)), Reason::Fallback, 1.0),
    };
    let offer = match outcome {
        Outcome::Offer(i) => Some(&cat.offers[i]),
        Outcome::Fallback(_) => None,
    };

    let mut nonce = [0u8; 6];
    rng.fill_bytes(&mut nonce);
    let facts = ClickFacts {
        time_secs: (input.now_ms.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32,
        smartlink: sl.key,
        offer: offer.map(|o| o.key),
        affiliate: affiliate.map(|a| cat.affiliates[a].key),
        source: input.source.map(|i| cat.sources[i].key),
        segment: seg,
        browser: input.visitor.browser,
        language: input.visitor.language,
        flags: input.flags & 0x0f,
        nonce,
    };
    let click_id = codec.encode(&facts);
    let values = Values { cat, sl, offer, input, affiliate, click_id: &click_id };
    let url = match offer {
        Some(o) => o.url.expand(&values),
        None => fallback_url(None, &values),
    };
    Decision { outcome, reason, propensity, affiliate, unknown_aff, facts, click_id, url }
}

/// How many of a pool's offers were active and matched the visitor, as
/// [`eligible`] counted them.
struct Tally {
    active: usize,
    matching: usize,
}

impl Tally {
    /// Why no offer of `sl` could take the click.
    fn fallback(&self, sl: &Smartlink) -> FallbackReason {
        if sl.offers.is_empty() {
            FallbackReason::EmptyPool
        } else if self.active == 0 {
            FallbackReason::AllPaused
        } else if self.matching == 0 {
            FallbackReason::NoTargetingMatch
        } else {
            FallbackReason::AllCapped
        }
    }
}

/// The eligibility rules of [`decide`] and [`policy`]: each offer of the
/// pool that is active, matches the visitor's targeting at the offer's
/// local hour and has not reached a cap is handed to `take` with its
/// position in the pool and its candidate (caps as of now).
fn eligible(
    cat: &Catalog,
    sl: &Smartlink,
    visitor: &Visitor,
    clock: &mut Clock,
    mut take: impl FnMut(usize, Candidate),
) -> Tally {
    let mut tally = Tally { active: 0, matching: 0 };
    for (slot, &oi) in sl.offers.iter().enumerate() {
        let o = &cat.offers[oi];
        if o.status != Status::Active {
            continue;
        }
        tally.active += 1;
        let t = clock.at(o.targeting.timezone);
        if !o.targeting.matches(visitor, t.hour) {
            continue;
        }
        tally.matching += 1;
        let caps = match cat.cap_mode {
            CapMode::Local if o.counters.reached(&o.caps, t.day).is_some() => continue,
            CapMode::Local => o.counters.view(&o.caps, t.day, t.secs_to_midnight),
            CapMode::Leased if o.counters.reached_leased(&o.caps, t.day).is_some() => continue,
            CapMode::Leased => o.counters.view_leased(&o.caps, t.day, t.secs_to_midnight),
        };
        take(slot, Candidate { key: o.key, payout: o.payout_base, caps });
    }
    tally
}

/// A click the smartlink's quality action keeps away from the offers: no
/// routing, no cap, no learning; it still gets a signed click id (so its row
/// and any later postback are attributable) and the URL of `target`
/// (the fallback URL when `None`), expanded like any redirect.
pub fn divert(
    cat: &Catalog,
    sl: &Smartlink,
    input: &ClickInput<'_>,
    target: Option<&Template>,
    codec: &ClickIdCodec,
    rng: &mut dyn RngCore,
) -> Decision {
    let affiliate = match input.aff {
        Some(a) => cat.affiliate_index.get(a).copied().or(sl.affiliate),
        None => sl.affiliate,
    };
    let unknown_aff = input.aff.is_some_and(|a| !cat.affiliate_index.contains_key(a));
    let mut nonce = [0u8; 6];
    rng.fill_bytes(&mut nonce);
    let facts = ClickFacts {
        time_secs: (input.now_ms.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32,
        smartlink: sl.key,
        offer: None,
        affiliate: affiliate.map(|a| cat.affiliates[a].key),
        source: input.source.map(|i| cat.sources[i].key),
        segment: input.visitor.segment,
        browser: input.visitor.browser,
        language: input.visitor.language,
        flags: input.flags & 0x0f,
        nonce,
    };
    let click_id = codec.encode(&facts);
    let url = fallback_url(target, &Values { cat, sl, offer: None, input, affiliate, click_id: &click_id });
    Decision {
        outcome: Outcome::Fallback(FallbackReason::Quality),
        reason: Reason::Fallback,
        propensity: 1.0,
        affiliate,
        unknown_aff,
        facts,
        click_id,
        url,
    }
}

/// Where a click that no offer takes goes: `target` when given (a safe
/// page); else the link's fallback URL (always set on a smartlink; on a
/// direct link, its offer's); else, on a direct link, its fallback
/// smartlink, to which the visitor is handed with the affiliate, source and
/// sub-ids (a relative `/s/{slug}?...` URL; the cost stays with the direct
/// click); else the credited affiliate's `fallback_url`. Empty when there
/// is nowhere to go.
fn fallback_url(target: Option<&Template>, v: &Values<'_>) -> String {
    if let Some(t) = target.or(v.sl.fallback_url.as_ref()) {
        return t.expand(v);
    }
    if let Some(link) = v.sl.fallback_link.and_then(|i| v.cat.smartlinks.get(i)) {
        return hand_off(link, v);
    }
    match v.affiliate.and_then(|a| v.cat.affiliates[a].fallback_url.as_ref()) {
        Some(t) => t.expand(v),
        None => String::new(),
    }
}

/// `/s/{slug}?aff=..&src=..&sub1=..`: the click handed to smartlink `link`
/// with what identifies its traffic (empty values left out).
fn hand_off(link: &Smartlink, v: &Values<'_>) -> String {
    let mut url = format!("/s/{}", link.slug);
    let mut sep = '?';
    let mut param = |name: &str, value: &str| {
        if !value.is_empty() {
            url.push(sep);
            url.push_str(name);
            url.push('=');
            crate::template::encode_into(value, &mut url);
            sep = '&';
        }
    };
    param("aff", v.affiliate.map_or("", |a| v.cat.affiliates[a].id.as_str()));
    param("src", v.input.source.map_or("", |i| v.cat.sources[i].id.as_str()));
    for (i, name) in ["sub1", "sub2", "sub3", "sub4", "sub5"].iter().enumerate() {
        param(name, v.input.subs[i]);
    }
    url
}

/// Overrides first, then the smartlink's strategy; reserves the click cap of
/// the chosen offer, retrying without it if a concurrent click took the last
/// unit. Returns the chosen slot in `sl.offers`.
#[allow(clippy::too_many_arguments)]
fn pick(
    cat: &Catalog,
    sl: &Smartlink,
    input: &ClickInput<'_>,
    ctx: &Context,
    cands: &mut [Candidate],
    slots: &mut [usize],
    clock: &mut Clock,
    rng: &mut dyn RngCore,
) -> Option<(usize, Choice)> {
    // A click that does not count never takes a unit of a cap: the offer
    // was checked to be under its caps, which is all it needs.
    let reserve = |slot: usize, clock: &mut Clock| {
        let o = &cat.offers[sl.offers[slot]];
        !input.counted
            || match cat.cap_mode {
                CapMode::Local => o.counters.try_reserve_click(&o.caps, clock.at(o.targeting.timezone).day),
                CapMode::Leased => o.counters.try_spend_click(&o.caps, clock.at(o.targeting.timezone).day),
            }
    };

    for ov in &sl.overrides {
        if ov.matches(&input.visitor.segment) && slots.contains(&ov.offer) && reserve(ov.offer, clock) {
            let key = cat.offers[sl.offers[ov.offer]].key;
            if sl.strategy == Strategy::Auto && input.counted {
                sl.router.record_click(key, ctx);
            }
            return Some((ov.offer, Choice { index: 0, reason: Reason::Override, propensity: 1.0 }));
        }
    }

    // When the router lock is free, one critical section covers pick,
    // reservation and learning; it is never held across I/O (there is none
    // here). It is tried, not waited for: a click that finds it held picks
    // from its segment's published policy when there is one, and leaves its
    // learning update pending (`router::shared`).
    let mut router = match sl.strategy {
        Strategy::Auto => sl.router.try_lock().map_or(Router::Busy, Router::Locked),
        _ => Router::Unused,
    };
    let mut len = cands.len();
    while len > 0 {
        let choice = match (&sl.strategy, &mut router) {
            (_, Router::Locked(r)) => r.choose(&cands[..len], ctx, rng),
            (_, Router::Busy) => match sl.router.choose_published(&cands[..len], ctx, rng) {
                Some(choice) => choice,
                None => {
                    router = Router::Locked(sl.router.lock_after_busy());
                    continue;
                }
            },
            (Strategy::Weighted(w), Router::Unused) => weighted(w, &slots[..len], rng),
            _ => Choice { index: 0, reason: Reason::Priority, propensity: 1.0 },
        };
        let slot = slots[choice.index];
        if reserve(slot, clock) {
            if input.counted {
                let key = cands[choice.index].key;
                match &mut router {
                    Router::Locked(r) => r.on_click(key, ctx),
                    Router::Busy => sl.router.defer_click(key, ctx),
                    Router::Unused => {}
                }
            }
            return Some((slot, choice));
        }
        // Lost the race for the last unit of a cap: drop it and choose again.
        cands.swap(choice.index, len - 1);
        slots.swap(choice.index, len - 1);
        len -= 1;
    }
    None
}

/// How [`pick`] reaches the smartlink's router.
enum Router<'a> {
    /// The strategy is not `auto`.
    Unused,
    Locked(RouterGuard<'a>),
    /// Another thread holds the lock.
    Busy,
}

fn weighted(weights: &[f64], slots: &[usize], rng: &mut dyn RngCore) -> Choice {
    let w = |s: usize| weights.get(s).copied().unwrap_or(0.0).max(0.0);
    let total: f64 = slots.iter().map(|&s| w(s)).sum();
    if total <= 0.0 {
        let n = slots.len();
        let index = (rng.next_u64() % n as u64) as usize;
        return Choice { index, reason: Reason::Weighted, propensity: 1.0 / n as f64 };
    }
    let mut x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    for (i, &s) in slots.iter().enumerate() {
        x -= w(s);
        if x < 0.0 && w(s) > 0.0 {
            return Choice { index: i, reason: Reason::Weighted, propensity: w(s) / total };
        }
    }
    let last = slots.iter().rposition(|&s| w(s) > 0.0).unwrap_or(0);
    Choice { index: last, reason: Reason::Weighted, propensity: w(slots[last]) / total }
}

/// Where a click of one visitor would go now, as [`policy`] answers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The eligible offers (indices into [`Catalog::offers`], in the
    /// pool's order) with each one's probability of taking the click;
    /// empty when the click would go to the fallback.
    pub offers: Vec<(usize, f64)>,
    /// An override decides (its offer has probability 1).
    pub overridden: bool,
    /// For `auto`: the position in `offers` of the offer with the best
    /// posterior-mean score.
    pub best: Option<usize>,
    /// Why no offer would take it.
    pub fallback: Option<FallbackReason>,
}

/// The routing policy for a visitor on smartlink `sl` at `now_ms`: the same
/// eligibility as [`decide`] (status, targeting, caps reached), then the
/// first matching override, else the strategy's distribution (`auto`: the
/// router's current Thompson policy for the visitor's segment, see
/// [`crate::router::RouterState::probabilities`]). Reserves nothing and
/// learns nothing.
pub fn policy(cat: &Catalog, sl: &Smartlink, visitor: &Visitor, now_ms: i64, rng: &mut dyn RngCore) -> Policy {
    let mut clock = Clock::new(now_ms);
    let utc = clock.at(chrono_tz::UTC);
    let mut slots = Vec::new();
    let mut cands = Vec::new();
    let tally = eligible(cat, sl, visitor, &mut clock, |slot, c| {
        slots.push(slot);
        cands.push(c);
    });
    let out = |probs: Vec<f64>, overridden: bool, best: Option<usize>| Policy {
        offers: slots.iter().zip(probs).map(|(&s, p)| (sl.offers[s], p)).collect(),
        overridden,
        best,
        fallback: None,
    };
    if slots.is_empty() {
        return Policy { offers: Vec::new(), overridden: false, best: None, fallback: Some(tally.fallback(sl)) };
    }
    if let Some(ov) = sl.overrides.iter().find(|ov| ov.matches(&visitor.segment) && slots.contains(&ov.offer)) {
        return out(slots.iter().map(|&s| if s == ov.offer { 1.0 } else { 0.0 }).collect(), true, None);
    }
    match &sl.strategy {
        Strategy::Auto => {
            let ctx = Context { segment: visitor.segment, hour: utc.hour, now_ms };
            let (probs, best) = sl.router.lock().probabilities(&cands, &ctx, rng);
            out(probs, false, Some(best))
        }
        Strategy::Weighted(weights) => {
            let w = |s: usize| weights.get(s).copied().unwrap_or(0.0).max(0.0);
            let total: f64 = slots.iter().map(|&s| w(s)).sum();
            let n = slots.len() as f64;
            out(slots.iter().map(|&s| if total > 0.0 { w(s) / total } else { 1.0 / n }).collect(), false, None)
        }
        Strategy::Priority => out((0..slots.len()).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect(), false, None),
    }
}

/// What applying a conversion did to the offer's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConversionEffect {
    /// The offer was already at a conversion or budget cap.
    pub over_cap: bool,
}

/// Feeds a conversion status change into the offer's counters and the
/// smartlink's router. `previous` is the conversion's status before this
/// change (`None` for a new conversion); `payout_base` is its payout in the
/// base currency; `now_ms` is when the postback arrived.
pub fn apply_conversion(
    cat: &Catalog,
    facts: &ClickFacts,
    now_ms: i64,
    previous: Option<ConversionStatus>,
    status: ConversionStatus,
    payout_base: f64,
) -> ConversionEffect {
    let Some(offer) = facts.offer.and_then(|k| cat.offer_by_key(k)) else {
        return ConversionEffect { over_cap: false };
    };
    let day = local(offer.targeting.timezone, now_ms).day;
    let mut over_cap = false;
    if status == ConversionStatus::Approved && previous != Some(ConversionStatus::Approved) {
        over_cap = offer.counters.add_conversion(&offer.caps, day, payout_base);
    } else if previous == Some(ConversionStatus::Approved) && status != ConversionStatus::Approved {
        offer.counters.remove_conversion(day, payout_base);
    }
    // A conversion from a bot or preview click still counts toward the
    // offer's conversion caps (the advertiser counts it), but the router
    // never saw the click as exposure and must not learn from it either.
    // A direct link routes nothing: it has nothing to learn.
    let learner = cat.smartlink_by_key(facts.smartlink).filter(|sl| !sl.is_direct());
    if let Some(sl) = learner.filter(|_| Quality::flags_count(facts.flags)) {
        let click_ms = facts.time_secs as i64 * 1000;
        sl.router.lock().on_conversion(offer.key, facts.segment, click_ms, now_ms, previous, status);
    }
    ConversionEffect { over_cap }
}

/// A fixed-capacity vector of slots that spills to the heap past 64.
mod smallvec_lite {
    pub struct Vec64 {
        inline: [usize; super::INLINE],
        len: usize,
        heap: Vec<usize>,
    }
    impl Vec64 {
        pub fn new() -> Vec64 {
            Vec64 { inline: [0; super::INLINE], len: 0, heap: Vec::new() }
        }
        pub fn push(&mut self, v: usize) {
            if self.len < super::INLINE {
                self.inline[self.len] = v;
            } else {
                if self.heap.is_empty() {
                    self.heap.extend_from_slice(&self.inline);
                }
                self.heap.push(v);
            }
            self.len += 1;
        }
        pub fn as_mut_slice(&mut self) -> &mut [usize] {
            if self.len <= super::INLINE {
                &mut self.inline[..self.len]
            } else {
                &mut self.heap[..]
            }
        }
    }
}
