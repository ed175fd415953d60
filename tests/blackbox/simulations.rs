//! The simulator through the admin API: a bundled scenario gives the
//! numbers and the report of `smartlink simulate`; a bad scenario is a 422
//! naming its field; affiliates are refused; a change made with the
//! dashboard's session cookie needs its CSRF token.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::*;

/// A run takes seconds in a debug build on a busy machine.
const RUN_SECS: u64 = 240;

fn scenario_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios").join(format!("{name}.yaml"))
}

/// `smartlink simulate` on a public scenario with these extra arguments:
/// its JSON object, and the HTML report it writes.
fn cli(name: &str, args: &[&str]) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("simulate")
        .arg("--scenario")
        .arg(scenario_file(name))
        .args(["--json", "--report"])
        .arg(dir.path())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = serde_json::from_slice(&out.stdout).unwrap();
    (json, std::fs::read_to_string(dir.path().join("index.html")).unwrap())
}

fn run(s: &Server, body: &serde_json::Value) -> Resp {
    let auth = format!("Bearer {ADMIN}");
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    s.request_within(RUN_SECS, "POST", "/api/v1/simulations", &h, Some(&body.to_string()))
}

#[test]
fn a_bundled_scenario_gives_the_numbers_and_the_report_of_smartlink_simulate() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), TWO));

    // The bundled scenarios are the files of examples/scenarios, as written.
    let list = s.admin("GET", "/api/v1/scenarios", None).json();
    let names: Vec<&str> = list["scenarios"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["basic", "drift", "daypart", "slow-postbacks"]);
    for x in list["scenarios"].as_array().unwrap() {
        let file = std::fs::read_to_string(scenario_file(x["name"].as_str().unwrap())).unwrap();
        assert_eq!(x["text"], file.as_str());
    }
    assert_eq!(list["scenarios"][0]["duration_hours"], 48);
    assert_eq!(list["scenarios"][0]["expected_clicks"], 96_000);
    assert_eq!(list["limits"]["max_expected_clicks"], 2_000_000);

    // The file's seed and every strategy.
    let r = run(&s, &serde_json::json!({ "example": "basic" }));
    assert_eq!(r.status, 201, "{}", r.body);
    let got = r.json();
    let (want, want_html) = cli("basic", &[]);
    for key in ["scenario", "seed", "clicks", "results"] {
        assert_eq!(got[key], want[key], "{key}");
    }
    let strategies: Vec<&str> =
        got["results"].as_array().unwrap().iter().map(|x| x["strategy"].as_str().unwrap()).collect();
    assert_eq!(strategies, ["oracle", "smartlink", "random", "round_robin", "greedy_epc"]);
    assert_eq!(got["example"], "basic");
    let id = got["id"].as_str().unwrap();
    assert_eq!(r.header("location"), Some(format!("/api/v1/simulations/{id}").as_str()));
    assert_eq!(got["report"], format!("/api/v1/simulations/{id}.html"));

    // Another seed and two strategies, sent as text.
    let text = std::fs::read_to_string(scenario_file("basic")).unwrap();
    let body = serde_json::json!({ "scenario": text, "seed": 3, "strategies": ["smartlink", "greedy_epc"] });
    let r2 = run(&s, &body);
    assert_eq!(r2.status, 201, "{}", r2.body);
    let (want2, _) = cli("basic", &["--seed", "3", "--strategies", "smartlink,greedy_epc"]);
    assert_eq!(r2.json()["results"], want2["results"]);
    assert_eq!(r2.json()["seed"], 3);
    assert_eq!(r2.json()["example"], serde_json::Value::Null);
    assert_ne!(r2.json()["results"], got["results"]);

    // The run again, and its report: the page the CLI writes, under a
    // policy that lets its inline styles show and nothing else.
    assert_eq!(s.admin("GET", &format!("/api/v1/simulations/{id}"), None).json(), got);
    assert_eq!(s.admin("GET", &format!("/api/v1/simulations/{id}.json"), None).json(), got);
    let page = s.admin("GET", &format!("/api/v1/simulations/{id}.html"), None);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.body, want_html);
    let csp = page.header("content-security-policy").unwrap();
    for part in ["default-src 'none'", "style-src 'unsafe-inline'", "frame-ancestors 'self'", "sandbox"] {
        assert!(csp.split("; ").any(|p| p == part), "{part} missing: {csp}");
    }
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(s.admin("GET", &format!("/api/v1/simulations/{id}.pdf"), None).status, 400);
    let gone = s.admin("GET", "/api/v1/simulations/0123456789abcdef.html", None);
    assert_eq!(gone.status, 404);
    assert!(gone.json()["error"].as_str().unwrap().contains("no simulation"), "{}", gone.body);

    // Both runs are listed, newest first.
    let runs = s.admin("GET", "/api/v1/simulations", None).json();
    let ids: Vec<&str> = runs["simulations"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [r2.json()["id"].as_str().unwrap(), id]);
}

#[test]
fn a_bad_scenario_is_refused_with_a_4xx_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), TWO));
    let good = std::fs::read_to_string(scenario_file("basic")).unwrap();
    let bad_payout = good.replacen("\"payout\": ", "\"payout\": -", 1);
    let huge = good.replacen("\"clicks_per_hour\": 2000", "\"clicks_per_hour\": 2000000", 1);
    assert_ne!(huge, good);
    let cases = [
        (serde_json::json!({ "scenario": bad_payout }), "scenario.offers[0].payout", "expected a number >= 0"),
        (serde_json::json!({ "scenario": "offers: [" }), "scenario", "not a scenario file"),
        (serde_json::json!({ "scenario": "name: x\nduration_hours: 0" }), "scenario", "missing field"),
        (serde_json::json!({ "scenario": huge }), "scenario.traffic.clicks_per_hour", "at most 2000000"),
        (serde_json::json!({ "example": "nope" }), "example", "no bundled scenario \"nope\""),
        (serde_json::json!({ "example": "basic", "strategies": ["best"] }), "strategies[0]", "unknown strategy"),
        (serde_json::json!({}), "scenario", "expected either"),
    ];
    for (body, path, says) in cases {
        let r = run(&s, &body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        let j = r.json();
        assert_eq!(j["fields"][0]["path"], path, "{body}: {}", r.body);
        let error = j["error"].as_str().unwrap();
        assert!(error.contains(path) && error.contains(says), "{body}: {error:?} does not say {path} and {says:?}");
    }
    let not_json = s.admin("POST", "/api/v1/simulations", Some("scenario: basic"));
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    assert!(not_json.json()["error"].as_str().unwrap().contains("not JSON"));
    // Nothing ran.
    assert_eq!(s.admin("GET", "/api/v1/simulations", None).json()["simulations"], serde_json::json!([]));
}

#[test]
fn an_affiliate_can_neither_run_nor_read_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), TWO));
    let r = run(&s, &serde_json::json!({ "example": "basic", "strategies": [] }));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let auth = "Bearer key-one";
    let h = [("Authorization", auth), ("Content-Type", "application/json")];
    let body = serde_json::json!({ "example": "basic" }).to_string();
    assert_eq!(s.request("POST", "/api/v1/simulations", &h, Some(&body)).status, 403);
    for path in [
        "/api/v1/scenarios".to_string(),
        "/api/v1/simulations".to_string(),
        format!("/api/v1/simulations/{id}"),
        format!("/api/v1/simulations/{id}.html"),
    ] {
        let r = s.request("GET", &path, &h, None);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(!r.body.contains("oracle"), "{path} shows nothing of the run");
    }
    // Signed in to the dashboard with the key: the same.
    let sign_in = serde_json::json!({ "token": "key-one" }).to_string();
    let si = s.request("POST", "/ui/session", &[("Content-Type", "application/json")], Some(&sign_in));
    let cookie = si.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let csrf = si.json()["csrf_token"].as_str().unwrap().to_string();
    let h = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str()), ("Content-Type", "application/json")];
    assert_eq!(s.request("POST", "/api/v1/simulations", &h, Some(&body)).status, 403);
    assert_eq!(s.request("GET", &format!("/api/v1/simulations/{id}.html"), &h, None).status, 403);
}

#[test]
fn a_run_from_the_dashboard_session_needs_its_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), TWO));
    let sign_in = serde_json::json!({ "token": ADMIN }).to_string();
    let si = s.request("POST", "/ui/session", &[("Content-Type", "application/json")], Some(&sign_in));
    let cookie = si.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let csrf = si.json()["csrf_token"].as_str().unwrap().to_string();
    let body = serde_json::json!({ "example": "basic", "strategies": ["random"] }).to_string();
    let without = [("Cookie", cookie.as_str()), ("Content-Type", "application/json")];
    let r = s.request("POST", "/api/v1/simulations", &without, Some(&body));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("X-CSRF-Token"), "{}", r.body);
    let wrong = [("Cookie", cookie.as_str()), ("Content-Type", "application/json"), ("X-CSRF-Token", "nope")];
    assert_eq!(s.request("POST", "/api/v1/simulations", &wrong, Some(&body)).status, 403);
    let from_elsewhere = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", csrf.as_str()),
        ("Origin", "https://evil.example"),
    ];
    assert_eq!(s.request("POST", "/api/v1/simulations", &from_elsewhere, Some(&body)).status, 403);
    assert_eq!(s.admin("GET", "/api/v1/simulations", None).json()["simulations"], serde_json::json!([]));

    let with = [("Cookie", cookie.as_str()), ("Content-Type", "application/json"), ("X-CSRF-Token", csrf.as_str())];
    let r = s.request_within(RUN_SECS, "POST", "/api/v1/simulations", &with, Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
    // The report opens with the cookie alone (the dashboard frames it).
    let page = s.request("GET", r.json()["report"].as_str().unwrap(), &[("Cookie", cookie.as_str())], None);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<table>") && page.body.contains("random"),
        "{}",
        &page.body[..200.min(page.body.len())]
    );
}
