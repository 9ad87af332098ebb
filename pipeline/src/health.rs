//! The operations port of a service without an HTTP API of its own (the
//! processor, `telemetry-admin serve`): `/metrics` in Prometheus' text
//! format (0.0.4), `/healthz` (the process answers) and `/readyz` (200 once
//! [`Observed::is_ready`], else 503 with the reason). Ingest serves the same
//! paths on its API port instead.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What a service shows on its operations port.
pub trait Observed: Send + Sync + 'static {
    /// The registry its metrics live in.
    fn registry(&self) -> &Registry;
    /// Whether it does its work now.
    fn is_ready(&self) -> bool;
    /// What `/readyz` says while it is not ready.
    fn not_ready_reason(&self) -> &'static str;

    /// The text served on `/metrics`.
    fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, self.registry());
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `stop`. A
/// port that cannot be bound is logged, not fatal: the service's work goes
/// on without it.
pub async fn serve(addr: SocketAddr, observed: Arc<dyn Observed>, stop: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", {
            let observed = Arc::clone(&observed);
            get(move || {
                let answer = if observed.is_ready() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, observed.not_ready_reason())
                };
                async move { answer }
            })
        })
        .route(
            "/metrics",
            get(move || {
                let text = observed.render();
                async move {
                    (
                        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
                        text,
                    )
                }
            }),
        );
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, %addr, "cannot serve metrics");
            return;
        }
    };
    tracing::info!(%addr, "serving metrics");
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
}
