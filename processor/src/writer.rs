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
//! A failed insert is judged once ([`StoreError::failure`]): a transient
//! failure retries the whole write with backoff (nothing moves meanwhile);
//! too many partitions splits the rows into smaller inserts (current
//! ClickHouse may have written the raw rows before a view refused them;
//! writing them again is harmless, see `tests/python/test_chdb.py`); a permanent
//! failure splits the rows in halves until the rows at fault are found.
//! Those go to the dead-letter topic and `processing_errors` with the
//! server's reason, and the rest is written: one bad row never holds up the
//! others.
//!
//! At most one batch is in flight: `submit` first waits for the previous
//! one, so offsets are stored in order. A rebalance that takes partitions
//! away waits (in the consumer's callback, see [`InFlight::wait_idle`]) until
//! the batch in flight is written and its offsets stored, so the partitions'
//! new owner finds those rows stored and does not write them again. That
//! wait blocks the consumer's thread, which is why the writer has its own
//! thread, runtime and ClickHouse connections.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use std::ops::Range;

use schemas::tables::{PROCESSING_ERRORS, Topic};
use time::OffsetDateTime;

use crate::batch::{Batch, Companion, EachTable, Insertable, Keyed, keep_new};
use crate::consumer::Context;
use crate::dead_letter::{DeadLetter, DeadLetters, Origin, Stage};
use crate::metrics::Metrics;
use crate::rows::ProcessingErrorRow;
use crate::store::{Failure, Store, StoreError};

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
    /// How long an erasure's deletions are waited for ([`crate::erase`]).
    pub erasure_wait: Duration,
    pub stop: CancellationToken,
}

impl Retry {
    /// The pauses of one write's tries.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff {
            next: self.min_backoff,
            max: self.max_backoff,
            min: self.min_backoff,
            failures: 0,
        }
    }
}

/// The pauses between one write's tries: after a failure the store moves to
/// the next replica, if it has others, which is tried after the shortest
/// pause; the pause doubles, up to the longest, each time every server has
/// failed once more. With one server, it doubles after every failure.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
    failures: usize,
}

impl Backoff {
    /// Moves `store` on after a failure; returns the pause before the next
    /// try.
    pub(crate) fn failed(&mut self, store: &Store, metrics: &Metrics) -> Duration {
        self.failures += 1;
        if store.fall_over() {
            Metrics::add(&metrics.clickhouse_replica_moves, 1);
        }
        if !self.failures.is_multiple_of(store.servers()) {
            return self.min;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

/// Where rows refused for good go: the dead-letter topic, naming the
/// topic their message came from.
#[derive(Debug)]
pub(crate) struct SetAside {
    pub dead_letters: Arc<DeadLetters>,
    pub reports_topic: String,
    pub outcomes_topic: String,
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
        set_aside: SetAside,
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
                        write_with_retry(&store, &consumer, &metrics, &retry, &set_aside, batch)
                            .await;
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
/// sets aside the rows it refused for good, then stores the offsets the
/// batch covers. If a stop comes while retrying, the rows are dropped
/// unwritten and their offsets unstored: they will be read again.
async fn write_with_retry(
    store: &Store,
    consumer: &StreamConsumer<Context>,
    metrics: &Metrics,
    retry: &Retry,
    set_aside: &SetAside,
    mut batch: Batch,
) {
    let mut backoff = retry.backoff();
    let refused = loop {
        match write(store, metrics, &mut batch).await {
            Ok((rows, refused)) => {
                Metrics::add(&metrics.rows_inserted, rows);
                Metrics::add(&metrics.batches, 1);
                break refused;
            }
            Err(error) => {
                Metrics::add(&metrics.insert_failures, 1);
                let failed_on = store.url().to_string();
                let pause = backoff.failed(store, metrics);
                tracing::warn!(%error, clickhouse = %failed_on, retry_in = ?pause, messages = batch.messages, "batch not written");
                tokio::select! {
                    () = retry.stop.cancelled() => {
                        tracing::warn!(messages = batch.messages, "stopping with an unwritten batch; it will be read again");
                        return;
                    }
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    };
    if !refused.is_empty() && !record_refused(store, metrics, retry, set_aside, refused).await {
        tracing::warn!(
            messages = batch.messages,
            "stopping before refused rows were set aside; the batch will be read again"
        );
        return;
    }
    for erasure in &batch.erasures {
        if !crate::erase::erase_until_done(store, metrics, retry, &erasure.request).await {
            tracing::warn!("stopping before an erasure was done; it will be read again");
            return;
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

/// A row ClickHouse refused for good: which table, where its message was,
/// the row as text, and the server's reason.
#[derive(Debug)]
pub(crate) struct Refused {
    pub table: &'static str,
    pub topic: Topic,
    pub partition: u32,
    pub offset: u64,
    pub row: String,
    pub error: String,
}

/// Sends each refused row to the dead-letter topic and writes its
/// `processing_errors` row; false if stopped first.
async fn record_refused(
    store: &Store,
    metrics: &Metrics,
    retry: &Retry,
    set_aside: &SetAside,
    refused: Vec<Refused>,
) -> bool {
    let now = OffsetDateTime::now_utc();
    let mut errors = Vec::with_capacity(refused.len());
    for culprit in refused {
        let topic = match culprit.topic {
            Topic::Reports => &set_aside.reports_topic,
            Topic::Outcomes => &set_aside.outcomes_topic,
        };
        tracing::warn!(
            table = culprit.table,
            partition = culprit.partition,
            offset = culprit.offset,
            error = %culprit.error,
            "row refused for good; set aside"
        );
        let dead = DeadLetter::new(Stage::Write, "unstorable", &culprit.error);
        let origin = Origin {
            topic,
            partition: i32::try_from(culprit.partition).unwrap_or_default(),
            offset: i64::try_from(culprit.offset).unwrap_or_default(),
            key: None,
        };
        if !set_aside
            .dead_letters
            .send_until_acked(&origin, culprit.row.as_bytes(), &dead, &retry.stop)
            .await
        {
            return false;
        }
        Metrics::add(&metrics.dead_letters, 1);
        errors.push(ProcessingErrorRow {
            at: now,
            topic: topic.clone(),
            kafka_partition: culprit.partition,
            kafka_offset: culprit.offset,
            stage: dead.stage.as_str().to_string(),
            reason: dead.reason.to_string(),
            detail: dead.detail,
            size: culprit.row.len() as u64,
        });
    }
    let mut backoff = retry.backoff();
    loop {
        let pause = match store.insert(PROCESSING_ERRORS, &errors).await {
            Ok(()) => return true,
            Err(error) => {
                let failed_on = store.url().to_string();
                let pause = backoff.failed(store, metrics);
                tracing::warn!(%error, clickhouse = %failed_on, retry_in = ?pause, "processing errors not written");
                pause
            }
        };
        tokio::select! {
            () = retry.stop.cancelled() => return false,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Drops what is already stored, then inserts table by table; returns the
/// rows written and the rows refused for good. Safe to call again after a
/// failure: each retry looks again at what is stored.
async fn write(
    store: &Store,
    metrics: &Metrics,
    batch: &mut Batch,
) -> Result<(u64, Vec<Refused>), StoreError> {
    let mut skip = SkipStored {
        store,
        metrics,
        skipped: 0,
    };
    batch.each_table(&mut skip).await?;
    Metrics::add(&metrics.duplicates_skipped, skip.skipped as u64);
    batch.keep_companions();

    // Companions before their rows: a feature request stored without its
    // signature would be missing from a rebuilt clustering index. Neither
    // companions nor processing errors carry a value from a machine, so
    // nothing in them can be refused for good.
    batch.each_companion(&mut InsertAll { store }).await?;
    let mut insert = InsertIsolating {
        store,
        refused: Vec::new(),
    };
    batch.each_table(&mut insert).await?;
    let refused = insert.refused;
    store.insert(PROCESSING_ERRORS, &batch.errors).await?;
    let written = (batch.rows() + batch.errors.len() - refused.len()) as u64;
    Ok((written, refused))
}

/// Drops from each table the rows already stored ([`skip_stored`]).
struct SkipStored<'a> {
    store: &'a Store,
    metrics: &'a Metrics,
    skipped: usize,
}

impl EachTable for SkipStored<'_> {
    async fn rows<T: Keyed + Insertable>(&mut self, rows: &mut Vec<T>) -> Result<(), StoreError> {
        self.skipped += skip_stored(self.store, self.metrics, rows).await?;
        Ok(())
    }
}

/// Inserts each table's rows, setting aside those refused for good
/// ([`insert_isolating`]).
struct InsertIsolating<'a> {
    store: &'a Store,
    refused: Vec<Refused>,
}

impl EachTable for InsertIsolating<'_> {
    async fn rows<T: Keyed + Insertable>(&mut self, rows: &mut Vec<T>) -> Result<(), StoreError> {
        let refused = insert_isolating(self.store, rows).await?;
        self.refused.extend(refused);
        Ok(())
    }
}

/// Inserts each companion table's rows in one insert.
struct InsertAll<'a> {
    store: &'a Store,
}

impl EachTable for InsertAll<'_> {
    async fn rows<T: Keyed + Insertable>(&mut self, rows: &mut Vec<T>) -> Result<(), StoreError> {
        self.store.insert(T::TABLE.name, rows).await
    }

    async fn companions<C: Companion + Insertable>(
        &mut self,
        rows: &mut Vec<C>,
    ) -> Result<(), StoreError> {
        self.store.insert(C::TABLE, rows).await
    }
}

/// Inserts `rows` into their table, finding the rows refused for good.
///
/// The rows are first ordered by the partition they fall in (a machine's
/// day), so that a split for too many partitions yields inserts that each
/// touch few. A transient failure ends the call (the caller retries the
/// whole write, and rows written so far are then found stored). A
/// permanent failure, or too many partitions, splits the failed range in
/// halves; a single row that still fails is refused. Each insert is applied
/// whole or not at all, so every row ends written once or refused.
async fn insert_isolating<S, T>(store: &S, rows: &mut [T]) -> Result<Vec<Refused>, StoreError>
where
    S: Inserts<T>,
    T: Keyed + std::fmt::Debug,
{
    rows.sort_by_key(Keyed::partition_order);
    let mut refused = Vec::new();
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..rows.len());
    while let Some(range) = pending.pop() {
        let part = &rows[range.clone()];
        if part.is_empty() {
            continue;
        }
        let Err(error) = store.insert(part).await else {
            continue;
        };
        match error.failure() {
            Failure::Transient => return Err(error),
            Failure::Permanent | Failure::TooManyPartitions if part.len() == 1 => {
                let row = &part[0];
                refused.push(Refused {
                    table: T::TABLE.name,
                    topic: T::TABLE.topic(),
                    partition: row.partition(),
                    offset: row.offset(),
                    row: format!("{row:?}"),
                    error: error.to_string(),
                });
            }
            Failure::Permanent | Failure::TooManyPartitions => {
                let middle = range.start + range.len() / 2;
                pending.push(middle..range.end);
                pending.push(range.start..middle);
            }
        }
    }
    Ok(refused)
}

/// Where [`insert_isolating`] sends its inserts: the store, or in unit
/// tests a table that refuses what ClickHouse would.
trait Inserts<T> {
    async fn insert(&self, rows: &[T]) -> Result<(), StoreError>;
}

impl<T> Inserts<T> for Store
where
    T: Keyed + Insertable,
{
    async fn insert(&self, rows: &[T]) -> Result<(), StoreError> {
        Store::insert(self, T::TABLE.name, rows).await
    }
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
    let stored = store.stored(rows).await?;
    if !stored.is_empty() {
        let reports: Vec<(Uuid, Uuid)> = stored
            .iter()
            .map(|((id, _), counted)| (*id, *counted))
            .collect();
        store.refeed(T::TABLE, &reports).await?;
        Metrics::add(&metrics.aggregates_refed, reports.len() as u64);
    }
    Ok(keep_new(rows, &stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::OutcomeRow;
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::future::Future;

    /// A table that, like current ClickHouse, refuses an insert touching
    /// more than `max_partitions` partitions, and refuses every insert that
    /// holds a poisoned row; it records what it took.
    struct Table {
        max_partitions: usize,
        poisoned: HashSet<Uuid>,
        taken: RefCell<Vec<Uuid>>,
        inserts: RefCell<usize>,
    }

    impl Inserts<OutcomeRow> for Table {
        async fn insert(&self, rows: &[OutcomeRow]) -> Result<(), StoreError> {
            use clickhouse::error::Error;
            *self.inserts.borrow_mut() += 1;
            let partitions: HashSet<(i32, time::Month)> =
                rows.iter().map(|r| (r.at.year(), r.at.month())).collect();
            if partitions.len() > self.max_partitions {
                return Err(StoreError::ClickHouse(Error::BadResponse(
                    "Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100)."
                        .into(),
                )));
            }
            if rows.iter().any(|r| self.poisoned.contains(&r.event_id)) {
                return Err(StoreError::ClickHouse(Error::Custom(
                    "1926-11-20 cannot be represented as Date".into(),
                )));
            }
            self.taken
                .borrow_mut()
                .extend(rows.iter().map(|r| r.event_id));
            Ok(())
        }
    }

    fn outcome(offset: u64) -> OutcomeRow {
        OutcomeRow {
            event_id: Uuid::new_v4(),
            at: OffsetDateTime::UNIX_EPOCH,
            outcome: "rejected".into(),
            reason: "invalid".into(),
            schema: String::new(),
            org_id: String::new(),
            size: 1,
            field: String::new(),
            kafka_partition: (offset % 4) as u32,
            kafka_offset: offset,
            inserted_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn run<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn a_poisoned_row_is_found_and_every_other_row_is_written_once() {
        let mut rows: Vec<OutcomeRow> = (0..10_000).map(outcome).collect();
        let poison = [rows[4_321].event_id, rows[9_999].event_id];
        let table = Table {
            max_partitions: usize::MAX,
            poisoned: poison.into(),
            taken: RefCell::default(),
            inserts: RefCell::default(),
        };
        let refused = run(insert_isolating(&table, &mut rows)).expect("no transient failure");
        let offsets: Vec<u64> = refused.iter().map(|r| r.offset).collect();
        assert_eq!(offsets.len(), 2);
        assert!(offsets.contains(&4_321) && offsets.contains(&9_999));
        assert!(
            refused
                .iter()
                .all(|r| r.error.contains("cannot be represented"))
        );
        let taken = table.taken.borrow();
        let distinct: HashSet<&Uuid> = taken.iter().collect();
        assert_eq!(
            (taken.len(), distinct.len()),
            (9_998, 9_998),
            "each good row once"
        );
        assert!(poison.iter().all(|id| !distinct.contains(id)));
        assert!(*table.inserts.borrow() < 60, "halving, not row by row");
    }

    #[test]
    fn too_many_partitions_splits_by_partition_and_sets_nothing_aside() {
        // Rows of 150 different months, in no order.
        let mut rows: Vec<OutcomeRow> = (0..3_000).map(outcome).collect();
        for (i, row) in rows.iter_mut().enumerate() {
            row.at =
                OffsetDateTime::UNIX_EPOCH + time::Duration::days(((i * 37) % 150) as i64 * 31);
        }
        let table = Table {
            max_partitions: 100,
            poisoned: HashSet::new(),
            taken: RefCell::default(),
            inserts: RefCell::default(),
        };
        let refused = run(insert_isolating(&table, &mut rows)).expect("no transient failure");
        assert!(refused.is_empty(), "nothing is a culprit: {refused:?}");
        assert_eq!(table.taken.borrow().len(), 3_000);
    }

    /// The pauses and servers of successive failures of one write.
    fn tries(fallback_urls: &[&str], failures: usize) -> Vec<(u64, String)> {
        let mut config = crate::config::ClickHouseConfig::local("http://a", "telemetry");
        config.cluster = "telemetry".into();
        config.fallback_urls = fallback_urls.iter().map(|u| u.to_string()).collect();
        let version = schemas::ServerVersion::parse("18.16.1").expect("version");
        let store = Store::with_servers(&config, version, 0);
        let retry = Retry {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            erasure_wait: Duration::ZERO,
            stop: CancellationToken::new(),
        };
        let metrics = Metrics::default();
        let mut backoff = retry.backoff();
        let tried = (0..failures)
            .map(|_| {
                let pause = backoff.failed(&store, &metrics);
                (pause.as_millis() as u64, store.url().to_string())
            })
            .collect();
        let moves = Metrics::get(&metrics.clickhouse_replica_moves);
        assert_eq!(
            moves,
            if fallback_urls.is_empty() {
                0
            } else {
                failures as u64
            }
        );
        tried
    }

    #[test]
    fn a_failed_write_tries_the_next_replica_at_once_and_backs_off_per_round() {
        let pauses =
            |tried: Vec<(u64, String)>| tried.into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        let one = tries(&[], 4);
        assert_eq!(pauses(one.clone()), [100, 200, 400, 400]);
        assert!(one.iter().all(|(_, url)| url == "http://a"));

        let two = tries(&["http://b"], 6);
        let urls: Vec<&str> = two.iter().map(|(_, u)| u.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://b", "http://a", "http://b", "http://a", "http://b", "http://a"
            ]
        );
        assert_eq!(pauses(two), [100, 100, 100, 200, 100, 400]);

        let three = tries(&["http://b", "http://c"], 6);
        let urls: Vec<&str> = three.iter().map(|(_, u)| u.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://b", "http://c", "http://a", "http://b", "http://c", "http://a"
            ]
        );
        assert_eq!(pauses(three), [100, 100, 100, 100, 100, 200]);
    }

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
