//! Kafka topic names (defaults; each service can be configured with others).

/// Accepted reports, JSON [`AcceptedReport`](crate::AcceptedReport) values,
/// keyed by the hashed machine id so every copy of a report and every report
/// of one machine land on one partition.
pub const REPORTS: &str = "telemetry.reports.v1";

/// What the edge refused and why (no payloads).
pub const OUTCOMES: &str = "telemetry.outcomes.v1";

/// Messages the processor could not decode or place, with reason headers.
pub const DEAD_LETTERS: &str = "telemetry.dead-letters.v1";
