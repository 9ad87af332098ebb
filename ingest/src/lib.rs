//! The ingest service: the only part of the pipeline that machines talk to.
//!
//! ```text
//!  POST /v1/reports ─▶ auth (token → organisation) ─▶ parse + JSON Schema
//!        ─▶ consent (machine ∧ organisation) ─▶ machine id → keyed hash
//!        ─▶ Kafka reports topic (acks=all, awaited) ─▶ 202 {"report_id", "status"}
//! ```
//!
//! In: HTTP requests carrying [`schemas::Envelope`] JSON. Out: one
//! [`schemas::AcceptedReport`] message per accepted report on the reports
//! topic, keyed by the hashed machine id; a JSON error with a stable code for
//! everything refused ([`error::ApiError`]). Nothing is written to Kafka for a
//! refused report.
//!
//! [`serve`] runs the service on a bound listener until `shutdown` resolves;
//! the binary only reads the configuration and binds.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod privacy;
pub mod sink;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Topics(#[from] pipeline::TopicError),
    #[error("creating kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` resolves. Then readiness
/// turns 503, in-flight requests get `limits.shutdown_grace_secs` to finish,
/// and the producer is flushed.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    pipeline::ensure_topics(&config.kafka, &[config.topics.reports.as_str()]).await?;
    let sink = sink::ReportSink::new(
        &config.kafka,
        &config.topics.reports,
        config.limits.delivery_timeout(),
    )?;
    let state = Arc::new(api::AppState::new(&config, sink));
    let grace = Duration::from_secs(config.limits.shutdown_grace_secs);

    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let signal_state = Arc::clone(&state);
    let server =
        axum::serve(listener, api::router(Arc::clone(&state))).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining requests");
            signal_state.set_not_ready();
            let _ = stopping_tx.send(true);
        });
    let deadline = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result?,
        () = deadline => tracing::warn!(?grace, "requests still running after the grace period; stopping"),
    }

    if let Err(error) = state.sink().flush(grace).await {
        tracing::error!(%error, "kafka producer did not flush");
    }
    tracing::info!("stopped");
    Ok(())
}
