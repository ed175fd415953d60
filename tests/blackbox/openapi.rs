//! The OpenAPI document against the running binary: it is served without
//! a token, every operation it lists is a route the server has, an
//! unknown API path is a JSON 404, and the docs page loads nothing from
//! anywhere. (That every route is in the document is checked in
//! `smartlink_server::app`'s tests: routes are only added with theirs.)

use crate::harness::*;

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "advertisers: [{id: adv}]\noffers:\n  - {id: o1, advertiser: adv, url: \"https://o.example/?c={click_id}\", payout: 1}\n\
         smartlinks:\n  - {slug: s, offers: [o1], fallback_url: \"https://f.example/\"}\n",
    );
    let s = Server::start(dir.path(), &cfg);
    (dir, s)
}

#[test]
fn the_openapi_document_is_served_without_a_token_and_is_openapi_3_1() {
    let (_dir, s) = server();
    let r = s.get("/api/v1/openapi.json", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap_or("").starts_with("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/api/v1/offers/{id}", "/api/v1/smartlinks/{slug}", "/api/v1/report", "/postback", "/healthz"] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not in the document");
    }
    for scheme in ["admin_token", "affiliate_key", "postback_token"] {
        assert!(doc["components"]["securitySchemes"].get(scheme).is_some(), "no security scheme {scheme}");
    }
}

#[test]
fn every_operation_in_the_document_is_a_route_of_the_server() {
    let (_dir, s) = server();
    let doc = s.get("/api/v1/openapi.json", &[]).json();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 30, "only {} paths", paths.len());
    for (path, item) in paths {
        // Path parameters get values no document has: the handler answers
        // (404, 400 ...), never the router's "no such route".
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "no-such-thing-1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let r = s.admin(&method.to_uppercase(), &concrete, Some("{}"));
            assert_ne!(r.status, 405, "{method} {path}: the router has no such method");
            let router_404 = r.status == 404 && (r.body.is_empty() || r.body.contains("no API route"));
            assert!(!router_404, "{method} {path}: the router has no such route");
            assert!(r.status < 500, "{method} {path}: {} {}", r.status, r.body);
        }
    }
}

#[test]
fn an_unknown_api_path_is_a_json_404_that_points_to_the_docs() {
    let (_dir, s) = server();
    let r = s.admin("GET", "/api/v1/widgets", None);
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("/api/docs"), "{}", r.body);
    // The collections keep their URLs.
    assert_eq!(s.admin("GET", "/api/v1/offers/o1", None).status, 200);
    assert_eq!(s.admin("GET", "/api/v1/smartlinks/s", None).status, 200);
}

#[test]
fn the_docs_page_is_self_contained_and_lists_every_path() {
    let (_dir, s) = server();
    let r = s.get("/api/docs", &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    assert!(r.header("content-security-policy").unwrap_or("").contains("default-src 'none'"));
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!r.body.contains(external), "the docs page contains {external:?}");
    }
    let doc = s.get("/api/v1/openapi.json", &[]).json();
    for path in doc["paths"].as_object().unwrap().keys() {
        let shown = path.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        assert!(r.body.contains(&format!("<code>{shown}</code>")), "{path} is not on the docs page");
    }
}
