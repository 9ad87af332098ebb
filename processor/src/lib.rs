//! The processor: turns the reports and outcomes topics into exact,
//! analyst-ready ClickHouse tables.
//!
//! ```text
//!  Kafka reports + outcomes ─▶ route: decode, group crashes (bucket,
//!        │                      signature), cluster feature requests
//!        │                   ─▶ batch ═▶ writer thread (one batch in flight, the
//!        │                      next decoded meanwhile): drop reports already
//!        │                      stored ─▶ INSERT ─▶ store offsets ─▶ commit
//!        │                      (a row refused for good: split out ─┐)
//!        ├─▶ erasure request: closes its batch; after the batch, the
//!        │   machine's rows are deleted everywhere (erase) ─▶ `erasures`
//!        └─▶ undecodable ───────────────────────▶ dead-letter topic + processing_errors
//!  raw tables ─▶ materialised views ─▶ exact aggregates (uniqExact of keys)
//!  the group's lag per partition, read from the brokers ─▶ /metrics
//! ```
//!
//! In: [`schemas::AcceptedReport`] messages from the reports topic and
//! [`schemas::OutcomeEvent`]s from the outcomes topic, as one member of a
//! consumer group. Out: the tables of `schemas/migrations/` (applied by
//! `telemetry-admin migrate`; the processor waits, not ready, on a database
//! that lacks one): raw `crash_reports`, `feature_requests`, `feedback`,
//! `heartbeats`, `outcomes`, `processing_errors`; the aggregate views
//! `crash_signatures`, `crash_daily`, `crash_free_daily`,
//! `feature_request_clusters`, `feedback_daily`; `crash_regressions`;
//! `erasures`; the clustering index's `feature_request_signatures` and
//! `cluster_merges` (read back at start and by every instance, see
//! `index`); and dead letters.
//!
//! The jobs over these tables (the roadmap report, crash regressions,
//! retention, the analysts' cookbook) are the `warehouse` crate's, run by
//! `telemetry-admin`: this crate only moves the stream into the tables.
//!
//! [`run`] connects, checks the migrations are applied and makes sure the
//! topics exist (waiting with backoff while ClickHouse or Kafka is down or
//! the database is behind, `/readyz` at 503 meanwhile), then consumes until `shutdown` resolves; the binary only
//! reads the configuration.

mod batch;
// The per-message path without Kafka or ClickHouse, for `bench/instr`.
#[doc(hidden)]
pub mod bench;
pub mod config;
mod consumer;
mod dead_letter;
mod erase;
mod index;
mod lag;
mod metrics;
mod route;
mod rows;
mod store;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use dead_letter::DeadLetters;
pub use metrics::Metrics;
pub use store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Consume(#[from] consumer::ConsumeError),
    #[error("clustering configuration: {0}")]
    Clustering(#[from] clustering::ConfigError),
}

/// Connects to ClickHouse (waiting while it is down or lacks a migration),
/// makes sure the topics exist, and consumes until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_metrics(config, shutdown, Arc::new(Metrics::default())).await
}

/// [`run`], counting into `metrics`.
pub async fn run_with_metrics(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: Arc<Metrics>,
) -> Result<(), RunError> {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    if let Some(addr) = config.metrics_listen {
        let observed: Arc<dyn pipeline::health::Observed> = metrics.clone();
        tokio::spawn(pipeline::health::serve(addr, observed, stop.clone()));
    }

    // First, so that a missing model is said at once, not after the wait
    // for ClickHouse and Kafka.
    let clusterer = clustering::Clusterer::new(config.clustering.clone())?;
    tracing::info!(
        method = ?clusterer.method(),
        load_ms = clusterer.load_time().as_millis() as u64,
        model_bytes = clusterer.model_bytes(),
        "clusterer ready"
    );
    let Some(store) = connect(&config, &stop).await? else {
        return Ok(());
    };
    let backoff = Backoff::of(&config);
    // Refused, not applied: a database behind this build is waited on, with
    // readiness off, until `telemetry-admin migrate` has run.
    let migrated = until_done("clickhouse migrations", &backoff, &stop, &metrics, || {
        store.check_migrations()
    })
    .await;
    if migrated.is_none() {
        return Ok(());
    }
    let topics = [
        config.topics.reports.as_str(),
        config.topics.outcomes.as_str(),
        config.topics.dead_letters.as_str(),
    ];
    let retried = |_: &pipeline::TopicError| Metrics::add(&metrics.startup_retries, 1);
    if !pipeline::ensure_topics_retrying(&config.kafka, &topics, stop.cancelled(), retried).await {
        return Ok(());
    }
    let mut enricher = route::Enricher::new(config.grouping.clone(), clusterer);
    let loaded = index::refresh(&store, &mut enricher, None).await?;
    Metrics::add(&metrics.cluster_signatures_loaded, loaded as u64);
    tracing::info!(signatures = loaded, "clustering index loaded");

    let background = stop.child_token();
    tokio::spawn(lag::watch(
        config.kafka.clone(),
        config.group_id.clone(),
        vec![
            config.topics.reports.clone(),
            config.topics.outcomes.clone(),
        ],
        Duration::from_millis(config.batch.lag_interval_ms.max(100)),
        Arc::clone(&metrics),
        background.clone(),
    ));
    let worker = consumer::Worker::new(config, store, enricher, Arc::clone(&metrics), stop)?;
    metrics.set_ready(true);
    let result = worker.run().await;
    metrics.set_ready(false);
    background.cancel();
    Ok(result?)
}

/// Pauses between tries of a start-up step, doubling up to a limit.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn of(config: &Config) -> Self {
        Backoff {
            min: Duration::from_millis(config.batch.min_backoff_ms),
            max: Duration::from_millis(config.batch.max_backoff_ms),
        }
    }
}

/// Runs `step` until it succeeds, logging each failure and waiting with
/// backoff between tries: ClickHouse failing between connecting and
/// migrating is waited for, never a reason to exit (Kafka's topics are
/// waited for the same way, by [`pipeline::ensure_topics_retrying`]).
/// `None` if stopped first. Readiness stays off meanwhile.
async fn until_done<T, E, F, Fut>(
    what: &'static str,
    backoff: &Backoff,
    stop: &CancellationToken,
    metrics: &Metrics,
    mut step: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = backoff.min;
    loop {
        match step().await {
            Ok(value) => return Some(value),
            Err(error) => {
                Metrics::add(&metrics.startup_retries, 1);
                tracing::warn!(step = what, %error, retry_in = ?pause, "start-up step failed; retrying");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(backoff.max);
    }
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
            Err(StoreError::ClickHouse(error)) => {
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
