//! The dead-letter topic: messages the processor cannot decode or place,
//! copied as they were with the reason and stage in headers.

use std::fmt::Display;
use std::time::Duration;

use pipeline::KafkaConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// Where in the processor a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The message is not an accepted report, or its payload does not match
    /// its schema.
    Decode,
    /// The report decoded but has no valid place in the tables.
    Place,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Place => "place",
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
        let producer = kafka
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("delivery.timeout.ms", "30000"),
            ])
            .create()?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Copies `message` to the dead-letter topic and waits for the ack.
    pub async fn send(
        &self,
        message: &BorrowedMessage<'_>,
        dead: &DeadLetter,
    ) -> Result<(), KafkaError> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
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
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(&offset),
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}
