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

/// The visitor's attributes are validated types of their own crate, re-exported
/// here because every part of the model is built from them.
pub use smartlink_visitor::types::{Browser, Country, Device, Language, Os, ParseError};

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
            Err(ParseError::expected("an id of 1 to 64 characters from A-Z a-z 0-9 _ -", s))
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
            Err(ParseError::expected("a three-letter ISO 4217 currency code such as USD", s))
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

/// Smartlink keys below this bit are smartlinks; a key with it set is the
/// direct link of the offer whose key is in the low bits (`/o/{offer}`).
/// Click ids, click rows and reports carry both in one "link" field.
pub const DIRECT_LINK_BIT: u32 = 1 << 23;

/// The link key of the direct link to the offer with key `offer_key`.
pub fn direct_link_key(offer_key: u32) -> u32 {
    DIRECT_LINK_BIT | offer_key
}

/// The offer key of a direct link's key; `None` for a smartlink's key.
pub fn direct_link_offer(link_key: u32) -> Option<u32> {
    (link_key & DIRECT_LINK_BIT != 0).then_some(link_key & !DIRECT_LINK_BIT)
}

/// How a link's clicks are costed when the click URL carries no `cost`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CostModel {
    /// This much per click, in the base currency.
    Cpc(f64),
    /// This much per 1,000 clicks, in the base currency.
    Cpm(f64),
    /// This much per approved conversion, in the base currency (charged
    /// when the conversion is approved, taken back if it is reversed).
    Cpa(f64),
}

impl CostModel {
    /// What one click costs under this model (CPA clicks cost nothing).
    pub fn per_click(self) -> f64 {
        match self {
            CostModel::Cpc(v) => v,
            CostModel::Cpm(v) => v / 1000.0,
            CostModel::Cpa(_) => 0.0,
        }
    }

    /// What one approved conversion costs under this model.
    pub fn per_conversion(self) -> f64 {
        match self {
            CostModel::Cpa(v) => v,
            _ => 0.0,
        }
    }
}

/// A traffic source: where clicks are bought. It names the click-URL
/// parameters it fills, how its clicks cost, and is told about
/// conversions by its own postback.
#[derive(Debug, Clone)]
pub struct Source {
    pub key: u32,
    pub id: Id,
    /// The source's own parameter name for `sub1`..`sub5` (`None`: the
    /// standard name `subN`).
    pub sub_params: [Option<Box<str>>; 5],
    /// The source's parameter carrying the click's cost (default `cost`).
    pub cost_param: Box<str>,
    /// Value of one unit of the source's currency in the base currency:
    /// what a `cost` parameter is multiplied by.
    pub cost_rate: f64,
    pub cost_model: Option<CostModel>,
}

#[derive(Debug)]
pub struct Smartlink {
    /// For a direct link, [`direct_link_key`] of its offer.
    pub key: u32,
    /// For a direct link, its offer's id.
    pub slug: Id,
    /// Owner, if any; also the affiliate credited when the click has no `aff`.
    pub affiliate: Option<usize>,
    /// Indices into [`Catalog::offers`].
    pub offers: Vec<usize>,
    /// Where clicks go when no offer can take them. Always set on a
    /// smartlink; on a direct link, its offer's `fallback_url` if any
    /// (then the credited affiliate's, then [`Smartlink::fallback_link`]).
    pub fallback_url: Option<Template>,
    /// A direct link's fallback smartlink (index into
    /// [`Catalog::smartlinks`]): the visitor is handed to it.
    pub fallback_link: Option<usize>,
    /// The traffic source of clicks that name none (index into
    /// [`Catalog::sources`]).
    pub source: Option<usize>,
    /// The link's own cost model (before the source's).
    pub cost_model: Option<CostModel>,
    /// Value of one unit of the link's cost currency in the base currency.
    pub cost_rate: f64,
    pub overrides: Vec<Override>,
    pub strategy: Strategy,
    /// What to do with bot, suspect and link-preview clicks.
    pub quality: QualityActions,
    /// Learned routing state; shared between catalog versions.
    pub router: Arc<SharedRouter>,
}

impl Smartlink {
    /// Whether this is an offer's direct link (no routing, nothing to learn).
    pub fn is_direct(&self) -> bool {
        direct_link_offer(self.key).is_some()
    }
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
    /// Where this affiliate's direct-link clicks go when the offer cannot
    /// take them and the offer names no fallback of its own.
    pub fallback_url: Option<Template>,
}

/// The immutable set of definitions the click path reads. A change builds a
/// new catalog (carrying the live counters and router state over) and swaps
/// it in atomically; clicks in flight finish on the version they started on.
#[derive(Debug, Default)]
pub struct Catalog {
    pub offers: Vec<Offer>,
    pub smartlinks: Vec<Smartlink>,
    /// One direct link per offer (`/o/{offer}`), in the order of `offers`
    /// (the direct link of `offers[i]` is `direct_links[i]`), or none.
    pub direct_links: Vec<Smartlink>,
    pub affiliates: Vec<Affiliate>,
    pub sources: Vec<Source>,
    pub slug_index: std::collections::HashMap<Id, usize>,
    pub affiliate_index: std::collections::HashMap<Id, usize>,
    pub source_index: std::collections::HashMap<Id, usize>,
    direct_index: std::collections::HashMap<Id, usize>,
    /// Numeric key → position, for attribution from click ids.
    offer_keys: std::collections::HashMap<u32, usize>,
    smartlink_keys: std::collections::HashMap<u32, usize>,
    /// How click caps are counted: locally (one node) or from leased units
    /// (several nodes on one store). Carried over by [`Catalog::inherit_state`].
    pub cap_mode: crate::caps::CapMode,
}

impl Catalog {
    /// Builds a catalog and its indexes. Offers' and smartlinks' `key`s must
    /// be unique (the store guarantees it).
    pub fn new(offers: Vec<Offer>, smartlinks: Vec<Smartlink>, affiliates: Vec<Affiliate>) -> Catalog {
        Catalog::with_direct_links(offers, smartlinks, Vec::new(), affiliates, Vec::new())
    }

    /// A catalog with direct links and traffic sources too.
    pub fn with_direct_links(
        offers: Vec<Offer>,
        smartlinks: Vec<Smartlink>,
        direct_links: Vec<Smartlink>,
        affiliates: Vec<Affiliate>,
        sources: Vec<Source>,
    ) -> Catalog {
        let slug_index = smartlinks.iter().enumerate().map(|(i, s)| (s.slug.clone(), i)).collect();
        let direct_index = direct_links.iter().enumerate().map(|(i, s)| (s.slug.clone(), i)).collect();
        let affiliate_index = affiliates.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
        let source_index = sources.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
        let offer_keys = offers.iter().enumerate().map(|(i, o)| (o.key, i)).collect();
        let smartlink_keys = smartlinks.iter().enumerate().map(|(i, s)| (s.key, i)).collect();
        Catalog {
            offers,
            smartlinks,
            direct_links,
            affiliates,
            sources,
            slug_index,
            affiliate_index,
            source_index,
            direct_index,
            offer_keys,
            smartlink_keys,
            cap_mode: crate::caps::CapMode::Local,
        }
    }

    /// Takes over the live counters and learned router state of `prev` for
    /// every offer and smartlink that keeps its key, so a config change
    /// never resets today's caps or what the router has learned, and its
    /// cap mode.
    pub fn inherit_state(&mut self, prev: &Catalog) {
        self.cap_mode = prev.cap_mode;
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
        // A new `auto` smartlink starts from the network's prior at once,
        // not at the next rebuild (`server::priors`).
        let prior = prev.smartlinks.iter().find_map(|s| s.router.lock().network().cloned());
        if let Some(prior) = prior {
            for s in self.smartlinks.iter().filter(|s| s.strategy == Strategy::Auto) {
                if prev.smartlink_by_key(s.key).is_none() {
                    s.router.lock().set_network(Some(prior.clone()));
                }
            }
        }
    }

    pub fn smartlink(&self, slug: &str) -> Option<&Smartlink> {
        self.slug_index.get(slug).map(|&i| &self.smartlinks[i])
    }

    /// The direct link of the offer with this id (`/o/{offer}`).
    pub fn direct_link(&self, offer: &str) -> Option<&Smartlink> {
        self.direct_index.get(offer).map(|&i| &self.direct_links[i])
    }

    /// A smartlink or a direct link by its key.
    pub fn smartlink_by_key(&self, key: u32) -> Option<&Smartlink> {
        match direct_link_offer(key) {
            Some(offer) => self.offer_keys.get(&offer).and_then(|&i| self.direct_links.get(i)),
            None => self.smartlink_keys.get(&key).map(|&i| &self.smartlinks[i]),
        }
    }

    pub fn source(&self, id: &str) -> Option<&Source> {
        self.source_index.get(id).map(|&i| &self.sources[i])
    }

    pub fn source_by_key(&self, key: u32) -> Option<&Source> {
        self.sources.iter().find(|s| s.key == key)
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
    fn ids_accept_only_the_documented_alphabet() {
        for ok in ["a", "sweeps-us", "A_1-b", &"x".repeat(64)] {
            assert!(Id::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(Id::parse(bad).is_err(), "{bad}");
        }
    }
}
