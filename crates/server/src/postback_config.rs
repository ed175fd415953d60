//! What postbacks need that the click path does not, built from the
//! definitions: advertiser credentials, outbound targets and exchange rates.

use std::collections::HashMap;

use smartlink_core::conversion::Status as ConvStatus;
use smartlink_store::OutboundTarget;

use smartlink_analysis::report::PayoutShares;

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
    /// Affiliates' payout shares (with per-offer overrides), by key.
    pub shares: PayoutShares,
    /// Smartlink key → the key of the affiliate that owns it.
    pub owners: HashMap<u32, u32>,
}

#[derive(Debug, Default)]
pub struct AdvertiserAuth {
    pub token: Option<Secret>,
    pub secret: Option<Secret>,
    pub ips: Vec<Cidr>,
    /// Accepts the browser pixel (token only).
    pub allow_pixel: bool,
}

fn statuses(list: &Option<Vec<String>>) -> Vec<ConvStatus> {
    match list {
        None => vec![ConvStatus::Approved],
        Some(l) => ConvStatus::ALL.into_iter().filter(|s| l.iter().any(|x| x == s.as_str())).collect(),
    }
}

impl PostbackConfig {
    /// The outbound postbacks a conversion of `offer` on a click of `link`
    /// by `affiliate` from `source` fires: the affiliate's and the
    /// smartlink's, each reporting its affiliate's share of the payout on
    /// that offer, and the traffic source's.
    pub fn outbound(&self, affiliate: Option<u32>, link: u32, offer: u32, source: Option<u32>) -> Vec<OutboundTarget> {
        let mut out = Vec::new();
        if let Some((a, t)) = affiliate.and_then(|a| Some((a, self.affiliates.get(&a)?))) {
            out.push(OutboundTarget { payout_share: self.shares.share(a, offer), ..t.clone() });
        }
        if let Some(t) = self.smartlinks.get(&link) {
            let share = self.owners.get(&link).map_or(1.0, |a| self.shares.share(*a, offer));
            out.push(OutboundTarget { payout_share: share, ..t.clone() });
        }
        out.extend(source.and_then(|s| self.sources.get(&s)).cloned());
        out
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
                        AdvertiserAuth {
                            token: a.postback_token.clone(),
                            secret: a.postback_secret.clone(),
                            ips,
                            allow_pixel: a.allow_pixel == Some(true),
                        },
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
            shares: PayoutShares {
                affiliates: defs
                    .affiliates
                    .iter()
                    .filter_map(|a| Some((key(Kind::Affiliate, &a.id)?, a.payout_share?)))
                    .collect(),
                offers: defs
                    .affiliates
                    .iter()
                    .flat_map(|a| a.payout_shares.iter().flatten().map(move |(o, s)| (a, o, *s)))
                    .filter_map(|(a, o, s)| Some(((key(Kind::Affiliate, &a.id)?, key(Kind::Offer, o)?), s)))
                    .collect(),
            },
            owners: defs
                .smartlinks
                .iter()
                .filter_map(|s| Some((key(Kind::Smartlink, &s.slug)?, key(Kind::Affiliate, s.affiliate.as_deref()?)?)))
                .collect(),
            base_currency: base,
            rates,
            max_payout: crate::config::max_payout(defs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_yaml, provisional_keys, Keys};
    use smartlink_store::Kind;

    #[test]
    fn outbound_postbacks_report_the_affiliates_share_on_the_offer_converted() {
        let defs: Definitions = parse_yaml(
            r#"
advertisers: [{id: adv}]
affiliates:
  - {id: aff1, postback_url: "https://a.example/?p={payout}", payout_share: 0.5, payout_shares: {o2: 0.8}}
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/", payout: 1}
  - {id: o2, advertiser: adv, url: "https://o2.example/", payout: 1}
smartlinks:
  - {slug: s, affiliate: aff1, offers: [o1, o2], fallback_url: "https://f.example/", postback_url: "https://s.example/?p={payout}"}
"#,
        )
        .unwrap();
        let keys = provisional_keys(&defs, &Keys::new());
        let key = |k: Kind, id: &str| keys[&(k, id.to_string())];
        let pbc = PostbackConfig::from_defs(&defs, &keys);
        let (aff, sl) = (key(Kind::Affiliate, "aff1"), key(Kind::Smartlink, "s"));
        let shares = |offer: &str| -> Vec<(String, f64)> {
            pbc.outbound(Some(aff), sl, key(Kind::Offer, offer), None)
                .into_iter()
                .map(|t| (t.target, t.payout_share))
                .collect()
        };
        assert_eq!(shares("o1"), [("affiliate:aff1".to_string(), 0.5), ("smartlink:s".to_string(), 0.5)]);
        assert_eq!(shares("o2"), [("affiliate:aff1".to_string(), 0.8), ("smartlink:s".to_string(), 0.8)]);
        assert_eq!(pbc.shares.share(aff, key(Kind::Offer, "o2")), 0.8);
    }
}
