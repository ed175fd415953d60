//! Learning from every node's clicks and conversions (issue 19): how a
//! stored click or conversion event is applied to a smartlink's router —
//! shared by the start-up replay (`rebuild_state`) and by the task that, on
//! a shared store, applies the other nodes' rows every few seconds, so
//! that two nodes route like one.
//!
//! A node learns its own clicks and postbacks as they happen (the click
//! path's `on_click`, the postback path's `apply_conversion`). Every row it
//! writes to a shared store carries its node id (random per start), so the
//! task reads only the others' rows: click rows and conversion history
//! rows after its marks, in `rid` order. The marks are exact because a
//! shared store numbers those rows in commit order (see
//! [`smartlink_store::LearnMarks`]); the start-up replay reads every row up
//! to the marks taken before it, and the task every row after them, so no
//! row is applied twice or missed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use smartlink_core::model::{Catalog, Smartlink};
use smartlink_core::router::Context as RouteCtx;
use smartlink_core::time::local;
use smartlink_core::{Country, Device, Os, Segment};
use smartlink_store::{LearnClick, LearnConversion, LearnMarks, Store};
use smartlink_visitor::quality::QualityClass;

use crate::metrics::LearnMetrics;
use crate::state::AppState;

/// Default of `server.learn_interval_secs`.
pub const DEFAULT_INTERVAL_SECS: f64 = 2.0;

/// Rows read per query.
const PAGE: usize = 10_000;

/// Rows applied under one hold of a smartlink's router lock: clicks that
/// find it held meanwhile take the published policy, so a hold stays
/// short.
const PER_LOCK: usize = 256;

/// Whether a click or conversion of this quality class reaches the router:
/// bot and preview clicks never do, as on the click path.
fn counts(quality: &str) -> bool {
    QualityClass::parse(quality).is_none_or(|q| !q.is_bot())
}

/// The smartlink's router and what its `on_click` is given for a stored
/// click, as on the click path: a routed (not fallback), counted click of
/// a smartlink (not a direct link) in the catalog, at its time and UTC hour.
pub fn click_target<'a>(catalog: &'a Catalog, c: &LearnClick) -> Option<(&'a Smartlink, u32, RouteCtx)> {
    let offer = c.offer?;
    let sl = catalog.smartlink_by_key(c.smartlink).filter(|sl| !sl.is_direct())?;
    if !counts(&c.quality) {
        return None;
    }
    let segment = Segment {
        country: Country::parse(&c.country).unwrap_or(Country::UNKNOWN),
        device: Device::parse(&c.device).unwrap_or(Device::Desktop),
        os: Os::parse(&c.os).unwrap_or(Os::Other),
    };
    Some((sl, offer, RouteCtx { segment, hour: local(chrono_tz::UTC, c.ts_ms).hour, now_ms: c.ts_ms }))
}

/// Applies a stored conversion event to its smartlink's router as the
/// postback path's `apply_conversion` does; `false` when it teaches
/// nothing (a direct link, a bot's click, an unknown smartlink or country).
pub fn apply_conversion(catalog: &Catalog, c: &LearnConversion) -> bool {
    let sl = catalog.smartlink_by_key(c.smartlink).filter(|sl| !sl.is_direct());
    let (Some(sl), Ok(country)) = (sl, Country::parse(&c.country)) else {
        return false;
    };
    if !counts(&c.quality) {
        return false;
    }
    let segment = Segment {
        country,
        device: Device::parse(&c.device).unwrap_or(Device::Desktop),
        os: Os::parse(&c.os).unwrap_or(Os::Other),
    };
    sl.router.lock().on_conversion(
        c.offer,
        segment,
        c.click_ts_ms,
        c.ts_ms,
        c.previous.map(|p| p.for_router()),
        c.status.for_router(),
    );
    true
}

/// Applies stored clicks in their order, holding each smartlink's router
/// lock for a run of up to [`PER_LOCK`] rows; returns how many taught it.
pub fn apply_clicks(catalog: &Catalog, clicks: &[LearnClick]) -> u64 {
    let mut applied = 0;
    let mut held: Option<(u32, smartlink_core::router::RouterGuard<'_>, usize)> = None;
    for c in clicks {
        let Some((sl, offer, ctx)) = click_target(catalog, c) else { continue };
        if !matches!(&held, Some((key, _, n)) if *key == sl.key && *n < PER_LOCK) {
            // The lock held is released before the next is taken.
            drop(held.take());
            held = Some((sl.key, sl.router.lock(), 0));
        }
        if let Some((_, guard, n)) = &mut held {
            guard.on_click(offer, &ctx);
            *n += 1;
        }
        applied += 1;
    }
    applied
}

/// One pass: reads the current marks, then every other node's row after
/// `marks` up to them, and applies them; `marks` moves with what was
/// applied, so a pass cut short by an error resumes where it stopped.
fn pass(
    state: &Weak<AppState>,
    store: &dyn Store,
    marks: &mut LearnMarks,
    metrics: &LearnMetrics,
) -> anyhow::Result<bool> {
    let Some(shared) = store.shared() else { return Ok(false) };
    let read_at = crate::state::system_clock();
    let upto = shared.learn_marks()?;
    // Clicks first: a conversion of a click made in the same interval is
    // learned after its click, as on one node.
    while marks.clicks < upto.clicks {
        let page = shared.learn_clicks(marks.clicks, upto.clicks, PAGE)?;
        let Some(app) = state.upgrade() else { return Ok(false) };
        let n = apply_clicks(&app.catalog.load(), &page);
        metrics.clicks.fetch_add(n, Relaxed);
        marks.clicks = if page.len() == PAGE { page.last().map_or(upto.clicks, |c| c.rid) } else { upto.clicks };
    }
    while marks.conversions < upto.conversions {
        let page = shared.learn_conversions(marks.conversions, upto.conversions, PAGE)?;
        let Some(app) = state.upgrade() else { return Ok(false) };
        let catalog = app.catalog.load();
        let n = page.iter().filter(|c| apply_conversion(&catalog, c)).count();
        metrics.conversions.fetch_add(n as u64, Relaxed);
        marks.conversions =
            if page.len() == PAGE { page.last().map_or(upto.conversions, |c| c.rid) } else { upto.conversions };
    }
    metrics.learned_at_ms.store(read_at, Relaxed);
    Ok(true)
}

/// Starts the learning task of a node on a shared store: every `every`,
/// the other nodes' rows after `marks` (those the start-up replay stopped
/// at) are applied to the routers. A thread of its own (the PostgreSQL
/// client blocks; it must never run on an async worker), at normal
/// priority: it applies only what other nodes served in an interval, and
/// an idle-class thread could be starved for as long as the machine is
/// busy. Stops with the server.
pub fn start(state: &Arc<AppState>, mut marks: LearnMarks, every: Duration) {
    let metrics = state.metrics.clone();
    metrics.learn.learned_at_ms.store(crate::state::system_clock(), Relaxed);
    metrics.learn.enabled.store(true, Relaxed);
    let weak = Arc::downgrade(state);
    let task_metrics = metrics.clone();
    let spawned = std::thread::Builder::new().name("cluster-learn".into()).spawn(move || {
        let metrics = task_metrics;
        let mut last_error: Option<Instant> = None;
        loop {
            std::thread::sleep(every);
            // The store only, between passes: holding the state would keep
            // the click queue open at shutdown.
            let Some(store) = weak.upgrade().map(|a| a.store.clone()) else { return };
            match pass(&weak, &*store, &mut marks, &metrics.learn) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    metrics.learn.errors.fetch_add(1, Relaxed);
                    // Once a minute at most: a store that is down fails every pass.
                    if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(error = %e, "learning from other nodes' rows failed; retrying");
                        last_error = Some(Instant::now());
                    }
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the learning task; this node learns from its own traffic only");
        metrics.learn.enabled.store(false, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartlink_store::ConvStatus;

    fn catalog() -> Catalog {
        let yaml = r#"
advertisers: [{id: adv, postback_token: t}]
affiliates: [{id: aff}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/", payout: 1.0}
  - {id: o2, advertiser: adv, url: "https://o2.example/", payout: 1.0}
smartlinks:
  - {slug: s, affiliate: aff, offers: [o1, o2], fallback_url: "https://f.example/"}
"#;
        let defs: crate::config::Definitions = crate::config::parse_yaml(yaml).unwrap();
        let keys = crate::config::provisional_keys(&defs, &Default::default());
        crate::config::build_catalog(&defs, &keys).unwrap()
    }

    fn click(sl: u32, offer: Option<u32>, quality: &str) -> LearnClick {
        LearnClick {
            rid: 1,
            click_id: "c".into(),
            ts_ms: 1_700_000_000_000,
            smartlink: sl,
            offer,
            country: "US".into(),
            device: "mobile".into(),
            os: "ios".into(),
            quality: quality.into(),
        }
    }

    #[test]
    fn only_routed_counted_clicks_of_a_smartlink_teach_its_router() {
        let cat = catalog();
        let sl = cat.smartlink("s").unwrap();
        let o1 = cat.offers[0].key;
        let direct = cat.direct_link("o1").unwrap().key;
        for (c, teaches) in [
            (click(sl.key, Some(o1), "human"), true),
            (click(sl.key, Some(o1), "suspect"), true),
            (click(sl.key, Some(o1), ""), true),
            (click(sl.key, Some(o1), "bot"), false),
            (click(sl.key, Some(o1), "preview"), false),
            (click(sl.key, None, "human"), false),
            (click(direct, Some(o1), "human"), false),
            (click(sl.key + 1000, Some(o1), "human"), false),
        ] {
            let before = sl.router.lock().events();
            assert_eq!(apply_clicks(&cat, std::slice::from_ref(&c)), teaches as u64, "{c:?}");
            assert_eq!(sl.router.lock().events() - before, teaches as u64, "{c:?}");
        }
    }

    #[test]
    fn a_conversion_event_teaches_as_the_postback_path_would() {
        let cat = catalog();
        let sl = cat.smartlink("s").unwrap();
        let event = |quality: &str, country: &str, previous| LearnConversion {
            rid: 1,
            conversion_id: 1,
            ts_ms: 1_700_000_060_000,
            click_ts_ms: 1_700_000_000_000,
            smartlink: sl.key,
            offer: cat.offers[1].key,
            country: country.into(),
            device: "mobile".into(),
            os: "ios".into(),
            quality: quality.into(),
            previous,
            status: ConvStatus::Approved,
        };
        let before = sl.router.lock().events();
        assert!(apply_conversion(&cat, &event("human", "US", None)));
        assert!(sl.router.lock().events() > before, "a new conversion is learned");
        assert!(!apply_conversion(&cat, &event("bot", "US", None)), "a bot's conversion teaches nothing");
        assert!(!apply_conversion(&cat, &event("human", "??", None)), "an unknown country is skipped, as at start-up");
        // A status change goes through with its previous status.
        assert!(apply_conversion(&cat, &event("human", "US", Some(ConvStatus::Pending))));
    }
}
