//! The processor: turns the reports topic into ClickHouse tables.
//!
//! ```text
//!  Kafka reports topic ─▶ decode (AcceptedReport + typed payload)
//!        ├─▶ batch of rows per table ─▶ INSERT ─▶ store offsets ─▶ commit
//!        └─▶ undecodable ─▶ dead-letter topic (reason, stage in headers)
//! ```
//!
//! In: [`schemas::AcceptedReport`] messages from the reports topic, as one
//! member of a consumer group. Out: rows in the raw tables `crash_reports`,
//! `feature_requests`, `feedback` and `heartbeats` (created by the migrations
//! in `schemas/migrations/`, applied at start), and dead letters.
//!
//! [`run`] connects, migrates and consumes until `shutdown` resolves; the
//! binary only reads the configuration.

pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod migrate;
pub mod rows;
pub mod store;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Topics(#[from] pipeline::TopicError),
    #[error(transparent)]
    Consume(#[from] consumer::ConsumeError),
}

/// Connects to ClickHouse (waiting while it is down), applies migrations,
/// makes sure the topics exist, and consumes until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });

    let Some(store) = connect(&config, &stop).await? else {
        return Ok(());
    };
    store.migrate().await?;
    pipeline::ensure_topics(
        &config.kafka,
        &[&config.topics.reports, &config.topics.dead_letters],
    )
    .await?;
    consumer::Worker::new(config, store, stop)?.run().await?;
    Ok(())
}

/// Retries the first connection with backoff while ClickHouse is down;
/// `None` if stopped first. A misconfiguration that no retry can mend (an
/// unreadable version) fails at once.
async fn connect(config: &Config, stop: &CancellationToken) -> Result<Option<Store>, RunError> {
    let mut backoff = Duration::from_millis(config.batch.min_backoff_ms);
    let max_backoff = Duration::from_millis(config.batch.max_backoff_ms);
    loop {
        match Store::connect(&config.clickhouse).await {
            Ok(store) => return Ok(Some(store)),
            Err(store::StoreError::ClickHouse(error)) => {
                tracing::warn!(%error, retry_in = ?backoff, "clickhouse not reachable");
            }
            Err(other) => return Err(other.into()),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}
