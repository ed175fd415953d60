//! The simulation proper: one shared click stream, and for each strategy its
//! own world (caps, conversions in flight, RNG streams, learned state)
//! played forward in time order — events, postbacks and clicks.
//!
//! Scoring follows FORMAT.md: a strategy's `expected_revenue` is the sum of
//! the true expected value of the offer it chose; `revenue` what was paid.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

use rand::{Rng, RngCore, SeedableRng};
use rand_pcg::Pcg64;
use smartlink_core::caps::OfferCounters;
use smartlink_core::clickid::{ClickFacts, ClickIdCodec};
use smartlink_core::engine::{apply_conversion, decide, ClickInput, Outcome};
use smartlink_core::model::{self, Browser, Catalog, Currency, Id, Segment, Status};
use smartlink_core::router::{ConversionStatus, SharedRouter};
use smartlink_core::targeting::{CountrySet, Targeting, Visitor};
use smartlink_core::template::{MacroSet, Template};

use crate::scenario::{DailyCap, EventAction, OfferSpec, Scenario};
use crate::SimError;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 86_400_000;

/// A routing strategy the simulator can score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Greedy with knowledge of the true rates.
    Oracle,
    /// The production router, driven through `engine::decide`.
    Smartlink,
    /// Uniform among eligible offers.
    Random,
    /// Cycles through eligible offers, one cursor per segment.
    RoundRobin,
    /// Highest trailing-24 h EPC per segment, after 100 clicks per offer.
    GreedyEpc,
}

impl Strategy {
    /// Every strategy, in the order results are reported.
    pub const ALL: [Strategy; 5] =
        [Strategy::Oracle, Strategy::Smartlink, Strategy::Random, Strategy::RoundRobin, Strategy::GreedyEpc];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Oracle => "oracle",
            Strategy::Smartlink => "smartlink",
            Strategy::Random => "random",
            Strategy::RoundRobin => "round_robin",
            Strategy::GreedyEpc => "greedy_epc",
        }
    }

    pub fn parse(s: &str) -> Result<Strategy, SimError> {
        Strategy::ALL.into_iter().find(|k| k.name() == s.trim()).ok_or_else(|| SimError::UnknownStrategy(s.to_string()))
    }

    /// Parses `a,b,c` (as given to `--strategies`).
    pub fn parse_list(s: &str) -> Result<Vec<Strategy>, SimError> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(Strategy::parse).collect()
    }
}

/// One simulated hour of one strategy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HourStats {
    /// Sum of the true expected value of the chosen offers.
    pub expected: f64,
    /// Clicks sent to each offer (pool order, added offers included).
    pub offer_clicks: Vec<u32>,
}

/// The outcome of one strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyResult {
    pub strategy: Strategy,
    pub expected_revenue: f64,
    pub revenue: f64,
    /// Approved conversions.
    pub conversions: u64,
    /// Conversions not approved.
    pub rejected: u64,
    /// `expected_revenue` over the oracle's.
    pub oracle_ratio: f64,
    /// Clicks no offer accepted.
    pub fallback_clicks: u64,
    /// Clicks on which the engine's eligibility disagreed with the
    /// simulator's (always 0 unless there is a bug; `smartlink` only).
    pub engine_mismatches: u64,
    pub hourly: Vec<HourStats>,
}

/// An event as drawn on the report's time axis.
#[derive(Clone, Debug, PartialEq)]
pub struct EventMark {
    pub at_hour: u32,
    pub label: String,
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    pub scenario: String,
    pub seed: u64,
    pub clicks: u64,
    pub start_ms: i64,
    pub duration_hours: u32,
    /// Offer ids in pool order (added offers last, in the order they join).
    pub offers: Vec<String>,
    pub events: Vec<EventMark>,
    /// The oracle first, then the requested strategies.
    pub results: Vec<StrategyResult>,
}

impl SimReport {
    pub fn result(&self, s: Strategy) -> Option<&StrategyResult> {
        self.results.iter().find(|r| r.strategy == s)
    }
}

/// One click of the shared stream.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Click {
    ms: i64,
    seg: u16,
}

/// A 64-bit FNV-1a of a label, to derive independent seeds.
fn tag(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn stream(seed: u64, label: &str) -> Pcg64 {
    Pcg64::seed_from_u64(seed ^ tag(label))
}

/// The shared click stream: Poisson arrivals whose rate is
/// `clicks_per_hour × hourly_profile[UTC hour]`, piecewise constant per
/// UTC hour, and a segment drawn from the mix for each click. `None` once
/// `stop` is set (looked at once an hour of clicks).
fn click_stream(sc: &Scenario, seed: u64, stop: &AtomicBool) -> Option<Vec<Click>> {
    let mut rng = stream(seed, "clicks");
    let cum: Vec<f64> = sc
        .traffic
        .segments
        .iter()
        .scan(0.0, |acc, s| {
            *acc += s.1;
            Some(*acc)
        })
        .collect();
    let end = sc.start_ms + sc.duration_hours as i64 * MS_PER_HOUR;
    let expected = sc.traffic.clicks_per_hour * sc.duration_hours as f64;
    let mut out = Vec::with_capacity((expected * 1.05) as usize + 16);
    let mut piece = sc.start_ms;
    while piece < end {
        if stop.load(AtomicOrdering::Relaxed) {
            return None;
        }
        let next = ((piece.div_euclid(MS_PER_HOUR) + 1) * MS_PER_HOUR).min(end);
        let hour = piece.div_euclid(MS_PER_HOUR).rem_euclid(24) as usize;
        let rate = sc.traffic.clicks_per_hour * sc.traffic.hourly_profile[hour] / MS_PER_HOUR as f64;
        if rate > 0.0 {
            let mut t = piece as f64;
            loop {
                t += rng.sample::<f64, _>(rand_distr::Exp1) / rate;
                if t >= next as f64 {
                    break;
                }
                let u: f64 = rng.random();
                let seg = cum.partition_point(|&c| c <= u).min(cum.len() - 1);
                out.push(Click { ms: t as i64, seg: seg as u16 });
            }
        }
        piece = next;
    }
    Some(out)
}

/// Read-only tables shared by every strategy.
struct Prepared<'a> {
    sc: &'a Scenario,
    /// Initial offers, then added offers in the order they join.
    offers: Vec<&'a OfferSpec>,
    segments: Vec<Segment>,
    /// `base_cr[o][s]`: the true rate before hour and multiplier.
    base_cr: Vec<Vec<f64>>,
    accepts: Vec<Vec<bool>>,
    hour_mask: Vec<u32>,
    /// Events with their time and, for `add_offer`, the new offer's index.
    events: Vec<(i64, &'a EventAction, Option<usize>)>,
    delay_mean_ms: f64,
}

impl<'a> Prepared<'a> {
    fn new(sc: &'a Scenario) -> Prepared<'a> {
        let mut offers: Vec<&OfferSpec> = sc.offers.iter().collect();
        let mut events = Vec::new();
        for e in &sc.events {
            let at = sc.start_ms + e.at_hour as i64 * MS_PER_HOUR;
            let added = match &e.action {
                EventAction::AddOffer(spec) => {
                    offers.push(spec);
                    Some(offers.len() - 1)
                }
                EventAction::Change { .. } => None,
            };
            events.push((at, &e.action, added));
        }
        let segments: Vec<Segment> = sc.traffic.segments.iter().map(|s| s.0).collect();
        let base_cr = offers.iter().map(|o| segments.iter().map(|s| o.cr_for(s)).collect()).collect();
        let accepts = offers.iter().map(|o| segments.iter().map(|s| o.targeting.accepts(s)).collect()).collect();
        let hour_mask = offers.iter().map(|o| o.targeting.hour_mask()).collect();
        Prepared {
            sc,
            offers,
            segments,
            base_cr,
            accepts,
            hour_mask,
            events,
            delay_mean_ms: sc.delay_mean_minutes * 60_000.0,
        }
    }

    fn index_of(&self, id: &str) -> usize {
        // Validation guarantees the id exists by the time the event applies.
        self.offers.iter().position(|o| o.id == id).unwrap_or(0)
    }
}

/// An offer as one strategy's world currently has it.
#[derive(Clone, Debug)]
struct OfferRt {
    present: bool,
    status: Status,
    payout: f64,
    cap: DailyCap,
    cr_mult: f64,
    day: i64,
    clicks: u64,
    convs: u64,
}

impl OfferRt {
    fn roll(&mut self, day: i64) {
        if self.day != day {
            self.day = day;
            self.clicks = 0;
            self.convs = 0;
        }
    }

    fn capped(&self) -> bool {
        self.cap.clicks.is_some_and(|c| self.clicks >= c) || self.cap.conversions.is_some_and(|c| self.convs >= c)
    }
}

/// A conversion in flight.
#[derive(Clone, Copy, Debug)]
struct Postback {
    arrival: i64,
    seq: u64,
    offer: usize,
    seg: u16,
    approved: bool,
    /// The payout in force at the click.
    payout: f64,
    facts: Option<ClickFacts>,
}

impl PartialEq for Postback {
    fn eq(&self, o: &Self) -> bool {
        (self.arrival, self.seq) == (o.arrival, o.seq)
    }
}
impl Eq for Postback {}
impl PartialOrd for Postback {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Postback {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.arrival, o.seq).cmp(&(self.arrival, self.seq))
    }
}

/// The trailing-24 h window of one (segment, offer) for `greedy_epc`.
#[derive(Clone, Debug, Default)]
struct Window {
    /// (click ms, click seq, revenue credited in micros), oldest first.
    clicks: VecDeque<(i64, u64, i64)>,
    revenue: i64,
}

impl Window {
    fn evict(&mut self, before: i64) {
        while let Some(&(t, _, r)) = self.clicks.front() {
            if t > before {
                break;
            }
            self.revenue -= r;
            self.clicks.pop_front();
        }
    }
}

/// The strategy-specific part of a world.
enum Agent {
    Oracle,
    Random,
    RoundRobin { last: Vec<Option<usize>> },
    GreedyEpc { windows: Vec<Window>, offers: usize },
    Smartlink(Box<SmartlinkAgent>),
}

struct SmartlinkAgent {
    catalog: Catalog,
    codec: ClickIdCodec,
    facts: Option<ClickFacts>,
}

fn micros(v: f64) -> i64 {
    (v * 1e6).round() as i64
}

/// The simulator's catalog: what an operator would configure, built as the
/// server builds it. `prev` carries live counters and router state over.
fn build_catalog(prep: &Prepared, rt: &[OfferRt], prev: Option<&Catalog>) -> Catalog {
    let mut offers = Vec::new();
    for (i, (spec, o)) in prep.offers.iter().zip(rt).enumerate() {
        if !o.present {
            break;
        }
        let t = &spec.targeting;
        let targeting = Targeting {
            countries: t.countries.as_ref().map(|c| CountrySet::from_iter(c.iter().copied())),
            devices: t.devices.as_ref().map_or(u8::MAX, |d| Targeting::device_mask(d)),
            os: t.os.as_ref().map_or(u8::MAX, |o| Targeting::os_mask(o)),
            hours: t.hour_mask(),
            ..Default::default()
        };
        offers.push(model::Offer {
            key: i as u32 + 1,
            id: Id::parse(&spec.id).unwrap_or_else(|_| Id::parse("offer").expect("valid id")),
            advertiser: Id::parse("sim").expect("valid id"),
            url: Template::parse("https://offer.example/{click_id}", MacroSet::Redirect).expect("valid template"),
            payout: o.payout,
            currency: Currency::USD,
            payout_base: o.payout,
            targeting,
            caps: model::Caps { daily_clicks: o.cap.clicks, daily_conversions: o.cap.conversions, daily_budget: None },
            status: o.status,
            attribution_window_secs: 30 * 86_400,
            min_ctit_secs: 0,
            counters: Arc::new(OfferCounters::default()),
        });
    }
    let n = offers.len();
    let smartlink = model::Smartlink {
        key: 1,
        slug: Id::parse("sim").expect("valid id"),
        affiliate: None,
        offers: (0..n).collect(),
        fallback_url: Some(
            Template::parse("https://fallback.example/{click_id}", MacroSet::Redirect).expect("valid template"),
        ),
        fallback_link: None,
        source: None,
        cost_model: None,
        cost_rate: 1.0,
        overrides: Vec::new(),
        strategy: model::Strategy::Auto,
        quality: Default::default(),
        router: Arc::new(SharedRouter::default()),
    };
    let mut cat = Catalog::new(offers, vec![smartlink], Vec::new());
    if let Some(prev) = prev {
        cat.inherit_state(prev);
    }
    cat
}

impl Agent {
    fn new(s: Strategy, prep: &Prepared, rt: &[OfferRt]) -> Agent {
        match s {
            Strategy::Oracle => Agent::Oracle,
            Strategy::Random => Agent::Random,
            Strategy::RoundRobin => Agent::RoundRobin { last: vec![None; prep.segments.len()] },
            Strategy::GreedyEpc => Agent::GreedyEpc {
                windows: vec![Window::default(); prep.segments.len() * prep.offers.len()],
                offers: prep.offers.len(),
            },
            Strategy::Smartlink => Agent::Smartlink(Box::new(SmartlinkAgent {
                catalog: build_catalog(prep, rt, None),
                codec: ClickIdCodec::new(b"smartlink-simulator-fixed-secret"),
                facts: None,
            })),
        }
    }

    /// An announced change: the smartlink strategy rebuilds its catalog.
    fn config_changed(&mut self, prep: &Prepared, rt: &[OfferRt]) {
        if let Agent::Smartlink(a) = self {
            let next = build_catalog(prep, rt, Some(&a.catalog));
            a.catalog = next;
        }
    }

    /// Chooses among `eligible` (ascending offer indices, non-empty unless
    /// the click goes to the fallback). Returns `None` for the fallback and
    /// counts disagreements with the engine in `mismatch`.
    #[allow(clippy::too_many_arguments)]
    fn choose(
        &mut self,
        click: &Click,
        seg: Segment,
        eligible: &[usize],
        ev: &[f64],
        rng: &mut Pcg64,
        mismatch: &mut u64,
    ) -> Option<usize> {
        match self {
            Agent::Oracle => {
                let mut best: Option<usize> = None;
                for &o in eligible {
                    if best.is_none_or(|b| ev[o] > ev[b]) {
                        best = Some(o);
                    }
                }
                best
            }
            Agent::Random => (!eligible.is_empty()).then(|| eligible[rng.random_range(0..eligible.len())]),
            Agent::RoundRobin { last } => {
                let first = *eligible.first()?;
                let cursor = &mut last[click.seg as usize];
                let pick = match *cursor {
                    Some(l) => eligible.iter().copied().find(|&o| o > l).unwrap_or(first),
                    None => first,
                };
                *cursor = Some(pick);
                Some(pick)
            }
            Agent::GreedyEpc { windows, offers } => {
                let base = click.seg as usize * *offers;
                let before = click.ms - 24 * MS_PER_HOUR;
                let mut explore: Option<(usize, usize)> = None;
                let mut best: Option<(usize, f64)> = None;
                for &o in eligible {
                    let w = &mut windows[base + o];
                    w.evict(before);
                    let n = w.clicks.len();
                    if n < 100 {
                        if explore.is_none_or(|(_, m)| n < m) {
                            explore = Some((o, n));
                        }
                    } else {
                        let epc = w.revenue as f64 / n as f64;
                        if best.is_none_or(|(_, b)| epc > b) {
                            best = Some((o, epc));
                        }
                    }
                }
                explore.map(|e| e.0).or(best.map(|b| b.0))
            }
            Agent::Smartlink(a) => {
                let sl = &a.catalog.smartlinks[0];
                let input = ClickInput {
                    now_ms: click.ms,
                    visitor: Visitor { segment: seg, browser: Browser::Other, language: None },
                    subs: [""; 5],
                    aff: None,
                    source: None,
                    counted: true,
                    flags: 0,
                };
                let d = decide(&a.catalog, sl, &input, &a.codec, rng as &mut dyn RngCore);
                a.facts = Some(d.facts);
                match d.outcome {
                    Outcome::Offer(i) => {
                        if eligible.binary_search(&i).is_err() {
                            *mismatch += 1;
                        }
                        Some(i)
                    }
                    Outcome::Fallback(_) => {
                        if !eligible.is_empty() {
                            *mismatch += 1;
                        }
                        None
                    }
                }
            }
        }
    }

    /// Remembers what a strategy needs about its own click.
    fn clicked(&mut self, click: &Click, seq: u64, offer: usize) {
        if let Agent::GreedyEpc { windows, offers } = self {
            windows[click.seg as usize * *offers + offer].clicks.push_back((click.ms, seq, 0));
        }
    }

    fn postback(&mut self, pb: &Postback, click_seq: u64) {
        match self {
            Agent::GreedyEpc { windows, offers } => {
                if !pb.approved {
                    return;
                }
                let w = &mut windows[pb.seg as usize * *offers + pb.offer];
                if let Ok(i) = w.clicks.binary_search_by_key(&click_seq, |c| c.1) {
                    let r = micros(pb.payout);
                    w.clicks[i].2 += r;
                    w.revenue += r;
                }
            }
            Agent::Smartlink(a) => {
                if let Some(facts) = &pb.facts {
                    let status = if pb.approved { ConversionStatus::Approved } else { ConversionStatus::Rejected };
                    apply_conversion(&a.catalog, facts, pb.arrival, None, status, pb.payout);
                }
            }
            _ => {}
        }
    }

    fn take_facts(&mut self) -> Option<ClickFacts> {
        match self {
            Agent::Smartlink(a) => a.facts.take(),
            _ => None,
        }
    }
}

/// How many clicks a strategy plays between looks at the stop flag: the
/// flag costs one relaxed load per this many clicks.
const STOP_CHECK_CLICKS: usize = 4096;

/// Plays one strategy over the click stream; `None` once `stop` is set.
fn play(prep: &Prepared, clicks: &[Click], strategy: Strategy, seed: u64, stop: &AtomicBool) -> Option<StrategyResult> {
    let sc = prep.sc;
    let mut policy_rng = stream(seed, &format!("{}/policy", strategy.name()));
    let mut world_rng = stream(seed, &format!("{}/outcomes", strategy.name()));
    let n_offers = prep.offers.len();
    let mut rt: Vec<OfferRt> = prep
        .offers
        .iter()
        .enumerate()
        .map(|(i, o)| OfferRt {
            present: i < sc.offers.len(),
            status: o.status,
            payout: o.payout,
            cap: o.daily_cap,
            cr_mult: 1.0,
            day: i64::MIN,
            clicks: 0,
            convs: 0,
        })
        .collect();
    let mut agent = Agent::new(strategy, prep, &rt);
    let hours = sc.duration_hours as usize;
    let mut hourly = vec![HourStats { expected: 0.0, offer_clicks: vec![0; n_offers] }; hours];
    let mut heap: BinaryHeap<Postback> = BinaryHeap::new();
    // Postback seq -> click seq, for greedy_epc's crediting.
    let mut next_event = 0usize;
    let mut res = StrategyResult {
        strategy,
        expected_revenue: 0.0,
        revenue: 0.0,
        conversions: 0,
        rejected: 0,
        oracle_ratio: 0.0,
        fallback_clicks: 0,
        engine_mismatches: 0,
        hourly: Vec::new(),
    };
    let mut eligible: Vec<usize> = Vec::with_capacity(n_offers);
    let mut ev = vec![0.0; n_offers];
    let mut cr = vec![0.0; n_offers];

    let deliver = |pb: Postback, rt: &mut [OfferRt], agent: &mut Agent, res: &mut StrategyResult| {
        if pb.approved {
            res.revenue += pb.payout;
            res.conversions += 1;
            let o = &mut rt[pb.offer];
            o.roll(pb.arrival.div_euclid(MS_PER_DAY));
            o.convs += 1;
        } else {
            res.rejected += 1;
        }
        agent.postback(&pb, pb.seq);
    };

    for (seq, click) in clicks.iter().enumerate() {
        if seq % STOP_CHECK_CLICKS == 0 && stop.load(AtomicOrdering::Relaxed) {
            return None;
        }
        // Everything due before this click, in time order (postbacks before
        // an event at the same instant).
        loop {
            let pb_t = heap.peek().map(|p| p.arrival).filter(|&t| t <= click.ms);
            let ev_t = prep.events.get(next_event).map(|e| e.0).filter(|&t| t <= click.ms);
            match (pb_t, ev_t) {
                (Some(p), e) if e.is_none_or(|e| p <= e) => {
                    let pb = heap.pop().expect("peeked");
                    deliver(pb, &mut rt, &mut agent, &mut res);
                }
                (_, Some(_)) => {
                    let (_, action, added) = prep.events[next_event];
                    next_event += 1;
                    apply_event(prep, &mut rt, action, added);
                    if action.announced() {
                        agent.config_changed(prep, &rt);
                    }
                }
                _ => break,
            }
        }

        let seg = prep.segments[click.seg as usize];
        let hour = click.ms.div_euclid(MS_PER_HOUR).rem_euclid(24) as usize;
        let day = click.ms.div_euclid(MS_PER_DAY);
        eligible.clear();
        for (o, r) in rt.iter_mut().enumerate() {
            ev[o] = 0.0;
            if !r.present
                || r.status != Status::Active
                || !prep.accepts[o][click.seg as usize]
                || prep.hour_mask[o] & (1 << hour) == 0
            {
                continue;
            }
            r.roll(day);
            if r.capped() {
                continue;
            }
            let spec = prep.offers[o];
            cr[o] = (prep.base_cr[o][click.seg as usize] * spec.cr_by_hour[hour] * r.cr_mult).min(1.0);
            ev[o] = cr[o] * spec.approval_rate * r.payout;
            eligible.push(o);
        }

        let chosen = agent.choose(click, seg, &eligible, &ev, &mut policy_rng, &mut res.engine_mismatches);
        let facts = agent.take_facts();
        let h = (((click.ms - sc.start_ms) / MS_PER_HOUR) as usize).min(hours - 1);
        let Some(o) = chosen else {
            res.fallback_clicks += 1;
            continue;
        };
        res.expected_revenue += ev[o];
        hourly[h].expected += ev[o];
        hourly[h].offer_clicks[o] += 1;
        rt[o].roll(day);
        rt[o].clicks += 1;
        agent.clicked(click, seq as u64, o);

        let u: f64 = world_rng.random();
        let approve: f64 = world_rng.random();
        let delay: f64 = world_rng.sample(rand_distr::Exp1);
        if u < cr[o] {
            let pb = Postback {
                arrival: click.ms + (delay * prep.delay_mean_ms).round() as i64,
                seq: seq as u64,
                offer: o,
                seg: click.seg,
                approved: approve < prep.offers[o].approval_rate,
                payout: rt[o].payout,
                facts,
            };
            if pb.arrival <= click.ms {
                deliver(pb, &mut rt, &mut agent, &mut res);
            } else {
                heap.push(pb);
            }
        }
    }
    // Conversions still in flight arrive after the end: they are paid.
    while let Some(pb) = heap.pop() {
        if pb.approved {
            res.revenue += pb.payout;
            res.conversions += 1;
        } else {
            res.rejected += 1;
        }
    }
    res.hourly = hourly;
    Some(res)
}

fn apply_event(prep: &Prepared, rt: &mut [OfferRt], action: &EventAction, added: Option<usize>) {
    match action {
        EventAction::AddOffer(_) => {
            if let Some(i) = added {
                rt[i].present = true;
            }
        }
        EventAction::Change { offer, payout, status, cr_multiplier, daily_cap } => {
            let o = &mut rt[prep.index_of(offer)];
            if let Some(p) = payout {
                o.payout = *p;
            }
            if let Some(s) = status {
                o.status = *s;
            }
            if let Some(m) = cr_multiplier {
                o.cr_mult *= m;
            }
            if let Some(c) = daily_cap {
                o.cap = *c;
            }
        }
    }
}

fn event_label(action: &EventAction) -> String {
    match action {
        EventAction::AddOffer(spec) => format!("{} joins", spec.id),
        EventAction::Change { offer, payout, status, cr_multiplier, daily_cap } => {
            let mut parts = Vec::new();
            if let Some(p) = payout {
                parts.push(format!("payout {p}"));
            }
            if let Some(s) = status {
                parts.push(if *s == Status::Active { "resumed".into() } else { "paused".into() });
            }
            if let Some(m) = cr_multiplier {
                parts.push(format!("CR ×{m} (silent)"));
            }
            if let Some(c) = daily_cap {
                let mut cap = Vec::new();
                if let Some(v) = c.conversions {
                    cap.push(format!("{v} conv"));
                }
                if let Some(v) = c.clicks {
                    cap.push(format!("{v} clicks"));
                }
                parts.push(if cap.is_empty() { "cap removed".into() } else { format!("cap {}", cap.join(", ")) });
            }
            format!("{offer}: {}", parts.join(", "))
        }
    }
}

/// Runs `strategies` (the oracle always runs, and comes first) on the
/// scenario's click stream for `seed`. Strategies run in parallel on up to
/// two threads; each has its own RNG streams, so the result does not depend
/// on which others run.
pub fn run(sc: &Scenario, seed: u64, strategies: &[Strategy]) -> SimReport {
    run_until(sc, seed, strategies, &AtomicBool::new(false)).expect("a run nobody stops ends")
}

/// [`run`], given up as soon as `stop` is set (each strategy looks at it
/// every few thousand clicks): `None` then. For callers that bound a
/// run's time (the server's `POST /api/v1/simulations`); what a run that
/// ends returns does not depend on the flag.
pub fn run_until(sc: &Scenario, seed: u64, strategies: &[Strategy], stop: &AtomicBool) -> Option<SimReport> {
    let prep = Prepared::new(sc);
    let clicks = click_stream(sc, seed, stop)?;
    let mut list = vec![Strategy::Oracle];
    for &s in strategies {
        if !list.contains(&s) {
            list.push(s);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 2).min(list.len());
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<StrategyResult>> = vec![None; list.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                        if i >= list.len() {
                            break;
                        }
                        match play(&prep, &clicks, list[i], seed, stop) {
                            Some(r) => done.push((i, r)),
                            None => break,
                        }
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("a strategy thread panicked") {
                slots[i] = Some(r);
            }
        }
    });
    // A strategy missing was stopped.
    let mut results: Vec<StrategyResult> = slots.into_iter().collect::<Option<_>>()?;
    let oracle = results[0].expected_revenue;
    for r in &mut results {
        r.oracle_ratio = if oracle > 0.0 { r.expected_revenue / oracle } else { 1.0 };
    }
    Some(SimReport {
        scenario: sc.name.clone(),
        seed,
        clicks: clicks.len() as u64,
        start_ms: sc.start_ms,
        duration_hours: sc.duration_hours,
        offers: prep.offers.iter().map(|o| o.id.clone()).collect(),
        events: sc.events.iter().map(|e| EventMark { at_hour: e.at_hour, label: event_label(&e.action) }).collect(),
        results,
    })
}
