//! The group-commit postback writer: one thread drains the queue and commits
//! each batch in one transaction (`synchronous = FULL`), so a postback is
//! answered only once durable without paying one fsync per postback.

use std::sync::Arc;

use smartlink_store::{PostbackIn, Recorded, Store};
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<Recorded, String>>;

/// Hands postbacks to the group-commit writer thread.
#[derive(Clone)]
pub struct PostbackQueue {
    tx: std::sync::mpsc::SyncSender<(PostbackIn, Reply)>,
}

pub struct PostbackWriter {
    thread: std::thread::JoinHandle<()>,
}

impl PostbackWriter {
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// At most this many postbacks share one transaction.
const GROUP: usize = 512;

pub fn start_writer(store: Arc<dyn Store>) -> (PostbackQueue, PostbackWriter) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<(PostbackIn, Reply)>(20_000);
    let thread = std::thread::Builder::new()
        .name("postback-writer".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(GROUP);
            while let Ok(first) = rx.recv() {
                batch.push(first);
                while batch.len() < GROUP {
                    match rx.try_recv() {
                        Ok(x) => batch.push(x),
                        Err(_) => break,
                    }
                }
                let ins: Vec<PostbackIn> = batch.iter().map(|(p, _)| p.clone()).collect();
                match store.record_postbacks(&ins) {
                    Ok(results) => {
                        for ((p, reply), r) in batch.drain(..).zip(results) {
                            let _ = reply.send(r.map_err(|e| {
                                tracing::error!(error = %e, click_id = %p.click_id, "recording a postback failed");
                                e.to_string()
                            }));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, postbacks = batch.len(), "committing postbacks failed");
                        for (_, reply) in batch.drain(..) {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        })
        .expect("spawning the postback writer thread");
    (PostbackQueue { tx }, PostbackWriter { thread })
}

impl PostbackQueue {
    /// Records durably; resolves once committed.
    pub async fn record(&self, p: PostbackIn) -> Result<Recorded, String> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send((p, reply)) {
            Ok(()) => rx.await.map_err(|_| "postback writer stopped".to_string())?,
            Err(_) => Err("postback queue is full".into()),
        }
    }
}
