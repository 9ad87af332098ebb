//! What `telemetry-admin serve` counts, kept by `prometheus-client` under
//! the `admin_` prefix and served with `/healthz` and `/readyz` on
//! `--metrics-listen` by [`pipeline::health::serve`].

use std::sync::atomic::{AtomicBool, Ordering};

use pipeline::health::Observed;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The scheduled job a series is about: `retention` or `crash_regressions`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    /// `admin_scheduled_runs_total{job}`.
    runs: Family<JobLabels, Counter>,
    /// `admin_scheduled_failures_total{job}`.
    failures: Family<JobLabels, Counter>,
    /// `admin_retention_partitions_dropped_total`.
    pub partitions_dropped: Counter,
    ready: AtomicBool,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("admin");
        let metrics = Metrics {
            runs: Family::default(),
            failures: Family::default(),
            partitions_dropped: Counter::default(),
            ready: AtomicBool::default(),
            registry: Registry::default(),
        };
        registry.register(
            "scheduled_runs",
            "Scheduled job runs that completed",
            metrics.runs.clone(),
        );
        registry.register(
            "scheduled_failures",
            "Scheduled job runs that failed (retried at the next interval)",
            metrics.failures.clone(),
        );
        registry.register(
            "retention_partitions_dropped",
            "Table partitions dropped for age",
            metrics.partitions_dropped.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts one run of `job`, completed or failed.
    pub fn ran(&self, job: &'static str, ok: bool) {
        let family = if ok { &self.runs } else { &self.failures };
        family.get_or_create(&JobLabels { job }).inc();
    }

    /// Runs of `job` so far: (completed, failed).
    pub fn runs(&self, job: &'static str) -> (u64, u64) {
        let labels = JobLabels { job };
        (
            self.runs.get_or_create(&labels).get(),
            self.failures.get_or_create(&labels).get(),
        )
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

impl Observed for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn not_ready_reason(&self) -> &'static str {
        "starting"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_counted_per_job_under_the_admin_prefix() {
        let metrics = Metrics::default();
        metrics.ran("retention", true);
        metrics.ran("retention", true);
        metrics.ran("crash_regressions", false);
        metrics.partitions_dropped.inc_by(3);
        assert_eq!(metrics.runs("retention"), (2, 0));
        assert_eq!(metrics.runs("crash_regressions"), (0, 1));
        let text = metrics.render();
        assert!(
            text.contains("admin_scheduled_runs_total{job=\"retention\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("admin_scheduled_failures_total{job=\"crash_regressions\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("admin_retention_partitions_dropped_total 3\n"),
            "{text}"
        );
        assert!(!text.contains("processor_"), "{text}");
    }
}
