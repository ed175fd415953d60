//! Bot and link-preview detection from the User-Agent alone: the first,
//! cheapest layer of traffic quality.
//!
//! [`classify_ua`] says whether a UA is a person's browser ([`UaVerdict::Human`]),
//! a link-preview fetcher of a chat or social app ([`UaVerdict::Preview`]),
//! or some other automated client ([`UaVerdict::Bot`]) and why, as a stable
//! machine-readable code ([`BotReason::as_str`]) that reports and rules can
//! store. Previews are kept apart from bots because they are expected and
//! useful (someone pasted the link into Slack) and should get the page's
//! preview, not be counted as clicks nor blocked as fraud.
//!
//! The UA is only a claim: a bot that copies a browser's UA is `Human` here.
//! Network and behaviour signals, which can catch those, belong to later
//! layers; this one only has to be fast and to never call a person a bot.
//!
//! **How.** The knowledge is two maintained lists shipped in `data/`
//! (isbot's generic patterns, monperrus/crawler-user-agents' named bots;
//! see `data/README.md`) plus a hand-reviewed table of tokens that decide
//! the reason (which preview app, which HTTP library, ...). Everything is
//! compiled once, on first use or by [`warm_up`], into one Aho-Corasick
//! automaton over literal keys; the few regex-only checks run only when
//! their key is present. A browser UA therefore costs one pass over its
//! bytes plus two short anchored regex probes, with no allocation; see
//! `rules.rs` for the details and `benches/bot.rs` for the cost.
//!
//! **Judgement calls**, each pinned by a test in `tests/bot.rs`:
//! * In-app browsers (Facebook, Instagram, TikTok, WeChat, Line, Snapchat,
//!   the Google app, ...) are people, even though they name an app; only an
//!   app's *fetcher* (`facebookexternalhit`, `Twitterbot`, ...) is a preview.
//! * `Applebot` is Apple's search crawler, a [`BotReason::Crawler`]; the
//!   iMessage preview is the UA naming both Facebook's and Twitter's
//!   fetchers.
//! * Rules that judge the UA's *form* (a bare `Name/1.0`, no spaces, a `|`)
//!   yield to evidence of a real device: old phones and WAP gateways break
//!   them all the time ("BlackBerry7510", "NokiaN80-3/1.0…Profile/MIDP-2.0").
//! * A browser UA with `+` for every space is read as if form-decoded: that
//!   is how UAs arrive through server-to-server click parameters.
//! * Monitors and page-speed tools that drive a real browser (GTmetrix,
//!   Lighthouse) are bots: they are not a person clicking.
//!
//! **Precedence.** When several rules match, the more specific source wins
//! (hand-reviewed, then a named bot from the list, then a generic token,
//! then the UA's shape), and within one source a preview beats a monitor,
//! which beats a crawler, then headless, then HTTP library: a preview
//! fetcher also says "bot", an uptime monitor also says "bot".
//!
//! **Architecture invariant:** pure and deterministic: no I/O, no clock, no
//! per-call allocation. The pattern data is compiled into the binary.

mod json;
mod rules;

pub use rules::Source;

/// What a User-Agent says about the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UaVerdict {
    /// A browser or an app's in-app browser: a person, as far as the UA says.
    Human,
    /// An automated client, and which kind.
    Bot(BotReason),
    /// A chat or social app fetching the link to show a preview card.
    Preview(PreviewApp),
}

impl UaVerdict {
    pub fn is_human(self) -> bool {
        self == UaVerdict::Human
    }

    /// A stable code for reports: `"human"`, `"preview"`, or the bot reason
    /// (`"crawler"`, `"http_library"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            UaVerdict::Human => "human",
            UaVerdict::Bot(reason) => reason.as_str(),
            UaVerdict::Preview(_) => "preview",
        }
    }
}

/// Why a UA is taken to be automated. The codes from [`BotReason::as_str`]
/// are stable: they end up in stored reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BotReason {
    /// No User-Agent, or only whitespace. Every browser sends one.
    EmptyUa,
    /// Not a UA a browser could send: control characters, no letters, a
    /// handful of bytes, a placeholder (`null`, `Mozilla/5.0`), a quoted or
    /// templated value, a UA starting with `(` or containing `|`.
    MalformedUa,
    /// Shaped like a program's UA but naming nothing we know: a bare
    /// `Name/1.0` product token with no platform, `Mozilla/5.0 (compatible;
    /// Name/1.0)` and nothing else, one long token without spaces.
    NonBrowser,
    /// A search, SEO, AI, feed, archive or scanner bot, named or using a
    /// generic word (`bot`, `crawl`, `spider`, an info URL).
    Crawler,
    /// An HTTP library or command-line tool (curl, wget, python-requests,
    /// Go-http-client, okhttp, Java, libwww-perl, axios, node-fetch, ...).
    HttpLibrary,
    /// A headless or automated browser (HeadlessChrome, PhantomJS,
    /// Puppeteer, Playwright, Selenium, ...).
    Headless,
    /// An uptime, performance or synthetic monitor (UptimeRobot, Pingdom,
    /// Lighthouse, health checks, ...).
    Monitor,
}

impl BotReason {
    pub const ALL: [BotReason; 7] = [
        BotReason::EmptyUa,
        BotReason::MalformedUa,
        BotReason::NonBrowser,
        BotReason::Crawler,
        BotReason::HttpLibrary,
        BotReason::Headless,
        BotReason::Monitor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BotReason::EmptyUa => "empty_ua",
            BotReason::MalformedUa => "malformed_ua",
            BotReason::NonBrowser => "non_browser",
            BotReason::Crawler => "crawler",
            BotReason::HttpLibrary => "http_library",
            BotReason::Headless => "headless",
            BotReason::Monitor => "monitor",
        }
    }
}

/// The app whose link-preview fetcher sent the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PreviewApp {
    Slack,
    Telegram,
    Discord,
    /// Twitter / X (`Twitterbot`).
    Twitter,
    /// Facebook, Messenger, Instagram (`facebookexternalhit`, `Facebot`).
    Facebook,
    WhatsApp,
    /// Apple Messages, which sends `facebookexternalhit/1.1 Facebot
    /// Twitterbot/1.0`. (`Applebot` is Apple's search crawler, not a
    /// preview fetcher: it is a [`BotReason::Crawler`].)
    IMessage,
    LinkedIn,
    /// Skype and Teams (`SkypeUriPreview`).
    Skype,
    /// Microsoft's newer previewer for Teams, Outlook and Bing (`MicrosoftPreview`).
    Microsoft,
    Pinterest,
    Reddit,
    /// Google's snippet and preview renderers (`Google-PageRenderer`,
    /// `Google Web Preview`, Google Messages).
    Google,
    Snapchat,
    Vk,
    Line,
    KakaoTalk,
    Mastodon,
    Bluesky,
    /// Another preview or embed service (Embedly, Iframely, Bitrix, ...).
    Other,
}

impl PreviewApp {
    pub const ALL: [PreviewApp; 20] = [
        PreviewApp::Slack,
        PreviewApp::Telegram,
        PreviewApp::Discord,
        PreviewApp::Twitter,
        PreviewApp::Facebook,
        PreviewApp::WhatsApp,
        PreviewApp::IMessage,
        PreviewApp::LinkedIn,
        PreviewApp::Skype,
        PreviewApp::Microsoft,
        PreviewApp::Pinterest,
        PreviewApp::Reddit,
        PreviewApp::Google,
        PreviewApp::Snapchat,
        PreviewApp::Vk,
        PreviewApp::Line,
        PreviewApp::KakaoTalk,
        PreviewApp::Mastodon,
        PreviewApp::Bluesky,
        PreviewApp::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PreviewApp::Slack => "slack",
            PreviewApp::Telegram => "telegram",
            PreviewApp::Discord => "discord",
            PreviewApp::Twitter => "twitter",
            PreviewApp::Facebook => "facebook",
            PreviewApp::WhatsApp => "whatsapp",
            PreviewApp::IMessage => "imessage",
            PreviewApp::LinkedIn => "linkedin",
            PreviewApp::Skype => "skype",
            PreviewApp::Microsoft => "microsoft",
            PreviewApp::Pinterest => "pinterest",
            PreviewApp::Reddit => "reddit",
            PreviewApp::Google => "google",
            PreviewApp::Snapchat => "snapchat",
            PreviewApp::Vk => "vk",
            PreviewApp::Line => "line",
            PreviewApp::KakaoTalk => "kakaotalk",
            PreviewApp::Mastodon => "mastodon",
            PreviewApp::Bluesky => "bluesky",
            PreviewApp::Other => "other",
        }
    }
}

/// Classifies a User-Agent header value.
///
/// Never panics and never allocates (after the one-time build, see
/// [`warm_up`]). Surrounding spaces and tabs are ignored, as HTTP does.
pub fn classify_ua(ua: &str) -> UaVerdict {
    explain(ua).0
}

/// [`classify_ua`] plus what decided: for logs, debugging and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub verdict: UaVerdict,
    /// Where the deciding rule came from; `None` for [`UaVerdict::Human`].
    pub source: Option<Source>,
    /// The deciding pattern as written in its source, or a short
    /// description for built-in checks; empty for [`UaVerdict::Human`].
    pub rule: &'static str,
}

/// Like [`classify_ua`], and says which rule decided.
pub fn explain_ua(ua: &str) -> Explanation {
    let (verdict, source, rule) = explain(ua);
    Explanation { verdict, source, rule }
}

fn explain(ua: &str) -> (UaVerdict, Option<Source>, &'static str) {
    let ua = ua.trim_matches([' ', '\t']).as_bytes();
    if ua.is_empty() {
        return (UaVerdict::Bot(BotReason::EmptyUa), Some(Source::Builtin), "empty");
    }
    // A header value cannot carry control characters; whatever sent them
    // built the request by hand.
    // (A fold rather than `any`: no early exit, so it vectorises.)
    if ua.iter().fold(false, |seen, &b| seen | (b < 0x20) | (b == 0x7f)) {
        return (UaVerdict::Bot(BotReason::MalformedUa), Some(Source::Builtin), "control character");
    }
    // A browser UA with '+' for every space ("Mozilla/5.0+(iPhone;+CPU…")
    // has been form-encoded on its way here, which is how UAs arrive through
    // server-to-server click parameters: read it as decoded, from a stack
    // copy so nothing is allocated.
    if ua.len() <= 512
        && ua[..8.min(ua.len())].eq_ignore_ascii_case(b"mozilla/")
        && !ua.contains(&b' ')
        && ua.contains(&b'+')
    {
        let mut decoded = [0u8; 512];
        let copy = &mut decoded[..ua.len()];
        for (d, &s) in copy.iter_mut().zip(ua) {
            *d = if s == b'+' { b' ' } else { s };
        }
        return find(copy);
    }
    find(ua)
}

fn find(ua: &[u8]) -> (UaVerdict, Option<Source>, &'static str) {
    match rules::matcher().find(ua) {
        Some(hit) => (hit.verdict, Some(hit.source), hit.pattern),
        None => (UaVerdict::Human, None, ""),
    }
}

/// Builds the matcher now instead of on the first request: about 0.1 s and
/// 7.5 MB (mostly the automaton, see `rules.rs`). Call it at startup.
pub fn warm_up() {
    rules::matcher();
}
