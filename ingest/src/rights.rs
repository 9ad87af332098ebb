//! A machine's rights over what the pipeline holds about it, asked for by
//! its operator with the organisation's token and the machine's own id.
//!
//! In: `POST /v1/machines/erase` with `{"machine_id": "..."}`. Out: an
//! [`ErasureRequest`] on the reports topic, keyed by the machine hash like
//! the machine's reports (through the spool when Kafka is away, in order),
//! and `202 {"erasure_id", "status": "accepted"}`. The processor carries it
//! out after every report the machine sent before it (`processor::erase`)
//! and records it in `erasures`, without the machine. Both routes are held
//! to `[rights_limits]`, token buckets apart from the reports' (429
//! `rate_limited`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use schemas::contract::{ErasureAccepted, MachineExport, MachineRequest, ReportStatus};
use schemas::erasure::{ERASURE_SCHEMA, ErasureRequest};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::{refuse_request, reserve_body};
use crate::body::{self, Layout};
use crate::error::ApiError;
use crate::sink::{DeliveryError, Outgoing};
use crate::state::AppState;

/// The largest body a request about a machine may have.
const MAX_REQUEST_BYTES: usize = 4096;
/// The bounds the envelope's schema gives `machine_id`.
const MACHINE_ID_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// Reads and checks the body of a request about one machine.
async fn machine_request(
    state: &AppState,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<MachineRequest, ApiError> {
    if Layout::from_headers(headers)? != Layout::Json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let mut reservation = reserve_body(state, headers, MAX_REQUEST_BYTES)?;
    let bytes = body::read(
        headers,
        request_body,
        MAX_REQUEST_BYTES,
        Duration::from_millis(state.limits.body_read_timeout_ms),
    )
    .await?;
    reservation.shrink_to(bytes.len() as u64);
    // Through a value: serde would also take `["id"]` for the struct.
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if !value.is_object() {
        return Err(ApiError::MalformedJson("expected an object".into()));
    }
    let request: MachineRequest =
        serde_json::from_value(value).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if !MACHINE_ID_CHARS.contains(&request.machine_id.chars().count()) {
        return Err(ApiError::Invalid {
            field: "machine_id".into(),
            message: format!(
                "machine_id must be {} to {} characters",
                MACHINE_ID_CHARS.start(),
                MACHINE_ID_CHARS.end()
            ),
        });
    }
    Ok(request)
}

/// Takes one request from the machine's and the organisation's buckets of
/// `[rights_limits]`, or refuses it with 429 `rate_limited`.
fn within_rights_limits(
    state: &AppState,
    org_id: &str,
    machine_hash: &str,
) -> Result<(), ApiError> {
    state
        .rights_limiter
        .check(
            &state.settings().rights_limits,
            org_id,
            machine_hash,
            Instant::now(),
        )
        .map_err(|secs| refuse_request(state, ApiError::RateLimited(secs), Some(org_id), 0))
}

/// `POST /v1/machines/erase`.
pub(crate) async fn erase_machine(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<(StatusCode, Json<ErasureAccepted>), ApiError> {
    let org = state
        .settings()
        .tokens
        .authenticate(&headers)
        .map_err(|e| refuse_request(&state, e, None, 0))?;
    let request = machine_request(&state, &headers, request_body)
        .await
        .map_err(|e| refuse_request(&state, e, Some(&org.id), 0))?;
    let machine_hash = state.hasher.hash(&request.machine_id);
    within_rights_limits(&state, &org.id, &machine_hash)?;
    let erasure = ErasureRequest {
        erasure_id: Uuid::new_v4(),
        org_id: org.id.clone(),
        machine_hash,
        requested_at: OffsetDateTime::now_utc(),
    };
    let outgoing = Outgoing {
        key: erasure.machine_hash.clone(),
        schema: ERASURE_SCHEMA.to_string(),
        payload: serde_json::to_vec(&erasure).expect("an erasure request encodes"),
    };
    let delivered = state.delivery.deliver(&[&outgoing]).await;
    match delivered.into_iter().next() {
        Some(Ok(_)) => {
            tracing::info!(erasure_id = %erasure.erasure_id, org_id = %org.id, "erasure requested");
            Ok((
                StatusCode::ACCEPTED,
                Json(ErasureAccepted {
                    erasure_id: erasure.erasure_id,
                    status: ReportStatus::Accepted,
                }),
            ))
        }
        Some(Err(DeliveryError::SpoolFull)) => Err(ApiError::SpoolFull),
        Some(Err(DeliveryError::Unavailable)) | None => Err(ApiError::Unavailable),
    }
}

/// Rows exported per table at most; beyond it the export says `truncated`.
const MAX_EXPORT_ROWS: usize = 10_000;

/// `POST /v1/machines/export`.
pub(crate) async fn export_machine(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<MachineExport>, ApiError> {
    let org = state
        .settings()
        .tokens
        .authenticate(&headers)
        .map_err(|e| refuse_request(&state, e, None, 0))?;
    let request = machine_request(&state, &headers, request_body)
        .await
        .map_err(|e| refuse_request(&state, e, Some(&org.id), 0))?;
    let Some(warehouse) = state.warehouse.as_ref() else {
        return Err(ApiError::ExportUnavailable);
    };
    let machine_hash = state.hasher.hash(&request.machine_id);
    within_rights_limits(&state, &org.id, &machine_hash)?;
    let export = read_export(warehouse, &org.id, &machine_hash)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "export failed");
            ApiError::Unavailable
        })?;
    Ok(Json(export))
}

async fn read_export(
    warehouse: &clickhouse::Client,
    org_id: &str,
    machine_hash: &str,
) -> Result<MachineExport, clickhouse::error::Error> {
    use schemas::erasure::{MACHINE_TABLES, RAW_MACHINE_TABLES};
    let mut truncated = false;
    let mut rows_of = async |sql: String,
                             binds: &[&str]|
           -> Result<Vec<serde_json::Value>, clickhouse::error::Error> {
        let query = binds
            .iter()
            .fold(warehouse.query(&sql), |query, value| query.bind(*value));
        let text = query.fetch_bytes("JSONEachRow")?.collect().await?;
        let rows: Vec<serde_json::Value> = text
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        truncated |= rows.len() > MAX_EXPORT_ROWS;
        Ok(rows.into_iter().take(MAX_EXPORT_ROWS).collect())
    };
    let limit = MAX_EXPORT_ROWS + 1;
    let mut tables = serde_json::Map::new();
    for table in RAW_MACHINE_TABLES {
        let sql = format!(
            "SELECT * FROM {table} WHERE machine_hash = ? AND org_id = ? ORDER BY received_at LIMIT {limit}"
        );
        let rows = rows_of(sql, &[machine_hash, org_id]).await?;
        tables.insert(table.to_string(), rows.into());
    }
    let mut aggregates = serde_json::Map::new();
    for table in MACHINE_TABLES
        .iter()
        .filter(|t| !RAW_MACHINE_TABLES.contains(t))
    {
        #[derive(clickhouse::Row, Deserialize)]
        struct Column {
            name: String,
        }
        let dimensions: Vec<String> = warehouse
            .query(
                "SELECT name FROM system.columns WHERE database = currentDatabase() \
                 AND table = ? AND type NOT LIKE 'AggregateFunction%'",
            )
            .bind(*table)
            .fetch_all::<Column>()
            .await?
            .into_iter()
            .map(|c| c.name)
            .filter(|name| name != "machine_hash")
            .collect();
        // Aggregates carry no organisation column: the machine's rows are
        // those of its hash.
        let sql = format!(
            "SELECT DISTINCT {} FROM {table} WHERE machine_hash = ? LIMIT {limit}",
            dimensions.join(", ")
        );
        let rows = rows_of(sql, &[machine_hash]).await?;
        aggregates.insert(table.to_string(), rows.into());
    }
    let processing_errors = rows_of(
        format!("SELECT * FROM processing_errors WHERE position(detail, ?) > 0 LIMIT {limit}"),
        &[machine_hash],
    )
    .await?;
    Ok(MachineExport {
        machine_hash: machine_hash.to_string(),
        organisation: org_id.to_string(),
        exported_at: OffsetDateTime::now_utc(),
        tables,
        aggregates,
        processing_errors,
        truncated,
    })
}
