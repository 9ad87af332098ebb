//! Where accepted reports go: Kafka first, the disk spool when Kafka cannot
//! take them in time, and back to Kafka from the spool, in order, once it
//! can.
//!
//! ```text
//!  deliver ──(no backlog)──▶ Kafka, acks=all, awaited ≤ delivery_timeout ──▶ Kafka
//!     │                            │ failed or timed out
//!     └──(backlog in spool)──▶ spool.append (fsync) ◀┘
//!                                   │
//!                      forwarder ───┴──▶ Kafka, then spool.ack
//! ```
//!
//! While the spool holds a backlog, new reports queue behind it, so that a
//! machine's reports reach Kafka in the order they were accepted. A report
//! is only ever answered "accepted" once Kafka acknowledged it or the spool
//! has it on disk.
//!
//! The forwarder never mistakes a spool it cannot read for an empty one: a
//! read error is logged, counted (`ingest_spool_read_errors_total`) and
//! retried with backoff while the backlog stays. A spooled record Kafka
//! refuses for good ([`pipeline::refused_for_good`], e.g. too large for the
//! topic), once sent again on its own to be sure it is the culprit, moves to
//! the quarantine (a second spool in `<spool.dir>/quarantine`, counted in
//! `ingest_spool_quarantined_total`) so that the records behind it go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use pipeline::KafkaConfig;
use pipeline::refused_for_good;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use spool::{Spool, SpoolError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// One encoded report on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The hashed machine id: the Kafka key.
    pub key: String,
    /// The report's `schema`, as a header.
    pub schema: String,
    /// The [`schemas::AcceptedReport`] as JSON.
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// `u16 key length (LE) | key | payload`: how a report sits in the spool.
    fn to_record(&self) -> Vec<u8> {
        let key = self.key.as_bytes();
        let len = u16::try_from(key.len()).unwrap_or(u16::MAX);
        let mut record =
            Vec::with_capacity(2 + key.len() + self.schema.len() + 1 + self.payload.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&key[..usize::from(len)]);
        let schema = self.schema.as_bytes();
        record.push(u8::try_from(schema.len()).unwrap_or(u8::MAX));
        record.extend_from_slice(&schema[..schema.len().min(255)]);
        record.extend_from_slice(&self.payload);
        record
    }

    fn from_record(record: &[u8]) -> Option<Self> {
        let key_len = usize::from(u16::from_le_bytes(record.get(..2)?.try_into().ok()?));
        let key = record.get(2..2 + key_len)?;
        let at = 2 + key_len;
        let schema_len = usize::from(*record.get(at)?);
        let schema = record.get(at + 1..at + 1 + schema_len)?;
        let payload = record.get(at + 1 + schema_len..)?;
        Some(Outgoing {
            key: String::from_utf8(key.to_vec()).ok()?,
            schema: String::from_utf8(schema.to_vec()).ok()?,
            payload: payload.to_vec(),
        })
    }
}

/// Where a report went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Kafka,
    Spool,
}

/// Why a report could not be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("the spool is full")]
    SpoolFull,
    #[error("kafka is unavailable and no spool can take the report")]
    Unavailable,
}

/// The disk spool, its size limit, and the quarantine beside it for records
/// Kafka refuses for good.
#[derive(Debug)]
pub struct SpoolParts {
    pub spool: Arc<Spool>,
    pub max_bytes: u64,
    pub quarantine: Arc<Spool>,
}

pub struct Delivery {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
    spool: Option<Arc<Spool>>,
    quarantine: Option<Arc<Spool>>,
    /// The spool's size limit, in bytes.
    spool_limit: u64,
    /// The spool holds reports not yet forwarded.
    backlog: AtomicBool,
    /// The topics exist (ingest creates them at start, retrying).
    topics_ready: AtomicBool,
    appended: Notify,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("backlog", &self.backlog)
            .finish()
    }
}

/// The reports producer's settings: idempotence on and `acks=all` (a
/// retried send never writes a second copy, and an acknowledged report
/// survives a broker), and the message limit every topic shares.
pub fn producer_config(kafka: &KafkaConfig, timeout: Duration) -> ClientConfig {
    // A report Kafka has not acknowledged within `timeout` is spooled; the
    // producer gives it up at the same moment, so that it is rarely
    // written twice (the processor counts it once either way).
    let timeout_ms = timeout.as_millis().to_string();
    let max_message_bytes = pipeline::MAX_MESSAGE_BYTES.to_string();
    kafka.client_config(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        // lz4 costs a fraction of zstd's CPU per batch (zstd was
        // a tenth of ingest's time under load) for a little more
        // disk on the broker.
        ("compression.type", "lz4"),
        // Each single report's answer waits for its batch's
        // acknowledgement, so the linger is paid in latency, and
        // with a bounded number of open requests in throughput:
        // 2 ms took 28k reports/s where 5 ms took 19k and 0 ms
        // (a request per report) 22k (bench/RESULTS.md).
        ("linger.ms", "2"),
        ("delivery.timeout.ms", &timeout_ms),
        ("message.max.bytes", &max_message_bytes),
    ])
}

impl Delivery {
    pub fn new(
        kafka: &KafkaConfig,
        topic: &str,
        timeout: Duration,
        spool: Option<SpoolParts>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let producer: FutureProducer = producer_config(kafka, timeout).create()?;
        let (spool, spool_limit, quarantine) = match spool {
            Some(parts) => (Some(parts.spool), parts.max_bytes, Some(parts.quarantine)),
            None => (None, 0, None),
        };
        let backlog = spool.as_ref().is_some_and(|s| !s.is_empty());
        Ok(Delivery {
            producer,
            topic: topic.to_string(),
            timeout,
            spool,
            quarantine,
            spool_limit,
            backlog: AtomicBool::new(backlog),
            topics_ready: AtomicBool::new(false),
            appended: Notify::new(),
            metrics,
        })
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_deref()
    }

    pub fn quarantine(&self) -> Option<&Spool> {
        self.quarantine.as_deref()
    }

    /// Whether new reports queue behind spooled ones.
    #[cfg(test)]
    pub fn has_backlog(&self) -> bool {
        self.backlog.load(Ordering::SeqCst)
    }

    /// Delivers each report to Kafka or the spool; one result per report, in
    /// order.
    pub async fn deliver(&self, reports: &[&Outgoing]) -> Vec<Result<Delivered, DeliveryError>> {
        if self.backlog.load(Ordering::SeqCst) {
            let result = self.spool_reports(reports).await;
            return vec![result; reports.len()];
        }
        let backstop = self.timeout + Duration::from_millis(500);
        let sends = reports
            .iter()
            .map(|r| tokio::time::timeout(backstop, self.send(r)));
        let outcomes = join_all(sends).await;
        let failed: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| !matches!(o, Ok(Ok(()))))
            .map(|(i, _)| i)
            .collect();
        let mut results = vec![Ok(Delivered::Kafka); reports.len()];
        if failed.is_empty() {
            return results;
        }
        for i in &failed {
            self.metrics.kafka_failure();
            if let Ok(Err(error)) = &outcomes[*i] {
                tracing::warn!(%error, "kafka did not take a report");
            }
        }
        let retry: Vec<&Outgoing> = failed.iter().map(|i| reports[*i]).collect();
        let spooled = self.spool_reports(&retry).await;
        for i in failed {
            results[i] = spooled;
        }
        results
    }

    /// Produces one report and waits for the broker's acknowledgement.
    async fn send(&self, report: &Outgoing) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new().insert(Header {
            key: "schema",
            value: Some(&report.schema),
        });
        let record = FutureRecord::to(&self.topic)
            .key(&report.key)
            .payload(&report.payload)
            .headers(headers);
        self.producer
            .send(record, Timeout::After(self.timeout))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }

    /// Appends reports to the spool with one fsync.
    async fn spool_reports(&self, reports: &[&Outgoing]) -> Result<Delivered, DeliveryError> {
        let Some(spool) = self.spool.clone() else {
            return Err(DeliveryError::Unavailable);
        };
        let records: Vec<Vec<u8>> = reports.iter().map(|r| r.to_record()).collect();
        let appended = tokio::task::spawn_blocking(move || {
            let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            spool.append(&slices)
        })
        .await;
        match appended {
            Ok(Ok(())) => {
                self.backlog.store(true, Ordering::SeqCst);
                self.appended.notify_one();
                Ok(Delivered::Spool)
            }
            Ok(Err(SpoolError::Full { .. } | SpoolError::TooLarge { .. })) => {
                Err(DeliveryError::SpoolFull)
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "spool append failed");
                Err(DeliveryError::Unavailable)
            }
            Err(error) => {
                tracing::error!(%error, "spool task failed");
                Err(DeliveryError::Unavailable)
            }
        }
    }

    pub fn set_topics_ready(&self) {
        self.topics_ready.store(true, Ordering::SeqCst);
    }

    /// Whether Kafka has been reached since the start: the topics exist.
    pub fn topics_ready(&self) -> bool {
        self.topics_ready.load(Ordering::SeqCst)
    }

    /// Whether the topics exist and a broker answers a metadata request for
    /// the reports topic.
    pub async fn kafka_reachable(&self, timeout: Duration) -> bool {
        if !self.topics_ready.load(Ordering::SeqCst) {
            return false;
        }
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

    /// Whether the spool could take another report.
    pub fn spool_has_room(&self) -> bool {
        self.spool
            .as_ref()
            .is_some_and(|s| s.bytes() < self.spool_limit)
    }

    /// Waits until everything produced has been acknowledged or failed.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }

    /// Moves spooled reports to Kafka, oldest first, until `stop`. A report
    /// leaves the spool only after Kafka acknowledged it (and every report
    /// before it), or after it moved to the quarantine.
    pub async fn forward(self: Arc<Self>, stop: CancellationToken) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        const BATCH: usize = 256;
        let mut backoff = Duration::from_millis(100);
        let pause = |backoff: Duration| {
            let stop = stop.clone();
            async move {
                tokio::select! {
                    () = stop.cancelled() => false,
                    () = tokio::time::sleep(backoff) => true,
                }
            }
        };
        loop {
            if stop.is_cancelled() {
                return;
            }
            let peeking = Arc::clone(&spool);
            let peeked = tokio::task::spawn_blocking(move || peeking.peek(BATCH))
                .await
                .unwrap_or_else(|e| Err(SpoolError::Io(std::io::Error::other(e))));
            let batch = match peeked {
                Ok(batch) => batch,
                Err(error) => {
                    // Not an empty spool: what it holds was answered 202.
                    // The backlog stays, so new reports queue behind it.
                    self.metrics.spool_read_error();
                    tracing::error!(%error, retry_in = ?backoff, pending = spool.len(), "reading the spool failed; retrying");
                    if !pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if batch.is_empty() {
                self.backlog.store(false, Ordering::SeqCst);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.appended.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let decoded: Vec<Option<Outgoing>> = batch
                .iter()
                .map(|(_, record)| Outgoing::from_record(record))
                .collect();
            let this: &Delivery = &self;
            let sends = decoded.iter().map(|report| async move {
                match report {
                    Some(report) => this.send(report).await.map_err(Some),
                    None => Err(None),
                }
            });
            let sent = join_all(sends).await;
            let mut done = sent.iter().take_while(|result| result.is_ok()).count();
            if let Some(Err(error)) = sent.get(done) {
                let (_, record) = &batch[done];
                if self
                    .settle(error.as_ref(), decoded[done].as_ref(), record)
                    .await
                {
                    done += 1;
                }
            }
            if done > 0 {
                let upto = batch[done - 1].0;
                let acking = Arc::clone(&spool);
                match tokio::task::spawn_blocking(move || acking.ack(upto)).await {
                    Ok(Ok(())) => self.metrics.forwarded(done as u64),
                    Ok(Err(error)) => {
                        tracing::error!(%error, "acknowledging spooled reports failed")
                    }
                    Err(_) => {}
                }
            }
            if done < batch.len() {
                tracing::warn!(retry_in = ?backoff, pending = spool.len(), "kafka still refuses spooled reports");
                if !pause(backoff).await {
                    return;
                }
                backoff = if done == 0 {
                    (backoff * 2).min(Duration::from_secs(5))
                } else {
                    Duration::from_millis(100)
                };
            } else {
                backoff = Duration::from_millis(100);
            }
        }
    }

    /// Decides what becomes of the first spooled record that did not reach
    /// Kafka: `true` when it is done with (sent after all, or quarantined),
    /// `false` when it stays first in the spool to be retried. `error` is
    /// `None` for a record that does not decode.
    async fn settle(
        &self,
        error: Option<&KafkaError>,
        report: Option<&Outgoing>,
        record: &[u8],
    ) -> bool {
        let reason = match (error, report) {
            (None, _) | (_, None) => "undecodable".to_string(),
            (Some(error), Some(report)) => {
                if !refused_for_good(error) {
                    return false;
                }
                // A record batch is refused as a whole: send the record on
                // its own to learn whether it is the one at fault.
                match self.send(report).await {
                    Ok(()) => return true,
                    Err(again) if refused_for_good(&again) => again.to_string(),
                    Err(_) => return false,
                }
            }
        };
        let Some(quarantine) = self.quarantine.clone() else {
            return false;
        };
        let bytes = record.to_vec();
        let kept = tokio::task::spawn_blocking(move || quarantine.append(&[&bytes])).await;
        match kept {
            Ok(Ok(())) => {
                self.metrics.quarantined();
                tracing::error!(%reason, size = record.len(), "kafka refuses a spooled report for good; moved to the quarantine");
                true
            }
            Ok(Err(error)) => {
                tracing::error!(%error, %reason, "the quarantine cannot take a report kafka refuses; it stays in the spool");
                false
            }
            Err(error) => {
                tracing::error!(%error, "quarantine task failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_records_round_trip() {
        let report = Outgoing {
            key: "ab".repeat(16),
            schema: "crash/1".into(),
            payload: br#"{"report_id": "x"}"#.to_vec(),
        };
        let back = Outgoing::from_record(&report.to_record()).expect("decodes");
        assert_eq!(back.key, report.key);
        assert_eq!(back.schema, report.schema);
        assert_eq!(back.payload, report.payload);
        assert!(Outgoing::from_record(&[5, 0, b'a']).is_none());
    }

    #[test]
    fn the_producer_takes_what_the_topics_take() {
        let config = producer_config(
            &KafkaConfig::local("127.0.0.1:9092"),
            Duration::from_secs(5),
        );
        assert_eq!(
            config.get("message.max.bytes"),
            Some(pipeline::MAX_MESSAGE_BYTES.to_string().as_str())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spool_that_cannot_be_read_is_not_taken_for_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = |sub: &str| {
            Arc::new(
                Spool::open(spool::SpoolConfig {
                    dir: dir.path().join(sub),
                    max_bytes: 1 << 20,
                    segment_bytes: 1 << 16,
                })
                .expect("spool opens"),
            )
        };
        let (spool, quarantine) = (open("spool"), open("spool/quarantine"));
        let report = Outgoing {
            key: "ab".repeat(16),
            schema: "crash/1".into(),
            payload: br#"{"report_id": "x"}"#.to_vec(),
        };
        spool.append(&[&report.to_record()]).expect("spooled");
        // Damage the record on disk after the spool opened: every read of
        // it now fails its checksum.
        let segment = dir.path().join("spool/00000000000000000001.seg");
        let mut bytes = std::fs::read(&segment).expect("segment");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&segment, bytes).expect("damaged");

        let metrics = Arc::new(Metrics::default());
        // Nothing listens on port 1; the forwarder never gets as far as Kafka.
        let delivery = Arc::new(
            Delivery::new(
                &KafkaConfig::local("127.0.0.1:1"),
                "nowhere",
                Duration::from_millis(200),
                Some(SpoolParts {
                    spool: Arc::clone(&spool),
                    max_bytes: 1 << 20,
                    quarantine,
                }),
                Arc::clone(&metrics),
            )
            .expect("producer"),
        );
        assert!(delivery.has_backlog());
        let stop = CancellationToken::new();
        let forwarder = tokio::spawn(Arc::clone(&delivery).forward(stop.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while metrics.spool_read_errors() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the forwarder retried reading"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            delivery.has_backlog(),
            "new reports still queue behind the unread ones"
        );
        assert_eq!(spool.len(), 1, "nothing was dropped");
        stop.cancel();
        forwarder.await.expect("forwarder stops");
    }
}
