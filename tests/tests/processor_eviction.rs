//! A processor evicted from its consumer group rejoins by itself and loses
//! nothing: against the real Kafka and ClickHouse, the processor runs in a
//! process of its own and is frozen (SIGSTOP) until the group coordinator
//! has evicted it, under load, once with nothing in flight and once with a
//! batch stuck in a ClickHouse insert; then it runs on (SIGCONT), and every
//! report must be stored exactly once and the group's committed offsets
//! must reach the end of every partition, without a restart.
//!
//! The eviction revokes every partition as lost and assigns them back at
//! once; rows of a partition re-read after that must be kept. With the
//! revocations applied when the batch is written rather than at the poll
//! that ran them (the processor before 974d388), the first test loses about
//! a tenth of its reports while the committed offsets move past them.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{
    ChildProcessor, PausableProxy, TestEnv, accepted, clickhouse_url, eventually, fixtures,
    group_members, produce, scalar,
};
use schemas::AcceptedReport;
use serde_json::json;

/// The test whose process becomes the processor ([`ChildProcessor`]).
const CHILD: &str = "processor_in_a_child_process";

/// Not a test of its own: the processor, when a test below starts this
/// binary as a [`ChildProcessor`]; otherwise it returns at once.
#[test]
fn processor_in_a_child_process() {
    e2e::serve_as_child_processor();
}

const WAIT: Duration = Duration::from_secs(120);

/// A group session short enough to be lost in a test; librdkafka's log of
/// the group and the consumer, for a failure to be read from.
const KAFKA_PROPERTIES: &str = "[kafka.properties]\n\
     \"session.timeout.ms\" = \"6000\"\n\
     \"debug\" = \"cgrp,consumer\"\n";

const RUST_LOG: &str = "info,processor::consumer=debug";

fn crashes(n: usize, tag: &str) -> Vec<AcceptedReport> {
    (0..n)
        .map(|i| {
            let mut report = accepted(fixtures::CRASH, "grid", &format!("machine-{:03}", i % 97));
            report.payload["frames"][0]["function"] = json!(format!("{tag}{}", i % 5));
            report
        })
        .collect()
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// What librdkafka and the processor say about the group: shown when the
/// group does not catch up.
const GROUP_LOG: [&str; 11] = [
    "SESSTMOUT",
    "REBALANCE",
    "ASSIGN",
    "REVOKE",
    "LOST",
    "REJOIN",
    "JOINGROUP",
    "HEARTBEAT",
    "partitions",
    "WARN",
    "ERROR",
];

/// Polls the group's committed offsets until nothing is left; on failure
/// shows what the child logged about its group.
async fn caught_up(env: &TestEnv, child: &ChildProcessor) {
    let log = child.log.clone();
    let watcher = tokio::spawn(async move {
        tokio::time::sleep(WAIT - Duration::from_secs(1)).await;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| GROUP_LOG.iter().any(|n| l.contains(n)))
            .collect();
        eprintln!(
            "--- processor log ({}) ---\n{}",
            log.display(),
            lines.join("\n")
        );
    });
    env.caught_up(WAIT).await;
    watcher.abort();
}

/// Freezes the child until the coordinator has removed it from the group;
/// how long that took.
async fn freeze_until_evicted(child: &ChildProcessor, group: &str) -> Duration {
    let frozen = tokio::time::Instant::now();
    child.freeze();
    eventually(
        "the coordinator evicted the frozen processor",
        WAIT,
        || async { (group_members(group).await? == 0).then_some(()) },
    )
    .await;
    frozen.elapsed()
}

/// Counts every report of `sent` in `crash_reports` and in the views.
async fn assert_each_once(env: &TestEnv, sent: usize) {
    let store = env.clickhouse().await;
    let stored = scalar(&store, "SELECT count() FROM crash_reports").await;
    let distinct = scalar(&store, "SELECT uniqExact(report_id) FROM crash_reports").await;
    let signatures = scalar(
        &store,
        "SELECT toUInt64(sum(reports)) FROM crash_signatures",
    )
    .await;
    println!(
        "sent {sent}, stored {distinct}, lost {}, doubled {}",
        sent as u64 - distinct.min(sent as u64),
        stored - distinct
    );
    assert_eq!(distinct, sent as u64, "every report stored");
    assert_eq!(stored, sent as u64, "each once");
    assert_eq!(signatures, sent as u64, "each counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_processor_rejoins_by_itself_and_stores_every_report_once() {
    const THIRD: usize = 1_500;
    let env = TestEnv::new();
    let group = env.processor_config().group_id;
    let metrics = free_port();
    let mut child = ChildProcessor::start(
        CHILD,
        &env.processor_toml(&clickhouse_url(), metrics, KAFKA_PROPERTIES),
        metrics,
        RUST_LOG,
    )
    .await;
    let pid = child.pid();

    let before = crashes(THIRD, "Before");
    produce(&env.reports_topic, &before).await;
    caught_up(&env, &child).await;

    // Reports keep coming while the processor is frozen and evicted.
    let during = tokio::spawn({
        let topic = env.reports_topic.clone();
        let reports = crashes(THIRD, "During");
        async move { produce(&topic, &reports).await }
    });
    let frozen = freeze_until_evicted(&child, &group).await;
    child.thaw();
    eventually("the processor saw its partitions go", WAIT, || async {
        (child.counter("processor_partitions_revoked_total").await? > 0.0).then_some(())
    })
    .await;
    during.await.expect("reports sent while frozen");
    produce(&env.reports_topic, &crashes(THIRD, "After")).await;

    caught_up(&env, &child).await;
    println!("frozen {frozen:?} until evicted; pid {pid} throughout");
    assert_each_once(&env, 3 * THIRD).await;
    assert!(child.running(), "never restarted");
    back_in_its_group(&group).await;
    assert!(child.stop().await, "stops cleanly");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_while_a_batch_is_stuck_in_clickhouse_it_rejoins_and_loses_nothing() {
    const THIRD: usize = 1_500;
    let env = TestEnv::new();
    let group = env.processor_config().group_id;
    let clickhouse: SocketAddr = clickhouse_url()
        .trim_start_matches("http://")
        .parse()
        .expect("CLICKHOUSE_URL is http://host:port");
    let proxy = PausableProxy::start(clickhouse).await;
    let metrics = free_port();
    let mut child = ChildProcessor::start(
        CHILD,
        &env.processor_toml(&format!("http://{}", proxy.addr), metrics, KAFKA_PROPERTIES),
        metrics,
        RUST_LOG,
    )
    .await;

    produce(&env.reports_topic, &crashes(THIRD, "Before")).await;
    caught_up(&env, &child).await;

    // ClickHouse stops answering; the next batch's write waits in flight.
    proxy.pause();
    produce(&env.reports_topic, &crashes(THIRD, "Stuck")).await;
    eventually("a write waits for ClickHouse", WAIT, || async {
        (proxy.held() > 0).then_some(())
    })
    .await;
    let during = tokio::spawn({
        let topic = env.reports_topic.clone();
        let reports = crashes(THIRD, "During");
        async move { produce(&topic, &reports).await }
    });
    let frozen = freeze_until_evicted(&child, &group).await;
    child.thaw();
    // The insert stays stuck a little longer after the processor runs
    // again (the fault, not a wait for its effect).
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.resume();
    during.await.expect("reports sent while frozen");
    produce(&env.reports_topic, &crashes(THIRD, "After")).await;

    caught_up(&env, &child).await;
    println!("frozen {frozen:?} until evicted, ClickHouse held back throughout");
    assert_each_once(&env, 4 * THIRD).await;
    assert!(
        child.counter("processor_partitions_revoked_total").await > Some(0.0),
        "the processor saw its partitions go"
    );
    assert!(child.running(), "never restarted");
    back_in_its_group(&group).await;
    assert!(child.stop().await, "stops cleanly");
    env.cleanup().await;
}

/// The processor is its group's one member again. Asked until the brokers
/// answer so: a group listing may time out, or come while a rebalance
/// settles.
async fn back_in_its_group(group: &str) {
    eventually("back in its group, alone", WAIT, || async {
        (group_members(group).await? == 1).then_some(())
    })
    .await;
}
