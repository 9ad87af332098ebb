//! The HTTP routes and what each request goes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use schemas::{AcceptedReport, Consent, Envelope, SchemaId};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Tokens;
use crate::config::{Config, Organisation};
use crate::error::ApiError;
use crate::privacy::MachineHasher;
use crate::sink::ReportSink;
use crate::validate::Validator;

/// Everything a request handler needs, built once from the configuration.
#[derive(Debug)]
pub struct AppState {
    tokens: Tokens,
    validator: Validator,
    hasher: MachineHasher,
    sink: ReportSink,
    max_body_bytes: usize,
    ready: AtomicBool,
}

impl AppState {
    pub fn new(config: &Config, sink: ReportSink) -> Self {
        AppState {
            tokens: Tokens::from_config(config),
            validator: Validator::new(config.limits.max_clock_skew_secs),
            hasher: MachineHasher::new(&config.machine_id_key),
            sink,
            max_body_bytes: config.limits.max_body_bytes,
            ready: AtomicBool::new(true),
        }
    }

    pub fn sink(&self) -> &ReportSink {
        &self.sink
    }

    /// From now on `/readyz` answers 503, so balancers stop sending.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.max_body_bytes;
    Router::new()
        .route("/v1/reports", post(submit_report))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Accepted {
    report_id: Uuid,
    status: &'static str,
}

async fn submit_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let org = state.tokens.authenticate(&headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(state.max_body_bytes)
        } else {
            ApiError::MalformedJson("the body could not be read".into())
        }
    })?;
    let received_at = OffsetDateTime::now_utc();
    let checked = state.validator.check_body(&body, received_at)?;
    check_consent(&org, checked.envelope.consent, checked.schema)?;
    let report = accept(&state, &org, checked.envelope, checked.schema, received_at);
    state.sink.send(&report).await.map_err(|error| {
        tracing::warn!(%error, report_id = %report.report_id, "report not delivered to kafka");
        ApiError::Unavailable
    })?;
    tracing::debug!(report_id = %report.report_id, schema = %report.schema, org = %org.id, "accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            report_id: report.report_id,
            status: "accepted",
        }),
    ))
}

/// A report may be sent only if both the machine's consent and its
/// organisation's cap allow its kind.
fn check_consent(org: &Organisation, consent: Consent, schema: SchemaId) -> Result<(), ApiError> {
    if !consent.allows(schema.kind) {
        return Err(ApiError::Consent(format!(
            "{} reports need consent `{}`; the machine sent `{}`",
            schema.kind,
            schema.kind.min_consent().as_str(),
            consent.as_str()
        )));
    }
    if !org.consent_cap.allows(schema.kind) {
        return Err(ApiError::Consent(format!(
            "the organisation allows consent up to `{}`, which excludes {} reports",
            org.consent_cap.as_str(),
            schema.kind
        )));
    }
    Ok(())
}

/// The report as it leaves the edge: organisation from the token, machine id
/// replaced by its keyed hash, arrival time stamped.
fn accept(
    state: &AppState,
    org: &Organisation,
    envelope: Envelope,
    schema: SchemaId,
    received_at: OffsetDateTime,
) -> AcceptedReport {
    AcceptedReport {
        report_id: envelope.report_id,
        schema,
        org_id: org.id.clone(),
        machine_hash: state.hasher.hash(&envelope.machine_id),
        consent: envelope.consent,
        sent_at: envelope.sent_at,
        received_at,
        os: envelope.os,
        payload: envelope.payload,
        scrubbed: Default::default(),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready while not shutting down and a Kafka broker answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    if !state.ready.load(Ordering::SeqCst) {
        return Err(ApiError::Unavailable);
    }
    if !state.sink.reachable(Duration::from_secs(2)).await {
        return Err(ApiError::Unavailable);
    }
    Ok("ready")
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::ReportKind;

    fn org(cap: Consent) -> Organisation {
        Organisation {
            id: "grid".into(),
            name: "Grid".into(),
            consent_cap: cap,
            tokens: vec![],
        }
    }

    #[test]
    fn consent_needs_both_machine_and_organisation() {
        let feature = SchemaId::new(ReportKind::FeatureRequest, 1);
        let crash = SchemaId::CRASH_V1;
        assert!(check_consent(&org(Consent::Optional), Consent::Optional, feature).is_ok());
        assert!(check_consent(&org(Consent::Optional), Consent::Required, feature).is_err());
        assert!(check_consent(&org(Consent::Required), Consent::Optional, feature).is_err());
        assert!(check_consent(&org(Consent::Required), Consent::Required, crash).is_ok());
    }
}
