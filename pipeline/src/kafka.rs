//! Kafka client settings and topic creation.
//!
//! In: a [`KafkaConfig`] (brokers and extra librdkafka properties) and the
//! topics a service needs. Out: librdkafka client configurations, and topics
//! that exist with the partition count asked for. The broker's automatic topic
//! creation is off; topics exist because a service called [`ensure_topics`].

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Partitions of topics this service creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics this service creates.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Extra librdkafka properties (security settings and the like), applied
    /// last so they override the service's own defaults.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_partitions() -> i32 {
    4
}

fn default_replication() -> i32 {
    1
}

impl KafkaConfig {
    /// Loopback defaults for local runs and tests.
    pub fn local(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            partitions: default_partitions(),
            replication_factor: default_replication(),
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
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
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
}

/// Creates each topic that does not exist yet. Topics that exist are left as
/// they are.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[&str]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config(&[]).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(15)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, code }),
        }
    }
    Ok(())
}
