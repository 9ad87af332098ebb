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

use schemas::build::BuildVersion;
use schemas::{
    AppInfo, Consent, CrashPayload, Envelope, FeatureRequestPayload, FeedbackPayload, Frame,
    HeartbeatPayload, ModuleInfo, OsInfo, Payload, ReportKind, SchemaId,
};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The deepest nesting of arrays and objects in a report the fast way
/// takes: the envelope, the payload, a crash's `frames`, a frame.
pub(super) const MAX_DEPTH: usize = 4;

/// An envelope's fields as sent. Borrowed strings fail on escapes, which
/// sends such a report the reference way; unknown or repeated fields do too.
#[derive(Default)]
struct Incoming<'a> {
    report_id: Option<&'a str>,
    schema: Option<&'a str>,
    machine_id: Option<String>,
    /// As text: serde would also take a unit variant written as a map
    /// (`{"optional": null}`), which the schema refuses.
    consent: Option<&'a str>,
    sent_at: Option<&'a str>,
    os: Option<OsInfo>,
    /// The payload, and its JSON text as sent.
    payload: Option<(AnyPayload, &'a str)>,
}

/// Every payload type's fields in one: the load generator (like any
/// client that sorts its keys) writes `payload` before `schema`, so the
/// payload is read before its type is known. Which fields a type has is
/// checked once the schema is known ([`AnyPayload::into_payload`]); the
/// field types are the payload types' own, so each field decodes as it
/// would there, and serde refuses a repeated or unknown field here as it
/// does there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnyPayload {
    app: Option<AppInfo>,
    exception_code: Option<String>,
    module: Option<ModuleInfo>,
    frames: Option<Vec<Frame>>,
    title: Option<String>,
    body: Option<String>,
    category: Option<String>,
    language: Option<String>,
    rating: Option<u8>,
    text: Option<String>,
    day: Option<String>,
    uptime_minutes: Option<u32>,
}

impl AnyPayload {
    /// The payload of `kind`, if the fields sent are all of that type and
    /// include every one it requires.
    fn into_payload(self, kind: ReportKind) -> Option<Payload> {
        Some(match (kind, self) {
            (
                ReportKind::Crash,
                AnyPayload {
                    app: Some(app),
                    exception_code: Some(exception_code),
                    module: Some(module),
                    frames: Some(frames),
                    title: None,
                    body: None,
                    category: None,
                    language: None,
                    rating: None,
                    text: None,
                    day: None,
                    uptime_minutes: None,
                },
            ) => Payload::Crash(CrashPayload {
                app,
                exception_code,
                module,
                frames,
            }),
            (
                ReportKind::FeatureRequest,
                AnyPayload {
                    app: None,
                    exception_code: None,
                    module: None,
                    frames: None,
                    title: Some(title),
                    body,
                    category: Some(category),
                    language,
                    rating: None,
                    text: None,
                    day: None,
                    uptime_minutes: None,
                },
            ) => Payload::FeatureRequest(FeatureRequestPayload {
                title,
                body,
                category,
                language,
            }),
            (
                ReportKind::Feedback,
                AnyPayload {
                    app: None,
                    exception_code: None,
                    module: None,
                    frames: None,
                    title: None,
                    body: None,
                    category: Some(category),
                    language: None,
                    rating: Some(rating),
                    text,
                    day: None,
                    uptime_minutes: None,
                },
            ) => Payload::Feedback(FeedbackPayload {
                rating,
                text,
                category,
            }),
            (
                ReportKind::Heartbeat,
                AnyPayload {
                    app: None,
                    exception_code: None,
                    module: None,
                    frames: None,
                    title: None,
                    body: None,
                    category: None,
                    language: None,
                    rating: None,
                    text: None,
                    day: Some(day),
                    uptime_minutes,
                },
            ) => Payload::Heartbeat(HeartbeatPayload {
                day,
                uptime_minutes,
            }),
            _ => return None,
        })
    }
}

/// The report's top-level object, read field by field.
///
/// Hand-written around serde_json for one reason: the payload must be
/// decoded and its exact text taken in one reading. serde_json hands out a
/// value's text only as a `RawValue`, which is a second reading of the
/// payload (a skip of every byte, a fifth of the fast way), and then the
/// typed decoding reads it again. Here only the object's punctuation
/// (`{`, `:`, `,`, `}` and whitespace) is read by hand; each key and each
/// value is decoded by serde_json, which also says where it ended.
///
/// The body is checked to be UTF-8 once, as a whole, and read as text:
/// serde_json then checks no string again (read from bytes, it checks each
/// string on its own, ~90 instructions for each of the ~130 strings, keys
/// included, of a crash).
fn incoming(body: &str) -> Option<Incoming<'_>> {
    let mut fields = Incoming::default();
    let mut at = 0;
    if punctuation(body, &mut at)? != b'{' {
        return None;
    }
    loop {
        let key: &str = value(body, &mut at)?;
        if punctuation(body, &mut at)? != b':' {
            return None;
        }
        let taken = match key {
            "report_id" => fields.report_id.replace(value(body, &mut at)?).is_none(),
            "schema" => fields.schema.replace(value(body, &mut at)?).is_none(),
            "machine_id" => fields.machine_id.replace(value(body, &mut at)?).is_none(),
            "consent" => fields.consent.replace(value(body, &mut at)?).is_none(),
            "sent_at" => fields.sent_at.replace(value(body, &mut at)?).is_none(),
            "os" => fields.os.replace(value(body, &mut at)?).is_none(),
            "payload" => {
                skip_whitespace(body, &mut at);
                let start = at;
                let payload = value(body, &mut at)?;
                let text = body.get(start..at)?;
                fields.payload.replace((payload, text)).is_none()
            }
            _ => false,
        };
        if !taken {
            return None;
        }
        match punctuation(body, &mut at)? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    skip_whitespace(body, &mut at);
    (at == body.len()).then_some(fields)
}

/// One JSON value at `at`, decoded by serde_json; `at` moves past it.
fn value<'a, T: Deserialize<'a>>(body: &'a str, at: &mut usize) -> Option<T> {
    let mut values = serde_json::Deserializer::from_str(body.get(*at..)?).into_iter::<T>();
    let decoded = values.next()?.ok()?;
    *at += values.byte_offset();
    Some(decoded)
}

/// The next byte after whitespace at `at`; `at` moves past it.
fn punctuation(body: &str, at: &mut usize) -> Option<u8> {
    skip_whitespace(body, at);
    let byte = *body.as_bytes().get(*at)?;
    *at += 1;
    Some(byte)
}

/// JSON's whitespace: space, tab, line feed, carriage return.
fn skip_whitespace(body: &str, at: &mut usize) {
    while body
        .as_bytes()
        .get(*at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        *at += 1;
    }
}

/// The checked report, or `None` for "ask the schemas".
#[cfg(test)]
pub(super) fn check(body: &[u8]) -> Option<(Envelope<Payload>, SchemaId)> {
    check_raw(body).map(|(envelope, schema, _)| (envelope, schema))
}

/// [`check`], with the payload's JSON text as sent: it decodes to the
/// returned payload and holds no `null`.
pub(super) fn check_raw(body: &[u8]) -> Option<(Envelope<Payload>, SchemaId, &str)> {
    let incoming = incoming(std::str::from_utf8(body).ok()?)?;
    let schema_text = incoming.schema?;
    let schema = schema_id(schema_text)?;
    let report_id = uuid(incoming.report_id?)?;
    let consent = match incoming.consent? {
        "required" => Consent::Required,
        "optional" => Consent::Optional,
        _ => return None,
    };
    let (machine_id, sent_at, os) = (incoming.machine_id?, incoming.sent_at?, incoming.os?);
    let envelope_ok =
        chars_within(&machine_id, 8, 128) && chars_within(sent_at, 0, 64) && self::os(&os);
    if !envelope_ok {
        return None;
    }
    let sent_at = OffsetDateTime::parse(sent_at, &Rfc3339).ok()?;
    let (payload, raw) = incoming.payload?;
    // An optional field sent as `null` decodes as absent, but the schemas
    // refuse it: leave anything with a `null` in it to them.
    if memchr::memmem::find(raw.as_bytes(), b"null").is_some() {
        return None;
    }
    let payload = payload.into_payload(schema.kind)?;
    if !payload_ok(&payload) {
        return None;
    }
    let envelope = Envelope {
        report_id,
        schema: schema_text.to_string(),
        machine_id,
        consent,
        sent_at,
        os,
        payload,
    };
    Some((envelope, schema, raw))
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
        && schemas::forms::os_product(&os.product)
        && chars_within(&os.version, 0, 32)
        && windows_version(&os.version)
        && os.build <= 99_999
        && os.revision <= 999_999
        && schemas::forms::locale(&os.locale)
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
        && file_version(&crash.app.version)
        && hex_code(&crash.exception_code, 8)
        && chars_within(&crash.module.name, 1, 260)
        && (crash.module.version.is_empty() || file_version(&crash.module.version))
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
            .is_none_or(schemas::forms::locale)
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

/// `^(5|6|10)\.[0-9]\.[0-9]{1,5}$`: [`BuildVersion::parse_os`].
fn windows_version(text: &str) -> bool {
    BuildVersion::parse_os(text, 0).is_some()
}

/// A file version (`app.version`, `module.version`): the pattern
/// `^[0-9]{1,5}(\.[0-9]{1,5}){0,3}$`, at most 64 characters, and not one of
/// the dotted forms of the schema's `not`.
fn file_version(text: &str) -> bool {
    let mut parts = [""; 4];
    let mut count = 0;
    for part in text.split('.') {
        if count == parts.len() || !digits(part, 1, 5) {
            return false;
        }
        parts[count] = part;
        count += 1;
    }
    !dotted_for_something_else(&parts[..count])
}

/// The schema's `not` for versions: a Chinese mobile (3-4-4, 4-3-4) or
/// landline number, a North American number, groups of four (a card, a
/// MAC address), a private IPv4 address. `parts` are 1 to 5 digits each,
/// at most 4 of them.
fn dotted_for_something_else(parts: &[&str]) -> bool {
    let mut lens = [0; 4];
    for (len, part) in lens.iter_mut().zip(parts) {
        *len = part.len();
    }
    let lens = &lens[..parts.len().min(4)];
    let first = |i: usize| parts[i].as_bytes()[0];
    let second = |i: usize| parts[i].as_bytes().get(1).copied().unwrap_or(0);
    let mobile_prefix = first(0) == b'1' && (b'3'..=b'9').contains(&second(0));
    match lens {
        [3, 4, 4] | [4, 3, 4] if mobile_prefix => true,
        [3 | 4, 3 | 4, 4]
            if first(0) == b'0'
                && (b'1'..=b'9').contains(&second(0))
                && (b'2'..=b'8').contains(&first(1)) =>
        {
            true
        }
        [3, 3, 4] if (b'2'..=b'9').contains(&first(0)) => true,
        [4, 4, 4] | [4, 4, 4, 4] => true,
        [3, _, 1..=3, 1..=3] => {
            let second_part: Option<u8> = parts[1].parse().ok();
            match (parts[0], parts[1]) {
                ("192", "168") | ("169", "254") => true,
                ("172", p) => p.len() == 2 && second_part.is_some_and(|n| (16..=31).contains(&n)),
                _ => false,
            }
        }
        _ => false,
    }
}

/// `^[a-z]+[0-9]{0,2}(_[a-z]+[0-9]{0,2})*(\.[a-z]+[0-9]{0,2}(_[a-z]+[0-9]{0,2})*)*$`,
/// at most 64 characters: dot-separated names of words joined by `_`,
/// each word lower-case letters and at most two digits at its end.
fn category(text: &str) -> bool {
    let word = |w: &str| {
        let letters = w.bytes().take_while(u8::is_ascii_lowercase).count();
        letters > 0 && digits(&w[letters..], 0, 2)
    };
    text.len() <= 64 && text.split('.').all(|name| name.split('_').all(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_what_the_schemas_say() {
        assert!(hex_code("0xC0000005", 8) && hex_code("0X1", 8));
        assert!(!hex_code("0xC00000050", 8) && !hex_code("0x", 8) && !hex_code("C0000005", 8));
        assert!(!hex_code("0x1F\n", 16) && !hex_code("0x1g", 16));
        assert!(windows_version("10.0.19045") && windows_version("6.1.7601"));
        assert!(
            !windows_version("10.0")
                && !windows_version("10..1")
                && !windows_version("138.0013.8000")
        );
        assert!(!windows_version("10.0.19045.1") && !windows_version("11.0.22000"));
        assert!(
            schemas::forms::locale("zh-CN")
                && schemas::forms::locale("en")
                && schemas::forms::locale("sr-Latn-RS")
                && schemas::forms::locale("zh-Hans-CN")
        );
        assert!(schemas::forms::locale("es-419") && schemas::forms::locale("zh-Hans"));
        assert!(
            !schemas::forms::locale("z")
                && !schemas::forms::locale("zh_CN")
                && !schemas::forms::locale("zh-")
                && !schemas::forms::locale("zh-C")
        );
        assert!(
            !schemas::forms::locale("zh-CN-zhangwei")
                && !schemas::forms::locale("zh-13800138")
                && !schemas::forms::locale("zh-CN-CN")
        );
        assert!(
            !schemas::forms::locale("PC-LINA")
                && !schemas::forms::locale("zh-Wang-CN")
                && !schemas::forms::locale("ZH-cn")
        );
        assert!(category("shell.taskbar") && category("update") && category("win10.start_menu"));
        assert!(!category("Shell") && !category("") && !category("13800138000"));
        assert!(
            !category("zhang.wei@x") && !category("a.b123") && !category(".a") && !category("a..b")
        );
        assert!(
            schemas::forms::os_product("Windows 10 Enterprise G")
                && schemas::forms::os_product("Windows")
        );
        assert!(
            schemas::forms::os_product("Windows Server 2022 Datacenter")
                && schemas::forms::os_product("Windows 8.1 Pro")
        );
        assert!(
            schemas::forms::os_product("Microsoft Windows 7")
                && !schemas::forms::os_product("Microsoft")
                && !schemas::forms::os_product("Microsoft  Windows")
        );
        assert!(
            !schemas::forms::os_product("Windows 10 Enterprise G (Zhang Wei)")
                && !schemas::forms::os_product("Windows  10")
        );
        assert!(
            !schemas::forms::os_product("Windows 13800138000")
                && !schemas::forms::os_product("windows 10")
                && !schemas::forms::os_product("Windows ")
        );
        assert!(
            file_version("10.0.19041.3570") && file_version("12.1.0.16120") && file_version("1")
        );
        assert!(file_version("10.0.0.1") && file_version("120.0.6099.130"));
        for phone_card_or_address in [
            "138.0013.8000",
            "1380.013.8000",
            "010.6552.9988",
            "555.123.4567",
            "6222.0212.3456.7890",
            "0050.5659.1258",
            "192.168.1.20",
            "172.16.0.1",
            "13800138000",
            "110105194912310021",
            "1.2.3.4.5",
            "1.2.x",
            "",
        ] {
            assert!(
                !file_version(phone_card_or_address),
                "{phone_card_or_address}"
            );
        }
        assert!(schema_id("crash/1").is_some() && schema_id("crash/+1").is_none());
        assert!(schema_id("Crash/1").is_none() && schema_id("crash/").is_none());
        assert!(uuid("00000000-0000-4000-8000-000000000000").is_some());
        assert!(uuid("00000000000040008000000000000000").is_none());
        assert!(uuid("{00000000-0000-4000-8000-000000000000}").is_none());
    }

    /// A payload is passed on as sent when scrubbing replaces nothing, so
    /// the text sent must hold nothing the typed payload (what scrubbing
    /// reads) does not: a field written twice, or one the payload lacks,
    /// goes the reference way, whose schemas refuse it.
    #[test]
    fn the_text_taken_holds_nothing_the_typed_payload_does_not() {
        let sent = schemas::fixtures::FEATURE_REQUEST;
        assert!(
            check_raw(sent.as_bytes()).is_some(),
            "the fixture goes the fast way"
        );
        let twice = sent.replacen(
            "\"title\":",
            "\"title\": \"call 13800138000\", \"title\":",
            1,
        );
        assert_ne!(twice, sent, "the fixture has a title");
        assert!(
            check_raw(twice.as_bytes()).is_none(),
            "a field written twice"
        );
        let unknown = sent.replacen("\"title\":", "\"phone\": \"13800138000\", \"title\":", 1);
        assert!(
            check_raw(unknown.as_bytes()).is_none(),
            "a field the payload lacks"
        );
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
