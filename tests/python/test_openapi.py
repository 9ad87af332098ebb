"""The OpenAPI document ingest serves is a valid OpenAPI 3.1 document, and
its inserted schemas are the files in schemas/json."""

import json

from openapi_spec_validator import validate


def test_openapi_document_is_valid(openapi_document):
    doc = openapi_document
    validate(doc)  # raises on any violation of the OpenAPI 3.1 specification
    assert doc["openapi"].startswith("3.1")


def test_openapi_schemas_are_the_schema_files(root, openapi_document):
    doc = openapi_document
    envelope = json.loads((root / "schemas/json/envelope.schema.json").read_text(encoding="utf-8"))
    inserted = doc["components"]["schemas"]["Envelope"]
    assert inserted["required"] == envelope["required"]
    assert inserted["properties"].keys() == envelope["properties"].keys()
    for name, file in [
        ("CrashV1Payload", "crash.1.schema.json"),
        ("FeatureRequestV1Payload", "feature_request.1.schema.json"),
        ("FeedbackV1Payload", "feedback.1.schema.json"),
        ("HeartbeatV1Payload", "heartbeat.1.schema.json"),
    ]:
        payload = json.loads((root / "schemas/json" / file).read_text(encoding="utf-8"))
        assert doc["components"]["schemas"][name]["properties"] == payload["properties"], name
