//! Traffic quality: the verdict, score and reason codes each signal gives
//! (a table), the click id's flags nibble, the reason-code text format, and
//! the behaviour counters driven through virtual time: bursts, IP+UA rates,
//! duplicates, forgetting, many IPs at once, threads.

use std::net::{IpAddr, Ipv4Addr};

use smartlink_visitor::quality::{
    judge, Behaviour, BehaviourConfig, NetworkSignals, Quality, Reason, Reasons, RequestSignals, Verdict,
};
use smartlink_visitor::types::{Country, Language};
use smartlink_visitor::ua::{classify, ClientHints};

const CHROME_WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
const CHROME_ANDROID: &str =
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";
/// What Chrome on an Android tablet (or a phone in "desktop site" mode) sends.
const CHROME_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const CHROME_OS: &str =
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15";
const FIREFOX_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAMSUNG_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36";

const BROWSERS: [&str; 8] = [
    CHROME_WINDOWS,
    SAFARI_IPHONE,
    CHROME_ANDROID,
    CHROME_LINUX,
    CHROME_OS,
    SAFARI_MAC,
    FIREFOX_WINDOWS,
    SAMSUNG_ANDROID,
];

/// 2026-01-05T00:00:00Z: a multiple of every window used here.
const T0: i64 = 1_767_571_200_000;
const MINUTE: i64 = 60_000;

fn country(c: &str) -> Country {
    Country::parse(c).unwrap()
}

fn lang(l: &str) -> Option<Language> {
    Some(Language::parse(l).unwrap())
}

/// A complete, unremarkable request from a US visitor with `ua`.
fn req(ua: &'static str) -> RequestSignals<'static> {
    RequestSignals {
        ua,
        ua_info: classify(ua, ClientHints::default()),
        hints: ClientHints::default(),
        country: country("US"),
        language: lang("en"),
        has_accept_language: true,
        has_accept: true,
        network: NetworkSignals::default(),
    }
}

fn hints(platform: Option<&'static str>, mobile: Option<&'static str>) -> ClientHints<'static> {
    ClientHints { mobile, platform }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn reasons(codes: &str) -> Reasons {
    Reasons::parse_codes(codes).unwrap()
}

// ---------------------------------------------------------------------------
// The verdict of each signal.

#[test]
fn each_signal_gives_its_verdict_score_and_reason_codes() {
    let dc = NetworkSignals { datacenter: true, ..NetworkSignals::default() };
    let vpn = NetworkSignals { anonymous: true, ..NetworkSignals::default() };
    let blocked = NetworkSignals { blocked: true, ..NetworkSignals::default() };
    let none = Reasons::NONE;
    #[rustfmt::skip]
    let cases: Vec<(&str, RequestSignals<'static>, Reasons, Verdict, u8, &str)> = vec![
        ("Chrome on Windows", req(CHROME_WINDOWS), none, Verdict::Human, 0, ""),
        ("Safari on iPhone", req(SAFARI_IPHONE), none, Verdict::Human, 0, ""),
        ("Chrome on Android", req(CHROME_ANDROID), none, Verdict::Human, 0, ""),
        // User-Agent.
        ("empty UA", req(""), none, Verdict::Bot, 100, "empty_ua"),
        ("curl", req("curl/8.4.0"), none, Verdict::Bot, 100, "http_library"),
        ("python-requests", req("python-requests/2.32.3"), none, Verdict::Bot, 100, "http_library"),
        ("Googlebot", req("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"), none, Verdict::Bot, 100, "crawler"),
        ("HeadlessChrome", req("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"), none, Verdict::Bot, 100, "headless"),
        ("Slack unfurl", req("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"), none, Verdict::Bot, 100, "preview"),
        ("Telegram preview", req("TelegramBot (like TwitterBot)"), none, Verdict::Bot, 100, "preview"),
        ("Facebook preview", req("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"), none, Verdict::Bot, 100, "preview"),
        // A bot UA gets no consistency reasons: it is decided already.
        ("curl without headers", RequestSignals { has_accept_language: false, has_accept: false, ..req("curl/8.4.0") }, none, Verdict::Bot, 100, "http_library"),
        ("crawler from a datacenter", RequestSignals { network: dc, ..req("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)") }, none, Verdict::Bot, 100, "crawler,datacenter"),
        // Network.
        ("datacenter alone", RequestSignals { network: dc, ..req(CHROME_WINDOWS) }, none, Verdict::Suspect, 50, "datacenter"),
        // 50 + 20 = 70 < 80: still suspect.
        ("datacenter + missing headers", RequestSignals { network: dc, has_accept_language: false, ..req(CHROME_WINDOWS) }, none, Verdict::Suspect, 70, "datacenter,missing_headers"),
        // 50 + 40 = 90: bot.
        ("datacenter + VPN", RequestSignals { network: NetworkSignals { datacenter: true, anonymous: true, blocked: false }, ..req(CHROME_WINDOWS) }, none, Verdict::Bot, 90, "datacenter,anonymous_proxy"),
        ("VPN alone", RequestSignals { network: vpn, ..req(SAFARI_IPHONE) }, none, Verdict::Suspect, 40, "anonymous_proxy"),
        ("blocked IP", RequestSignals { network: blocked, ..req(SAFARI_IPHONE) }, none, Verdict::Bot, 100, "blocked_ip"),
        // Client hints.
        ("Windows UA, Android platform", RequestSignals { hints: hints(Some("\"Android\""), Some("?1")), ..req(CHROME_WINDOWS) }, none, Verdict::Suspect, 60, "hints_mismatch"),
        ("Windows UA, macOS platform", RequestSignals { hints: hints(Some("\"macOS\""), None), ..req(CHROME_WINDOWS) }, none, Verdict::Suspect, 60, "hints_mismatch"),
        ("desktop Windows UA, mobile hint", RequestSignals { hints: hints(Some("\"Windows\""), Some("?1")), ..req(CHROME_WINDOWS) }, none, Verdict::Suspect, 60, "hints_mismatch"),
        ("Android UA, Windows platform", RequestSignals { hints: hints(Some("\"Windows\""), Some("?0")), ..req(CHROME_ANDROID) }, none, Verdict::Suspect, 60, "hints_mismatch"),
        ("hints that agree", RequestSignals { hints: hints(Some("\"Windows\""), Some("?0")), ..req(CHROME_WINDOWS) }, none, Verdict::Human, 0, ""),
        ("Android mobile hints", RequestSignals { hints: hints(Some("\"Android\""), Some("?1")), ..req(CHROME_ANDROID) }, none, Verdict::Human, 0, ""),
        ("Android desktop-site mode", RequestSignals { hints: hints(Some("\"Android\""), Some("?0")), ..req(CHROME_LINUX) }, none, Verdict::Human, 0, ""),
        ("Chrome OS platform", RequestSignals { hints: hints(Some("\"Chrome OS\""), Some("?0")), ..req(CHROME_OS) }, none, Verdict::Human, 0, ""),
        ("ChromeOS platform", RequestSignals { hints: hints(Some("ChromeOS"), None), ..req(CHROME_OS) }, none, Verdict::Human, 0, ""),
        ("unknown platform", RequestSignals { hints: hints(Some("\"Unknown\""), None), ..req(CHROME_WINDOWS) }, none, Verdict::Human, 0, ""),
        ("empty platform", RequestSignals { hints: hints(Some("\"\""), None), ..req(SAFARI_MAC) }, none, Verdict::Human, 0, ""),
        // Language.
        ("Japanese from Germany", RequestSignals { country: country("DE"), language: lang("ja"), ..req(CHROME_WINDOWS) }, none, Verdict::Human, 10, "language_mismatch"),
        ("Turkish from Germany", RequestSignals { country: country("DE"), language: lang("tr"), ..req(CHROME_WINDOWS) }, none, Verdict::Human, 0, ""),
        ("English anywhere", RequestSignals { country: country("JP"), language: lang("en"), ..req(SAFARI_IPHONE) }, none, Verdict::Human, 0, ""),
        ("unknown country", RequestSignals { country: Country::UNKNOWN, language: lang("ja"), ..req(SAFARI_IPHONE) }, none, Verdict::Human, 0, ""),
        ("country outside the table", RequestSignals { country: country("AQ"), language: lang("ja"), ..req(SAFARI_IPHONE) }, none, Verdict::Human, 0, ""),
        ("Russian from a VPN in Brazil", RequestSignals { country: country("BR"), language: lang("ru"), network: vpn, ..req(CHROME_WINDOWS) }, none, Verdict::Suspect, 50, "anonymous_proxy,language_mismatch"),
        // Missing headers.
        ("no Accept-Language", RequestSignals { has_accept_language: false, language: None, ..req(CHROME_WINDOWS) }, none, Verdict::Human, 20, "missing_headers"),
        ("no Accept", RequestSignals { has_accept: false, ..req(SAFARI_IPHONE) }, none, Verdict::Human, 20, "missing_headers"),
        // 20 + 10 = 30: suspect.
        ("no Accept, Japanese from Germany", RequestSignals { has_accept: false, country: country("DE"), language: lang("ja"), ..req(CHROME_WINDOWS) }, none, Verdict::Suspect, 30, "language_mismatch,missing_headers"),
        // Behaviour, as passed in.
        ("busy IP", req(CHROME_ANDROID), reasons("rate_ip"), Verdict::Suspect, 40, "rate_ip"),
        ("flooding IP", req(CHROME_ANDROID), reasons("rate_ip_flood"), Verdict::Bot, 100, "rate_ip_flood"),
        ("busy IP+UA", req(CHROME_ANDROID), reasons("rate_ip_ua"), Verdict::Suspect, 50, "rate_ip_ua"),
        ("busy IP and IP+UA", req(CHROME_ANDROID), reasons("rate_ip,rate_ip_ua"), Verdict::Bot, 90, "rate_ip,rate_ip_ua"),
        ("duplicate", req(SAFARI_IPHONE), reasons("duplicate"), Verdict::Suspect, 30, "duplicate"),
    ];
    let mut failures = Vec::new();
    for (name, req, behaviour, verdict, score, codes) in cases {
        let q = judge(&req, behaviour);
        if (q.verdict, q.score, q.reasons.codes().as_str()) != (verdict, score, codes) {
            failures.push(format!(
                "{name}: got {} {} {:?}, want {} {score} {codes:?}",
                q.verdict,
                q.score,
                q.reasons.codes(),
                verdict
            ));
        }
        assert_eq!(q.is_preview(), codes.contains("preview"), "{name}");
        assert_eq!(q.counts(), verdict != Verdict::Bot, "{name}");
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_clean_browser_click_is_exactly_the_human_constant() {
    for ua in BROWSERS {
        assert_eq!(judge(&req(ua), Reasons::NONE), Quality::HUMAN, "{ua}");
    }
}

#[test]
fn previews_are_never_counted_and_say_so_in_their_flags() {
    let q = judge(&req("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"), Reasons::NONE);
    assert!(q.is_preview());
    assert!(!q.counts());
    assert_eq!(q.flags(), 0b110);
    assert_eq!(Quality::from_flags(q.flags()), (Verdict::Bot, true));
}

// ---------------------------------------------------------------------------
// Scoring and codes.

#[test]
fn the_score_is_the_capped_sum_of_weights_and_sets_the_verdict() {
    // Every subset of a spread of light and heavy reasons.
    let pool = [
        Reason::LanguageMismatch,
        Reason::MissingHeaders,
        Reason::Duplicate,
        Reason::AnonymousProxy,
        Reason::Datacenter,
        Reason::HintsMismatch,
        Reason::Crawler,
    ];
    for mask in 0..1u32 << pool.len() {
        let set: Reasons = pool.iter().enumerate().filter(|(i, _)| mask & 1 << i != 0).map(|(_, r)| *r).collect();
        let sum: u32 = set.iter().map(|r| u32::from(r.weight())).sum();
        let q = Quality::from_reasons(set);
        assert_eq!(u32::from(q.score), sum.min(100), "{}", set.codes());
        let want = match q.score {
            80.. => Verdict::Bot,
            30.. => Verdict::Suspect,
            _ => Verdict::Human,
        };
        assert_eq!(q.verdict, want, "{}", set.codes());
    }
    // The documented weights.
    let weights: Vec<(&str, u8)> = Reason::ALL.iter().map(|r| (r.as_str(), r.weight())).collect();
    assert_eq!(
        weights,
        [
            ("empty_ua", 100),
            ("malformed_ua", 100),
            ("non_browser", 100),
            ("crawler", 100),
            ("http_library", 100),
            ("headless", 100),
            ("monitor", 100),
            ("preview", 100),
            ("datacenter", 50),
            ("anonymous_proxy", 40),
            ("blocked_ip", 100),
            ("rate_ip", 40),
            ("rate_ip_flood", 100),
            ("rate_ip_ua", 50),
            ("duplicate", 30),
            ("hints_mismatch", 60),
            ("language_mismatch", 10),
            ("missing_headers", 20),
        ]
    );
}

#[test]
fn flags_round_trip_for_every_verdict_and_preview_combination() {
    for verdict in Verdict::ALL {
        for preview in [false, true] {
            let mut reasons = Reasons::NONE;
            if preview {
                reasons.insert(Reason::Preview);
            }
            let q = Quality { verdict, score: 0, reasons };
            let flags = q.flags();
            assert!(flags < 8, "bit 3 is reserved: {flags:#06b}");
            assert_eq!(Quality::from_flags(flags), (verdict, preview));
            assert_eq!(q.counts(), verdict != Verdict::Bot && !preview);
        }
    }
    assert_eq!(Quality::HUMAN.flags(), 0);
    // Unknown verdict bits read as bot; the reserved bit is ignored.
    assert_eq!(Quality::from_flags(0b0011), (Verdict::Bot, false));
    assert_eq!(Quality::from_flags(0b1101), (Verdict::Suspect, true));
}

#[test]
fn reason_codes_round_trip_and_an_unknown_code_is_named_in_the_error() {
    for r in Reason::ALL {
        assert_eq!(Reason::parse(r.as_str()), Some(r));
        assert_eq!(Reasons::parse_codes(r.as_str()), Ok([r].into_iter().collect()));
    }
    let all: Reasons = Reason::ALL.into_iter().collect();
    assert_eq!(all.iter().count(), Reason::ALL.len());
    assert_eq!(Reasons::parse_codes(&all.codes()), Ok(all));
    assert_eq!(Reasons::from_bits(all.bits()), all);

    // Codes come out in Reason::ALL order whatever the input order.
    let set = reasons(" missing_headers, datacenter,,crawler ");
    assert_eq!(set.codes(), "crawler,datacenter,missing_headers");
    assert_eq!(Reasons::parse_codes(""), Ok(Reasons::NONE));
    assert_eq!(Reasons::NONE.codes(), "");
    assert!(Reasons::NONE.is_empty());

    let err = Reasons::parse_codes("datacenter,bogus_reason").unwrap_err();
    assert!(err.contains("bogus_reason"), "{err}");
    assert_eq!(Reason::parse("bogus_reason"), None);

    // Bits of no known reason are dropped.
    assert_eq!(Reasons::from_bits(u32::MAX), all);
    assert_eq!(Reasons::from_bits(1 << 31), Reasons::NONE);

    let mut a = Reasons::NONE;
    a.insert(Reason::Duplicate);
    assert!(a.contains(Reason::Duplicate) && !a.contains(Reason::RateIp));
    assert_eq!(a.union(reasons("rate_ip")), reasons("rate_ip,duplicate"));

    for v in Verdict::ALL {
        assert_eq!(Verdict::parse(v.as_str()), Some(v));
    }
    assert_eq!(Verdict::ALL.map(Verdict::as_str), ["human", "suspect", "bot"]);
    assert_eq!(Verdict::parse("robot"), None);
}

#[test]
fn the_primary_reason_is_the_heaviest_and_ties_go_to_the_earlier_one() {
    assert_eq!(Reasons::NONE.primary(), None);
    assert_eq!(reasons("language_mismatch").primary(), Some(Reason::LanguageMismatch));
    assert_eq!(reasons("language_mismatch,missing_headers,datacenter").primary(), Some(Reason::Datacenter));
    assert_eq!(reasons("datacenter,hints_mismatch").primary(), Some(Reason::HintsMismatch));
    // Datacenter and rate_ip_ua both weigh 50: datacenter comes first in ALL.
    assert_eq!(reasons("rate_ip_ua,datacenter").primary(), Some(Reason::Datacenter));
    // All 100s: the earliest.
    assert_eq!(reasons("blocked_ip,preview,rate_ip_flood").primary(), Some(Reason::Preview));
    assert_eq!(reasons("rate_ip_flood,duplicate,crawler").primary(), Some(Reason::Crawler));
}

// ---------------------------------------------------------------------------
// Behaviour.

/// Chrome on Windows at major version `v`: a different browser build, so a
/// different IP+UA pair, on every click of a shared IP.
fn chrome_version(v: usize) -> String {
    format!(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.0.0 Safari/537.36",
        60 + v
    )
}

#[test]
fn a_burst_from_one_ip_flips_it_to_suspect_then_bot_and_is_forgotten_later() {
    let b = Behaviour::new(BehaviourConfig::default());
    let nat = ip("198.51.100.7");
    // Sixty people behind one NAT, each with another browser build, over ten
    // seconds at the start of a window.
    let got: Vec<Reasons> =
        (0..60).map(|i| b.observe(nat, &chrome_version(i), i as u64, T0 + i as i64 * 150)).collect();
    for (i, r) in got.iter().enumerate() {
        let click = i + 1;
        let want = match click {
            1..=19 => Reasons::NONE,
            20..=59 => reasons("rate_ip"),
            _ => reasons("rate_ip_flood"),
        };
        assert_eq!(*r, want, "click {click}");
    }
    let q = |r: Reasons| judge(&req(CHROME_WINDOWS), r).verdict;
    assert_eq!(q(got[18]), Verdict::Human);
    assert_eq!(q(got[19]), Verdict::Suspect);
    assert_eq!(q(got[59]), Verdict::Bot);
    // Another IP is untouched.
    assert_eq!(b.observe(ip("198.51.100.8"), CHROME_WINDOWS, 1, T0 + 10_000), Reasons::NONE);
    // Two windows of silence later the IP is a stranger again.
    assert_eq!(b.observe(nat, CHROME_WINDOWS, 99, T0 + 2 * MINUTE + 10_000), Reasons::NONE);
}

#[test]
fn the_window_slides_so_a_burst_fades_over_the_next_window() {
    let b = Behaviour::new(BehaviourConfig::default());
    let nat = ip("203.0.113.50");
    for i in 0..60 {
        b.observe(nat, &chrome_version(i), i as u64, T0 + i as i64 * 100);
    }
    // Half way through the next window: 60 × ½ + this click = 31, over 20
    // but under 60.
    assert_eq!(b.observe(nat, CHROME_WINDOWS, 100, T0 + MINUTE + MINUTE / 2), reasons("rate_ip"));
    // Near its end: 60 × 0.05 + 2 clicks = 5.
    assert_eq!(b.observe(nat, SAFARI_IPHONE, 101, T0 + MINUTE + 57_000), Reasons::NONE);
}

#[test]
fn one_ip_and_user_agent_clicking_often_is_suspect_while_other_browsers_on_the_ip_are_not() {
    let b = Behaviour::new(BehaviourConfig::default());
    let home = ip("192.0.2.44");
    for i in 1..=12u64 {
        // Different subs each time: not duplicates, just many clicks.
        let r = b.observe(home, SAFARI_IPHONE, i, T0 + i as i64 * 3_000);
        let want = if i >= 10 { reasons("rate_ip_ua") } else { Reasons::NONE };
        assert_eq!(r, want, "click {i}");
    }
    // The other device at home: 13 clicks from the IP, 1 from this pair.
    assert_eq!(b.observe(home, CHROME_ANDROID, 1, T0 + 40_000), Reasons::NONE);
    // Twenty from the same IP and UA: 40 + 50 = 90, a bot.
    let mut last = Reasons::NONE;
    for i in 13..=20u64 {
        last = b.observe(home, SAFARI_IPHONE, i, T0 + 40_000 + i as i64 * 500);
    }
    assert_eq!(last, reasons("rate_ip,rate_ip_ua"));
    assert_eq!(judge(&req(SAFARI_IPHONE), last).verdict, Verdict::Bot);
}

#[test]
fn a_repeat_within_the_duplicate_window_is_flagged_and_after_it_is_not() {
    let b = Behaviour::new(BehaviourConfig::default());
    let visitor = ip("2001:db8:42:7::1");
    let link = 0xfeed_u64;
    assert_eq!(b.observe(visitor, SAFARI_IPHONE, link, T0), Reasons::NONE);
    // Again 9 s later: a duplicate.
    assert_eq!(b.observe(visitor, SAFARI_IPHONE, link, T0 + 9_000), reasons("duplicate"));
    // Other subs, another browser, another IP: not duplicates.
    assert_eq!(b.observe(visitor, SAFARI_IPHONE, link + 1, T0 + 9_500), Reasons::NONE);
    assert_eq!(b.observe(visitor, CHROME_ANDROID, link, T0 + 9_600), Reasons::NONE);
    assert_eq!(b.observe(ip("2001:db8:43::1"), SAFARI_IPHONE, link, T0 + 9_700), Reasons::NONE);
    // The window runs from the latest click: 10.5 s after it, not a duplicate.
    assert_eq!(b.observe(visitor, SAFARI_IPHONE, link, T0 + 19_500), Reasons::NONE);
    // The same /64 is the same visitor (privacy addresses rotate within it).
    assert_eq!(b.observe(ip("2001:db8:42:7::beef"), SAFARI_IPHONE, link, T0 + 25_000), reasons("duplicate"));
    // Exactly at the window's end: no longer a duplicate.
    assert_eq!(b.observe(visitor, SAFARI_IPHONE, link, T0 + 35_000), Reasons::NONE);
}

#[test]
fn clicks_without_an_ip_get_no_behaviour_reasons() {
    let b = Behaviour::new(BehaviourConfig::default());
    for i in 0..100 {
        assert_eq!(b.observe(None, SAFARI_IPHONE, 7, T0 + i), Reasons::NONE);
    }
}

#[test]
fn a_threshold_of_zero_turns_its_reason_off() {
    let cfg = BehaviourConfig { ip_suspect: 0, ip_bot: 0, ip_ua_suspect: 0, duplicate_secs: 0, ..Default::default() };
    let b = Behaviour::new(cfg);
    for i in 0..200 {
        assert_eq!(b.observe(ip("192.0.2.1"), SAFARI_IPHONE, 7, T0 + i), Reasons::NONE);
    }
}

#[test]
fn a_hundred_thousand_ips_clicking_once_leave_every_ip_clean() {
    // The sizing load of Behaviour::new: 100k distinct IPs within one
    // window, spread over it, with a mix of browsers and links.
    let b = Behaviour::new(BehaviourConfig::default());
    let n: u32 = 100_000;
    let addr = |i: u32| Some(IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761) ^ 0x0a00_0000)));
    let mut flagged = 0;
    for i in 0..n {
        let r = b.observe(addr(i), BROWSERS[i as usize % 8], u64::from(i % 40), T0 + i64::from(i) * 3 / 5);
        flagged += usize::from(!r.is_empty());
    }
    // Each has a chance of about 5e-8 at full load (see quality/behaviour.rs),
    // so expect 0; a couple would still be noise, a sketch too narrow would
    // flag thousands.
    assert!(flagged <= 2, "{flagged} of {n} single clicks flagged");
    // New IPs at the end of the window, at full load, each clicking once.
    for i in n..n + 200 {
        let r = b.observe(addr(i), BROWSERS[i as usize % 8], u64::from(i % 40), T0 + MINUTE - 1);
        assert_eq!(r, Reasons::NONE, "new IP #{i}");
    }
}

#[test]
fn threads_sharing_one_behaviour_lose_no_clicks() {
    fn shared<T: Send + Sync>(_: &T) {}
    // Thresholds at exactly 61 and 62 clicks: the click after the threads'
    // 60 must see a count of exactly 61.
    let cfg = BehaviourConfig { ip_suspect: 61, ip_bot: 62, ..Default::default() };
    let b = Behaviour::new(cfg);
    shared(&b);
    let nat = ip("198.51.100.200");
    std::thread::scope(|s| {
        for t in 0..4 {
            let b = &b;
            s.spawn(move || {
                for i in 0..15 {
                    let r = b.observe(nat, &chrome_version(t * 15 + i), 0, T0 + 1_000);
                    assert!(!r.contains(Reason::RateIp) && !r.contains(Reason::RateIpFlood));
                }
            });
        }
    });
    assert_eq!(b.observe(nat, SAFARI_IPHONE, 0, T0 + 1_000), reasons("rate_ip"));
}

#[test]
fn memory_is_bounded_and_scales_with_the_capacity() {
    let default = Behaviour::new(BehaviourConfig::default());
    assert!(default.memory_bytes() <= 550_000, "{}", default.memory_bytes());
    assert!(default.memory_bytes() >= 400_000, "{}", default.memory_bytes());
    let small = Behaviour::with_capacity(BehaviourConfig::default(), 10_000);
    assert!(small.memory_bytes() <= 60_000, "{}", small.memory_bytes());
    // A long duplicate window needs no more than one entry per IP.
    let long_dup = Behaviour::new(BehaviourConfig { duplicate_secs: 86_400, ..Default::default() });
    assert!(long_dup.memory_bytes() <= 1_300_000, "{}", long_dup.memory_bytes());
    // Memory does not grow with traffic.
    let before = default.memory_bytes();
    for i in 0..10_000u32 {
        default.observe(Some(IpAddr::V4(Ipv4Addr::from(i))), SAFARI_IPHONE, 1, T0 + i64::from(i));
    }
    assert_eq!(default.memory_bytes(), before);
}

#[test]
fn past_its_capacity_the_sketch_makes_clean_visitors_look_busy_and_sized_for_the_traffic_it_does_not() {
    // 300,000 distinct IPs clicking once each within one window.
    let flagged = |capacity: usize| {
        let b = Behaviour::with_capacity(BehaviourConfig::default(), capacity);
        let mut flagged = 0;
        for i in 0..300_000u32 {
            let r = b.observe(Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))), SAFARI_IPHONE, 1, T0 + 1_000);
            if i >= 290_000 && r != Reasons::NONE {
                flagged += 1;
            }
        }
        flagged
    };
    assert!(flagged(10_000) > 9_000, "30x over capacity, nearly every clean click is flagged");
    assert!(flagged(1_000_000) < 10, "sized for the traffic, clean clicks stay clean");
}
