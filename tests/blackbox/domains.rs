//! Custom tracking domains: links bound to hosts, unknown hosts, default
//! links, and TLS with a certificate per name (SNI), reloaded without a
//! restart.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::harness::*;

pub(crate) const LINKS: &str = r#"
advertisers: [{id: adv}]
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?c={click_id}", payout: 1}
  - {id: o2, advertiser: adv, url: "https://o2.example/?c={click_id}", payout: 1}
smartlinks:
  - {slug: a, offers: [o1], fallback_url: "https://f.example/"}
  - {slug: b, offers: [o2], fallback_url: "https://f.example/"}
"#;

fn start(dir: &Path, yaml: &str) -> Server {
    Server::start(dir, &write_config(dir, &format!("{LINKS}{yaml}")))
}

fn location(r: &Resp) -> &str {
    r.header("location").unwrap_or_else(|| panic!("no redirect: {} {}", r.status, r.body))
}

#[test]
fn a_link_bound_to_a_domain_answers_on_that_host_and_404s_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        "domains:\n  - {host: one.example, links: [a]}\n  - {host: Two.Example, links: [b, direct:o1]}\n",
    );
    // The fast path: host matched without case, port or trailing dot.
    for host in ["one.example", "ONE.example:8080", "one.example."] {
        assert!(location(&s.get_on(host, "/s/a?sub1=x")).starts_with("https://o1.example/"), "{host}");
    }
    let other = s.get_on("two.example", "/s/a");
    assert_eq!(other.status, 404, "{}", other.body);
    assert!(other.body.contains("This link does not exist"), "{}", other.body);
    assert!(location(&s.get_on("two.example", "/s/b")).starts_with("https://o2.example/"));
    assert!(location(&s.get_on("two.example", "/o/o1")).starts_with("https://o1.example/"));
    assert_eq!(s.get_on("one.example", "/o/o1").status, 404, "a direct link not listed");

    // hyper's side (an absolute-form target: its authority is the host).
    let r = s.get_on("two.example", "http://one.example/s/a");
    assert!(location(&r).starts_with("https://o1.example/"), "{}", r.status);
    assert_eq!(s.get_on("one.example", "http://two.example/s/a").status, 404);

    // Postbacks, the API, metrics and health answer on every host.
    assert_eq!(s.get_on("elsewhere.example", "/healthz").status, 200);
    assert_eq!(s.get_on("elsewhere.example", "/metrics").status, 200);
    let mut c = TcpStream::connect(&s.addr).unwrap();
    let api = exchange(
        &mut c,
        "elsewhere.example",
        "GET",
        "/api/v1/offers",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        None,
    );
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(s.metric("smartlink_clicks_total{outcome=\"unknown_slug\"}"), 3.0);
}

#[test]
fn an_unknown_host_gets_a_clear_404_and_a_domain_s_root_gets_its_default_link() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "domains:\n  - {host: one.example, links: [a], default_link: b}\n");
    for path in ["/s/a", "/", "/anything"] {
        let r = s.get_on("unknown.example", path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body.contains("This domain is not configured on this server"), "{path}: {}", r.body);
    }
    assert_eq!(s.metric("smartlink_clicks_total{outcome=\"unknown_host\"}"), 3.0);
    // `/` and unknown paths are clicks on the default link, query kept.
    assert!(location(&s.get_on("one.example", "/?sub1=root")).starts_with("https://o2.example/"));
    assert!(location(&s.get_on("one.example", "/promo/summer")).starts_with("https://o2.example/"));
    assert_eq!(s.get_on("one.example", "/s/b").status, 404, "the default link is not listed");
    // The API's paths stay the API's: its JSON 404, not a click on the default link.
    let r = s.get_on("one.example", "/api/v1/nothing");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no API route"), "{}", r.body);
    s.wait_stored(2);
    let rows = stored_clicks(&s.db());
    // Both clicks may fall in one millisecond, where their stored order is
    // the click ids' (random): compare as a set.
    let mut subs: Vec<&str> = rows.iter().map(|r| r.subs[0].as_str()).collect();
    subs.sort_unstable();
    assert_eq!(subs, ["", "root"]);

    // A "*" entry takes every other host.
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        "domains:\n  - {host: one.example, links: [a]}\n  - {host: \"*\", links: [b], default_link: a}\n",
    );
    assert!(location(&s.get_on("any.example", "/")).starts_with("https://o1.example/"));
    assert!(location(&s.get_on("any.example", "/s/b")).starts_with("https://o2.example/"));
    assert_eq!(s.get_on("one.example", "/s/b").status, 404);
    let root = s.get_on("one.example", "/");
    assert_eq!(root.status, 200, "one.example has no default link: its root is the dashboard");
    assert!(root.body.contains("/ui/app.js"), "{}", root.body);
    assert_eq!(s.get_on("one.example", "/anything").status, 404);
}

#[test]
fn without_domains_every_host_is_served_every_link_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), "");
    for host in ["one.example", "whatever.example", "203.0.113.9:8080"] {
        assert!(location(&s.get_on(host, "/s/a")).starts_with("https://o1.example/"));
    }
    let r = s.get_on("one.example", "/anything");
    assert_eq!((r.status, r.body.as_str()), (404, ""), "a bare 404, as before");
    let root = s.get_on("one.example", "/");
    assert_eq!(root.status, 200, "without domains the root is the dashboard");
    assert!(root.header("content-type").unwrap().starts_with("text/html"));
}

/// Starts a server that must not start, returning what it said.
fn refused(dir: &Path, yaml: &str) -> String {
    let cfg = write_config(dir, &format!("{LINKS}{yaml}"));
    Server::try_start(dir, &cfg).err().expect("must not start")
}

#[test]
fn domain_configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        dir.path(),
        "domains:\n  - {host: one.example, links: all}\n  - {host: ONE.example, links: [a]}\n  - {host: \"b c\", links: all}\n",
    );
    assert!(err.contains("domains[1].host: duplicate host \"one.example\""), "{err}");
    assert!(err.contains("domains[2].host: expected a hostname"), "{err}");

    let err = refused(dir.path(), "domains:\n  - {host: one.example, links: [a, nope], default_link: direct:gone}\n");
    assert!(err.contains("domains[0].links[1]: unknown smartlink \"nope\""), "{err}");
    assert!(err.contains("domains[0].default_link: unknown offer \"gone\""), "{err}");

    let missing = dir.path().join("missing.pem");
    let err = refused(
        dir.path(),
        &format!(
            "domains:\n  - host: one.example\n    links: all\n    tls: {{cert: {m}, key: {m}}}\n",
            m = missing.display()
        ),
    );
    assert!(err.contains("domains[0].tls: is served only on a TLS listener: set server.tls_listen"), "{err}");

    let cfg = write_config(
        dir.path(),
        &format!(
            "{LINKS}domains:\n  - host: one.example\n    links: all\n    tls: {{cert: {m}, key: {m}}}\n",
            m = missing.display()
        ),
    );
    let err = Server::try_start(dir.path(), &with_tls_listen(&cfg, 0)).err().expect("must not start");
    assert!(err.contains("domains[0].tls.cert: cannot read a PEM certificate chain from"), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
}

/// The config file with `server.tls_listen` on 127.0.0.1:0 and
/// `server.tls_poll_secs` set.
pub(crate) fn with_tls_listen(cfg: &Path, poll_secs: u32) -> PathBuf {
    let text = std::fs::read_to_string(cfg).unwrap().replacen(
        "server:\n",
        &format!("server:\n  tls_listen: 127.0.0.1:0\n  tls_poll_secs: {poll_secs}\n"),
        1,
    );
    std::fs::write(cfg, text).unwrap();
    cfg.to_path_buf()
}

/// A fresh self-signed certificate for `name`, written as `{stem}.crt`
/// and `{stem}.key` in `dir`; returns the certificate's DER.
pub(crate) fn make_cert(dir: &Path, stem: &str, name: &str) -> Vec<u8> {
    let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    // Written whole and renamed in, as certbot and most tools do.
    for (ext, text) in [("crt", c.cert.pem()), ("key", c.signing_key.serialize_pem())] {
        let tmp = dir.join(format!(".{stem}.{ext}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{stem}.{ext}"))).unwrap();
    }
    c.cert.der().to_vec()
}

pub(crate) fn tls_entry(dir: &Path, host: &str, stem: &str, links: &str) -> String {
    format!(
        "  - host: \"{host}\"\n    links: {links}\n    tls: {{cert: {d}/{stem}.crt, key: {d}/{stem}.key}}\n",
        d = dir.display()
    )
}

/// Accepts any certificate: the tests compare the one served with the one
/// expected instead.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to `addr` sending `name` as SNI, handshake done; or
/// the handshake's error.
pub(crate) fn tls_connect(
    addr: &str,
    name: &str,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(name.to_string()).unwrap())
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

/// The leaf certificate served to a client sending `name`.
fn served(addr: &str, name: &str) -> Result<Vec<u8>, String> {
    let tls = tls_connect(addr, name)?;
    Ok(tls.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default())
}

/// Waits (up to 10 s) until `name` is served `want`.
fn wait_served(addr: &str, name: &str, want: &[u8]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while served(addr, name).as_deref() != Ok(want) {
        assert!(std::time::Instant::now() < deadline, "{name} was never served the new certificate");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_tls_connection_gets_the_certificate_of_the_name_it_sends_and_its_clicks_take_the_fast_path() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let one = make_cert(&certs, "one", "one.example");
    let two = make_cert(&certs, "two", "two.example");
    let any = make_cert(&certs, "any", "fallback.example");
    let yaml = format!(
        "{LINKS}domains:\n{}{}{}",
        tls_entry(&certs, "one.example", "one", "[a]"),
        tls_entry(&certs, "two.example", "two", "[b]"),
        tls_entry(&certs, "*", "any", "[]"),
    );
    let cfg = with_tls_listen(&write_config(dir.path(), &yaml), 10);
    let s = Server::start(dir.path(), &cfg);
    let tls = s.tls_addr.clone().expect("a TLS listener");
    assert_eq!(served(&tls, "one.example").unwrap(), one);
    assert_eq!(served(&tls, "TWO.example").unwrap(), two);
    assert_eq!(served(&tls, "other.example").unwrap(), any, "a name with no entry gets the \"*\" entry's");

    let handoffs = s.metric("smartlink_http_handoffs_total");
    let mut c = tls_connect(&tls, "one.example").unwrap();
    let r = exchange(&mut c, "one.example", "GET", "/s/a?sub1=tls", BROWSER, None);
    assert!(location(&r).starts_with("https://o1.example/"), "{} {}", r.status, r.body);
    // Each read of /metrics is itself handed over: one more than before.
    assert_eq!(s.metric("smartlink_http_handoffs_total"), handoffs + 1.0, "the click took the fast path");
    let mut c = tls_connect(&tls, "two.example").unwrap();
    assert_eq!(exchange(&mut c, "two.example", "GET", "/s/a", &[], None).status, 404);
    // Everything else is served over TLS by the full stack.
    let mut c = tls_connect(&tls, "two.example").unwrap();
    let r = exchange(&mut c, "two.example", "GET", "/healthz", &[], None);
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    assert_eq!(s.metric("smartlink_http_handoffs_total"), handoffs + 3.0, "two reads of /metrics and /healthz");
    assert!(s.metric("smartlink_tls_handshakes_total") >= 6.0);
    s.wait_stored(1);
    assert_eq!(stored_clicks(&s.db())[0].subs[0], "tls");
}

#[test]
fn a_renewed_certificate_is_served_after_sighup_or_once_its_files_change_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let first = make_cert(&certs, "one", "one.example");
    let entry = tls_entry(&certs, "one.example", "one", "[a]");
    // No polling: only SIGHUP reloads.
    let cfg = with_tls_listen(&write_config(dir.path(), &format!("{LINKS}domains:\n{entry}")), 0);
    let s = Server::start(dir.path(), &cfg);
    let tls = s.tls_addr.clone().unwrap();
    assert_eq!(served(&tls, "one.example").unwrap(), first);
    assert!(served(&tls, "unknown.example").is_err(), "no \"*\" entry: no certificate for other names");

    let second = make_cert(&certs, "one", "one.example");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served(&tls, "one.example").unwrap(), first, "nothing reloads without SIGHUP");
    // SIGHUP re-reads domains: too: a new host is served from then on.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("  - {host: three.example, links: [b]}\n");
    std::fs::write(&cfg, text).unwrap();
    assert_eq!(s.get_on("three.example", "/s/b").status, 404);
    let hup = || {
        std::process::Command::new("kill").args(["-HUP", &s.child.id().to_string()]).status().unwrap();
    };
    hup();
    wait_served(&tls, "one.example", &second);
    assert!(location(&s.get_on("three.example", "/s/b")).starts_with("https://o2.example/"));
    assert_eq!(s.metric("smartlink_tls_reloads_total"), 1.0);

    // A broken renewal is refused: the certificate in use stays.
    std::fs::write(certs.join("one.key"), "not a key").unwrap();
    hup();
    s.wait_metric("smartlink_tls_reload_errors_total", 1.0);
    assert_eq!(served(&tls, "one.example").unwrap(), second);
    s.stop();

    // With polling, a changed file is picked up by itself.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let first = make_cert(&certs, "one", "one.example");
    let entry = tls_entry(&certs, "one.example", "one", "[a]");
    let cfg = with_tls_listen(&write_config(dir.path(), &format!("{LINKS}domains:\n{entry}")), 1);
    let s = Server::start(dir.path(), &cfg);
    let tls = s.tls_addr.clone().unwrap();
    assert_eq!(served(&tls, "one.example").unwrap(), first);
    let second = make_cert(&certs, "one", "one.example");
    wait_served(&tls, "one.example", &second);
    assert!(s.metric("smartlink_tls_reloads_total") >= 1.0);
}
