//! Conversion statuses and the rules for changing them.
//!
//! ```text
//! pending ──► approved ──► chargeback
//!    └──────► rejected
//! ```
//! A repeat of the current status is a duplicate; anything else is refused.
//! Rejected and chargeback conversions pay nothing but stay counted: they
//! are the quality signal the router and the audits use.

use crate::router::ConversionStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Chargeback,
}

/// What a postback with a given status does to an existing conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Same status again: nothing changes.
    Duplicate,
    /// A legal change of status.
    Change,
    /// Not a legal change (e.g. rejected → approved).
    Forbidden,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Pending, Status::Approved, Status::Rejected, Status::Chargeback];

    /// Parses a status as advertisers send it, with the common aliases
    /// (`1` approved, `2` pending, `3` rejected, `lead`/`sale` approved).
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "" | "approved" | "approve" | "1" | "lead" | "sale" | "confirmed" => Status::Approved,
            "pending" | "2" | "hold" => Status::Pending,
            "rejected" | "reject" | "declined" | "3" => Status::Rejected,
            "chargeback" | "refund" | "reversed" => Status::Chargeback,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Chargeback => "chargeback",
        }
    }

    /// Does a conversion in this status pay?
    pub fn pays(self) -> bool {
        self == Status::Approved
    }

    pub fn transition(self, to: Status) -> Transition {
        use Status::*;
        match (self, to) {
            (a, b) if a == b => Transition::Duplicate,
            (Pending, Approved) | (Pending, Rejected) | (Approved, Chargeback) => Transition::Change,
            _ => Transition::Forbidden,
        }
    }

    /// What the router learns from this status (a chargeback is a
    /// rejection after the fact).
    pub fn for_router(self) -> ConversionStatus {
        match self {
            Status::Pending => ConversionStatus::Pending,
            Status::Approved => ConversionStatus::Approved,
            Status::Rejected | Status::Chargeback => ConversionStatus::Rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn status_aliases_table() {
        for (s, want) in [
            ("approved", Some(Status::Approved)),
            ("approve", Some(Status::Approved)),
            ("confirmed", Some(Status::Approved)),
            (" Approved ", Some(Status::Approved)),
            ("1", Some(Status::Approved)),
            ("lead", Some(Status::Approved)),
            ("SALE", Some(Status::Approved)),
            ("", Some(Status::Approved)),
            ("pending", Some(Status::Pending)),
            ("2", Some(Status::Pending)),
            ("HOLD", Some(Status::Pending)),
            ("rejected", Some(Status::Rejected)),
            ("reject", Some(Status::Rejected)),
            ("declined", Some(Status::Rejected)),
            ("3", Some(Status::Rejected)),
            ("chargeback", Some(Status::Chargeback)),
            ("refund", Some(Status::Chargeback)),
            ("reversed", Some(Status::Chargeback)),
            ("4", None),
            ("maybe", None),
        ] {
            assert_eq!(Status::parse(s), want, "{s:?}");
        }
    }

    #[test]
    fn transitions_table() {
        use Status::*;
        use Transition::*;
        for (from, to, want) in [
            (Pending, Approved, Change),
            (Pending, Rejected, Change),
            (Approved, Chargeback, Change),
            (Approved, Approved, Duplicate),
            (Rejected, Approved, Forbidden),
            (Chargeback, Approved, Forbidden),
            (Approved, Pending, Forbidden),
            (Pending, Chargeback, Forbidden),
        ] {
            assert_eq!(from.transition(to), want, "{from:?} -> {to:?}");
        }
    }

    fn status() -> impl Strategy<Value = Status> {
        prop::sample::select(Status::ALL.to_vec())
    }

    proptest! {
        /// Any sequence of postbacks leaves a conversion in a state reachable
        /// by legal steps; it pays at most once, and never after a chargeback
        /// or a rejection.
        #[test]
        fn any_postback_sequence_follows_the_status_machine(seq in prop::collection::vec(status(), 1..12)) {
            let mut cur = seq[0];
            let mut paid = cur.pays() as i32;
            let mut ever_final = matches!(cur, Status::Rejected | Status::Chargeback);
            for &next in &seq[1..] {
                if cur.transition(next) == Transition::Change {
                    paid += match (cur.pays(), next.pays()) { (false, true) => 1, (true, false) => -1, _ => 0 };
                    cur = next;
                }
                ever_final |= matches!(cur, Status::Rejected | Status::Chargeback);
                prop_assert!((0..=1).contains(&paid));
                prop_assert!(!(ever_final && cur.pays()), "paid after a final status");
            }
        }
    }

    #[test]
    fn every_status_has_its_name_and_parses_back_from_it() {
        let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["pending", "approved", "rejected", "chargeback"]);
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }

    /// (status) -> (pays, what the router learns).
    #[test]
    fn only_an_approved_conversion_pays_and_the_router_hears_a_chargeback_as_a_rejection() {
        for (status, pays, router) in [
            (Status::Pending, false, ConversionStatus::Pending),
            (Status::Approved, true, ConversionStatus::Approved),
            (Status::Rejected, false, ConversionStatus::Rejected),
            (Status::Chargeback, false, ConversionStatus::Rejected),
        ] {
            assert_eq!((status.pays(), status.for_router()), (pays, router), "{status:?}");
        }
    }

    /// Every (from, to) pair.
    #[test]
    fn every_status_change_is_a_duplicate_a_legal_change_or_forbidden() {
        use Status::*;
        use Transition::*;
        let table = [
            [Duplicate, Change, Change, Forbidden],       // from pending
            [Forbidden, Duplicate, Forbidden, Change],    // from approved
            [Forbidden, Forbidden, Duplicate, Forbidden], // from rejected
            [Forbidden, Forbidden, Forbidden, Duplicate], // from chargeback
        ];
        for (from, row) in [Pending, Approved, Rejected, Chargeback].into_iter().zip(table) {
            for (to, want) in [Pending, Approved, Rejected, Chargeback].into_iter().zip(row) {
                assert_eq!(from.transition(to), want, "{from:?} -> {to:?}");
            }
        }
    }
}
