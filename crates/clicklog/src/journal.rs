//! The click journal: an append-only log between the click queue and the
//! store.
//!
//! A click row leaves memory fast and cheaply: the journal thread appends
//! each drained batch to the current segment file with one `write` (framed,
//! checksummed records) and syncs the file to disk every second. Loading
//! rows into the store (SQL inserts, indexes, rollups: several µs a row) is
//! the ingester's job, done in large transactions, so a traffic burst
//! spends the CPU on redirects and the store catches up afterwards.
//!
//! Segment files are `journal/clicks-{seq:020}.log`: an 8-byte magic, then
//! records `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`.
//! A segment rolls at [`SEGMENT_BYTES`]; a fully ingested segment is
//! deleted. The ingest position is kept in `journal/ingested` after each
//! committed batch; losing it only replays rows, which the store ignores
//! (clicks are keyed by time and click id, and rollups count a row only
//! when it is new). At start-up [`recover`] loads whatever a previous run
//! left, stopping at a torn tail (a crash mid-`write`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use smartlink_store::{ClickRow, Store, StoreError};

use crate::writer::ClickEvent;

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"SLCLKJ1\n";
/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Bytes read from a segment at a time.
const CHUNK: usize = 8 << 20;
const POS_FILE: &str = "ingested";

/// One error type for the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The cause is part of the message and deliberately not the error's
    /// `source`: a chain printed whole (`{:#}`) would repeat it.
    #[error("click journal {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |cause| JournalError::Io { path: path.display().to_string(), cause }
}

/// Options for a file only the owner may read or write (0600): the journal
/// holds click rows (IP addresses, sub-ids).
fn owner_only() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("clicks-{seq:020}.log"))
}

/// The sequence numbers of the segments in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let name = e.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name.strip_prefix("clicks-").and_then(|s| s.strip_suffix(".log")) {
            if let Ok(seq) = seq.parse() {
                out.push(seq);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

// ---- record encoding -------------------------------------------------------

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Every journaled string is bounded well below 64 KiB (sub-ids 256
    // bytes, UA and referrer 1,024); cut on a char boundary regardless.
    let mut n = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..n]);
}

fn put_opt_u32(out: &mut Vec<u8>, v: Option<u32>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Tags the trailer with the click's cost and source.
const COST_TRAILER: u8 = 1;

/// Appends one framed record for `e` to `out`.
pub fn encode(e: &ClickEvent, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    put_str(out, &e.click_id);
    out.extend_from_slice(&e.ts_ms.to_le_bytes());
    out.extend_from_slice(&e.smartlink.to_le_bytes());
    put_opt_u32(out, e.offer);
    put_opt_u32(out, e.affiliate);
    for s in &e.subs {
        put_str(out, s);
    }
    match e.ip {
        None => out.push(0),
        Some(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    put_str(out, e.country.as_str());
    put_str(out, e.device.as_str());
    put_str(out, e.os.as_str());
    put_str(out, e.browser.as_str());
    put_str(out, e.language.as_ref().map(|l| l.as_str()).unwrap_or(""));
    put_str(out, &e.referrer);
    put_str(out, &e.user_agent);
    put_str(out, e.reason.as_str());
    put_str(out, e.fallback_reason.map(|r| r.as_str()).unwrap_or(""));
    out.extend_from_slice(&e.propensity.to_le_bytes());
    put_str(out, e.class.as_str());
    out.push(e.quality.score);
    // Reason codes, comma-separated, written in place (no allocation).
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    for (i, r) in e.quality.reasons.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r.as_str().as_bytes());
    }
    let n = (out.len() - at - 2) as u16;
    out[at..at + 2].copy_from_slice(&n.to_le_bytes());
    // Since costs: a tagged trailer (records without it decode with no
    // cost and no source, so a journal left by an older version replays).
    out.push(COST_TRAILER);
    out.extend_from_slice(&e.cost.to_le_bytes());
    put_opt_u32(out, e.source);

    let len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))? as usize;
        std::str::from_utf8(self.take(n)?).ok().map(str::to_owned)
    }
    fn opt_u32(&mut self) -> Option<Option<u32>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.u32()?)),
            _ => None,
        }
    }
}

/// Decodes one record's payload; `None` when it is malformed.
pub fn decode(payload: &[u8]) -> Option<ClickRow> {
    let mut c = Cursor(payload);
    let click_id = c.string()?;
    let ts_ms = c.u64()? as i64;
    let smartlink = c.u32()?;
    let offer = c.opt_u32()?;
    let affiliate = c.opt_u32()?;
    let subs = [c.string()?, c.string()?, c.string()?, c.string()?, c.string()?];
    let ip = match c.u8()? {
        0 => String::new(),
        4 => {
            let b: [u8; 4] = c.take(4)?.try_into().ok()?;
            std::net::Ipv4Addr::from(b).to_string()
        }
        6 => {
            let b: [u8; 16] = c.take(16)?.try_into().ok()?;
            std::net::Ipv6Addr::from(b).to_string()
        }
        _ => return None,
    };
    let row = ClickRow {
        click_id,
        ts_ms,
        smartlink,
        offer,
        affiliate,
        subs,
        ip,
        country: c.string()?,
        device: c.string()?,
        os: c.string()?,
        browser: c.string()?,
        language: c.string()?,
        referrer: c.string()?,
        user_agent: c.string()?,
        reason: c.string()?,
        fallback_reason: Some(c.string()?).filter(|s| !s.is_empty()),
        propensity: f64::from_bits(c.u64()?),
        quality: c.string()?,
        quality_score: c.u8()?,
        quality_reasons: c.string()?,
        cost: 0.0,
        source: None,
    };
    let mut row = row;
    if !c.0.is_empty() {
        if c.u8()? != COST_TRAILER {
            return None;
        }
        row.cost = f64::from_bits(c.u64()?);
        row.source = c.opt_u32()?;
    }
    c.0.is_empty().then_some(row)
}

/// What parsing a run of records found.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Every whole record was read; `usize` bytes were consumed.
    Ok(usize),
    /// A record failed its checksum or did not decode, at this offset.
    Corrupt(usize),
}

/// The largest payload a record can have. Every journaled string is
/// bounded (sub-ids 256 bytes, UA and referrer 1,024), so records are a few
/// KiB at most: a length past this is damage, not a record still being
/// written.
const MAX_RECORD: usize = 64 << 10;

/// Parses whole records from `buf` into `out` (at most `max_rows`). Stops
/// with `Ok` before a record that is not all in `buf` yet.
fn parse(buf: &[u8], max_rows: usize, out: &mut Vec<ClickRow>) -> Parsed {
    let mut at = 0;
    while out.len() < max_rows && buf.len() - at >= 8 {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(buf[at + 4..at + 8].try_into().unwrap_or_default());
        if len > MAX_RECORD {
            return Parsed::Corrupt(at);
        }
        if buf.len() - at - 8 < len {
            break; // incomplete: the rest comes with the next read
        }
        let payload = &buf[at + 8..at + 8 + len];
        if crc32fast::hash(payload) != crc {
            return Parsed::Corrupt(at);
        }
        match decode(payload) {
            Some(row) => out.push(row),
            None => return Parsed::Corrupt(at),
        }
        at += 8 + len;
    }
    Parsed::Ok(at)
}

/// Whether a whole, valid record starts at `at`: a length in range, all of
/// it in `buf`, a matching checksum and a payload that decodes.
fn record_at(buf: &[u8], at: usize) -> bool {
    let Some(head) = buf.get(at..at + 8) else { return false };
    let len = u32::from_le_bytes(head[..4].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().unwrap_or_default());
    if len == 0 || len > MAX_RECORD {
        return false;
    }
    let Some(payload) = buf.get(at + 8..at + 8 + len) else { return false };
    crc32fast::hash(payload) == crc && decode(payload).is_some()
}

/// After damage at `from - 1`: the offset of the next whole, valid record
/// in `buf`, scanning byte by byte, so that only the damaged bytes are lost
/// and the records behind them are loaded. A false match needs a length in
/// range and a CRC-32 collision and a payload that decodes.
fn resync(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&at| record_at(buf, at))
}

// ---- writing ----------------------------------------------------------------

/// Where the journal ends and where ingestion stands; shared by the two
/// threads and read by the metrics.
#[derive(Debug, Default)]
pub struct Progress {
    /// The segment being written, and the end of its last whole batch.
    head: std::sync::Mutex<(u64, u64)>,
    /// The segment being ingested, and the offset ingested up to.
    pub ingest_seq: AtomicU64,
    pub ingest_off: AtomicU64,
}

impl Progress {
    /// The segment being written and the end of its last whole batch.
    pub fn head(&self) -> (u64, u64) {
        *self.head.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_head(&self, seq: u64, end: u64) {
        *self.head.lock().unwrap_or_else(|e| e.into_inner()) = (seq, end);
    }

    /// Journaled bytes not yet in the store (segments counted at their
    /// nominal size).
    pub fn backlog_bytes(&self) -> u64 {
        let (hs, he) = self.head();
        let (is, io) = (self.ingest_seq.load(Relaxed), self.ingest_off.load(Relaxed));
        (hs.saturating_sub(is) * SEGMENT_BYTES + he).saturating_sub(io)
    }
}

/// The append side: one open segment.
pub struct Journal {
    dir: PathBuf,
    seq: u64,
    file: File,
    len: u64,
    progress: std::sync::Arc<Progress>,
}

impl Journal {
    /// Starts a new segment after every existing one.
    pub fn create(dir: &Path, progress: std::sync::Arc<Progress>) -> Result<Journal, JournalError> {
        smartlink_store::private_dir(dir).map_err(io_err(dir))?;
        let seq = segments(dir)?.last().map_or(1, |s| s + 1);
        let (file, len) = Self::new_segment(dir, seq)?;
        progress.set_head(seq, len);
        progress.ingest_seq.store(seq, Relaxed);
        progress.ingest_off.store(len, Relaxed);
        Ok(Journal { dir: dir.to_owned(), seq, file, len, progress })
    }

    fn new_segment(dir: &Path, seq: u64) -> Result<(File, u64), JournalError> {
        let path = segment_path(dir, seq);
        let mut file = owner_only().create_new(true).append(true).open(&path).map_err(io_err(&path))?;
        file.write_all(MAGIC).map_err(io_err(&path))?;
        Ok((file, MAGIC.len() as u64))
    }

    /// Appends encoded records (whole records only) and publishes the new end.
    pub fn append(&mut self, records: &[u8]) -> Result<(), JournalError> {
        if self.len >= SEGMENT_BYTES {
            self.sync()?;
            let (file, len) = Self::new_segment(&self.dir, self.seq + 1)?;
            (self.file, self.len, self.seq) = (file, len, self.seq + 1);
            self.progress.set_head(self.seq, len);
        }
        let path = segment_path(&self.dir, self.seq);
        if let Err(e) = self.file.write_all(records) {
            // A partial write would leave a torn record mid-segment: cut the
            // file back to the last whole batch before reporting.
            let _ = self.file.set_len(self.len);
            return Err(io_err(&path)(e));
        }
        self.len += records.len() as u64;
        self.progress.set_head(self.seq, self.len);
        Ok(())
    }

    /// Deletes the segment and the ingest position: for a clean stop, once
    /// everything journaled is in the store.
    pub fn discard(self) {
        let _ = std::fs::remove_file(segment_path(&self.dir, self.seq));
        let _ = std::fs::remove_file(self.dir.join(POS_FILE));
    }

    /// Forces the segment to disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(io_err(&segment_path(&self.dir, self.seq)))
    }
}

// ---- ingesting --------------------------------------------------------------

/// The read side: loads journaled rows into the store.
pub struct Ingest {
    dir: PathBuf,
    store: std::sync::Arc<dyn Store>,
    seq: u64,
    off: u64,
    file: Option<File>,
    buf: Vec<u8>,
    rows: Vec<ClickRow>,
    progress: std::sync::Arc<Progress>,
    /// Records skipped because they were damaged.
    pub corrupt: u64,
}

impl Ingest {
    /// Starts at the journal's head (call after [`recover`] and
    /// [`Journal::create`]).
    pub fn new(dir: &Path, store: std::sync::Arc<dyn Store>, progress: std::sync::Arc<Progress>) -> Ingest {
        Ingest {
            dir: dir.to_owned(),
            store,
            seq: progress.ingest_seq.load(Relaxed),
            off: progress.ingest_off.load(Relaxed),
            file: None,
            buf: Vec::new(),
            rows: Vec::new(),
            progress,
            corrupt: 0,
        }
    }

    /// Whether everything journaled so far is in the store.
    pub fn caught_up(&self) -> bool {
        let (seq, end) = self.progress.head();
        self.seq == seq && self.off >= end
    }

    /// Loads up to `max_rows` journaled rows into the store in one
    /// transaction; returns how many. Store errors are returned with
    /// nothing skipped: the same rows are read again next time.
    pub fn step(&mut self, max_rows: usize) -> Result<usize, JournalError> {
        let (head_seq, head_end) = self.progress.head();
        let path = segment_path(&self.dir, self.seq);
        if self.file.is_none() {
            match File::open(&path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.seq < head_seq => {
                    self.next_segment();
                    return Ok(0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The segment being written was deleted under us: what
                    // it held is gone. Say so once and carry on at its end.
                    self.corrupt += 1;
                    tracing::error!(segment = %path.display(), "the click journal segment was deleted; its rows are lost");
                    self.off = head_end;
                    self.progress.ingest_off.store(self.off, Relaxed);
                    return Ok(0);
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        let Some(file) = self.file.as_mut() else { return Ok(0) };
        // A finished segment is read to its end; the current one only up
        // to its last whole batch.
        let finished = self.seq < head_seq;
        let limit = if finished { file.metadata().map_err(io_err(&path))?.len() } else { head_end };
        self.rows.clear();
        let mut off = self.off;
        let mut bad = false;
        while self.rows.len() < max_rows && off < limit {
            // Enough for the rows still wanted (records average ~300
            // bytes, so this rarely needs a second read), not the whole
            // chunk: the rest would be read again by the next step.
            let left = (limit - off) as usize;
            let want = left.min(((max_rows - self.rows.len()) * 512).clamp(64 << 10, CHUNK));
            self.buf.resize(want, 0);
            file.seek(SeekFrom::Start(off)).map_err(io_err(&path))?;
            file.read_exact(&mut self.buf).map_err(io_err(&path))?;
            match parse(&self.buf, max_rows, &mut self.rows) {
                // The current segment ends on a whole batch, so this only
                // happens to a finished one with a partial record at its end,
                // or to a record bigger than the window read (records are
                // < 8 KiB, windows ≥ 64 KiB): damage either way.
                Parsed::Ok(0) => {
                    bad = finished || want < left;
                    break;
                }
                Parsed::Ok(n) => off += n as u64,
                Parsed::Corrupt(n) => {
                    off += n as u64;
                    bad = true;
                    break;
                }
            }
        }
        let n = self.rows.len();
        if n > 0 {
            self.store.insert_clicks(&self.rows)?;
        }
        self.off = off;
        if bad {
            // Skip only the damaged bytes: find the next valid record in
            // what is left of the segment (up to the last whole batch).
            let mut rest = vec![0; (limit - off) as usize];
            file.seek(SeekFrom::Start(off)).map_err(io_err(&path))?;
            file.read_exact(&mut rest).map_err(io_err(&path))?;
            let next = resync(&rest, 1).map_or(limit, |r| off + r as u64);
            self.corrupt += 1;
            tracing::error!(
                segment = %path.display(),
                offset = off,
                bytes = next - off,
                "damaged record in the click journal: its bytes are skipped, the records after it are loaded"
            );
            self.off = next;
        }
        self.progress.ingest_off.store(self.off, Relaxed);
        if finished && self.off >= limit {
            let _ = std::fs::remove_file(&path);
            self.next_segment();
        } else if n > 0 {
            self.save_position();
        }
        Ok(n)
    }

    fn next_segment(&mut self) {
        self.file = None;
        self.seq += 1;
        self.off = MAGIC.len() as u64;
        self.progress.ingest_seq.store(self.seq, Relaxed);
        self.progress.ingest_off.store(self.off, Relaxed);
        self.save_position();
    }

    fn save_position(&self) {
        // Best effort: a lost or stale position only replays rows, which
        // the store ignores.
        let tmp = self.dir.join(format!("{POS_FILE}.tmp"));
        let written = owner_only()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|mut f| f.write_all(format!("{} {}\n", self.seq, self.off).as_bytes()));
        if written.is_ok() {
            let _ = std::fs::rename(&tmp, self.dir.join(POS_FILE));
        }
    }
}

/// Takes the journal directory for this process: an exclusive `flock` on
/// `journal/lock`, held as long as the returned file is open. A second
/// server on the same data directory would otherwise load and delete the
/// first one's segments at its start-up.
pub fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    smartlink_store::private_dir(dir).map_err(io_err(dir))?;
    let path = dir.join("lock");
    let file = owner_only().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let cause = std::io::Error::other(
                "another smartlink process is using this data directory (its click journal is locked)",
            );
            return Err(JournalError::Io { path: path.display().to_string(), cause });
        }
    }
    Ok(file)
}

/// What [`recover`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Rows loaded into the store.
    pub rows: u64,
    /// Damaged stretches skipped (each logged with its segment, offset and
    /// size), and an ingest cursor that pointed nowhere.
    pub damaged: u64,
}

/// Loads every segment a previous run left into the store and deletes
/// them. A torn record at a segment's end (a crash mid-write) is dropped
/// with a warning. Damage anywhere else (a bad checksum, a length out of
/// range, a record that does not decode) is logged and counted, and
/// loading resumes at the next valid record, so only the damaged bytes are
/// lost. An ingest cursor that names no segment or an offset outside its
/// segment is logged, counted and ignored: everything is loaded (rows
/// already in the store are not counted twice).
pub fn recover(dir: &Path, store: &dyn Store) -> Result<Recovered, JournalError> {
    smartlink_store::private_dir(dir).map_err(io_err(dir))?;
    let pos_text = std::fs::read_to_string(dir.join(POS_FILE)).ok();
    let mut pos = pos_text.as_deref().and_then(|s| {
        let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
        Some((it.next()??, it.next()??))
    });
    let mut out = Recovered::default();
    let existing = segments(dir)?;
    if pos_text.as_deref().is_some_and(|t| !t.trim().is_empty()) {
        let valid = pos.is_some_and(|(s, off)| {
            let first = existing.first().copied().unwrap_or(s);
            match existing.contains(&s) {
                true => {
                    let len = std::fs::metadata(segment_path(dir, s)).map(|m| m.len()).unwrap_or(0);
                    (MAGIC.len() as u64..=len).contains(&off)
                }
                // Every segment before the cursor's was loaded and deleted.
                false => s < first,
            }
        });
        if !valid {
            out.damaged += 1;
            tracing::error!(
                cursor = %pos_text.as_deref().unwrap_or("").trim(),
                "the click journal's ingest cursor points outside the journal; ignoring it and loading every segment"
            );
            pos = None;
        }
    }
    let mut rows = Vec::new();
    for seq in existing {
        let path = segment_path(dir, seq);
        let mut data = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut data)).map_err(io_err(&path))?;
        let mut at = match pos {
            Some((s, _)) if seq < s => data.len(), // already ingested
            Some((s, off)) if seq == s => off as usize,
            _ => MAGIC.len(),
        };
        if !data.starts_with(MAGIC) {
            out.damaged += 1;
            tracing::error!(segment = %path.display(), "not a click journal segment; skipped");
            at = data.len();
        }
        const BATCH: usize = 50_000;
        while at < data.len() {
            rows.clear();
            let parsed = parse(&data[at..], BATCH, &mut rows);
            if !rows.is_empty() {
                store.insert_clicks(&rows)?;
                out.rows += rows.len() as u64;
            }
            let stop = match parsed {
                Parsed::Ok(n) if rows.len() == BATCH || at + n == data.len() => {
                    at += n;
                    continue;
                }
                // A record not all there: a torn tail, unless valid records follow.
                Parsed::Ok(n) => at + n,
                Parsed::Corrupt(n) => at + n,
            };
            match resync(&data, stop + 1) {
                Some(next) => {
                    out.damaged += 1;
                    tracing::error!(
                        segment = %path.display(),
                        offset = stop,
                        bytes = next - stop,
                        "damaged record in the click journal: its bytes are skipped, the records after it are loaded"
                    );
                    at = next;
                }
                None if matches!(parsed, Parsed::Ok(_)) => {
                    tracing::warn!(
                        segment = %path.display(),
                        bytes = data.len() - stop,
                        "click journal ends in a torn record (a crash mid-write); it is dropped"
                    );
                    break;
                }
                None => {
                    out.damaged += 1;
                    tracing::error!(
                        segment = %path.display(),
                        offset = stop,
                        bytes = data.len() - stop,
                        "damaged record at the end of a click journal segment: its bytes are skipped"
                    );
                    break;
                }
            }
        }
        std::fs::remove_file(&path).map_err(io_err(&path))?;
    }
    let _ = std::fs::remove_file(dir.join(POS_FILE));
    if out.rows > 0 {
        tracing::info!(rows = out.rows, "loaded click rows left in the journal by the previous run");
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smartlink_core::engine::FallbackReason;
    use smartlink_core::model::{Browser, Country, Device, Language, Os};
    use smartlink_core::router::Reason;
    use smartlink_store::SqliteStore;
    use smartlink_visitor::quality::QualityClass;
    use smartlink_visitor::quality::{Quality, Reason as QReason, Reasons};
    use std::sync::Arc;

    pub(crate) fn event(i: u32) -> ClickEvent {
        let mut reasons = Reasons::NONE;
        if !i.is_multiple_of(2) {
            reasons.insert(QReason::Headless);
            reasons.insert(QReason::Datacenter);
        }
        ClickEvent {
            click_id: format!("id-{i:06}-{}", "x".repeat(30)),
            ts_ms: 1_790_000_000_000 + i as i64 * 7,
            smartlink: 3,
            offer: (!i.is_multiple_of(3)).then_some(i % 50 + 1),
            affiliate: (!i.is_multiple_of(4)).then_some(9),
            subs: [format!("pub {i} & co"), "ünï".into(), String::new(), "x".repeat(256), "5".into()],
            ip: Some(if i.is_multiple_of(2) { "203.0.113.9".parse().unwrap() } else { "2001:db8::1".parse().unwrap() }),
            country: Country::parse("DE").unwrap(),
            device: Device::Mobile,
            os: Os::Android,
            browser: Browser::Chrome,
            language: (!i.is_multiple_of(5)).then(|| Language::parse("de").unwrap()),
            referrer: "https://news.example/a?b=c".into(),
            user_agent: "Mozilla/5.0 (Linux; Android 14) Chrome/120 Mobile".into(),
            reason: if i.is_multiple_of(3) { Reason::Fallback } else { Reason::BestScore },
            fallback_reason: (i.is_multiple_of(3)).then_some(FallbackReason::AllCapped),
            propensity: 0.125 + i as f64,
            quality: Quality::from_reasons(reasons),
            class: if !i.is_multiple_of(2) { QualityClass::Bot } else { QualityClass::Human },
            cost: i as f64 * 0.0125,
            source: (!i.is_multiple_of(2)).then_some(4),
        }
    }

    fn store(dir: &Path) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_dir(dir).unwrap())
    }

    #[test]
    fn a_record_decodes_to_the_row_the_click_describes() {
        let e = event(1);
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        let mut rows = Vec::new();
        assert_eq!(parse(&buf, 10, &mut rows), Parsed::Ok(buf.len()));
        let r = &rows[0];
        assert_eq!(
            (r.click_id.as_str(), r.ts_ms, r.smartlink, r.offer, r.affiliate),
            (&*e.click_id, e.ts_ms, 3, e.offer, Some(9))
        );
        assert_eq!(r.subs, e.subs);
        assert_eq!(
            (r.ip.as_str(), r.country.as_str(), r.device.as_str(), r.os.as_str()),
            ("2001:db8::1", "DE", "mobile", "android")
        );
        assert_eq!((r.browser.as_str(), r.language.as_str(), r.reason.as_str()), ("chrome", "de", "best_score"));
        assert_eq!((r.referrer.as_str(), r.user_agent.as_str()), (&*e.referrer, &*e.user_agent));
        assert_eq!((r.fallback_reason.as_deref(), r.propensity, r.quality.as_str()), (None, 1.125, "bot"));
        assert_eq!(
            (r.quality_score, r.quality_reasons.as_str()),
            (e.quality.score, e.quality.reasons.codes().as_str())
        );
        let f = {
            let mut b = Vec::new();
            encode(&event(3), &mut b);
            decode(&b[8..]).unwrap()
        };
        assert_eq!((f.offer, f.fallback_reason.as_deref(), f.reason.as_str()), (None, Some("all_capped"), "fallback"));
        assert_eq!((r.cost, r.source, f.cost, f.source), (0.0125, Some(4), 3.0 * 0.0125, Some(4)));
    }

    #[test]
    fn a_record_from_before_costs_decodes_with_no_cost_and_no_source() {
        let mut buf = Vec::new();
        encode(&event(1), &mut buf);
        // The old format: the same record without the trailer, re-framed.
        let trailer = 1 + 8 + 5;
        let payload = buf[8..buf.len() - trailer].to_vec();
        let row = decode(&payload).expect("an old record decodes");
        assert_eq!((row.cost, row.source, row.click_id), (0.0, None, event(1).click_id));
        // An unknown trailer tag is damage, not a record.
        let mut bad = buf[8..].to_vec();
        let at = bad.len() - trailer;
        bad[at] = 7;
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let mut buf = Vec::new();
        encode(&event(2), &mut buf);
        encode(&event(4), &mut buf);
        let second = buf.len() / 2;
        buf[second + 20] ^= 0x10;
        let mut rows = Vec::new();
        assert!(matches!(parse(&buf, 10, &mut rows), Parsed::Corrupt(_)));
        assert_eq!(rows.len(), 1, "the record before the damage is kept");
    }

    /// Records for events `ids`, framed.
    fn records(ids: std::ops::Range<u32>) -> Vec<u8> {
        let mut buf = Vec::new();
        for i in ids {
            encode(&event(i), &mut buf);
        }
        buf
    }

    /// A store, a fresh journal and its ingester in a temporary data dir.
    struct Fixture {
        /// Bind it (`d: _d`): dropping it deletes the directory.
        d: tempfile::TempDir,
        jdir: PathBuf,
        s: Arc<dyn Store>,
        progress: Arc<Progress>,
        j: Journal,
        ing: Ingest,
    }

    fn fixture() -> Fixture {
        let d = tempfile::tempdir().unwrap();
        let jdir = d.path().join("journal");
        let s = store(d.path());
        let progress = Arc::new(Progress::default());
        let j = Journal::create(&jdir, progress.clone()).unwrap();
        let ing = Ingest::new(&jdir, s.clone(), progress.clone());
        Fixture { d, jdir, s, progress, j, ing }
    }

    #[test]
    fn journaled_rows_reach_the_store_and_finished_segments_are_deleted() {
        let Fixture { d: _d, jdir, s, progress, mut j, mut ing } = fixture();
        let mut buf = records(0..300);
        j.append(&buf).unwrap();
        assert!(!ing.caught_up());
        assert_eq!(progress.backlog_bytes(), buf.len() as u64);
        assert_eq!(ing.step(100).unwrap(), 100, "a step loads at most its batch");
        assert_eq!(ing.step(1000).unwrap(), 200);
        assert!(ing.caught_up());
        assert_eq!(progress.backlog_bytes(), 0);
        assert_eq!(s.count_clicks().unwrap(), 300);
        // Force a roll: the old segment is read to its end, then deleted.
        j.len = SEGMENT_BYTES;
        buf.clear();
        encode(&event(300), &mut buf);
        j.append(&buf).unwrap();
        assert_eq!(segments(&jdir).unwrap().len(), 2);
        while !ing.caught_up() {
            ing.step(1000).unwrap();
        }
        assert_eq!(segments(&jdir).unwrap().len(), 1, "the finished segment is gone");
        assert_eq!(s.count_clicks().unwrap(), 301);
    }

    #[test]
    fn recovery_loads_what_a_crash_left_and_drops_only_a_torn_tail() {
        let Fixture { d: _d, jdir, s, mut j, .. } = fixture();
        j.append(&records(0..50)).unwrap();
        // A crash mid-write: half of one more record.
        let torn = records(50..51);
        j.file.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(j);
        // Part of it was already loaded before the crash: no double count.
        let mut first = Vec::new();
        parse(&std::fs::read(segment_path(&jdir, 1)).unwrap()[MAGIC.len()..], 10, &mut first);
        s.insert_clicks(&first).unwrap();
        assert_eq!(recover(&jdir, &*s).unwrap(), Recovered { rows: 50, damaged: 0 });
        assert_eq!(s.count_clicks().unwrap(), 50);
        assert!(segments(&jdir).unwrap().is_empty(), "recovered segments are removed");
        assert_eq!(recover(&jdir, &*s).unwrap().rows, 0, "recovery is idempotent");
    }

    /// A journal left by a crash: segment 1 holding events `0..n`, the
    /// offsets of their records, and a store to recover into.
    fn left_behind(n: u32) -> (tempfile::TempDir, PathBuf, Arc<dyn Store>, Vec<usize>) {
        let Fixture { d, jdir, s, mut j, .. } = fixture();
        let mut offsets = Vec::new();
        let mut buf = Vec::new();
        for i in 0..n {
            offsets.push(MAGIC.len() + buf.len());
            encode(&event(i), &mut buf);
        }
        j.append(&buf).unwrap();
        drop(j);
        (d, jdir, s, offsets)
    }

    fn edit_segment(jdir: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let path = segment_path(jdir, 1);
        let mut data = std::fs::read(&path).unwrap();
        f(&mut data);
        std::fs::write(&path, data).unwrap();
    }

    #[test]
    fn damage_in_the_middle_loses_only_the_damaged_record_and_is_counted() {
        /// What is damaged, in which record of 5,000, and how.
        type Case = (&'static str, usize, fn(&mut [u8]));
        let cases: [Case; 4] = [
            ("a flipped payload byte", 100, |r| r[20] ^= 0x01),
            ("a bad checksum", 2_500, |r| r[4] ^= 0xff),
            ("a length out of range", 10, |r| r[..4].copy_from_slice(&0xffff_ff00u32.to_le_bytes())),
            ("a length a little too long", 4_000, |r| {
                let len = u32::from_le_bytes(r[..4].try_into().unwrap()) + 3;
                r[..4].copy_from_slice(&len.to_le_bytes());
            }),
        ];
        for (what, k, damage) in cases {
            let (_d, jdir, s, offsets) = left_behind(5_000);
            edit_segment(&jdir, |data| damage(&mut data[offsets[k]..]));
            let got = recover(&jdir, &*s).unwrap();
            assert_eq!(got, Recovered { rows: 4_999, damaged: 1 }, "{what}");
            assert_eq!(s.count_clicks().unwrap(), 4_999, "{what}");
        }
    }

    #[test]
    fn a_torn_tail_is_dropped_without_counting_it_as_damage() {
        let (_d, jdir, s, offsets) = left_behind(300);
        let cut = offsets[299] + 17;
        edit_segment(&jdir, |data| data.truncate(cut));
        assert_eq!(recover(&jdir, &*s).unwrap(), Recovered { rows: 299, damaged: 0 });
    }

    #[test]
    fn an_ingest_cursor_outside_the_journal_is_counted_and_ignored() {
        for cursor in ["1 999999999", "7 100", "1 3", "garbage"] {
            let (_d, jdir, s, _) = left_behind(500);
            std::fs::write(jdir.join(POS_FILE), cursor).unwrap();
            assert_eq!(recover(&jdir, &*s).unwrap(), Recovered { rows: 500, damaged: 1 }, "cursor {cursor:?}");
        }
        // A valid cursor is followed.
        let (_d, jdir, s, offsets) = left_behind(500);
        std::fs::write(jdir.join(POS_FILE), format!("1 {}", offsets[200])).unwrap();
        assert_eq!(recover(&jdir, &*s).unwrap(), Recovered { rows: 300, damaged: 0 });
    }

    #[test]
    fn live_ingest_skips_only_the_damaged_record() {
        let Fixture { d: _d, s, mut j, mut ing, .. } = fixture();
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..400 {
            offsets.push(buf.len());
            encode(&event(i), &mut buf);
        }
        buf[offsets[150] + 30] ^= 0x40;
        j.append(&buf).unwrap();
        while !ing.caught_up() {
            ing.step(1000).unwrap();
        }
        assert_eq!(s.count_clicks().unwrap(), 399);
        assert_eq!(ing.corrupt, 1);
    }

    #[test]
    fn recovery_starts_at_the_saved_position() {
        let Fixture { d, jdir, mut j, mut ing, .. } = fixture();
        j.append(&records(0..40)).unwrap();
        ing.step(30).unwrap();
        drop((j, ing));
        // Rows loaded before the stop are skipped, not re-read.
        let s2 = store(&d.path().join("other"));
        assert_eq!(recover(&jdir, &*s2).unwrap(), Recovered { rows: 10, damaged: 0 });
    }

    #[test]
    fn a_deleted_segment_is_reported_and_skipped_instead_of_retried_forever() {
        let Fixture { d: _d, jdir, mut j, mut ing, .. } = fixture();
        j.append(&records(1..2)).unwrap();
        std::fs::remove_dir_all(&jdir).unwrap();
        assert_eq!(ing.step(10).unwrap(), 0);
        assert!(ing.caught_up());
        assert_eq!(ing.corrupt, 1);
    }
}
