//! Every metric the processor exposes, named and described in one place,
//! served as Prometheus text on `metrics_listen` (with `/healthz`) when set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::batch::TopicPartition;
use crate::lag::PartitionLag;

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
    pub startup_retries: AtomicU64,
    pub erasures: AtomicU64,
    /// Whether the processor consumes: connected, migrated, topics there.
    ready: std::sync::atomic::AtomicBool,
    /// The group's lag per partition at the last look ([`crate::lag`]).
    lag: Mutex<BTreeMap<TopicPartition, PartitionLag>>,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Replaces the lag figures with one look's.
    pub fn set_lag(&self, lag: BTreeMap<TopicPartition, PartitionLag>) {
        *self.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    /// The lag figures of the last look.
    pub fn lag(&self) -> BTreeMap<TopicPartition, PartitionLag> {
        self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The per-partition gauges: lag, the age of the oldest uncommitted
    /// message, and that age's largest value over all partitions.
    fn render_lag(&self, out: &mut String) {
        let lag = self.lag();
        let _ = writeln!(
            out,
            "# HELP processor_partition_lag_messages Messages of the partition after the group's committed offset, as the brokers see it.\n\
             # TYPE processor_partition_lag_messages gauge"
        );
        for ((topic, partition), lag) in &lag {
            let _ = writeln!(
                out,
                "processor_partition_lag_messages{{topic=\"{topic}\",partition=\"{partition}\"}} {}",
                lag.messages
            );
        }
        let _ = writeln!(
            out,
            "# HELP processor_partition_oldest_uncommitted_seconds How long the partition's oldest uncommitted message has existed (0 when none waits).\n\
             # TYPE processor_partition_oldest_uncommitted_seconds gauge"
        );
        for ((topic, partition), lag) in &lag {
            let _ = writeln!(
                out,
                "processor_partition_oldest_uncommitted_seconds{{topic=\"{topic}\",partition=\"{partition}\"}} {:.3}",
                lag.oldest_uncommitted.as_secs_f64()
            );
        }
        let oldest = lag
            .values()
            .map(|l| l.oldest_uncommitted)
            .max()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# HELP processor_oldest_uncommitted_seconds The oldest uncommitted message's age over every partition.\n\
             # TYPE processor_oldest_uncommitted_seconds gauge\n\
             processor_oldest_uncommitted_seconds {:.3}",
            oldest.as_secs_f64()
        );
    }

    pub fn render(&self) -> String {
        let series: [(&str, &str, &AtomicU64); 15] = [
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
                "processor_erasures_total",
                "Machines erased on their operator's request.",
                &self.erasures,
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
            (
                "processor_startup_retries_total",
                "Start-up steps (migrations, Kafka topics) that failed and were tried again.",
                &self.startup_retries,
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
        self.render_lag(&mut out);
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `stop`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, stop: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", {
            let metrics = Arc::clone(&metrics);
            get(move || {
                let ready = metrics.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "starting: waiting for clickhouse or kafka",
                        )
                    }
                }
            })
        })
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
        assert_eq!(text.matches("# TYPE ").count(), 18);
        assert_eq!(text.matches("# HELP ").count(), 18);
    }

    #[test]
    fn lag_is_rendered_per_partition() {
        let metrics = Metrics::default();
        metrics.set_lag(BTreeMap::from([
            (
                ("r".to_string(), 0),
                PartitionLag {
                    messages: 7,
                    oldest_uncommitted: std::time::Duration::from_millis(61_500),
                },
            ),
            (
                ("r".to_string(), 1),
                PartitionLag {
                    messages: 0,
                    oldest_uncommitted: std::time::Duration::ZERO,
                },
            ),
        ]));
        let text = metrics.render();
        assert!(text.contains("processor_partition_lag_messages{topic=\"r\",partition=\"0\"} 7\n"));
        assert!(text.contains("processor_partition_lag_messages{topic=\"r\",partition=\"1\"} 0\n"));
        assert!(text.contains(
            "processor_partition_oldest_uncommitted_seconds{topic=\"r\",partition=\"0\"} 61.500\n"
        ));
        assert!(text.contains("processor_oldest_uncommitted_seconds 61.500\n"));
    }
}
