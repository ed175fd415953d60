//! The click-rate counters' load: every rate window, the window's clicks are
//! published and compared with what the counters are sized for.

/// Clicks per window against what the click-rate counters are sized for.
#[derive(Debug)]
pub struct RateLoad {
    capacity: u64,
    last_total: u64,
    last_warning: Option<i64>,
}

/// Least time between two overload warnings.
const RATE_WARN_EVERY_MS: i64 = 3_600_000;

impl RateLoad {
    pub fn new(capacity: u64, total: u64) -> RateLoad {
        RateLoad { capacity, last_total: total, last_warning: None }
    }

    /// Called once a window with the running total of clicks judged:
    /// returns the window's clicks, and whether to warn now (over
    /// capacity, and no warning in the last hour).
    pub fn window(&mut self, total: u64, now_ms: i64) -> (u64, bool) {
        let clicks = total.saturating_sub(self.last_total);
        self.last_total = total;
        let warn =
            clicks > self.capacity && self.last_warning.is_none_or(|t| now_ms.saturating_sub(t) >= RATE_WARN_EVERY_MS);
        if warn {
            self.last_warning = Some(now_ms);
        }
        (clicks, warn)
    }
}

/// Every rate window: publishes the window's clicks and warns (at most
/// hourly) when they exceed the counters' capacity, since estimates then
/// grow with the traffic and clean visitors are flagged `rate_ip` /
/// `rate_ip_ua`.
pub async fn watch_rate_load(state: std::sync::Arc<crate::state::AppState>) {
    use std::sync::atomic::Ordering::Relaxed;
    let total = || state.metrics.quality.iter().map(|c| c.load(Relaxed)).sum::<u64>();
    let capacity = state.behaviour.capacity();
    state.metrics.rate_capacity.store(capacity, Relaxed);
    let window = std::time::Duration::from_secs(u64::from(state.behaviour.config().window_secs.max(1)));
    let mut load = RateLoad::new(capacity, total());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + window, window);
    loop {
        tick.tick().await;
        let (clicks, warn) = load.window(total(), (state.clock)());
        state.metrics.rate_window_clicks.store(clicks, Relaxed);
        if warn {
            tracing::warn!(
                clicks_per_window = clicks,
                capacity,
                "the click-rate counters saw more clicks than they are sized for: clean visitors may be \
                 flagged rate_ip / rate_ip_ua; raise server.quality.capacity_ips"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLoad;

    #[test]
    fn a_window_over_capacity_warns_once_an_hour_and_every_window_reports_its_clicks() {
        let mut l = RateLoad::new(1_000, 500);
        assert_eq!(l.window(1_400, 0), (900, false), "under capacity");
        assert_eq!(l.window(2_600, 60_000), (1_200, true), "over capacity: warn");
        assert_eq!(l.window(4_000, 120_000), (1_400, false), "warned less than an hour ago");
        assert_eq!(l.window(5_001, 3_660_000), (1_001, true), "an hour later: warn again");
        assert_eq!(l.window(5_001, 3_720_000), (0, false));
    }
}
