//! Kafka client settings and topic creation.
//!
//! In: a [`KafkaConfig`] (brokers and extra librdkafka properties) and the
//! topics a service needs. Out: librdkafka client configurations, and topics
//! that exist with the partition count asked for. The broker's automatic topic
//! creation is off; topics exist because a service called [`ensure_topics`].
//!
//! How many copies of each partition a new topic has, and how many must have
//! a write before it is acknowledged (`min.insync.replicas`; every producer
//! here sends with `acks=all`), is decided in one place, [`topic_replication`]:
//! the configured numbers, or else as many replicas as the cluster has
//! brokers, at most three, with two in sync when there are three.
//!
//! One size limit holds for every message: [`MAX_MESSAGE_BYTES`] is the
//! `max.message.bytes` of every topic [`ensure_topics`] creates and the
//! `message.max.bytes` of every producer (ingest's, the processor's
//! dead-letter producer), so that nothing a producer takes is refused by a
//! topic. Whether a failed send is worth retrying is decided in one place,
//! [`refused_for_good`].
//!
//! TLS and SASL are librdkafka's own settings, passed through
//! [`KafkaConfig::properties`] (`security.protocol = "SASL_SSL"`,
//! `ssl.ca.location`, `sasl.mechanisms = "SCRAM-SHA-512"`, `sasl.username`,
//! `sasl.password`, …); librdkafka is built with OpenSSL for them. Any
//! property may be read from an environment variable or a file
//! (`{ env = "NAME" }`, `{ file = "/path" }`, see [`crate::config`]), and
//! those that hold secrets are left out of the configuration's `Debug` output.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

/// The largest message, in bytes, that any producer here sends and any topic
/// here takes: the producers' `message.max.bytes` and the topics'
/// `max.message.bytes`. A report is at most 1 MiB after decompression and a
/// dead letter carries one message; 11 MiB leaves room for both and for a
/// record batch's framing.
pub const MAX_MESSAGE_BYTES: usize = 11 * 1024 * 1024;

/// Whether Kafka refused a message for good: sending the same message again
/// can never succeed (it is too large for the topic, or the broker found it
/// invalid), so it must be set aside, not retried. Everything else (timeouts,
/// brokers down, leaders moving, topics not created yet) is transient.
pub fn refused_for_good(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::BadMessage
    )
}

/// Where the brokers are and how to talk to them.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Partitions of topics this service creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics this service creates; absent: chosen
    /// from the broker count by [`topic_replication`].
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas` of topics this service creates; absent: chosen
    /// from the replication factor by [`topic_replication`].
    #[serde(default)]
    pub min_insync_replicas: Option<i32>,
    /// Extra librdkafka properties (security settings and the like), applied
    /// last so they override the service's own defaults. Each value may be a
    /// secret from the environment or a file (`crate::config::secret`), as
    /// `sasl.password` should be.
    #[serde(default, deserialize_with = "crate::config::secret_values")]
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret(key) { "<redacted>" } else { value };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("properties", &properties)
            .finish()
    }
}

/// Whether a librdkafka property holds a secret: a password, a client
/// secret, or a private key given inline.
fn is_secret(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key == "ssl.key.pem"
}

fn default_partitions() -> i32 {
    4
}

impl KafkaConfig {
    /// Loopback defaults for local runs and tests.
    pub fn local(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            partitions: default_partitions(),
            replication_factor: None,
            min_insync_replicas: None,
            properties: BTreeMap::new(),
        }
    }

    /// A client configuration: the brokers, then `defaults`, then the
    /// operator's extra properties.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        // librdkafka's own log goes to tracing; without this its level would
        // follow the `log` crate's, which nothing here sets.
        config.set_log_level(RDKafkaLogLevel::Info);
        config.set("bootstrap.servers", &self.brokers);
        // Reconnect within a second of a broker's return (librdkafka's
        // default backoff grows to 10 s), so that a restarted broker is
        // used again, and group sessions renewed, at once.
        config.set("reconnect.backoff.max.ms", "1000");
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        // librdkafka's `debug` contexts log at level 7, which the level set
        // above would hide: an operator who asks for them sees them.
        if self.properties.contains_key("debug") {
            config.set_log_level(RDKafkaLogLevel::Debug);
        }
        config
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("kafka admin client: {0}")]
    Client(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "topic replication: min_insync_replicas {min_insync_replicas} is not between 1 and \
         replication_factor {replication_factor}"
    )]
    Replication {
        replication_factor: i32,
        min_insync_replicas: i32,
    },
}

/// How the partitions of a new topic are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Copies of each partition.
    pub factor: i32,
    /// Copies that must have a write before an `acks=all` producer is told
    /// it is stored: with fewer in sync, the partition refuses writes
    /// (`NOT_ENOUGH_REPLICAS`, which the producers retry) rather than
    /// acknowledge one that a single broker's loss would take away.
    pub min_insync: i32,
}

/// The replication of new topics: `replication_factor` and
/// `min_insync_replicas` as configured, or else one replica per broker the
/// cluster lists (`brokers`), at most three, and a majority of them in sync
/// but never all (1 of 1, 1 of 2, 2 of 3, 3 of 5): one broker may then stop
/// without refusing writes. A factor larger than the broker count is kept,
/// and Kafka refuses it until enough brokers are up, so that a service
/// started during a rolling restart does not make topics with fewer copies
/// than configured; production configurations therefore name both numbers.
pub fn topic_replication(
    replication_factor: Option<i32>,
    min_insync_replicas: Option<i32>,
    brokers: usize,
) -> Result<Replication, TopicError> {
    let factor = replication_factor
        .unwrap_or_else(|| i32::try_from(brokers).unwrap_or(i32::MAX).clamp(1, 3));
    let min_insync = min_insync_replicas.unwrap_or((factor - 1).min(factor / 2 + 1).max(1));
    if factor < 1 || min_insync < 1 || min_insync > factor {
        return Err(TopicError::Replication {
            replication_factor: factor,
            min_insync_replicas: min_insync,
        });
    }
    Ok(Replication { factor, min_insync })
}

/// Creates each topic that does not exist yet, with `max.message.bytes` set
/// to [`MAX_MESSAGE_BYTES`] and the replication of [`topic_replication`].
/// Topics that exist are left as they are.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[&str]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config(&[]).create()?;
    let replication = match config.replication_factor {
        // Both configured: no need to ask the cluster how big it is.
        Some(_) if config.min_insync_replicas.is_some() => {
            topic_replication(config.replication_factor, config.min_insync_replicas, 0)?
        }
        _ => {
            let brokers = broker_count(config).await?;
            topic_replication(
                config.replication_factor,
                config.min_insync_replicas,
                brokers,
            )?
        }
    };
    let max_message_bytes = MAX_MESSAGE_BYTES.to_string();
    let min_insync = replication.min_insync.to_string();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(replication.factor),
            )
            .set("max.message.bytes", &max_message_bytes)
            .set("min.insync.replicas", &min_insync)
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(15)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(
                %topic,
                replication_factor = replication.factor,
                min_insync_replicas = replication.min_insync,
                "created topic"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, code }),
        }
    }
    Ok(())
}

/// How many brokers the cluster's metadata lists. librdkafka's metadata
/// call blocks, so it runs on a thread of its own, which a caller that stops
/// waiting (a service shutting down) need not wait for either.
async fn broker_count(config: &KafkaConfig) -> Result<usize, TopicError> {
    let client_config = config.client_config(&[]);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let count = client_config
            .create::<AdminClient<DefaultClientContext>>()
            .and_then(|admin| {
                let metadata = admin
                    .inner()
                    .fetch_metadata(None, Duration::from_secs(15))?;
                Ok(metadata.brokers().len())
            });
        let _ = sender.send(count);
    });
    Ok(receiver.await.map_err(|_| KafkaError::Canceled)??)
}

/// [`ensure_topics`], again and again with backoff (200 ms doubling to
/// 10 s) until it succeeds or `stop` resolves, so that a service started
/// while Kafka is down waits for it instead of exiting. Each failure is
/// logged and passed to `on_failure`. Returns whether the topics exist.
pub async fn ensure_topics_retrying(
    config: &KafkaConfig,
    topics: &[&str],
    stop: impl Future<Output = ()>,
    mut on_failure: impl FnMut(&TopicError),
) -> bool {
    let mut stop = std::pin::pin!(stop);
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1u32;
    loop {
        let result = tokio::select! {
            () = &mut stop => return false,
            result = ensure_topics(config, topics) => result,
        };
        match result {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(attempt, ?topics, "kafka reached; topics ready");
                }
                return true;
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    attempt,
                    retry_in = ?backoff,
                    brokers = %config.brokers,
                    "waiting for kafka: topics not created yet"
                );
                on_failure(&error);
            }
        }
        tokio::select! {
            () = &mut stop => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_kafka_can_never_take_is_refused_for_good() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::MessageBatchTooLarge,
            RDKafkaErrorCode::InvalidRecord,
        ] {
            assert!(
                refused_for_good(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert!(
                !refused_for_good(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        assert!(!refused_for_good(&KafkaError::Canceled));
    }

    #[test]
    fn replication_follows_the_broker_count_up_to_three() {
        let chosen = |brokers| topic_replication(None, None, brokers).unwrap();
        let pairs: Vec<(i32, i32)> = [0, 1, 2, 3, 4, 9]
            .into_iter()
            .map(chosen)
            .map(|r| (r.factor, r.min_insync))
            .collect();
        // (factor, min.insync.replicas) for 0, 1, 2, 3, 4 and 9 brokers.
        assert_eq!(pairs, [(1, 1), (1, 1), (2, 1), (3, 2), (3, 2), (3, 2)]);
    }

    #[test]
    fn configured_replication_wins_over_the_broker_count() {
        let r = topic_replication(Some(3), None, 1).unwrap();
        assert_eq!(
            (r.factor, r.min_insync),
            (3, 2),
            "kept for Kafka to refuse until 3 are up"
        );
        let r = topic_replication(Some(5), None, 5).unwrap();
        assert_eq!((r.factor, r.min_insync), (5, 3));
        let r = topic_replication(None, Some(1), 3).unwrap();
        assert_eq!((r.factor, r.min_insync), (3, 1));
        let r = topic_replication(Some(2), Some(2), 0).unwrap();
        assert_eq!((r.factor, r.min_insync), (2, 2));
    }

    #[test]
    fn impossible_replication_is_refused() {
        for (factor, min_insync) in [(Some(3), Some(4)), (Some(0), None), (None, Some(0))] {
            let refused = topic_replication(factor, min_insync, 3);
            assert!(
                matches!(refused, Err(TopicError::Replication { .. })),
                "{factor:?} {min_insync:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn replication_is_read_from_the_configuration() {
        let config: KafkaConfig = toml::from_str(
            "brokers = \"a:9092,b:9092,c:9092\"\nreplication_factor = 3\nmin_insync_replicas = 2\n",
        )
        .unwrap();
        assert_eq!(
            (config.replication_factor, config.min_insync_replicas),
            (Some(3), Some(2))
        );
        let config: KafkaConfig = toml::from_str("brokers = \"a:9092\"\n").unwrap();
        assert_eq!(
            (config.replication_factor, config.min_insync_replicas),
            (None, None)
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut config = KafkaConfig::local("127.0.0.1:9094");
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.username", "telemetry"),
            ("sasl.password", "hunter2-sasl"),
            ("ssl.key.password", "hunter2-key"),
            ("sasl.oauthbearer.client.secret", "hunter2-oauth"),
        ] {
            config.properties.insert(key.into(), value.into());
        }
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("SASL_SSL") && shown.contains("telemetry"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn retrying_stops_when_asked() {
        // Nothing listens on port 1: every attempt fails until stopped.
        let config = KafkaConfig::local("127.0.0.1:1");
        let stop = tokio::time::sleep(Duration::from_millis(100));
        let created = ensure_topics_retrying(&config, &["never"], stop, |_| {}).await;
        assert!(!created);
    }
}
