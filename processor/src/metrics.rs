//! Every metric the processor exposes, named and described in one place,
//! kept by `prometheus-client` and served as Prometheus text (0.0.4) on
//! `metrics_listen` (with `/healthz` and `/readyz`, by
//! [`pipeline::health::serve`]) when set.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pipeline::health::Observed;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::batch::TopicPartition;
use crate::lag::PartitionLag;

/// Declares the counters once: each is a public field, registered under
/// `processor_<field>_total` with its help text.
macro_rules! counters {
    ($($field:ident: $help:literal,)*) => {
        /// Every counter, plus the readiness flag and the lag gauges.
        #[derive(Debug)]
        pub struct Metrics {
            $(pub $field: Counter,)*
            /// Whether the processor consumes: connected, migrated, topics there.
            ready: AtomicBool,
            /// The group's lag per partition at the last look ([`crate::lag`]).
            lag: Mutex<BTreeMap<TopicPartition, PartitionLag>>,
            lag_gauges: LagGauges,
            registry: Registry,
        }

        impl Default for Metrics {
            fn default() -> Self {
                let mut registry = Registry::with_prefix("processor");
                $(
                    let $field = Counter::default();
                    registry.register(stringify!($field), $help, $field.clone());
                )*
                Self {
                    $($field,)*
                    ready: AtomicBool::default(),
                    lag: Mutex::default(),
                    lag_gauges: LagGauges::register(&mut registry),
                    registry,
                }
            }
        }
    };
}

counters! {
    rows_inserted: "Rows written to ClickHouse, all tables",
    duplicates_skipped: "Reports and events not written again because their id was already stored",
    aggregates_refed: "Stored reports whose aggregate rows were fed again (idempotently) when they arrived again",
    erasures: "Machines erased on their operator's request",
    erasures_unconfirmed: "Erasures whose deletions were queued but not done within batch.erasure_wait_ms (not recorded)",
    dead_letters: "Messages set aside on the dead-letter topic",
    batches: "Batches written",
    insert_failures: "Failed batch inserts (retried with backoff)",
    clickhouse_replica_moves: "Moves to the next ClickHouse server of clickhouse.fallback_urls after a failed write",
    offset_resets: "Partitions whose committed offset was out of range and restarted from the earliest available",
    partitions_revoked: "Partitions taken away by a rebalance",
    partitions_assigned: "Partitions given by a rebalance",
    cluster_signatures_loaded: "Stored request signatures added to the clustering index (at start, and from other instances)",
    startup_retries: "Start-up steps (migrations, Kafka topics) that failed and were tried again",
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

impl From<&TopicPartition> for PartitionLabels {
    fn from((topic, partition): &TopicPartition) -> Self {
        Self {
            topic: topic.clone(),
            partition: *partition,
        }
    }
}

type Seconds = Gauge<f64, AtomicU64>;

/// The per-partition gauges of [`crate::lag`].
#[derive(Debug)]
struct LagGauges {
    messages: Family<PartitionLabels, Gauge>,
    oldest: Family<PartitionLabels, Seconds>,
    oldest_overall: Seconds,
}

impl LagGauges {
    fn register(registry: &mut Registry) -> Self {
        let gauges = Self {
            messages: Family::default(),
            oldest: Family::default(),
            oldest_overall: Seconds::default(),
        };
        registry.register(
            "partition_lag_messages",
            "Messages of the partition after the group's committed offset, as the brokers see it",
            gauges.messages.clone(),
        );
        registry.register(
            "partition_oldest_uncommitted_seconds",
            "How long the partition's oldest uncommitted message has existed (0 when none waits)",
            gauges.oldest.clone(),
        );
        registry.register(
            "oldest_uncommitted_seconds",
            "The oldest uncommitted message's age over every partition",
            gauges.oldest_overall.clone(),
        );
        gauges
    }
}

impl Metrics {
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    pub fn get(counter: &Counter) -> u64 {
        counter.get()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Replaces the lag figures with one look's; partitions no longer
    /// seen leave the gauges.
    pub fn set_lag(&self, lag: BTreeMap<TopicPartition, PartitionLag>) {
        let mut last = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        let gauges = &self.lag_gauges;
        for gone in last.keys().filter(|p| !lag.contains_key(*p)) {
            gauges.messages.remove(&gone.into());
            gauges.oldest.remove(&gone.into());
        }
        for (partition, figures) in &lag {
            let labels = PartitionLabels::from(partition);
            gauges.messages.get_or_create(&labels).set(figures.messages);
            gauges
                .oldest
                .get_or_create(&labels)
                .set(figures.oldest_uncommitted.as_secs_f64());
        }
        let oldest = lag
            .values()
            .map(|l| l.oldest_uncommitted)
            .max()
            .unwrap_or_default();
        gauges.oldest_overall.set(oldest.as_secs_f64());
        *last = lag;
    }

    /// The lag figures of the last look.
    pub fn lag(&self) -> BTreeMap<TopicPartition, PartitionLag> {
        self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Observed for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn is_ready(&self) -> bool {
        Metrics::is_ready(self)
    }

    fn not_ready_reason(&self) -> &'static str {
        "starting: waiting for clickhouse (and its migrations) or kafka"
    }
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
        // 14 counters and the overall lag gauge; the per-partition gauges
        // show once a partition is seen (`lag_is_rendered_per_partition`).
        assert_eq!(text.matches("# TYPE ").count(), 15);
        assert_eq!(text.matches("# HELP ").count(), 15);
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
            "processor_partition_oldest_uncommitted_seconds{topic=\"r\",partition=\"0\"} 61.5\n"
        ));
        assert!(text.contains("processor_oldest_uncommitted_seconds 61.5\n"));
        // A partition no longer seen leaves the gauges.
        metrics.set_lag(BTreeMap::from([(
            ("r".to_string(), 1),
            PartitionLag {
                messages: 2,
                oldest_uncommitted: std::time::Duration::from_secs(1),
            },
        )]));
        let text = metrics.render();
        assert!(!text.contains("partition=\"0\""), "{text}");
        assert!(text.contains("processor_partition_lag_messages{topic=\"r\",partition=\"1\"} 2\n"));
        assert!(text.contains("processor_oldest_uncommitted_seconds 1.0\n"));
    }
}
