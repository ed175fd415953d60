//! The click log (`/api/v1/clicks`, `smartlink clicks`), CSV exports and
//! the date forms, through the real server and binary.

use crate::harness::*;

const TWO: &str = r#"
advertisers: [{id: adv, postback_token: adv-secret}]
affiliates:
  - {id: aff1, api_key: key-one}
  - {id: aff2, api_key: key-two}
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?cid={click_id}", payout: 2.0}
smartlinks:
  - {slug: s1, affiliate: aff1, offers: [o1], fallback_url: "https://f.example/?cid={click_id}"}
  - {slug: s2, affiliate: aff2, offers: [o1], fallback_url: "https://f.example/?cid={click_id}"}
"#;

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), TWO));
    (dir, s)
}

/// One click on `slug` with `sub1` (percent-encoded here); its click id.
fn click(s: &Server, slug: &str, sub1: &str) -> String {
    let q: String = form_encode(sub1);
    let r =
        s.get(&format!("/s/{slug}?sub1={q}"), &[("User-Agent", IPHONE), ("Accept", "*/*"), ("Accept-Language", "en")]);
    let loc = r.header("location").unwrap_or_else(|| panic!("no redirect: {} {}", r.status, r.body));
    loc.split("cid=").nth(1).unwrap().split('&').next().unwrap().to_string()
}

fn form_encode(v: &str) -> String {
    v.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn as_key(s: &Server, key: &str, path: &str) -> Resp {
    let auth = format!("Bearer {key}");
    s.request("GET", path, &[("Authorization", &auth)], None)
}

fn csv_records(body: &str) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_reader(body.as_bytes());
    let header = r.headers().unwrap().iter().map(String::from).collect();
    (header, r.records().map(|x| x.unwrap()).collect())
}

#[test]
fn click_log_pages_are_exact_while_new_clicks_arrive() {
    let (_d, s) = start();
    let old: Vec<String> = (0..23).map(|i| format!("old{i:02}")).collect();
    for sub in &old {
        click(&s, "s1", sub);
    }
    s.wait_stored(23);
    let page = |cursor: Option<&str>| {
        let path = match cursor {
            Some(c) => format!("/api/v1/clicks?limit=4&cursor={c}"),
            None => "/api/v1/clicks?limit=4".to_string(),
        };
        let r = s.admin("GET", &path, None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let first = page(None);
    seen.extend(first["clicks"].as_array().unwrap().iter().cloned());
    let mut cursor = first["next_cursor"].as_str().map(String::from);
    // New clicks arrive (and are stored) while the later pages are read.
    std::thread::scope(|t| {
        t.spawn(|| {
            for i in 0..15 {
                click(&s, "s2", &format!("new{i:02}"));
            }
        });
        while let Some(c) = cursor.take() {
            let p = page(Some(&c));
            seen.extend(p["clicks"].as_array().unwrap().iter().cloned());
            cursor = p["next_cursor"].as_str().map(String::from);
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
    });
    // Clicks of one millisecond are ordered by click id, so compare sets.
    let mut subs: Vec<&str> = seen.iter().map(|c| c["sub1"].as_str().unwrap()).collect();
    subs.sort();
    assert_eq!(subs, old, "every click once, none of the new ones in a later page");
    let keys: Vec<(i64, String)> =
        seen.iter().map(|c| (c["time_ms"].as_i64().unwrap(), c["click_id"].as_str().unwrap().into())).collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]));
    s.wait_stored(38);
    let top = page(None);
    assert!(top["clicks"][0]["sub1"].as_str().unwrap().starts_with("new"), "new clicks land before page one");
}

#[test]
fn an_affiliate_key_lists_only_its_own_clicks_and_never_sees_an_ip() {
    let (_d, s) = start();
    let mine = click(&s, "s1", "mine");
    let theirs = click(&s, "s2", "theirs-private");
    s.wait_stored(2);

    let admin = s.admin("GET", "/api/v1/clicks", None).json();
    assert_eq!(admin["clicks"].as_array().unwrap().len(), 2);
    assert_eq!(admin["clicks"][0]["ip"], "127.0.0.1", "the admin sees IPs");

    let r = as_key(&s, "key-one", "/api/v1/clicks?affiliate=aff2");
    assert_eq!(r.status, 200, "{}", r.body);
    let own = r.json();
    let list = own["clicks"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{own}");
    assert_eq!(list[0]["click_id"], mine.as_str());
    assert_eq!(list[0]["affiliate"], "aff1");
    assert!(list[0].get("ip").is_none() && list[0]["user_agent"] == IPHONE, "{}", list[0]);
    assert!(!r.body.contains("127.0.0.1") && !r.body.contains("theirs-private"), "{}", r.body);

    let csv = as_key(&s, "key-one", "/api/v1/clicks?format=csv");
    let (header, recs) = csv_records(&csv.body);
    assert!(!header.iter().any(|h| h == "ip") && recs.len() == 1, "{}", csv.body);
    assert!(!csv.body.contains("127.0.0.1"));

    let one = as_key(&s, "key-one", &format!("/api/v1/clicks/{mine}"));
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(one.json()["click"].get("ip").is_none() && !one.body.contains("127.0.0.1"), "{}", one.body);
    assert_eq!(as_key(&s, "key-one", &format!("/api/v1/clicks/{theirs}")).status, 404);
    assert_eq!(as_key(&s, "key-two", &format!("/api/v1/clicks/{theirs}")).status, 200);
}

#[test]
fn a_click_lookup_shows_its_decision_and_conversions_and_bad_ids_are_told_apart() {
    let (_d, s) = start();
    let id = click(&s, "s1", "look");
    assert_eq!(s.get(&format!("/postback?click_id={id}&token=adv-secret&txid=t1"), &[]).status, 200);
    s.wait_stored(1);
    let r = s.admin("GET", &format!("/api/v1/clicks/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["click"]["click_id"], id.as_str());
    assert_eq!(v["click"]["smartlink"], "s1", "names, not keys");
    assert_eq!(v["click"]["offer"], "o1");
    assert_eq!(v["click"]["ip"], "127.0.0.1");
    assert!(v["decision"]["reason"].is_string() && v["decision"]["propensity"].is_number(), "{v}");
    assert_eq!(v["decision"]["quality"]["class"], "human", "{v}");
    assert!(v["decision"]["quality"]["score"].is_number() && v["decision"]["quality"]["reasons"].is_array());
    assert_eq!(v["conversions"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["conversions"][0]["txid"], "t1");

    // Malformed: 400 naming the click id. Well formed but not one of ours
    // (altered, or signed with another secret): 404.
    let bad = s.admin("GET", "/api/v1/clicks/not-a-click-id", None);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.json()["error"].as_str().unwrap().starts_with("click_id: expected 52"), "{}", bad.body);
    let mut altered = id.clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(s.admin("GET", &format!("/api/v1/clicks/{altered}"), None).status, 404);
    let other = smartlink_core::clickid::ClickIdCodec::new(b"another-secret")
        .encode(&smartlink_core::clickid::ClickIdCodec::new(SECRET.as_bytes()).decode(&id).unwrap());
    assert_eq!(s.admin("GET", &format!("/api/v1/clicks/{other}"), None).status, 404);
    // Signed here but never stored.
    let mut facts = smartlink_core::clickid::ClickIdCodec::new(SECRET.as_bytes()).decode(&id).unwrap();
    facts.nonce = [9; 6];
    assert_eq!(s.admin("GET", &format!("/api/v1/clicks/{}", mint(&facts)), None).status, 404);
}

#[test]
fn every_report_endpoint_answers_csv_that_a_csv_reader_reads_back() {
    let (_d, s) = start();
    let nasty = ["a,b", "say \"hi\"", "two\nlines"];
    for sub in nasty {
        let id = click(&s, "s1", sub);
        assert_eq!(s.get(&format!("/postback?click_id={id}&token=adv-secret"), &[]).status, 200);
    }
    s.wait_stored(3);
    for path in [
        "/api/v1/report?group_by=sub1&format=csv",
        "/api/v1/conversions?format=csv",
        "/api/v1/clicks?format=csv",
        "/api/v1/quality?smartlink=s1&by=sub1&format=csv",
        "/api/v1/coverage?smartlink=s1&format=csv",
    ] {
        let r = s.admin("GET", path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"), "{path}");
        let (header, recs) = csv_records(&r.body);
        assert!(recs.iter().all(|x| x.len() == header.len()), "{path}: {}", r.body);
        for col in ["sub1", "sub"] {
            if let Some(i) = header.iter().position(|h| h == col) {
                let mut got: Vec<&str> = recs.iter().map(|x| &x[i]).filter(|v| *v != "TOTAL").collect();
                got.sort();
                let mut want = nasty.to_vec();
                want.sort();
                assert_eq!(got, want, "{path}");
            }
        }
    }
    for (path, param) in [
        ("/api/v1/report?format=xml", "format"),
        ("/api/v1/clicks?cursor=garbage", "cursor"),
        ("/api/v1/clicks?limit=1001", "limit"),
        ("/api/v1/clicks?limit=ten", "limit"),
        ("/api/v1/clicks?from=last+week", "from"),
        ("/api/v1/clicks?colour=red", "unknown parameter"),
        ("/api/v1/clicks?quality=great", "quality"),
        ("/api/v1/conversions?from=yesterdayish", "from"),
    ] {
        let r = s.admin("GET", path, None);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.json()["error"].as_str().unwrap().starts_with(param), "{path}: {}", r.body);
    }
    // Every date form reaches the API.
    for from in [
        "2020-01-01",
        "2020-01-01T10:00",
        "2020-01-01T10:00:30",
        "2020-01-01T10:00:00%2B01:00",
        "7d",
        "30m",
        "1577836800000",
    ] {
        let r = s.admin("GET", &format!("/api/v1/clicks?from={from}&tz=Europe/Berlin"), None);
        assert_eq!(r.status, 200, "{from}: {}", r.body);
        assert_eq!(r.json()["clicks"].as_array().unwrap().len(), 3, "{from}");
    }
}

#[test]
fn the_cli_takes_every_api_filter_and_pages_the_click_log() {
    let (d, s) = start();
    for sub in ["x", "y", "x"] {
        click(&s, "s1", sub);
    }
    s.wait_stored(3);
    let data = d.path().join("data");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin()).args(args).arg("--data-dir").arg(&data).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (text, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (report, _) = run(&[
        "report",
        "--sub1",
        "x",
        "--browser",
        "safari",
        "--language",
        "en",
        "--group-by",
        "sub1",
        "--format",
        "json",
        "--from",
        "2020-01-01",
    ]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["totals"]["clicks"], 2, "{v}");
    let (page, err) = run(&["clicks", "--sub1", "x", "--limit", "1", "--format", "json", "--from", "1d"]);
    let p1: serde_json::Value = serde_json::from_str(&page).unwrap();
    assert_eq!(p1["clicks"].as_array().unwrap().len(), 1, "{err}");
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let (csv, err) = run(&["clicks", "--sub1", "x", "--limit", "1", "--format", "csv", "--cursor", &cursor]);
    let (header, recs) = csv_records(&csv);
    assert!(header.contains(&"ip".to_string()) && recs.len() == 1, "{csv}");
    assert_ne!(recs[0][0], *p1["clicks"][0]["click_id"].as_str().unwrap());
    assert!(err.contains("last page"), "{err}");
    let (table, _) = run(&["clicks", "--smartlink", "s1"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    let bad = std::process::Command::new(bin())
        .args(["clicks", "--from", "someday", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("from: expected a date"), "{bad:?}");
}
