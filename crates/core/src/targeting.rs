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

    fn check(t: &Targeting, v: &Visitor, hour: u8, want: Result<(), Mismatch>) {
        assert_eq!(t.check(v, hour), want, "{t:?} at {hour}h for {v:?}");
        assert_eq!(t.matches(v, hour), want.is_ok(), "{t:?} at {hour}h for {v:?}");
    }

    fn every_country() -> Vec<Country> {
        let letters = b'A'..=b'Z';
        letters
            .clone()
            .flat_map(|a| letters.clone().map(move |b| [a, b]))
            .filter_map(|b| Country::parse(std::str::from_utf8(&b).unwrap()).ok())
            .collect()
    }

    #[test]
    fn a_country_set_holds_exactly_the_countries_put_in_it() {
        let all = every_country();
        for &c in &all {
            let one = CountrySet::from_iter([c]);
            for &other in &all {
                assert_eq!(one.contains(other), other == c, "{{{c}}} contains {other}");
            }
        }
        let some = CountrySet::from_iter(["AD", "US", "ZW", "ZZ", "US"].map(|c| Country::parse(c).unwrap()));
        let held: Vec<String> = all.iter().filter(|&&c| some.contains(c)).map(|c| c.to_string()).collect();
        assert_eq!(held, ["AD", "US", "ZW", "ZZ"]);
        assert!(all.iter().all(|&c| !CountrySet::default().contains(c)));
    }

    /// (countries accepted, countries excluded) -> whether a US click matches.
    #[test]
    fn country_lists_accept_and_exclude() {
        let set = |cs: &[&str]| Some(CountrySet::from_iter(cs.iter().map(|c| Country::parse(c).unwrap())));
        let v = us_mobile_ios_en_chrome();
        let t = |countries, exclude_countries| Targeting { countries, exclude_countries, ..Default::default() };
        check(&t(None, None), &v, 0, Ok(()));
        check(&t(set(&["US"]), None), &v, 0, Ok(()));
        check(&t(set(&["CA", "US"]), set(&["DE"])), &v, 0, Ok(()));
        check(&t(set(&[]), None), &v, 0, Err(Mismatch::Country));
        check(&t(set(&["CA"]), None), &v, 0, Err(Mismatch::Country));
        check(&t(None, set(&["US"])), &v, 0, Err(Mismatch::Country));
        check(&t(None, set(&["CA"])), &v, 0, Ok(()));
        check(&t(set(&["US"]), set(&["US"])), &v, 0, Err(Mismatch::Country));
    }

    #[test]
    fn each_device_mask_accepts_exactly_its_devices() {
        let v = |device| Visitor {
            segment: Segment { device, ..us_mobile_ios_en_chrome().segment },
            ..us_mobile_ios_en_chrome()
        };
        let t = |devices: &[Device]| Targeting { devices: Targeting::device_mask(devices), ..Default::default() };
        for &accepted in Device::ALL {
            for &d in Device::ALL {
                check(&t(&[accepted]), &v(d), 0, if d == accepted { Ok(()) } else { Err(Mismatch::Device) });
                check(&t(&[accepted, accepted]), &v(d), 0, if d == accepted { Ok(()) } else { Err(Mismatch::Device) });
                check(&t(Device::ALL), &v(d), 0, Ok(()));
                check(&t(&[]), &v(d), 0, Err(Mismatch::Device));
            }
        }
        assert_eq!(Targeting::device_mask(&[Device::Tablet, Device::Desktop]), 0b101);
    }

    #[test]
    fn each_os_mask_accepts_exactly_its_systems() {
        let v =
            |os| Visitor { segment: Segment { os, ..us_mobile_ios_en_chrome().segment }, ..us_mobile_ios_en_chrome() };
        let t = |os: &[Os]| Targeting { os: Targeting::os_mask(os), ..Default::default() };
        for &accepted in Os::ALL {
            for &o in Os::ALL {
                check(&t(&[accepted]), &v(o), 0, if o == accepted { Ok(()) } else { Err(Mismatch::Os) });
                check(&t(&[accepted, accepted]), &v(o), 0, if o == accepted { Ok(()) } else { Err(Mismatch::Os) });
                check(&t(Os::ALL), &v(o), 0, Ok(()));
                check(&t(&[]), &v(o), 0, Err(Mismatch::Os));
            }
        }
        assert_eq!(Targeting::os_mask(&[Os::Other, Os::Windows]), 0b100_0001);
    }

    #[test]
    fn each_browser_mask_accepts_exactly_its_browsers() {
        let v = |browser| Visitor { browser, ..us_mobile_ios_en_chrome() };
        let t = |browsers: &[Browser]| Targeting { browsers: Targeting::browser_mask(browsers), ..Default::default() };
        for &accepted in Browser::ALL {
            for &b in Browser::ALL {
                check(&t(&[accepted]), &v(b), 0, if b == accepted { Ok(()) } else { Err(Mismatch::Browser) });
                check(&t(&[accepted, accepted]), &v(b), 0, if b == accepted { Ok(()) } else { Err(Mismatch::Browser) });
                check(&t(Browser::ALL), &v(b), 0, Ok(()));
                check(&t(&[]), &v(b), 0, Err(Mismatch::Browser));
            }
        }
        assert_eq!(Targeting::browser_mask(&[Browser::Other, Browser::Chrome]), 0b10_0000_0001);
    }

    #[test]
    fn each_hour_mask_accepts_exactly_its_hours() {
        let v = us_mobile_ios_en_chrome();
        let t = |hours: &[u8]| Targeting { hours: Targeting::mask(hours, |h| h as usize), ..Default::default() };
        let every: Vec<u8> = (0..24).collect();
        for accepted in 0..24u8 {
            for h in 0..24u8 {
                check(&t(&[accepted]), &v, h, if h == accepted { Ok(()) } else { Err(Mismatch::Hour) });
                check(&t(&every), &v, h, Ok(()));
                check(&Targeting::default(), &v, h, Ok(()));
                check(&t(&[]), &v, h, Err(Mismatch::Hour));
            }
        }
        assert_eq!(Targeting::default().hours, t(&every).hours);
    }

    /// A visitor failing several checks is told the first: country, device,
    /// OS, browser, language, hour.
    #[test]
    fn the_first_failing_check_names_the_mismatch() {
        let v = us_mobile_ios_en_chrome();
        let none = Targeting {
            countries: Some(CountrySet::default()),
            exclude_countries: None,
            devices: 0,
            os: 0,
            browsers: 0,
            languages: Some(vec![]),
            hours: 0,
            timezone: chrono_tz::UTC,
        };
        check(&none, &v, 0, Err(Mismatch::Country));
        check(&Targeting { countries: None, ..none.clone() }, &v, 0, Err(Mismatch::Device));
        check(&Targeting { countries: None, devices: u8::MAX, ..none.clone() }, &v, 0, Err(Mismatch::Os));
        check(
            &Targeting { countries: None, devices: u8::MAX, os: u8::MAX, ..none.clone() },
            &v,
            0,
            Err(Mismatch::Browser),
        );
        let open = Targeting { countries: None, devices: u8::MAX, os: u8::MAX, browsers: u16::MAX, ..none.clone() };
        check(&open, &v, 0, Err(Mismatch::Language));
        check(&Targeting { languages: None, ..open.clone() }, &v, 0, Err(Mismatch::Hour));
        check(&Targeting { languages: None, hours: ALL_HOURS, ..open }, &v, 0, Ok(()));
    }
}
