//! Probes of the schemas' edges, for tests of the edge and of the whole
//! pipeline: each fixture with one field set to a value on or just past a
//! constraint, removed, or joined by an unknown field. No I/O.

use serde_json::{Value, json};

/// Values that sit on and just past each constraint of the schemas,
/// and of every other JSON type.
pub fn values() -> Vec<Value> {
    let mut probes = vec![
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!(0),
        json!(1),
        json!(5),
        json!(6),
        json!(-1),
        json!(1440),
        json!(1441),
        json!(4_294_967_295_u64),
        json!(4_294_967_296_u64),
        json!(4.0),
        json!(2.5),
        json!("0x1"),
        json!("0X1f"),
        json!("0x"),
        json!("0x123456789"),
        json!("0x12345678"),
        json!("0x1234567890abcdef"),
        json!("0x1234567890abcdef0"),
        json!("0x1F\n"),
        json!("C0000005"),
        json!("10.0.19045"),
        json!("10.0"),
        json!("10.0.19045.1"),
        json!("zh-CN"),
        json!("zh_CN"),
        json!("sr-Latn-RS"),
        json!("x64"),
        json!("arm64"),
        json!("ia64"),
        json!("required"),
        json!("optional"),
        json!("crash/1"),
        json!("heartbeat/1"),
        json!("crash/01"),
        json!("crash/+1"),
        json!("Crash/1"),
        json!("00000000-0000-4000-8000-000000000000"),
        json!("00000000000040008000000000000000"),
        json!("{00000000-0000-4000-8000-000000000000}"),
        json!("2026-11-20"),
        json!("2026-13-01"),
        json!("2026-11-20T08:15:30Z"),
        json!("2026-11-20 08:15:30Z"),
        json!("2026-11-20T08:15:30"),
        json!("shell.taskbar"),
        json!("Shell"),
        json!("text with \"quotes\""),
        json!("a null in text"),
        // Clocks and days at and past what ClickHouse's DateTime and Date
        // hold.
        json!("1969-12-31T23:59:59Z"),
        json!("1970-01-01T00:00:00Z"),
        json!("0001-01-01T00:00:00Z"),
        json!("2106-02-07T06:28:15Z"),
        json!("1926-11-20"),
        json!("1969-12-31"),
        json!("1970-01-01"),
        json!("2149-06-06"),
        json!("2149-06-07"),
    ];
    for n in [
        0, 1, 2, 3, 7, 8, 9, 32, 33, 35, 36, 64, 65, 128, 129, 260, 261, 300, 301, 512, 513,
    ] {
        probes.push(json!("a".repeat(n)));
        probes.push(json!("机".repeat(n)));
    }
    probes
}

/// Every JSON pointer under `value`, itself included.
pub fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                pointers(inner, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                pointers(inner, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Each variant of `fixture`, with the JSON pointer of the field it
/// changes: every field set to each of [`values`], removed, and (for an
/// object) joined by an unknown key.
pub fn variants(fixture: &Value) -> Vec<(String, Vec<Value>)> {
    let probes = values();
    let mut paths = Vec::new();
    pointers(fixture, String::new(), &mut paths);
    paths
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|path| {
            let mut variants = Vec::new();
            for probe in &probes {
                let mut report = fixture.clone();
                *report.pointer_mut(&path).expect("path") = probe.clone();
                variants.push(report);
            }
            let (parent, key) = path.rsplit_once('/').expect("a parent");
            let mut removed = fixture.clone();
            if let Some(Value::Object(map)) = removed.pointer_mut(parent) {
                map.remove(key);
            }
            variants.push(removed);
            if let Some(Value::Object(map)) = fixture.pointer(&path) {
                let mut report = fixture.clone();
                let mut extended = map.clone();
                extended.insert("unknown".into(), json!("x"));
                *report.pointer_mut(&path).expect("path") = Value::Object(extended);
                variants.push(report);
            }
            (path, variants)
        })
        .collect()
}
