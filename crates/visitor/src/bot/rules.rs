//! The rule table behind [`super::classify_ua`]: where rules come from, how
//! the upstream regex lists become literal keys, and the automaton that
//! finds them.
//!
//! Every rule has a literal *key*. One Aho-Corasick automaton (a DFA, ASCII
//! case-insensitive) finds every key occurrence in a single pass; only a hit
//! runs the rule's extra checks (a case-sensitive comparison, an anchor, a
//! hand-written look-around guard, or the original regex). A browser UA
//! contains no key, so the common case is one DFA pass, two anchored regex
//! probes for the shape rules, and a few byte checks: no allocation.
//!
//! Rules come from four places, ranked by [`Tier`]:
//! 1. `CURATED` below: hand-reviewed tokens with a precise verdict (preview
//!    app, HTTP library, monitor, headless), including the few generic
//!    tokens we add ourselves.
//! 2. monperrus/crawler-user-agents (`data/crawler-user-agents.json`): named
//!    bots, with the verdict taken from the entry's tags.
//! 3. isbot (`data/isbot-patterns.json`): broad generic patterns
//!    (`bot`, `crawl`, `http`, ...), all verdict `crawler`.
//! 4. Shapes: isbot patterns that judge the UA's form (a bare `Name/1.0`,
//!    one long token, a `|`), plus our own malformed-value checks. They
//!    decide only when nothing is named, and yield to evidence of a real
//!    device (`DEVICE_EVIDENCE`, `ENGINE_EVIDENCE`): old phones and WAP
//!    gateways produce odd shapes all the time.
//!
//! Upstream patterns are JavaScript regexes. Those that are plain literals
//! become keys directly; the rest get their longest required literal as the
//! key and are verified with the pattern compiled by `regex` (unicode off,
//! so `\w`, `\b` and case folding are ASCII, as in JavaScript without the
//! `u` flag); the few with no usable literal are anchored shapes, checked
//! by two anchored regexes. The six isbot patterns that use look-around,
//! which `regex` does not support, are reimplemented as guards in
//! `ISBOT_OVERRIDES`. The same table and `CUA_OVERRIDES` hold our
//! refinements: patterns that fire on real browsers, phones or in-app
//! browsers are narrowed or dropped, each with the reason and an example.
//! Unit tests below fail when a pattern does not translate, when an
//! override no longer matches the data, or when a pattern would make every
//! UA pay for a full regex scan, so an update of the lists cannot silently
//! degrade either accuracy or speed.

use std::collections::HashMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

use super::json::{self, Json};
use super::{BotReason, PreviewApp, UaVerdict};

const ISBOT_PATTERNS: &str = include_str!("../../data/isbot-patterns.json");
const CRAWLER_USER_AGENTS: &str = include_str!("../../data/crawler-user-agents.json");

/// Which kind of rule decided; a higher tier wins over any lower one, and
/// within a tier the verdict's own rank decides (see [`verdict_rank`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tier {
    /// Generic tokens (`bot`, `crawl`, `http`, ...).
    Generic = 1,
    /// A named bot from crawler-user-agents.
    List = 2,
    /// Hand-reviewed named tokens: they fix the list's verdict where it is
    /// wrong or vague (for example which app a preview bot belongs to).
    Curated = 3,
    /// Combinations that mean something more specific than any one token
    /// (iMessage sends both `facebookexternalhit` and `Twitterbot`).
    Special = 4,
}

/// Where a rule came from, for [`super::explain_ua`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This module's hand-reviewed tables.
    Curated,
    /// `data/isbot-patterns.json`.
    Isbot,
    /// `data/crawler-user-agents.json`.
    CrawlerUserAgents,
    /// A built-in check on the UA's shape (malformed, placeholder, ...).
    Builtin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Curated => "curated",
            Source::Isbot => "isbot",
            Source::CrawlerUserAgents => "crawler-user-agents",
            Source::Builtin => "builtin",
        }
    }
}

/// A hand-written check at one key occurrence: `(ua, start, end)` of the hit.
type Guard = fn(&[u8], usize, usize) -> bool;

/// Where a curated key must occur.
#[derive(Clone, Copy)]
enum At {
    Anywhere,
    /// Only at the very start of the UA.
    Start,
    /// Whole word: no ASCII letter or digit on either side.
    Word,
    Guard(Guard),
}

const fn preview(app: PreviewApp) -> UaVerdict {
    UaVerdict::Preview(app)
}
const fn bot(reason: BotReason) -> UaVerdict {
    UaVerdict::Bot(reason)
}

use BotReason::{Crawler, Headless, HttpLibrary, Monitor};
use PreviewApp as P;
use Tier::{Curated as C, Generic as G};

/// Hand-reviewed tokens. Keys are matched ASCII case-insensitively.
///
/// Kept deliberately specific: a token here must never occur in a real
/// browser's or in-app browser's UA. In-app browsers carry app tokens too
/// (`FBAN/`, `Instagram`, `Snapchat/`, `[LinkedInApp]`, `[Pinterest/iOS]`,
/// `Twitter for iPhone`, `Telegram-Android/`, `Viber/`), which is why the
/// preview tokens below are the fetchers' own names, never the app's name.
#[rustfmt::skip]
const CURATED: &[(&str, UaVerdict, Tier, At)] = &[
    // Link-preview / unfurl fetchers.
    ("slackbot", preview(P::Slack), C, At::Anywhere),           // Slackbot-LinkExpanding 1.0, Slackbot 1.0
    ("slack-imgproxy", preview(P::Slack), C, At::Anywhere),
    ("telegrambot", preview(P::Telegram), C, At::Anywhere),
    ("discordbot", preview(P::Discord), C, At::Anywhere),
    ("twitterbot", preview(P::Twitter), C, At::Anywhere),
    ("facebookexternalhit", preview(P::Facebook), C, At::Anywhere),
    ("facebot", preview(P::Facebook), C, At::Word),
    ("facebookplatform", preview(P::Facebook), C, At::Anywhere),
    ("meta-externalfetcher", preview(P::Facebook), C, At::Anywhere),
    ("meta-externalhit", preview(P::Facebook), C, At::Anywhere),
    // Meta's AI-training crawler, which the list files under previews.
    ("meta-externalagent", bot(Crawler), C, At::Anywhere),
    // The preview fetcher sends only "WhatsApp/2.23.20.0 A"; the app's own
    // UAs start differently ("WhatsApp+/", or a Mozilla UA).
    ("whatsapp/", preview(P::WhatsApp), C, At::Start),
    ("linkedinbot", preview(P::LinkedIn), C, At::Anywhere),
    ("skypeuripreview", preview(P::Skype), C, At::Anywhere),
    ("microsoftpreview", preview(P::Microsoft), C, At::Anywhere),
    ("pinterestbot", preview(P::Pinterest), C, At::Anywhere),
    ("pinterest.com/bot", preview(P::Pinterest), C, At::Anywhere),
    ("redditbot", preview(P::Reddit), C, At::Anywhere),
    ("google-pagerenderer", preview(P::Google), C, At::Anywhere),
    ("google web preview", preview(P::Google), C, At::Anywhere),
    ("developers.google.com/+/web/snippet", preview(P::Google), C, At::Anywhere),
    ("googlemessages", preview(P::Google), C, At::Anywhere),
    ("snap url preview", preview(P::Snapchat), C, At::Anywhere),
    ("snapurlpreview", preview(P::Snapchat), C, At::Anywhere),
    ("vkshare", preview(P::Vk), C, At::Anywhere),
    // LINE sends "facebookexternalhit/1.1;line-poker/1.0": its own name wins.
    ("line-poker", preview(P::Line), Tier::Special, At::Anywhere),
    ("kakaotalk-scrap", preview(P::KakaoTalk), C, At::Anywhere),
    ("mastodon/", preview(P::Mastodon), C, At::Anywhere),
    ("bluesky cardyb", preview(P::Bluesky), C, At::Anywhere),
    ("embedly", preview(P::Other), C, At::Anywhere),
    ("iframely", preview(P::Other), C, At::Anywhere),
    // Generic preview words: "Bitrix link preview", "Chatwork LinkPreview",
    // "ClickUpLinkUnfurler".
    ("preview", preview(P::Other), G, At::Guard(not_developer_preview)),
    ("unfurl", preview(P::Other), G, At::Anywhere),

    // Headless and automated browsers.
    ("headlesschrome", bot(Headless), C, At::Anywhere),
    ("headless", bot(Headless), G, At::Anywhere),
    ("phantomjs", bot(Headless), C, At::Anywhere),
    ("puppeteer", bot(Headless), C, At::Anywhere),
    ("playwright", bot(Headless), C, At::Anywhere),
    ("selenium", bot(Headless), C, At::Anywhere),
    ("webdriver", bot(Headless), C, At::Anywhere),
    ("cypress/", bot(Headless), C, At::Anywhere),
    ("slimerjs", bot(Headless), C, At::Anywhere),
    ("htmlunit", bot(Headless), C, At::Anywhere),
    ("jsdom/", bot(Headless), C, At::Anywhere),
    ("electron-nightmare", bot(Headless), C, At::Anywhere),

    // HTTP client libraries and command-line tools.
    ("curl", bot(HttpLibrary), C, At::Word),                 // curl/8.4.0, PHP-Curl-Class, but not "Curlew"
    ("libcurl", bot(HttpLibrary), C, At::Anywhere),
    ("pycurl", bot(HttpLibrary), C, At::Anywhere),
    ("wget", bot(HttpLibrary), C, At::Anywhere),
    ("python-requests", bot(HttpLibrary), C, At::Anywhere),
    ("python-urllib", bot(HttpLibrary), C, At::Anywhere),
    ("python-httpx", bot(HttpLibrary), C, At::Anywhere),
    ("python/", bot(HttpLibrary), C, At::Anywhere),
    ("aiohttp", bot(HttpLibrary), C, At::Anywhere),
    ("httpx", bot(HttpLibrary), C, At::Word),
    ("urllib3", bot(HttpLibrary), C, At::Anywhere),
    ("scrapy", bot(HttpLibrary), C, At::Anywhere),
    ("go-http-client", bot(HttpLibrary), C, At::Anywhere),
    ("go http package", bot(HttpLibrary), C, At::Anywhere),
    ("go-resty", bot(HttpLibrary), C, At::Anywhere),
    ("fasthttp", bot(HttpLibrary), C, At::Anywhere),
    ("okhttp", bot(HttpLibrary), C, At::Anywhere),
    ("apache-httpclient", bot(HttpLibrary), C, At::Anywhere),
    ("apache-httpasyncclient", bot(HttpLibrary), C, At::Anywhere),
    ("commons-httpclient", bot(HttpLibrary), C, At::Anywhere),
    ("java-http-client", bot(HttpLibrary), C, At::Anywhere),
    ("java/", bot(HttpLibrary), C, At::Start),               // Java/1.8.0_121
    ("google-http-java-client", bot(HttpLibrary), C, At::Anywhere),
    ("reactor-netty", bot(HttpLibrary), C, At::Anywhere),
    ("ktor-client", bot(HttpLibrary), C, At::Anywhere),
    ("libwww-perl", bot(HttpLibrary), C, At::Anywhere),
    ("lwp-trivial", bot(HttpLibrary), C, At::Anywhere),
    ("lwp::", bot(HttpLibrary), C, At::Anywhere),
    ("mechanize", bot(HttpLibrary), C, At::Anywhere),
    ("axios/", bot(HttpLibrary), C, At::Anywhere),
    ("node-fetch", bot(HttpLibrary), C, At::Anywhere),
    ("undici", bot(HttpLibrary), C, At::Anywhere),
    ("node-superagent", bot(HttpLibrary), C, At::Anywhere),
    ("sindresorhus/got", bot(HttpLibrary), C, At::Anywhere),
    ("guzzlehttp", bot(HttpLibrary), C, At::Anywhere),
    ("php/", bot(HttpLibrary), C, At::Start),
    ("restsharp", bot(HttpLibrary), C, At::Anywhere),
    ("postmanruntime", bot(HttpLibrary), C, At::Anywhere),
    ("insomnia/", bot(HttpLibrary), C, At::Start),
    ("httpie/", bot(HttpLibrary), C, At::Anywhere),
    ("node", bot(HttpLibrary), C, At::Start),                // Node's fetch (undici) sends just "node"
    ("reqwest/", bot(HttpLibrary), C, At::Anywhere),
    ("hyper/", bot(HttpLibrary), C, At::Start),
    ("ureq/", bot(HttpLibrary), C, At::Anywhere),
    ("isahc/", bot(HttpLibrary), C, At::Anywhere),
    ("deno/", bot(HttpLibrary), C, At::Start),
    ("bun/", bot(HttpLibrary), C, At::Start),
    ("dart/", bot(HttpLibrary), C, At::Start),
    ("ruby", bot(HttpLibrary), C, At::Start),
    ("faraday v", bot(HttpLibrary), C, At::Anywhere),
    ("rest-client/", bot(HttpLibrary), C, At::Anywhere),
    ("typhoeus", bot(HttpLibrary), C, At::Anywhere),
    ("http.rb/", bot(HttpLibrary), C, At::Anywhere),
    ("winhttp", bot(HttpLibrary), C, At::Anywhere),
    ("windowspowershell", bot(HttpLibrary), C, At::Anywhere),
    ("powershell/", bot(HttpLibrary), C, At::Anywhere),
    ("aria2/", bot(HttpLibrary), C, At::Anywhere),
    ("lftp/", bot(HttpLibrary), C, At::Anywhere),
    ("httrack", bot(HttpLibrary), C, At::Anywhere),
    ("colly", bot(HttpLibrary), C, At::Word),
    ("grpc-", bot(HttpLibrary), C, At::Start),

    // Uptime, performance and synthetic monitoring.
    ("uptimerobot", bot(Monitor), C, At::Anywhere),
    ("pingdom", bot(Monitor), C, At::Anywhere),
    ("statuscake", bot(Monitor), C, At::Anywhere),
    ("site24x7", bot(Monitor), C, At::Anywhere),
    ("newrelicpinger", bot(Monitor), C, At::Anywhere),
    ("newrelicsynthetics", bot(Monitor), C, At::Anywhere),
    ("datadogsynthetics", bot(Monitor), C, At::Anywhere),
    ("datadog agent", bot(Monitor), C, At::Anywhere),
    ("checkly", bot(Monitor), C, At::Anywhere),
    ("uptime-kuma", bot(Monitor), C, At::Anywhere),
    ("betteruptime", bot(Monitor), C, At::Anywhere),
    ("better uptime", bot(Monitor), C, At::Anywhere),
    ("freshping", bot(Monitor), C, At::Anywhere),
    ("hetrixtools", bot(Monitor), C, At::Anywhere),
    ("nodeping", bot(Monitor), C, At::Anywhere),
    ("updown.io", bot(Monitor), C, At::Anywhere),
    ("catchpoint", bot(Monitor), C, At::Anywhere),
    ("gtmetrix", bot(Monitor), C, At::Anywhere),
    ("chrome-lighthouse", bot(Monitor), C, At::Anywhere),
    ("pagespeed", bot(Monitor), C, At::Anywhere),
    ("page speed insights", bot(Monitor), C, At::Anywhere),
    ("ptst/", bot(Monitor), C, At::Anywhere),                // WebPageTest
    ("speedcurve", bot(Monitor), C, At::Anywhere),
    ("ruxitsynthetic", bot(Monitor), C, At::Anywhere),
    ("dynatrace", bot(Monitor), C, At::Anywhere),
    ("thousandeyes", bot(Monitor), C, At::Anywhere),
    ("alertsite", bot(Monitor), C, At::Anywhere),
    ("uptrends", bot(Monitor), C, At::Anywhere),
    ("monitis", bot(Monitor), C, At::Anywhere),
    ("montastic", bot(Monitor), C, At::Anywhere),
    ("gomezagent", bot(Monitor), C, At::Anywhere),
    ("zabbix", bot(Monitor), C, At::Anywhere),
    ("nagios", bot(Monitor), C, At::Anywhere),
    ("check_http", bot(Monitor), C, At::Anywhere),
    ("blackbox exporter", bot(Monitor), C, At::Anywhere),
    ("kube-probe", bot(Monitor), C, At::Anywhere),
    ("elb-healthchecker", bot(Monitor), C, At::Anywhere),
    ("googlehc/", bot(Monitor), C, At::Anywhere),
    ("route53-health-check", bot(Monitor), C, At::Anywhere),
    ("cloudflare-healthchecks", bot(Monitor), C, At::Anywhere),
    ("consul health check", bot(Monitor), C, At::Anywhere),
    ("healthcheck", bot(Monitor), G, At::Anywhere),
    ("health-check", bot(Monitor), G, At::Anywhere),
    ("health check", bot(Monitor), G, At::Anywhere),
    ("uptime", bot(Monitor), G, At::Anywhere),
    ("monitor", bot(Monitor), G, At::Guard(word_end)),      // isbot's "monitor\b"
    ("monitoring", bot(Monitor), G, At::Anywhere),
    ("synthetic", bot(Monitor), G, At::Anywhere),

    // A generic crawler word beyond isbot's.
    ("indexer", bot(Crawler), G, At::Anywhere),
];

/// Tokens of old phones and their browsers. They never make a UA human by
/// themselves (bots copy them), but they overrule the *shape* rules, which
/// such phones break all the time: a WAP gateway strips the spaces
/// ("NokiaN80-3/1.0552.0.7Series60/3.0Profile/MIDP-2.0…") or joins two
/// headers with a comma ("samsung c3300, SAMSUNG-C3300/… Profile/MIDP-2.0"),
/// or the whole UA is "BlackBerry7510" or "LG-KG280 Obigo".
#[rustfmt::skip]
const DEVICE_EVIDENCE: &[&str] = &[
    "midp", "cldc", "up.browser", "netfront", "obigo", "blackberry", "series40", "series60",
    "symbianos", "nokia", "teleca", "openwave", "dolfin", "ucweb", "mqqbrowser",
];

/// Rendering-engine tokens. They overrule only the punctuation rules (an
/// empty `()`, a `|`), which real TVs and apps trip ("Opera/9.80 WebKit/1.6.3
/// () PhilipsWebKit/535.4", "…Safari/534.30 baiduboxapp/…|690194100718853/1"),
/// not the shape of the whole UA: "Anonymous, Mozilla/5.0 (…) AppleWebKit…"
/// is still a program's UA.
const ENGINE_EVIDENCE: &[&str] = &["applewebkit", "webkit/", "gecko/", "khtml", "trident/", "presto/", "msie "];

/// The iMessage link-preview fetcher sends
/// `facebookexternalhit/1.1 Facebot Twitterbot/1.0`: both other apps' tokens.
const SPECIAL: &[(&str, UaVerdict, Guard)] = &[("facebookexternalhit", preview(P::IMessage), also_twitterbot)];

fn also_twitterbot(ua: &[u8], _: usize, _: usize) -> bool {
    contains_ci(ua, b"twitterbot")
}

/// What to do with one upstream pattern instead of translating it as is.
enum Override {
    /// Leave it out; the string says why.
    Skip(&'static str),
    /// A hand-written replacement for a look-around pattern: the key plus a
    /// guard that implements the look-around at the key's position.
    Guard(&'static str, Guard),
    /// The same, with its own verdict.
    GuardAs(&'static str, Guard, UaVerdict),
    /// Use this regex instead (same meaning, syntax `regex` accepts).
    Rewrite(&'static str),
    /// Translate normally, but this is the verdict.
    Verdict(UaVerdict),
}

/// isbot patterns that need a hand: look-around (reimplemented as guards,
/// some narrowed further where they fire on real phones and in-app
/// browsers, as each guard's comment says), a JavaScript-only class, the
/// structural ones that mean "malformed" rather than "a program", and two
/// dropped outright.
#[rustfmt::skip]
const ISBOT_OVERRIDES: &[(&str, Override)] = &[
    (r"(?:^|[^g])news(?!sapphire)", Override::Guard("news", isbot_news)),
    (r"(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))", Override::Guard("google", isbot_google)),
    (r"(?<! cu)bots?(?:\b|_)", Override::Guard("bot", isbot_bot)),
    (r"(?<!cam)scan", Override::Guard("scan", isbot_scan)),
    (r"(?<!lib)http", Override::Guard("http", isbot_http)),
    (r"java(?!;)", Override::Guard("java", isbot_java)),
    (r"manager", Override::Guard("manager", isbot_manager)),
    ("preview", Override::Guard("preview", not_developer_preview)),
    // The radar bots in both lists also carry "Cloudflare", "scanner" or a URL.
    ("radar", Override::Skip("HTC Radar is a Windows Phone (\"IEMobile/7.0; HTC; Radar\")")),
    // Google Chrome Frame was a plug-in for Internet Explorer 6–9: its token
    // is in real IE users' UAs, and no bot in either list relies on it.
    ("chromeframe", Override::Skip("a real browser plug-in token (IE 6-9 with Google Chrome Frame)")),
    // JavaScript reads "\d-." in a class as three literals; `regex` wants
    // the dash escaped.
    (
        r"^mozilla/\d\.\d\s\((?:compatible;)?(?:\s?[\w\d-.]+\/\d+\.\d+)?\)$",
        Override::Rewrite(r"^mozilla/\d\.\d\s\((?:compatible;)?(?:\s?[\w\-.]+/\d+\.\d+)?\)$"),
    ),
    (r"^[<\(;]", Override::Verdict(bot(BotReason::MalformedUa))),
    (r"\(\)", Override::GuardAs("()", isbot_empty_parens, bot(BotReason::MalformedUa))),
    (r"\|", Override::Verdict(bot(BotReason::MalformedUa))),
];

/// crawler-user-agents patterns that match real browsers or in-app
/// browsers, found by running the list over browser corpora (isbot's
/// `browsers.txt`, uap-core's test cases).
#[rustfmt::skip]
const CUA_OVERRIDES: &[(&str, Override)] = &[
    ("Viber", Override::Skip("the Viber in-app browser ends its UA with \"Viber/11.9.5.8\"")),
    ("MetaIAB Facebook", Override::Skip("this is the Facebook in-app browser, not a preview fetcher")),
    (r"AP3A\.240617\.008", Override::Skip("an Android build id: every phone on that build matches")),
    (r"Code\/1\.", Override::Skip("Visual Studio Code and any app whose name ends in \"Code\" at version 1.x")),
    (r"Trae\/", Override::Skip("the Trae IDE's Electron shell, used by people")),
    ("Fluid", Override::Skip("a macOS app that wraps a site in a window, used by people")),
    (
        "TSM-turingos",
        Override::Skip(
            "a plain Chrome UA with an opaque platform tag (\"TSM-turingos-1253296984\") that isbot \
             lists as a browser: nothing says it is automated",
        ),
    ),
    ("Sonic", Override::Skip("Slack's desktop app ends its UA with \"Sonic Slack_SSB/4.4.2\"")),
    (r"Fetch\/", Override::Rewrite(r"\bFetch/")), // not Firefox for Android's "MozacFetch/"
    (r"008\/", Override::Rewrite(r"\b008/")),     // 80legs, not "Opera Mini/4.4.39008/37.9178"
    ("Butterfly", Override::Skip("HTC Butterfly is a phone (\"HTC Butterfly Build/JRO03C\")")),
];

/// isbot: `(?:^|[^g])news(?!sapphire)`, which is after feed fetchers
/// ("NewsBlur", "Newsify", "NewsGator", "newspaper/"). News apps' in-app
/// browsers name themselves too: "AppleNews/608.0.1", "SmartNews/23.1.0",
/// Toutiao's "NewsArticle/9.4.3", "com.alex.NewsMaster/8.2.1". So "news"
/// must start a name, and not in a full browser UA (`Mozilla/` and a
/// WebKit or Gecko engine), where it names the app; the fetchers that send
/// one also say "Fetcher" or give a URL.
fn isbot_news(ua: &[u8], start: usize, end: usize) -> bool {
    let starts_name = start == 0 || !(ua[start - 1].is_ascii_alphabetic() || ua[start - 1] == b'.');
    let browser_ua = starts_with_ci(ua, b"mozilla/") && (contains_ci(ua, b"applewebkit") || contains_ci(ua, b"gecko/"));
    starts_name && !browser_ua && !starts_with_ci(&ua[end..], b"sapphire")
}

/// isbot: `(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))`. We
/// also let through Google's own apps and devices, which real people use:
/// a bundle id ("com.google.GooglePlus/23341", both halves), the Play Store
/// as an app's distribution channel ("GooglePlayStore", "-googleplay"),
/// Google TV.
fn isbot_google(ua: &[u8], start: usize, end: usize) -> bool {
    const NOT_AFTER: &[&[u8]] = &[b" channel/", b"google/", b"com.", b"com.google."];
    const NOT_BEFORE: &[&[u8]] = &[b"wv", b"app", b"/google", b" pixel", b"play", b"tv", b" tv"];
    let (before, after) = (&ua[..start], &ua[end..]);
    !NOT_AFTER.iter().any(|s| ends_with_ci(before, s)) && !NOT_BEFORE.iter().any(|s| starts_with_ci(after, s))
}

/// `(?<! cu)bots?(?:\b|_)`: "bot" or "bots" ending a word (or before `_`),
/// except after " cu", which is the Cubot phone brand ("; CUBOT X19)").
/// We add one exception of our own: not inside the device comment of an
/// Android UA (`(Linux; Android 11; Tbot 9)`), where it is a model name;
/// Android crawlers put their name in a later `(compatible; …)`.
fn isbot_bot(ua: &[u8], start: usize, end: usize) -> bool {
    if ends_with_ci(&ua[..start], b" cu") || in_android_device_comment(ua, start) {
        return false;
    }
    let ends_word = |i: usize| i == ua.len() || !is_word(ua[i]) || ua[i] == b'_';
    ends_word(end) || (ua.get(end).is_some_and(|b| b.eq_ignore_ascii_case(&b's')) && ends_word(end + 1))
}

/// Whether `at` lies inside the UA's first `(…)` and that comment is an
/// Android device description rather than a `compatible;` bot comment.
fn in_android_device_comment(ua: &[u8], at: usize) -> bool {
    let Some(open) = ua.iter().position(|&b| b == b'(') else { return false };
    let close = ua[open..].iter().position(|&b| b == b')').map_or(ua.len(), |i| open + i);
    let comment = &ua[open..close];
    open < at && at < close && contains_ci(comment, b"android") && !contains_ci(comment, b"compatible")
}

fn isbot_scan(ua: &[u8], start: usize, _: usize) -> bool {
    !ends_with_ci(&ua[..start], b"cam")
}

fn isbot_http(ua: &[u8], start: usize, _: usize) -> bool {
    !ends_with_ci(&ua[..start], b"lib")
}

/// isbot: `java(?!;)`. We also let through the phones and browsers that
/// name the Java runtime they run on: Java ME feature phones, which declare
/// their profile ("HuaweiJava/1.0 Profile/MIDP-2.0") or name their VM
/// ("Java/ASVM/1.1", "java_build_version=1.4.43"), and a Java-based
/// browser's platform comment ("ICE Browser/5.05 (Java 1.4.0; Windows 2000
/// 5.0 x86)"). A Java HTTP client says "Java/1.8.0_392".
fn isbot_java(ua: &[u8], start: usize, end: usize) -> bool {
    let after = &ua[end..];
    let vm_name = after.len() >= 2 && after[0] == b'/' && after[1].is_ascii_alphabetic();
    let runtime_in_comment = after.len() >= 2
        && after[0] == b' '
        && after[1].is_ascii_digit()
        && ua[..start].contains(&b'(')
        && !ua[..start].contains(&b')');
    !matches!(after.first(), Some(b';' | b'_')) && !vm_name && !runtime_in_comment && !contains_ci(ua, b"midp")
}

/// isbot: `\(\)`, an empty comment ("Mozilla/5.0 () …", the Shellshock
/// probe "() { :;};"). Not an identifier's call parentheses, which the
/// Roblox app's browser sends ("ROBLOX Android App 2.706.750 Tablet Hybrid()").
fn isbot_empty_parens(ua: &[u8], start: usize, _: usize) -> bool {
    start == 0 || !ua[start - 1].is_ascii_alphanumeric()
}

/// isbot: `manager`, which is after download and traffic managers
/// ("Cloudflare-Traffic-Manager"). Not the last word of a compound name:
/// LG's webOS TV browser says "Large Screen WebAppManager", and apps with
/// FreeWheel's video-ad SDK say "FreeWheelAdManager/5.8.3".
fn isbot_manager(ua: &[u8], start: usize, _: usize) -> bool {
    start == 0 || !ua[start - 1].is_ascii_alphabetic()
}

/// Firefox's 2010 nightlies called themselves "MozillaDeveloperPreview/3.7a1".
fn not_developer_preview(ua: &[u8], start: usize, _: usize) -> bool {
    !ends_with_ci(&ua[..start], b"developer")
}

fn word_end(ua: &[u8], _: usize, end: usize) -> bool {
    end == ua.len() || !is_word(ua[end])
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

fn ends_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[hay.len() - needle.len()..].eq_ignore_ascii_case(needle)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// One compiled rule, attached to one key.
struct Rule {
    verdict: UaVerdict,
    rank: u8,
    source: Source,
    /// The pattern as written in its source, for [`super::explain_ua`].
    pattern: String,
    /// The hit must equal these bytes exactly (case-sensitive lists).
    exact: Option<Box<[u8]>>,
    at_start: bool,
    at_end: bool,
    word: bool,
    guard: Option<Guard>,
    regex: Option<Regex>,
    /// Judges the UA's form rather than naming a client: yields to
    /// [`DEVICE_EVIDENCE`] and [`ENGINE_EVIDENCE`].
    shape: bool,
}

impl Rule {
    fn hit(&self) -> Hit<'_> {
        Hit { verdict: self.verdict, source: self.source, pattern: &self.pattern }
    }

    fn accepts(&self, ua: &[u8], start: usize, end: usize) -> bool {
        (!self.at_start || start == 0)
            && (!self.at_end || end == ua.len())
            && self.exact.as_deref().is_none_or(|e| &ua[start..end] == e)
            && (!self.word
                || ((start == 0 || !ua[start - 1].is_ascii_alphanumeric())
                    && (end == ua.len() || !ua[end].is_ascii_alphanumeric())))
            && self.guard.is_none_or(|g| g(ua, start, end))
            && self.regex.as_ref().is_none_or(|r| r.is_match(ua))
    }
}

/// Keyless patterns of one verdict, each compiled on its own so the one
/// that matched can be named.
struct Residual {
    verdict: UaVerdict,
    members: Vec<(String, Regex)>,
}

/// Everything [`super::classify_ua`] needs, built once.
pub(crate) struct Matcher {
    keys: AhoCorasick,
    /// For each key id, the rules attached to it.
    rules_by_key: Vec<Vec<u32>>,
    rules: Vec<Rule>,
    /// Checked only when no keyed rule matched, malformed first.
    residual: Vec<Residual>,
    /// All residual patterns of one anchoring as one regex: whether any
    /// matches, in one or two short anchored searches.
    residual_any: Vec<Regex>,
    /// [`DEVICE_EVIDENCE`] and [`ENGINE_EVIDENCE`] tokens, and the level of each.
    evidence: AhoCorasick,
    evidence_levels: Vec<u8>,
    /// Upstream patterns left out, with the reason (for tests and updates).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) skipped: Vec<(Source, String, String)>,
}

/// What decided a verdict.
pub(crate) struct Hit<'a> {
    pub(crate) verdict: UaVerdict,
    pub(crate) source: Source,
    pub(crate) pattern: &'a str,
}

pub(crate) fn matcher() -> &'static Matcher {
    static MATCHER: OnceLock<Matcher> = OnceLock::new();
    MATCHER.get_or_init(|| Matcher::build().unwrap_or_else(|e| panic!("shipped bot pattern data is broken: {e}")))
}

/// The rank that decides between matching rules: tier first, then the
/// verdict. Within a tier the most specific kind of verdict wins: a preview
/// fetcher also says "bot" and "http", a monitor also says "bot".
fn verdict_rank(tier: Tier, v: UaVerdict) -> u8 {
    let kind = match v {
        UaVerdict::Preview(_) => 6,
        UaVerdict::Bot(Monitor) => 5,
        UaVerdict::Bot(Crawler) => 4,
        UaVerdict::Bot(Headless) => 3,
        UaVerdict::Bot(HttpLibrary) => 2,
        UaVerdict::Bot(BotReason::NonBrowser) => 1,
        UaVerdict::Bot(BotReason::MalformedUa | BotReason::EmptyUa) | UaVerdict::Human => 0,
    };
    tier as u8 * 8 + kind
}

impl Matcher {
    /// The deciding rule, if any: malformed values first (whatever words
    /// they contain), then the highest-ranked keyed rule, then shapes.
    pub(crate) fn find(&self, ua: &[u8]) -> Option<Hit<'_>> {
        let builtin = |what| Some(Hit { verdict: bot(BotReason::MalformedUa), source: Source::Builtin, pattern: what });
        if let Some(what) = malformed(ua) {
            return builtin(what);
        }
        let (mut best, mut shape): (Option<&Rule>, Option<&Rule>) = (None, None);
        for m in self.keys.find_overlapping_iter(ua) {
            for &r in &self.rules_by_key[m.pattern().as_usize()] {
                let rule = &self.rules[r as usize];
                let slot = if rule.shape { &mut shape } else { &mut best };
                if slot.is_some_and(|b| b.rank >= rule.rank) {
                    continue;
                }
                if rule.accepts(ua, m.start(), m.end()) {
                    *slot = Some(rule);
                }
            }
        }
        if let Some(rule) = best {
            return Some(rule.hit());
        }
        // Checked after the keys so that "curl" is still an HTTP library.
        if ua.len() < 8 {
            return builtin("shorter than 8 bytes");
        }
        // Shapes last, and only without evidence of a real device; the
        // evidence scan runs only here, so browsers never pay for it.
        let residual = self.residual_any.iter().any(|re| re.is_match(ua));
        if shape.is_none() && !residual {
            return None;
        }
        let evidence = self.evidence_level(ua);
        if let Some(rule) = shape.filter(|_| evidence == 0) {
            return Some(rule.hit());
        }
        if !residual || evidence >= 2 {
            return None;
        }
        self.residual.iter().find_map(|res| {
            let (pattern, _) = res.members.iter().find(|(_, re)| re.is_match(ua))?;
            Some(Hit { verdict: res.verdict, source: Source::Isbot, pattern })
        })
    }

    /// 2 if the UA has a [`DEVICE_EVIDENCE`] token, 1 for an
    /// [`ENGINE_EVIDENCE`] token, else 0.
    fn evidence_level(&self, ua: &[u8]) -> u8 {
        self.evidence.find_overlapping_iter(ua).map(|m| self.evidence_levels[m.pattern().as_usize()]).max().unwrap_or(0)
    }

    fn build() -> Result<Matcher, String> {
        let mut b = Builder::default();
        for &(key, verdict, tier, at) in CURATED {
            let mut rule = b.rule(verdict, tier, Source::Curated, key);
            match at {
                At::Anywhere => {}
                At::Start => rule.at_start = true,
                At::Word => rule.word = true,
                At::Guard(g) => rule.guard = Some(g),
            }
            b.add(key, rule);
        }
        for &(key, verdict, guard) in SPECIAL {
            let mut rule = b.rule(verdict, Tier::Special, Source::Curated, key);
            rule.guard = Some(guard);
            b.add(key, rule);
        }

        let isbot = json::parse(ISBOT_PATTERNS).map_err(|e| format!("isbot-patterns.json: {e}"))?;
        let isbot = isbot.as_array().ok_or("isbot-patterns.json: not an array")?;
        for p in isbot {
            let p = p.as_str().ok_or("isbot-patterns.json: not a string")?;
            b.add_listed(p, bot(Crawler), Tier::Generic, Source::Isbot, true, ISBOT_OVERRIDES);
        }

        let cua = json::parse(CRAWLER_USER_AGENTS).map_err(|e| format!("crawler-user-agents.json: {e}"))?;
        let cua = cua.as_array().ok_or("crawler-user-agents.json: not an array")?;
        for entry in cua {
            let p =
                entry.get("pattern").and_then(Json::as_str).ok_or("crawler-user-agents.json: entry without pattern")?;
            let tags: Vec<&str> =
                entry.get("tags").and_then(Json::as_array).unwrap_or(&[]).iter().filter_map(Json::as_str).collect();
            b.add_listed(p, verdict_for_tags(&tags), Tier::List, Source::CrawlerUserAgents, false, CUA_OVERRIDES);
        }
        b.finish()
    }
}

/// crawler-user-agents tags each entry with what it is.
fn verdict_for_tags(tags: &[&str]) -> UaVerdict {
    if tags.contains(&"social-preview") {
        preview(P::Other)
    } else if tags.contains(&"monitoring") {
        bot(Monitor)
    } else if tags.contains(&"browser-automation") {
        bot(Headless)
    } else if tags.contains(&"http-library") {
        bot(HttpLibrary)
    } else {
        bot(Crawler)
    }
}

/// Values no browser sends, whatever tokens they contain: a UA without a
/// single letter, a placeholder, a quoted value, the header's own name
/// pasted in, an unexpanded template.
fn malformed(ua: &[u8]) -> Option<&'static str> {
    const PLACEHOLDERS: &[&[u8]] = &[
        b"null",
        b"undefined",
        b"none",
        b"unknown",
        b"user-agent",
        b"useragent",
        b"mozilla",
        b"mozilla/4.0",
        b"mozilla/5.0",
    ];
    if !ua.iter().any(u8::is_ascii_alphabetic) {
        return Some("no letters");
    }
    if PLACEHOLDERS.iter().any(|p| ua.eq_ignore_ascii_case(p)) {
        return Some("placeholder value");
    }
    if matches!(ua[0], b'"' | b'\'') {
        return Some("starts with a quote");
    }
    if ua[0] == b'<' {
        return Some("starts with '<' (markup or a probe)");
    }
    if starts_with_ci(ua, b"user-agent:") || starts_with_ci(ua, b"user-agent=") {
        return Some("contains its own header name");
    }
    let template = memchr::memchr2_iter(b'{', b'$', ua).any(|i| ua.get(i + 1) == Some(&b'{'));
    if template {
        return Some("unexpanded template");
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Anchor {
    Start,
    End,
    None,
}

#[derive(Default)]
struct Builder {
    key_ids: HashMap<Vec<u8>, usize>,
    rules_by_key: Vec<Vec<u32>>,
    rules: Vec<Rule>,
    residual: Vec<(Anchor, UaVerdict, String, Source)>,
    skipped: Vec<(Source, String, String)>,
}

impl Builder {
    fn rule(&self, verdict: UaVerdict, tier: Tier, source: Source, pattern: &str) -> Rule {
        Rule {
            verdict,
            rank: verdict_rank(tier, verdict),
            source,
            pattern: pattern.to_string(),
            exact: None,
            at_start: false,
            at_end: false,
            word: false,
            guard: None,
            regex: None,
            shape: matches!(verdict, UaVerdict::Bot(BotReason::MalformedUa | BotReason::NonBrowser)),
        }
    }

    fn add(&mut self, key: &str, rule: Rule) {
        let key = key.to_ascii_lowercase().into_bytes();
        let next = self.rules_by_key.len();
        let id = *self.key_ids.entry(key).or_insert(next);
        if id == next {
            self.rules_by_key.push(Vec::new());
        }
        self.rules_by_key[id].push(self.rules.len() as u32);
        self.rules.push(rule);
    }

    /// Adds one upstream pattern, translated or overridden.
    fn add_listed(
        &mut self,
        pattern: &str,
        verdict: UaVerdict,
        tier: Tier,
        source: Source,
        case_insensitive: bool,
        overrides: &[(&str, Override)],
    ) {
        let mut verdict = verdict;
        let mut text = pattern;
        match overrides.iter().find(|(p, _)| *p == pattern).map(|(_, o)| o) {
            Some(Override::Skip(why)) => {
                self.skipped.push((source, pattern.to_string(), why.to_string()));
                return;
            }
            Some(Override::Guard(key, guard)) => {
                let mut rule = self.rule(verdict, tier, source, pattern);
                rule.guard = Some(*guard);
                self.add(key, rule);
                return;
            }
            Some(Override::GuardAs(key, guard, verdict)) => {
                let mut rule = self.rule(*verdict, tier, source, pattern);
                rule.guard = Some(*guard);
                self.add(key, rule);
                return;
            }
            Some(Override::Rewrite(re)) => text = re,
            Some(Override::Verdict(v)) => verdict = *v,
            None => {}
        }
        for alt in split_alternatives(text) {
            let (at_start, body, at_end) = strip_anchors(alt);
            if let Some(lit) = as_literal(body) {
                let mut rule = self.rule(verdict, tier, source, pattern);
                rule.at_start = at_start;
                rule.at_end = at_end;
                if !case_insensitive {
                    rule.exact = Some(lit.clone().into_bytes().into_boxed_slice());
                }
                if !usable_key(&lit) {
                    self.skipped.push((source, pattern.to_string(), format!("key {lit:?} is too common")));
                    continue;
                }
                self.add(&lit, rule);
                continue;
            }
            let key = longest_required_literal(alt);
            if usable_key(&key) {
                match compile(alt, case_insensitive) {
                    Ok(re) => {
                        let mut rule = self.rule(verdict, tier, source, pattern);
                        rule.regex = Some(re);
                        self.add(&key, rule);
                    }
                    Err(e) => self.skipped.push((source, pattern.to_string(), e)),
                }
                continue;
            }
            // No literal to key on: a structural pattern.
            let anchor = if at_start {
                Anchor::Start
            } else if at_end {
                Anchor::End
            } else {
                Anchor::None
            };
            let verdict = if verdict == bot(Crawler) { bot(BotReason::NonBrowser) } else { verdict };
            let alt = if case_insensitive { format!("(?i:{alt})") } else { alt.to_string() };
            match compile(&alt, false) {
                Ok(_) => self.residual.push((anchor, verdict, alt, source)),
                Err(e) => self.skipped.push((source, pattern.to_string(), e)),
            }
        }
    }

    fn finish(self) -> Result<Matcher, String> {
        let mut keys: Vec<(&Vec<u8>, &usize)> = self.key_ids.iter().collect();
        keys.sort_by_key(|(_, id)| **id);
        // A DFA: about 7.5 MB for the 1,700 keys, against 0.4 MB for the
        // contiguous NFA, which searches about half as fast. Every click pays
        // the search; the memory is paid once.
        let keys = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(keys.iter().map(|(k, _)| k.as_slice()))
            .map_err(|e| e.to_string())?;

        // Malformed before "not a browser".
        let mut residual: Vec<Residual> = Vec::new();
        let mut by_anchor: Vec<(Anchor, Vec<String>)> = Vec::new();
        for (anchor, verdict, alt, _) in self.residual {
            let member = (alt.clone(), compile(&alt, false)?);
            match residual.iter_mut().find(|r| r.verdict == verdict) {
                Some(r) => r.members.push(member),
                None => residual.push(Residual { verdict, members: vec![member] }),
            }
            match by_anchor.iter_mut().find(|(a, _)| *a == anchor) {
                Some((_, all)) => all.push(alt),
                None => by_anchor.push((anchor, vec![alt])),
            }
        }
        residual.sort_by_key(|r| r.verdict != bot(BotReason::MalformedUa));
        let join = |all: &[String]| all.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
        let residual_any = by_anchor.iter().map(|(_, all)| compile(&join(all), false)).collect::<Result<_, _>>()?;

        let (mut words, mut evidence_levels) = (Vec::new(), Vec::new());
        for (level, list) in [(1u8, ENGINE_EVIDENCE), (2, DEVICE_EVIDENCE)] {
            words.extend_from_slice(list);
            evidence_levels.extend(std::iter::repeat_n(level, list.len()));
        }
        let evidence = AhoCorasick::builder().ascii_case_insensitive(true).build(&words).map_err(|e| e.to_string())?;
        Ok(Matcher {
            keys,
            rules_by_key: self.rules_by_key,
            rules: self.rules,
            residual,
            residual_any,
            evidence,
            evidence_levels,
            skipped: self.skipped,
        })
    }
}

/// Whether a literal is rare enough in browser UAs to be worth a key:
/// three bytes or more, or punctuation browsers never send (`|`, `@`, `()`),
/// and not part of an ordinary browser UA (a pattern keyed on "mozilla/"
/// would run its regex on every click; such patterns are anchored shapes,
/// cheap to check as a residual regex instead).
fn usable_key(key: &str) -> bool {
    const ORDINARY: &[&str] = &[
        "mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) chrome/122.0.0.0 safari/537.36",
        "mozilla/5.0 (iphone; cpu iphone os 17_4 like mac os x) applewebkit/605.1.15 (khtml, like gecko) version/17.4 mobile/15e148 safari/604.1",
        "mozilla/5.0 (linux; android 10; k) applewebkit/537.36 (khtml, like gecko) chrome/122.0.0.0 mobile safari/537.36",
        "mozilla/5.0 (x11; linux x86_64; rv:124.0) gecko/20100101 firefox/124.0",
    ];
    let long_enough =
        key.len() >= 3 || key == "()" || (!key.is_empty() && key.bytes().all(|b| b"|@<>{}\\`".contains(&b)));
    let lower = key.to_ascii_lowercase();
    long_enough && !ORDINARY.iter().any(|ua| ua.contains(lower.as_str()))
}

fn compile(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(case_insensitive)
        .build()
        .map_err(|e| format!("{pattern}: {e}"))
}

/// Splits a pattern at its top-level `|`.
fn split_alternatives(p: &str) -> Vec<&str> {
    let b = p.as_bytes();
    let (mut depth, mut in_class, mut from) = (0i32, false, 0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => depth += 1,
            b')' if !in_class => depth -= 1,
            b'|' if !in_class && depth == 0 => {
                out.push(&p[from..i]);
                from = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&p[from..]);
    out
}

/// `(starts with ^, the rest, ends with an unescaped $)`.
fn strip_anchors(alt: &str) -> (bool, &str, bool) {
    let (at_start, rest) = match alt.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, alt),
    };
    let escaped_dollar = rest.ends_with("\\$") && !rest.ends_with("\\\\$");
    match rest.strip_suffix('$') {
        Some(r) if !escaped_dollar => (at_start, r, true),
        _ => (at_start, rest, false),
    }
}

/// The literal text of a pattern made only of plain characters and escaped
/// punctuation (`Mail\.RU_Bot`, `yandex\.com\/bots`).
fn as_literal(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if !e.is_ascii_alphanumeric() => out.push(e),
                _ => return None,
            },
            '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' => return None,
            _ => out.push(c),
        }
    }
    Some(out)
}

/// The longest run of literal text every match must contain: literal
/// characters outside groups and classes, not made optional by `?`, `*` or
/// `{0,…}`. Good enough as a key; the full regex then confirms.
fn longest_required_literal(alt: &str) -> String {
    let c: Vec<char> = alt.chars().collect();
    let (mut best, mut cur) = (String::new(), String::new());
    let flush = |cur: &mut String, best: &mut String| {
        if cur.len() > best.len() {
            *best = std::mem::take(cur);
        }
        cur.clear();
    };
    let mut i = 0;
    while i < c.len() {
        let lit = match c[i] {
            '\\' if i + 1 < c.len() && !c[i + 1].is_ascii_alphanumeric() => {
                i += 2;
                c[i - 1]
            }
            '\\' => {
                flush(&mut cur, &mut best);
                i += 2;
                continue;
            }
            '(' | '[' => {
                flush(&mut cur, &mut best);
                i = skip_group(&c, i);
                i = skip_quantifier(&c, i);
                continue;
            }
            '.' | '^' | '$' | '|' | '?' | '*' | '+' | '{' | '}' | ')' | ']' => {
                flush(&mut cur, &mut best);
                i += 1;
                continue;
            }
            ch => {
                i += 1;
                ch
            }
        };
        match c.get(i) {
            Some('?' | '*' | '{') => {
                flush(&mut cur, &mut best);
                i = skip_quantifier(&c, i);
            }
            Some('+') => {
                cur.push(lit);
                flush(&mut cur, &mut best);
                i = skip_quantifier(&c, i);
            }
            _ => cur.push(lit),
        }
    }
    flush(&mut cur, &mut best);
    best
}

/// From a `(` or `[` at `i`, the index just past its matching close.
fn skip_group(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    let mut in_class = false;
    while i < c.len() {
        match c[i] {
            '\\' => i += 1,
            '[' if !in_class => {
                in_class = true;
                if depth == 0 {
                    // A class on its own: ends at its `]`.
                    i += 1;
                    if c.get(i) == Some(&']') {
                        i += 1;
                    }
                    while i < c.len() && c[i] != ']' {
                        if c[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    return i + 1;
                }
            }
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    c.len()
}

/// Skips `?`, `*`, `+` or `{m,n}` (and a lazy `?` after it) at `i`.
fn skip_quantifier(c: &[char], mut i: usize) -> usize {
    match c.get(i) {
        Some('?' | '*' | '+') => i += 1,
        Some('{') => {
            while i < c.len() && c[i] != '}' {
                i += 1;
            }
            i += 1;
        }
        _ => return i,
    }
    if c.get(i) == Some(&'?') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_pattern_is_translated_or_skipped_on_purpose() {
        let m = matcher();
        let unexpected: Vec<_> = m
            .skipped
            .iter()
            .filter(|(src, p, _)| {
                let table = if *src == Source::Isbot { ISBOT_OVERRIDES } else { CUA_OVERRIDES };
                !table.iter().any(|(q, o)| q == p && matches!(o, Override::Skip(_)))
            })
            .collect();
        assert!(unexpected.is_empty(), "patterns that failed to translate: {unexpected:#?}");
    }

    #[test]
    fn every_override_names_a_pattern_that_is_still_in_the_data() {
        let isbot = json::parse(ISBOT_PATTERNS).unwrap();
        let isbot: Vec<&str> = isbot.as_array().unwrap().iter().filter_map(Json::as_str).collect();
        for (p, _) in ISBOT_OVERRIDES {
            assert!(isbot.contains(p), "stale isbot override: {p}");
        }
        let cua = json::parse(CRAWLER_USER_AGENTS).unwrap();
        let cua: Vec<&str> =
            cua.as_array().unwrap().iter().filter_map(|e| e.get("pattern").and_then(Json::as_str)).collect();
        for (p, _) in CUA_OVERRIDES {
            assert!(cua.contains(p), "stale crawler-user-agents override: {p}");
        }
    }

    /// A keyless pattern that is not anchored makes every UA pay a full
    /// regex scan; after an update, give it an override instead.
    #[test]
    fn only_cheap_patterns_are_left_without_a_key() {
        let m = matcher();
        let slow: Vec<&String> = m
            .residual
            .iter()
            .flat_map(|r| r.members.iter().map(|(p, _)| p))
            .filter(|p| {
                let bare = p.trim_start_matches("(?i:").trim_end_matches(')');
                !bare.starts_with('^') && !bare.ends_with('$')
            })
            .collect();
        assert!(slow.is_empty(), "unanchored keyless patterns: {slow:?}");
    }

    #[test]
    fn required_literals_skip_optional_and_grouped_parts() {
        assert_eq!(longest_required_literal(r"AdsBot-Google([^-]|$)"), "AdsBot-Google");
        assert_eq!(longest_required_literal(r"[wW]get"), "get");
        assert_eq!(longest_required_literal(r"(sistrix|SISTRIX) [cC]rawler"), "rawler");
        assert_eq!(longest_required_literal(r"BlogTraffic\/\d\.\d+ Feed-Fetcher"), " Feed-Fetcher");
        assert_eq!(longest_required_literal(r"^\w*search\b"), "search");
        assert_eq!(longest_required_literal(r"collapsify\b"), "collapsify");
        assert_eq!(longest_required_literal(r"bots?x"), "bot");
        assert_eq!(longest_required_literal(r"@[a-z][\w-]+\."), "@");
        assert_eq!(longest_required_literal(r"ptst[ /]\d"), "ptst");
        assert_eq!(longest_required_literal(r"^[^ ]{50,}$"), "");
    }

    #[test]
    fn literal_patterns_are_recognised_with_their_escapes() {
        assert_eq!(as_literal(r"Mail\.RU_Bot").as_deref(), Some("Mail.RU_Bot"));
        assert_eq!(as_literal(r"yandex\.com\/bots").as_deref(), Some("yandex.com/bots"));
        assert_eq!(as_literal(r"Google\d"), None);
        assert_eq!(as_literal(r"a.b"), None);
        assert_eq!(strip_anchors("^curl"), (true, "curl", false));
        assert_eq!(strip_anchors("SSL Labs$"), (false, "SSL Labs", true));
        assert_eq!(split_alternatives(r"Chirp|gotosocial"), ["Chirp", "gotosocial"]);
        assert_eq!(split_alternatives(r"(^| )sentry\/"), [r"(^| )sentry\/"]);
        assert_eq!(split_alternatives(r"[|]x|y"), ["[|]x", "y"]);
    }
}
