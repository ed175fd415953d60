//! "Why did EPC drop?": splits the change of a smartlink's blended EPC
//! between a baseline period A and a current period B into five parts that
//! add up to the whole change.
//!
//! # Model
//!
//! Clicks are grouped into cells (segment s, offer o; the fallback counts as
//! an offer). The blended EPC of a period is
//!
//! ```text
//! EPC = Σ_s w_s Σ_o q_{s,o} · v_{s,o} · c_{s,o} · a_{s,o}
//! ```
//!
//! with w = the segment's share of all clicks, q = the share of the
//! segment's clicks routed to the offer, v = revenue per approved
//! conversion, c = conversions (any status) per click and a = approved per
//! conversion. For a cell with clicks and approvals the product telescopes to
//! revenue / clicks of the period, so the model reproduces the real EPC.
//!
//! # Parts
//!
//! Each factor is one part: w → `traffic_mix`, q → `offer_pool`,
//! v → `payout`, c → `conversion_rate`, a → `approval`. Every cell's term is
//! a product of these five numbers, and each part is the Shapley value of
//! its factor: the change in the term when the factor moves from its A value
//! to its B value, averaged over all 5! orders in which the five factors can
//! be moved. In closed form, over the 16 subsets S of the other four factors
//! (already at their B values, the rest at A):
//!
//! ```text
//! φ_k = Σ_S |S|!·(4−|S|)!/5! · (f(S ∪ {k}) − f(S))
//! ```
//!
//! Every single order telescopes from f(nothing moved) = term_A to
//! f(everything moved) = term_B, so each order's five steps sum to
//! term_B − term_A, and so does their average: the parts add up to the
//! change exactly (up to floating-point rounding). Summing cells keeps that,
//! because the Shapley value is linear in the game. The method is symmetric:
//! swapping A and B negates every part, and no factor's order matters.
//!
//! # Undefined rates
//!
//! A rate a period's data does not define is borrowed from the other period
//! (0 when neither defines it), so an unchanged-by-definition factor adds
//! nothing to its part:
//!
//! * a cell without clicks in a period (an offer paused, capped, removed or
//!   added) has q = 0 there and takes c, a and v from the other period, so its
//!   appearance or disappearance is `offer_pool` (and `traffic_mix` as far as
//!   its segment's share moved too);
//! * a segment without clicks in a period has w = 0 and takes its cells' q
//!   (and rates) from the other period: it is all `traffic_mix`. A period
//!   with no clicks at all has EPC 0 and every w = 0, so going from or to no
//!   traffic is `traffic_mix`;
//! * zero conversions leave a undefined, zero approvals leave v undefined:
//!   both are borrowed. Conversions are taken as at least `approved`.
//!
//! Revenue the product cannot carry (revenue booked in a cell with no clicks
//! in the period, e.g. late conversions of earlier clicks; revenue in a cell
//! with no approved conversions) is added as it is, revenue / clicks of the
//! period: to `conversion_rate` for the former and `payout` for the latter.
//! That keeps the parts summing to the real EPC change.
//!
//! # Output
//!
//! [`explain`] returns the totals of both periods, the change, the five parts
//! (which sum to the change; numbers are rounded to 6 decimals only in the
//! output), the largest contributors with a sentence each (per segment for
//! `traffic_mix`, per offer for the others; an offer's [`OfferEvent`]s are
//! quoted with their UTC time), and a one-line summary. Money texts carry a
//! sign (`+` or a real minus `−`), `$` and 2 decimals; amounts that round to
//! zero cents read `−<$0.01` / `+<$0.01`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

/// Clicks and outcomes of one (segment, offer) cell in one period.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cell {
    /// Segment label, e.g. `US/mobile`.
    pub segment: String,
    /// The offer key; `None` is the fallback.
    pub offer: Option<String>,
    pub clicks: u64,
    /// Conversions of any status: approved + pending + rejected + chargebacks.
    pub conversions: u64,
    pub approved: u64,
    /// Approved revenue, base currency.
    pub revenue: f64,
}

/// One thing that happened to an offer in the current period, for the plain-words text
/// (from the change history / status); may be empty.
#[derive(Clone, Debug, PartialEq)]
pub struct OfferEvent {
    pub offer: String,
    pub ts_ms: i64,
    /// What happened, e.g. `paused`, `payout 2.00 → 1.50`, `capped`.
    pub what: String,
}

/// The parts, in output order (also the factor order of the model).
pub const PARTS: [&str; 5] = ["traffic_mix", "offer_pool", "payout", "conversion_rate", "approval"];
/// The parts in words, for the summary.
const PART_WORDS: [&str; 5] = ["traffic mix", "offer pool", "payout", "conversion rate", "approval"];
const TRAFFIC_MIX: usize = 0;
const OFFER_POOL: usize = 1;
const PAYOUT: usize = 2;
const CONVERSION_RATE: usize = 3;
const APPROVAL: usize = 4;
/// How many contributors the output lists.
pub const MAX_CONTRIBUTORS: usize = 10;
/// Contributions smaller than this print as 0 at 6 decimals and are not listed.
const NEGLIGIBLE: f64 = 5e-7;
/// Events quoted per contributor (the latest ones).
const MAX_EVENTS: usize = 3;
const MINUS: char = '\u{2212}';

/// Explains the change of blended EPC from `baseline` to `current` (see the
/// module documentation for the method and the JSON shape). Cells may repeat
/// a (segment, offer) pair; repeats are summed.
pub fn explain(baseline: &[Cell], current: &[Cell], events: &[OfferEvent]) -> Value {
    let (a, b) = (Period::new(baseline), Period::new(current));
    let d = decompose(&a, &b);
    let change = d.epc[1] - d.epc[0];

    // Segments each offer has cells in, over both periods.
    let mut offer_segments: BTreeMap<&Option<String>, BTreeSet<&str>> = BTreeMap::new();
    for (seg, offer) in a.cells.keys().chain(b.cells.keys()) {
        offer_segments.entry(offer).or_default().insert(seg);
    }

    let mut ranked: Vec<(&(usize, Subject), f64)> =
        d.by_subject.iter().map(|(k, &v)| (k, v)).filter(|(_, v)| v.abs() >= NEGLIGIBLE).collect();
    ranked.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()).then_with(|| x.0.cmp(y.0)));
    ranked.truncate(MAX_CONTRIBUTORS);
    let texts: Vec<String> =
        ranked.iter().map(|((part, subject), x)| describe(*part, subject, *x, &a, &b, events)).collect();
    let contributors: Vec<Value> = ranked
        .iter()
        .zip(&texts)
        .map(|(((part, subject), x), text)| {
            let (offer, segment) = match subject {
                Subject::Segment(s) => (None, Some(s.clone())),
                Subject::Offer(o) => {
                    let segs = offer_segments.get(o);
                    let only = segs.filter(|s| s.len() == 1).and_then(|s| s.first()).map(|s| s.to_string());
                    (o.clone(), only)
                }
            };
            json!({
                "part": PARTS[*part],
                "offer": offer,
                "segment": segment,
                "epc_change": round6(*x),
                "text": text,
            })
        })
        .collect();

    let mut parts = serde_json::Map::new();
    for (name, x) in PARTS.iter().zip(d.parts) {
        parts.insert(name.to_string(), json!(round6(x)));
    }
    json!({
        "baseline": a.json(),
        "current": b.json(),
        "change": round6(change),
        "parts": parts,
        "contributors": contributors,
        "summary": summary(&a, &b, &d, texts.first().map(String::as_str)),
    })
}

/// Counts of a cell, segment, offer or period.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Totals {
    clicks: u64,
    conversions: u64,
    approved: u64,
    revenue: f64,
}

impl Totals {
    fn add(&mut self, c: &Cell) {
        self.clicks += c.clicks;
        self.conversions += c.conversions;
        self.approved += c.approved;
        self.revenue += c.revenue;
    }

    /// Conversions of any status, at least the approved ones.
    fn conversions(&self) -> u64 {
        self.conversions.max(self.approved)
    }

    /// Revenue per click, 0 without clicks.
    fn epc(&self) -> f64 {
        if self.clicks > 0 {
            self.revenue / self.clicks as f64
        } else {
            0.0
        }
    }

    /// Conversions per click, if there were clicks.
    fn conversion_rate(&self) -> Option<f64> {
        (self.clicks > 0).then(|| self.conversions() as f64 / self.clicks as f64)
    }

    /// Approved per conversion, if there were conversions.
    fn approval_rate(&self) -> Option<f64> {
        let n = self.conversions();
        (n > 0).then(|| self.approved as f64 / n as f64)
    }

    /// Revenue per approved conversion, if there were approvals.
    fn payout(&self) -> Option<f64> {
        (self.approved > 0).then(|| self.revenue / self.approved as f64)
    }
}

type Key = (String, Option<String>);

/// One period's cells and their totals per segment, per offer and overall.
#[derive(Debug, Default)]
struct Period {
    cells: BTreeMap<Key, Totals>,
    segments: BTreeMap<String, Totals>,
    offers: BTreeMap<Option<String>, Totals>,
    total: Totals,
}

impl Period {
    fn new(cells: &[Cell]) -> Self {
        let mut p = Period::default();
        for c in cells {
            p.cells.entry((c.segment.clone(), c.offer.clone())).or_default().add(c);
            p.segments.entry(c.segment.clone()).or_default().add(c);
            p.offers.entry(c.offer.clone()).or_default().add(c);
            p.total.add(c);
        }
        p
    }

    fn segment(&self, s: &str) -> Totals {
        self.segments.get(s).copied().unwrap_or_default()
    }

    fn offer(&self, o: &Option<String>) -> Totals {
        self.offers.get(o).copied().unwrap_or_default()
    }

    /// Share of all the period's clicks, if it had any.
    fn share(&self, clicks: u64) -> Option<f64> {
        (self.total.clicks > 0).then(|| clicks as f64 / self.total.clicks as f64)
    }

    /// The cell's factors `[w, q, v, c, a]` (in [`PARTS`] order) as far as
    /// this period's data defines them.
    fn factors(&self, segment: &str, t: &Totals) -> [Option<f64>; 5] {
        let n = self.total.clicks;
        let cs = self.segment(segment).clicks;
        let w = if n > 0 { cs as f64 / n as f64 } else { 0.0 };
        let q = (cs > 0).then(|| t.clicks as f64 / cs as f64);
        // Rates of a cell without clicks here are the other period's.
        let clicked = t.clicks > 0;
        let v = if clicked { t.payout() } else { None };
        let c = if clicked { t.conversion_rate() } else { None };
        let a = if clicked { t.approval_rate() } else { None };
        [Some(w), q, v, c, a]
    }

    /// Revenue of the cell the factor product does not carry, as EPC, and
    /// the part it belongs to.
    fn unmodelled(&self, t: &Totals) -> Option<(usize, f64)> {
        if self.total.clicks == 0 || t.revenue == 0.0 {
            None
        } else if t.clicks == 0 {
            Some((CONVERSION_RATE, t.revenue / self.total.clicks as f64))
        } else if t.approved == 0 {
            Some((PAYOUT, t.revenue / self.total.clicks as f64))
        } else {
            None
        }
    }

    fn json(&self) -> Value {
        json!({"clicks": self.total.clicks, "revenue": round6(self.total.revenue), "epc": round6(self.total.epc())})
    }
}

/// Who a contribution is credited to: a segment (traffic mix) or an offer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Segment(String),
    Offer(Option<String>),
}

/// The exact, unrounded result.
#[derive(Debug)]
struct Decomposition {
    /// EPC of A and B.
    epc: [f64; 2],
    /// The parts, in [`PARTS`] order; they sum to `epc[1] - epc[0]`.
    parts: [f64; 5],
    /// Each part split by segment (traffic mix) or offer (the others).
    by_subject: BTreeMap<(usize, Subject), f64>,
}

fn decompose(a: &Period, b: &Period) -> Decomposition {
    let mut parts = [0.0; 5];
    let mut by_subject: BTreeMap<(usize, Subject), f64> = BTreeMap::new();
    let mut credit = |part: usize, key: &Key, x: f64| {
        parts[part] += x;
        let subject = if part == TRAFFIC_MIX { Subject::Segment(key.0.clone()) } else { Subject::Offer(key.1.clone()) };
        *by_subject.entry((part, subject)).or_default() += x;
    };
    let keys: BTreeSet<&Key> = a.cells.keys().chain(b.cells.keys()).collect();
    for key in keys {
        let ta = a.cells.get(key).copied().unwrap_or_default();
        let tb = b.cells.get(key).copied().unwrap_or_default();
        let (own_a, own_b) = (a.factors(&key.0, &ta), b.factors(&key.0, &tb));
        let mut fa = [0.0; 5];
        let mut fb = [0.0; 5];
        for (i, (x, y)) in own_a.iter().zip(&own_b).enumerate() {
            fa[i] = x.or(*y).unwrap_or(0.0);
            fb[i] = y.or(*x).unwrap_or(0.0);
        }
        for (part, x) in shapley5(fa, fb).into_iter().enumerate() {
            if x != 0.0 {
                credit(part, key, x);
            }
        }
        if let Some((part, x)) = b.unmodelled(&tb) {
            credit(part, key, x);
        }
        if let Some((part, x)) = a.unmodelled(&ta) {
            credit(part, key, -x);
        }
    }
    Decomposition { epc: [a.total.epc(), b.total.epc()], parts, by_subject }
}

/// Weight of a coalition of k of the other four players in a five-player
/// Shapley value: k!·(4−k)!/5!.
const SHAPLEY_WEIGHTS: [f64; 5] = [24.0 / 120.0, 6.0 / 120.0, 4.0 / 120.0, 6.0 / 120.0, 24.0 / 120.0];

/// Shapley values of the five factors of the product x₀·…·x₄ moving from
/// `a` to `b`; they sum to Π b − Π a.
fn shapley5(a: [f64; 5], b: [f64; 5]) -> [f64; 5] {
    // value[S] = the product with the factors in S at b and the rest at a.
    let mut value = [0.0; 32];
    for (mask, v) in value.iter_mut().enumerate() {
        *v = (0..5).map(|i| if mask & (1 << i) != 0 { b[i] } else { a[i] }).product();
    }
    let mut phi = [0.0; 5];
    for (k, p) in phi.iter_mut().enumerate() {
        let bit = 1 << k;
        for mask in (0..32usize).filter(|m| m & bit == 0) {
            *p += SHAPLEY_WEIGHTS[mask.count_ones() as usize] * (value[mask | bit] - value[mask]);
        }
    }
    phi
}

/// The plain-words sentence of one contributor.
fn describe(part: usize, subject: &Subject, x: f64, a: &Period, b: &Period, events: &[OfferEvent]) -> String {
    let body = match subject {
        Subject::Segment(s) => {
            let (sa, sb) = (a.segment(s), b.segment(s));
            let epc = match (sa.clicks > 0, sb.clicks > 0) {
                (true, true) if money(sa.epc()) != money(sb.epc()) => {
                    format!("{} → {}", money(sa.epc()), money(sb.epc()))
                }
                (_, true) => money(sb.epc()),
                _ => money(sa.epc()),
            };
            format!(
                "segment {s}'s share of clicks {} (segment EPC {epc})",
                movement(a.share(sa.clicks), b.share(sb.clicks), pct1)
            )
        }
        Subject::Offer(o) => {
            let (oa, ob) = (a.offer(o), b.offer(o));
            let name = label(o);
            let body = match part {
                OFFER_POOL if oa.clicks > 0 && ob.clicks == 0 => format!("{name} lost its traffic"),
                OFFER_POOL if oa.clicks == 0 && ob.clicks > 0 => {
                    format!("{name} started getting traffic ({} of clicks)", opt(b.share(ob.clicks), pct1))
                }
                PAYOUT => {
                    format!("{name}'s revenue per approved conversion {}", movement(oa.payout(), ob.payout(), money))
                }
                CONVERSION_RATE => {
                    format!("{name}'s conversion rate {}", movement(oa.conversion_rate(), ob.conversion_rate(), pct2))
                }
                APPROVAL => {
                    format!("{name}'s approval rate {}", movement(oa.approval_rate(), ob.approval_rate(), pct1))
                }
                // The offer pool (traffic mix is credited to segments, never here).
                _ => format!("{name}'s share of clicks {}", movement(a.share(oa.clicks), b.share(ob.clicks), pct1)),
            };
            match o {
                Some(key) => format!("{body}{}", event_note(key, events)),
                None => body,
            }
        }
    };
    format!("{body}: {} EPC", signed(x))
}

/// ` (paused on Tue 14:00; capped on Wed 09:30)` for the offer's latest
/// events, or nothing.
fn event_note(offer: &str, events: &[OfferEvent]) -> String {
    let mut mine: Vec<&OfferEvent> = events.iter().filter(|e| e.offer == offer).collect();
    if mine.is_empty() {
        return String::new();
    }
    mine.sort_by_key(|e| e.ts_ms);
    let notes: Vec<String> = mine[mine.len().saturating_sub(MAX_EVENTS)..]
        .iter()
        .map(|e| {
            let at = chrono::DateTime::from_timestamp_millis(e.ts_ms)
                .map_or_else(|| "?".to_string(), |t| t.format("%a %H:%M").to_string());
            format!("{} on {at}", e.what)
        })
        .collect();
    format!(" ({})", notes.join("; "))
}

/// The one-line summary.
fn summary(a: &Period, b: &Period, d: &Decomposition, top: Option<&str>) -> String {
    if a.total.clicks == 0 && b.total.clicks == 0 {
        return "No clicks in either period: nothing to explain.".into();
    }
    let change = d.epc[1] - d.epc[0];
    let mut out = if change.abs() < NEGLIGIBLE {
        format!("EPC unchanged at {}", money(d.epc[1]))
    } else {
        let verb = if change > 0.0 { "rose" } else { "fell" };
        format!("EPC {verb} from {} to {} ({})", money(d.epc[0]), money(d.epc[1]), signed(change))
    };
    let mut parts: Vec<(usize, f64)> =
        d.parts.iter().copied().enumerate().filter(|(_, x)| x.abs() >= NEGLIGIBLE).collect();
    parts.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()).then(x.0.cmp(&y.0)));
    if !parts.is_empty() {
        let list: Vec<String> = parts.iter().map(|&(i, x)| format!("{} {}", PART_WORDS[i], signed(x))).collect();
        out.push_str(": ");
        out.push_str(&list.join(", "));
    }
    if a.total.clicks == 0 {
        out.push_str("; the baseline period has no clicks");
    }
    if b.total.clicks == 0 {
        out.push_str("; the current period has no clicks");
    }
    out.push('.');
    if let Some(top) = top {
        out.push_str(&format!(" Largest: {top}."));
    }
    out
}

fn label(offer: &Option<String>) -> String {
    match offer {
        Some(o) => format!("offer {o}"),
        None => "the fallback".into(),
    }
}

/// `rose from X to Y`, `fell from X to Y`, `stayed at X` or, when a side is
/// undefined, `went from n/a to Y`.
fn movement(a: Option<f64>, b: Option<f64>, fmt: fn(f64) -> String) -> String {
    match (a, b) {
        (Some(x), Some(y)) if y > x => format!("rose from {} to {}", fmt(x), fmt(y)),
        (Some(x), Some(y)) if y < x => format!("fell from {} to {}", fmt(x), fmt(y)),
        (Some(x), Some(_)) => format!("stayed at {}", fmt(x)),
        (x, y) => format!("went from {} to {}", opt(x, fmt), opt(y, fmt)),
    }
}

fn opt(x: Option<f64>, fmt: fn(f64) -> String) -> String {
    x.map_or_else(|| "n/a".to_string(), fmt)
}

fn pct1(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn pct2(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// An amount: `$1.20`, `−$0.10`.
fn money(x: f64) -> String {
    let s = format!("${:.2}", x.abs());
    if x < 0.0 && s != "$0.00" {
        format!("{MINUS}{s}")
    } else {
        s
    }
}

/// A change: `+$0.41`, `−$0.41`, `−<$0.01` (below a cent), `$0.00` (nothing).
fn signed(x: f64) -> String {
    let sign = if x < 0.0 { MINUS } else { '+' };
    if x.abs() < NEGLIGIBLE {
        "$0.00".into()
    } else if x.abs() < 0.005 {
        format!("{sign}<$0.01")
    } else {
        format!("{sign}${:.2}", x.abs())
    }
}

/// Rounds to 6 decimals for output (no negative zero).
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6 + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-02 (a Tuesday) 14:00 UTC.
    const TUE_14_00: i64 = 1_704_204_000_000;

    fn cell(segment: &str, offer: Option<&str>, clicks: u64, conversions: u64, approved: u64, revenue: f64) -> Cell {
        Cell { segment: segment.into(), offer: offer.map(String::from), clicks, conversions, approved, revenue }
    }

    fn part(v: &Value, name: &str) -> f64 {
        v["parts"][name].as_f64().unwrap()
    }

    fn exact(baseline: &[Cell], current: &[Cell]) -> Decomposition {
        decompose(&Period::new(baseline), &Period::new(current))
    }

    /// Asserts that `only` carries the whole change and the other parts nothing.
    fn assert_only(d: &Decomposition, only: usize) {
        let change = d.epc[1] - d.epc[0];
        assert!(change.abs() > 1e-3, "the scenario must move EPC: {change}");
        for (i, x) in d.parts.iter().enumerate() {
            let want = if i == only { change } else { 0.0 };
            assert!((x - want).abs() < 1e-12, "{}: {x} instead of {want} ({:?})", PARTS[i], d.parts);
        }
    }

    fn assert_parts_sum_to_change(v: &Value) {
        let sum: f64 = PARTS.iter().map(|p| part(v, p)).sum();
        let change = v["change"].as_f64().unwrap();
        assert!((sum - change).abs() < 5e-6, "{sum} vs {change}");
    }

    fn baseline_pool() -> Vec<Cell> {
        vec![
            cell("US/mobile", Some("o1"), 1000, 50, 40, 40.0 * 2.5),
            cell("US/mobile", Some("o2"), 400, 20, 16, 16.0 * 2.0),
            cell("US/mobile", Some("o3"), 200, 30, 24, 24.0 * 3.0),
            cell("US/mobile", None, 100, 0, 0, 0.0),
            cell("DE/desktop", Some("o1"), 500, 10, 5, 5.0 * 4.0),
            cell("DE/desktop", Some("o3"), 300, 30, 15, 15.0 * 3.0),
        ]
    }

    #[test]
    fn an_offer_paused_between_periods_is_offer_pool_and_the_top_contributor_names_it_and_its_pause() {
        let baseline = baseline_pool();
        // o3 paused: its US clicks go to o2 (worse), its DE clicks to o1; rates unchanged.
        let current = vec![
            cell("US/mobile", Some("o1"), 1000, 50, 40, 40.0 * 2.5),
            cell("US/mobile", Some("o2"), 600, 30, 24, 24.0 * 2.0),
            cell("US/mobile", None, 100, 0, 0, 0.0),
            cell("DE/desktop", Some("o1"), 800, 16, 8, 8.0 * 4.0),
        ];
        let events = vec![OfferEvent { offer: "o3".into(), ts_ms: TUE_14_00, what: "paused".into() }];
        assert_only(&exact(&baseline, &current), OFFER_POOL);

        let v = explain(&baseline, &current, &events);
        assert!(v["change"].as_f64().unwrap() < 0.0);
        assert_parts_sum_to_change(&v);
        assert_eq!(part(&v, "offer_pool"), v["change"].as_f64().unwrap());
        let top = &v["contributors"][0];
        assert_eq!(top["part"], "offer_pool");
        assert_eq!(top["offer"], "o3");
        assert_eq!(top["segment"], Value::Null, "o3 ran in two segments");
        let text = top["text"].as_str().unwrap();
        assert!(text.starts_with("offer o3 lost its traffic (paused on Tue 14:00): −$"), "{text}");
        assert!(text.ends_with(" EPC"), "{text}");
        let summary = v["summary"].as_str().unwrap();
        assert!(summary.starts_with("EPC fell from $"), "{summary}");
        assert!(summary.contains("offer pool −$"), "{summary}");
    }

    #[test]
    fn a_payout_cut_on_one_offer_is_all_payout_and_the_contributor_names_the_offer() {
        let baseline = baseline_pool();
        let mut current = baseline_pool();
        current[1].revenue = 16.0 * 1.5; // o2: $2.00 → $1.50 per approved conversion
        let events = vec![OfferEvent { offer: "o2".into(), ts_ms: TUE_14_00, what: "payout 2.00 → 1.50".into() }];
        assert_only(&exact(&baseline, &current), PAYOUT);

        let v = explain(&baseline, &current, &events);
        assert_eq!(part(&v, "payout"), v["change"].as_f64().unwrap());
        assert_eq!(v["contributors"].as_array().unwrap().len(), 1);
        let top = &v["contributors"][0];
        assert_eq!((top["part"].as_str(), top["offer"].as_str()), (Some("payout"), Some("o2")));
        assert_eq!(top["segment"], "US/mobile", "o2 only ran in one segment");
        // 400 of 2500 clicks × 5% × 80% × −$0.50 = −$0.0032.
        assert!((top["epc_change"].as_f64().unwrap() + 0.0032).abs() < 1e-9);
        assert_eq!(
            top["text"],
            "offer o2's revenue per approved conversion fell from $2.00 to $1.50 \
             (payout 2.00 → 1.50 on Tue 14:00): −<$0.01 EPC"
        );
    }

    #[test]
    fn more_traffic_from_a_low_epc_segment_is_all_traffic_mix() {
        let baseline = baseline_pool();
        // DE/desktop (the low-EPC segment) triples; every cell keeps its rates.
        let current: Vec<Cell> = baseline_pool()
            .into_iter()
            .map(|c| {
                if c.segment == "DE/desktop" {
                    Cell {
                        clicks: c.clicks * 3,
                        conversions: c.conversions * 3,
                        approved: c.approved * 3,
                        revenue: c.revenue * 3.0,
                        ..c
                    }
                } else {
                    c
                }
            })
            .collect();
        assert_only(&exact(&baseline, &current), TRAFFIC_MIX);

        let v = explain(&baseline, &current, &[]);
        assert!(v["change"].as_f64().unwrap() < 0.0);
        let segments: Vec<&str> = v["contributors"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|c| assert_eq!((&c["part"], &c["offer"]), (&json!("traffic_mix"), &Value::Null)))
            .map(|c| c["segment"].as_str().unwrap())
            .collect();
        assert_eq!(segments.len(), 2);
        let de = v["contributors"].as_array().unwrap().iter().find(|c| c["segment"] == "DE/desktop").unwrap();
        assert!(de["text"].as_str().unwrap().starts_with("segment DE/desktop's share of clicks rose from 32.0% to"));
    }

    #[test]
    fn a_falling_conversion_rate_on_one_offer_is_all_conversion_rate() {
        let baseline = baseline_pool();
        let mut current = baseline_pool();
        current[0] = cell("US/mobile", Some("o1"), 1000, 25, 20, 20.0 * 2.5); // CR 5% → 2.5%, same approval and payout
        assert_only(&exact(&baseline, &current), CONVERSION_RATE);

        let v = explain(&baseline, &current, &[]);
        let top = &v["contributors"][0];
        assert_eq!((top["part"].as_str(), top["offer"].as_str()), (Some("conversion_rate"), Some("o1")));
        assert!(top["text"].as_str().unwrap().contains("conversion rate fell from 4.00% to 2.33%"), "{top}");
    }

    #[test]
    fn a_falling_approval_rate_is_all_approval() {
        let baseline = baseline_pool();
        let mut current = baseline_pool();
        current[2] = cell("US/mobile", Some("o3"), 200, 30, 12, 12.0 * 3.0); // approval 80% → 40%
        current[5] = cell("DE/desktop", Some("o3"), 300, 30, 6, 6.0 * 3.0); // approval 50% → 20%
        assert_only(&exact(&baseline, &current), APPROVAL);

        let v = explain(&baseline, &current, &[]);
        let top = &v["contributors"][0];
        assert_eq!((top["part"].as_str(), top["offer"].as_str()), (Some("approval"), Some("o3")));
        assert!(top["text"].as_str().unwrap().starts_with("offer o3's approval rate fell from 65.0% to 30.0%: −$"));
    }

    /// splitmix64: a tiny deterministic generator for test data.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn random_cell(rng: &mut Rng, segment: &str, offer: Option<String>) -> Cell {
        let clicks = if rng.below(8) == 0 { 0 } else { rng.below(3000) };
        let conversions = if rng.below(5) == 0 { 0 } else { rng.below(clicks / 4 + 3) };
        let approved = rng.below(conversions + 1);
        let payout = 0.5 + 10.0 * rng.unit();
        let revenue = match rng.below(25) {
            0 => 3.0 * rng.unit(),  // revenue without approvals (or without clicks)
            1 => -2.0 * rng.unit(), // a clawback
            _ => approved as f64 * payout,
        };
        Cell { segment: segment.into(), offer, clicks, conversions, approved, revenue }
    }

    fn random_case(seed: u64) -> (Vec<Cell>, Vec<Cell>) {
        let mut rng = Rng(seed);
        let segments = ["US/mobile", "US/desktop", "DE/mobile", "DE/desktop", "FR/mobile", "BR/tablet", "JP/mobile"];
        let (mut baseline, mut current) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            let segment = segments[rng.below(segments.len() as u64) as usize];
            let offer = match rng.below(13) {
                0 => None,
                k => Some(format!("o{k}")),
            };
            match rng.below(5) {
                0 => baseline.push(random_cell(&mut rng, segment, offer)),
                1 => current.push(random_cell(&mut rng, segment, offer)),
                _ => {
                    baseline.push(random_cell(&mut rng, segment, offer.clone()));
                    current.push(random_cell(&mut rng, segment, offer));
                }
            }
        }
        match seed % 20 {
            0 => baseline.clear(),
            1 => current.clear(),
            _ => {}
        }
        (baseline, current)
    }

    #[test]
    fn parts_sum_to_the_total_change_for_random_data_with_cells_appearing_and_disappearing() {
        for seed in 0..100 {
            let (baseline, current) = random_case(seed);
            let (a, b) = (Period::new(&baseline), Period::new(&current));
            let d = decompose(&a, &b);
            let change = b.total.epc() - a.total.epc();
            let sum: f64 = d.parts.iter().sum();
            assert!((sum - change).abs() < 1e-9, "seed {seed}: parts {:?} sum to {sum}, change {change}", d.parts);
            for (i, x) in d.parts.iter().enumerate() {
                let credited: f64 = d.by_subject.iter().filter(|((p, _), _)| *p == i).map(|(_, v)| v).sum();
                assert!((credited - x).abs() < 1e-9, "seed {seed}: {} {x} vs {credited}", PARTS[i]);
            }

            let v = explain(&baseline, &current, &[]);
            assert_parts_sum_to_change(&v);
            let contributors = v["contributors"].as_array().unwrap();
            assert!(contributors.len() <= MAX_CONTRIBUTORS);
            let sizes: Vec<f64> = contributors.iter().map(|c| c["epc_change"].as_f64().unwrap().abs()).collect();
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "seed {seed}: not sorted: {sizes:?}");
        }
    }

    #[test]
    fn swapping_the_periods_negates_every_part() {
        for seed in 100..110 {
            let (baseline, current) = random_case(seed);
            let forward = exact(&baseline, &current);
            let backward = exact(&current, &baseline);
            for (x, y) in forward.parts.iter().zip(backward.parts) {
                assert!((x + y).abs() < 1e-12, "seed {seed}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn shapley_values_of_a_product_sum_to_its_change_and_ignore_unchanged_factors() {
        let a = [0.5, 0.2, 3.0, 0.05, 0.8];
        let b = [0.4, 0.0, 3.0, 0.07, 0.8];
        let phi = shapley5(a, b);
        let change = b.iter().product::<f64>() - a.iter().product::<f64>();
        assert!((phi.iter().sum::<f64>() - change).abs() < 1e-15);
        assert_eq!((phi[2], phi[4]), (0.0, 0.0));
        // Two factors only: the classic midpoint split.
        let phi = shapley5([2.0, 3.0, 1.0, 1.0, 1.0], [4.0, 5.0, 1.0, 1.0, 1.0]);
        for (x, want) in phi.iter().zip([2.0 * (3.0 + 5.0) / 2.0, 2.0 * (2.0 + 4.0) / 2.0, 0.0, 0.0, 0.0]) {
            assert!((x - want).abs() < 1e-12, "{phi:?}");
        }
    }

    #[test]
    fn an_empty_baseline_explains_the_epc_as_rising_from_zero() {
        let current = baseline_pool();
        let v = explain(&[], &current, &[]);
        assert_eq!(v["baseline"], json!({"clicks": 0, "revenue": 0.0, "epc": 0.0}));
        assert_eq!(v["change"], v["current"]["epc"]);
        assert!(v["change"].as_f64().unwrap() > 0.0);
        assert_parts_sum_to_change(&v);
        assert_eq!(part(&v, "traffic_mix"), v["change"].as_f64().unwrap());
        let summary = v["summary"].as_str().unwrap();
        assert!(summary.starts_with("EPC rose from $0.00 to $"), "{summary}");
        assert!(summary.contains("the baseline period has no clicks"), "{summary}");
    }

    #[test]
    fn an_empty_current_period_explains_the_epc_as_falling_to_zero() {
        let v = explain(&baseline_pool(), &[], &[]);
        assert_eq!(v["current"]["epc"], 0.0);
        assert!(v["change"].as_f64().unwrap() < 0.0);
        assert_parts_sum_to_change(&v);
        assert!(v["summary"].as_str().unwrap().contains("the current period has no clicks"));
    }

    #[test]
    fn two_empty_periods_explain_nothing_without_panicking() {
        let v = explain(&[], &[], &[]);
        assert_eq!(v["change"], 0.0);
        assert!(PARTS.iter().all(|p| part(&v, p) == 0.0));
        assert_eq!(v["contributors"], json!([]));
        assert_eq!(v["summary"], "No clicks in either period: nothing to explain.");
    }

    #[test]
    fn an_offer_that_stops_converting_keeps_its_approval_and_payout_and_moves_conversion_rate() {
        let baseline =
            vec![cell("US/mobile", Some("o1"), 1000, 40, 20, 60.0), cell("US/mobile", None, 1000, 0, 0, 0.0)];
        let current = vec![cell("US/mobile", Some("o1"), 1000, 0, 0, 0.0), cell("US/mobile", None, 1000, 0, 0, 0.0)];
        assert_only(&exact(&baseline, &current), CONVERSION_RATE);
        let v = explain(&baseline, &current, &[]);
        assert_eq!(v["contributors"][0]["text"], "offer o1's conversion rate fell from 4.00% to 0.00%: −$0.03 EPC");
    }

    #[test]
    fn revenue_without_clicks_in_the_period_still_adds_up() {
        // Late conversions booked to a cell that got no clicks this period.
        let baseline = vec![cell("US/mobile", Some("o1"), 100, 10, 10, 20.0)];
        let current = vec![cell("US/mobile", Some("o1"), 0, 5, 5, 10.0), cell("US/mobile", Some("o2"), 100, 0, 0, 0.0)];
        let d = exact(&baseline, &current);
        assert!((d.epc[1] - 0.1).abs() < 1e-12);
        assert!((d.parts.iter().sum::<f64>() - (0.1 - 0.2)).abs() < 1e-12);
        assert!((d.parts[CONVERSION_RATE] - 0.1).abs() < 1e-12, "{:?}", d.parts);
        assert!((d.parts[OFFER_POOL] + 0.2).abs() < 1e-12, "{:?}", d.parts);
    }

    #[test]
    fn repeated_cells_are_summed() {
        let once = vec![cell("US/mobile", Some("o1"), 200, 20, 10, 30.0)];
        let split =
            vec![cell("US/mobile", Some("o1"), 150, 5, 5, 15.0), cell("US/mobile", Some("o1"), 50, 15, 5, 15.0)];
        assert_eq!(explain(&once, &baseline_pool(), &[]), explain(&split, &baseline_pool(), &[]));
    }

    #[test]
    fn money_texts_carry_a_sign_a_dollar_and_two_decimals() {
        assert_eq!(signed(-0.41), "−$0.41");
        assert_eq!(signed(0.126), "+$0.13");
        assert_eq!(signed(-0.004), "−<$0.01");
        assert_eq!(signed(1e-9), "$0.00");
        assert_eq!(money(1.2), "$1.20");
        assert_eq!(money(-0.5), "−$0.50");
        assert_eq!(round6(-1e-9), 0.0);
        assert!(round6(-1e-9).is_sign_positive());
    }

    #[test]
    fn only_the_latest_events_of_the_offer_are_quoted_in_time_order() {
        let ev = |offer: &str, h: i64, what: &str| OfferEvent {
            offer: offer.into(),
            ts_ms: TUE_14_00 + h * 3_600_000,
            what: what.into(),
        };
        let events = [
            ev("o1", 3, "resumed"),
            ev("o1", 0, "paused"),
            ev("o2", 1, "capped"),
            ev("o1", -1, "x"),
            ev("o1", 20, "capped"),
        ];
        assert_eq!(event_note("o1", &events), " (paused on Tue 14:00; resumed on Tue 17:00; capped on Wed 10:00)");
        assert_eq!(event_note("o9", &events), "");
    }
}
