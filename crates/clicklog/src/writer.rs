//! The background click writer.
//!
//! The click handler encodes a row into a journal record and hands it to
//! a bounded in-memory queue with `try_send`; it never waits. Three OS
//! threads take it from there:
//!
//! - `click-journal` drains the queue every [`LINGER`] and appends the
//!   rows to the click journal ([`crate::journal`]) with one `write`,
//!   syncing it to disk every [`SYNC_EVERY`];
//! - `click-ingest` loads journaled rows into the store in transactions
//!   of [`IDLE_BATCH`] rows, in the idle scheduling class by default
//!   (`server.ingest_priority`), so that under a burst the cores serve
//!   redirects and the store catches up when they are free (it also pauses
//!   after a step that was mostly preempted). While the machine's CPUs are
//!   nearly all busy it does not start at all, for up to
//!   `server.ingest_defer_secs`: idle-class work still costs request
//!   threads cache, memory bandwidth and kernel time, so a burst is served
//!   first and loaded after;
//! - `click-catch-up`, at normal priority, takes over while the backlog
//!   is past `server.ingest_catch_up_mib` and loads [`INGEST_BATCH`]-row
//!   transactions until it is down to half that, so the backlog stays
//!   bounded under sustained load. (It is a thread of its own because an
//!   idle-class thread cannot raise its own priority, and the journal
//!   thread must never wait for the store.)
//!
//! Overload policy: when the queue is full the *row* is dropped (the visitor
//! is still redirected and the click id in the offer URL still attributes
//! any conversion), the drop is counted in `smartlink_clicks_dropped_total`
//! and logged at most once a second. A failing journal or store is retried
//! with backoff while the queue (or the journal) absorbs the backlog. On
//! shutdown the sender is dropped; the journal thread appends what is left
//! and then loads everything into the store before it exits.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smartlink_core::engine::FallbackReason;
use smartlink_core::model::{Browser, Country, Device, Language, Os};
use smartlink_core::router::Reason;
use smartlink_visitor::quality::Quality;

use crate::journal::{Ingest, Journal, JournalError, Progress};
use crate::sched::{set_class, set_nice, SchedClass};
use smartlink_store::Store;
use smartlink_visitor::quality::QualityClass;

/// A click as the handler hands it over: typed, with only the strings the
/// request brought (click id, sub-ids, referrer, UA) owned.
/// [`ClickQueue::push`] encodes it into a journal record
/// ([`crate::journal::encode`]) on the calling thread.
#[derive(Debug)]
pub struct ClickEvent {
    pub click_id: String,
    pub ts_ms: i64,
    pub smartlink: u32,
    pub offer: Option<u32>,
    pub affiliate: Option<u32>,
    pub subs: [String; 5],
    pub ip: Option<IpAddr>,
    pub country: Country,
    pub device: Device,
    pub os: Os,
    pub browser: Browser,
    pub language: Option<Language>,
    pub referrer: Box<str>,
    pub user_agent: Box<str>,
    pub reason: Reason,
    pub fallback_reason: Option<FallbackReason>,
    pub propensity: f64,
    pub quality: Quality,
    pub class: QualityClass,
    /// What the click cost, base currency.
    pub cost: f64,
    /// The traffic source's key.
    pub source: Option<u32>,
}

/// Bytes of a journal record besides its variable strings: header,
/// numbers, enum names and a few reason codes (a record with more grows).
const RECORD_FIXED: usize = 192;
/// How often the journal thread drains the queue: what a crash of the
/// process can lose at most (rows still in memory).
pub const LINGER: Duration = Duration::from_millis(10);
/// How often the journal is forced to disk: what a crash of the machine
/// can lose at most.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Rows per journal append at most.
const APPEND_BATCH: usize = 20_000;
/// Rows per store transaction: big enough to amortise the commit and
/// dirty each index page once (measured: 8.5 µs a row in 2,000-row
/// batches, 4.6 µs in 40,000-row ones), small enough to hold the store's
/// write lock for well under a second.
const INGEST_BATCH: usize = 20_000;
/// Rows per transaction of the idle-class ingester: it can be starved
/// while it holds the ingest lock, so its steps are shorter.
const IDLE_BATCH: usize = 5_000;
/// How often the ingester looks for new rows when it has caught up.
const INGEST_POLL: Duration = Duration::from_millis(50);
/// How often a deferring ingester looks at the CPUs again (long enough for
/// `/proc/stat`'s clock ticks to say something).
const BUSY_POLL: Duration = Duration::from_millis(200);
/// Idle share of the machine's CPU time under which the machine counts as
/// busy. A saturated server shows 0–3%; one with room to spare, far more.
const BUSY_IDLE_SHARE: f64 = 0.10;

/// How the writer runs (from `server.*`).
#[derive(Clone, Debug)]
pub struct WriterSettings {
    /// In-memory queue capacity, rows.
    pub capacity: usize,
    /// Load the store at the lowest CPU priority.
    pub low_priority_ingest: bool,
    /// Backlog past which the catch-up thread loads rows at normal priority.
    pub catch_up_bytes: u64,
    /// How long the idle-class ingester may wait while the machine is busy
    /// (zero: never waits).
    pub defer_when_busy: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            capacity: 100_000,
            low_priority_ingest: true,
            catch_up_bytes: 512 << 20,
            defer_when_busy: Duration::from_secs(30),
        }
    }
}

/// What the click log counts, shared with whoever renders metrics (the
/// server's `/metrics`). Every field is a relaxed atomic: the click path
/// pays one increment per row it queues.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Rows queued in memory, not yet appended to the journal.
    pub queue_depth: AtomicI64,
    /// Rows dropped because the queue was full (the redirect was served).
    pub clicks_dropped: AtomicU64,
    /// Rows committed to the store.
    pub clicks_written: AtomicU64,
    /// Rows appended to the journal.
    pub clicks_journaled: AtomicU64,
    /// Journaled bytes not yet loaded into the store.
    pub journal_backlog: AtomicU64,
    /// Journal records (or whole segments) found damaged or missing.
    pub journal_damaged: AtomicU64,
    /// Failed loads of journaled rows into the store (retried).
    pub write_errors: AtomicU64,
    /// Failed journal appends (the batch is kept and retried).
    pub journal_errors: AtomicU64,
}

#[derive(Clone)]
pub struct ClickQueue {
    /// Encoded journal records ([`crate::journal::encode`]).
    tx: SyncSender<Vec<u8>>,
    metrics: Arc<LogMetrics>,
    last_drop_log: Arc<std::sync::atomic::AtomicU64>,
}

pub struct WriterHandle {
    journal: std::thread::JoinHandle<()>,
    ingest: std::thread::JoinHandle<()>,
    catch_up: std::thread::JoinHandle<()>,
}

impl WriterHandle {
    /// Waits until every queued row is journaled and loaded into the store
    /// (all senders must be gone).
    pub fn join(self) {
        let _ = self.journal.join();
        let _ = self.ingest.join();
        let _ = self.catch_up.join();
    }
}

/// Starts the journal, ingest and catch-up threads over `journal_dir` (run
/// [`crate::journal::recover`] on it first).
pub fn start(
    store: Arc<dyn Store>,
    journal_dir: &std::path::Path,
    settings: WriterSettings,
    metrics: Arc<LogMetrics>,
) -> Result<(ClickQueue, WriterHandle), JournalError> {
    let mut cpus = CpuWatch::default();
    start_with_probe(store, journal_dir, settings, metrics, Box::new(move || cpus.idle_share()))
}

/// What tells the ingester how idle the machine was since it last asked.
type IdleProbe = Box<dyn FnMut() -> Option<f64> + Send>;

fn start_with_probe(
    store: Arc<dyn Store>,
    journal_dir: &std::path::Path,
    settings: WriterSettings,
    metrics: Arc<LogMetrics>,
    idle_share: IdleProbe,
) -> Result<(ClickQueue, WriterHandle), JournalError> {
    let progress = Arc::new(Progress::default());
    let journal = Journal::create(journal_dir, progress.clone())?;
    let loader = Arc::new(Loader {
        ingest: Mutex::new({
            let mut ingest = Ingest::new(journal_dir, store, progress.clone());
            // Damage found at start-up (by `journal::recover`) counts too.
            ingest.corrupt = metrics.journal_damaged.load(Relaxed);
            ingest
        }),
        progress,
        done: AtomicBool::new(false),
        metrics: metrics.clone(),
    });
    let (tx, rx) = sync_channel(settings.capacity.max(1));
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.into()).spawn(f).expect("spawning a click writer thread")
    };
    let l = loader.clone();
    let journal = spawn("click-journal", Box::new(move || run_journal(journal, rx, &l)));
    let (l, mark) = (loader.clone(), settings.catch_up_bytes);
    let catch_up = spawn("click-catch-up", Box::new(move || run_catch_up(&l, mark)));
    let ingest = spawn("click-ingest", Box::new(move || run_ingest(&loader, &settings, idle_share)));
    Ok((ClickQueue { tx, metrics, last_drop_log: Default::default() }, WriterHandle { journal, ingest, catch_up }))
}

impl ClickQueue {
    /// Never blocks. Returns false when the row was dropped.
    ///
    /// The row is encoded here, on the request thread, and only the record
    /// crosses to the journal thread: the row's own strings are freed where
    /// they were allocated, which keeps the allocator's per-thread caches
    /// warm (freed on the journal thread, each would go back to the request
    /// thread's arena the slow way, and its next allocation too).
    pub fn push(&self, row: ClickEvent) -> bool {
        let strings = row.click_id.len()
            + row.subs.iter().map(String::len).sum::<usize>()
            + row.referrer.len()
            + row.user_agent.len();
        let mut record = Vec::with_capacity(RECORD_FIXED + strings);
        crate::journal::encode(&row, &mut record);
        drop(row);
        match self.tx.try_send(record) {
            Ok(()) => {
                self.metrics.queue_depth.fetch_add(1, Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.metrics.clicks_dropped.fetch_add(1, Relaxed) + 1;
                let sec = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                if self.last_drop_log.swap(sec, Relaxed) != sec {
                    tracing::warn!(
                        dropped_total = n,
                        "click queue full: click rows are being dropped (redirects still served)"
                    );
                }
                false
            }
        }
    }
}

/// What the journal, ingest and catch-up threads share.
struct Loader {
    ingest: Mutex<Ingest>,
    progress: Arc<Progress>,
    /// Set by the journal thread, holding the ingest lock, once shutdown
    /// has loaded what it could.
    done: AtomicBool,
    metrics: Arc<LogMetrics>,
}

impl Loader {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ingest> {
        self.ingest.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.done.load(Relaxed)
    }

    /// Loads one batch of up to `rows`; `None` once the writer has stopped
    /// (checked under the lock: the segments may be gone). Store errors are
    /// counted and logged; the rows are read again next time.
    fn step(&self, rows: usize) -> Option<Result<usize, ()>> {
        let mut ingest = self.lock();
        if self.stopped() {
            return None;
        }
        Some(self.step_locked(&mut ingest, rows))
    }

    fn step_locked(&self, ingest: &mut Ingest, rows: usize) -> Result<usize, ()> {
        let r = ingest.step(rows);
        self.metrics.journal_damaged.store(ingest.corrupt, Relaxed);
        match r {
            Ok(n) => {
                self.metrics.clicks_written.fetch_add(n as u64, Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.metrics.write_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "loading journaled clicks into the store failed; retrying");
                Err(())
            }
        }
    }
}

/// Retry delay: 50 ms, doubling per failure up to 5 s.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);

    fn new() -> Backoff {
        Backoff(Self::FIRST)
    }

    /// Sleeps, and doubles the next delay.
    fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}

fn run_journal(mut journal: Journal, rx: Receiver<Vec<u8>>, loader: &Loader) {
    let metrics = &*loader.metrics;
    use std::sync::mpsc::TryRecvError;
    // A little below the request threads (nice 5) and in the batch class,
    // so that its wake-ups every LINGER do not preempt them; it needs a few
    // percent of a core at full load. Measured on the redirect benchmark
    // (7 alternating pairs): p99 5.05-5.86 ms with the batch class, 4.79-8.16
    // without; 6 of 7 pairs better.
    if !set_class(SchedClass::Batch) {
        tracing::warn!("could not put the click journal thread in the batch scheduling class");
    }
    set_nice(5);
    let mut buf = Vec::with_capacity(4 << 20);
    let mut open = true;
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    let mut backoff = Backoff::new();
    let mut shutdown_failures = 0;
    // Rows encoded in `buf` and not yet appended (kept across retries).
    let mut in_buf = 0u64;
    while open {
        // Poll on a timer instead of blocking on the channel: a receiver
        // parked in `recv` makes every `try_send` on the click path pay a
        // futex wake-up and a context switch (one per click). Sleeping
        // between drains means senders never wake anybody.
        std::thread::sleep(LINGER);
        loop {
            let mut n = 0;
            if buf.is_empty() {
                while n < APPEND_BATCH {
                    match rx.try_recv() {
                        Ok(record) => {
                            buf.extend_from_slice(&record);
                            n += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        // Every sender is gone (shutdown): write what is left, then stop.
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                metrics.queue_depth.fetch_sub(n as i64, Relaxed);
                in_buf = n as u64;
            }
            if buf.is_empty() {
                break;
            }
            match journal.append(&buf) {
                Ok(()) => {
                    metrics.clicks_journaled.fetch_add(in_buf, Relaxed);
                    in_buf = 0;
                    buf.clear();
                    unsynced = true;
                    backoff.reset();
                }
                Err(e) => {
                    // Keep the batch and retry; the queue absorbs new rows.
                    metrics.journal_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "appending to the click journal failed; retrying");
                    backoff.wait();
                    if open {
                        break;
                    }
                    // Shutting down: a journal that keeps failing gets ten
                    // tries, then the rows are given up, counted and logged
                    // (their click ids still attribute conversions).
                    shutdown_failures += 1;
                    if shutdown_failures == 10 {
                        let lost = in_buf + rx.try_iter().count() as u64;
                        in_buf = 0;
                        metrics.clicks_dropped.fetch_add(lost, Relaxed);
                        tracing::error!(rows = lost, "the click journal keeps failing at shutdown: click rows lost");
                        buf.clear();
                        break;
                    }
                }
            }
        }
        if unsynced && (last_sync.elapsed() >= SYNC_EVERY || !open) {
            if let Err(e) = journal.sync() {
                tracing::error!(error = %e, "syncing the click journal failed");
            }
            (unsynced, last_sync) = (false, Instant::now());
        }
        metrics.journal_backlog.store(loader.progress.backlog_bytes(), Relaxed);
    }
    // Shutdown: load everything into the store before returning. A store
    // that keeps failing gets ten tries; the rows stay in the journal and
    // the next start loads them.
    let mut i = loader.lock();
    let (mut backoff, mut failures) = (Backoff::new(), 0);
    while !i.caught_up() {
        if loader.step_locked(&mut i, INGEST_BATCH).is_err() {
            failures += 1;
            if failures == 10 {
                tracing::error!("the store keeps failing: journaled clicks are left for the next start to load");
                break;
            }
            backoff.wait();
        }
    }
    // Set while holding the ingest lock: the other threads check it after
    // taking the lock, so none of them reads a segment deleted below.
    loader.done.store(true, Relaxed);
    if i.caught_up() {
        // A clean stop leaves an empty journal directory.
        journal.discard();
        metrics.journal_backlog.store(0, Relaxed);
    }
}

/// CPU time the calling thread has used (zero where unknown).
fn thread_cpu_time() -> Duration {
    #[cfg(target_os = "linux")]
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        if libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    Duration::ZERO
}

fn run_ingest(loader: &Loader, settings: &WriterSettings, mut idle_share: IdleProbe) {
    let rows = if settings.low_priority_ingest {
        if !set_class(SchedClass::Idle) {
            set_nice(19);
        }
        IDLE_BATCH
    } else {
        INGEST_BATCH
    };
    let mut backoff = Backoff::new();
    // Since when rows have been waiting (reset whenever the store caught up).
    let mut behind_since: Option<Instant> = None;
    while !loader.stopped() {
        let backlog = loader.progress.backlog_bytes();
        // Past the catch-up mark the normal-priority thread does the work;
        // holding the lock here (and being starved) would only delay it.
        if settings.low_priority_ingest && backlog > settings.catch_up_bytes {
            std::thread::sleep(INGEST_POLL);
            continue;
        }
        let behind_for = match backlog {
            0 => {
                behind_since = None;
                Duration::ZERO
            }
            _ => behind_since.get_or_insert_with(Instant::now).elapsed(),
        };
        if settings.low_priority_ingest && defer_ingest(idle_share(), behind_for, settings.defer_when_busy) {
            std::thread::sleep(BUSY_POLL);
            continue;
        }
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        match loader.step(rows) {
            None => break,
            Some(Ok(n)) if n >= rows => {
                // More waiting. If the step was mostly preempted, request
                // threads are busy: even idle-class work costs them (cache,
                // memory bandwidth, kernel time), so wait as long as the
                // step took before the next one. On a quiet machine the
                // step ran unpreempted and the next starts at once.
                let (wall, cpu) = (wall.elapsed(), thread_cpu_time().saturating_sub(cpu));
                if settings.low_priority_ingest && cpu < wall.mul_f64(0.8) {
                    std::thread::sleep(wall.min(Duration::from_millis(500)));
                }
            }
            Some(Ok(_)) => {
                std::thread::sleep(INGEST_POLL);
                backoff.reset();
            }
            Some(Err(())) => backoff.wait(),
        }
    }
}

/// Whether the idle-class ingester waits: the machine's CPUs were nearly
/// all busy since it last looked (`idle_share`, `None` when unknown) and
/// the oldest waiting row has waited less than `max_wait`. Past that it
/// loads at idle priority again, so reports lag a burst by at most about
/// `max_wait` (and the catch-up mark still bounds the backlog).
fn defer_ingest(idle_share: Option<f64>, behind_for: Duration, max_wait: Duration) -> bool {
    matches!(idle_share, Some(s) if s < BUSY_IDLE_SHARE) && behind_for < max_wait
}

/// The machine's CPU ticks from a `/proc/stat` text: (idle incl. I/O wait,
/// total), summed over all CPUs.
fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().map(|t| t.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already counted in user and nice.
    let counted = &ticks[..ticks.len().min(8)];
    (counted.len() >= 5).then(|| (ticks[3] + ticks[4], counted.iter().sum()))
}

/// How idle the machine was between two looks, counting the calling
/// thread's own CPU time as idle (its work is what would run on idle CPU).
#[derive(Default)]
struct CpuWatch {
    last: Option<((u64, u64), Duration)>,
}

impl CpuWatch {
    /// The idle share since the previous call (`None` on the first call or
    /// where `/proc/stat` is unreadable).
    fn idle_share(&mut self) -> Option<f64> {
        let now = (parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)?, thread_cpu_time());
        let ((idle0, total0), own0) = self.last.replace(now)?;
        let ((idle1, total1), own1) = now;
        let tick = 1.0 / clock_ticks_per_sec();
        let total = total1.saturating_sub(total0) as f64 * tick;
        let idle = idle1.saturating_sub(idle0) as f64 * tick + own1.saturating_sub(own0).as_secs_f64();
        (total > 0.0).then(|| (idle / total).min(1.0))
    }
}

/// `USER_HZ`, the unit of `/proc/stat`.
fn clock_ticks_per_sec() -> f64 {
    #[cfg(target_os = "linux")]
    // SAFETY: sysconf reads a constant; no memory involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[cfg(not(target_os = "linux"))]
    let hz = 100;
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Loads rows at normal priority while the backlog is past `mark`, down to
/// half of it.
fn run_catch_up(loader: &Loader, mark: u64) {
    let mut backoff = Backoff::new();
    while !loader.stopped() {
        std::thread::sleep(Duration::from_millis(200));
        if loader.progress.backlog_bytes() <= mark {
            continue;
        }
        tracing::warn!(
            backlog_bytes = loader.progress.backlog_bytes(),
            "the click journal's backlog passed the catch-up mark: loading the store at normal priority"
        );
        while loader.progress.backlog_bytes() > mark / 2 {
            match loader.step(INGEST_BATCH) {
                None => return,
                Some(Ok(_)) => backoff.reset(),
                Some(Err(())) => backoff.wait(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::event;
    use smartlink_store::SqliteStore;

    fn stored_after_pushing(settings: WriterSettings, n: u32) -> (u64, Arc<LogMetrics>) {
        let d = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(d.path()).unwrap());
        let metrics = Arc::new(LogMetrics::default());
        let (queue, handle) = start(store.clone(), &d.path().join("journal"), settings, metrics.clone()).unwrap();
        for i in 0..n {
            assert!(queue.push(event(i)));
        }
        // Loaded while running, not only at shutdown.
        let deadline = Instant::now() + Duration::from_secs(20);
        while metrics.clicks_written.load(Relaxed) < n as u64 {
            assert!(Instant::now() < deadline, "the rows never reached the store");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(queue);
        handle.join();
        let left: Vec<_> = std::fs::read_dir(d.path().join("journal")).unwrap().collect();
        assert!(left.is_empty(), "a clean stop leaves an empty journal: {left:?}");
        (store.count_clicks().unwrap(), metrics)
    }

    #[test]
    fn the_idle_ingester_loads_the_store_while_the_backlog_is_small() {
        let s =
            WriterSettings { catch_up_bytes: u64::MAX, defer_when_busy: Duration::ZERO, ..WriterSettings::default() };
        let (stored, m) = stored_after_pushing(s, 500);
        assert_eq!(stored, 500);
        assert_eq!((m.clicks_journaled.load(Relaxed), m.journal_backlog.load(Relaxed)), (500, 0));
    }

    #[test]
    fn the_catch_up_thread_alone_loads_the_store_past_the_mark() {
        // A mark of 0: the idle ingester always defers to the catch-up thread.
        let s = WriterSettings { catch_up_bytes: 0, ..WriterSettings::default() };
        assert_eq!(stored_after_pushing(s, 500).0, 500);
    }

    #[test]
    fn normal_priority_ingest_loads_the_store_too() {
        let s = WriterSettings { low_priority_ingest: false, ..WriterSettings::default() };
        assert_eq!(stored_after_pushing(s, 300).0, 300);
    }

    #[test]
    fn the_ingester_waits_only_while_the_machine_is_busy_and_not_for_too_long() {
        let (s, max) = (Duration::from_secs, Duration::from_secs(30));
        assert!(defer_ingest(Some(0.02), s(0), max), "busy machine, fresh rows: wait");
        assert!(defer_ingest(Some(0.09), s(29), max));
        assert!(!defer_ingest(Some(0.02), s(30), max), "rows waited long enough: load");
        assert!(!defer_ingest(Some(0.5), s(0), max), "idle CPU to spare: load");
        assert!(!defer_ingest(None, s(0), max), "load unknown: load");
        assert!(!defer_ingest(Some(0.0), s(0), Duration::ZERO), "waiting turned off");
    }

    #[test]
    fn on_a_busy_machine_rows_wait_for_the_deferral_limit_and_then_load() {
        let d = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(d.path()).unwrap());
        let metrics = Arc::new(LogMetrics::default());
        let limit = Duration::from_millis(600);
        let s = WriterSettings { defer_when_busy: limit, catch_up_bytes: u64::MAX, ..WriterSettings::default() };
        let busy: IdleProbe = Box::new(|| Some(0.0));
        let (queue, handle) =
            start_with_probe(store.clone(), &d.path().join("journal"), s, metrics.clone(), busy).unwrap();
        let pushed = Instant::now();
        for i in 0..100 {
            assert!(queue.push(event(i)));
        }
        // Journaled at once, loaded only once the rows have waited `limit`.
        let deadline = pushed + Duration::from_secs(20);
        loop {
            // Read first: if the limit had not passed after the read, the
            // read came before it.
            let written = metrics.clicks_written.load(Relaxed);
            if pushed.elapsed() < limit {
                assert_eq!(written, 0, "loaded while the machine was busy");
            }
            if written == 100 {
                break;
            }
            assert!(Instant::now() < deadline, "the rows never reached the store");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(pushed.elapsed() >= limit);
        assert_eq!(metrics.clicks_journaled.load(Relaxed), 100);
        drop(queue);
        handle.join();
        assert_eq!(store.count_clicks().unwrap(), 100);
    }

    #[test]
    fn proc_stat_gives_idle_and_total_ticks_without_counting_guest_time_twice() {
        let text = "cpu  100 5 50 800 20 1 2 3 40 0\ncpu0 50 2 25 400 10 0 1 1 20 0\n";
        assert_eq!(parse_proc_stat(text), Some((820, 981)));
        assert_eq!(parse_proc_stat("cpu  1 2 3 4\n"), None, "too few fields");
        assert_eq!(parse_proc_stat("intr 5\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 x 3 4 5\n"), None);
    }

    #[test]
    fn the_cpu_watch_reads_this_machine() {
        let mut w = CpuWatch::default();
        assert_eq!(w.idle_share(), None, "the first look has nothing to compare with");
        std::thread::sleep(Duration::from_millis(120));
        if std::path::Path::new("/proc/stat").exists() {
            let share = w.idle_share().expect("a share after two looks");
            assert!((0.0..=1.0).contains(&share), "{share}");
        }
    }

    /// Scheduling policies of this process's threads named `name`
    /// (`/proc/self/task/*/stat` field 41).
    #[cfg(target_os = "linux")]
    fn policies_of(name: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
            if let Some(p) = after.split_whitespace().nth(38).and_then(|p| p.parse().ok()) {
                out.push(p);
            }
        }
        out
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_journal_runs_in_the_batch_class_and_the_ingester_in_the_idle_class() {
        let d = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(d.path()).unwrap());
        let metrics = Arc::new(LogMetrics::default());
        let s =
            WriterSettings { catch_up_bytes: u64::MAX, defer_when_busy: Duration::ZERO, ..WriterSettings::default() };
        let (queue, handle) = start(store, &d.path().join("journal"), s, metrics).unwrap();
        // Other tests' writers may run in this process too: every journal
        // thread must be in the batch class, and this writer's ingester
        // (low priority by default) in the idle one.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (journal, ingest) = (policies_of("click-journal"), policies_of("click-ingest"));
            let settled = !journal.is_empty()
                && !ingest.is_empty()
                && journal.iter().all(|&p| p == libc::SCHED_BATCH as u32)
                && ingest.contains(&(libc::SCHED_IDLE as u32));
            if settled {
                break;
            }
            assert!(Instant::now() < deadline, "journal threads {journal:?}, ingest threads {ingest:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(queue);
        handle.join();
    }

    #[test]
    fn a_full_queue_drops_the_row_and_counts_it() {
        let d = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_dir(d.path()).unwrap());
        let metrics = Arc::new(LogMetrics::default());
        let settings = WriterSettings { capacity: 1, ..WriterSettings::default() };
        let (queue, handle) = start(store, &d.path().join("journal"), settings, metrics.clone()).unwrap();
        let accepted = (0..50).filter(|i| queue.push(event(*i))).count() as u64;
        assert!(accepted < 50);
        assert_eq!(metrics.clicks_dropped.load(Relaxed), 50 - accepted);
        drop(queue);
        handle.join();
        assert_eq!(metrics.clicks_written.load(Relaxed), accepted);
    }
}
