//! TLS termination for custom tracking domains (`server.tls_listen`):
//! rustls with the *ring* provider, the certificate picked per connection
//! by the name the client sends (SNI), from PEM files named by each
//! `domains:` entry's `tls`.
//!
//! The certificates live behind an `ArcSwap`: a reload (SIGHUP, or a
//! certificate file whose modification time, size or symlink target
//! changed, checked every `server.tls_poll_secs` by a background task,
//! never on a connection) builds a complete new set and swaps it in, so a
//! handshake sees either the old set or the new, never a mix, and
//! connections already open keep theirs. A set that fails to load (a file
//! missing mid-renewal, a key that does not match its certificate) is
//! logged and counted, and the previous set stays in use.
//!
//! Session resumption: TLS 1.3 tickets (ring's rotating ticketer) and a
//! TLS 1.2 session cache, so a returning visitor skips the full handshake.
//! ALPN offers `http/1.1` only: the server speaks HTTP/1.1.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::FieldError;
use crate::domains::{Domains, TlsFiles, ANY_HOST};

/// The certificates of one configuration: by host, and the one served to
/// a client that names no configured host (the `"*"` entry's).
#[derive(Debug, Default)]
pub struct Certs {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// What the files looked like when read (for change detection).
    stamps: Vec<Stamp>,
}

impl Certs {
    /// Reads every entry's certificate and key. Every problem is reported
    /// with the key it comes from (`domains[2].tls.key`).
    pub fn load(domains: &Domains) -> Result<Certs, Vec<FieldError>> {
        let provider = provider();
        let mut errs = Vec::new();
        let mut certs = Certs { stamps: stamps(domains), ..Certs::default() };
        for (i, d) in domains.entries().iter().enumerate() {
            let Some(files) = &d.tls else { continue };
            match load_pair(files, &provider) {
                Ok(key) => {
                    let key = Arc::new(key);
                    if d.host == ANY_HOST {
                        certs.default = Some(key);
                    } else {
                        certs.by_host.insert(d.host.clone(), key);
                    }
                }
                Err((which, message)) => errs.push(FieldError { path: format!("domains[{i}].tls.{which}"), message }),
            }
        }
        if errs.is_empty() {
            Ok(certs)
        } else {
            Err(errs)
        }
    }

    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = name.and_then(|n| {
            let n = n.strip_suffix('.').unwrap_or(n);
            match self.by_host.get(n) {
                Some(k) => Some(k),
                None if n.bytes().any(|b| b.is_ascii_uppercase()) => self.by_host.get(&n.to_ascii_lowercase()),
                None => None,
            }
        });
        found.or(self.default.as_ref()).cloned()
    }
}

/// The stamps of every certificate and key file `domains` name.
fn stamps(domains: &Domains) -> Vec<Stamp> {
    domains
        .entries()
        .iter()
        .filter_map(|d| d.tls.as_ref())
        .flat_map(|f| [Stamp::of(&f.cert), Stamp::of(&f.key)])
        .collect()
}

/// A file's identity and version: where it resolves to (certbot's `live/`
/// files are symlinks into `archive/`), when it changed and its size.
#[derive(Clone, Debug, PartialEq)]
struct Stamp(Option<(PathBuf, SystemTime, u64)>);

impl Stamp {
    fn of(path: &std::path::Path) -> Stamp {
        let real = std::fs::canonicalize(path).ok();
        let meta = std::fs::metadata(path).ok();
        Stamp(real.zip(meta).and_then(|(p, m)| Some((p, m.modified().ok()?, m.len()))))
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn load_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, (&'static str, String)> {
    let (cert, key) = (&files.cert, &files.key);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ("cert", format!("cannot read a PEM certificate chain from {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(("cert", format!("{}: no CERTIFICATE block found", cert.display())));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ("key", format!("cannot read a PEM private key from {}: {e}", key.display())))?;
    CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| ("key", format!("{} does not fit the certificate in {}: {e}", key.display(), cert.display())))
}

/// Picks the certificate by SNI from the current set.
#[derive(Debug)]
pub struct Resolver {
    certs: ArcSwap<Certs>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.load().pick(hello.server_name())
    }
}

/// The TLS side of the server: what the accept loop hands connections to,
/// and the certificate set reloads swap.
pub struct Tls {
    resolver: Arc<Resolver>,
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The files as last read, loaded or not: a file that failed to load
    /// is tried again when it changes again (or on SIGHUP), not on every
    /// poll.
    seen: std::sync::Mutex<Vec<Stamp>>,
}

impl Tls {
    pub fn new(certs: Certs) -> anyhow::Result<Tls> {
        let seen = std::sync::Mutex::new(certs.stamps.clone());
        let resolver = Arc::new(Resolver { certs: ArcSwap::from_pointee(certs) });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
        Ok(Tls { resolver, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), seen })
    }

    /// Whether a certificate file of `domains` changed since it was last
    /// read (successfully or not); the change counts as seen.
    pub fn changed(&self, domains: &Domains) -> bool {
        let now = stamps(domains);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == now {
            return false;
        }
        *seen = now;
        true
    }

    /// Swaps in a newly loaded set.
    pub fn replace(&self, certs: Certs) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = certs.stamps.clone();
        self.resolver.certs.store(Arc::new(certs));
    }
}
