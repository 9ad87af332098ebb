//! The loop: consume → decode and enrich → batch → hand to the writer
//! ([`crate::writer`]), which drops what is already stored, inserts, and
//! stores offsets while the loop decodes the next batch.
//!
//! Offsets are stored by hand (`enable.auto.offset.store=false`) and only
//! after ClickHouse confirmed the insert of every row before them, so a crash
//! at any point re-reads messages rather than skipping them. Re-read reports
//! are then found in their table by id and not written again; aggregates
//! count distinct ids, so they stay exact even if a copy slips through. Rows
//! of partitions lost in a rebalance are dropped unwritten if not yet handed
//! to the writer, and waited for if they are being written: either way their
//! new owner reads them again and finds what is stored. An undecodable
//! message goes to the dead-letter topic and a `processing_errors` row, and
//! its offset is stored with its batch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, TopicPartition};
use crate::config::Config;
use crate::dead_letter::DeadLetters;
use crate::metrics::Metrics;
use crate::route::{Enricher, Stream};
use crate::rows::{ProcessingErrorRow, Source};
use crate::store::Store;
use crate::writer::{InFlight, Retry, SetAside, Writer};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("dead-letter topic: {0}")]
    DeadLetter(rdkafka::error::KafkaError),
    #[error("starting the writer thread: {0}")]
    Writer(#[from] std::io::Error),
}

/// How long a rebalance waits for the batch in flight. Past it (ClickHouse
/// down for that long), the partitions go while the batch is still retried;
/// their new owner may then write some of its rows too, which the raw
/// tables merge away by id and the aggregates count once.
const REVOKE_WAIT: Duration = Duration::from_secs(60);

/// Sees rebalances and librdkafka's log on the consumer's behalf.
#[derive(Debug)]
pub struct Context {
    revoked: Mutex<Vec<TopicPartition>>,
    in_flight: Arc<InFlight>,
    metrics: Arc<Metrics>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // With auto.offset.reset=earliest, librdkafka resets an out-of-range
        // offset itself and says so only in its log.
        if fac == "OFFSET" && message.contains("offset reset") {
            Metrics::add(&self.metrics.offset_resets, 1);
            tracing::warn!(
                message,
                "offset out of range; consuming from the earliest available"
            );
            return;
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(fac, message, "librdkafka"),
            RDKafkaLogLevel::Warning => tracing::warn!(fac, message, "librdkafka"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(fac, message, "librdkafka")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(fac, message, "librdkafka"),
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let lost: Vec<TopicPartition> = partitions
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            Metrics::add(&self.metrics.partitions_revoked, lost.len() as u64);
            tracing::info!(?lost, "partitions revoked");
            self.revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(lost);
            if !self.in_flight.wait_idle(REVOKE_WAIT) {
                tracing::warn!(
                    waited = ?REVOKE_WAIT,
                    "partitions revoked while a batch is still being written"
                );
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            Metrics::add(&self.metrics.partitions_assigned, partitions.count() as u64);
            tracing::info!(count = partitions.count(), "partitions assigned");
        }
    }
}

pub(crate) struct Worker {
    consumer: Arc<StreamConsumer<Context>>,
    store: Store,
    writer: Writer,
    dead_letters: Arc<DeadLetters>,
    enricher: Enricher,
    config: Config,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Worker {
    pub(crate) fn new(
        config: Config,
        store: Store,
        enricher: Enricher,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<Self, ConsumeError> {
        let commit_interval = config.batch.commit_interval_ms.to_string();
        let in_flight = Arc::new(InFlight::default());
        let context = Context {
            revoked: Mutex::default(),
            in_flight: Arc::clone(&in_flight),
            metrics: Arc::clone(&metrics),
        };
        let mut client = config.kafka.client_config(&[
            ("group.id", &config.group_id),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", &commit_interval),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            // Long enough that a broker restart (the coordinator reloads
            // the group and counts the session from then) does not evict a
            // member still reconnecting. Eviction is safe (the assignment
            // is lost, revoked and rejoined; tests/tests/processor_eviction.rs
            // freezes a processor until it is evicted) but costs a
            // rebalance and a re-read of what was not yet committed.
            ("session.timeout.ms", "45000"),
            ("heartbeat.interval.ms", "1000"),
            // ClickHouse may be down for long; the loop keeps polling
            // meanwhile only between retries, so allow a long pause.
            ("max.poll.interval.ms", "600000"),
            // Each topic's partitions are split over the instances on their
            // own, so every instance takes a share of the reports. The
            // cooperative-sticky assignor balanced only the total over both
            // topics, and left one of two instances every reports partition
            // and the other only the outcomes (tests/tests/cluster_faults.rs
            // saw it in two runs of three). An eager rebalance revokes every
            // partition first; what was read and not yet written is dropped
            // and read again, and the stored-id look-up keeps it exact.
            ("partition.assignment.strategy", "range"),
            // A fetch waits for 256 KB or 50 ms instead of returning with
            // the first message that arrives. With librdkafka's defaults
            // (1 byte, 500 ms) the broker answered a fetch for every few
            // messages: at 5,000 reports/s Kafka and the processor used 0.6
            // of B4's 2 cores, and 0.36 with these settings, which took
            // B4's p99 from 1.1-2.0 s to 0.63-0.68 s (bench/RESULTS.md, B4).
            // A backlog fills 256 KB at once; on a quiet topic a report
            // waits up to 50 ms more, against a batch age of 1 s.
            ("fetch.min.bytes", "262144"),
            ("fetch.wait.max.ms", "50"),
        ]);
        // A consumer property only: the dead-letter producer must not get it.
        if let Some(instance) = &config.instance_id {
            client.set("group.instance.id", instance);
        }
        let consumer: StreamConsumer<Context> = client.create_with_context(context)?;
        consumer.subscribe(&[&config.topics.reports, &config.topics.outcomes])?;
        let consumer = Arc::new(consumer);
        let dead_letters = Arc::new(
            DeadLetters::new(&config.kafka, &config.topics.dead_letters)
                .map_err(ConsumeError::DeadLetter)?,
        );
        let writer = Writer::start(
            store.separate(&config.clickhouse),
            Arc::clone(&consumer),
            Arc::clone(&metrics),
            Retry {
                min_backoff: Duration::from_millis(config.batch.min_backoff_ms),
                max_backoff: Duration::from_millis(config.batch.max_backoff_ms),
                erasure_wait: Duration::from_millis(config.batch.erasure_wait_ms),
                stop: stop.clone(),
            },
            in_flight,
            SetAside {
                dead_letters: Arc::clone(&dead_letters),
                reports_topic: config.topics.reports.clone(),
                outcomes_topic: config.topics.outcomes.clone(),
            },
        )?;
        Ok(Worker {
            consumer,
            store,
            writer,
            dead_letters,
            enricher,
            config,
            metrics,
            stop,
        })
    }

    /// Runs until `stop` is cancelled; then writes what it holds, commits the
    /// stored offsets and returns.
    pub(crate) async fn run(mut self) -> Result<(), ConsumeError> {
        let mut batch = Batch::default();
        let max_age = self.config.batch.max_age();
        let refresh_secs = self.config.analytics.cluster_refresh_secs;
        let mut refresh = tokio::time::interval(Duration::from_secs(refresh_secs.max(1)));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.reset();
        let mut refreshed_at = OffsetDateTime::now_utc();
        loop {
            let deadline = batch.started.map(|t| t + max_age);
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = sleep_until(deadline) => self.flush(&mut batch).await,
                _ = refresh.tick(), if refresh_secs > 0 => {
                    // A little overlap, so that nothing written while the
                    // last look ran is missed.
                    let since = refreshed_at - time::Duration::seconds(5);
                    refreshed_at = OffsetDateTime::now_utc();
                    // Timed as a whole: it runs on the consumer's loop.
                    let refresh = crate::index::refresh(&self.store, &mut self.enricher, Some(since));
                    match self.store.timed(refresh).await {
                        Ok(added) => {
                            Metrics::add(&self.metrics.cluster_signatures_loaded, added as u64);
                            tracing::debug!(added, "clustering index refreshed");
                        }
                        Err(error) => {
                            tracing::warn!(%error, clickhouse = %self.store.url(), "clustering index not refreshed");
                            if self.store.fall_over() {
                                Metrics::add(&self.metrics.clickhouse_replica_moves, 1);
                            }
                        }
                    }
                }
                received = self.consumer.recv() => {
                    // A rebalance runs inside this poll, before the message
                    // it returns: what was read from a partition before it
                    // was revoked leaves the batch now, and what is read
                    // after it is assigned again (from the committed offset)
                    // stays.
                    self.forget_revoked(&mut batch);
                    match received {
                        Ok(message) => {
                            let taken = take(&mut self.enricher, &self.dead_letters, &message, &mut batch, &self.config, &self.metrics, &self.stop).await;
                            if !taken {
                                break;
                            }
                        }
                        Err(error) => tracing::warn!(%error, "kafka consumer error"),
                    }
                }
            }
            // An erasure closes its batch: the machine's reports read before
            // it are written, then erased; none read after it is.
            if batch.messages >= self.config.batch.max_rows || !batch.erasures.is_empty() {
                self.flush(&mut batch).await;
            }
        }
        self.forget_revoked(&mut batch);
        self.flush(&mut batch).await;
        let Worker {
            writer, consumer, ..
        } = self;
        writer.finish().await;
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::warn!(%error, "final offset commit failed; uncommitted messages will be read again");
        }
        tracing::info!("consumer stopped");
        Ok(())
    }

    /// Drops from `batch` what was read from partitions revoked since the
    /// last call: their next owner (perhaps this instance again) reads those
    /// messages again from the last committed offset.
    ///
    /// This must run right after each poll, not when the batch is written:
    /// a partition revoked and assigned back before then would otherwise
    /// lose the rows read since it came back, while the next batch stores
    /// an offset past them.
    fn forget_revoked(&self, batch: &mut Batch) {
        let lost: Vec<TopicPartition> = std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        batch.drop_partitions(&lost, &self.config.topics.reports);
    }

    /// Hands the batch to the writer (once the one before it is written).
    async fn flush(&mut self, batch: &mut Batch) {
        if batch.is_empty() {
            *batch = Batch::default();
            return;
        }
        self.writer.submit(std::mem::take(batch)).await;
    }
}

/// Turns one message into rows of the batch, or a dead letter; false if
/// the processor stopped while the dead letter waited for Kafka (the
/// message is then not in the batch and will be read again).
async fn take(
    enricher: &mut Enricher,
    dead_letters: &DeadLetters,
    message: &BorrowedMessage<'_>,
    batch: &mut Batch,
    config: &Config,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> bool {
    let source = Source {
        partition: message.partition(),
        offset: message.offset(),
    };
    let stream = if message.topic() == config.topics.outcomes {
        Stream::Outcomes
    } else {
        Stream::Reports
    };
    let value = message.payload().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    match enricher.route(stream, value, source, now) {
        Ok(routed) => batch.push(routed, u32::try_from(source.partition).unwrap_or_default()),
        Err(dead) => {
            tracing::warn!(
                topic = message.topic(),
                partition = source.partition,
                offset = source.offset,
                reason = dead.reason,
                detail = %dead.detail,
                "message sent to dead letters"
            );
            if !dead_letters.send(message, &dead, stop).await {
                return false;
            }
            Metrics::add(&metrics.dead_letters, 1);
            batch.errors.push(ProcessingErrorRow {
                at: now,
                topic: message.topic().to_string(),
                kafka_partition: u32::try_from(source.partition).unwrap_or_default(),
                kafka_offset: u64::try_from(source.offset).unwrap_or_default(),
                stage: dead.stage.as_str().to_string(),
                reason: dead.reason.to_string(),
                detail: dead.detail,
                size: value.len() as u64,
            });
        }
    }
    batch.note(message.topic(), source);
    true
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
