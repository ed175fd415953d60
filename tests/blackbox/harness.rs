//! Starts the real binary and talks HTTP/1.1 to it with a tiny client (no
//! HTTP client crate needed for tests).

use std::io::{BufRead, BufReader, Read, Write};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ADMIN: &str = "test-admin-token";
/// The click-id secret every test server uses, so tests can mint ids.
pub const SECRET: &str = "blackbox-click-secret-0123456789abcdef";

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The TLS listener's address, when the config has `server.tls_listen`.
    pub tls_addr: Option<String>,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// Kept open: a server that writes to a closed stdout would fail.
    _stdout: BufReader<std::process::ChildStdout>,
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_smartlink")
}

/// Writes `yaml` as the config in `dir` (with a test admin token and the
/// data directory inside `dir`) and returns its path.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let cfg = dir.join("smartlink.yaml");
    // Rows are loaded into the store at once even on a busy test machine
    // (by default a busy machine defers loading by up to 30 s).
    let full = format!(
        "server:\n  admin_token: {ADMIN}\n  data_dir: {}\n  ingest_defer_secs: 0\n{yaml}",
        dir.join("data").display()
    );
    std::fs::write(&cfg, full).unwrap();
    cfg
}

impl Server {
    pub fn start(dir: &Path, config: &Path) -> Server {
        Server::try_start(dir, config).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Starts the binary; on failure returns what it printed to stderr.
    pub fn try_start(dir: &Path, config: &Path) -> Result<Server, String> {
        Server::try_start_with(dir, config, &[])
    }

    /// [`Server::try_start`] with more environment (applied last, so
    /// `RUST_LOG` can be raised).
    pub fn try_start_with(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Result<Server, String> {
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .env("SMARTLINK_SECRET", SECRET)
            // The config file's data_dir is the test's: nothing from outside overrides it.
            .env_remove("SMARTLINK_DATA_DIR")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn smartlink");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        match line.trim().strip_prefix("listening on http://") {
            Some(addr) => {
                let tls_addr = std::fs::read_to_string(config).unwrap_or_default().contains("tls_listen:").then(|| {
                    let mut line = String::new();
                    stdout.read_line(&mut line).unwrap();
                    line.trim().strip_prefix("listening on https://").expect("the TLS listener's line").to_string()
                });
                Ok(Server {
                    child,
                    addr: addr.to_string(),
                    tls_addr,
                    dir: dir.to_path_buf(),
                    config: config.to_path_buf(),
                    _stdout: stdout,
                })
            }
            None => {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                let _ = child.wait();
                Err(err)
            }
        }
    }

    /// Abrupt stop (SIGKILL): nothing is flushed.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Graceful stop (SIGTERM): the click queue is flushed.
    pub fn stop(self) {
        assert!(self.stop_within(Duration::from_secs(60)), "the server did not stop within a minute");
    }

    /// Graceful stop that must finish within `limit`; a server still
    /// running then is killed and `false` returned.
    pub fn stop_within(mut self, limit: Duration) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    pub fn restart(self) -> Server {
        let (dir, config) = (self.dir.clone(), self.config.clone());
        self.stop();
        Server::start(&dir, &config)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", path, headers, None)
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        let auth = format!("Bearer {ADMIN}");
        self.request(method, path, &[("Authorization", &auth), ("Content-Type", "application/json")], body)
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        self.request_within(10, method, path, headers, body)
    }

    /// [`Server::request`], waiting up to `secs` for the answer (for work
    /// that takes seconds in a debug build on a busy machine).
    pub fn request_within(
        &self,
        secs: u64,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
        exchange(&mut s, &self.addr, method, path, headers, body)
    }

    /// A browser's `GET` naming `host` in its `Host` header.
    pub fn get_on(&self, host: &str, path: &str) -> Resp {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        exchange(&mut s, host, "GET", path, BROWSER, None)
    }
}

/// Headers of a desktop browser: its clicks are judged human.
pub const BROWSER: &[(&str, &str)] = &[
    (
        "User-Agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
    ("Accept", "text/html"),
    ("Accept-Language", "en-US,en;q=0.9"),
];

/// Writes one request (`Connection: close`) to `s` and reads the answer.
pub fn exchange(
    s: &mut impl ReadWrite,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify once it answered.
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Resp { status, headers, body: body.to_string() }
}

/// A byte stream a request can be written to: TCP, or TLS over it.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Server {
    /// One unlabelled-or-labelled sample from `/metrics`, by its full name.
    pub fn metric(&self, name: &str) -> f64 {
        let m = self.get("/metrics", &[]).body;
        m.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// Waits (up to 60 s) until the metric `name` reaches `at_least`. Some
    /// metrics are set by idle-class background threads (the analytics
    /// loader), which get no CPU while the machine is busy: 20 s was
    /// missed while a C++ build ran beside the tests.
    pub fn wait_metric(&self, name: &str, at_least: f64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.metric(name) < at_least {
            assert!(std::time::Instant::now() < deadline, "{name} never reached {at_least}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `n` click rows are in the store: rows go through the
    /// journal and are loaded in the background.
    pub fn wait_stored(&self, n: u64) {
        self.wait_metric("smartlink_clicks_written_total", n as f64);
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("data/smartlink.db")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The clicks stored in a data directory's database, oldest first.
pub fn stored_clicks(db: &Path) -> Vec<smartlink_store::ClickRow> {
    use smartlink_store::Store;
    let s = smartlink_store::SqliteStore::open(db).unwrap();
    let mut rows = s.clicks_since(0, None, 1_000_000).unwrap();
    // The store pages by (second, click id); tests want click order.
    rows.sort_by_key(|c| c.ts_ms);
    rows
}

/// Signs click facts with the test secret (as the server would).
pub fn mint(facts: &smartlink_core::clickid::ClickFacts) -> String {
    smartlink_core::clickid::ClickIdCodec::new(SECRET.as_bytes()).encode(facts)
}

/// A local HTTP server that records request targets and answers each with
/// the next status of a script (the last one repeats).
pub struct Recorder {
    pub addr: String,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn start(script: Vec<u16>) -> Recorder {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for (i, conn) in l.incoming().enumerate() {
                let Ok(mut c) = conn else { continue };
                let mut buf = [0u8; 8192];
                let n = c.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let target = req.split(' ').nth(1).unwrap_or("").to_string();
                s2.lock().unwrap().push(target);
                let code = *script.get(i).or(script.last()).unwrap_or(&200);
                let _ = c.write_all(
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                );
            }
        });
        Recorder { addr, seen }
    }

    /// Waits (bounded) until at least `n` requests arrived.
    pub fn wait_for(&self, n: usize, secs: u64) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.seen.lock().unwrap().clone();
            if v.len() >= n || std::time::Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A webhook receiver that reads each request whole (head and body) and
/// answers 200.
pub struct Hook {
    pub addr: String,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Hook {
    pub fn start() -> Hook {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let b2 = bodies.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
                let mut raw = Vec::new();
                let mut buf = [0u8; 65536];
                let body = loop {
                    let n = c.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_string());
                    }
                };
                if let Some(b) = body {
                    b2.lock().unwrap().push(b);
                }
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Hook { addr, bodies }
    }

    /// Waits (bounded) until at least `n` bodies arrived.
    pub fn wait_for(&self, n: usize, secs: u64) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let v = self.bodies.lock().unwrap().clone();
            if v.len() >= n || std::time::Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// An iPhone's Safari: the visitor most tests click as.
pub const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

/// Two affiliates with a smartlink each over one offer (the scoping and
/// dashboard tests: what one affiliate may see of the other's).
pub const TWO: &str = r#"
advertisers: [{id: adv, postback_token: adv-secret}]
affiliates:
  - {id: aff1, api_key: key-one}
  - {id: aff2, api_key: key-two}
offers:
  - {id: o1, advertiser: adv, url: "https://o1.example/?cid={click_id}", payout: 2.0}
smartlinks:
  - {slug: s1, affiliate: aff1, offers: [o1], fallback_url: "https://f.example/"}
  - {slug: s2, affiliate: aff2, offers: [o1], fallback_url: "https://f.example/"}
"#;
