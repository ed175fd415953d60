//! The simulator's runs as this node keeps them: what a run produced (the
//! API's `Simulation`, its HTML report) and the one-at-a-time gate. A
//! leaf module (it names no other module of the crate), so that `state`
//! can hold it without joining the handlers' cycle with `openapi`; the
//! handlers are in [`crate::simulations`].

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Runs kept per node (newest first; the oldest is forgotten).
pub const KEEP: usize = 10;

/// The runs this node keeps, and the one-at-a-time gate.
pub struct Simulations {
    running: Arc<tokio::sync::Semaphore>,
    kept: Mutex<VecDeque<Arc<Kept>>>,
}

/// A run and its HTML report.
pub struct Kept {
    pub summary: Simulation,
    pub html: String,
}

impl Default for Simulations {
    fn default() -> Self {
        Simulations { running: Arc::new(tokio::sync::Semaphore::new(1)), kept: Mutex::new(VecDeque::new()) }
    }
}

impl Simulations {
    /// The right to run, while no other run holds it (`None`: one does).
    pub fn gate(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.running.clone().try_acquire_owned().ok()
    }

    /// Keeps a run, first; past [`KEEP`] the oldest is forgotten.
    pub fn keep(&self, k: Kept) {
        let mut q = self.kept.lock();
        q.push_front(Arc::new(k));
        q.truncate(KEEP);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Kept>> {
        self.kept.lock().iter().find(|k| k.summary.id == id).cloned()
    }

    /// The kept runs, newest first.
    pub fn list(&self) -> Vec<Simulation> {
        self.kept.lock().iter().map(|k| k.summary.clone()).collect()
    }
}

/// One strategy's scores, as `smartlink simulate --json` gives them
/// (FORMAT.md; money and ratios rounded to 4 decimals).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StrategyScore {
    pub strategy: String,
    /// The true expected value of the offers it chose, summed.
    pub expected_revenue: f64,
    /// What was paid.
    pub revenue: f64,
    /// Approved conversions.
    pub conversions: u64,
    /// `expected_revenue` over the oracle's, on the same clicks.
    pub oracle_ratio: f64,
    /// Conversions not approved.
    pub rejected: u64,
    /// Clicks no offer accepted.
    pub fallback_clicks: u64,
}

/// An event of the scenario, as the report's charts number them.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SimulationEvent {
    /// Hours from the start.
    pub at_hour: u32,
    pub label: String,
}

/// A run: what was run and how each strategy scored.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Simulation {
    pub id: String,
    /// The bundled scenario run; null for one sent as text.
    pub example: Option<String>,
    /// The scenario's `name`.
    pub scenario: String,
    pub seed: u64,
    /// Clicks in the run's click stream (every strategy saw the same).
    pub clicks: u64,
    pub duration_hours: u32,
    /// The simulated clock's start (unix ms).
    pub start_ms: i64,
    /// Offer ids in pool order (added offers last).
    pub offers: Vec<String>,
    pub events: Vec<SimulationEvent>,
    /// The oracle first, then the strategies asked for.
    pub results: Vec<StrategyScore>,
    /// When it was run (unix ms).
    pub created_ms: i64,
    /// How long it ran.
    pub elapsed_ms: u64,
    /// The HTML report's URL.
    pub report: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str) -> Kept {
        let summary = Simulation {
            id: id.to_string(),
            example: None,
            scenario: "s".into(),
            seed: 1,
            clicks: 0,
            duration_hours: 1,
            start_ms: 0,
            offers: vec![],
            events: vec![],
            results: vec![],
            created_ms: 0,
            elapsed_ms: 0,
            report: format!("/api/v1/simulations/{id}.html"),
        };
        Kept { summary, html: String::new() }
    }

    #[test]
    fn the_node_keeps_its_last_runs_newest_first() {
        let sims = Simulations::default();
        for i in 0..KEEP + 2 {
            sims.keep(run(&format!("id{i}")));
        }
        let ids: Vec<String> = sims.list().into_iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), KEEP);
        assert_eq!(ids[0], format!("id{}", KEEP + 1));
        assert!(sims.get("id0").is_none() && sims.get("id1").is_none() && sims.get("id2").is_some());
    }

    #[test]
    fn one_run_at_a_time_holds_the_gate() {
        let sims = Simulations::default();
        let first = sims.gate().unwrap();
        assert!(sims.gate().is_none(), "taken while the first runs");
        drop(first);
        assert!(sims.gate().is_some(), "free again once the first run ends");
    }
}
