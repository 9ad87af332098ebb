//! Retry rules of a flush: which answers are worth another try, and how
//! long to wait before it.

use std::time::{Duration, SystemTime};

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
    /// server asked for (`Retry-After`).
    pub fn delay_honouring(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay(attempt).max(retry_after.unwrap_or_default())
    }
}

/// `Retry-After`: delay-seconds, or an HTTP date (the time from `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What an HTTP status means for the reports of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    /// Try again later: 408, 429, 5xx (and anything unexpected).
    Retry,
    /// Retrying the same request cannot help: other 4xx.
    Final,
}

pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        408 | 429 => StatusClass::Retry,
        400..=499 => StatusClass::Final,
        _ => StatusClass::Retry,
    }
}

/// Item error codes of the batch endpoint that are worth retrying.
pub const RETRYABLE_ITEM_ERRORS: [&str; 4] =
    ["rate_limited", "spool_full", "unavailable", "overloaded"];

/// What a batch result item means for its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemFate {
    Accepted,
    Duplicate,
    Retry,
    Final,
}

pub fn classify_item(status: &str, error: Option<&str>) -> ItemFate {
    match status {
        "accepted" => ItemFate::Accepted,
        "duplicate" => ItemFate::Duplicate,
        "rejected" if error.is_some_and(|e| RETRYABLE_ITEM_ERRORS.contains(&e)) => ItemFate::Retry,
        "rejected" => ItemFate::Final,
        _ => ItemFate::Retry,
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
    fn statuses_are_final_only_for_4xx_other_than_408_and_429() {
        assert_eq!(classify_status(200), StatusClass::Success);
        assert_eq!(classify_status(202), StatusClass::Success);
        for s in [408, 429, 500, 502, 503, 504, 507] {
            assert_eq!(classify_status(s), StatusClass::Retry, "{s}");
        }
        for s in [400, 401, 403, 404, 413, 415, 422] {
            assert_eq!(classify_status(s), StatusClass::Final, "{s}");
        }
    }

    #[test]
    fn batch_items_retry_only_for_transient_codes() {
        assert_eq!(classify_item("accepted", None), ItemFate::Accepted);
        assert_eq!(classify_item("duplicate", None), ItemFate::Duplicate);
        for code in RETRYABLE_ITEM_ERRORS {
            assert_eq!(classify_item("rejected", Some(code)), ItemFate::Retry);
        }
        for code in [
            "invalid",
            "consent",
            "report_type_disabled",
            "clock_skew",
            "too_large",
        ] {
            assert_eq!(classify_item("rejected", Some(code)), ItemFate::Final);
        }
    }
}
