//! Checks against the local cluster of `scripts/services start --cluster`:
//! three Kafka brokers, ZooKeeper, and two ClickHouse replicas of one shard.
//!
//! - topics the services create there get three replicas, two of them
//!   required in sync (`pipeline::topic_replication` from the broker count);
//! - a `ReplicatedMergeTree` table made `ON CLUSTER` exists on both
//!   replicas, and a row inserted into one is read from the other.
//!
//! Run by `scripts/cluster/check`, which starts the cluster and waits for it;
//! not run by a plain `cargo test` (`test = false` in `Cargo.toml`), since the
//! single-node services are all that `.ci/run` starts. Addresses from
//! `CLUSTER_KAFKA_BROKERS` and `CLUSTER_CLICKHOUSE_URLS` (comma-separated),
//! with the cluster's loopback defaults.

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
