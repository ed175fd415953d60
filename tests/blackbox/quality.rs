//! Traffic quality end to end: verdicts on the click path, each action,
//! exclusion from caps and default EPC, and the per-source quality report.

use crate::harness::*;

const CURL: &str = "curl/8.5.0";
const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";

fn testdata(p: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(p).display().to_string()
}

/// Starts the binary with proxy trust, the MaxMind test databases and the
/// given `server.quality` settings.
fn start(quality: &str, yaml: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), yaml);
    let server = format!(
        "server:\n  trust_proxy: true\n  geoip: {}\n  quality:\n    asn_db: {}\n    block_ips: [198.51.100.0/24]\n{quality}",
        testdata("maxmind/GeoIP2-Country-Test.mmdb"),
        testdata("maxmind/GeoLite2-ASN-Test.mmdb"),
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", &server, 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    (dir, s)
}

/// A browser-like request: UA, forwarded IP, and the headers browsers send.
fn visit(s: &Server, path: &str, ua: &str, ip: &str) -> Resp {
    s.get(path, &[("User-Agent", ua), ("X-Forwarded-For", ip), ("Accept", "text/html"), ("Accept-Language", "en-US")])
}

const ACTIONS: &str = r#"
advertisers: [{id: adv, postback_token: t}]
offers:
  - id: o1
    advertiser: adv
    url: "https://o1.example/?cid={click_id}"
    payout: 2.0
    caps: {daily_clicks: 1}
  - id: o2
    advertiser: adv
    url: "https://o2.example/?cid={click_id}"
    payout: 1.0
smartlinks:
  - slug: strict
    offers: [o1, o2]
    strategy: priority
    fallback_url: "https://fallback.example/?c={country}"
    quality: {bot: block, suspect: safe_page, preview: block, safe_page: "https://safe.example/?c={country}"}
  - slug: lenient
    offers: [o1, o2]
    strategy: priority
    fallback_url: "https://fallback.example/"
    quality: {bot: allow, preview: fallback}
"#;

#[test]
fn each_quality_action_is_applied_and_every_click_is_recorded_with_its_verdict() {
    let (d, s) = start("", ACTIONS);
    // 216.160.83.56 is a US consumer address in the test databases.
    let human = "216.160.83.56";
    // An HTTP library is a bot: blocked with a 403.
    assert_eq!(visit(&s, "/s/strict", CURL, human).status, 403);
    // A link-preview fetcher gets a blank 204: nothing to unfurl.
    let r = visit(&s, "/s/strict", SLACK, human);
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    // 1.0.0.1 is in AS15169 (Google) in the ASN test database: a browser
    // from a datacenter is suspect, sent to the safe page.
    let r = visit(&s, "/s/strict", IPHONE, "1.0.0.1");
    assert_eq!((r.status, r.header("location")), (302, Some("https://safe.example/?c=ZZ")));
    // The operator's block list makes any click a bot.
    assert_eq!(visit(&s, "/s/strict", IPHONE, "198.51.100.9").status, 403);
    // A preview on the lenient link goes to the fallback URL.
    assert_eq!(visit(&s, "/s/lenient", SLACK, human).header("location"), Some("https://fallback.example/"));
    // `allow` routes bots as usual, but they never take a unit of a cap:
    // o1 (1 click a day) still has its unit for the first person.
    for _ in 0..3 {
        assert!(visit(&s, "/s/lenient", CURL, human).header("location").unwrap().starts_with("https://o1.example/"));
    }
    assert!(visit(&s, "/s/lenient", IPHONE, human).header("location").unwrap().starts_with("https://o1.example/"));
    assert!(visit(&s, "/s/lenient", IPHONE, "89.160.20.112").header("location").unwrap().starts_with("https://o2."));
    assert_eq!(s.metric("smartlink_clicks_total{outcome=\"blocked\"}"), 3.0);
    assert_eq!(s.metric("smartlink_fallback_clicks_total{reason=\"quality\"}"), 2.0);
    assert_eq!(s.metric("smartlink_click_quality_total{class=\"bot\"}"), 5.0);
    assert_eq!(s.metric("smartlink_click_quality_total{class=\"preview\"}"), 2.0);
    assert_eq!(s.metric("smartlink_click_quality_total{class=\"suspect\"}"), 1.0);
    assert_eq!(s.metric("smartlink_click_quality_total{class=\"human\"}"), 2.0);
    s.stop();
    let rows = stored_clicks(&d.path().join("data/smartlink.db"));
    assert_eq!(rows.len(), 10, "blocked and diverted clicks are recorded too");
    let classes: Vec<(&str, &str)> = rows.iter().map(|r| (r.quality.as_str(), r.quality_reasons.as_str())).collect();
    assert_eq!(classes[0], ("bot", "http_library"));
    assert_eq!(classes[1], ("preview", "preview"));
    assert_eq!(classes[2], ("suspect", "datacenter"));
    assert_eq!(classes[3], ("bot", "blocked_ip"));
    assert_eq!(rows[2].fallback_reason.as_deref(), Some("quality"));
    assert!(rows[0].quality_score >= 80 && rows[2].quality_score < 80, "{rows:?}");
}

#[test]
fn a_burst_from_one_address_turns_suspect_then_bot() {
    // An hour-long window: the burst never straddles a window boundary.
    let quality = "    window_secs: 3600\n    ip_suspect: 3\n    ip_bot: 6\n    ip_ua_suspect: 1000\n";
    let (d, s) = start(quality, ACTIONS);
    let mut seen = Vec::new();
    for i in 0..8 {
        // A different browser version each time: the address alone is what repeats.
        let ua = IPHONE.replace("17_4", &format!("17_{i}"));
        seen.push(visit(&s, &format!("/s/strict?sub1=n{i}"), &ua, "216.160.83.56").status);
    }
    assert_eq!(
        seen,
        vec![302, 302, 302, 302, 302, 403, 403, 403],
        "suspect clicks go to the safe page, bots are blocked"
    );
    s.stop();
    let rows = stored_clicks(&d.path().join("data/smartlink.db"));
    // The click itself counts: the 3rd within the window reaches ip_suspect,
    // the 6th ip_bot. (Rows of one millisecond come back in any order.)
    let count =
        |class: &str, reasons: &str| rows.iter().filter(|r| r.quality == class && r.quality_reasons == reasons).count();
    assert_eq!((count("human", ""), count("suspect", "rate_ip"), count("bot", "rate_ip_flood")), (2, 3, 3), "{rows:?}");
}

#[test]
fn bot_clicks_stay_out_of_report_figures_and_epc_unless_asked_for() {
    let (_d, s) = start("", ACTIONS);
    for _ in 0..4 {
        visit(&s, "/s/lenient", CURL, "216.160.83.56");
    }
    let loc = visit(&s, "/s/lenient", IPHONE, "216.160.83.56").header("location").unwrap().to_string();
    let cid = loc.split("cid=").nth(1).unwrap();
    // Wait past the default 5 s minimum CTIT is not needed: short CTIT only flags.
    let r = s.get(&format!("/postback?click_id={cid}&token=t&payout=2"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    // Click rows (and their rollups) are written in the background.
    s.wait_stored(5);
    let report = s.admin("GET", "/api/v1/report?group_by=quality", None).json();
    assert_eq!(report["totals"]["clicks"], 1, "{report}");
    assert_eq!(report["totals"]["epc"], 2.0);
    assert_eq!(report["excluded"]["clicks"], 4);
    // The same split whichever way the rows are grouped: by few values
    // (one query grouped by quality class too) or by a sub-id or time (a
    // second query for the excluded clicks).
    for g in ["offer", "country", "sub1", "hour"] {
        let r = s.admin("GET", &format!("/api/v1/report?group_by={g}"), None).json();
        assert_eq!(r["totals"]["clicks"], 1, "{g}: {r}");
        assert_eq!(r["excluded"]["clicks"], 4, "{g}: {r}");
        let in_rows: u64 = r["rows"].as_array().unwrap().iter().map(|x| x["clicks"].as_u64().unwrap()).sum();
        assert_eq!(in_rows, 1, "{g}: no bot click in a row: {r}");
    }
    let all = s.admin("GET", "/api/v1/report?group_by=quality&include_bots=true", None).json();
    assert_eq!(all["totals"]["clicks"], 5);
    assert_eq!(all["totals"]["epc"], 0.4);
    let bots = s.admin("GET", "/api/v1/report?quality=bot", None).json();
    assert_eq!(bots["totals"]["clicks"], 4);
    // A reason filter reads the raw rows: the bots here are HTTP libraries.
    let libs = s.admin("GET", "/api/v1/report?reason=http_library&include_bots=true", None).json();
    assert_eq!(libs["totals"]["clicks"], 4, "{libs}");
    assert_eq!(s.admin("GET", "/api/v1/report?reason=crawler&include_bots=true", None).json()["totals"]["clicks"], 0);
    assert_eq!(s.admin("GET", "/api/v1/report?reason=nonsense", None).status, 400);
    // Grouped by reason, a click counts under each reason it carries; the
    // totals are the clicks themselves.
    let by_reason = s.admin("GET", "/api/v1/report?group_by=reason&include_bots=true", None).json();
    let rows = by_reason["rows"].as_array().unwrap();
    let lib = rows.iter().find(|r| r["reason"] == "http_library").unwrap_or_else(|| panic!("{by_reason}"));
    assert_eq!(lib["clicks"], 4, "{by_reason}");
    assert_eq!(by_reason["totals"]["clicks"], 5, "{by_reason}");
    assert_eq!(by_reason["totals"]["revenue"], 2.0, "{by_reason}");
    assert!(rows.iter().map(|r| r["clicks"].as_u64().unwrap()).sum::<u64>() >= 5, "{by_reason}");
    let bad = s.admin("GET", "/api/v1/report?quality=robot", None);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("quality"), "{}", bad.body);
    // The conversion of a bot click is flagged as such.
    let bot_loc = visit(&s, "/s/lenient?sub1=x", CURL, "216.160.83.56").header("location").unwrap().to_string();
    let bot_cid = bot_loc.split("cid=").nth(1).unwrap();
    assert_eq!(s.get(&format!("/postback?click_id={bot_cid}&token=t"), &[]).status, 200);
    let convs = s.admin("GET", "/api/v1/conversions", None).json();
    let flags: Vec<String> =
        convs["conversions"].as_array().unwrap().iter().map(|c| c["quality_flags"].to_string()).collect();
    assert!(flags.iter().any(|f| f.contains("bot_click")), "{flags:?}");
}

const SOURCES: &str = r#"
advertisers: [{id: adv, postback_token: t}]
affiliates: [{id: net}]
offers:
  - id: strict-ctit
    advertiser: adv
    url: "https://a.example/?cid={click_id}"
    payout: 1.0
    min_ctit_secs: 60
  - id: any-ctit
    advertiser: adv
    url: "https://b.example/?cid={click_id}"
    payout: 1.0
    min_ctit_secs: 0
smartlinks:
  - slug: pool
    affiliate: net
    offers: [strict-ctit, any-ctit]
    strategy: priority
    fallback_url: "https://fallback.example/"
    overrides:
      - {countries: [US], offer: strict-ctit}
      - {countries: [SE], offer: any-ctit}
"#;

#[test]
fn a_source_with_many_rejections_and_instant_conversions_is_flagged_and_a_clean_one_is_not() {
    let quality = "    ip_suspect: 0\n    ip_bot: 0\n    ip_ua_suspect: 0\n    duplicate_secs: 0\n";
    let (_d, s) = start(quality, SOURCES);
    // `fraud` (US, offer with a 60 s minimum CTIT) and `clean` (SE, no minimum).
    for (src, ip, rejected) in [("fraud", "216.160.83.56", 10), ("clean", "89.160.20.112", 1)] {
        let mut cids = Vec::new();
        for i in 0..60 {
            let r = visit(&s, &format!("/s/pool?sub1={src}&sub2={i}"), IPHONE, ip);
            cids.push(r.header("location").unwrap().split("cid=").nth(1).unwrap().to_string());
        }
        for (i, cid) in cids.iter().take(15).enumerate() {
            let status = if i < rejected { "rejected" } else { "approved" };
            let r = s.get(&format!("/postback?click_id={cid}&token=t&status={status}"), &[]);
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    s.wait_stored(120);
    let rep = s.admin("GET", "/api/v1/quality?smartlink=pool&period=1d&by=sub1", None);
    assert_eq!(rep.status, 200, "{}", rep.body);
    let rep = rep.json();
    let source = |name: &str| rep["sources"].as_array().unwrap().iter().find(|r| r["sub"] == name).cloned().unwrap();
    let (fraud, clean) = (source("fraud"), source("clean"));
    assert_eq!((fraud["clicks"].as_u64(), fraud["conversions"].as_u64()), (Some(60), Some(15)));
    assert_eq!(fraud["short_ctit"], 15);
    assert_eq!(clean["short_ctit"], 0);
    let signals: Vec<&str> = fraud["flags"].as_array().unwrap().iter().map(|f| f["signal"].as_str().unwrap()).collect();
    assert!(signals.contains(&"rejection_rate") && signals.contains(&"short_ctit_share"), "{fraud}");
    assert_eq!(clean["flagged"], false, "{clean}");
    // The CLI prints the same table.
    s.stop();
    let out = std::process::Command::new(bin())
        .args(["quality", "--smartlink", "pool", "--period", "1d", "--by", "sub1", "--data-dir"])
        .arg(_d.path().join("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().any(|l| l.contains("fraud") && l.contains("rejection_rate")), "{text}");
    assert!(text.lines().any(|l| l.contains("clean") && l.trim_end().ends_with('-')), "{text}");
}
