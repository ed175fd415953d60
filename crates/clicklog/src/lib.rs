//! The click log: how a click row gets from the request thread to the store
//! without the click ever waiting on a disk or a database.
//!
//! The request thread encodes the row and queues it with `try_send`
//! ([`writer::ClickQueue`]); the journal thread appends batches to framed,
//! CRC-checked segment files ([`journal`]) and syncs them every second; the
//! ingest and catch-up threads load the journal into the store in large
//! transactions, off the hot path ([`writer`]). At start-up
//! [`journal::recover`] loads what a previous run left. [`sched`] is how these
//! threads (and the server's request threads) ask Linux to schedule them.
//!
//! **Architecture invariant:** nothing here is called on the click path but
//! [`writer::ClickQueue::push`]-style enqueueing, which never blocks; every
//! disk write and store call happens on the log's own threads.

pub mod journal;
pub mod sched;
pub mod writer;

pub use writer::{ClickEvent, ClickQueue, LogMetrics, WriterHandle, WriterSettings};
