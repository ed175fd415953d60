//! Durable storage for smartlink, behind the [`Store`] trait.
//!
//! The store knows rows, not routing: definitions are kept as opaque JSON
//! documents keyed by kind and id (the server validates them), clicks as
//! flat rows. That keeps the interface narrow enough to add a PostgreSQL
//! implementation for several stateless nodes without touching the server.
//!
//! **Architecture invariant:** nothing on the click path calls the store.
//! Clicks reach it in batches from a background writer.

mod sqlite;

pub use sqlite::SqliteStore;

/// One error type for the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot open the data directory {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("numeric keys for {0} are exhausted")]
    KeysExhausted(&'static str),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The kinds of definition the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Advertiser,
    Affiliate,
    Offer,
    Smartlink,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Advertiser, Kind::Affiliate, Kind::Offer, Kind::Smartlink];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Advertiser => "advertiser",
            Kind::Affiliate => "affiliate",
            Kind::Offer => "offer",
            Kind::Smartlink => "smartlink",
        }
    }
}

/// A stored definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    pub kind: Kind,
    pub id: String,
    /// Stable numeric key: assigned on first sight of (kind, id), never
    /// reused, kept even after a delete so old click ids still resolve.
    pub key: u32,
    /// The definition as JSON.
    pub spec: String,
}

/// A change to the definitions, applied atomically with others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put { kind: Kind, id: String, spec: String },
    Delete { kind: Kind, id: String },
}

/// One click as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClickRow {
    pub click_id: String,
    pub ts_ms: i64,
    pub smartlink: u32,
    pub offer: Option<u32>,
    pub affiliate: Option<u32>,
    pub subs: [String; 5],
    pub ip: String,
    pub country: String,
    pub device: String,
    pub os: String,
    pub browser: String,
    pub language: String,
    pub referrer: String,
    pub user_agent: String,
    /// Routing reason (`best_score`, `override`, `fallback`, ...).
    pub reason: String,
    /// For fallback clicks: why nothing was eligible.
    pub fallback_reason: Option<String>,
    pub propensity: f64,
}

/// Everything smartlink persists. Implementations must be usable from
/// several threads; calls may block (the server calls them off the async
/// runtime's worker threads).
pub trait Store: Send + Sync + 'static {
    /// All live definitions, ordered by kind then key.
    fn entities(&self) -> Result<Vec<Entity>>;
    /// The numeric keys of every (kind, id) ever seen, including deleted ones.
    fn keys(&self) -> Result<Vec<(Kind, String, u32)>>;
    /// Applies changes in one transaction, assigning keys to new ids.
    fn apply(&self, changes: &[Change]) -> Result<()>;

    fn meta(&self, key: &str) -> Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    /// Inserts a batch of clicks in one transaction. Click ids are unique;
    /// a row already present is left as it is (replaying a batch is safe).
    fn insert_clicks(&self, batch: &[ClickRow]) -> Result<()>;
    /// Number of clicks per offer key with `from_ms <= ts_ms < to_ms`.
    fn click_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64)>>;
    fn count_clicks(&self) -> Result<u64>;
    /// Clicks with `from_ms <= ts_ms`, oldest first, at most `limit`.
    fn clicks_since(&self, from_ms: i64, limit: usize) -> Result<Vec<ClickRow>>;
}
