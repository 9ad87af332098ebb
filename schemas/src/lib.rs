//! The contract shared by every part of the pipeline. No I/O happens here.
//!
//! ```text
//!  machine ──Envelope (JSON)──▶ ingest ──AcceptedReport (JSON)──▶ Kafka topics::REPORTS
//!                                                                        │
//!  analysts ◀── ClickHouse tables (clickhouse::MIGRATIONS) ◀── processor ◀┘
//! ```
//!
//! - [`report`]: the [`Envelope`] machines send, the payload of each report
//!   type, and the [`AcceptedReport`] ingest writes to Kafka;
//! - [`json_schema`]: the JSON Schemas ingest validates against;
//! - [`contract`]: the HTTP answers (error codes and bodies, batch results,
//!   the policy), written by ingest and read by the reporter and loadgen;
//! - [`Outcome`]: what the edge did with each report, and the
//!   [`OutcomeEvent`]s it publishes for the refused ones;
//! - [`Received`]: a reports-topic message read in one pass;
//! - [`topics`]: Kafka topic names;
//! - [`tables`]: the registry of raw tables, one entry per report kind
//!   and one for the outcomes;
//! - [`clickhouse`]: the DDL as ordered migrations, and [`ServerVersion`],
//!   the one place where ClickHouse version differences are decided;
//! - [`replicated`]: the migrations' statements as a replicated cluster
//!   runs them (`Replicated*MergeTree`, `ON CLUSTER`);
//! - [`erasure`]: a machine's erasure request and the SQL that carries it
//!   out;
//! - [`hex`]: the one spelling of exception codes and offsets;
//! - [`build`]: [`build::BuildVersion`], the one reading and order of
//!   Windows versions;
//! - [`forms`]: the forms the schemas pin OS facts to, checked in code.
//!
//! Ingest and processor depend on this crate; it depends on neither, and on
//! no network client.

pub mod build;
pub mod clickhouse;
pub mod contract;
pub mod erasure;
pub mod forms;
pub mod hex;
pub mod json_schema;
mod outcome;
pub mod probes;
mod received;
pub mod replicated;
pub mod report;
pub mod tables;
pub mod topics;

pub use clickhouse::{AppliedMigration, ChangedMigration, MIGRATIONS, Migration, ServerVersion};
pub use outcome::{Outcome, OutcomeEvent};
pub use received::Received;
pub use report::{
    AcceptedReport, AppInfo, Consent, CrashPayload, Envelope, FeatureRequestPayload,
    FeedbackPayload, Frame, HeartbeatPayload, ModuleInfo, OsInfo, Payload, ReportKind, SchemaId,
    SchemaIdError, report_key,
};

/// Sample reports, one per type, valid against the schemas. Tests and the
/// README use them.
pub mod fixtures {
    pub const CRASH: &str = include_str!("../fixtures/crash.json");
    pub const FEATURE_REQUEST: &str = include_str!("../fixtures/feature_request.json");
    pub const FEEDBACK: &str = include_str!("../fixtures/feedback.json");
    pub const HEARTBEAT: &str = include_str!("../fixtures/heartbeat.json");
    pub const ALL: [&str; 4] = [CRASH, FEATURE_REQUEST, FEEDBACK, HEARTBEAT];
}
