//! The baseline: a bare HTTP server that answers 202 to the same requests
//! ingest gets, after reading their bodies, and does nothing else. Ingest's
//! throughput is reported against it.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;

pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    async fn accept(_body: Bytes) -> (StatusCode, &'static str) {
        (StatusCode::ACCEPTED, r#"{"status":"accepted"}"#)
    }
    async fn accept_batch(_body: Bytes) -> &'static str {
        r#"{"accepted":100,"rejected":0,"results":[]}"#
    }
    let app = Router::new()
        .route("/v1/reports", post(accept))
        .route("/v1/reports/batch", post(accept_batch));
    axum::serve(listener, app).await
}
