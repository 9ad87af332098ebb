//! The disk spool against the real broker: the broker is stopped while
//! reports arrive, and started again. Every accepted report reaches Kafka,
//! counted end to end. These tests stop the broker every other test needs:
//! they live in a binary of their own (cargo runs test binaries one at a
//! time) and take turns through `BROKER`.

use std::time::Duration;

use e2e::{TestEnv, eventually, fixtures, fresh_report, services, start_ingest};
use serde_json::Value;

/// One test at a time may stop the broker.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the broker again however the test ends.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        services(&["start", "kafka"]);
        services(&["wait", "kafka"]);
    }
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> u64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_wait_in_the_spool_while_kafka_is_down_and_none_is_lost() {
    const WHILE_DOWN: usize = 25;
    let _turn = BROKER.lock().await;
    let env = TestEnv::new();
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let config = env.ingest_config_with(&format!(
        "[limits]\ndelivery_timeout_ms = 1000\nshutdown_grace_secs = 5\n\
         [spool]\ndir = \"{}\"\nmax_bytes = 1048576\nsegment_bytes = 65536\n",
        spool_dir.path().join("spool").display()
    ));
    let ingest = start_ingest(config).await;
    let http = reqwest::Client::new();
    let post = |report: Value| {
        http.post(format!("{}/v1/reports", ingest.url))
            .bearer_auth(env.token("grid"))
            .json(&report)
            .send()
    };
    assert_eq!(
        post(fresh_report(fixtures::CRASH))
            .await
            .expect("post")
            .status(),
        202
    );
    assert_eq!(env.reports_in_kafka().await, 1);

    let broker_back = BrokerBack;
    services(&["stop", "kafka"]);
    for i in 0..WHILE_DOWN {
        let fixture = if i % 2 == 0 {
            fixtures::CRASH
        } else {
            fixtures::HEARTBEAT
        };
        let response = post(fresh_report(fixture)).await.expect("post");
        assert_eq!(response.status(), 202, "report {i} while Kafka is down");
    }
    assert!(metric(&http, &ingest.url, "ingest_spool_records").await > 0);
    let ready = http
        .get(format!("{}/readyz", ingest.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "ready while the spool has room");

    drop(broker_back);
    // The spool empties a moment before the forwarder counts what it sent:
    // wait for both.
    eventually("spool drained", Duration::from_secs(90), || async {
        let left = metric(&http, &ingest.url, "ingest_spool_records").await;
        let forwarded = metric(&http, &ingest.url, "ingest_spool_forwarded_total").await;
        let spooled = metric(
            &http,
            &ingest.url,
            "ingest_reports_total{outcome=\"spooled\"",
        )
        .await;
        (left == 0 && forwarded == spooled).then_some(())
    })
    .await;
    // Every accepted report is in Kafka; a few may be there twice (the
    // producer's own retry racing the spool), never fewer.
    let in_kafka = env.reports_in_kafka().await;
    assert!(
        in_kafka > WHILE_DOWN as i64,
        "{in_kafka} messages for {} accepted reports",
        1 + WHILE_DOWN
    );
    let spooled = metric(
        &http,
        &ingest.url,
        "ingest_reports_total{outcome=\"spooled\"",
    )
    .await;
    let accepted = metric(
        &http,
        &ingest.url,
        "ingest_reports_total{outcome=\"accepted\"",
    )
    .await;
    assert_eq!(spooled + accepted, 1 + WHILE_DOWN as u64);
    assert!(spooled > 0, "reports went through the spool");
    assert_eq!(
        metric(&http, &ingest.url, "ingest_spool_forwarded_total").await,
        spooled
    );
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_with_507_and_retry_after() {
    let _turn = BROKER.lock().await;
    let env = TestEnv::new();
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let config = env.ingest_config_with(&format!(
        "[limits]\ndelivery_timeout_ms = 500\nshutdown_grace_secs = 5\n\
         [spool]\ndir = \"{}\"\nmax_bytes = 4096\nsegment_bytes = 1024\n",
        spool_dir.path().join("spool").display()
    ));
    let ingest = start_ingest(config).await;
    let http = reqwest::Client::new();
    let broker_back = BrokerBack;
    services(&["stop", "kafka"]);
    let mut kept = 0;
    let refusal = loop {
        let response = http
            .post(format!("{}/v1/reports", ingest.url))
            .bearer_auth(env.token("grid"))
            .json(&fresh_report(fixtures::CRASH))
            .send()
            .await
            .expect("post");
        if response.status() != 202 {
            break response;
        }
        kept += 1;
        assert!(kept < 100, "a 4 KiB spool cannot take 100 crash reports");
    };
    assert_eq!(refusal.status(), 507);
    assert!(refusal.headers().contains_key("retry-after"));
    let body: Value = refusal.json().await.expect("JSON");
    assert_eq!(body["error"], "spool_full");
    assert!(kept >= 1, "the spool took what fitted");
    drop(broker_back);
    eventually("spool drained", Duration::from_secs(90), || async {
        (metric(&http, &ingest.url, "ingest_spool_records").await == 0).then_some(())
    })
    .await;
    assert!(env.reports_in_kafka().await >= kept);
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}
