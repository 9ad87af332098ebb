//! `scrub_payload` on the fixtures of the `schemas` crate, with personal data
//! injected into every field it scrubs and into fields it must not touch.

use std::collections::BTreeMap;

use schemas::{Payload, ReportKind, SchemaId, fixtures};
use scrub::Scrubber;
use serde_json::{Value, json};

/// The fixture's schema and payload.
fn fixture(text: &str) -> (SchemaId, Value) {
    let mut envelope: Value = serde_json::from_str(text).unwrap();
    let schema = envelope["schema"].as_str().unwrap().parse().unwrap();
    (schema, envelope["payload"].take())
}

fn scrub(schema: SchemaId, payload: &mut Value) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    Scrubber::with_default_rules().scrub_payload(schema, payload, &mut counts);
    counts
}

fn tally(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn fixtures_as_shipped_are_left_alone() {
    for text in fixtures::ALL {
        let (schema, mut payload) = fixture(text);
        let before = payload.clone();
        assert!(scrub(schema, &mut payload).is_empty(), "{schema}");
        assert_eq!(payload, before, "{schema}");
    }
}

#[test]
fn crash_scrubs_names_and_frames_but_not_offsets_codes_or_versions() {
    let (schema, mut payload) = fixture(fixtures::CRASH);
    assert_eq!(schema, SchemaId::CRASH_V1);
    payload["app"]["name"] = json!(r"C:\Users\zhangwei\AppData\Local\Apps\tool.exe");
    payload["module"]["name"] = json!(r"c:/users/li.na/AppData/Local/Temp/x.dll");
    payload["frames"][0]["module"] = json!(r"C:\Users\zhangwei\AppData\Local\Temp\x.dll");
    payload["frames"][1]["function"] = json!("Connect(10.0.0.1)");
    payload["frames"][4]["function"] = json!("Mail::Send(zhang.wei@sgcc.com.cn)");
    // Fields the schema fixes: personal-looking values must survive untouched.
    payload["app"]["version"] = json!("10.0.0.1");
    payload["module"]["version"] = json!("192.168.1.20");
    let before = payload.clone();

    let got = scrub(schema, &mut payload);
    assert_eq!(got, tally(&[("user_path", 3), ("ipv4", 1), ("email", 1)]));

    assert_eq!(
        payload["app"]["name"],
        r"C:\Users\<user>\AppData\Local\Apps\tool.exe"
    );
    assert_eq!(
        payload["module"]["name"],
        "c:/users/<user>/AppData/Local/Temp/x.dll"
    );
    assert_eq!(
        payload["frames"][0]["module"],
        r"C:\Users\<user>\AppData\Local\Temp\x.dll"
    );
    assert_eq!(payload["frames"][1]["function"], "Connect(<ipv4>)");
    assert_eq!(payload["frames"][4]["function"], "Mail::Send(<email>)");

    // Untouched: versions, code, offsets, and every realistic symbol.
    assert_eq!(payload["app"]["version"], "10.0.0.1");
    assert_eq!(payload["module"]["version"], "192.168.1.20");
    assert_eq!(payload["exception_code"], "0xC0000005");
    assert_eq!(payload["module"]["offset"], "0x00000000000a1b2c");
    let frames = payload["frames"].as_array().unwrap();
    let frames_before = before["frames"].as_array().unwrap();
    for (i, (frame, old)) in frames.iter().zip(frames_before).enumerate() {
        assert_eq!(frame["offset"], old["offset"], "frame {i}");
        if ![0, 1, 4].contains(&i) {
            assert_eq!(frame, old, "frame {i}");
        }
    }
    assert_eq!(frames[0]["function"], "CDefView::_OnContextMenu");
    assert_eq!(frames[6]["function"], "RtlUserThreadStart");

    // Still a valid crash/1 payload.
    assert!(matches!(
        Payload::decode(schema, &payload),
        Ok(Payload::Crash(_))
    ));
}

#[test]
fn crash_frames_with_realistic_symbols_stay_byte_for_byte() {
    let (schema, mut payload) = fixture(fixtures::CRASH);
    payload["frames"] = json!([
        {"module": "KERNELBASE.dll", "function": "RaiseException", "offset": "0x0000000000034f69"},
        {"module": "d3d11.dll", "function": "CContext::TID3D11DeviceContext_Map_<1>", "offset": "0x1a2b"},
        {"module": "api-ms-win-core-synch-l1-2-0.dll", "function": "WaitOnAddress", "offset": "0x10"},
        {"module": "msvcp140.dll", "function": "std::vector<int,std::allocator<int> >::push_back", "offset": "0x20"},
        {"module": "Windows.UI.Xaml.dll", "function": "Microsoft::WRL::Details::RuntimeClassImpl<Microsoft::WRL::RuntimeClassFlags<2>,1,0,0,IUnknown>::Release", "offset": "0x30"},
        {"module": "ntdll.dll", "function": "RtlUserThreadStart", "offset": "0x00007FF8A1B2C3D4"},
    ]);
    let before = payload.clone();
    assert!(scrub(schema, &mut payload).is_empty());
    assert_eq!(payload, before);
}

#[test]
fn feature_request_scrubs_title_and_body_only() {
    let (schema, mut payload) = fixture(fixtures::FEATURE_REQUEST);
    assert_eq!(schema.kind, ReportKind::FeatureRequest);
    payload["title"] = json!("希望任务栏支持按项目分组窗口（联系 13800138000）");
    payload["body"] = json!(
        "打开多个公文窗口时，任务栏太拥挤。详见 C:\\Users\\wangfang\\Desktop\\说明.docx，或发邮件到 wang.fang@sgcc.com.cn，电话 010-62345678。"
    );
    let got = scrub(schema, &mut payload);
    assert_eq!(got, tally(&[("phone", 2), ("user_path", 1), ("email", 1)]));
    assert_eq!(
        payload["title"],
        "希望任务栏支持按项目分组窗口（联系 <phone>）"
    );
    assert_eq!(
        payload["body"],
        "打开多个公文窗口时，任务栏太拥挤。详见 C:\\Users\\<user>\\Desktop\\说明.docx，或发邮件到 <email>，电话 <phone>。"
    );
    assert_eq!(payload["category"], "shell.taskbar");
    assert_eq!(payload["language"], "zh-CN");
}

#[test]
fn feedback_scrubs_text_only() {
    let (schema, mut payload) = fixture(fixtures::FEEDBACK);
    payload["text"] = json!(
        "Updates install faster since the last patch, but 192.168.1.20 (fe80::1ff:fe23:4567:890a, 00-1A-2B-3C-4D-5E) lost its share. Call +86 138 0013 8000."
    );
    let got = scrub(schema, &mut payload);
    assert_eq!(
        got,
        tally(&[("ipv4", 1), ("ipv6", 1), ("mac", 1), ("phone", 1)])
    );
    assert_eq!(
        payload["text"],
        "Updates install faster since the last patch, but <ipv4> (<ipv6>, <mac>) lost its share. Call <phone>."
    );
    assert_eq!(payload["rating"], 4);
    assert_eq!(payload["category"], "update");
}

#[test]
fn heartbeat_is_never_touched() {
    let (schema, mut payload) = fixture(fixtures::HEARTBEAT);
    payload["day"] = json!("2026-11-20");
    payload["uptime_minutes"] = json!(1380);
    let before = payload.clone();
    assert!(scrub(schema, &mut payload).is_empty());
    assert_eq!(payload, before);
}

#[test]
fn a_payload_its_schema_refuses_has_every_string_scrubbed() {
    // A field heartbeat/1 does not have: the edge would refuse the report,
    // and a machine showing it shows it scrubbed throughout.
    let (schema, mut payload) = fixture(fixtures::HEARTBEAT);
    payload["note"] = json!("zhang.wei@sgcc.com.cn");
    assert_eq!(scrub(schema, &mut payload), tally(&[("email", 1)]));
    assert_eq!(payload["note"], "<email>");
}

#[test]
fn missing_or_non_string_fields_are_skipped() {
    let (schema, mut payload) = fixture(fixtures::FEEDBACK);
    payload.as_object_mut().unwrap().remove("text");
    assert!(scrub(schema, &mut payload).is_empty());
    let mut odd = json!({"title": 13800138000_u64, "body": null});
    assert!(scrub(SchemaId::FEATURE_REQUEST_V1, &mut odd).is_empty());
    assert_eq!(odd, json!({"title": 13800138000_u64, "body": null}));
}

#[test]
fn an_unknown_schema_version_has_every_string_scrubbed() {
    let mut payload = json!({
        "summary": "mail zhang.wei@sgcc.com.cn",
        "nested": {"list": ["10.0.0.1", 3, "ok"]},
        "zhang.wei@sgcc.com.cn": true
    });
    let got = scrub(SchemaId::new(ReportKind::Feedback, 2), &mut payload);
    assert_eq!(got, tally(&[("email", 1), ("ipv4", 1)]));
    assert_eq!(
        payload,
        json!({
            "summary": "mail <email>",
            "nested": {"list": ["<ipv4>", 3, "ok"]},
            "zhang.wei@sgcc.com.cn": true
        })
    );
}
