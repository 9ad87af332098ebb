//! Every way a request or a report can fail, each with one stable code of
//! the contract ([`ErrorCode`]: its HTTP status and outcome are decided
//! there). Clients get an [`ErrorBody`], `{"error", "message", "field"?}`;
//! internal error text stays in the logs.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemas::ReportKind;
use schemas::contract::{ErrorBody, ErrorCode};

use schemas::Outcome;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("missing or malformed Authorization header; expected `Bearer <enrollment token>`")]
    Unauthenticated,
    #[error("unknown enrollment token")]
    UnknownToken,
    #[error("enrollment token has been revoked")]
    RevokedToken,
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("schema {0:?} is not one this endpoint knows")]
    UnknownSchema(String),
    #[error("{0}")]
    Consent(String),
    #[error("the organisation has switched off {0} reports")]
    TypeDisabled(ReportKind),
    #[error("sent_at is more than {0} hours in the future")]
    ClockSkew(u64),
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    #[error("a batch holds at most {0} reports")]
    TooManyReports(usize),
    #[error("Content-Encoding must be gzip, zstd or identity")]
    UnsupportedEncoding,
    #[error("the body is not valid {0} data")]
    BadEncoding(&'static str),
    #[error("Content-Type must be application/json (or application/x-ndjson for batches)")]
    UnsupportedMediaType,
    #[error("the request body was not received in time")]
    RequestTimeout,
    #[error("too many reports; retry in {0} s")]
    RateLimited(u64),
    #[error("the spool for reports Kafka cannot take yet is full; retry later")]
    SpoolFull,
    #[error("the service is at capacity; retry later")]
    Overloaded,
    #[error("the service cannot take reports right now; retry later")]
    Unavailable,
    #[error(
        "this edge is not set up to export what is stored (no [warehouse] in its configuration)"
    )]
    ExportUnavailable,
    #[error("no route for this path")]
    NotFound,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
}

/// Seconds a client should wait before retrying when the service itself is
/// short of room.
const RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    /// The answer's status: the one [`ErrorCode::status`] gives its code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error_code().status()).expect("a contract status is valid")
    }

    /// The code of the contract this error answers with. Bounded: one per
    /// variant.
    pub fn error_code(&self) -> ErrorCode {
        use ApiError::*;
        match self {
            Unauthenticated => ErrorCode::Unauthenticated,
            UnknownToken => ErrorCode::UnknownToken,
            RevokedToken => ErrorCode::RevokedToken,
            MalformedJson(_) => ErrorCode::MalformedJson,
            TooDeep(_) => ErrorCode::TooDeep,
            Invalid { .. } => ErrorCode::Invalid,
            UnknownSchema(_) => ErrorCode::UnknownSchema,
            Consent(_) => ErrorCode::Consent,
            TypeDisabled(_) => ErrorCode::ReportTypeDisabled,
            ClockSkew(_) => ErrorCode::ClockSkew,
            TooLarge(_) => ErrorCode::TooLarge,
            TooManyReports(_) => ErrorCode::TooManyReports,
            UnsupportedEncoding => ErrorCode::UnsupportedEncoding,
            BadEncoding(_) => ErrorCode::MalformedEncoding,
            UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            RequestTimeout => ErrorCode::RequestTimeout,
            RateLimited(_) => ErrorCode::RateLimited,
            SpoolFull => ErrorCode::SpoolFull,
            Overloaded => ErrorCode::Overloaded,
            Unavailable => ErrorCode::Unavailable,
            ExportUnavailable => ErrorCode::ExportUnavailable,
            NotFound => ErrorCode::NotFound,
            MethodNotAllowed => ErrorCode::MethodNotAllowed,
        }
    }

    /// The code's spelling, as metrics and the outcomes topic label it.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// The outcome a report refused with this error counts as.
    pub fn outcome(&self) -> Outcome {
        self.error_code().outcome()
    }

    /// Seconds to wait before retrying, for errors that are worth a retry.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(secs) => Some(*secs),
            _ if self.error_code().is_transient() => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } => Some(field),
            ApiError::UnknownSchema(_) => Some("schema"),
            ApiError::ClockSkew(_) => Some("sent_at"),
            ApiError::Consent(_) => Some("consent"),
            ApiError::TypeDisabled(_) => Some("schema"),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.error_code().into(),
            message: self.to_string(),
            field: self.field().map(str::to_string),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_json_body_with_its_code() {
        let errors = [
            ApiError::Unauthenticated,
            ApiError::MalformedJson("expected value at line 1 column 1".into()),
            ApiError::Invalid {
                field: "payload.frames[0].offset".into(),
                message: "bad".into(),
            },
            ApiError::UnknownSchema("crash/9".into()),
            ApiError::TooLarge(10),
            ApiError::RateLimited(3),
            ApiError::SpoolFull,
            ApiError::Unavailable,
        ];
        for error in errors {
            let (status, code) = (error.status(), error.code());
            let response = error.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/json",
                "{code}"
            );
        }
    }

    #[test]
    fn retryable_errors_say_when_to_retry() {
        let response = ApiError::RateLimited(7).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        for error in [
            ApiError::SpoolFull,
            ApiError::Overloaded,
            ApiError::Unavailable,
        ] {
            let response = error.into_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        }
        assert!(
            ApiError::Invalid {
                field: String::new(),
                message: String::new()
            }
            .into_response()
            .headers()
            .get(header::RETRY_AFTER)
            .is_none()
        );
    }

    #[test]
    fn each_error_counts_as_one_outcome() {
        assert_eq!(ApiError::RateLimited(1).outcome(), Outcome::RateLimited);
        assert_eq!(ApiError::TooLarge(1).outcome(), Outcome::TooLarge);
        assert_eq!(ApiError::Consent(String::new()).outcome(), Outcome::Consent);
        assert_eq!(
            ApiError::TypeDisabled(ReportKind::Feedback).outcome(),
            Outcome::Consent
        );
        assert_eq!(ApiError::UnknownToken.outcome(), Outcome::Rejected);
    }
}
