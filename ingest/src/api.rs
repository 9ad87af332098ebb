//! The HTTP routes. The contract is `ingest/openapi.json`, served at
//! `GET /openapi.json`; a test keeps the two in step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schemas::SchemaId;
use schemas::contract::{Accepted, Policy, PolicyLimits, ReportStatus, TypePolicy};
use serde_json::Value;
use time::OffsetDateTime;

use crate::batch;
use crate::body::{self, Layout};
use crate::budget::Reservation;
use crate::error::ApiError;
use crate::intake::{self, Answer, Item};
use crate::outcome::Seen;
use crate::state::AppState;

/// The hand-written part of the OpenAPI document.
const OPENAPI_TEMPLATE: &str = include_str!("../openapi.json");

/// The OpenAPI 3.1 document of this API: `ingest/openapi.json` with the
/// envelope and payload JSON Schemas of `schemas/json/` inserted, so the
/// contract clients read is the one ingest validates against.
pub fn openapi_document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc: Value = serde_json::from_str(OPENAPI_TEMPLATE).expect("openapi.json is JSON");
        let schemas = &mut doc["components"]["schemas"];
        let mut insert = |name: String, text: &str| {
            let mut schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
            if let Some(object) = schema.as_object_mut() {
                object.remove("$schema");
                object.remove("$id");
            }
            schemas[name] = schema;
        };
        insert("Envelope".into(), schemas::json_schema::ENVELOPE);
        for id in SchemaId::KNOWN {
            insert(payload_schema_name(id), schemas::json_schema::payload(id));
        }
        doc.to_string()
    })
}

/// `crash/1` → `CrashV1Payload`.
fn payload_schema_name(id: SchemaId) -> String {
    let camel: String = id
        .kind
        .as_str()
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{camel}V{}Payload", id.version)
}

/// Every route: (method, path). The OpenAPI test checks both ways.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/reports"),
    ("POST", "/v1/reports/batch"),
    ("GET", "/v1/policy"),
    ("POST", "/v1/machines/erase"),
    ("POST", "/v1/machines/export"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/reports", post(submit_report))
        .route("/v1/reports/batch", post(batch::submit_batch))
        .route("/v1/policy", get(policy))
        .route("/v1/machines/erase", post(crate::rights::erase_machine))
        .route("/v1/machines/export", post(crate::rights::export_machine))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .with_state(state)
}

/// Counts every answered request by route and status, and times it.
async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = match request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    {
        Some("/v1/reports") => "reports",
        Some("/v1/reports/batch") => "batch",
        Some("/v1/policy") => "policy",
        Some("/healthz") => "healthz",
        Some("/readyz") => "readyz",
        Some("/metrics") => "metrics",
        Some("/openapi.json") => "openapi",
        _ => "other",
    };
    let start = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request(route, response.status().as_u16(), start.elapsed());
    response
}

/// Refuses a whole request before any report in it was looked at; counts
/// it as one report's outcome.
pub(crate) fn refuse_request(
    state: &AppState,
    error: ApiError,
    org_id: Option<&str>,
    size: usize,
) -> ApiError {
    let seen = Seen {
        org_id,
        size,
        ..Seen::default()
    };
    state.outcomes.refused(&error, &seen);
    error
}

/// Reserves a request's share of the byte budget before its body is read:
/// its `Content-Length` (the limit when it sends none), and the limit again
/// when the body is compressed, for the inflated copy. A body that says it
/// is over the limit is refused before it is read.
pub(crate) fn reserve_body(
    state: &AppState,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Reservation, ApiError> {
    let encoding = body::Encoding::from_headers(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = limit as u64;
    let wire = match declared {
        Some(length) if length > limit => return Err(ApiError::TooLarge(limit as usize)),
        Some(length) => length,
        None => limit,
    };
    let inflated = if encoding == body::Encoding::Identity {
        0
    } else {
        limit
    };
    state
        .bytes_in_flight
        .try_reserve(wire + inflated)
        .ok_or(ApiError::Overloaded)
}

async fn submit_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let settings = state.settings();
    let org = settings
        .tokens
        .authenticate(&headers)
        .map_err(|e| refuse_request(&state, e, None, 0))?;
    let _permit = state
        .in_flight
        .try_acquire()
        .map_err(|_| refuse_request(&state, ApiError::Overloaded, Some(&org.id), 0))?;
    let limits = &state.limits;
    Layout::from_headers(&headers).map_err(|e| refuse_request(&state, e, Some(&org.id), 0))?;
    let mut reservation = reserve_body(&state, &headers, limits.max_body_bytes)
        .map_err(|e| refuse_request(&state, e, Some(&org.id), 0))?;
    let bytes = body::read(
        &headers,
        request_body,
        limits.max_body_bytes,
        Duration::from_millis(limits.body_read_timeout_ms),
    )
    .await
    .map_err(|e| refuse_request(&state, e, Some(&org.id), 0))?;
    reservation.shrink_to(bytes.len() as u64);
    let received_at = OffsetDateTime::now_utc();
    let prepared = intake::prepare(&state, &settings, &org, &bytes, received_at);
    let item = Item {
        size: bytes.len(),
        prepared,
    };
    let answer = intake::finish(&state, Some(&org.id), vec![item]).await;
    match answer.into_iter().next() {
        Some(Answer::Kept { report_id, outcome }) => Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                report_id,
                status: ReportStatus::of(outcome),
            }),
        )),
        Some(Answer::Refused(error)) => Err(error),
        None => Err(ApiError::Unavailable),
    }
}

/// What the caller's organisation allows, so that clients can switch report
/// types off and pace themselves without being refused first.
async fn policy(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Policy>, ApiError> {
    let org = state.settings().tokens.authenticate(&headers)?;
    let report_types = SchemaId::KNOWN
        .iter()
        .map(|schema| TypePolicy {
            schema: schema.to_string(),
            enabled: org.allows_type(schema.kind) && org.consent_cap.allows(schema.kind),
            min_consent: schema.kind.min_consent(),
        })
        .collect();
    Ok(Json(Policy {
        organisation: org.id.clone(),
        consent_cap: org.consent_cap,
        report_types,
        min_interval_secs: org.min_interval_secs,
        limits: Some(PolicyLimits {
            max_report_bytes: state.limits.max_body_bytes,
            max_batch_bytes: state.limits.max_batch_bytes,
            max_batch_reports: state.limits.max_batch_reports,
        }),
    }))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready while not shutting down, once Kafka was reached at start (the
/// topics exist), and while either a Kafka broker answers or the spool has
/// room. Until Kafka was reached once, a spool with room does not make the
/// service ready: brokers that were never reached may be misnamed, and a
/// balancer should send to an instance that can forward.
async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    if !state.is_ready() || !state.delivery.topics_ready() {
        return Err(ApiError::Unavailable);
    }
    if state.delivery.spool_has_room()
        || state.delivery.kafka_reachable(Duration::from_secs(2)).await
    {
        Ok("ready")
    } else {
        Err(ApiError::Unavailable)
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(state.gauges()),
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        openapi_document(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use uuid::Uuid;

    use super::*;

    fn document() -> Value {
        serde_json::from_str(openapi_document()).expect("OpenAPI is JSON")
    }

    /// Follows a `$ref` within the document.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let target = reference.strip_prefix('#').expect("a local $ref");
                resolve(doc, doc.pointer(target).expect("the $ref resolves"))
            }
            None => schema,
        }
    }

    fn strings(value: &Value) -> BTreeSet<String> {
        let words = value.as_array().expect("an array of words");
        words
            .iter()
            .map(|v| v.as_str().expect("a word").to_string())
            .collect()
    }

    fn spelled<T: serde::Serialize>(words: &[T]) -> BTreeSet<String> {
        words
            .iter()
            .map(|w| serde_json::to_value(w).expect("encodes"))
            .map(|v| v.as_str().expect("a word").to_string())
            .collect()
    }

    /// Checks that `samples` of one place in a body, together (every
    /// optional field filled in one of them), have exactly the properties
    /// their schema lists, at every depth.
    fn same_fields(doc: &Value, schema: &Value, samples: &[&Value], at: &str) {
        let schema = resolve(doc, schema);
        if let Some(properties) = schema["properties"].as_object() {
            let objects: Vec<_> = samples.iter().filter_map(|v| v.as_object()).collect();
            let written: BTreeSet<&String> = objects.iter().flat_map(|o| o.keys()).collect();
            let documented: BTreeSet<&String> = properties.keys().collect();
            assert_eq!(written, documented, "the fields of {at}");
            for (name, property) in properties {
                let values: Vec<&Value> = objects.iter().filter_map(|o| o.get(name)).collect();
                same_fields(doc, property, &values, &format!("{at}.{name}"));
            }
        } else if schema["items"].is_object() {
            let items: Vec<&Value> = samples
                .iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .collect();
            same_fields(doc, &schema["items"], &items, &format!("{at}[]"));
        }
    }

    fn encode(value: impl serde::Serialize) -> Value {
        serde_json::to_value(value).expect("encodes")
    }

    /// Samples of each answer body ingest writes, named by the component
    /// that documents it, every optional field filled.
    fn samples() -> Vec<(&'static str, Value)> {
        use schemas::Consent;
        use schemas::contract::*;
        let id = Uuid::from_u128(7);
        let refused = ApiError::Invalid {
            field: "payload.day".into(),
            message: "not a date".into(),
        };
        let item = |index, status: ReportStatus, error| BatchItem {
            index,
            report_id: Some(id),
            status: status.into(),
            error,
        };
        let mut samples = vec![
            (
                "BatchResult",
                encode(BatchResult {
                    accepted: 2,
                    rejected: 1,
                    results: vec![
                        item(0, ReportStatus::Accepted, None),
                        item(1, ReportStatus::Duplicate, None),
                        item(2, ReportStatus::Rejected, Some(refused.body())),
                    ],
                }),
            ),
            (
                "Policy",
                encode(Policy {
                    organisation: "grid".into(),
                    consent_cap: Consent::Optional,
                    report_types: vec![TypePolicy {
                        schema: SchemaId::CRASH_V1.to_string(),
                        enabled: true,
                        min_consent: Consent::Required,
                    }],
                    min_interval_secs: 60,
                    limits: Some(PolicyLimits {
                        max_report_bytes: 1,
                        max_batch_bytes: 2,
                        max_batch_reports: 3,
                    }),
                }),
            ),
            (
                "MachineExport",
                encode(MachineExport {
                    machine_hash: "ab".into(),
                    organisation: "grid".into(),
                    exported_at: OffsetDateTime::UNIX_EPOCH,
                    tables: serde_json::Map::new(),
                    aggregates: serde_json::Map::new(),
                    processing_errors: vec![serde_json::json!({"detail": "ab"})],
                    truncated: false,
                }),
            ),
            (
                "MachineRequest",
                encode(MachineRequest {
                    machine_id: "machine-1".into(),
                }),
            ),
            (
                "ErasureAccepted",
                encode(ErasureAccepted {
                    erasure_id: id,
                    status: ReportStatus::Accepted,
                }),
            ),
        ];
        for status in [ReportStatus::Accepted, ReportStatus::Duplicate] {
            let accepted = Accepted {
                report_id: id,
                status,
            };
            samples.push(("Accepted", encode(accepted)));
        }
        for &code in ErrorCode::ALL {
            let body = ErrorBody {
                error: code.into(),
                message: "m".into(),
                field: Some("f".into()),
            };
            samples.push(("Error", encode(body)));
        }
        samples
    }

    #[test]
    fn each_answer_type_is_the_body_its_schema_documents() {
        let doc = document();
        for (name, sample) in samples() {
            let mut root = doc.clone();
            root["$ref"] = format!("#/components/schemas/{name}").into();
            let validator = jsonschema::draft202012::new(&root).expect("the schema compiles");
            if let Err(error) = validator.validate(&sample) {
                panic!("{name} {sample}: {error}");
            }
            let schema = &doc["components"]["schemas"][name];
            same_fields(&doc, schema, &[&sample], name);
        }
    }

    #[test]
    fn the_documented_words_are_the_contracts() {
        use schemas::Consent;
        use schemas::contract::{ErrorCode, ReportStatus};
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            strings(&schemas["ErrorCode"]["enum"]),
            spelled(ErrorCode::ALL),
            "error codes"
        );
        let item = &schemas["BatchResult"]["properties"]["results"]["items"];
        assert_eq!(
            strings(&item["properties"]["status"]["enum"]),
            spelled(ReportStatus::ALL),
            "a batch item's status"
        );
        assert_eq!(
            strings(&schemas["Accepted"]["properties"]["status"]["enum"]),
            spelled(&[ReportStatus::Accepted, ReportStatus::Duplicate])
        );
        let consents = spelled(&[Consent::Required, Consent::Optional]);
        let policy = &schemas["Policy"]["properties"];
        assert_eq!(strings(&policy["consent_cap"]["enum"]), consents);
        let types = &policy["report_types"]["items"]["properties"];
        assert_eq!(strings(&types["min_consent"]["enum"]), consents);
    }

    /// Each error response lists exactly the codes answered with its status,
    /// and every code but those of paths and methods the document does not
    /// list is in one.
    #[test]
    fn each_error_response_lists_the_codes_of_its_status() {
        use schemas::contract::ErrorCode;
        let doc = document();
        let codes_of = |status: u16| -> BTreeSet<String> {
            let codes: Vec<ErrorCode> = ErrorCode::ALL
                .iter()
                .copied()
                .filter(|c| c.status() == status)
                .collect();
            spelled(&codes)
        };
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    let status: u16 = status.parse().expect("a status");
                    let response = resolve(&doc, response);
                    let schema = &response["content"]["application/json"]["schema"];
                    let Some(codes) = schema["properties"]["error"]["enum"].as_array() else {
                        assert!(status < 400, "{method} {path} {status} lists its codes");
                        continue;
                    };
                    let codes = strings(&Value::from(codes.clone()));
                    assert_eq!(codes, codes_of(status), "{method} {path} {status}");
                    documented.extend(codes);
                }
            }
        }
        let undocumented: BTreeSet<String> = spelled(ErrorCode::ALL)
            .difference(&documented)
            .cloned()
            .collect();
        assert_eq!(
            undocumented,
            spelled(&[ErrorCode::NotFound, ErrorCode::MethodNotAllowed])
        );
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: Value = serde_json::from_str(openapi_document()).expect("OpenAPI is JSON");
        for name in [
            "Envelope",
            "CrashV1Payload",
            "FeatureRequestV1Payload",
            "HeartbeatV1Payload",
        ] {
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{name} inserted"
            );
        }
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
