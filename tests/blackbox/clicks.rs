//! The click path end to end.

use crate::harness::*;

const POOL: &str = r#"
advertisers: [{id: adv}]
affiliates: [{id: aff1}, {id: aff2}]
offers:
  - id: ios-offer
    advertiser: adv
    url: "https://ios.example/lp?cid={click_id}&s1={sub1}&geo={country}&dev={device}&os={os}&aff={affiliate}"
    payout: 3.0
    targeting: {os: [ios]}
  - id: capped
    advertiser: adv
    url: "https://capped.example/?cid={click_id}"
    payout: 5.0
    targeting: {countries: [SE]}
    caps: {daily_clicks: 2}
  - id: backup
    advertiser: adv
    url: "https://backup.example/?cid={click_id}"
    payout: 0.5
    targeting: {countries: [SE]}
smartlinks:
  - slug: main
    affiliate: aff1
    offers: [ios-offer, capped, backup]
    fallback_url: "https://fallback.example/?c={country}&s1={sub1}"
    overrides:
      - {countries: [SE], offer: capped}
"#;

const WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

fn start(yaml: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let geo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/maxmind/GeoIP2-Country-Test.mmdb");
    let yaml = format!("{}\n{yaml}", "").replace("__GEO__", &geo.display().to_string());
    let cfg = write_config(dir.path(), &yaml);
    // Add the GeoIP database and proxy trust under `server:`.
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "server:\n",
        &format!("server:\n  trust_proxy: true\n  geoip: {}\n", geo.display()),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    (dir, s)
}

fn click(s: &Server, path: &str, ua: &str, ip: &str) -> Resp {
    s.get(path, &[("User-Agent", ua), ("X-Forwarded-For", ip)])
}

#[test]
fn click_redirects_to_an_eligible_offer_with_expanded_encoded_macros() {
    let (_d, s) = start(POOL);
    // 216.160.83.56 is US in MaxMind's test database.
    let r = click(&s, "/s/main?sub1=%26x%3D1%23", IPHONE, "216.160.83.56");
    assert_eq!(r.status, 302, "{}", r.body);
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with("https://ios.example/lp?cid="), "{loc}");
    assert!(loc.ends_with("&s1=%26x%3D1%23&geo=US&dev=mobile&os=ios&aff=aff1"), "{loc}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    let cid = loc.split("cid=").nth(1).unwrap().split('&').next().unwrap();
    assert_eq!(cid.len(), 52);
    s.stop();
    let rows = stored_clicks(&_d.path().join("data/smartlink.db"));
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.click_id.as_str(), row.subs[0].as_str(), row.country.as_str(), row.os.as_str()),
        (cid, "&x=1#", "US", "ios")
    );
    assert_eq!(row.user_agent, IPHONE);
}

#[test]
fn head_requests_route_like_get() {
    let (_d, s) = start(POOL);
    let r = s.request("HEAD", "/s/main", &[("User-Agent", IPHONE)], None);
    assert_eq!(r.status, 302);
    assert!(r.header("location").unwrap().starts_with("https://ios.example/"));
}

#[test]
fn paused_offer_is_never_chosen_after_an_api_pause() {
    let (_d, s) = start(POOL);
    assert!(click(&s, "/s/main", IPHONE, "216.160.83.56")
        .header("location")
        .unwrap()
        .starts_with("https://ios.example/"));
    let r = s.admin("PATCH", "/api/v1/offers/ios-offer", Some(r#"{"status": "paused"}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "paused");
    // Few enough clicks from one address that the rate windows stay quiet.
    for i in 0..6 {
        let loc =
            click(&s, &format!("/s/main?sub1=p{i}"), IPHONE, "216.160.83.56").header("location").unwrap().to_string();
        assert!(loc.starts_with("https://fallback.example/?c=US"), "{loc}");
    }
    assert_eq!(s.metric("smartlink_fallback_clicks_total{reason=\"all_paused\"}"), 0.0, "other offers are active");
    assert_eq!(s.metric("smartlink_fallback_clicks_total{reason=\"no_targeting_match\"}"), 6.0);
    let r = s.admin("PATCH", "/api/v1/offers/ios-offer", Some(r#"{"status": "active"}"#));
    assert_eq!(r.status, 200);
    assert!(click(&s, "/s/main", IPHONE, "216.160.83.56")
        .header("location")
        .unwrap()
        .starts_with("https://ios.example/"));
}

/// Where a Windows visitor from SE (89.160.20.112) is sent, without the
/// query: the override sends it to `capped` (2 clicks/day), then `backup`.
fn dest(s: &Server) -> String {
    click(s, "/s/main", WINDOWS, "89.160.20.112").header("location").unwrap().split('?').next().unwrap().to_string()
}

#[test]
fn capped_offer_gives_way_and_caps_survive_a_restart() {
    let (_d, s) = start(POOL);
    assert_eq!(dest(&s), "https://capped.example/");
    assert_eq!(dest(&s), "https://capped.example/");
    assert_eq!(dest(&s), "https://backup.example/");
    let s = s.restart();
    // Read before the next click, which the store may load at once.
    assert_eq!(stored_clicks(&s.db()).len(), 3, "clicks are in the store after the restart");
    assert_eq!(dest(&s), "https://backup.example/", "the cap must still be counted after a restart");
    // Pausing the backup leaves nothing eligible: fallback because capped.
    assert_eq!(s.admin("PATCH", "/api/v1/offers/backup", Some(r#"{"status": "paused"}"#)).status, 200);
    let r = click(&s, "/s/main?sub1=z", WINDOWS, "89.160.20.112");
    assert_eq!(r.header("location"), Some("https://fallback.example/?c=SE&s1=z"));
    assert_eq!(s.metric("smartlink_fallback_clicks_total{reason=\"all_capped\"}"), 1.0);
    s.stop();
    let rows = stored_clicks(&_d.path().join("data/smartlink.db"));
    let last = rows.last().unwrap();
    assert_eq!(
        (last.offer, last.fallback_reason.as_deref(), last.reason.as_str()),
        (None, Some("all_capped"), "fallback")
    );
}

#[test]
fn nothing_eligible_goes_to_the_fallback_with_its_reason() {
    let (_d, s) = start(POOL);
    // A Windows visitor from the US matches no offer's targeting.
    let r = click(&s, "/s/main?sub1=a", WINDOWS, "216.160.83.56");
    assert_eq!(r.header("location"), Some("https://fallback.example/?c=US&s1=a"));
    assert_eq!(s.metric("smartlink_clicks_total{outcome=\"fallback\"}"), 1.0);
    assert_eq!(s.metric("smartlink_fallback_clicks_total{reason=\"no_targeting_match\"}"), 1.0);
}

#[test]
fn unknown_slug_is_a_counted_404() {
    let (_d, s) = start(POOL);
    let r = s.get("/s/nope", &[]);
    assert_eq!(r.status, 404);
    assert!(r.body.contains("does not exist"));
    assert_eq!(s.metric("smartlink_clicks_total{outcome=\"unknown_slug\"}"), 1.0);
}

#[test]
fn oversized_sub_id_is_a_400_naming_the_parameter() {
    let (_d, s) = start(POOL);
    let r = s.get(&format!("/s/main?sub2={}", "x".repeat(300)), &[]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("sub2"), "{}", r.body);
}

#[test]
fn aff_parameter_credits_a_known_affiliate() {
    let (_d, s) = start(POOL);
    let loc = click(&s, "/s/main?aff=aff2", IPHONE, "216.160.83.56").header("location").unwrap().to_string();
    assert!(loc.ends_with("&aff=aff2"), "{loc}");
    let loc = click(&s, "/s/main?aff=ghost", IPHONE, "216.160.83.56").header("location").unwrap().to_string();
    assert!(loc.ends_with("&aff=aff1"), "unknown aff falls back to the owner: {loc}");
    assert_eq!(s.metric("smartlink_unknown_affiliate_total"), 1.0);
}

#[test]
fn admin_api_requires_the_token_and_validates() {
    let (_d, s) = start(POOL);
    assert_eq!(s.get("/api/v1/offers", &[]).status, 401);
    assert_eq!(s.get("/api/v1/offers", &[("Authorization", "Bearer wrong")]).status, 401);
    assert_eq!(s.admin("GET", "/api/v1/offers/nope", None).status, 404);
    assert_eq!(s.admin("GET", "/api/v1/things", None).status, 404);
    let r = s.admin("POST", "/api/v1/offers", Some(r#"{"id": "new", "advertiser": "adv", "url": "https://n.example/?c={nope}", "payout": -2, "targeting": {"countries": ["XX"]}}"#));
    assert_eq!(r.status, 422, "{}", r.body);
    let paths: Vec<String> =
        r.json()["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
    for want in ["url", "payout", "targeting.countries[0]"] {
        assert!(paths.contains(&want.to_string()), "{want} missing from {paths:?}");
    }
    assert_eq!(s.admin("POST", "/api/v1/offers", Some("not json")).status, 400);
    let r = s.admin(
        "POST",
        "/api/v1/offers",
        Some(
            r#"{"id": "new", "advertiser": "adv", "url": "https://n.example/?c={click_id}", "payout": 2, "bogus": 1}"#,
        ),
    );
    assert_eq!(r.status, 422);
    assert!(r.body.contains("bogus"), "{}", r.body);
    let r = s.admin(
        "POST",
        "/api/v1/offers",
        Some(r#"{"id": "new", "advertiser": "adv", "url": "https://n.example/?c={click_id}", "payout": 2}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        s.admin(
            "POST",
            "/api/v1/offers",
            Some(r#"{"id": "new", "advertiser": "adv", "url": "https://n.example/", "payout": 2}"#)
        )
        .status,
        409
    );
    // Deleting an offer a smartlink uses is a conflict, not a dangling link.
    let r = s.admin("DELETE", "/api/v1/offers/backup", None);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("smartlinks[0].offers[2]"), "{}", r.body);
    assert_eq!(s.admin("DELETE", "/api/v1/offers/new", None).status, 204);
    assert_eq!(s.admin("GET", "/api/v1/offers/new", None).status, 404);
}

#[test]
fn a_new_smartlink_created_through_the_api_serves_the_next_click() {
    let (_d, s) = start(POOL);
    assert_eq!(s.get("/s/fresh", &[]).status, 404);
    let r = s.admin(
        "PUT",
        "/api/v1/smartlinks/fresh",
        Some(r#"{"offers": ["backup"], "fallback_url": "https://f.example/"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = click(&s, "/s/fresh", WINDOWS, "89.160.20.112");
    assert!(r.header("location").unwrap().starts_with("https://backup.example/"));
}

#[test]
fn an_override_added_with_one_call_routes_the_next_click() {
    let (d, s) = start(POOL);
    let body = r#"{"countries": ["US"], "devices": ["mobile"], "offer": "ios-offer"}"#;
    let r = s.request(
        "POST",
        "/api/v1/smartlinks/main/overrides",
        &[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "application/json")],
        Some(body),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["overrides"][0]["offer"], "ios-offer");
    assert_eq!(r.json()["overrides"].as_array().unwrap().len(), 2, "the existing override is kept");
    let bad = s.admin("POST", "/api/v1/smartlinks/main/overrides", Some(r#"{"countries": ["US"], "offer": "nope"}"#));
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(s.admin("POST", "/api/v1/smartlinks/none/overrides", Some(body)).status, 404);
    assert!(click(&s, "/s/main", IPHONE, "216.160.83.56")
        .header("location")
        .unwrap()
        .starts_with("https://ios.example/"));
    s.stop();
    let rows = stored_clicks(&d.path().join("data/smartlink.db"));
    assert_eq!(rows.last().unwrap().reason, "override");
}

#[test]
fn clicks_journaled_before_a_crash_are_stored_and_still_count_toward_caps() {
    let (d, s) = start(POOL);
    assert_eq!(dest(&s), "https://capped.example/");
    assert_eq!(dest(&s), "https://capped.example/");
    // The rows are on disk in the journal (loaded into the store or not):
    // a SIGKILL now must lose none of them.
    s.wait_metric("smartlink_clicks_journaled_total", 2.0);
    s.kill9();
    let s = Server::start(d.path(), &d.path().join("smartlink.yaml"));
    assert_eq!(dest(&s), "https://backup.example/", "the cap counts the journaled clicks");
    s.stop();
    assert_eq!(stored_clicks(&d.path().join("data/smartlink.db")).len(), 3);
}

/// Who a journal record that a previous run left behind is for (the parts
/// the tests vary).
#[derive(Clone, Copy)]
struct Left {
    offer: &'static str,
    affiliate: Option<&'static str>,
    ip: &'static str,
    country: &'static str,
    device: smartlink_core::model::Device,
    os: smartlink_core::model::Os,
    browser: smartlink_core::model::Browser,
    ua: &'static str,
    reason: smartlink_core::router::Reason,
}

/// The stored numeric key of (kind, id) in the server's database.
fn stored_key(db: &std::path::Path, kind: smartlink_store::Kind, id: &str) -> u32 {
    use smartlink_store::Store;
    let keys = smartlink_store::SqliteStore::open(db).unwrap().keys().unwrap();
    keys.iter().find(|k| k.0 == kind && k.1 == id).unwrap().2
}

/// Clicks on smartlink `main` for `l`, as the journal holds them.
fn journal_clicks(db: &std::path::Path, l: &Left) -> impl Fn(String, i64) -> smartlink_clicklog::writer::ClickEvent {
    use smartlink_store::Kind;
    let smartlink = stored_key(db, Kind::Smartlink, "main");
    let offer = stored_key(db, Kind::Offer, l.offer);
    let affiliate = l.affiliate.map(|a| stored_key(db, Kind::Affiliate, a));
    let l = *l;
    move |click_id, ts_ms| smartlink_clicklog::writer::ClickEvent {
        click_id,
        ts_ms,
        smartlink,
        offer: Some(offer),
        affiliate,
        subs: Default::default(),
        ip: Some(l.ip.parse().unwrap()),
        country: smartlink_core::model::Country::parse(l.country).unwrap(),
        device: l.device,
        os: l.os,
        browser: l.browser,
        language: None,
        referrer: "".into(),
        user_agent: l.ua.into(),
        reason: l.reason,
        fallback_reason: None,
        propensity: 1.0,
        quality: smartlink_visitor::quality::Quality::HUMAN,
        class: smartlink_visitor::quality::QualityClass::Human,
        cost: 0.0,
        source: None,
    }
}

#[test]
fn rows_a_crash_left_in_the_journal_are_loaded_at_start_up_and_count_toward_caps() {
    use smartlink_core::model::{Browser, Device, Os};
    let (d, s) = start(POOL);
    s.stop();
    let db = d.path().join("data/smartlink.db");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let left = Left {
        offer: "capped",
        affiliate: Some("aff1"),
        ip: "89.160.20.112",
        country: "SE",
        device: Device::Desktop,
        os: Os::Windows,
        browser: Browser::Chrome,
        ua: WINDOWS,
        reason: smartlink_core::router::Reason::Override,
    };
    let click_of = journal_clicks(&db, &left);
    // What a crash leaves: two whole records and half of a third.
    let mut seg = smartlink_clicklog::journal::MAGIC.to_vec();
    let mut torn = Vec::new();
    for i in 0..3 {
        let e = click_of(format!("crash-left-{i}"), now - 1_000 + i);
        smartlink_clicklog::journal::encode(&e, if i < 2 { &mut seg } else { &mut torn });
    }
    seg.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(d.path().join("data/journal/clicks-00000000000000000999.log"), seg).unwrap();

    let s = Server::start(d.path(), &d.path().join("smartlink.yaml"));
    let r = click(&s, "/s/main", WINDOWS, "89.160.20.112");
    assert!(r.header("location").unwrap().starts_with("https://backup.example/"), "the two loaded clicks used the cap");
    s.stop();
    let ids: Vec<String> = stored_clicks(&db).into_iter().map(|c| c.click_id).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"crash-left-0".to_string()) && ids.contains(&"crash-left-1".to_string()));
    assert!(!ids.contains(&"crash-left-2".to_string()), "the torn record is dropped");
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused_with_a_clear_message() {
    let (d, s) = start(POOL);
    let err = match Server::try_start(d.path(), &d.path().join("smartlink.yaml")) {
        Ok(_) => panic!("a second server started on the same data directory"),
        Err(e) => e,
    };
    assert!(err.contains("another smartlink process is using this data directory"), "{err}");
    assert_eq!(err.matches("another smartlink process").count(), 1, "said once: {err}");
    // The first one is unaffected.
    assert_eq!(click(&s, "/s/main", WINDOWS, "89.160.20.112").status, 302);
}

/// The country the iPhone offer's URL reports for a click that sends
/// `headers`, on a server whose `server:` section gets `extra`.
fn country_seen(extra: &str, headers: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let geo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/maxmind/GeoIP2-Country-Test.mmdb");
    let cfg = write_config(dir.path(), POOL);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "server:\n",
        &format!("server:\n  geoip: {}\n{extra}", geo.display()),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    let mut h = vec![("User-Agent", IPHONE)];
    h.extend_from_slice(headers);
    let r = s.get("/s/main", &h);
    let loc = r.header("location").unwrap_or_default().to_string();
    loc.split("geo=").nth(1).and_then(|g| g.split('&').next()).unwrap_or("").to_string()
}

#[test]
fn forwarded_headers_are_believed_only_from_the_trusted_proxies() {
    // 216.160.83.56 is US; the test client connects from 127.0.0.1 (unknown, ZZ).
    let xff = [("X-Forwarded-For", "216.160.83.56")];
    assert_eq!(country_seen("  trust_proxy: true\n", &xff), "US", "loopback is trusted by default");
    assert_eq!(country_seen("", &xff), "ZZ", "without trust_proxy");
    let elsewhere = "  trust_proxy: true\n  trusted_proxies: [10.9.9.9/32]\n";
    assert_eq!(country_seen(elsewhere, &xff), "ZZ", "a client that is not a trusted proxy");
    assert_eq!(country_seen(elsewhere, &[("CF-IPCountry", "DE")]), "ZZ", "nor is its CF-IPCountry");
    // A client left of the proxy's own hop cannot choose its address.
    let spoofed = [("X-Forwarded-For", "216.160.83.56, 81.2.69.160")];
    assert_eq!(country_seen("  trust_proxy: true\n", &spoofed), "GB", "the right-most untrusted hop");
}

#[test]
fn a_bad_trusted_proxy_entry_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), POOL);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "server:\n",
        "server:\n  trust_proxy: true\n  trusted_proxies: [127.0.0.1, nope]\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let err = Server::try_start(dir.path(), &cfg).err().expect("must not start");
    assert!(err.contains("server.trusted_proxies[1]"), "{err}");
}

#[test]
fn a_damaged_journal_record_costs_only_itself_at_start_up_and_is_counted() {
    use smartlink_core::model::{Browser, Device, Os};
    let (d, s) = start(POOL);
    s.stop();
    let db = d.path().join("data/smartlink.db");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let left = Left {
        offer: "ios-offer",
        affiliate: None,
        ip: "216.160.83.56",
        country: "US",
        device: Device::Mobile,
        os: Os::Ios,
        browser: Browser::Safari,
        ua: IPHONE,
        reason: smartlink_core::router::Reason::BestScore,
    };
    let click_of = journal_clicks(&db, &left);
    // 500 journaled clicks left by a previous run, one byte of record 100 flipped.
    let mut seg = smartlink_clicklog::journal::MAGIC.to_vec();
    let mut damaged_at = 0;
    for i in 0..500 {
        if i == 100 {
            damaged_at = seg.len() + 30;
        }
        smartlink_clicklog::journal::encode(&click_of(format!("left-{i}"), now - 10_000 + i), &mut seg);
    }
    seg[damaged_at] ^= 0x5a;
    std::fs::write(d.path().join("data/journal/clicks-00000000000000000999.log"), seg).unwrap();
    let s = Server::start(d.path(), &d.path().join("smartlink.yaml"));
    assert_eq!(s.metric("smartlink_click_journal_damaged_total"), 1.0);
    s.stop();
    let ids: Vec<String> = stored_clicks(&db).into_iter().map(|c| c.click_id).collect();
    assert_eq!(ids.len(), 499, "only the damaged record is lost");
    assert!(!ids.contains(&"left-100".to_string()) && ids.contains(&"left-101".to_string()));
}

#[test]
fn a_dot_segment_sub_id_cannot_walk_the_offer_path() {
    let pool = POOL.replace(
        "https://ios.example/lp?cid={click_id}&s1={sub1}&geo={country}&dev={device}&os={os}&aff={affiliate}",
        "https://ios.example/lp/{sub1}/offer?cid={click_id}&s1={sub1}",
    );
    let (_d, s) = start(&pool);
    for sub in ["..", ".", "%2e%2e", "..%2F..", "a%2F.."] {
        let r = click(&s, &format!("/s/main?sub1={sub}"), IPHONE, "216.160.83.56");
        let loc = r.header("location").unwrap().to_string();
        let path = loc.split('?').next().unwrap();
        assert!(
            !path.split('/').any(|seg| seg == "."
                || seg == ".."
                || seg.eq_ignore_ascii_case("%2e%2e")
                || seg.eq_ignore_ascii_case("%2e")),
            "sub1={sub}: {loc}"
        );
        assert!(path.starts_with("https://ios.example/lp/"), "{loc}");
    }
}
