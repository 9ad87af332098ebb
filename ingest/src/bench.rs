//! One report's way through ingest without HTTP, for counting the
//! instructions it takes (`bench/instr`). Not part of the service's
//! interface: the handlers run the same steps, awaiting Kafka's
//! acknowledgement where this only enqueues.

use std::sync::Arc;
use std::time::Instant;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use time::OffsetDateTime;

use crate::ServeError;
use crate::config::{Config, ConfigError, Organisation};
use crate::dedup::ReportKey;
use crate::intake::{self, Prepared};
use crate::metrics::Metrics;
use crate::outcome::{Outcomes, Seen};
use crate::sink::Delivery;
use crate::state::{AppState, Settings};

/// Ingest's state as [`crate::serve`] builds it from `config` (no spool),
/// sending as the configuration's first organisation.
#[derive(Debug)]
pub struct PerReport {
    state: AppState,
    settings: Arc<Settings>,
    org: Organisation,
    topic: String,
}

impl PerReport {
    pub fn new(config: &Config) -> Result<Self, ServeError> {
        let metrics = Arc::new(Metrics::default());
        let delivery = Arc::new(Delivery::new(
            &config.kafka,
            &config.topics.reports,
            config.limits.delivery_timeout(),
            None,
            Arc::clone(&metrics),
        )?);
        let outcomes = Outcomes::new(
            delivery.producer().clone(),
            &config.topics.outcomes,
            Arc::clone(&metrics),
        );
        let state = AppState::new(config, delivery, outcomes, metrics)?;
        let org = config
            .organisations
            .first()
            .cloned()
            .ok_or_else(|| ConfigError::Invalid("no organisation".into()))?;
        Ok(PerReport {
            settings: state.settings(),
            state,
            org,
            topic: config.topics.reports.clone(),
        })
    }

    /// Every check, scrubbing and encoding of one report's JSON text, the
    /// produce call (the message is enqueued in the producer, its
    /// acknowledgement not awaited), and what an accepted report records
    /// (the duplicate cache, its outcome). The message value, as the
    /// processor reads it, or `None` if the report was not accepted.
    pub fn submit(&self, text: &[u8]) -> Option<Vec<u8>> {
        let received_at = OffsetDateTime::now_utc();
        let prepared = intake::prepare(&self.state, &self.settings, &self.org, text, received_at);
        let Ok(Prepared::Ready(ready)) = prepared else {
            return None;
        };
        let outgoing = ready.outgoing;
        let headers = OwnedHeaders::new().insert(Header {
            key: "schema",
            value: Some(&outgoing.schema),
        });
        let record = FutureRecord::to(&self.topic)
            .key(&outgoing.key)
            .payload(&outgoing.payload)
            .headers(headers);
        // Dropping the future drops only the wait for the acknowledgement.
        drop(self.state.delivery.producer().send_result(record).ok()?);
        let key = ReportKey::new(&outgoing.key, ready.report_id);
        self.state.recent.insert(key, Instant::now());
        let schema = ready.schema.to_string();
        let seen = Seen {
            org_id: Some(&self.org.id),
            schema: Some(&schema),
            kind: Some(ready.schema.kind.as_str()),
            size: text.len(),
        };
        self.state.outcomes.kept(schemas::Outcome::Accepted, &seen);
        Some(outgoing.payload)
    }
}
