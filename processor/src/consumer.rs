//! The loop: consume → decode → batch → insert → store offsets.
//!
//! Offsets are stored by hand (`enable.auto.offset.store=false`) and only
//! after ClickHouse confirmed the insert of every row before them, so a crash
//! at any point re-reads messages rather than skipping them. A message that
//! cannot be decoded goes to the dead-letter topic and its offset is stored
//! with the batch it sits in, so it never blocks its partition.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemas::{AcceptedReport, Payload};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dead_letter::{DeadLetter, DeadLetters, Stage};
use crate::rows::{CrashRow, FeatureRequestRow, FeedbackRow, HeartbeatRow, Source};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("dead-letter topic: {0}")]
    DeadLetter(rdkafka::error::KafkaError),
}

/// Rows waiting for their insert, and the offsets they cover.
#[derive(Debug, Default)]
struct Batch {
    crashes: Vec<CrashRow>,
    feature_requests: Vec<FeatureRequestRow>,
    feedback: Vec<FeedbackRow>,
    heartbeats: Vec<HeartbeatRow>,
    /// Partition → offset of the next message to read, once this batch is in.
    next_offsets: BTreeMap<i32, i64>,
    messages: usize,
    started: Option<Instant>,
}

impl Batch {
    fn note(&mut self, source: Source) {
        self.next_offsets
            .insert(source.partition, source.offset + 1);
        self.messages += 1;
        self.started.get_or_insert_with(Instant::now);
    }

    fn is_empty(&self) -> bool {
        self.messages == 0
    }
}

/// What one message turned into.
enum Routed {
    Crash(CrashRow),
    FeatureRequest(FeatureRequestRow),
    Feedback(FeedbackRow),
    Heartbeat(HeartbeatRow),
}

/// Decodes one message value into the row it belongs in.
fn route(value: &[u8], source: Source, now: OffsetDateTime) -> Result<Routed, DeadLetter> {
    let report: AcceptedReport = serde_json::from_slice(value)
        .map_err(|e| DeadLetter::new(Stage::Decode, "undecodable_report", e))?;
    let payload = Payload::decode(report.schema, &report.payload)
        .map_err(|e| DeadLetter::new(Stage::Decode, "undecodable_payload", e))?;
    Ok(match payload {
        Payload::Crash(p) => Routed::Crash(CrashRow::new(&report, p, source, now)),
        Payload::FeatureRequest(p) => {
            Routed::FeatureRequest(FeatureRequestRow::new(&report, p, source, now))
        }
        Payload::Feedback(p) => Routed::Feedback(FeedbackRow::new(&report, p, source, now)),
        Payload::Heartbeat(p) => Routed::Heartbeat(
            HeartbeatRow::new(&report, p, source, now)
                .map_err(|e| DeadLetter::new(Stage::Place, "invalid_heartbeat_day", e))?,
        ),
    })
}

pub(crate) struct Worker {
    consumer: StreamConsumer,
    store: Store,
    dead_letters: DeadLetters,
    topic: String,
    config: Config,
    stop: CancellationToken,
}

impl Worker {
    pub(crate) fn new(
        config: Config,
        store: Store,
        stop: CancellationToken,
    ) -> Result<Self, ConsumeError> {
        let consumer: StreamConsumer = config
            .kafka
            .client_config(&[
                ("group.id", &config.group_id),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "1000"),
                ("partition.assignment.strategy", "cooperative-sticky"),
            ])
            .create()?;
        consumer.subscribe(&[&config.topics.reports])?;
        let dead_letters = DeadLetters::new(&config.kafka, &config.topics.dead_letters)
            .map_err(ConsumeError::DeadLetter)?;
        Ok(Worker {
            consumer,
            store,
            dead_letters,
            topic: config.topics.reports.clone(),
            config,
            stop,
        })
    }

    /// Runs until `stop` is cancelled; then writes what it holds, commits the
    /// stored offsets and returns.
    pub(crate) async fn run(self) -> Result<(), ConsumeError> {
        let mut batch = Batch::default();
        let max_age = self.config.batch.max_age();
        loop {
            let deadline = batch.started.map(|t| t + max_age);
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = sleep_until(deadline) => self.flush(&mut batch).await,
                received = self.consumer.recv() => match received {
                    Ok(message) => self.take(&message, &mut batch).await?,
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

    async fn take(
        &self,
        message: &BorrowedMessage<'_>,
        batch: &mut Batch,
    ) -> Result<(), ConsumeError> {
        let source = Source {
            partition: message.partition(),
            offset: message.offset(),
        };
        let value = message.payload().unwrap_or_default();
        match route(value, source, OffsetDateTime::now_utc()) {
            Ok(Routed::Crash(row)) => batch.crashes.push(row),
            Ok(Routed::FeatureRequest(row)) => batch.feature_requests.push(row),
            Ok(Routed::Feedback(row)) => batch.feedback.push(row),
            Ok(Routed::Heartbeat(row)) => batch.heartbeats.push(row),
            Err(dead) => {
                tracing::warn!(
                    partition = source.partition,
                    offset = source.offset,
                    reason = dead.reason,
                    detail = %dead.detail,
                    "message sent to dead letters"
                );
                self.dead_letters
                    .send(message, &dead)
                    .await
                    .map_err(ConsumeError::DeadLetter)?;
            }
        }
        batch.note(source);
        Ok(())
    }

    /// Inserts the batch, retrying with backoff while ClickHouse fails, then
    /// stores the offsets it covers. If a stop comes while retrying, the rows
    /// are dropped unwritten and their offsets unstored: they will be read
    /// again.
    async fn flush(&self, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        let taken = std::mem::take(batch);
        let mut backoff = Duration::from_millis(self.config.batch.min_backoff_ms);
        let max_backoff = Duration::from_millis(self.config.batch.max_backoff_ms);
        loop {
            match self.insert(&taken).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, rows = taken.messages, "insert failed");
                    tokio::select! {
                        () = self.stop.cancelled() => {
                            tracing::warn!(rows = taken.messages, "stopping with an unwritten batch; it will be read again");
                            return;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &taken.next_offsets {
            if let Err(error) =
                offsets.add_partition_offset(&self.topic, *partition, Offset::Offset(*next))
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

    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        self.store.insert("crash_reports", &batch.crashes).await?;
        self.store
            .insert("feature_requests", &batch.feature_requests)
            .await?;
        self.store.insert("feedback", &batch.feedback).await?;
        self.store.insert("heartbeats", &batch.heartbeats).await?;
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures;

    const SOURCE: Source = Source {
        partition: 0,
        offset: 7,
    };

    fn accepted(text: &str) -> Vec<u8> {
        let sent: schemas::Envelope = serde_json::from_str(text).expect("fixture");
        let report = AcceptedReport {
            report_id: sent.report_id,
            schema: sent.schema.parse().expect("schema"),
            org_id: "grid".into(),
            machine_hash: "cd".repeat(16),
            consent: sent.consent,
            sent_at: sent.sent_at,
            received_at: sent.sent_at,
            os: sent.os,
            payload: sent.payload,
            scrubbed: Default::default(),
        };
        serde_json::to_vec(&report).expect("encodes")
    }

    #[test]
    fn each_report_type_finds_its_table() {
        let now = OffsetDateTime::now_utc();
        assert!(matches!(
            route(&accepted(fixtures::CRASH), SOURCE, now),
            Ok(Routed::Crash(_))
        ));
        assert!(matches!(
            route(&accepted(fixtures::FEATURE_REQUEST), SOURCE, now),
            Ok(Routed::FeatureRequest(_))
        ));
        assert!(matches!(
            route(&accepted(fixtures::FEEDBACK), SOURCE, now),
            Ok(Routed::Feedback(_))
        ));
        assert!(matches!(
            route(&accepted(fixtures::HEARTBEAT), SOURCE, now),
            Ok(Routed::Heartbeat(_))
        ));
    }

    #[test]
    fn undecodable_messages_become_dead_letters_with_a_reason() {
        let now = OffsetDateTime::now_utc();
        let Err(dead) = route(b"not json", SOURCE, now) else {
            panic!("garbage routed");
        };
        assert_eq!(
            (dead.stage, dead.reason),
            (Stage::Decode, "undecodable_report")
        );

        let mut report: serde_json::Value =
            serde_json::from_slice(&accepted(fixtures::CRASH)).expect("json");
        report["payload"]["frames"] = serde_json::json!("not a list");
        let Err(dead) = route(&serde_json::to_vec(&report).expect("json"), SOURCE, now) else {
            panic!("bad payload routed");
        };
        assert_eq!(dead.reason, "undecodable_payload");
    }

    #[test]
    fn a_batch_covers_the_offset_after_its_last_message() {
        let mut batch = Batch::default();
        batch.note(Source {
            partition: 1,
            offset: 10,
        });
        batch.note(Source {
            partition: 1,
            offset: 11,
        });
        batch.note(Source {
            partition: 2,
            offset: 5,
        });
        assert_eq!(batch.next_offsets, BTreeMap::from([(1, 12), (2, 6)]));
        assert_eq!(batch.messages, 3);
        assert!(!batch.is_empty());
    }
}
