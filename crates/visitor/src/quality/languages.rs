//! Which browser languages are plausible in which country, for the
//! countries with the most traffic: the official and widely spoken
//! languages plus the big diaspora languages. English is plausible
//! everywhere and is not listed. Legacy codes that old browsers still send
//! are listed too (`iw` for Hebrew, `in` for Indonesian).
//!
//! Deliberately generous: a miss is a weak signal ([`super::Reason::LanguageMismatch`]
//! weighs 10), meant to add up with others (a VPN, a hosting network).

use crate::types::{Country, Language};

/// Country (ISO 3166-1 alpha-2) → plausible languages (ISO 639-1), space-separated.
const TABLE: &[(&str, &str)] = &[
    // Americas.
    ("US", "es zh fr de it pt ru pl ko vi tl ar hi ja ht he fa"),
    ("CA", "fr zh pa es tl ar it de pt ur"),
    ("MX", "es"),
    ("BR", "pt es"),
    ("AR", "es it"),
    ("CO", "es"),
    ("CL", "es"),
    ("PE", "es qu ay"),
    ("VE", "es"),
    // Europe.
    ("GB", "cy gd ga pl pa ur bn gu ro fr de es it pt ar"),
    ("IE", "ga pl pt fr"),
    ("DE", "de tr ru pl ar it ro hr sr uk el"),
    ("AT", "de hr sl hu tr sr bs"),
    ("CH", "de fr it rm"),
    ("FR", "fr ar pt es it de tr br oc co eu ca"),
    ("BE", "nl fr de"),
    ("NL", "nl fy tr ar de pl"),
    ("LU", "lb fr de pt"),
    ("ES", "es ca gl eu ro ar pt fr de"),
    ("PT", "pt es"),
    ("IT", "it de fr sl ro ar sq"),
    ("GR", "el"),
    ("PL", "pl uk de be ru"),
    ("CZ", "cs sk uk"),
    ("SK", "sk cs hu"),
    ("HU", "hu"),
    ("RO", "ro hu"),
    ("BG", "bg tr"),
    ("RS", "sr hr bs hu"),
    ("HR", "hr sr"),
    ("UA", "uk ru"),
    ("BY", "be ru"),
    ("RU", "ru tt ba uk be kk az hy ka cv ce os"),
    ("SE", "sv fi ar"),
    ("NO", "nb nn no se"),
    ("DK", "da de fo"),
    ("FI", "fi sv se ru"),
    // Middle East and Africa.
    ("TR", "tr ku ar az"),
    ("IL", "he iw ar ru yi"),
    ("IR", "fa az ku ar"),
    ("SA", "ar ur hi bn tl ml"),
    ("AE", "ar hi ur ml ta bn fa tl ru"),
    ("EG", "ar"),
    ("MA", "ar fr es"),
    ("DZ", "ar fr"),
    ("NG", "ha yo ig ff"),
    ("KE", "sw"),
    ("ZA", "af zu xh st tn ts ss ve nr"),
    // Asia and Oceania.
    ("IN", "hi bn te mr ta ur gu kn ml or pa as ne sa"),
    ("PK", "ur pa sd ps"),
    ("BD", "bn"),
    ("KZ", "kk ru"),
    ("CN", "zh ug bo mn"),
    ("TW", "zh"),
    ("HK", "zh"),
    ("JP", "ja"),
    ("KR", "ko"),
    ("SG", "zh ms ta"),
    ("ID", "id in jv su ms"),
    ("MY", "ms zh ta id"),
    ("TH", "th"),
    ("VN", "vi"),
    ("PH", "tl es"),
    ("AU", "zh it el vi ar pa hi es tl ko"),
    ("NZ", "mi zh hi sm"),
];

/// Country index (as [`Country::index`]) → row of [`TABLE`] + 1, or 0.
const ROW: [u8; 676] = {
    let mut t = [0u8; 676];
    let mut i = 0;
    while i < TABLE.len() {
        let c = TABLE[i].0.as_bytes();
        t[(c[0] - b'A') as usize * 26 + (c[1] - b'A') as usize] = (i + 1) as u8;
        i += 1;
    }
    t
};

/// Whether `lang` is plausible in `country`, or `None` when the country is
/// not in the table. English is not special-cased here.
pub(super) fn plausible(country: Country, lang: Language) -> Option<bool> {
    let row = usize::from(*ROW.get(country.index())?);
    let (_, langs) = TABLE.get(row.checked_sub(1)?)?;
    let want = lang.as_str().as_bytes();
    Some(langs.as_bytes().chunks(3).any(|code| code.get(..2) == Some(want)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_names_a_real_country_once_and_two_letter_languages() {
        let mut seen = std::collections::HashSet::new();
        for (country, langs) in TABLE {
            assert!(Country::parse(country).is_ok(), "{country}");
            assert!(seen.insert(country), "{country} listed twice");
            for lang in langs.split(' ') {
                assert_eq!(lang.len(), 2, "{country}: {lang:?}");
                assert!(lang.bytes().all(|b| b.is_ascii_lowercase()), "{country}: {lang:?}");
                assert_ne!(lang, "en", "{country}: English is implied");
            }
            // Every listed language is found through the index.
            let c = Country::parse(country).unwrap();
            for lang in langs.split(' ') {
                assert_eq!(plausible(c, Language::parse(lang).unwrap()), Some(true), "{country} {lang}");
            }
        }
    }

    #[test]
    fn countries_outside_the_table_and_the_unknown_country_have_no_opinion() {
        let fr = Language::parse("fr").unwrap();
        assert_eq!(plausible(Country::UNKNOWN, fr), None);
        assert_eq!(plausible(Country::parse("AQ").unwrap(), fr), None);
        assert_eq!(plausible(Country::parse("JP").unwrap(), fr), Some(false));
    }
}
