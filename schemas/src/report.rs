//! Report types: the envelope machines send, the payload of each report type,
//! and the accepted report that ingest writes to Kafka.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

/// The kinds of report a machine can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportKind {
    Crash,
    FeatureRequest,
    Feedback,
    Heartbeat,
}

impl ReportKind {
    pub const ALL: [ReportKind; 4] = [
        ReportKind::Crash,
        ReportKind::FeatureRequest,
        ReportKind::Feedback,
        ReportKind::Heartbeat,
    ];

    /// The name used in `schema` (`<name>/<version>`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Crash => "crash",
            ReportKind::FeatureRequest => "feature_request",
            ReportKind::Feedback => "feedback",
            ReportKind::Heartbeat => "heartbeat",
        }
    }

    /// The lowest consent level under which a report of this kind may be sent.
    /// `required` covers heartbeats and crash metadata; anything with free
    /// text written by a person needs `optional`.
    pub fn min_consent(self) -> Consent {
        match self {
            ReportKind::Crash | ReportKind::Heartbeat => Consent::Required,
            ReportKind::FeatureRequest | ReportKind::Feedback => Consent::Optional,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload type and version, written `crash/1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemaId {
    pub kind: ReportKind,
    pub version: u16,
}

/// Why a `schema` string names no schema this build knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaIdError {
    #[error("schema must look like `<type>/<version>`")]
    Malformed,
    #[error("unknown report type or version")]
    Unknown,
}

impl SchemaId {
    pub const CRASH_V1: SchemaId = SchemaId::new(ReportKind::Crash, 1);
    pub const FEATURE_REQUEST_V1: SchemaId = SchemaId::new(ReportKind::FeatureRequest, 1);
    pub const FEEDBACK_V1: SchemaId = SchemaId::new(ReportKind::Feedback, 1);
    pub const HEARTBEAT_V1: SchemaId = SchemaId::new(ReportKind::Heartbeat, 1);

    /// Every schema this build accepts.
    pub const KNOWN: [SchemaId; 4] = [
        Self::CRASH_V1,
        Self::FEATURE_REQUEST_V1,
        Self::FEEDBACK_V1,
        Self::HEARTBEAT_V1,
    ];

    pub const fn new(kind: ReportKind, version: u16) -> Self {
        SchemaId { kind, version }
    }
}

impl FromStr for SchemaId {
    type Err = SchemaIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, version) = s.split_once('/').ok_or(SchemaIdError::Malformed)?;
        let version: u16 = version.parse().map_err(|_| SchemaIdError::Malformed)?;
        let kind = ReportKind::from_name(name).ok_or(SchemaIdError::Unknown)?;
        let id = SchemaId { kind, version };
        if Self::KNOWN.contains(&id) {
            Ok(id)
        } else {
            Err(SchemaIdError::Unknown)
        }
    }
}

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.version)
    }
}

impl Serialize for SchemaId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SchemaId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Consent levels, ordered: `Optional` allows everything `Required` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Heartbeats and crash metadata only.
    Required,
    /// Adds feature requests, feedback and free text.
    Optional,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Required => "required",
            Consent::Optional => "optional",
        }
    }

    /// Whether a report of `kind` may be sent under this consent.
    pub fn allows(self, kind: ReportKind) -> bool {
        self >= kind.min_consent()
    }
}

/// The operating system a report comes from.
///
/// This and the payload types refuse unknown fields, as the JSON Schemas do
/// (`additionalProperties: false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsInfo {
    /// Edition name, e.g. `Windows 10 Enterprise G`.
    pub product: String,
    /// `major.minor.build`, e.g. `10.0.19045`.
    pub version: String,
    pub build: u32,
    /// Update build revision (UBR), e.g. 3570.
    pub revision: u32,
    /// UI locale, e.g. `zh-CN`.
    pub locale: String,
    pub arch: String,
}

/// A report as a machine sends it. The payload is a JSON value by default;
/// ingest holds it typed ([`Payload`]) once it is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<P = serde_json::Value> {
    pub report_id: Uuid,
    pub schema: String,
    pub machine_id: String,
    pub consent: Consent,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    pub os: OsInfo,
    pub payload: P,
}

impl<P> Envelope<P> {
    /// The same report with its payload replaced.
    pub fn with_payload<Q>(self, payload: Q) -> Envelope<Q> {
        Envelope {
            report_id: self.report_id,
            schema: self.schema,
            machine_id: self.machine_id,
            consent: self.consent,
            sent_at: self.sent_at,
            os: self.os,
            payload,
        }
    }

    /// This report as the edge accepts it: `schema` (this envelope's
    /// `schema`, parsed) for `org_id`'s machine `machine_hash`, arrived at
    /// `received_at`, with nothing counted as scrubbed yet.
    pub fn accept(
        self,
        schema: SchemaId,
        org_id: String,
        machine_hash: String,
        received_at: OffsetDateTime,
    ) -> AcceptedReport<P> {
        AcceptedReport {
            report_id: self.report_id,
            schema,
            org_id,
            machine_hash,
            consent: self.consent,
            sent_at: self.sent_at,
            received_at,
            os: self.os,
            payload: self.payload,
            scrubbed: BTreeMap::new(),
        }
    }
}

/// A report after the edge accepted it: authenticated, checked, scrubbed.
/// This is the value of every message on the reports topic.
///
/// The payload is a JSON value by default; a reader that decodes the
/// payload into its typed form reads it as `Box<RawValue>` instead and
/// skips building the intermediate value (see [`Payload::decode_json`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedReport<P = serde_json::Value> {
    pub report_id: Uuid,
    pub schema: SchemaId,
    /// The organisation the enrollment token belongs to.
    pub org_id: String,
    /// Keyed hash of the machine id (hex); the raw id never leaves the edge.
    pub machine_hash: String,
    pub consent: Consent,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// Stamped by the edge when the request arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub os: OsInfo,
    pub payload: P,
    /// What the edge scrubbed from the payload: rule name to count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scrubbed: BTreeMap<String, u32>,
}

/// What the aggregates count a report by: one report per machine and report
/// id. The UUIDv5 (RFC 9562, name-based, SHA-1) of the machine hash in the
/// namespace of the report id, so that two machines sending one report id
/// (a WER report copied with a disk image) are two reports, and one machine
/// sending it twice is one. Rows stored before migration 5 carry their
/// `report_id` in this place instead (`schemas/migrations/0005_*.sql`).
pub fn report_key(report_id: Uuid, machine_hash: &str) -> Uuid {
    Uuid::new_v5(&report_id, machine_hash.as_bytes())
}

impl<P> AcceptedReport<P> {
    /// The same report with its payload replaced.
    pub fn with_payload<Q>(self, payload: Q) -> AcceptedReport<Q> {
        AcceptedReport {
            report_id: self.report_id,
            schema: self.schema,
            org_id: self.org_id,
            machine_hash: self.machine_hash,
            consent: self.consent,
            sent_at: self.sent_at,
            received_at: self.received_at,
            os: self.os,
            payload,
            scrubbed: self.scrubbed,
        }
    }
}

/// `crash/1`: an application crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashPayload {
    pub app: AppInfo,
    /// NTSTATUS code, e.g. `0xC0000005`.
    pub exception_code: String,
    /// The faulting module.
    pub module: ModuleInfo,
    /// The crashing thread's stack, innermost first.
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleInfo {
    pub name: String,
    pub version: String,
    /// Offset of the fault in the module, hexadecimal.
    pub offset: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frame {
    pub module: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    pub offset: String,
}

/// `feature_request/1`: something wanted in a future version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureRequestPayload {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// `feedback/1`: a 1–5 rating of a product area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackPayload {
    pub rating: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub category: String,
}

/// `heartbeat/1`: the machine was active on `day`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatPayload {
    /// `YYYY-MM-DD`.
    pub day: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_minutes: Option<u32>,
}

/// A payload decoded by its schema. It encodes as the payload alone, the
/// same JSON object it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    Crash(CrashPayload),
    FeatureRequest(FeatureRequestPayload),
    Feedback(FeedbackPayload),
    Heartbeat(HeartbeatPayload),
}

impl Payload {
    /// Decodes the JSON text `json` as the payload type `schema` names,
    /// without building a `serde_json::Value` first.
    pub fn decode_json(schema: SchemaId, json: &str) -> serde_json::Result<Self> {
        let mut reader = serde_json::Deserializer::from_str(json);
        let payload = Self::deserialize_as(schema, &mut reader)?;
        reader.end()?;
        Ok(payload)
    }

    /// Decodes `value` as the payload type `schema` names.
    pub fn decode(schema: SchemaId, value: &serde_json::Value) -> serde_json::Result<Self> {
        Self::from_value(schema, value.clone())
    }

    /// Decodes `value`, taken, as the payload type `schema` names.
    pub fn from_value(schema: SchemaId, value: serde_json::Value) -> serde_json::Result<Self> {
        Self::deserialize_as(schema, value)
    }

    /// Reads the payload type `schema` names from any serde source: the one
    /// place where a schema picks its payload type.
    pub fn deserialize_as<'de, D: Deserializer<'de>>(
        schema: SchemaId,
        deserializer: D,
    ) -> Result<Self, D::Error> {
        Ok(match schema.kind {
            ReportKind::Crash => Payload::Crash(CrashPayload::deserialize(deserializer)?),
            ReportKind::FeatureRequest => {
                Payload::FeatureRequest(FeatureRequestPayload::deserialize(deserializer)?)
            }
            ReportKind::Feedback => Payload::Feedback(FeedbackPayload::deserialize(deserializer)?),
            ReportKind::Heartbeat => {
                Payload::Heartbeat(HeartbeatPayload::deserialize(deserializer)?)
            }
        })
    }

    /// Calls `f` on every text field a person typed, or that can name
    /// something on the machine (a path, a user in a module name): the
    /// fields the edge scrubs. Codes, offsets, versions and categories are
    /// held to patterns by the schemas and are not among them.
    pub fn for_each_free_text(&mut self, mut f: impl FnMut(&mut String)) {
        match self {
            Payload::Crash(crash) => {
                f(&mut crash.app.name);
                f(&mut crash.module.name);
                for frame in &mut crash.frames {
                    f(&mut frame.module);
                    if let Some(function) = &mut frame.function {
                        f(function);
                    }
                }
            }
            Payload::FeatureRequest(request) => {
                f(&mut request.title);
                if let Some(body) = &mut request.body {
                    f(body);
                }
            }
            Payload::Feedback(feedback) => {
                if let Some(text) = &mut feedback.text {
                    f(text);
                }
            }
            Payload::Heartbeat(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_key_is_one_per_machine_and_report_id() {
        let id = Uuid::parse_str("4f0c6b1e-3a51-4d27-9a0e-6f1f4c2b9d11").expect("uuid");
        let other = Uuid::parse_str("9a0e6f1f-3a51-4d27-9a0e-6f1f4c2b9d11").expect("uuid");
        let key = report_key(id, "ab12");
        assert_eq!(key, report_key(id, "ab12"), "the same report, the same key");
        assert_ne!(key, report_key(id, "cd34"), "another machine, another key");
        assert_ne!(
            key,
            report_key(other, "ab12"),
            "another report, another key"
        );
        // Name-based keys cannot meet the random ids rows older than
        // migration 5 are counted by.
        assert_eq!(key.get_version_num(), 5);
        assert_ne!(key, id);
    }

    #[test]
    fn payloads_decode_the_same_from_text_and_from_a_value() {
        for text in crate::fixtures::ALL {
            let report: Envelope = serde_json::from_str(text).expect("fixture");
            let schema: SchemaId = report.schema.parse().expect("known schema");
            let raw = serde_json::to_string(&report.payload).expect("encodes");
            let from_text = Payload::decode_json(schema, &raw).expect("decodes from text");
            let from_value = Payload::decode(schema, &report.payload).expect("decodes");
            assert_eq!(from_text, from_value);
        }
    }

    #[test]
    fn schema_ids_round_trip_and_reject_unknown_versions() {
        for id in SchemaId::KNOWN {
            assert_eq!(id.to_string().parse::<SchemaId>(), Ok(id));
        }
        assert_eq!("crash/2".parse::<SchemaId>(), Err(SchemaIdError::Unknown));
        assert_eq!(
            "telemetry/1".parse::<SchemaId>(),
            Err(SchemaIdError::Unknown)
        );
        assert_eq!("crash".parse::<SchemaId>(), Err(SchemaIdError::Malformed));
        assert_eq!("crash/x".parse::<SchemaId>(), Err(SchemaIdError::Malformed));
    }

    #[test]
    fn consent_levels_gate_report_kinds() {
        assert!(Consent::Required.allows(ReportKind::Crash));
        assert!(Consent::Required.allows(ReportKind::Heartbeat));
        assert!(!Consent::Required.allows(ReportKind::FeatureRequest));
        assert!(!Consent::Required.allows(ReportKind::Feedback));
        assert!(ReportKind::ALL.iter().all(|k| Consent::Optional.allows(*k)));
    }
}
