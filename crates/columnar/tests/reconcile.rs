//! The columnar store answers exactly what the transactional store answers
//! (itself reconciled with the raw events in `smartlink-store`'s tests), for
//! every single and paired breakdown, random 3- and 4-way ones, random
//! windows and filters, the quality, audit and coverage queries, after cost
//! imports, status changes, reloads and retention.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use smartlink_columnar::{Analyzed, Options};
use smartlink_store::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_571_200_000; // 2026-01-05T00:00Z

/// splitmix64: deterministic events from a seed.
struct Gen(u64);
impl Gen {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
    fn pick(&mut self, xs: &[&str]) -> String {
        xs[self.next(xs.len() as u64) as usize].to_string()
    }
}

fn clicks(g: &mut Gen, n: usize, start: i64, hours: u64, prefix: &str) -> Vec<ClickRow> {
    (0..n)
        .map(|i| {
            let offer = g.next(5) as u32; // 0 = fallback
            ClickRow {
                click_id: format!("{prefix}{i}"),
                ts_ms: start + g.next(hours) as i64 * HOUR + g.next(HOUR as u64) as i64,
                smartlink: 1 + g.next(2) as u32,
                offer: (offer != 0).then_some(offer),
                affiliate: (g.next(3) != 0).then(|| g.next(3) as u32 + 1),
                source: (g.next(2) == 0).then(|| g.next(3) as u32 + 1),
                country: g.pick(&["US", "DE", "BR"]),
                device: g.pick(&["mobile", "desktop"]),
                os: g.pick(&["ios", "android", "windows"]),
                browser: g.pick(&["chrome", "safari"]),
                language: g.pick(&["en", "de", ""]),
                quality: g.pick(&["human", "human", "suspect", "bot", "preview", ""]),
                quality_reasons: g.pick(&["", "", "crawler", "datacenter,rate_ip"]),
                fallback_reason: (offer == 0).then(|| g.pick(&["no_offer", "capped"])),
                subs: [
                    g.pick(&["pub1", "pub2", "pub3", ""]),
                    g.pick(&["x", "y"]),
                    String::new(),
                    g.pick(&["", "z"]),
                    String::new(),
                ],
                propensity: 0.25 + g.next(50) as f64 / 100.0,
                cost: g.next(3000) as f64 / 1e4,
                ..Default::default()
            }
        })
        .collect()
}

fn postbacks(g: &mut Gen, clicks: &[ClickRow], every: usize) -> Vec<PostbackIn> {
    let mut pbs = Vec::new();
    for c in clicks.iter().filter(|c| c.offer.is_some()).step_by(every) {
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
                event: "conversion".into(),
                txid: String::new(),
                status: *st,
                payout,
                currency: "USD".into(),
                payout_base: payout,
                smartlink: c.smartlink,
                offer: c.offer.unwrap(),
                affiliate: c.affiliate,
                country: c.country.clone(),
                device: c.device.clone(),
                os: c.os.clone(),
                browser: c.browser.clone(),
                language: c.language.clone(),
                quality: c.quality.clone(),
                quality_flags: g.pick(&["", "", "short_ctit", "bot_click"]),
                click_ts_ms: c.ts_ms,
                ts_ms: c.ts_ms + 60_000,
                over_cap: false,
                default_payout: 2.0,
                default_payout_base: 2.0,
                source: "postback".into(),
                reason: None,
                outbound: vec![],
                cost_base: g.next(2) as f64 * 0.5,
            });
        }
    }
    pbs
}

struct Fixture {
    _dir: tempfile::TempDir,
    sqlite: Arc<SqliteStore>,
    analyzed: Analyzed,
    clicks: Vec<ClickRow>,
}

fn fixture(seed: u64, n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let analyzed =
        Analyzed::open(sqlite.clone(), dir.path(), Options { retention_days: 0, ..Default::default() }).unwrap();
    let mut g = Gen(seed);
    let clicks = clicks(&mut g, n, T0, 72, "c");
    // Half the clicks, a first load, then the rest: the loader resumes.
    let (a, b) = clicks.split_at(n / 2);
    for chunk in a.chunks(700) {
        sqlite.insert_clicks(chunk).unwrap();
    }
    analyzed.load().unwrap();
    for chunk in b.chunks(700) {
        sqlite.insert_clicks(chunk).unwrap();
    }
    let pbs = postbacks(&mut g, &clicks, 5);
    sqlite.record_postbacks(&pbs).unwrap().into_iter().collect::<Result<Vec<_>>>().unwrap();
    sqlite
        .import_costs(&CostImport {
            from_ms: T0 + 3 * HOUR + 123,
            to_ms: T0 + 30 * HOUR,
            filters: vec![(Dim::Smartlink, vec![DimValue::Key(1)])],
            amount: 12.345678,
            description: "test".into(),
            actor: "test".into(),
            ts_ms: T0 + 80 * HOUR,
        })
        .unwrap();
    Fixture { _dir: dir, sqlite, analyzed, clicks }
}

/// Rows keyed canonically, money in millionths (both stores are exact to
/// the millionth; SQLite sums floats, the columnar store integers).
fn canon(rows: Vec<(Vec<DimValue>, Measures)>) -> Vec<(String, [i64; 8])> {
    let mut out: Vec<(String, [i64; 8])> = rows
        .into_iter()
        .map(|(k, m)| {
            (
                format!("{k:?}"),
                [
                    m.clicks as i64,
                    m.fallback_clicks as i64,
                    m.approved as i64,
                    m.pending as i64,
                    m.rejected as i64,
                    m.chargebacks as i64,
                    (m.revenue * 1e6).round() as i64,
                    (m.cost * 1e6).round() as i64,
                ],
            )
        })
        .collect();
    out.sort();
    out
}

/// The columnar store itself and the `Analyzed` store (which must route
/// to it) both give the transactional store's answer. The direct call
/// keeps this from passing should `Analyzed` fall back to SQLite.
fn same(f: &Fixture, q: &RollupQuery) {
    let want = canon(f.sqlite.rollup(q).unwrap());
    let got = canon(f.analyzed.rollup(q).unwrap());
    assert_eq!(got, want, "{q:?}");
    let col = f.analyzed.columnar().expect("the columnar store is open");
    assert!(col.has(&f.sqlite.feed_marks().unwrap()), "the query loaded everything first");
    assert_eq!(canon(col.rollup(q).unwrap()), want, "columnar {q:?}");
}

const DIMS: [Dim; 19] = [
    Dim::Smartlink,
    Dim::Offer,
    Dim::Affiliate,
    Dim::Source,
    Dim::Country,
    Dim::Device,
    Dim::Os,
    Dim::Browser,
    Dim::Language,
    Dim::Quality,
    Dim::Sub(1),
    Dim::Sub(2),
    Dim::Sub(4),
    Dim::Reason,
    Dim::Hour,
    Dim::Day,
    Dim::HourOfDay(Zone(chrono_tz::UTC)),
    // Half-hour offset: local hours of the UTC hour's start.
    Dim::HourOfDay(Zone(chrono_tz::Asia::Kolkata)),
    Dim::Weekday(Zone(chrono_tz::America::New_York)),
];

#[test]
fn local_hours_and_weekdays_across_a_clock_change_match_the_transactional_store() {
    // Three days around Berlin's change to summer time (2026-03-29 01:00
    // UTC), in whole and partial hours: the columnar store groups by local
    // time in SQL, the transactional store by UTC hour re-keyed.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let analyzed =
        Analyzed::open(sqlite.clone(), dir.path(), Options { retention_days: 0, ..Default::default() }).unwrap();
    let mut g = Gen(11);
    let start = 1_774_569_600_000; // 2026-03-27 00:00 UTC
    let cs = clicks(&mut g, 2_000, start, 72, "z");
    sqlite.insert_clicks(&cs).unwrap();
    sqlite.record_postbacks(&postbacks(&mut g, &cs, 3)).unwrap();
    let f = Fixture { _dir: dir, sqlite, analyzed, clicks: cs };
    for tz in [chrono_tz::Europe::Berlin, chrono_tz::Asia::Kolkata, chrono_tz::America::St_Johns] {
        let z = Zone(tz);
        for group in [
            vec![Dim::HourOfDay(z)],
            vec![Dim::Weekday(z), Dim::Offer],
            vec![Dim::HourOfDay(z), Dim::Weekday(z), Dim::Country],
            vec![Dim::Hour, Dim::HourOfDay(z)],
        ] {
            for (from_ms, to_ms) in [(0, i64::MAX), (start + 1_234_567, start + 50 * HOUR + 17)] {
                same(&f, &RollupQuery { from_ms, to_ms, group: group.clone(), ..Default::default() });
            }
        }
    }
    // Every local hour is there: 2026-03-29 has 23 in Berlin, the others 24.
    let q = RollupQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        group: vec![Dim::HourOfDay(Zone(chrono_tz::Europe::Berlin))],
        ..Default::default()
    };
    assert_eq!(f.analyzed.rollup(&q).unwrap().len(), 24);
    assert_eq!(f.analyzed.rollup(&q).unwrap().iter().map(|(_, m)| m.clicks).sum::<u64>(), f.clicks.len() as u64);
}

#[test]
fn every_single_and_paired_breakdown_matches_the_transactional_store() {
    let f = fixture(7, 3000);
    let all = RollupQuery { from_ms: 0, to_ms: i64::MAX, ..Default::default() };
    same(&f, &all);
    let total = f.analyzed.rollup(&all).unwrap()[0].1;
    assert_eq!(total.clicks, f.clicks.len() as u64);
    assert!(total.approved > 0 && total.chargebacks > 0 && total.pending > 0 && total.rejected > 0);
    assert!(total.cost > 0.0 && total.revenue > 0.0);
    for (i, a) in DIMS.iter().enumerate() {
        same(&f, &RollupQuery { group: vec![*a], ..all.clone() });
        for b in &DIMS[i + 1..] {
            same(&f, &RollupQuery { group: vec![*a, *b], ..all.clone() });
        }
    }
    // Sub-hour windows at both edges, filters, reasons, 4-way groups.
    let window = RollupQuery { from_ms: T0 + 5 * HOUR + 1_234, to_ms: T0 + 50 * HOUR - 777, ..all.clone() };
    same(&f, &window);
    same(&f, &RollupQuery { group: vec![Dim::Country, Dim::Device, Dim::Os, Dim::Browser], ..window.clone() });
    same(&f, &RollupQuery { group: vec![Dim::Sub(1), Dim::Offer], ..window.clone() });
    let half_second = RollupQuery { from_ms: T0 + 7 * HOUR + 100, to_ms: T0 + 7 * HOUR + 600, ..all.clone() };
    same(&f, &half_second);
    same(&f, &RollupQuery { group: vec![Dim::Sub(1)], ..half_second });
    let filtered = RollupQuery {
        filters: vec![
            (Dim::Country, vec![DimValue::Text("US".into()), DimValue::Text("BR".into())]),
            (Dim::Sub(1), vec![DimValue::Text("pub1".into())]),
            (Dim::Offer, vec![DimValue::Key(2)]),
        ],
        group: vec![Dim::Day, Dim::Device],
        ..window.clone()
    };
    same(&f, &filtered);
    same(&f, &RollupQuery { filters: vec![(Dim::Country, vec![DimValue::Text("never-seen".into())])], ..all.clone() });
    for reasons in [vec!["crawler".to_string()], vec!["rate_ip".into(), "crawler".into()], vec!["rate".into()]] {
        same(&f, &RollupQuery { reasons: reasons.clone(), ..all.clone() });
        same(&f, &RollupQuery { reasons, group: vec![Dim::Offer, Dim::Quality], ..window.clone() });
    }
    same(&f, &RollupQuery { filters: vec![(Dim::Hour, vec![DimValue::Hour(T0 + 10 * HOUR)])], ..all.clone() });
}

/// Counted from the events themselves, not from either store: grouped by
/// reason, a click counts under each of its reason codes (its conversions
/// too), so the groups add up to more than all clicks; a reason filter is
/// refused as a dimension filter.
#[test]
fn grouped_by_reason_a_click_counts_under_each_of_its_reasons() {
    let f = fixture(5, 1500);
    let all = RollupQuery { from_ms: 0, to_ms: i64::MAX, group: vec![Dim::Reason], ..Default::default() };
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for c in &f.clicks {
        for r in c.quality_reasons.split(',') {
            *want.entry(r.to_string()).or_default() += 1;
        }
    }
    let got = |rows: Vec<(Vec<DimValue>, Measures)>| -> BTreeMap<String, u64> {
        rows.into_iter()
            .map(|(k, m)| match &k[..] {
                [DimValue::Text(r)] => (r.clone(), m.clicks),
                other => panic!("unexpected key {other:?}"),
            })
            .collect()
    };
    let col = f.analyzed.columnar().unwrap();
    f.analyzed.load().unwrap();
    assert_eq!(got(col.rollup(&all).unwrap()), want);
    assert_eq!(got(f.sqlite.rollup(&all).unwrap()), want);
    assert!(want.values().sum::<u64>() > f.clicks.len() as u64, "some click has two reasons");
    assert_eq!(want.len(), 4, "none, crawler, datacenter, rate_ip: {want:?}");
    same(&f, &RollupQuery { group: vec![Dim::Reason, Dim::Offer, Dim::Sub(1)], ..all.clone() });
    same(&f, &RollupQuery { reasons: vec!["rate_ip".into()], ..all.clone() });
    let bad = RollupQuery { filters: vec![(Dim::Reason, vec![DimValue::Text("crawler".into())])], ..all.clone() };
    for e in [col.rollup(&bad).unwrap_err(), f.sqlite.rollup(&bad).unwrap_err()] {
        assert!(matches!(e, StoreError::Invalid(ref m) if m.contains("reason")), "{e:?}");
    }
}

#[test]
fn quality_audit_and_coverage_queries_match_the_transactional_store() {
    let f = fixture(11, 2000);
    f.analyzed.load().unwrap();
    let col = f.analyzed.columnar().unwrap();
    for sl in [1, 2] {
        for (from, to) in [(0, i64::MAX), (T0 + HOUR + 5, T0 + 40 * HOUR)] {
            for sub in [None, Some(1), Some(2)] {
                for by_source in [false, true] {
                    let q = SourceQuery { smartlink: sl, from_ms: from, to_ms: to, sub, by_source };
                    let norm = |mut v: Vec<SourceCounts>| {
                        v.iter_mut().for_each(|s| s.ctit_secs.sort());
                        v
                    };
                    let want = norm(f.sqlite.source_counts(&q).unwrap());
                    assert_eq!(norm(f.analyzed.source_counts(&q).unwrap()), want, "{q:?}");
                    assert_eq!(norm(col.source_counts(&q).unwrap()), want, "columnar {q:?}");
                }
            }
            let key = |r: &AuditClickRow| format!("{r:?}");
            assert_eq!(
                col.audit_clicks(sl, from, to).unwrap().len(),
                f.sqlite.audit_clicks(sl, from, to).unwrap().len(),
                "columnar"
            );
            let mut got = f.analyzed.audit_clicks(sl, from, to).unwrap();
            let mut want = f.sqlite.audit_clicks(sl, from, to).unwrap();
            got.sort_by_key(key);
            want.sort_by_key(key);
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                assert_eq!(
                    (&a.country, &a.device, &a.os, a.offer, a.propensity),
                    (&b.country, &b.device, &b.os, b.offer, b.propensity)
                );
                assert!((a.revenue - b.revenue).abs() < 1e-6 && (a.cost - b.cost).abs() < 1e-6, "{a:?} {b:?}");
            }
            for classes in [&["human", "suspect"][..], &["bot"][..]] {
                let mut got = f.analyzed.fallback_segments(sl, from, to, classes).unwrap();
                let mut want = f.sqlite.fallback_segments(sl, from, to, classes).unwrap();
                let mut direct = col.fallback_segments(sl, from, to, classes).unwrap();
                got.sort();
                want.sort();
                direct.sort();
                assert_eq!(got, want);
                assert_eq!(direct, want, "columnar");
            }
        }
    }
}

#[test]
fn a_conversion_that_overtakes_its_click_counts_under_its_sub_ids_once_the_click_lands() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let a = Analyzed::open(sqlite.clone(), dir.path(), Options::default()).unwrap();
    let mut g = Gen(3);
    let mut c = clicks(&mut g, 1, T0, 1, "late")[0].clone();
    c.offer = Some(1);
    c.subs[0] = "zone9".into();
    // As in the server: the click row has its millisecond, the conversion
    // only the second its click id carries.
    c.ts_ms = c.ts_ms / 1000 * 1000 + 567;
    let mut pbs = postbacks(&mut g, std::slice::from_ref(&c), 1);
    pbs.iter_mut().for_each(|p| p.click_ts_ms = c.ts_ms / 1000 * 1000);
    sqlite.record_postbacks(&pbs).unwrap();
    a.load().unwrap();
    let by_zone = RollupQuery { from_ms: 0, to_ms: i64::MAX, group: vec![Dim::Sub(1)], ..Default::default() };
    assert!(a.rollup(&by_zone).unwrap().is_empty(), "no click row yet: no sub-id to count it under");
    sqlite.insert_clicks(std::slice::from_ref(&c)).unwrap();
    a.load().unwrap();
    let rows = a.rollup(&by_zone).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, vec![DimValue::Text("zone9".into())]);
    assert_eq!(rows[0].1.clicks, 1);
    assert_eq!(rows[0].1.approved + rows[0].1.pending + rows[0].1.rejected + rows[0].1.chargebacks, 1);
    assert_eq!(canon(rows), canon(sqlite.rollup(&by_zone).unwrap()));
}

#[test]
fn reopening_resumes_from_the_stored_marks_without_losing_or_doubling_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let mut g = Gen(5);
    let cs = clicks(&mut g, 1500, T0, 48, "r");
    sqlite.insert_clicks(&cs[..700]).unwrap();
    {
        let a = Analyzed::open(sqlite.clone(), dir.path(), Options::default()).unwrap();
        a.load().unwrap();
    }
    sqlite.insert_clicks(&cs[700..]).unwrap();
    sqlite.record_postbacks(&postbacks(&mut g, &cs, 3)).unwrap();
    let a = Analyzed::open(sqlite.clone(), dir.path(), Options::default()).unwrap();
    let loaded = a.load().unwrap();
    assert_eq!(loaded.clicks, 800, "only the rows after the stored mark");
    let all = RollupQuery { from_ms: 0, to_ms: i64::MAX, group: vec![Dim::Offer, Dim::Hour], ..Default::default() };
    assert_eq!(canon(a.rollup(&all).unwrap()), canon(sqlite.rollup(&all).unwrap()));
    // A damaged file is rebuilt from the feed.
    drop(a);
    std::fs::write(dir.path().join("analytics.duckdb"), b"not a database").unwrap();
    let _ = std::fs::remove_file(dir.path().join("analytics.duckdb.wal"));
    let a = Analyzed::open(sqlite.clone(), dir.path(), Options::default()).unwrap();
    assert_eq!(a.load().unwrap().clicks, 1500);
    assert_eq!(canon(a.rollup(&all).unwrap()), canon(sqlite.rollup(&all).unwrap()));
}

#[test]
fn a_backlog_loaded_in_many_batches_read_ahead_on_a_second_thread_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let mut g = Gen(11);
    let cs = clicks(&mut g, 2_000, T0, 48, "b");
    for chunk in cs.chunks(300) {
        sqlite.insert_clicks(chunk).unwrap();
    }
    sqlite.record_postbacks(&postbacks(&mut g, &cs, 4)).unwrap();
    // 2,000 rows in batches of 97: the pipelined path, with a short last batch.
    let a =
        Analyzed::open(sqlite.clone(), dir.path(), Options { load_batch: 97, retention_days: 0, ..Default::default() })
            .unwrap();
    assert_eq!(a.load().unwrap().clicks, 2_000);
    assert_eq!(a.load().unwrap().clicks, 0, "nothing is loaded twice");
    for group in [vec![Dim::Offer, Dim::Hour], vec![Dim::Sub(1), Dim::Country], vec![Dim::Quality, Dim::Source]] {
        let q = RollupQuery { from_ms: 0, to_ms: i64::MAX, group, ..Default::default() };
        assert_eq!(canon(a.rollup(&q).unwrap()), canon(sqlite.rollup(&q).unwrap()));
    }
}

#[test]
fn retention_deletes_old_raw_rows_and_older_windows_come_from_the_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let a = Analyzed::open(sqlite.clone(), dir.path(), Options { retention_days: 30, ..Default::default() }).unwrap();
    let mut g = Gen(9);
    let old = clicks(&mut g, 400, T0, 24, "old");
    let recent = clicks(&mut g, 600, T0 + 40 * DAY, 24, "new");
    sqlite.insert_clicks(&old).unwrap();
    sqlite.insert_clicks(&recent).unwrap();
    a.load().unwrap();
    let all = RollupQuery { from_ms: 0, to_ms: i64::MAX, ..Default::default() };
    let by_offer = RollupQuery { group: vec![Dim::Offer, Dim::Country], ..all.clone() };
    let before = canon(a.rollup(&by_offer).unwrap());
    let now = T0 + 41 * DAY;
    assert_eq!(a.compact(now, true).unwrap(), 400, "the raw rows older than 30 days");
    assert_eq!(sqlite.count_clicks().unwrap(), 600, "the click table keeps 30 days too");
    assert_eq!(canon(a.rollup(&by_offer).unwrap()), before, "old windows are answered by the rollups");
    let err = a.rollup(&RollupQuery { group: vec![Dim::Sub(1)], ..all.clone() }).unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(m) if m.contains("30 days")), "{err}");
    let horizon = a.columnar().unwrap().raw_from_ms().unwrap();
    let subs = a.rollup(&RollupQuery { from_ms: horizon, group: vec![Dim::Sub(1)], ..all.clone() }).unwrap();
    assert_eq!(subs.iter().map(|(_, m)| m.clicks).sum::<u64>(), 600);
    assert_eq!(a.compact(now, true).unwrap(), 0, "nothing more to delete");
}

fn dim() -> impl Strategy<Value = Dim> {
    prop::sample::select(DIMS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random events, random windows, random group-bys of up to four
    /// dimensions and random filters: the same rows as the transactional
    /// store, to the click and the millionth.
    #[test]
    fn random_events_and_group_bys_match_the_transactional_store(
        seed in 0..u64::MAX,
        n in 1..400usize,
        group in prop::collection::vec(dim(), 0..=4),
        from_h in 0..80i64, len_ms in 1..(90 * HOUR),
        filter in prop::option::of((dim(), 0..3usize)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
        let a = Analyzed::open(sqlite.clone(), dir.path(), Options { retention_days: 0, ..Default::default() }).unwrap();
        let mut g = Gen(seed);
        let cs = clicks(&mut g, n, T0, 72, "p");
        sqlite.insert_clicks(&cs).unwrap();
        sqlite.record_postbacks(&postbacks(&mut g, &cs, 2)).unwrap();
        let mut group = group;
        group.dedup();
        let from_ms = T0 + from_h * HOUR - 1_000 + g.next(2_000) as i64;
        let mut q = RollupQuery { from_ms, to_ms: from_ms + len_ms, group, ..Default::default() };
        if let Some((d, i)) = filter {
            // A value taken from the events themselves, so filters match.
            let c = &cs[i % cs.len()];
            let v = match d {
                Dim::Smartlink => DimValue::Key(c.smartlink),
                Dim::Offer => DimValue::Key(c.offer.unwrap_or(0)),
                Dim::Affiliate => DimValue::Key(c.affiliate.unwrap_or(0)),
                Dim::Source => DimValue::Key(c.source.unwrap_or(0)),
                Dim::Country => DimValue::Text(c.country.clone()),
                Dim::Device => DimValue::Text(c.device.clone()),
                Dim::Os => DimValue::Text(c.os.clone()),
                Dim::Browser => DimValue::Text(c.browser.clone()),
                Dim::Language => DimValue::Text(c.language.clone()),
                Dim::Quality => DimValue::Text(quality_class(&c.quality).to_string()),
                Dim::Sub(k) => DimValue::Text(c.subs[k as usize - 1].clone()),
                // Reasons are filtered with `reasons`, not as a dimension.
                Dim::Reason => DimValue::Text(c.quality_reasons.split(',').next().unwrap_or("").to_string()),
                Dim::Hour => DimValue::Hour(c.ts_ms / HOUR * HOUR),
                Dim::Day => DimValue::Hour(c.ts_ms / DAY * DAY),
                // Local time groups only (checked apart).
                Dim::HourOfDay(_) | Dim::Weekday(_) => DimValue::Key(0),
            };
            match (d, v) {
                (Dim::Reason, DimValue::Text(r)) => q.reasons.push(r),
                (Dim::HourOfDay(_) | Dim::Weekday(_), _) => {}
                (d, v) => q.filters.push((d, vec![v])),
            }
        }
        let want = canon(sqlite.rollup(&q).unwrap());
        let got = canon(a.rollup(&q).unwrap());
        prop_assert_eq!(got, want, "{:?}", q);
    }
}

#[test]
fn a_store_rebuilt_after_retention_keeps_answering_old_windows_from_the_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let mut g = Gen(13);
    sqlite.insert_clicks(&clicks(&mut g, 300, T0, 24, "old")).unwrap();
    sqlite.insert_clicks(&clicks(&mut g, 200, T0 + 40 * DAY, 24, "new")).unwrap();
    let by_day = RollupQuery { from_ms: 0, to_ms: i64::MAX, group: vec![Dim::Day], ..Default::default() };
    {
        let a =
            Analyzed::open(sqlite.clone(), dir.path(), Options { retention_days: 30, ..Default::default() }).unwrap();
        a.load().unwrap();
        a.compact(T0 + 41 * DAY, true).unwrap();
    }
    for f in ["analytics.duckdb", "analytics.duckdb.wal"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let a = Analyzed::open(sqlite.clone(), dir.path(), Options { retention_days: 30, ..Default::default() }).unwrap();
    a.load().unwrap();
    let total: u64 = a.rollup(&by_day).unwrap().iter().map(|(_, m)| m.clicks).sum();
    assert_eq!(total, 500, "the 300 old clicks still count, from the rollups");
}

#[test]
fn a_query_catches_up_a_small_backlog_itself_and_leaves_a_large_one_to_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
    let opts = Options { catch_up_limit: 100, ..Default::default() };
    let a = Analyzed::open(sqlite.clone(), dir.path(), opts).unwrap();
    let mut g = Gen(17);
    let all = RollupQuery { from_ms: 0, to_ms: i64::MAX, group: vec![Dim::Sub(1)], ..Default::default() };
    sqlite.insert_clicks(&clicks(&mut g, 80, T0, 24, "small")).unwrap();
    assert_eq!(canon(a.rollup(&all).unwrap()), canon(sqlite.rollup(&all).unwrap()));
    assert_eq!(a.columnar().unwrap().loaded_rows(), 80, "the query loaded the 80 missing rows");
    sqlite.insert_clicks(&clicks(&mut g, 500, T0, 24, "large")).unwrap();
    assert_eq!(canon(a.rollup(&all).unwrap()), canon(sqlite.rollup(&all).unwrap()), "SQLite answers meanwhile");
    assert_eq!(a.columnar().unwrap().loaded_rows(), 80, "500 missing rows are the loader's");
    assert_eq!(a.load().unwrap().clicks, 500);
}
