//! Flushing the queue to ingest: `GET /v1/policy`, then
//! `POST /v1/reports/batch` (gzip'd JSON arrays of at most 100 reports),
//! oldest first, for at most `max_time`.
//!
//! A report leaves the queue only on an answer recognisably the edge's
//! (decided in [`crate::retry`]); any other answer stops the flush and keeps
//! every report:
//!
//! | answer | fate |
//! | --- | --- |
//! | `200` batch result, item `accepted` / `duplicate` | done: removed from the queue |
//! | item `rejected` with `rate_limited`, `spool_full`, `unavailable`, `overloaded` (the transient codes, `ErrorCode::is_transient`) | kept (to the back of the queue), retried after a pause |
//! | item `rejected` with a final code ([`crate::retry::final_for_item`]) | dropped, counted, printed |
//! | item with a status or code the reporter does not know | kept; the flush stops after this batch |
//! | `2xx` that is not a batch result with one item per report (an HTML page, a wrong count or id) | everything kept; the flush stops |
//! | whole request 408, 429, 5xx (but 501, 505), or no connection | kept; retried with exponential backoff with jitter, `Retry-After` honoured (at most an hour) |
//! | whole request 413 for several reports, or the edge's report-level code (`invalid`, `too_deep`, …) for several | the batch is halved and sent again, until the culprit is alone |
//! | the edge's `413 too_large` (or another report-level code) for one report | that report is dropped, counted, printed |
//! | the edge's 401 / 403 token codes | flush stops (an error), everything kept: the fault is the machine's token |
//! | anything else: a proxy's 404, 405, 415, an HTML 400, the edge's `not_found`, `unsupported_media_type`, `malformed_json` … | everything kept; the flush stops and says why |
//! | type switched off by the policy (or over the organisation's consent cap) | dropped and counted, never sent |
//! | queued longer than `max_age_days` | dropped and counted, never sent |
//! | not covered by the consent in force now ([`crate::consent`]: Group Policy or the file lowered it since) | dropped and counted, never sent |
//!
//! The policy's `min_interval_secs` is kept between two batches (also across
//! runs: the last batch's time is in `stats.json`); a pause that would leave
//! less than [`MIN_ATTEMPT`] before the deadline ends the flush instead, so
//! the flush ends on the last real answer rather than on a request cut
//! short by the deadline.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use schemas::Envelope;
use schemas::contract::{BatchResult, Policy};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;
use crate::config::{Config, FlushSettings, MAX_BATCH};
use crate::edge::Client;
pub use crate::edge::SendError;
use crate::queue::{Queue, Queued};
pub use crate::retry::Backoff;
use crate::retry::{ItemFate, Verdict, classify_item};

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
    /// Reports dropped because the consent in force no longer covers them.
    pub over_consent: u64,
    pub requests: u64,
    pub policy: Option<Policy>,
    /// Reports still queued.
    pub remaining: u64,
    /// Why reports remain (the last failure), if they do.
    pub last_error: Option<SendError>,
    /// The flush stopped on an answer it could not act on (`last_error`
    /// says which); every report it concerned is still queued.
    pub stopped: bool,
}

impl FlushReport {
    /// Everything was sent (or dropped by a rule) and nothing stopped it.
    pub fn complete(&self) -> bool {
        self.remaining == 0 && !self.stopped
    }
}

/// The least time a request is begun with after a pause: one begun with
/// less could only time out, and its timeout would hide the error of the
/// try before it (a certificate not trusted, a refused connection), the one
/// that says what to fix.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// Sleeps `delay` unless that would leave less than [`MIN_ATTEMPT`] before
/// `deadline`; says whether it slept. Any `delay` is safe, however long.
async fn pause(delay: Duration, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    if delay.saturating_add(MIN_ATTEMPT) >= left {
        return false;
    }
    tokio::time::sleep(delay).await;
    true
}

/// When the next batch may go, `secs` after `last`; `None` if that is past
/// any date `time` can hold.
fn next_batch_at(last: OffsetDateTime, secs: u64) -> Option<OffsetDateTime> {
    last.checked_add(time::Duration::seconds(i64::try_from(secs).ok()?))
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

/// What the items of a batch result asked for.
#[derive(Debug, Default)]
struct Sorted {
    retry: Vec<Queued>,
    retry_code: String,
    done: u64,
    rejected: u64,
    unknown: Option<SendError>,
}

fn sort_items(answer: &BatchResult, to_send: &[&Queued], report: &mut FlushReport) -> Sorted {
    let mut sorted = Sorted::default();
    let mut unknown = (0usize, String::new());
    for (q, item) in to_send.iter().zip(&answer.results) {
        let id = q.envelope.report_id;
        match classify_item(item) {
            ItemFate::Accepted => {
                sorted.done += 1;
                report.accepted.push(id);
            }
            ItemFate::Duplicate => {
                sorted.done += 1;
                report.duplicates.push(id);
            }
            ItemFate::Final => {
                sorted.rejected += 1;
                let error = item.error.as_ref();
                report.rejected.push(Rejected {
                    report_id: id,
                    schema: q.envelope.schema.clone(),
                    error: error.map(|e| e.error.to_string()).unwrap_or_default(),
                    message: error.map(|e| e.message.clone()).unwrap_or_default(),
                });
            }
            fate @ (ItemFate::Retry | ItemFate::Unknown) => {
                let code = item
                    .error
                    .as_ref()
                    .map_or_else(|| item.status.to_string(), |e| e.error.to_string());
                if fate == ItemFate::Unknown {
                    unknown = (unknown.0 + 1, format!("{} {code}", item.status));
                } else {
                    sorted.retry_code = code;
                }
                sorted.retry.push((*q).clone());
            }
        }
    }
    if unknown.0 > 0 {
        sorted.unknown = Some(SendError::ItemsUnknown {
            count: unknown.0,
            answer: unknown.1,
        });
    }
    sorted
}

/// Sends the queue to ingest; see the module documentation. `Err` only for a
/// refused token (nothing dropped) or a local queue failure; a flush that
/// ran out of time, could not reach ingest or stopped on an answer it could
/// not act on returns a report that is not [`FlushReport::complete`], with
/// `last_error`.
pub async fn flush(
    config: &Config,
    queue: &mut Queue,
    options: &FlushOptions,
) -> Result<FlushReport, Error> {
    let start = Instant::now();
    // Capped so that no `--max-seconds` overflows an `Instant`.
    let deadline = start + options.max_time.min(Duration::from_secs(10 * 365 * 86_400));
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
            Err(e) => match e.verdict(1) {
                Verdict::Auth => return Err(Error::Send(e)),
                Verdict::Retry => {
                    let delay = options.backoff.delay_honouring(attempt, e.retry_after());
                    attempt += 1;
                    report.last_error = Some(e);
                    if !pause(delay, deadline).await {
                        report.remaining = queue.len();
                        return Ok(report);
                    }
                }
                // No usable policy (an edge without the route, or not the
                // edge): send, and let the batch's answer decide.
                _ => break,
            },
        }
    }
    let policy = report.policy.clone();
    let cap = policy.as_ref().map(|p| p.consent_cap);
    if cap.is_some() && cap != queue.stats().consent_cap {
        queue.update_stats(|s| s.consent_cap = cap)?;
    }
    let consent = config.consent_decision(queue.stats().consent_cap).level;
    let bar = progress_bar(queue.len(), options.progress);
    let full_size = options.batch_size.clamp(1, MAX_BATCH);
    let mut batch_size = full_size;
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
        let (mut expired, mut disabled, mut over_consent) = (0u64, 0u64, 0u64);
        let mut to_send: Vec<&Queued> = Vec::new();
        for entry in &entries {
            match &entry.report {
                Some(q) if !queue.is_expired(q.queued_at, now) => {
                    let kind = q.envelope.schema.parse::<schemas::SchemaId>().ok();
                    if !consent.is_some_and(|c| kind.is_none_or(|k| c.allows(k.kind))) {
                        over_consent += 1;
                    } else if policy.as_ref().is_none_or(|p| p.allows(&q.envelope.schema)) {
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
        report.over_consent += over_consent;
        if to_send.is_empty() {
            queue.settle(&entries, &[])?;
            queue.update_stats(|s| {
                s.dropped_expired += expired;
                s.dropped_disabled += disabled;
                s.dropped_consent += over_consent;
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
            let next = next_batch_at(last, secs);
            if next.is_none_or(|next| next > now) {
                let wait = next.map_or(Duration::MAX, |next| {
                    Duration::try_from(next - now).unwrap_or_default()
                });
                bar.set_message(format!("pacing: {secs} s between batches"));
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
        let e = match answer {
            Ok(answer) => {
                let sorted = sort_items(&answer, &to_send, &mut report);
                queue.settle(&entries, &sorted.retry)?;
                queue.update_stats(|s| {
                    s.sent += sorted.done;
                    s.dropped_rejected += sorted.rejected;
                    s.dropped_expired += expired;
                    s.dropped_disabled += disabled;
                    s.dropped_consent += over_consent;
                    s.last_batch_at = Some(sent_at);
                })?;
                bar.inc((entries.len() - sorted.retry.len()) as u64);
                if let Some(unknown) = sorted.unknown {
                    report.stopped = true;
                    report.last_error = Some(unknown);
                    break;
                }
                if sorted.retry.is_empty() {
                    attempt = 0;
                    report.last_error = None;
                    // After a split found its culprit, grow back.
                    batch_size = (batch_size * 2).min(full_size);
                    continue;
                }
                SendError::ItemsRetryable {
                    count: sorted.retry.len(),
                    code: sorted.retry_code,
                }
            }
            Err(e) => e,
        };
        match e.verdict(to_send.len()) {
            Verdict::Auth => return Err(Error::Send(e)),
            Verdict::Split => batch_size = (to_send.len() / 2).max(1),
            Verdict::Final => {
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
                    s.dropped_consent += over_consent;
                })?;
                bar.inc(entries.len() as u64);
            }
            Verdict::Retry => {
                let delay = options.backoff.delay_honouring(attempt, e.retry_after());
                attempt += 1;
                report.last_error = Some(e);
                if !pause(delay, deadline).await {
                    break;
                }
            }
            Verdict::Stop | Verdict::Success => {
                report.stopped = true;
                report.last_error = Some(e);
                break;
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

    #[tokio::test]
    async fn a_pause_of_any_length_is_safe() {
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(!pause(Duration::MAX, deadline).await);
        assert!(!pause(Duration::from_secs(u64::MAX), deadline).await);
        assert!(pause(Duration::from_millis(1), deadline).await);
    }

    #[tokio::test]
    async fn no_pause_leaves_less_than_a_whole_attempt() {
        let deadline = Instant::now() + MIN_ATTEMPT + Duration::from_millis(400);
        assert!(
            !pause(Duration::from_millis(500), deadline).await,
            "a try after it would have under MIN_ATTEMPT"
        );
        assert!(pause(Duration::from_millis(10), deadline).await);
    }

    #[test]
    fn a_huge_interval_between_batches_is_never_reached() {
        let last = OffsetDateTime::now_utc();
        assert_eq!(
            next_batch_at(last, 60),
            Some(last + time::Duration::seconds(60))
        );
        assert_eq!(next_batch_at(last, u64::MAX), None);
        assert_eq!(next_batch_at(last, i64::MAX as u64), None);
    }
}
