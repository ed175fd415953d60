//! The quality class a click is stored, rolled up, counted and acted on
//! under: the verdict, with link previews (bots by verdict) as their own class.

use super::{Quality, Verdict};

/// How a click is stored, rolled up and acted on: the verdict, with link
/// previews (bots by verdict) as their own class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QualityClass {
    Human = 0,
    Suspect = 1,
    Bot = 2,
    Preview = 3,
}

impl QualityClass {
    /// The classes' names as stored, reported and labelled in metrics, in
    /// [`QualityClass::ALL`] order.
    pub const NAMES: [&'static str; 4] = ["human", "suspect", "bot", "preview"];

    pub const ALL: [QualityClass; 4] =
        [QualityClass::Human, QualityClass::Suspect, QualityClass::Bot, QualityClass::Preview];

    #[inline]
    pub fn as_str(self) -> &'static str {
        QualityClass::NAMES[self as usize]
    }

    #[inline]
    pub fn parse(s: &str) -> Option<QualityClass> {
        QualityClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Bot and preview clicks: kept out of caps, routing and default EPC.
    #[inline]
    pub fn is_bot(self) -> bool {
        !Quality::flags_count(self.flags())
    }

    /// The click id flags of this class (see `Quality::flags`).
    #[inline]
    pub fn flags(self) -> u8 {
        match self {
            QualityClass::Human => 0,
            QualityClass::Suspect => 1,
            QualityClass::Bot => 2,
            QualityClass::Preview => 0b110,
        }
    }

    /// The class a click id's flags carry.
    #[inline]
    pub fn from_flags(flags: u8) -> QualityClass {
        match Quality::from_flags(flags) {
            (_, true) => QualityClass::Preview,
            (Verdict::Human, false) => QualityClass::Human,
            (Verdict::Suspect, false) => QualityClass::Suspect,
            (Verdict::Bot, false) => QualityClass::Bot,
        }
    }
}

#[inline]
pub fn class_of(q: &Quality) -> QualityClass {
    if q.is_preview() {
        return QualityClass::Preview;
    }
    match q.verdict {
        Verdict::Human => QualityClass::Human,
        Verdict::Suspect => QualityClass::Suspect,
        Verdict::Bot => QualityClass::Bot,
    }
}
