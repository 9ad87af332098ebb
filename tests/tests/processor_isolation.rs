//! No one message holds up the others, and a stall shows: against the real
//! Kafka and ClickHouse, poison messages of every kind in the middle of
//! thousands of good ones, a partition whose inserts keep failing, and a
//! second processor joining and leaving the group again and again.

use std::sync::Arc;
use std::time::Duration;

use e2e::{
    TestEnv, accepted, eventually, fixtures, produce, produce_raw, read_messages, scalar,
    start_processor_with,
};
use schemas::AcceptedReport;
use serde_json::json;
use time::macros::datetime;

const WAIT: Duration = Duration::from_secs(120);

fn crash(n: usize) -> AcceptedReport {
    let mut report = accepted(fixtures::CRASH, "grid", &format!("machine-{:04}", n % 300));
    report.payload["frames"][0]["function"] = json!(format!("Handler{}", n % 7));
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_in_the_middle_of_ten_thousand_hold_up_nothing() {
    const GOOD: usize = 10_000;
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations");
    let metrics = Arc::new(processor::Metrics::default());
    let processor = start_processor_with(env.processor_config(), Arc::clone(&metrics));

    let mut good: Vec<AcceptedReport> = (0..GOOD).map(crash).collect();
    // A machine whose clock is before 1970: kept, not poison.
    good[GOOD / 3].sent_at = datetime!(1969-12-31 23:59:59 UTC);
    let wrong_clock = good[GOOD / 3].report_id;
    // Heartbeats of 150 different months in one batch: more partitions than
    // current ClickHouse takes in one insert; split, never set aside.
    let months: Vec<AcceptedReport> = (0..150)
        .map(|m| {
            let mut report = accepted(fixtures::HEARTBEAT, "grid", &format!("month-{m:03}"));
            report.payload["day"] = json!(format!("{}-{:02}-15", 2010 + m / 12, 1 + m % 12));
            report
        })
        .collect();
    // Accepted by an older edge, unstorable: a day no ClickHouse Date holds.
    let mut unstorable = accepted(fixtures::HEARTBEAT, "grid", "machine-poison");
    unstorable.payload["day"] = json!("1926-11-20");

    let (first, rest) = good.split_at(GOOD / 2);
    produce(&env.reports_topic, first).await;
    produce(&env.reports_topic, &months).await;
    produce(&env.reports_topic, std::slice::from_ref(&unstorable)).await;
    produce_raw(
        &env.reports_topic,
        &[("machine-garbage".to_string(), b"not json at all".to_vec())],
    )
    .await;
    produce(&env.reports_topic, rest).await;

    env.caught_up(WAIT).await;
    let count = |sql: &'static str| {
        let store = &store;
        async move { scalar(store, sql).await }
    };
    assert_eq!(
        count("SELECT uniqExact(report_id) FROM crash_reports").await,
        GOOD as u64
    );
    assert_eq!(
        count("SELECT count() FROM crash_reports").await,
        GOOD as u64,
        "each once"
    );
    assert_eq!(
        count("SELECT toUInt64(sum(reports)) FROM crash_signatures").await,
        GOOD as u64
    );
    assert_eq!(count("SELECT count() FROM heartbeats").await, 150);
    assert_eq!(
        scalar(
            &store,
            &format!(
                "SELECT toUInt64(toUnixTimestamp(sent_at)) FROM crash_reports WHERE report_id = toUUID('{wrong_clock}')"
            )
        )
        .await,
        0,
        "a clock before 1970 is stored as the epoch"
    );
    assert_eq!(
        count(
            "SELECT count() FROM processing_errors WHERE stage = 'write' AND reason = 'unstorable'"
        )
        .await,
        1
    );
    assert_eq!(
        count("SELECT count() FROM processing_errors WHERE stage = 'decode'").await,
        1
    );
    let dead = read_messages(&env.dead_letters_topic, 2, WAIT).await;
    let stages: Vec<&[u8]> = dead
        .iter()
        .filter_map(|m| e2e::header(m, "stage"))
        .collect();
    assert!(stages.contains(&b"write".as_slice()) && stages.contains(&b"decode".as_slice()));
    assert_eq!(processor::Metrics::get(&metrics.dead_letters), 2);

    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

/// The value of one metric line of `/metrics` text, summed over labels
/// that start with `prefix`.
fn metric_max(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_stops_committing_shows_in_the_metrics_within_a_minute() {
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut config = env.processor_config();
    config.metrics_listen = Some(format!("127.0.0.1:{port}").parse().expect("address"));
    config.batch.lag_interval_ms = 1_000;
    config.batch.max_backoff_ms = 1_000;
    let processor = start_processor_with(config, Arc::default());
    let http = reqwest::Client::new();
    let metrics = || async {
        http.get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    eventually("processor ready", WAIT, || async {
        let response = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())
    })
    .await;

    // Every insert into crash_reports now fails (a transient failure: the
    // table is missing), so nothing is committed while reports arrive.
    let run = |sql: String| {
        let store = &store;
        async move { store.client().query(&sql).execute().await.expect(&sql) }
    };
    run(format!("DETACH TABLE `{}`.crash_reports", env.database)).await;
    let reports: Vec<AcceptedReport> = (0..40).map(crash).collect();
    produce(&env.reports_topic, &reports).await;

    let seen = eventually(
        "the stall shows within a minute",
        Duration::from_secs(60),
        || async {
            let text = metrics().await?;
            let lag = metric_max(&text, "processor_partition_lag_messages{");
            let age = metric_max(&text, "processor_oldest_uncommitted_seconds ");
            (lag > 0.0 && age >= 5.0).then_some((lag, age))
        },
    )
    .await;
    println!(
        "stall visible: lag {} messages, oldest uncommitted {} s",
        seen.0, seen.1
    );

    run(format!("ATTACH TABLE `{}`.crash_reports", env.database)).await;
    eventually("the stall clears", WAIT, || async {
        let text = metrics().await?;
        let lag = metric_max(&text, "processor_partition_lag_messages{");
        let age = metric_max(&text, "processor_oldest_uncommitted_seconds ");
        (lag == 0.0 && age == 0.0).then_some(())
    })
    .await;
    assert_eq!(
        scalar(&store, "SELECT count() FROM crash_reports").await,
        40
    );

    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_and_leaving_twenty_times_loses_and_doubles_nothing() {
    const CYCLES: usize = 20;
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations");
    // Slow inserts: every block written to crash_reports also passes a view
    // that sleeps, so batches are in flight when partitions move.
    store
        .client()
        .query(&format!(
            "CREATE MATERIALIZED VIEW `{}`.slow_inserts ENGINE = Null AS \
             SELECT sleepEachRow(0.002) AS slept FROM `{}`.crash_reports",
            env.database, env.database
        ))
        .execute()
        .await
        .expect("slow view");
    let mut config = env.processor_config();
    // Batches gather long, so a partition often leaves and comes back
    // before its batch is written.
    config.batch.max_age_ms = 1_500;
    let steady = start_processor_with(config.clone(), Arc::default());

    let stream_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = {
        let (topic, stop) = (env.reports_topic.clone(), Arc::clone(&stream_stop));
        tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let chunk: Vec<AcceptedReport> = (sent..sent + 20).map(crash).collect();
                produce(&topic, &chunk).await;
                sent += chunk.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        })
    };

    for cycle in 0..CYCLES {
        let metrics = Arc::new(processor::Metrics::default());
        let visitor = start_processor_with(config.clone(), Arc::clone(&metrics));
        // Leave once the group gave the visitor partitions, or after a
        // while if the rebalance took longer.
        let joined = tokio::time::timeout(Duration::from_secs(15), async {
            while processor::Metrics::get(&metrics.partitions_assigned) == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok();
        tokio::time::sleep(Duration::from_millis(300 + 100 * (cycle as u64 % 5))).await;
        visitor.shutdown().await.expect("visitor stops");
        println!("cycle {cycle}: visitor assigned partitions: {joined}");
    }
    stream_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = stream.await.expect("stream") as u64;

    env.caught_up(Duration::from_secs(180)).await;
    let distinct = scalar(&store, "SELECT uniqExact(report_id) FROM crash_reports").await;
    let rows = scalar(&store, "SELECT count() FROM crash_reports").await;
    let counted = scalar(
        &store,
        "SELECT toUInt64(sum(reports)) FROM crash_signatures",
    )
    .await;
    println!(
        "rebalance churn: sent {sent}, stored {distinct}, lost {}, doubled {}",
        sent.saturating_sub(distinct),
        rows.saturating_sub(distinct)
    );
    assert_eq!(distinct, sent, "every report stored");
    assert_eq!(rows, distinct, "no report written twice");
    assert_eq!(counted, sent, "every report counted once");
    steady.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_started_before_kafka_waits_for_it_and_is_not_ready_meanwhile() {
    let env = TestEnv::new();
    // Kafka "is down": nothing listens on this port yet.
    let kafka_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut config = env.processor_config();
    config.kafka.brokers = format!("127.0.0.1:{kafka_port}");
    config.metrics_listen = Some(
        format!("127.0.0.1:{metrics_port}")
            .parse()
            .expect("address"),
    );
    let metrics = Arc::new(processor::Metrics::default());
    let processor = start_processor_with(config, Arc::clone(&metrics));
    let http = reqwest::Client::new();
    let ready = || async {
        http.get(format!("http://127.0.0.1:{metrics_port}/readyz"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    };

    eventually("a failed attempt to reach kafka", WAIT, || async {
        (processor::Metrics::get(&metrics.startup_retries) >= 2).then_some(())
    })
    .await;
    assert!(
        !processor.task.is_finished(),
        "the processor waits, it does not exit"
    );
    assert_eq!(ready().await, Some(503));

    // Kafka "comes up" on that port.
    let broker = tokio::net::TcpListener::bind(("127.0.0.1", kafka_port))
        .await
        .expect("the port is still free");
    let proxy = tokio::spawn(e2e::forward_to_kafka(broker));
    eventually("ready once kafka answers", WAIT, || async {
        (ready().await == Some(200)).then_some(())
    })
    .await;
    produce(&env.reports_topic, &[crash(1)]).await;
    let store = env.clickhouse().await;
    eventually("the report stored", WAIT, || async {
        let n = e2e::try_scalar(&store, "SELECT count() FROM crash_reports").await?;
        (n == 1).then_some(())
    })
    .await;

    processor.shutdown().await.expect("processor stops");
    proxy.abort();
    env.cleanup().await;
}
