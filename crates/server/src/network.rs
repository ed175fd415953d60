//! Network signals for the quality verdict: hosting/datacenter and
//! anonymising networks from MaxMind-format databases, and the operator's
//! IP block list.
//!
//! - `asn_db` (GeoLite2-ASN layout): an address whose autonomous system is a
//!   cloud or hosting provider is `datacenter`. The built-in list below
//!   names the large clouds and hosters; `datacenter_asns` adds more.
//! - `anonymous_ip_db` (GeoIP2-Anonymous-IP layout): `is_hosting_provider`
//!   is `datacenter`; `is_anonymous_vpn`, `is_public_proxy`,
//!   `is_residential_proxy` and `is_tor_exit_node` are `anonymous_proxy`.
//! - `block_ips`: CIDRs whose clicks are always `bot` (`blocked_ip`).
//!
//! Lookups are in-memory tree walks (well under a microsecond); a database
//! that cannot be read stops start-up with its path in the message.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use smartlink_visitor::quality::NetworkSignals;

use crate::config::Cidr;
use crate::geo::GeoError;

/// Autonomous systems of large cloud, hosting and CDN providers: traffic
/// from them is servers, not people. Sources: the providers' published
/// ASNs (PeeringDB).
pub const HOSTING_ASNS: &[u32] = &[
    16509, 14618, 8987, // Amazon AWS
    15169, 396982, 19527, 36040, // Google, Google Cloud
    8075, 8068, 8069,  // Microsoft Azure
    14061, // DigitalOcean
    16276, // OVH
    24940, 213230, // Hetzner
    63949,  // Linode / Akamai Connected Cloud
    20473,  // Vultr (Choopa)
    31898,  // Oracle Cloud
    45102, 37963, // Alibaba Cloud
    132203, 45090, // Tencent Cloud
    12876, // Scaleway
    51167, // Contabo
    60781, 28753, // Leaseweb
    13335, 209242, // Cloudflare (incl. WARP egress)
    46606,  // Unified Layer
    26496,  // GoDaddy
    36352,  // ColoCrossing
    9009,   // M247
    62567, 202425, // DigitalOcean / IP Volume
    53667,  // FranTech / BuyVM
    40021,  // Contabo US
    8100,   // QuadraNet
    29802,  // HIVELOCITY
    32097,  // WholeSale Internet
    55286, 395954, // B2 Net / Leaseweb USA
    135377, // UCloud
    141995, // Contabo Asia
];

/// Network quality settings (`server.quality` in the file).
#[derive(Debug, Default)]
pub struct Network {
    asn: Option<maxminddb::Reader<Vec<u8>>>,
    anonymous: Option<maxminddb::Reader<Vec<u8>>>,
    hosting: HashSet<u32>,
    blocked: Vec<Cidr>,
}

#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
}

#[derive(Deserialize, Default)]
struct AnonRecord {
    #[serde(default)]
    is_anonymous_vpn: bool,
    #[serde(default)]
    is_hosting_provider: bool,
    #[serde(default)]
    is_public_proxy: bool,
    #[serde(default)]
    is_residential_proxy: bool,
    #[serde(default)]
    is_tor_exit_node: bool,
}

fn open_db<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<maxminddb::Reader<Vec<u8>>, GeoError> {
    let err = |message: String| GeoError { path: path.display().to_string(), message };
    let reader =
        maxminddb::Reader::open_readfile(path).map_err(|e| err(format!("cannot be read as a MaxMind DB: {e}")))?;
    // Decode every record once so corruption fails at start-up, not on a click.
    let mut networks = 0u64;
    for found in reader.networks(Default::default()).map_err(|e| err(format!("is corrupt: {e}")))? {
        found.and_then(|f| f.decode::<T>()).map_err(|e| err(format!("is corrupt: {e}")))?;
        networks += 1;
    }
    if networks == 0 {
        return Err(err("contains no networks".into()));
    }
    Ok(reader)
}

impl Network {
    pub fn open(
        asn_db: Option<&Path>,
        anonymous_ip_db: Option<&Path>,
        extra_hosting_asns: &[u32],
        blocked: Vec<Cidr>,
    ) -> Result<Network, GeoError> {
        Ok(Network {
            asn: asn_db.map(open_db::<AsnRecord>).transpose()?,
            anonymous: anonymous_ip_db.map(open_db::<AnonRecord>).transpose()?,
            hosting: HOSTING_ASNS.iter().chain(extra_hosting_asns).copied().collect(),
            blocked,
        })
    }

    /// The network signals of one address.
    pub fn signals(&self, ip: Option<IpAddr>) -> NetworkSignals {
        let Some(ip) = ip else { return NetworkSignals::default() };
        let mut s = NetworkSignals { blocked: self.blocked.iter().any(|c| c.contains(ip)), ..Default::default() };
        if let Some(r) = &self.asn {
            if let Ok(Some(rec)) = r.lookup(ip).and_then(|f| f.decode::<AsnRecord>()) {
                s.datacenter |= rec.autonomous_system_number.is_some_and(|a| self.hosting.contains(&a));
            }
        }
        if let Some(r) = &self.anonymous {
            if let Ok(Some(rec)) = r.lookup(ip).and_then(|f| f.decode::<AnonRecord>()) {
                s.datacenter |= rec.is_hosting_provider;
                s.anonymous |=
                    rec.is_anonymous_vpn || rec.is_public_proxy || rec.is_residential_proxy || rec.is_tor_exit_node;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(p: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata").join(p)
    }

    fn net() -> Network {
        Network::open(
            Some(&testdata("maxmind/GeoLite2-ASN-Test.mmdb")),
            Some(&testdata("maxmind/GeoIP2-Anonymous-IP-Test.mmdb")),
            &[],
            vec![Cidr::parse("198.51.100.0/24").unwrap()],
        )
        .unwrap()
    }

    fn sig(n: &Network, ip: &str) -> (bool, bool, bool) {
        let s = n.signals(Some(ip.parse().unwrap()));
        (s.datacenter, s.anonymous, s.blocked)
    }

    #[test]
    fn hosting_asns_and_anonymous_networks_from_the_maxmind_test_databases_are_flagged() {
        let n = net();
        // 1.0.0.0/24 is AS15169 (Google) in the ASN test database.
        assert_eq!(sig(&n, "1.0.0.1"), (true, false, false));
        // 1.128.0.0/11 is Telstra, a consumer ISP.
        assert_eq!(sig(&n, "1.128.0.1"), (false, false, false));
        // Anonymous-IP test database: VPN, public proxy, hosting, everything.
        assert_eq!(sig(&n, "1.2.0.1"), (false, true, false));
        assert_eq!(sig(&n, "186.30.236.7"), (false, true, false));
        assert_eq!(sig(&n, "71.160.223.9"), (true, false, false));
        assert_eq!(sig(&n, "81.2.69.1"), (true, true, false));
        assert_eq!(sig(&n, "198.51.100.20"), (false, false, true), "operator block list");
        assert_eq!(n.signals(None), NetworkSignals::default());
    }

    #[test]
    fn operator_asns_extend_the_built_in_hosting_list() {
        let n = Network::open(Some(&testdata("maxmind/GeoLite2-ASN-Test.mmdb")), None, &[1221], vec![]).unwrap();
        assert_eq!(sig(&n, "1.128.0.1"), (true, false, false));
    }

    #[test]
    fn a_broken_network_database_is_a_start_up_error_naming_the_file() {
        let e = Network::open(Some(&testdata("maxmind/MaxMind-DB-test-broken-pointers-24.mmdb")), None, &[], vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MaxMind-DB-test-broken-pointers-24.mmdb"), "{e}");
    }
}
