//! Conversion tracking end to end: postbacks in, attribution, dedup,
//! statuses, caps, outbound postbacks, crash safety.

use smartlink_core::clickid::ClickFacts;
use smartlink_core::model::{Browser, Country, Device, Os, Segment};

use crate::harness::*;

fn pool(extra_server: &str, affiliate_postback: &str) -> String {
    format!(
        r#"
base_currency: USD
currencies: {{EUR: 2.0}}
advertisers:
  - {{id: adv, postback_token: adv-token}}
  - {{id: signed, postback_secret: sign-me, postback_ips: ["127.0.0.1/32"]}}
affiliates:
  - {{id: aff1, payout_share: 0.5 {affiliate_postback}}}
offers:
  - id: main
    advertiser: adv
    url: "https://main.example/?cid={{click_id}}"
    payout: 4.0
    caps: {{daily_conversions: 2}}
  - id: other
    advertiser: adv
    url: "https://other.example/?cid={{click_id}}"
    payout: 1.0
  - id: signed-offer
    advertiser: signed
    url: "https://signed.example/?cid={{click_id}}"
    payout: 1.0
smartlinks:
  - slug: sl
    affiliate: aff1
    offers: [main, other]
    strategy: priority
    fallback_url: "https://fallback.example/"
  - slug: signed
    offers: [signed-offer]
    fallback_url: "https://fallback.example/"
{extra_server}"#
    )
}

fn start_with(yaml: &str, server_extra: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), yaml);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", &format!("server:\n{server_extra}"), 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    (dir, s)
}

/// Clicks and returns the click id from the redirect.
fn click(s: &Server, path: &str) -> String {
    let r = s.get(path, &[("User-Agent", IPHONE)]);
    assert_eq!(r.status, 302, "{}", r.body);
    r.header("location").unwrap().split("cid=").nth(1).unwrap().split('&').next().unwrap().to_string()
}

fn postback(s: &Server, query: &str) -> Resp {
    s.get(&format!("/postback?{query}"), &[])
}

#[test]
fn a_postback_attributes_to_offer_smartlink_affiliate_subs_and_segment() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/sl?sub1=abc&sub2=x%20y");
    let r = postback(&s, &format!("click_id={cid}&token=adv-token&payout=3.5&txid=T1"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"], "recorded");
    // Wait for the click row (asynchronous writer) before listing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let conv = loop {
        let list = s.admin("GET", "/api/v1/conversions", None).json();
        let c = list["conversions"][0].clone();
        if !c["subs"].is_null() || std::time::Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(conv["offer"], "main");
    assert_eq!(conv["smartlink"], "sl");
    assert_eq!(conv["affiliate"], "aff1");
    assert_eq!(conv["subs"][0], "abc");
    assert_eq!(conv["subs"][1], "x y");
    assert_eq!((conv["device"].as_str(), conv["os"].as_str()), (Some("mobile"), Some("ios")));
    assert_eq!(conv["payout"], 3.5);
    assert_eq!(conv["txid"], "T1");
    assert!(conv["ctit_secs"].as_i64().unwrap() >= 0);
}

#[test]
fn repeats_are_duplicates_and_bad_input_is_refused_with_the_parameter_named() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/sl");
    let ok = format!("click_id={cid}&token=adv-token");
    assert_eq!(postback(&s, &ok).json()["result"], "recorded");
    let again = postback(&s, &ok).json();
    assert_eq!(again["result"], "duplicate");
    // Aliases: clickid / sum / tid.
    let r = postback(&s, &format!("clickid={cid}&token=adv-token&sum=1&tid=X"));
    assert_eq!(r.json()["result"], "recorded", "another txid is another conversion");

    let cases: Vec<(String, u16, &str)> = vec![
        (format!("click_id={cid}&token=wrong"), 401, "token"),
        (format!("click_id={cid}"), 401, "token"),
        ("token=adv-token".into(), 400, "click_id"),
        (format!("click_id={}&token=adv-token", &cid[..47]), 400, "click_id"),
        (format!("click_id={}A&token=adv-token", &cid[..47]), 400, "click_id"),
        (format!("click_id={cid}&token=adv-token&status=maybe&txid=s"), 422, "status"),
        (format!("click_id={cid}&token=adv-token&payout=-1&txid=p"), 422, "payout"),
        (format!("click_id={cid}&token=adv-token&payout=1&currency=XYZ&txid=c"), 422, "currency"),
    ];
    for (q, status, param) in cases {
        let r = postback(&s, &q);
        assert_eq!(r.status, status, "{q}: {}", r.body);
        assert_eq!(r.json()["parameter"], param, "{q}");
    }
}

#[test]
fn forged_unknown_and_expired_click_ids_get_their_own_answers() {
    let (_d, s) = start_with(&pool("", ""), "");
    let seg = Segment { country: Country::parse("US").unwrap(), device: Device::Mobile, os: Os::Ios };
    let now = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()) as u32;
    let facts = |smartlink, offer, time_secs| ClickFacts {
        time_secs,
        smartlink,
        offer,
        affiliate: None,
        source: None,
        segment: seg,
        browser: Browser::Safari,
        language: None,
        flags: 0,
        nonce: [9; 6],
    };
    // Signed with another secret: forged.
    let forged = smartlink_core::clickid::ClickIdCodec::new(b"not-the-secret").encode(&facts(1, Some(1), now));
    assert_eq!(postback(&s, &format!("click_id={forged}&token=adv-token")).status, 400);
    // Valid signature, unknown smartlink.
    let r = postback(&s, &format!("click_id={}&token=adv-token", mint(&facts(99, Some(1), now))));
    assert_eq!(r.status, 404, "{}", r.body);
    // Older than the 30-day attribution window.
    let r = postback(&s, &format!("click_id={}&token=adv-token", mint(&facts(1, Some(1), now - 31 * 86_400))));
    assert_eq!(r.status, 410, "{}", r.body);
    // A click id minted for a click whose row never reached the store (as
    // after a crash) still attributes.
    let r = postback(&s, &format!("click_id={}&token=adv-token", mint(&facts(1, Some(1), now - 60))));
    assert_eq!(r.json()["result"], "recorded", "{}", r.body);
}

#[test]
fn statuses_move_pending_approved_chargeback_and_txids_sum() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/sl");
    let pb = |q: &str| postback(&s, &format!("click_id={cid}&token=adv-token&{q}")).json();
    let id = pb("status=2&payout=2&txid=A")["conversion_id"].as_i64().unwrap();
    assert_eq!(pb("status=approved&txid=A")["result"], "updated");
    assert_eq!(pb("status=1&txid=A")["result"], "duplicate");
    let r = postback(&s, &format!("click_id={cid}&token=adv-token&status=pending&txid=A"));
    assert_eq!((r.status, r.json()["parameter"].as_str()), (422, Some("status")), "approved cannot go back to pending");
    assert_eq!(pb("status=chargeback&txid=A")["result"], "updated");
    // EUR is worth 2 USD here: 1.5 EUR = 3 USD.
    assert_eq!(pb("payout=1.5&currency=EUR&txid=B")["result"], "recorded");
    assert_eq!(pb("payout=1&txid=C")["result"], "recorded");
    let c = s.admin("GET", &format!("/api/v1/conversions/{id}"), None).json();
    assert_eq!(c["status"], "chargeback");
    let hist: Vec<&str> = c["history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap()).collect();
    assert_eq!(hist, ["pending", "approved", "chargeback"]);
    let list = s.admin("GET", "/api/v1/conversions?status=approved", None).json();
    let approved: f64 =
        list["conversions"].as_array().unwrap().iter().map(|c| c["payout_base"].as_f64().unwrap()).sum();
    assert_eq!(approved, 4.0, "B (3 USD) + C (1 USD); A was charged back");
}

#[test]
fn conversions_over_the_daily_cap_are_recorded_flagged_and_stop_the_offer() {
    let (_d, s) = start_with(&pool("", ""), "");
    let mut flags = vec![];
    // Three clicks reach the offer before any conversion arrives.
    let cids: Vec<String> = (0..3).map(|_| click(&s, "/s/sl")).collect();
    for cid in cids {
        let r = postback(&s, &format!("click_id={cid}&token=adv-token"));
        assert_eq!(r.status, 200);
        let id = r.json()["conversion_id"].as_i64().unwrap();
        flags.push(s.admin("GET", &format!("/api/v1/conversions/{id}"), None).json()["over_cap"].as_bool().unwrap());
    }
    // Cap 2: the first two fit, the third was sent after the cap was reached.
    assert_eq!(flags, [false, false, true]);
    // The capped offer gets no more clicks today: priority moves to `other`.
    let r = s.get("/s/sl", &[("User-Agent", IPHONE)]);
    assert!(r.header("location").unwrap().starts_with("https://other.example/"));
    // And the cap holds across a restart (rebuilt from stored conversions).
    let s = s.restart();
    let r = s.get("/s/sl", &[("User-Agent", IPHONE)]);
    assert!(r.header("location").unwrap().starts_with("https://other.example/"));
}

#[test]
fn signed_postbacks_need_a_valid_fresh_signature() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/signed");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |q: &str| {
        use hmac::Mac;
        let mut pairs: Vec<(String, String)> = q
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.into(), v.into())
            })
            .collect();
        pairs.sort();
        let canon = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"sign-me").unwrap();
        m.update(canon.as_bytes());
        m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let q = format!("click_id={cid}&ts={now}&payout=1");
    let r = postback(&s, &format!("{q}&sig={}", sign(&q)));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = postback(&s, &format!("{q}&sig={}", "0".repeat(64)));
    assert_eq!((r.status, r.json()["parameter"].as_str()), (403, Some("sig")));
    let old = format!("click_id={cid}&ts={}&payout=1", now - 3600);
    let r = postback(&s, &format!("{old}&sig={}", sign(&old)));
    assert_eq!((r.status, r.json()["parameter"].as_str()), (403, Some("ts")));
    // POST with a form body works the same way.
    let q2 = format!("click_id={cid}&ts={now}&payout=2&txid=P");
    let body = format!("{q2}&sig={}", sign(&q2));
    let r = s.request("POST", "/postback", &[("Content-Type", "application/x-www-form-urlencoded")], Some(&body));
    assert_eq!(r.json()["result"], "recorded", "{}", r.body);
}

/// `sig` over `pairs` (decoded names and values) in the documented
/// canonical form: names and values percent-encoded (RFC 3986 unreserved
/// characters kept), sorted, `name=value` joined with `&`.
fn signature(pairs: &[(&str, &str)]) -> String {
    use hmac::Mac;
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let mut v: Vec<(String, String)> = pairs.iter().map(|(k, v)| (enc(k), enc(v))).collect();
    v.sort();
    let canon = v.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"sign-me").unwrap();
    m.update(canon.as_bytes());
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn a_signed_postback_cannot_be_re_split_into_other_parameters() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/signed");
    let ts = unix_now().to_string();
    let sig = signature(&[("click_id", &cid), ("payout", "1.5"), ("transaction_id", "T-77"), ("ts", &ts)]);
    let r = postback(&s, &format!("click_id={cid}&payout=1.5&transaction_id=T-77&ts={ts}&sig={sig}"));
    assert_eq!(r.json()["result"], "recorded", "{}", r.body);
    // The same bytes under the old `name=value&...` join, split differently:
    // one parameter named `payout=1.5&transaction_id`. Its signature must
    // not verify.
    let r = postback(&s, &format!("click_id={cid}&payout%3D1.5%26transaction_id=T-77&ts={ts}&sig={sig}"));
    assert_ne!(r.status, 200, "a re-split postback was accepted: {}", r.body);
    assert!(r.status == 400 || r.status == 403, "{} {}", r.status, r.body);
    let list = s.admin("GET", "/api/v1/conversions", None).json();
    assert_eq!(list["conversions"].as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn a_signed_postback_with_a_repeated_or_unknown_parameter_is_refused_naming_it() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/signed");
    let ts = unix_now().to_string();
    let sig = signature(&[("click_id", &cid), ("payout", "1"), ("payout", "50"), ("ts", &ts)]);
    let r = postback(&s, &format!("click_id={cid}&payout=1&payout=50&ts={ts}&sig={sig}"));
    assert_eq!((r.status, r.json()["parameter"].as_str()), (400, Some("payout")), "{}", r.body);
    let sig = signature(&[("click_id", &cid), ("payout", "1"), ("note", "x"), ("ts", &ts)]);
    let r = postback(&s, &format!("click_id={cid}&payout=1&note=x&ts={ts}&sig={sig}"));
    assert_eq!((r.status, r.json()["parameter"].as_str()), (400, Some("note")), "{}", r.body);
    // Counted by the parameter at fault; a name no postback reads is
    // `other` (a client could send any number of names: never a label).
    let m = |labels: &str| s.metric(&format!("smartlink_postbacks_total{{channel=\"postback\",{labels}}}"));
    assert_eq!(m(r#"outcome="refused",status="400",parameter="payout""#), 1.0);
    assert_eq!(m(r#"outcome="refused",status="400",parameter="other""#), 1.0);
    assert!(!s.get("/metrics", &[]).body.contains("note"), "a client's parameter name became a label");
    // Values with reserved characters sign in their encoded form.
    let sig = signature(&[("click_id", &cid), ("txid", "a&b=c d"), ("ts", &ts)]);
    let r = postback(&s, &format!("click_id={cid}&txid=a%26b%3Dc%20d&ts={ts}&sig={sig}"));
    assert_eq!(r.json()["result"], "recorded", "{}", r.body);
}

#[test]
fn a_signed_postback_ts_far_in_the_past_is_refused_not_overflowed() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/signed");
    for ts in [(unix_now() as i128 - (1i128 << 63)).to_string(), i64::MAX.to_string(), i64::MIN.to_string()] {
        let sig = signature(&[("click_id", &cid), ("ts", &ts)]);
        let r = postback(&s, &format!("click_id={cid}&ts={ts}&sig={sig}"));
        assert_eq!((r.status, r.json()["parameter"].as_str()), (403, Some("ts")), "ts={ts}: {}", r.body);
    }
    let stale = r#"smartlink_postbacks_total{channel="postback",outcome="refused",status="403",parameter="ts"}"#;
    assert_eq!(s.metric(stale), 3.0, "stale timestamps are counted as such");
}

#[test]
fn a_payout_past_max_payout_or_infinite_after_conversion_is_refused_naming_payout() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/sl");
    // EUR is worth 2.0 in the base currency: 1.7e308 EUR would be infinite.
    for (payout, currency) in
        [("1.7e308", "EUR"), ("1e300", "USD"), ("50001", "EUR"), ("100001", "USD"), ("inf", "USD")]
    {
        let r =
            postback(&s, &format!("click_id={cid}&token=adv-token&payout={payout}&currency={currency}&txid={payout}"));
        assert_eq!(
            (r.status, r.json()["parameter"].as_str()),
            (422, Some("payout")),
            "{payout} {currency}: {}",
            r.body
        );
    }
    let r = postback(&s, &format!("click_id={cid}&token=adv-token&payout=50000&currency=EUR&txid=ok"));
    assert_eq!(r.json()["result"], "recorded", "{}", r.body);
    // Revenue stays a number.
    let report = s.admin("GET", "/api/v1/report?from=1d", None).json();
    assert_eq!(report["totals"]["revenue"], serde_json::json!(100000.0), "{report}");
}

#[test]
fn outbound_postback_is_retried_after_a_500_and_survives_a_restart() {
    let rec = Recorder::start(vec![500, 200]);
    let url = format!(
        ", postback_url: \"http://{}/pb?cid={{click_id}}&s1={{sub1}}&p={{payout}}&st={{status}}&o={{offer_id}}\"",
        rec.addr
    );
    let (_d, s) = start_with(&pool("", &url), "  outbound_retry_base_secs: 1.5\n");
    let cid = click(&s, "/s/sl?sub1=aff-click-9");
    // Let the click row reach the store so {sub1} is known at delivery.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(postback(&s, &format!("click_id={cid}&token=adv-token&payout=4")).status, 200);
    let first = rec.wait_for(1, 10);
    assert_eq!(first.len(), 1, "first attempt");
    // Restart between the failed attempt and the retry.
    let s = s.restart();
    let seen = rec.wait_for(2, 15);
    assert_eq!(seen.len(), 2, "retried after restart: {seen:?}");
    assert_eq!(seen[1], format!("/pb?cid={cid}&s1=aff-click-9&p=2&st=approved&o=main"), "payout share 0.5 of 4");
    // Delivered: nothing more is sent, and nothing is in the failed list.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(rec.seen.lock().unwrap().len(), 2);
    let failed = s.admin("GET", "/api/v1/postbacks/outbound?state=failed", None).json();
    assert_eq!(failed["postbacks"].as_array().unwrap().len(), 0);
    let delivered = s.admin("GET", "/api/v1/postbacks/outbound?state=delivered", None).json();
    assert_eq!(delivered["postbacks"][0]["attempts"], 2);
}

#[test]
fn failed_outbound_postbacks_are_listed_and_can_be_retried_by_hand() {
    let rec = Recorder::start(vec![500, 500, 200]);
    let url = format!(", postback_url: \"http://{}/pb?cid={{click_id}}\"", rec.addr);
    let (_d, s) = start_with(&pool("", &url), "  outbound_retry_base_secs: 0.1\n  outbound_max_attempts: 2\n");
    let cid = click(&s, "/s/sl");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(postback(&s, &format!("click_id={cid}&token=adv-token")).status, 200);
    assert_eq!(rec.wait_for(2, 10).len(), 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let failed = loop {
        let f = s.admin("GET", "/api/v1/postbacks/outbound?state=failed", None).json();
        if !f["postbacks"].as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break f;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let item = &failed["postbacks"][0];
    assert_eq!((item["attempts"].as_i64(), item["last_http_status"].as_i64()), (Some(2), Some(500)));
    let id = item["id"].as_i64().unwrap();
    assert_eq!(s.admin("POST", &format!("/api/v1/postbacks/outbound/{id}/retry"), None).status, 202);
    assert_eq!(rec.wait_for(3, 10).len(), 3, "manual retry delivered");
    // The count and the log keep every attempt across the manual retry.
    let one = (0..50)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            s.admin("GET", &format!("/api/v1/postbacks/outbound/{id}"), None).json()
        })
        .find(|v| v["state"] == "delivered")
        .expect("delivered after the retry");
    assert_eq!((one["attempts"].as_i64(), one["attempts_since_retry"].as_i64()), (Some(3), Some(1)), "{one}");
    let log: Vec<Option<i64>> =
        one["attempt_log"].as_array().unwrap().iter().map(|a| a["http_status"].as_i64()).collect();
    assert_eq!(log, [Some(500), Some(500), Some(200)]);
    assert!(one["attempt_log"][0]["url"].as_str().unwrap().contains("/pb?cid="), "{one}");
    assert_eq!(s.admin("GET", "/api/v1/postbacks/outbound/999999", None).status, 404);
}

#[test]
fn every_answered_postback_survives_kill_9_exactly_once() {
    // 60 clicks from one address in seconds: not what this test is about.
    let (d, s) = start_with(&pool("", ""), "  quality: {ip_suspect: 0, ip_bot: 0, ip_ua_suspect: 0}\n");
    let mut answered = Vec::new();
    let mut last_cid = String::new();
    for i in 0..60 {
        last_cid = click(&s, &format!("/s/sl?sub1=k{i}"));
        let r = postback(&s, &format!("click_id={last_cid}&token=adv-token&txid=t{i}&payout=0.1"));
        if r.status == 200 {
            answered.push(r.json()["conversion_id"].as_i64().unwrap());
        }
    }
    // One more click right before the kill: its row is probably still queued.
    let r = s.get("/s/sl?sub1=doomed", &[("User-Agent", IPHONE)]);
    let loc = r.header("location").unwrap().to_string();
    let doomed = loc.split("cid=").nth(1).unwrap().to_string();
    let doomed_offer = if loc.starts_with("https://main.") { "main" } else { "other" };
    s.kill9();
    let cfg = d.path().join("smartlink.yaml");
    let s = Server::start(d.path(), &cfg);
    let list = s.admin("GET", "/api/v1/conversions?limit=1000", None).json();
    let mut ids: Vec<i64> = list["conversions"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, answered, "every 200 is there exactly once");
    assert!(!last_cid.is_empty());
    let r = postback(&s, &format!("click_id={doomed}&token=adv-token"));
    assert_eq!(r.json()["result"], "recorded", "a click lost in the crash still attributes: {}", r.body);
    let c = &s.admin("GET", "/api/v1/conversions?limit=1", None).json()["conversions"][0];
    assert_eq!(
        (c["offer"].as_str(), c["smartlink"].as_str(), c["affiliate"].as_str()),
        (Some(doomed_offer), Some("sl"), Some("aff1"))
    );
}

#[test]
fn the_conversions_command_lists_what_the_api_lists() {
    let (d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/sl?sub1=cli");
    assert_eq!(postback(&s, &format!("click_id={cid}&token=adv-token&status=pending")).status, 200);
    s.stop();
    let out = std::process::Command::new(bin())
        .args(["conversions", "--json", "--status", "pending", "--data-dir"])
        .arg(d.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(
        (v["click_id"].as_str(), v["offer"].as_str(), v["status"].as_str()),
        (Some(cid.as_str()), Some("main"), Some("pending"))
    );
    assert_eq!(v["subs"][0], "cli");
    let bad = std::process::Command::new(bin())
        .args(["conversions", "--status", "won", "--data-dir"])
        .arg(d.path().join("data"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("status"));
}

#[test]
fn the_report_breaks_down_clicks_and_conversions_and_reconciles() {
    let (d, s) = start_with(&pool("", ""), "");
    let mut cids = Vec::new();
    for i in 0..6 {
        cids.push(click(&s, &format!("/s/sl?sub1=r{i}")));
    }
    // Two approved (one in EUR: 1.5 EUR = 3 USD), one pending.
    assert_eq!(postback(&s, &format!("click_id={}&token=adv-token&payout=2", cids[0])).status, 200);
    assert_eq!(postback(&s, &format!("click_id={}&token=adv-token&payout=1.5&currency=EUR", cids[1])).status, 200);
    assert_eq!(postback(&s, &format!("click_id={}&token=adv-token&status=pending", cids[2])).status, 200);
    s.stop(); // flush the click rows
    let s = Server::start(d.path(), &d.path().join("smartlink.yaml"));
    let r = s.admin("GET", "/api/v1/report?from=1d&group_by=offer,device", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let rows = v["rows"].as_array().unwrap();
    let main = rows.iter().find(|r| r["offer"] == "main").expect("a row for offer main");
    assert_eq!(main["device"], "mobile");
    assert_eq!((main["conversions"].as_u64(), main["pending"].as_u64()), (Some(2), Some(1)));
    assert_eq!(main["revenue"], 5.0);
    let clicks: u64 = rows.iter().map(|r| r["clicks"].as_u64().unwrap()).sum();
    assert_eq!(clicks, 6);
    assert_eq!(v["totals"]["clicks"], 6);
    assert_eq!(v["totals"]["revenue"], 5.0);
    assert!((v["totals"]["epc"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-6);
    // Sub-id breakdowns (from raw rows) reconcile with the same totals.
    let by_sub = s.admin("GET", "/api/v1/report?from=1d&group_by=sub1&sort=sub1", None).json();
    let subs: Vec<(String, u64, u64)> = by_sub["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["sub1"].as_str().unwrap().to_string(), r["clicks"].as_u64().unwrap(), r["conversions"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(subs.len(), 6, "{by_sub}");
    assert_eq!(subs[0], ("r0".to_string(), 1, 1));
    assert_eq!(by_sub["totals"], v["totals"]);
    let one = s.admin("GET", "/api/v1/report?from=1d&sub1=r1", None).json();
    assert_eq!((one["totals"]["clicks"].as_u64(), one["totals"]["revenue"].as_f64()), (Some(1), Some(3.0)));
    // Bad requests name what is wrong.
    let r = s.admin("GET", "/api/v1/report?group_by=planet", None);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("group_by"), "{}", r.body);
    assert_eq!(s.admin("GET", "/api/v1/report?from=someday", None).status, 400);
    // The CLI answers the same.
    s.stop();
    let out = std::process::Command::new(bin())
        .args(["report", "--from", "1d", "--group-by", "offer", "--format", "json", "--data-dir"])
        .arg(d.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["totals"]["revenue"], 5.0);
}

#[test]
fn every_postback_outcome_is_counted_with_its_status_and_the_process_reports_itself() {
    let (_d, s) = start_with(&pool("", ""), "");
    let cid = click(&s, "/s/sl");
    assert_eq!(postback(&s, "click_id=garbage&token=adv-token").status, 400);
    for _ in 0..3 {
        assert_eq!(postback(&s, &format!("click_id={cid}&token=wrong")).status, 401);
    }
    assert_eq!(postback(&s, &format!("click_id={cid}&token=adv-token")).status, 200);
    assert_eq!(postback(&s, &format!("click_id={cid}&token=adv-token")).status, 200);
    let m = |labels: &str| s.metric(&format!("smartlink_postbacks_total{{{labels}}}"));
    assert_eq!(m(r#"channel="postback",outcome="refused",status="400",parameter="click_id""#), 1.0);
    assert_eq!(
        m(r#"channel="postback",outcome="refused",status="401",parameter="token""#),
        3.0,
        "every refusal counts, with the parameter at fault"
    );
    assert_eq!(m(r#"channel="postback",outcome="recorded",status="200",parameter="none""#), 1.0);
    assert_eq!(m(r#"channel="postback",outcome="duplicate",status="200",parameter="none""#), 1.0);

    // The build names its version and git revision (what --version prints).
    let out = std::process::Command::new(bin()).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    let revision = version.split(['(', ')']).nth(1).expect("--version names the revision").to_string();
    assert_eq!(
        s.metric(&format!("smartlink_build_info{{version=\"{}\",revision=\"{revision}\"}}", env!("CARGO_PKG_VERSION"))),
        1.0
    );
    assert!(s.metric("process_resident_memory_bytes") > 1e6);
    assert!(s.metric("process_open_fds") > 3.0);
    assert!(s.metric("process_start_time_seconds") > 1.7e9);
    assert_eq!(s.metric(r#"smartlink_outbound_postbacks_total{result="failed"}"#), 0.0);
    assert_eq!(s.metric("smartlink_alerts_raised_total"), 0.0);
    // Analytics queries are timed per kind; store and journal errors are
    // counted apart (none here).
    let q = |kind: &str| s.metric(&format!("smartlink_report_query_seconds_count{{query=\"{kind}\"}}"));
    assert_eq!(q("report"), 0.0);
    assert_eq!(s.admin("GET", "/api/v1/report?group_by=offer", None).status, 200);
    assert_eq!(s.admin("GET", "/api/v1/report?group_by=nonsense", None).status, 400);
    assert_eq!(s.admin("GET", "/api/v1/quality?smartlink=sl", None).status, 200);
    assert_eq!(q("report"), 2.0, "answered and refused queries are both timed");
    assert_eq!(q("quality"), 1.0);
    assert_eq!(q("audit"), 0.0);
    assert_eq!(s.metric(r#"smartlink_report_query_seconds_bucket{query="report",le="+Inf"}"#), 2.0);
    assert_eq!(s.metric(r#"smartlink_api_store_errors_total{kind="timeout"}"#), 0.0);
    assert_eq!(s.metric(r#"smartlink_api_store_errors_total{kind="failed"}"#), 0.0);
    assert_eq!(s.metric("smartlink_click_journal_errors_total"), 0.0);
    assert_eq!(s.metric("smartlink_store_write_errors_total"), 0.0);
}
