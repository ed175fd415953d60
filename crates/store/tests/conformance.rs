//! One behaviour suite, run against every store: SQLite (a temporary
//! directory) always, PostgreSQL (a database of its own, dropped at the end,
//! also when the test fails) with `--features postgres`.
//!
//! `cargo test -p smartlink-store --features postgres` needs a PostgreSQL
//! server: `SMARTLINK_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`) names a database the tests
//! connect to in order to create and drop their own. Unreachable, the
//! PostgreSQL tests fail; they never skip.

use std::sync::Arc;

use smartlink_store::*;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What the suite needs of a store.
pub trait Backend: Store + FeedSource {}
impl<T: Store + FeedSource> Backend for T {}

/// A store under test and what keeps its data alive. Fields drop in order:
/// the stores first, then the database or directory.
pub struct Fixture {
    store: Arc<dyn Backend>,
    open: Box<dyn Fn() -> Arc<dyn Backend> + Send + Sync>,
    pub name: &'static str,
    _data: Box<dyn std::any::Any>,
}

impl Fixture {
    fn s(&self) -> &dyn Backend {
        &*self.store
    }

    /// The store, shareable with threads.
    fn arc(&self) -> Arc<dyn Backend> {
        self.store.clone()
    }

    /// Another store on the same data, as a second node (or a restarted
    /// process) would open it.
    fn reopen(&self) -> Arc<dyn Backend> {
        (self.open)()
    }

    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let open = move || Arc::new(SqliteStore::open_dir(&path).unwrap()) as Arc<dyn Backend>;
        Fixture { store: open(), open: Box::new(open), name: "sqlite", _data: Box::new(dir) }
    }

    #[cfg(feature = "postgres")]
    fn postgres() -> Fixture {
        let db = pg::TestDb::create();
        let url = db.url.clone();
        let open = move || Arc::new(PgStore::connect(&url).unwrap()) as Arc<dyn Backend>;
        Fixture { store: open(), open: Box::new(open), name: "postgres", _data: Box::new(db) }
    }
}

#[cfg(feature = "postgres")]
pub mod pg {
    /// The database the tests connect to in order to create their own.
    pub fn admin_url() -> String {
        std::env::var("SMARTLINK_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A database of one test's own, dropped when this is (a test that
    /// panics drops it while unwinding).
    pub struct TestDb {
        pub url: String,
        name: String,
    }

    impl TestDb {
        pub fn create() -> TestDb {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let admin = admin_url();
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is unreachable at {admin} ({e}): the `postgres` feature's tests need it \
                     (set SMARTLINK_TEST_PG to another database URL)"
                )
            });
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            let name = format!("smartlink_test_{}_{}_{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
            c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            let (head, _) = admin.rsplit_once('/').expect("a database URL ends with /DATABASE");
            TestDb { url: format!("{head}/{name}"), name }
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            match postgres::Client::connect(&admin_url(), postgres::NoTls) {
                Ok(mut c) => {
                    if let Err(e) = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
                        eprintln!("could not drop the test database {}: {e}", self.name);
                    }
                }
                Err(e) => eprintln!("could not drop the test database {}: {e}", self.name),
            }
        }
    }
}

/// Instantiates each behaviour test once per store.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::Fixture::sqlite()); } )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $( #[test] fn $name() { super::$name(&super::Fixture::postgres()); } )*
        }
    };
}

conformance!(
    keys_are_stable_never_reused_and_survive_deletes,
    history_filters_by_kind_and_entity_and_keeps_events,
    direct_links_are_listed_with_their_link_keys,
    meta_values_are_set_and_replaced,
    definition_changes_from_two_stores_at_once_all_land,
    data_survives_reopening,
    click_batches_are_idempotent_and_counted_per_offer,
    rollup_windows_are_exact_to_the_millisecond_at_both_edges,
    every_breakdown_reconciles_with_the_total_and_the_raw_events,
    a_large_click_batch_loads_and_its_rollups_reconcile_with_the_raw_rows,
    a_cost_import_spreads_the_amount_over_its_clicks_exactly_and_replaces_their_cost,
    click_pages_cover_every_row_once_even_within_one_second,
    click_log_pages_are_exact_under_concurrent_inserts,
    click_log_filters_by_time_entities_sub_ids_quality_and_reasons,
    dedup_transitions_history_and_outbox_are_consistent,
    dedup_and_status_follow_the_status_machine_for_any_sequence,
    the_same_postbacks_from_two_stores_at_once_are_recorded_once,
    click_loads_and_postbacks_on_the_same_cells_from_two_stores_all_land_in_the_rollups,
    a_postback_the_database_refuses_fails_alone_and_the_rest_of_its_batch_commits,
    a_status_change_keeps_its_source_and_reason_in_the_history,
    conversions_are_listed_by_filter_newest_first_with_their_click_sub_ids,
    outbox_attempts_move_items_between_states,
    a_claimed_delivery_is_not_claimed_again_until_its_lease_runs_out,
    deliveries_claimed_from_two_stores_at_once_are_never_taken_twice,
    alerts_are_stored_once_per_dedup_key_newest_first,
    a_digest_is_stored_once_per_smartlink_and_period_and_its_delivery_moves_through_states,
    the_feed_reads_every_row_after_a_mark_once,
    source_counts_audit_clicks_and_fallback_segments_read_the_raw_rows,
);

// ---------------------------------------------------------------------------
// Helpers.

fn put(kind: Kind, id: &str, spec: &str) -> Change {
    Change::Put { kind, id: id.into(), spec: spec.into() }
}

fn pb(click: &str, txid: &str, status: ConvStatus, payout: Option<f64>, ts: i64) -> PostbackIn {
    PostbackIn {
        click_id: click.into(),
        event: "conversion".into(),
        txid: txid.into(),
        status,
        payout,
        currency: "USD".into(),
        payout_base: payout,
        smartlink: 1,
        offer: 2,
        affiliate: Some(3),
        country: "US".into(),
        device: "mobile".into(),
        os: "ios".into(),
        browser: "safari".into(),
        language: "en".into(),
        quality: "human".into(),
        quality_flags: String::new(),
        click_ts_ms: 1_000,
        ts_ms: ts,
        over_cap: false,
        default_payout: 9.0,
        default_payout_base: 9.0,
        source: "postback".into(),
        reason: None,
        outbound: vec![OutboundTarget {
            target: "affiliate:a".into(),
            url: "https://a.example/?c={click_id}".into(),
            statuses: vec![ConvStatus::Approved, ConvStatus::Chargeback],
            payout_share: 0.5,
        }],
        cost_base: 0.0,
    }
}

fn record(s: &dyn Backend, batch: &[PostbackIn]) -> Vec<Recorded> {
    s.record_postbacks(batch).unwrap().into_iter().map(|r| r.unwrap()).collect()
}

/// A tiny deterministic generator (xorshift) for test data.
struct Gen(u64);
impl Gen {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
    fn pick(&mut self, xs: &[&str]) -> String {
        xs[self.next(xs.len() as u64) as usize].to_string()
    }
}

fn total(s: &dyn Backend, q: &RollupQuery) -> Measures {
    let mut m = Measures::default();
    s.rollup(q).unwrap().iter().for_each(|(_, x)| m.add(x));
    m
}

fn all_time() -> RollupQuery {
    RollupQuery { from_ms: 0, to_ms: i64::MAX, ..Default::default() }
}

// ---------------------------------------------------------------------------
// Definitions.

fn keys_are_stable_never_reused_and_survive_deletes(f: &Fixture) {
    let s = f.s();
    s.apply(&[put(Kind::Offer, "a", "{}"), put(Kind::Offer, "b", "{}")], "test").unwrap();
    s.apply(&[Change::Delete { kind: Kind::Offer, id: "a".into() }], "test").unwrap();
    s.apply(&[put(Kind::Offer, "c", "{}"), put(Kind::Offer, "a", "{\"x\":1}")], "api").unwrap();
    // Re-applying an identical spec is not a change.
    s.apply(&[put(Kind::Offer, "b", "{}")], "file").unwrap();
    let h = s.history(Some(Kind::Offer), Some("a"), 10).unwrap();
    let got: Vec<(&str, Option<&str>, Option<&str>, &str)> =
        h.iter().map(|r| (r.action.as_str(), r.old_spec.as_deref(), r.new_spec.as_deref(), r.actor.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("create", None, Some("{\"x\":1}"), "api"),
            ("delete", Some("{}"), None, "test"),
            ("create", None, Some("{}"), "test")
        ]
    );
    assert_eq!(s.history(None, None, 100).unwrap().len(), 5);
    let got: Vec<_> = s.entities().unwrap().into_iter().map(|e| (e.id, e.key, e.spec)).collect();
    assert_eq!(
        got,
        vec![("a".into(), 1, "{\"x\":1}".into()), ("b".into(), 2, "{}".into()), ("c".into(), 3, "{}".into())]
    );
    // Keys count per kind; a deleted id keeps its key and a new id never
    // takes it.
    s.apply(&[put(Kind::Affiliate, "x", "{}"), Change::Delete { kind: Kind::Offer, id: "c".into() }], "api").unwrap();
    s.apply(&[put(Kind::Offer, "d", "{}")], "api").unwrap();
    let offers: Vec<(String, u32)> =
        s.keys().unwrap().into_iter().filter(|(k, _, _)| *k == Kind::Offer).map(|(_, id, k)| (id, k)).collect();
    assert_eq!(offers, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3), ("d".into(), 4)]);
    assert!(s.keys().unwrap().contains(&(Kind::Affiliate, "x".into(), 1)));
    assert!(!s.entities().unwrap().iter().any(|e| e.id == "c"));
}

fn history_filters_by_kind_and_entity_and_keeps_events(f: &Fixture) {
    let s = f.s();
    s.apply(&[put(Kind::Offer, "o", "{\"v\":1}"), put(Kind::Smartlink, "o", "{}")], "api").unwrap();
    s.apply(&[put(Kind::Offer, "o", "{\"v\":2}")], "file:defs.yaml").unwrap();
    s.record_event(Kind::Offer, "o", "daily cap \"reached\"", 12_345).unwrap();
    let h = s.history(Some(Kind::Offer), Some("o"), 10).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(
        (h[0].action.as_str(), h[0].actor.as_str(), h[0].ts_ms, h[0].new_spec.as_deref()),
        ("event", "system", 12_345, Some("{\"event\":\"daily cap \\\"reached\\\"\"}"))
    );
    assert_eq!((h[1].action.as_str(), h[1].old_spec.as_deref()), ("update", Some("{\"v\":1}")));
    assert!(h.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(s.history(Some(Kind::Smartlink), None, 10).unwrap().len(), 1);
    assert_eq!(s.history(None, Some("o"), 10).unwrap().len(), 4);
    assert_eq!(s.history(None, None, 2).unwrap().len(), 2);
}

fn direct_links_are_listed_with_their_link_keys(f: &Fixture) {
    let s = f.s();
    s.apply(&[put(Kind::Offer, "o1", "{}"), put(Kind::Smartlink, "s1", "{}")], "api").unwrap();
    let keys = s.keys().unwrap();
    let link = smartlink_core::model::direct_link_key(1);
    assert!(keys.contains(&(Kind::Smartlink, direct_link_name("o1"), link)), "{keys:?}");
    assert!(keys.contains(&(Kind::Smartlink, "s1".into(), 1)));
    assert!(keys.contains(&(Kind::Offer, "o1".into(), 1)));
}

fn meta_values_are_set_and_replaced(f: &Fixture) {
    let s = f.s();
    assert_eq!(s.meta("k").unwrap(), None);
    s.set_meta("k", "one").unwrap();
    s.set_meta("k", "two").unwrap();
    s.set_meta("other", "").unwrap();
    assert_eq!(s.meta("k").unwrap().as_deref(), Some("two"));
    assert_eq!(s.meta("other").unwrap().as_deref(), Some(""));
}

fn definition_changes_from_two_stores_at_once_all_land(f: &Fixture) {
    let stores = [f.arc(), f.reopen()];
    let threads: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    // Both nodes create new ids and update one shared id.
                    s.apply(
                        &[
                            put(Kind::Offer, &format!("n{n}-{i}"), "{}"),
                            put(Kind::Offer, "shared", &format!("{n}-{i}")),
                        ],
                        &format!("node{n}"),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let s = f.s();
    let offers = s.entities().unwrap();
    assert_eq!(offers.len(), 51, "every id created on either node is there");
    let mut keys: Vec<u32> = offers.iter().map(|e| e.key).collect();
    keys.sort();
    assert_eq!(keys, (1..=51).collect::<Vec<_>>(), "keys unique and dense: no change lost or merged");
    // Every update of the shared id is in its history, each one's old spec
    // the one before it (serialised, none lost).
    let h = s.history(Some(Kind::Offer), Some("shared"), 100).unwrap();
    assert_eq!(h.len(), 50);
    for w in h.windows(2) {
        assert_eq!(w[0].old_spec, w[1].new_spec, "{:?} follows {:?}", w[0], w[1]);
    }
}

fn data_survives_reopening(f: &Fixture) {
    f.s().set_meta("config_hash", "abc").unwrap();
    f.s().insert_clicks(&[ClickRow { click_id: "k".into(), ..Default::default() }]).unwrap();
    f.s().apply(&[put(Kind::Source, "src", "{}")], "api").unwrap();
    let again = f.reopen();
    assert_eq!(again.meta("config_hash").unwrap().as_deref(), Some("abc"));
    assert_eq!(again.count_clicks().unwrap(), 1);
    assert_eq!(again.entities().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// Clicks and rollups.

fn click_batches_are_idempotent_and_counted_per_offer(f: &Fixture) {
    let s = f.s();
    let click = |id: &str, ts, offer| ClickRow { click_id: id.into(), ts_ms: ts, offer, ..Default::default() };
    let batch = vec![
        click("x", 10_000, Some(1)),
        click("y", 20_000, Some(1)),
        click("z", 30_000, None),
        click("w", 40_000, Some(2)),
    ];
    s.insert_clicks(&batch).unwrap();
    s.insert_clicks(&batch[..2]).unwrap();
    s.insert_clicks(&[]).unwrap();
    // A batch that repeats a row within itself counts it once too.
    s.insert_clicks(&[click("v", 50_000, Some(2)), click("v", 50_000, Some(2))]).unwrap();
    assert_eq!(s.count_clicks().unwrap(), 5);
    assert_eq!(s.click_counts(0, 35_000).unwrap(), vec![(1, 2)]);
    let since: Vec<_> = s.clicks_since(20_000, None, 10).unwrap().into_iter().map(|c| c.click_id).collect();
    assert_eq!(since, vec!["y", "z", "w", "v"]);
    assert_eq!(total(s, &all_time()).clicks, 5, "the rollups counted each row once");
    assert_eq!(total(s, &all_time()).fallback_clicks, 1);
}

fn rollup_windows_are_exact_to_the_millisecond_at_both_edges(f: &Fixture) {
    let s = f.s();
    // One click every 10 minutes for 3 hours, each with sub1 "s"; every
    // third one converts (revenue 1 each).
    let clicks: Vec<ClickRow> = (0..18)
        .map(|i| ClickRow {
            click_id: format!("k{i:02}"),
            ts_ms: HOUR_MS + i * 600_000,
            smartlink: 1,
            offer: Some(1),
            country: "US".into(),
            subs: ["s".into(), String::new(), String::new(), String::new(), String::new()],
            cost: 0.25,
            ..Default::default()
        })
        .collect();
    s.insert_clicks(&clicks).unwrap();
    let convs: Vec<PostbackIn> = clicks
        .iter()
        .step_by(3)
        .map(|c| PostbackIn {
            click_ts_ms: c.ts_ms,
            smartlink: 1,
            country: "US".into(),
            ..pb(&c.click_id, "t", ConvStatus::Approved, Some(1.0), c.ts_ms + 1)
        })
        .collect();
    record(s, &convs);
    let window = |from_ms: i64, to_ms: i64, filters: Vec<(Dim, Vec<DimValue>)>| {
        let q = RollupQuery { from_ms, to_ms, filters, group: vec![Dim::Country], reasons: vec![] };
        let rows = s.rollup(&q).unwrap();
        let m = rows.first().map(|(_, m)| *m).unwrap_or_default();
        (m.clicks, m.approved, (m.cost * 100.0).round() as i64)
    };
    let raw = || vec![(Dim::Sub(1), vec![DimValue::Text("s".into())])];
    let cases = [
        ((0, HOUR_MS), (6, 2)),
        ((1, HOUR_MS), (5, 1)),
        ((600_000, 1_200_001), (2, 0)),
        ((30 * 60_000, HOUR_MS + 30 * 60_000), (6, 2)),
        ((-HOUR_MS, 4 * HOUR_MS), (18, 6)),
        ((HOUR_MS + 1, 2 * HOUR_MS + 1), (6, 2)),
    ];
    for ((a, b), (n, conv)) in cases {
        let (from, to) = (HOUR_MS + a, HOUR_MS + b);
        let got = window(from, to, vec![]);
        assert_eq!(got, (n, conv, n as i64 * 25), "[{a}, {b})");
        assert_eq!(window(from, to, raw()), got, "the raw rows agree on [{a}, {b})");
    }
}

fn random_clicks(g: &mut Gen, n: usize, from_ms: i64, hours: u64) -> Vec<ClickRow> {
    (0..n)
        .map(|i| {
            let offer = g.next(5) as u32; // 0 = fallback
            ClickRow {
                click_id: format!("c{i}"),
                ts_ms: from_ms + g.next(hours) as i64 * HOUR_MS + g.next(HOUR_MS as u64) as i64,
                smartlink: 1 + g.next(2) as u32,
                offer: (offer != 0).then_some(offer),
                affiliate: (g.next(3) != 0).then(|| g.next(3) as u32 + 1),
                country: g.pick(&["US", "DE", "BR"]),
                device: g.pick(&["mobile", "desktop"]),
                os: g.pick(&["ios", "android", "windows"]),
                browser: g.pick(&["chrome", "safari"]),
                language: g.pick(&["en", "de", ""]),
                quality: g.pick(&["human", "human", "suspect", "bot", "preview", ""]),
                quality_reasons: g.pick(&["", "", "crawler", "datacenter,rate_ip"]),
                subs: [
                    g.pick(&["pub1", "pub2", "pub3", ""]),
                    g.pick(&["x", "y"]),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
                source: (g.next(2) == 0).then(|| g.next(3) as u32 + 1),
                cost: g.next(100) as f64 / 1000.0,
                ..Default::default()
            }
        })
        .collect()
}

const DIMS: [Dim; 11] = [
    Dim::Smartlink,
    Dim::Offer,
    Dim::Affiliate,
    Dim::Country,
    Dim::Device,
    Dim::Os,
    Dim::Browser,
    Dim::Language,
    Dim::Quality,
    Dim::Hour,
    Dim::Day,
];

fn every_breakdown_reconciles_with_the_total_and_the_raw_events(f: &Fixture) {
    let s = f.s();
    let mut g = Gen(0x9e3779b97f4a7c15);
    let t0 = 1_767_571_200_000;
    let clicks = random_clicks(&mut g, 3000, t0, 72);
    for chunk in clicks.chunks(700) {
        s.insert_clicks(chunk).unwrap();
    }
    s.insert_clicks(&clicks[..500]).unwrap(); // a replayed batch counts once
    let mut pbs = Vec::new();
    for c in clicks.iter().filter(|c| c.offer.is_some()).step_by(7) {
        let seq: &[ConvStatus] = match g.next(4) {
            0 => &[ConvStatus::Approved],
            1 => &[ConvStatus::Pending, ConvStatus::Approved, ConvStatus::Chargeback],
            2 => &[ConvStatus::Pending, ConvStatus::Rejected, ConvStatus::Approved],
            _ => &[ConvStatus::Pending],
        };
        for (j, st) in seq.iter().enumerate() {
            let payout = (j == 0).then_some(1.0 + g.next(300) as f64 / 100.0);
            pbs.push(PostbackIn {
                click_id: c.click_id.clone(),
                smartlink: c.smartlink,
                offer: c.offer.unwrap(),
                affiliate: c.affiliate,
                country: c.country.clone(),
                device: c.device.clone(),
                os: c.os.clone(),
                browser: c.browser.clone(),
                language: c.language.clone(),
                quality: c.quality.clone(),
                click_ts_ms: c.ts_ms,
                outbound: vec![],
                cost_base: 0.1,
                ..pb(&c.click_id, "", *st, payout, c.ts_ms + 60_000)
            });
        }
    }
    for chunk in pbs.chunks(100) {
        record(s, chunk);
    }

    let all = all_time();
    let t = s.rollup(&all).unwrap()[0].1;
    let raw = s.conversions(&ConversionFilter { limit: 1_000_000, ..Default::default() }).unwrap();
    let count = |st: ConvStatus| raw.iter().filter(|c| c.status == st).count() as u64;
    let revenue: f64 = raw.iter().filter(|c| c.status == ConvStatus::Approved).map(|c| c.payout_base).sum();
    let cost: f64 = clicks.iter().map(|c| c.cost).sum::<f64>()
        + raw.iter().filter(|c| c.status == ConvStatus::Approved).map(|c| c.cost).sum::<f64>();
    assert_eq!(t.clicks, 3000);
    assert_eq!(t.fallback_clicks, clicks.iter().filter(|c| c.offer.is_none()).count() as u64);
    assert_eq!(
        (t.approved, t.pending, t.rejected, t.chargebacks),
        (
            count(ConvStatus::Approved),
            count(ConvStatus::Pending),
            count(ConvStatus::Rejected),
            count(ConvStatus::Chargeback)
        )
    );
    assert!((t.revenue - revenue).abs() < 1e-6, "{} vs {revenue}", t.revenue);
    assert!((t.cost - cost).abs() < 1e-6, "{} vs {cost}", t.cost);
    assert!(t.approved > 0 && t.chargebacks > 0 && t.pending > 0);

    // Every single dimension and every pair sums to the total.
    let mut groups: Vec<Vec<Dim>> = DIMS.iter().map(|d| vec![*d]).collect();
    for (i, a) in DIMS.iter().enumerate() {
        for b in &DIMS[i + 1..] {
            groups.push(vec![*a, *b]);
        }
    }
    // Raw-row groupings (sub-ids, the traffic source, reasons) too.
    groups.extend([
        vec![Dim::Sub(1)],
        vec![Dim::Sub(1), Dim::Offer],
        vec![Dim::Sub(2), Dim::Country, Dim::Hour],
        vec![Dim::Source],
        vec![Dim::Source, Dim::Day],
    ]);
    for group in groups {
        let rows = s.rollup(&RollupQuery { group: group.clone(), ..all.clone() }).unwrap();
        let mut sum = Measures::default();
        rows.iter().for_each(|(_, m)| sum.add(m));
        assert_eq!(
            (sum.clicks, sum.fallback_clicks, sum.approved, sum.pending, sum.rejected, sum.chargebacks),
            (t.clicks, t.fallback_clicks, t.approved, t.pending, t.rejected, t.chargebacks),
            "{group:?}"
        );
        assert!((sum.revenue - t.revenue).abs() < 1e-6, "{group:?}");
        assert!((sum.cost - t.cost).abs() < 1e-6, "{group:?}");
    }
    let pub1 = s
        .rollup(&RollupQuery { filters: vec![(Dim::Sub(1), vec![DimValue::Text("pub1".into())])], ..all.clone() })
        .unwrap()[0]
        .1;
    assert_eq!(pub1.clicks, clicks.iter().filter(|c| c.subs[0] == "pub1").count() as u64);
    let source2 =
        s.rollup(&RollupQuery { filters: vec![(Dim::Source, vec![DimValue::Key(2)])], ..all.clone() }).unwrap()[0].1;
    assert_eq!(source2.clicks, clicks.iter().filter(|c| c.source == Some(2)).count() as u64);

    // Reasons: filtered from raw rows; grouped, a click counts once per code.
    let flagged_ids: std::collections::HashSet<&str> =
        clicks.iter().filter(|c| !c.quality_reasons.is_empty()).map(|c| c.click_id.as_str()).collect();
    let by_reason = RollupQuery { reasons: vec!["crawler".into(), "datacenter".into()], ..all.clone() };
    let rt = s.rollup(&by_reason).unwrap()[0].1;
    let rconv = |st: ConvStatus| {
        raw.iter().filter(|c| c.status == st && flagged_ids.contains(c.click_id.as_str())).count() as u64
    };
    assert_eq!(
        (rt.clicks, rt.approved, rt.pending, rt.rejected, rt.chargebacks),
        (
            flagged_ids.len() as u64,
            rconv(ConvStatus::Approved),
            rconv(ConvStatus::Pending),
            rconv(ConvStatus::Rejected),
            rconv(ConvStatus::Chargeback)
        )
    );
    let one = |r: &str| s.rollup(&RollupQuery { reasons: vec![r.into()], ..all.clone() }).unwrap()[0].1;
    assert_eq!(one("crawler").clicks + one("datacenter").clicks, rt.clicks, "disjoint reasons add up");
    assert_eq!(one("rate_ip").clicks, one("datacenter").clicks, "a code matches whole codes in the list");
    assert_eq!(one("rate").clicks, 0, "never a prefix");
    let grouped = s.rollup(&RollupQuery { group: vec![Dim::Reason], ..all.clone() }).unwrap();
    let per: std::collections::BTreeMap<String, u64> = grouped
        .iter()
        .map(|(k, m)| match &k[0] {
            DimValue::Text(t) => (t.clone(), m.clicks),
            other => panic!("{other:?}"),
        })
        .collect();
    let want = |code: &str| clicks.iter().filter(|c| c.quality_reasons.split(',').any(|x| x == code)).count() as u64;
    assert_eq!(per.get("").copied(), Some(want("")), "no reason counts under the empty code");
    assert_eq!(per.get("datacenter").copied(), Some(want("datacenter")));
    assert_eq!(per.get("rate_ip").copied(), Some(want("rate_ip")));
    assert_eq!(per.get("crawler").copied(), Some(want("crawler")));
    assert!(matches!(
        s.rollup(&RollupQuery { filters: vec![(Dim::Reason, vec![])], ..all.clone() }),
        Err(StoreError::Invalid(_))
    ));

    // Windows with partial days at both ends, per offer, country and day.
    let span = RollupQuery { from_ms: t0 + 5 * HOUR_MS + 17, to_ms: t0 + 50 * HOUR_MS - 3, ..all.clone() };
    let inside = |c: &&ClickRow| (span.from_ms..span.to_ms).contains(&c.ts_ms);
    for d in [Dim::Offer, Dim::Country, Dim::Day, Dim::Hour] {
        let rows = s.rollup(&RollupQuery { group: vec![d], ..span.clone() }).unwrap();
        for (k, m) in &rows {
            let want = clicks
                .iter()
                .filter(inside)
                .filter(|c| match (&k[0], d) {
                    (DimValue::Key(o), _) => c.offer.unwrap_or(0) == *o,
                    (DimValue::Text(t), _) => &c.country == t,
                    (DimValue::Hour(day), Dim::Day) => c.ts_ms.div_euclid(DAY_MS) * DAY_MS == *day,
                    (DimValue::Hour(h), _) => c.ts_ms.div_euclid(HOUR_MS) * HOUR_MS == *h,
                })
                .count() as u64;
            assert_eq!(m.clicks, want, "{d:?} {k:?}");
        }
        let sum: u64 = rows.iter().map(|(_, m)| m.clicks).sum();
        assert_eq!(sum, clicks.iter().filter(inside).count() as u64, "{d:?}");
    }
    // A filtered window agrees with the raw rows (a sub-id filter that
    // matches everything forces them).
    let us =
        vec![(Dim::Country, vec![DimValue::Text("US".into())]), (Dim::Offer, vec![DimValue::Key(1), DimValue::Key(0)])];
    let via_rollup = total(s, &RollupQuery { filters: us.clone(), group: vec![Dim::Device], ..span.clone() });
    let mut forced = us.clone();
    forced.push((Dim::Sub(2), vec![DimValue::Text("x".into()), DimValue::Text("y".into())]));
    let via_rows = total(s, &RollupQuery { filters: forced, group: vec![Dim::Device], ..span.clone() });
    assert_eq!(
        (via_rollup.clicks, via_rollup.approved, via_rollup.pending),
        (via_rows.clicks, via_rows.approved, via_rows.pending)
    );
    assert!((via_rollup.revenue - via_rows.revenue).abs() < 1e-6);
    assert!((via_rollup.cost - via_rows.cost).abs() < 1e-6);
    assert_eq!(
        via_rollup.clicks,
        clicks.iter().filter(inside).filter(|c| c.country == "US" && matches!(c.offer, None | Some(1))).count() as u64
    );
}

/// Also measures ingest: the rate is printed (run with `--nocapture`).
fn a_large_click_batch_loads_and_its_rollups_reconcile_with_the_raw_rows(f: &Fixture) {
    let s = f.s();
    let mut g = Gen(42);
    let t0 = 1_767_571_200_000;
    let mut clicks = random_clicks(&mut g, 50_000, t0, 24);
    for (i, c) in clicks.iter_mut().enumerate() {
        c.click_id = format!("big{i:06}");
        c.ip = format!("10.0.{}.{}", i / 256 % 256, i % 256);
        c.user_agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15".into();
        c.referrer = "https://news.example/article".into();
        c.reason = "best_score".into();
        c.propensity = 0.25;
    }
    let started = std::time::Instant::now();
    s.insert_clicks(&clicks).unwrap();
    let took = started.elapsed();
    eprintln!(
        "{}: {} clicks of 24 hours in one batch in {:.0} ms = {:.0} rows/s",
        f.name,
        clicks.len(),
        took.as_secs_f64() * 1e3,
        clicks.len() as f64 / took.as_secs_f64()
    );
    assert_eq!(s.count_clicks().unwrap(), 50_000);
    // The same in one hour of traffic (hundreds of rollup cells, not tens
    // of thousands): what a live batch looks like.
    let hour: Vec<ClickRow> = clicks
        .iter()
        .enumerate()
        .map(|(i, c)| ClickRow {
            click_id: format!("hour{i:06}"),
            ts_ms: t0 + 30 * HOUR_MS + (i as i64 * 71) % HOUR_MS,
            os: String::new(),
            browser: String::new(),
            language: String::new(),
            ..c.clone()
        })
        .collect();
    let started = std::time::Instant::now();
    s.insert_clicks(&hour).unwrap();
    let took = started.elapsed();
    eprintln!(
        "{}: {} clicks of one hour in one batch in {:.0} ms = {:.0} rows/s",
        f.name,
        hour.len(),
        took.as_secs_f64() * 1e3,
        hour.len() as f64 / took.as_secs_f64()
    );
    clicks.extend(hour);
    assert_eq!(s.count_clicks().unwrap(), 100_000);
    let t = total(s, &all_time());
    assert_eq!(t.clicks, 100_000);
    let cost: f64 = clicks.iter().map(|c| c.cost).sum();
    assert!((t.cost - cost).abs() < 1e-6);
    for d in [Dim::Offer, Dim::Country, Dim::Hour] {
        let via_rollup = s.rollup(&RollupQuery { group: vec![d], ..all_time() }).unwrap();
        let mut via_rows = s
            .rollup(&RollupQuery {
                group: vec![d],
                filters: vec![(Dim::Sub(2), vec![DimValue::Text("x".into()), DimValue::Text("y".into())])],
                ..all_time()
            })
            .unwrap();
        let mut via_rollup: Vec<_> = via_rollup.into_iter().map(|(k, m)| (format!("{k:?}"), m.clicks)).collect();
        let mut rows: Vec<_> = via_rows.drain(..).map(|(k, m)| (format!("{k:?}"), m.clicks)).collect();
        via_rollup.sort();
        rows.sort();
        assert_eq!(via_rollup, rows, "{d:?}");
    }
}

fn a_cost_import_spreads_the_amount_over_its_clicks_exactly_and_replaces_their_cost(f: &Fixture) {
    let s = f.s();
    let cost_by = |group: Vec<Dim>, filters: Vec<(Dim, Vec<DimValue>)>| -> Vec<(Vec<DimValue>, f64)> {
        let q = RollupQuery { from_ms: 0, to_ms: 10 * HOUR_MS, filters, group, reasons: vec![] };
        let mut out: Vec<_> =
            s.rollup(&q).unwrap().into_iter().map(|(k, m)| (k, (m.cost * 1e6).round() / 1e6)).collect();
        out.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        out
    };
    let click = |i: usize, link: u32, country: &str, quality: &str| ClickRow {
        click_id: format!("c{i:03}"),
        ts_ms: 1_000 + i as i64 * 60_000,
        smartlink: link,
        country: country.into(),
        quality: quality.into(),
        subs: ["z1".into(), String::new(), String::new(), String::new(), String::new()],
        cost: 0.5,
        ..Default::default()
    };
    let mut batch: Vec<ClickRow> = (0..7).map(|i| click(i, 1, if i < 4 { "US" } else { "DE" }, "human")).collect();
    batch[6].quality = "bot".into();
    batch.extend((7..9).map(|i| click(i, 2, "US", "human")));
    s.insert_clicks(&batch).unwrap();
    let link = |k| vec![(Dim::Smartlink, vec![DimValue::Key(k)])];
    assert_eq!(cost_by(vec![], link(1)), vec![(vec![], 3.5)]);
    let imp = CostImport {
        from_ms: 0,
        to_ms: 10 * HOUR_MS,
        filters: link(1),
        amount: 10.0,
        description: "link 1".into(),
        actor: "test".into(),
        ts_ms: 5,
    };
    let done = s.import_costs(&imp).unwrap();
    assert_eq!((done.clicks, done.replaced), (7, 3.5));
    assert_eq!(cost_by(vec![], link(1)), vec![(vec![], 10.0)]);
    assert_eq!(cost_by(vec![], link(2)), vec![(vec![], 1.0)]);
    let by_country = cost_by(vec![Dim::Country], link(1));
    assert_eq!(
        by_country,
        vec![(vec![DimValue::Text("DE".into())], 4.285713), (vec![DimValue::Text("US".into())], 5.714287)]
    );
    let mut raw = link(1);
    raw.push((Dim::Sub(1), vec![DimValue::Text("z1".into())]));
    assert_eq!(cost_by(vec![Dim::Country], raw), by_country);
    s.import_costs(&CostImport { amount: 7.0, ..imp.clone() }).unwrap();
    assert_eq!(cost_by(vec![], link(1)), vec![(vec![], 7.0)]);
    let imports = s.cost_imports(10).unwrap();
    assert_eq!(imports.len(), 2);
    assert_eq!((imports[0].amount, imports[0].clicks, imports[0].description.as_str()), (7.0, 7, "link 1"));
    assert!(imports[0].id > imports[1].id, "newest first");
    for bad in [
        CostImport { filters: link(9), ..imp.clone() },
        CostImport { amount: -1.0, ..imp.clone() },
        CostImport { amount: f64::NAN, ..imp.clone() },
        CostImport { to_ms: 0, ..imp.clone() },
    ] {
        assert!(matches!(s.import_costs(&bad), Err(StoreError::Invalid(_))), "{bad:?}");
    }
    assert_eq!(cost_by(vec![], link(1)), vec![(vec![], 7.0)]);
    assert_eq!(s.cost_imports(10).unwrap().len(), 2, "a refused import is not recorded");
}

fn click_pages_cover_every_row_once_even_within_one_second(f: &Fixture) {
    let s = f.s();
    let rows: Vec<ClickRow> = (0..25)
        .map(|i| ClickRow { click_id: format!("c{i:02}"), ts_ms: 5_000 + (i % 3) * 400, ..Default::default() })
        .collect();
    s.insert_clicks(&rows).unwrap();
    let (mut from, mut after, mut seen) = (0, None::<String>, Vec::new());
    loop {
        let page = s.clicks_since(from, after.as_deref(), 4).unwrap();
        let Some(last) = page.last() else { break };
        (from, after) = (last.ts_ms, Some(last.click_id.clone()));
        seen.extend(page.into_iter().map(|c| c.click_id));
    }
    let mut want: Vec<_> = rows.iter().map(|c| c.click_id.clone()).collect();
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(s.clicks_since(5_401, None, 100).unwrap().len(), 8);
}

fn click_log_pages(s: &dyn Backend, q: &ClickQuery) -> Vec<ClickRow> {
    let (mut q, mut out) = (q.clone(), Vec::new());
    loop {
        let page = s.click_log(&q).unwrap();
        let Some(last) = page.last() else { return out };
        q.before = Some((last.ts_ms, last.click_id.clone()));
        out.extend(page);
    }
}

fn click_log_pages_are_exact_under_concurrent_inserts(f: &Fixture) {
    let s = f.arc();
    // Many clicks share a second and some a millisecond; ids that sort
    // differently in a language's collation than bytewise.
    let rows: Vec<ClickRow> = (0..300)
        .map(|i| ClickRow {
            click_id: format!("{}{:03}", ["c", "C", "_c", "c-"][i as usize % 4], (i * 37) % 300),
            ts_ms: 5_000 + (i / 4) * 7,
            ..Default::default()
        })
        .collect();
    s.insert_clicks(&rows).unwrap();
    let mut q = ClickQuery { limit: 7, ..Default::default() };
    let first = s.click_log(&q).unwrap();
    q.before = first.last().map(|c| (c.ts_ms, c.click_id.clone()));
    let writer = {
        let s = f.reopen();
        std::thread::spawn(move || {
            for b in 0..50 {
                let batch: Vec<ClickRow> = (0..5)
                    .map(|i| ClickRow { click_id: format!("n{b:02}{i}"), ts_ms: 10_000 + b * 10, ..Default::default() })
                    .collect();
                s.insert_clicks(&batch).unwrap();
            }
        })
    };
    let mut seen = first;
    seen.extend(click_log_pages(&*s, &q));
    writer.join().unwrap();
    let keys: Vec<(i64, String)> = seen.iter().map(|c| (c.ts_ms, c.click_id.clone())).collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "strictly newest first in byte order, no row twice");
    for r in &rows {
        assert_eq!(seen.iter().filter(|c| c.click_id == r.click_id).count(), 1, "{} exactly once", r.click_id);
    }
    assert!(!seen.iter().any(|c| c.click_id.starts_with('n')), "newer clicks never land in a later page");
}

fn click_log_filters_by_time_entities_sub_ids_quality_and_reasons(f: &Fixture) {
    let s = f.s();
    let click = |id: &str, ts: i64, aff: Option<u32>, sub1: &str, q: &str, reasons: &str| ClickRow {
        click_id: id.into(),
        ts_ms: ts,
        smartlink: 1,
        affiliate: aff,
        subs: [sub1.into(), String::new(), String::new(), String::new(), String::new()],
        quality: q.into(),
        quality_reasons: reasons.into(),
        ..Default::default()
    };
    s.insert_clicks(&[
        click("a", 1_000, Some(1), "x", "human", ""),
        click("b", 2_500, Some(2), "y", "bot", "bot_ua,headless"),
        click("c", 3_999, None, "x", "suspect", "dup"),
        click("d", 4_000, Some(1), "y", "human", ""),
    ])
    .unwrap();
    let ids = |q: ClickQuery| -> Vec<String> {
        s.click_log(&ClickQuery { limit: 100, ..q }).unwrap().into_iter().map(|c| c.click_id).collect()
    };
    assert_eq!(ids(ClickQuery::default()), ["d", "c", "b", "a"]);
    assert_eq!(ids(ClickQuery { from_ms: Some(2_500), to_ms: Some(4_000), ..Default::default() }), ["c", "b"]);
    let by = |d: Dim, v: Vec<DimValue>| ClickQuery { filters: vec![(d, v)], ..Default::default() };
    assert_eq!(ids(by(Dim::Affiliate, vec![DimValue::Key(1)])), ["d", "a"]);
    assert_eq!(ids(by(Dim::Affiliate, vec![DimValue::Key(0), DimValue::Key(2)])), ["c", "b"]);
    assert_eq!(ids(by(Dim::Affiliate, vec![DimValue::Key(1), DimValue::Key(2)])), ["d", "b", "a"]);
    assert_eq!(ids(by(Dim::Sub(1), vec![DimValue::Text("x".into())])), ["c", "a"]);
    assert_eq!(ids(by(Dim::Quality, vec![DimValue::Text("bot".into())])), ["b"]);
    assert_eq!(ids(ClickQuery { reasons: vec!["headless".into(), "dup".into()], ..Default::default() }), ["c", "b"]);
    assert_eq!(ids(ClickQuery { reasons: vec!["head".into()], ..Default::default() }), Vec::<String>::new());
    let first_two: Vec<String> =
        s.click_log(&ClickQuery { limit: 2, ..Default::default() }).unwrap().into_iter().map(|c| c.click_id).collect();
    assert_eq!(first_two, ["d", "c"]);
    assert_eq!(ids(ClickQuery { before: Some((3_999, "c".into())), ..Default::default() }), ["b", "a"]);
    let b = s.click(2, "b").unwrap().unwrap();
    assert_eq!((b.quality_reasons.as_str(), b.affiliate, b.subs[0].as_str()), ("bot_ua,headless", Some(2), "y"));
    assert_eq!(s.click(3, "b").unwrap(), None, "the id's second keys the lookup");
}

// ---------------------------------------------------------------------------
// Conversions and the outbox.

fn dedup_transitions_history_and_outbox_are_consistent(f: &Fixture) {
    let s = f.s();
    use ConvStatus::*;
    let r = record(
        s,
        &[
            pb("c1", "", Pending, Some(2.0), 5_000),
            pb("c1", "", Pending, Some(2.0), 6_000),
            pb("c1", "", Approved, None, 7_000),
            pb("c1", "", Approved, None, 8_000),
            pb("c1", "", Rejected, None, 9_000),
            pb("c1", "", Chargeback, None, 10_000),
            pb("c1", "t2", Approved, Some(1.0), 11_000),
        ],
    );
    assert_eq!(
        r,
        vec![
            Recorded::New { id: 1 },
            Recorded::Duplicate { id: 1 },
            Recorded::Updated { id: 1, previous: Pending, payout_base: 2.0 },
            Recorded::Duplicate { id: 1 },
            Recorded::Forbidden { id: 1, current: Approved },
            Recorded::Updated { id: 1, previous: Approved, payout_base: 2.0 },
            Recorded::New { id: 2 },
        ]
    );
    let c1 = s.conversion(1).unwrap().unwrap();
    assert_eq!((c1.status, c1.payout, c1.ctit_secs, c1.updated_ms, c1.ts_ms), (Chargeback, 2.0, 4, 10_000, 5_000));
    assert_eq!(s.conversion(99).unwrap(), None);
    let h: Vec<_> = s.conversion_history(1).unwrap().into_iter().map(|(_, f, t, _, _)| (f, t)).collect();
    assert_eq!(h, vec![(None, Pending), (Some(Pending), Approved), (Some(Approved), Chargeback)]);
    let ob = s.outbox(None, 10).unwrap();
    let mut got: Vec<_> = ob.iter().map(|o| (o.conversion.id, o.status)).collect();
    got.sort();
    assert_eq!(got, vec![(1, Approved), (1, Chargeback), (2, Approved)]);
    assert_eq!(s.approved_totals(0, 100_000).unwrap(), vec![(2, 1, 1.0)]);
    assert_eq!(s.approved_totals(0, 11_000).unwrap(), vec![]);
    // The rollup holds each conversion once, under its latest status.
    let t = total(s, &all_time());
    assert_eq!((t.approved, t.chargebacks, t.pending, t.rejected), (1, 1, 0, 0));
    assert!((t.revenue - 1.0).abs() < 1e-9);
}

fn dedup_and_status_follow_the_status_machine_for_any_sequence(f: &Fixture) {
    use smartlink_core::conversion::Transition;
    let s = f.s();
    let mut model: std::collections::BTreeMap<(u64, u64, u64), ConvStatus> = Default::default();
    let mut g = Gen(7);
    for round in 0..6 {
        let n = 1 + g.next(40) as usize;
        let pbs: Vec<PostbackIn> = (0..n)
            .map(|_| {
                let (c, e, t) = (g.next(3) + round * 3, g.next(2), g.next(2));
                let st = ConvStatus::ALL[g.next(4) as usize];
                match model.get(&(c, e, t)) {
                    None => {
                        model.insert((c, e, t), st);
                    }
                    Some(cur) => {
                        if cur.transition(st) == Transition::Change {
                            model.insert((c, e, t), st);
                        }
                    }
                }
                PostbackIn {
                    event: format!("ev{e}"),
                    outbound: vec![],
                    ..pb(
                        &format!("click{c}"),
                        &if t == 0 { String::new() } else { format!("tx{t}") },
                        st,
                        Some(1.0),
                        1_000,
                    )
                }
            })
            .collect();
        for chunk in pbs.chunks(1 + g.next(9) as usize) {
            record(s, chunk);
        }
    }
    let rows = s.conversions(&ConversionFilter { limit: 1000, ..Default::default() }).unwrap();
    assert_eq!(rows.len(), model.len());
    for r in &rows {
        let c: u64 = r.click_id[5..].parse().unwrap();
        let e: u64 = r.event[2..].parse().unwrap();
        let t: u64 = if r.txid.is_empty() { 0 } else { r.txid[2..].parse().unwrap() };
        assert_eq!(Some(&r.status), model.get(&(c, e, t)), "{r:?}");
    }
    let t = total(s, &all_time());
    let count = |st| model.values().filter(|v| **v == st).count() as u64;
    assert_eq!(
        (t.approved, t.pending, t.rejected, t.chargebacks),
        (
            count(ConvStatus::Approved),
            count(ConvStatus::Pending),
            count(ConvStatus::Rejected),
            count(ConvStatus::Chargeback)
        )
    );
}

fn the_same_postbacks_from_two_stores_at_once_are_recorded_once(f: &Fixture) {
    // Two nodes receive the same postbacks (an advertiser retrying on
    // another node) at the same time.
    let stores = [f.arc(), f.reopen(), f.reopen()];
    let barrier = Arc::new(std::sync::Barrier::new(stores.len()));
    let threads: Vec<_> = stores
        .iter()
        .map(|s| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut out = Vec::new();
                for i in 0..40 {
                    out.extend(record(&*s, &[pb(&format!("c{i}"), "", ConvStatus::Approved, Some(1.0), 5_000)]));
                }
                out
            })
        })
        .collect();
    let results: Vec<Recorded> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let new = results.iter().filter(|r| matches!(r, Recorded::New { .. })).count();
    let dup = results.iter().filter(|r| matches!(r, Recorded::Duplicate { .. })).count();
    assert_eq!((new, dup), (40, 80), "each conversion is new exactly once");
    let s = f.s();
    assert_eq!(s.conversions(&ConversionFilter { limit: 1000, ..Default::default() }).unwrap().len(), 40);
    assert_eq!(s.outbox(None, 1000).unwrap().len(), 40, "one delivery queued per conversion");
    assert_eq!(total(s, &all_time()).approved, 40, "counted once in the rollups");
}

fn click_loads_and_postbacks_on_the_same_cells_from_two_stores_all_land_in_the_rollups(f: &Fixture) {
    // One node loads clicks while another records postbacks; both add to
    // the same rollup cells, in opposite orders (a deadlock, where one
    // happens, is retried, never lost).
    let countries = ["AR", "BR", "CL", "DE", "ES", "FR", "IT", "MX", "US", "UY"];
    let clicks = {
        let s = f.arc();
        std::thread::spawn(move || {
            for b in 0..20 {
                let batch: Vec<ClickRow> = (0..200)
                    .map(|i| ClickRow {
                        click_id: format!("b{b:02}-{i:03}"),
                        ts_ms: 1_000 + (i % 3) * HOUR_MS,
                        smartlink: 1,
                        offer: Some(2),
                        affiliate: Some(3),
                        country: countries[i as usize % countries.len()].into(),
                        device: "mobile".into(),
                        os: "ios".into(),
                        browser: "safari".into(),
                        language: "en".into(),
                        quality: "human".into(),
                        ..Default::default()
                    })
                    .collect();
                s.insert_clicks(&batch).unwrap();
            }
        })
    };
    let postbacks = {
        let s = f.reopen();
        std::thread::spawn(move || {
            for b in 0..20 {
                let batch: Vec<PostbackIn> = (0..20)
                    .rev()
                    .map(|i| PostbackIn {
                        country: countries[i % countries.len()].into(),
                        click_ts_ms: 1_000 + (i as i64 % 3) * HOUR_MS,
                        outbound: vec![],
                        ..pb(&format!("p{b:02}-{i:02}"), "", ConvStatus::Approved, Some(1.0), 5_000)
                    })
                    .collect();
                record(&*s, &batch);
            }
        })
    };
    clicks.join().unwrap();
    postbacks.join().unwrap();
    let s = f.s();
    let t = total(s, &all_time());
    assert_eq!((t.clicks, t.approved), (4_000, 400));
    assert!((t.revenue - 400.0).abs() < 1e-9);
    let cells = s.rollup(&RollupQuery { group: vec![Dim::Country, Dim::Hour], ..all_time() }).unwrap();
    assert_eq!(cells.len(), 30);
    for (k, m) in &cells {
        let (DimValue::Text(country), DimValue::Hour(hour)) = (&k[0], &k[1]) else { panic!("{k:?}") };
        let c = countries.iter().position(|x| x == country).unwrap() as i64;
        let want_clicks = (0..200).filter(|i| i % 10 == c && (i % 3) * HOUR_MS == *hour).count() as u64 * 20;
        let want_conv = (0..20).filter(|i| i % 10 == c && (i % 3) * HOUR_MS == *hour).count() as u64 * 20;
        assert_eq!((m.clicks, m.approved), (want_clicks, want_conv), "{k:?}");
    }
}

fn a_postback_the_database_refuses_fails_alone_and_the_rest_of_its_batch_commits(f: &Fixture) {
    let s = f.s();
    let r = s
        .record_postbacks(&[
            pb("c1", "", ConvStatus::Approved, Some(2.0), 5_000),
            pb("c2", "", ConvStatus::Approved, Some(f64::NAN), 5_000),
            pb("c3", "", ConvStatus::Approved, Some(3.0), 5_000),
        ])
        .unwrap();
    assert!(matches!(r[0], Ok(Recorded::New { .. })), "{r:?}");
    assert!(r[1].is_err(), "{r:?}");
    assert!(matches!(r[2], Ok(Recorded::New { .. })), "{r:?}");
    let all = s.conversions(&ConversionFilter { limit: 10, ..Default::default() }).unwrap();
    let mut clicks: Vec<&str> = all.iter().map(|c| c.click_id.as_str()).collect();
    clicks.sort();
    assert_eq!(clicks, ["c1", "c3"]);
    assert_eq!(s.outbox(None, 10).unwrap().len(), 2, "the refused one left no outbox row");
    let t = total(s, &all_time());
    assert_eq!(t.approved, 2, "nor a rollup count");
    assert!((t.revenue - 5.0).abs() < 1e-9);
}

fn a_status_change_keeps_its_source_and_reason_in_the_history(f: &Fixture) {
    let s = f.s();
    let mut change = pb("c1", "", ConvStatus::Rejected, None, 6_000);
    change.source = "admin:alice".into();
    change.reason = Some("duplicate lead, same e-mail as #12".into());
    record(s, &[pb("c1", "", ConvStatus::Pending, Some(2.0), 5_000), change]);
    let h = s.conversion_history(1).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!((h[0].0, h[0].3.as_str(), h[0].4.as_deref()), (5_000, "postback", None));
    assert_eq!((h[1].3.as_str(), h[1].4.as_deref()), ("admin:alice", Some("duplicate lead, same e-mail as #12")));
}

fn conversions_are_listed_by_filter_newest_first_with_their_click_sub_ids(f: &Fixture) {
    let s = f.s();
    s.insert_clicks(&[ClickRow {
        click_id: "c1".into(),
        ts_ms: 1_000,
        subs: ["s1".into(), "s2".into(), String::new(), String::new(), "s5".into()],
        ..Default::default()
    }])
    .unwrap();
    let mut other = pb("c2", "", ConvStatus::Pending, Some(1.0), 7_000);
    other.offer = 5;
    other.affiliate = None;
    other.over_cap = true;
    record(s, &[pb("c1", "", ConvStatus::Approved, Some(2.0), 6_000), other]);
    let list = |f: ConversionFilter| -> Vec<String> {
        s.conversions(&ConversionFilter { limit: 10, ..f }).unwrap().into_iter().map(|c| c.click_id).collect()
    };
    assert_eq!(list(Default::default()), ["c2", "c1"]);
    assert_eq!(list(ConversionFilter { offer: Some(5), ..Default::default() }), ["c2"]);
    assert_eq!(list(ConversionFilter { affiliate: Some(3), ..Default::default() }), ["c1"]);
    assert_eq!(list(ConversionFilter { status: Some(ConvStatus::Approved), ..Default::default() }), ["c1"]);
    assert_eq!(list(ConversionFilter { from_ms: Some(6_500), ..Default::default() }), ["c2"]);
    assert_eq!(list(ConversionFilter { to_ms: Some(6_500), ..Default::default() }), ["c1"]);
    assert_eq!(list(ConversionFilter { before: Some(2), ..Default::default() }), ["c1"]);
    assert_eq!(list(ConversionFilter { click_id: Some("c2".into()), ..Default::default() }), ["c2"]);
    assert_eq!(list(ConversionFilter { smartlink: Some(9), ..Default::default() }), Vec::<String>::new());
    assert_eq!(s.conversions(&ConversionFilter { limit: 1, ..Default::default() }).unwrap()[0].click_id, "c2");
    assert_eq!(s.conversions(&ConversionFilter { limit: 1, ..Default::default() }).unwrap().len(), 1);
    let all = s.conversions(&ConversionFilter { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(all[1].subs, Some(["s1".into(), "s2".into(), String::new(), String::new(), "s5".into()]));
    assert_eq!(all[0].subs, None, "no click row");
    assert!(all[0].over_cap && !all[1].over_cap);
    assert_eq!((all[0].affiliate, all[0].quality.as_str(), all[0].language.as_str()), (None, "human", "en"));
}

fn outbox_attempts_move_items_between_states(f: &Fixture) {
    let s = f.s();
    record(s, &[pb("c1", "", ConvStatus::Approved, Some(1.0), 5_000)]);
    let due = s.due_outbox(5_000, 10).unwrap();
    assert_eq!(due.len(), 1);
    let id = due[0].id;
    assert_eq!((due[0].target.as_str(), due[0].payout_share, due[0].state), ("affiliate:a", 0.5, OutboxState::Pending));
    let attempt = |next, at, status: Option<u16>, error: Option<&str>| Attempt {
        ts_ms: 5_000,
        http_status: status,
        latency_ms: 3,
        error: error.map(String::from),
        url: "u".into(),
        next,
        next_at_ms: at,
    };
    s.record_attempt(id, &attempt(OutboxState::Pending, 9_000, Some(500), None)).unwrap();
    assert!(s.due_outbox(8_999, 10).unwrap().is_empty());
    let again = &s.due_outbox(9_000, 10).unwrap()[0];
    assert_eq!((again.attempts, again.total_attempts, again.last_http_status), (1, 1, Some(500)));
    s.record_attempt(id, &attempt(OutboxState::Failed, 0, None, Some("timeout"))).unwrap();
    assert!(s.due_outbox(i64::MAX, 10).unwrap().is_empty());
    let failed = s.outbox(Some(OutboxState::Failed), 10).unwrap();
    assert_eq!((failed.len(), failed[0].last_error.as_deref()), (1, Some("timeout")));
    assert!(s.outbox(Some(OutboxState::Delivered), 10).unwrap().is_empty());
    assert!(s.retry_outbox(id, 20_000).unwrap());
    assert!(!s.retry_outbox(id, 20_000).unwrap(), "only a failed delivery is retried");
    assert!(!s.retry_outbox(999, 20_000).unwrap());
    s.postpone_outbox(id, 25_000).unwrap();
    assert!(s.due_outbox(24_999, 10).unwrap().is_empty(), "postponed");
    let item = &s.due_outbox(25_000, 10).unwrap()[0];
    assert_eq!((item.attempts, item.total_attempts), (0, 2), "a retry starts a fresh round, the total stays");
    let (item, attempts) = s.outbox_item(id).unwrap().unwrap();
    assert_eq!(item.conversion.click_id, "c1");
    let got: Vec<_> = attempts.iter().map(|a| (a.http_status, a.error.as_deref(), a.latency_ms)).collect();
    assert_eq!(got, vec![(Some(500), None, 3), (None, Some("timeout"), 3)], "oldest first");
    assert_eq!(s.outbox_item(999).unwrap(), None);
}

fn a_claimed_delivery_is_not_claimed_again_until_its_lease_runs_out(f: &Fixture) {
    let s = f.s();
    record(
        s,
        &[pb("c1", "", ConvStatus::Approved, Some(1.0), 5_000), pb("c2", "", ConvStatus::Approved, Some(1.0), 6_000)],
    );
    let first = s.claim_outbox(10_000, 1, 30_000).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].conversion.click_id, "c1", "oldest due first");
    assert_eq!(first[0].next_at_ms, 40_000, "leased until now + lease");
    let second = s.claim_outbox(10_000, 10, 30_000).unwrap();
    assert_eq!(second.iter().map(|o| o.conversion.click_id.as_str()).collect::<Vec<_>>(), ["c2"]);
    assert!(s.claim_outbox(39_999, 10, 30_000).unwrap().is_empty(), "both leased");
    // The holder of c1 records its attempt: delivered, never due again.
    s.record_attempt(
        first[0].id,
        &Attempt {
            ts_ms: 11_000,
            http_status: Some(200),
            latency_ms: 5,
            error: None,
            url: "u".into(),
            next: OutboxState::Delivered,
            next_at_ms: 0,
        },
    )
    .unwrap();
    // The holder of c2 died: its lease runs out and another node takes it.
    let retaken = s.claim_outbox(40_000, 10, 30_000).unwrap();
    assert_eq!(retaken.iter().map(|o| o.conversion.click_id.as_str()).collect::<Vec<_>>(), ["c2"]);
}

fn deliveries_claimed_from_two_stores_at_once_are_never_taken_twice(f: &Fixture) {
    let s = f.s();
    let pbs: Vec<PostbackIn> =
        (0..60).map(|i| pb(&format!("c{i}"), "", ConvStatus::Approved, Some(1.0), 5_000 + i)).collect();
    record(s, &pbs);
    let stores = [f.arc(), f.reopen(), f.reopen()];
    let barrier = Arc::new(std::sync::Barrier::new(stores.len()));
    let threads: Vec<_> = stores
        .iter()
        .map(|s| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut got = Vec::new();
                loop {
                    let items = s.claim_outbox(100_000, 7, 60_000).unwrap();
                    if items.is_empty() {
                        return got;
                    }
                    got.extend(items.into_iter().map(|o| o.id));
                }
            })
        })
        .collect();
    let mut all: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (60, 60), "every delivery claimed exactly once");
}

// ---------------------------------------------------------------------------
// Alerts and digests.

fn alerts_are_stored_once_per_dedup_key_newest_first(f: &Fixture) {
    let s = f.s();
    let alert = |ts: i64, msg: &str| AlertRow {
        id: 0,
        ts_ms: ts,
        kind: "cr_drop".into(),
        smartlink: "s".into(),
        offer: Some("o".into()),
        segment: None,
        message: msg.into(),
    };
    let ids = s.record_alerts(&[(alert(1, "first"), "k1".into()), (alert(2, "second"), "k2".into())]).unwrap();
    assert!(ids[0].is_some() && ids[1].is_some());
    let again = s.record_alerts(&[(alert(3, "again"), "k1".into()), (alert(4, "third"), "k3".into())]).unwrap();
    assert_eq!(again[0], None, "raised before");
    assert!(again[1].is_some());
    let listed = s.alerts(10).unwrap();
    let got: Vec<(&str, Option<&str>)> = listed.iter().map(|a| (a.message.as_str(), a.offer.as_deref())).collect();
    assert_eq!(got, [("third", Some("o")), ("second", Some("o")), ("first", Some("o"))]);
    assert_eq!(listed[0].id, again[1].unwrap());
    assert_eq!(s.alerts(1).unwrap().len(), 1);
}

fn a_digest_is_stored_once_per_smartlink_and_period_and_its_delivery_moves_through_states(f: &Fixture) {
    let s = f.s();
    let d = DigestRow {
        id: 0,
        smartlink: "s".into(),
        period_start_ms: 1_000,
        period_end_ms: 2_000,
        created_ms: 2_500,
        body: "{}".into(),
        delivery: Some(OutboxState::Pending),
        attempts: 0,
        next_at_ms: 2_500,
        last_http_status: None,
        last_error: None,
        delivered_ms: None,
    };
    let (id, new) = s.insert_digest(&d).unwrap();
    assert!(new);
    assert_eq!(s.insert_digest(&DigestRow { body: "{\"second\":1}".into(), ..d.clone() }).unwrap(), (id, false));
    let (other, _) = s.insert_digest(&DigestRow { period_start_ms: 2_000, period_end_ms: 3_000, ..d.clone() }).unwrap();
    let (unsent, _) = s.insert_digest(&DigestRow { smartlink: "u".into(), delivery: None, ..d.clone() }).unwrap();
    assert!(s.has_digest("s", 1_000).unwrap() && !s.has_digest("t", 1_000).unwrap());
    assert_eq!(s.digest(id).unwrap().unwrap().body, "{}", "the first one is kept");
    assert_eq!(s.digest(unsent).unwrap().unwrap().delivery, None);
    assert_eq!(s.digest(9_999).unwrap(), None);
    let listed: Vec<i64> = s.digests(Some("s"), 10).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(listed, [other, id], "newest period first");
    assert_eq!(s.digests(None, 10).unwrap().len(), 3);
    assert!(s.digests(Some("t"), 10).unwrap().is_empty());
    assert_eq!(s.due_digests(2_499, 10).unwrap().len(), 0);
    assert_eq!(s.due_digests(2_500, 10).unwrap().len(), 2, "one without a webhook is never due");
    let attempt = |next, http_status| DigestAttempt { ts_ms: 2_600, http_status, error: None, next, next_at_ms: 9_000 };
    s.record_digest_attempt(id, &attempt(OutboxState::Pending, Some(500))).unwrap();
    s.record_digest_attempt(id, &attempt(OutboxState::Delivered, Some(200))).unwrap();
    let r = s.digest(id).unwrap().unwrap();
    assert_eq!(
        (r.delivery, r.attempts, r.last_http_status, r.delivered_ms),
        (Some(OutboxState::Delivered), 2, Some(200), Some(2_600))
    );
    assert_eq!(s.due_digests(i64::MAX, 10).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [other]);
}

// ---------------------------------------------------------------------------
// The change feed and the quality reads.

fn the_feed_reads_every_row_after_a_mark_once(f: &Fixture) {
    let s = f.s();
    assert_eq!(s.feed_marks().unwrap(), FeedMarks::default());
    let click = |id: &str, ts: i64| ClickRow {
        click_id: id.into(),
        ts_ms: ts,
        smartlink: 1,
        offer: Some(2),
        affiliate: Some(3),
        subs: ["a".into(), String::new(), String::new(), String::new(), String::new()],
        cost: 0.1234564,
        quality_reasons: "dup".into(),
        source: Some(4),
        ..Default::default()
    };
    s.insert_clicks(&[click("k1", 1_000), click("k2", 2_000)]).unwrap();
    record(
        s,
        &[pb("k1", "", ConvStatus::Pending, Some(2.0), 5_000), pb("gone", "", ConvStatus::Approved, Some(1.0), 5_000)],
    );
    let m1 = s.feed_marks().unwrap();
    assert!(m1.clicks > 0 && m1.conversions > 0 && m1.cost_imports == 0);
    let clicks = s.feed_clicks(0, m1.clicks, 100).unwrap();
    assert_eq!(clicks.len(), 2);
    assert!(clicks[0].rid < clicks[1].rid, "in mark order");
    assert_eq!(
        (
            clicks[0].offer,
            clicks[0].source,
            clicks[0].cost_micros,
            clicks[0].quality.as_str(),
            clicks[0].subs[0].as_str()
        ),
        (2, 4, 123_456, "human", "a")
    );
    assert_eq!(s.feed_clicks(0, m1.clicks, 1).unwrap().len(), 1, "at most limit");
    assert_eq!(s.feed_clicks(clicks[0].rid, m1.clicks, 100).unwrap()[0].rid, clicks[1].rid);
    let convs = s.feed_all_conversions(0, 100).unwrap();
    assert_eq!(convs.len(), 2);
    assert_eq!(convs[0].click_rid, Some(clicks[0].rid), "joined to its click row");
    assert_eq!((convs[0].source, convs[0].quality_reasons.as_str(), convs[0].payout_micros), (4, "dup", 2_000_000));
    assert_eq!(convs[1].click_rid, None, "no click row");
    // Later changes: a status change, new clicks, a cost import.
    record(s, &[pb("k1", "", ConvStatus::Approved, None, 6_000)]);
    s.insert_clicks(&[click("k3", 3_000)]).unwrap();
    s.import_costs(&CostImport {
        from_ms: 0,
        to_ms: 10_000,
        filters: vec![(Dim::Smartlink, vec![DimValue::Key(1)])],
        amount: 3.0,
        description: String::new(),
        actor: "t".into(),
        ts_ms: 7_000,
    })
    .unwrap();
    let m2 = s.feed_marks().unwrap();
    let new_clicks = s.feed_clicks(m1.clicks, m2.clicks, 100).unwrap();
    assert_eq!(new_clicks.len(), 1);
    let changed = s.feed_changed_conversions(m1.conversions, m2.conversions).unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!((changed[0].id, changed[0].status.as_str()), (convs[0].id, "approved"));
    let imports = s.feed_cost_imports(m1.cost_imports, m2.cost_imports).unwrap();
    assert_eq!(imports.len(), 1);
    assert_eq!((imports[0].1, imports[0].2), (0, 10_000));
    let costs = s.feed_click_costs(0, 10_000).unwrap();
    assert_eq!(costs.iter().map(|(_, c)| c).sum::<i64>(), 3_000_000, "the import's shares");
    let picked = s.feed_conversions(&[convs[1].id, convs[0].id, 999]).unwrap();
    assert_eq!(picked.iter().map(|c| c.id).collect::<Vec<_>>(), [convs[1].id, convs[0].id]);
    // Compaction deletes raw rows; the rollups keep them.
    assert_eq!(s.delete_raw_clicks_before(2_500, 1).unwrap(), 1);
    assert_eq!(s.delete_raw_clicks_before(2_500, 10).unwrap(), 1);
    assert_eq!(s.count_clicks().unwrap(), 1);
    assert_eq!(
        total(s, &RollupQuery { from_ms: 0, to_ms: HOUR_MS - 1, ..Default::default() }).clicks,
        1,
        "a partial hour is read from the raw rows"
    );
    assert_eq!(
        total(s, &RollupQuery { from_ms: 0, to_ms: HOUR_MS, ..Default::default() }).clicks,
        3,
        "whole hours come from the rollups"
    );
}

fn source_counts_audit_clicks_and_fallback_segments_read_the_raw_rows(f: &Fixture) {
    let s = f.s();
    let click =
        |id: &str, ts: i64, aff: Option<u32>, sub2: &str, q: &str, reasons: &str, offer: Option<u32>| ClickRow {
            click_id: id.into(),
            ts_ms: ts,
            smartlink: 1,
            offer,
            affiliate: aff,
            subs: [String::new(), sub2.into(), String::new(), String::new(), String::new()],
            country: "US".into(),
            device: "mobile".into(),
            os: "ios".into(),
            quality: q.into(),
            quality_reasons: reasons.into(),
            fallback_reason: offer.is_none().then(|| "no_offer".into()),
            propensity: 0.5,
            cost: 0.25,
            source: aff.map(|a| a + 10),
            ..Default::default()
        };
    s.insert_clicks(&[
        click("a", 1_000, Some(1), "p", "human", "", Some(2)),
        click("b", 2_000, Some(1), "p", "bot", "crawler,datacenter", Some(2)),
        click("c", 3_000, Some(1), "q", "suspect", "dup", None),
        click("d", 4_000, None, "", "human", "", Some(2)),
        click("e", 4_500, Some(2), "p", "preview", "", Some(2)),
    ])
    .unwrap();
    let mut conv = pb("a", "", ConvStatus::Approved, Some(3.0), 70_000);
    conv.click_ts_ms = 1_000;
    conv.quality_flags = "short_ctit".into();
    conv.affiliate = Some(1);
    conv.cost_base = 0.5;
    let mut rejected = pb("b", "", ConvStatus::Rejected, Some(1.0), 9_000);
    rejected.click_ts_ms = 2_000;
    rejected.affiliate = Some(1);
    rejected.quality_flags = "bot_click,short_ctit".into();
    record(s, &[conv, rejected]);
    let q = SourceQuery { smartlink: 1, from_ms: 0, to_ms: 10_000, sub: Some(2), by_source: false };
    let counts = s.source_counts(&q).unwrap();
    let keys: Vec<(u32, &str, u64)> = counts.iter().map(|c| (c.affiliate, c.sub.as_str(), c.clicks)).collect();
    assert_eq!(keys, [(0, "", 1), (1, "p", 2), (1, "q", 1), (2, "p", 1)]);
    let p = &counts[1];
    assert_eq!(p.classes, [1, 0, 1, 0]);
    assert_eq!(p.reasons.get("crawler"), Some(&1));
    assert_eq!((p.conversions, p.approved, p.rejected, p.short_ctit, p.bot_click_conversions), (2, 1, 1, 2, 1));
    let mut ctit = p.ctit_secs.clone();
    ctit.sort();
    assert_eq!(ctit, [7, 69]);
    let by_source = s.source_counts(&SourceQuery { sub: None, by_source: true, ..q.clone() }).unwrap();
    let keys: Vec<(u32, &str, u64, u64)> =
        by_source.iter().map(|c| (c.affiliate, c.sub.as_str(), c.clicks, c.conversions)).collect();
    assert_eq!(keys, [(0, "", 1, 0), (11, "", 3, 2), (12, "", 1, 0)]);
    assert!(matches!(s.source_counts(&SourceQuery { sub: Some(6), ..q.clone() }), Err(StoreError::Invalid(_))));

    let mut audit = s.audit_clicks(1, 0, 10_000).unwrap();
    audit.sort_by(|a, b| a.revenue.total_cmp(&b.revenue).then(a.offer.cmp(&b.offer)));
    let got: Vec<(Option<u32>, f64, f64)> = audit.iter().map(|a| (a.offer, a.revenue, a.cost)).collect();
    assert_eq!(got, [(None, 0.0, 0.25), (Some(2), 0.0, 0.25), (Some(2), 3.0, 0.75)], "human and suspect only");
    assert_eq!(audit[0].propensity, 0.5);

    let mut seg = s.fallback_segments(1, 0, 10_000, &["human", "suspect"]).unwrap();
    seg.sort();
    assert_eq!(
        seg,
        [("US".into(), "mobile".into(), "".into(), 2), ("US".into(), "mobile".into(), "no_offer".into(), 1)]
    );
    assert!(s.fallback_segments(1, 0, 10_000, &[]).unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// PostgreSQL only.

#[cfg(feature = "postgres")]
mod postgres_only {
    use super::*;

    #[test]
    fn migrations_run_once_and_a_second_connect_finds_nothing_to_do() {
        let db = pg::TestDb::create();
        // Several nodes starting at once: one migrates, the others wait.
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let url = db.url.clone();
                std::thread::spawn(move || PgStore::connect(&url).unwrap().schema_versions().unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), vec![1, 2, 3, 4, 5]);
        }
        let s = PgStore::connect(&db.url).unwrap();
        s.set_meta("k", "v").unwrap();
        drop(s);
        let s = PgStore::connect(&db.url).unwrap();
        assert_eq!(s.schema_versions().unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(s.meta("k").unwrap().as_deref(), Some("v"), "a second connect keeps the data");
    }

    #[test]
    fn migration_5_replaces_a_clear_admin_token_by_its_hash() {
        let db = pg::TestDb::create();
        // A store as version 4 left it: the admin token in clear.
        let s = PgStore::connect(&db.url).unwrap();
        s.set_meta("admin_token", "an-old-clear-token").unwrap();
        let mut c = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
        c.execute("DELETE FROM schema_migrations WHERE version = 5", &[]).unwrap();
        drop(s);
        let s = PgStore::connect(&db.url).unwrap();
        assert_eq!(s.schema_versions().unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(s.meta("admin_token").unwrap(), None, "the clear token is gone");
        assert_eq!(
            s.meta("admin_token_sha256").unwrap().as_deref(),
            Some("sha256:9e6a64e9361755ebeff6ebf88413fae8a48009983795d953c076a97e2c4d6bca"),
            "its hash, in the form affiliate keys are kept in (sha256 of the UTF-8 token, hex)"
        );
    }

    /// What several nodes need beyond the store's traits: the first value
    /// stored wins, a change signals every watcher at once, one leader at a
    /// time, and the definitions lock excludes another holder.
    #[test]
    fn nodes_share_first_secrets_see_changes_at_once_and_one_leads() {
        let db = pg::TestDb::create();
        let (a, b) = (PgStore::connect(&db.url).unwrap(), PgStore::connect(&db.url).unwrap());
        assert_eq!(a.meta_or_insert("secret", "first").unwrap(), "first");
        assert_eq!(b.meta_or_insert("secret", "second").unwrap(), "first", "the first node's value wins");

        let sh = b.shared().expect("PostgreSQL is shared");
        let (tx, rx) = std::sync::mpsc::channel();
        sh.watch_definitions(Box::new(move || tx.send(()).is_ok())).unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("called once at start");
        let v0 = sh.definitions_version().unwrap();
        let started = std::time::Instant::now();
        a.apply(&[Change::Put { kind: Kind::Offer, id: "o1".into(), spec: "{}".into() }], "a").unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("a change on the other store signals");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "signalled in {:?}", started.elapsed());
        assert!(sh.definitions_version().unwrap() > v0);

        let mut lead = a.shared().unwrap().try_lead().unwrap().expect("no one leads yet");
        assert!(sh.try_lead().unwrap().is_none(), "one leader at a time");
        assert!(lead.held());
        drop(lead);
        assert!(sh.try_lead().unwrap().is_some(), "a dropped lease is free");

        let held = a.shared().unwrap().lock_definitions().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let url = db.url.clone();
        std::thread::spawn(move || {
            let c = PgStore::connect(&url).unwrap();
            let _lock = c.shared().unwrap().lock_definitions().unwrap();
            done_tx.send(()).unwrap();
        });
        assert!(done_rx.recv_timeout(std::time::Duration::from_millis(500)).is_err(), "the lock is exclusive");
        drop(held);
        done_rx.recv_timeout(std::time::Duration::from_secs(10)).expect("taken once released");
    }

    /// Cap leases (issue 19): nodes taking blocks of one offer's daily click
    /// cap at once, each through a store of its own, are never handed more
    /// than the cap in total, and what each holds adds up to the total.
    #[test]
    fn many_nodes_taking_cap_units_at_once_are_never_handed_more_than_the_cap() {
        let db = pg::TestDb::create();
        const CAP: u64 = 997;
        let start = std::sync::Arc::new(std::sync::Barrier::new(12));
        let nodes: Vec<_> = (0..12)
            .map(|i| {
                let (url, start) = (db.url.clone(), start.clone());
                std::thread::spawn(move || {
                    let s = PgStore::connect(&url).unwrap();
                    let node = format!("node-{i}");
                    start.wait();
                    let (mut got, mut seen_max) = (0, 0);
                    for k in 0.. {
                        // Blocks of 1 to 9 units, and a few tries past the end.
                        let want = 1 + (k * 7 + i) % 9;
                        let t = CapTake { node: &node, offer: 7, day: 20_000, cap: CAP, want, now_ms: 1 };
                        let g = s.shared().unwrap().take_cap_units(&t).unwrap();
                        assert!(g.granted <= want && g.taken <= CAP, "{g:?} for {want}");
                        seen_max = seen_max.max(g.taken);
                        got += g.granted;
                        if g.granted == 0 {
                            break;
                        }
                    }
                    (node, got, seen_max)
                })
            })
            .collect();
        let got: Vec<(String, u64, u64)> = nodes.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(got.iter().map(|g| g.1).sum::<u64>(), CAP, "{got:?}");
        assert!(got.iter().all(|g| g.2 == CAP), "every node saw the cap used up: {got:?}");
        let s = PgStore::connect(&db.url).unwrap();
        let units = s.shared().unwrap().cap_units(7, 20_000).unwrap();
        assert_eq!(units.taken, CAP);
        let mut held: Vec<(String, u64)> = got.into_iter().filter(|g| g.1 > 0).map(|g| (g.0, g.1)).collect();
        held.sort();
        assert_eq!(units.held, held, "each node holds what it was granted");
        assert_eq!(s.shared().unwrap().cap_units(7, 20_001).unwrap(), CapUnits::default(), "another day: none");
    }

    /// Takes and returns racing: a returned unit may be taken again by any
    /// node, the total never passes the cap, and in the end the total is
    /// exactly what the nodes hold.
    #[test]
    fn cap_units_returned_while_others_take_are_taken_again_and_never_counted_twice() {
        let db = pg::TestDb::create();
        const CAP: u64 = 300;
        let nodes: Vec<_> = (0..6)
            .map(|i| {
                let url = db.url.clone();
                std::thread::spawn(move || {
                    let s = PgStore::connect(&url).unwrap();
                    let sh = s.shared().unwrap();
                    let node = format!("n{i}");
                    let mut held = 0u64;
                    for k in 0..60u64 {
                        if (k + i) % 3 == 2 && held > 0 {
                            let back = held.div_ceil(2);
                            let taken = sh.return_cap_units(&node, 1, 5, back, 2).unwrap();
                            assert!(taken <= CAP);
                            held -= back;
                        } else {
                            let t = CapTake { node: &node, offer: 1, day: 5, cap: CAP, want: 1 + k % 13, now_ms: 1 };
                            let g = sh.take_cap_units(&t).unwrap();
                            assert!(g.taken <= CAP, "{g:?}");
                            held += g.granted;
                        }
                    }
                    (node, held)
                })
            })
            .collect();
        let mut held: Vec<(String, u64)> =
            nodes.into_iter().map(|t| t.join().unwrap()).filter(|(_, h)| *h > 0).collect();
        held.sort();
        let s = PgStore::connect(&db.url).unwrap();
        let units = s.shared().unwrap().cap_units(1, 5).unwrap();
        assert_eq!(units.taken, held.iter().map(|h| h.1).sum::<u64>(), "{units:?}");
        assert_eq!(units.held, held);
    }

    #[test]
    fn a_node_gives_back_at_most_what_it_holds_and_a_lowered_cap_grants_nothing_until_units_come_back() {
        let db = pg::TestDb::create();
        let s = PgStore::connect(&db.url).unwrap();
        let sh = s.shared().unwrap();
        let take = |node: &str, cap: u64, want: u64| {
            sh.take_cap_units(&CapTake { node, offer: 3, day: 9, cap, want, now_ms: 1 }).unwrap()
        };
        assert_eq!(take("a", 100, 40), CapGrant { granted: 40, taken: 40 });
        assert_eq!(take("b", 100, 50), CapGrant { granted: 50, taken: 90 });
        assert_eq!(take("c", 100, 50), CapGrant { granted: 10, taken: 100 }, "what is left");
        assert_eq!(take("c", 100, 1), CapGrant { granted: 0, taken: 100 });
        assert_eq!(sh.return_cap_units("nobody", 3, 9, 10, 2).unwrap(), 100, "holds nothing, gives nothing");
        assert_eq!(sh.return_cap_units("a", 3, 9, 1_000, 2).unwrap(), 60, "a gives back its 40, no more");
        assert_eq!(sh.return_cap_units("a", 3, 9, 1, 2).unwrap(), 60);
        // The cap lowered to 50 under 60 taken: nothing until 11 come back.
        assert_eq!(take("a", 50, 5), CapGrant { granted: 0, taken: 60 });
        assert_eq!(sh.return_cap_units("b", 3, 9, 11, 2).unwrap(), 49);
        assert_eq!(take("a", 50, 5), CapGrant { granted: 1, taken: 50 });
        assert_eq!(sh.return_cap_units("a", 3, 99, 1, 2).unwrap(), 0, "a day without units");
        let units = sh.cap_units(3, 9).unwrap();
        assert_eq!(units.held, vec![("a".into(), 1), ("b".into(), 39), ("c".into(), 10)]);
        take("a", 10, 3);
        s.shared()
            .unwrap()
            .take_cap_units(&CapTake { node: "a", offer: 3, day: 10, cap: 10, want: 3, now_ms: 1 })
            .unwrap();
        assert_eq!(sh.forget_cap_units_before(10).unwrap(), 4, "day 9: its total and three leases");
        assert_eq!(sh.cap_units(3, 9).unwrap(), CapUnits::default());
        assert_eq!(sh.cap_units(3, 10).unwrap().taken, 3, "day 10 is kept");
    }

    #[test]
    fn click_lookups_and_click_log_pages_walk_an_index_instead_of_sorting_the_table() {
        let db = pg::TestDb::create();
        let s = PgStore::connect(&db.url).unwrap();
        // Plans for an empty table say nothing: a day of clicks, 20 affiliates.
        let clicks: Vec<ClickRow> = (0..20_000)
            .map(|i| ClickRow {
                click_id: format!("k{i:05}"),
                ts_ms: 1_000_000 + i * 4_321,
                affiliate: Some(1 + (i % 20) as u32),
                ..Default::default()
            })
            .collect();
        s.insert_clicks(&clicks).unwrap();
        ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap().batch_execute("ANALYZE clicks").unwrap();
        let queries = [
            ClickQuery { limit: 100, ..Default::default() },
            ClickQuery {
                from_ms: Some(2_000_000),
                to_ms: Some(60_000_000),
                before: Some((50_000_000, "x".into())),
                limit: 100,
                ..Default::default()
            },
            ClickQuery { filters: vec![(Dim::Affiliate, vec![DimValue::Key(3)])], limit: 100, ..Default::default() },
        ];
        for (q, index) in queries.iter().zip(["clicks_key", "clicks_key", "clicks_affiliate"]) {
            let plan = s.explain_click_query(Some(q)).unwrap();
            assert!(plan.contains(&format!("Index Scan Backward using {index}")), "{q:?}: {plan}");
            assert!(!plan.lines().any(|l| l.trim_start().starts_with("->  Sort")), "{q:?}: {plan}");
        }
        let lookup = s.explain_click_query(None).unwrap();
        assert!(lookup.contains("clicks_key"), "{lookup}");
    }

    #[test]
    fn a_read_past_the_time_limit_is_cancelled_with_a_timeout_error_and_writes_have_none() {
        let db = pg::TestDb::create();
        let s = PgStore::connect(&db.url).unwrap();
        let clicks: Vec<ClickRow> = (0..30_000)
            .map(|i| ClickRow {
                click_id: format!("k{i:05}"),
                ts_ms: i * 997,
                subs: [format!("s{}", i % 977), String::new(), String::new(), String::new(), String::new()],
                quality_reasons: "a,b,c".into(),
                ..Default::default()
            })
            .collect();
        s.set_query_timeout(Some(std::time::Duration::from_millis(1)));
        s.insert_clicks(&clicks).unwrap();
        let q = RollupQuery { group: vec![Dim::Sub(1), Dim::Reason], ..all_time() };
        assert!(matches!(s.rollup(&q), Err(StoreError::Timeout)));
        s.set_query_timeout(None);
        assert_eq!(total(&s, &q).clicks, 90_000, "the same connections answer without a limit");
    }

    #[test]
    fn a_store_outlives_its_connections_being_killed() {
        let db = pg::TestDb::create();
        let s = PgStore::connect(&db.url).unwrap();
        s.set_meta("k", "v").unwrap();
        let mut admin = ::postgres::Client::connect(&pg::admin_url(), ::postgres::NoTls).unwrap();
        let killed: i64 = admin
            .query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db.url.rsplit('/').next().unwrap()],
            )
            .unwrap()
            .get(0);
        assert!(killed >= 1);
        std::thread::sleep(std::time::Duration::from_millis(1_200));
        assert_eq!(s.meta("k").unwrap().as_deref(), Some("v"), "an idle connection is checked and replaced");
        s.set_meta("k", "w").unwrap();
        assert_eq!(s.meta("k").unwrap().as_deref(), Some("w"));
    }

    fn learn_click(id: &str, ts: i64, quality: &str) -> ClickRow {
        ClickRow {
            click_id: id.into(),
            ts_ms: ts,
            smartlink: 1,
            offer: Some(2),
            country: "US".into(),
            device: "mobile".into(),
            os: "ios".into(),
            quality: quality.into(),
            ..Default::default()
        }
    }

    /// Two nodes on one store: each reads the other's click rows and
    /// conversion events after a mark, in commit order, never its own.
    #[test]
    fn each_node_learns_the_other_nodes_rows_after_its_marks_and_never_its_own() {
        let db = pg::TestDb::create();
        let (a, b) = (PgStore::connect(&db.url).unwrap(), PgStore::connect(&db.url).unwrap());
        let (sa, sb) = (a.shared().unwrap(), b.shared().unwrap());
        assert_ne!(sa.node(), sb.node(), "every store opened is a node of its own");
        assert_eq!(sa.learn_marks().unwrap(), LearnMarks::default());
        a.insert_clicks(&[learn_click("k1", 1_000, "human"), learn_click("k2", 2_000, "bot")]).unwrap();
        b.insert_clicks(&[learn_click("k3", 3_000, "")]).unwrap();
        record(&b, &[pb("k1", "t1", ConvStatus::Pending, Some(2.0), 5_000)]);
        record(&a, &[pb("k1", "t1", ConvStatus::Approved, None, 6_000)]);
        let m = sa.learn_marks().unwrap();
        assert_eq!(m, sb.learn_marks().unwrap());

        let ids = |cs: Vec<LearnClick>| cs.into_iter().map(|c| (c.click_id, c.quality)).collect::<Vec<_>>();
        assert_eq!(ids(sa.learn_clicks(0, m.clicks, 100).unwrap()), [("k3".to_string(), "human".to_string())]);
        assert_eq!(
            ids(sb.learn_clicks(0, m.clicks, 100).unwrap()),
            [("k1".to_string(), "human".to_string()), ("k2".to_string(), "bot".to_string())]
        );
        let first = sb.learn_clicks(0, m.clicks, 1).unwrap();
        assert_eq!(first.len(), 1, "at most limit");
        let rest = sb.learn_clicks(first[0].rid, m.clicks, 100).unwrap();
        assert_eq!(rest.iter().map(|c| c.click_id.as_str()).collect::<Vec<_>>(), ["k2"], "after the mark only");
        let k1 = &first[0];
        assert_eq!(
            (k1.ts_ms, k1.smartlink, k1.offer, k1.country.as_str(), k1.device.as_str(), k1.os.as_str()),
            (1_000, 1, Some(2), "US", "mobile", "ios")
        );

        // B recorded the conversion, A the approval: each learns the other's.
        let on_a = sa.learn_conversions(0, m.conversions, 100).unwrap();
        let on_b = sb.learn_conversions(0, m.conversions, 100).unwrap();
        assert_eq!(on_a.len(), 1, "{on_a:?}");
        assert_eq!(on_b.len(), 1, "{on_b:?}");
        assert_eq!((on_a[0].previous, on_a[0].status, on_a[0].ts_ms), (None, ConvStatus::Pending, 5_000));
        assert_eq!(
            (on_b[0].previous, on_b[0].status, on_b[0].ts_ms),
            (Some(ConvStatus::Pending), ConvStatus::Approved, 6_000)
        );
        assert_eq!(on_a[0].conversion_id, on_b[0].conversion_id);
        assert_eq!(
            (on_a[0].click_ts_ms, on_a[0].smartlink, on_a[0].offer, on_a[0].country.as_str(), on_a[0].quality.as_str()),
            (1_000, 1, 2, "US", "human")
        );
        assert!(on_a[0].rid < on_b[0].rid, "history rows in commit order");
        // Nothing new after the marks.
        assert!(sa.learn_clicks(m.clicks, m.clicks, 100).unwrap().is_empty());
        assert!(sa.learn_conversions(m.conversions, m.conversions, 100).unwrap().is_empty());
    }

    /// The start-up replay reads every node's rows up to the marks, in the
    /// pages of `clicks_since`, and each conversion as it stood at its
    /// mark: what the learning task applies after the marks is not in it.
    #[test]
    fn the_replay_stops_at_the_marks_and_shows_each_conversion_as_it_stood_there() {
        let db = pg::TestDb::create();
        let (a, b) = (PgStore::connect(&db.url).unwrap(), PgStore::connect(&db.url).unwrap());
        let sa = a.shared().unwrap();
        a.insert_clicks(&[learn_click("k2", 1_000, "human"), learn_click("k1", 1_500, "human")]).unwrap();
        b.insert_clicks(&[learn_click("k0", 2_000, "human")]).unwrap();
        record(&b, &[pb("k1", "t1", ConvStatus::Pending, Some(2.0), 5_000)]);
        let m = sa.learn_marks().unwrap();
        // After the marks: a click, an approval, a new conversion.
        a.insert_clicks(&[learn_click("k4", 1_200, "human")]).unwrap();
        record(&a, &[pb("k1", "t1", ConvStatus::Approved, None, 6_000)]);
        record(&b, &[pb("k2", "t2", ConvStatus::Approved, Some(1.0), 7_000)]);

        let page = |from, after: Option<&str>, limit| {
            sa.replay_clicks(from, after, m.clicks, limit).unwrap().into_iter().map(|c| c.click_id).collect::<Vec<_>>()
        };
        assert_eq!(page(0, None, 100), ["k1", "k2", "k0"], "(second, click id) order, both nodes' rows, k4 left out");
        assert_eq!(page(0, None, 2), ["k1", "k2"]);
        assert_eq!(page(1_000, Some("k2"), 100), ["k0"], "the page after (1 s, k2)");
        assert_eq!(page(1_600, None, 100), ["k0"]);

        let replayed = sa.replay_conversions(0, m.conversions).unwrap();
        assert_eq!(replayed.len(), 1, "the conversion recorded after the marks is left out: {replayed:?}");
        assert_eq!((replayed[0].previous, replayed[0].status, replayed[0].ts_ms), (None, ConvStatus::Pending, 5_000));
        let now = sa.learn_marks().unwrap();
        let all = sa.replay_conversions(0, now.conversions).unwrap();
        let statuses: Vec<_> = all.iter().map(|c| (c.ts_ms, c.status)).collect();
        assert_eq!(statuses, [(5_000, ConvStatus::Approved), (7_000, ConvStatus::Approved)], "latest as of the mark");
        assert_eq!(sa.replay_conversions(6_000, now.conversions).unwrap().len(), 1, "arrived since from_ms");
    }

    /// Rows are numbered when inserted but committed in any order by
    /// concurrent writers; a reader that moves its mark to the largest
    /// number it saw must still see every row exactly once. Writers on two
    /// stores load clicks and record postbacks while a third follows them.
    #[test]
    fn a_node_following_concurrent_writers_sees_every_row_exactly_once() {
        let db = pg::TestDb::create();
        let writers: Vec<Arc<PgStore>> = (0..2).map(|_| Arc::new(PgStore::connect(&db.url).unwrap())).collect();
        let reader = PgStore::connect(&db.url).unwrap();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (w, done) = (writers[t % 2].clone(), done.clone());
                std::thread::spawn(move || {
                    for i in 0..30 {
                        let batch: Vec<_> = (0..7)
                            .map(|j| learn_click(&format!("t{t}i{i}j{j}"), 1_000 + i * 10 + j, "human"))
                            .collect();
                        w.insert_clicks(&batch).unwrap();
                        record(&*w, &[pb(&format!("t{t}i{i}j0"), "", ConvStatus::Pending, Some(1.0), 9_000)]);
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        let sh = reader.shared().unwrap();
        let (mut clicks, mut events) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        let mut marks = LearnMarks::default();
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst) == 6;
            let upto = sh.learn_marks().unwrap();
            for c in sh.learn_clicks(marks.clicks, upto.clicks, 1_000_000).unwrap() {
                assert!(clicks.insert(c.click_id.clone()), "click {} read twice", c.click_id);
            }
            for e in sh.learn_conversions(marks.conversions, upto.conversions, 1_000_000).unwrap() {
                assert!(events.insert(e.rid), "conversion event {} read twice", e.rid);
            }
            marks = upto;
            if finished {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(clicks.len(), 6 * 30 * 7, "every click row once");
        assert_eq!(events.len(), 6 * 30, "every conversion event once");
        assert_eq!(reader.count_clicks().unwrap(), 6 * 30 * 7);
    }

    #[test]
    fn an_unreachable_database_is_an_error_naming_the_url_without_its_password() {
        let err = PgStore::connect("postgres://u:secret@127.0.0.1:1/none").unwrap_err();
        assert!(matches!(err, StoreError::Pg(_)), "{err}");
        let err = PgStore::connect("postgres://u:secret@[bad").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
