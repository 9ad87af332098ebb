//! The machine-side reporter against the real ingest (in-process) and the
//! real Kafka: offline queueing, exactly-once arrival, WER import, policy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{TestEnv, eventually, messages_in, read_messages, start_ingest};
use rdkafka::Message;
use reporter::{Backoff, Config, FlushOptions, OsSettings, Reporter, build};
use schemas::{AcceptedReport, ReportKind, SchemaId};
use uuid::Uuid;

fn config(queue: &Path, endpoint: &str, token: &str, consent: &str) -> Config {
    Config::from_toml(&format!(
        "endpoint = {endpoint:?}\ntoken = {token:?}\nconsent = {consent:?}\n\
         queue_dir = {:?}\n[os]\nlocale = \"zh-CN\"\nrevision = 3570\n",
        queue.to_str().expect("UTF-8 temp path")
    ))
    .expect("reporter configuration is valid")
}

fn options(max_secs: u64) -> FlushOptions {
    FlushOptions {
        max_time: Duration::from_secs(max_secs),
        batch_size: 100,
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        progress: false,
    }
}

/// A loopback address nothing listens on.
async fn closed_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// Waits until the reports topic holds exactly `count` messages and returns
/// their report ids.
async fn reports_arrived(env: &TestEnv, count: usize) -> Vec<AcceptedReport> {
    eventually("reports in kafka", Duration::from_secs(60), || async {
        (env.reports_in_kafka().await == count as i64).then_some(())
    })
    .await;
    read_messages(&env.reports_topic, count, Duration::from_secs(60))
        .await
        .iter()
        .map(|m| serde_json::from_slice(m.payload().expect("value")).expect("AcceptedReport"))
        .collect()
}

fn wer_samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reporter/tests/data/wer")
}

fn queue_mixed(reporter: &mut Reporter) -> BTreeSet<Uuid> {
    let os = OsSettings::default();
    let crash: serde_json::Value = serde_json::from_str(e2e::fixtures::CRASH).expect("fixture");
    let reports = [
        (SchemaId::CRASH_V1, crash["payload"].clone()),
        (
            SchemaId::HEARTBEAT_V1,
            build::heartbeat(Some("2026-11-20"), Some(540)),
        ),
        (SchemaId::HEARTBEAT_V1, build::heartbeat(None, None)),
        (
            SchemaId::FEEDBACK_V1,
            build::feedback(4, "update", Some("Mail me at zhang.wei@sgcc.com.cn")),
        ),
        (
            SchemaId::FEATURE_REQUEST_V1,
            build::feature_request("按项目分组窗口", None, "shell.taskbar", Some("zh-CN")),
        ),
    ];
    reports
        .into_iter()
        .map(|(schema, payload)| {
            reporter
                .send(schema, payload, &os)
                .expect("queued")
                .report_id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_queued_offline_arrive_exactly_once_when_ingest_is_back() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let queue = dir.path().join("queue");

    // Offline: the endpoint is a closed port.
    let down = closed_endpoint().await;
    let mut reporter = Reporter::open(config(&queue, &down, env.token("grid"), "optional"))
        .expect("reporter opens");
    let ids = queue_mixed(&mut reporter);
    let report = reporter.flush(&options(2)).await.expect("flush runs");
    assert!(!report.complete());
    assert_eq!(report.remaining, 5, "everything stays queued");
    let error = report.last_error.expect("why it stopped");
    assert!(error.retryable(), "{error}");
    assert!(report.accepted.is_empty());
    drop(reporter);

    // Online: the same queue against the running ingest.
    let ingest = start_ingest(env.ingest_config()).await;
    let mut reporter = Reporter::open(config(&queue, &ingest.url, env.token("grid"), "optional"))
        .expect("reporter reopens its queue");
    assert_eq!(reporter.queue().len(), 5, "the queue survived the reopen");
    let report = reporter.flush(&options(30)).await.expect("flush runs");
    assert!(report.complete(), "{:?}", report.last_error);
    assert_eq!(
        report.accepted.iter().copied().collect::<BTreeSet<_>>(),
        ids
    );
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(report.requests, 1, "five reports are one batch");

    let arrived = reports_arrived(&env, 5).await;
    let arrived_ids: BTreeSet<Uuid> = arrived.iter().map(|r| r.report_id).collect();
    assert_eq!(arrived_ids, ids, "every report exactly once");
    let feedback = arrived
        .iter()
        .find(|r| r.schema == SchemaId::FEEDBACK_V1)
        .expect("feedback arrived");
    assert_eq!(feedback.payload["text"], "Mail me at <email>");
    assert_eq!(feedback.os.locale, "zh-CN");
    assert_ne!(feedback.machine_hash, reporter.machine_id());

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushing_twice_sends_nothing_twice() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut reporter = Reporter::open(config(
        dir.path(),
        &ingest.url,
        env.token("grid"),
        "optional",
    ))
    .expect("reporter opens");
    let ids = queue_mixed(&mut reporter);

    let first = reporter.flush(&options(30)).await.expect("flush runs");
    assert!(first.complete(), "{:?}", first.last_error);
    assert_eq!(first.accepted.len(), 5);
    let second = reporter.flush(&options(30)).await.expect("flush runs");
    assert!(second.complete());
    assert_eq!(second.requests, 0, "nothing left to send");
    assert!(second.accepted.is_empty() && second.duplicates.is_empty());
    assert_eq!(reporter.queue().stats().sent, 5);

    let arrived = reports_arrived(&env, 5).await;
    let arrived_ids: BTreeSet<Uuid> = arrived.iter().map(|r| r.report_id).collect();
    assert_eq!(arrived_ids, ids);
    // Every 202 came after Kafka's acknowledgement: the count is final.
    assert_eq!(env.reports_in_kafka().await, 5, "no second copy");

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_wer_crashes_arrive_with_their_bucket() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut reporter = Reporter::open(config(
        dir.path(),
        &ingest.url,
        env.token("water"),
        "required",
    ))
    .expect("reporter opens");

    let imported = reporter
        .import_wer(&wer_samples(), &OsSettings::default())
        .expect("import runs");
    assert_eq!(imported.found, 3);
    assert_eq!(imported.queued.len(), 2, "the hang is not a crash");
    assert!(imported.failed.is_empty(), "{:?}", imported.failed);
    let report = reporter.flush(&options(30)).await.expect("flush runs");
    assert!(report.complete(), "{:?}", report.last_error);
    // Importing again after the flush queues nothing (the ledger).
    let again = reporter
        .import_wer(&wer_samples(), &OsSettings::default())
        .expect("import runs");
    assert!(again.queued.is_empty());
    assert_eq!(again.already, 2);

    let arrived = reports_arrived(&env, 2).await;
    let explorer_id: Uuid = "5d0f7a53-9c1e-4f3b-8a61-2b7e4c9d1a05"
        .parse()
        .expect("uuid");
    let explorer = arrived
        .iter()
        .find(|r| r.report_id == explorer_id)
        .expect("the explorer crash arrived under its WER id");
    assert_eq!(explorer.schema, SchemaId::CRASH_V1);
    assert_eq!(explorer.org_id, "water");
    assert_eq!(explorer.payload["exception_code"], "0xC0000005");
    assert_eq!(explorer.payload["module"]["name"], "shell32.dll");
    assert_eq!(explorer.payload["module"]["offset"], "0x3FD1E");
    assert_eq!(explorer.payload["app"]["name"], "explorer.exe");
    assert_eq!((explorer.os.build, explorer.os.revision), (19045, 3570));
    let wps = arrived
        .iter()
        .find(|r| r.payload["app"]["name"] == "wps.exe")
        .expect("the BEX64 crash arrived");
    assert_eq!(wps.payload["exception_code"], "0xC0000409");
    assert_eq!(wps.payload["module"]["name"], "ucrtbase.dll");
    assert_eq!(wps.os.locale, "en-US");

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_type_the_organisation_switched_off_is_not_sent() {
    let env = TestEnv::new();
    let mut ingest_config = env.ingest_config();
    ingest_config.organisations[0].disabled_types = vec![ReportKind::Feedback];
    let ingest = start_ingest(ingest_config).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut reporter = Reporter::open(config(
        dir.path(),
        &ingest.url,
        env.token("grid"),
        "optional",
    ))
    .expect("reporter opens");
    let os = OsSettings::default();
    reporter
        .send(
            SchemaId::FEEDBACK_V1,
            build::feedback(5, "update", None),
            &os,
        )
        .expect("queued: the machine cannot know the policy before a flush");
    let heartbeat = reporter
        .send(SchemaId::HEARTBEAT_V1, build::heartbeat(None, None), &os)
        .expect("queued")
        .report_id;

    let report = reporter.flush(&options(30)).await.expect("flush runs");
    assert!(report.complete(), "{:?}", report.last_error);
    assert_eq!(report.accepted, vec![heartbeat]);
    assert_eq!(report.disabled.get("feedback/1"), Some(&1));
    assert!(
        report.rejected.is_empty(),
        "dropped before sending, not refused"
    );
    assert_eq!(reporter.queue().stats().dropped_disabled, 1);
    let policy = report.policy.expect("policy fetched");
    assert_eq!(policy.organisation, "grid");

    let arrived = reports_arrived(&env, 1).await;
    assert_eq!(arrived[0].report_id, heartbeat);
    // Ingest never saw the feedback: no refusal was published.
    assert_eq!(messages_in(&env.outcomes_topic).await, 0);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}
