//! Writes a backlog of accepted reports straight to a Kafka topic, as ingest
//! would have, so the processor's throughput can be measured on its own.

use std::time::Instant;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::Envelope;

use crate::reports::{self, Rng};

/// Produces `count` distinct crash reports to `topic`; returns the seconds
/// it took.
pub async fn write(brokers: &str, topic: &str, count: u64) -> anyhow::Result<f64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    pipeline::ensure_topics(&pipeline::KafkaConfig::local(brokers), &[topic]).await?;
    let mut rng = Rng::new(9);
    let start = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..count {
        let mut body;
        loop {
            body = reports::with_fresh_id(&reports::report(i % 5_000, &mut rng));
            if body.windows(9).any(|w| w == b"\"crash/1\"") {
                break;
            }
        }
        let sent: Envelope = serde_json::from_slice(&body)?;
        let schema = sent.schema.parse()?;
        let report = sent.accept(
            schema,
            ["grid", "water", "rail"][(i % 3) as usize].to_string(),
            format!("{:032x}", i % 5_000),
            time::OffsetDateTime::now_utc(),
        );
        let value = serde_json::to_vec(&report)?;
        let key = report.machine_hash.clone();
        let delivery = producer
            .send_result(FutureRecord::to(topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)?;
        pending.push(delivery);
        if pending.len() >= 10_000 {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(start.elapsed().as_secs_f64())
}
