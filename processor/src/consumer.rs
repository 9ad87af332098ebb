//! The loop: consume → decode and enrich → batch → drop what is already
//! stored → insert → store offsets.
//!
//! Offsets are stored by hand (`enable.auto.offset.store=false`) and only
//! after ClickHouse confirmed the insert of every row before them, so a crash
//! at any point re-reads messages rather than skipping them. Re-read reports
//! are then found in their table by id and not written again; aggregates
//! count distinct ids, so they stay exact even if a copy slips through. Rows
//! of partitions lost in a rebalance are dropped unwritten: their new owner
//! reads them again. An undecodable message goes to the dead-letter topic and
//! a `processing_errors` row, and its offset is stored with its batch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::batch::{Batch, TopicPartition, keep_new};
use crate::config::Config;
use crate::dead_letter::DeadLetters;
use crate::metrics::Metrics;
use crate::route::{Enricher, Routed, Stream};
use crate::rows::{ProcessingErrorRow, Source};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("dead-letter topic: {0}")]
    DeadLetter(rdkafka::error::KafkaError),
}

/// Sees rebalances and librdkafka's log on the consumer's behalf.
#[derive(Debug)]
pub struct Context {
    revoked: Mutex<Vec<TopicPartition>>,
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
    consumer: StreamConsumer<Context>,
    store: Store,
    dead_letters: DeadLetters,
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
        let context = Context {
            revoked: Mutex::default(),
            metrics: Arc::clone(&metrics),
        };
        let consumer: StreamConsumer<Context> = config
            .kafka
            .client_config(&[
                ("group.id", &config.group_id),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", &commit_interval),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "1000"),
                // ClickHouse may be down for long; the loop keeps polling
                // meanwhile only between retries, so allow a long pause.
                ("max.poll.interval.ms", "600000"),
                ("partition.assignment.strategy", "cooperative-sticky"),
            ])
            .create_with_context(context)?;
        consumer.subscribe(&[&config.topics.reports, &config.topics.outcomes])?;
        let dead_letters = DeadLetters::new(&config.kafka, &config.topics.dead_letters)
            .map_err(ConsumeError::DeadLetter)?;
        Ok(Worker {
            consumer,
            store,
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
                    match crate::index::refresh(&self.store, &mut self.enricher, Some(since)).await {
                        Ok(added) => {
                            Metrics::add(&self.metrics.cluster_signatures_loaded, added as u64);
                            tracing::debug!(added, "clustering index refreshed");
                        }
                        Err(error) => tracing::warn!(%error, "clustering index not refreshed"),
                    }
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        take(&mut self.enricher, &self.dead_letters, &message, &mut batch, &self.config).await?;
                    }
                    Err(error) => tracing::warn!(%error, "kafka consumer error"),
                },
            }
            if batch.messages >= self.config.batch.max_rows {
                self.flush(&mut batch).await;
            }
        }
        self.flush(&mut batch).await;
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::warn!(%error, "final offset commit failed; uncommitted messages will be read again");
        }
        tracing::info!("consumer stopped");
        Ok(())
    }

    /// Writes the batch, retrying with backoff while ClickHouse fails, then
    /// stores the offsets it covers. If a stop comes while retrying, the rows
    /// are dropped unwritten and their offsets unstored: they will be read
    /// again.
    async fn flush(&self, batch: &mut Batch) {
        let lost: Vec<TopicPartition> = std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        batch.drop_partitions(&lost, &self.config.topics.reports);
        if batch.is_empty() {
            *batch = Batch::default();
            return;
        }
        let mut taken = std::mem::take(batch);
        let mut backoff = Duration::from_millis(self.config.batch.min_backoff_ms);
        let max_backoff = Duration::from_millis(self.config.batch.max_backoff_ms);
        loop {
            match self.write(&mut taken).await {
                Ok(rows) => {
                    Metrics::add(&self.metrics.rows_inserted, rows);
                    Metrics::add(&self.metrics.batches, 1);
                    break;
                }
                Err(error) => {
                    Metrics::add(&self.metrics.insert_failures, 1);
                    tracing::warn!(%error, retry_in = ?backoff, messages = taken.messages, "batch not written");
                    tokio::select! {
                        () = self.stop.cancelled() => {
                            tracing::warn!(messages = taken.messages, "stopping with an unwritten batch; it will be read again");
                            return;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &taken.next_offsets {
            if let Err(error) =
                offsets.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                tracing::error!(%error, partition, "could not record offset");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&offsets) {
            // Partitions revoked meanwhile: their new owner reads from the
            // last committed offset.
            tracing::warn!(%error, "storing offsets failed");
        }
        tracing::debug!(messages = taken.messages, "batch written");
    }

    /// Drops what is already stored, then inserts table by table. Safe to
    /// call again after a failure: each retry looks again at what is stored.
    async fn write(&self, batch: &mut Batch) -> Result<u64, StoreError> {
        let store = &self.store;
        let mut skipped = 0;
        skipped += self
            .skip_stored(&mut batch.crashes, "crash_reports", "report_id")
            .await?;
        skipped += self
            .skip_stored(&mut batch.feature_requests, "feature_requests", "report_id")
            .await?;
        skipped += self
            .skip_stored(&mut batch.feedback, "feedback", "report_id")
            .await?;
        skipped += self
            .skip_stored(&mut batch.heartbeats, "heartbeats", "report_id")
            .await?;
        skipped += self
            .skip_stored(&mut batch.outcomes, "outcomes", "event_id")
            .await?;
        Metrics::add(&self.metrics.duplicates_skipped, skipped as u64);
        let new_requests: HashSet<Uuid> =
            batch.feature_requests.iter().map(|r| r.report_id).collect();
        batch
            .signatures
            .retain(|s| new_requests.contains(&s.report_id));

        // Signatures before their requests: a request stored without its
        // signature would be missing from a rebuilt clustering index.
        store
            .insert("feature_request_signatures", &batch.signatures)
            .await?;
        store.insert("crash_reports", &batch.crashes).await?;
        store
            .insert("feature_requests", &batch.feature_requests)
            .await?;
        store.insert("feedback", &batch.feedback).await?;
        store.insert("heartbeats", &batch.heartbeats).await?;
        store.insert("outcomes", &batch.outcomes).await?;
        store.insert("processing_errors", &batch.errors).await?;
        Ok((batch.crashes.len()
            + batch.feature_requests.len()
            + batch.feedback.len()
            + batch.heartbeats.len()
            + batch.outcomes.len()
            + batch.errors.len()) as u64)
    }

    async fn skip_stored<T: crate::batch::Keyed>(
        &self,
        rows: &mut Vec<T>,
        table: &str,
        column: &str,
    ) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id()).collect();
        let existing = self.store.existing_ids(table, column, &ids).await?;
        Ok(keep_new(rows, &existing))
    }
}

/// Turns one message into rows of the batch, or a dead letter.
async fn take(
    enricher: &mut Enricher,
    dead_letters: &DeadLetters,
    message: &BorrowedMessage<'_>,
    batch: &mut Batch,
    config: &Config,
) -> Result<(), ConsumeError> {
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
        Ok(Routed::Crash(row)) => batch.crashes.push(row),
        Ok(Routed::FeatureRequest(row, signature)) => {
            batch.feature_requests.push(row);
            batch.signatures.push(signature);
        }
        Ok(Routed::Feedback(row)) => batch.feedback.push(row),
        Ok(Routed::Heartbeat(row)) => batch.heartbeats.push(row),
        Ok(Routed::Outcome(row)) => batch.outcomes.push(row),
        Err(dead) => {
            tracing::warn!(
                topic = message.topic(),
                partition = source.partition,
                offset = source.offset,
                reason = dead.reason,
                detail = %dead.detail,
                "message sent to dead letters"
            );
            dead_letters
                .send(message, &dead)
                .await
                .map_err(ConsumeError::DeadLetter)?;
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
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
