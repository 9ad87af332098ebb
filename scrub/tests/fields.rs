//! Every field a machine fills, from the JSON Schemas themselves: each
//! string is scrubbed by the default rules or pinned by its schema (a
//! pattern, an enum, a timestamp, the hashed machine id), each number is
//! bounded; every pinned form refuses the generated personal data; and the
//! README's "Fields a machine fills" lists each field with its treatment.
//!
//! A new field in a schema fails here until it is treated and listed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use regex::Regex;
use schemas::{SchemaId, fixtures, json_schema};
use scrub::Scrubber;
use scrub::corpus::{Corpus, SEED};
use serde_json::Value;

const README: &str = include_str!("../../README.md");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Treatment {
    Scrubbed,
    Pattern,
    Enum,
    Hashed,
    Timestamp,
    Integer,
}

impl Treatment {
    fn from_readme(word: &str) -> Option<Self> {
        Some(match word {
            "scrubbed" => Treatment::Scrubbed,
            "pattern" => Treatment::Pattern,
            "enum" => Treatment::Enum,
            "hashed" => Treatment::Hashed,
            "timestamp" => Treatment::Timestamp,
            "integer" => Treatment::Integer,
            _ => return None,
        })
    }
}

/// A field: its report (`envelope`, `crash/1`, …), its path (`os.product`,
/// `frames[].module`) and its schema.
struct Leaf {
    report: String,
    path: String,
    schema: Value,
}

fn leaves(report: &str, schema: &Value, path: &str, out: &mut Vec<Leaf>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, inner) in properties {
            let path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            leaves(report, inner, &path, out);
        }
    } else if let Some(items) = schema.get("items") {
        leaves(report, items, &format!("{path}[]"), out);
    } else if schema.get("type").and_then(Value::as_str) != Some("object") {
        out.push(Leaf {
            report: report.to_owned(),
            path: path.to_owned(),
            schema: schema.clone(),
        });
    }
}

fn all_leaves() -> Vec<Leaf> {
    let mut out = Vec::new();
    let envelope: Value = serde_json::from_str(json_schema::ENVELOPE).expect("JSON");
    leaves("envelope", &envelope, "", &mut out);
    for id in SchemaId::KNOWN {
        let schema: Value = serde_json::from_str(json_schema::payload(id)).expect("JSON");
        leaves(&id.to_string(), &schema, "", &mut out);
    }
    out
}

/// `pattern`, compiled once.
fn compiled(pattern: &str) -> Regex {
    static CACHE: Mutex<BTreeMap<String, Regex>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .entry(pattern.to_owned())
        .or_insert_with(|| Regex::new(pattern).expect("pattern compiles"))
        .clone()
}

/// Whether the string constraints of `schema` (`pattern`, lengths, `enum`,
/// `not`, `anyOf`) take `text`. The schemas' patterns are in the syntax
/// both ECMA 262 and the `regex` crate read alike.
fn takes(schema: &Value, text: &str) -> bool {
    let chars = text.chars().count() as u64;
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && !compiled(pattern).is_match(text)
    {
        return false;
    }
    if schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .is_some_and(|max| chars > max)
        || schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|min| chars < min)
    {
        return false;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.iter().any(|v| v.as_str() == Some(text))
    {
        return false;
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(|s| takes(s, text))
    {
        return false;
    }
    !schema.get("not").is_some_and(|not| takes(not, text))
}

/// The fixture payload of `report` with the string at `path` set to `text`
/// (in the first array item for a `[]` path).
fn payload_with(report: &str, path: &str, text: &str) -> (SchemaId, Value) {
    let schema: SchemaId = report.parse().expect("a payload schema");
    let fixture = fixtures::ALL
        .iter()
        .map(|t| serde_json::from_str::<Value>(t).expect("fixture"))
        .find(|f| f["schema"] == report)
        .expect("a fixture per schema");
    let mut payload = fixture["payload"].clone();
    let pointer = format!("/{}", path.replace("[]", "/0").replace('.', "/"));
    *payload
        .pointer_mut(&pointer)
        .expect("the fixture has the field") = Value::from(text);
    (schema, payload)
}

/// Whether the default rules scrub the payload field: personal data put
/// there comes back replaced and counted.
fn scrubbed(report: &str, path: &str) -> bool {
    if report == "envelope" {
        return false;
    }
    let text = "请联系 13800138000 或 zhang.wei@sgcc.com.cn";
    let (schema, mut payload) = payload_with(report, path, text);
    let pointer = format!("/{}", path.replace("[]", "/0").replace('.', "/"));
    let mut counts = BTreeMap::new();
    Scrubber::with_default_rules().scrub_payload(schema, &mut payload, &mut counts);
    payload.pointer(&pointer).and_then(Value::as_str) == Some("请联系 <phone> 或 <email>")
}

fn treatment(leaf: &Leaf) -> Option<Treatment> {
    let schema = &leaf.schema;
    let kind = schema.get("type").and_then(Value::as_str);
    if schema.get("enum").is_some() {
        return Some(Treatment::Enum);
    }
    if kind == Some("integer") {
        let bounded = schema.get("minimum").is_some() && schema.get("maximum").is_some();
        return bounded.then_some(Treatment::Integer);
    }
    if leaf.report == "envelope" && leaf.path == "machine_id" {
        return Some(Treatment::Hashed);
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        return Some(Treatment::Timestamp);
    }
    if schema.get("pattern").is_some() {
        return Some(Treatment::Pattern);
    }
    scrubbed(&leaf.report, &leaf.path).then_some(Treatment::Scrubbed)
}

#[test]
fn every_string_is_scrubbed_or_pinned_and_every_number_bounded() {
    let leaves = all_leaves();
    assert!(leaves.len() > 25, "{} fields", leaves.len());
    let untreated: Vec<String> = leaves
        .iter()
        .filter(|leaf| treatment(leaf).is_none())
        .map(|leaf| format!("{} {}", leaf.report, leaf.path))
        .collect();
    assert!(
        untreated.is_empty(),
        "fields neither scrubbed nor pinned: {untreated:?}"
    );
    // A pinned field is left as it is: the scrubber is not what holds it.
    for leaf in &leaves {
        if treatment(leaf) == Some(Treatment::Pattern) && leaf.report != "envelope" {
            assert!(!scrubbed(&leaf.report, &leaf.path), "{}", leaf.path);
        }
    }
}

/// Personal data a pattern may take, and why: a dotted quad of numbers up
/// to 255 is a version as well as an address (`10.0.0.1`); the private
/// ranges a version never starts with are refused.
fn excused(path: &str, category: &str, form: &str, text: &str) -> bool {
    let octets: Vec<u8> = text.split('.').filter_map(|o| o.parse().ok()).collect();
    let private = matches!(octets[..], [192, 168, ..] | [169, 254, ..])
        || matches!(octets[..], [172, second, ..] if (16..=31).contains(&second));
    path.ends_with("version") && (category, form) == ("ipv4", "plain") && !private
}

#[test]
fn pinned_forms_refuse_personal_data() {
    let corpus = Corpus::generate(SEED, 200, 0);
    let extra = [
        "138.0013.8000",
        "1380.013.8000",
        "010.6552.9988",
        "6222.0212.3456.7890",
        "0050.5659.1258",
        "zhangwei@sgcc.com.cn",
        r"C:\Users\zhangwei",
    ];
    let mut tried = 0;
    for leaf in all_leaves() {
        if leaf.schema.get("pattern").is_none() {
            continue;
        }
        for item in corpus.pii.iter().map(|p| &p.item) {
            if excused(&leaf.path, item.category, item.form, &item.text) {
                continue;
            }
            tried += 1;
            assert!(
                !takes(&leaf.schema, &item.text),
                "{} {} takes {}/{} {:?}",
                leaf.report,
                leaf.path,
                item.category,
                item.form,
                item.text
            );
        }
        for text in extra {
            assert!(!takes(&leaf.schema, text), "{} takes {text:?}", leaf.path);
        }
    }
    assert!(tried > 10_000, "{tried}");
}

#[test]
fn the_readme_lists_every_field_with_its_treatment() {
    let section = README
        .split("\n## Fields a machine fills\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has the section");
    let row = Regex::new(r"(?m)^\| ([a-z_/0-9]+) \| `([^`]+)` \| ([a-z]+) \|").expect("compiles");
    let listed: BTreeSet<(String, String, Treatment)> = row
        .captures_iter(section)
        .map(|c| {
            let treatment = Treatment::from_readme(&c[3])
                .unwrap_or_else(|| panic!("unknown treatment {:?}", &c[3]));
            (c[1].to_owned(), c[2].to_owned(), treatment)
        })
        .collect();
    let actual: BTreeSet<(String, String, Treatment)> = all_leaves()
        .iter()
        .map(|leaf| {
            (
                leaf.report.clone(),
                leaf.path.clone(),
                treatment(leaf).expect("treated"),
            )
        })
        .collect();
    assert_eq!(
        listed.difference(&actual).collect::<Vec<_>>(),
        Vec::<&(String, String, Treatment)>::new(),
        "listed in the README but not so in the schemas"
    );
    assert_eq!(
        actual.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String, Treatment)>::new(),
        "in the schemas but not so in the README"
    );
}
