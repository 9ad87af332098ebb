//! Accepted means storable: every report the real edge answers 2xx ends up
//! in its ClickHouse table, and the processor never stops on one.
//!
//! The reports are the schemas' edge probes (`schemas::probes`): each
//! fixture with one field set to a value on or just past each constraint
//! (lengths, ranges, patterns, clocks and days at ClickHouse's `DateTime`
//! and `Date` limits), removed, or joined by an unknown key. The edge
//! decides which it takes; all of those must be stored, on the test server
//! (18.16) and, read back from it, on current ClickHouse (chdb).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use e2e::{TestEnv, eventually, fixtures, scalar, start_ingest, start_processor_with};
use schemas::{ReportKind, SchemaId};
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_the_edge_accepts_reaches_its_table() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config_with(
        "[rate_limits]\nmachine_per_second = 1000\nmachine_burst = 1000\n\
         organisation_per_second = 100000\norganisation_burst = 100000\n",
    ))
    .await;
    let metrics = Arc::new(processor::Metrics::default());
    let processor = start_processor_with(env.processor_config(), Arc::clone(&metrics));

    let mut variants = Vec::new();
    for text in fixtures::ALL {
        let fixture: Value = serde_json::from_str(text).expect("fixture");
        for (path, probes) in schemas::probes::variants(&fixture) {
            for mut report in probes {
                // A fresh id and machine for each, unless the probe is the
                // id or the machine: each is a report of its own.
                if path != "/report_id" {
                    report["report_id"] = json!(Uuid::new_v4().to_string());
                }
                if path != "/machine_id" {
                    report["machine_id"] = json!(format!("probe-{}", Uuid::new_v4().simple()));
                }
                variants.push(report);
            }
        }
    }
    let http = reqwest::Client::new();
    let token = env.token("grid").to_string();
    // table → report ids the edge accepted for it.
    let mut accepted: BTreeMap<&'static str, HashSet<Uuid>> = BTreeMap::new();
    let (mut refused, mut total) = (0usize, 0usize);
    for chunk in variants.chunks(32) {
        let answers = futures_join(chunk.iter().map(|report| {
            let (http, url, token) = (http.clone(), ingest.url.clone(), token.clone());
            let report = report.clone();
            async move {
                let response = http
                    .post(format!("{url}/v1/reports"))
                    .bearer_auth(token)
                    .json(&report)
                    .send()
                    .await
                    .expect("ingest answers");
                let status = response.status();
                let body: Value = response.json().await.expect("JSON answer");
                (report, status, body)
            }
        }))
        .await;
        for (report, status, body) in answers {
            total += 1;
            assert!(!status.is_server_error(), "{status} for {report}: {body}");
            if !status.is_success() {
                refused += 1;
                continue;
            }
            assert_eq!(body["status"], "accepted", "{report}");
            let schema: SchemaId = report["schema"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("an accepted report names a known schema");
            let table = match schema.kind {
                ReportKind::Crash => "crash_reports",
                ReportKind::FeatureRequest => "feature_requests",
                ReportKind::Feedback => "feedback",
                ReportKind::Heartbeat => "heartbeats",
            };
            let id = body["report_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("the answer names the report");
            accepted.entry(table).or_default().insert(id);
        }
    }
    let taken: usize = accepted.values().map(HashSet::len).sum();
    println!("probes: {total} sent, {taken} accepted, {refused} refused");
    assert!(taken > 1_000, "{taken} accepted");

    env.caught_up(Duration::from_secs(180)).await;
    assert!(!processor.task.is_finished(), "the processor never stops");
    let store = env.clickhouse().await;
    for (table, ids) in &accepted {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Id {
            #[serde(with = "clickhouse::serde::uuid")]
            id: Uuid,
        }
        let stored: HashSet<Uuid> = eventually(table, Duration::from_secs(60), || async {
            let rows: Vec<Id> = store
                .client()
                .query(&format!("SELECT report_id AS id FROM {table}"))
                .fetch_all()
                .await
                .ok()?;
            let stored: HashSet<Uuid> = rows.into_iter().map(|r| r.id).collect();
            ids.is_subset(&stored).then_some(stored)
        })
        .await;
        assert_eq!(stored.len(), ids.len(), "{table}: only what was accepted");
    }
    assert_eq!(
        scalar(&store, "SELECT count() FROM processing_errors").await,
        0,
        "nothing accepted was set aside"
    );
    assert_eq!(processor::Metrics::get(&metrics.dead_letters), 0);
    assert!(
        scalar(
            &store,
            "SELECT count() FROM crash_reports WHERE sent_at = toDateTime(0)"
        )
        .await
            > 0,
        "a clock before 1970 was accepted and stored at the epoch"
    );

    // The same rows on current ClickHouse: every row the processor stored
    // here, read back and inserted into chdb's tables (which runs their
    // views too).
    let taken_there = store_on_current(&env.database, accepted.keys().copied()).await;
    for (table, ids) in &accepted {
        assert_eq!(
            taken_there.get(*table).copied(),
            Some(ids.len() as u64),
            "{table}: every row on current ClickHouse too"
        );
    }

    processor.shutdown().await.expect("processor stops");
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

/// Reads `tables` of `database` from the test server as JSONEachRow and
/// inserts them into a fresh database on current ClickHouse (chdb, through
/// `tests/python/tools/store_on_current.py`); returns the rows each took.
async fn store_on_current(
    database: &str,
    tables: impl Iterator<Item = &'static str>,
) -> BTreeMap<String, u64> {
    let folder = tempfile::tempdir().expect("temp dir");
    let statements: Vec<String> = schemas::MIGRATIONS
        .iter()
        .flat_map(schemas::Migration::statements)
        .collect();
    std::fs::write(
        folder.path().join("ddl.json"),
        serde_json::to_vec(&statements).expect("json"),
    )
    .expect("write ddl");
    let http = reqwest::Client::new();
    for table in tables {
        let rows = http
            .post(e2e::clickhouse_url())
            .query(&[("database", database)])
            .body(format!("SELECT * FROM {table} FINAL FORMAT JSONEachRow"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("rows read back")
            .bytes()
            .await
            .expect("rows");
        std::fs::write(folder.path().join(format!("{table}.jsonl")), rows).expect("write rows");
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/python/tools/store_on_current.py"
    );
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(folder.path())
        .output()
        .expect("python3 runs (scripts/test installs chdb)");
    assert!(
        output.status.success(),
        "current ClickHouse refused a stored row:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("counts as JSON")
}

/// Runs the futures together and returns their outputs in order.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("request task"));
    }
    out
}
