//! Country groups for the router's hierarchy: the sub-regions of the UN
//! M49 geographic grouping (Northern Africa, South America, Western
//! Europe, South-eastern Asia, ...), written out here by hand. A country
//! with a handful of clicks is routed by what its neighbours show before
//! its own data says otherwise; how much the countries of a group differ
//! is estimated from the data like every other level.

use crate::model::Country;

/// The M49 sub-region of a country (1-based), `0` when it has none here
/// (unknown or unlisted codes).
pub(super) fn region(c: Country) -> u8 {
    match &c.bytes() {
        // Northern Africa
        b"DZ" | b"EG" | b"LY" | b"MA" | b"SD" | b"TN" | b"EH" => 1,
        // Eastern Africa
        b"BI" | b"KM" | b"DJ" | b"ER" | b"ET" | b"KE" | b"MG" | b"MW" | b"MU" | b"YT" | b"MZ" | b"RE" | b"RW"
        | b"SC" | b"SO" | b"SS" | b"TZ" | b"UG" | b"ZM" | b"ZW" | b"IO" | b"TF" => 2,
        // Middle Africa
        b"AO" | b"CM" | b"CF" | b"TD" | b"CG" | b"CD" | b"GQ" | b"GA" | b"ST" => 3,
        // Southern Africa
        b"BW" | b"SZ" | b"LS" | b"NA" | b"ZA" => 4,
        // Western Africa
        b"BJ" | b"BF" | b"CV" | b"CI" | b"GM" | b"GH" | b"GN" | b"GW" | b"LR" | b"ML" | b"MR" | b"NE" | b"NG"
        | b"SH" | b"SN" | b"SL" | b"TG" => 5,
        // Caribbean
        b"AI" | b"AG" | b"AW" | b"BS" | b"BB" | b"BQ" | b"VG" | b"KY" | b"CU" | b"CW" | b"DM" | b"DO" | b"GD"
        | b"GP" | b"HT" | b"JM" | b"MQ" | b"MS" | b"PR" | b"BL" | b"KN" | b"LC" | b"MF" | b"VC" | b"SX" | b"TT"
        | b"TC" | b"VI" => 6,
        // Central America
        b"BZ" | b"CR" | b"SV" | b"GT" | b"HN" | b"MX" | b"NI" | b"PA" => 7,
        // South America
        b"AR" | b"BO" | b"BV" | b"BR" | b"CL" | b"CO" | b"EC" | b"FK" | b"GF" | b"GY" | b"PY" | b"PE" | b"GS"
        | b"SR" | b"UY" | b"VE" => 8,
        // Northern America
        b"BM" | b"CA" | b"GL" | b"PM" | b"US" => 9,
        // Central Asia
        b"KZ" | b"KG" | b"TJ" | b"TM" | b"UZ" => 10,
        // Eastern Asia
        b"CN" | b"HK" | b"MO" | b"KP" | b"JP" | b"MN" | b"KR" | b"TW" => 11,
        // South-eastern Asia
        b"BN" | b"KH" | b"ID" | b"LA" | b"MY" | b"MM" | b"PH" | b"SG" | b"TH" | b"TL" | b"VN" => 12,
        // Southern Asia
        b"AF" | b"BD" | b"BT" | b"IN" | b"IR" | b"MV" | b"NP" | b"PK" | b"LK" => 13,
        // Western Asia
        b"AM" | b"AZ" | b"BH" | b"CY" | b"GE" | b"IQ" | b"IL" | b"JO" | b"KW" | b"LB" | b"OM" | b"QA" | b"SA"
        | b"PS" | b"SY" | b"TR" | b"AE" | b"YE" => 14,
        // Eastern Europe
        b"BY" | b"BG" | b"CZ" | b"HU" | b"PL" | b"MD" | b"RO" | b"RU" | b"SK" | b"UA" => 15,
        // Northern Europe
        b"AX" | b"DK" | b"EE" | b"FO" | b"FI" | b"GG" | b"IS" | b"IE" | b"IM" | b"JE" | b"LV" | b"LT" | b"NO"
        | b"SJ" | b"SE" | b"GB" => 16,
        // Southern Europe
        b"AL" | b"AD" | b"BA" | b"HR" | b"GI" | b"GR" | b"VA" | b"IT" | b"MT" | b"ME" | b"MK" | b"PT" | b"SM"
        | b"RS" | b"SI" | b"ES" | b"XK" => 17,
        // Western Europe
        b"AT" | b"BE" | b"FR" | b"DE" | b"LI" | b"LU" | b"MC" | b"NL" | b"CH" => 18,
        // Australia and New Zealand
        b"AU" | b"NZ" | b"CX" | b"CC" | b"HM" | b"NF" => 19,
        // Melanesia
        b"FJ" | b"NC" | b"PG" | b"SB" | b"VU" => 20,
        // Micronesia
        b"GU" | b"KI" | b"MH" | b"FM" | b"NR" | b"MP" | b"PW" | b"UM" => 21,
        // Polynesia
        b"AS" | b"CK" | b"PF" | b"NU" | b"PN" | b"WS" | b"TK" | b"TO" | b"TV" | b"WF" => 22,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_share_a_region_and_distant_countries_do_not() {
        let r = |s: &str| region(Country::parse(s).unwrap());
        assert_eq!(r("DE"), r("FR"));
        assert_eq!(r("BR"), r("AR"));
        assert_eq!(r("ID"), r("VN"));
        assert_ne!(r("DE"), r("BR"));
        assert_ne!(r("US"), r("MX"));
        assert_eq!(region(Country::UNKNOWN), 0);
    }
}
