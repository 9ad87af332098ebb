//! Reading a reports-topic message in one pass: the envelope's fields and
//! the payload decoded straight into its typed form.
//!
//! An [`AcceptedReport`] is written with `schema` before `payload`, so a
//! reader knows the payload's type by the time it reaches it. Read as
//! `AcceptedReport<Box<RawValue>>` and then decoded, the payload is scanned
//! twice; [`Received`] scans it once. If the payload comes first (a writer
//! with another field order), it is kept raw and decoded at the end.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::report::{AcceptedReport, Consent, OsInfo, Payload, SchemaId};

/// A reports-topic message: the envelope (payload left out) and the typed
/// payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub report: AcceptedReport<()>,
    pub payload: Payload,
}

impl<'de> Deserialize<'de> for Received {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ReceivedVisitor)
    }
}

#[derive(Deserialize, Serialize)]
#[serde(transparent)]
struct Rfc3339(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

struct ReceivedVisitor;

impl<'de> Visitor<'de> for ReceivedVisitor {
    type Value = Received;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an accepted report")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Received, A::Error> {
        let mut report_id: Option<Uuid> = None;
        let mut schema: Option<SchemaId> = None;
        let mut org_id: Option<String> = None;
        let mut machine_hash: Option<String> = None;
        let mut consent: Option<Consent> = None;
        let mut sent_at: Option<Rfc3339> = None;
        let mut received_at: Option<Rfc3339> = None;
        let mut os: Option<OsInfo> = None;
        let mut payload: Option<Payload> = None;
        let mut raw_payload: Option<Box<RawValue>> = None;
        let mut scrubbed: Option<BTreeMap<String, u32>> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::ReportId => report_id = Some(map.next_value()?),
                Field::Schema => schema = Some(map.next_value()?),
                Field::OrgId => org_id = Some(map.next_value()?),
                Field::MachineHash => machine_hash = Some(map.next_value()?),
                Field::Consent => consent = Some(map.next_value()?),
                Field::SentAt => sent_at = Some(map.next_value()?),
                Field::ReceivedAt => received_at = Some(map.next_value()?),
                Field::Os => os = Some(map.next_value()?),
                Field::Payload => match schema {
                    Some(schema) => payload = Some(map.next_value_seed(PayloadSeed(schema))?),
                    None => raw_payload = Some(map.next_value()?),
                },
                Field::Scrubbed => scrubbed = Some(map.next_value()?),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let schema = schema.ok_or_else(|| de::Error::missing_field("schema"))?;
        let payload = match (payload, raw_payload) {
            (Some(payload), _) => payload,
            (None, Some(raw)) => {
                Payload::decode_json(schema, raw.get()).map_err(de::Error::custom)?
            }
            (None, None) => return Err(de::Error::missing_field("payload")),
        };
        let report = AcceptedReport {
            report_id: report_id.ok_or_else(|| de::Error::missing_field("report_id"))?,
            schema,
            org_id: org_id.ok_or_else(|| de::Error::missing_field("org_id"))?,
            machine_hash: machine_hash.ok_or_else(|| de::Error::missing_field("machine_hash"))?,
            consent: consent.ok_or_else(|| de::Error::missing_field("consent"))?,
            sent_at: sent_at
                .ok_or_else(|| de::Error::missing_field("sent_at"))?
                .0,
            received_at: received_at
                .ok_or_else(|| de::Error::missing_field("received_at"))?
                .0,
            os: os.ok_or_else(|| de::Error::missing_field("os"))?,
            payload: (),
            scrubbed: scrubbed.unwrap_or_default(),
        };
        Ok(Received { report, payload })
    }
}

/// A field name, read without allocating.
enum Field {
    ReportId,
    Schema,
    OrgId,
    MachineHash,
    Consent,
    SentAt,
    ReceivedAt,
    Os,
    Payload,
    Scrubbed,
    /// A field this build does not know: skipped.
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "report_id" => Field::ReportId,
                    "schema" => Field::Schema,
                    "org_id" => Field::OrgId,
                    "machine_hash" => Field::MachineHash,
                    "consent" => Field::Consent,
                    "sent_at" => Field::SentAt,
                    "received_at" => Field::ReceivedAt,
                    "os" => Field::Os,
                    "payload" => Field::Payload,
                    "scrubbed" => Field::Scrubbed,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

/// Decodes a payload as the type its schema names.
struct PayloadSeed(SchemaId);

impl<'de> DeserializeSeed<'de> for PayloadSeed {
    type Value = Payload;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Payload, D::Error> {
        Payload::deserialize_as(self.0, deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Envelope;

    fn accepted(text: &str) -> AcceptedReport {
        let sent: Envelope = serde_json::from_str(text).expect("fixture");
        let (schema, sent_at) = (sent.schema.parse().expect("known schema"), sent.sent_at);
        let mut report = sent.accept(schema, "grid".into(), "ab".repeat(16), sent_at);
        report.scrubbed = [("email".to_string(), 2)].into();
        report
    }

    #[test]
    fn one_pass_reads_what_two_passes_read_in_either_field_order() {
        for text in crate::fixtures::ALL {
            let report = accepted(text);
            let expected_payload =
                Payload::decode(report.schema, &report.payload).expect("decodes");
            let expected = Received {
                report: report.clone().with_payload(()),
                payload: expected_payload,
            };
            let written = serde_json::to_vec(&report).expect("encodes");
            let received: Received = serde_json::from_slice(&written).expect("one pass");
            assert_eq!(received, expected);

            // Payload first, schema after, and a field this build does not
            // know: still the same report.
            let mut reordered = serde_json::Map::new();
            reordered.insert("payload".into(), report.payload.clone());
            reordered.insert("future_field".into(), serde_json::json!({"x": [1, 2]}));
            let as_value = serde_json::to_value(&report).expect("encodes");
            for (key, value) in as_value.as_object().expect("an object") {
                if key != "payload" {
                    reordered.insert(key.clone(), value.clone());
                }
            }
            let received: Received =
                serde_json::from_value(serde_json::Value::Object(reordered)).expect("reordered");
            assert_eq!(received, expected);
        }
    }

    #[test]
    fn a_payload_that_does_not_fit_its_schema_is_an_error() {
        let mut report = accepted(crate::fixtures::CRASH);
        report.payload = serde_json::json!({"title": "not a crash"});
        let written = serde_json::to_vec(&report).expect("encodes");
        assert!(serde_json::from_slice::<Received>(&written).is_err());
    }
}
