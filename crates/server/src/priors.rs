//! The network prior (issue 20): what every `auto` smartlink's router has
//! learned, summed per offer and segment
//! ([`smartlink_core::router::NetworkPrior`]), handed back to each of them
//! as the prior above its own learning, so a new smartlink routes by what
//! its offers showed on the others from its first click.
//!
//! Rebuilt at start-up (after the replay) and then every
//! `server.network_prior_secs` (default 300; 0 turns it off) on a thread
//! of its own, off the click path. Each router's lock is held only while
//! its own counts are read, then while the new prior is handed over
//! (clicks that find it held pick from the published policy,
//! `router::shared`). A smartlink added between two rebuilds gets the
//! current prior when its catalog is swapped in
//! (`Catalog::inherit_state`). On several nodes each node builds its own
//! from its routers, which every node's clicks and conversions teach.
//! Direct links and `weighted`/`priority` smartlinks do not route by the
//! router, which learns nothing there, so they add nothing to it.

use std::sync::Arc;
use std::time::Duration;

use smartlink_core::model::{Catalog, Strategy};
use smartlink_core::router::{NetworkBuilder, NetworkPrior};

use crate::state::AppState;

/// Default of `server.network_prior_secs`.
pub const DEFAULT_INTERVAL_SECS: u64 = 300;

/// Sums the `auto` smartlinks' routers of `catalog` as of `now` and gives
/// every one of them the result; `None` (nothing changed) without any.
pub fn rebuild(catalog: &Catalog, now: i64) -> Option<Arc<NetworkPrior>> {
    let auto: Vec<_> = catalog.smartlinks.iter().filter(|s| s.strategy == Strategy::Auto).collect();
    if auto.is_empty() {
        return None;
    }
    let mut b = NetworkBuilder::new(now);
    for sl in &auto {
        b.add(&sl.router.lock());
    }
    let prior = Arc::new(b.finish());
    for sl in &auto {
        sl.router.lock().set_network(Some(prior.clone()));
    }
    Some(prior)
}

/// Starts the rebuilding thread; stops with the server.
pub fn start(state: &Arc<AppState>, every: Duration) {
    let weak = Arc::downgrade(state);
    let spawned = std::thread::Builder::new().name("network-prior".into()).spawn(move || loop {
        let Some(app) = weak.upgrade() else { return };
        let started = std::time::Instant::now();
        if let Some(prior) = rebuild(&app.catalog.load(), (app.clock)()) {
            tracing::debug!(
                routers = prior.routers(),
                took_ms = started.elapsed().as_millis() as u64,
                "network prior rebuilt"
            );
        }
        drop(app);
        std::thread::sleep(every);
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the network prior; each smartlink learns from its own traffic only");
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use smartlink_core::model::{Country, Device, Os, Segment};
    use smartlink_core::router::{Candidate, Context, ConversionStatus};

    use super::*;

    const T0: i64 = 1_767_571_200_000;

    fn catalog() -> Catalog {
        let yaml = r#"
advertisers: [{id: adv, postback_token: t}]
affiliates: [{id: aff}]
offers:
  - {id: a, advertiser: adv, url: "https://a.example/", payout: 1.0}
  - {id: b, advertiser: adv, url: "https://b.example/", payout: 1.0}
smartlinks:
  - {slug: old, affiliate: aff, offers: [a, b], fallback_url: "https://f.example/"}
  - {slug: new, affiliate: aff, offers: [a, b], fallback_url: "https://f.example/"}
  - {slug: fixed, affiliate: aff, offers: [a, b], fallback_url: "https://f.example/", strategy: priority}
"#;
        let defs: crate::config::Definitions = crate::config::parse_yaml(yaml).unwrap();
        let keys = crate::config::provisional_keys(&defs, &Default::default());
        crate::config::build_catalog(&defs, &keys).unwrap()
    }

    #[test]
    fn a_rebuild_hands_every_auto_smartlink_what_the_others_learned() {
        let cat = catalog();
        let (old, new) = (&cat.smartlinks[0], &cat.smartlinks[1]);
        let keys: Vec<u32> = old.offers.iter().map(|&i| cat.offers[i].key).collect();
        let cands: Vec<Candidate> =
            keys.iter().map(|&key| Candidate { key, payout: 1.0, caps: Default::default() }).collect();
        let seg = Segment { country: Country::parse("US").unwrap(), device: Device::Mobile, os: Os::Android };
        // The old smartlink learns that offer a converts at 10%, b at 1%.
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
        {
            let mut r = old.router.lock();
            for i in 0..20_000i64 {
                let now = T0 + i * 5_000;
                let ctx = Context { segment: seg, hour: ((now / 3_600_000) % 24) as u8, now_ms: now };
                let pick = r.choose(&cands, &ctx, &mut rng).index;
                r.on_click(keys[pick], &ctx);
                if rand::Rng::random::<f64>(&mut rng) < [0.10, 0.01][pick] {
                    r.on_conversion(keys[pick], seg, now, now, None, ConversionStatus::Approved);
                }
            }
        }
        let now = T0 + 20_000 * 5_000;
        let ctx = Context { segment: seg, hour: 0, now_ms: now };
        let before = new.router.lock().estimates(&cands, &ctx);
        assert_eq!(before[0].cr, before[1].cr, "the new smartlink knows nothing yet");
        let prior = rebuild(&cat, now).expect("auto smartlinks");
        assert_eq!(prior.routers(), 2, "the priority smartlink's router learns nothing and is left out");
        let after = new.router.lock().estimates(&cands, &ctx);
        assert!(after[0].cr > 3.0 * after[1].cr, "the new smartlink starts from the old one's rates: {after:?}");
        assert!(cat.smartlinks[2].router.lock().network().is_none());
    }

    #[test]
    fn a_smartlink_added_between_two_rebuilds_gets_the_current_prior() {
        let prev = catalog();
        rebuild(&prev, T0).unwrap();
        let mut next = catalog();
        // `next` has the same keys: inherits the routers. A smartlink new
        // to the catalog has a router of its own, which must get the prior.
        let fresh = smartlink_core::router::SharedRouter::default();
        next.smartlinks[1].router = Arc::new(fresh);
        next.smartlinks[1].key += 1000;
        next.inherit_state(&prev);
        assert!(next.smartlinks[1].router.lock().network().is_some());
        assert!(next.smartlinks[2].router.lock().network().is_none(), "not an auto smartlink");
    }
}
