//! Start-up, configuration files, import and export.

use crate::harness::*;

const ONE: &str = r#"
advertisers: [{id: adv}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?c={click_id}", payout: 1.5}
smartlinks:
  - {slug: s, offers: [o1], fallback_url: "https://f.example/"}
"#;

#[test]
fn a_config_error_stops_start_up_naming_file_path_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &ONE.replace("payout: 1.5", "payout: 1.5, targeting: {countries: [US, UK]}"));
    let err = Server::try_start(dir.path(), &cfg).err().expect("must not start");
    assert!(err.contains("smartlink.yaml"), "{err}");
    assert!(err.contains("offers[0].targeting.countries[1]"), "{err}");
    assert!(err.contains("ISO 3166-1"), "{err}");

    let cfg = write_config(dir.path(), &format!("{ONE}\nsurprise: 1\n"));
    let err = Server::try_start(dir.path(), &cfg).err().expect("must not start");
    assert!(err.contains("surprise"), "{err}");
}

#[test]
fn a_broken_geoip_database_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let broken = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/maxmind/MaxMind-DB-test-broken-search-tree-24.mmdb");
    let cfg = write_config(dir.path(), ONE);
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "server:\n",
        &format!("server:\n  geoip: {}\n", broken.display()),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let err = Server::try_start(dir.path(), &cfg).err().expect("must not start");
    assert!(err.contains("MaxMind-DB-test-broken-search-tree-24.mmdb") && err.contains("corrupt"), "{err}");
}

/// A copy of the config file `cfg` with `line` added to its `server:`
/// section, next to it.
fn with_server_line(cfg: &std::path::Path, line: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(cfg).unwrap().replacen("server:\n", &format!("server:\n  {line}\n"), 1);
    let name: String = line.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let copy = cfg.with_file_name(format!("{name}.yaml"));
    std::fs::write(&copy, text).unwrap();
    copy
}

#[test]
fn a_rate_counter_capacity_out_of_range_is_a_start_up_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ONE);
    let with =
        |capacity: &str| with_server_line(&cfg, &format!("quality: {{capacity_ips: {capacity}, window_secs: 1}}"));
    let s = Server::start(dir.path(), &cfg);
    let default = s.metric("smartlink_quality_rate_capacity");
    assert!((1_000_000.0..1_000_003.0).contains(&default), "default capacity {default}");
    s.stop();
    let err = Server::try_start(dir.path(), &with("5")).err().expect("must not start");
    assert!(err.contains("server.quality.capacity_ips") && err.contains("1000 to 100000000"), "{err}");
    let s = Server::start(dir.path(), &with("2000000"));
    assert_eq!(s.get("/s/s", &[]).status, 302, "a valid capacity serves clicks");
    // The capacity and each window's clicks are published for alerting.
    let capacity = s.metric("smartlink_quality_rate_capacity");
    assert!((2_000_000.0..2_000_003.0).contains(&capacity), "{capacity}");
    s.wait_metric("smartlink_quality_rate_window_clicks", 1.0);
}

#[test]
fn restart_with_an_unchanged_file_keeps_api_changes_but_a_changed_file_applies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ONE);
    let s = Server::start(dir.path(), &cfg);
    assert_eq!(s.admin("PATCH", "/api/v1/offers/o1", Some(r#"{"payout": 9}"#)).status, 200);
    let s = s.restart();
    assert_eq!(
        s.admin("GET", "/api/v1/offers/o1", None).json()["payout"],
        9.0,
        "unchanged file must not undo the API change"
    );
    s.stop();
    write_config(dir.path(), &ONE.replace("payout: 1.5", "payout: 2.5"));
    let s = Server::start(dir.path(), &cfg);
    assert_eq!(s.admin("GET", "/api/v1/offers/o1", None).json()["payout"], 2.5, "a changed file is applied");
}

#[test]
fn export_then_import_round_trips_the_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ONE);
    let data = dir.path().join("data");
    let out = std::process::Command::new(bin()).arg("import").arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let export = std::process::Command::new(bin()).args(["export", "--data-dir"]).arg(&data).output().unwrap();
    assert!(export.status.success());
    let yaml = String::from_utf8(export.stdout).unwrap();
    assert!(yaml.contains("o1") && yaml.contains("https://o1.example/?c={click_id}"), "{yaml}");
    // Import the export into a fresh directory: the same definitions result.
    let other = tempfile::tempdir().unwrap();
    let file = other.path().join("export.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let out = std::process::Command::new(bin())
        .arg("import")
        .arg(&file)
        .arg("--data-dir")
        .arg(other.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = std::process::Command::new(bin()).args(["export", "--data-dir"]).arg(other.path()).output().unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), yaml);
}

#[test]
fn import_reports_errors_with_the_file_name_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &ONE.replace("offers: [o1]", "offers: [o9]"));
    let out = std::process::Command::new(bin()).arg("import").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("smartlink.yaml") && err.contains("smartlinks[0].offers[0]: unknown offer \"o9\""), "{err}");
}

/// Each `examples/*.yaml` with the definitions it holds (advertisers,
/// affiliates, offers, smartlinks and sources): a new example goes here.
const EXAMPLES: [(&str, usize); 4] =
    [("demo.yaml", 17), ("media-buyer.yaml", 8), ("network.yaml", 18), ("two-node.yaml", 6)];

#[test]
fn every_example_configuration_imports_cleanly_with_all_its_definitions() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = EXAMPLES.iter().map(|(name, _)| name.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "every example is in EXAMPLES");
    for (name, definitions) in EXAMPLES {
        let dir = tempfile::tempdir().unwrap();
        let file = examples.join(name);
        let out = std::process::Command::new(bin())
            .arg("import")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(said.contains(&format!("({definitions} definitions stored)")), "{name}: {said}");
    }
}

#[test]
fn every_definition_change_is_in_the_history_with_who_when_and_old_to_new_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &ONE.replace("{id: adv}", "{id: adv, postback_token: first-secret}"));
    let s = Server::start(dir.path(), &cfg);
    assert_eq!(s.admin("PATCH", "/api/v1/offers/o1", Some(r#"{"payout": 0.75, "status": "paused"}"#)).status, 200);
    assert_eq!(s.admin("PATCH", "/api/v1/advertisers/adv", Some(r#"{"postback_token": "second-secret"}"#)).status, 200);
    let h = s.admin("GET", "/api/v1/history?kind=offer&id=o1", None);
    assert_eq!(h.status, 200, "{}", h.body);
    let changes = h.json()["changes"].as_array().unwrap().clone();
    assert_eq!(changes.len(), 2, "{changes:?}");
    let (update, create) = (&changes[0], &changes[1]);
    assert_eq!((update["action"].as_str(), update["actor"].as_str()), (Some("update"), Some("api")));
    assert_eq!(
        update["fields"],
        serde_json::json!([{"field": "payout", "old": 1.5, "new": 0.75}, {"field": "status", "old": "active", "new": "paused"}])
    );
    assert_eq!(create["action"], "create");
    assert!(create["actor"].as_str().unwrap().starts_with("file:"), "{create}");
    let all = s.admin("GET", "/api/v1/history", None).body;
    assert!(!all.contains("first-secret") && !all.contains("second-secret") && all.contains("<redacted>"), "{all}");
    assert_eq!(s.get("/api/v1/history", &[]).status, 401);
    s.stop();
    let out = std::process::Command::new(bin())
        .args(["history", "--kind", "offer", "--id", "o1", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().contains("update offer o1 by api  payout: 1.5 → 0.75"), "{text}");
}

/// `se.slice` (ns) of each of the server's threads named `name`: `None`
/// for a thread where the kernel does not show it (before EEVDF's custom
/// slices, Linux 6.12).
fn slices_of(pid: u32, name: &str) -> Vec<Option<u64>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim() == name)
        .map(|t| {
            let sched = std::fs::read_to_string(t.path().join("sched")).ok()?;
            let line = sched.lines().find(|l| l.trim_start().starts_with("se.slice"))?;
            line.split(':').nth(1)?.trim().parse().ok()
        })
        .collect()
}

/// Asserts the server has request threads and each shown slice is `ns`.
/// A worker asks for its slice as it starts, which on a loaded machine can
/// come a moment after the thread is visible: read until every worker shows
/// it, for up to 10 s.
fn assert_request_slices(s: &Server, ns: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let slices = slices_of(s.child.id(), "tokio-rt-worker");
        if !slices.is_empty() && slices.iter().flatten().all(|&shown| shown == ns) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no request threads found, or not {ns} ns: {slices:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn request_threads_ask_for_the_configured_time_slice_and_a_bad_one_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ONE);
    let with = |slice: &str| with_server_line(&cfg, &format!("request_slice_us: {slice}"));
    let err = Server::try_start(dir.path(), &with("50")).err().expect("must not start");
    assert!(err.contains("server.request_slice_us: 50") && err.contains("100 to 100000"), "{err}");

    let s = Server::start(dir.path(), &cfg);
    assert_eq!(s.get("/s/s", &[]).status, 302);
    assert_request_slices(&s, 100_000);
    s.stop();
    let s = Server::start(dir.path(), &with("400"));
    assert_request_slices(&s, 400_000);
}

const OTHER: &str = r#"
advertisers: [{id: adv}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?c={click_id}", payout: 1.5}
  - {id: foreign, advertiser: adv, url: "https://foreign.example/", payout: 9}
smartlinks:
  - {slug: s, offers: [o1, foreign], fallback_url: "https://f.example/"}
"#;

fn offer_ids(s: &Server) -> Vec<String> {
    let offers = s.admin("GET", "/api/v1/offers", None).json();
    offers.as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_refused_second_server_writes_nothing_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ONE);
    let s = Server::start(dir.path(), &cfg);
    let other_dir = tempfile::tempdir().unwrap();
    let other = write_config(other_dir.path(), OTHER);
    // The same data directory, another definitions file.
    let text = std::fs::read_to_string(&other)
        .unwrap()
        .replace(&other_dir.path().join("data").display().to_string(), &dir.path().join("data").display().to_string());
    std::fs::write(&other, text).unwrap();
    let err = match Server::try_start(other_dir.path(), &other) {
        Ok(_) => panic!("a second server started on the same data directory"),
        Err(e) => e,
    };
    assert!(err.contains("another smartlink process is using this data directory"), "{err}");
    // A change on the first server reloads the stored definitions: the
    // refused server's offer must not be among them.
    assert_eq!(s.admin("PATCH", "/api/v1/offers/o1", Some(r#"{"payout": 2}"#)).status, 200);
    assert_eq!(offer_ids(&s), vec!["o1".to_string()]);
    let history = s.admin("GET", "/api/v1/history?kind=offer&id=foreign", None).json();
    assert_eq!(history["changes"].as_array().map(Vec::len), Some(0), "{history}");
}

#[test]
fn import_into_the_data_directory_of_a_running_server_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), ONE);
    let s = Server::start(dir.path(), &cfg);
    let file = dir.path().join("other.yaml");
    std::fs::write(&file, OTHER).unwrap();
    let out = import(&file, Some(&dir.path().join("data")));
    assert!(!out.status.success(), "import into a running server's data directory exited 0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a running smartlink server owns this data directory"), "{err}");
    assert!(err.contains("/api/v1"), "the message says how to change a running server: {err}");
    assert_eq!(s.admin("PATCH", "/api/v1/offers/o1", Some(r#"{"payout": 2}"#)).status, 200);
    assert_eq!(offer_ids(&s), vec!["o1".to_string()]);
    drop(s);
    // With the server stopped, the same import works.
    let out = import(&file, Some(&dir.path().join("data")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `smartlink import FILE [--data-dir DIR]`.
fn import(file: &std::path::Path, data_dir: Option<&std::path::Path>) -> std::process::Output {
    let mut c = std::process::Command::new(bin());
    c.arg("import").arg(file);
    if let Some(d) = data_dir {
        c.arg("--data-dir").arg(d);
    }
    c.output().unwrap()
}

/// Runs `smartlink import` on `yaml` (with the test's `server:` section)
/// and returns its exit code and stderr.
fn import_exit(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = import(&write_config(dir.path(), yaml), None);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_bad_setting_exits_2_naming_its_key_at_import_and_at_start_up() {
    for (line, key) in [
        ("outbound_retry_base_secs: .nan", "server.outbound_retry_base_secs"),
        ("queue_capacity: 1000000000000", "server.queue_capacity"),
        ("quality: {ip_bot: 10000000}", "server.quality.ip_bot"),
        ("alerts: {webhook_url: 'not a url'}", "server.alerts.webhook_url"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write_config(dir.path(), ONE);
        let text = std::fs::read_to_string(&cfg).unwrap().replacen("server:\n", &format!("server:\n  {line}\n"), 1);
        std::fs::write(&cfg, &text).unwrap();
        let out = import(&cfg, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {err}");
        assert!(err.contains(key), "{line}: {err}");
        let err = Server::try_start(dir.path(), &cfg).err().expect("must not start");
        assert!(err.contains(key), "{line}: {err}");
    }
    let (code, err) = import_exit(&ONE.replace("payout: 1.5}", "payuot: 1.5}"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("offers[0]") && err.contains("payuot"), "{err}");
}

#[test]
fn affiliate_api_keys_must_differ_from_each_other_and_from_the_admin_token() {
    let with_keys = |a: &str, b: &str| {
        ONE.replace(
            "advertisers: [{id: adv}]",
            &format!("advertisers: [{{id: adv}}]\naffiliates: [{{id: a1, api_key: {a}}}, {{id: a2, api_key: {b}}}]"),
        )
    };
    let (code, err) = import_exit(&with_keys("same-key-123", "same-key-123"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("affiliates[1].api_key") && err.contains("affiliates[0]"), "{err}");
    // The admin token as an affiliate key: refused at start-up and through the API.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &with_keys(ADMIN, "other-key-456"));
    let err = Server::try_start(dir.path(), &cfg).err().expect("must not start");
    assert!(err.contains("affiliates[0].api_key") && err.contains("admin token"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), &with_keys("key-one-111", "key-two-222")));
    let r = s.admin("PATCH", "/api/v1/affiliates/a1", Some(&format!(r#"{{"api_key": "{ADMIN}"}}"#)));
    assert_eq!(r.status, 422, "{}", r.body);
    let r = s.admin("PATCH", "/api/v1/affiliates/a1", Some(r#"{"api_key": "key-two-222"}"#));
    assert_eq!(r.status, 409, "a key another affiliate has: {}", r.body);
    assert!(r.body.contains("the same key as"), "{}", r.body);
}

#[test]
fn a_read_only_command_refuses_a_missing_store_and_finds_one_through_smartlink_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere/x");
    let out = std::process::Command::new(bin()).args(["report", "--data-dir"]).arg(&missing).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no smartlink store in") && err.contains("SMARTLINK_DATA_DIR"), "{err}");
    assert!(!missing.exists(), "nothing is created");
    // A store made by a server is found through the environment.
    let cfg = write_config(dir.path(), "");
    Server::start(dir.path(), &cfg).stop();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let report = |env: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(bin());
        c.args(["report", "--format", "json"]).current_dir(&elsewhere).env_remove("SMARTLINK_DATA_DIR");
        if let Some(e) = env {
            c.env("SMARTLINK_DATA_DIR", e);
        }
        c.output().unwrap()
    };
    assert_eq!(report(None).status.code(), Some(1), "./data of another directory is no store");
    let out = report(Some(&dir.path().join("data")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!elsewhere.join("data").exists());
}

#[test]
fn the_binary_prints_its_version_with_the_revision_completions_for_each_shell_and_a_man_page() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let version = run(&["--version"]);
    assert!(version.starts_with(&format!("smartlink {} (", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(version.trim_end().ends_with(')'), "{version}");
    for (shell, marker) in [
        ("bash", "_smartlink()"),
        ("zsh", "#compdef smartlink"),
        ("fish", "complete -c smartlink"),
        ("elvish", "smartlink"),
        ("powershell", "smartlink"),
    ] {
        let script = run(&["completions", shell]);
        assert!(script.contains(marker) && script.contains("costs"), "{shell}: {script:.200}");
    }
    let man = run(&["man"]);
    assert!(man.contains(".TH smartlink 1") && man.contains("completions"), "{man:.300}");
    let bad = std::process::Command::new(bin()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");
}
