//! The fast way through validation: one typed parse of the body, then every
//! constraint of the JSON Schemas checked on the typed fields.
//!
//! It may turn away more than the schemas do, never less. Whatever it does
//! not take (a string with escapes, a `null`, anything out of pattern) goes
//! the reference way: a `serde_json::Value` checked by the compiled JSON
//! Schemas, which also words the error a client sees. So every report gets
//! the answer the schemas give, and the common valid report is neither built
//! as a `Value` nor walked by the schema validator. The property tests in
//! `validate.rs` hold the two ways together.

use schemas::{
    Consent, CrashPayload, Envelope, FeatureRequestPayload, FeedbackPayload, HeartbeatPayload,
    OsInfo, Payload, SchemaId,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The envelope as sent. Borrowed strings fail on escapes, which sends
/// such a report the reference way; unknown or repeated fields do too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming<'a> {
    report_id: &'a str,
    schema: &'a str,
    machine_id: String,
    consent: Consent,
    sent_at: &'a str,
    os: OsInfo,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// The checked report, or `None` for "ask the schemas".
pub(super) fn check(body: &[u8]) -> Option<(Envelope<Payload>, SchemaId)> {
    let incoming: Incoming = serde_json::from_slice(body).ok()?;
    let schema = schema_id(incoming.schema)?;
    let report_id = uuid(incoming.report_id)?;
    let envelope_ok = chars_within(&incoming.machine_id, 8, 128)
        && chars_within(incoming.sent_at, 0, 64)
        && os(&incoming.os);
    if !envelope_ok {
        return None;
    }
    let sent_at = OffsetDateTime::parse(incoming.sent_at, &Rfc3339).ok()?;
    let raw = incoming.payload.get();
    // An optional field sent as `null` decodes as absent, but the schemas
    // refuse it: leave anything with a `null` in it to them.
    if memchr::memmem::find(raw.as_bytes(), b"null").is_some() {
        return None;
    }
    let payload = Payload::decode_json(schema, raw).ok()?;
    if !payload_ok(&payload) {
        return None;
    }
    let envelope = Envelope {
        report_id,
        schema: incoming.schema.to_string(),
        machine_id: incoming.machine_id,
        consent: incoming.consent,
        sent_at,
        os: incoming.os,
        payload,
    };
    Some((envelope, schema))
}

/// `^[a-z_]+/[0-9]+$`, and a schema this build knows.
fn schema_id(text: &str) -> Option<SchemaId> {
    let (kind, version) = text.split_once('/')?;
    let shaped = !kind.is_empty()
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        && digits(version, 1, usize::MAX);
    if !shaped {
        return None;
    }
    text.parse().ok()
}

/// `8-4-4-4-12` hexadecimal digits.
fn uuid(text: &str) -> Option<Uuid> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !shaped {
        return None;
    }
    Uuid::parse_str(text).ok()
}

fn os(os: &OsInfo) -> bool {
    chars_within(&os.product, 1, 128)
        && chars_within(&os.version, 0, 32)
        && dotted_version(&os.version)
        && locale(&os.locale)
        && matches!(os.arch.as_str(), "x64" | "x86" | "arm64")
}

fn payload_ok(payload: &Payload) -> bool {
    match payload {
        Payload::Crash(crash) => crash_ok(crash),
        Payload::FeatureRequest(request) => feature_request_ok(request),
        Payload::Feedback(feedback) => feedback_ok(feedback),
        Payload::Heartbeat(heartbeat) => heartbeat_ok(heartbeat),
    }
}

fn crash_ok(crash: &CrashPayload) -> bool {
    chars_within(&crash.app.name, 1, 260)
        && chars_within(&crash.app.version, 1, 64)
        && hex_code(&crash.exception_code, 8)
        && chars_within(&crash.module.name, 1, 260)
        && chars_within(&crash.module.version, 0, 64)
        && hex_code(&crash.module.offset, 16)
        && crash.frames.len() <= 256
        && crash.frames.iter().all(|frame| {
            chars_within(&frame.module, 1, 260)
                && frame
                    .function
                    .as_deref()
                    .is_none_or(|f| chars_within(f, 0, 512))
                && hex_code(&frame.offset, 16)
        })
}

fn feature_request_ok(request: &FeatureRequestPayload) -> bool {
    chars_within(&request.title, 1, 300)
        && request
            .body
            .as_deref()
            .is_none_or(|b| chars_within(b, 0, 10_000))
        && category(&request.category)
        && request
            .language
            .as_deref()
            .is_none_or(|l| chars_within(l, 0, 35))
}

fn feedback_ok(feedback: &FeedbackPayload) -> bool {
    (1..=5).contains(&feedback.rating)
        && feedback
            .text
            .as_deref()
            .is_none_or(|t| chars_within(t, 0, 10_000))
        && category(&feedback.category)
}

fn heartbeat_ok(heartbeat: &HeartbeatPayload) -> bool {
    let day = heartbeat.day.as_bytes();
    day.len() == 10
        && day.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
        && heartbeat.uptime_minutes.is_none_or(|m| m <= 1440)
}

/// JSON Schema's `minLength`/`maxLength`: counted in code points.
fn chars_within(text: &str, min: usize, max: usize) -> bool {
    // A code point takes at most 4 bytes: decide by length when that can.
    if text.len() < min || (text.len() > max.saturating_mul(4)) {
        return false;
    }
    if text.len() <= max && text.is_ascii() {
        return true;
    }
    (min..=max).contains(&text.chars().count())
}

/// `min..=max` ASCII digits and nothing else.
fn digits(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// `^0[xX][0-9a-fA-F]{1,max}$`.
fn hex_code(text: &str, max: usize) -> bool {
    let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) else {
        return false;
    };
    (1..=max).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `^[0-9]+\.[0-9]+\.[0-9]+$`.
fn dotted_version(text: &str) -> bool {
    let mut parts = 0;
    for part in text.split('.') {
        if !digits(part, 1, usize::MAX) {
            return false;
        }
        parts += 1;
    }
    parts == 3
}

/// `^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`.
fn locale(text: &str) -> bool {
    let mut parts = text.split('-');
    let language = parts.next().unwrap_or_default();
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|part| {
            (2..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// `^[a-z0-9_.-]{1,64}$`.
fn category(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_what_the_schemas_say() {
        assert!(hex_code("0xC0000005", 8) && hex_code("0X1", 8));
        assert!(!hex_code("0xC00000050", 8) && !hex_code("0x", 8) && !hex_code("C0000005", 8));
        assert!(!hex_code("0x1F\n", 16) && !hex_code("0x1g", 16));
        assert!(
            dotted_version("10.0.19045") && !dotted_version("10.0") && !dotted_version("10..1.2")
        );
        assert!(!dotted_version("10.0.19045.1") && !dotted_version("1.2.x"));
        assert!(locale("zh-CN") && locale("en") && locale("sr-Latn-RS") && locale("zh-Hans-CN"));
        assert!(!locale("z") && !locale("zh_CN") && !locale("zh-") && !locale("zh-C"));
        assert!(category("shell.taskbar") && !category("Shell") && !category(""));
        assert!(schema_id("crash/1").is_some() && schema_id("crash/+1").is_none());
        assert!(schema_id("Crash/1").is_none() && schema_id("crash/").is_none());
        assert!(uuid("00000000-0000-4000-8000-000000000000").is_some());
        assert!(uuid("00000000000040008000000000000000").is_none());
        assert!(uuid("{00000000-0000-4000-8000-000000000000}").is_none());
    }

    #[test]
    fn lengths_count_code_points() {
        assert!(chars_within("机器", 2, 2));
        assert!(!chars_within("机器", 3, 6));
        assert!(chars_within(&"机".repeat(300), 1, 300));
        assert!(!chars_within(&"机".repeat(301), 1, 300));
        assert!(chars_within("", 0, 0) && !chars_within("", 1, 5));
    }
}
