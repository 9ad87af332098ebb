//! The HTTP side of a flush: `GET /v1/policy` and `POST /v1/reports/batch`,
//! and what their answers were. Deciding what an answer means is
//! [`crate::retry`]'s job; this module only reads answers faithfully.
//!
//! In: envelopes to post, the endpoint and token of the [`Config`]. Out: the
//! [`Policy`], a [`BatchResult`] checked to hold one result per report sent
//! (anything else is [`SendError::Protocol`]), or a [`SendError`] that keeps
//! the status, the edge's error code if the body carried one, and a short,
//! single-line excerpt of a body that was not the edge's.
//!
//! Over HTTPS the edge's certificate is checked as [`tls`] says.

use std::io::Write;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;
use schemas::Envelope;
use schemas::contract::{BatchResult, ErrorBody, MachineRequest, Policy};

use crate::config::Config;
use crate::edge::tls::Tls;
use crate::retry::{Verdict, classify_answer, edge_code, parse_retry_after};

pub mod tls;

/// Why a request did not get its reports in.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    #[error("cannot reach {url}: {message}")]
    Connection { url: String, message: String },
    #[error("{url} answered {status} {}: {message}", code.as_deref().unwrap_or("(no error code)"))]
    Status {
        url: String,
        status: u16,
        /// The body's `error`, when the body was the edge's error JSON.
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{count} report(s) refused for now ({code}); they stay queued")]
    ItemsRetryable { count: usize, code: String },
    #[error(
        "ingest answered {count} report(s) with {answer:?}, which this reporter does not know; \
         they stay queued"
    )]
    ItemsUnknown { count: usize, answer: String },
    #[error(
        "the organisation asks for {secs} s between batches; the rest waits for the next flush"
    )]
    Paced { secs: u64 },
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
}

impl SendError {
    /// What this failure means for the `reports` reports of the request
    /// (see [`classify_answer`]); a failure with no status is retried when
    /// transient (no connection, items refused for now, pacing) and stops
    /// the flush otherwise.
    pub fn verdict(&self, reports: usize) -> Verdict {
        match self {
            SendError::Status { status, code, .. } => {
                classify_answer(*status, code.as_deref(), reports)
            }
            SendError::Connection { .. }
            | SendError::ItemsRetryable { .. }
            | SendError::Paced { .. } => Verdict::Retry,
            SendError::ItemsUnknown { .. } | SendError::Protocol { .. } => Verdict::Stop,
        }
    }

    /// Whether the reports concerned stay queued for a later try.
    pub fn retryable(&self) -> bool {
        self.verdict(1) == Verdict::Retry
    }

    /// The edge refused the enrollment token (401/403 with its code).
    pub fn is_auth(&self) -> bool {
        self.verdict(1) == Verdict::Auth
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The HTTP client of a flush.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// The HTTPS settings, kept to probe a refusal (see [`Tls::probe`]).
    tls: Option<Tls>,
}

impl Client {
    pub fn new(config: &Config) -> Self {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("reporter/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &config.tls {
            builder = builder.use_preconfigured_tls(tls.client_config());
        }
        let http = builder.build().expect("HTTP client builds");
        Client {
            http,
            base: config.base_url().to_string(),
            token: config.token.clone(),
            tls: config.tls.clone(),
        }
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, SendError> {
        let response = match request
            .bearer_auth(&self.token)
            .timeout(timeout.max(Duration::from_millis(100)))
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return Err(self.unanswered(url, &e).await),
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let content_type = content_type(&response);
        let body = response.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) if edge_code(status, e.error.known()).is_some() => {
                (Some(e.error.to_string()), e.message)
            }
            Ok(e) => (
                Some(e.error.to_string()),
                format!("{} (not a code the edge answers {status} with)", e.message),
            ),
            Err(_) => (None, not_the_edges(&content_type, &body)),
        };
        Err(SendError::Status {
            url: url.to_string(),
            status,
            code,
            message,
            retry_after,
        })
    }

    pub async fn policy(&self, timeout: Duration) -> Result<Policy, SendError> {
        let url = format!("{}/v1/policy", self.base);
        let response = self.call(self.http.get(&url), &url, timeout).await?;
        response.json().await.map_err(|e| SendError::Protocol {
            url,
            message: e.to_string(),
        })
    }

    /// Posts `{"machine_id"}` to `/v1/machines/{action}` (`export` or
    /// `erase`) and returns the edge's JSON answer.
    pub async fn machine(
        &self,
        action: &str,
        machine_id: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, SendError> {
        let url = format!("{}/v1/machines/{action}", self.base);
        let request = self.http.post(&url).json(&MachineRequest {
            machine_id: machine_id.to_string(),
        });
        let response = self.call(request, &url, timeout).await?;
        response.json().await.map_err(|e| SendError::Protocol {
            url,
            message: format!("not the edge's JSON answer: {e}"),
        })
    }

    /// Posts `reports`; `Ok` only for a `2xx` whose body is a batch result
    /// with exactly one item per report, in order, each naming its report's
    /// id if it names one.
    pub async fn batch(
        &self,
        reports: &[&Envelope],
        timeout: Duration,
    ) -> Result<BatchResult, SendError> {
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
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        let bytes = response.bytes().await.map_err(|e| SendError::Connection {
            url: url.clone(),
            message: error_chain(&e),
        })?;
        let protocol = |message: String| SendError::Protocol {
            url: url.clone(),
            message,
        };
        let answer: BatchResult = serde_json::from_slice(&bytes).map_err(|_| {
            protocol(format!(
                "{status} without a batch result: {}",
                not_the_edges(&content_type, &bytes)
            ))
        })?;
        if answer.results.len() != reports.len() {
            return Err(protocol(format!(
                "{} result(s) for {} report(s)",
                answer.results.len(),
                reports.len()
            )));
        }
        for (i, (item, report)) in answer.results.iter().zip(reports).enumerate() {
            if item.index != i || item.report_id.is_some_and(|id| id != report.report_id) {
                return Err(protocol(format!(
                    "result {i} is for index {} (report {:?}), not report {}",
                    item.index, item.report_id, report.report_id
                )));
            }
        }
        Ok(answer)
    }
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no Content-Type")
        .to_string()
}

/// A body that is not the edge's JSON, said in one short line.
fn not_the_edges(content_type: &str, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut excerpt: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if excerpt.chars().count() > 120 {
        excerpt = excerpt.chars().take(120).collect::<String>() + "…";
    }
    format!(
        "not the edge's JSON ({content_type}, {} bytes): {excerpt:?}",
        body.len()
    )
}

impl Client {
    /// A request that got no answer, with what TLS says about it: the
    /// error's own hint, or, when it has none and the request did not
    /// time out, the hint of a probe of the edge (see [`Tls::probe`]).
    async fn unanswered(&self, url: &str, error: &reqwest::Error) -> SendError {
        let mut message = error_chain(error);
        if let (Some(tls), Some(target)) = (&self.tls, error.url())
            && target.scheme() == "https"
            && !error.is_timeout()
            && tls::hint(error).is_none()
            && let Some(hint) = tls.probe(target).await
        {
            message.push_str(&format!(" ({hint})"));
        }
        SendError::Connection {
            url: url.to_string(),
            message,
        }
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if let Some(hint) = tls::hint(error) {
        text.push_str(" (");
        text.push_str(hint);
        text.push(')');
    }
    text
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

    #[test]
    fn a_foreign_body_is_said_in_one_short_line() {
        let html = format!(
            "<html>\n<head><title>404 Not Found</title></head>\n{}",
            "x".repeat(500)
        );
        let said = not_the_edges("text/html", html.as_bytes());
        assert!(
            said.starts_with("not the edge's JSON (text/html, "),
            "{said}"
        );
        assert!(said.contains("<html> <head><title>404 Not Found"), "{said}");
        assert!(!said.contains('\n') && said.chars().count() < 200, "{said}");
    }
}
