//! Outbound postbacks (smartlink → affiliate / traffic source), delivered
//! from the durable outbox in the store, off the click and postback paths.
//!
//! Each (conversion, status, target) is queued once (a unique key in the
//! store), so a conversion fires once per status however often the
//! advertiser repeats it. Delivery: a GET with a 10 s timeout; 2xx is
//! success; anything else is retried with exponential backoff and jitter
//! (base × 2^attempt, capped at 12 h, × a random factor in [0.5, 1.5)) until
//! `max_attempts`, then marked failed (visible and retryable through the
//! admin API). Redirects are followed by hand, at most 3, and never to a
//! private, loopback or link-local address. Every attempt is stored with
//! its HTTP status and latency. The queue lives in the store, so it
//! survives restarts.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smartlink_core::template::{format_amount, Macro, MacroSet, MacroValues, Template};
use smartlink_store::{Attempt, OutboxItem, OutboxState};

use crate::postback::is_private;
use crate::state::AppState;

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub base_secs: f64,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base_secs: 60.0, max_attempts: 14 }
    }
}

impl RetryPolicy {
    /// Delay before attempt number `attempts + 1`, given a jitter in [0, 1).
    pub fn delay_ms(&self, attempts: u32, jitter: f64) -> i64 {
        let exp = (self.base_secs * 2f64.powi(attempts.min(30) as i32)).min(12.0 * 3600.0);
        (exp * (0.5 + jitter) * 1000.0) as i64
    }
}

struct Values<'a> {
    item: &'a OutboxItem,
    offer: &'a str,
    smartlink: &'a str,
    base_currency: &'a str,
}

impl MacroValues for Values<'_> {
    fn write(&self, m: Macro, out: &mut String) {
        let c = &self.item.conversion;
        match m {
            Macro::ClickId => out.push_str(&c.click_id),
            Macro::Sub(i) => {
                if let Some(s) = &c.subs {
                    out.push_str(&s[(i as usize).clamp(1, 5) - 1]);
                }
            }
            Macro::Payout => {
                let paid = if self.item.status.pays() { c.payout_base * self.item.payout_share } else { 0.0 };
                format_amount(paid, out)
            }
            Macro::Currency => out.push_str(self.base_currency),
            Macro::Status => out.push_str(self.item.status.as_str()),
            Macro::Event => out.push_str(&c.event),
            Macro::OfferId => out.push_str(self.offer),
            Macro::Smartlink => out.push_str(self.smartlink),
            Macro::Country => out.push_str(&c.country),
            Macro::Txid => out.push_str(&c.txid),
            Macro::Device | Macro::Os | Macro::Browser | Macro::Affiliate => {}
        }
    }
}

/// Expands an outbox item's URL template.
pub fn expand(item: &OutboxItem, offer: &str, smartlink: &str, base_currency: &str) -> Result<String, String> {
    let t = Template::parse(&item.url, MacroSet::Postback).map_err(|e| e.to_string())?;
    Ok(t.expand(&Values { item, offer, smartlink, base_currency }))
}

/// One HTTP GET with manual, checked redirects. Returns the final status.
pub fn deliver(agent: &ureq::Agent, url: &str) -> Result<u16, String> {
    let mut url = url.to_string();
    for _ in 0..=3 {
        let resp = agent.get(&url).call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if !(300..400).contains(&status) {
            return Ok(status);
        }
        let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) else {
            return Ok(status);
        };
        let next = if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            return Err(format!("redirect to a relative or non-HTTP location {loc:?} refused"));
        };
        let host = next.split("://").nth(1).unwrap_or("").split(['/', '?', '#']).next().unwrap_or("");
        let host_port = if host.contains(':') && !host.starts_with('[') || host.ends_with(']') || host.contains("]:") {
            host.to_string()
        } else if next.starts_with("https://") {
            format!("{host}:443")
        } else {
            format!("{host}:80")
        };
        let addrs: Vec<_> =
            host_port.to_socket_addrs().map_err(|e| format!("cannot resolve redirect host {host}: {e}"))?.collect();
        if addrs.is_empty() || addrs.iter().any(|a| is_private(a.ip())) {
            return Err(format!("redirect to a private address ({host}) refused"));
        }
        url = next;
    }
    Err("too many redirects".into())
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent("smartlink-postback/1")
        .build()
        .into()
}

/// Deliveries claimed at a time.
const CLAIM: usize = 10;
/// How long a claim holds its items: every one of a batch may take its
/// attempt's worst case (a 10 s timeout per request, three redirects
/// followed), one after another, with room to spare. A node that dies
/// holding a claim leaves its items to another node after this.
const CLAIM_LEASE_MS: i64 = CLAIM as i64 * 4 * 10_000 + 60_000;

/// Delivers everything due, forever (until the task is dropped).
pub async fn run(app: Arc<AppState>, policy: RetryPolicy, poll: Duration) {
    let agent = agent();
    loop {
        let now = (app.clock)();
        let store = app.store.clone();
        // Claimed, not just read: several nodes deliver from one outbox,
        // and a claimed item is leased for longer than its batch takes.
        let due = tokio::task::spawn_blocking(move || store.claim_outbox(now, CLAIM, CLAIM_LEASE_MS)).await;
        match due {
            Ok(Ok(items)) if !items.is_empty() => {
                for item in items {
                    let (app2, agent2) = (app.clone(), agent.clone());
                    let _ = tokio::task::spawn_blocking(move || attempt(&app2, &agent2, &item, policy)).await;
                }
                continue;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "reading the outbox failed"),
            _ => {}
        }
        tokio::time::sleep(poll).await;
    }
}

fn attempt(app: &AppState, agent: &ureq::Agent, item: &OutboxItem, policy: RetryPolicy) {
    let now = (app.clock)();
    let c = &item.conversion;
    // The click row may still be in the click queue: wait for it briefly so
    // the affiliate gets its sub-ids.
    if c.subs.is_none() && now - c.click_ts_ms < 60_000 {
        // Not an attempt: nothing was sent.
        if let Err(e) = app.store.postpone_outbox(item.id, now + 2_000) {
            tracing::error!(error = %e, "postponing an outbound postback failed");
        }
        return;
    }
    let catalog = app.catalog.load();
    let offer = catalog.offer_by_key(c.offer).map(|o| o.id.to_string()).unwrap_or_default();
    let slug = catalog.smartlink_by_key(c.smartlink).map(|s| s.slug.to_string()).unwrap_or_default();
    let base = app.postbacks.load().base_currency.clone();
    let started = Instant::now();
    let (url, result) = match expand(item, &offer, &slug, &base) {
        Ok(url) => {
            let r = deliver(agent, &url);
            (url, r)
        }
        Err(e) => (String::new(), Err(format!("bad template: {e}"))),
    };
    let latency_ms = started.elapsed().as_millis() as i64;
    let (http_status, error) = match &result {
        Ok(s) => (Some(*s), None),
        Err(e) => (None, Some(e.clone())),
    };
    let ok = matches!(result, Ok(s) if (200..300).contains(&s));
    let attempts = item.attempts + 1;
    let (next, next_at_ms) = if ok {
        (OutboxState::Delivered, now)
    } else if attempts >= policy.max_attempts {
        (OutboxState::Failed, now)
    } else {
        (OutboxState::Pending, now + policy.delay_ms(item.attempts, rand::random::<f64>()))
    };
    // The URL may carry the affiliate's own ids but no secret of ours; log
    // only the target and the outcome.
    match next {
        OutboxState::Delivered => {
            tracing::info!(target_name = %item.target, conversion = c.id, http_status, latency_ms, "outbound postback delivered")
        }
        OutboxState::Pending => {
            tracing::warn!(target_name = %item.target, conversion = c.id, http_status, error, latency_ms, attempts, "outbound postback failed; will retry")
        }
        OutboxState::Failed => {
            tracing::error!(target_name = %item.target, conversion = c.id, http_status, error, attempts, "outbound postback failed for good")
        }
    }
    let result = match next {
        OutboxState::Delivered => 0,
        OutboxState::Pending => 1,
        OutboxState::Failed => 2,
    };
    app.metrics.outbound[result].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let a = Attempt { ts_ms: now, http_status, latency_ms, error, url, next, next_at_ms };
    if let Err(e) = app.store.record_attempt(item.id, &a) {
        tracing::error!(error = %e, "recording an outbound attempt failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retry_schedule_spans_more_than_a_day_in_at_least_ten_attempts() {
        let p = RetryPolicy::default();
        assert!(p.max_attempts >= 10);
        // Worst case (lowest jitter) still spans 24 h before the last attempt.
        let total: i64 = (0..p.max_attempts - 1).map(|a| p.delay_ms(a, 0.0)).sum();
        assert!(total >= 24 * 3600 * 1000, "{} h", total / 3_600_000);
        assert_eq!(p.delay_ms(0, 0.5), 60_000);
        assert_eq!(p.delay_ms(1, 0.5), 120_000);
        assert_eq!(p.delay_ms(30, 0.5), 12 * 3600 * 1000, "capped at 12 h");
    }
}
