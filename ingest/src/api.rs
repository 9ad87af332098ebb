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
use time::OffsetDateTime;
use uuid::Uuid;

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

pub fn router(state: Arc<AppState>) -> Router {
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

#[derive(Debug, Serialize)]
struct Kept {
    report_id: Uuid,
    status: &'static str,
}

/// `accepted` whether Kafka or the spool has it: both are durable.
pub(crate) fn status_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Duplicate => "duplicate",
        _ => "accepted",
    }
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
    use super::*;

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
