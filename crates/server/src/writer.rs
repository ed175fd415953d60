//! The background click writer.
//!
//! The click handler hands a row to a bounded in-memory queue with
//! `try_send` and never waits. Two OS threads take it from there:
//!
//! - `click-journal` drains the queue every [`LINGER`] and appends the
//!   rows to the click journal ([`crate::journal`]) with one `write`,
//!   syncing it to disk every [`SYNC_EVERY`];
//! - `click-ingest` loads journaled rows into the store in large
//!   transactions, at the lowest CPU priority by default
//!   (`server.ingest_priority`), so that under a burst the cores serve
//!   redirects and the store catches up when they are free. Past
//!   `server.ingest_catch_up_mib` of backlog the journal thread, at normal
//!   priority, loads rows too.
//!
//! Overload policy: when the queue is full the *row* is dropped (the visitor
//! is still redirected and the click id in the offer URL still attributes
//! any conversion), the drop is counted in `smartlink_clicks_dropped_total`
//! and logged at most once a second. A failing journal or store is retried
//! with backoff while the queue (or the journal) absorbs the backlog. On
//! shutdown the sender is dropped; the journal thread appends what is left
//! and then loads everything into the store before it exits.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::net::IpAddr;

use smartlink_core::engine::FallbackReason;
use smartlink_core::model::{Browser, Country, Device, Language, Os};
use smartlink_core::quality::Quality;
use smartlink_core::router::Reason;

use crate::journal::{Ingest, Journal, JournalError, Progress};
use crate::quality::QualityClass;
use smartlink_store::Store;

/// A click as the handler hands it over: compact, typed, with no per-field
/// allocation; the writer thread turns it into a [`ClickRow`].
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
}

use crate::metrics::Metrics;

/// How often the journal thread drains the queue: what a crash of the
/// process can lose at most (rows still in memory).
pub const LINGER: Duration = Duration::from_millis(20);
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
/// How often the ingester looks for new rows when it has caught up.
const INGEST_POLL: Duration = Duration::from_millis(50);

/// How the writer runs (from `server.*`).
#[derive(Clone, Debug)]
pub struct WriterSettings {
    /// In-memory queue capacity, rows.
    pub capacity: usize,
    /// Load the store at the lowest CPU priority.
    pub low_priority_ingest: bool,
    /// Backlog past which the journal thread loads rows too.
    pub catch_up_bytes: u64,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings { capacity: 100_000, low_priority_ingest: true, catch_up_bytes: 512 << 20 }
    }
}

#[derive(Clone)]
pub struct ClickQueue {
    tx: SyncSender<ClickEvent>,
    metrics: Arc<Metrics>,
    last_drop_log: Arc<std::sync::atomic::AtomicU64>,
}

pub struct WriterHandle {
    journal: std::thread::JoinHandle<()>,
    ingest: std::thread::JoinHandle<()>,
}

impl WriterHandle {
    /// Waits until every queued row is journaled and loaded into the store
    /// (all senders must be gone).
    pub fn join(self) {
        let _ = self.journal.join();
        let _ = self.ingest.join();
    }
}

/// Starts the journal and ingest threads over `journal_dir` (run
/// [`crate::journal::recover`] on it first).
pub fn start(
    store: Arc<dyn Store>,
    journal_dir: &std::path::Path,
    settings: WriterSettings,
    metrics: Arc<Metrics>,
) -> Result<(ClickQueue, WriterHandle), JournalError> {
    let progress = Arc::new(Progress::default());
    let journal = Journal::create(journal_dir, progress.clone())?;
    let ingest = Arc::new(Mutex::new(Ingest::new(journal_dir, store, progress.clone())));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = sync_channel(settings.capacity.max(1));
    let journal = {
        let (m, ingest, done, progress, s) =
            (metrics.clone(), ingest.clone(), done.clone(), progress, settings.clone());
        std::thread::Builder::new()
            .name("click-journal".into())
            .spawn(move || run_journal(journal, rx, ingest, &progress, &done, &s, &m))
            .expect("spawning the click journal thread")
    };
    let ingest = {
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("click-ingest".into())
            .spawn(move || run_ingest(ingest, &done, settings.low_priority_ingest, &m))
            .expect("spawning the click ingest thread")
    };
    Ok((ClickQueue { tx, metrics, last_drop_log: Default::default() }, WriterHandle { journal, ingest }))
}

impl ClickQueue {
    /// Never blocks. Returns false when the row was dropped.
    pub fn push(&self, row: ClickEvent) -> bool {
        match self.tx.try_send(row) {
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

/// Loads one batch; store errors are counted, logged and retried later.
fn ingest_step(ingest: &mut Ingest, metrics: &Metrics) -> Result<usize, ()> {
    let r = ingest.step(INGEST_BATCH);
    metrics.journal_damaged.store(ingest.corrupt, Relaxed);
    match r {
        Ok(n) => {
            metrics.clicks_written.fetch_add(n as u64, Relaxed);
            Ok(n)
        }
        Err(e) => {
            metrics.write_errors.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "loading journaled clicks into the store failed; retrying");
            Err(())
        }
    }
}

fn lock(m: &Mutex<Ingest>) -> std::sync::MutexGuard<'_, Ingest> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_journal(
    mut journal: Journal,
    rx: Receiver<ClickEvent>,
    ingest: Arc<Mutex<Ingest>>,
    progress: &Progress,
    done: &std::sync::atomic::AtomicBool,
    settings: &WriterSettings,
    metrics: &Metrics,
) {
    use std::sync::mpsc::TryRecvError;
    let mut buf = Vec::with_capacity(4 << 20);
    let mut open = true;
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    let mut backoff = Duration::from_millis(50);
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
                        Ok(e) => {
                            crate::journal::encode(&e, &mut buf);
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
            }
            if buf.is_empty() {
                break;
            }
            match journal.append(&buf) {
                Ok(()) => {
                    metrics.clicks_journaled.fetch_add(n as u64, Relaxed);
                    buf.clear();
                    unsynced = true;
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    // Keep the batch and retry; the queue absorbs new rows.
                    metrics.write_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "appending to the click journal failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if open {
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
        let backlog = progress.backlog_bytes();
        metrics.journal_backlog.store(backlog, Relaxed);
        // Sustained load beyond what the idle CPU can load: help, at
        // normal priority, one batch per drain.
        if backlog > settings.catch_up_bytes {
            if let Ok(mut i) = ingest.try_lock() {
                let _ = ingest_step(&mut i, metrics);
            }
        }
    }
    // Shutdown: load everything into the store before returning. A store
    // that keeps failing gets ten tries; the rows stay in the journal and
    // the next start loads them.
    let mut i = lock(&ingest);
    let (mut backoff, mut failures) = (Duration::from_millis(50), 0);
    while !i.caught_up() {
        if ingest_step(&mut i, metrics).is_err() {
            failures += 1;
            if failures == 10 {
                tracing::error!("the store keeps failing: journaled clicks are left for the next start to load");
                break;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    metrics.journal_backlog.store(0, Relaxed);
    done.store(true, Relaxed);
}

/// Puts the calling thread in the idle scheduling class: it runs only
/// when a core would otherwise be idle and never preempts request work.
/// (Falls back to nice 19 where that is refused.)
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; `param` outlives the call.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
                tracing::warn!("could not lower the click ingest thread's priority");
            }
        }
    }
}

fn run_ingest(ingest: Arc<Mutex<Ingest>>, done: &std::sync::atomic::AtomicBool, low: bool, metrics: &Metrics) {
    if low {
        lower_priority();
    }
    let mut backoff = Duration::from_millis(50);
    while !done.load(Relaxed) {
        let r = ingest_step(&mut lock(&ingest), metrics);
        match r {
            Ok(n) if n >= INGEST_BATCH => {} // more waiting: go on at once
            Ok(_) => {
                std::thread::sleep(INGEST_POLL);
                backoff = Duration::from_millis(50);
            }
            Err(()) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
