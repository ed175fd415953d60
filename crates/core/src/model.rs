//! The validated domain model: identifiers, segments, offers, smartlinks and
//! the immutable [`Catalog`] the click path reads.
//!
//! Values are parsed at the edge (`Country::parse`, `Id::parse`, ...) so that
//! everything inside the core can assume it is well formed.

use std::fmt;
use std::sync::Arc;

use crate::caps::OfferCounters;
use crate::router::SharedRouter;
use crate::targeting::Targeting;
use crate::template::Template;

/// Why a textual value was rejected; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn expected(what: &str, got: &str) -> ParseError {
    ParseError(format!("expected {what}, got {got:?}"))
}

/// ISO 3166-1 alpha-2 codes (officially assigned, plus XK for Kosovo).
/// `ZZ` is reserved by the standard for "unknown" and is what the click path
/// uses when the country cannot be determined.
const ISO_COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW ZZ";

/// `ISO_COUNTRIES` as a 26×26 table, built at compile time: validating a
/// code is one array read (it runs on every click, for the GeoIP answer).
const VALID: [bool; 676] = {
    let b = ISO_COUNTRIES.as_bytes();
    let mut t = [false; 676];
    let mut i = 0;
    while i + 1 < b.len() {
        t[(b[i] - b'A') as usize * 26 + (b[i + 1] - b'A') as usize] = true;
        i += 3;
    }
    t
};

/// A country as an ISO 3166-1 alpha-2 code, stored as two upper-case bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    /// The "unknown" country.
    pub const UNKNOWN: Country = Country(*b"ZZ");

    /// Parses an ISO 3166-1 alpha-2 code, case-insensitively.
    pub fn parse(s: &str) -> Result<Country, ParseError> {
        let b = s.as_bytes();
        if b.len() == 2 && b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() {
            let c = [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()];
            if VALID[(c[0] - b'A') as usize * 26 + (c[1] - b'A') as usize] {
                return Ok(Country(c));
            }
        }
        Err(expected("an ISO 3166-1 alpha-2 country code such as US", s))
    }

    /// Builds a country from two bytes already known to be a code (for
    /// example decoded from a signed click id); unknown codes become `ZZ`.
    pub fn from_bytes(b: [u8; 2]) -> Country {
        match std::str::from_utf8(&b) {
            Ok(s) => Country::parse(s).unwrap_or(Country::UNKNOWN),
            Err(_) => Country::UNKNOWN,
        }
    }

    pub fn bytes(self) -> [u8; 2] {
        self.0
    }

    pub fn as_str(&self) -> &str {
        // Always two ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }

    /// Dense index in `0..676`, for bit sets.
    pub fn index(self) -> usize {
        (self.0[0] - b'A') as usize * 26 + (self.0[1] - b'A') as usize
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! small_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn parse(s: &str) -> Result<$name, ParseError> {
                $(if s.eq_ignore_ascii_case($text) { return Ok($name::$variant); })+
                Err(expected(concat!($what, " (one of ", $($text, " "),+ , ")"), s))
            }

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Position in [`Self::ALL`], for bit masks and compact encodings.
            pub fn index(self) -> usize { self as usize }

            pub fn from_index(i: usize) -> Option<$name> { Self::ALL.get(i).copied() }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

small_enum!(
    /// Device class of the visitor.
    Device, "a device", { Desktop = "desktop", Mobile = "mobile", Tablet = "tablet" }
);
small_enum!(
    /// Operating-system family of the visitor.
    Os, "an OS", { Windows = "windows", Macos = "macos", Linux = "linux", Ios = "ios", Android = "android", Chromeos = "chromeos", Other = "other" }
);
small_enum!(
    /// Browser family of the visitor.
    Browser, "a browser", {
        Chrome = "chrome", Safari = "safari", Firefox = "firefox", Edge = "edge", Opera = "opera",
        Samsung = "samsung", Ie = "ie", Yandex = "yandex", Uc = "uc", Other = "other"
    }
);

/// The routing segment: what the router learns per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment {
    pub country: Country,
    pub device: Device,
    pub os: Os,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.country, self.device, self.os)
    }
}

/// A primary language subtag from `Accept-Language`, lower case (`en`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Language([u8; 2]);

impl Language {
    pub fn parse(s: &str) -> Result<Language, ParseError> {
        let b = s.as_bytes();
        if b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic) {
            Ok(Language([b[0].to_ascii_lowercase(), b[1].to_ascii_lowercase()]))
        } else {
            Err(expected("a two-letter ISO 639-1 language code such as en", s))
        }
    }

    /// The first language of an `Accept-Language` header, if any.
    pub fn from_accept_language(header: &str) -> Option<Language> {
        let first = header.split(',').next()?.split(';').next()?.trim();
        let primary = first.split(['-', '_']).next()?;
        Language::parse(primary).ok()
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Dense code in `0..676`.
    pub fn code(self) -> u16 {
        (self.0[0] - b'a') as u16 * 26 + (self.0[1] - b'a') as u16
    }

    pub fn from_code(c: u16) -> Option<Language> {
        (c < 676).then(|| Language([b'a' + (c / 26) as u8, b'a' + (c % 26) as u8]))
    }
}

impl fmt::Debug for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entity identifier or smartlink slug: `[A-Za-z0-9_-]{1,64}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(Arc<str>);

impl Id {
    pub fn parse(s: &str) -> Result<Id, ParseError> {
        let ok =
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Id(Arc::from(s)))
        } else {
            Err(expected("an id of 1 to 64 characters from A-Z a-z 0-9 _ -", s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}
impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// An ISO 4217 currency code, upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn parse(s: &str) -> Result<Currency, ParseError> {
        let b = s.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic) {
            Ok(Currency([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()]))
        } else {
            Err(expected("a three-letter ISO 4217 currency code such as USD", s))
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Paused,
}

/// Daily limits of an offer, reset at midnight in the offer's timezone.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Caps {
    pub daily_clicks: Option<u64>,
    pub daily_conversions: Option<u64>,
    /// Payout per day, in the base currency.
    pub daily_budget: Option<f64>,
}

/// A validated offer as the click path sees it.
#[derive(Debug)]
pub struct Offer {
    /// Stable numeric key (assigned by the store), carried in click ids.
    pub key: u32,
    pub id: Id,
    pub advertiser: Id,
    pub url: Template,
    /// Payout per approved conversion, in `currency`.
    pub payout: f64,
    pub currency: Currency,
    /// `payout` converted to the base currency; what the router compares.
    pub payout_base: f64,
    pub targeting: Targeting,
    pub caps: Caps,
    pub status: Status,
    /// Attribution window for postbacks, in seconds.
    pub attribution_window_secs: u64,
    /// Conversions arriving sooner than this after their click are flagged
    /// `short_ctit` (too fast for a person). 0 disables the check.
    pub min_ctit_secs: u32,
    /// Live counters; shared between catalog versions with the same key so a
    /// config change never resets today's counts.
    pub counters: Arc<OfferCounters>,
}

/// A segment routed straight to a hand-picked offer; the first match wins.
#[derive(Debug, Clone)]
pub struct Override {
    pub countries: Option<Vec<Country>>,
    pub devices: Option<Vec<Device>>,
    pub os: Option<Vec<Os>>,
    /// Index into the smartlink's `offers`.
    pub offer: usize,
}

impl Override {
    pub fn matches(&self, seg: &Segment) -> bool {
        self.countries.as_ref().is_none_or(|c| c.contains(&seg.country))
            && self.devices.as_ref().is_none_or(|d| d.contains(&seg.device))
            && self.os.as_ref().is_none_or(|o| o.contains(&seg.os))
    }
}

/// How a smartlink picks among its eligible offers (after overrides).
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// The learning router.
    Auto,
    /// Manual weights, one per offer in the smartlink's order.
    Weighted(Vec<f64>),
    /// The first eligible offer in the smartlink's order.
    Priority,
}

#[derive(Debug)]
pub struct Smartlink {
    pub key: u32,
    pub slug: Id,
    /// Owner, if any; also the affiliate credited when the click has no `aff`.
    pub affiliate: Option<usize>,
    /// Indices into [`Catalog::offers`].
    pub offers: Vec<usize>,
    pub fallback_url: Template,
    pub overrides: Vec<Override>,
    pub strategy: Strategy,
    /// What to do with bot, suspect and link-preview clicks.
    pub quality: QualityActions,
    /// Learned routing state; shared between catalog versions.
    pub router: Arc<SharedRouter>,
}

/// What a smartlink does with a click of one quality class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QualityAction {
    /// `403` (a blank `204` for link previews).
    Block,
    /// The smartlink's fallback URL.
    Fallback,
    /// The smartlink's neutral `safe_page` URL.
    SafePage,
    /// Routed as usual, tagged with its verdict.
    Allow,
}

impl QualityAction {
    pub const ALL: [QualityAction; 4] =
        [QualityAction::Block, QualityAction::Fallback, QualityAction::SafePage, QualityAction::Allow];

    pub fn as_str(self) -> &'static str {
        match self {
            QualityAction::Block => "block",
            QualityAction::Fallback => "fallback",
            QualityAction::SafePage => "safe_page",
            QualityAction::Allow => "allow",
        }
    }

    pub fn parse(s: &str) -> Option<QualityAction> {
        QualityAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Per-smartlink quality actions. Whatever the action, the click is
/// recorded with its verdict; bot and preview clicks never count toward
/// caps or train the router.
#[derive(Clone, Debug)]
pub struct QualityActions {
    pub bot: QualityAction,
    pub suspect: QualityAction,
    pub preview: QualityAction,
    /// Required when any action is `safe_page`.
    pub safe_page: Option<Template>,
}

impl Default for QualityActions {
    /// Bots go to the fallback URL (never to an advertiser), previews get a
    /// blank answer (no offer is revealed in a chat's preview card), and
    /// suspect clicks are routed and tagged.
    fn default() -> QualityActions {
        QualityActions {
            bot: QualityAction::Fallback,
            suspect: QualityAction::Allow,
            preview: QualityAction::Block,
            safe_page: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Affiliate {
    pub key: u32,
    pub id: Id,
}

/// The immutable set of definitions the click path reads. A change builds a
/// new catalog (carrying the live counters and router state over) and swaps
/// it in atomically; clicks in flight finish on the version they started on.
#[derive(Debug, Default)]
pub struct Catalog {
    pub offers: Vec<Offer>,
    pub smartlinks: Vec<Smartlink>,
    pub affiliates: Vec<Affiliate>,
    pub slug_index: std::collections::HashMap<Id, usize>,
    pub affiliate_index: std::collections::HashMap<Id, usize>,
    /// Numeric key → position, for attribution from click ids.
    offer_keys: std::collections::HashMap<u32, usize>,
    smartlink_keys: std::collections::HashMap<u32, usize>,
}

impl Catalog {
    /// Builds a catalog and its indexes. Offers' and smartlinks' `key`s must
    /// be unique (the store guarantees it).
    pub fn new(offers: Vec<Offer>, smartlinks: Vec<Smartlink>, affiliates: Vec<Affiliate>) -> Catalog {
        let slug_index = smartlinks.iter().enumerate().map(|(i, s)| (s.slug.clone(), i)).collect();
        let affiliate_index = affiliates.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
        let offer_keys = offers.iter().enumerate().map(|(i, o)| (o.key, i)).collect();
        let smartlink_keys = smartlinks.iter().enumerate().map(|(i, s)| (s.key, i)).collect();
        Catalog { offers, smartlinks, affiliates, slug_index, affiliate_index, offer_keys, smartlink_keys }
    }

    /// Takes over the live counters and learned router state of `prev` for
    /// every offer and smartlink that keeps its key, so a config change
    /// never resets today's caps or what the router has learned.
    pub fn inherit_state(&mut self, prev: &Catalog) {
        for o in &mut self.offers {
            if let Some(p) = prev.offer_by_key(o.key) {
                o.counters = p.counters.clone();
            }
        }
        for s in &mut self.smartlinks {
            if let Some(p) = prev.smartlink_by_key(s.key) {
                s.router = p.router.clone();
            }
        }
    }

    pub fn smartlink(&self, slug: &str) -> Option<&Smartlink> {
        self.slug_index.get(slug).map(|&i| &self.smartlinks[i])
    }

    pub fn smartlink_by_key(&self, key: u32) -> Option<&Smartlink> {
        self.smartlink_keys.get(&key).map(|&i| &self.smartlinks[i])
    }

    pub fn offer_by_key(&self, key: u32) -> Option<&Offer> {
        self.offer_keys.get(&key).map(|&i| &self.offers[i])
    }

    pub fn affiliate_by_key(&self, key: u32) -> Option<&Affiliate> {
        self.affiliates.iter().find(|a| a.key == key)
    }

    pub fn affiliate(&self, id: &str) -> Option<&Affiliate> {
        self.affiliate_index.get(id).map(|&i| &self.affiliates[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_parse_case_insensitively_and_reject_unassigned() {
        assert_eq!(Country::parse("us").unwrap().as_str(), "US");
        assert!(Country::parse("UK").is_err());
        assert!(Country::parse("USA").is_err());
        assert!(Country::parse("U1").is_err());
        let err = Country::parse("XX").unwrap_err().to_string();
        assert!(err.contains("ISO 3166-1"), "{err}");
    }

    #[test]
    fn the_code_table_holds_exactly_the_listed_codes() {
        let listed: Vec<&str> = ISO_COUNTRIES.split(' ').collect();
        assert_eq!(VALID.iter().filter(|v| **v).count(), listed.len());
        for code in listed {
            assert_eq!(Country::parse(code).unwrap().as_str(), code);
        }
    }

    #[test]
    fn ids_accept_only_the_documented_alphabet() {
        for ok in ["a", "sweeps-us", "A_1-b", &"x".repeat(64)] {
            assert!(Id::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(Id::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn first_accept_language_wins() {
        let l = |h| Language::from_accept_language(h).map(|l| l.to_string());
        assert_eq!(l("en-US,en;q=0.9,de;q=0.8").as_deref(), Some("en"));
        assert_eq!(l("DE"), Some("de".into()));
        assert_eq!(l("*"), None);
        assert_eq!(l(""), None);
    }

    #[test]
    fn enums_round_trip_through_text() {
        for d in Device::ALL {
            assert_eq!(Device::parse(d.as_str()).unwrap(), *d);
        }
        for o in Os::ALL {
            assert_eq!(Os::parse(o.as_str()).unwrap(), *o);
        }
        assert!(Os::parse("beos").unwrap_err().to_string().contains("windows"));
    }
}
