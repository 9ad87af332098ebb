//! `POST /v1/reports/batch`: up to `max_batch_reports` reports in one body.
//!
//! ```text
//!  token ─▶ one in-flight permit ─▶ byte budget (Content-Length, + the limit if compressed)
//!        ─▶ read the body (≤ max_batch_bytes, within the deadline)
//!        ─▶ blocking thread: inflate ─▶ split ─▶ a permit per further report ─▶ check each
//!        ─▶ deliver the ready ones together ─▶ one result per report
//! ```
//!
//! Nothing of the body is read before the request holds a permit and its
//! bytes are reserved; beyond either, the answer is 503 `overloaded` with
//! `Retry-After`, at once. Inflating and checking up to `max_batch_reports`
//! reports is CPU work, so it runs on a blocking thread, not on the async
//! workers that answer every other request; the permits and the byte budget
//! bound how many such threads are busy.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use schemas::contract::{BatchItem, BatchResult, ReportStatus};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::api::{refuse_request, reserve_body};
use crate::body::{self, Encoding, Layout};
use crate::error::ApiError;
use crate::intake::{self, Answer, Item};
use crate::state::AppState;
use crate::validate::Refusal;

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

/// Reads the body as it came, at most `limit` bytes, within `deadline`.
async fn read_raw(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, ApiError> {
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(deadline, collect).await {
        Err(_) => Err(ApiError::RequestTimeout),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(ApiError::TooLarge(limit)),
        Ok(Err(_)) => Err(ApiError::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// A batch's reports, checked, with what their checking holds.
struct Checked {
    /// Each report, and the id a refused one carried, if readable.
    items: Vec<(Item, Option<Uuid>)>,
    /// A permit for each report after the first.
    _permits: Option<OwnedSemaphorePermit>,
}

/// The CPU part of a batch, on a blocking thread: inflate, split, take a
/// permit for each further report, check each. An error refuses the whole
/// batch, with the size of the body it refers to.
fn check_batch(
    state: &Arc<AppState>,
    org: &crate::config::Organisation,
    raw: Bytes,
    encoding: Encoding,
    layout: Layout,
    reservation: &mut crate::budget::Reservation,
) -> Result<Checked, (ApiError, usize)> {
    let limits = &state.limits;
    let wire = raw.len() as u64;
    let bytes = body::decompress(encoding, raw, limits.max_batch_bytes).map_err(|e| (e, 0))?;
    if encoding != Encoding::Identity {
        reservation.shrink_to(wire + bytes.len() as u64);
    }
    let texts = split_batch(&bytes, layout, limits.max_json_depth).map_err(|e| (e, bytes.len()))?;
    if texts.len() > limits.max_batch_reports {
        let error = ApiError::TooManyReports(limits.max_batch_reports);
        return Err((error, bytes.len()));
    }
    let further = u32::try_from(texts.len().saturating_sub(1)).unwrap_or(u32::MAX);
    let permits = match further {
        0 => None,
        n => Some(
            Arc::clone(&state.in_flight)
                .try_acquire_many_owned(n)
                .map_err(|_| (ApiError::Overloaded, bytes.len()))?,
        ),
    };
    let settings = state.settings();
    let received_at = OffsetDateTime::now_utc();
    let items = texts
        .iter()
        .map(|text| {
            let prepared = if text.len() > limits.max_body_bytes {
                Err(Refusal::from(ApiError::TooLarge(limits.max_body_bytes)))
            } else {
                intake::prepare(state, &settings, org, text.as_bytes(), received_at)
            };
            let report_id = if prepared.is_err() {
                report_id_of(text)
            } else {
                None
            };
            let item = Item {
                size: text.len(),
                prepared,
            };
            (item, report_id)
        })
        .collect();
    Ok(Checked {
        items,
        _permits: permits,
    })
}

pub(crate) async fn submit_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<BatchResult>, ApiError> {
    let settings = state.settings();
    let org = settings
        .tokens
        .authenticate(&headers)
        .map_err(|e| refuse_request(&state, e, None, 0))?;
    let refuse = |error, size| refuse_request(&state, error, Some(&org.id), size);
    let _permit = Arc::clone(&state.in_flight)
        .try_acquire_owned()
        .map_err(|_| refuse(ApiError::Overloaded, 0))?;
    let limits = &state.limits;
    let layout = Layout::from_headers(&headers).map_err(|e| refuse(e, 0))?;
    let encoding = Encoding::from_headers(&headers).map_err(|e| refuse(e, 0))?;
    let mut reservation =
        reserve_body(&state, &headers, limits.max_batch_bytes).map_err(|e| refuse(e, 0))?;
    let raw = read_raw(
        request_body,
        limits.max_batch_bytes,
        Duration::from_millis(limits.body_read_timeout_ms),
    )
    .await
    .map_err(|e| refuse(e, 0))?;
    if encoding == Encoding::Identity {
        reservation.shrink_to(raw.len() as u64);
    }
    let checking = Arc::clone(&state);
    let checking_org = Arc::clone(&org);
    let checked = tokio::task::spawn_blocking(move || {
        let result = check_batch(
            &checking,
            &checking_org,
            raw,
            encoding,
            layout,
            &mut reservation,
        );
        (result, reservation)
    })
    .await;
    let (checked, _reservation) = match checked {
        Ok((Ok(checked), reservation)) => (checked, reservation),
        Ok((Err((error, size)), _)) => return Err(refuse(error, size)),
        Err(error) => {
            tracing::error!(%error, "checking a batch failed");
            return Err(refuse(ApiError::Unavailable, 0));
        }
    };
    let Checked { items, _permits } = checked;
    let (items, report_ids): (Vec<Item>, Vec<Option<Uuid>>) = items.into_iter().unzip();
    let answers = intake::finish(&state, Some(&org.id), items).await;
    let mut result = BatchResult {
        accepted: 0,
        rejected: 0,
        results: Vec::with_capacity(answers.len()),
    };
    for (index, (answer, refused_id)) in answers.into_iter().zip(report_ids).enumerate() {
        let item = match answer {
            Answer::Kept { report_id, outcome } => {
                result.accepted += 1;
                BatchItem {
                    index,
                    report_id: Some(report_id),
                    status: ReportStatus::of(outcome).into(),
                    error: None,
                }
            }
            Answer::Refused(error) => {
                result.rejected += 1;
                BatchItem {
                    index,
                    report_id: refused_id,
                    status: ReportStatus::Rejected.into(),
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
}
