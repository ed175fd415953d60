//! The HTTP stack's own ceiling: axum answering a fixed 302 with no work,
//! for comparison with nginx and the real click path.
//! `cargo run --release -p smartlink-server --example bare_302 -- 127.0.0.1:18183`
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

async fn redirect() -> Response {
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("https://o1.example/lp?cid=x"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18183".into());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        let app = axum::Router::new().route("/s/{slug}", axum::routing::get(redirect));
        axum::serve(l, app).await.expect("serve");
    });
}
