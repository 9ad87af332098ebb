//! Request bodies as ingest reads them: the `Content-Encoding` and
//! `Content-Type` headers, gzip/zstd inflation under a limit, and the
//! nesting-depth check.
//!
//! Input: byte 0 picks the encoding, byte 1 the limit and byte 2 the depth
//! limit; the rest is the body as it came off the wire (or, read as text, a
//! header value).
//!
//! Holds: nothing panics; an inflated body is never longer than its limit;
//! a larger limit changes no answer but `too_large`; the depth check agrees
//! with the depth of the parsed JSON wherever the body is JSON.

#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use telemetry_fuzz::ingest::body::{Encoding, Layout, check_depth, decompress};
use telemetry_fuzz::ingest::error::ApiError;

/// Large enough that every small limit's `too_large` has an answer here, and
/// small enough that a bomb costs little.
const LARGE_LIMIT: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let [selector, limit_byte, depth_byte, raw @ ..] = data else {
        return;
    };
    headers(raw);

    let encoding = match selector % 3 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        _ => Encoding::Zstd,
    };
    // 0, 1, 2, ... 255, then multiples of 256 up to 64 KiB.
    let limit = match *limit_byte {
        b if b < 128 => usize::from(b),
        b => usize::from(b - 127) * 512,
    };
    let body = Bytes::copy_from_slice(raw);
    let small = decompress(encoding, body.clone(), limit);
    let large = decompress(encoding, body.clone(), LARGE_LIMIT);
    match (&small, &large) {
        (Ok(out), _) if encoding == Encoding::Identity => {
            assert_eq!(out, &body, "identity passes the body through")
        }
        (Ok(out), Ok(more)) => {
            assert!(
                out.len() <= limit,
                "{} bytes past a limit of {limit}",
                out.len()
            );
            assert_eq!(out, more, "a larger limit inflated something else");
        }
        (Ok(_), Err(error)) => panic!("fits {limit} bytes, refused under {LARGE_LIMIT}: {error}"),
        (Err(ApiError::TooLarge(n)), Ok(more)) => {
            assert_eq!(*n, limit);
            assert!(more.len() > limit, "too large, yet {} bytes", more.len());
        }
        (Err(ApiError::TooLarge(_)), Err(_)) => {}
        (Err(ApiError::BadEncoding(_)), Err(ApiError::BadEncoding(_))) => {}
        (Err(small), large) => panic!("under {limit}: {small}; under {LARGE_LIMIT}: {large:?}"),
    }

    let max_depth = usize::from(depth_byte % 24);
    if let Ok(out) = &large {
        depth_agrees(out, max_depth);
    }
    depth_agrees(raw, max_depth);
});

/// Header values of any bytes: an answer, never a panic.
fn headers(raw: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(raw) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_ENCODING, value.clone());
    headers.insert(header::CONTENT_TYPE, value);
    let _ = Encoding::from_headers(&headers);
    let _ = Layout::from_headers(&headers);
}

/// Where `json` parses, `check_depth` refuses it exactly when its nesting
/// passes `max`.
fn depth_agrees(json: &[u8], max: usize) {
    let verdict = check_depth(json, max);
    if let Err(error) = &verdict {
        assert!(
            matches!(error, ApiError::TooDeep(m) if *m == max),
            "{error}"
        );
    }
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let depth = depth_of(&value);
    assert_eq!(
        verdict.is_err(),
        depth > max,
        "depth {depth}, limit {max}: {verdict:?} for {}",
        String::from_utf8_lossy(json)
    );
}

fn depth_of(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}
