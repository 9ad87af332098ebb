//! Envelope validation, the differential target: ingest's way (the fast
//! typed parse, falling back to the JSON Schemas) against the reference way
//! alone (a `serde_json::Value` checked by the compiled schemas).
//!
//! Each input is tried twice: as a body, and as edits to one of the shipped
//! fixtures (replace, remove or add a field), which reaches far more reports
//! that are nearly valid.
//!
//! Holds (`validate/fast.rs`: the fast way may refuse more than the schemas,
//! never less, and where it takes a report the envelope is the same):
//! - a report ingest takes, the schemas take, with the same envelope;
//! - a report the schemas take, ingest refuses only for what no schema says
//!   (`clock_skew`, or a heartbeat day that is no calendar date);
//! - a report the schemas refuse, ingest refuses with the same code.

#![no_main]

use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use telemetry_fuzz::ingest::error::ApiError;
use telemetry_fuzz::ingest::validate::Validator;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-20 12:00 UTC);

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| Validator::new(86_400));

static FIXTURES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    schemas::fixtures::ALL
        .iter()
        .map(|text| serde_json::from_str(text).expect("fixture"))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    agree(data);
    if let Ok(edited) = Edited::arbitrary_take_rest(Unstructured::new(data)) {
        let body = serde_json::to_vec(&edited.apply()).expect("a value encodes");
        agree(&body);
    }
});

fn agree(body: &[u8]) {
    let ingest = VALIDATOR.check_body(body, NOW);
    let reference = serde_json::from_slice::<Value>(body)
        .map_err(|e| ApiError::MalformedJson(e.to_string()))
        .and_then(|value| VALIDATOR.check_value(value));
    let shown = || String::from_utf8_lossy(body).into_owned();
    match (ingest, reference) {
        (Ok(taken), Ok(reference)) => assert_eq!(
            (taken.schema, &taken.envelope),
            (reference.schema, &reference.envelope),
            "the two ways built different envelopes from {}",
            shown()
        ),
        (Ok(_), Err(error)) => panic!(
            "ingest took a report the schemas refuse ({}: {error}): {}",
            error.code(),
            shown()
        ),
        (Err(refusal), Ok(_)) => assert!(
            match &refusal.error {
                ApiError::ClockSkew(_) => true,
                ApiError::Invalid { field, .. } => field == "payload.day",
                _ => false,
            },
            "ingest refused a report the schemas take ({}: {}): {}",
            refusal.error.code(),
            refusal.error,
            shown()
        ),
        (Err(refusal), Err(error)) => assert_eq!(
            refusal.error.code(),
            error.code(),
            "ingest and the schemas refuse {} differently: {} / {error}",
            shown(),
            refusal.error
        ),
    }
}

/// A fixture with a few edits, each at a path picked among its fields.
#[derive(Debug, Arbitrary)]
struct Edited {
    fixture: u8,
    edits: Vec<Edit>,
}

#[derive(Debug, Arbitrary)]
enum Edit {
    Replace { at: u16, with: Json },
    Remove { at: u16 },
    AddField { at: u16, name: Word, with: Json },
}

impl Edited {
    fn apply(self) -> Value {
        let fixtures = &*FIXTURES;
        let mut report = fixtures[usize::from(self.fixture) % fixtures.len()].clone();
        for edit in self.edits.into_iter().take(4) {
            let mut paths = Vec::new();
            schemas::probes::pointers(&report, String::new(), &mut paths);
            let pick = |at: u16| paths[usize::from(at) % paths.len()].clone();
            match edit {
                Edit::Replace { at, with } => {
                    if let Some(slot) = report.pointer_mut(&pick(at)) {
                        *slot = with.into_value(0);
                    }
                }
                Edit::Remove { at } => {
                    let path = pick(at);
                    let Some((parent, key)) = path.rsplit_once('/') else {
                        continue;
                    };
                    match report.pointer_mut(parent) {
                        Some(Value::Object(map)) => {
                            map.remove(key);
                        }
                        Some(Value::Array(items)) => {
                            if let Ok(i) = key.parse::<usize>()
                                && i < items.len()
                            {
                                items.remove(i);
                            }
                        }
                        _ => {}
                    }
                }
                Edit::AddField { at, name, with } => match report.pointer_mut(&pick(at)) {
                    Some(Value::Object(map)) => {
                        map.insert(name.text(), with.into_value(0));
                    }
                    Some(Value::Array(items)) => items.push(with.into_value(0)),
                    _ => {}
                },
            }
        }
        report
    }
}

/// A JSON value, leaning towards the edges of the schemas' constraints.
#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Small(i8),
    Float(f64),
    Word(Word),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(Word, Json)>),
}

impl Json {
    fn into_value(self, depth: usize) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Int(n) => Value::from(n),
            Json::Small(n) => Value::from(n),
            Json::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Json::Word(word) => Value::String(word.text()),
            Json::Text(text) => Value::String(text),
            Json::Array(_) | Json::Object(_) if depth > 4 => Value::Null,
            Json::Array(items) => Value::Array(
                items
                    .into_iter()
                    .take(8)
                    .map(|item| item.into_value(depth + 1))
                    .collect(),
            ),
            Json::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .take(8)
                    .map(|(name, item)| (name.text(), item.into_value(depth + 1)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

/// A string near what the schemas ask for: a known value, repeated to a
/// length near a bound, or with a tail appended.
#[derive(Debug, Arbitrary)]
struct Word {
    base: u8,
    repeat: u16,
    tail: Option<String>,
}

const WORDS: &[&str] = &[
    "",
    "a",
    "机",
    "0",
    "x",
    "\\",
    "\"",
    "\u{0}",
    "null",
    "crash/1",
    "crash/2",
    "feature_request/1",
    "feedback/1",
    "heartbeat/1",
    "heartbeat/01",
    "Crash/1",
    "required",
    "optional",
    "3f6c1b52-8d4e-4c1a-9b7e-2a5d0c9e8f11",
    "3F6C1B52-8D4E-4C1A-9B7E-2A5D0C9E8F11",
    "{3f6c1b52-8d4e-4c1a-9b7e-2a5d0c9e8f11}",
    "3f6c1b528d4e4c1a9b7e2a5d0c9e8f11",
    "m-7d2f9a41c0b84e55",
    "2026-11-20T08:15:30Z",
    "2026-11-20T08:15:30.123456789+08:00",
    "2026-11-20t08:15:30z",
    "2026-11-20 08:15:30Z",
    "2026-11-21T12:00:01Z",
    "2026-12-31T23:59:60Z",
    "9999-12-31T23:59:59Z",
    "2026-11-20",
    "2026-02-29",
    "2026-13-01",
    "0xC0000005",
    "0xc0000005",
    "0x00000000000a1b2c",
    "0x",
    "0x0",
    "0xFFFFFFFFFFFFFFFFF",
    "10.0.19045",
    "10.0.19041.3570",
    "zh-CN",
    "en",
    "x64",
    "arm64",
    "shell.taskbar",
    "update",
    "explorer.exe",
    "unknown",
];

impl Word {
    fn text(&self) -> String {
        let base = WORDS[usize::from(self.base) % WORDS.len()];
        let mut text = base.repeat(usize::from(self.repeat % 600).max(1));
        if let Some(tail) = &self.tail {
            text.push_str(tail);
        }
        text
    }
}
