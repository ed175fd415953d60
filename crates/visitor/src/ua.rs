//! User-Agent classification into device class, OS family and browser
//! family: the three facts targeting and the router's segments need.
//!
//! This runs once per click on the redirect path, so it is built for speed
//! and predictability rather than for completeness:
//!
//! * **One pass, no allocation.** The UA is split into words (runs of
//!   `[A-Za-z0-9.]`); each word is looked up, case-insensitively, in a
//!   perfect-hash table built at compile time. A hit sets *evidence* bits
//!   ("saw `Android`", "saw `Mobile`", "saw `Edg`", ...). Matching whole
//!   words rather than substrings avoids the classic false positives (`Edg`
//!   inside `Edge`, `OPR` inside a model name, `Mobile` inside `IEMobile`).
//!   Word boundaries come from bitmaps built eight bytes at a time, so the
//!   per-byte work has no branches; see `Bitmaps`.
//! * **Decide from the evidence in a fixed order.** The order is where the
//!   knowledge lives: Windows Phone claims to be Android *and* iPhone, Edge
//!   and Opera claim to be Chrome, Chrome claims to be Safari, and so on.
//!   See `decide_os`, `decide_device` and `decide_browser`.
//! * **Families, not versions.** Nothing here parses a version number.
//!
//! The full uap-core regex set classifies more exotic agents, but costs tens
//! of microseconds per UA; this costs a few hundred nanoseconds. Its
//! agreement with the uap-core test cases is measured in `tests/ua.rs`, its
//! speed in `benches/ua.rs`.
//!
//! Bots are not this module's concern: a crawler that imitates a browser is
//! classified as that browser, and the bot filter runs separately.

use crate::types::{Browser, Device, Os};

/// What the click path needs to know about a User-Agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UaInfo {
    pub device: Device,
    pub os: Os,
    pub browser: Browser,
}

impl UaInfo {
    /// What an empty, unparseable or unknown UA is taken to be.
    pub const UNKNOWN: UaInfo = UaInfo { device: Device::Desktop, os: Os::Other, browser: Browser::Other };
}

/// User-Agent client hints, when the browser sent them.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientHints<'a> {
    /// `Sec-CH-UA-Mobile` (`?1` / `?0`).
    pub mobile: Option<&'a str>,
    /// `Sec-CH-UA-Platform` (`"Android"`, `"Windows"`, ...).
    pub platform: Option<&'a str>,
}

/// Classifies a User-Agent, letting valid client hints override the UA.
///
/// Never panics and never allocates; an empty or unrecognisable UA is
/// [`UaInfo::UNKNOWN`] (desktop, other, other).
///
/// iPadOS 13+ Safari asks for desktop sites by default and then sends a UA
/// identical to macOS Safari, and it sends no client hints: such a visit is
/// classified desktop/macos/safari, because nothing in the request tells
/// them apart. An iPad is still recognised when its UA carries an iOS-only
/// token next to `Macintosh` (`Mobile/…` from in-app browsers, `CriOS`,
/// `FxiOS`, `EdgiOS`, ...).
pub fn classify(ua: &str, hints: ClientHints<'_>) -> UaInfo {
    let ev = scan(ua.as_bytes());
    let os = decide_os(ev);
    let device = decide_device(ev, os);
    let browser = decide_browser(ev, os);
    apply_hints(UaInfo { device, os, browser }, hints)
}

/// Client hints are sent by Chromium browsers only and are more reliable
/// than the UA (which Chrome has frozen and reduced), so a valid hint wins.
/// Invalid or unknown values are ignored rather than trusted.
/// Applies client hints on top of a UA's own reading (what [`classify`]
/// does after reading the UA).
pub fn apply_hints(mut info: UaInfo, hints: ClientHints<'_>) -> UaInfo {
    let ua_device = info.device;
    if let Some(os) = hints.platform.and_then(parse_platform) {
        // A desktop UA from a phone or tablet platform is a "request
        // desktop site" (Chrome on Android then sends a Linux UA): a touch
        // device, as with iPadOS. Only the mobile hint can say which.
        let ua_desktop_os = matches!(info.os, Os::Windows | Os::Macos | Os::Linux | Os::Chromeos);
        if matches!(os, Os::Android | Os::Ios) && ua_desktop_os && info.device == Device::Desktop {
            info.device = Device::Tablet;
        }
        info.os = os;
    }
    match hints.mobile.map(str::trim) {
        // A tablet is not "mobile" in the hint's sense, but some tablet
        // browsers send ?1 anyway; a UA that names a tablet is more specific.
        Some("?1") if ua_device != Device::Tablet => info.device = Device::Mobile,
        // ?0 on a phone-looking UA: Android and iOS browsers send ?0 on
        // tablets; anything else that says ?0 is a desktop.
        Some("?0") if info.device == Device::Mobile => {
            info.device = match info.os {
                Os::Android | Os::Ios => Device::Tablet,
                _ => Device::Desktop,
            };
        }
        _ => {}
    }
    info
}

/// `Sec-CH-UA-Platform` is a structured-header string, sent quoted; the
/// quotes are optional here so a proxy that strips them does not matter.
/// `"Unknown"` and values outside the spec's list carry no information.
fn parse_platform(raw: &str) -> Option<Os> {
    let s = raw.trim();
    let s = s.strip_prefix('"').unwrap_or(s);
    let s = s.strip_suffix('"').unwrap_or(s);
    let eq = |name: &str| s.eq_ignore_ascii_case(name);
    if eq("Android") {
        Some(Os::Android)
    } else if eq("iOS") {
        Some(Os::Ios)
    } else if eq("Windows") {
        Some(Os::Windows)
    } else if eq("macOS") {
        Some(Os::Macos)
    } else if eq("Linux") {
        Some(Os::Linux)
    } else if eq("Chrome OS") || eq("Chromium OS") {
        Some(Os::Chromeos)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Evidence bits. Each word of the UA can set several.

type Ev = u64;

const ANDROID: Ev = 1 << 0;
/// `iPhone` / `iPod`.
const IPHONE: Ev = 1 << 1;
const IPAD: Ev = 1 << 2;
/// A bare `iOS` word (apps: `Foo/1.2 iOS/17.0`).
const IOS: Ev = 1 << 3;
/// A browser that exists only on iOS (`CriOS`, `FxiOS`, `EdgiOS`, ...).
const IOS_ONLY: Ev = 1 << 4;
const MAC: Ev = 1 << 5;
const CROS: Ev = 1 << 6;
const WINDOWS: Ev = 1 << 7;
/// Windows Phone / Windows Mobile: claims Android and iPhone too.
const WINPHONE: Ev = 1 << 8;
const LINUX: Ev = 1 << 9;
/// An OS we do not name that carries no Android token (BlackBerry,
/// Symbian, webOS, BSDs, consoles, ...).
const OTHER_OS: Ev = 1 << 10;
/// An OS we do not name that *does* claim Android or Linux (KaiOS, Tizen,
/// Sailfish): checked before Android.
const OTHER_OS_FIRST: Ev = 1 << 11;
const CFNETWORK: Ev = 1 << 12;
const DARWIN: Ev = 1 << 13;
/// Intel/Mac hardware in Darwin app UAs, which otherwise mean iOS.
const MAC_HW: Ev = 1 << 14;
/// `Mobile`, `Mobi`, `Phone`, J2ME/MIDP, Symbian, BlackBerry, ...
const MOBILE: Ev = 1 << 15;
/// Handset brands and WAP-era tokens: a phone when nothing else decides.
const MOBILE_WEAK: Ev = 1 << 16;
const TABLET: Ev = 1 << 17;
/// Kindle e-readers and Fire tablets.
const KINDLE: Ev = 1 << 18;
/// Televisions, set-top boxes, consoles and headsets: not handheld.
const TV: Ev = 1 << 19;
/// A rendering-engine token (`AppleWebKit`, `Gecko`, `Presto`, ...).
/// With [`MOZILLA`], the agent is a browser and follows the convention of
/// saying `Mobile` on phones.
const ENGINE: Ev = 1 << 20;
const EDGE: Ev = 1 << 21;
const OPERA: Ev = 1 << 22;
const SAMSUNG: Ev = 1 << 23;
const YANDEX: Ev = 1 << 24;
const UC: Ev = 1 << 25;
const IE: Ev = 1 << 26;
const FIREFOX: Ev = 1 << 27;
const CHROME: Ev = 1 << 28;
const SAFARI: Ev = 1 << 29;
/// `Version/…`: Safari's and Android stock browser's version token.
const VERSION: Ev = 1 << 30;
/// Android WebView (`; wv)`): an app, not Chrome.
const WEBVIEW: Ev = 1 << 31;
/// A browser or in-app shell with its own brand that also carries the
/// tokens of the engine it is built on (Vivaldi, Facebook, Silk, ...).
const OTHER_BROWSER: Ev = 1 << 32;
/// The `Mozilla/…` product token that browsers start with.
const MOZILLA: Ev = 1 << 33;

// Word identities needed only for two-word phrases; never kept as evidence.
const W_LIKE: Ev = 1 << 56;
const W_WINDOWS: Ev = 1 << 57;
const W_PHONE: Ev = 1 << 58;
const W_CE: Ev = 1 << 59;
const W_OPERA: Ev = 1 << 60;
const W_MINI: Ev = 1 << 61;
const W_UC: Ev = 1 << 62;
const W_BROWSER: Ev = 1 << 63;
/// `SM-…` / `GT-…`: a Samsung model number follows.
const W_SAMSUNG_MODEL: Ev = 1 << 54;
const WORD_ONLY: Ev = W_LIKE | W_WINDOWS | W_PHONE | W_CE | W_OPERA | W_MINI | W_UC | W_BROWSER | W_SAMSUNG_MODEL;

/// A brand that is also an ordinary word or a device name ("motorola edge",
/// "IRON_2", "LINE"): it counts only as a product token, i.e. followed by
/// `/` or outside the parenthesised platform comment.
const PRODUCT: Ev = 1 << 53;

/// The key may also match the leading letters of a longer word
/// (`Android4.0.4`, `UCWEB7.9`, `BlackBerry9700`, `iPhone14,3`, `Win32`).
/// Only keys that are unambiguous as a prefix carry it.
const PREFIX: Ev = 1 << 55;

/// Words that mean something, lower case. Order does not matter.
const KEYS: &[(&str, Ev)] = &[
    // Phrases and context. (Phrase parts and flags are stripped from the
    // evidence; see `scan`.)
    ("like", W_LIKE),
    ("windows", WINDOWS | W_WINDOWS | PREFIX),
    ("phone", MOBILE | W_PHONE),
    ("mobile", MOBILE | W_PHONE | PREFIX),
    ("ce", W_CE),
    ("mini", W_MINI),
    ("browser", W_BROWSER | PREFIX),
    ("uc", W_UC),
    ("sm", W_SAMSUNG_MODEL),
    ("gt", W_SAMSUNG_MODEL),
    // Android and what ships it.
    ("android", ANDROID | PREFIX),
    ("adr", ANDROID),
    ("dalvik", ANDROID),
    ("silk", ANDROID | TABLET | KINDLE | OTHER_BROWSER | PREFIX),
    ("kindle", TABLET | KINDLE | PREFIX),
    // Apple.
    ("iphone", IPHONE | PREFIX),
    ("ipod", IPHONE | PREFIX),
    ("ipad", IPAD | PREFIX),
    ("ios", IOS),
    ("iphoneos", IOS),
    ("ipados", IOS | IPAD),
    ("macintosh", MAC),
    ("mac", MAC | PREFIX),
    ("macos", MAC),
    ("darwin", DARWIN),
    ("cfnetwork", CFNETWORK),
    ("x86", MAC_HW),
    ("i386", MAC_HW),
    ("intel", MAC_HW),
    ("macbook", MAC_HW | PREFIX),
    ("macbookpro", MAC_HW | PREFIX),
    ("macbookair", MAC_HW | PREFIX),
    ("macmini", MAC_HW | PREFIX),
    ("imac", MAC_HW | PREFIX),
    ("macpro", MAC_HW | PREFIX),
    // Windows.
    ("win", WINDOWS | PREFIX),
    ("winnt", WINDOWS | PREFIX),
    ("wow64", WINDOWS),
    ("windowsce", WINDOWS | MOBILE),
    ("windowsphone", WINPHONE),
    ("wpdesktop", WINPHONE),
    ("zunewp7", WINPHONE),
    ("xblwp7", WINPHONE),
    // Chrome OS, Linux.
    ("cros", CROS),
    ("linux", LINUX | PREFIX),
    ("x11", LINUX),
    ("ubuntu", LINUX | PREFIX),
    ("kubuntu", LINUX),
    ("xubuntu", LINUX),
    ("debian", LINUX | PREFIX),
    ("fedora", LINUX | PREFIX),
    ("gentoo", LINUX | PREFIX),
    ("mandriva", LINUX | PREFIX),
    ("centos", LINUX),
    ("redhat", LINUX),
    ("suse", LINUX),
    ("opensuse", LINUX),
    ("slackware", LINUX),
    ("mint", LINUX),
    ("manjaro", LINUX),
    ("raspbian", LINUX),
    // Other operating systems.
    ("kaios", OTHER_OS_FIRST | MOBILE),
    ("tizen", OTHER_OS_FIRST),
    ("sailfish", OTHER_OS_FIRST),
    ("openharmony", OTHER_OS),
    ("freebsd", OTHER_OS),
    ("openbsd", OTHER_OS),
    ("netbsd", OTHER_OS),
    ("dragonfly", OTHER_OS),
    ("sunos", OTHER_OS),
    ("solaris", OTHER_OS),
    ("haiku", OTHER_OS),
    ("webos", OTHER_OS | PREFIX),
    ("web0s", OTHER_OS | TV),
    ("hpwos", OTHER_OS),
    ("blackberry", OTHER_OS | MOBILE | PREFIX),
    ("bb10", OTHER_OS | MOBILE),
    ("playbook", OTHER_OS | TABLET),
    ("rim", OTHER_OS),
    ("symbian", OTHER_OS | MOBILE | PREFIX),
    ("symbianos", OTHER_OS | MOBILE),
    ("symbos", OTHER_OS | MOBILE),
    ("series40", OTHER_OS | MOBILE),
    ("series60", OTHER_OS | MOBILE),
    ("s60", OTHER_OS | MOBILE),
    ("meego", OTHER_OS | MOBILE),
    ("maemo", OTHER_OS | MOBILE),
    ("bada", OTHER_OS | MOBILE),
    ("brew", OTHER_OS | MOBILE),
    ("palmos", OTHER_OS | MOBILE),
    ("crkey", OTHER_OS | TV),
    ("roku", OTHER_OS | TV),
    ("playstation", OTHER_OS_FIRST | TV),
    ("nintendo", OTHER_OS_FIRST | TV),
    // Device class.
    ("mobi", MOBILE),
    ("smartphone", MOBILE),
    ("iemobile", MOBILE | IE),
    ("midp", OTHER_OS | MOBILE | PREFIX),
    ("cldc", OTHER_OS | MOBILE | PREFIX),
    ("j2me", OTHER_OS | MOBILE),
    ("up.browser", MOBILE),
    ("tablet", TABLET),
    ("tab", TABLET),
    ("pad", TABLET),
    ("xoom", TABLET),
    ("mediapad", TABLET),
    ("ideatab", TABLET),
    ("tv", TV),
    ("smarttv", TV),
    ("hbbtv", TV),
    ("netcast", TV | PREFIX),
    ("googletv", TV),
    ("appletv", OTHER_OS | TV | PREFIX),
    ("tvos", OTHER_OS | TV),
    ("watchos", OTHER_OS),
    ("bravia", TV),
    ("xbox", TV),
    ("nokia", MOBILE_WEAK | PREFIX),
    ("samsung", MOBILE_WEAK | PREFIX),
    ("sonyericsson", MOBILE_WEAK),
    ("lg", MOBILE_WEAK | PREFIX),
    ("mot", MOBILE_WEAK | PREFIX),
    ("sie", MOBILE_WEAK | PREFIX),
    ("sec", MOBILE_WEAK | PREFIX),
    ("sgh", MOBILE_WEAK | PREFIX),
    ("alcatel", MOBILE_WEAK | PREFIX),
    ("docomo", MOBILE_WEAK | PREFIX),
    ("kddi", MOBILE_WEAK | PREFIX),
    ("softbank", MOBILE_WEAK | PREFIX),
    ("vodafone", MOBILE_WEAK | PREFIX),
    ("netfront", MOBILE_WEAK),
    ("obigo", MOBILE_WEAK),
    ("wap", MOBILE_WEAK),
    ("wap2.0", MOBILE_WEAK),
    ("mozilla", MOZILLA),
    ("applewebkit", ENGINE | PREFIX),
    ("webkit", ENGINE),
    ("gecko", ENGINE),
    ("khtml", ENGINE),
    ("presto", ENGINE),
    // Browsers we name.
    ("edg", EDGE | PRODUCT),
    ("edga", EDGE),
    ("edgios", EDGE | IOS_ONLY),
    ("edge", EDGE | PRODUCT),
    ("opr", OPERA),
    ("opera", OPERA | W_OPERA | PREFIX),
    ("opios", OPERA | IOS_ONLY),
    ("opt", OPERA | PRODUCT),
    ("opx", OPERA | PRODUCT),
    ("coast", OPERA | PRODUCT),
    ("samsungbrowser", SAMSUNG),
    ("yabrowser", YANDEX),
    ("yasearchbrowser", YANDEX),
    ("ucbrowser", UC | PREFIX),
    ("ucweb", UC | PREFIX),
    ("ucmobile", UC),
    ("ucturbo", UC),
    ("ubrowser", UC),
    ("juc", UC | ANDROID),
    ("msie", IE | PREFIX),
    ("trident", IE),
    ("firefox", FIREFOX | PREFIX),
    ("fxios", FIREFOX | IOS_ONLY),
    ("fennec", FIREFOX),
    ("chrome", CHROME),
    ("crios", CHROME | IOS_ONLY),
    ("safari", SAFARI | PREFIX),
    ("version", VERSION),
    ("wv", WEBVIEW),
    // Browsers we do not name that carry Chrome/Firefox/Safari/IE tokens.
    ("vivaldi", OTHER_BROWSER),
    ("whale", OTHER_BROWSER | PRODUCT),
    ("brave", OTHER_BROWSER | PRODUCT),
    ("qqbrowser", OTHER_BROWSER),
    ("mqqbrowser", OTHER_BROWSER),
    ("miuibrowser", OTHER_BROWSER),
    ("huaweibrowser", OTHER_BROWSER),
    ("heytapbrowser", OTHER_BROWSER),
    ("oppobrowser", OTHER_BROWSER),
    ("vivobrowser", OTHER_BROWSER),
    ("quark", OTHER_BROWSER | PRODUCT),
    ("coc", OTHER_BROWSER),
    ("puffin", OTHER_BROWSER),
    ("maxthon", OTHER_BROWSER),
    ("mxbrowser", OTHER_BROWSER),
    ("duckduckgo", OTHER_BROWSER),
    ("ddg", OTHER_BROWSER),
    ("seamonkey", OTHER_BROWSER),
    ("palemoon", OTHER_BROWSER),
    ("waterfox", OTHER_BROWSER),
    ("iceweasel", OTHER_BROWSER),
    ("icecat", OTHER_BROWSER),
    ("thunderbird", OTHER_BROWSER),
    ("epiphany", OTHER_BROWSER),
    ("midori", OTHER_BROWSER),
    ("konqueror", OTHER_BROWSER),
    ("falkon", OTHER_BROWSER),
    ("qupzilla", OTHER_BROWSER),
    ("sleipnir", OTHER_BROWSER),
    ("baidubrowser", OTHER_BROWSER),
    ("bidubrowser", OTHER_BROWSER),
    ("baiduboxapp", OTHER_BROWSER),
    ("qihu", OTHER_BROWSER),
    ("qihoobrowser", OTHER_BROWSER),
    ("metasr", OTHER_BROWSER),
    ("lbbrowser", OTHER_BROWSER),
    ("iron", OTHER_BROWSER | PRODUCT),
    ("comodo", OTHER_BROWSER),
    ("dolphin", OTHER_BROWSER | PRODUCT),
    ("alohabrowser", OTHER_BROWSER),
    ("naver", OTHER_BROWSER),
    ("line", OTHER_BROWSER | PRODUCT),
    ("fban", OTHER_BROWSER),
    ("fbav", OTHER_BROWSER),
    ("fbios", OTHER_BROWSER),
    ("instagram", OTHER_BROWSER),
    ("micromessenger", OTHER_BROWSER),
    ("weibo", OTHER_BROWSER),
    ("snapchat", OTHER_BROWSER),
    ("pinterest", OTHER_BROWSER),
    ("kakaotalk", OTHER_BROWSER),
    ("musical", OTHER_BROWSER),
    ("bytedancewebview", OTHER_BROWSER),
    ("gsa", OTHER_BROWSER | PRODUCT),
    ("electron", OTHER_BROWSER | PRODUCT),
    ("oculusbrowser", OTHER_BROWSER | TV),
    ("nokiabrowser", OTHER_BROWSER),
    ("browserng", OTHER_BROWSER),
];

// ---------------------------------------------------------------------------
// The word table and the scan.
//
// A word of up to 16 bytes is packed, lower-cased and zero-padded, into one
// `u128`, so hashing it is one multiply and comparing it with a key is one
// integer comparison. Word bytes are ASCII letters, digits and '.', all of
// which except the upper-case letters already have bit 0x20 set: setting it
// on every byte lower-cases the word.

/// A word packed into an integer; see above.
type Packed = u128;

/// Longest word that can match a key.
const MAX_KEY: usize = 16;

const LOWER: Packed = Packed::from_le_bytes([0x20; 16]);

/// The low `len` bytes set.
const fn mask(len: usize) -> Packed {
    if len >= MAX_KEY {
        Packed::MAX
    } else {
        (1 << (len * 8)) - 1
    }
}

/// [`mask`] as a table: a 128-bit variable shift is a dozen instructions.
static MASKS: [Packed; MAX_KEY + 1] = {
    let mut t = [0; MAX_KEY + 1];
    let mut i = 0;
    while i <= MAX_KEY {
        t[i] = mask(i);
        i += 1;
    }
    t
};

#[inline]
fn mask_of(len: usize) -> Packed {
    MASKS[len.min(MAX_KEY)]
}

const fn pack(key: &[u8]) -> Packed {
    let mut v: Packed = 0;
    let mut i = 0;
    while i < key.len() {
        v |= (key[i] as Packed) << (8 * i);
        i += 1;
    }
    (v | LOWER) & mask(key.len())
}

/// The table is a perfect hash found at compile time: every key has a slot
/// of its own, so a lookup is two loads and a compare, with no probing and
/// no branch (a miss, the common case, would otherwise mispredict often).
/// `2^SLOT_BITS` one-byte slots: sparse enough that a collision-free
/// multiplier turns up within a few thousand tries.
const SLOT_BITS: u32 = 12;
const SLOTS: usize = 1 << SLOT_BITS;

/// Keys are indexed by a `u8`; index 0 is the empty key, which never
/// equals a packed word (words are never empty).
const KEY_CAPACITY: usize = 256;

#[inline]
const fn hash(v: Packed, seed: u64) -> usize {
    let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
    (x.wrapping_mul(seed) >> (64 - SLOT_BITS)) as usize
}

/// [`KEYS`] packed, from index 1.
const PACKED: [(Packed, Ev); KEY_CAPACITY] = {
    assert!(KEYS.len() < KEY_CAPACITY, "too many keys for a u8 index");
    let mut t = [(0, 0); KEY_CAPACITY];
    let mut k = 0;
    while k < KEYS.len() {
        let key = KEYS[k].0.as_bytes();
        assert!(!key.is_empty() && key.len() <= MAX_KEY, "keys are 1 to 16 bytes");
        let mut j = 0;
        while j < key.len() {
            assert!(!key[j].is_ascii_uppercase(), "keys must be lower case");
            assert!(is_word_byte(key[j]), "keys must be single words");
            j += 1;
        }
        t[k + 1] = (pack(key), KEYS[k].1);
        k += 1;
    }
    t
};

/// The first odd multiplier, from a fixed sequence, under which no two
/// keys share a slot. Duplicate keys can never pass, so none exist.
const SEED: u64 = {
    let mut attempt: u64 = 0;
    loop {
        assert!(attempt < 100_000, "no perfect-hash seed found: raise SLOT_BITS");
        let seed = 0x9E37_79B9_7F4A_7C15u64.wrapping_add(attempt.wrapping_mul(0x6A09_E667_F3BC_C908)) | 1;
        let mut used = [0u64; SLOTS / 64];
        let mut k = 1;
        while k <= KEYS.len() {
            let h = hash(PACKED[k].0, seed);
            if used[h / 64] & (1 << (h % 64)) != 0 {
                break;
            }
            used[h / 64] |= 1 << (h % 64);
            k += 1;
        }
        if k > KEYS.len() {
            break seed;
        }
        attempt += 1;
    }
};

/// Slot → index into [`KEY_TABLE`], 0 for none.
static SLOT_TABLE: [u8; SLOTS] = {
    let mut t = [0u8; SLOTS];
    let mut k = 1;
    while k <= KEYS.len() {
        t[hash(PACKED[k].0, SEED)] = k as u8;
        k += 1;
    }
    t
};

static KEY_TABLE: [(Packed, Ev); KEY_CAPACITY] = PACKED;

/// All ones if `b`, else zero: selects without a branch.
#[inline]
fn all_if(b: bool) -> u64 {
    u64::from(b).wrapping_neg()
}

/// Words are runs of ASCII letters, digits and '.'. '_' and '-' split
/// words: model names glue tokens together ("POV_TAB-P701", "Outlook-iOS",
/// "x86_64-redhat-linux-gnu"). [`classes8`] is the fast equivalent.
const fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.'
}

/// UAs longer than this are only read up to here. Real browser UAs are
/// under 500 bytes; the cap bounds the work an oversized header can cause.
const MAX_SCAN: usize = 1024;

const CHUNKS: usize = MAX_SCAN / 64;

/// Bitmaps of the UA's first [`MAX_SCAN`] bytes: bit `i` of `words` is set
/// when byte `i` is a word byte, of `letters` when it is a letter. Words
/// are found with `trailing_zeros` on the bitmaps rather than byte by byte,
/// which avoids a mispredicted branch at every word end; words that start
/// with a digit (versions, build ids: a third of all words, and never a
/// key) are not visited at all.
struct Bitmaps {
    words: [u64; CHUNKS],
    letters: [u64; CHUNKS],
    chunks: usize,
}

impl Bitmaps {
    #[inline]
    fn new(ua: &[u8]) -> Bitmaps {
        let mut words = [0u64; CHUNKS];
        let mut letters = [0u64; CHUNKS];
        let mut chunks = ua.chunks_exact(64);
        let mut k = 0;
        for chunk in &mut chunks {
            if let (Some(w), Some(l)) = (words.get_mut(k), letters.get_mut(k)) {
                (*w, *l) = Bitmaps::chunk(chunk);
            }
            k += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Zero bytes are neither word bytes nor letters.
            let mut tail = [0u8; 64];
            tail[..rest.len()].copy_from_slice(rest);
            let used = tail.get(..rest.len().div_ceil(8) * 8).unwrap_or(&tail);
            if let (Some(w), Some(l)) = (words.get_mut(k), letters.get_mut(k)) {
                (*w, *l) = Bitmaps::chunk(used);
            }
        }
        Bitmaps { words, letters, chunks: ua.len().div_ceil(64).min(CHUNKS) }
    }

    /// The (word, letter) bitmaps of 64 bytes.
    #[inline]
    fn chunk(chunk: &[u8]) -> (u64, u64) {
        let (mut w, mut l) = (0u64, 0u64);
        for (g, group) in chunk.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(group);
            let (letter, digit, dot) = classes8(u64::from_le_bytes(b));
            w |= u64::from(gather8(letter | digit | dot)) << (8 * g);
            l |= u64::from(gather8(letter)) << (8 * g);
        }
        (w, l)
    }

    /// Length of the run of set bits of `map` starting at `pos`.
    #[inline]
    fn run(map: &[u64; CHUNKS], pos: usize) -> usize {
        let mut k = pos / 64;
        let mut shift = pos % 64;
        let mut n = 0;
        while let Some(&chunk) = map.get(k) {
            let ones = (chunk >> shift).trailing_ones() as usize;
            n += ones;
            if shift + ones < 64 {
                break;
            }
            k += 1;
            shift = 0;
        }
        n
    }
}

/// Packs `ua[start..start + len]` (a word of 1 to 16 bytes).
#[inline]
fn pack_at(ua: &[u8], start: usize, len: usize) -> Packed {
    let mut buf = [0u8; MAX_KEY];
    match ua.get(start..start + MAX_KEY) {
        // The common case: one unaligned 16-byte load, then masked.
        Some(window) => buf.copy_from_slice(window),
        None => {
            let n = len.min(MAX_KEY);
            if let (Some(word), Some(dst)) = (ua.get(start..start + n), buf.get_mut(..n)) {
                dst.copy_from_slice(word);
            }
        }
    }
    (Packed::from_le_bytes(buf) | LOWER) & mask_of(len)
}

/// The evidence a packed word carries, or 0.
#[inline]
fn lookup(v: Packed) -> Ev {
    let slot = SLOT_TABLE[hash(v, SEED) & (SLOTS - 1)];
    let (key, ev) = KEY_TABLE[usize::from(slot)];
    // Compared as two halves so that the compiler selects, not branches.
    let diff = key ^ v;
    ev & all_if((diff as u64 | (diff >> 64) as u64) == 0)
}

const fn rep(b: u8) -> u64 {
    u64::from_le_bytes([b; 8])
}

/// Per byte of `x`, the high bit set when the byte is (a letter, a digit,
/// a '.'): the test of [`is_word_byte`] on 8 bytes at once, with no
/// branches. Each range test adds a per-byte bias so that the byte's high
/// bit ends up holding the answer; 7-bit operands never carry into the
/// next byte, and bytes >= 0x80 are masked out.
#[inline]
fn classes8(x: u64) -> (u64, u64, u64) {
    const HIGH: u64 = rep(0x80);
    let ascii = !x & HIGH;
    let low = x & !HIGH;
    // High bit set iff the byte is >= lo, resp. > hi.
    let ge = |v: u64, lo: u8| v + rep(0x80 - lo);
    let gt = |v: u64, hi: u8| v + rep(0x7f - hi);
    let folded = low | rep(0x20);
    let letter = ge(folded, b'a') & !gt(folded, b'z') & ascii;
    let digit = ge(low, b'0') & !gt(low, b'9') & ascii;
    let dot = !(low ^ rep(b'.')).wrapping_add(rep(0x7f)) & ascii;
    (letter, digit, dot)
}

/// The eight high bits of `x`, as one byte.
#[inline]
fn gather8(x: u64) -> u8 {
    ((((x >> 7) & rep(1)).wrapping_mul(0x0102_0408_1020_4080)) >> 56) as u8
}

/// Whether `pos` is inside a parenthesised comment. Asked only for the few
/// brand words that are also device names, so it may be slow.
fn in_comment(ua: &[u8], pos: usize) -> bool {
    let before = ua.get(..pos).unwrap_or(ua);
    let open = before.iter().filter(|&&b| b == b'(').count();
    let close = before.iter().filter(|&&b| b == b')').count();
    open > close
}

/// One pass over the UA, collecting evidence.
fn scan(ua: &[u8]) -> Ev {
    let ua = ua.get(..MAX_SCAN).unwrap_or(ua);
    let maps = Bitmaps::new(ua);
    let mut ev: Ev = 0;
    // The previous word's evidence, for two-word phrases. Words starting
    // with a digit are skipped, so "Windows 10 Mobile" reads as a phrase.
    let mut prev: Ev = 0;
    let mut carry = 0u64;
    for k in 0..maps.chunks {
        let w = maps.words[k];
        // Word starts (a word byte after a non-word byte) that are letters.
        let mut starts = w & !((w << 1) | carry) & maps.letters[k];
        carry = w >> 63;
        while starts != 0 {
            let start = k * 64 + starts.trailing_zeros() as usize;
            starts &= starts - 1;
            let len = Bitmaps::run(&maps.words, start);
            let Some(word) = ua.get(start..start + len) else { continue };
            let mut m = word_evidence(ua, start, word, &maps);
            // "like Gecko", "like Mac OS X", "like Android", "like
            // Chrome/…": the word after "like" names what the agent
            // imitates. Frequent, so without a branch.
            m &= !all_if(prev & W_LIKE != 0);
            // Rare, so behind one branch: phrases and ambiguous brands.
            if (m & PRODUCT) | (prev & (WORD_ONLY & !W_LIKE)) != 0 {
                m = in_context(m, prev, ua, start, word);
            }
            ev |= m & !(WORD_ONLY | PREFIX | PRODUCT);
            prev = m;
        }
    }
    ev
}

/// Adjusts a word's evidence for the word before it, and drops brands
/// that are also device names ("motorola edge", "IRON_2") unless they are
/// product tokens: followed by '/' or outside the parenthesised comment.
fn in_context(mut m: Ev, prev: Ev, ua: &[u8], start: usize, word: &[u8]) -> Ev {
    if m & PRODUCT != 0 && ua.get(start + word.len()) != Some(&b'/') && in_comment(ua, start) {
        m = 0;
    }
    if prev & W_WINDOWS != 0 {
        if m & W_PHONE != 0 {
            m |= WINPHONE;
        } else if m & W_CE != 0 {
            m |= MOBILE;
        }
    }
    if prev & W_OPERA != 0 && m & W_MINI != 0 {
        m |= MOBILE;
    }
    if prev & W_UC != 0 && m & W_BROWSER != 0 {
        m |= UC;
    }
    // Samsung's model numbers encode the product line: SM-T, SM-X, SM-P
    // and GT-P are Galaxy Tabs, which in the Android 2-4 era said "Mobile"
    // like the phones did.
    if prev & W_SAMSUNG_MODEL != 0
        && word.len() >= 2
        && matches!(word[0], b'T' | b't' | b'X' | b'x' | b'P' | b'p')
        && word[1].is_ascii_digit()
    {
        m |= TABLET;
    }
    m
}

/// The evidence of one word, which starts with a letter.
#[inline]
fn word_evidence(ua: &[u8], start: usize, word: &[u8], maps: &Bitmaps) -> Ev {
    // The first 16 bytes, packed; longer words can only match by prefix.
    let v = pack_at(ua, start, word.len());
    if word.len() <= MAX_KEY {
        let m = lookup(v);
        if m != 0 {
            return m;
        }
    }
    // The leading letters, for keys that allow it ("Android4.0.4",
    // "UCWEB7.9", "BlackBerry9700", "Win32").
    let letters = Bitmaps::run(&maps.letters, start).min(word.len());
    if (2..=MAX_KEY).contains(&letters) && letters < word.len() {
        let m = lookup(v & mask_of(letters));
        if m & PREFIX != 0 {
            return m;
        }
    }
    match word[0] {
        b'K' | b'k' | b'A' | b'S' | b's' => model_evidence(word, letters),
        _ => 0,
    }
}

/// Device model codes that are families rather than words.
#[cold]
fn model_evidence(word: &[u8], letters: usize) -> Ev {
    let head = word.get(..letters).unwrap_or(word);
    // Amazon's model codes: Fire tablets are KF… ("KFTT", "KFMAWI"), Fire
    // TV devices AFT… ("AFTS", "AFTDCT31"). Short and upper case, though
    // some app UAs lower-case everything; "aft…" is too common a prefix
    // to accept in lower case.
    if (4..=8).contains(&word.len()) && letters >= 4 {
        let upper = head.iter().all(u8::is_ascii_uppercase);
        let lower = head.iter().all(u8::is_ascii_lowercase);
        if (upper || lower) && head.get(..2).is_some_and(|p| p.eq_ignore_ascii_case(b"kf")) {
            return ANDROID | TABLET | KINDLE;
        }
        if upper && head.starts_with(b"AFT") {
            return ANDROID | TV;
        }
    }
    // Sony Ericsson feature phones glue the model to the brand
    // ("SonyEricssonK750i/R1AA").
    const SE: &[u8] = b"sonyericsson";
    if word.len() > SE.len() && word.get(..SE.len()).is_some_and(|p| p.eq_ignore_ascii_case(SE)) {
        return MOBILE_WEAK;
    }
    0
}

// ---------------------------------------------------------------------------
// Decisions. The order of the checks is the substance of this module.

fn has(ev: Ev, bits: Ev) -> bool {
    ev & bits != 0
}

fn decide_os(ev: Ev) -> Os {
    // Windows Phone UAs claim Android and iPhone ("like iPhone OS").
    if has(ev, WINPHONE) {
        return Os::Other;
    }
    // KaiOS and Tizen phones mention Android or Linux too.
    if has(ev, OTHER_OS_FIRST) {
        return Os::Other;
    }
    // An Apple device token in the platform is more specific than an
    // app's "…-Android" product name.
    if has(ev, IPHONE | IPAD) {
        return Os::Ios;
    }
    // Before macOS: Silk in desktop mode says Macintosh.
    if has(ev, ANDROID) {
        return Os::Android;
    }
    if has(ev, IOS | IOS_ONLY) {
        return Os::Ios;
    }
    // iPadOS in desktop mode says Macintosh, but in-app browsers keep the
    // "Mobile/…" token that no Mac browser sends.
    if has(ev, MAC) && has(ev, MOBILE) {
        return Os::Ios;
    }
    // Kindle e-readers (Linux underneath, but not a Linux desktop), the
    // BSDs (which also say X11), BlackBerry, Symbian, consoles, TVs, ...
    if has(ev, OTHER_OS | KINDLE) {
        return Os::Other;
    }
    if has(ev, CROS) {
        return Os::Chromeos;
    }
    if has(ev, MAC) {
        return Os::Macos;
    }
    // Apple's networking stack in app UAs: "App/1 CFNetwork/… Darwin/…".
    // It means a Mac only with Mac hardware named; otherwise iOS.
    if has(ev, CFNETWORK) && has(ev, DARWIN) && !has(ev, MAC_HW) {
        return Os::Ios;
    }
    if has(ev, DARWIN) {
        return Os::Macos;
    }
    if has(ev, WINDOWS) {
        return Os::Windows;
    }
    if has(ev, LINUX) {
        // Samsung Internet's "desktop mode" (and the Quest headset) send
        // a Linux desktop UA, but Samsung Internet only runs on Android.
        if has(ev, SAMSUNG) {
            return Os::Android;
        }
        return Os::Linux;
    }
    Os::Other
}

fn decide_device(ev: Ev, os: Os) -> Device {
    // Televisions and consoles are neither phones nor tablets, even when
    // they run Android without a "Mobile" token.
    if has(ev, TV) {
        return Device::Desktop;
    }
    match os {
        Os::Ios => {
            if has(ev, IPAD) || (has(ev, MAC) && !has(ev, IPHONE)) {
                Device::Tablet
            } else {
                Device::Mobile
            }
        }
        Os::Android => {
            if has(ev, TABLET) {
                Device::Tablet
            } else if has(ev, MOBILE) {
                Device::Mobile
            } else if has(ev, ENGINE) && has(ev, MOZILLA) {
                // Browsers on Android phones say "Mobile"; Chrome,
                // Samsung Internet, Firefox and the stock browser on
                // tablets do not. This holds even for Chrome's reduced
                // UA ("Android 10; K"), where the model is gone.
                Device::Tablet
            } else {
                // Apps and SDKs that name Android follow no such
                // convention; most Android devices are phones.
                Device::Mobile
            }
        }
        // Touch laptops say "Tablet PC" or "Touch"; for targeting they are
        // desktops. Windows CE handhelds say "Mobile" or "CE".
        Os::Windows | Os::Macos | Os::Chromeos => {
            if has(ev, MOBILE) && os == Os::Windows {
                Device::Mobile
            } else {
                Device::Desktop
            }
        }
        Os::Linux | Os::Other => {
            if has(ev, TABLET) {
                Device::Tablet
            } else if has(ev, MOBILE | MOBILE_WEAK | WINPHONE) {
                Device::Mobile
            } else {
                Device::Desktop
            }
        }
    }
}

fn decide_browser(ev: Ev, os: Os) -> Browser {
    // Browsers we do not name, and in-app browsers, add their brand to the
    // tokens of what they are built on, sometimes one we do name (the
    // Quest browser says SamsungBrowser; Maxthon and Sleipnir say MSIE).
    if has(ev, OTHER_BROWSER) {
        return Browser::Other;
    }
    // Chromium-based browsers with their own brand append it to Chrome's
    // tokens, so the brands are checked before Chrome.
    if has(ev, EDGE) {
        return Browser::Edge;
    }
    // UC Browser's UAs mention Opera Mini for compatibility.
    if has(ev, UC) {
        return Browser::Uc;
    }
    if has(ev, OPERA) {
        return Browser::Opera;
    }
    if has(ev, SAMSUNG) {
        return Browser::Samsung;
    }
    if has(ev, YANDEX) {
        return Browser::Yandex;
    }
    if has(ev, IE) {
        return Browser::Ie;
    }
    if has(ev, FIREFOX) {
        return Browser::Firefox;
    }
    if has(ev, CHROME) {
        // Android WebView: "; wv)" since Android 5, or "Version/4.0" next
        // to Chrome on 4.4. Apps, not Chrome (no extensions, no push).
        if os == Os::Android && has(ev, WEBVIEW | VERSION) {
            return Browser::Other;
        }
        return Browser::Chrome;
    }
    // Every WebKit browser says Safari; only Apple's platforms run Safari
    // (plus the long-dead Safari for Windows). The Android stock browser,
    // BlackBerry, Kindle and Linux WebKit browsers land in other.
    if has(ev, SAFARI) {
        let apple = match os {
            // iOS apps' WebViews often append "Safari/…" but never the
            // "Version/…" that Mobile Safari sends.
            Os::Ios => has(ev, VERSION),
            Os::Macos | Os::Windows => true,
            _ => false,
        };
        if apple {
            return Browser::Safari;
        }
    }
    Browser::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bitmaps_agree_with_the_byte_classes() {
        // Every byte value in every position of a group.
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut bytes = [b'/'; 8];
                bytes[pos] = b;
                let (letter, digit, dot) = classes8(u64::from_le_bytes(bytes));
                let bit = |set: bool| u8::from(set) << pos;
                assert_eq!(gather8(letter | digit | dot), bit(is_word_byte(b)), "byte {b:#x} at {pos}");
                assert_eq!(gather8(letter), bit(b.is_ascii_alphabetic()), "byte {b:#x} at {pos}");
            }
        }
        // Runs that cross 64-byte chunks.
        let ua = format!("{}/{}", "a".repeat(70), "b1".repeat(40));
        let maps = Bitmaps::new(ua.as_bytes());
        assert_eq!(Bitmaps::run(&maps.words, 0), 70);
        assert_eq!(Bitmaps::run(&maps.letters, 0), 70);
        assert_eq!(Bitmaps::run(&maps.words, 71), 80);
        assert_eq!(Bitmaps::run(&maps.letters, 71), 1);
    }

    #[test]
    fn every_key_is_found_through_the_table_in_any_case() {
        for &(key, ev) in KEYS {
            for word in [key.to_string(), key.to_ascii_uppercase()] {
                let b = word.as_bytes();
                assert_eq!(lookup(pack_at(b, 0, b.len())), ev, "{word}");
                // Followed by more bytes: the 16-byte load must be masked.
                let padded = format!("{word}/1234567890abcdef");
                assert_eq!(lookup(pack_at(padded.as_bytes(), 0, b.len())), ev, "{word}");
            }
        }
        for miss in ["zzzz", "androi", "androidx", "0"] {
            assert_eq!(lookup(pack(miss.as_bytes())), 0, "{miss}");
        }
    }
}
