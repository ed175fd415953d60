//! Self-describing, unforgeable click ids.
//!
//! A click id carries everything a postback needs to attribute a conversion
//! even when the click row was lost in a crash: the click time, smartlink,
//! offer, affiliate and segment. It is authenticated with HMAC-SHA256 under
//! a server secret (truncated to 80 bits) and encoded as 52 URL-safe base64
//! characters.
//!
//! Layout (39 bytes, version 2): version (1) · unix seconds (4) ·
//! link key (3: a smartlink, or a direct link, see
//! `model::DIRECT_LINK_BIT`) · offer key (3, 0 = fallback) · affiliate key
//! (3, 0 = none) · traffic source key (3, 0 = none) · country (2) ·
//! device << 4 | os (1) · browser << 4 | flags (1) · language (2) ·
//! random nonce (6) · MAC (10), encoded as 52 characters. Version 1 ids
//! (36 bytes, 48 characters: the same without the source) still decode, so
//! clicks made before an upgrade keep attributing.
//!
//! An 80-bit tag makes a blind forgery a 2^-80 guess per attempt; the 48-bit
//! nonce (within one second and one smartlink/offer/segment) keeps ids
//! //! unique. Browser and language are carried so conversions can be broken
//! down by them even when the click row was lost.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{Browser, Country, Device, Language, Os, Segment};

const VERSION: u8 = 2;
const PAYLOAD: usize = 29;
const MAC_LEN: usize = 10;
const RAW: usize = PAYLOAD + MAC_LEN;
/// Length of an encoded click id.
pub const ENCODED_LEN: usize = 52;
/// Version 1 (before traffic sources): no source key.
const V1_PAYLOAD: usize = 26;
const V1_ENCODED_LEN: usize = 48;
/// Largest numeric key a click id can carry.
pub const MAX_KEY: u32 = (1 << 24) - 1;

/// The facts a click id carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClickFacts {
    /// Click time, seconds since the Unix epoch.
    pub time_secs: u32,
    pub smartlink: u32,
    /// `None` for a click sent to the fallback URL.
    pub offer: Option<u32>,
    pub affiliate: Option<u32>,
    /// The traffic source's key, if the click came from a known one.
    pub source: Option<u32>,
    pub segment: Segment,
    pub browser: Browser,
    pub language: Option<Language>,
    /// Four bits of click flags: the quality class the click was judged
    /// (`smartlink_visitor::quality::QualityClass::flags`; 0 for a human).
    pub flags: u8,
    pub nonce: [u8; 6],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClickIdError {
    #[error("click id must be {ENCODED_LEN} (or, from before version 2, {V1_ENCODED_LEN}) URL-safe base64 characters")]
    Malformed,
    #[error("click id signature does not verify (forged or altered)")]
    BadSignature,
    #[error("click id has an unknown version")]
    UnknownVersion,
}

/// Signs and verifies click ids with one secret.
#[derive(Clone)]
pub struct ClickIdCodec {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for ClickIdCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClickIdCodec(<secret>)")
    }
}

impl ClickIdCodec {
    /// `secret` should be at least 32 random bytes.
    pub fn new(secret: &[u8]) -> ClickIdCodec {
        // HMAC accepts keys of any length; this cannot fail.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        ClickIdCodec { keyed }
    }

    pub fn encode(&self, f: &ClickFacts) -> String {
        let mut raw = [0u8; RAW];
        raw[0] = VERSION;
        raw[1..5].copy_from_slice(&f.time_secs.to_be_bytes());
        raw[5..8].copy_from_slice(&u24(f.smartlink));
        raw[8..11].copy_from_slice(&u24(f.offer.unwrap_or(0)));
        raw[11..14].copy_from_slice(&u24(f.affiliate.unwrap_or(0)));
        raw[14..17].copy_from_slice(&u24(f.source.unwrap_or(0)));
        raw[17..19].copy_from_slice(&f.segment.country.bytes());
        raw[19] = ((f.segment.device.index() as u8) << 4) | f.segment.os.index() as u8;
        raw[20] = ((f.browser.index() as u8) << 4) | (f.flags & 0x0f);
        raw[21..23].copy_from_slice(&f.language.map_or(0, |l| l.code() + 1).to_be_bytes());
        raw[23..29].copy_from_slice(&f.nonce);
        let mut mac = self.keyed.clone();
        mac.update(&raw[..PAYLOAD]);
        let tag = mac.finalize().into_bytes();
        raw[PAYLOAD..].copy_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(&self, id: &str) -> Result<ClickFacts, ClickIdError> {
        let payload = match id.len() {
            ENCODED_LEN => PAYLOAD,
            V1_ENCODED_LEN => V1_PAYLOAD,
            _ => return Err(ClickIdError::Malformed),
        };
        let mut raw = [0u8; RAW];
        let n = URL_SAFE_NO_PAD.decode_slice(id.as_bytes(), &mut raw).map_err(|_| ClickIdError::Malformed)?;
        if n != payload + MAC_LEN {
            return Err(ClickIdError::Malformed);
        }
        let mut mac = self.keyed.clone();
        mac.update(&raw[..payload]);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&raw[payload..n]).map_err(|_| ClickIdError::BadSignature)?;
        let version = if payload == PAYLOAD { VERSION } else { 1 };
        if raw[0] != version {
            return Err(ClickIdError::UnknownVersion);
        }
        let key = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let nonzero = |k: u32| (k != 0).then_some(k);
        // Version 1 has no source: what follows the affiliate starts 3 bytes earlier.
        let (source, at) = if version == 1 { (None, 14) } else { (nonzero(key(&raw[14..17])), 17) };
        let device = Device::from_index((raw[at + 2] >> 4) as usize).ok_or(ClickIdError::Malformed)?;
        let os = Os::from_index((raw[at + 2] & 0x0f) as usize).ok_or(ClickIdError::Malformed)?;
        let browser = Browser::from_index((raw[at + 3] >> 4) as usize).ok_or(ClickIdError::Malformed)?;
        let lang = u16::from_be_bytes([raw[at + 4], raw[at + 5]]);
        let language =
            if lang == 0 { None } else { Some(Language::from_code(lang - 1).ok_or(ClickIdError::Malformed)?) };
        let mut nonce = [0u8; 6];
        nonce.copy_from_slice(&raw[at + 6..at + 12]);
        Ok(ClickFacts {
            time_secs: u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]),
            smartlink: key(&raw[5..8]),
            offer: nonzero(key(&raw[8..11])),
            affiliate: nonzero(key(&raw[11..14])),
            source,
            segment: Segment { country: Country::from_bytes([raw[at], raw[at + 1]]), device, os },
            browser,
            language,
            flags: raw[at + 3] & 0x0f,
            nonce,
        })
    }
}

fn u24(k: u32) -> [u8; 3] {
    debug_assert!(k <= MAX_KEY);
    let b = k.to_be_bytes();
    [b[1], b[2], b[3]]
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn facts() -> ClickFacts {
        ClickFacts {
            time_secs: 1_767_571_200,
            smartlink: 7,
            offer: Some(42),
            affiliate: Some(3),
            source: Some(5),
            segment: Segment { country: Country::parse("SE").unwrap(), device: Device::Tablet, os: Os::Android },
            browser: Browser::Samsung,
            language: Some(Language::parse("sv").unwrap()),
            flags: 0,
            nonce: [1, 2, 3, 4, 5, 6],
        }
    }

    #[test]
    fn click_id_round_trips_and_is_url_safe() {
        let c = ClickIdCodec::new(b"0123456789abcdef0123456789abcdef");
        let table = [
            facts(),
            ClickFacts {
                offer: None,
                affiliate: None,
                source: None,
                language: None,
                browser: Browser::Other,
                ..facts()
            },
            ClickFacts { language: Some(Language::parse("zz").unwrap()), flags: 0x0f, ..facts() },
            ClickFacts {
                smartlink: MAX_KEY,
                offer: Some(MAX_KEY),
                affiliate: Some(MAX_KEY),
                source: Some(MAX_KEY),
                time_secs: u32::MAX,
                ..facts()
            },
        ];
        for f in table {
            let id = c.encode(&f);
            assert_eq!(id.len(), ENCODED_LEN);
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{id}");
            assert_eq!(c.decode(&id), Ok(f));
        }
    }

    #[test]
    fn altered_or_foreign_click_ids_are_rejected() {
        let c = ClickIdCodec::new(b"secret-one");
        let id = c.encode(&facts());
        // Flip every character in turn: each variant must fail to verify.
        for i in 0..id.len() {
            let mut b = id.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(b).unwrap();
            if altered != id {
                assert!(c.decode(&altered).is_err(), "altered at {i} accepted");
            }
        }
        assert_eq!(ClickIdCodec::new(b"secret-two").decode(&id), Err(ClickIdError::BadSignature));
        assert_eq!(c.decode("short"), Err(ClickIdError::Malformed));
        assert_eq!(c.decode(&"*".repeat(ENCODED_LEN)), Err(ClickIdError::Malformed));
    }

    fn codec() -> ClickIdCodec {
        ClickIdCodec::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn every_device_os_and_browser_survives_the_round_trip() {
        let c = codec();
        for &device in Device::ALL {
            for &os in Os::ALL {
                for &browser in Browser::ALL {
                    let f = ClickFacts { segment: Segment { device, os, ..facts().segment }, browser, ..facts() };
                    assert_eq!(c.decode(&c.encode(&f)), Ok(f), "{device} {os} {browser}");
                }
            }
        }
    }

    #[test]
    fn every_language_and_none_survive_the_round_trip() {
        let c = codec();
        let languages = (0..676).map(|code| Some(Language::from_code(code).unwrap())).chain([None]);
        for language in languages {
            let f = ClickFacts { language, ..facts() };
            assert_eq!(c.decode(&c.encode(&f)), Ok(f), "{language:?}");
        }
    }

    /// (flags given) -> flags carried: the low four bits, never touching the
    /// browser next to them.
    #[test]
    fn only_the_four_flag_bits_are_carried() {
        let c = codec();
        for (flags, carried) in
            [(0x00, 0x00), (0x01, 0x01), (0x06, 0x06), (0x0f, 0x0f), (0x10, 0x00), (0xf5, 0x05), (0xff, 0x0f)]
        {
            for browser in [Browser::Chrome, Browser::Other] {
                let got = c.decode(&c.encode(&ClickFacts { flags, browser, ..facts() })).unwrap();
                assert_eq!((got.flags, got.browser), (carried, browser), "flags {flags:#04x}");
            }
        }
    }

    /// The signed bytes of `facts()` with one edit, encoded: what a holder of
    /// the secret (a future version, a bug) could sign.
    fn signed_with(c: &ClickIdCodec, edit: impl Fn(&mut [u8; RAW])) -> String {
        let mut raw = [0u8; RAW];
        let n = URL_SAFE_NO_PAD.decode_slice(c.encode(&facts()).as_bytes(), &mut raw).unwrap();
        assert_eq!(n, RAW);
        edit(&mut raw);
        let mut mac = c.keyed.clone();
        mac.update(&raw[..PAYLOAD]);
        let tag = mac.finalize().into_bytes();
        raw[PAYLOAD..].copy_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// (one field of a correctly signed id changed) -> what decoding says.
    #[test]
    fn a_signed_id_is_read_field_by_field_and_impossible_values_are_refused() {
        let c = codec();
        let check = |what: &str, edit: &dyn Fn(&mut [u8; RAW]), want: Result<ClickFacts, ClickIdError>| {
            assert_eq!(c.decode(&signed_with(&c, edit)), want, "{what}");
        };
        check("unchanged", &|_| {}, Ok(facts()));
        check("version 3", &|r| r[0] = 3, Err(ClickIdError::UnknownVersion));
        check("version 1 at the new length", &|r| r[0] = 1, Err(ClickIdError::UnknownVersion));
        check("version 0", &|r| r[0] = 0, Err(ClickIdError::UnknownVersion));
        check("time", &|r| r[1..5].copy_from_slice(&[0, 0, 1, 2]), Ok(ClickFacts { time_secs: 258, ..facts() }));
        check("smartlink", &|r| r[5..8].copy_from_slice(&[1, 2, 3]), Ok(ClickFacts { smartlink: 0x010203, ..facts() }));
        check("no offer", &|r| r[8..11].fill(0), Ok(ClickFacts { offer: None, ..facts() }));
        check("offer 1", &|r| r[8..11].copy_from_slice(&[0, 0, 1]), Ok(ClickFacts { offer: Some(1), ..facts() }));
        check("no affiliate", &|r| r[11..14].fill(0), Ok(ClickFacts { affiliate: None, ..facts() }));
        check("no source", &|r| r[14..17].fill(0), Ok(ClickFacts { source: None, ..facts() }));
        check("source 9", &|r| r[14..17].copy_from_slice(&[0, 0, 9]), Ok(ClickFacts { source: Some(9), ..facts() }));
        let unknown = Segment { country: Country::UNKNOWN, ..facts().segment };
        check(
            "unassigned country",
            &|r| r[17..19].copy_from_slice(b"XX"),
            Ok(ClickFacts { segment: unknown, ..facts() }),
        );
        let desktop_windows = Segment { device: Device::Desktop, os: Os::Windows, ..facts().segment };
        check("device 0, os 0", &|r| r[19] = 0x00, Ok(ClickFacts { segment: desktop_windows, ..facts() }));
        check("device 3", &|r| r[19] = 0x30, Err(ClickIdError::Malformed));
        check("os 7", &|r| r[19] = 0x07, Err(ClickIdError::Malformed));
        check("browser 10", &|r| r[20] = 0xa0, Err(ClickIdError::Malformed));
        check("browser 9, flags 5", &|r| r[20] = 0x95, Ok(ClickFacts { browser: Browser::Other, flags: 5, ..facts() }));
        check("no language", &|r| r[21..23].fill(0), Ok(ClickFacts { language: None, ..facts() }));
        let zz = Some(Language::parse("zz").unwrap());
        check(
            "language 675",
            &|r| r[21..23].copy_from_slice(&676u16.to_be_bytes()),
            Ok(ClickFacts { language: zz, ..facts() }),
        );
        check("language 676", &|r| r[21..23].copy_from_slice(&677u16.to_be_bytes()), Err(ClickIdError::Malformed));
        check("nonce", &|r| r[23..29].fill(9), Ok(ClickFacts { nonce: [9; 6], ..facts() }));
    }

    /// A version 1 id as the previous release signed it: 36 bytes, no source.
    fn v1_id(c: &ClickIdCodec, f: &ClickFacts) -> String {
        let mut raw = [0u8; V1_PAYLOAD + MAC_LEN];
        raw[0] = 1;
        raw[1..5].copy_from_slice(&f.time_secs.to_be_bytes());
        raw[5..8].copy_from_slice(&u24(f.smartlink));
        raw[8..11].copy_from_slice(&u24(f.offer.unwrap_or(0)));
        raw[11..14].copy_from_slice(&u24(f.affiliate.unwrap_or(0)));
        raw[14..16].copy_from_slice(&f.segment.country.bytes());
        raw[16] = ((f.segment.device.index() as u8) << 4) | f.segment.os.index() as u8;
        raw[17] = ((f.browser.index() as u8) << 4) | (f.flags & 0x0f);
        raw[18..20].copy_from_slice(&f.language.map_or(0, |l| l.code() + 1).to_be_bytes());
        raw[20..26].copy_from_slice(&f.nonce);
        let mut mac = c.keyed.clone();
        mac.update(&raw[..V1_PAYLOAD]);
        let tag = mac.finalize().into_bytes();
        raw[V1_PAYLOAD..].copy_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    #[test]
    fn click_ids_from_before_sources_still_decode_without_a_source() {
        let c = codec();
        let old = ClickFacts { source: None, ..facts() };
        let id = v1_id(&c, &old);
        assert_eq!(id.len(), V1_ENCODED_LEN);
        assert_eq!(c.decode(&id), Ok(old));
        // Altered or foreign, they fail like new ones.
        let mut b = id.clone().into_bytes();
        b[10] = if b[10] == b'A' { b'B' } else { b'A' };
        assert!(c.decode(std::str::from_utf8(&b).unwrap()).is_err());
        assert_eq!(ClickIdCodec::new(b"other").decode(&id), Err(ClickIdError::BadSignature));
        // A version 2 payload cut to the old length does not pass as version 1.
        assert!(c.decode(&c.encode(&old)[..V1_ENCODED_LEN]).is_err());
    }

    #[test]
    fn a_codec_never_prints_its_secret() {
        assert_eq!(format!("{:?}", ClickIdCodec::new(b"hunter2")), "ClickIdCodec(<secret>)");
    }
}
