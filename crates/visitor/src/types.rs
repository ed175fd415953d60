//! The visitor's attributes as validated types: country, device class, OS,
//! browser and language. They are parsed at the edge (`Country::parse`, ...)
//! so that everything behind it can assume they are well formed, and they
//! are small `Copy` values with dense indices for bit masks and compact
//! encodings (click ids, journal records, router segments).

use std::fmt;

/// Why a textual value was rejected; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    /// "expected {what}, got {got:?}": the one shape of every parse error.
    pub fn expected(what: &str, got: &str) -> ParseError {
        ParseError(format!("expected {what}, got {got:?}"))
    }
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
        Err(ParseError::expected("an ISO 3166-1 alpha-2 country code such as US", s))
    }

    /// Builds a country from two bytes already known to be a code (for
    /// example decoded from a signed click id); unknown codes become `ZZ`.
    #[inline]
    pub fn from_bytes(b: [u8; 2]) -> Country {
        match std::str::from_utf8(&b) {
            Ok(s) => Country::parse(s).unwrap_or(Country::UNKNOWN),
            Err(_) => Country::UNKNOWN,
        }
    }

    #[inline]
    pub fn bytes(self) -> [u8; 2] {
        self.0
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        // Always two ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }

    /// Dense index in `0..676`, for bit sets.
    #[inline]
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
                Err(ParseError::expected(concat!($what, " (one of ", $($text, " "),+ , ")"), s))
            }

            #[inline]
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Position in [`Self::ALL`], for bit masks and compact encodings.
            #[inline]
            pub fn index(self) -> usize { self as usize }

            #[inline]
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

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Language([u8; 2]);

impl Language {
    pub fn parse(s: &str) -> Result<Language, ParseError> {
        let b = s.as_bytes();
        if b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic) {
            Ok(Language([b[0].to_ascii_lowercase(), b[1].to_ascii_lowercase()]))
        } else {
            Err(ParseError::expected("a two-letter ISO 639-1 language code such as en", s))
        }
    }

    /// The first language of an `Accept-Language` header, if any.
    pub fn from_accept_language(header: &str) -> Option<Language> {
        let first = header.split(',').next()?.split(';').next()?.trim();
        let primary = first.split(['-', '_']).next()?;
        Language::parse(primary).ok()
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Dense code in `0..676`.
    #[inline]
    pub fn code(self) -> u16 {
        (self.0[0] - b'a') as u16 * 26 + (self.0[1] - b'a') as u16
    }

    #[inline]
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
