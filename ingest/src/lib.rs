//! The ingest service: the only part of the pipeline that machines talk to.
//!
//! ```text
//!  HTTP(S) ─▶ server (connection limit, header deadline; TLS: tls, whose
//!             certificate files are re-read when they change)
//!       ─▶ api: token → organisation, body (size, encoding, deadline, depth)
//!       ─▶ intake, per report: JSON Schema ─▶ organisation policy ─▶ consent
//!            ─▶ machine id → keyed hash ─▶ rate limits ─▶ recent duplicate?
//!            ─▶ scrub personal data ─▶ AcceptedReport
//!       ─▶ sink: Kafka (acks=all, awaited) or the disk spool (fsync'd)
//!       ─▶ 202 / per-item results; one outcome per report (metrics, and the
//!          outcomes topic for refused ones)
//!  POST /v1/machines/erase ─▶ rights: machine id → keyed hash ─▶ an
//!       ErasureRequest through the same sink, behind the machine's reports
//! ```
//!
//! In: HTTP requests carrying [`schemas::Envelope`] JSON, one or a batch.
//! Out: [`schemas::AcceptedReport`] messages on the reports topic, keyed by
//! the hashed machine id, and [`schemas::erasure::ErasureRequest`]s among
//! them; [`schemas::OutcomeEvent`]s on the outcomes topic;
//! a JSON error with a stable code for everything refused
//! ([`schemas::contract::ErrorBody`]). Nothing refused is written to the
//! reports topic, and nothing is answered "accepted" before Kafka or the
//! spool has it.
//!
//! [`serve`] runs the service on a bound listener until `shutdown` resolves;
//! the binary only reads the configuration and binds.

// What other crates use: the routes and the OpenAPI document (`api`), the
// configuration, token and machine hashing (`auth`, `privacy`), and the two
// settings tests check against. The answers' types are `schemas::contract`.
// `bench` is the per-report path without HTTP, for `bench/instr`.
// The rest is the service's own (the fuzz targets compile `body`, `error`
// and `validate` from their files).
pub mod api;
pub mod auth;
mod batch;
#[doc(hidden)]
pub mod bench;
mod body;
mod budget;
pub mod config;
mod dedup;
mod error;
mod intake;
mod metrics;
mod outcome;
pub mod privacy;
mod ratelimit;
mod reload;
mod rights;
mod server;
mod sink;
mod state;
mod tls;
mod validate;

pub use outcome::SUMMARY_INTERVAL;
pub use sink::producer_config;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Locks a mutex, going on with the data if a panicking thread poisoned it:
/// every value guarded here stays consistent between statements.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("creating kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error("opening the spool: {0}")]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Serves the API on `listener` until `shutdown` resolves. Then readiness
/// turns 503, and after `limits.drain_delay_ms` no new connection is taken;
/// open requests get
/// `limits.shutdown_grace_secs` to finish (each ends in Kafka or the spool);
/// then the producer is flushed and the spool closed.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &config.tls {
        Some(settings) => Some(Arc::new(tls::Tls::load(settings)?)),
        None => None,
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let spool = match &config.spool {
        Some(settings) => Some(open_spool(settings).await?),
        None => None,
    };
    let delivery = Arc::new(sink::Delivery::new(
        &config.kafka,
        &config.topics.reports,
        config.limits.delivery_timeout(),
        spool,
        Arc::clone(&metrics),
    )?);
    let outcomes = outcome::Outcomes::new(
        delivery.producer().clone(),
        &config.topics.outcomes,
        Arc::clone(&metrics),
    );
    let state = Arc::new(state::AppState::new(
        &config,
        Arc::clone(&delivery),
        outcomes,
        metrics,
    )?);

    let background = CancellationToken::new();
    tokio::spawn(create_topics(
        config.clone(),
        Arc::clone(&state),
        background.clone(),
    ));
    let forwarder = tokio::spawn(Arc::clone(&delivery).forward(background.clone()));
    let summaries = Arc::clone(&state);
    let summaries_stop = background.clone();
    tokio::spawn(async move { summaries.outcomes.summarise(summaries_stop).await });
    if let Some(path) = config.source.clone() {
        let interval = Duration::from_millis(config.reload_interval_ms);
        tokio::spawn(reload::watch(
            Arc::clone(&state),
            path,
            interval,
            background.clone(),
        ));
    }

    if let Some(tls) = &tls {
        let interval = Duration::from_millis(config.reload_interval_ms);
        tokio::spawn(Arc::clone(tls).watch(interval, background.clone()));
    }

    let accepting = CancellationToken::new();
    let trigger = accepting.clone();
    let signal_state = Arc::clone(&state);
    let drain_delay = Duration::from_millis(config.limits.drain_delay_ms);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(?drain_delay, "shutdown requested; readiness now 503");
        signal_state.set_not_ready();
        tokio::time::sleep(drain_delay).await;
        trigger.cancel();
    });
    let grace = Duration::from_secs(config.limits.shutdown_grace_secs);
    let limits = server::ServerLimits {
        max_connections: config.limits.max_connections,
        header_read_timeout: Duration::from_millis(config.limits.header_read_timeout_ms),
        grace,
    };
    let router = api::router(Arc::clone(&state));
    server::run(listener, router, limits, tls, accepting).await;

    background.cancel();
    let _ = forwarder.await;
    state.outcomes.publish_summaries();
    if let Err(error) = delivery.flush(grace).await {
        tracing::error!(%error, "kafka producer did not flush");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Opens the spool, and the quarantine in its `quarantine` folder (the
/// spool ignores what is not a segment of its own), each up to
/// `spool.max_bytes`.
async fn open_spool(settings: &config::SpoolSettings) -> Result<sink::SpoolParts, ServeError> {
    let config = spool::SpoolConfig {
        dir: settings.dir.clone(),
        max_bytes: settings.max_bytes,
        segment_bytes: settings.segment_bytes,
    };
    let quarantine = spool::SpoolConfig {
        dir: settings.dir.join("quarantine"),
        ..config.clone()
    };
    let (opened, quarantine) = tokio::task::spawn_blocking(move || {
        Ok::<_, spool::SpoolError>((spool::Spool::open(config)?, spool::Spool::open(quarantine)?))
    })
    .await
    .map_err(|e| spool::SpoolError::Io(std::io::Error::other(e)))??;
    tracing::info!(
        pending = opened.len(),
        quarantined = quarantine.len(),
        "spool opened"
    );
    Ok(sink::SpoolParts {
        spool: Arc::new(opened),
        max_bytes: settings.max_bytes,
        quarantine: Arc::new(quarantine),
    })
}

/// Creates the topics ingest writes to, retrying with backoff while Kafka
/// is down (each failure logged and counted). Until then `/readyz` answers
/// 503; a request that arrives anyway goes to the spool, if there is one.
async fn create_topics(config: Config, state: Arc<state::AppState>, stop: CancellationToken) {
    let topics = [
        config.topics.reports.as_str(),
        config.topics.outcomes.as_str(),
    ];
    let created =
        pipeline::ensure_topics_retrying(&config.kafka, &topics, stop.cancelled(), |_| {
            state.metrics.topic_setup_failure()
        })
        .await;
    if created {
        tracing::info!(brokers = %config.kafka.brokers, "kafka reached; topics ready");
        state.delivery.set_topics_ready();
    }
}
