//! The HTTP/1.1 server: a fast path for clicks in front of hyper.
//!
//! Every connection starts on the **fast path**: requests are read into one
//! buffer per connection, parsed with `httparse` (the parser hyper itself
//! uses) into a stack array of headers, and a click (`GET`/`HEAD`
//! `/s/{slug}`, no body) is answered by [`click::click_answer`] with the
//! response written straight into the connection's output buffer; every
//! response of a pipelined batch goes out in one `write`. No `Request`,
//! `HeaderMap`, `Response` or extension map is built, and nothing is
//! allocated per request but the click's own strings.
//!
//! Anything else — another path, a method other than `GET`/`HEAD`, a body,
//! `Expect`, `Upgrade`, a request target in absolute form or with bytes
//! outside RFC 3986's set, a head over 8 KiB, or one `httparse` rejects —
//! **hands the connection over to hyper** with the bytes read so far, after
//! the answers already due have been written, and hyper serves it (the
//! admin API, postbacks, metrics, and every error answer) until it closes.
//! Hand-offs are counted (`smartlink_http_handoffs_total`).
//! Both paths answer a click through [`click::click_answer`], so status,
//! headers and body are the same; the axum route `/s/{slug}` serves clicks
//! that arrive on a handed-over connection.
//!
//! Why (`bench/redirect.sh`, wrk and the server sharing two cores): a fixed
//! 302 served by axum on hyper ran at 97–101k req/s, the same 302 from
//! tokio and `httparse` alone at 112–113k (nginx: 91–93k); the difference,
//! about 2.3 µs of CPU a request, is hyper's request and response types,
//! its header map and axum's routing. See the README's Performance section
//! for what it does to the click path.
//!
//! hyper is configured with `half_close(true)`: by default, while a request
//! is being handled, it reads the socket once more to notice a client that
//! hung up, and that read finds the buffer still shared with the request's
//! headers and allocates a fresh 8 KiB buffer for every request. A request
//! here is answered in microseconds; the next read after the answer still
//! sees the close.
//!
//! **TLS** (`server.tls_listen`, [`crate::tls`]): a second listener whose
//! connections are handed, once their handshake is done (within the head
//! timeout), to the same fast path: it is generic over the stream, so a
//! click over TLS is parsed and answered by the same code, and its answers
//! are flushed as one TLS record per batch. Hand-offs to hyper carry the
//! TLS stream along.
//!
//! Kept from `axum::serve`: `ConnectInfo<SocketAddr>` in each request's
//! extensions (hyper side; [`OverTls`] too on the TLS listener), accept errors that do not end the loop,
//! graceful shutdown (stop accepting, finish the requests in progress,
//! close idle keep-alive connections).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::HeaderName;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;

use crate::click::{self, ClickHeaders};
use crate::state::AppState;

/// Read buffer of a fast-path connection; a request head that does not fit
/// goes to hyper (whose limits are larger).
const READ_BUF: usize = 8 * 1024;
/// Headers the fast path parses; a request with more goes to hyper.
const MAX_HEADERS: usize = 48;

/// How long a client may take, and how many may be connected at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From a connection's start (or the first byte of a request) to its
    /// complete head; also how long a client that does not read its
    /// answers is waited for.
    pub header: Duration,
    /// An idle keep-alive connection on the fast path is closed after this.
    /// (On a connection hyper serves, the wait for the next head counts
    /// toward `header`.)
    pub idle: Duration,
    /// Between body chunks of a request hyper serves.
    pub body: Duration,
    /// Open connections at most. At the limit, idle keep-alive connections
    /// are closed to make room; past it, new connections are closed at once.
    pub max_connections: usize,
    /// After the shutdown signal: how long requests in progress may take
    /// before their connections are cut.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            body: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets open connections finish their requests for at most
/// `limits.shutdown_grace`, and cuts the rest.
/// With `clicks`, clicks take the fast path; without, hyper serves all.
pub async fn serve(
    listener: TcpListener,
    tls: Option<(TcpListener, Arc<crate::tls::Tls>)>,
    app: Router,
    clicks: Option<Arc<AppState>>,
    limits: Limits,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.half_close(true).timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header);
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body));
    let (tls_listener, tls) = tls.unzip();
    let shared = Arc::new(Shared { app, http, clicks, limits, metrics: metrics.clone(), tls });
    let graceful = GracefulShutdown::new();
    // Bumped to ask idle fast-path connections to close (the connection
    // limit); dropped to stop every fast-path connection (shutdown).
    let (signal_tx, signal_rx) = watch::channel(0u64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (accepted, secure) = tokio::select! {
            accepted = listener.accept() => (accepted, false),
            accepted = accept_on(tls_listener.as_ref()) => (accepted, true),
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        while tasks.try_join_next().is_some() {}
        if tasks.len() >= limits.max_connections {
            // Make room: idle keep-alive connections close, then look again.
            signal_tx.send_modify(|n| *n += 1);
            metrics.http_drains.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            while tasks.try_join_next().is_some() {}
            if tasks.len() >= limits.max_connections {
                metrics.http_refused.fetch_add(1, Relaxed);
                tracing::warn!(limit = limits.max_connections, %peer, "connection limit reached: a new connection is closed");
                drop(stream);
                continue;
            }
        }
        let shared = shared.clone();
        let watcher = graceful.watcher();
        let signal = signal_rx.clone();
        tasks.spawn(async move {
            let _open = Open::new(&shared.metrics);
            match (&shared.tls, secure) {
                (Some(tls), true) => {
                    // The handshake counts toward the time a head may take.
                    match tokio::time::timeout(shared.limits.header, tls.acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            shared.metrics.tls_handshakes.fetch_add(1, Relaxed);
                            shared.connection(stream, peer, true, watcher, signal).await;
                        }
                        Ok(Err(e)) => {
                            shared.metrics.tls_handshake_errors.fetch_add(1, Relaxed);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            shared.metrics.tls_handshake_errors.fetch_add(1, Relaxed);
                            shared.metrics.http_timeouts[0].fetch_add(1, Relaxed);
                        }
                    }
                }
                _ => shared.connection(stream, peer, false, watcher, signal).await,
            }
        });
    }
    drop(tls_listener);
    drop(listener);
    // Fast-path connections close when idle; hyper's finish their request;
    // whatever is still open after the grace period is cut.
    drop(signal_tx);
    let finished = tokio::time::timeout(limits.shutdown_grace, async {
        graceful.shutdown().await;
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        let cut = tasks.len();
        metrics.http_shutdown_cut.fetch_add(cut as u64, Relaxed);
        tracing::warn!(connections = cut, grace = ?limits.shutdown_grace, "shutdown grace period over: cutting the connections still open");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Counts an open connection in `smartlink_http_connections` while alive.
struct Open<'a>(&'a crate::metrics::Metrics);

impl<'a> Open<'a> {
    fn new(m: &'a crate::metrics::Metrics) -> Open<'a> {
        m.http_open.fetch_add(1, Relaxed);
        Open(m)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.http_open.fetch_sub(1, Relaxed);
    }
}

/// The next connection on `listener`; never, without one.
async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

struct Shared {
    app: Router,
    http: hyper::server::conn::http1::Builder,
    clicks: Option<Arc<AppState>>,
    limits: Limits,
    metrics: Arc<crate::metrics::Metrics>,
    tls: Option<Arc<crate::tls::Tls>>,
}

impl Shared {
    /// Serves one connection (TCP, or TLS once the handshake is done): the
    /// fast path first when clicks are served, hyper for the rest.
    async fn connection<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        tls: bool,
        watcher: Watcher,
        signal: watch::Receiver<u64>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(state) = &self.clicks {
            match fast_path(stream, peer, state, &self.limits, signal).await {
                Handoff::Done => {}
                Handoff::Hyper(io) => self.hyper(io, peer, tls, watcher).await,
            }
        } else {
            self.hyper(Prefixed::new(stream, Vec::new(), 0..0), peer, tls, watcher).await;
        }
    }

    async fn hyper<S>(&self, io: Prefixed<S>, peer: SocketAddr, tls: bool, watcher: Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if tls {
                req.extensions_mut().insert(OverTls);
            }
            let mut app = app.clone();
            async move { Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {})) }
        });
        if let Err(e) = watcher.watch(self.http.serve_connection(TokioIo::new(io), service)).await {
            tracing::trace!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// In the extensions of a request that came over the TLS listener (the
/// dashboard's session cookie is `Secure` then).
#[derive(Clone, Copy, Debug)]
pub struct OverTls;

enum Handoff<S> {
    /// The connection is closed (or to be).
    Done,
    /// hyper takes it from here, with the bytes already read.
    Hyper(Prefixed<S>),
}

/// What the fast path does with one parsed request.
#[derive(Debug, PartialEq)]
enum Plan<'r> {
    Click {
        path: &'r str,
        query: Option<&'r str>,
        head: bool,
        /// Close the connection after the answer.
        close: bool,
        /// The answer's `connection` header, when it needs one.
        connection: Option<&'static str>,
        /// The `Host` header (absent on HTTP/1.0 without one).
        host: Option<&'r str>,
    },
    Hyper,
}

/// What a fast-path connection is waiting for, and since when.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// The rest of a request head (or a new connection's first request).
    Head,
    /// The next request on an idle keep-alive connection.
    Idle,
}

async fn fast_path<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    app: &AppState,
    limits: &Limits,
    mut signal: watch::Receiver<u64>,
) -> Handoff<S> {
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let (mut waiting, mut since) = (Waiting::Head, Instant::now());
    signal.mark_unchanged();
    // One timer for the connection's life, moved only when it fires early
    // or the deadline comes nearer (a partial head): a timer armed per
    // request would cost every click a trip through the timer wheel.
    let timer = tokio::time::sleep_until((since + limits.header).into());
    tokio::pin!(timer);
    loop {
        // Answer every complete request in the buffer.
        let mut close = false;
        let mut handoff = false;
        let mut answered = false;
        while start < end && !close {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let len = match req.parse(&buf[start..end]) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => {
                    // Incomplete: read more, unless the buffer is full.
                    handoff = start == 0 && end == buf.len();
                    break;
                }
                Err(_) => {
                    handoff = true; // hyper writes the 400
                    break;
                }
            };
            match plan(&req) {
                Plan::Hyper => {
                    handoff = true;
                    break;
                }
                Plan::Click { path, query, head, close: c, connection, host } => {
                    let answer = click::click_answer(app, path, query, &Parsed(req.headers), Some(peer.ip()), host);
                    answer.encode(&mut out, head, connection, &http_date());
                    close = c;
                    start += len;
                    answered = true;
                }
            }
        }
        if !out.is_empty() {
            // A client that does not read its answers is not waited for
            // longer than it may take to send a head.
            // `flush` sends what a TLS stream still buffers (a no-op on TCP).
            let send = async {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            match tokio::time::timeout(limits.header, send).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Handoff::Done,
                Err(_) => {
                    app.metrics.http_timeouts[2].fetch_add(1, Relaxed);
                    return Handoff::Done;
                }
            }
            out.clear();
        }
        // Idle once everything sent was answered; waiting for a head while
        // part of one is here (its clock starts when it started coming).
        if start == end {
            if answered {
                (waiting, since) = (Waiting::Idle, Instant::now());
            }
        } else if answered || waiting == Waiting::Idle {
            (waiting, since) = (Waiting::Head, Instant::now());
        }
        if close {
            let _ = stream.shutdown().await;
            return Handoff::Done;
        }
        if handoff {
            app.metrics.http_handoffs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Handoff::Hyper(Prefixed::new(stream, buf, start..end));
        }
        if signal.has_changed().is_err() {
            return Handoff::Done; // shutting down: close while idle
        }
        // Keep the unparsed tail at the front of the buffer.
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        let deadline = since + if waiting == Waiting::Idle { limits.idle } else { limits.header };
        if deadline < timer.deadline().into_std() {
            timer.as_mut().reset(deadline.into());
        }
        let n = tokio::select! {
            biased;
            r = stream.read(&mut buf[end..]) => match r {
                Ok(0) | Err(_) => return Handoff::Done,
                Ok(n) => n,
            },
            // Shutdown (the sender is gone), or the connection limit asking
            // idle connections to make room.
            r = signal.changed() => match r {
                Err(_) => return Handoff::Done,
                Ok(()) if waiting == Waiting::Idle => return Handoff::Done,
                Ok(()) => continue,
            },
            () = &mut timer => {
                if Instant::now() < deadline {
                    timer.as_mut().reset(deadline.into());
                    continue;
                }
                let kind = if waiting == Waiting::Idle { 1 } else { 0 };
                app.metrics.http_timeouts[kind].fetch_add(1, Relaxed);
                return Handoff::Done;
            }
        };
        end += n;
    }
}

fn plan<'r>(req: &httparse::Request<'_, 'r>) -> Plan<'r> {
    let head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Plan::Hyper,
    };
    let Some(target) = req.path else { return Plan::Hyper };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // `/s/{slug}` or `/o/{offer}`: one non-empty segment, as the axum
    // routes match.
    let Some(slug) = path.strip_prefix("/s/").or_else(|| path.strip_prefix("/o/")) else { return Plan::Hyper };
    if slug.is_empty() || slug.contains('/') || !target.bytes().all(uri_byte) {
        return Plan::Hyper;
    }
    let version_11 = req.version == Some(1);
    let (mut close, mut keep_alive) = (false, false);
    let (mut hosts, mut host): (u32, &[u8]) = (0, b"");
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = h.value;
        } else if name.eq_ignore_ascii_case("content-length") {
            if h.value.trim_ascii() != b"0" {
                return Plan::Hyper;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Plan::Hyper;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // A missing, repeated or invalid Host is a 400, written by hyper's side.
    if !host_ok(version_11, std::iter::repeat_n(host, hosts.min(2) as usize)) {
        return Plan::Hyper;
    }
    // HTTP/1.1 keeps the connection unless told to close; 1.0 closes it
    // unless told to keep it.
    let close = if version_11 { close } else { close || !keep_alive };
    let connection = match (close, version_11) {
        (true, _) => Some("close"),
        (false, false) => Some("keep-alive"),
        (false, true) => None,
    };
    // `host_ok` let only visible ASCII through.
    let host = if hosts == 1 { std::str::from_utf8(host).ok() } else { None };
    Plan::Click { path, query, head, close, connection, host }
}

/// The fast path's verdict on one raw request head, checked against what
/// hyper's side would make of it; panics on a disagreement. For the fuzz
/// target `fast_path` (and its unit test): the fast path must take only
/// requests hyper would take the same way.
///
/// - a head the fast path answers is one `http::Request` accepts: its
///   method is GET or HEAD, its target parses as a URI with path `/s/{slug}`
///   and the query the fast path hands on, and every header is a valid
///   `HeaderName`/`HeaderValue` pair;
/// - the `Host` rule gives the same verdict on the raw headers (fast path)
///   and on a `HeaderMap` built from them (hyper's middleware).
#[doc(hidden)]
pub fn check_against_hyper(raw: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(raw) else { return };
    let mut map = axum::http::HeaderMap::new();
    let mut valid_headers = true;
    for h in req.headers.iter() {
        match (axum::http::HeaderName::from_bytes(h.name.as_bytes()), axum::http::HeaderValue::from_bytes(h.value)) {
            (Ok(n), Ok(v)) => {
                map.append(n, v);
            }
            _ => valid_headers = false,
        }
    }
    let http11 = req.version == Some(1);
    if valid_headers {
        let raw_hosts = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).map(|h| h.value);
        let mapped = map.get_all(axum::http::header::HOST).into_iter().map(axum::http::HeaderValue::as_bytes);
        assert_eq!(host_ok(http11, raw_hosts), host_ok(http11, mapped), "the Host rule differs between the paths");
    }
    if let Plan::Click { path, query, .. } = plan(&req) {
        assert!(matches!(req.method, Some("GET" | "HEAD")));
        let target = req.path.unwrap_or_default();
        let uri: axum::http::Uri = target.parse().unwrap_or_else(|e| panic!("hyper would refuse {target:?}: {e}"));
        assert_eq!(uri.path(), path, "path");
        assert_eq!(uri.query(), query, "query");
        assert!((path.starts_with("/s/") || path.starts_with("/o/")) && path.len() > 3 && !path[3..].contains('/'));
        assert!(valid_headers, "the fast path answered a request whose headers hyper would refuse");
    }
}

/// RFC 9112 section 3.2: an HTTP/1.1 request has exactly one `Host`, and
/// a `Host` is a valid `uri-host [ ":" port ]` (empty is allowed). Both
/// the fast path and the hyper side ([`crate::app`]) apply it.
pub fn host_ok<'a>(http11: bool, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
    match (values.next(), values.next()) {
        (None, _) => !http11,
        (Some(v), None) => valid_host(v),
        (Some(_), Some(_)) => false,
    }
}

fn valid_host(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    if v.is_empty() {
        return true;
    }
    let (host, port) = if v[0] == b'[' {
        // IP-literal: an IPv6 address (or IPvFuture) in brackets.
        let Some(end) = v.iter().position(|&b| b == b']') else { return false };
        let inside = &v[1..end];
        let ok = !inside.is_empty() && inside.iter().all(|&b| b.is_ascii_alphanumeric() || b":.-_~".contains(&b));
        if !ok {
            return false;
        }
        (&v[..=end], &v[end + 1..])
    } else {
        let (h, p) = v.iter().rposition(|&b| b == b':').map_or((v, &v[v.len()..]), |i| (&v[..i], &v[i..]));
        if h.is_empty() || !h.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b)) {
            return false;
        }
        (h, p)
    };
    let _ = host;
    port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit))
}

/// RFC 3986 characters of an origin-form target (unreserved, reserved
/// without `#`, and `%`); anything else goes to hyper, whose URI parser
/// decides.
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?[]@!$&'()*+,;=%".contains(&b)
}

/// Headers as `httparse` found them; the first of repeated names wins, as
/// with [`axum::http::HeaderMap::get`].
struct Parsed<'h, 'b>(&'h [httparse::Header<'b>]);

impl ClickHeaders for Parsed<'_, '_> {
    fn get_str(&self, name: &HeaderName) -> Option<&str> {
        let h = self.0.iter().find(|h| h.name.eq_ignore_ascii_case(name.as_str()))?;
        // As `HeaderValue::to_str`: visible ASCII and tabs only.
        if h.value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            std::str::from_utf8(h.value).ok()
        } else {
            None
        }
    }
}

thread_local! {
    /// The `date` header value and the second it was rendered for.
    static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [b' '; 29])) };
}

/// The current `date` header value (an IMF-fixdate), rendered at most
/// once a second per thread.
fn http_date() -> [u8; 29] {
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let (at, mut text) = d.get();
        if at != secs {
            let s = httpdate::fmt_http_date(now);
            if s.len() == text.len() {
                text.copy_from_slice(s.as_bytes());
            }
            d.set((secs, text));
        }
        text
    })
}

/// A stream (TCP, or TLS over TCP) with the bytes already read from it in
/// front: how the fast path hands a connection to hyper.
struct Prefixed<S> {
    stream: S,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<S> Prefixed<S> {
    fn new(stream: S, buf: Vec<u8>, unread: std::ops::Range<usize>) -> Prefixed<S> {
        Prefixed { stream, buf, pos: unread.start, end: unread.end }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.end {
            let n = (this.end - this.pos).min(out.remaining());
            out.put_slice(&this.buf[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.end {
                this.buf = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, b)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, b)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Per-connection failures (the client reset before `accept` returned) are
/// the client's business; anything else (out of file descriptors) is
/// logged and the loop backs off briefly instead of spinning.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    fn parse<'h, 'b>(raw: &'b [u8], headers: &'h mut [httparse::Header<'b>]) -> httparse::Request<'h, 'b> {
        let mut req = httparse::Request::new(headers);
        assert!(req.parse(raw).unwrap().is_complete());
        req
    }

    /// `(head, close, connection header)` of a click, `None` for hyper.
    fn plan_of(raw: &str) -> Option<(bool, bool, Option<&'static str>)> {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match plan(&parse(raw.as_bytes(), &mut h)) {
            Plan::Click { head, close, connection, .. } => Some((head, close, connection)),
            Plan::Hyper => None,
        }
    }

    #[test]
    fn only_bodiless_get_and_head_clicks_take_the_fast_path() {
        assert_eq!(plan_of("GET /s/main?sub1=a HTTP/1.1\r\nHost: x\r\n\r\n"), Some((false, false, None)));
        assert_eq!(plan_of("HEAD /s/main HTTP/1.1\r\nHost: x\r\n\r\n"), Some((true, false, None)));
        assert_eq!(plan_of("GET /o/offer-1?cost=0.01 HTTP/1.1\r\nHost: x\r\n\r\n"), Some((false, false, None)));
        assert_eq!(plan_of("GET /s/main HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), Some((false, false, None)));
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let raw = b"GET /s/main?sub1=a&sub2=b HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            plan(&parse(raw, &mut h)),
            Plan::Click {
                path: "/s/main",
                query: Some("sub1=a&sub2=b"),
                head: false,
                close: false,
                connection: None,
                host: Some("x")
            }
        );
        for hyper in [
            "POST /s/main HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /s/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /o/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /x/main HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /s/a/b HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://host/s/main HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /s/main?x=\"q\" HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /s/main HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
            "GET /s/main HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /s/main HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET /s/main HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        ] {
            assert_eq!(plan_of(hyper), None, "{hyper}");
        }
    }

    #[test]
    fn the_fuzz_oracle_accepts_what_both_paths_agree_on() {
        for raw in [
            &b"GET /s/main?sub1=a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"HEAD /s/m HTTP/1.0\r\n\r\n",
            b"GET /s/m HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST /x HTTP/1.1\r\n\r\n",
            b"garbage",
            b"GET /s/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            check_against_hyper(raw);
        }
    }

    #[test]
    fn host_must_be_one_valid_header_on_http_1_1() {
        let one = |v: &'static str| std::iter::once(v.as_bytes());
        for (v, ok) in [
            ("click.example.com", true),
            ("click.example.com:8080", true),
            ("203.0.113.9:80", true),
            ("[2001:db8::1]", true),
            ("[2001:db8::1]:443", true),
            ("", true),
            ("a:", true),
            ("a b", false),
            ("a/b", false),
            ("a:80x", false),
            (":80", false),
            ("[2001:db8::1", false),
            ("[]", false),
            ("[::1]x", false),
            ("a@b", false),
        ] {
            assert_eq!(host_ok(true, one(v)), ok, "{v:?}");
        }
        assert!(!host_ok(true, std::iter::empty()), "HTTP/1.1 needs a Host");
        assert!(host_ok(false, std::iter::empty()), "HTTP/1.0 does not");
        assert!(!host_ok(false, [&b"a"[..], &b"a"[..]].into_iter()), "never two");
    }

    #[test]
    fn connection_handling_follows_the_request_version_and_header() {
        assert_eq!(
            plan_of("GET /s/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            Some((false, true, Some("close")))
        );
        assert_eq!(
            plan_of("GET /s/m HTTP/1.1\r\nHost: x\r\nconnection: Keep-Alive, CLOSE\r\n\r\n"),
            Some((false, true, Some("close")))
        );
        assert_eq!(plan_of("GET /s/m HTTP/1.0\r\n\r\n"), Some((false, true, Some("close"))));
        assert_eq!(
            plan_of("GET /s/m HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            Some((false, false, Some("keep-alive")))
        );
    }

    #[test]
    fn parsed_headers_read_like_a_header_map() {
        let raw =
            b"GET /s/m HTTP/1.1\r\nHost: x\r\nUser-Agent: first\r\nuser-agent: second\r\nX-Bin: caf\xc3\xa9\r\nAccept:\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let req = parse(raw, &mut h);
        let p = Parsed(req.headers);
        let mut map = axum::http::HeaderMap::new();
        for h in req.headers.iter() {
            map.append(HeaderName::from_bytes(h.name.as_bytes()).unwrap(), h.value.try_into().unwrap());
        }
        for name in ["user-agent", "x-bin", "accept", "referer"] {
            let name = HeaderName::from_static(name);
            assert_eq!(p.get_str(&name), map.get_str(&name), "{name}");
        }
        assert_eq!(p.get_str(&HeaderName::from_static("user-agent")), Some("first"));
        assert_eq!(p.get_str(&HeaderName::from_static("x-bin")), None, "not visible ASCII");
        assert_eq!(p.get_str(&HeaderName::from_static("accept")), Some(""));
    }

    #[test]
    fn encoded_answers_carry_the_same_headers_as_the_axum_responses() {
        let date = *b"Tue, 24 Nov 2026 08:52:24 GMT";
        let answers = [
            click::ClickAnswer::Redirect("https://o.example/?a=1".into()),
            click::ClickAnswer::Page(axum::http::StatusCode::NOT_FOUND, "<p>gone</p>\n"),
            click::ClickAnswer::Page(axum::http::StatusCode::FORBIDDEN, "<p>no</p>\n"),
            click::ClickAnswer::BadRequest("sub1 is too long".into()),
            click::ClickAnswer::NoContent,
        ];
        for a in answers {
            let mut out = Vec::new();
            a.encode(&mut out, false, None, &date);
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let mut lines = head.lines();
            let status_line = lines.next().unwrap().to_string();
            let got: Vec<(String, String)> =
                lines.map(|l| l.split_once(": ").unwrap()).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let r = axum::response::IntoResponse::into_response(a);
            let status = r.status();
            assert_eq!(status_line, format!("HTTP/1.1 {status}"));
            for (k, v) in r.headers() {
                assert!(got.contains(&(k.to_string(), v.to_str().unwrap().to_string())), "{k}: {v:?} in {got:?}");
            }
            assert!(got.contains(&("date".into(), "Tue, 24 Nov 2026 08:52:24 GMT".into())));
            let announced = got.iter().find(|(k, _)| k == "content-length").map(|(_, v)| v.parse::<usize>().unwrap());
            assert_eq!(announced.unwrap_or(0), body.len(), "{status}");
            assert_eq!(announced.is_none(), status == axum::http::StatusCode::NO_CONTENT);
        }
        let mut out = Vec::new();
        click::ClickAnswer::Page(axum::http::StatusCode::NOT_FOUND, "<p>gone</p>\n").encode(
            &mut out,
            true,
            Some("close"),
            &date,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\r\n\r\n")
                && text.contains("content-length: 12\r\n")
                && text.contains("connection: close\r\n")
        );
    }

    #[test]
    fn the_date_header_is_an_imf_fixdate_of_now() {
        let d = http_date();
        let parsed = httpdate::parse_http_date(std::str::from_utf8(&d).unwrap()).unwrap();
        let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
        assert!(age < Duration::from_secs(5), "{age:?}");
    }

    async fn peer_of(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
        peer.to_string()
    }

    #[tokio::test]
    async fn without_a_click_state_hyper_serves_every_request_with_the_peer_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().route("/peer", get(peer_of));
        let server = tokio::spawn(serve(listener, None, app, None, Limits::default(), Default::default(), async {
            let _ = stop_rx.await;
        }));

        let mut c = TcpStream::connect(addr).await.unwrap();
        let me = c.local_addr().unwrap();
        c.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&me.to_string()), "the handler saw the client's address: {answer}");

        // Shutdown: no new connections; the idle keep-alive one is closed.
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("server stopped").unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
        assert_eq!(c.read(&mut buf).await.unwrap(), 0, "the idle connection was closed");
    }

    #[tokio::test]
    async fn a_handed_over_connection_reads_the_buffered_bytes_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b" world").await.unwrap();
            let mut back = String::new();
            c.read_to_string(&mut back).await.unwrap();
            back
        });
        let (stream, _) = listener.accept().await.unwrap();
        let mut buf = b"xxhello".to_vec();
        buf.resize(READ_BUF, 0);
        let mut p = Prefixed::new(stream, buf, 2..7);
        let mut got = vec![0u8; 11];
        p.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        p.write_all(b"ok").await.unwrap();
        p.shutdown().await.unwrap();
        drop(p);
        assert_eq!(client.await.unwrap(), "ok");
    }
}
