//! Plumbing that ingest and processor share, so that neither repeats it.
//!
//! - [`clickhouse`]: the ClickHouse HTTP client, over `https://` too,
//!   trusting a configured CA file ([`CaFile`]) besides the system's;
//! - [`config`]: how both services read their TOML file, with secrets
//!   from the environment or from files ([`config::secret`]);
//! - [`health`]: `/metrics`, `/healthz` and `/readyz` on a port of their
//!   own, for the services without an HTTP API;
//! - [`kafka`]: librdkafka client settings from one [`KafkaConfig`], and
//!   [`ensure_topics`], the only way topics come to exist (the broker's
//!   automatic creation is off);
//! - [`logging`]: one log style for both binaries (lowercase messages,
//!   structured fields, JSON lines on request);
//! - [`shutdown`]: the signals that start a graceful shutdown.
//!
//! No report logic lives here.

pub mod clickhouse;
pub mod config;
pub mod health;
pub mod kafka;
pub mod logging;
pub mod shutdown;

pub use clickhouse::CaFile;
pub use kafka::{
    KafkaConfig, MAX_MESSAGE_BYTES, TopicError, ensure_topics, ensure_topics_retrying,
    refused_for_good,
};
