//! The HTTP contract's answers: what ingest serialises and what the
//! reporter and loadgen read. `ingest/openapi.json` documents the same
//! types; a test in ingest (`api::tests`) holds the two together, so a
//! change to either side fails until the other follows.
//!
//! - [`ErrorCode`]: every stable error code, with its HTTP status and the
//!   [`Outcome`] a report refused with it counts as, declared once;
//! - [`ErrorBody`]: the JSON of every error answer and of a refused batch
//!   item;
//! - [`Accepted`], [`BatchResult`] (of [`BatchItem`]s), [`ErasureAccepted`],
//!   [`MachineExport`]: the success answers;
//! - [`Policy`]: what an organisation allows (`GET /v1/policy`);
//! - [`MachineRequest`]: the body of a request about one machine.
//!
//! Words a client reads that a newer edge could add to (an item's status,
//! an error code) are [`Lenient`]: an unknown one is kept as it came, so
//! the client can say what it did not understand instead of failing to
//! read the whole answer. Fields an older edge or a test double may leave
//! out are `#[serde(default)]` when read; what ingest writes is unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::outcome::Outcome;
use crate::report::Consent;

/// Declares [`ErrorCode`] from one table: variant, code, HTTP status.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $status:literal;)*) => {
        /// Every way the edge refuses a request or a report: one stable
        /// code each, answered with one HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum ErrorCode {
            $($(#[$doc])* #[serde(rename = $code)] $variant,)*
        }

        impl ErrorCode {
            /// Every code, by status.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as clients, metrics and the outcomes topic see it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status a whole request refused with this code gets.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    /// Not JSON (or a batch that is not an array of reports).
    MalformedJson = "malformed_json", 400;
    /// A broken gzip or zstd stream.
    MalformedEncoding = "malformed_encoding", 400;
    /// Nested deeper than the limit.
    TooDeep = "too_deep", 400;
    /// The report breaks its schema; `field` names where.
    Invalid = "invalid", 400;
    /// `sent_at` too far in the future.
    ClockSkew = "clock_skew", 400;
    /// No bearer token.
    Unauthenticated = "unauthenticated", 401;
    /// A token no organisation holds.
    UnknownToken = "unknown_token", 401;
    /// A revoked token.
    RevokedToken = "revoked_token", 403;
    /// The consent given excludes the report.
    Consent = "consent", 403;
    /// The organisation switched the report type off.
    ReportTypeDisabled = "report_type_disabled", 403;
    /// No route for the path.
    NotFound = "not_found", 404;
    /// The route takes another method.
    MethodNotAllowed = "method_not_allowed", 405;
    /// The body did not arrive in time.
    RequestTimeout = "request_timeout", 408;
    /// Over a size limit (after decompression too).
    TooLarge = "too_large", 413;
    /// A batch of more reports than allowed.
    TooManyReports = "too_many_reports", 413;
    /// Not gzip, zstd or identity.
    UnsupportedEncoding = "unsupported_encoding", 415;
    /// Not JSON or NDJSON.
    UnsupportedMediaType = "unsupported_media_type", 415;
    /// A report type or version the edge does not know.
    UnknownSchema = "unknown_schema", 422;
    /// The machine or its organisation sends too fast; `Retry-After`.
    RateLimited = "rate_limited", 429;
    /// Kafka and the spool cannot take it; `Retry-After`.
    Unavailable = "unavailable", 503;
    /// Too much at once; `Retry-After`.
    Overloaded = "overloaded", 503;
    /// An export from an edge without a warehouse configured.
    ExportUnavailable = "export_unavailable", 503;
    /// Kafka is away and the spool is full; `Retry-After`.
    SpoolFull = "spool_full", 507;
}

impl ErrorCode {
    /// The outcome a report refused with this code counts as.
    pub fn outcome(self) -> Outcome {
        match self {
            ErrorCode::RateLimited => Outcome::RateLimited,
            ErrorCode::TooLarge | ErrorCode::TooManyReports => Outcome::TooLarge,
            ErrorCode::Consent | ErrorCode::ReportTypeDisabled => Outcome::Consent,
            _ => Outcome::Rejected,
        }
    }

    /// Whether the edge is short of room for now: the answer carries
    /// `Retry-After` and the same request may pass later.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Unavailable
                | ErrorCode::Overloaded
                | ErrorCode::SpoolFull
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code that is none of [`ErrorCode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an error code of this contract")]
pub struct UnknownCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_string()))
    }
}

/// A word from a closed set, as a client reads it: one this build knows,
/// or another, kept as it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Lenient<T> {
    Known(T),
    Other(String),
}

impl<T: Copy> Lenient<T> {
    /// The word, if this build knows it.
    pub fn known(&self) -> Option<T> {
        match self {
            Lenient::Known(word) => Some(*word),
            Lenient::Other(_) => None,
        }
    }
}

impl<T> From<T> for Lenient<T> {
    fn from(word: T) -> Self {
        Lenient::Known(word)
    }
}

impl<T: fmt::Display> fmt::Display for Lenient<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lenient::Known(word) => word.fmt(f),
            Lenient::Other(word) => f.write_str(word),
        }
    }
}

/// The JSON body of every error answer, and the error part of a refused
/// batch item: `{"error", "message", "field"?}`. The message is for
/// people; internal error text never appears in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: Lenient<ErrorCode>,
    #[serde(default)]
    pub message: String,
    /// The field at fault, e.g. `payload.frames[2].offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// What became of one report, as its answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Kafka or the edge's spool has it (both are durable).
    Accepted,
    /// A retry of a report accepted moments ago; not sent again.
    Duplicate,
    /// Refused; the error says why.
    Rejected,
}

impl ReportStatus {
    pub const ALL: &[ReportStatus] = &[
        ReportStatus::Accepted,
        ReportStatus::Duplicate,
        ReportStatus::Rejected,
    ];

    /// The status a report with `outcome` is answered with.
    pub fn of(outcome: Outcome) -> ReportStatus {
        match outcome {
            Outcome::Duplicate => ReportStatus::Duplicate,
            outcome if outcome.is_kept() => ReportStatus::Accepted,
            _ => ReportStatus::Rejected,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Accepted => "accepted",
            ReportStatus::Duplicate => "duplicate",
            ReportStatus::Rejected => "rejected",
        }
    }
}

impl fmt::Display for ReportStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `202` to `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub report_id: Uuid,
    /// `accepted` or `duplicate`.
    pub status: ReportStatus,
}

/// `200` to `POST /v1/reports/batch`: one result per report, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// Reports accepted, duplicates of accepted ones included.
    #[serde(default)]
    pub accepted: usize,
    #[serde(default)]
    pub rejected: usize,
    pub results: Vec<BatchItem>,
}

/// The answer for the `index`-th report of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    /// Position in the batch, from 0.
    pub index: usize,
    /// The report's id, when it was readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<Uuid>,
    pub status: Lenient<ReportStatus>,
    /// Why it was refused, when it was.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// `200` to `GET /v1/policy`: what the caller's organisation allows, so
/// that clients switch report types off and pace themselves without being
/// refused first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub organisation: String,
    /// The most consent the organisation lets its machines give.
    pub consent_cap: Consent,
    pub report_types: Vec<TypePolicy>,
    /// The least interval between two requests of a machine.
    #[serde(default)]
    pub min_interval_secs: u64,
    /// Always sent by ingest; `None` when read from an edge that does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PolicyLimits>,
}

impl Policy {
    /// Whether reports of `schema` may be sent (a schema the policy does
    /// not list is left to the edge to decide).
    pub fn allows(&self, schema: &str) -> bool {
        self.report_types
            .iter()
            .find(|t| t.schema == schema)
            .is_none_or(|t| t.enabled)
    }
}

/// One report type of a [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypePolicy {
    /// `crash/1` and the like.
    pub schema: String,
    /// On in the organisation's policy and within its consent cap.
    pub enabled: bool,
    pub min_consent: Consent,
}

/// The size limits of a [`Policy`], in bytes and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyLimits {
    pub max_report_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_batch_reports: usize,
}

/// `{"machine_id": "..."}`: the body of `POST /v1/machines/{erase,export}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineRequest {
    /// The machine's own id, as its reports carry it.
    pub machine_id: String,
}

/// `202` to `POST /v1/machines/erase`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureAccepted {
    /// Names the erasure in the `erasures` table.
    pub erasure_id: Uuid,
    /// Always `accepted`.
    pub status: ReportStatus,
}

/// `200` to `POST /v1/machines/export`: everything stored about one
/// machine of the caller's organisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineExport {
    /// The machine's keyed hash, as stored.
    pub machine_hash: String,
    pub organisation: String,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    /// Raw table → its rows of the machine, as stored.
    pub tables: serde_json::Map<String, serde_json::Value>,
    /// Aggregate table → the groups the machine is counted in (their
    /// dimension columns; the counts themselves merge every machine).
    pub aggregates: serde_json::Map<String, serde_json::Value>,
    /// Processing errors whose text names the machine.
    pub processing_errors: Vec<serde_json::Value>,
    /// Some table had more than the rows exported per table.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_spelled_once_and_parses_back() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_value(code).expect("encodes");
            assert_eq!(json, code.as_str());
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            assert!((400..600).contains(&code.status()), "{code}");
        }
        let mut spellings: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        spellings.sort_unstable();
        spellings.dedup();
        assert_eq!(spellings.len(), ErrorCode::ALL.len());
        assert!("brand_new".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn transient_codes_are_the_edges_own_shortages() {
        for &code in ErrorCode::ALL {
            assert_eq!(
                code.is_transient(),
                code == ErrorCode::RateLimited
                    || code.status() >= 500 && code != ErrorCode::ExportUnavailable,
                "{code}"
            );
        }
    }

    #[test]
    fn a_batch_item_reads_words_it_does_not_know() {
        let item: BatchItem = serde_json::from_str(
            r#"{"index": 1, "status": "parked", "error": "brand_new", "message": "m"}"#,
        )
        .expect("reads");
        assert_eq!(item.status, Lenient::Other("parked".into()));
        let error = item.error.expect("error");
        assert_eq!(error.error.to_string(), "brand_new");
        assert_eq!(error.error.known(), None);

        let accepted: BatchItem =
            serde_json::from_str(r#"{"index": 0, "status": "accepted"}"#).expect("reads");
        assert_eq!(accepted.status.known(), Some(ReportStatus::Accepted));
        assert_eq!(accepted.error, None);
    }

    #[test]
    fn a_refused_item_is_written_flat() {
        let item = BatchItem {
            index: 2,
            report_id: None,
            status: ReportStatus::Rejected.into(),
            error: Some(ErrorBody {
                error: ErrorCode::Invalid.into(),
                message: "bad".into(),
                field: Some("payload.day".into()),
            }),
        };
        assert_eq!(
            serde_json::to_string(&item).expect("encodes"),
            r#"{"index":2,"status":"rejected","error":"invalid","message":"bad","field":"payload.day"}"#
        );
    }

    #[test]
    fn outcomes_answer_with_their_status() {
        assert_eq!(ReportStatus::of(Outcome::Accepted), ReportStatus::Accepted);
        assert_eq!(ReportStatus::of(Outcome::Spooled), ReportStatus::Accepted);
        assert_eq!(
            ReportStatus::of(Outcome::Duplicate),
            ReportStatus::Duplicate
        );
        assert_eq!(ReportStatus::of(Outcome::Consent), ReportStatus::Rejected);
        assert_eq!(ErrorCode::TooManyReports.outcome(), Outcome::TooLarge);
        assert_eq!(ErrorCode::ReportTypeDisabled.outcome(), Outcome::Consent);
        assert_eq!(ErrorCode::UnknownToken.outcome(), Outcome::Rejected);
    }
}
