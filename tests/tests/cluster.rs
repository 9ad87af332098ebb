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
//! - a store whose first replica does not answer connects to the next of
//!   its `fallback_urls`;
//! - the configurations of docker-compose's `cluster` profile load.
//!
//! A replica stopped under load is `cluster_replicas.rs`. Run by
//! `scripts/cluster/check`, which starts the cluster and waits for it; not
//! run by a plain `cargo test` (`test = false` in `Cargo.toml`), since the
//! single-node services are all that `.ci/run` starts. Addresses from
//! [`e2e::cluster`].

use std::time::Duration;

use e2e::cluster::{brokers, cluster_config, count, query, replica_urls};
use e2e::eventually;
use pipeline::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use uuid::Uuid;

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

/// A store whose first server does not answer connects to the next of its
/// `fallback_urls`, and reads and writes there.
#[tokio::test]
async fn a_store_whose_first_replica_does_not_answer_connects_to_the_next() {
    let http = reqwest::Client::new();
    let urls = replica_urls();
    let database = format!("cluster_fallback_{}", suffix());
    // Nothing listens on port 1 of loopback: the connection is refused.
    let config = processor::config::ClickHouseConfig {
        fallback_urls: vec![urls[1].clone()],
        ..cluster_config("http://127.0.0.1:1", &database)
    };
    let store = processor::Store::connect(&config)
        .await
        .expect("connected to the second replica");
    assert_eq!(store.url(), urls[1]);
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations apply through the second replica");
    store
        .client()
        .query(
            "INSERT INTO feedback (report_id, received_at, sent_at, machine_hash, rating) \
             SELECT generateUUIDv4(), now(), now(), 'machine', 5 FROM system.numbers LIMIT 10",
        )
        .execute()
        .await
        .expect("an insert through the second replica");
    query(
        &http,
        &urls[0],
        &format!("SYSTEM SYNC REPLICA {database}.feedback"),
    )
    .await;
    let on_first = count(
        &http,
        &urls[0],
        &format!("SELECT count() FROM {database}.feedback"),
    )
    .await;
    assert_eq!(on_first, 10, "replica 1 fetched the insert");
    query(
        &http,
        &urls[0],
        &format!("DROP DATABASE {database} ON CLUSTER telemetry"),
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
    assert_eq!(
        processor.clickhouse.fallback_urls,
        ["http://clickhouse-2:8123"]
    );
}
