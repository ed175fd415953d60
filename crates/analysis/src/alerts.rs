//! Drift alerts: the detector the server runs every few minutes (never on
//! the click path) over the rollups and the change history. It raises
//! alerts — in `GET /api/v1/alerts`, a `warn` log line, and an optional
//! webhook — for:
//!
//! - `epc_drop`: the last 24 h's EPC is below the previous days' mean by
//!   more than 3 standard deviations of their daily EPC and by ≥ 15%;
//! - `offer_paused`, `payout_cut`: from the change history;
//! - `conversions_stopped`: an offer keeps receiving clicks but none of the
//!   clicks of the last hours converted, where its usual conversion rate
//!   makes that very unlikely (expected ≥ 5, so P(0) < 1%): a broken
//!   postback, most likely;
//! - `fallback_jump`: a segment's share of fallback clicks rose by ≥ 20
//!   points and ≥ 3 standard errors over its usual share;
//! - `capped_early`: an offer reached a daily cap more than 2 hours before
//!   the median time it did on at least 3 of the previous 8 days.
//!
//! [`detect`] is pure (inputs in, alerts out); [`gather`] reads its inputs
//! from the store. The background task that runs them, stores, logs and
//! sends the alerts is the server's (`smartlink_server::alerts`).

use serde_json::{json, Value};
use smartlink_store::{Dim, DimValue, Kind, Measures, RollupQuery, Store};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// What the detector looks at for one smartlink.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input {
    pub smartlink: String,
    /// Clicks and revenue of the last 24 h.
    pub current: (u64, f64),
    /// Clicks and revenue of each of the previous days (oldest first).
    pub days: Vec<(u64, f64)>,
    /// Per offer: clicks and conversions (any status) of the recent window
    /// and of the baseline window.
    pub offers: Vec<OfferWindow>,
    /// Per segment (`US/mobile`): (recent clicks, recent fallback clicks,
    /// baseline clicks, baseline fallback clicks).
    pub segments: Vec<(String, u64, u64, u64, u64)>,
    /// Offer events since the last run: (offer, time, what).
    pub events: Vec<(String, i64, String)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct OfferWindow {
    pub offer: String,
    pub recent_clicks: u64,
    pub recent_conversions: u64,
    pub base_clicks: u64,
    pub base_conversions: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub kind: &'static str,
    pub smartlink: String,
    pub offer: Option<String>,
    pub segment: Option<String>,
    pub message: String,
}

/// Clicks a day (and the last 24 h) needs to count in the EPC baseline.
const MIN_DAY_CLICKS: u64 = 100;

pub fn detect(i: &Input) -> Vec<Alert> {
    let mut out = Vec::new();
    let alert = |kind, offer: Option<&str>, segment: Option<&str>, message: String| Alert {
        kind,
        smartlink: i.smartlink.clone(),
        offer: offer.map(String::from),
        segment: segment.map(String::from),
        message,
    };
    // EPC drop beyond normal day-to-day variation.
    let epcs: Vec<f64> = i.days.iter().filter(|(c, _)| *c >= MIN_DAY_CLICKS).map(|(c, r)| r / *c as f64).collect();
    if epcs.len() >= 3 && i.current.0 >= MIN_DAY_CLICKS {
        let n = epcs.len() as f64;
        let mean = epcs.iter().sum::<f64>() / n;
        let sd = (epcs.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let now = i.current.1 / i.current.0 as f64;
        if mean > 0.0 && now < mean - 3.0 * sd && now < 0.85 * mean {
            out.push(alert(
                "epc_drop",
                None,
                None,
                format!(
                    "{}: EPC ${:.4} over the last 24 h vs ${:.4} ± {:.4} a day before ({:.0}% lower); run explain to see why",
                    i.smartlink,
                    now,
                    mean,
                    sd,
                    (1.0 - now / mean) * 100.0
                ),
            ));
        }
    }
    // Conversions stopped while clicks keep coming.
    for o in &i.offers {
        if o.base_clicks == 0 || o.base_conversions < 20 || o.recent_conversions > 0 {
            continue;
        }
        let expected = o.recent_clicks as f64 * o.base_conversions as f64 / o.base_clicks as f64;
        if expected >= 5.0 {
            out.push(alert(
                "conversions_stopped",
                Some(&o.offer),
                None,
                format!(
                    "offer {}: {} recent clicks and no conversion (≈ {:.0} expected at its usual rate): is its postback broken?",
                    o.offer, o.recent_clicks, expected
                ),
            ));
        }
    }
    // A segment suddenly falling through to the fallback.
    for (seg, rc, rf, bc, bf) in &i.segments {
        if *rc < 50 || *bc == 0 {
            continue;
        }
        let (p1, p0) = (*rf as f64 / *rc as f64, *bf as f64 / *bc as f64);
        let se = (p0.max(0.01) * (1.0 - p0.min(0.99)) / *rc as f64).sqrt();
        if p1 - p0 >= 0.2 && (p1 - p0) / se >= 3.0 {
            out.push(alert(
                "fallback_jump",
                None,
                Some(seg),
                format!(
                    "{} {seg}: {:.0}% of clicks went to the fallback in the last 24 h, usually {:.0}%: run coverage to see why",
                    i.smartlink,
                    p1 * 100.0,
                    p0 * 100.0
                ),
            ));
        }
    }
    // What the change history says happened to offers.
    for (offer, _, what) in &i.events {
        let kind = if what == "paused" {
            "offer_paused"
        } else if let Some((a, b)) = what.strip_prefix("payout ").and_then(|r| r.split_once(" → ")) {
            match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(a), Ok(b)) if b < a => "payout_cut",
                _ => continue,
            }
        } else {
            continue;
        };
        out.push(alert(kind, Some(offer), None, format!("{}: offer {offer} {what}", i.smartlink)));
    }
    out
}

/// Reads the detector's inputs for one smartlink at `now_ms`; offer events
/// are those since `since_ms`.
pub fn gather(
    store: &dyn Store,
    slug: &str,
    pool: &[String],
    now_ms: i64,
    since_ms: i64,
) -> anyhow::Result<Option<Input>> {
    let keys = store.keys()?;
    let Some(sl) = keys.iter().find(|(k, id, _)| *k == Kind::Smartlink && id == slug).map(|(_, _, k)| *k) else {
        return Ok(None);
    };
    let name =
        |kind: Kind, key: u32| keys.iter().find(|(k, _, v)| *k == kind && *v == key).map(|(_, id, _)| id.clone());
    let counted = vec![DimValue::Text("human".into()), DimValue::Text("suspect".into())];
    let q = |from: i64, to: i64, group: Vec<Dim>| RollupQuery {
        from_ms: from.div_euclid(HOUR) * HOUR,
        to_ms: to,
        filters: vec![(Dim::Smartlink, vec![DimValue::Key(sl)]), (Dim::Quality, counted.clone())],
        group,
        reasons: vec![],
    };
    let total = |rows: Vec<(Vec<DimValue>, Measures)>| {
        rows.into_iter().fold(Measures::default(), |mut a, (_, m)| {
            a.add(&m);
            a
        })
    };
    let cur = total(store.rollup(&q(now_ms - DAY, now_ms, vec![]))?);
    let mut days = Vec::new();
    for d in (1..=7).rev() {
        let m = total(store.rollup(&q(now_ms - (d + 1) * DAY, now_ms - d * DAY, vec![]))?);
        days.push((m.clicks, m.revenue));
    }
    // Offers: clicks of the last 6 h (ending an hour ago, so quick
    // postbacks had time) against the 7 days before.
    let conv = |m: &Measures| m.approved + m.pending + m.rejected + m.chargebacks;
    let recent = store.rollup(&q(now_ms - 7 * HOUR, now_ms - HOUR, vec![Dim::Offer]))?;
    let base = store.rollup(&q(now_ms - 8 * DAY, now_ms - DAY, vec![Dim::Offer]))?;
    let mut offers = Vec::new();
    for (k, m) in &recent {
        let [DimValue::Key(o)] = &k[..] else { continue };
        if *o == 0 {
            continue;
        }
        let b = base.iter().find(|(bk, _)| bk == k).map(|(_, m)| *m).unwrap_or_default();
        offers.push(OfferWindow {
            offer: name(Kind::Offer, *o).unwrap_or_else(|| format!("#{o}")),
            recent_clicks: m.clicks,
            recent_conversions: conv(m),
            base_clicks: b.clicks,
            base_conversions: conv(&b),
        });
    }
    let seg_rows = |from, to| -> anyhow::Result<std::collections::HashMap<String, (u64, u64)>> {
        let mut out = std::collections::HashMap::new();
        for (k, m) in store.rollup(&q(from, to, vec![Dim::Country, Dim::Device]))? {
            if let [DimValue::Text(c), DimValue::Text(d)] = &k[..] {
                out.insert(format!("{c}/{d}"), (m.clicks, m.fallback_clicks));
            }
        }
        Ok(out)
    };
    let (rs, bs) = (seg_rows(now_ms - DAY, now_ms)?, seg_rows(now_ms - 8 * DAY, now_ms - DAY)?);
    let segments = rs
        .into_iter()
        .map(|(s, (rc, rf))| {
            let (bc, bf) = bs.get(&s).copied().unwrap_or_default();
            (s, rc, rf, bc, bf)
        })
        .collect();
    // Offer events of this smartlink's offers.
    let events = crate::history::offer_events(store, since_ms, now_ms + 1)?
        .into_iter()
        .filter(|(o, _, _)| pool.iter().any(|p| p == o))
        .collect();
    Ok(Some(Input { smartlink: slug.into(), current: (cur.clicks, cur.revenue), days, offers, segments, events }))
}

/// Whether a cap reached at `minute` (after local midnight) is earlier than
/// usual: at least 3 earlier days on record and more than 2 hours before
/// their median. Returns that median.
pub fn capped_early(minute: u32, earlier: &mut [u32]) -> Option<u32> {
    if earlier.len() < 3 {
        return None;
    }
    earlier.sort_unstable();
    let median = earlier[earlier.len() / 2];
    (minute + 120 < median).then_some(median)
}

/// One stored alert as the API and the webhook show it.
pub fn row_json(r: &smartlink_store::AlertRow) -> Value {
    json!({ "id": r.id, "time_ms": r.ts_ms, "kind": r.kind, "smartlink": r.smartlink, "offer": r.offer,
            "segment": r.segment, "message": r.message })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A steady week: 1,000 clicks and $150 a day, every offer converting.
    fn steady() -> Input {
        Input {
            smartlink: "s".into(),
            current: (1000, 150.0),
            days: vec![(1000, 150.0), (1000, 140.0), (1000, 160.0), (1000, 155.0), (1000, 145.0)],
            offers: vec![OfferWindow {
                offer: "o1".into(),
                recent_clicks: 250,
                recent_conversions: 6,
                base_clicks: 7000,
                base_conversions: 210,
            }],
            segments: vec![("US/mobile".into(), 800, 40, 5600, 280)],
            events: vec![("o1".into(), 0, "payout 1.50 → 2.00".into())],
        }
    }

    #[test]
    fn a_cap_reached_hours_earlier_than_on_previous_days_is_early_and_a_usual_one_is_not() {
        let mut days = vec![14 * 60, 15 * 60, 14 * 60 + 30];
        assert_eq!(capped_early(9 * 60, &mut days), Some(14 * 60 + 30));
        assert_eq!(capped_early(13 * 60, &mut days), None, "within two hours of usual");
        assert_eq!(capped_early(9 * 60, &mut [14 * 60, 15 * 60]), None, "too little history to judge");
    }

    #[test]
    fn a_steady_smartlink_raises_nothing() {
        assert_eq!(detect(&steady()), vec![]);
    }

    #[test]
    fn an_epc_drop_beyond_normal_variation_is_raised_and_a_small_dip_is_not() {
        let mut i = steady();
        i.current = (1000, 100.0);
        let a = detect(&i);
        assert_eq!(a.iter().map(|a| a.kind).collect::<Vec<_>>(), ["epc_drop"]);
        assert!(a[0].message.contains("33% lower"), "{}", a[0].message);
        i.current = (1000, 138.0); // within the days' spread
        assert_eq!(detect(&i), vec![]);
    }

    #[test]
    fn an_offer_that_keeps_getting_clicks_but_no_conversions_is_raised() {
        let mut i = steady();
        i.offers[0].recent_conversions = 0;
        let a = detect(&i);
        assert_eq!((a[0].kind, a[0].offer.as_deref()), ("conversions_stopped", Some("o1")));
        // Too few clicks to expect any: silence is normal.
        i.offers[0].recent_clicks = 50;
        assert_eq!(detect(&i), vec![]);
    }

    #[test]
    fn a_jump_in_a_segment_s_fallback_share_is_raised() {
        let mut i = steady();
        i.segments[0].2 = 400;
        let a = detect(&i);
        assert_eq!((a[0].kind, a[0].segment.as_deref()), ("fallback_jump", Some("US/mobile")));
        assert!(a[0].message.contains("50%") && a[0].message.contains("usually 5%"), "{}", a[0].message);
    }

    #[test]
    fn a_pause_and_a_payout_cut_are_raised_but_a_payout_raise_is_not() {
        let mut i = steady();
        i.events = vec![
            ("o1".into(), 1, "paused".into()),
            ("o2".into(), 2, "payout 2.00 → 1.50".into()),
            ("o3".into(), 3, "payout 1.00 → 1.20".into()),
        ];
        let kinds: Vec<_> = detect(&i).iter().map(|a| (a.kind, a.offer.clone().unwrap())).collect();
        assert_eq!(kinds, [("offer_paused", "o1".to_string()), ("payout_cut", "o2".to_string())]);
    }
}
