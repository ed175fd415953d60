//! Offer targeting: which clicks an offer accepts. Compiled into bit sets so
//! a match is a handful of AND operations on the click path.

use crate::model::{Browser, Country, Device, Language, Os, Segment};

/// A set of countries as a 676-bit map over `AA..ZZ`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountrySet([u64; 11]);

impl CountrySet {
    pub fn insert(&mut self, c: Country) {
        let i = c.index();
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub fn contains(&self, c: Country) -> bool {
        let i = c.index();
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

impl FromIterator<Country> for CountrySet {
    fn from_iter<I: IntoIterator<Item = Country>>(it: I) -> CountrySet {
        let mut s = CountrySet::default();
        for c in it {
            s.insert(c);
        }
        s
    }
}

/// Compiled targeting. `None` (or an all-ones mask) accepts everything.
#[derive(Clone, Debug, PartialEq)]
pub struct Targeting {
    pub countries: Option<CountrySet>,
    pub exclude_countries: Option<CountrySet>,
    /// Bit `Device::index()` set = accepted.
    pub devices: u8,
    pub os: u8,
    pub browsers: u16,
    pub languages: Option<Vec<Language>>,
    /// Bit `h` set = accepts clicks in local hour `h`.
    pub hours: u32,
    /// Index into the catalog's distinct timezones (see [`crate::time`]).
    pub timezone: chrono_tz::Tz,
}

impl Default for Targeting {
    fn default() -> Self {
        Targeting {
            countries: None,
            exclude_countries: None,
            devices: u8::MAX,
            os: u8::MAX,
            browsers: u16::MAX,
            languages: None,
            hours: ALL_HOURS,
            timezone: chrono_tz::UTC,
        }
    }
}

pub const ALL_HOURS: u32 = (1 << 24) - 1;

/// Everything about a click that targeting can look at.
#[derive(Clone, Copy, Debug)]
pub struct Visitor {
    pub segment: Segment,
    pub browser: Browser,
    pub language: Option<Language>,
}

/// Why a targeting check failed: used to explain fallbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Country,
    Device,
    Os,
    Browser,
    Language,
    Hour,
}

impl Targeting {
    pub fn mask<T: Copy>(items: &[T], index: impl Fn(T) -> usize) -> u32 {
        items.iter().fold(0u32, |m, &x| m | (1 << index(x)))
    }

    pub fn device_mask(devices: &[Device]) -> u8 {
        Self::mask(devices, Device::index) as u8
    }
    pub fn os_mask(os: &[Os]) -> u8 {
        Self::mask(os, Os::index) as u8
    }
    pub fn browser_mask(b: &[Browser]) -> u16 {
        Self::mask(b, Browser::index) as u16
    }

    /// Checks a visitor against this targeting, with `local_hour` the hour
    /// of the click in the targeting's timezone.
    pub fn check(&self, v: &Visitor, local_hour: u8) -> Result<(), Mismatch> {
        let c = v.segment.country;
        if self.countries.as_ref().is_some_and(|s| !s.contains(c))
            || self.exclude_countries.as_ref().is_some_and(|s| s.contains(c))
        {
            return Err(Mismatch::Country);
        }
        if self.devices & (1 << v.segment.device.index()) == 0 {
            return Err(Mismatch::Device);
        }
        if self.os & (1 << v.segment.os.index()) == 0 {
            return Err(Mismatch::Os);
        }
        if self.browsers & (1 << v.browser.index()) == 0 {
            return Err(Mismatch::Browser);
        }
        if let Some(langs) = &self.languages {
            if !v.language.is_some_and(|l| langs.contains(&l)) {
                return Err(Mismatch::Language);
            }
        }
        if self.hours & (1 << local_hour) == 0 {
            return Err(Mismatch::Hour);
        }
        Ok(())
    }

    pub fn matches(&self, v: &Visitor, local_hour: u8) -> bool {
        self.check(v, local_hour).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(country: &str, device: Device, os: Os, browser: Browser, lang: Option<&str>) -> Visitor {
        Visitor {
            segment: Segment { country: Country::parse(country).unwrap(), device, os },
            browser,
            language: lang.map(|l| Language::parse(l).unwrap()),
        }
    }

    fn us_mobile_ios_en_chrome() -> Visitor {
        visitor("US", Device::Mobile, Os::Ios, Browser::Chrome, Some("en"))
    }

    #[test]
    fn targeting_table() {
        let countries = |cs: &[&str]| Some(CountrySet::from_iter(cs.iter().map(|c| Country::parse(c).unwrap())));
        let v = us_mobile_ios_en_chrome();
        let cases: Vec<(&str, Targeting, u8, Result<(), Mismatch>)> = vec![
            ("empty targeting accepts all", Targeting::default(), 3, Ok(())),
            ("country in list", Targeting { countries: countries(&["US", "CA"]), ..Default::default() }, 3, Ok(())),
            (
                "country not in list",
                Targeting { countries: countries(&["DE"]), ..Default::default() },
                3,
                Err(Mismatch::Country),
            ),
            (
                "excluded country",
                Targeting { exclude_countries: countries(&["US"]), ..Default::default() },
                3,
                Err(Mismatch::Country),
            ),
            (
                "device accepted",
                Targeting { devices: Targeting::device_mask(&[Device::Mobile, Device::Tablet]), ..Default::default() },
                3,
                Ok(()),
            ),
            (
                "device rejected",
                Targeting { devices: Targeting::device_mask(&[Device::Desktop]), ..Default::default() },
                3,
                Err(Mismatch::Device),
            ),
            (
                "os rejected",
                Targeting { os: Targeting::os_mask(&[Os::Android]), ..Default::default() },
                3,
                Err(Mismatch::Os),
            ),
            (
                "browser rejected",
                Targeting { browsers: Targeting::browser_mask(&[Browser::Safari]), ..Default::default() },
                3,
                Err(Mismatch::Browser),
            ),
            (
                "language accepted",
                Targeting { languages: Some(vec![Language::parse("en").unwrap()]), ..Default::default() },
                3,
                Ok(()),
            ),
            (
                "language rejected",
                Targeting { languages: Some(vec![Language::parse("de").unwrap()]), ..Default::default() },
                3,
                Err(Mismatch::Language),
            ),
            (
                "hour inside",
                Targeting { hours: Targeting::mask(&[8u8, 9], |h| h as usize), ..Default::default() },
                9,
                Ok(()),
            ),
            (
                "hour outside",
                Targeting { hours: Targeting::mask(&[8u8, 9], |h| h as usize), ..Default::default() },
                10,
                Err(Mismatch::Hour),
            ),
        ];
        for (name, t, hour, want) in cases {
            assert_eq!(t.check(&v, hour), want, "{name}");
        }
    }

    #[test]
    fn language_targeting_rejects_clicks_without_a_language() {
        let t = Targeting { languages: Some(vec![Language::parse("en").unwrap()]), ..Default::default() };
        let v = visitor("US", Device::Mobile, Os::Ios, Browser::Chrome, None);
        assert_eq!(t.check(&v, 0), Err(Mismatch::Language));
    }
}
