//! Postback ingestion throughput with durable commits.
//!
//! Starts the real server in-process on a temporary data directory, mints
//! valid click ids with the server's secret, then sends N postbacks over C
//! keep-alive connections and prints postbacks/s. Every postback is
//! answered only after its (group) commit with `synchronous = FULL`.
//!
//! `cargo run --release -p smartlink-server --example postback_load -- [N] [C]`

use std::time::Instant;

use smartlink_core::clickid::{ClickFacts, ClickIdCodec};
use smartlink_core::model::{Browser, Country, Device, Os, Segment};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const CONFIG: &str = r#"
server: {admin_token: bench}
advertisers: [{id: adv, postback_token: tok}]
affiliates: [{id: aff}]
offers: [{id: o1, advertiser: adv, url: "https://o1.example/?c={click_id}", payout: 1.5}]
smartlinks: [{slug: s, affiliate: aff, offers: [o1], fallback_url: "https://f.example/"}]
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let conns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, CONFIG)?;
    let secret = "load-test-secret-0123456789abcdef0123";
    std::env::set_var("SMARTLINK_SECRET", secret);
    let eff = smartlink_server::effective(&smartlink_server::Options {
        config: Some(cfg),
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    })?;
    let prepared = smartlink_server::prepare(&eff, smartlink_server::state::system_clock)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(smartlink_server::run(listener, None, prepared, async {
        let _ = stop_rx.await;
    }));

    let codec = ClickIdCodec::new(secret.as_bytes());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as u32;
    let seg = Segment { country: Country::parse("US")?, device: Device::Mobile, os: Os::Android };
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let mut nonce = [0u8; 6];
            nonce.copy_from_slice(&(i as u64).to_be_bytes()[2..]);
            codec.encode(&ClickFacts {
                time_secs: now - 10,
                smartlink: 1,
                offer: Some(1),
                affiliate: Some(1),
                source: None,
                segment: seg,
                browser: Browser::Chrome,
                language: None,
                flags: 0,
                nonce,
            })
        })
        .collect();
    let ids = std::sync::Arc::new(ids);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (ids, next) = (ids.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut ok = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ids.len() {
                    break;
                }
                let req = format!(
                    "GET /postback?click_id={}&token=tok&payout=1.2&txid=t{i} HTTP/1.1\r\nHost: x\r\n\r\n",
                    ids[i]
                );
                w.write_all(req.as_bytes()).await.expect("write");
                let mut status = String::new();
                r.read_line(&mut status).await.expect("status");
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).await.expect("header");
                    if h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).await.expect("body");
                if status.contains(" 200 ") {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    server.await??;
    println!("{ok}/{n} postbacks answered 200 in {secs:.2} s over {conns} connections: {:.0} postbacks/s (durable, group commit)", ok as f64 / secs);
    Ok(())
}
