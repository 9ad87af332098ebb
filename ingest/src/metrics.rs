//! Every metric ingest exposes on `GET /metrics`, named and described in one
//! place, in Prometheus' text format. Labels are bounded: outcomes, error
//! codes, report kinds and route names are fixed sets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use schemas::Outcome;

/// Upper bounds of the request-duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Gauges read when `/metrics` is rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub spool_records: u64,
    pub spool_bytes: u64,
    pub quarantine_records: u64,
    pub in_flight: u64,
    pub bytes_in_flight: u64,
    /// 1 once Kafka was reached and the topics exist, else 0.
    pub kafka_ready: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    reports: Mutex<BTreeMap<(Outcome, &'static str, &'static str), u64>>,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    reloads: Mutex<BTreeMap<&'static str, u64>>,
    kafka_failures: AtomicU64,
    forwarded: AtomicU64,
    outcome_events_failed: AtomicU64,
    spool_read_errors: AtomicU64,
    quarantined: AtomicU64,
    topic_setup_failures: AtomicU64,
}

impl Metrics {
    /// One report ended in `outcome`; `reason` is the error code (empty for
    /// kept reports), `kind` the report type or `unknown`.
    pub fn report(&self, outcome: Outcome, reason: &'static str, kind: &'static str) {
        *lock(&self.reports)
            .entry((outcome, reason, kind))
            .or_default() += 1;
    }

    /// One HTTP request answered.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        *lock(&self.requests).entry((route, status)).or_default() += 1;
        lock(&self.durations)
            .entry(route)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    pub fn reload(&self, result: &'static str) {
        *lock(&self.reloads).entry(result).or_default() += 1;
    }

    pub fn kafka_failure(&self) {
        self.kafka_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn forwarded(&self, records: u64) {
        self.forwarded.fetch_add(records, Ordering::Relaxed);
    }

    pub fn outcome_event_failed(&self) {
        self.outcome_events_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn spool_read_error(&self) {
        self.spool_read_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn spool_read_errors(&self) -> u64 {
        self.spool_read_errors.load(Ordering::Relaxed)
    }

    pub fn quarantined(&self) {
        self.quarantined.fetch_add(1, Ordering::Relaxed);
    }

    pub fn topic_setup_failure(&self) {
        self.topic_setup_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// How many reports ended in `outcome`, over all reasons and kinds.
    pub fn reports_with(&self, outcome: Outcome) -> u64 {
        lock(&self.reports)
            .iter()
            .filter(|((o, _, _), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "ingest_reports_total",
            "counter",
            "Reports seen, by the one outcome each ended in.",
        );
        for ((outcome, reason, kind), n) in lock(&self.reports).iter() {
            let _ = writeln!(
                out,
                "ingest_reports_total{{outcome=\"{}\",reason=\"{reason}\",kind=\"{kind}\"}} {n}",
                outcome.as_str()
            );
        }
        header(
            &mut out,
            "ingest_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "ingest_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            &mut out,
            "ingest_request_duration_seconds",
            "histogram",
            "Time from request to response, by route.",
        );
        for (route, h) in lock(&self.durations).iter() {
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "ingest_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "ingest_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 ingest_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 ingest_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        header(
            &mut out,
            "ingest_config_reloads_total",
            "counter",
            "Configuration reloads, by result (applied or failed).",
        );
        for (result, n) in lock(&self.reloads).iter() {
            let _ = writeln!(
                out,
                "ingest_config_reloads_total{{result=\"{result}\"}} {n}"
            );
        }
        let scalars = [
            (
                "ingest_kafka_delivery_failures_total",
                "counter",
                "Reports Kafka did not acknowledge in time (they went to the spool or were refused).",
                self.kafka_failures.load(Ordering::Relaxed),
            ),
            (
                "ingest_spool_forwarded_total",
                "counter",
                "Spooled reports forwarded to Kafka.",
                self.forwarded.load(Ordering::Relaxed),
            ),
            (
                "ingest_outcome_events_failed_total",
                "counter",
                "Outcome events that could not be queued for the outcomes topic.",
                self.outcome_events_failed.load(Ordering::Relaxed),
            ),
            (
                "ingest_spool_read_errors_total",
                "counter",
                "Failed reads of the spool by the forwarder (each is retried).",
                self.spool_read_errors.load(Ordering::Relaxed),
            ),
            (
                "ingest_spool_quarantined_total",
                "counter",
                "Spooled reports Kafka refused for good, moved to the quarantine.",
                self.quarantined.load(Ordering::Relaxed),
            ),
            (
                "ingest_kafka_topic_setup_failures_total",
                "counter",
                "Failed attempts to reach Kafka and create the topics at start (each is retried).",
                self.topic_setup_failures.load(Ordering::Relaxed),
            ),
            (
                "ingest_kafka_ready",
                "gauge",
                "1 once Kafka was reached and the topics exist, else 0.",
                gauges.kafka_ready,
            ),
            (
                "ingest_spool_records",
                "gauge",
                "Reports in the spool, waiting for Kafka.",
                gauges.spool_records,
            ),
            (
                "ingest_quarantine_records",
                "gauge",
                "Reports in the quarantine: Kafka refused them for good.",
                gauges.quarantine_records,
            ),
            (
                "ingest_spool_bytes",
                "gauge",
                "Bytes the spool holds on disk.",
                gauges.spool_bytes,
            ),
            (
                "ingest_in_flight_reports",
                "gauge",
                "Reports being handled right now.",
                gauges.in_flight,
            ),
            (
                "ingest_in_flight_bytes",
                "gauge",
                "Bytes of request bodies reserved right now (read and inflated).",
                gauges.bytes_in_flight,
            ),
        ];
        for (name, kind, help, value) in scalars {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let metrics = Metrics::default();
        metrics.report(Outcome::Accepted, "", "crash");
        metrics.report(Outcome::Accepted, "", "crash");
        metrics.report(Outcome::Rejected, "invalid", "unknown");
        metrics.request("reports", 202, Duration::from_millis(3));
        let text = metrics.render(Gauges {
            spool_records: 4,
            ..Gauges::default()
        });
        assert!(
            text.contains(
                "ingest_reports_total{outcome=\"accepted\",reason=\"\",kind=\"crash\"} 2"
            )
        );
        assert!(text.contains(
            "ingest_reports_total{outcome=\"rejected\",reason=\"invalid\",kind=\"unknown\"} 1"
        ));
        assert!(
            text.contains(
                "ingest_request_duration_seconds_bucket{route=\"reports\",le=\"0.005\"} 1"
            )
        );
        assert!(
            text.contains(
                "ingest_request_duration_seconds_bucket{route=\"reports\",le=\"0.0025\"} 0"
            )
        );
        assert!(text.contains("ingest_spool_records 4"));
        assert_eq!(metrics.reports_with(Outcome::Accepted), 2);
        // Every sample line belongs to a declared metric.
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                declared.iter().any(|name| line.starts_with(name)),
                "undeclared sample {line}"
            );
        }
    }
}
