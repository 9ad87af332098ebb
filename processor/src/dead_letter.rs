//! The dead-letter topic: messages the processor cannot decode or place,
//! copied as they were with the reason and stage in headers, and rows
//! ClickHouse refused for good (as text, beside where their message is).
//!
//! A send is retried until Kafka takes it or the processor stops: a dead
//! letter is the only copy of why a message was set aside, and the message's
//! offset is stored only once it is sent.

use std::fmt::Display;
use std::time::Duration;

use pipeline::KafkaConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

/// Where in the processor a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The message is not an accepted report, or its payload does not match
    /// its schema.
    Decode,
    /// The report decoded but has no valid place in the tables.
    Place,
    /// The row was made, but ClickHouse refused it for good.
    Write,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Place => "place",
            Stage::Write => "write",
        }
    }
}

/// Why a message was set aside. `reason` is a bounded code; `detail` is the
/// error text, for operators.
#[derive(Debug)]
pub struct DeadLetter {
    pub stage: Stage,
    pub reason: &'static str,
    pub detail: String,
}

impl DeadLetter {
    pub fn new(stage: Stage, reason: &'static str, error: impl Display) -> Self {
        DeadLetter {
            stage,
            reason,
            detail: error.to_string(),
        }
    }
}

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish()
    }
}

impl DeadLetters {
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Result<Self, KafkaError> {
        let producer = Self::producer_config(kafka).create()?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_string(),
        })
    }

    /// The dead-letter producer's settings: acknowledged by every replica,
    /// and the same message limit as the topics, or the copy of a large
    /// message could never be sent.
    pub fn producer_config(kafka: &KafkaConfig) -> rdkafka::ClientConfig {
        kafka.client_config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("delivery.timeout.ms", "30000"),
            (
                "message.max.bytes",
                &pipeline::MAX_MESSAGE_BYTES.to_string(),
            ),
        ])
    }

    /// Copies `message` to the dead-letter topic, retrying until Kafka
    /// acknowledges it; false if `stop` came first (the message was not
    /// set aside and must be read again).
    pub async fn send(
        &self,
        message: &BorrowedMessage<'_>,
        dead: &DeadLetter,
        stop: &CancellationToken,
    ) -> bool {
        let origin = Origin {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
        };
        self.send_until_acked(&origin, message.payload().unwrap_or_default(), dead, stop)
            .await
    }

    /// Sends `payload` as the dead letter of the message at `origin`,
    /// retrying with backoff until Kafka acknowledges it; false if `stop`
    /// came first.
    pub async fn send_until_acked(
        &self,
        origin: &Origin<'_>,
        payload: &[u8],
        dead: &DeadLetter,
        stop: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.send_once(origin, payload, dead).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, topic = %self.topic, "dead letter not sent");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn send_once(
        &self,
        origin: &Origin<'_>,
        payload: &[u8],
        dead: &DeadLetter,
    ) -> Result<(), KafkaError> {
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(dead.reason),
            })
            .insert(Header {
                key: "stage",
                value: Some(dead.stage.as_str()),
            })
            .insert(Header {
                key: "detail",
                value: Some(&dead.detail),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(origin.topic),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(&offset),
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .headers(headers)
            .payload(payload);
        if let Some(key) = origin.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}

/// Where the message a dead letter stands for was read.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
}
