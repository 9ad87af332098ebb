//! The local cluster of `scripts/services start --cluster` (three Kafka
//! brokers, ZooKeeper, two ClickHouse replicas of one shard) as the cluster
//! tests see it: its addresses (`CLUSTER_KAFKA_BROKERS`,
//! `CLUSTER_CLICKHOUSE_URLS`, comma-separated, with loopback defaults), a
//! database on both replicas, and statements on one replica over HTTP.

use processor::config::ClickHouseConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::TestEnv;

/// The cluster's three brokers.
pub fn brokers() -> String {
    std::env::var("CLUSTER_KAFKA_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094".into())
}

/// The HTTP addresses of the two ClickHouse replicas.
pub fn replica_urls() -> Vec<String> {
    std::env::var("CLUSTER_CLICKHOUSE_URLS")
        .unwrap_or_else(|_| "http://127.0.0.1:28123,http://127.0.0.1:28124".into())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A database of the cluster's replicas, migrated as `telemetry-admin
/// migrate` does with `[clickhouse] cluster = "telemetry"`.
pub fn cluster_config(url: &str, database: &str) -> ClickHouseConfig {
    ClickHouseConfig {
        cluster: "telemetry".into(),
        ..ClickHouseConfig::local(url, database)
    }
}

/// One statement on one replica over HTTP; the body of the answer.
pub async fn query(http: &reqwest::Client, url: &str, sql: &str) -> String {
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

/// One number from one replica.
pub async fn count(http: &reqwest::Client, url: &str, sql: &str) -> u64 {
    query(http, url, sql)
        .await
        .trim()
        .parse()
        .expect("a number")
}

/// One number from one replica, or `None` while it does not answer.
pub async fn try_count(http: &reqwest::Client, url: &str, sql: &str) -> Option<u64> {
    let response = http.post(url).body(sql.to_owned()).send().await.ok()?;
    response.text().await.ok()?.trim().parse().ok()
}

/// Drops the test's database on both replicas (`ON CLUSTER`) and its
/// topics on `brokers`.
pub async fn cleanup(http: &reqwest::Client, env: &TestEnv, brokers: &str) {
    query(
        http,
        &replica_urls()[0],
        &format!(
            "DROP DATABASE IF EXISTS {} ON CLUSTER telemetry",
            env.database
        ),
    )
    .await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
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
