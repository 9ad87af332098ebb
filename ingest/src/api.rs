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
use schemas::{Outcome, SchemaId};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::body::{self, Layout};
use crate::error::{ApiError, ErrorBody};
use crate::intake::{self, Answer, Item};
use crate::outcome::Seen;
use crate::state::AppState;
use crate::validate::Refusal;

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
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/reports", post(submit_report))
        .route("/v1/reports/batch", post(submit_batch))
        .route("/v1/policy", get(policy))
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

#[derive(Debug, Serialize)]
struct Kept {
    report_id: Uuid,
    status: &'static str,
}

/// `accepted` whether Kafka or the spool has it: both are durable.
fn status_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Duplicate => "duplicate",
        _ => "accepted",
    }
}

/// Refuses a whole request before any report in it was looked at; counts
/// it as one report's outcome.
fn refuse_request(
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

async fn submit_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<(StatusCode, Json<Kept>), ApiError> {
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
    let bytes = body::read(
        &headers,
        request_body,
        limits.max_body_bytes,
        Duration::from_millis(limits.body_read_timeout_ms),
    )
    .await
    .map_err(|e| refuse_request(&state, e, Some(&org.id), 0))?;
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
            Json(Kept {
                report_id,
                status: status_word(outcome),
            }),
        )),
        Some(Answer::Refused(error)) => Err(error),
        None => Err(ApiError::Unavailable),
    }
}

#[derive(Debug, Serialize)]
struct BatchItem {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_id: Option<Uuid>,
    status: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

#[derive(Debug, Serialize)]
struct BatchResult {
    accepted: usize,
    rejected: usize,
    results: Vec<BatchItem>,
}

/// Splits a batch body into its reports' texts: a JSON array, or NDJSON.
fn split_batch(bytes: &[u8], layout: Layout, max_depth: usize) -> Result<Vec<&str>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::MalformedJson("the body is not UTF-8".into()))?;
    match layout {
        Layout::Ndjson => Ok(text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect()),
        Layout::Json => {
            body::check_depth(bytes, max_depth + 1)?;
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
                ApiError::MalformedJson(format!("a batch is a JSON array of reports: {e}"))
            })?;
            Ok(items.into_iter().map(RawValue::get).collect())
        }
    }
}

async fn submit_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<BatchResult>, ApiError> {
    let settings = state.settings();
    let org = settings
        .tokens
        .authenticate(&headers)
        .map_err(|e| refuse_request(&state, e, None, 0))?;
    let limits = &state.limits;
    let layout =
        Layout::from_headers(&headers).map_err(|e| refuse_request(&state, e, Some(&org.id), 0))?;
    let bytes = body::read(
        &headers,
        request_body,
        limits.max_batch_bytes,
        Duration::from_millis(limits.body_read_timeout_ms),
    )
    .await
    .map_err(|e| refuse_request(&state, e, Some(&org.id), 0))?;
    let texts = split_batch(&bytes, layout, limits.max_json_depth)
        .map_err(|e| refuse_request(&state, e, Some(&org.id), bytes.len()))?;
    if texts.len() > limits.max_batch_reports {
        let error = ApiError::TooManyReports(limits.max_batch_reports);
        return Err(refuse_request(&state, error, Some(&org.id), bytes.len()));
    }
    let count = u32::try_from(texts.len()).unwrap_or(u32::MAX);
    let _permits = state
        .in_flight
        .try_acquire_many(count.max(1))
        .map_err(|_| refuse_request(&state, ApiError::Overloaded, Some(&org.id), bytes.len()))?;
    let received_at = OffsetDateTime::now_utc();
    let items: Vec<Item> = texts
        .iter()
        .map(|text| {
            let prepared = if text.len() > limits.max_body_bytes {
                Err(Refusal::from(ApiError::TooLarge(limits.max_body_bytes)))
            } else {
                intake::prepare(&state, &settings, &org, text.as_bytes(), received_at)
            };
            Item {
                size: text.len(),
                prepared,
            }
        })
        .collect();
    let answers = intake::finish(&state, Some(&org.id), items).await;
    let mut result = BatchResult {
        accepted: 0,
        rejected: 0,
        results: Vec::with_capacity(answers.len()),
    };
    for (index, answer) in answers.into_iter().enumerate() {
        let item = match answer {
            Answer::Kept { report_id, outcome } => {
                result.accepted += 1;
                BatchItem {
                    index,
                    report_id: Some(report_id),
                    status: status_word(outcome),
                    error: None,
                }
            }
            Answer::Refused(error) => {
                result.rejected += 1;
                BatchItem {
                    index,
                    report_id: report_id_of(texts[index]),
                    status: "rejected",
                    error: Some(error.body()),
                }
            }
        };
        result.results.push(item);
    }
    Ok(Json(result))
}

/// The report id a refused item carried, if it is readable at all.
fn report_id_of(text: &str) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct Id {
        report_id: Uuid,
    }
    serde_json::from_str::<Id>(text).ok().map(|id| id.report_id)
}

#[derive(Debug, Serialize)]
struct Policy {
    organisation: String,
    consent_cap: &'static str,
    report_types: Vec<ReportTypePolicy>,
    min_interval_secs: u64,
    limits: PolicyLimits,
}

#[derive(Debug, Serialize)]
struct ReportTypePolicy {
    schema: String,
    enabled: bool,
    min_consent: &'static str,
}

#[derive(Debug, Serialize)]
struct PolicyLimits {
    max_report_bytes: usize,
    max_batch_bytes: usize,
    max_batch_reports: usize,
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
        .map(|schema| ReportTypePolicy {
            schema: schema.to_string(),
            enabled: org.allows_type(schema.kind) && org.consent_cap.allows(schema.kind),
            min_consent: schema.kind.min_consent().as_str(),
        })
        .collect();
    Ok(Json(Policy {
        organisation: org.id.clone(),
        consent_cap: org.consent_cap.as_str(),
        report_types,
        min_interval_secs: org.min_interval_secs,
        limits: PolicyLimits {
            max_report_bytes: state.limits.max_body_bytes,
            max_batch_bytes: state.limits.max_batch_bytes,
            max_batch_reports: state.limits.max_batch_reports,
        },
    }))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready while not shutting down and either a Kafka broker answers or the
/// spool has room.
async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    if !state.is_ready() {
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
    use super::*;

    #[test]
    fn batches_split_as_arrays_or_lines() {
        let array = br#"[{"a": 1}, {"b": [2]}]"#;
        assert_eq!(
            split_batch(array, Layout::Json, 4).expect("array"),
            vec![r#"{"a": 1}"#, r#"{"b": [2]}"#]
        );
        let lines = b"{\"a\": 1}\n\n{broken\n{\"c\": 3}\n";
        assert_eq!(
            split_batch(lines, Layout::Ndjson, 4).expect("lines"),
            vec!["{\"a\": 1}", "{broken", "{\"c\": 3}"]
        );
        assert_eq!(
            split_batch(b"{\"not\": \"an array\"}", Layout::Json, 4)
                .expect_err("object")
                .code(),
            "malformed_json"
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
