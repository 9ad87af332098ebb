//! Every way a request can fail, each with one HTTP status and one stable
//! code. Clients get `{"error", "message", "field"?}`; internal error text
//! stays in the logs.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or malformed Authorization header; expected `Bearer <enrollment token>`")]
    Unauthenticated,
    #[error("unknown enrollment token")]
    UnknownToken,
    #[error("enrollment token has been revoked")]
    RevokedToken,
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("schema {0:?} is not one this endpoint knows")]
    UnknownSchema(String),
    #[error("{0}")]
    Consent(String),
    #[error("sent_at is more than {0} hours in the future")]
    ClockSkew(u64),
    #[error("body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    #[error("no route for this path")]
    NotFound,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("the service cannot take reports right now; retry later")]
    Unavailable,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::UnknownToken => StatusCode::UNAUTHORIZED,
            ApiError::RevokedToken | ApiError::Consent(_) => StatusCode::FORBIDDEN,
            ApiError::MalformedJson(_) | ApiError::Invalid { .. } | ApiError::ClockSkew(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnknownSchema(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code clients and metrics see. Bounded: one per variant.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::UnknownToken => "unknown_token",
            ApiError::RevokedToken => "revoked_token",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Invalid { .. } => "invalid",
            ApiError::UnknownSchema(_) => "unknown_schema",
            ApiError::Consent(_) => "consent",
            ApiError::ClockSkew(_) => "clock_skew",
            ApiError::TooLarge(_) => "too_large",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable => "unavailable",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } => Some(field),
            ApiError::UnknownSchema(_) => Some("schema"),
            ApiError::ClockSkew(_) => Some("sent_at"),
            _ => None,
        }
    }
}

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "5";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            field: self.field(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unavailable) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
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
    fn unavailable_says_when_to_retry() {
        let response = ApiError::Unavailable.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
    }
}
