//! Every metric ingest exposes on `GET /metrics`, named and described in one
//! place, kept and encoded by `prometheus-client` in Prometheus' text format
//! (0.0.4). Labels are bounded: outcomes, error codes, report kinds, routes,
//! statuses and reload results are fixed sets.
//!
//! Counters are registered without their `_total` suffix: the encoder adds
//! it, so `reports` is exposed as `ingest_reports_total`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use schemas::Outcome;

/// Upper bounds of the request-duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReportLabels {
    outcome: &'static str,
    reason: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type GaugeU64 = Gauge<u64, std::sync::atomic::AtomicU64>;

fn request_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reports: Family<ReportLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ResultLabels, Counter>,
    kafka_failures: Counter,
    forwarded: Counter,
    outcome_events_failed: Counter,
    spool_read_errors: Counter,
    quarantined: Counter,
    topic_setup_failures: Counter,
    kafka_ready: GaugeU64,
    spool_records: GaugeU64,
    quarantine_records: GaugeU64,
    spool_bytes: GaugeU64,
    in_flight_reports: GaugeU64,
    in_flight_bytes: GaugeU64,
}

/// Registers a new metric of type `M` under `name` and returns it.
fn register<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("ingest");
        let durations = Family::new_with_constructor(request_histogram as fn() -> Histogram);
        r.register(
            "request_duration_seconds",
            "Time from request to response, by route",
            durations.clone(),
        );
        Self {
            reports: register(
                &mut r,
                "reports",
                "Reports seen, by the one outcome each ended in",
            ),
            requests: register(
                &mut r,
                "requests",
                "HTTP requests answered, by route and status",
            ),
            durations,
            reloads: register(
                &mut r,
                "config_reloads",
                "Configuration reloads, by result (applied or failed)",
            ),
            kafka_failures: register(
                &mut r,
                "kafka_delivery_failures",
                "Reports Kafka did not acknowledge in time (they went to the spool or were refused)",
            ),
            forwarded: register(
                &mut r,
                "spool_forwarded",
                "Spooled reports forwarded to Kafka",
            ),
            outcome_events_failed: register(
                &mut r,
                "outcome_events_failed",
                "Outcome events that could not be queued for the outcomes topic",
            ),
            spool_read_errors: register(
                &mut r,
                "spool_read_errors",
                "Failed reads of the spool by the forwarder (each is retried)",
            ),
            quarantined: register(
                &mut r,
                "spool_quarantined",
                "Spooled reports Kafka refused for good, moved to the quarantine",
            ),
            topic_setup_failures: register(
                &mut r,
                "kafka_topic_setup_failures",
                "Failed attempts to reach Kafka and create the topics at start (each is retried)",
            ),
            kafka_ready: register(
                &mut r,
                "kafka_ready",
                "1 once Kafka was reached and the topics exist, else 0",
            ),
            spool_records: register(
                &mut r,
                "spool_records",
                "Reports in the spool, waiting for Kafka",
            ),
            quarantine_records: register(
                &mut r,
                "quarantine_records",
                "Reports in the quarantine: Kafka refused them for good",
            ),
            spool_bytes: register(&mut r, "spool_bytes", "Bytes the spool holds on disk"),
            in_flight_reports: register(
                &mut r,
                "in_flight_reports",
                "Reports being handled right now",
            ),
            in_flight_bytes: register(
                &mut r,
                "in_flight_bytes",
                "Bytes of request bodies reserved right now (read and inflated)",
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// One report ended in `outcome`; `reason` is the error code (empty for
    /// kept reports), `kind` the report type or `unknown`.
    pub fn report(&self, outcome: Outcome, reason: &'static str, kind: &'static str) {
        self.reports
            .get_or_create(&ReportLabels {
                outcome: outcome.as_str(),
                reason,
                kind,
            })
            .inc();
    }

    /// One HTTP request answered.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.durations
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn kafka_failure(&self) {
        self.kafka_failures.inc();
    }

    pub fn forwarded(&self, records: u64) {
        self.forwarded.inc_by(records);
    }

    pub fn outcome_event_failed(&self) {
        self.outcome_events_failed.inc();
    }

    pub fn spool_read_error(&self) {
        self.spool_read_errors.inc();
    }

    #[cfg(test)]
    pub fn spool_read_errors(&self) -> u64 {
        self.spool_read_errors.get()
    }

    pub fn quarantined(&self) {
        self.quarantined.inc();
    }

    pub fn topic_setup_failure(&self) {
        self.topic_setup_failures.inc();
    }

    /// How many reports ended in `outcome`, over all reasons and kinds
    /// (read back from the rendered text: the label sets are not listed).
    #[cfg(test)]
    pub fn reports_with(&self, outcome: Outcome) -> u64 {
        let prefix = format!("ingest_reports_total{{outcome=\"{}\",", outcome.as_str());
        self.render(Gauges::default())
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The text served on `/metrics`, with the gauges set to `gauges`.
    pub fn render(&self, gauges: Gauges) -> String {
        self.kafka_ready.set(gauges.kafka_ready);
        self.spool_records.set(gauges.spool_records);
        self.quarantine_records.set(gauges.quarantine_records);
        self.spool_bytes.set(gauges.spool_bytes);
        self.in_flight_reports.set(gauges.in_flight);
        self.in_flight_bytes.set(gauges.bytes_in_flight);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
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
        metrics.forwarded(5);
        metrics.reload("applied");
        let text = metrics.render(Gauges {
            spool_records: 4,
            ..Gauges::default()
        });
        for line in [
            "ingest_reports_total{outcome=\"accepted\",reason=\"\",kind=\"crash\"} 2",
            "ingest_reports_total{outcome=\"rejected\",reason=\"invalid\",kind=\"unknown\"} 1",
            "ingest_requests_total{route=\"reports\",status=\"202\"} 1",
            "ingest_request_duration_seconds_bucket{route=\"reports\",le=\"0.005\"} 1",
            "ingest_request_duration_seconds_bucket{route=\"reports\",le=\"0.0025\"} 0",
            "ingest_request_duration_seconds_count{route=\"reports\"} 1",
            "ingest_spool_forwarded_total 5",
            "ingest_spool_records 4",
            "ingest_kafka_ready 0",
            "ingest_config_reloads_total{result=\"applied\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert_eq!(metrics.reports_with(Outcome::Accepted), 2);
        // Every sample line belongs to a declared metric.
        let declared: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(declared.len(), 16);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                declared.iter().any(|name| line.starts_with(name)),
                "undeclared sample {line}"
            );
        }
    }
}
