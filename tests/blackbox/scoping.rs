//! Affiliate API keys see only their own smartlinks, clicks and conversions.

use crate::harness::*;

fn as_key(s: &Server, key: &str, method: &str, path: &str) -> Resp {
    let auth = format!("Bearer {key}");
    s.request(method, path, &[("Authorization", &auth)], None)
}

#[test]
fn an_affiliate_key_sees_only_its_own_smartlinks_clicks_and_conversions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), TWO));
    let click = |slug: &str, sub: &str| {
        let r = s.get(
            &format!("/s/{slug}?sub1={sub}"),
            &[("User-Agent", IPHONE), ("Accept", "*/*"), ("Accept-Language", "en")],
        );
        r.header("location").unwrap().split("cid=").nth(1).unwrap().to_string()
    };
    let (c1, c2) = (click("s1", "mine"), click("s2", "theirs-private-sub"));
    click("s2", "theirs-2");
    for c in [&c1, &c2] {
        assert_eq!(s.get(&format!("/postback?click_id={c}&token=adv-secret"), &[]).status, 200);
    }
    s.wait_stored(3);

    // Reports are forced to the key's affiliate, whatever filter is asked for.
    let r = as_key(&s, "key-one", "GET", "/api/v1/report?affiliate=aff2&group_by=smartlink").json();
    assert_eq!(r["totals"]["clicks"], 1, "{r}");
    assert_eq!(r["rows"][0]["smartlink"], "s1");
    let all = s.admin("GET", "/api/v1/report", None).json();
    assert_eq!(all["totals"]["clicks"], 3, "the admin sees everything");

    // Conversions: its own, with its own sub-ids; another's is not found.
    let body = as_key(&s, "key-one", "GET", "/api/v1/conversions").body;
    let convs: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(convs["conversions"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(convs["conversions"][0]["subs"][0], "mine");
    assert!(!body.contains("theirs-private-sub") && !body.contains("adv-secret"), "{body}");
    let theirs = s.admin("GET", "/api/v1/conversions?affiliate=aff2", None).json()["conversions"][0]["id"].clone();
    assert_eq!(as_key(&s, "key-one", "GET", &format!("/api/v1/conversions/{theirs}")).status, 404);
    assert_eq!(as_key(&s, "key-two", "GET", &format!("/api/v1/conversions/{theirs}")).status, 200);

    // Smartlinks: only its own.
    let sls = as_key(&s, "key-one", "GET", "/api/v1/smartlinks").json();
    assert_eq!(sls.as_array().unwrap().len(), 1);
    assert_eq!(sls[0]["slug"], "s1");
    assert_eq!(as_key(&s, "key-one", "GET", "/api/v1/smartlinks/s2").status, 404);

    // Everything else is refused; an unknown key is not a key.
    for (m, p) in [
        ("GET", "/api/v1/advertisers"),
        ("GET", "/api/v1/affiliates"),
        ("GET", "/api/v1/offers"),
        ("GET", "/api/v1/history"),
        ("GET", "/api/v1/postbacks/outbound"),
        ("PATCH", "/api/v1/smartlinks/s1"),
        ("DELETE", "/api/v1/smartlinks/s1"),
    ] {
        assert_eq!(as_key(&s, "key-one", m, p).status, 403, "{m} {p}");
    }
    assert_eq!(as_key(&s, "key-three", "GET", "/api/v1/report").status, 401);
    // The admin sees that keys are set, never the keys.
    let affs = s.admin("GET", "/api/v1/affiliates", None).body;
    assert!(affs.contains("\"api_key_set\":true") && !affs.contains("key-one"), "{affs}");
}

/// The permission bits of `p`.
#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn the_data_directory_is_private_and_stores_api_keys_only_as_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &write_config(dir.path(), TWO));
    assert_eq!(as_key(&s, "key-one", "GET", "/api/v1/report").status, 200, "the key still works");
    assert_eq!(as_key(&s, "key-on", "GET", "/api/v1/report").status, 401);
    // A key changed through the API is stored hashed too, and works.
    assert_eq!(s.admin("PATCH", "/api/v1/affiliates/aff2", Some(r#"{"api_key": "rotated-key-77"}"#)).status, 200);
    assert_eq!(as_key(&s, "rotated-key-77", "GET", "/api/v1/report").status, 200);
    assert_eq!(as_key(&s, "key-two", "GET", "/api/v1/report").status, 401);
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data directory");
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        let p = entry.path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    let db = s.db();
    s.stop();
    let mut raw = Vec::new();
    for suffix in ["", "-wal"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        raw.extend(std::fs::read(&p).unwrap_or_default());
    }
    for key in ["key-one", "key-two", "rotated-key-77"] {
        assert!(!raw.windows(key.len()).any(|w| w == key.as_bytes()), "{key} is stored in plain text");
    }
}
