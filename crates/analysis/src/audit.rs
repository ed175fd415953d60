//! Audit: the smartlink against the best hand-picked offer.
//!
//! For one smartlink over a period, [`audit`] takes its logged clicks and,
//! for every segment with enough clicks, compares the EPC the smartlink
//! actually earned with the EPC each offer it routed to there would have
//! earned had the *whole* segment been sent to that offer. Where one offer
//! beats the smartlink with 95% confidence it recommends routing the segment
//! to it directly ("US/desktop → offer o1: +$40.00 per 1,000 clicks, 95% CI
//! [$25.10, $54.90]"); where the evidence is thin it says so instead.
//!
//! # Segments
//!
//! Every country × device pair is a segment. With
//! [`AuditOptions::split_by_os`], each country × device × OS subsegment with
//! at least [`AuditOptions::min_clicks`] clicks is audited too (unless the
//! pair saw a single OS, when the subsegment would repeat its parent).
//! Country × device pairs below `min_clicks` are listed under
//! `thin_segments`; OS subsegments below it are left to their parent.
//!
//! # Estimators
//!
//! For a segment S of n clicks, click i having revenue rᵢ and having been
//! routed to offer oᵢ with logged propensity pᵢ (the probability with which
//! the router chose oᵢ for that click), and an offer X:
//!
//! * **Smartlink realised EPC** = (1/n) Σ rᵢ, over every click including
//!   fallback clicks (oᵢ = None).
//! * **IPS** (inverse propensity scoring):
//!   IPS_X = (1/n) Σ 1[oᵢ = X] · rᵢ / pᵢ.
//! * **DR** (doubly robust), with the reward model m̂_X = mean revenue of the
//!   clicks in S routed to X:
//!   DR_X = m̂_X + (1/n) Σ 1[oᵢ = X] · (rᵢ − m̂_X) / pᵢ.
//!
//! Both are unbiased for "send all of S to X" when the logged propensities
//! are the router's true choice probabilities and X had a positive
//! probability on every click of S (overlap); the naive mean of X's clicks is
//! not once the router favoured X on some kinds of clicks more than on
//! others. DR keeps IPS's unbiasedness while the reward model absorbs most of
//! its variance. Only offers the router actually chose in S can be audited:
//! an offer that never received a click leaves no evidence.
//!
//! Propensities below [`MIN_PROPENSITY`] (and zero, negative or NaN ones) are
//! clipped to it, bounding the weight of any one click; each offer reports
//! the smallest propensity used (`min_propensity`) and how many of its clicks
//! were clipped. Propensities above 1 count as 1. Non-finite revenue counts as
//! 0. Fallback clicks count in the smartlink's EPC but are never a candidate.
//!
//! # Confidence intervals
//!
//! The uplift of X is DR_X − smartlink EPC. Its 95% CI comes from a paired
//! percentile bootstrap over the clicks of the segment: each resample draws n
//! clicks with replacement and recomputes both terms (m̂_X included) from the
//! same draw, so their correlation is accounted for. The per-offer `ci` (of
//! DR_X) and `smartlink_ci` come from the same resamples. With
//! [`AuditOptions::bootstrap`] = 0 a normal approximation is used instead:
//! mean ± 1.96 standard errors of the per-click DR terms (m̂_X taken as
//! fixed). Resampling costs O(bootstrap × n) per segment with one reused
//! accumulator; the random numbers come from a splitmix64 stream seeded from
//! [`AuditOptions::seed`] and the segment's name, so the output is
//! reproducible and one segment's CIs do not depend on the others.
//!
//! # Recommendations
//!
//! An offer with fewer than [`AuditOptions::min_offer_clicks`] routed clicks
//! in the segment is reported as thin (no estimates) and never recommended.
//! Among the others, those whose uplift CI lower bound is above zero are
//! candidates; the one with the highest lower bound is recommended. With no
//! recommendation the segment's `note` says why when evidence is missing (a
//! positive but inconclusive uplift, or offers too thin to estimate) and is
//! null when the smartlink simply does at least as well as every offer.
//!
//! # Output
//!
//! ```text
//! {"segments": [
//!   {"segment": {"country": "US", "device": "desktop", "os": null}, "clicks": 1234, "fallback_clicks": 0,
//!    "smartlink_epc": 0.41, "smartlink_ci": [0.37, 0.45],
//!    "offers": [{"offer": "o1", "clicks": 400, "ips_epc": 0.52, "dr_epc": 0.51, "ci": [0.45, 0.58],
//!                "min_propensity": 0.1, "clipped_clicks": 0,
//!                "uplift_per_1000": 100.0, "uplift_ci_per_1000": [20.0, 180.0], "note": null}],
//!    "recommendation": {"offer": "o1", "uplift_per_1000": 100.0, "ci_per_1000": [20.0, 180.0],
//!                       "text": "US/desktop → offer o1: +$100.00 per 1,000 clicks, 95% CI [$20.00, $180.00]"},
//!    "note": null}],
//!  "thin_segments": [{"segment": {...}, "clicks": 12, "note": "12 clicks; at least 200 are needed"}],
//!  "estimator": "doubly robust (IPS with a per-segment per-offer mean reward model), 95% bootstrap CI"}
//! ```
//!
//! Numbers are rounded to 4 decimals; EPCs are in base currency per click,
//! uplifts per 1,000 clicks. Segments are sorted by clicks, most first.
//! Offers are sorted by DR EPC, best first, thin offers last; a thin offer
//! has null estimates and a `note`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

/// Propensities below this are clipped to it (so no click weighs more than 100).
pub const MIN_PROPENSITY: f64 = 0.01;

/// Uplift bounds within this of zero (per click) count as zero: floating-point
/// noise must not turn "exactly as good" into a recommendation.
const EPS: f64 = 1e-9;

/// The z-value of a two-sided 95% normal interval.
const Z95: f64 = 1.959_963_984_540_054;

/// One logged click of the audited smartlink.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditClick {
    pub country: String,
    pub device: String,
    pub os: String,
    /// The offer it was routed to (None = fallback).
    pub offer: Option<String>,
    /// Probability with which the router chose that offer for this click (logged; 1.0 for overrides/priority).
    pub propensity: f64,
    /// Approved revenue this click earned (base currency), 0 if none.
    pub revenue: f64,
}

/// Thresholds and resampling settings of [`audit`].
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Clicks a segment needs before it is audited (default 200).
    pub min_clicks: u64,
    /// Clicks routed to an offer within a segment before it is estimated (default 30).
    pub min_offer_clicks: u64,
    /// Also audit country × device × OS segments that each have at least `min_clicks` (default true).
    pub split_by_os: bool,
    /// Bootstrap resamples for the CIs (default 400; 0 = normal approximation only).
    pub bootstrap: usize,
    /// Seed of the resampling (the same seed gives the same output).
    pub seed: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions { min_clicks: 200, min_offer_clicks: 30, split_by_os: true, bootstrap: 400, seed: 0 }
    }
}

/// Audits one smartlink's clicks segment by segment; see the module
/// documentation for the estimators and the output shape.
pub fn audit(clicks: &[AuditClick], opts: &AuditOptions) -> Value {
    let mut groups: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, c) in clicks.iter().enumerate() {
        groups.entry((c.country.as_str(), c.device.as_str())).or_default().push(i);
    }
    let mut audited: Vec<(u64, Key, Value)> = Vec::new();
    let mut thin: Vec<(u64, Key)> = Vec::new();
    for ((country, device), idx) in &groups {
        let key = Key { country, device, os: None };
        let n = idx.len() as u64;
        if n < opts.min_clicks {
            thin.push((n, key));
            continue;
        }
        audited.push((n, key, audit_segment(clicks, idx, key, opts)));
        if opts.split_by_os {
            let mut by_os: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for &i in idx {
                by_os.entry(clicks[i].os.as_str()).or_default().push(i);
            }
            if by_os.len() > 1 {
                for (os, sub) in &by_os {
                    if sub.len() as u64 >= opts.min_clicks {
                        let key = Key { os: Some(os), ..key };
                        audited.push((sub.len() as u64, key, audit_segment(clicks, sub, key, opts)));
                    }
                }
            }
        }
    }
    audited.sort_by(|a, b| (Reverse(a.0), a.1).cmp(&(Reverse(b.0), b.1)));
    thin.sort_by_key(|&(n, key)| (Reverse(n), key));
    let thin: Vec<Value> = thin
        .into_iter()
        .map(|(n, key)| {
            json!({
                "segment": key.json(),
                "clicks": n,
                "note": format!("{}; at least {} are needed", plural(n, "click"), opts.min_clicks),
            })
        })
        .collect();
    let ci = if opts.bootstrap > 0 { "95% bootstrap CI" } else { "95% normal-approximation CI" };
    json!({
        "segments": audited.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
        "thin_segments": thin,
        "estimator": format!("doubly robust (IPS with a per-segment per-offer mean reward model), {ci}"),
    })
}

/// A segment's name: country × device, optionally × OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a> {
    country: &'a str,
    device: &'a str,
    os: Option<&'a str>,
}

impl Key<'_> {
    fn json(&self) -> Value {
        json!({"country": self.country, "device": self.device, "os": self.os})
    }

    /// `US/desktop` or `US/mobile/android`.
    fn label(&self) -> String {
        match self.os {
            Some(os) => format!("{}/{}/{}", self.country, self.device, os),
            None => format!("{}/{}", self.country, self.device),
        }
    }

    /// The segment's own resampling seed, so its CIs do not depend on which
    /// other segments exist (FNV-1a of the name, mixed with `seed`).
    fn seed(&self, seed: u64) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let parts = [self.country, self.device, self.os.unwrap_or("")];
        for (i, part) in parts.iter().enumerate() {
            for &b in part.as_bytes().iter().chain([i as u8, u8::from(self.os.is_some())].iter()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        SplitMix64(h ^ seed).next_u64()
    }
}

/// One click reduced to what the estimators need.
#[derive(Clone, Copy)]
struct Obs {
    /// Revenue.
    r: f64,
    /// Inverse of the clipped propensity (0 for fallback clicks).
    w: f64,
    /// Offer index within the segment; the fallback has the last index.
    k: u32,
}

/// Per-offer sums over a (re)sample: routed clicks, Σr, Σr·w, Σw.
#[derive(Clone, Copy, Default)]
struct Sums {
    n: f64,
    r: f64,
    rw: f64,
    w: f64,
}

impl Sums {
    #[inline]
    fn add(&mut self, o: &Obs) {
        self.n += 1.0;
        self.r += o.r;
        self.rw += o.r * o.w;
        self.w += o.w;
    }

    /// (IPS, DR) estimates of the offer's EPC over a sample of `n` clicks.
    #[inline]
    fn estimates(&self, n: f64) -> (f64, f64) {
        let ips = self.rw / n;
        let m = if self.n > 0.0 { self.r / self.n } else { 0.0 };
        (ips, m + (self.rw - m * self.w) / n)
    }
}

/// What is known about one offer of a segment.
struct OfferInfo<'a> {
    name: &'a str,
    clicks: u64,
    min_propensity: f64,
    clipped: u64,
}

/// 95% intervals of the smartlink's EPC and, per estimable offer, of its DR
/// EPC and of its uplift over the smartlink.
struct Intervals {
    smartlink: (f64, f64),
    dr: Vec<(f64, f64)>,
    uplift: Vec<(f64, f64)>,
}

/// Clips a logged propensity to [MIN_PROPENSITY, 1]; says whether it was
/// below the floor (or not a number).
fn clip(p: f64) -> (f64, bool) {
    if p.is_nan() || p < MIN_PROPENSITY {
        (MIN_PROPENSITY, true)
    } else {
        (p.min(1.0), false)
    }
}

fn audit_segment(clicks: &[AuditClick], idx: &[usize], key: Key, opts: &AuditOptions) -> Value {
    let n = idx.len();
    let nf = n as f64;
    let mut index: HashMap<&str, u32> = HashMap::new();
    let mut offers: Vec<OfferInfo> = Vec::new();
    let mut obs: Vec<Obs> = Vec::with_capacity(n);
    for &i in idx {
        let c = &clicks[i];
        let r = if c.revenue.is_finite() { c.revenue } else { 0.0 };
        let Some(name) = c.offer.as_deref() else {
            obs.push(Obs { r, w: 0.0, k: u32::MAX });
            continue;
        };
        let k = *index.entry(name).or_insert_with(|| {
            offers.push(OfferInfo { name, clicks: 0, min_propensity: 1.0, clipped: 0 });
            (offers.len() - 1) as u32
        });
        let (p, clipped) = clip(c.propensity);
        let info = &mut offers[k as usize];
        info.clicks += 1;
        info.min_propensity = info.min_propensity.min(p);
        info.clipped += u64::from(clipped);
        obs.push(Obs { r, w: 1.0 / p, k });
    }
    let fallback_k = offers.len() as u32;
    let mut fallback = 0u64;
    for o in obs.iter_mut().filter(|o| o.k == u32::MAX) {
        o.k = fallback_k;
        fallback += 1;
    }

    let mut full = vec![Sums::default(); offers.len() + 1];
    for o in &obs {
        full[o.k as usize].add(o);
    }
    let smartlink = full.iter().map(|s| s.r).sum::<f64>() / nf;
    let estimable: Vec<usize> =
        (0..offers.len()).filter(|&k| offers[k].clicks >= opts.min_offer_clicks.max(1)).collect();
    let points: Vec<(f64, f64)> = estimable.iter().map(|&k| full[k].estimates(nf)).collect();
    let intervals = if opts.bootstrap > 0 {
        bootstrap(&obs, offers.len() + 1, &estimable, opts.bootstrap, key.seed(opts.seed))
    } else {
        normal(&obs, &full, &estimable, smartlink, &points)
    };

    // Offers: estimable ones by DR EPC, best first, then the thin ones.
    let mut rows: Vec<(Option<usize>, &OfferInfo)> =
        offers.iter().enumerate().map(|(k, info)| (estimable.iter().position(|&e| e == k), info)).collect();
    rows.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => points[y].1.total_cmp(&points[x].1).then(a.1.name.cmp(b.1.name)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.1.clicks.cmp(&a.1.clicks).then(a.1.name.cmp(b.1.name)),
    });
    let offer_rows: Vec<Value> = rows
        .iter()
        .map(|&(e, info)| match e {
            Some(j) => json!({
                "offer": info.name,
                "clicks": info.clicks,
                "ips_epc": round4(points[j].0),
                "dr_epc": round4(points[j].1),
                "ci": pair(intervals.dr[j], 1.0),
                "min_propensity": round4(info.min_propensity),
                "clipped_clicks": info.clipped,
                "uplift_per_1000": round4((points[j].1 - smartlink) * 1000.0),
                "uplift_ci_per_1000": pair(intervals.uplift[j], 1000.0),
                "note": null,
            }),
            None => json!({
                "offer": info.name,
                "clicks": info.clicks,
                "ips_epc": null,
                "dr_epc": null,
                "ci": null,
                "min_propensity": round4(info.min_propensity),
                "clipped_clicks": info.clipped,
                "uplift_per_1000": null,
                "uplift_ci_per_1000": null,
                "note": format!(
                    "{}; at least {} are needed before it is estimated",
                    plural(info.clicks, "routed click"),
                    opts.min_offer_clicks
                ),
            }),
        })
        .collect();

    // The recommendation: the highest uplift lower bound, if above zero.
    let best = (0..estimable.len()).filter(|&j| intervals.uplift[j].0 > EPS).max_by(|&x, &y| {
        let (ox, oy) = (offers[estimable[x]].name, offers[estimable[y]].name);
        intervals.uplift[x]
            .0
            .total_cmp(&intervals.uplift[y].0)
            .then(points[x].1.total_cmp(&points[y].1))
            .then(oy.cmp(ox))
    });
    let recommendation = best.map(|j| {
        let up = (points[j].1 - smartlink) * 1000.0;
        let (lo, hi) = (intervals.uplift[j].0 * 1000.0, intervals.uplift[j].1 * 1000.0);
        let name = offers[estimable[j]].name;
        json!({
            "offer": name,
            "uplift_per_1000": round4(up),
            "ci_per_1000": [round4(lo), round4(hi)],
            "text": format!(
                "{} → offer {}: {} per 1,000 clicks, 95% CI [{}, {}]",
                key.label(),
                name,
                money(up, true),
                money(lo, false),
                money(hi, false)
            ),
        })
    });
    let note = if recommendation.is_some() {
        None
    } else {
        thin_note(&offers, &estimable, &points, &intervals, smartlink, opts.min_offer_clicks)
    };

    json!({
        "segment": key.json(),
        "clicks": n,
        "fallback_clicks": fallback,
        "smartlink_epc": round4(smartlink),
        "smartlink_ci": pair(intervals.smartlink, 1.0),
        "offers": offer_rows,
        "recommendation": recommendation,
        "note": note,
    })
}

/// Why a segment without a recommendation might still hide one, or None
/// when the smartlink does at least as well as every offer it could judge.
fn thin_note(
    offers: &[OfferInfo],
    estimable: &[usize],
    points: &[(f64, f64)],
    intervals: &Intervals,
    smartlink: f64,
    min_offer_clicks: u64,
) -> Option<String> {
    if offers.is_empty() {
        return Some("evidence too thin: no click was routed to an offer here (all fallback)".into());
    }
    let mut parts = Vec::new();
    let promising = (0..estimable.len())
        .filter(|&j| points[j].1 - smartlink > EPS)
        .max_by(|&x, &y| points[x].1.total_cmp(&points[y].1));
    if let Some(j) = promising {
        parts.push(format!(
            "offer {} might add {} per 1,000 clicks but the 95% CI [{}, {}] includes zero",
            offers[estimable[j]].name,
            money((points[j].1 - smartlink) * 1000.0, true),
            money(intervals.uplift[j].0 * 1000.0, false),
            money(intervals.uplift[j].1 * 1000.0, false)
        ));
    }
    let thin: Vec<String> = (0..offers.len())
        .filter(|k| !estimable.contains(k))
        .map(|k| format!("{} ({})", offers[k].name, offers[k].clicks))
        .collect();
    if !thin.is_empty() {
        if estimable.is_empty() {
            parts.push(format!("no offer has at least {min_offer_clicks} routed clicks here"));
        }
        parts.push(format!(
            "{} {} fewer than {min_offer_clicks} routed clicks and {} not estimated",
            if thin.len() == 1 { "offer" } else { "offers" },
            thin.join(", ") + if thin.len() == 1 { " has" } else { " have" },
            if thin.len() == 1 { "was" } else { "were" },
        ));
    }
    (!parts.is_empty()).then(|| format!("evidence too thin: {}", parts.join("; ")))
}

/// Paired percentile bootstrap: `resamples` draws of n clicks with
/// replacement, every estimate recomputed from the same draw. One reused
/// accumulator; O(resamples × n) time.
fn bootstrap(obs: &[Obs], groups: usize, estimable: &[usize], resamples: usize, seed: u64) -> Intervals {
    let n = obs.len();
    let nf = n as f64;
    let mut rng = SplitMix64(seed);
    let mut acc = vec![Sums::default(); groups];
    let mut sl = Vec::with_capacity(resamples);
    let mut dr = vec![0.0; estimable.len() * resamples];
    let mut up = vec![0.0; estimable.len() * resamples];
    for b in 0..resamples {
        acc.fill(Sums::default());
        for _ in 0..n {
            let o = &obs[rng.below(n)];
            acc[o.k as usize].add(o);
        }
        let s = acc.iter().map(|s| s.r).sum::<f64>() / nf;
        sl.push(s);
        for (j, &k) in estimable.iter().enumerate() {
            let d = acc[k].estimates(nf).1;
            dr[j * resamples + b] = d;
            up[j * resamples + b] = d - s;
        }
    }
    let interval = |v: &mut [f64]| {
        v.sort_unstable_by(f64::total_cmp);
        (quantile(v, 0.025), quantile(v, 0.975))
    };
    Intervals {
        smartlink: interval(&mut sl),
        dr: dr.chunks_mut(resamples).map(interval).collect(),
        uplift: up.chunks_mut(resamples).map(interval).collect(),
    }
}

/// Normal approximation: mean ± 1.96 standard errors of the per-click terms
/// rᵢ (smartlink), m̂ + 1[oᵢ = X](rᵢ − m̂)/pᵢ (DR) and their difference.
fn normal(obs: &[Obs], full: &[Sums], estimable: &[usize], smartlink: f64, points: &[(f64, f64)]) -> Intervals {
    let n = obs.len() as f64;
    let half = |ss: f64| if n > 1.0 { Z95 * (ss / (n - 1.0) / n).sqrt() } else { 0.0 };
    let ss_sl: f64 = obs.iter().map(|o| (o.r - smartlink).powi(2)).sum();
    let h = half(ss_sl);
    let mut dr = Vec::with_capacity(estimable.len());
    let mut uplift = Vec::with_capacity(estimable.len());
    for (j, &k) in estimable.iter().enumerate() {
        let m = if full[k].n > 0.0 { full[k].r / full[k].n } else { 0.0 };
        let (mean_dr, mean_up) = (points[j].1, points[j].1 - smartlink);
        let (mut ss_dr, mut ss_up) = (0.0, 0.0);
        for o in obs {
            let phi = if o.k as usize == k { m + (o.r - m) * o.w } else { m };
            ss_dr += (phi - mean_dr).powi(2);
            ss_up += (phi - o.r - mean_up).powi(2);
        }
        let (hd, hu) = (half(ss_dr), half(ss_up));
        dr.push((mean_dr - hd, mean_dr + hd));
        uplift.push((mean_up - hu, mean_up + hu));
    }
    Intervals { smartlink: (smartlink - h, smartlink + h), dr, uplift }
}

/// Linearly interpolated quantile of sorted, non-empty values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The splitmix64 generator: tiny, fast and stable across crate versions,
/// which keeps audits reproducible from their seed.
struct SplitMix64(u64);

impl SplitMix64 {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (multiply-shift; bias below n / 2⁶⁴).
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Rounds to 4 decimals (and turns -0 into 0).
fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4 + 0.0
}

fn pair((lo, hi): (f64, f64), scale: f64) -> Value {
    json!([round4(lo * scale), round4(hi * scale)])
}

/// `1 click`, `12 clicks`.
fn plural(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `$1,234.50`, `-$3.00`, or with `signed` `+$1,234.50`.
fn money(x: f64, signed: bool) -> String {
    let cents = (x * 100.0).round();
    let sign = if cents < 0.0 {
        "-"
    } else if signed && cents > 0.0 {
        "+"
    } else {
        ""
    };
    let cents = cents.abs() as u64;
    let digits = (cents / 100).to_string();
    let mut whole = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            whole.push(',');
        }
        whole.push(ch);
    }
    format!("{sign}${whole}.{:02}", cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    /// One way the router may route a click: offer (None = fallback), the
    /// probability it is chosen (also the logged propensity), conversion rate
    /// and payout.
    type Arm<'a> = (Option<&'a str>, f64, f64, f64);

    /// `n` clicks of one segment, routed at random among `arms`.
    fn routed(rng: &mut Pcg64, n: usize, segment: (&str, &str, &str), arms: &[Arm]) -> Vec<AuditClick> {
        (0..n)
            .map(|_| {
                let mut u: f64 = rng.random();
                let arm = arms
                    .iter()
                    .find(|a| {
                        u -= a.1;
                        u < 0.0
                    })
                    .unwrap_or(arms.last().unwrap());
                let revenue = if rng.random::<f64>() < arm.2 { arm.3 } else { 0.0 };
                AuditClick {
                    country: segment.0.into(),
                    device: segment.1.into(),
                    os: segment.2.into(),
                    offer: arm.0.map(String::from),
                    propensity: arm.1,
                    revenue,
                }
            })
            .collect()
    }

    fn offer<'a>(segment: &'a Value, name: &str) -> &'a Value {
        segment["offers"].as_array().unwrap().iter().find(|o| o["offer"] == name).unwrap()
    }

    fn f(v: &Value) -> f64 {
        v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
    }

    fn mean_revenue<'a>(clicks: impl Iterator<Item = &'a AuditClick>) -> f64 {
        let (n, s) = clicks.fold((0.0, 0.0), |(n, s), c| (n + 1.0, s + c.revenue));
        s / n
    }

    #[test]
    fn an_even_split_recommends_the_offer_that_converts_five_times_better() {
        let mut rng = Pcg64::seed_from_u64(1);
        let clicks = routed(
            &mut rng,
            4000,
            ("US", "desktop", "windows"),
            &[(Some("o1"), 0.5, 0.10, 1.0), (Some("o2"), 0.5, 0.02, 1.0)],
        );
        let out = audit(&clicks, &AuditOptions::default());
        let segments = out["segments"].as_array().unwrap();
        assert_eq!(segments.len(), 1, "a single OS is not split out: {out:#}");
        let s = &segments[0];
        assert_eq!(s["segment"], json!({"country": "US", "device": "desktop", "os": null}));
        assert_eq!(s["clicks"], 4000);
        assert!((f(&s["smartlink_epc"]) - 0.06).abs() < 0.012, "{s:#}");
        for (name, epc) in [("o1", 0.10), ("o2", 0.02)] {
            let o = offer(s, name);
            assert!((f(&o["ips_epc"]) - epc).abs() < 0.02, "{name}: {o:#}");
            assert!((f(&o["dr_epc"]) - epc).abs() < 0.02, "{name}: {o:#}");
            assert_eq!(o["min_propensity"], 0.5);
            let ci = o["ci"].as_array().unwrap();
            assert!(f(&ci[0]) < f(&o["dr_epc"]) && f(&o["dr_epc"]) < f(&ci[1]), "{o:#}");
        }
        assert_eq!(s["offers"][0]["offer"], "o1", "best offer first");
        let rec = &s["recommendation"];
        assert_eq!(rec["offer"], "o1", "{s:#}");
        assert!((f(&rec["uplift_per_1000"]) - 40.0).abs() < 12.0, "{rec:#}");
        let ci = rec["ci_per_1000"].as_array().unwrap();
        assert!(f(&ci[0]) > 0.0 && f(&ci[0]) < f(&rec["uplift_per_1000"]) && f(&ci[1]) > f(&rec["uplift_per_1000"]));
        let text = rec["text"].as_str().unwrap();
        assert!(
            text.starts_with("US/desktop → offer o1: +$") && text.contains(" per 1,000 clicks, 95% CI [$"),
            "{text}"
        );
        assert!(s["note"].is_null());
        assert_eq!(out["thin_segments"], json!([]));
    }

    #[test]
    fn ips_stays_unbiased_under_unequal_logged_propensities() {
        let mut rng = Pcg64::seed_from_u64(2);
        let clicks = routed(
            &mut rng,
            20_000,
            ("DE", "mobile", "android"),
            &[(Some("o1"), 0.8, 0.10, 1.0), (Some("o2"), 0.2, 0.02, 1.0)],
        );
        let out = audit(&clicks, &AuditOptions::default());
        let s = &out["segments"][0];
        for (name, epc) in [("o1", 0.10), ("o2", 0.02)] {
            let o = offer(s, name);
            let naive = mean_revenue(clicks.iter().filter(|c| c.offer.as_deref() == Some(name)));
            assert!((f(&o["ips_epc"]) - epc).abs() < 0.008, "{name}: {o:#}");
            assert!((f(&o["dr_epc"]) - epc).abs() < 0.008, "{name}: {o:#}");
            // With one propensity per offer the naive per-offer mean is unbiased too...
            assert!((naive - f(&o["dr_epc"])).abs() < 0.0001, "{name}: naive {naive} vs {o:#}");
        }
        // ...but the smartlink's blend is 0.8 × 0.10 + 0.2 × 0.02, not either offer's EPC.
        let sl = f(&s["smartlink_epc"]);
        assert!((sl - 0.084).abs() < 0.006, "{s:#}");
        assert!((f(&offer(s, "o1")["uplift_per_1000"]) - 16.0).abs() < 6.0, "{s:#}");
    }

    #[test]
    fn ips_and_dr_correct_the_naive_mean_when_propensities_vary_within_a_segment() {
        // Half the clicks (say, daytime) convert at 20% on o1 and the router sends 90% of them there;
        // the other half never convert on o1 and get it 10% of the time. Sending everything to o1
        // earns 0.5 × 0.20 = 0.10 per click, while o1's own clicks average 0.18.
        let mut rng = Pcg64::seed_from_u64(3);
        let mut clicks = routed(
            &mut rng,
            10_000,
            ("FR", "desktop", "macos"),
            &[(Some("o1"), 0.9, 0.20, 1.0), (Some("o2"), 0.1, 0.05, 1.0)],
        );
        clicks.extend(routed(
            &mut rng,
            10_000,
            ("FR", "desktop", "macos"),
            &[(Some("o1"), 0.1, 0.0, 1.0), (Some("o2"), 0.9, 0.05, 1.0)],
        ));
        let out = audit(&clicks, &AuditOptions { bootstrap: 100, ..AuditOptions::default() });
        let o1 = offer(&out["segments"][0], "o1");
        let naive = mean_revenue(clicks.iter().filter(|c| c.offer.as_deref() == Some("o1")));
        assert!((naive - 0.18).abs() < 0.015, "naive {naive}");
        assert!((f(&o1["ips_epc"]) - 0.10).abs() < 0.012, "{o1:#}");
        assert!((f(&o1["dr_epc"]) - 0.10).abs() < 0.012, "{o1:#}");
    }

    #[test]
    fn a_thin_segment_is_listed_apart_and_gets_no_recommendation() {
        let mut rng = Pcg64::seed_from_u64(4);
        let mut clicks = routed(
            &mut rng,
            4000,
            ("US", "desktop", "windows"),
            &[(Some("o1"), 0.5, 0.10, 1.0), (Some("o2"), 0.5, 0.02, 1.0)],
        );
        clicks.extend(routed(
            &mut rng,
            50,
            ("BR", "tablet", "ios"),
            &[(Some("o1"), 0.5, 0.5, 1.0), (Some("o2"), 0.5, 0.0, 1.0)],
        ));
        let out = audit(&clicks, &AuditOptions::default());
        let segments = out["segments"].as_array().unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0]["segment"]["country"], "US");
        assert_eq!(
            out["thin_segments"],
            json!([{
                "segment": {"country": "BR", "device": "tablet", "os": null},
                "clicks": 50,
                "note": "50 clicks; at least 200 are needed",
            }])
        );
    }

    #[test]
    fn no_recommendation_when_the_smartlink_already_sends_everything_to_the_best_offer() {
        let mut rng = Pcg64::seed_from_u64(5);
        let clicks = routed(&mut rng, 4000, ("US", "desktop", "windows"), &[(Some("o1"), 1.0, 0.10, 1.0)]);
        let out = audit(&clicks, &AuditOptions::default());
        let s = &out["segments"][0];
        let o1 = offer(s, "o1");
        assert_eq!(o1["dr_epc"], s["smartlink_epc"]);
        assert_eq!(o1["ips_epc"], s["smartlink_epc"]);
        assert_eq!(o1["uplift_per_1000"], 0.0);
        assert_eq!(o1["uplift_ci_per_1000"], json!([0.0, 0.0]));
        assert!(s["recommendation"].is_null(), "{s:#}");
        assert!(s["note"].is_null(), "nothing is missing: {s:#}");
    }

    #[test]
    fn the_same_seed_gives_the_same_output() {
        let mut rng = Pcg64::seed_from_u64(6);
        let mut clicks = routed(
            &mut rng,
            3000,
            ("US", "desktop", "windows"),
            &[(Some("o1"), 0.7, 0.05, 2.0), (Some("o2"), 0.3, 0.04, 2.0)],
        );
        clicks.extend(routed(
            &mut rng,
            1000,
            ("US", "desktop", "linux"),
            &[(Some("o1"), 0.5, 0.05, 2.0), (None, 0.5, 0.01, 1.0)],
        ));
        let opts = AuditOptions { seed: 11, ..AuditOptions::default() };
        let a = audit(&clicks, &opts);
        assert_eq!(a, audit(&clicks, &opts));
        let mut reversed = clicks.clone();
        reversed.reverse();
        let b = audit(&reversed, &AuditOptions { seed: 12, ..opts.clone() });
        assert_ne!(a, b, "another seed resamples differently");
        assert_eq!(a["segments"][0]["smartlink_epc"], b["segments"][0]["smartlink_epc"], "point estimates do not move");
    }

    #[test]
    fn fallback_clicks_count_in_the_smartlink_epc_but_are_never_a_candidate() {
        let mut rng = Pcg64::seed_from_u64(7);
        let clicks = routed(
            &mut rng,
            4000,
            ("IN", "mobile", "android"),
            &[(Some("o1"), 0.5, 0.05, 1.0), (None, 0.5, 0.30, 1.0)],
        );
        let out = audit(&clicks, &AuditOptions::default());
        let s = &out["segments"][0];
        let fallback = clicks.iter().filter(|c| c.offer.is_none()).count();
        assert_eq!(s["fallback_clicks"], fallback);
        assert_eq!(f(&s["smartlink_epc"]), round4(mean_revenue(clicks.iter())));
        assert!((f(&s["smartlink_epc"]) - 0.175).abs() < 0.02);
        let offers = s["offers"].as_array().unwrap();
        assert_eq!(offers.len(), 1, "{s:#}");
        assert_eq!(offers[0]["offer"], "o1");
        assert!(f(&offers[0]["uplift_per_1000"]) < 0.0);
        assert!(s["recommendation"].is_null());
        assert!(s["note"].is_null());
    }

    #[test]
    fn an_offer_with_few_routed_clicks_is_thin_and_never_recommended() {
        let mut rng = Pcg64::seed_from_u64(8);
        let mut clicks = routed(
            &mut rng,
            4000,
            ("US", "desktop", "windows"),
            &[(Some("o1"), 0.5, 0.05, 1.0), (Some("o2"), 0.5, 0.05, 1.0)],
        );
        // 20 lucky clicks of a rarely chosen offer, logged below the propensity floor.
        clicks.extend(routed(&mut rng, 20, ("US", "desktop", "windows"), &[(Some("o3"), 0.005, 1.0, 5.0)]));
        let out = audit(&clicks, &AuditOptions::default());
        let s = &out["segments"][0];
        let o3 = offer(s, "o3");
        assert!(o3["dr_epc"].is_null() && o3["ips_epc"].is_null() && o3["ci"].is_null(), "{o3:#}");
        assert_eq!(o3["note"], "20 routed clicks; at least 30 are needed before it is estimated");
        assert_eq!(o3["min_propensity"], MIN_PROPENSITY);
        assert_eq!(o3["clipped_clicks"], 20);
        assert_eq!(s["offers"][2]["offer"], "o3", "thin offers come last");
        assert!(s["recommendation"].is_null(), "{s:#}");
        let note = s["note"].as_str().unwrap();
        assert!(note.starts_with("evidence too thin: ") && note.contains("offer o3 (20) has fewer than 30"), "{note}");
    }

    #[test]
    fn an_inconclusive_uplift_is_called_thin_evidence_rather_than_recommended() {
        // 150 clicks each: o1 converted 9 times, o2 6 times. o1 looks +$10 per 1,000 clicks better
        // than the blend, with a standard error of about $12.6.
        let clicks: Vec<AuditClick> = (0..300)
            .map(|i| AuditClick {
                country: "US".into(),
                device: "desktop".into(),
                os: "windows".into(),
                offer: Some(if i % 2 == 0 { "o1" } else { "o2" }.into()),
                propensity: 0.5,
                revenue: if (i % 2 == 0 && i < 18) || (i % 2 == 1 && i < 12) { 1.0 } else { 0.0 },
            })
            .collect();
        let out = audit(&clicks, &AuditOptions::default());
        let s = &out["segments"][0];
        assert_eq!(offer(s, "o1")["uplift_per_1000"], 10.0);
        assert!(s["recommendation"].is_null(), "{s:#}");
        let note = s["note"].as_str().unwrap();
        assert!(note.starts_with("evidence too thin: offer o1 might add +$10.00 per 1,000 clicks but the 95% CI [-$"));
        assert!(note.ends_with("] includes zero"), "{note}");
    }

    #[test]
    fn zero_negative_and_nan_propensities_are_clipped() {
        let mut rng = Pcg64::seed_from_u64(10);
        let mut clicks = routed(
            &mut rng,
            300,
            ("US", "desktop", "windows"),
            &[(Some("o1"), 0.5, 0.1, 1.0), (Some("o2"), 0.5, 0.1, 1.0)],
        );
        for (i, c) in clicks.iter_mut().enumerate() {
            c.propensity = [0.0, f64::NAN, -1.0, 0.5][i % 4];
        }
        let out = audit(&clicks, &AuditOptions::default());
        let s = &out["segments"][0];
        for name in ["o1", "o2"] {
            let o = offer(s, name);
            assert_eq!(o["min_propensity"], MIN_PROPENSITY);
            assert!(f(&o["clipped_clicks"]) > 0.0);
            assert!(f(&o["ips_epc"]).is_finite() && f(&o["dr_epc"]).is_finite());
            assert!(o["ci"].as_array().unwrap().iter().all(|v| v.is_f64()), "{o:#}");
        }
    }

    #[test]
    fn os_subsegments_are_audited_when_each_has_enough_clicks() {
        let mut rng = Pcg64::seed_from_u64(11);
        let arms: &[Arm] = &[(Some("o1"), 0.5, 0.1, 1.0), (Some("o2"), 0.5, 0.1, 1.0)];
        let mut clicks = routed(&mut rng, 300, ("US", "mobile", "android"), arms);
        clicks.extend(routed(&mut rng, 100, ("US", "mobile", "ios"), arms));
        clicks.extend(routed(&mut rng, 250, ("GB", "desktop", "windows"), arms));
        let out = audit(&clicks, &AuditOptions::default());
        let names: Vec<(Value, Value)> =
            out["segments"].as_array().unwrap().iter().map(|s| (s["segment"].clone(), s["clicks"].clone())).collect();
        assert_eq!(
            names,
            vec![
                (json!({"country": "US", "device": "mobile", "os": null}), json!(400)),
                (json!({"country": "US", "device": "mobile", "os": "android"}), json!(300)),
                (json!({"country": "GB", "device": "desktop", "os": null}), json!(250)),
            ]
        );
        let unsplit = audit(&clicks, &AuditOptions { split_by_os: false, ..AuditOptions::default() });
        assert_eq!(unsplit["segments"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn without_resamples_the_normal_approximation_still_finds_the_better_offer() {
        let mut rng = Pcg64::seed_from_u64(12);
        let clicks = routed(
            &mut rng,
            4000,
            ("US", "desktop", "windows"),
            &[(Some("o1"), 0.5, 0.10, 1.0), (Some("o2"), 0.5, 0.02, 1.0)],
        );
        let normal = audit(&clicks, &AuditOptions { bootstrap: 0, ..AuditOptions::default() });
        let boot = audit(&clicks, &AuditOptions::default());
        assert!(normal["estimator"].as_str().unwrap().ends_with("95% normal-approximation CI"));
        assert!(boot["estimator"].as_str().unwrap().ends_with("95% bootstrap CI"));
        let (rn, rb) = (&normal["segments"][0]["recommendation"], &boot["segments"][0]["recommendation"]);
        assert_eq!(rn["offer"], "o1");
        assert_eq!(rn["uplift_per_1000"], rb["uplift_per_1000"]);
        // Both intervals are about ±2 standard errors (≈ ±7.5 per 1,000) wide.
        for (a, b) in rn["ci_per_1000"].as_array().unwrap().iter().zip(rb["ci_per_1000"].as_array().unwrap()) {
            assert!((f(a) - f(b)).abs() < 2.0, "normal {rn:#} vs bootstrap {rb:#}");
        }
    }

    #[test]
    fn empty_input_gives_empty_lists() {
        let out = audit(&[], &AuditOptions::default());
        assert_eq!(out["segments"], json!([]));
        assert_eq!(out["thin_segments"], json!([]));
        assert!(out["estimator"].as_str().unwrap().starts_with("doubly robust"));
    }

    #[test]
    fn money_is_signed_and_grouped_in_thousands() {
        assert_eq!(money(100.0, true), "+$100.00");
        assert_eq!(money(1234.567, true), "+$1,234.57");
        assert_eq!(money(-3.004, true), "-$3.00");
        assert_eq!(money(0.001, true), "$0.00");
        assert_eq!(money(1_000_000.0, false), "$1,000,000.00");
    }

    /// `cargo test --release -p smartlink-server --lib audit -- --ignored --nocapture`
    #[test]
    #[ignore = "timing run; use --release"]
    fn a_million_clicks_over_fifty_segments_take_seconds() {
        let mut rng = Pcg64::seed_from_u64(13);
        let mut clicks = Vec::with_capacity(1_000_000);
        for s in 0..50 {
            let (country, device, os) = (format!("C{}", s / 2), ["desktop", "mobile"][s % 2], ["a", "b"]);
            for os in os {
                clicks.extend(routed(
                    &mut rng,
                    10_000,
                    (&country, device, os),
                    &[
                        (Some("o1"), 0.5, 0.05, 1.0),
                        (Some("o2"), 0.3, 0.04, 1.5),
                        (Some("o3"), 0.15, 0.02, 1.0),
                        (None, 0.05, 0.0, 0.0),
                    ],
                ));
            }
        }
        let start = std::time::Instant::now();
        let out = audit(&clicks, &AuditOptions::default());
        let took = start.elapsed();
        eprintln!("audited {} clicks in {took:?}", clicks.len());
        assert_eq!(out["segments"].as_array().unwrap().len(), 150);
    }
}
