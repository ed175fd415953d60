//! The full in-memory click decision for a 50-offer pool: GeoIP lookup, UA
//! classification, eligibility, the router's pick, the cap reservation, the
//! signed click id and the URL expansion. Run:
//! `cargo bench -p smartlink-server --bench decision`.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use smartlink_core::clickid::ClickIdCodec;
use smartlink_core::engine::{decide, ClickInput};
use smartlink_core::model::{Language, Segment};
use smartlink_core::targeting::Visitor;
use smartlink_server::config::{build_catalog, parse_yaml, provisional_keys, Definitions, Keys};
use smartlink_server::geo::Geo;
use smartlink_visitor::ua::{classify, ClientHints};

const UAS: [&str; 6] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
];
const IPS: [&str; 6] = ["8.8.8.8", "81.2.69.160", "89.160.20.112", "200.147.67.142", "49.44.12.1", "2a02:cf40::1"];

/// The same 50-offer pool `bench/redirect.sh` serves: a mix of country,
/// device and OS targeting, caps on some offers, one smartlink.
const POOL: &str = include_str!("../../../bench/pool50.yaml");

fn bench(c: &mut Criterion) {
    let defs: Definitions = parse_yaml(POOL).unwrap();
    let cat = build_catalog(&defs, &provisional_keys(&defs, &Keys::new())).unwrap();
    let sl = &cat.smartlinks[0];
    let geo_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/geo/iptoasn-country.mmdb");
    let geo = Geo::open(&geo_path).unwrap_or(Geo::BuiltIn);
    let codec = ClickIdCodec::new(b"0123456789abcdef0123456789abcdef");
    let ips: Vec<IpAddr> = IPS.iter().map(|s| s.parse().unwrap()).collect();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let mut i = 0usize;
    let mut now = 1_767_571_200_000i64;
    c.bench_function("click_decision_50_offers", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            now += 37;
            let ip = ips[i % ips.len()];
            let info = classify(UAS[i % UAS.len()], ClientHints::default());
            let visitor = Visitor {
                segment: Segment { country: geo.country(ip), device: info.device, os: info.os },
                browser: info.browser,
                language: Language::from_accept_language("en-US,en;q=0.9"),
            };
            let input = ClickInput {
                now_ms: now,
                visitor,
                subs: ["src-42", "", "", "", ""],
                aff: None,
                source: None,
                counted: true,
                flags: 0,
            };
            black_box(decide(&cat, sl, &input, &codec, &mut rng))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
