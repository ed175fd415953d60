//! Click-rate and duplicate detection: sliding-window counters per IP and
//! per IP+User-Agent, and a short memory of recent clicks, shared by every
//! worker thread without locks and in a fixed amount of memory.
//!
//! **Rates: a count-min sketch of sliding windows.** Time is cut into
//! windows of `window_secs`; the count over the last window is estimated the
//! usual way, `current + previous × (1 − elapsed fraction of current)`.
//! Each sketch cell is one `AtomicU32` holding both window counts and the
//! window they belong to: an 8-bit window tag and two 12-bit counts. A click
//! updates its cells with one compare-and-swap each; a cell whose tag is
//! one window old shifts `current` into `previous`, an older one restarts.
//! Nothing is ever cleared in bulk, so no update can be lost to a reset.
//! Keys are hashed (a per-instance random key, so nobody can aim at a
//! cell) into three rows: two for the IP and one for IP+UA. An IP's estimate
//! is the minimum of its two cells; an IP+UA's is the minimum of its cell
//! and the IP's estimate (the pair never clicks more than its IP). Sharing
//! a cell only adds, so every estimate is an over-estimate of the sketch's
//! window count: a busy neighbour can make a quiet IP look busier, never a
//! busy IP look quiet. Counts saturate at 4095 per window, so thresholds
//! above 4095 act as 4095.
//!
//! IPv6 addresses are counted per /64 (what one subscriber gets, and what
//! an attacker rotates within); IPv4-mapped IPv6 addresses as IPv4.
//!
//! **Duplicates: a table of recent clicks.** A duplicate is a yes/no
//! question with a threshold of one, where a sketch's collisions would turn
//! into false duplicates at any real load; instead a hash table of 8-way,
//! cache-line buckets keeps a 32-bit fingerprint and the time (10 ms units)
//! of each recent IP+UA+`dup_key`. A false duplicate needs a 32-bit
//! fingerprint collision within a bucket (about 2 in a billion). When a
//! bucket is full of live entries, the oldest is replaced: past the sizing
//! load some late duplicates go unnoticed, but clean clicks are never
//! flagged.
//!
//! **Size.** [`Behaviour::with_capacity`] sizes everything for a number of
//! distinct IPs per window: `capacity / 3` cells per row and room for
//! `capacity × duplicate_secs / window_secs` recent clicks (at most
//! `capacity`). At that load each sketch row holds about 3 clicks of other
//! keys per cell, and a key that clicks once is flagged with probability
//! under 1e-7 (the IP+UA threshold of 10 needs 9 collisions in each of three
//! cells). [`Behaviour::new`] uses 100,000 IPs per window:
//! 3 × 33,334 × 4 B of sketch plus 2,084 × 64 B of duplicate table,
//! 533,384 bytes in all. Beyond the capacity, estimates grow (more false
//! suspects, never missed floods) and late duplicates are missed.
//!
//! Time is injected (`now_ms`); clocks of different threads may disagree by
//! a few milliseconds, which is handled (a cell already in the next window
//! is counted into, not reset).

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::{Reason, Reasons};

/// Thresholds and windows of [`Behaviour`]. A threshold of 0 turns its
/// reason off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BehaviourConfig {
    /// Length of the sliding window of the rate thresholds, seconds
    /// (default 60; 0 is taken as 1).
    pub window_secs: u32,
    /// Clicks per IP per window from which the IP is suspect
    /// ([`Reason::RateIp`]), default 20.
    pub ip_suspect: u32,
    /// Clicks per IP per window from which the IP is a bot
    /// ([`Reason::RateIpFlood`], reported instead of `RateIp`), default 60.
    pub ip_bot: u32,
    /// Clicks per IP+User-Agent per window from which the pair is suspect
    /// ([`Reason::RateIpUa`]), default 10.
    pub ip_ua_suspect: u32,
    /// A click with the same IP, UA and `dup_key` as a click less than this
    /// many seconds before is a [`Reason::Duplicate`] (to 10 ms), default 10.
    pub duplicate_secs: u32,
}

impl Default for BehaviourConfig {
    fn default() -> BehaviourConfig {
        BehaviourConfig { window_secs: 60, ip_suspect: 20, ip_bot: 60, ip_ua_suspect: 10, duplicate_secs: 10 }
    }
}

/// Sliding-window click counters with bounded memory, shared by all worker threads without locks
/// (atomics; count-min sketch or similar; approximate counts may only over-estimate). Time is injected (now_ms).
///
/// Rates: one count-min sketch of sliding windows (two rows for the IP, one
/// for IP+UA; each cell an `AtomicU32` with both window counts and a window
/// tag, updated by compare-and-swap, never cleared in bulk). Duplicates: an
/// 8-way table of 32-bit fingerprints and times. Sized at construction for a
/// number of distinct IPs per window ([`Behaviour::with_capacity`]); at that
/// load a key that clicks once is flagged with probability under 1e-7. IPv6
/// is counted per /64. The design and its arithmetic are documented in
/// `quality/behaviour.rs`.
pub struct Behaviour {
    cfg: BehaviourConfig,
    /// Window length, ms.
    window_ms: i64,
    /// Thresholds clamped to [`MAX_COUNT`]; 0 = off.
    ip_suspect: u64,
    ip_bot: u64,
    ip_ua_suspect: u64,
    /// Duplicate window in 10 ms units; 0 = off.
    dup_units: u32,
    /// Cells per sketch row.
    width: u32,
    /// Rows: IP (first hash), IP (second hash), IP+UA; `width` cells each.
    cells: Box<[AtomicU32]>,
    dup: Box<[Bucket]>,
    keys: [u64; 8],
}

/// Count saturation point of a sketch cell (12 bits).
const MAX_COUNT: u32 = 0xfff;
/// Slots per duplicate-table bucket: one 64-byte cache line.
const SLOTS: usize = 8;
/// Duplicate-table time unit, ms.
const DUP_UNIT_MS: i64 = 10;
/// A duplicate entry up to this many units in the future (another thread's
/// clock ahead of ours) counts as now.
const DUP_SKEW_UNITS: u32 = 100;

#[derive(Default)]
#[repr(align(64))]
struct Bucket([AtomicU64; SLOTS]);

impl Behaviour {
    /// The number of distinct IPs per window [`Behaviour::new`] is sized for.
    pub const DEFAULT_CAPACITY: usize = 100_000;
    /// The largest click-rate threshold the counters can tell apart: they
    /// count to this per window and saturate there.
    pub const MAX_THRESHOLD: u32 = MAX_COUNT;
    /// The capacities [`Behaviour::with_capacity`] accepts (others are
    /// clamped into this range).
    pub const CAPACITY_RANGE: std::ops::RangeInclusive<usize> = 1_000..=100_000_000;

    /// Counters sized for [`Behaviour::DEFAULT_CAPACITY`] distinct IPs per
    /// window (about 520 KiB).
    pub fn new(cfg: BehaviourConfig) -> Behaviour {
        Behaviour::with_capacity(cfg, Behaviour::DEFAULT_CAPACITY)
    }

    /// Counters sized for `ips_per_window` distinct IPs per window (clamped
    /// to 1,000..=100,000,000): about `4 × ips_per_window` bytes of sketch
    /// plus `8 × ips_per_window × duplicate_secs / window_secs` bytes of
    /// duplicate table.
    pub fn with_capacity(cfg: BehaviourConfig, ips_per_window: usize) -> Behaviour {
        let capacity = ips_per_window.clamp(*Self::CAPACITY_RANGE.start(), *Self::CAPACITY_RANGE.end()) as u64;
        let window_secs = u64::from(cfg.window_secs.max(1));
        let width = capacity.div_ceil(3) as u32;
        let dup_entries = capacity * u64::from(cfg.duplicate_secs).min(window_secs) / window_secs;
        let buckets = (dup_entries as usize).div_ceil(SLOTS).max(1);
        let clamp = |t: u32| u64::from(t.min(MAX_COUNT));
        Behaviour {
            cfg,
            window_ms: window_secs as i64 * 1000,
            ip_suspect: clamp(cfg.ip_suspect),
            ip_bot: clamp(cfg.ip_bot),
            ip_ua_suspect: clamp(cfg.ip_ua_suspect),
            dup_units: cfg.duplicate_secs.saturating_mul((1000 / DUP_UNIT_MS) as u32),
            width,
            cells: (0..3 * width as usize).map(|_| AtomicU32::new(0)).collect(),
            dup: (0..buckets).map(|_| Bucket::default()).collect(),
            keys: random_keys(),
        }
    }

    /// The clicks per window the counters are sized for (three per cell of
    /// a sketch row): past it, estimates grow with the traffic.
    pub fn capacity(&self) -> u64 {
        3 * u64::from(self.width)
    }

    /// The configuration it was built with.
    pub fn config(&self) -> BehaviourConfig {
        self.cfg
    }

    /// Records a click and returns the behaviour reasons (RateIp/RateIpFlood/RateIpUa/Duplicate).
    /// `dup_key` is a caller-computed hash of (smartlink, subs); ip None = no IP-based reasons.
    ///
    /// The click itself is counted: the 20th click of an IP within the
    /// window is the first with [`Reason::RateIp`] (default thresholds).
    /// Over the bot threshold, [`Reason::RateIpFlood`] is reported instead
    /// of `RateIp`. Without an IP nothing is recorded.
    pub fn observe(&self, ip: Option<IpAddr>, ua: &str, dup_key: u64, now_ms: i64) -> Reasons {
        let Some(ip) = ip else { return Reasons::NONE };
        let k = &self.keys;
        let (ip_bits, family) = ip_key(ip);
        let ip_h = mix(ip_bits ^ k[0], family ^ k[1]);
        let ua_h = hash_bytes(ua.as_bytes(), k[2], k[3]);
        let ip_ua_h = mix(ip_h ^ k[4], ua_h ^ k[5]);

        let epoch = now_ms.div_euclid(self.window_ms);
        let remaining = (self.window_ms - now_ms.rem_euclid(self.window_ms)) as u64;
        let window = self.window_ms as u64;
        let tag = (epoch & 0xff) as u32;
        let w = self.width as usize;
        let cell = |row: usize, h: u32| &self.cells[row * w + reduce(h, self.width)];
        let count = |v: u32| weighted(v, tag, remaining, window);

        let (a, b, c) = (cell(0, ip_h as u32), cell(1, (ip_h >> 32) as u32), cell(2, ip_ua_h as u32));
        let dup_h = mix(ip_ua_h ^ k[6], dup_key ^ k[7]);
        let bucket = &self.dup[reduce(dup_h as u32, self.dup.len() as u32)];
        // Load every cache line first: plain loads are independent, so
        // their misses overlap (in a sketch sized for real traffic nearly
        // every access misses), while each compare-and-swap below is a
        // full barrier that would otherwise take its miss alone.
        let (va, vb, vc) = (a.load(Relaxed), b.load(Relaxed), c.load(Relaxed));
        std::hint::black_box(bucket.0[0].load(Relaxed));
        let ip_a = count(bump(a, va, tag));
        let ip_b = count(bump(b, vb, tag));
        let ip_ua = count(bump(c, vc, tag));
        let ip_est = ip_a.min(ip_b);
        let ip_ua_est = ip_ua.min(ip_est);

        let over = |est: u64, threshold: u64| threshold > 0 && est >= threshold * window;
        let mut reasons = Reasons::NONE;
        if over(ip_est, self.ip_bot) {
            reasons.insert(Reason::RateIpFlood);
        } else if over(ip_est, self.ip_suspect) {
            reasons.insert(Reason::RateIp);
        }
        if over(ip_ua_est, self.ip_ua_suspect) {
            reasons.insert(Reason::RateIpUa);
        }
        if self.dup_units > 0 && self.seen_recently(bucket, dup_h, now_ms) {
            reasons.insert(Reason::Duplicate);
        }
        reasons
    }

    /// Heap and inline size, bytes; fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Behaviour>()
            + std::mem::size_of_val::<[AtomicU32]>(&self.cells)
            + std::mem::size_of_val::<[Bucket]>(&self.dup)
    }

    /// Whether the click `h` (in its `bucket`) was seen less than the
    /// duplicate window ago, recording it as seen now either way.
    fn seen_recently(&self, bucket: &Bucket, h: u64, now_ms: i64) -> bool {
        let fp = (h >> 32) as u32 | 1; // never 0: 0 is an empty slot
                                       // Wrapping time in 10 ms units; ages are taken modulo 2^32 (497 days).
        let now = now_ms.div_euclid(DUP_UNIT_MS) as u32;
        let entry = u64::from(fp) << 32 | u64::from(now);
        // The slot to overwrite on a miss: empty, else expired, else oldest.
        let (mut victim, mut victim_rank, mut victim_old) = (0, 0u64, 0u64);
        for (i, slot) in bucket.0.iter().enumerate() {
            let v = slot.load(Relaxed);
            let age = now.wrapping_sub(v as u32);
            let ahead = age > u32::MAX - DUP_SKEW_UNITS;
            let live = age < self.dup_units || ahead;
            if v != 0 && (v >> 32) as u32 == fp {
                if !ahead && age > 0 {
                    let _ = slot.compare_exchange(v, entry, Relaxed, Relaxed);
                }
                return live;
            }
            let rank = match (v == 0, live) {
                (true, _) => u64::MAX,
                (false, false) => u64::MAX - 1,
                (false, true) if ahead => 0,
                (false, true) => u64::from(age),
            };
            if rank > victim_rank || i == 0 {
                (victim, victim_rank, victim_old) = (i, rank, v);
            }
        }
        // Lost to a concurrent insert: this click goes unrecorded (a later
        // duplicate of it may be missed; nothing is flagged wrongly).
        let _ = bucket.0[victim].compare_exchange(victim_old, entry, Relaxed, Relaxed);
        false
    }
}

impl fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Behaviour")
            .field("cfg", &self.cfg)
            .field("sketch_width", &self.width)
            .field("dup_slots", &(self.dup.len() * SLOTS))
            .field("memory_bytes", &self.memory_bytes())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Sketch cells: tag (8 bits, window number mod 256) | current (12) | previous (12).

fn unpack(v: u32) -> (u32, u32, u32) {
    (v >> 24, (v >> 12) & MAX_COUNT, v & MAX_COUNT)
}

fn pack(tag: u32, cur: u32, prev: u32) -> u32 {
    (tag << 24) | (cur << 12) | prev
}

/// The cell after one more click in window `tag`.
fn advance(v: u32, tag: u32) -> u32 {
    let (t, cur, prev) = unpack(v);
    let inc = |c: u32| (c + 1).min(MAX_COUNT);
    match tag.wrapping_sub(t) & 0xff {
        0 => pack(tag, inc(cur), prev),
        1 => pack(tag, 1, cur),
        // The cell is already in the next window (a thread whose clock is
        // slightly ahead crossed first): ours is its previous one.
        0xff => pack(t, cur, inc(prev)),
        // Idle for two windows or more: forgotten. (An idle time of exactly
        // 256k windows reads as recent: an over-estimate, of a cell nobody
        // touched for hours.)
        _ => pack(tag, 1, 0),
    }
}

/// Records a click in `cell` and returns the cell's new value.
/// `old` is the cell's value as last loaded (the swap checks it).
fn bump(cell: &AtomicU32, mut old: u32, tag: u32) -> u32 {
    loop {
        let new = advance(old, tag);
        match cell.compare_exchange_weak(old, new, Relaxed, Relaxed) {
            Ok(_) => return new,
            Err(v) => old = v,
        }
    }
}

/// The sliding-window estimate of a freshly bumped cell, times the window
/// length: `current × window + previous × remaining`.
fn weighted(v: u32, tag: u32, remaining: u64, window: u64) -> u64 {
    let (t, cur, prev) = unpack(v);
    if t == tag {
        u64::from(cur) * window + u64::from(prev) * remaining
    } else {
        // Already in the next window: count both in full.
        u64::from(cur + prev) * window
    }
}

// ---------------------------------------------------------------------------
// Hashing: a folded-multiply hash (the wyhash / foldhash construction) under
// per-instance random keys. Not cryptographic; the keys only keep outsiders
// from choosing colliding inputs.

fn random_keys() -> [u64; 8] {
    let state = std::collections::hash_map::RandomState::new();
    std::array::from_fn(|i| {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.finish() | 1
    })
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The IP as hashed: IPv4 (also IPv4-mapped IPv6) whole, IPv6 by its /64;
/// plus the family, so the two never share a key.
fn ip_key(ip: IpAddr) -> (u64, u64) {
    match ip {
        IpAddr::V4(v4) => (u64::from(u32::from(v4)), 4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (u64::from(u32::from(v4)), 4),
            None => ((u128::from(v6) >> 64) as u64, 6),
        },
    }
}

fn hash_bytes(bytes: &[u8], k0: u64, k1: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let word = |b: &[u8]| {
        let mut buf = [0u8; 8];
        let n = b.len().min(8);
        buf[..n].copy_from_slice(&b[..n]);
        u64::from_le_bytes(buf)
    };
    let mut h = k0 ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        h = mix(word(&c[..8]) ^ h, word(&c[8..]) ^ k1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let (a, b) = rest.split_at(rest.len().min(8));
        h = mix(word(a) ^ h, word(b) ^ k1 ^ K);
    }
    mix(h ^ K, k1 ^ (bytes.len() as u64))
}

/// Maps a 32-bit hash uniformly onto `0..n` (Lemire's multiply-shift).
#[inline]
fn reduce(h: u32, n: u32) -> usize {
    ((u64::from(h) * u64::from(n)) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_counts_shifts_forgets_and_tolerates_a_clock_slightly_ahead() {
        let mut v = 0;
        for _ in 0..5 {
            v = advance(v, 7);
        }
        assert_eq!(unpack(v), (7, 5, 0));
        v = advance(v, 8);
        assert_eq!(unpack(v), (8, 1, 5));
        // Another thread already in window 9; we are still in 8.
        let ahead = advance(advance(v, 9), 8);
        assert_eq!(unpack(ahead), (9, 1, 2));
        assert_eq!(weighted(ahead, 8, 10, 100), 300);
        // Two windows of silence.
        assert_eq!(unpack(advance(v, 10)), (10, 1, 0));
        // Across the tag's wrap-around.
        assert_eq!(unpack(advance(pack(255, 3, 0), 0)), (0, 1, 3));
    }

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        let v = pack(1, MAX_COUNT, MAX_COUNT);
        assert_eq!(unpack(advance(v, 1)), (1, MAX_COUNT, MAX_COUNT));
        assert_eq!(unpack(advance(v, 2)), (2, 1, MAX_COUNT));
    }

    #[test]
    fn the_hash_reads_every_byte() {
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0";
        let base = hash_bytes(ua.as_bytes(), 1, 3);
        for i in 0..ua.len() {
            let mut b = ua.as_bytes().to_vec();
            b[i] ^= 1;
            assert_ne!(hash_bytes(&b, 1, 3), base, "byte {i}");
            assert_ne!(hash_bytes(&ua.as_bytes()[..i], 1, 3), base, "prefix {i}");
        }
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(ip_key(v4), ip_key(mapped));
    }
}
