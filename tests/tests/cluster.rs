//! Checks against the local cluster of `scripts/services start --cluster`:
//! three Kafka brokers, ZooKeeper, and two ClickHouse replicas of one shard.
//!
//! - topics the services create there get three replicas, two of them
//!   required in sync (`pipeline::topic_replication` from the broker count);
//! - a `ReplicatedMergeTree` table made `ON CLUSTER` exists on both
//!   replicas, and a row inserted into one is read from the other;
//! - the migrations with `[clickhouse] cluster` make every table replicated
//!   on both replicas, which then count alike;
//! - with `insert_quorum = 2` an insert through one replica is read at once
//!   through the other;
//! - replica 2 stopped 60 s under load while the processor writes to replica 1:
//!   it catches up, and both count every report answered 2xx once (prints
//!   sent, 2xx, stored, lost, doubled). It stops a replica, so the check
//!   runs these tests one at a time;
//! - the configurations of docker-compose's `cluster` profile load.
//!
//! Run by `scripts/cluster/check`, which starts the cluster and waits for it;
//! not run by a plain `cargo test` (`test = false` in `Cargo.toml`), since the
//! single-node services are all that `.ci/run` starts. Addresses from
//! `CLUSTER_KAFKA_BROKERS` and `CLUSTER_CLICKHOUSE_URLS` (comma-separated),
//! with the cluster's loopback defaults.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::eventually;
use pipeline::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use uuid::Uuid;

fn brokers() -> String {
    std::env::var("CLUSTER_KAFKA_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094".into())
}

fn replica_urls() -> Vec<String> {
    std::env::var("CLUSTER_CLICKHOUSE_URLS")
        .unwrap_or_else(|_| "http://127.0.0.1:28123,http://127.0.0.1:28124".into())
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn suffix() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

#[tokio::test]
async fn topics_on_three_brokers_get_three_replicas_and_two_in_sync() {
    let config = KafkaConfig::local(brokers());
    let topic = format!("cluster-check-{}", suffix());
    pipeline::ensure_topics(&config, &[&topic])
        .await
        .expect("topic created");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(15))
        .expect("metadata");
    assert_eq!(
        metadata.brokers().len(),
        3,
        "the cluster lists three brokers"
    );
    let partitions = metadata.topics()[0].partitions();
    assert_eq!(partitions.len(), config.partitions as usize);
    for partition in partitions {
        assert_eq!(
            partition.replicas().len(),
            3,
            "partition {}",
            partition.id()
        );
    }
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let resource = described[0].as_ref().expect("topic config");
    let min_insync = resource
        .get("min.insync.replicas")
        .and_then(|entry| entry.value.clone());
    assert_eq!(min_insync.as_deref(), Some("2"));

    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .expect("topic deleted");
}

/// One statement on one replica over HTTP; the body of the answer.
async fn query(http: &reqwest::Client, url: &str, sql: &str) -> String {
    let response = http
        .post(url)
        .body(sql.to_owned())
        .send()
        .await
        .expect("clickhouse reachable");
    let status = response.status();
    let body = response.text().await.expect("answer");
    assert!(status.is_success(), "{sql}: {status} {body}");
    body
}

#[tokio::test]
async fn a_row_inserted_on_one_replica_is_read_on_the_other() {
    let http = reqwest::Client::new();
    let urls = replica_urls();
    let (first, second) = (&urls[0], &urls[1]);
    let database = format!("cluster_check_{}", suffix());

    // ON CLUSTER: each replica's DDL worker runs the statement, and the
    // answer lists both replicas once both have.
    query(
        &http,
        first,
        &format!("CREATE DATABASE {database} ON CLUSTER telemetry"),
    )
    .await;
    query(
        &http,
        first,
        &format!(
            "CREATE TABLE {database}.rows ON CLUSTER telemetry (id UInt64, at DateTime) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{database}/rows', \
             '{{replica}}') ORDER BY id"
        ),
    )
    .await;
    for url in &urls {
        let tables = query(
            &http,
            url,
            &format!("SELECT engine FROM system.tables WHERE database = '{database}'"),
        )
        .await;
        assert_eq!(tables.trim(), "ReplicatedMergeTree", "{url}");
    }

    query(
        &http,
        first,
        &format!("INSERT INTO {database}.rows VALUES (42, now())"),
    )
    .await;
    // The second replica fetches the part from the first: SYNC REPLICA
    // returns once its queue is empty, and the row is then there.
    query(
        &http,
        second,
        &format!("SYSTEM SYNC REPLICA {database}.rows"),
    )
    .await;
    let seen = eventually(
        "the row on the second replica",
        Duration::from_secs(30),
        || {
            let http = http.clone();
            let sql = format!("SELECT toString(sum(id)) FROM {database}.rows");
            async move {
                let body = query(&http, second, &sql).await;
                (body.trim() == "42").then_some(body)
            }
        },
    )
    .await;
    assert_eq!(seen.trim(), "42");
    let replicas = query(
        &http,
        second,
        &format!(
            "SELECT total_replicas, active_replicas FROM system.replicas \
             WHERE database = '{database}' AND table = 'rows'"
        ),
    )
    .await;
    assert_eq!(replicas.trim(), "2\t2");

    query(
        &http,
        first,
        &format!("DROP DATABASE {database} ON CLUSTER telemetry"),
    )
    .await;
}

/// A database of the cluster's replicas, migrated as `telemetry-admin
/// migrate` does with `[clickhouse] cluster = "telemetry"`.
fn cluster_config(url: &str, database: &str) -> processor::config::ClickHouseConfig {
    processor::config::ClickHouseConfig {
        cluster: "telemetry".into(),
        ..processor::config::ClickHouseConfig::local(url, database)
    }
}

#[tokio::test]
async fn the_migrations_make_replicated_tables_on_both_replicas_that_count_alike() {
    let http = reqwest::Client::new();
    let urls = replica_urls();
    let (first, second) = (&urls[0], &urls[1]);
    let database = format!("cluster_migrate_{}", suffix());
    let store = processor::Store::connect(&cluster_config(first, &database))
        .await
        .expect("connected to the first replica");
    let applied = warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations apply on the cluster");
    assert_eq!(applied.len(), schemas::MIGRATIONS.len());

    // Both replicas hold the same tables and views, every table replicated,
    // with its ZooKeeper path from the macros.
    let listing = format!(
        "SELECT name, engine FROM system.tables WHERE database = '{database}' ORDER BY name"
    );
    let on_first = query(&http, first, &listing).await;
    let on_second = query(&http, second, &listing).await;
    assert_eq!(on_first, on_second, "both replicas have the same tables");
    let mut tables = 0;
    for line in on_first.lines() {
        let (name, engine) = line.split_once('\t').expect("name and engine");
        if engine.ends_with("MergeTree") {
            tables += 1;
            assert!(engine.starts_with("Replicated"), "{name}: {engine}");
        } else {
            assert!(engine.ends_with("View"), "{name}: {engine}");
        }
    }
    assert!(
        tables >= 16,
        "every table, schema_migrations too: {on_first}"
    );
    // One path per table, in the shard's and the database's folder; a
    // table a migration made under another name and renamed keeps the
    // path of that name.
    let paths = query(
        &http,
        second,
        &format!(
            "SELECT toString(uniqExact(zookeeper_path)), \
             toString(countIf(startsWith(zookeeper_path, '/clickhouse/tables/01/{database}/'))) \
             FROM system.replicas WHERE database = '{database}'"
        ),
    )
    .await;
    assert_eq!(
        paths.trim(),
        format!("{tables}\t{tables}"),
        "paths from the macros"
    );

    // The second replica agrees on what ran: its own look at
    // schema_migrations finds nothing pending, and a second run applies
    // nothing.
    query(
        &http,
        second,
        &format!("SYSTEM SYNC REPLICA {database}.schema_migrations"),
    )
    .await;
    let on_replica_two = processor::Store::connect(&cluster_config(second, &database))
        .await
        .expect("connected to the second replica");
    on_replica_two
        .check_migrations()
        .await
        .expect("the second replica has every migration recorded");
    assert!(
        warehouse::migrate::apply_all(&on_replica_two)
            .await
            .expect("a second run")
            .is_empty()
    );

    // A heartbeat inserted on the first replica feeds the views there; the
    // second fetches both the raw part and the aggregate part, and counts
    // the machine once.
    query(
        &http,
        first,
        &format!(
            "INSERT INTO {database}.heartbeats (report_id, received_at, sent_at, machine_hash, \
             os_build_full, build_key, day) \
             SELECT generateUUIDv4(), now(), now(), 'machine-1', '10.0.19045.3570', 1, today()"
        ),
    )
    .await;
    for table in ["heartbeats", "machine_days_agg"] {
        query(
            &http,
            second,
            &format!("SYSTEM SYNC REPLICA {database}.{table}"),
        )
        .await;
    }
    let counted = format!("SELECT toString(sum(active_machines)) FROM {database}.crash_free_daily");
    assert_eq!(query(&http, second, &counted).await.trim(), "1");
    assert_eq!(query(&http, first, &counted).await.trim(), "1");
    let raw = format!("SELECT toString(count()) FROM {database}.heartbeats");
    assert_eq!(query(&http, second, &raw).await.trim(), "1");

    query(
        &http,
        first,
        &format!("DROP DATABASE {database} ON CLUSTER telemetry"),
    )
    .await;
}

/// With `insert_quorum = 2` an insert is acknowledged once both replicas
/// have it, so the processor's look-up of stored ids on either replica
/// finds it at once, without waiting for replication.
#[tokio::test]
async fn a_quorum_insert_on_one_replica_is_found_at_once_on_the_other() {
    let http = reqwest::Client::new();
    let urls = replica_urls();
    let database = format!("cluster_quorum_{}", suffix());
    let quorum = |url: &str| processor::config::ClickHouseConfig {
        insert_quorum: 2,
        ..cluster_config(url, &database)
    };
    let writer = processor::Store::connect(&quorum(&urls[0]))
        .await
        .expect("connected to the first replica");
    warehouse::migrate::apply_all(&writer)
        .await
        .expect("migrations apply on the cluster");
    let reader = processor::Store::connect(&quorum(&urls[1]))
        .await
        .expect("connected to the second replica");
    for batch in 0..5u32 {
        writer
            .client()
            .query(
                "INSERT INTO feedback (report_id, received_at, sent_at, machine_hash, rating) \
                 SELECT generateUUIDv4(), now(), now(), concat('machine-', toString(number)), 5 \
                 FROM system.numbers LIMIT 100",
            )
            .execute()
            .await
            .expect("a quorum insert");
        let seen: u64 = reader
            .client()
            .query("SELECT count() FROM feedback")
            .fetch_one()
            .await
            .expect("a sequentially consistent read on the second replica");
        assert_eq!(seen, u64::from(batch + 1) * 100, "batch {batch}");
    }
    query(
        &http,
        &urls[0],
        &format!("DROP DATABASE {database} ON CLUSTER telemetry"),
    )
    .await;
}

/// What a load run saw: every report sent, and the ids answered 2xx.
#[derive(Debug, Default)]
struct Sent {
    sent: usize,
    accepted: std::collections::HashSet<Uuid>,
}

/// Posts crash reports from `workers` loops, each at most ten a second,
/// until `stop` is set; each report comes from one of 300 machines.
async fn load(url: String, token: String, workers: usize, stop: Arc<AtomicBool>) -> Sent {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let (http, url, token, stop) = (http.clone(), url.clone(), token.clone(), stop.clone());
        tasks.spawn(async move {
            let mut sent = Sent::default();
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let mut report = e2e::fresh_report(e2e::fixtures::CRASH);
                report["machine_id"] = serde_json::json!(format!(
                    "replica-fault-{:03}",
                    (sent.sent * workers + worker) % 300
                ));
                let id: Uuid = report["report_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("uuid");
                sent.sent += 1;
                let answer = http
                    .post(format!("{url}/v1/reports"))
                    .bearer_auth(&token)
                    .json(&report)
                    .send()
                    .await;
                if answer.is_ok_and(|a| a.status().is_success()) {
                    sent.accepted.insert(id);
                }
            }
            sent
        });
    }
    let mut all = Sent::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.expect("load worker");
        all.sent += done.sent;
        all.accepted.extend(done.accepted);
    }
    all
}

/// One number from one replica.
async fn count(http: &reqwest::Client, url: &str, sql: &str) -> u64 {
    query(http, url, sql)
        .await
        .trim()
        .parse()
        .expect("a number")
}

/// Replica 2 stopped for 60 s under a steady load while the processor
/// writes to replica 1 (without a quorum, so it keeps writing); after its
/// restart replica 2 fetches what it missed, and both count every report
/// answered 2xx exactly once. The processor talks to one replica: stopping
/// that one is an outage for it, which it waits out as on a single server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_load_catches_up_and_both_count_every_report_once() {
    // The services' logs on stderr (`RUST_LOG`, default `info`): a failure
    // is read from them.
    pipeline::logging::init();
    let http = reqwest::Client::new();
    let urls = replica_urls();
    let (first, second) = (urls[0].clone(), urls[1].clone());
    let env = e2e::TestEnv::new();
    let kafka_line = |brokers: &str| format!("brokers = \"{brokers}\"");
    let ingest_toml = env
        .ingest_toml("")
        .replace(&kafka_line(&e2e::kafka_brokers()), &kafka_line(&brokers()));
    let ingest =
        e2e::start_ingest(ingest::Config::from_toml(&ingest_toml).expect("ingest config")).await;
    let mut config = env.processor_config();
    config.kafka = KafkaConfig::local(brokers());
    config.clickhouse = cluster_config(&first, &env.database);
    let processor = e2e::start_processor(config);

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(
        ingest.url.clone(),
        env.token("grid").to_string(),
        8,
        stop.clone(),
    ));
    let db = &env.database;
    let raw_on = |table: &str| format!("SELECT count() FROM {db}.{table}");
    let stored_on_first = || {
        let (http, first, sql) = (http.clone(), first.clone(), raw_on("crash_reports"));
        async move {
            let body = http
                .post(&first)
                .body(sql)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            body.trim().parse::<u64>().ok()
        }
    };
    let before = eventually(
        "the first reports stored",
        Duration::from_secs(120),
        || async { stored_on_first().await.filter(|n| *n > 100) },
    )
    .await;

    let outage = tokio::time::Instant::now();
    tokio::task::spawn_blocking(|| e2e::services(&["stop-replica", "--cluster", "2"]))
        .await
        .expect("replica 2 stopped");
    // The processor goes on writing to replica 1 meanwhile.
    eventually(
        "reports stored while replica 2 is down",
        Duration::from_secs(60),
        || async { stored_on_first().await.filter(|n| *n > before + 200) },
    )
    .await;
    tokio::time::sleep_until(outage + Duration::from_secs(60)).await;
    tokio::task::spawn_blocking(|| {
        e2e::services(&["start", "--cluster"]);
        e2e::services(&["wait", "--cluster"]);
    })
    .await
    .expect("replica 2 back");
    let down = outage.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.expect("load");
    let expected = sent.accepted.len() as u64;
    assert!(expected > 500, "the load ran: {} sent", sent.sent);

    // Replica 1 holds every accepted report, and its views counted them.
    // The backlog of a 60 s stop is drained while replica 2 fetches what it
    // missed, on the same two cores: as long a deadline as the fault suite's.
    let distinct = format!("SELECT uniqExact(report_id) FROM {db}.crash_reports");
    let aggregated = format!("SELECT toUInt64(sum(reports)) FROM {db}.crash_signatures");
    eventually(
        "every accepted report on replica 1",
        Duration::from_secs(300),
        || async {
            (count(&http, &first, &distinct).await >= expected
                && count(&http, &first, &aggregated).await >= expected)
                .then_some(())
        },
    )
    .await;
    // Replica 2 fetches what it missed.
    for table in ["crash_reports", "crash_signatures_agg"] {
        query(&http, &second, &format!("SYSTEM SYNC REPLICA {db}.{table}")).await;
    }
    let ids: std::collections::HashSet<Uuid> = query(
        &http,
        &second,
        &format!("SELECT toString(report_id) FROM {db}.crash_reports"),
    )
    .await
    .lines()
    .map(|l| l.parse().expect("uuid"))
    .collect();
    let lost = sent.accepted.difference(&ids).count();
    for url in [&first, &second] {
        let rows = count(&http, url, &raw_on("crash_reports")).await;
        let stored = count(&http, url, &distinct).await;
        let counted = count(&http, url, &aggregated).await;
        println!(
            "replica 2 away {:.0} s (stopped 60 s, then restarted until ready), read on {url}: sent {}, 2xx {expected}, stored {stored}, \
             lost {lost}, doubled {}, counted {counted}",
            down.as_secs_f64(),
            sent.sent,
            rows - stored
        );
        assert_eq!(lost, 0, "{url}: accepted reports missing");
        assert_eq!(
            stored, expected,
            "{url}: rows for reports never answered 2xx"
        );
        assert_eq!(rows, stored, "{url}: reports written twice");
        assert_eq!(
            counted, expected,
            "{url}: the aggregate counts each report once"
        );
    }

    processor.shutdown().await.expect("processor stops");
    ingest.running.shutdown().await.expect("ingest stops");
    query(
        &http,
        &first,
        &format!("DROP DATABASE {db} ON CLUSTER telemetry"),
    )
    .await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let _ = admin
        .delete_topics(
            &[
                &env.reports_topic,
                &env.outcomes_topic,
                &env.dead_letters_topic,
            ],
            &AdminOptions::new(),
        )
        .await;
}

/// The configurations of docker-compose's `cluster` profile load, and name
/// every broker of the cluster and its replicated ClickHouse.
#[test]
fn the_compose_cluster_configurations_load() {
    let brokers = "kafka-1:9092,kafka-2:9092,kafka-3:9092";
    let ingest = ingest::Config::from_toml(include_str!("../../config/cluster/ingest.toml"))
        .expect("config/cluster/ingest.toml loads");
    assert_eq!(ingest.kafka.brokers, brokers);
    let processor =
        processor::Config::from_toml(include_str!("../../config/cluster/processor.toml"))
            .expect("config/cluster/processor.toml loads");
    assert_eq!(processor.kafka.brokers, brokers);
    assert_eq!(processor.clickhouse.cluster, "telemetry");
    assert_eq!(processor.clickhouse.insert_quorum, 2);
}
