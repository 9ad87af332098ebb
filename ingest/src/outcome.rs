//! Counting what became of every report, and publishing the refused ones on
//! the outcomes topic (reason, schema, organisation, size; never a payload).

use std::sync::Arc;

use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::{Outcome, OutcomeEvent};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::metrics::Metrics;

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
        self.publish(outcome, error.code(), error.field(), seen);
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
