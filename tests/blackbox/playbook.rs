//! The media buyer's playbook end to end: a smartlink and direct links on
//! the same offers, traffic sources with their own parameters and costs,
//! postbacks, a cost import, and the report and audit that compare them.

use crate::harness::*;

fn config(recorder: &str) -> String {
    format!(
        r#"  trust_proxy: true
base_currency: USD
currencies: {{EUR: 2.0}}
advertisers: [{{id: adv, postback_token: tok}}]
affiliates: [{{id: aff1}}]
sources:
  - id: pop
    params: {{sub1: zoneid, sub3: clickid, cost: price}}
    currency: EUR
    postback_url: "http://{recorder}/pb?cid={{sub3}}&p={{payout}}"
  - id: push
    cost: {{model: cpc, amount: 0.05}}
offers:
  - {{id: o1, advertiser: adv, url: "https://o1.example/?c={{click_id}}", payout: 3.0}}
  - {{id: o2, advertiser: adv, url: "https://o2.example/?c={{click_id}}", payout: 1.0, status: paused,
      fallback_smartlink: sl}}
smartlinks:
  - {{slug: sl, offers: [o1, o2], strategy: priority, fallback_url: "https://fb.example/", source: push}}
"#
    )
}

/// A click from a US iPhone; returns the answer.
fn click(s: &Server, path: &str) -> Resp {
    s.get(path, &[("User-Agent", IPHONE), ("CF-IPCountry", "US"), ("Accept", "*/*"), ("Accept-Language", "en")])
}

fn click_id(r: &Resp) -> String {
    assert_eq!(r.status, 302, "{}", r.body);
    r.header("location").unwrap().split("c=").nth(1).unwrap().to_string()
}

fn cents(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 100.0).round() as i64
}

/// Report rows keyed by their first group column.
fn rows_by(report: &serde_json::Value, key: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[key].as_str().unwrap_or("(none)").to_string(), r.clone()))
        .collect()
}

#[test]
fn a_smartlink_and_direct_links_report_cost_profit_and_roi_to_the_cent_and_the_audit_compares_them() {
    let recorder = Recorder::start(vec![200]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &config(&recorder.addr));
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("  trust_proxy: true\n", "", 1);
    let text = text.replacen("server:\n", "server:\n  trust_proxy: true\n", 1);
    std::fs::write(&cfg, text).unwrap();
    let s = Server::start(dir.path(), &cfg);

    // The source `pop` names its own parameters and bills in EUR (2 USD).
    let pop: Vec<String> =
        (0..4).map(|i| click_id(&click(&s, &format!("/s/sl?src=pop&zoneid=z1&clickid=P{i}&price=0.01")))).collect();
    // No `src`: the smartlink's default source `push`, CPC 0.05.
    for _ in 0..2 {
        click_id(&click(&s, "/s/sl?sub1=z2"));
    }
    // The direct link to o1: no routing, the cost as sent.
    let direct: Vec<String> = (0..3)
        .map(|_| {
            let r = click(&s, "/o/o1?aff=aff1&cost=0.03&sub1=z9");
            assert!(r.header("location").unwrap().starts_with("https://o1.example/"), "{:?}", r.header("location"));
            click_id(&r)
        })
        .collect();
    // o2 is paused: its direct link hands the visitor to the smartlink,
    // with the affiliate and sub-ids (the cost stays with the direct click).
    let r = click(&s, "/o/o2?aff=aff1&sub1=z5&cost=0.04");
    assert_eq!((r.status, r.header("location")), (302, Some("/s/sl?aff=aff1&sub1=z5")));
    // A bot on the direct link: paid for, kept out of the figures.
    let bot = s.get("/o/o1?cost=0.5", &[("User-Agent", "curl/8.5.0"), ("CF-IPCountry", "US")]);
    assert_ne!(bot.status, 302, "a bot is not sent to the advertiser");
    // Bad input is refused, naming it; unknown offers are 404.
    let bad = click(&s, "/o/o1?cost=-1");
    assert!(bad.status == 400 && bad.body.contains("cost"), "{} {}", bad.status, bad.body);
    assert_eq!(click(&s, "/o/nope").status, 404);
    s.wait_stored(11);

    // Conversions: one from `pop` (its postback goes back to the source
    // with the source's own click id), one on the direct link.
    for cid in [&pop[0], &direct[0]] {
        let r = s.get(&format!("/postback?click_id={cid}&token=tok"), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let seen = recorder.wait_for(1, 10);
    assert!(seen.iter().any(|t| t.starts_with("/pb?cid=P0&p=3")), "{seen:?}");

    // `push` bills 0.30 for its clicks afterwards: it replaces their CPC.
    let r = s.admin(
        "POST",
        "/api/v1/costs",
        Some(r#"{"source": "push", "from": "0", "to": "now", "amount": 0.15, "currency": "EUR"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.json()["clicks"].as_u64(), cents(&r.json()["amount"])), (Some(2), 30));
    assert_eq!(cents(&r.json()["replaced"]), 10);
    let bad = s.admin("POST", "/api/v1/costs", Some(r#"{"link": "nope", "from": "0", "to": "now", "amount": 1}"#));
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("link"), "{}", bad.body);
    assert_eq!(s.admin("GET", "/api/v1/costs", None).json()["imports"].as_array().unwrap().len(), 1);

    // Per link: sl 6 clicks (pop 4 × 0.02, push 0.30), revenue 3;
    // direct:o1 3 × 0.03, revenue 3; direct:o2 one fallback click at 0.04.
    let report = s.admin("GET", "/api/v1/report?group_by=smartlink&from=1h", None).json();
    let links = rows_by(&report, "smartlink");
    let want = [("sl", 6, 300, 38), ("direct:o1", 3, 300, 9), ("direct:o2", 1, 0, 4)];
    for (link, clicks, revenue, cost) in want {
        let r = &links[link];
        assert_eq!(r["clicks"].as_u64(), Some(clicks), "{link}: {r}");
        assert_eq!((cents(&r["revenue"]), cents(&r["cost"])), (revenue, cost), "{link}: {r}");
        assert_eq!(cents(&r["profit"]), revenue - cost, "{link}");
        let roi = (revenue - cost) as f64 / cost as f64;
        assert!((r["roi"].as_f64().unwrap() - roi).abs() < 1e-6, "{link}: {r}");
        assert_eq!(cents(&r["cpc"]), ((cost as f64 / clicks as f64).round()) as i64, "{link}");
    }
    assert_eq!(links["direct:o2"]["fallback_clicks"], 1);
    assert!(links["direct:o2"]["cpa"].is_null(), "no conversion, no CPA");
    assert_eq!(cents(&links["sl"]["cpa"]), 38);
    let t = &report["totals"];
    assert_eq!((t["clicks"].as_u64(), cents(&t["revenue"]), cents(&t["cost"])), (Some(10), 600, 51));
    assert_eq!(cents(&t["profit"]), 549);
    assert_eq!(cents(&report["excluded"]["cost"]), 50, "the bot's cost stays visible: {}", report["excluded"]);

    // The same money by traffic source (read from raw rows) reconciles.
    let by_source = s.admin("GET", "/api/v1/report?group_by=source&from=1h", None).json();
    let src = rows_by(&by_source, "source");
    assert_eq!((src["pop"]["clicks"].as_u64(), cents(&src["pop"]["cost"])), (Some(4), 8));
    assert_eq!((src["push"]["clicks"].as_u64(), cents(&src["push"]["cost"])), (Some(2), 30));
    assert_eq!((src["(none)"]["clicks"].as_u64(), cents(&src["(none)"]["cost"])), (Some(4), 13));
    assert_eq!(cents(&by_source["totals"]["cost"]), 51);
    let quality = s.admin("GET", "/api/v1/quality?smartlink=sl&period=1h&by=source", None).json();
    let per_source: std::collections::BTreeMap<String, u64> = quality["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["source"].as_str().unwrap_or("(none)").to_string(), r["clicks"].as_u64().unwrap()))
        .collect();
    assert_eq!(per_source, [("pop".to_string(), 4), ("push".to_string(), 2)].into(), "{quality}");
    let pop_only = s.admin("GET", "/api/v1/report?source=pop&group_by=sub1&from=1h", None).json();
    assert_eq!(rows_by(&pop_only, "sub1")["z1"]["clicks"], 4, "the source's zoneid is sub1");

    // The audit puts the direct link beside the smartlink in US/mobile.
    let audit = s.admin("GET", "/api/v1/audit?smartlink=sl&period=1h", None).json();
    let seg = audit["thin_segments"]
        .as_array()
        .unwrap()
        .iter()
        .chain(audit["segments"].as_array().unwrap())
        .find(|x| x["segment"]["country"] == "US" && x["segment"]["device"] == "mobile")
        .unwrap_or_else(|| panic!("no US/mobile segment: {audit}"))
        .clone();
    let d = &seg["direct_links"][0];
    assert_eq!((d["link"].as_str(), d["clicks"].as_u64()), (Some("direct:o1"), Some(3)), "{seg}");
    assert_eq!(cents(&d["epc"]), 100);
    assert_eq!(cents(&d["vs_smartlink_epc_per_1000"]), 50_000, "1.00 vs 0.50 per click: {d}");
    assert_eq!(cents(&d["profit_per_click"]), 97);
    assert_eq!(cents(&seg["smartlink_profit_per_click"]), ((300.0_f64 - 38.0) / 6.0).round() as i64);
    assert_eq!(d["better"], "unclear", "three clicks prove nothing: {d}");
    // A direct link can be audited on its own too.
    let own = s.admin("GET", "/api/v1/audit?smartlink=direct:o1&period=1h", None);
    assert_eq!(own.status, 200, "{}", own.body);
    // ...and explained: its EPC over the last hour against the hour before.
    let why = s.admin("GET", "/api/v1/explain?smartlink=direct:o1&from=1h", None);
    assert_eq!(why.status, 200, "{}", why.body);
    assert_eq!(why.json()["current"]["clicks"], 3, "{}", why.body);
}

#[test]
fn a_traffic_source_is_a_definition_the_api_validates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "advertisers: [{id: adv}]\noffers: [{id: o1, advertiser: adv, url: \"https://o1.example/\", payout: 1}]\n",
    );
    let s = Server::start(dir.path(), &cfg);
    let ok = s.admin(
        "POST",
        "/api/v1/sources",
        Some(r#"{"id": "pop", "params": {"sub1": "zoneid"}, "cost": {"model": "cpm", "amount": 1.5}}"#),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let cases = [
        (r#"{"id": "x", "params": {"sub9": "z"}}"#, "params.sub9"),
        (r#"{"id": "x", "params": {"sub1": "a b"}}"#, "params.sub1"),
        (r#"{"id": "x", "params": {"sub1": "aff"}}"#, "params"),
        (r#"{"id": "x", "cost": {"model": "cpc", "amount": -1}}"#, "cost.amount"),
        (r#"{"id": "x", "currency": "GBP"}"#, "currency"),
        (r#"{"id": "x", "postback_url": "ftp://x"}"#, "postback_url"),
    ];
    for (body, path) in cases {
        let r = s.admin("POST", "/api/v1/sources", Some(body));
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(r.body.contains(path), "{body}: {}", r.body);
    }
    // CPM: 1.5 per 1,000 clicks, on clicks that name the source.
    s.admin(
        "POST",
        "/api/v1/smartlinks",
        Some(r#"{"slug": "sl", "offers": ["o1"], "fallback_url": "https://fb.example/"}"#),
    );
    for _ in 0..4 {
        assert_eq!(s.get("/s/sl?src=pop&zoneid=z", &[("User-Agent", IPHONE)]).status, 302);
    }
    s.wait_stored(4);
    let r = s.admin("GET", "/api/v1/report?group_by=source,sub1&from=1h", None).json();
    assert_eq!(r["rows"][0]["source"], "pop");
    assert_eq!(r["rows"][0]["sub1"], "z");
    assert!((r["totals"]["cost"].as_f64().unwrap() - 0.006).abs() < 1e-9, "{}", r["totals"]);
}

#[test]
fn the_cli_imports_a_cost_csv_with_dates_and_each_zone_reconciles_to_the_cent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        r#"currencies: {EUR: 2.0}
advertisers: [{id: adv}]
sources: [{id: pop, params: {sub1: zoneid}}]
offers: [{id: o1, advertiser: adv, url: "https://o1.example/", payout: 1}]
smartlinks: [{slug: sl, offers: [o1], fallback_url: "https://fb.example/", source: pop}]
"#,
    );
    let s = Server::start(dir.path(), &cfg);
    for zone in ["z1", "z1", "z1", "z2", "z2"] {
        assert_eq!(s.get(&format!("/s/sl?zoneid={zone}"), &[("User-Agent", IPHONE)]).status, 302);
    }
    s.wait_stored(5);
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin()).args(args).arg("--data-dir").arg(&data).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let csv = dir.path().join("bills.csv");
    std::fs::write(
        &csv,
        "source,from,to,amount,currency,sub1\npop,2020-01-01,2100-01-01T00:00,1.50,,z1\npop,2020-01-01,2100-01-01,0.75,EUR,z2\n",
    )
    .unwrap();
    let (ok, out, err) = run(&["costs", "import", csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let report = s.admin("GET", "/api/v1/report?group_by=sub1&from=1h", None).json();
    let zones = rows_by(&report, "sub1");
    assert_eq!((zones["z1"]["clicks"].as_u64(), cents(&zones["z1"]["cost"])), (Some(3), 150));
    assert_eq!((zones["z2"]["clicks"].as_u64(), cents(&zones["z2"]["cost"])), (Some(2), 150), "0.75 EUR at 2.0");
    assert_eq!(cents(&report["totals"]["cost"]), 300);

    // A bad line is refused naming its line and field; the ones before it stay.
    std::fs::write(&csv, "source,from,to,amount\npop,2020-01-01,2100-01-01,1\nnope,2020-01-01,2100-01-01,1\n").unwrap();
    let (ok, _, err) = run(&["costs", "import", csv.to_str().unwrap()]);
    assert!(!ok && err.contains("line 3") && err.contains("source"), "{err}");
    let (ok, out, _) = run(&["costs", "list"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn a_cpa_source_costs_each_approved_conversion_and_a_reversal_takes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        r#"advertisers: [{id: adv, postback_token: tok}]
sources: [{id: net, cost: {model: cpa, amount: 1.25}}]
offers: [{id: o1, advertiser: adv, url: "https://o1.example/?c={click_id}", payout: 3}]
smartlinks: [{slug: sl, offers: [o1], fallback_url: "https://fb.example/", source: net}]
"#,
    );
    let s = Server::start(dir.path(), &cfg);
    let ids: Vec<String> = (0..3).map(|i| click_id(&click(&s, &format!("/s/sl?sub1=c{i}")))).collect();
    s.wait_stored(3);
    let cost = || cents(&s.admin("GET", "/api/v1/report?from=1h", None).json()["totals"]["cost"]);
    assert_eq!(cost(), 0, "CPA clicks cost nothing");
    for cid in &ids[..2] {
        assert_eq!(s.get(&format!("/postback?click_id={cid}&token=tok"), &[]).status, 200);
    }
    // A pending conversion costs nothing until approved.
    assert_eq!(s.get(&format!("/postback?click_id={}&token=tok&status=pending", ids[2]), &[]).status, 200);
    assert_eq!(cost(), 250);
    assert_eq!(s.get(&format!("/postback?click_id={}&token=tok&status=approved", ids[2]), &[]).status, 200);
    assert_eq!(cost(), 375);
    // A chargeback takes its cost back, as it takes back its revenue.
    assert_eq!(s.get(&format!("/postback?click_id={}&token=tok&status=chargeback", ids[0]), &[]).status, 200);
    let t = s.admin("GET", "/api/v1/report?from=1h", None).json()["totals"].clone();
    assert_eq!((cents(&t["cost"]), cents(&t["revenue"]), t["conversions"].as_u64()), (250, 600, Some(2)), "{t}");
    assert_eq!(cents(&t["cpa"]), 125);
}
