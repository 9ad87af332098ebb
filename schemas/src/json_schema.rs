//! The JSON Schemas of the envelope and of every payload type, embedded from
//! `schemas/json/`. Ingest validates every report against them; clients and
//! the OpenAPI document refer to the same files.

use crate::report::{ReportKind, SchemaId};

/// The envelope every report comes in.
pub const ENVELOPE: &str = include_str!("../json/envelope.schema.json");

const CRASH_V1: &str = include_str!("../json/crash.1.schema.json");
const FEATURE_REQUEST_V1: &str = include_str!("../json/feature_request.1.schema.json");
const FEEDBACK_V1: &str = include_str!("../json/feedback.1.schema.json");
const HEARTBEAT_V1: &str = include_str!("../json/heartbeat.1.schema.json");

/// The JSON Schema of the payload `schema` names. Every known schema has one.
pub fn payload(schema: SchemaId) -> &'static str {
    match (schema.kind, schema.version) {
        (ReportKind::Crash, _) => CRASH_V1,
        (ReportKind::FeatureRequest, _) => FEATURE_REQUEST_V1,
        (ReportKind::Feedback, _) => FEEDBACK_V1,
        (ReportKind::Heartbeat, _) => HEARTBEAT_V1,
    }
}
