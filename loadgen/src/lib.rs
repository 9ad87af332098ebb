//! Load for benchmarks and capacity checks.
//!
//! - [`drive`]: an open-loop HTTP load generator: requests due at a fixed
//!   rate over many connections, single reports or gzip batches, latency
//!   from when each request was due into an HdrHistogram, a JSON summary.
//! - [`bare`]: the baseline server: answers 202 and does nothing else.
//! - [`backlog`]: writes accepted reports straight into Kafka.
//! - [`reports`]: realistic crash reports (20–40 frames of real Windows
//!   modules), feature requests in Chinese and English, heartbeats; the
//!   mix every run draws from (`bench/instr` counts instructions on it).
//!
//! In: a target URL or Kafka topic and a plan. Out: load, and a summary
//! (the batch answers read as `schemas::contract::BatchResult`).

pub mod backlog;
pub mod bare;
pub mod drive;
pub mod reports;
