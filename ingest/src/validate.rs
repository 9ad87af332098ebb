//! Turns a request body into a checked [`Envelope`]: JSON, the envelope
//! schema, a known payload schema, the payload schema, and the clock.

use std::collections::HashMap;

use jsonschema::error::ValidationErrorKind;
use schemas::{Envelope, SchemaId, SchemaIdError, json_schema};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::ApiError;

/// Longest message text taken from a schema error; it may quote the input.
const MAX_MESSAGE_CHARS: usize = 300;

/// The compiled JSON Schemas.
#[derive(Debug)]
pub struct Validator {
    envelope: jsonschema::Validator,
    payloads: HashMap<SchemaId, jsonschema::Validator>,
    max_clock_skew: time::Duration,
}

/// A report that passed every check.
#[derive(Debug)]
pub struct Checked {
    pub envelope: Envelope,
    pub schema: SchemaId,
}

impl Validator {
    pub fn new(max_clock_skew_secs: u64) -> Self {
        let compile = |text: &str| {
            let schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
            jsonschema::validator_for(&schema).expect("embedded schema compiles")
        };
        Validator {
            envelope: compile(json_schema::ENVELOPE),
            payloads: SchemaId::KNOWN
                .into_iter()
                .map(|id| (id, compile(json_schema::payload(id))))
                .collect(),
            max_clock_skew: time::Duration::seconds(
                i64::try_from(max_clock_skew_secs).unwrap_or(i64::MAX),
            ),
        }
    }

    /// Parses and checks one report body.
    pub fn check_body(&self, body: &[u8], now: OffsetDateTime) -> Result<Checked, ApiError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        self.check_value(value, now)
    }

    /// Checks one report already parsed as JSON.
    pub fn check_value(&self, mut value: Value, now: OffsetDateTime) -> Result<Checked, ApiError> {
        if !value.is_object() {
            return Err(invalid("", "a report must be a JSON object".into()));
        }
        // The schema id is looked at first, so that a newer client's report
        // gets `unknown_schema` rather than a confusing field error.
        let schema = match value.get("schema").and_then(Value::as_str) {
            Some(text) => match text.parse::<SchemaId>() {
                Ok(id) => Some(id),
                Err(SchemaIdError::Unknown) => {
                    return Err(ApiError::UnknownSchema(truncate(text, 64)));
                }
                Err(SchemaIdError::Malformed) => None,
            },
            None => None,
        };
        first_error(&self.envelope, &value, "")?;
        let schema = schema.ok_or_else(|| invalid("schema", "unknown schema".into()))?;
        first_error(&self.payloads[&schema], &value["payload"], "payload")?;
        // The payload is moved out first: deserializing a `Value` field
        // from a `Value` rebuilds it node by node.
        let payload = value
            .as_object_mut()
            .and_then(|object| object.insert("payload".into(), Value::Null))
            .unwrap_or(Value::Null);
        let mut envelope: Envelope = serde_json::from_value(value)
            .map_err(|e| invalid("", truncate(&e.to_string(), MAX_MESSAGE_CHARS)))?;
        envelope.payload = payload;
        if envelope.sent_at - now > self.max_clock_skew {
            return Err(ApiError::ClockSkew(
                self.max_clock_skew.whole_hours().unsigned_abs(),
            ));
        }
        Ok(Checked { envelope, schema })
    }
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Invalid {
        field: field.to_string(),
        message,
    }
}

/// The first schema violation, as an `Invalid` error naming its field.
fn first_error(
    validator: &jsonschema::Validator,
    value: &Value,
    prefix: &str,
) -> Result<(), ApiError> {
    // `is_valid` stops at the first failure and builds no error; only a
    // report that fails pays for the error iterator.
    if validator.is_valid(value) {
        return Ok(());
    }
    let Some(error) = validator.iter_errors(value).next() else {
        return Ok(());
    };
    let mut field = field_path(prefix, error.instance_path.as_str());
    if let ValidationErrorKind::Required { property } = &error.kind
        && let Some(name) = property.as_str()
    {
        field = join_field(&field, name);
    }
    Err(invalid(
        &field,
        truncate(&error.to_string(), MAX_MESSAGE_CHARS),
    ))
}

/// `payload` + `/frames/0/offset` → `payload.frames[0].offset`.
fn field_path(prefix: &str, pointer: &str) -> String {
    let mut path = prefix.to_string();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            path.push_str(&format!("[{segment}]"));
        } else {
            path = join_field(&path, &segment);
        }
    }
    path
}

fn join_field(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::fixtures;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-20 12:00 UTC);

    fn crash() -> Value {
        serde_json::from_str(fixtures::CRASH).expect("fixture")
    }

    fn error_of(value: Value) -> (String, Option<String>) {
        match Validator::new(86_400).check_value(value, NOW) {
            Err(ApiError::Invalid { field, .. }) => ("invalid".into(), Some(field)),
            Err(other) => (other.code().into(), None),
            Ok(_) => ("ok".into(), None),
        }
    }

    #[test]
    fn accepts_every_fixture() {
        let validator = Validator::new(86_400);
        for text in fixtures::ALL {
            let checked = validator.check_body(text.as_bytes(), NOW).expect("valid");
            assert_eq!(checked.schema.to_string(), checked.envelope.schema);
        }
    }

    #[test]
    fn malformed_json_is_its_own_error() {
        let err = Validator::new(86_400)
            .check_body(b"{\"report_id\": ", NOW)
            .expect_err("malformed");
        assert_eq!(err.code(), "malformed_json");
    }

    #[test]
    fn names_the_failing_field() {
        let mut report = crash();
        report["payload"]["frames"][2]["offset"] = json!("not hex");
        assert_eq!(
            error_of(report),
            ("invalid".into(), Some("payload.frames[2].offset".into()))
        );

        let mut report = crash();
        report["os"]
            .as_object_mut()
            .expect("object")
            .remove("build");
        assert_eq!(
            error_of(report),
            ("invalid".into(), Some("os.build".into()))
        );

        let mut report = crash();
        report["payload"]["module"]
            .as_object_mut()
            .expect("object")
            .remove("name");
        assert_eq!(
            error_of(report),
            ("invalid".into(), Some("payload.module.name".into()))
        );
    }

    #[test]
    fn unknown_schema_versions_are_unprocessable_not_invalid() {
        let mut report = crash();
        report["schema"] = json!("crash/7");
        assert_eq!(error_of(report).0, "unknown_schema");
        let mut report = crash();
        report["schema"] = json!("screenshot/1");
        assert_eq!(error_of(report).0, "unknown_schema");
    }

    #[test]
    fn reports_from_the_far_future_are_refused() {
        let mut report = crash();
        report["sent_at"] = json!("2026-11-21T12:00:01Z");
        assert_eq!(error_of(report).0, "clock_skew");
        let mut report = crash();
        report["sent_at"] = json!("2026-11-21T11:59:00Z");
        assert_eq!(error_of(report).0, "ok");
    }

    #[test]
    fn field_paths_read_like_code() {
        assert_eq!(field_path("", ""), "");
        assert_eq!(
            field_path("payload", "/frames/10/module"),
            "payload.frames[10].module"
        );
        assert_eq!(field_path("", "/a~1b"), "a/b");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
