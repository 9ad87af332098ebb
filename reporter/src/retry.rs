//! Retry rules of a flush, decided here and nowhere else: what an answer
//! means for the reports it concerns, which answers are worth another try,
//! and how long to wait before it.
//!
//! The rule: a report is dropped only on a final per-report error inside an
//! answer recognisably the edge's: an item of a `200` batch result, or a
//! whole-request error whose `{"error": code}` is one of the edge's codes
//! *with the status the edge gives it* ([`ErrorCode::status`]) and that
//! blames a report ([`REPORT_FAULTS`]) in a request of one report. Everything else
//! (an HTML 400, a proxy's 404, 405, 415, a 2xx that is not a batch result)
//! stops the flush and keeps every report.

use std::time::{Duration, SystemTime};

use schemas::contract::{BatchItem, ErrorCode, ReportStatus};

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Codes with which the edge refuses the whole request because of one
/// report in it: a request of several is split to find it; a request of one
/// report refused with one of these refuses that report for good.
pub const REPORT_FAULTS: [ErrorCode; 7] = [
    ErrorCode::TooDeep,
    ErrorCode::TooLarge,
    ErrorCode::Invalid,
    ErrorCode::ClockSkew,
    ErrorCode::UnknownSchema,
    ErrorCode::Consent,
    ErrorCode::ReportTypeDisabled,
];

/// Whether a batch result item refused with `code` is refused for good:
/// the report's fault ([`REPORT_FAULTS`]), or its own text is not JSON.
/// Item codes that are [`ErrorCode::is_transient`] keep it for a retry.
pub fn final_for_item(code: ErrorCode) -> bool {
    code == ErrorCode::MalformedJson || REPORT_FAULTS.contains(&code)
}

/// The edge's codes that say its enrollment token is refused.
pub const AUTH_ERRORS: [ErrorCode; 3] = [
    ErrorCode::Unauthenticated,
    ErrorCode::UnknownToken,
    ErrorCode::RevokedToken,
];

/// `code` if it is one of the edge's codes and `status` is the one the edge
/// answers it with.
pub fn edge_code(status: u16, code: Option<ErrorCode>) -> Option<ErrorCode> {
    code.filter(|c| c.status() == status)
}

/// Exponential backoff: attempt `n` (from 0) waits a random time in
/// `[c/2, c]`, where `c = min(base * 2^n, max)` ("equal jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The longest pause of attempt `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The pause of attempt `attempt` for a random `unit` in `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling / 2 + (ceiling / 2).mul_f64(unit.clamp(0.0, 1.0))
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }

    /// The pause of attempt `attempt`, but never shorter than what the
    /// server asked for (`Retry-After`, at most [`MAX_RETRY_AFTER`]).
    pub fn delay_honouring(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(attempt)
            .max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
    }
}

/// `Retry-After`: delay-seconds, or an HTTP date (the time from `now`);
/// never more than [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// What the answer to a whole request means for the reports in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the body must be the edge's batch result; its items decide.
    Success,
    /// Try again later, everything kept: 408, 429, 5xx (but 501 and 505),
    /// or no connection.
    Retry,
    /// Send the reports again in smaller requests: a 413 for several
    /// reports, or the edge blaming one report of several.
    Split,
    /// The edge refused the one report of the request for good.
    Final,
    /// The edge refused the enrollment token: stop, everything kept.
    Auth,
    /// Not an answer the reporter can act on (not the edge's, or the edge
    /// refusing the request itself: wrong path, method, media type):
    /// stop, everything kept.
    Stop,
}

/// Decides what the answer `status` (with the body's `error` code, if it
/// had one) to a request of `reports` reports means.
pub fn classify_answer(status: u16, code: Option<&str>, reports: usize) -> Verdict {
    match status {
        200..=299 => return Verdict::Success,
        408 | 429 => return Verdict::Retry,
        501 | 505 => return Verdict::Stop,
        500..=599 => return Verdict::Retry,
        413 if reports > 1 => return Verdict::Split,
        _ => {}
    }
    match edge_code(status, code.and_then(|c| c.parse().ok())) {
        Some(c) if AUTH_ERRORS.contains(&c) => Verdict::Auth,
        Some(c) if REPORT_FAULTS.contains(&c) && reports > 1 => Verdict::Split,
        Some(c) if REPORT_FAULTS.contains(&c) => Verdict::Final,
        _ => Verdict::Stop,
    }
}

/// What a batch result item means for its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemFate {
    Accepted,
    Duplicate,
    Retry,
    Final,
    /// A status or code this reporter does not know: kept, and the flush
    /// stops after this batch.
    Unknown,
}

pub fn classify_item(item: &BatchItem) -> ItemFate {
    let code = item.error.as_ref().and_then(|e| e.error.known());
    match (item.status.known(), code) {
        (Some(ReportStatus::Accepted), _) => ItemFate::Accepted,
        (Some(ReportStatus::Duplicate), _) => ItemFate::Duplicate,
        (Some(ReportStatus::Rejected), Some(c)) if c.is_transient() => ItemFate::Retry,
        (Some(ReportStatus::Rejected), Some(c)) if final_for_item(c) => ItemFate::Final,
        _ => ItemFate::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(5), Duration::from_millis(3200));
        assert_eq!(b.ceiling(6), Duration::from_secs(5));
        assert_eq!(b.ceiling(1000), Duration::from_secs(5), "no overflow");
        assert_eq!(b.delay_with(3, 0.0), Duration::from_millis(400));
        assert_eq!(b.delay_with(3, 1.0), Duration::from_millis(800));
        for attempt in 0..12 {
            for _ in 0..50 {
                let d = b.delay(attempt);
                let c = b.ceiling(attempt);
                assert!(
                    d >= c / 2 && d <= c,
                    "attempt {attempt}: {d:?} outside [{:?}, {c:?}]",
                    c / 2
                );
            }
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn a_huge_retry_after_is_cut_to_the_cap() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for huge in [
            "99999999999",
            "18446744073709551615",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(
                parse_retry_after(huge, now),
                Some(MAX_RETRY_AFTER),
                "{huge}"
            );
        }
        let b = Backoff::default();
        let wait = b.delay_honouring(0, Some(Duration::from_secs(u64::MAX)));
        assert_eq!(wait, MAX_RETRY_AFTER, "an unparsed huge value is cut too");
    }

    #[test]
    fn transient_answers_are_retried_whoever_sent_them() {
        for s in [408, 429, 500, 502, 503, 504, 507] {
            assert_eq!(classify_answer(s, None, 5), Verdict::Retry, "{s}");
            assert_eq!(classify_answer(s, None, 1), Verdict::Retry, "{s}");
        }
        assert_eq!(classify_answer(200, None, 5), Verdict::Success);
    }

    #[test]
    fn answers_not_recognisably_the_edges_stop_the_flush() {
        // A proxy's or wrong path's answers, with no code or an unknown one.
        for s in [301, 400, 401, 403, 404, 405, 410, 415, 422, 451, 501, 505] {
            assert_eq!(classify_answer(s, None, 5), Verdict::Stop, "{s}");
            assert_eq!(classify_answer(s, None, 1), Verdict::Stop, "{s}");
            assert_eq!(classify_answer(s, Some("nope"), 1), Verdict::Stop, "{s}");
        }
        // The edge's code with another status is not the edge's answer.
        assert_eq!(classify_answer(404, Some("invalid"), 1), Verdict::Stop);
        assert_eq!(classify_answer(400, Some("too_large"), 1), Verdict::Stop);
        // The edge refusing the request itself, not a report in it.
        for (code, s) in [
            ("not_found", 404),
            ("method_not_allowed", 405),
            ("unsupported_media_type", 415),
            ("unsupported_encoding", 415),
            ("malformed_json", 400),
            ("malformed_encoding", 400),
        ] {
            assert_eq!(classify_answer(s, Some(code), 1), Verdict::Stop, "{code}");
            assert_eq!(classify_answer(s, Some(code), 9), Verdict::Stop, "{code}");
        }
    }

    #[test]
    fn only_the_edge_refusing_a_lone_report_is_final() {
        for code in REPORT_FAULTS {
            let (status, code) = (code.status(), code.as_str());
            assert_eq!(
                classify_answer(status, Some(code), 1),
                Verdict::Final,
                "{code}"
            );
            assert_eq!(
                classify_answer(status, Some(code), 2),
                Verdict::Split,
                "{code}"
            );
        }
        // Any 413 for several reports: smaller requests may pass a proxy too.
        assert_eq!(classify_answer(413, None, 2), Verdict::Split);
        assert_eq!(
            classify_answer(413, Some("too_many_reports"), 3),
            Verdict::Split
        );
        // A proxy's 413 for one report is not the edge's refusal.
        assert_eq!(classify_answer(413, None, 1), Verdict::Stop);
        for (code, s) in [
            ("unauthenticated", 401),
            ("unknown_token", 401),
            ("revoked_token", 403),
        ] {
            assert_eq!(classify_answer(s, Some(code), 3), Verdict::Auth, "{code}");
        }
    }

    /// A batch result item as the edge (or another server) writes it.
    fn item(status: &str, error: Option<&str>) -> BatchItem {
        let mut json = serde_json::json!({"index": 0, "status": status});
        if let Some(code) = error {
            json["error"] = code.into();
            json["message"] = "m".into();
        }
        serde_json::from_value(json).expect("an item")
    }

    fn classify(status: &str, error: Option<&str>) -> ItemFate {
        classify_item(&item(status, error))
    }

    #[test]
    fn batch_items_are_final_only_for_known_final_codes() {
        assert_eq!(classify("accepted", None), ItemFate::Accepted);
        assert_eq!(classify("duplicate", None), ItemFate::Duplicate);
        for code in ["rate_limited", "spool_full", "unavailable", "overloaded"] {
            assert_eq!(classify("rejected", Some(code)), ItemFate::Retry);
        }
        for code in REPORT_FAULTS.iter().chain(&[ErrorCode::MalformedJson]) {
            assert_eq!(classify("rejected", Some(code.as_str())), ItemFate::Final);
        }
        assert_eq!(classify("rejected", None), ItemFate::Unknown);
        assert_eq!(classify("rejected", Some("new_code")), ItemFate::Unknown);
        assert_eq!(classify("queued", None), ItemFate::Unknown);
    }
}
