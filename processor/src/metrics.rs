//! Every metric the processor exposes, named and described in one place,
//! served as Prometheus text on `metrics_listen` (with `/healthz`) when set.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// Counters, each a plain atomic: the label sets are fixed, so each labelled
/// series is a field of its own.
#[derive(Debug, Default)]
pub struct Metrics {
    pub rows_inserted: AtomicU64,
    pub duplicates_skipped: AtomicU64,
    pub aggregates_refed: AtomicU64,
    pub dead_letters: AtomicU64,
    pub batches: AtomicU64,
    pub insert_failures: AtomicU64,
    pub offset_resets: AtomicU64,
    pub partitions_revoked: AtomicU64,
    pub partitions_assigned: AtomicU64,
    pub retention_partitions_dropped: AtomicU64,
    pub scheduled_runs: AtomicU64,
    pub scheduled_failures: AtomicU64,
    pub cluster_signatures_loaded: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let series: [(&str, &str, &AtomicU64); 13] = [
            (
                "processor_rows_inserted_total",
                "Rows written to ClickHouse, all tables.",
                &self.rows_inserted,
            ),
            (
                "processor_duplicates_skipped_total",
                "Reports and events not written again because their id was already stored.",
                &self.duplicates_skipped,
            ),
            (
                "processor_aggregates_refed_total",
                "Stored reports whose aggregate rows were fed again (idempotently) when they arrived again.",
                &self.aggregates_refed,
            ),
            (
                "processor_dead_letters_total",
                "Messages set aside on the dead-letter topic.",
                &self.dead_letters,
            ),
            ("processor_batches_total", "Batches written.", &self.batches),
            (
                "processor_insert_failures_total",
                "Failed batch inserts (retried with backoff).",
                &self.insert_failures,
            ),
            (
                "processor_offset_resets_total",
                "Partitions whose committed offset was out of range and restarted from the earliest available.",
                &self.offset_resets,
            ),
            (
                "processor_partitions_revoked_total",
                "Partitions taken away by a rebalance.",
                &self.partitions_revoked,
            ),
            (
                "processor_partitions_assigned_total",
                "Partitions given by a rebalance.",
                &self.partitions_assigned,
            ),
            (
                "processor_retention_partitions_dropped_total",
                "Table partitions dropped for age.",
                &self.retention_partitions_dropped,
            ),
            (
                "processor_scheduled_runs_total",
                "Scheduled jobs (retention, regressions) that completed.",
                &self.scheduled_runs,
            ),
            (
                "processor_scheduled_failures_total",
                "Scheduled jobs that failed.",
                &self.scheduled_failures,
            ),
            (
                "processor_cluster_signatures_loaded_total",
                "Stored request signatures added to the clustering index (at start, and from other instances).",
                &self.cluster_signatures_loaded,
            ),
        ];
        let mut out = String::new();
        for (name, help, counter) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                Self::get(counter)
            );
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until `stop`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, stop: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move { metrics.render() }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_rendered_with_help_and_type() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.rows_inserted, 3);
        let text = metrics.render();
        assert!(text.contains("processor_rows_inserted_total 3"));
        assert_eq!(text.matches("# TYPE ").count(), 13);
        assert_eq!(text.matches("# HELP ").count(), 13);
    }
}
