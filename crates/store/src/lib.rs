//! Durable storage for smartlink, behind the [`Store`] trait.
//!
//! The store knows rows, not routing: definitions are kept as opaque JSON
//! documents keyed by kind and id (the server validates them), clicks as
//! flat rows. That keeps the interface narrow enough to add a PostgreSQL
//! implementation for several stateless nodes without touching the server.
//!
//! **Architecture invariant:** nothing on the click path calls the store.
//! Clicks reach it in batches from a background writer.

mod feed;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

pub use feed::{micros, FeedClick, FeedConversion, FeedMarks, FeedSource};
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use sqlite::{private_dir, private_file, SqliteStore};

/// A store URL with any password hidden, for messages and logs: the
/// password of `postgres://user:password@host/db`, and the value of a
/// `password` parameter (`?password=...` or libpq's `password=...`).
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let (Some(s), Some(at)) = (out.find("://"), out.rfind('@')) {
        if at > s {
            if let Some(colon) = out[s + 3..at].find(':') {
                out.replace_range(s + 3 + colon + 1..at, "***");
            }
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].find("password=").map(|i| i + from) {
        let start = i + "password=".len();
        let end = out[start..].find(['&', ' ']).map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
        from = start + 3;
    }
    out
}

/// One error type for the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(rusqlite::Error),
    /// PostgreSQL refused or failed (the `postgres` feature's [`PgStore`]).
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL error: {0}")]
    Pg(::postgres::Error),
    /// A read query ran past the store's time limit and was interrupted.
    #[error("the query ran longer than the store's time limit (server.query_timeout_secs); narrow the period, the filters or the grouping")]
    Timeout,
    #[error("cannot open the data directory {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("numeric keys for {0} are exhausted")]
    KeysExhausted(&'static str),
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The columnar analytics store failed (its own message).
    #[error("analytics store error: {0}")]
    Analytics(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match &e {
            // Only read connections are interrupted, by their time limit.
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OperationInterrupted => {
                StoreError::Timeout
            }
            _ => StoreError::Db(e),
        }
    }
}

impl StoreError {
    /// Whether the store could not be reached (a PostgreSQL server down or
    /// cut off: a connection or I/O failure, not an error the server
    /// answered): worth a retry later, not a fault of the request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            StoreError::Pg(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The kinds of definition the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Advertiser,
    Affiliate,
    Offer,
    Smartlink,
    /// A traffic source.
    Source,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Advertiser, Kind::Affiliate, Kind::Offer, Kind::Smartlink, Kind::Source];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Advertiser => "advertiser",
            Kind::Affiliate => "affiliate",
            Kind::Offer => "offer",
            Kind::Smartlink => "smartlink",
            Kind::Source => "source",
        }
    }
}

/// The name a link key is reported under: a smartlink's slug, or
/// `direct:{offer}` for the direct link of an offer
/// (`smartlink_core::model::DIRECT_LINK_BIT`). [`Store::keys`] lists
/// every direct link under [`Kind::Smartlink`] with this name.
pub fn direct_link_name(offer_id: &str) -> String {
    format!("{DIRECT_LINK_PREFIX}{offer_id}")
}

/// How a direct link's name starts (`:` is not allowed in a slug).
pub const DIRECT_LINK_PREFIX: &str = "direct:";

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

/// One recorded definition change.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    pub id: i64,
    pub ts_ms: i64,
    pub kind: Kind,
    pub entity: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// Specs as stored (JSON); `None` before a create / after a delete.
    pub old_spec: Option<String>,
    pub new_spec: Option<String>,
    /// Who made it: `api`, `file:PATH`, `import:PATH`.
    pub actor: String,
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
    /// Quality class: `human`, `suspect`, `bot` or `preview` (empty reads
    /// as `human`).
    pub quality: String,
    /// Quality score, 0..=100.
    pub quality_score: u8,
    /// Comma-separated quality reason codes.
    pub quality_reasons: String,
    /// What the click cost, in the base currency: the click URL's `cost`,
    /// else the link's or source's CPC/CPM model, until a cost import for
    /// its period replaces it with its share of the billed amount.
    pub cost: f64,
    /// The traffic source's key, when the click came from a known one.
    pub source: Option<u32>,
}

/// The quality class a row is rolled up under (`human` when unset).
pub fn quality_class(q: &str) -> &str {
    if q.is_empty() {
        "human"
    } else {
        q
    }
}

/// Everything smartlink persists. Implementations must be usable from
/// several threads; calls may block (the server calls them off the async
/// runtime's worker threads).
pub trait Store:
    ConversionStore + RollupStore + QualityStore + AlertStore + DigestStore + Send + Sync + 'static
{
    /// All live definitions, ordered by kind then key.
    fn entities(&self) -> Result<Vec<Entity>>;
    /// The numeric keys of every (kind, id) ever seen, including deleted
    /// ones; and, under [`Kind::Smartlink`], every offer's direct link as
    /// [`direct_link_name`] with its link key.
    fn keys(&self) -> Result<Vec<(Kind, String, u32)>>;
    /// Applies changes in one transaction, assigning keys to new ids, and
    /// records each effective change (old and new spec, `actor`, time) in
    /// the change history.
    fn apply(&self, changes: &[Change], actor: &str) -> Result<()>;
    /// Records an automatic event in the change history (action `event`,
    /// actor `system`), e.g. a cap reached.
    fn record_event(&self, kind: Kind, id: &str, event: &str, ts_ms: i64) -> Result<()>;
    /// Change history, newest first, optionally for one kind and id.
    fn history(&self, kind: Option<Kind>, id: Option<&str>, limit: usize) -> Result<Vec<HistoryRow>>;

    fn meta(&self, key: &str) -> Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    /// The value of `key`, storing `value` first when there is none. Where
    /// several nodes share the store, the first to store a value wins and
    /// every node gets that one (the click-id secret, the admin token).
    /// The default is [`Store::meta`] then [`Store::set_meta`], enough for
    /// a store only one process uses.
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String> {
        match self.meta(key)? {
            Some(v) => Ok(v),
            None => {
                self.set_meta(key, value)?;
                Ok(value.to_string())
            }
        }
    }
    /// What the store offers nodes that share it (PostgreSQL); `None` for a
    /// store one process owns (SQLite).
    fn shared(&self) -> Option<&dyn SharedStore> {
        None
    }

    /// Inserts a batch of clicks in one transaction. Click ids are unique;
    /// a row already present is left as it is (replaying a batch is safe).
    fn insert_clicks(&self, batch: &[ClickRow]) -> Result<()>;
    /// Number of clicks per offer key with `from_ms <= ts_ms < to_ms`.
    fn click_counts(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64)>>;
    fn count_clicks(&self) -> Result<u64>;
    /// At most `limit` clicks in key order (second, then click id), oldest
    /// second first. `after = None`: clicks with `from_ms <= ts_ms`.
    /// `after = Some(id)`: the page after the row (`from_ms`, `id`); pass
    /// the last row's `ts_ms` and `click_id` to read the next page.
    fn clicks_since(&self, from_ms: i64, after: Option<&str>, limit: usize) -> Result<Vec<ClickRow>>;
    /// Spreads a billed amount over the clicks it covers, replacing their
    /// cost (see [`CostImport`]), in one transaction with the rollups.
    fn import_costs(&self, import: &CostImport) -> Result<CostImported>;
    /// Cost imports, newest first.
    fn cost_imports(&self, limit: usize) -> Result<Vec<CostImportRow>>;
    /// The click log: at most `q.limit` clicks matching `q`, newest first
    /// in (`ts_ms`, `click_id`) order, all strictly before `q.before` when
    /// given (the last row of the previous page). A click inserted later
    /// with a newer key never shifts a later page.
    fn click_log(&self, q: &ClickQuery) -> Result<Vec<ClickRow>>;
    /// One click by id; `second` is the time its id carries (the click's
    /// `ts_ms / 1000`), which keys the lookup.
    fn click(&self, second: i64, click_id: &str) -> Result<Option<ClickRow>>;
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn a_store_url_never_shows_its_password() {
        for (url, shown) in [
            ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db?user=u&password=secret&x=1", "postgres://h/db?user=u&password=***&x=1"),
            ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
            ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
        ] {
            assert_eq!(super::redact_url(url), shown);
        }
    }
}

/// The transactional store a columnar store follows: every [`Store`] call
/// plus the change feed. Both stores implement it.
pub trait TxStore: Store + FeedSource {}
impl<T: Store + FeedSource> TxStore for T {}

/// What several nodes sharing one store (PostgreSQL) need from it beyond
/// [`Store`]: a lock serialising definition changes across nodes, a
/// version and a change signal for definitions, and a leader lease for
/// work that must run once across nodes.
pub trait SharedStore: Send + Sync {
    /// Blocks until this caller holds the cluster-wide definitions lock;
    /// dropping the guard releases it. A change is read, computed and
    /// written under it, so two nodes changing definitions at once are
    /// serialised and neither change is lost.
    fn lock_definitions(&self) -> Result<Box<dyn Send>>;
    /// A number that changes whenever a definition or a meta value changes.
    fn definitions_version(&self) -> Result<i64>;
    /// Calls `changed` (on a thread of its own) soon after any node changes
    /// definitions or meta values, and after a reconnect or a periodic
    /// version check finds the version moved; stops when `changed` returns
    /// false. `changed` is also called once at start.
    fn watch_definitions(&self, changed: Box<dyn FnMut() -> bool + Send>) -> Result<()>;
    /// The leader lease, if no other node holds it now: held while the
    /// returned lease's connection lives.
    fn try_lead(&self) -> Result<Option<Box<dyn Lease>>>;
    /// Takes up to `want` units of an offer's daily click cap `cap` for
    /// `node`, in one transaction: never more than the cap is handed out
    /// for (`offer`, `day`) in total, whatever nodes take at once. Grants
    /// what is left when that is less (0 when none is).
    fn take_cap_units(&self, t: &CapTake<'_>) -> Result<CapGrant>;
    /// Gives back up to `units` that `node` holds for (`offer`, `day`)
    /// (never more than it holds); returns the total taken afterwards.
    fn return_cap_units(&self, node: &str, offer: u32, day: u32, units: u64, now_ms: i64) -> Result<u64>;
    /// The units taken for (`offer`, `day`) and what each node holds.
    fn cap_units(&self, offer: u32, day: u32) -> Result<CapUnits>;
    /// Forgets cap units of days before `day` (every timezone's day is
    /// past it by then); returns the rows removed.
    fn forget_cap_units_before(&self, day: u32) -> Result<u64>;

    // Learning from every node's rows (see `LearnMarks`).

    /// This node's id, chosen at random when the store was opened: every
    /// click row this store loads and every conversion history row it
    /// records carries it, so that a node can tell its own rows (which
    /// its router learned from as they happened) from other nodes'.
    fn node(&self) -> i64;
    /// How far the learnable tables have got (every row up to a mark
    /// is committed).
    fn learn_marks(&self) -> Result<LearnMarks>;
    /// The start-up replay's clicks: the rows with `rid <= upto` in the
    /// order and pages of [`Store::clicks_since`] (`from_ms`, or after the
    /// row (`from_ms`, `after`)), every node's.
    fn replay_clicks(&self, from_ms: i64, after: Option<&str>, upto: i64, limit: usize) -> Result<Vec<LearnClick>>;
    /// The start-up replay's conversions: those that arrived at
    /// `from_ms` or later, each in its status as of history mark `upto`
    /// (one that had no history row by then is left out); `previous` is
    /// `None`, `ts_ms` the conversion's arrival.
    fn replay_conversions(&self, from_ms: i64, upto: i64) -> Result<Vec<LearnConversion>>;
    /// Other nodes' click rows with `after < rid <= upto`, in rid order,
    /// at most `limit` (rows this node loaded are left out).
    fn learn_clicks(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<LearnClick>>;
    /// Other nodes' conversion events (history rows: a new conversion or
    /// a status change) with `after < rid <= upto`, in rid order, at most
    /// `limit` (events this node recorded are left out).
    fn learn_conversions(&self, after: i64, upto: i64, limit: usize) -> Result<Vec<LearnConversion>>;
}

/// A request for a block of click-cap units ([`SharedStore::take_cap_units`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapTake<'a> {
    pub node: &'a str,
    pub offer: u32,
    /// The offer's local day number.
    pub day: u32,
    /// The cap as the taking node's definitions say.
    pub cap: u64,
    pub want: u64,
    pub now_ms: i64,
}

/// What a take was given, and the units taken in total after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapGrant {
    pub granted: u64,
    pub taken: u64,
}

/// The units taken for one (offer, day) and what each node holds
/// (nodes holding none left out), by node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapUnits {
    pub taken: u64,
    pub held: Vec<(String, u64)>,
}

/// The marks a node learns from other nodes' rows after: the largest
/// committed `rid` of the clicks and of the conversion history. Rows are
/// numbered in commit order (their writers hold a transaction-level
/// advisory lock from before the number is drawn until the commit), so
/// "every row after mark M" read later never misses one committed
/// meanwhile with a smaller number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnMarks {
    pub clicks: i64,
    pub conversions: i64,
}

/// A stored click as the router learns it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LearnClick {
    pub rid: i64,
    pub click_id: String,
    pub ts_ms: i64,
    pub smartlink: u32,
    /// `None`: a fallback click.
    pub offer: Option<u32>,
    pub country: String,
    pub device: String,
    pub os: String,
    /// Quality class (`human` when unset).
    pub quality: String,
}

/// A conversion event as the router learns it.
#[derive(Clone, Debug, PartialEq)]
pub struct LearnConversion {
    /// The history row's `rid` (0 in the start-up replay).
    pub rid: i64,
    pub conversion_id: i64,
    /// When the event arrived.
    pub ts_ms: i64,
    pub click_ts_ms: i64,
    pub smartlink: u32,
    pub offer: u32,
    pub country: String,
    pub device: String,
    pub os: String,
    /// The click's quality class (`human` when unset).
    pub quality: String,
    /// The status before this event (`None`: a new conversion).
    pub previous: Option<ConvStatus>,
    pub status: ConvStatus,
}

/// A held leader lease ([`SharedStore::try_lead`]).
pub trait Lease: Send {
    /// Whether the lease is still held (its connection is alive). Once
    /// false, another node may take it: stop leading.
    fn held(&mut self) -> bool;
}

/// A billed amount for a period, from a source that reports costs after
/// the fact. It covers the clicks with `from_ms <= ts_ms < to_ms` that
/// match `filters` (a link, a source, segment dimensions, sub-ids; at
/// least a link or a source). Each covered click's cost becomes its share
/// of `amount`: the amount in millionths split as evenly as integers
/// allow, the remainder one millionth each to the earliest clicks, so the
/// shares add up to the amount exactly and every breakdown of those
/// clicks reconciles with it. Importing the same scope again replaces the
/// shares; clicks not covered keep their cost.
#[derive(Clone, Debug, PartialEq)]
pub struct CostImport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub filters: Vec<(Dim, Vec<DimValue>)>,
    /// In the base currency.
    pub amount: f64,
    /// What the import said, for the record (link, source, segment as
    /// given, the amount in its own currency).
    pub description: String,
    pub actor: String,
    pub ts_ms: i64,
}

/// What a cost import did.
#[derive(Clone, Debug, PartialEq)]
pub struct CostImported {
    pub id: i64,
    /// Clicks the amount was spread over.
    pub clicks: u64,
    /// Their cost before the import (base currency).
    pub replaced: f64,
}

/// A recorded cost import.
#[derive(Clone, Debug, PartialEq)]
pub struct CostImportRow {
    pub id: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub description: String,
    pub amount: f64,
    pub clicks: u64,
}

/// A click-log query: a time window, report filters and a page position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClickQuery {
    /// Clicks with `from_ms <= ts_ms`, when given.
    pub from_ms: Option<i64>,
    /// Clicks with `ts_ms < to_ms`, when given.
    pub to_ms: Option<i64>,
    /// Equality filters as in [`RollupQuery::filters`] (several values of
    /// one dimension are OR-ed; `Key(0)` is "none" for offer/affiliate).
    pub filters: Vec<(Dim, Vec<DimValue>)>,
    /// Only clicks carrying any of these quality reason codes.
    pub reasons: Vec<String>,
    /// Only clicks strictly before this (`ts_ms`, `click_id`) key.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

pub use smartlink_core::conversion::Status as ConvStatus;

/// One inbound postback (or an admin status change), already authenticated
/// and attributed from its signed click id.
#[derive(Clone, Debug, PartialEq)]
pub struct PostbackIn {
    pub click_id: String,
    /// Goal name; `conversion` by default.
    pub event: String,
    /// Advertiser transaction id; empty when none was sent.
    pub txid: String,
    pub status: ConvStatus,
    /// Payout as sent (or the offer's), in `currency`. `None` on a status
    /// change keeps the recorded payout.
    pub payout: Option<f64>,
    pub currency: String,
    /// `payout` in the base currency.
    pub payout_base: Option<f64>,
    pub smartlink: u32,
    pub offer: u32,
    pub affiliate: Option<u32>,
    pub country: String,
    pub device: String,
    pub os: String,
    /// Browser and language of the click (carried in the click id).
    pub browser: String,
    pub language: String,
    /// The click's quality class (carried in the click id): `human`,
    /// `suspect`, `bot` or `preview`.
    pub quality: String,
    /// Conversion-side quality flags, comma-separated (`bot_click`,
    /// `short_ctit`); empty when clean.
    pub quality_flags: String,
    pub click_ts_ms: i64,
    /// When the postback arrived.
    pub ts_ms: i64,
    /// The offer was already at a conversion or budget cap.
    pub over_cap: bool,
    /// Payout of a new conversion when the postback sent none (the offer's
    /// current payout, in `currency` and in the base currency).
    pub default_payout: f64,
    pub default_payout_base: f64,
    /// `postback`, `pixel`, or `admin:NAME` for a manual change.
    pub source: String,
    /// What the conversion costs when approved (a CPA cost model), in the
    /// base currency; a status change keeps the recorded cost.
    pub cost_base: f64,
    /// Why the status changed (a manual change's reason), kept in the
    /// status history; `None` for postbacks.
    pub reason: Option<String>,
    /// Outbound postbacks to queue if the resulting status is one they fire on.
    pub outbound: Vec<OutboundTarget>,
}

/// Where and when to notify an affiliate or traffic source.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboundTarget {
    /// Stable name of the target, e.g. `affiliate:aff1` (idempotency key).
    pub target: String,
    /// URL template (macros expanded at delivery time).
    pub url: String,
    pub statuses: Vec<ConvStatus>,
    /// Share of the payout reported to the affiliate (e.g. 0.7).
    pub payout_share: f64,
}

/// What recording a postback did.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    New {
        id: i64,
    },
    Duplicate {
        id: i64,
    },
    Updated {
        id: i64,
        previous: ConvStatus,
        payout_base: f64,
    },
    /// The status change is not allowed (e.g. rejected → approved).
    Forbidden {
        id: i64,
        current: ConvStatus,
    },
}

/// A stored conversion, with its click's sub-ids when the click row exists.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversionRow {
    pub id: i64,
    pub click_id: String,
    pub event: String,
    pub txid: String,
    pub status: ConvStatus,
    pub payout: f64,
    pub currency: String,
    pub payout_base: f64,
    pub smartlink: u32,
    pub offer: u32,
    pub affiliate: Option<u32>,
    pub country: String,
    pub device: String,
    pub os: String,
    pub click_ts_ms: i64,
    pub ts_ms: i64,
    pub updated_ms: i64,
    pub over_cap: bool,
    /// Click-to-conversion time, seconds.
    pub ctit_secs: i64,
    pub subs: Option<[String; 5]>,
    pub browser: String,
    pub language: String,
    pub quality: String,
    pub quality_flags: String,
    /// CPA cost, base currency (counted while approved).
    pub cost: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConversionFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub offer: Option<u32>,
    pub smartlink: Option<u32>,
    pub affiliate: Option<u32>,
    pub status: Option<ConvStatus>,
    /// Return conversions with `id < before` (pagination cursor).
    pub before: Option<i64>,
    /// Only the conversions of this click.
    pub click_id: Option<String>,
    pub limit: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxState {
    Pending,
    Delivered,
    Failed,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<OutboxState> {
        [OutboxState::Pending, OutboxState::Delivered, OutboxState::Failed].into_iter().find(|x| x.as_str() == s)
    }
}

/// A queued outbound postback with what its macros need.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub conversion: ConversionRow,
    /// The status this delivery reports.
    pub status: ConvStatus,
    pub target: String,
    pub url: String,
    pub payout_share: f64,
    pub state: OutboxState,
    /// Attempts since it was queued or last retried by hand (what the
    /// backoff and `max_attempts` count).
    pub attempts: u32,
    /// Every attempt ever made (a manual retry does not reset it).
    pub total_attempts: u32,
    pub next_at_ms: i64,
    pub last_http_status: Option<u16>,
    pub last_error: Option<String>,
}

/// One recorded delivery attempt of an outbound postback.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRow {
    pub ts_ms: i64,
    /// The URL requested.
    pub url: String,
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub ts_ms: i64,
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The URL actually requested.
    pub url: String,
    pub next: OutboxState,
    /// For `Pending`: when to try again.
    pub next_at_ms: i64,
}

/// One status change of a conversion: (ts_ms, from, to, source, reason).
pub type HistoryEntry = (i64, Option<ConvStatus>, ConvStatus, String, Option<String>);

/// Conversion tracking storage (same object as [`Store`]).
pub trait ConversionStore: Send + Sync + 'static {
    /// Records postbacks in one durable transaction (group commit): dedup,
    /// status transitions with history, and outbox rows. Each postback is
    /// all or nothing on its own (a savepoint): one that fails is rolled
    /// back alone and answered with its error, while the rest commit. The
    /// outer error is for the transaction itself (begin or commit), which
    /// fails every postback of the batch.
    fn record_postbacks(&self, batch: &[PostbackIn]) -> Result<Vec<Result<Recorded>>>;
    fn conversions(&self, f: &ConversionFilter) -> Result<Vec<ConversionRow>>;
    fn conversion(&self, id: i64) -> Result<Option<ConversionRow>>;
    /// Status history of a conversion, oldest first.
    fn conversion_history(&self, id: i64) -> Result<Vec<HistoryEntry>>;
    /// Approved conversions that arrived in `[from, to)` per offer: count and
    /// base-currency payout (for cap counters at start-up).
    fn approved_totals(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, u64, f64)>>;
    fn due_outbox(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>>;
    /// Due deliveries (as [`ConversionStore::due_outbox`]) taken for
    /// delivery by this caller: each is leased until `now_ms + lease_ms`
    /// (its next attempt moves there), so another node, or another call,
    /// does not take it again until the lease runs out; recording the
    /// attempt ([`ConversionStore::record_attempt`]) ends the lease. A
    /// deliverer that dies leaves its items to be taken once their lease
    /// expires, so a lease should outlast one delivery attempt. The default
    /// is `due_outbox` itself, enough for a store only one process uses.
    fn claim_outbox(&self, now_ms: i64, limit: usize, lease_ms: i64) -> Result<Vec<OutboxItem>> {
        let _ = lease_ms;
        self.due_outbox(now_ms, limit)
    }
    fn outbox(&self, state: Option<OutboxState>, limit: usize) -> Result<Vec<OutboxItem>>;
    fn record_attempt(&self, outbox_id: i64, attempt: &Attempt) -> Result<()>;
    /// Moves a pending delivery's next attempt without counting an attempt.
    fn postpone_outbox(&self, outbox_id: i64, next_at_ms: i64) -> Result<()>;
    /// Puts a failed delivery back in the queue, due now, with a fresh
    /// round of attempts (its total is kept). False if unknown.
    fn retry_outbox(&self, outbox_id: i64, now_ms: i64) -> Result<bool>;
    /// One queued outbound postback and all its attempts, oldest first.
    fn outbox_item(&self, outbox_id: i64) -> Result<Option<(OutboxItem, Vec<AttemptRow>)>>;
}

/// A dimension of the hourly rollup that reports can filter and group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Smartlink,
    Offer,
    Affiliate,
    Country,
    Device,
    Os,
    Browser,
    Language,
    /// Quality class of the click: `human`, `suspect`, `bot`, `preview`.
    Quality,
    /// An affiliate sub-id (1..=5). Not a rollup key (unbounded values):
    /// queries using one are answered from raw rows.
    Sub(u8),
    /// The traffic source (key, 0 = none). Not a rollup key yet: queries
    /// using it are answered from raw rows.
    Source,
    /// A quality reason code of the click (`""` for none). A click carries
    /// several, so grouped by reason it counts once under each of them and
    /// the groups add up to more than the total. Answered from raw rows.
    Reason,
    /// The UTC hour (epoch ms of its start); local hours and days are
    /// derived from it by the caller.
    Hour,
    /// The UTC day (epoch ms of its midnight). Lets a query be answered by
    /// the daily rollups.
    Day,
    /// The local hour of day (0..=23, as [`DimValue::Key`]) in a time zone,
    /// of the UTC hour a click is in (its start's local hour: exact for
    /// zones whose offset is whole hours). Grouping only, never a filter.
    HourOfDay(Zone),
    /// The local weekday (0 = Monday ..= 6, as [`DimValue::Key`]) in a
    /// time zone, of the UTC hour a click is in. Grouping only.
    Weekday(Zone),
}

/// A time zone as a grouping parameter ([`Dim::HourOfDay`],
/// [`Dim::Weekday`]); ordered by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Zone(pub chrono_tz::Tz);

impl PartialOrd for Zone {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Zone {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.name().cmp(other.0.name())
    }
}

impl Zone {
    /// The zone's UTC offset (ms) at every UTC hour start in
    /// `[from_ms, to_ms)`, as change points: `(first hour start, offset)`,
    /// the first at `from_ms`'s hour. The window is read within 1970–2099
    /// (beyond, the nearest end's offset holds), a week at a time with a
    /// binary search to the hour where the offset changes: a month is one
    /// or two entries, found in a handful of look-ups. An offset that
    /// changes and changes back within one week would be missed; no zone
    /// does that.
    pub fn offsets(self, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
        use chrono::{Offset, TimeZone};
        const HOUR_MS: i64 = 3_600_000;
        const WEEK_MS: i64 = 7 * 24 * HOUR_MS;
        const LAST_MS: i64 = 4_102_444_800_000; // 2100-01-01
        let at = |h: i64| {
            self.0.timestamp_millis_opt(h).single().map_or(0, |t| i64::from(t.offset().fix().local_minus_utc()) * 1000)
        };
        let hour = |t: i64| t.div_euclid(HOUR_MS) * HOUR_MS;
        let lo = hour(from_ms.clamp(0, LAST_MS));
        let hi = hour(to_ms.clamp(0, LAST_MS));
        let mut out = vec![(lo, at(lo))];
        let mut t = lo;
        while t < hi {
            let current = out.last().map_or(0, |(_, o)| *o);
            let next = (t + WEEK_MS).min(hi);
            if at(next) == current {
                t = next;
                continue;
            }
            // The first hour start in (t, next] with another offset.
            let (mut a, mut b) = (t, next);
            while b - a > HOUR_MS {
                let mid = hour(a + (b - a) / 2);
                if at(mid) == current {
                    a = mid;
                } else {
                    b = mid;
                }
            }
            out.push((b, at(b)));
            t = b;
        }
        out
    }

    /// The local hour of day and weekday (0 = Monday) of the UTC hour
    /// starting at `hour_ms`.
    pub fn local(self, hour_ms: i64) -> (u32, u32) {
        use chrono::{Datelike, TimeZone, Timelike};
        match self.0.timestamp_millis_opt(hour_ms).single() {
            Some(t) => (t.hour(), t.weekday().num_days_from_monday()),
            None => (0, 0),
        }
    }
}

impl Dim {
    fn column(self) -> &'static str {
        match self {
            Dim::Smartlink => "smartlink",
            Dim::Offer => "offer",
            Dim::Affiliate => "affiliate",
            Dim::Country => "country",
            Dim::Device => "device",
            Dim::Os => "os",
            Dim::Browser => "browser",
            Dim::Language => "language",
            Dim::Quality => "quality",
            Dim::Sub(1) => "sub1",
            Dim::Sub(2) => "sub2",
            Dim::Sub(3) => "sub3",
            Dim::Sub(4) => "sub4",
            Dim::Sub(_) => "sub5",
            Dim::Source => "source",
            Dim::Reason => "reason",
            Dim::Hour | Dim::HourOfDay(_) | Dim::Weekday(_) => "hour_ms",
            Dim::Day => "day_ms",
        }
    }
}

/// A filter value: numeric keys for entities (0 = none/fallback), text for
/// the segment dimensions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DimValue {
    Key(u32),
    Text(String),
    Hour(i64),
}

/// Sums of the rollup measures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measures {
    pub clicks: u64,
    pub fallback_clicks: u64,
    pub approved: u64,
    pub pending: u64,
    pub rejected: u64,
    pub chargebacks: u64,
    /// Approved payout, base currency.
    pub revenue: f64,
    /// What the clicks cost plus the CPA cost of approved conversions,
    /// base currency.
    pub cost: f64,
}

impl Measures {
    pub fn add(&mut self, o: &Measures) {
        self.clicks += o.clicks;
        self.fallback_clicks += o.fallback_clicks;
        self.approved += o.approved;
        self.pending += o.pending;
        self.rejected += o.rejected;
        self.chargebacks += o.chargebacks;
        self.revenue += o.revenue;
        self.cost += o.cost;
    }
}

/// A rollup query: clicks with `from_ms <= ts_ms < to_ms` (exactly: the
/// partial hours at the edges are read from raw rows), equality filters
/// (several values of one dimension are OR-ed), grouped by `group`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollupQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub filters: Vec<(Dim, Vec<DimValue>)>,
    pub group: Vec<Dim>,
    /// Only clicks carrying any of these quality reason codes. Reasons are
    /// not a rollup dimension (a click has several), so such a query is
    /// answered from the raw click and conversion rows instead.
    pub reasons: Vec<String>,
}

impl RollupQuery {
    /// Refuses what no store can answer: a filter on [`Dim::Reason`] (a
    /// click has several reasons; filter with `reasons` instead).
    pub fn check(&self) -> Result<()> {
        if self.filters.iter().any(|(d, _)| *d == Dim::Reason) {
            return Err(StoreError::Invalid("reason: filter quality reasons with `reasons`".into()));
        }
        if self.filters.iter().any(|(d, _)| matches!(d, Dim::HourOfDay(_) | Dim::Weekday(_))) {
            return Err(StoreError::Invalid("hour of day and weekday group a report; they do not filter one".into()));
        }
        Ok(())
    }

    /// Whether the grouping has a local hour of day or weekday.
    pub fn has_local_time(&self) -> bool {
        self.group.iter().any(|d| matches!(d, Dim::HourOfDay(_) | Dim::Weekday(_)))
    }

    /// Answers a query grouped by local hour of day or weekday with `run`
    /// grouped by UTC hour instead, each hour's rows then re-keyed to its
    /// local hour or weekday and merged: for stores that keep hours, not
    /// local time (the transactional stores' hourly rollups).
    pub fn via_hours(
        &self,
        run: impl FnOnce(&RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>>,
    ) -> Result<Vec<(Vec<DimValue>, Measures)>> {
        let mut group: Vec<Dim> = Vec::new();
        for d in &self.group {
            let d = if matches!(d, Dim::HourOfDay(_) | Dim::Weekday(_)) { Dim::Hour } else { *d };
            if !group.contains(&d) {
                group.push(d);
            }
        }
        let at: Vec<usize> = self
            .group
            .iter()
            .map(|d| {
                let d = if matches!(d, Dim::HourOfDay(_) | Dim::Weekday(_)) { Dim::Hour } else { *d };
                group.iter().position(|g| *g == d).unwrap_or(0)
            })
            .collect();
        let rows = run(&RollupQuery { group, ..self.clone() })?;
        let rekeyed = rows.into_iter().map(|(key, m)| {
            let key = self
                .group
                .iter()
                .zip(&at)
                .map(|(d, i)| match (d, &key[*i]) {
                    (Dim::HourOfDay(z), DimValue::Hour(h)) => DimValue::Key(z.local(*h).0),
                    (Dim::Weekday(z), DimValue::Hour(h)) => DimValue::Key(z.local(*h).1),
                    (_, v) => v.clone(),
                })
                .collect();
            (key, m)
        });
        Ok(merge_rows(rekeyed, !self.group.is_empty()))
    }

    /// Whether the rollup cannot answer this query (quality reasons,
    /// sub-ids or the traffic source), so it is computed from raw rows.
    pub fn needs_raw_rows(&self) -> bool {
        !self.reasons.is_empty()
            || self
                .group
                .iter()
                .chain(self.filters.iter().map(|(d, _)| d))
                .any(|d| matches!(d, Dim::Sub(_) | Dim::Source | Dim::Reason))
    }
}

/// Adds up rows with the same key (parts of one answer: rollup tables and
/// raw rows, or two stores each answering part of a window), in first-seen
/// order. An ungrouped answer always has its one total, zero if no row
/// matched.
pub fn merge_rows(
    parts: impl IntoIterator<Item = (Vec<DimValue>, Measures)>,
    grouped: bool,
) -> Vec<(Vec<DimValue>, Measures)> {
    let mut out: Vec<(Vec<DimValue>, Measures)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (key, m) in parts {
        let i = *index.entry(format!("{key:?}")).or_insert_with(|| {
            out.push((key, Measures::default()));
            out.len() - 1
        });
        out[i].1.add(&m);
    }
    if !grouped && out.is_empty() {
        out.push((Vec::new(), Measures::default()));
    }
    out
}

/// Reports read incrementally maintained hourly rollups, never raw rows.
/// Clicks count in the hour they happened; conversions count in the hour of
/// their click (cohort view: CR and EPC relate conversions to the clicks
/// that produced them), with their latest status.
pub trait RollupStore {
    fn rollup(&self, q: &RollupQuery) -> Result<Vec<(Vec<DimValue>, Measures)>>;

    /// Whether bot and preview clicks are stored apart from the others, so
    /// that a report's rows (human and suspect) and its `excluded` clicks
    /// are two scans of separate rows, cheaper than one grouped by class
    /// too. Only a hint for how to ask: every store answers either way.
    fn classes_apart(&self) -> bool {
        false
    }
}

/// Which traffic sources a quality report compares, over which clicks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceQuery {
    pub smartlink: u32,
    /// Click time window `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Sub-id (1..=5) that splits an affiliate's traffic into sources;
    /// `None`: one source per affiliate.
    pub sub: Option<u8>,
    /// Group by traffic source instead of affiliate: each
    /// [`SourceCounts::affiliate`] is then a traffic source's key.
    pub by_source: bool,
}

/// Raw counts for one traffic source (affiliate × sub-id).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceCounts {
    /// Affiliate key (traffic source key with [`SourceQuery::by_source`]),
    /// 0 for none.
    pub affiliate: u32,
    /// The sub-id value (empty when `sub` is `None` or the click had none).
    pub sub: String,
    pub clicks: u64,
    /// Clicks per quality class: human, suspect, bot, preview.
    pub classes: [u64; 4],
    /// Clicks carrying each quality reason code.
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// Conversions of this source's clicks, by latest status.
    pub conversions: u64,
    pub approved: u64,
    pub rejected: u64,
    pub chargebacks: u64,
    /// Conversions flagged `short_ctit` / `bot_click`.
    pub short_ctit: u64,
    pub bot_click_conversions: u64,
    /// Click-to-conversion times, seconds (one per conversion).
    pub ctit_secs: Vec<i64>,
}

/// One logged click for the audit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditClickRow {
    pub country: String,
    pub device: String,
    pub os: String,
    /// The offer key, `None` for a fallback click.
    pub offer: Option<u32>,
    /// The logged probability of its routing.
    pub propensity: f64,
    /// Approved revenue of its conversions, base currency.
    pub revenue: f64,
    /// What it cost: the click's cost plus its approved conversions' CPA
    /// cost, base currency.
    pub cost: f64,
}

/// Per-source quality data, read from raw click and conversion rows.
pub trait QualityStore {
    fn source_counts(&self, q: &SourceQuery) -> Result<Vec<SourceCounts>>;
    /// Every human or suspect click of one link (a smartlink or a direct
    /// link) in `[from_ms, to_ms)` with what the audit needs.
    fn audit_clicks(&self, smartlink: u32, from_ms: i64, to_ms: i64) -> Result<Vec<AuditClickRow>>;
    /// Clicks of one smartlink in `[from_ms, to_ms)` of the given quality
    /// classes, per (country, device, fallback reason or "" when routed).
    fn fallback_segments(
        &self,
        smartlink: u32,
        from_ms: i64,
        to_ms: i64,
        classes: &[&str],
    ) -> Result<Vec<(String, String, String, u64)>>;
}

/// A raised alert as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRow {
    pub id: i64,
    pub ts_ms: i64,
    pub kind: String,
    pub smartlink: String,
    pub offer: Option<String>,
    pub segment: Option<String>,
    pub message: String,
}

/// Alerts raised by the drift detector.
pub trait AlertStore {
    /// Stores alerts not already raised under the same `dedup` key; returns
    /// the stored id of each new one (`None`: raised before).
    fn record_alerts(&self, alerts: &[(AlertRow, String)]) -> Result<Vec<Option<i64>>>;
    /// Newest first.
    fn alerts(&self, limit: usize) -> Result<Vec<AlertRow>>;
}

/// A stored digest: one smartlink's summary of one period, with its
/// webhook delivery state.
#[derive(Clone, Debug, PartialEq)]
pub struct DigestRow {
    pub id: i64,
    pub smartlink: String,
    /// The period `[period_start_ms, period_end_ms)`.
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub created_ms: i64,
    /// The digest document as JSON (its HTML and text bodies included).
    pub body: String,
    /// Webhook delivery: `None` when no webhook was configured when it
    /// was made; otherwise pending (with `next_at_ms`), delivered or failed.
    pub delivery: Option<OutboxState>,
    pub attempts: u32,
    pub next_at_ms: i64,
    pub last_http_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_ms: Option<i64>,
}

/// The result of one webhook delivery attempt of a digest.
#[derive(Clone, Debug, PartialEq)]
pub struct DigestAttempt {
    pub ts_ms: i64,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub next: OutboxState,
    /// For `Pending`: when to try again.
    pub next_at_ms: i64,
}

/// Scheduled digests, one per (smartlink, period start).
pub trait DigestStore {
    /// Stores `d` (its `id` is ignored) unless a digest of the same
    /// smartlink and period start exists. Returns the stored digest's id
    /// and whether it was new.
    fn insert_digest(&self, d: &DigestRow) -> Result<(i64, bool)>;
    fn has_digest(&self, smartlink: &str, period_start_ms: i64) -> Result<bool>;
    /// Newest period first, optionally of one smartlink.
    fn digests(&self, smartlink: Option<&str>, limit: usize) -> Result<Vec<DigestRow>>;
    fn digest(&self, id: i64) -> Result<Option<DigestRow>>;
    /// Digests whose delivery is pending and due at `now_ms`, oldest first.
    fn due_digests(&self, now_ms: i64, limit: usize) -> Result<Vec<DigestRow>>;
    /// Records a delivery attempt: counts it and moves the state.
    fn record_digest_attempt(&self, id: i64, attempt: &DigestAttempt) -> Result<()>;
}

#[cfg(test)]
mod zone_tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn a_zones_offsets_change_at_the_hour_its_clocks_change() {
        let berlin = Zone(chrono_tz::Europe::Berlin);
        // 2026-03-01 .. 2026-11-01: summer time from 2026-03-29 01:00 UTC
        // to 2026-10-25 01:00 UTC.
        let got = berlin.offsets(1_772_323_200_000, 1_793_491_200_000);
        assert_eq!(got, vec![(1_772_323_200_000, H), (1_774_746_000_000, 2 * H), (1_792_890_000_000, H)]);
        // A window inside one offset, and one starting off the hour.
        assert_eq!(berlin.offsets(1_774_746_000_000 + 5, 1_774_746_000_000 + 10 * H), vec![(1_774_746_000_000, 2 * H)]);
        let kolkata = Zone(chrono_tz::Asia::Kolkata);
        assert_eq!(kolkata.offsets(1_772_323_200_000, 1_793_491_200_000), vec![(1_772_323_200_000, 19_800_000)]);
    }

    #[test]
    fn an_unbounded_window_is_read_within_1970_to_2099() {
        let ny = Zone(chrono_tz::America::New_York);
        let got = ny.offsets(i64::MIN, i64::MAX);
        assert_eq!(got[0].0, 0);
        assert!(got.len() > 200 && got.len() < 400, "two changes a year for most years: {}", got.len());
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 != w[1].1));
    }

    #[test]
    fn local_hour_and_weekday_of_an_hour() {
        // 2026-03-29 01:00 UTC is 03:00 on a Sunday in Berlin.
        assert_eq!(Zone(chrono_tz::Europe::Berlin).local(1_774_746_000_000), (3, 6));
        assert_eq!(Zone(chrono_tz::UTC).local(1_774_746_000_000), (1, 6));
    }

    #[test]
    fn local_dimensions_group_but_do_not_filter() {
        let q = RollupQuery {
            filters: vec![(Dim::HourOfDay(Zone(chrono_tz::UTC)), vec![DimValue::Key(3)])],
            ..Default::default()
        };
        assert!(q.check().unwrap_err().to_string().contains("do not filter"));
    }
}
