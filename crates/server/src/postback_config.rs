//! What postbacks need that the click path does not, built from the
//! definitions: advertiser credentials, outbound targets and exchange rates.

use std::collections::HashMap;

use smartlink_core::conversion::Status as ConvStatus;
use smartlink_store::OutboundTarget;

use crate::config::{Cidr, Definitions, Secret};

/// What postbacks need that the click path does not: advertiser
/// credentials, outbound targets and exchange rates. Rebuilt with the
/// catalog on every definitions change.
#[derive(Debug, Default)]
pub struct PostbackConfig {
    pub advertisers: HashMap<String, AdvertiserAuth>,
    /// By affiliate key.
    pub affiliates: HashMap<u32, OutboundTarget>,
    /// By smartlink key.
    pub smartlinks: HashMap<u32, OutboundTarget>,
    /// By traffic source key.
    pub sources: HashMap<u32, OutboundTarget>,
    pub base_currency: String,
    /// Units of base currency per unit of each currency (base included).
    pub rates: HashMap<String, f64>,
    /// The largest payout a postback may carry, in the base currency.
    pub max_payout: f64,
    /// Affiliate API keys: (key, affiliate numeric key, affiliate id).
    pub api_keys: Vec<(Secret, u32, String)>,
}

#[derive(Debug, Default)]
pub struct AdvertiserAuth {
    pub token: Option<Secret>,
    pub secret: Option<Secret>,
    pub ips: Vec<Cidr>,
}

fn statuses(list: &Option<Vec<String>>) -> Vec<ConvStatus> {
    match list {
        None => vec![ConvStatus::Approved],
        Some(l) => ConvStatus::ALL.into_iter().filter(|s| l.iter().any(|x| x == s.as_str())).collect(),
    }
}

impl PostbackConfig {
    /// The outbound postbacks a conversion of this click fires: its
    /// affiliate's, its smartlink's and its traffic source's.
    pub fn outbound(&self, affiliate: Option<u32>, link: u32, source: Option<u32>) -> Vec<OutboundTarget> {
        let affiliate = affiliate.and_then(|a| self.affiliates.get(&a));
        let source = source.and_then(|s| self.sources.get(&s));
        affiliate.into_iter().chain(self.smartlinks.get(&link)).chain(source).cloned().collect()
    }

    /// Builds from definitions already validated by `build_catalog`.
    pub fn from_defs(defs: &Definitions, keys: &crate::config::Keys) -> PostbackConfig {
        use smartlink_store::Kind;
        let base = defs.base_currency.clone().unwrap_or_else(|| "USD".into()).to_ascii_uppercase();
        let mut rates: HashMap<String, f64> =
            defs.currencies.iter().map(|(k, v)| (k.to_ascii_uppercase(), *v)).collect();
        rates.insert(base.clone(), 1.0);
        let key = |k: Kind, id: &str| keys.get(&(k, id.to_string())).copied();
        PostbackConfig {
            api_keys: defs
                .affiliates
                .iter()
                .filter_map(|a| Some((a.api_key.clone()?, key(Kind::Affiliate, &a.id)?, a.id.clone())))
                .filter(|(k, _, _)| !k.expose().is_empty())
                .collect(),
            advertisers: defs
                .advertisers
                .iter()
                .map(|a| {
                    let ips = a.postback_ips.iter().flatten().filter_map(|c| Cidr::parse(c).ok()).collect();
                    (
                        a.id.clone(),
                        AdvertiserAuth { token: a.postback_token.clone(), secret: a.postback_secret.clone(), ips },
                    )
                })
                .collect(),
            affiliates: defs
                .affiliates
                .iter()
                .filter_map(|a| {
                    let url = a.postback_url.clone()?;
                    Some((
                        key(Kind::Affiliate, &a.id)?,
                        OutboundTarget {
                            target: format!("affiliate:{}", a.id),
                            url,
                            statuses: statuses(&a.postback_statuses),
                            payout_share: a.payout_share.unwrap_or(1.0),
                        },
                    ))
                })
                .collect(),
            smartlinks: defs
                .smartlinks
                .iter()
                .filter_map(|s| {
                    let url = s.postback_url.clone()?;
                    let owner_share = s
                        .affiliate
                        .as_ref()
                        .and_then(|a| defs.affiliates.iter().find(|x| &x.id == a))
                        .and_then(|a| a.payout_share)
                        .unwrap_or(1.0);
                    Some((
                        key(Kind::Smartlink, &s.slug)?,
                        OutboundTarget {
                            target: format!("smartlink:{}", s.slug),
                            url,
                            statuses: statuses(&s.postback_statuses),
                            payout_share: owner_share,
                        },
                    ))
                })
                .collect(),
            sources: defs
                .sources
                .iter()
                .filter_map(|s| {
                    let url = s.postback_url.clone()?;
                    Some((
                        key(Kind::Source, &s.id)?,
                        OutboundTarget {
                            target: format!("source:{}", s.id),
                            url,
                            statuses: statuses(&s.postback_statuses),
                            // A source is told what the conversion paid the
                            // network, unless it is also the affiliate.
                            payout_share: 1.0,
                        },
                    ))
                })
                .collect(),
            base_currency: base,
            rates,
            max_payout: crate::config::max_payout(defs),
        }
    }
}
