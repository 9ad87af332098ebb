//! The write stage: one batch at a time, on a thread of its own, while the
//! consumer decodes the next.
//!
//! In: a [`Batch`] from the consumer. Out: its new rows in ClickHouse (what
//! is already stored is dropped first, after feeding its aggregates again:
//! see [`Store::refeed`]), then its offsets stored on the consumer, then
//! word back to the consumer that the next batch may come.
//!
//! ```text
//!  consumer ──submit(batch)──▶ [writer thread] drop stored ids ─▶ insert ─▶ store offsets
//!     ▲                                                                          │
//!     └────────────────────────────── done ◀─────────────────────────────────────┘
//! ```
//!
//! At most one batch is in flight: `submit` first waits for the previous
//! one, so offsets are stored in order. A rebalance that takes partitions
//! away waits (in the consumer's callback, see [`InFlight::wait_idle`]) until
//! the batch in flight is written and its offsets stored, so the partitions'
//! new owner finds those rows stored and does not write them again. That
//! wait blocks the consumer's thread, which is why the writer has its own
//! thread, runtime and ClickHouse connections.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::batch::{Batch, Keyed, keep_new};
use crate::consumer::Context;
use crate::metrics::Metrics;
use crate::rows::{CrashRow, FeatureRequestRow, FeedbackRow, HeartbeatRow, OutcomeRow};
use crate::store::{Store, StoreError};

/// Whether a batch is being written; the rebalance callback waits on it.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    busy: Mutex<bool>,
    idle: Condvar,
}

impl InFlight {
    fn set(&self, busy: bool) {
        *self.busy.lock().unwrap_or_else(|e| e.into_inner()) = busy;
        if !busy {
            self.idle.notify_all();
        }
    }

    /// Blocks until no batch is in flight or `limit` has passed; whether
    /// none is.
    pub(crate) fn wait_idle(&self, limit: Duration) -> bool {
        let busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let (busy, _) = self
            .idle
            .wait_timeout_while(busy, limit, |busy| *busy)
            .unwrap_or_else(|e| e.into_inner());
        !*busy
    }
}

/// How long writes are retried, and when to give up.
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub stop: CancellationToken,
}

pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Batch>>,
    done: mpsc::Receiver<()>,
    in_flight: Arc<InFlight>,
    pending: bool,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("pending", &self.pending)
            .finish()
    }
}

impl Writer {
    /// Starts the writer thread. `store` should be a client of its own
    /// ([`Store::separate`]): it is used on the writer's runtime.
    pub(crate) fn start(
        store: Store,
        consumer: Arc<StreamConsumer<Context>>,
        metrics: Arc<Metrics>,
        retry: Retry,
        in_flight: Arc<InFlight>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (jobs, mut incoming) = mpsc::channel::<Batch>(1);
        let (finished, done) = mpsc::channel::<()>(1);
        let flag = Arc::clone(&in_flight);
        let thread = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(batch) = incoming.recv().await {
                        write_with_retry(&store, &consumer, &metrics, &retry, batch).await;
                        flag.set(false);
                        if finished.send(()).await.is_err() {
                            return;
                        }
                    }
                });
            })?;
        Ok(Writer {
            jobs: Some(jobs),
            done,
            in_flight,
            pending: false,
            thread: Some(thread),
        })
    }

    /// Waits for the batch in flight, then hands `batch` over.
    pub(crate) async fn submit(&mut self, batch: Batch) {
        self.wait().await;
        let Some(jobs) = &self.jobs else { return };
        // Busy before it is queued: a rebalance from now on waits for it.
        self.in_flight.set(true);
        if jobs.send(batch).await.is_err() {
            self.in_flight.set(false);
            tracing::error!("the writer thread is gone; the batch will be read again");
            return;
        }
        self.pending = true;
    }

    /// Waits for the batch in flight, if there is one.
    pub(crate) async fn wait(&mut self) {
        if self.pending {
            self.pending = false;
            let _ = self.done.recv().await;
        }
    }

    /// Waits for the batch in flight and ends the writer thread.
    pub(crate) async fn finish(mut self) {
        self.wait().await;
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Writes the batch, retrying with backoff while ClickHouse fails, then
/// stores the offsets it covers. If a stop comes while retrying, the rows
/// are dropped unwritten and their offsets unstored: they will be read
/// again.
async fn write_with_retry(
    store: &Store,
    consumer: &StreamConsumer<Context>,
    metrics: &Metrics,
    retry: &Retry,
    mut batch: Batch,
) {
    let mut backoff = retry.min_backoff;
    loop {
        match write(store, metrics, &mut batch).await {
            Ok(rows) => {
                Metrics::add(&metrics.rows_inserted, rows);
                Metrics::add(&metrics.batches, 1);
                break;
            }
            Err(error) => {
                Metrics::add(&metrics.insert_failures, 1);
                tracing::warn!(%error, retry_in = ?backoff, messages = batch.messages, "batch not written");
                tokio::select! {
                    () = retry.stop.cancelled() => {
                        tracing::warn!(messages = batch.messages, "stopping with an unwritten batch; it will be read again");
                        return;
                    }
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(retry.max_backoff);
            }
        }
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), next) in &batch.next_offsets {
        if let Err(error) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::error!(%error, partition, "could not record offset");
        }
    }
    if let Err(error) = consumer.store_offsets(&offsets) {
        // Partitions revoked meanwhile: their new owner reads from the
        // last committed offset and finds these rows stored.
        tracing::warn!(%error, "storing offsets failed");
    }
    tracing::debug!(messages = batch.messages, "batch written");
}

/// Drops what is already stored, then inserts table by table. Safe to call
/// again after a failure: each retry looks again at what is stored.
async fn write(store: &Store, metrics: &Metrics, batch: &mut Batch) -> Result<u64, StoreError> {
    let skipped = skip_stored(store, metrics, &mut batch.crashes).await?
        + skip_stored(store, metrics, &mut batch.feature_requests).await?
        + skip_stored(store, metrics, &mut batch.feedback).await?
        + skip_stored(store, metrics, &mut batch.heartbeats).await?
        + skip_stored(store, metrics, &mut batch.outcomes).await?;
    Metrics::add(&metrics.duplicates_skipped, skipped as u64);
    let new_requests: HashSet<Uuid> = batch.feature_requests.iter().map(|r| r.report_id).collect();
    batch
        .signatures
        .retain(|s| new_requests.contains(&s.report_id));

    // Signatures before their requests: a request stored without its
    // signature would be missing from a rebuilt clustering index.
    store
        .insert("feature_request_signatures", &batch.signatures)
        .await?;
    store.insert(CrashRow::TABLE, &batch.crashes).await?;
    store
        .insert(FeatureRequestRow::TABLE, &batch.feature_requests)
        .await?;
    store.insert(FeedbackRow::TABLE, &batch.feedback).await?;
    store.insert(HeartbeatRow::TABLE, &batch.heartbeats).await?;
    store.insert(OutcomeRow::TABLE, &batch.outcomes).await?;
    store.insert("processing_errors", &batch.errors).await?;
    Ok((batch.crashes.len()
        + batch.feature_requests.len()
        + batch.feedback.len()
        + batch.heartbeats.len()
        + batch.outcomes.len()
        + batch.errors.len()) as u64)
}

/// Drops the rows already stored, after feeding their aggregates again (see
/// [`Store::refeed`]).
async fn skip_stored<T: Keyed>(
    store: &Store,
    metrics: &Metrics,
    rows: &mut Vec<T>,
) -> Result<usize, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id()).collect();
    let existing = store.existing_ids(T::TABLE, T::ID_COLUMN, &ids).await?;
    if !existing.is_empty() {
        let stored: Vec<Uuid> = existing.iter().copied().collect();
        store.refeed(T::TABLE, T::ID_COLUMN, &stored).await?;
        Metrics::add(&metrics.aggregates_refed, stored.len() as u64);
    }
    Ok(keep_new(rows, &existing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_an_idle_writer_ends_when_the_batch_is_written() {
        let in_flight = Arc::new(InFlight::default());
        assert!(in_flight.wait_idle(Duration::ZERO), "idle at first");
        in_flight.set(true);
        assert!(!in_flight.wait_idle(Duration::from_millis(10)), "busy");
        let writer = {
            let in_flight = Arc::clone(&in_flight);
            std::thread::spawn(move || in_flight.set(false))
        };
        assert!(in_flight.wait_idle(Duration::from_secs(30)));
        writer.join().expect("thread");
    }
}
