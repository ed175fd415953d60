//! The ceiling of a tokio HTTP server on this machine: a fixed 302 from
//! tokio and `httparse` alone (no hyper, no axum), for comparison with
//! `bare_302` (the same 302 from axum) and nginx. It is what motivated the
//! click fast path (`src/http.rs`).
//! `cargo run --release -p smartlink-server --example raw_302 -- 127.0.0.1:18184`
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18184".into());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut filled = 0;
                let mut out = Vec::with_capacity(512);
                loop {
                    let n = match s.read(&mut buf[filled..]).await { Ok(0) | Err(_) => return, Ok(n) => n };
                    filled += n;
                    let mut start = 0;
                    loop {
                        let mut headers = [httparse::EMPTY_HEADER; 32];
                        let mut req = httparse::Request::new(&mut headers);
                        match req.parse(&buf[start..filled]) {
                            Ok(httparse::Status::Complete(len)) => {
                                out.extend_from_slice(b"HTTP/1.1 302 Found\r\nlocation: https://o1.example/lp?cid=x\r\ncache-control: no-store\r\ncontent-length: 0\r\n\r\n");
                                start += len;
                            }
                            Ok(httparse::Status::Partial) => break,
                            Err(_) => return,
                        }
                    }
                    buf.copy_within(start..filled, 0);
                    filled -= start;
                    if !out.is_empty() { if s.write_all(&out).await.is_err() { return; } out.clear(); }
                }
            });
        }
    });
}
