//! One report the whole way: HTTP → ingest → Kafka → processor → ClickHouse,
//! against the real broker and server.

use std::time::Duration;

use clickhouse::Row;
use e2e::{TestEnv, eventually, fixtures, fresh_report, start_ingest, start_processor};
use ingest::privacy::{MachineHasher, MachineIdHash};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Row, Deserialize)]
struct CrashSeen {
    org_id: String,
    machine_hash: String,
    consent: String,
    os_product: String,
    os_build: u32,
    os_revision: u32,
    os_locale: String,
    app_name: String,
    exception_code: String,
    module_name: String,
    module_offset: String,
    frame_modules: Vec<String>,
    frame_functions: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_report_travels_from_http_to_clickhouse() {
    travels(MachineIdHash::HmacSha256).await;
}

/// The national cryptography option: the same way, with machine ids hashed
/// by HMAC-SM3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_report_travels_with_machine_ids_under_hmac_sm3() {
    travels(MachineIdHash::HmacSm3).await;
}

async fn travels(hash: MachineIdHash) {
    let env = TestEnv::new();
    let mut config = env.ingest_config();
    config.machine_id_hash = hash;
    let ingest = start_ingest(config).await;
    let processor = start_processor(env.processor_config());
    let http = reqwest::Client::new();

    let report = fresh_report(fixtures::CRASH);
    let report_id = report["report_id"].as_str().expect("id").to_string();
    let response = http
        .post(format!("{}/v1/reports", ingest.url))
        .bearer_auth(env.token("grid"))
        .json(&report)
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(body["report_id"], report_id.as_str());
    assert_eq!(body["status"], "accepted");

    let store = env.clickhouse().await;
    let row: CrashSeen = eventually("crash row in clickhouse", Duration::from_secs(60), || {
        let query = store
            .client()
            .query(
                "SELECT org_id, machine_hash, consent, os_product, os_build, os_revision, \
                 os_locale, app_name, exception_code, module_name, module_offset, \
                 frame_modules, frame_functions \
                 FROM crash_reports WHERE report_id = toUUID(?)",
            )
            .bind(report_id.as_str());
        async move { query.fetch_optional::<CrashSeen>().await.ok().flatten() }
    })
    .await;

    let machine_id = report["machine_id"].as_str().expect("machine id");
    assert_eq!(row.org_id, "grid", "organisation comes from the token");
    assert_eq!(
        row.machine_hash,
        MachineHasher::new(hash, e2e::MACHINE_ID_KEY).hash(machine_id)
    );
    for other in [MachineIdHash::HmacSha256, MachineIdHash::HmacSm3] {
        if other != hash {
            assert_ne!(
                row.machine_hash,
                MachineHasher::new(other, e2e::MACHINE_ID_KEY).hash(machine_id),
                "the configured algorithm, not another"
            );
        }
    }
    assert_ne!(row.machine_hash, machine_id);
    assert_eq!(row.consent, "required");
    assert_eq!(row.os_product, "Windows 10 Enterprise G");
    assert_eq!((row.os_build, row.os_revision), (19045, 3570));
    assert_eq!(row.os_locale, "zh-CN");
    assert_eq!(row.app_name, "explorer.exe");
    assert_eq!(row.exception_code, "0xC0000005");
    assert_eq!(row.module_name, "shell32.dll");
    assert_eq!(row.module_offset, "0xA1B2C");
    assert_eq!(row.frame_modules.len(), 7);
    assert_eq!(row.frame_modules[0], "shell32.dll");
    assert_eq!(row.frame_functions[0], "CDefView::_OnContextMenu");
    assert_eq!(row.frame_functions[4], "", "unknown functions are empty");

    // The raw machine id is nowhere in the table.
    let leaks: u64 = store
        .client()
        .query("SELECT count() FROM crash_reports WHERE machine_hash = ? OR org_id = ?")
        .bind(machine_id)
        .bind(machine_id)
        .fetch_one()
        .await
        .expect("count");
    assert_eq!(leaks, 0);

    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    processor.shutdown().await.expect("processor stops cleanly");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_refused_and_never_reaches_kafka() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(format!("{}/v1/reports", ingest.url))
            .bearer_auth(env.token("grid"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    for bad in ["{\"report_id\": ", "not json at all", "[1, 2", ""] {
        let response = post(bad.to_string()).await.expect("ingest answers");
        assert_eq!(response.status(), 400, "body {bad:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "body {bad:?}"
        );
        let error: Value = response.json().await.expect("JSON error body");
        assert_eq!(error["error"], "malformed_json", "body {bad:?}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // A valid report afterwards: once it is acknowledged, the topic holds
    // exactly the one message.
    let sentinel = fresh_report(fixtures::HEARTBEAT);
    let response = post(sentinel.to_string()).await.expect("ingest answers");
    assert_eq!(response.status(), 202);
    assert_eq!(env.reports_in_kafka().await, 1);

    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_edge_refused_reaches_the_outcomes_table() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let processor = start_processor(env.processor_config());
    let http = reqwest::Client::new();
    let post = |token: &str, report: &Value| {
        http.post(format!("{}/v1/reports", ingest.url))
            .bearer_auth(token)
            .json(report)
            .send()
    };
    let mut invalid = fresh_report(fixtures::CRASH);
    invalid["payload"]["exception_code"] = serde_json::json!("boom");
    assert_eq!(
        post(env.token("grid"), &invalid)
            .await
            .expect("post")
            .status(),
        400
    );
    let feedback = fresh_report(fixtures::FEEDBACK);
    assert_eq!(
        post(env.token("water"), &feedback)
            .await
            .expect("post")
            .status(),
        403
    );
    let report = fresh_report(fixtures::HEARTBEAT);
    assert_eq!(
        post(env.token("grid"), &report)
            .await
            .expect("post")
            .status(),
        202
    );
    assert_eq!(
        post(env.token("grid"), &report)
            .await
            .expect("post")
            .status(),
        202
    );

    #[derive(Debug, Row, Deserialize)]
    struct Outcome {
        outcome: String,
        reason: String,
        schema: String,
        org_id: String,
        field: String,
    }
    let store = env.clickhouse().await;
    let rows: Vec<Outcome> = eventually("outcomes stored", Duration::from_secs(60), || {
        let query = store
            .client()
            .query("SELECT outcome, reason, schema, org_id, field FROM outcomes ORDER BY reason");
        async move {
            let rows: Vec<Outcome> = query.fetch_all().await.ok()?;
            (rows.len() == 3).then_some(rows)
        }
    })
    .await;
    let seen: Vec<(&str, &str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.outcome.as_str(),
                r.reason.as_str(),
                r.schema.as_str(),
                r.org_id.as_str(),
                r.field.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("consent", "consent", "feedback/1", "water", "consent"),
            ("duplicate", "duplicate", "heartbeat/1", "grid", ""),
            (
                "rejected",
                "invalid",
                "crash/1",
                "grid",
                "payload.exception_code"
            ),
        ]
    );
    ingest.running.shutdown().await.expect("ingest stops");
    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}
