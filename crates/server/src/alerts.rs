//! The drift-alert task: every few minutes (never on the click path) it runs
//! the detector ([`smartlink_analysis::alerts`]) over every smartlink,
//! stores new alerts, logs them and sends them to the optional webhook. Each
//! run also records cap transitions seen on the live counters in the change
//! history as automatic events (`capped (daily_clicks)`, `resumed`), actor
//! `system`, and raises a `capped` alert (and `capped_early` when it came
//! unusually early) for each smartlink whose pool holds the offer. The
//! transitions start from the history's last cap event per offer, so a
//! restart neither repeats `capped` nor misses `resumed`.

use smartlink_analysis::alerts::{capped_early, detect, gather, row_json};
use smartlink_store::Kind;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

/// Whether each offer's last cap event in the change history says it is
/// at a cap (`capped (...)`) or not (`resumed ...`, or none), by key.
async fn caps_recorded(
    app: &std::sync::Arc<crate::state::AppState>,
) -> anyhow::Result<std::collections::HashMap<u32, bool>> {
    let catalog = app.catalog.load_full();
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = std::collections::HashMap::new();
        for o in &catalog.offers {
            let last = store
                .history(Some(Kind::Offer), Some(o.id.as_str()), 1000)?
                .into_iter()
                .filter(|r| r.action == "event")
                .find_map(|r| {
                    let s = r.new_spec.unwrap_or_default();
                    if s.contains("\"capped (") {
                        Some(true)
                    } else if s.contains("\"resumed") {
                        Some(false)
                    } else {
                        None
                    }
                });
            out.insert(o.key, last.unwrap_or(false));
        }
        Ok(out)
    })
    .await?
}

/// Runs the detector every `interval` over every smartlink, forever (until
/// the task is dropped). New alerts (one per kind, smartlink, offer or
/// segment and day) are stored, logged and sent to the webhook.
pub async fn run(app: std::sync::Arc<crate::state::AppState>, interval: std::time::Duration, webhook: Option<String>) {
    let agent = crate::outbound::agent();
    let mut since = (app.clock)() - interval.as_millis() as i64;
    // Offers seen at a cap at the last run (by key), first as the change
    // history last recorded them: a restart neither repeats a `capped`
    // event nor misses the `resumed` of a cap lifted while it was down.
    let mut capped = match caps_recorded(&app).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the offers' last cap events; starting from none");
            std::collections::HashMap::new()
        }
    };
    loop {
        tokio::time::sleep(interval).await;
        if !app.leads() {
            // Another node holds the leader lease and runs the detector.
            since = (app.clock)();
            continue;
        }
        let now = (app.clock)();
        let catalog = app.catalog.load_full();
        let slugs: Vec<String> = catalog.smartlinks.iter().map(|s| s.slug.to_string()).collect();
        // Cap transitions, from the live counters (exact on one node; with
        // several, as of this node's last lease and conversion refresh), with
        // the smartlinks whose pool holds the offer.
        let mut transitions = Vec::new();
        for (i, o) in catalog.offers.iter().enumerate() {
            let t = smartlink_core::time::local(o.targeting.timezone, now);
            let at = match catalog.cap_mode {
                smartlink_core::caps::CapMode::Local => o.counters.reached(&o.caps, t.day),
                // An allowance empty for a moment is not the cap.
                smartlink_core::caps::CapMode::Leased => o.counters.reached_in_total(&o.caps, t.day),
            };
            let was = capped.insert(o.key, at.is_some()).unwrap_or(false);
            let pools = || -> Vec<String> {
                catalog.smartlinks.iter().filter(|s| s.offers.contains(&i)).map(|s| s.slug.to_string()).collect()
            };
            match (was, at) {
                (false, Some(kind)) => {
                    transitions.push((o.id.to_string(), o.targeting.timezone, Some(kind.as_str()), pools()))
                }
                (true, None) => transitions.push((o.id.to_string(), o.targeting.timezone, None, Vec::new())),
                _ => {}
            }
        }
        let store = app.store.clone();
        let from = since;
        let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<smartlink_store::AlertRow>> {
            let mut rows = Vec::new();
            for (offer, tz, kind, pools) in transitions {
                let Some(kind) = kind else {
                    store.record_event(Kind::Offer, &offer, "resumed (cap no longer reached)", now)?;
                    continue;
                };
                // Minutes after local midnight of earlier cap hits of this offer.
                let minute = |ts: i64| {
                    let t = smartlink_core::time::local(tz, ts);
                    (t.day, t.hour as u32 * 60 + (ts.rem_euclid(HOUR) / 60_000) as u32)
                };
                let (today, now_min) = minute(now);
                let mut usual: Vec<u32> = store
                    .history(Some(Kind::Offer), Some(&offer), 1000)?
                    .into_iter()
                    .filter(|r| r.action == "event" && r.ts_ms >= now - 8 * DAY)
                    .filter(|r| r.new_spec.as_deref().is_some_and(|s| s.contains("\"capped (")))
                    .map(|r| minute(r.ts_ms))
                    .filter(|(day, _)| *day != today)
                    .map(|(_, m)| m)
                    .collect();
                store.record_event(Kind::Offer, &offer, &format!("capped ({kind})"), now)?;
                let at = format!("{:02}:{:02}", now_min / 60, now_min % 60);
                let early = capped_early(now_min, &mut usual);
                // One alert per smartlink whose pool holds the offer: a cap
                // hit, and when it came unusually early, that too.
                for slug in pools {
                    let mut found = vec![(
                        "capped",
                        format!("{slug}: offer {offer} reached its {kind} cap at {at}; the rest of the pool takes its clicks"),
                    )];
                    if let Some(median) = early {
                        found.push((
                            "capped_early",
                            format!(
                                "{slug}: offer {offer} reached its {kind} cap at {at}, usually around {:02}:{:02}",
                                median / 60,
                                median % 60
                            ),
                        ));
                    }
                    for (alert, message) in found {
                        let row = smartlink_store::AlertRow {
                            id: 0,
                            ts_ms: now,
                            kind: alert.into(),
                            smartlink: slug.clone(),
                            offer: Some(offer.clone()),
                            segment: None,
                            message,
                        };
                        let dedup = format!("{alert}|{slug}|{offer}|{}", now.div_euclid(DAY));
                        if let Some(id) = store.record_alerts(&[(row.clone(), dedup)])?.first().copied().flatten() {
                            rows.push(smartlink_store::AlertRow { id, ..row });
                        }
                    }
                }
            }
            for slug in slugs {
                let pool: Vec<String> = crate::defs::load_defs(&*store)?
                    .defs
                    .smartlinks
                    .iter()
                    .find(|s| s.slug == slug)
                    .map(|s| s.offers.clone())
                    .unwrap_or_default();
                let Some(input) = gather(&*store, &slug, &pool, now, from)? else { continue };
                for a in detect(&input) {
                    let day = now.div_euclid(DAY);
                    let dedup = format!(
                        "{}|{}|{}|{}|{day}",
                        a.kind,
                        a.smartlink,
                        a.offer.as_deref().unwrap_or(""),
                        a.segment.as_deref().unwrap_or("")
                    );
                    let row = smartlink_store::AlertRow {
                        id: 0,
                        ts_ms: now,
                        kind: a.kind.into(),
                        smartlink: a.smartlink,
                        offer: a.offer,
                        segment: a.segment,
                        message: a.message,
                    };
                    if let Some(id) = store.record_alerts(&[(row.clone(), dedup)])?.first().copied().flatten() {
                        rows.push(smartlink_store::AlertRow { id, ..row });
                    }
                }
            }
            Ok(rows)
        })
        .await;
        since = now;
        let rows = match found {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the alert detector failed; retrying next interval");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "the alert detector panicked");
                continue;
            }
        };
        for r in rows {
            app.metrics.alerts_raised.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(kind = %r.kind, smartlink = %r.smartlink, "alert: {}", r.message);
            if let Some(url) = webhook.clone() {
                let agent = agent.clone();
                let body = row_json(&r).to_string();
                let sent = tokio::task::spawn_blocking(move || {
                    agent.post(&url).header("content-type", "application/json").send(body).map(|r| r.status().as_u16())
                })
                .await;
                match sent {
                    Ok(Ok(s)) if (200..300).contains(&s) => {}
                    Ok(Ok(s)) => tracing::warn!(status = s, "the alert webhook answered with an error status"),
                    _ => tracing::warn!("the alert webhook could not be reached"),
                }
            }
        }
    }
}
