//! IP → country.
//!
//! Reads any MaxMind-format country database (GeoIP2/GeoLite2 layout
//! `country.iso_code`, or the ip-location-db/DB-IP layout `country_code`).
//! Without a configured database it uses the regional-registry data built
//! into the `iptocc` crate (≈13 ns a lookup, ~95% agreement with commercial
//! databases), so a fresh install routes by country with nothing to download.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use smartlink_core::model::Country;

#[derive(Debug, thiserror::Error)]
#[error("GeoIP database {path}: {message}")]
pub struct GeoError {
    pub path: String,
    pub message: String,
}

pub enum Geo {
    /// Registry data compiled into the binary.
    BuiltIn,
    MaxMind(maxminddb::Reader<Vec<u8>>),
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Geo::BuiltIn => f.write_str("Geo::BuiltIn"),
            Geo::MaxMind(r) => write!(f, "Geo::MaxMind({})", r.metadata().database_type),
        }
    }
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

impl Geo {
    /// Opens and checks a database; a broken file is a clear start-up error.
    pub fn open(path: &Path) -> Result<Geo, GeoError> {
        let err = |message: String| GeoError { path: path.display().to_string(), message };
        let reader =
            maxminddb::Reader::open_readfile(path).map_err(|e| err(format!("cannot be read as a MaxMind DB: {e}")))?;
        // Walk every network and decode its record once, so that a corrupt
        // search tree or data section fails here, at start-up, and never on a
        // click. (`Reader::verify` would also reject valid databases whose
        // metadata has no description, such as ip-location-db's.)
        let mut networks = 0u64;
        for found in reader.networks(Default::default()).map_err(|e| err(format!("is corrupt: {e}")))? {
            found.and_then(|f| f.decode::<Record>()).map_err(|e| err(format!("is corrupt: {e}")))?;
            networks += 1;
        }
        if networks == 0 {
            return Err(err("contains no networks".into()));
        }
        Ok(Geo::MaxMind(reader))
    }

    /// The visitor's country, `ZZ` when unknown.
    pub fn country(&self, ip: IpAddr) -> Country {
        let code = match self {
            Geo::BuiltIn => iptocc::country_code(ip),
            Geo::MaxMind(r) => match r.lookup(ip).and_then(|found| found.decode::<Record>()) {
                Ok(Some(rec)) => rec
                    .country
                    .and_then(|c| c.iso_code)
                    .or(rec.country_code)
                    .or(rec.registered_country.and_then(|c| c.iso_code)),
                _ => None,
            },
        };
        code.and_then(|c| Country::parse(c).ok()).unwrap_or(Country::UNKNOWN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(p: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata").join(p)
    }

    fn country(geo: &Geo, ip: &str) -> String {
        geo.country(ip.parse().unwrap()).to_string()
    }

    #[test]
    fn maxmind_test_database_maps_documented_addresses() {
        let geo = Geo::open(&testdata("maxmind/GeoIP2-Country-Test.mmdb")).unwrap();
        for (ip, want) in [
            ("216.160.83.56", "US"),
            ("89.160.20.112", "SE"),
            ("81.2.69.160", "GB"),
            ("2001:218::1", "JP"),
            ("10.0.0.1", "ZZ"),
        ] {
            assert_eq!(country(&geo, ip), want, "{ip}");
        }
    }

    #[test]
    fn every_country_in_the_test_database_source_resolves() {
        // Expected values come from the JSON the test database was built from.
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(testdata("maxmind/GeoIP2-Country-Test.json")).unwrap())
                .unwrap();
        let geo = Geo::open(&testdata("maxmind/GeoIP2-Country-Test.mmdb")).unwrap();
        let mut checked = 0;
        for entry in json.as_array().unwrap() {
            for (net, rec) in entry.as_object().unwrap() {
                let Some(want) = rec.pointer("/country/iso_code").and_then(|v| v.as_str()) else { continue };
                let ip = net.split('/').next().unwrap();
                assert_eq!(country(&geo, ip), want, "{net}");
                checked += 1;
            }
        }
        assert!(checked > 10, "only {checked} networks checked");
    }

    #[test]
    fn ip_location_db_layout_is_read_too() {
        let geo = Geo::open(&testdata("geo/iptoasn-country.mmdb")).unwrap();
        assert_eq!(country(&geo, "8.8.8.8"), "US");
        assert_eq!(country(&geo, "2001:4860:4860::8888"), "US");
    }

    #[test]
    fn broken_databases_fail_at_open_with_the_path_in_the_message() {
        for f in [
            "maxmind/MaxMind-DB-test-broken-search-tree-24.mmdb",
            "maxmind/MaxMind-DB-test-broken-pointers-24.mmdb",
            "isbot/patterns.json",
        ] {
            let e = Geo::open(&testdata(f)).unwrap_err().to_string();
            assert!(e.contains(f.rsplit('/').next().unwrap()), "{e}");
        }
    }

    #[test]
    fn built_in_registry_data_knows_major_countries() {
        assert_eq!(country(&Geo::BuiltIn, "8.8.8.8"), "US");
        assert_eq!(country(&Geo::BuiltIn, "127.0.0.1"), "ZZ");
    }
}
