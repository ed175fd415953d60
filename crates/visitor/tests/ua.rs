//! User-Agent classification: hand-picked cases for each rule, and accuracy
//! over the uap-core test corpus (`testdata/uap-core`), whose expected
//! families are mapped onto our categories.

mod support {
    pub mod uap;
}

use proptest::prelude::*;
use smartlink_visitor::ua::{classify, ClientHints, UaInfo};
use smartlink_visitor::{Browser, Device, Os};

use Browser as B;
use Device as D;

fn check(ua: &str, device: Device, os: Os, browser: Browser) {
    check_with(ua, ClientHints::default(), device, os, browser);
}

fn check_with(ua: &str, hints: ClientHints<'_>, device: Device, os: Os, browser: Browser) {
    let got = classify(ua, hints);
    let want = UaInfo { device, os, browser };
    assert_eq!(got, want, "\n  ua: {ua:?}\n  hints: {hints:?}");
}

fn hints<'a>(mobile: Option<&'a str>, platform: Option<&'a str>) -> ClientHints<'a> {
    ClientHints { mobile, platform }
}

// ---------------------------------------------------------------------------
// Phones and tablets.

#[test]
fn iphone_safari_is_mobile_ios_safari() {
    check(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        D::Mobile, Os::Ios, B::Safari,
    );
}

#[test]
fn ipad_safari_is_a_tablet() {
    check(
        "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1 Mobile/15E148 Safari/604.1",
        D::Tablet, Os::Ios, B::Safari,
    );
}

/// iPadOS 13+ Safari requests desktop sites with a UA byte-for-byte equal
/// to macOS Safari and sends no client hints, so it is classified as a Mac:
/// nothing in the request distinguishes the two.
#[test]
fn ipados_desktop_mode_safari_is_indistinguishable_from_a_mac() {
    check(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        D::Desktop, Os::Macos, B::Safari,
    );
}

/// In-app browsers on iPadOS keep "Mobile/…" after a Macintosh platform,
/// which no Mac browser sends; Chrome on iPad names itself CriOS.
#[test]
fn ipados_desktop_mode_with_an_ios_only_token_is_an_ipad() {
    check(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        D::Tablet,
        Os::Ios,
        B::Other,
    );
    check(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/122.0.6261.89 Safari/604.1",
        D::Tablet, Os::Ios, B::Chrome,
    );
}

#[test]
fn chrome_firefox_and_edge_on_ios_are_named_by_their_ios_tokens() {
    let base = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)";
    check(&format!("{base} CriOS/122.0.6261.89 Mobile/15E148 Safari/604.1"), D::Mobile, Os::Ios, B::Chrome);
    check(&format!("{base} FxiOS/124.0 Mobile/15E148 Safari/605.1.15"), D::Mobile, Os::Ios, B::Firefox);
    check(&format!("{base} EdgiOS/122.0.2365.86 Version/17.0 Mobile/15E148 Safari/604.1"), D::Mobile, Os::Ios, B::Edge);
    check(&format!("{base} Version/17.4 Mobile/15E148 Safari/604.1 OPT/4.5.0"), D::Mobile, Os::Ios, B::Opera);
}

#[test]
fn ios_in_app_webviews_are_not_safari() {
    check(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.3.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
        D::Mobile, Os::Ios, B::Other,
    );
    check(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        D::Mobile,
        Os::Ios,
        B::Other,
    );
}

#[test]
fn android_phone_chrome_is_mobile() {
    check(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36",
        D::Mobile, Os::Android, B::Chrome,
    );
}

#[test]
fn android_without_mobile_token_is_a_tablet() {
    check(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        D::Tablet,
        Os::Android,
        B::Chrome,
    );
    check(
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
        D::Tablet, Os::Android, B::Samsung,
    );
}

#[test]
fn firefox_on_android_says_mobile_or_tablet_explicitly() {
    check("Mozilla/5.0 (Android 14; Mobile; rv:124.0) Gecko/124.0 Firefox/124.0", D::Mobile, Os::Android, B::Firefox);
    check("Mozilla/5.0 (Android 14; Tablet; rv:124.0) Gecko/124.0 Firefox/124.0", D::Tablet, Os::Android, B::Firefox);
}

#[test]
fn galaxy_tab_model_numbers_are_tablets_even_with_a_mobile_token() {
    check(
        "Mozilla/5.0 (Linux; U; Android 2.3.6; cs-cz; SAMSUNG GT-P1000/P1000BOJU3 Build/GINGERBREAD) AppleWebKit/533.1 (KHTML, like Gecko) Version/4.0 Mobile Safari/533.1",
        D::Tablet, Os::Android, B::Other,
    );
}

#[test]
fn android_app_agents_without_an_engine_are_phones() {
    check("Dalvik/2.1.0 (Linux; U; Android 13; SM-G991B Build/TP1A.220624.014)", D::Mobile, Os::Android, B::Other);
    check("okhttp/4.9.0 Android/12 Pixel 6", D::Mobile, Os::Android, B::Other);
}

#[test]
fn android_webview_is_not_chrome() {
    check(
        "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36",
        D::Mobile, Os::Android, B::Other,
    );
    check(
        "Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36 Instagram 315.0.0.29.109 Android",
        D::Mobile, Os::Android, B::Other,
    );
}

#[test]
fn android_stock_browser_is_not_safari() {
    check(
        "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; HTC Sensation Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
        D::Mobile, Os::Android, B::Other,
    );
}

#[test]
fn samsung_internet_is_samsung() {
    check(
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        D::Mobile, Os::Android, B::Samsung,
    );
}

/// Samsung Internet's "desktop site" mode sends a Linux desktop UA, but the
/// browser only exists on Android.
#[test]
fn samsung_internet_desktop_mode_is_still_android() {
    check(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36",
        D::Tablet, Os::Android, B::Samsung,
    );
}

#[test]
fn kindle_fire_silk_is_an_android_tablet_not_chrome() {
    check(
        "Mozilla/5.0 (Linux; Android 9; KFMAWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/122.1.1 like Chrome/122.0.6261.105 Safari/537.36",
        D::Tablet, Os::Android, B::Other,
    );
    check(
        "Mozilla/5.0 (Linux; U; en-us; KFTT Build/IML74K) AppleWebKit/535.19 (KHTML, like Gecko) Silk/2.2 Safari/535.19 Silk-Accelerated=true",
        D::Tablet, Os::Android, B::Other,
    );
    // Silk's desktop mode pretends to be a Mac.
    check(
        "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10_6_3; en-us; Silk/1.1.0-80) AppleWebKit/533.16 (KHTML, like Gecko) Version/5.0 Safari/533.16 Silk-Accelerated=true",
        D::Tablet, Os::Android, B::Other,
    );
}

#[test]
fn kindle_e_reader_is_a_tablet_on_another_os() {
    check(
        "Mozilla/5.0 (X11; U; Linux armv7l like Android; en-us) AppleWebKit/531.2+ (KHTML, like Gecko) Version/5.0 Safari/531.2+ Kindle/3.0+",
        D::Tablet, Os::Other, B::Other,
    );
}

#[test]
fn fire_tv_is_not_a_tablet() {
    check(
        "Mozilla/5.0 (Linux; Android 9; AFTKA) AppleWebKit/537.36 (KHTML, like Gecko) Silk/112.3.1 like Chrome/112.0.5615.213 Safari/537.36",
        D::Desktop, Os::Android, B::Other,
    );
}

#[test]
fn windows_phone_claims_android_and_iphone_but_is_neither() {
    check(
        "Mozilla/5.0 (Mobile; Windows Phone 8.1; Android 4.0; ARM; Trident/7.0; Touch; rv:11.0; IEMobile/11.0; NOKIA; Lumia 635) like iPhone OS 7_0_3 Mac OS X AppleWebKit/537 (KHTML, like Gecko) Mobile Safari/537",
        D::Mobile, Os::Other, B::Ie,
    );
    check(
        "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.14977",
        D::Mobile, Os::Other, B::Edge,
    );
}

#[test]
fn blackberry_playbook_is_a_tablet_and_its_browser_is_not_safari() {
    check(
        "Mozilla/5.0 (PlayBook; U; RIM Tablet OS 2.1.0; en-US) AppleWebKit/536.2+ (KHTML, like Gecko) Version/7.2.1.0 Safari/536.2+",
        D::Tablet, Os::Other, B::Other,
    );
}

#[test]
fn feature_phones_are_mobile() {
    check(
        "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
        D::Mobile,
        Os::Other,
        B::Opera,
    );
    check("Nokia6300/2.0 (05.00) Profile/MIDP-2.0 Configuration/CLDC-1.1", D::Mobile, Os::Other, B::Other);
    check(
        "SAMSUNG-SGH-E250/1.0 Profile/MIDP-2.0 Configuration/CLDC-1.1 UP.Browser/6.2.3.3.c.1.101 (GUI) MMP/2.0",
        D::Mobile,
        Os::Other,
        B::Other,
    );
    check("Mozilla/5.0 (Mobile; LYF/F300B/LYF-F300B-001-01-15-130718-i; Android; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5", D::Mobile, Os::Other, B::Firefox);
}

#[test]
fn tvs_consoles_and_headsets_are_not_phones_or_tablets() {
    check(
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
        D::Desktop, Os::Other, B::Samsung,
    );
    // Android TV says neither Mobile nor Tablet.
    check(
        "Mozilla/5.0 (Linux; Android 12; BRAVIA 4K VH2 Build/STT1.230526.001) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.5735.196 Safari/537.36",
        D::Desktop, Os::Android, B::Chrome,
    );
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19041",
        D::Desktop, Os::Windows, B::Edge,
    );
    check(
        "Mozilla/5.0 (PlayStation 5/SmartTV) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        D::Desktop,
        Os::Other,
        B::Other,
    );
    // The Quest browser claims Samsung Internet on Linux; it is neither.
    check(
        "Mozilla/5.0 (X11; Linux x86_64; Quest 3) AppleWebKit/537.36 (KHTML, like Gecko) OculusBrowser/31.0.0.7.77 SamsungBrowser/4.0 Chrome/120.0.6099.283 VR Safari/537.36",
        D::Desktop, Os::Android, B::Other,
    );
}

#[test]
fn device_names_that_are_also_browser_brands_do_not_name_the_browser() {
    // "edge" in a Motorola model, "IRON" in a phone's model: inside the
    // platform comment and not followed by '/', they are not browsers.
    check(
        "Mozilla/5.0 (Linux; Android 11; motorola edge 20) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        D::Mobile, Os::Android, B::Chrome,
    );
    check(
        "Mozilla/5.0 (Linux; Android 6.0; IRON_2 Build/1474531013) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/64.0.3282.137 Mobile Safari/537.36",
        D::Mobile, Os::Android, B::Chrome,
    );
}

#[test]
fn apple_app_agents_are_ios_unless_they_name_mac_hardware() {
    check("MyApp/70 CFNetwork/978.0.7 Darwin/18.5.0", D::Mobile, Os::Ios, B::Other);
    check("MyApp/1.0 CFNetwork/893.13.1 Darwin/17.3.0 (x86_64)", D::Desktop, Os::Macos, B::Other);
    check("Luminary/1.0.3 build 71/iOS 12.2", D::Mobile, Os::Ios, B::Other);
}

// ---------------------------------------------------------------------------
// Desktops.

#[test]
fn windows_chrome_is_desktop_chrome() {
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        D::Desktop, Os::Windows, B::Chrome,
    );
}

#[test]
fn windows_edge_is_edge_not_chrome() {
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.92",
        D::Desktop, Os::Windows, B::Edge,
    );
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19041",
        D::Desktop, Os::Windows, B::Edge,
    );
}

#[test]
fn edge_on_android_is_edge() {
    check(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36 EdgA/122.0.2365.86",
        D::Mobile, Os::Android, B::Edge,
    );
}

#[test]
fn macos_safari_is_desktop_safari() {
    check(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Safari/605.1.15",
        D::Desktop, Os::Macos, B::Safari,
    );
}

#[test]
fn macos_firefox_is_firefox() {
    check(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:124.0) Gecko/20100101 Firefox/124.0",
        D::Desktop,
        Os::Macos,
        B::Firefox,
    );
}

#[test]
fn linux_firefox_is_linux_firefox() {
    check("Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0", D::Desktop, Os::Linux, B::Firefox);
    check(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
        D::Desktop,
        Os::Linux,
        B::Firefox,
    );
}

#[test]
fn linux_webkit_browsers_are_not_safari() {
    check(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15 Epiphany/46.0",
        D::Desktop, Os::Linux, B::Other,
    );
}

#[test]
fn freebsd_is_not_linux() {
    check("Mozilla/5.0 (X11; FreeBSD amd64; rv:122.0) Gecko/20100101 Firefox/122.0", D::Desktop, Os::Other, B::Firefox);
}

#[test]
fn chromebook_is_chromeos_desktop() {
    check(
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        D::Desktop, Os::Chromeos, B::Chrome,
    );
}

#[test]
fn opera_is_opera_on_every_platform() {
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 OPR/108.0.0.0",
        D::Desktop, Os::Windows, B::Opera,
    );
    check(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36 OPR/81.1.4292.78446",
        D::Mobile, Os::Android, B::Opera,
    );
    check("Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18", D::Desktop, Os::Windows, B::Opera);
}

#[test]
fn yandex_browser_is_yandex() {
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 YaBrowser/24.1.0.0 Safari/537.36",
        D::Desktop, Os::Windows, B::Yandex,
    );
    check(
        "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 YaBrowser/24.1.5.82.00 SA/3 Mobile Safari/537.36",
        D::Mobile, Os::Android, B::Yandex,
    );
}

#[test]
fn uc_browser_is_uc() {
    check(
        "Mozilla/5.0 (Linux; U; Android 9; en-US; SM-A105F Build/PPR1.180610.011) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/78.0.3904.108 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
        D::Mobile, Os::Android, B::Uc,
    );
    check(
        "UCWEB/2.0 (Linux; U; Adr 2.3.6; en-US; HUAWEI_Y210-0251) U2/1.0.0 UCBrowser/8.6.0.318 U2/1.0.0 Mobile",
        D::Mobile,
        Os::Android,
        B::Uc,
    );
}

#[test]
fn internet_explorer_is_ie() {
    check("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko", D::Desktop, Os::Windows, B::Ie);
    check("Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)", D::Desktop, Os::Windows, B::Ie);
}

#[test]
fn windows_touch_laptops_are_desktops() {
    check(
        "Mozilla/5.0 (Windows NT 6.3; Win64; x64; Trident/7.0; Touch; Tablet PC 2.0; rv:11.0) like Gecko",
        D::Desktop,
        Os::Windows,
        B::Ie,
    );
}

#[test]
fn chromium_forks_with_their_own_brand_are_other() {
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Vivaldi/6.6.3271.45",
        D::Desktop, Os::Windows, B::Other,
    );
    check(
        "Mozilla/5.0 (Linux; Android 13; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Whale/3.23.214.10 Mobile Safari/537.36",
        D::Mobile, Os::Android, B::Other,
    );
}

#[test]
fn headless_chrome_is_not_chrome() {
    check(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/122.0.0.0 Safari/537.36",
        D::Desktop,
        Os::Linux,
        B::Other,
    );
}

// ---------------------------------------------------------------------------
// Degenerate input.

#[test]
fn empty_ua_is_unknown_desktop() {
    check("", D::Desktop, Os::Other, B::Other);
    check("   ", D::Desktop, Os::Other, B::Other);
    check("-", D::Desktop, Os::Other, B::Other);
}

#[test]
fn garbage_is_unknown_desktop_and_never_panics() {
    check("\u{0}\u{1}\u{7f}\u{fffd}\u{fffd}", D::Desktop, Os::Other, B::Other);
    check("ÿþýüûúùø ☃ 中文 🙂", D::Desktop, Os::Other, B::Other);
    check("((((;;;;////))))", D::Desktop, Os::Other, B::Other);
    check("a", D::Desktop, Os::Other, B::Other);
    // Long and adversarial: only the first bytes are read, quickly.
    let long = "Mozilla/5.0 ".repeat(10_000);
    check(&long, D::Desktop, Os::Other, B::Other);
    // Every single byte and every pair of ASCII bytes.
    for b in 0u8..=127 {
        let s = (b as char).to_string();
        let _ = classify(&s, ClientHints::default());
        for c in 0u8..=127 {
            let s: String = [b as char, c as char].iter().collect();
            let _ = classify(&s, ClientHints::default());
        }
    }
}

/// Words the classifier reacts to, in the shapes they take in real UAs.
const TOKEN_SOUP: &[&str] = &[
    "Mozilla/5.0",
    "(",
    ")",
    ";",
    "Windows",
    "Phone",
    "NT",
    "CE",
    "Mobile",
    "Mobi",
    "Tablet",
    "like",
    "Gecko",
    "Android",
    "Android4.0.4",
    "iPhone",
    "iPad",
    "Macintosh",
    "Mac",
    "OS",
    "X",
    "CrOS",
    "Linux",
    "X11",
    "KFTT",
    "AFTS",
    "SonyEricssonK750i",
    "SM",
    "-",
    "T510",
    "GT",
    "P1000",
    "Opera",
    "Mini",
    "UC",
    "Browser",
    "Edg/1",
    "edge",
    "Iron",
    "OPR/1",
    "Chrome/1",
    "Safari/1",
    "Version/1",
    "wv",
    "CFNetwork/1",
    "Darwin/1",
    "x86_64",
    "MSIE",
    "Trident/7.0",
    "Firefox/1",
    "SamsungBrowser/1",
    "YaBrowser/1",
    "UCBrowser/1",
    "Silk/1",
    "TV",
    "KAIOS",
    "Tizen",
    "FreeBSD",
    "é",
    "\u{0}",
    "/",
    " ",
    "_",
    ".",
    "0",
];

proptest! {
    #[test]
    fn arbitrary_input_never_panics(ua in any::<String>(), mobile in any::<Option<String>>(), platform in any::<Option<String>>()) {
        let hints = ClientHints { mobile: mobile.as_deref(), platform: platform.as_deref() };
        let _ = classify(&ua, hints);
    }

    #[test]
    fn any_mix_of_known_tokens_never_panics(words in proptest::collection::vec(proptest::sample::select(TOKEN_SOUP), 0..80)) {
        let _ = classify(&words.concat(), ClientHints::default());
        let _ = classify(&words.join(" "), ClientHints::default());
    }
}

#[test]
fn tokens_are_matched_as_whole_words_case_insensitively() {
    // "Android" inside another word is not Android; "ANDROID" is.
    check("Mozilla/5.0 (NotAndroidReally)", D::Desktop, Os::Other, B::Other);
    check("MYAPP/1.0 (ANDROID 12; MOBILE)", D::Mobile, Os::Android, B::Other);
}

// ---------------------------------------------------------------------------
// Client hints.

const ANDROID_REDUCED: &str =
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36";
const WINDOWS_CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36";

#[test]
fn mobile_hint_makes_a_non_tablet_mobile() {
    check_with(WINDOWS_CHROME, hints(Some("?1"), None), D::Mobile, Os::Windows, B::Chrome);
}

#[test]
fn mobile_hint_does_not_demote_a_tablet() {
    check_with(ANDROID_REDUCED, hints(Some("?1"), Some("\"Android\"")), D::Tablet, Os::Android, B::Chrome);
}

#[test]
fn not_mobile_hint_turns_an_android_phone_ua_into_a_tablet() {
    let phone = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36";
    check_with(phone, hints(Some("?0"), Some("\"Android\"")), D::Tablet, Os::Android, B::Chrome);
}

#[test]
fn platform_hint_overrides_the_ua_os() {
    // Chrome freezes the UA's platform; the hint is what is true.
    check_with(WINDOWS_CHROME, hints(Some("?0"), Some("\"Linux\"")), D::Desktop, Os::Linux, B::Chrome);
    check_with(WINDOWS_CHROME, hints(None, Some("\"macOS\"")), D::Desktop, Os::Macos, B::Chrome);
    check_with(WINDOWS_CHROME, hints(None, Some("\"Chrome OS\"")), D::Desktop, Os::Chromeos, B::Chrome);
    check_with(WINDOWS_CHROME, hints(None, Some("\"Chromium OS\"")), D::Desktop, Os::Chromeos, B::Chrome);
    check_with("", hints(Some("?1"), Some("\"Android\"")), D::Mobile, Os::Android, B::Other);
    check_with("", hints(Some("?1"), Some("\"iOS\"")), D::Mobile, Os::Ios, B::Other);
    // Unquoted (a proxy stripped the quotes) is accepted too.
    check_with("", hints(None, Some("Windows")), D::Desktop, Os::Windows, B::Other);
}

/// Chrome on Android in "desktop site" mode sends a Linux desktop UA but
/// the true platform in the hint.
#[test]
fn desktop_ua_with_a_mobile_platform_hint_is_a_touch_device() {
    let linux = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36";
    check_with(linux, hints(Some("?0"), Some("\"Android\"")), D::Tablet, Os::Android, B::Chrome);
    check_with(linux, hints(Some("?1"), Some("\"Android\"")), D::Mobile, Os::Android, B::Chrome);
    check_with(linux, hints(Some("?0"), Some("\"Linux\"")), D::Desktop, Os::Linux, B::Chrome);
}

#[test]
fn invalid_or_unknown_hints_are_ignored() {
    for bad in ["", "\"\"", "\"Unknown\"", "\"BeOS\"", "Android Windows", "\u{fffd}"] {
        check_with(WINDOWS_CHROME, hints(None, Some(bad)), D::Desktop, Os::Windows, B::Chrome);
    }
    for bad in ["", "1", "?2", "yes", "true"] {
        check_with(WINDOWS_CHROME, hints(Some(bad), None), D::Desktop, Os::Windows, B::Chrome);
    }
}

// ---------------------------------------------------------------------------
// Accuracy over uap-core's test corpus.
//
// uap-core's cases name fine-grained families; each is mapped onto one of
// our categories where the mapping is unambiguous, and only those cases are
// scored (an expected "Other", a bot, or a family we do not name is skipped).

use support::uap::{load, Case};

fn expected_os(family: &str) -> Option<Os> {
    Some(match family {
        "Android" => Os::Android,
        "iOS" => Os::Ios,
        "Mac OS X" | "Mac OS" | "macOS" => Os::Macos,
        "Chrome OS" => Os::Chromeos,
        "Linux" | "Ubuntu" | "Kubuntu" | "Xubuntu" | "Debian" | "Fedora" | "Red Hat" | "Gentoo" | "Mandriva"
        | "Linux Mint" | "Mint" | "SUSE" | "openSUSE" | "Slackware" | "CentOS" | "Arch Linux" => Os::Linux,
        f if f == "Windows"
            || f.starts_with("Windows ")
                && !f.starts_with("Windows Phone")
                && !f.starts_with("Windows Mobile")
                && !f.starts_with("Windows RT") =>
        {
            Os::Windows
        }
        _ => return None,
    })
}

fn expected_browser(family: &str) -> Option<Browser> {
    Some(match family {
        "Chrome" | "Chrome Mobile" | "Chrome Mobile iOS" => Browser::Chrome,
        "Safari" | "Mobile Safari" => Browser::Safari,
        "Firefox" | "Firefox Mobile" | "Firefox iOS" | "Firefox Beta" => Browser::Firefox,
        "Edge" | "Edge Mobile" => Browser::Edge,
        "Opera" | "Opera Mini" | "Opera Mobile" | "Opera Tablet" | "Opera Touch" | "Opera Coast" | "Opera GX" => {
            Browser::Opera
        }
        "Samsung Internet" => Browser::Samsung,
        "IE" | "IE Mobile" => Browser::Ie,
        "Yandex Browser" => Browser::Yandex,
        "UC Browser" => Browser::Uc,
        _ => return None,
    })
}

/// uap-core names devices, not device classes. The class is taken only
/// where the name settles it: Apple's product names, uap's generic
/// classes, Kindles, product names that say tablet, and Samsung's model
/// numbers (whose letter after `SM-`/`GT-` is the product line).
fn expected_device(case: &Case) -> Option<Device> {
    let (family, brand, model) = (case.family.as_str(), case.brand.as_str(), case.model.as_str());
    if brand == "Spider" {
        return None;
    }
    if brand == "Apple" {
        return if model.starts_with("iPhone") || model.starts_with("iPod") {
            Some(Device::Mobile)
        } else if model.starts_with("iPad") {
            Some(Device::Tablet)
        } else if model.starts_with("Mac") {
            Some(Device::Desktop)
        } else {
            None
        };
    }
    match family {
        "Generic Smartphone" | "Generic Feature Phone" => return Some(Device::Mobile),
        "Generic Tablet" => return Some(Device::Tablet),
        _ => {}
    }
    if family.starts_with("Kindle") {
        return Some(Device::Tablet);
    }
    let words: Vec<&str> = family.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let tablet_word = |w: &&str| {
        matches!(
            w.to_ascii_lowercase().as_str(),
            "tab" | "tablet" | "pad" | "mediapad" | "xoom" | "ideatab" | "ideapad"
        )
    };
    if words.iter().any(tablet_word) {
        return Some(Device::Tablet);
    }
    if brand == "Samsung" {
        let m = model.to_ascii_uppercase();
        const TABLETS: [&str; 4] = ["SM-T", "SM-P", "SM-X", "GT-P"];
        // (The carrier prefixes SGH-, SCH-, SPH- were used for both.)
        const PHONES: [&str; 10] = ["SM-G", "SM-N", "SM-A", "SM-J", "SM-S", "SM-M", "SM-F", "GT-I", "GT-S", "GT-N7"];
        if TABLETS.iter().any(|p| m.starts_with(p)) {
            return Some(Device::Tablet);
        }
        if PHONES.iter().any(|p| m.starts_with(p)) {
            return Some(Device::Mobile);
        }
    }
    // Sony Ericsson (2001-2012) made phones only. uap-core also files
    // Sony's later devices and some look-alike model codes under this
    // brand, so only UAs that name the maker count, minus Sony's SGP tablets.
    if brand == "SonyEricsson" && case.ua.contains("SonyEricsson") && !model.starts_with("SGP") {
        return Some(Device::Mobile);
    }
    None
}

struct Score {
    what: &'static str,
    scored: usize,
    right: usize,
    misses: Vec<String>,
    /// (expected, got) → count, to show where the misses are.
    confusion: std::collections::BTreeMap<(String, String), usize>,
}

impl Score {
    fn new(what: &'static str) -> Score {
        Score { what, scored: 0, right: 0, misses: Vec::new(), confusion: Default::default() }
    }

    fn add<T: PartialEq + std::fmt::Debug>(&mut self, ua: &str, want: T, got: T) {
        self.scored += 1;
        *self.confusion.entry((format!("{want:?}"), format!("{got:?}"))).or_default() += 1;
        if want == got {
            self.right += 1;
        } else {
            self.misses.push(format!("want {want:?}, got {got:?}: {ua}"));
        }
    }

    /// Prints the figure (and a sample of misses, to make regressions easy
    /// to read) and asserts it is at least `min`.
    fn assert_at_least(&self, min: f64, min_scored: usize) {
        let acc = self.right as f64 / self.scored.max(1) as f64;
        eprintln!(
            "uap-core {}: {}/{} = {:.2}% (threshold {:.2}%)",
            self.what,
            self.right,
            self.scored,
            acc * 100.0,
            min * 100.0
        );
        let per_class: Vec<String> =
            self.confusion.iter().map(|((want, got), n)| format!("{want}->{got}: {n}")).collect();
        eprintln!("  {}", per_class.join(", "));
        // UA_MISSES=n prints the first n misses (default 10).
        let show = std::env::var("UA_MISSES").map_or(10, |v| v.parse().unwrap_or(10));
        for m in self.misses.iter().take(show) {
            eprintln!("  miss: {m}");
        }
        assert!(self.scored >= min_scored, "{}: only {} cases scored", self.what, self.scored);
        assert!(acc >= min, "{} accuracy {acc:.4} below {min}", self.what);
    }
}

// Thresholds: measured 320/322 (OS), 108/109 (browser), 2030/2050
// (device), each set a little below.

#[test]
fn os_family_agrees_with_uap_core_test_cases() {
    let mut score = Score::new("OS (test_os.yaml)");
    for case in load("test_os.yaml") {
        if let Some(want) = expected_os(&case.family) {
            score.add(&case.ua, want, classify(&case.ua, ClientHints::default()).os);
        }
    }
    score.assert_at_least(0.98, 300);
}

#[test]
fn browser_family_agrees_with_uap_core_test_cases() {
    let mut score = Score::new("browser (test_ua.yaml)");
    for case in load("test_ua.yaml") {
        if let Some(want) = expected_browser(&case.family) {
            score.add(&case.ua, want, classify(&case.ua, ClientHints::default()).browser);
        }
    }
    score.assert_at_least(0.98, 100);
}

#[test]
fn device_class_agrees_with_uap_core_test_cases() {
    let mut score = Score::new("device (test_device.yaml)");
    for case in load("test_device.yaml") {
        if let Some(want) = expected_device(&case) {
            score.add(&case.ua, want, classify(&case.ua, ClientHints::default()).device);
        }
    }
    score.assert_at_least(0.98, 2000);
}
