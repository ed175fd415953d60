//! Traffic quality: a per-click verdict (human, suspect or bot), a score and
//! the reasons behind it, computed on the click path from signals that are
//! all in memory.
//!
//! [`judge`] combines four layers, each contributing [`Reason`]s:
//!
//! * **User-Agent** ([`crate::bot::classify_ua`]): one reason per
//!   [`BotReason`], and [`Reason::Preview`] for link-preview fetchers.
//! * **Network**, computed by the server from its IP databases and block
//!   list and passed in as [`NetworkSignals`].
//! * **Behaviour**, from [`Behaviour::observe`]: click rates per IP and per
//!   IP+User-Agent over a sliding window, and duplicate clicks.
//! * **Consistency** of the request with itself: client hints that
//!   contradict the UA, an `Accept-Language` implausible for the IP's
//!   country, a browser UA without the headers every browser sends.
//!
//! **Scoring.** The score is the sum of the weights of the reasons present,
//! capped at 100; score >= 80 is [`Verdict::Bot`], >= 30 [`Verdict::Suspect`],
//! anything lower [`Verdict::Human`]. The weights ([`Reason::weight`]):
//!
//! | reason                                        | weight |
//! |-----------------------------------------------|-------:|
//! | every User-Agent bot reason, `preview`        | 100 |
//! | `blocked_ip`, `rate_ip_flood`                 | 100 |
//! | `hints_mismatch`                              | 60 |
//! | `datacenter`, `rate_ip_ua`                    | 50 |
//! | `anonymous_proxy`, `rate_ip`                  | 40 |
//! | `duplicate`                                   | 30 |
//! | `missing_headers`                             | 20 |
//! | `language_mismatch`                           | 10 |
//!
//! So one strong signal makes a bot; one medium signal (a hosting network,
//! a VPN, a busy IP, a duplicate) makes a suspect; two medium signals add up
//! to a bot (datacenter + anonymous proxy = 90; rate_ip + rate_ip_ua = 90,
//! i.e. one IP and UA clicking 20 times a minute); the weak signals only
//! tip a click over when something else is wrong (datacenter + missing
//! headers = 70, still suspect; missing headers + language mismatch = 30,
//! suspect). A language mismatch alone (10) never makes a click suspect,
//! nor do missing headers alone (20).
//!
//! **Defaults of the behaviour thresholds** ([`BehaviourConfig`]): a 60 s
//! window; 20 clicks per IP make it suspect ([`Reason::RateIp`]), 60 a bot
//! ([`Reason::RateIpFlood`]); 10 clicks per IP+UA ([`Reason::RateIpUa`]);
//! the same IP+UA+smartlink+subs again within 10 s is a
//! [`Reason::Duplicate`].
//!
//! **What counts.** Human and suspect clicks count toward caps and train the
//! router; bot and preview clicks never do ([`Quality::counts`]). The
//! verdict travels in the click id's flags nibble ([`Quality::flags`]).
//!
//! **Architecture invariant:** pure: no I/O, no clock (time is passed in),
//! and [`judge`] does not allocate. [`Behaviour`] is the only state: fixed
//! size, allocated once, updated with atomics.

mod behaviour;
mod class;
mod languages;

use std::fmt;

pub use behaviour::{Behaviour, BehaviourConfig};
pub use class::{class_of, QualityClass};

use crate::bot::{self, BotReason, UaVerdict};
use crate::types::{Country, Device, Language, Os};
use crate::ua::{ClientHints, UaInfo};

/// How much a click looks like a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Nothing, or only weak signals, against it.
    Human,
    /// Something is off; still counted, but reported apart.
    Suspect,
    /// Automated (or a link preview): never counted.
    Bot,
}

impl Verdict {
    /// Every verdict, from best to worst.
    pub const ALL: [Verdict; 3] = [Verdict::Human, Verdict::Suspect, Verdict::Bot];

    /// Score from which a click is [`Verdict::Suspect`].
    pub const SUSPECT_SCORE: u8 = 30;
    /// Score from which a click is [`Verdict::Bot`].
    pub const BOT_SCORE: u8 = 80;

    /// The stable code: `"human"`, `"suspect"` or `"bot"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Human => "human",
            Verdict::Suspect => "suspect",
            Verdict::Bot => "bot",
        }
    }

    /// Parses a code from [`Verdict::as_str`] (case-insensitively).
    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    /// The verdict for a score: >= 80 bot, >= 30 suspect, else human.
    pub fn from_score(score: u8) -> Verdict {
        if score >= Verdict::BOT_SCORE {
            Verdict::Bot
        } else if score >= Verdict::SUSPECT_SCORE {
            Verdict::Suspect
        } else {
            Verdict::Human
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One signal against a click. The codes ([`Reason::as_str`]) are stable:
/// they are stored with every click and in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No User-Agent ([`BotReason::EmptyUa`]): `"empty_ua"`.
    EmptyUa,
    /// Not a UA a browser could send ([`BotReason::MalformedUa`]): `"malformed_ua"`.
    MalformedUa,
    /// A program's UA naming nothing known ([`BotReason::NonBrowser`]): `"non_browser"`.
    NonBrowser,
    /// A search, SEO, AI, feed or scanner bot ([`BotReason::Crawler`]): `"crawler"`.
    Crawler,
    /// An HTTP library or command-line tool ([`BotReason::HttpLibrary`]): `"http_library"`.
    HttpLibrary,
    /// A headless or automated browser ([`BotReason::Headless`]): `"headless"`.
    Headless,
    /// An uptime or performance monitor ([`BotReason::Monitor`]): `"monitor"`.
    Monitor,
    /// A link-preview / unfurl fetcher (Slack, Telegram, ...): `"preview"`.
    Preview,
    /// A hosting / cloud network (ASN list or anonymous-IP database): `"datacenter"`.
    Datacenter,
    /// A VPN, public or residential proxy, or Tor exit: `"anonymous_proxy"`.
    AnonymousProxy,
    /// On the operator's block list: `"blocked_ip"`.
    BlockedIp,
    /// The IP is over the suspect click-rate threshold: `"rate_ip"`.
    RateIp,
    /// The IP is over the bot click-rate threshold: `"rate_ip_flood"`.
    RateIpFlood,
    /// The IP+User-Agent pair is over its suspect threshold: `"rate_ip_ua"`.
    RateIpUa,
    /// The same IP+UA+smartlink+subs again within the duplicate window: `"duplicate"`.
    Duplicate,
    /// `Sec-CH-UA-Platform` / `Sec-CH-UA-Mobile` contradict the UA: `"hints_mismatch"`.
    HintsMismatch,
    /// `Accept-Language` implausible for the IP's country: `"language_mismatch"`.
    LanguageMismatch,
    /// A browser UA without `Accept-Language` or `Accept`: `"missing_headers"`.
    MissingHeaders,
}

impl Reason {
    /// Every reason, in the order of their bits in [`Reasons`] and of
    /// [`Reasons::codes`].
    pub const ALL: [Reason; 18] = [
        Reason::EmptyUa,
        Reason::MalformedUa,
        Reason::NonBrowser,
        Reason::Crawler,
        Reason::HttpLibrary,
        Reason::Headless,
        Reason::Monitor,
        Reason::Preview,
        Reason::Datacenter,
        Reason::AnonymousProxy,
        Reason::BlockedIp,
        Reason::RateIp,
        Reason::RateIpFlood,
        Reason::RateIpUa,
        Reason::Duplicate,
        Reason::HintsMismatch,
        Reason::LanguageMismatch,
        Reason::MissingHeaders,
    ];

    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EmptyUa => "empty_ua",
            Reason::MalformedUa => "malformed_ua",
            Reason::NonBrowser => "non_browser",
            Reason::Crawler => "crawler",
            Reason::HttpLibrary => "http_library",
            Reason::Headless => "headless",
            Reason::Monitor => "monitor",
            Reason::Preview => "preview",
            Reason::Datacenter => "datacenter",
            Reason::AnonymousProxy => "anonymous_proxy",
            Reason::BlockedIp => "blocked_ip",
            Reason::RateIp => "rate_ip",
            Reason::RateIpFlood => "rate_ip_flood",
            Reason::RateIpUa => "rate_ip_ua",
            Reason::Duplicate => "duplicate",
            Reason::HintsMismatch => "hints_mismatch",
            Reason::LanguageMismatch => "language_mismatch",
            Reason::MissingHeaders => "missing_headers",
        }
    }

    /// Parses a code from [`Reason::as_str`] (case-insensitively).
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(s))
    }

    /// What the reason adds to the score (see the module documentation).
    pub fn weight(self) -> u8 {
        match self {
            Reason::EmptyUa
            | Reason::MalformedUa
            | Reason::NonBrowser
            | Reason::Crawler
            | Reason::HttpLibrary
            | Reason::Headless
            | Reason::Monitor
            | Reason::Preview
            | Reason::BlockedIp
            | Reason::RateIpFlood => 100,
            Reason::HintsMismatch => 60,
            Reason::Datacenter | Reason::RateIpUa => 50,
            Reason::AnonymousProxy | Reason::RateIp => 40,
            Reason::Duplicate => 30,
            Reason::MissingHeaders => 20,
            Reason::LanguageMismatch => 10,
        }
    }

    /// Position in [`Reason::ALL`]: the reason's bit in [`Reasons`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason for a User-Agent bot reason.
    pub fn from_bot(reason: BotReason) -> Reason {
        match reason {
            BotReason::EmptyUa => Reason::EmptyUa,
            BotReason::MalformedUa => Reason::MalformedUa,
            BotReason::NonBrowser => Reason::NonBrowser,
            BotReason::Crawler => Reason::Crawler,
            BotReason::HttpLibrary => Reason::HttpLibrary,
            BotReason::Headless => Reason::Headless,
            BotReason::Monitor => Reason::Monitor,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Reason`]s, one bit each (bit = position in [`Reason::ALL`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reasons(u32);

impl Reasons {
    /// The empty set.
    pub const NONE: Reasons = Reasons(0);

    const KNOWN: u32 = (1 << Reason::ALL.len()) - 1;

    /// The raw bits, for storage.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The set stored as [`Reasons::bits`]; bits of no known reason are
    /// dropped.
    pub fn from_bits(bits: u32) -> Reasons {
        Reasons(bits & Reasons::KNOWN)
    }

    /// Adds a reason.
    pub fn insert(&mut self, r: Reason) {
        self.0 |= 1 << r.index();
    }

    /// Whether the set holds `r`.
    pub fn contains(self, r: Reason) -> bool {
        self.0 & (1 << r.index()) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets together.
    pub fn union(self, o: Reasons) -> Reasons {
        Reasons(self.0 | o.0)
    }

    /// The reasons in [`Reason::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// The codes, comma-separated in [`Reason::ALL`] order; `""` when empty.
    pub fn codes(self) -> String {
        let mut out = String::new();
        for r in self.iter() {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(r.as_str());
        }
        out
    }

    /// Parses [`Reasons::codes`]: comma-separated codes in any order,
    /// spaces around them and empty items ignored. The error names the
    /// first unknown code.
    pub fn parse_codes(s: &str) -> Result<Reasons, String> {
        let mut set = Reasons::NONE;
        for code in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match Reason::parse(code) {
                Some(r) => set.insert(r),
                None => return Err(format!("unknown traffic-quality reason {code:?}")),
            }
        }
        Ok(set)
    }

    /// The most telling reason: the highest weight, ties going to the one
    /// earlier in [`Reason::ALL`]. `None` when empty.
    pub fn primary(self) -> Option<Reason> {
        self.iter().fold(None, |best: Option<Reason>, r| match best {
            Some(b) if b.weight() >= r.weight() => Some(b),
            _ => Some(r),
        })
    }

    /// The sum of the weights, capped at 100.
    pub fn score(self) -> u8 {
        let sum: u32 = self.iter().map(|r| u32::from(r.weight())).sum();
        sum.min(100) as u8
    }
}

impl FromIterator<Reason> for Reasons {
    fn from_iter<I: IntoIterator<Item = Reason>>(iter: I) -> Reasons {
        let mut set = Reasons::NONE;
        for r in iter {
            set.insert(r);
        }
        set
    }
}

/// What the server knows about the client's network, from its IP databases
/// and block list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkSignals {
    /// A hosting / cloud network ([`Reason::Datacenter`]).
    pub datacenter: bool,
    /// A VPN, proxy or Tor exit ([`Reason::AnonymousProxy`]).
    pub anonymous: bool,
    /// On the operator's block list ([`Reason::BlockedIp`]).
    pub blocked: bool,
}

/// The request as [`judge`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct RequestSignals<'a> {
    /// The `User-Agent` header, `""` when absent.
    pub ua: &'a str,
    /// The User-Agent's own reading, without client hints.
    pub ua_info: UaInfo,
    /// `Sec-CH-UA-Platform` and `Sec-CH-UA-Mobile`, when sent.
    pub hints: ClientHints<'a>,
    /// The IP's country ([`Country::UNKNOWN`] when not known).
    pub country: Country,
    /// The first language of `Accept-Language`, if any.
    pub language: Option<Language>,
    /// Whether an `Accept-Language` header was sent at all.
    pub has_accept_language: bool,
    /// Whether an `Accept` header was sent.
    pub has_accept: bool,
    /// Network signals for the client's IP.
    pub network: NetworkSignals,
}

/// The verdict on one click.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quality {
    /// Human, suspect or bot, from the score.
    pub verdict: Verdict,
    /// 0..=100
    pub score: u8,
    /// Everything that contributed to the score.
    pub reasons: Reasons,
}

impl Quality {
    /// A clean click: verdict human, score 0, no reasons.
    pub const HUMAN: Quality = Quality { verdict: Verdict::Human, score: 0, reasons: Reasons::NONE };

    /// The score and verdict a set of reasons adds up to.
    pub fn from_reasons(reasons: Reasons) -> Quality {
        let score = reasons.score();
        Quality { verdict: Verdict::from_score(score), score, reasons }
    }

    /// Whether the click is a link-preview fetch (the reasons contain
    /// [`Reason::Preview`]).
    pub fn is_preview(&self) -> bool {
        self.reasons.contains(Reason::Preview)
    }

    /// Human and suspect clicks count toward caps and train the router; bot and preview clicks never do.
    #[inline]
    pub fn counts(&self) -> bool {
        Quality::flags_count(self.flags())
    }

    /// [`Quality::counts`] for a click known only by its id's flags.
    #[inline]
    pub fn flags_count(flags: u8) -> bool {
        let (verdict, preview) = Quality::from_flags(flags);
        verdict != Verdict::Bot && !preview
    }

    /// 4 bits for the click id's flags nibble: bits 0-1 verdict (0 human, 1 suspect, 2 bot), bit 2 preview, bit 3 reserved 0.
    #[inline]
    pub fn flags(&self) -> u8 {
        let verdict = match self.verdict {
            Verdict::Human => 0,
            Verdict::Suspect => 1,
            Verdict::Bot => 2,
        };
        verdict | (u8::from(self.is_preview()) << 2)
    }

    /// Inverse of flags(): (verdict, preview). Unknown verdict bits (3) read as Bot.
    #[inline]
    pub fn from_flags(flags: u8) -> (Verdict, bool) {
        let verdict = match flags & 0b11 {
            0 => Verdict::Human,
            1 => Verdict::Suspect,
            _ => Verdict::Bot,
        };
        (verdict, flags & 0b100 != 0)
    }
}

impl Default for Quality {
    fn default() -> Quality {
        Quality::HUMAN
    }
}

/// Judges one click. Pure and cheap (no allocation): UA classification via bot::classify_ua, network flags,
/// consistency checks, plus the behaviour reasons the caller got from Behaviour::observe.
///
/// The consistency checks (hints, language, missing headers) only run for
/// a UA classified human: they are about browsers, and a bot or preview UA
/// is already decided.
pub fn judge(req: &RequestSignals<'_>, behaviour: Reasons) -> Quality {
    judge_classified(req, bot::classify_ua(req.ua), behaviour)
}

/// [`judge`] with the UA's bot verdict already known (e.g. from a
/// [`crate::ua_cache::UaCache`]): `verdict` must be `bot::classify_ua(req.ua)`.
pub fn judge_classified(req: &RequestSignals<'_>, verdict: UaVerdict, behaviour: Reasons) -> Quality {
    let mut reasons = behaviour;
    match verdict {
        UaVerdict::Bot(r) => reasons.insert(Reason::from_bot(r)),
        UaVerdict::Preview(_) => reasons.insert(Reason::Preview),
        UaVerdict::Human => {
            if !req.has_accept_language || !req.has_accept {
                reasons.insert(Reason::MissingHeaders);
            }
            if hints_mismatch(req.ua_info, req.hints) {
                reasons.insert(Reason::HintsMismatch);
            }
            if language_mismatch(req.country, req.language) {
                reasons.insert(Reason::LanguageMismatch);
            }
        }
    }
    let net = req.network;
    if net.datacenter {
        reasons.insert(Reason::Datacenter);
    }
    if net.anonymous {
        reasons.insert(Reason::AnonymousProxy);
    }
    if net.blocked {
        reasons.insert(Reason::BlockedIp);
    }
    Quality::from_reasons(reasons)
}

/// Whether the client hints contradict the UA's own reading:
///
/// * `Sec-CH-UA-Platform` names a known OS (`Windows`, `macOS`, `Linux`,
///   `Android`, `iOS`, `Chrome OS` / `ChromeOS` / `Chromium OS`; quotes
///   optional) other than the UA's. Unknown or empty platforms say
///   nothing, and neither does a UA whose OS is unknown ([`Os::Other`]):
///   there is no claim to contradict. Platform `Android` with a Linux UA
///   is Chrome's "desktop site" mode (the default on Android tablets), not
///   a contradiction.
/// * `Sec-CH-UA-Mobile: ?1` while the UA says desktop Windows, macOS or
///   Linux.
pub fn hints_mismatch(ua: UaInfo, hints: ClientHints<'_>) -> bool {
    if let Some(platform) = hints.platform.and_then(platform_os) {
        let desktop_site = platform == Os::Android && ua.os == Os::Linux;
        if ua.os != Os::Other && platform != ua.os && !desktop_site {
            return true;
        }
    }
    hints.mobile.map(str::trim) == Some("?1")
        && ua.device == Device::Desktop
        && matches!(ua.os, Os::Windows | Os::Macos | Os::Linux)
}

/// The OS a `Sec-CH-UA-Platform` value names, if one we know.
fn platform_os(raw: &str) -> Option<Os> {
    let s = raw.trim();
    let s = s.strip_prefix('"').unwrap_or(s);
    let s = s.strip_suffix('"').unwrap_or(s).trim();
    let eq = |name: &str| s.eq_ignore_ascii_case(name);
    if eq("Windows") {
        Some(Os::Windows)
    } else if eq("macOS") {
        Some(Os::Macos)
    } else if eq("Linux") {
        Some(Os::Linux)
    } else if eq("Android") {
        Some(Os::Android)
    } else if eq("iOS") {
        Some(Os::Ios)
    } else if eq("Chrome OS") || eq("ChromeOS") || eq("Chromium OS") {
        Some(Os::Chromeos)
    } else {
        None
    }
}

/// Whether `language` is implausible for `country`: only for the countries
/// of the built-in table (about 65 with the most traffic, each with the
/// languages commonly set there), and never for English, which browsers
/// everywhere default to. [`Country::UNKNOWN`], countries outside the table
/// and a missing language never mismatch.
pub fn language_mismatch(country: Country, language: Option<Language>) -> bool {
    match language {
        Some(lang) if lang.as_str() != "en" => languages::plausible(country, lang) == Some(false),
        _ => false,
    }
}
