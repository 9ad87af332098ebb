//! The Kafka side of ingest: every accepted report is produced to the reports
//! topic with acks from all in-sync replicas, and the request waits for that
//! acknowledgement before it answers 202.

use std::time::Duration;

use pipeline::KafkaConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use schemas::AcceptedReport;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("encoding report: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("kafka delivery: {0}")]
    Kafka(#[from] KafkaError),
}

pub struct ReportSink {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for ReportSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSink")
            .field("topic", &self.topic)
            .finish()
    }
}

impl ReportSink {
    /// A producer with idempotence on and `acks=all`: a retried send never
    /// writes a second copy, and an acknowledged report survives a broker.
    pub fn new(
        kafka: &KafkaConfig,
        topic: &str,
        delivery_timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let timeout_ms = delivery_timeout.as_millis().to_string();
        let producer: FutureProducer = kafka
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "zstd"),
                ("linger.ms", "5"),
                ("delivery.timeout.ms", &timeout_ms),
                ("message.max.bytes", "11534336"),
            ])
            .create()?;
        Ok(ReportSink {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Produces one report, keyed by its machine hash, and waits for the
    /// broker's acknowledgement.
    pub async fn send(&self, report: &AcceptedReport) -> Result<(), SinkError> {
        let payload = serde_json::to_vec(report)?;
        let schema = report.schema.to_string();
        let report_id = report.report_id.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "schema",
                value: Some(&schema),
            })
            .insert(Header {
                key: "report_id",
                value: Some(&report_id),
            });
        let record = FutureRecord::to(&self.topic)
            .key(&report.machine_hash)
            .payload(&payload)
            .headers(headers);
        // The producer's own delivery timeout bounds the wait.
        self.producer
            .send(record, Timeout::Never)
            .await
            .map_err(|(error, _)| error)?;
        Ok(())
    }

    /// Whether a broker answers a metadata request for the reports topic.
    pub async fn reachable(&self, timeout: Duration) -> bool {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(timeout))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Waits until everything produced has been acknowledged or failed.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }
}
