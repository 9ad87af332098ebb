//! The JSON Schemas accept the sample reports and agree with the Rust types.

use schemas::{Envelope, Payload, SchemaId, fixtures, json_schema};
use serde_json::{Value, json};

fn validator(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

#[test]
fn every_fixture_is_valid_and_decodes() {
    let envelope = validator(json_schema::ENVELOPE);
    for text in fixtures::ALL {
        let value: Value = serde_json::from_str(text).expect("fixture is JSON");
        assert!(envelope.is_valid(&value), "envelope invalid: {text}");
        let report: Envelope = serde_json::from_value(value.clone()).expect("envelope decodes");
        let schema: SchemaId = report.schema.parse().expect("known schema");
        let payload = validator(json_schema::payload(schema));
        assert!(
            payload.is_valid(&value["payload"]),
            "payload invalid: {text}"
        );
        Payload::decode(schema, &report.payload).expect("payload decodes");
    }
}

#[test]
fn every_known_schema_compiles() {
    for schema in SchemaId::KNOWN {
        validator(json_schema::payload(schema));
    }
}

#[test]
fn schemas_reject_what_the_types_reject() {
    let crash = validator(json_schema::payload(SchemaId::CRASH_V1));
    let mut payload: Value =
        serde_json::from_str::<Value>(fixtures::CRASH).expect("json")["payload"].clone();
    assert!(crash.is_valid(&payload));
    payload["exception_code"] = json!("access violation");
    assert!(!crash.is_valid(&payload));

    let feedback = validator(json_schema::payload(SchemaId::FEEDBACK_V1));
    assert!(!feedback.is_valid(&json!({"rating": 6, "category": "update"})));
    assert!(feedback.is_valid(&json!({"rating": 5, "category": "update"})));

    let envelope = validator(json_schema::ENVELOPE);
    let mut report: Value = serde_json::from_str(fixtures::HEARTBEAT).expect("json");
    report["consent"] = json!("everything");
    assert!(!envelope.is_valid(&report));
}
