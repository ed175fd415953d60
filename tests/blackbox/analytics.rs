//! The columnar analytics store through the real server and binary: reports
//! served from it equal the CLI's (which reads SQLite beside a running
//! server), a deleted store is rebuilt, retention refuses what it deleted.

use crate::harness::*;

const WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

const POOL: &str = r#"
advertisers: [{id: adv, postback_token: adv-token}]
affiliates: [{id: aff1}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?cid={click_id}", payout: 2.5}
  - {id: o2, advertiser: adv, url: "https://o2.example/?cid={click_id}", payout: 1.0}
smartlinks:
  - {slug: s1, affiliate: aff1, offers: [o1, o2], fallback_url: "https://f.example/?cid={click_id}"}
"#;

fn start(server_extra: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), POOL);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", &format!("server:\n{server_extra}"), 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);
    (dir, s)
}

/// 30 clicks over three zones and two devices; every third click that went
/// to an offer (the quality layer sends a burst from one address to the
/// fallback) converts, all in zone0. Returns the conversions.
fn traffic(s: &Server) -> u64 {
    let mut conversions = 0;
    for i in 0..30 {
        let ua = if i % 2 == 0 { IPHONE } else { WINDOWS };
        let r = s.get(&format!("/s/s1?sub1=zone{}&sub2=c{}", i % 3, i % 2), &[("User-Agent", ua)]);
        assert_eq!(r.status, 302, "{}", r.body);
        let loc = r.header("location").unwrap();
        let cid = loc.split("cid=").nth(1).unwrap().to_string();
        if i % 3 == 0 && !loc.starts_with("https://f.example") {
            let p = s.get(&format!("/postback?click_id={cid}&token=adv-token&txid=t{i}"), &[]);
            assert_eq!(p.status, 200, "{}", p.body);
            conversions += 1;
        }
    }
    s.wait_stored(30);
    assert!(conversions > 0, "some clicks went to offers");
    conversions
}

fn cli(data: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(bin()).args(args).arg("--data-dir").arg(data).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const BREAKDOWNS: [&str; 4] = ["sub1,offer", "os,browser", "country,device,os,browser", "weekday,hour_of_day,sub2"];

#[test]
fn reports_from_the_columnar_store_equal_the_clis_beside_the_running_server() {
    let (d, s) = start("");
    let conversions = traffic(&s);
    let data = d.path().join("data");
    assert!(data.join("analytics.duckdb").is_file());
    for group in BREAKDOWNS {
        let api = s.admin("GET", &format!("/api/v1/report?from=1d&group_by={group}&include_bots=true"), None);
        assert_eq!(api.status, 200, "{}", api.body);
        let api = api.json();
        assert_eq!(api["totals"]["clicks"], 30, "{group}: {api}");
        assert_eq!(api["totals"]["conversions"], conversions, "{group}: {api}");
        let cli = cli(&data, &["report", "--from", "1d", "--group-by", group, "--include-bots", "--format", "json"]);
        assert_eq!(api["rows"], cli["rows"], "{group}");
        assert_eq!(api["totals"], cli["totals"], "{group}");
    }
    let top =
        s.admin("GET", "/api/v1/report?from=1d&group_by=sub1&sort=-revenue&limit=1&include_bots=true", None).json();
    assert_eq!(top["rows"].as_array().unwrap().len(), 1, "{top}");
    assert_eq!(top["rows"][0]["sub1"], "zone0", "every conversion is in zone0: {top}");
    s.wait_metric("smartlink_analytics_loaded_rows_total", 1.0);
}

#[test]
fn a_deleted_analytics_store_is_rebuilt_with_the_same_reports() {
    let (d, s) = start("");
    traffic(&s);
    let before: Vec<_> = BREAKDOWNS
        .iter()
        .map(|g| s.admin("GET", &format!("/api/v1/report?from=1d&group_by={g}"), None).json())
        .collect();
    s.stop();
    let data = d.path().join("data");
    for f in ["analytics.duckdb", "analytics.duckdb.wal"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let s = Server::start(d.path(), &d.path().join("smartlink.yaml"));
    for (g, want) in BREAKDOWNS.iter().zip(&before) {
        let got = s.admin("GET", &format!("/api/v1/report?from=1d&group_by={g}"), None).json();
        for part in ["rows", "totals", "excluded"] {
            assert_eq!(got[part], want[part], "{g} {part}");
        }
    }
}

#[test]
fn a_sub_id_report_before_the_retention_horizon_is_a_400_saying_from_when() {
    let (_d, s) = start("  raw_retention_days: 1\n");
    traffic(&s);
    // Retention runs in the background loader at start-up and hourly (on a
    // busy machine its idle-class thread may run late): the horizon is a
    // day ago once it has run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let r = loop {
        let r = s.admin("GET", "/api/v1/report?from=30d&group_by=sub1", None);
        if r.status != 200 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("1 days") && r.body.contains("raw_retention_days"), "{}", r.body);
    let ok = s.admin("GET", "/api/v1/report?from=12h&group_by=sub1&include_bots=true", None);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["totals"]["clicks"], 30);
    let by_offer = s.admin("GET", "/api/v1/report?from=30d&group_by=offer&include_bots=true", None).json();
    assert_eq!(by_offer["totals"]["clicks"], 30, "rollups answer the older part: {by_offer}");
}
