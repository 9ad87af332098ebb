//! Turns a request body into a checked [`Envelope`] with a typed
//! [`Payload`]: JSON, the envelope schema, a known payload schema, the
//! payload schema, a real calendar day, and the clock.
//!
//! ```text
//!  body ─▶ fast: typed parse + the schemas' constraints in code ──────────────▶ checked
//!            │ not taken
//!            └─▶ reference: Value ─▶ compiled JSON Schemas ─▶ typed payload ─▶ checked, or the error
//! ```
//!
//! Both ways give the same answer (see `validate/fast.rs`); only the
//! reference way words errors.

mod fast;

use std::collections::HashMap;

use jsonschema::error::ValidationErrorKind;
use schemas::{Envelope, Payload, SchemaId, SchemaIdError, json_schema};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::ApiError;

/// The first day a ClickHouse `Date` holds.
const FIRST_DAY: time::Date = time::macros::date!(1970 - 01 - 01);

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
pub struct Checked<'a> {
    pub envelope: Envelope<Payload>,
    pub schema: SchemaId,
    /// The payload's JSON text as sent, when the fast way took the report:
    /// one JSON object that decodes to `envelope.payload` exactly (the fast
    /// way decoded it), so it may be passed on as it is while nothing in it
    /// is changed.
    pub sent_payload: Option<&'a str>,
}

/// A refused report, with its schema when that was known.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub schema: Option<SchemaId>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal {
            error,
            schema: None,
        }
    }
}

impl Validator {
    /// Compiles the embedded schemas.
    ///
    /// Each is compiled through a one-line root that only refers to it
    /// (`{"$ref": …}`), the schema itself handed over as a resource: the
    /// same checks, errors and instance paths, but only that root is checked
    /// against the draft 2020-12 meta-schema at build time. jsonschema checks
    /// a schema with one process-wide meta-schema validator that compiles
    /// (and keeps, with a copy of the meta-schema) a subtree for each level
    /// of nesting it meets. Compiling the five in full kept 37 MB resident
    /// for the life of the process, almost all of it for the envelope and
    /// crash schemas; compiled this way they take 5.6 MB (a process doing
    /// only this; bench/RESULTS.md, "B5: what ingest's memory is"). That the
    /// schemas are valid 2020-12 schemas is checked where they live
    /// (`schemas/tests/json_schemas.rs` compiles each in full).
    pub fn new(max_clock_skew_secs: u64) -> Self {
        let compile = |name: &str, text: &str| {
            let schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
            let resource =
                jsonschema::Resource::from_contents(schema).expect("embedded schema has a draft");
            let uri = format!("https://ingest.invalid/schemas/{name}");
            let root = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": uri,
            });
            jsonschema::options()
                .with_resource(uri, resource)
                .build(&root)
                .expect("embedded schema compiles")
        };
        Validator {
            envelope: compile("envelope", json_schema::ENVELOPE),
            payloads: SchemaId::KNOWN
                .into_iter()
                .map(|id| (id, compile(&id.to_string(), json_schema::payload(id))))
                .collect(),
            max_clock_skew: time::Duration::seconds(
                i64::try_from(max_clock_skew_secs).unwrap_or(i64::MAX),
            ),
        }
    }

    /// Parses and checks one report body: the fast way when it takes the
    /// report, else the reference way. (The service asks
    /// [`Validator::check_body_within`]; the tests and the fuzz target this.)
    #[allow(dead_code)]
    pub fn check_body<'a>(
        &self,
        body: &'a [u8],
        now: OffsetDateTime,
    ) -> Result<Checked<'a>, Refusal> {
        self.check_body_within(body, usize::MAX, now)
    }

    /// [`Validator::check_body`], refusing JSON nested deeper than
    /// `max_depth` arrays and objects before the reference way parses it.
    ///
    /// The fast way takes nothing deeper than [`fast::MAX_DEPTH`] (its types
    /// nest no further), so the depth is looked at only for what it leaves:
    /// the answer is the same as looking first, for every `max_depth` at
    /// least that; below it, the depth is looked at first.
    pub fn check_body_within<'a>(
        &self,
        body: &'a [u8],
        max_depth: usize,
        now: OffsetDateTime,
    ) -> Result<Checked<'a>, Refusal> {
        let fast_within = max_depth >= fast::MAX_DEPTH;
        if !fast_within {
            super::body::check_depth(body, max_depth)?;
        }
        let checked = match fast::check_raw(body) {
            Some((envelope, schema, sent_payload)) => Checked {
                envelope,
                schema,
                sent_payload: Some(sent_payload),
            },
            None => {
                if fast_within {
                    super::body::check_depth(body, max_depth)?;
                }
                let value: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
                let hint = value
                    .get("schema")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<SchemaId>().ok());
                self.check_value(value).map_err(|error| Refusal {
                    error,
                    schema: hint,
                })?
            }
        };
        let schema = Some(checked.schema);
        self.check_meaning(&checked, now)
            .map_err(|error| Refusal { error, schema })?;
        Ok(checked)
    }

    /// What no schema says: a heartbeat's day is a real date that the
    /// tables can hold, and the report was not sent from too far in the
    /// future.
    ///
    /// A heartbeat's day is the report itself (the day the machine counts
    /// as active), so a day before 1970 (ClickHouse's first `Date`) or past
    /// the server's today by more than the allowed skew is refused. A
    /// `sent_at` before 1970 is kept: the report is real, only the
    /// machine's clock is wrong, and the processor stores it as
    /// 1970-01-01 00:00:00, the mark of an unrepresentable clock.
    fn check_meaning(&self, checked: &Checked, now: OffsetDateTime) -> Result<(), ApiError> {
        if let Payload::Heartbeat(heartbeat) = &checked.envelope.payload {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let Ok(day) = time::Date::parse(&heartbeat.day, format) else {
                return Err(invalid(
                    "payload.day",
                    format!("{:?} is not a calendar date", heartbeat.day),
                ));
            };
            if day < FIRST_DAY {
                return Err(invalid(
                    "payload.day",
                    format!(
                        "{:?} is before 1970-01-01, the first day stored",
                        heartbeat.day
                    ),
                ));
            }
            if day > (now + self.max_clock_skew).date() {
                return Err(invalid(
                    "payload.day",
                    format!(
                        "{:?} is later than the server's today plus the allowed clock skew",
                        heartbeat.day
                    ),
                ));
            }
        }
        if checked.envelope.sent_at - now > self.max_clock_skew {
            return Err(ApiError::ClockSkew(
                self.max_clock_skew.whole_hours().unsigned_abs(),
            ));
        }
        Ok(())
    }

    /// The reference way: one report parsed as a JSON value, checked by the
    /// compiled JSON Schemas, the first violation worded as the error.
    pub fn check_value(&self, mut value: Value) -> Result<Checked<'static>, ApiError> {
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
        // The payload is moved out first: deserializing it as part of the
        // envelope would rebuild it node by node.
        let payload = value
            .as_object_mut()
            .and_then(|object| object.insert("payload".into(), Value::Null))
            .unwrap_or(Value::Null);
        let envelope: Envelope<()> = serde_json::from_value(value)
            .map_err(|e| invalid("", truncate(&e.to_string(), MAX_MESSAGE_CHARS)))?;
        // Within the schema, yet not of its type (a whole number written
        // `5.0`): refused here rather than by the processor.
        let payload = Payload::from_value(schema, payload)
            .map_err(|e| invalid("payload", truncate(&e.to_string(), MAX_MESSAGE_CHARS)))?;
        Ok(Checked {
            envelope: envelope.with_payload(payload),
            schema,
            sent_payload: None,
        })
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
        let body = serde_json::to_vec(&value).expect("encodes");
        match Validator::new(86_400).check_body(&body, NOW) {
            Err(Refusal {
                error: ApiError::Invalid { field, .. },
                ..
            }) => ("invalid".into(), Some(field)),
            Err(other) => (other.error.code().into(), None),
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
    fn the_depth_is_refused_whether_or_not_the_fast_way_looked() {
        let validator = Validator::new(86_400);
        for text in fixtures::ALL {
            let body = text.as_bytes();
            assert!(fast::check(body).is_some());
            assert!(crate::body::check_depth(body, fast::MAX_DEPTH).is_ok());
        }
        let sent = fixtures::CRASH.as_bytes();
        let too_deep = validator
            .check_body_within(sent, fast::MAX_DEPTH - 1, NOW)
            .expect_err("deeper than allowed");
        assert_eq!(too_deep.error.code(), "too_deep");
        assert!(
            validator
                .check_body_within(sent, fast::MAX_DEPTH, NOW)
                .is_ok()
        );
        let mut deep = crash();
        deep["payload"]["frames"][0]["module"] = json!([[["x"]]]);
        let body = serde_json::to_vec(&deep).expect("encodes");
        let refused = validator
            .check_body_within(&body, 6, NOW)
            .expect_err("too deep");
        assert_eq!(refused.error.code(), "too_deep");
    }

    #[test]
    fn the_payload_as_sent_decodes_to_the_checked_payload() {
        let validator = Validator::new(86_400);
        for text in fixtures::ALL {
            let checked = validator.check_body(text.as_bytes(), NOW).expect("valid");
            let sent = checked.sent_payload.expect("the fast way took it");
            let decoded = Payload::decode_json(checked.schema, sent).expect("decodes");
            assert_eq!(decoded, checked.envelope.payload);
        }
        let reference = validator
            .check_value(serde_json::from_str(fixtures::CRASH).expect("fixture"))
            .expect("valid");
        assert!(reference.sent_payload.is_none());
    }

    #[test]
    fn malformed_json_is_its_own_error() {
        let err = Validator::new(86_400)
            .check_body(b"{\"report_id\": ", NOW)
            .expect_err("malformed");
        assert_eq!(err.error.code(), "malformed_json");
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
    fn impossible_heartbeat_days_are_refused_at_the_edge() {
        let mut report: Value = serde_json::from_str(fixtures::HEARTBEAT).expect("fixture");
        report["payload"]["day"] = json!("2026-02-30");
        assert_eq!(
            error_of(report),
            ("invalid".into(), Some("payload.day".into()))
        );
    }

    #[test]
    fn heartbeat_days_no_table_can_hold_are_refused_at_the_edge() {
        let day = |text: &str| {
            let mut report: Value = serde_json::from_str(fixtures::HEARTBEAT).expect("fixture");
            report["payload"]["day"] = json!(text);
            error_of(report)
        };
        let refused = ("invalid".into(), Some("payload.day".into()));
        assert_eq!(day("1926-11-20"), refused);
        assert_eq!(day("1969-12-31"), refused);
        assert_eq!(day("2149-06-07"), refused);
        assert_eq!(
            day("2026-11-22"),
            refused,
            "past tomorrow by the server's clock"
        );
        assert_eq!(day("1970-01-01").0, "ok");
        assert_eq!(day("2026-11-21").0, "ok", "within the clock skew");
    }

    #[test]
    fn a_wrong_clock_before_1970_is_kept() {
        let mut report = crash();
        report["sent_at"] = json!("1969-12-31T23:59:59Z");
        assert_eq!(error_of(report).0, "ok");
        let mut report = crash();
        report["sent_at"] = json!("0001-01-01T00:00:00Z");
        assert_eq!(error_of(report).0, "ok");
    }

    #[test]
    fn whole_numbers_written_as_decimals_are_refused_at_the_edge() {
        let mut report: Value = serde_json::from_str(fixtures::FEEDBACK).expect("fixture");
        report["payload"]["rating"] = json!(4.0);
        assert_eq!(error_of(report), ("invalid".into(), Some("payload".into())));
    }

    /// serde takes a unit variant written as a one-field map; the schema
    /// does not, and neither may the fast way (found by the fuzzer).
    #[test]
    fn consent_written_as_a_map_is_refused() {
        for consent in [json!({"optional": null}), json!({"required": null})] {
            let mut report: Value = serde_json::from_str(fixtures::HEARTBEAT).expect("fixture");
            report["consent"] = consent;
            assert_eq!(error_of(report), ("invalid".into(), Some("consent".into())));
        }
    }

    #[test]
    fn every_fixture_takes_the_fast_way_to_the_reference_answer() {
        let validator = Validator::new(86_400);
        for text in fixtures::ALL {
            let (envelope, schema) = fast::check(text.as_bytes()).expect("fast way");
            let reference = validator
                .check_value(serde_json::from_str(text).expect("fixture"))
                .expect("valid");
            assert_eq!(schema, reference.schema);
            assert_eq!(envelope, reference.envelope);
        }
    }

    /// Whether the reference way may take what the fast way leaves to it:
    /// text with escapes or `null`, a decimal, or a payload the typed
    /// decoding refuses anyway.
    fn left_to_the_reference(body: &[u8]) -> bool {
        let text = std::str::from_utf8(body).expect("UTF-8");
        text.contains('\\') || text.contains("null") || text.contains(".0,") || text.contains(".0}")
    }

    /// Each fixture with one field replaced by each probe, removed, or
    /// joined by an unknown one: wherever the fast way takes a report, the
    /// schemas take it too, and give the same envelope; and it leaves to the
    /// reference way only what it says it does.
    #[test]
    fn the_fast_way_agrees_with_the_schemas_on_every_probe() {
        let validator = Validator::new(86_400);
        let (mut fast_taken, mut reference_only, mut cases) = (0, 0, 0);
        for text in fixtures::ALL {
            let fixture: Value = serde_json::from_str(text).expect("fixture");
            for (_, variants) in schemas::probes::variants(&fixture) {
                for report in variants {
                    cases += 1;
                    let body = serde_json::to_vec(&report).expect("encodes");
                    let reference = validator.check_value(report);
                    match (fast::check(&body), reference) {
                        (Some((envelope, schema)), Ok(checked)) => {
                            fast_taken += 1;
                            assert_eq!((schema, &envelope), (checked.schema, &checked.envelope));
                        }
                        (Some(_), Err(error)) => panic!(
                            "the fast way took what the schemas refuse ({error}): {}",
                            String::from_utf8_lossy(&body)
                        ),
                        (None, Ok(_)) => {
                            reference_only += 1;
                            assert!(
                                left_to_the_reference(&body),
                                "the fast way left a plain valid report: {}",
                                String::from_utf8_lossy(&body)
                            );
                        }
                        (None, Err(_)) => {}
                    }
                }
            }
        }
        assert!(cases > 5_000, "{cases} cases");
        assert!(
            fast_taken > 500,
            "{fast_taken} of {cases} taken the fast way"
        );
        assert!(reference_only > 0, "the escape hatch was exercised");
    }

    /// Where the schemas pin a field's form so it cannot carry personal
    /// data, both ways refuse the same values and take the same ones: each
    /// pinned field of each fixture set to each probe.
    #[test]
    fn pinned_fields_refuse_personal_data_the_same_both_ways() {
        let validator = Validator::new(86_400);
        let pinned = [
            "/os/product",
            "/os/version",
            "/os/locale",
            "/os/build",
            "/os/revision",
            "/payload/app/version",
            "/payload/module/version",
            "/payload/category",
            "/payload/language",
        ];
        let probes = [
            json!("Windows 10 Enterprise G"),
            json!("Windows"),
            json!("Windows Server 2022 Datacenter"),
            json!("Microsoft Windows 7"),
            json!("Microsoft"),
            json!("Windows 10 Enterprise G (张伟)"),
            json!("Windows 10 Pro 13800138000"),
            json!("10.0.19045"),
            json!("6.1.7601"),
            json!("138.0013.8000"),
            json!("10.0.19041.3570"),
            json!("10.0.0.1"),
            json!("1380.013.8000"),
            json!("010.6552.9988"),
            json!("555.123.4567"),
            json!("6222.0212.3456.7890"),
            json!("192.168.1.20"),
            json!("172.31.0.1"),
            json!("172.32.0.1"),
            json!("13800138000"),
            json!("zh-CN"),
            json!("zh-Hans-CN"),
            json!("es-419"),
            json!("zh-CN-zhangwei"),
            json!("zh-13800138"),
            json!("PC-LINA"),
            json!("zh-cn"),
            json!("shell.taskbar"),
            json!("win10.start_menu"),
            json!("zhang.wei138"),
            json!("zhangwei@sgcc"),
            json!(""),
            json!(19045),
            json!(99_999),
            json!(100_000),
            json!(999_999),
            json!(1_000_000),
            json!(13_800_138),
        ];
        let mut cases = 0;
        for text in fixtures::ALL {
            let fixture: Value = serde_json::from_str(text).expect("fixture");
            for pointer in pinned {
                if fixture.pointer(pointer).is_none() {
                    continue;
                }
                for probe in &probes {
                    let mut report = fixture.clone();
                    *report.pointer_mut(pointer).expect("field") = probe.clone();
                    let body = serde_json::to_vec(&report).expect("encodes");
                    let reference = validator.check_value(report).map(|c| c.envelope);
                    let ingest = validator.check_body(&body, NOW).map(|c| c.envelope);
                    cases += 1;
                    match (ingest, reference) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b),
                        (Err(_), Err(_)) => {}
                        (a, b) => panic!(
                            "{pointer} = {probe}: ingest {:?}, schemas {:?}",
                            a.map(|_| "ok").map_err(|e| e.error.code()),
                            b.map(|_| "ok").map_err(|e| e.code())
                        ),
                    }
                    if fast::check(&body).is_some() {
                        assert!(
                            validator
                                .check_value(serde_json::from_slice(&body).expect("json"))
                                .is_ok(),
                            "the fast way took {pointer} = {probe}"
                        );
                    }
                }
            }
        }
        assert!(cases > 300, "{cases} cases");
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
