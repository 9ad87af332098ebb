//! Reading a request body safely: a size limit on the wire and again after
//! decompression (a compressed bomb is never inflated past the limit), a
//! deadline for the whole body, and a nesting-depth check before any JSON
//! parser sees it.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

/// How a body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let value = value.to_str().map_err(|_| ApiError::UnsupportedEncoding)?;
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            _ => Err(ApiError::UnsupportedEncoding),
        }
    }
}

/// How the reports in a body are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One JSON value: a report, or an array of reports.
    Json,
    /// One report per line.
    Ndjson,
}

impl Layout {
    /// From `Content-Type`; absent means JSON.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Ok(Layout::Json);
        };
        let value = value.to_str().map_err(|_| ApiError::UnsupportedMediaType)?;
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Layout::Json),
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => {
                Ok(Layout::Ndjson)
            }
            other if other.starts_with("application/") && other.ends_with("+json") => {
                Ok(Layout::Json)
            }
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }
}

/// Reads the whole body: at most `limit` bytes on the wire and after
/// decompression, within `deadline`.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ApiError> {
    let encoding = Encoding::from_headers(headers)?;
    let collect = Limited::new(body, limit).collect();
    let raw = match tokio::time::timeout(deadline, collect).await {
        Err(_) => return Err(ApiError::RequestTimeout),
        Ok(Err(error)) if error.is::<LengthLimitError>() => return Err(ApiError::TooLarge(limit)),
        Ok(Err(_)) => return Err(ApiError::RequestTimeout),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    decompress(encoding, raw, limit)
}

/// Inflates `raw`, stopping one byte past `limit`.
pub fn decompress(encoding: Encoding, raw: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let (name, reader): (&'static str, Box<dyn Read + '_>) = match encoding {
        Encoding::Identity => return Ok(raw),
        Encoding::Gzip => (
            "gzip",
            Box::new(flate2::read::MultiGzDecoder::new(&raw[..])),
        ),
        Encoding::Zstd => (
            "zstd",
            Box::new(
                zstd::stream::read::Decoder::new(&raw[..])
                    .map_err(|_| ApiError::BadEncoding("zstd"))?,
            ),
        ),
    };
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit + 1));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ApiError::BadEncoding(name))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

/// Refuses JSON nested deeper than `max` arrays and objects, without
/// parsing it: one pass over the bytes, jumping through strings (most of a
/// report) to their next quote or backslash.
pub fn check_depth(json: &[u8], max: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'"' => {
                // Inside a string: find its closing quote, stepping over
                // escapes.
                at += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &json[at.min(json.len())..]) {
                        Some(i) if json[at + i] == b'\\' => at += i + 2,
                        Some(i) => {
                            at += i;
                            break;
                        }
                        None => return Ok(()),
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::TooDeep(max));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).expect("gzip");
        Bytes::from(encoder.finish().expect("gzip"))
    }

    #[test]
    fn inflates_gzip_and_zstd_within_the_limit() {
        let text = b"{\"report\": 1}".repeat(10);
        assert_eq!(
            decompress(Encoding::Gzip, gzip(&text), 1000).expect("fits"),
            &text[..]
        );
        let z = zstd::encode_all(&text[..], 3).expect("zstd");
        assert_eq!(
            decompress(Encoding::Zstd, Bytes::from(z), 1000).expect("fits"),
            &text[..]
        );
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        // 64 MiB of zeros compress to about 64 KiB.
        let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
        assert!(bomb.len() < 1024 * 1024);
        let error = decompress(Encoding::Gzip, bomb, 1024 * 1024).expect_err("too large");
        assert_eq!(error.code(), "too_large");
    }

    #[test]
    fn corrupt_streams_are_a_bad_encoding() {
        let error =
            decompress(Encoding::Gzip, Bytes::from_static(b"not gzip"), 100).expect_err("corrupt");
        assert_eq!(error.code(), "malformed_encoding");
    }

    #[test]
    fn only_known_encodings_and_types_are_taken() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            Encoding::from_headers(&headers).expect("none"),
            Encoding::Identity
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(
            Encoding::from_headers(&headers).expect_err("brotli").code(),
            "unsupported_encoding"
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        assert_eq!(
            Layout::from_headers(&headers).expect("ndjson"),
            Layout::Ndjson
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(Layout::from_headers(&headers).expect("json"), Layout::Json);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        assert!(Layout::from_headers(&headers).is_err());
    }

    #[test]
    fn depth_counts_only_structure_outside_strings() {
        assert!(check_depth(br#"{"a": [{"b": "[[[[[[[["}]}"#, 3).is_ok());
        assert!(check_depth(br#"{"a": [{"b": [1]}]}"#, 3).is_err());
        assert!(check_depth(br#"{"a": "\"{{{{"}"#, 1).is_ok());
        // An escaped backslash ends before the quote, which closes the string.
        assert!(check_depth(br#"{"a": "x\\", "b": [[1]]}"#, 2).is_err());
        assert!(check_depth(br#"{"a": "x\\", "b": [1]}"#, 2).is_ok());
        assert!(check_depth(br#"{"a": "unterminated\"#, 1).is_ok());
        let deep = "[".repeat(10_000);
        assert_eq!(
            check_depth(deep.as_bytes(), 16).expect_err("deep").code(),
            "too_deep"
        );
    }
}
