//! The router: picks one offer among a smartlink's eligible offers for one
//! click, and learns from clicks and conversions.
//! (Placeholder: uniform choice; being replaced by the learning router.)

use rand::RngCore;

use crate::model::Segment;

/// Remaining daily capacity of a candidate, as the router may use it to pace.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CapView {
    pub clicks_left: Option<u64>,
    pub conversions_left: Option<u64>,
    /// Remaining daily budget in the base currency.
    pub budget_left: Option<f64>,
    /// Seconds until the offer's caps reset (its local midnight).
    pub secs_to_reset: u32,
}

/// One eligible offer, as the router sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Stable numeric offer key (the same across restarts and config changes).
    pub key: u32,
    /// Current payout per approved conversion, in the base currency.
    pub payout: f64,
    pub caps: CapView,
}

/// What the router knows about the click it routes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Context {
    pub segment: Segment,
    /// Hour of the day, UTC, `0..24`.
    pub hour: u8,
    /// Click time, milliseconds since the Unix epoch.
    pub now_ms: i64,
}

/// Why an offer (or the fallback) was chosen; stored with the click.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Override,
    BestScore,
    Exploration,
    Weighted,
    Priority,
    Fallback,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Override => "override",
            Reason::BestScore => "best_score",
            Reason::Exploration => "exploration",
            Reason::Weighted => "weighted",
            Reason::Priority => "priority",
            Reason::Fallback => "fallback",
        }
    }
}

/// The router's answer: an index into the candidates, why, and the
/// probability that this candidate would be chosen for this click.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    pub index: usize,
    pub reason: Reason,
    pub propensity: f64,
}

/// The final status of a conversion as the router learns from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversionStatus {
    Approved,
    Pending,
    Rejected,
}

/// Learned state of one smartlink.
#[derive(Debug, Default)]
pub struct RouterState {}

impl RouterState {
    pub fn new() -> RouterState {
        RouterState::default()
    }

    /// Picks one of `cands` (never empty).
    pub fn choose(&mut self, cands: &[Candidate], _ctx: &Context, rng: &mut dyn RngCore) -> Choice {
        let n = cands.len();
        let index = (rng.next_u64() % n as u64) as usize;
        Choice { index, reason: Reason::Exploration, propensity: 1.0 / n as f64 }
    }

    /// A click was sent to `offer_key` (called after the cap reservation).
    pub fn on_click(&mut self, _offer_key: u32, _ctx: &Context) {}

    /// A conversion (or a status change of one) arrived for a click.
    pub fn on_conversion(
        &mut self,
        _offer_key: u32,
        _segment: Segment,
        _click_ms: i64,
        _now_ms: i64,
        _previous: Option<ConversionStatus>,
        _status: ConversionStatus,
    ) {
    }
}
