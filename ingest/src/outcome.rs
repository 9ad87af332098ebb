//! Counting what became of every report, and publishing the refused ones on
//! the outcomes topic (reason, schema, organisation, size; never a payload).
//!
//! Requests refused before anything was read of them (no or an unknown or a
//! revoked token, or the service at capacity) cost the sender nothing, so a
//! flood of them must cost the pipeline little too: each is counted in
//! `ingest_reports_total` as it happens, but on the outcomes topic they are
//! summarised: one event per outcome, reason and organisation (none when no
//! token named one) per [`SUMMARY_INTERVAL`], whatever their number. Such an
//! event says that refusals of its kind happened in the interval; how many
//! is in the metrics, not in the outcomes table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::{Outcome, OutcomeEvent};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::lock;
use crate::metrics::Metrics;

/// How often summarised refusals are published.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Whether a refusal is summarised rather than published one by one: it
/// came before the request's body was read and before a token named an
/// organisation, or the service was at capacity.
pub fn summarised(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::Unauthenticated
            | ApiError::UnknownToken
            | ApiError::RevokedToken
            | ApiError::Overloaded
    )
}

/// Refusals of one kind in the current interval.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    count: u64,
    bytes: u64,
}

type SummaryKey = (Outcome, &'static str, Option<String>);

/// What is known of a report when its outcome is decided.
#[derive(Debug, Clone, Default)]
pub struct Seen<'a> {
    pub org_id: Option<&'a str>,
    pub schema: Option<&'a str>,
    pub kind: Option<&'static str>,
    pub size: usize,
}

pub struct Outcomes {
    producer: FutureProducer,
    topic: String,
    metrics: Arc<Metrics>,
    pending: Mutex<BTreeMap<SummaryKey, Tally>>,
}

impl std::fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcomes")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Outcomes {
    pub fn new(producer: FutureProducer, topic: &str, metrics: Arc<Metrics>) -> Self {
        Outcomes {
            producer,
            topic: topic.to_string(),
            metrics,
            pending: Mutex::default(),
        }
    }

    /// A report was kept (accepted or spooled) or answered as a duplicate.
    pub fn kept(&self, outcome: Outcome, seen: &Seen<'_>) {
        self.metrics
            .report(outcome, "", seen.kind.unwrap_or("unknown"));
        if outcome == Outcome::Duplicate {
            self.publish(outcome, "duplicate", None, seen);
        }
    }

    /// A report was refused with `error`.
    pub fn refused(&self, error: &ApiError, seen: &Seen<'_>) {
        let outcome = error.outcome();
        self.metrics
            .report(outcome, error.code(), seen.kind.unwrap_or("unknown"));
        if summarised(error) {
            let key = (outcome, error.code(), seen.org_id.map(str::to_string));
            let mut pending = lock(&self.pending);
            let tally = pending.entry(key).or_default();
            tally.count += 1;
            tally.bytes += seen.size as u64;
        } else {
            self.publish(outcome, error.code(), error.field(), seen);
        }
    }

    /// Publishes one event for each kind of summarised refusal seen since
    /// the last call, and forgets them; returns how many events.
    pub fn publish_summaries(&self) -> usize {
        let pending = std::mem::take(&mut *lock(&self.pending));
        for ((outcome, reason, org_id), tally) in &pending {
            tracing::info!(
                reason,
                org_id = org_id.as_deref().unwrap_or("unknown"),
                count = tally.count,
                "requests refused before reading"
            );
            let seen = Seen {
                org_id: org_id.as_deref(),
                size: usize::try_from(tally.bytes).unwrap_or(usize::MAX),
                ..Seen::default()
            };
            self.publish(*outcome, reason, None, &seen);
        }
        pending.len()
    }

    /// Publishes the summaries every [`SUMMARY_INTERVAL`] until `stop`
    /// (the last interval's are published on shutdown by the caller).
    pub async fn summarise(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SUMMARY_INTERVAL) => {}
            }
            self.publish_summaries();
        }
    }

    fn publish(&self, outcome: Outcome, reason: &str, field: Option<&str>, seen: &Seen<'_>) {
        let event = OutcomeEvent {
            event_id: uuid::Uuid::new_v4(),
            at: OffsetDateTime::now_utc(),
            outcome,
            reason: reason.to_string(),
            schema: seen.schema.map(str::to_string),
            org_id: seen.org_id.map(str::to_string),
            size: seen.size as u64,
            field: field.map(str::to_string),
        };
        let Ok(payload) = serde_json::to_vec(&event) else {
            return;
        };
        let key = seen.org_id.unwrap_or("");
        let record = FutureRecord::to(&self.topic).key(key).payload(&payload);
        // Queued, not awaited: a refusal must not wait on Kafka. The
        // producer's own retries carry it; what it cannot queue is counted.
        if self.producer.send_result(record).is_err() {
            self.metrics.outcome_event_failed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes() -> Outcomes {
        // Nothing listens on port 1: events are only queued.
        let producer = pipeline::KafkaConfig::local("127.0.0.1:1")
            .client_config(&[("message.timeout.ms", "1000")])
            .create()
            .expect("producer");
        Outcomes::new(producer, "nowhere", Arc::new(Metrics::default()))
    }

    #[test]
    fn refusals_before_reading_are_one_event_per_kind_and_interval() {
        let outcomes = outcomes();
        for _ in 0..10_000 {
            outcomes.refused(&ApiError::Unauthenticated, &Seen::default());
        }
        for _ in 0..100 {
            outcomes.refused(&ApiError::UnknownToken, &Seen::default());
            let grid = Seen {
                org_id: Some("grid"),
                ..Seen::default()
            };
            outcomes.refused(&ApiError::Overloaded, &grid);
        }
        assert_eq!(outcomes.publish_summaries(), 3);
        assert_eq!(
            outcomes.publish_summaries(),
            0,
            "a new interval starts empty"
        );
        assert_eq!(outcomes.metrics.reports_with(Outcome::Rejected), 10_200);
    }

    #[test]
    fn refused_reports_are_not_summarised() {
        let outcomes = outcomes();
        outcomes.refused(&ApiError::TooLarge(10), &Seen::default());
        outcomes.refused(&ApiError::RateLimited(1), &Seen::default());
        assert_eq!(outcomes.publish_summaries(), 0);
    }
}
