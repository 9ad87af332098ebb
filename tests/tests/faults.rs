//! The fault suite: the whole pipeline (ingest with its spool, Kafka, the
//! processor, ClickHouse) under a steady load while one part fails, then
//! the counts: every report answered 2xx must be in ClickHouse exactly once.
//!
//! Run by `scripts/faults`, which gives this suite a Kafka broker of its own
//! (`KAFKA_BROKERS`, with `TELEMETRY_DATA_DIR` and `KAFKA_PORT` set for
//! `scripts/services`), so that stopping it disturbs no other test. Not run
//! by a plain `cargo test` (`test = false` in `Cargo.toml`).
//!
//! Each scenario prints one line: `sent`, `2xx`, `stored`, `lost`,
//! `doubled`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{
    TestEnv, eventually, fixtures, fresh_report, services, start_ingest, start_processor_with,
};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

/// The services' logs on stderr (`RUST_LOG`, default `info`), once per
/// binary: a failed scenario is read from them.
fn logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(pipeline::logging::init);
}

/// Starts the broker again however the test ends.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        services(&["start", "kafka"]);
        services(&["wait", "kafka"]);
    }
}

/// What a load run saw: every report sent, and the ids answered 2xx.
#[derive(Debug, Default)]
struct Sent {
    sent: usize,
    accepted: HashSet<Uuid>,
    refused: usize,
}

/// Posts crash reports at `per_second` (open loop: a report is sent when it
/// is due, whatever the answers before it) until `until` resolves; at most
/// `in_flight` requests wait at once. Each report comes from one of 500
/// machines.
async fn load(url: String, token: String, per_second: u32, in_flight: usize, until: Stop) -> Sent {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let sent = Arc::new(Mutex::new(Sent::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while !until.is_stopped() {
        ticks.tick().await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let mut report = fresh_report(fixtures::CRASH);
        report["machine_id"] = json!(format!("fault-machine-{:03}", n % 500));
        let id: Uuid = report["report_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("uuid");
        n += 1;
        let (http, url, token, sent) =
            (http.clone(), url.clone(), token.clone(), Arc::clone(&sent));
        tasks.spawn(async move {
            let answer = http
                .post(format!("{url}/v1/reports"))
                .bearer_auth(token)
                .json(&report)
                .send()
                .await;
            let mut sent = sent.lock().expect("lock");
            sent.sent += 1;
            match answer {
                Ok(response) if response.status().is_success() => {
                    sent.accepted.insert(id);
                }
                _ => sent.refused += 1,
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(sent)
        .expect("every task ended")
        .into_inner()
        .expect("lock")
}

/// A stop flag the load loop reads.
#[derive(Debug, Clone, Default)]
struct Stop(Arc<AtomicBool>);

impl Stop {
    fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Waits until ClickHouse holds every accepted report and the processor's
/// group has committed everything on every partition; then counts and
/// prints `sent, 2xx, stored, lost, doubled`, and asserts none lost or
/// doubled.
async fn settle_and_count(
    scenario: &str,
    env: &TestEnv,
    sent: &Sent,
    metrics: Option<&processor::Metrics>,
) {
    let store = env.clickhouse().await;
    let expected = sent.accepted.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stored = e2e::try_scalar(&store, "SELECT uniqExact(report_id) FROM crash_reports")
            .await
            .unwrap_or_default();
        if stored >= expected {
            break;
        }
        if Instant::now() > deadline {
            // Say where the reports are, so that a failure can be read.
            let in_kafka = env.reports_in_kafka().await;
            let lag = metrics.map(processor::Metrics::lag);
            panic!(
                "{scenario}: {stored} of {expected} accepted reports in crash_reports after 300 s; \
                 {in_kafka} messages on the reports topic; the processor's lag: {lag:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.caught_up(Duration::from_secs(180)).await;
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Id {
        #[serde(with = "clickhouse::serde::uuid")]
        id: Uuid,
    }
    let rows: Vec<Id> = store
        .client()
        .query("SELECT report_id AS id FROM crash_reports")
        .fetch_all()
        .await
        .expect("ids");
    let stored: HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
    let lost = sent.accepted.difference(&stored).count();
    // A report written twice is two raw rows until a merge folds them, and
    // must still count once in the exact aggregates.
    let raw_rows = e2e::scalar(&store, "SELECT count() FROM crash_reports").await;
    let doubled = raw_rows.saturating_sub(stored.len() as u64);
    let counted = e2e::scalar(
        &store,
        "SELECT toUInt64(sum(reports)) FROM crash_signatures",
    )
    .await;
    println!(
        "{scenario}: sent {}, 2xx {}, stored {}, lost {lost}, doubled {doubled}",
        sent.sent,
        sent.accepted.len(),
        stored.intersection(&sent.accepted).count()
    );
    assert_eq!(
        lost, 0,
        "{scenario}: accepted reports missing from ClickHouse"
    );
    assert_eq!(doubled, 0, "{scenario}: reports written twice");
    assert_eq!(
        counted, expected,
        "{scenario}: the aggregate counts each report once"
    );
    assert_eq!(
        stored.len(),
        sent.accepted.len(),
        "{scenario}: rows for reports never answered 2xx"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_stopped_for_30_s_under_load_loses_nothing_and_every_partition_catches_up() {
    logs();
    let env = TestEnv::new();
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let ingest = start_ingest(env.ingest_config_with(&format!(
        "[limits]\ndelivery_timeout_ms = 1000\nshutdown_grace_secs = 10\nmax_in_flight = 4096\n\
         [rate_limits]\nmachine_per_second = 100\nmachine_burst = 1000\n\
         [spool]\ndir = \"{}\"\n",
        spool_dir.path().join("spool").display()
    )))
    .await;
    let metrics = Arc::new(processor::Metrics::default());
    let mut config = env.processor_config();
    config.batch.lag_interval_ms = 1_000;
    let processor = start_processor_with(config, Arc::clone(&metrics));

    let stop = Stop::default();
    let load = tokio::spawn(load(
        ingest.url.clone(),
        env.token("grid").to_string(),
        150,
        1_000,
        stop.clone(),
    ));
    // Some reports flow normally first, and the processor is consuming.
    let store = env.clickhouse().await;
    eventually(
        "the first reports stored",
        Duration::from_secs(120),
        || async {
            let n = e2e::try_scalar(&store, "SELECT count() FROM crash_reports").await?;
            (n > 100).then_some(())
        },
    )
    .await;

    let outage = Instant::now();
    let broker_back = BrokerBack;
    tokio::task::spawn_blocking(|| services(&["stop", "kafka"]))
        .await
        .expect("stop kafka");
    tokio::time::sleep_until(outage + Duration::from_secs(30)).await;
    tokio::task::spawn_blocking(move || drop(broker_back))
        .await
        .expect("start kafka");
    // Load goes on for a while after the broker is back.
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.stop();
    let sent = load.await.expect("load task");
    assert!(sent.accepted.len() > 1_000, "the load ran: {sent:?}");

    settle_and_count("kafka stopped 30 s", &env, &sent, Some(&metrics)).await;
    // The processor's own view agrees: no partition behind.
    eventually(
        "lag metrics at zero on every partition",
        Duration::from_secs(60),
        || async {
            let lag = metrics.lag();
            (!lag.is_empty() && lag.values().all(|l| l.messages == 0)).then_some(())
        },
    )
    .await;

    processor.shutdown().await.expect("processor stops");
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stopped_under_load_delivers_every_report_it_accepted() {
    logs();
    let env = TestEnv::new();
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let ingest = start_ingest(env.ingest_config_with(&format!(
        "[limits]\nshutdown_grace_secs = 10\n\
         [rate_limits]\nmachine_per_second = 100\nmachine_burst = 1000\n\
         [spool]\ndir = \"{}\"\n",
        spool_dir.path().join("spool").display()
    )))
    .await;
    let processor = start_processor_with(env.processor_config(), Arc::default());
    let stop = Stop::default();
    let load = tokio::spawn(load(
        ingest.url.clone(),
        env.token("grid").to_string(),
        200,
        500,
        stop.clone(),
    ));
    let store = env.clickhouse().await;
    eventually("reports flowing", Duration::from_secs(120), || async {
        let n = e2e::try_scalar(&store, "SELECT count() FROM crash_reports").await?;
        (n > 500).then_some(())
    })
    .await;
    // What SIGTERM does in the binary: the same shutdown future resolves.
    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    stop.stop();
    let sent = load.await.expect("load task");
    assert!(
        sent.refused > 0,
        "some requests met a closed ingest: {}",
        sent.refused
    );
    settle_and_count("ingest stopped", &env, &sent, None).await;
    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}
