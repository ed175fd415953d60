//! The browser conversion pixel: a postback by other means, with the same
//! attribution and dedup, trusted by the token alone where allowed.

use crate::harness::*;

const PIXELS: &str = r#"
advertisers:
  - {id: adv, postback_token: adv-token, allow_pixel: true}
  - {id: s2s, postback_token: s2s-token}
  - {id: signed, postback_token: signed-token, postback_secret: sign-me, postback_ips: ["10.0.0.0/8"], allow_pixel: true}
affiliates: [{id: aff1}]
offers:
  - {id: o, advertiser: adv, url: "https://o.example/?cid={click_id}", payout: 2.0}
  - {id: s, advertiser: s2s, url: "https://s.example/?cid={click_id}", payout: 1.0}
  - {id: g, advertiser: signed, url: "https://g.example/?cid={click_id}", payout: 1.0}
smartlinks:
  - {slug: px, affiliate: aff1, offers: [o], fallback_url: "https://f.example/"}
  - {slug: s2s, offers: [s], fallback_url: "https://f.example/"}
  - {slug: sg, offers: [g], fallback_url: "https://f.example/"}
"#;

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), PIXELS));
    (dir, s)
}

fn click(s: &Server, slug: &str) -> String {
    let r = s.get(&format!("/s/{slug}"), &[("User-Agent", IPHONE), ("Accept", "*/*"), ("Accept-Language", "en")]);
    assert_eq!(r.status, 302, "{}", r.body);
    r.header("location").unwrap().split("cid=").nth(1).unwrap().to_string()
}

fn pixel(s: &Server, query: &str) -> Resp {
    s.get(&format!("/pixel?{query}"), &[("User-Agent", IPHONE), ("Referer", "https://shop.example/thanks")])
}

#[test]
fn a_pixel_records_a_conversion_answers_a_transparent_gif_and_dedups_with_postbacks() {
    let (_d, s) = start();
    let cid = click(&s, "px");
    let r = pixel(&s, &format!("click_id={cid}&token=adv-token&txid=T1&payout=2.5&event=sale"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("image/gif"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-smartlink-result"), Some("recorded"));
    assert!(r.body.starts_with("GIF89a"), "{:?}", r.body);

    let again = pixel(&s, &format!("click_id={cid}&token=adv-token&txid=T1&payout=2.5&event=sale"));
    assert_eq!((again.status, again.header("x-smartlink-result")), (200, Some("duplicate")));
    // The same (click, event, txid) by server-to-server postback is the same conversion.
    let pb = s.get(&format!("/postback?click_id={cid}&token=adv-token&txid=T1&event=sale"), &[]).json();
    assert_eq!(pb["result"], "duplicate", "{pb}");

    let list = s.admin("GET", "/api/v1/conversions", None).json();
    let convs = list["conversions"].as_array().unwrap();
    assert_eq!(convs.len(), 1, "{list}");
    assert_eq!((convs[0]["offer"].as_str(), convs[0]["affiliate"].as_str()), (Some("o"), Some("aff1")));
    assert_eq!((convs[0]["payout"].as_f64(), convs[0]["event"].as_str()), (Some(2.5), Some("sale")));
    let id = convs[0]["id"].as_i64().unwrap();
    let c = s.admin("GET", &format!("/api/v1/conversions/{id}"), None).json();
    assert_eq!(c["history"][0]["actor"], "pixel", "{c}");
}

#[test]
fn a_pixel_answered_200_is_already_stored_when_the_server_dies() {
    let (dir, s) = start();
    let cid = click(&s, "px");
    assert_eq!(pixel(&s, &format!("click_id={cid}&token=adv-token")).status, 200);
    let db = s.db();
    s.kill9();
    use smartlink_store::ConversionStore;
    let store = smartlink_store::SqliteStore::open(&db).unwrap();
    let rows = store.conversions(&smartlink_store::ConversionFilter { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(rows.len(), 1, "the conversion survived a kill -9");
    drop(dir);
}

#[test]
fn a_refused_pixel_answers_a_4xx_with_the_reason_in_plain_text() {
    let (_d, s) = start();
    let cid = click(&s, "px");
    let s2s = click(&s, "s2s");
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("click_id={cid}&token=wrong"), 401, "token"),
        (format!("click_id={cid}"), 401, "token"),
        ("token=adv-token".into(), 400, "click_id"),
        (format!("click_id={}A&token=adv-token", &cid[..47]), 400, "click_id"),
        (format!("click_id={cid}&token=adv-token&payout=lots"), 422, "payout"),
        (format!("click_id={cid}&token=adv-token&status=maybe"), 422, "status"),
        // An advertiser that did not allow pixels takes postbacks only.
        (format!("click_id={s2s}&token=s2s-token"), 403, "allow_pixel"),
    ];
    for (q, status, names) in cases {
        let r = pixel(&s, &q);
        assert_eq!(r.status, status, "{q}: {}", r.body);
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{q}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{q}");
        assert!(r.body.contains(names), "{q}: {}", r.body);
        assert!(!r.body.contains("adv-token") && !r.body.contains("s2s-token"), "{q}: {}", r.body);
    }
    assert_eq!(s.admin("GET", "/api/v1/conversions", None).json()["conversions"].as_array().unwrap().len(), 0);
    // The S2S advertiser's postback still works.
    assert_eq!(s.get(&format!("/postback?click_id={s2s}&token=s2s-token"), &[]).status, 200);
}

#[test]
fn a_signed_advertiser_that_allows_pixels_takes_them_by_token_while_postbacks_stay_signed() {
    let (_d, s) = start();
    let cid = click(&s, "sg");
    // From 127.0.0.1, outside postback_ips, unsigned: refused as a postback...
    let pb = s.get(&format!("/postback?click_id={cid}&token=signed-token"), &[]);
    assert_eq!(pb.status, 403, "{}", pb.body);
    // ...accepted as a pixel with the token, refused without it.
    assert_eq!(pixel(&s, &format!("click_id={cid}&token=nope")).status, 401);
    let r = pixel(&s, &format!("click_id={cid}&token=signed-token"));
    assert_eq!((r.status, r.header("x-smartlink-result")), (200, Some("recorded")), "{}", r.body);
}

#[test]
fn the_pixel_script_builds_the_pixel_url_from_its_own_address_and_the_page() {
    let (_d, s) = start();
    let r = s.get("/pixel.js", &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/javascript")), "{:?}", r.headers);
    for needle in ["document.currentScript", "smartlinkPixel", "data-", "/pixel", "click_id", "token", "new Image"] {
        assert!(r.body.contains(needle), "{needle} missing from the script:\n{}", r.body);
    }
}
