//! Flushing the queue to ingest: `GET /v1/policy`, then
//! `POST /v1/reports/batch` (gzip'd JSON arrays of at most 100 reports),
//! oldest first, for at most `max_time`.
//!
//! What happens to each report:
//!
//! | answer | fate |
//! | --- | --- |
//! | item `accepted` / `duplicate` | done: removed from the queue |
//! | item `rejected` with `rate_limited`, `spool_full`, `unavailable`, `overloaded` | kept (to the back of the queue), retried after a pause |
//! | item `rejected` with any other code | final: dropped and counted |
//! | whole request 408, 429, 5xx, or no connection | kept; retried with exponential backoff with jitter, `Retry-After` honoured |
//! | whole request 401 / 403 (token unknown or revoked) | flush stops, everything kept: the fault is the machine's token, not the reports |
//! | whole request 413 | the batch is halved and sent again; a single report that is too large is final |
//! | whole request other 4xx | final for the reports in that request |
//! | type switched off by the policy (or over the organisation's consent cap) | dropped and counted, never sent |
//! | queued longer than `max_age_days` | dropped and counted, never sent |
//!
//! The policy's `min_interval_secs` is kept between two batches (also across
//! runs: the last batch's time is in `stats.json`); a pause that would end
//! after the deadline ends the flush instead.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use indicatif::{ProgressBar, ProgressStyle};
use schemas::Envelope;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;
use crate::config::{Config, FlushSettings, MAX_BATCH};
use crate::queue::{Queue, Queued};
pub use crate::retry::{
    Backoff, ItemFate, RETRYABLE_ITEM_ERRORS, StatusClass, classify_item, classify_status,
    parse_retry_after,
};

/// Why a request did not get its reports in.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    #[error("cannot reach {url}: {message}")]
    Connection { url: String, message: String },
    #[error("{url} answered {status} {}: {message}", code.as_deref().unwrap_or("(no code)"))]
    Status {
        url: String,
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{count} report(s) refused for now ({code}); they stay queued")]
    ItemsRetryable { count: usize, code: String },
    #[error(
        "the organisation asks for {secs} s between batches; the rest waits for the next flush"
    )]
    Paced { secs: u64 },
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
}

impl SendError {
    /// Whether the reports concerned stay queued for a later try.
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Status { status, .. } => classify_status(*status) != StatusClass::Final,
            _ => true,
        }
    }

    /// 401 or 403 on the whole request: the token is unknown or revoked.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            SendError::Status {
                status: 401 | 403,
                ..
            }
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// `GET /v1/policy`, the parts the reporter uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Policy {
    pub organisation: String,
    pub consent_cap: String,
    pub report_types: Vec<TypePolicy>,
    #[serde(default)]
    pub min_interval_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TypePolicy {
    pub schema: String,
    pub enabled: bool,
}

impl Policy {
    /// Whether reports of `schema` may be sent (a schema the policy does not
    /// list is left to the edge to decide).
    pub fn allows(&self, schema: &str) -> bool {
        self.report_types
            .iter()
            .find(|t| t.schema == schema)
            .is_none_or(|t| t.enabled)
    }
}

#[derive(Debug, Deserialize)]
struct BatchAnswer {
    results: Vec<ItemAnswer>,
}

#[derive(Debug, Deserialize)]
struct ItemAnswer {
    index: usize,
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    message: String,
}

/// How a flush runs.
#[derive(Debug, Clone)]
pub struct FlushOptions {
    pub max_time: Duration,
    /// Reports per request, 1 to 100.
    pub batch_size: usize,
    pub backoff: Backoff,
    /// Show a progress bar for more than 100 reports when stdout is a terminal.
    pub progress: bool,
}

impl FlushOptions {
    pub fn from_settings(settings: &FlushSettings) -> Self {
        FlushOptions {
            max_time: Duration::from_secs(settings.max_seconds),
            batch_size: settings.batch_size.clamp(1, MAX_BATCH),
            backoff: Backoff::default(),
            progress: true,
        }
    }
}

/// A report ingest refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub report_id: Uuid,
    pub schema: String,
    pub error: String,
    pub message: String,
}

/// What one flush did.
#[derive(Debug, Default)]
pub struct FlushReport {
    /// Report ids ingest accepted in this flush.
    pub accepted: Vec<Uuid>,
    /// Report ids ingest already had.
    pub duplicates: Vec<Uuid>,
    pub rejected: Vec<Rejected>,
    /// Reports dropped because the policy switched their type off, by schema.
    pub disabled: BTreeMap<String, u64>,
    /// Reports dropped for their age (or undecodable).
    pub expired: u64,
    pub requests: u64,
    pub policy: Option<Policy>,
    /// Reports still queued.
    pub remaining: u64,
    /// Why reports remain (the last failure), if they do.
    pub last_error: Option<SendError>,
}

impl FlushReport {
    pub fn complete(&self) -> bool {
        self.remaining == 0
    }
}

/// The HTTP side.
#[derive(Debug, Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(config: &Config) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("reporter/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client builds");
        Client {
            http,
            base: config.base_url().to_string(),
            token: config.token.clone(),
        }
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, SendError> {
        let response = request
            .bearer_auth(&self.token)
            .timeout(timeout.max(Duration::from_millis(100)))
            .send()
            .await
            .map_err(|e| SendError::Connection {
                url: url.to_string(),
                message: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        if classify_status(status) == StatusClass::Success {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = response.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(e) => (Some(e.error), e.message),
            Err(_) => (
                None,
                String::from_utf8_lossy(&body).chars().take(200).collect(),
            ),
        };
        Err(SendError::Status {
            url: url.to_string(),
            status,
            code,
            message,
            retry_after,
        })
    }

    async fn policy(&self, timeout: Duration) -> Result<Policy, SendError> {
        let url = format!("{}/v1/policy", self.base);
        let response = self.call(self.http.get(&url), &url, timeout).await?;
        response.json().await.map_err(|e| SendError::Protocol {
            url,
            message: e.to_string(),
        })
    }

    async fn batch(
        &self,
        reports: &[&Envelope],
        timeout: Duration,
    ) -> Result<BatchAnswer, SendError> {
        let url = format!("{}/v1/reports/batch", self.base);
        let json = serde_json::to_vec(reports).expect("reports encode");
        let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
        gz.write_all(&json).expect("gzip into memory");
        let body = gz.finish().expect("gzip into memory");
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(body);
        let response = self.call(request, &url, timeout).await?;
        response.json().await.map_err(|e| SendError::Protocol {
            url,
            message: e.to_string(),
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sleeps `delay` unless that would end after `deadline`; says whether it slept.
async fn pause(delay: Duration, deadline: Instant) -> bool {
    if Instant::now() + delay >= deadline {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

fn progress_bar(total: u64, wanted: bool) -> ProgressBar {
    if !wanted || total <= 100 || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} reports sent ({elapsed}) {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// Sends the queue to ingest; see the module documentation. `Err` only for a
/// refused token (nothing dropped) or a local queue failure; a flush that
/// ran out of time or could not reach ingest returns a report with
/// `remaining > 0` and `last_error`.
pub async fn flush(
    config: &Config,
    queue: &mut Queue,
    options: &FlushOptions,
) -> Result<FlushReport, Error> {
    let deadline = Instant::now() + options.max_time;
    let left = || deadline.saturating_duration_since(Instant::now());
    let client = Client::new(config);
    let mut report = FlushReport {
        expired: queue.expire(OffsetDateTime::now_utc())?,
        ..FlushReport::default()
    };
    let mut attempt = 0u32;
    while !queue.is_empty() && report.policy.is_none() {
        match client.policy(left()).await {
            Ok(policy) => report.policy = Some(policy),
            Err(e) if e.is_auth() => return Err(Error::Send(e)),
            Err(e) if e.retryable() => {
                let delay = options.backoff.delay_honouring(attempt, e.retry_after());
                attempt += 1;
                report.last_error = Some(e);
                if !pause(delay, deadline).await {
                    report.remaining = queue.len();
                    return Ok(report);
                }
            }
            // An edge without the policy route: send, and let it refuse.
            Err(_) => break,
        }
    }
    let policy = report.policy.clone();
    let bar = progress_bar(queue.len(), options.progress);
    let mut batch_size = options.batch_size.clamp(1, MAX_BATCH);
    attempt = 0;
    loop {
        if Instant::now() >= deadline {
            break;
        }
        let entries = queue.peek(batch_size)?;
        if entries.is_empty() {
            report.last_error = None;
            break;
        }
        let now = OffsetDateTime::now_utc();
        let (mut expired, mut disabled) = (0u64, 0u64);
        let mut to_send: Vec<&Queued> = Vec::new();
        for entry in &entries {
            match &entry.report {
                Some(q) if !queue.is_expired(q.queued_at, now) => {
                    if policy.as_ref().is_none_or(|p| p.allows(&q.envelope.schema)) {
                        to_send.push(q);
                    } else {
                        disabled += 1;
                        *report
                            .disabled
                            .entry(q.envelope.schema.clone())
                            .or_default() += 1;
                    }
                }
                _ => expired += 1,
            }
        }
        report.expired += expired;
        if to_send.is_empty() {
            queue.settle(&entries, &[])?;
            queue.update_stats(|s| {
                s.dropped_expired += expired;
                s.dropped_disabled += disabled;
            })?;
            bar.inc(entries.len() as u64);
            continue;
        }
        if let Some(secs) = policy
            .as_ref()
            .map(|p| p.min_interval_secs)
            .filter(|s| *s > 0)
            && let Some(last) = queue.stats().last_batch_at
        {
            let next = last + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX));
            if next > now {
                let wait = Duration::try_from(next - now).unwrap_or_default();
                bar.set_message(format!("pacing: {} s between batches", secs));
                if !pause(wait, deadline).await {
                    report.last_error = Some(SendError::Paced { secs });
                    break;
                }
            }
        }
        let envelopes: Vec<&Envelope> = to_send.iter().map(|q| &q.envelope).collect();
        report.requests += 1;
        let answer = client.batch(&envelopes, left()).await;
        let sent_at = OffsetDateTime::now_utc();
        match answer {
            Ok(answer) => {
                let mut retry: Vec<Queued> = Vec::new();
                let mut retry_code = String::new();
                let (mut done, mut rejected) = (0u64, 0u64);
                for (index, q) in to_send.iter().enumerate() {
                    let item = answer.results.iter().find(|r| r.index == index);
                    let fate = item.map_or(ItemFate::Retry, |r| {
                        classify_item(&r.status, r.error.as_deref())
                    });
                    let id = q.envelope.report_id;
                    match fate {
                        ItemFate::Accepted => report.accepted.push(id),
                        ItemFate::Duplicate => report.duplicates.push(id),
                        ItemFate::Final => {
                            rejected += 1;
                            report.rejected.push(Rejected {
                                report_id: id,
                                schema: q.envelope.schema.clone(),
                                error: item.and_then(|r| r.error.clone()).unwrap_or_default(),
                                message: item.and_then(|r| r.message.clone()).unwrap_or_default(),
                            });
                        }
                        ItemFate::Retry => {
                            retry_code = item
                                .and_then(|r| r.error.clone())
                                .unwrap_or_else(|| "no result".into());
                            retry.push((*q).clone());
                        }
                    }
                    if matches!(fate, ItemFate::Accepted | ItemFate::Duplicate) {
                        done += 1;
                    }
                }
                queue.settle(&entries, &retry)?;
                queue.update_stats(|s| {
                    s.sent += done;
                    s.dropped_rejected += rejected;
                    s.dropped_expired += expired;
                    s.dropped_disabled += disabled;
                    s.last_batch_at = Some(sent_at);
                })?;
                bar.inc((entries.len() - retry.len()) as u64);
                if retry.is_empty() {
                    attempt = 0;
                    report.last_error = None;
                } else {
                    report.last_error = Some(SendError::ItemsRetryable {
                        count: retry.len(),
                        code: retry_code,
                    });
                    let delay = options.backoff.delay(attempt);
                    attempt += 1;
                    if !pause(delay, deadline).await {
                        break;
                    }
                }
            }
            Err(e) if e.is_auth() => return Err(Error::Send(e)),
            Err(SendError::Status { status: 413, .. }) if to_send.len() > 1 => {
                batch_size = (to_send.len() / 2).max(1);
            }
            Err(e) if !e.retryable() => {
                let (code, message) = match &e {
                    SendError::Status { code, message, .. } => {
                        (code.clone().unwrap_or_default(), message.clone())
                    }
                    other => (String::new(), other.to_string()),
                };
                for q in &to_send {
                    report.rejected.push(Rejected {
                        report_id: q.envelope.report_id,
                        schema: q.envelope.schema.clone(),
                        error: code.clone(),
                        message: message.clone(),
                    });
                }
                let n = to_send.len() as u64;
                queue.settle(&entries, &[])?;
                queue.update_stats(|s| {
                    s.dropped_rejected += n;
                    s.dropped_expired += expired;
                    s.dropped_disabled += disabled;
                })?;
                bar.inc(entries.len() as u64);
            }
            Err(e) => {
                let delay = options.backoff.delay_honouring(attempt, e.retry_after());
                attempt += 1;
                report.last_error = Some(e);
                if !pause(delay, deadline).await {
                    break;
                }
            }
        }
    }
    bar.finish_and_clear();
    report.remaining = queue.len();
    if report.remaining > 0 && report.last_error.is_none() {
        report.last_error = Some(SendError::Protocol {
            url: config.base_url().to_string(),
            message: format!("flush time ({:?}) ran out", options.max_time),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_switches_types_off() {
        let policy: Policy = serde_json::from_str(
            r#"{"organisation":"grid","consent_cap":"optional","min_interval_secs":0,
                "limits":{"max_report_bytes":1,"max_batch_bytes":1,"max_batch_reports":1},
                "report_types":[{"schema":"crash/1","enabled":true,"min_consent":"required"},
                                {"schema":"feedback/1","enabled":false,"min_consent":"optional"}]}"#,
        )
        .unwrap();
        assert!(policy.allows("crash/1"));
        assert!(!policy.allows("feedback/1"));
        assert!(policy.allows("heartbeat/1"), "not listed: the edge decides");
    }
}
