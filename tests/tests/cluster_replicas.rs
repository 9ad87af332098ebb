//! A ClickHouse replica stopped or hung under load, against the local cluster of
//! `scripts/services start --cluster` (three Kafka brokers, ZooKeeper, two
//! ClickHouse replicas of one shard). In: crash reports posted to ingest at
//! a steady rate; out: the counts on each replica, printed (sent, 2xx,
//! stored, lost, doubled) and asserted.
//!
//! - replica 2 stopped 60 s while the processor writes to replica 1 without
//!   a quorum: it catches up, and both count every report answered 2xx once;
//! - the same with `insert_quorum = 2` and replica 2 stopped 30 s: inserts
//!   are refused and retried meanwhile, none set aside, and both replicas
//!   then count every report once;
//! - replica 1, the one the processor writes to, stopped 30 s, with replica 2
//!   among its `fallback_urls`: it moves to replica 2 and goes on writing,
//!   and after its restart replica 1 fetches what it missed;
//! - replica 1 hanging 30 s (its connections held open, nothing answered),
//!   with replica 2 as fallback and a 3 s request timeout: the processor
//!   moves to replica 2 as well;
//! - a store starting while replica 2 is stopped connects.
//!
//! They stop a replica, so `scripts/cluster/check` runs them one at a time;
//! not run by a plain `cargo test` (`test = false` in `Cargo.toml`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::cluster::{brokers, cluster_config, count, query, replica_urls, try_count};
use e2e::eventually;
use pipeline::KafkaConfig;
use uuid::Uuid;

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

/// Replica 2 stopped for 60 s under a steady load while the processor
/// writes to replica 1 (without a quorum, so it keeps writing); after its
/// restart replica 2 fetches what it missed, and both count every report
/// answered 2xx exactly once. The processor talks to one replica: stopping
/// that one is an outage for it, which it waits out as on a single server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_load_catches_up_and_both_count_every_report_once() {
    replica_fault_under_load(0, Fault::Stop(2), Duration::from_secs(60)).await;
}

/// The same with `insert_quorum = 2`, replica 2 stopped for 30 s: no insert
/// can reach its quorum meanwhile, so each fails (transient) and is retried
/// with its offsets unmoved, none is set aside, and once replica 2 is back
/// the backlog is written and both count every report answered 2xx once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_quorum_of_two_a_replica_stop_holds_inserts_back_and_loses_nothing() {
    replica_fault_under_load(2, Fault::Stop(2), Duration::from_secs(30)).await;
}

/// Replica 1, the one the processor writes to, stopped for 30 s under the
/// same load, with replica 2 in `clickhouse.fallback_urls`: the processor
/// moves to replica 2 at its first failed write and goes on writing there
/// meanwhile; after its restart replica 1 fetches what it missed, and both
/// count every report answered 2xx once (a row replica 1 took and replica 2
/// had not fetched when it stopped is written again: its raw table
/// collapses the copies, and `FINAL` and the aggregates count it once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_moves_to_another_replica_when_its_own_stops() {
    replica_fault_under_load(0, Fault::Stop(1), Duration::from_secs(30)).await;
}

/// Replica 1 taking the processor's connections and answering nothing for
/// 30 s (a proxy in front of it holds every byte), with replica 2 in
/// `fallback_urls` and `request_timeout_ms` at 3 s: the request times out,
/// the processor moves to replica 2 and goes on writing there, and both
/// count every report answered 2xx once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_moves_to_another_replica_when_its_own_hangs() {
    replica_fault_under_load(0, Fault::Hang, Duration::from_secs(30)).await;
}

/// A store (a processor, `telemetry-admin`) starting while replica 2 is
/// stopped connects through replica 1: its database is there, so it is not
/// made again `ON CLUSTER`, which would wait for replica 2 until the DDL
/// timeout, longer than the store's request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_starts_while_another_replica_is_down() {
    let http = reqwest::Client::new();
    let urls = replica_urls();
    let env = e2e::TestEnv::new();
    let config = cluster_config(&urls[0], &env.database);
    processor::Store::connect(&config)
        .await
        .expect("the database made on both replicas");
    let stopped = Stopped::replica(2).await;
    let store = processor::Store::connect(&config)
        .await
        .expect("connected while replica 2 is down");
    assert_eq!(store.url(), urls[0]);
    stopped.restart().await;
    e2e::cluster::cleanup(&http, &env, &brokers()).await;
}

/// What befalls a replica in [`replica_fault_under_load`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Replica N stopped (`scripts/services stop-replica --cluster N`) and
    /// started again after the outage.
    Stop(u8),
    /// Replica 1, reached through a [`e2e::PausableProxy`], stops answering
    /// while its connections stay open, and answers again after the outage.
    Hang,
}

/// A replica stopped by a test, started again by [`Stopped::restart`] or,
/// if the test ends first, when dropped, so the tests after it find the
/// whole cluster.
struct Stopped(bool);

impl Stopped {
    /// Stops replica `n` (`scripts/services stop-replica --cluster n`).
    async fn replica(n: u8) -> Stopped {
        // Armed first: a stop that fails half-way is undone too.
        let stopped = Stopped(true);
        let n = n.to_string();
        tokio::task::spawn_blocking(move || e2e::services(&["stop-replica", "--cluster", &n]))
            .await
            .expect("replica stopped");
        stopped
    }

    /// Starts the replica again and waits until the cluster is ready.
    async fn restart(mut self) {
        tokio::task::spawn_blocking(start_cluster)
            .await
            .expect("replica back");
        self.0 = false;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0 {
            start_cluster();
        }
    }
}

/// Starts whatever of the cluster is stopped, and waits for all of it.
fn start_cluster() {
    e2e::services(&["start", "--cluster"]);
    e2e::services(&["wait", "--cluster"]);
}

/// How long the oldest uncommitted message must wait before the quorum
/// test takes its offsets as held back: far above a batch's time to be
/// written and committed here (about a second).
const HELD_BACK: Duration = Duration::from_secs(10);

/// Lets `fault` befall a replica for `outage_for` under load. The processor
/// writes to replica 1; when the fault is replica 1's, it has replica 2 to
/// fall back on.
async fn replica_fault_under_load(insert_quorum: u32, fault: Fault, outage_for: Duration) {
    // The services' logs on stderr (`RUST_LOG`, default `info`), once per
    // binary: a failure is read from them.
    static LOGS: std::sync::Once = std::sync::Once::new();
    LOGS.call_once(pipeline::logging::init);
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
    let proxy = match fault {
        Fault::Hang => {
            let replica: std::net::SocketAddr = first
                .trim_start_matches("http://")
                .parse()
                .expect("replica 1 at http://host:port");
            Some(e2e::PausableProxy::start(replica).await)
        }
        Fault::Stop(_) => None,
    };
    let mut config = env.processor_config();
    config.kafka = KafkaConfig::local(brokers());
    let processor_url = proxy
        .as_ref()
        .map_or_else(|| first.clone(), |p| format!("http://{}", p.addr));
    config.clickhouse = cluster_config(&processor_url, &env.database);
    config.clickhouse.insert_quorum = insert_quorum;
    let falls_over = fault != Fault::Stop(2);
    if falls_over {
        config.clickhouse.fallback_urls = vec![second.clone()];
        config.clickhouse.request_timeout_ms = 3_000;
    }
    config.batch.lag_interval_ms = 500;
    let metrics = Arc::new(processor::Metrics::default());
    let processor = e2e::start_processor_with(config, metrics.clone());

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
        async move { try_count(&http, &first, &sql).await }
    };
    let before = eventually(
        "the first reports stored",
        Duration::from_secs(120),
        || async { stored_on_first().await.filter(|n| *n > 100) },
    )
    .await;

    let failures_before = processor::Metrics::get(&metrics.insert_failures);
    let outage = tokio::time::Instant::now();
    let stopped = match (fault, &proxy) {
        (Fault::Stop(which), _) => Some(Stopped::replica(which).await),
        (Fault::Hang, Some(proxy)) => {
            proxy.pause();
            None
        }
        (Fault::Hang, None) => unreachable!("a hang goes through the proxy"),
    };
    if falls_over {
        // The processor moves to replica 2 and goes on writing there.
        eventually(
            "the processor moved to replica 2",
            Duration::from_secs(60),
            || async {
                (processor::Metrics::get(&metrics.clickhouse_replica_moves) > 0).then_some(())
            },
        )
        .await;
        let moved_with = count(&http, &second, &raw_on("crash_reports")).await;
        eventually(
            "reports stored on replica 2 while replica 1 is down",
            Duration::from_secs(60),
            || async {
                try_count(&http, &second, &raw_on("crash_reports"))
                    .await
                    .filter(|n| *n > moved_with + 200)
            },
        )
        .await;
    } else if insert_quorum < 2 {
        // The processor goes on writing to replica 1 meanwhile.
        eventually(
            "reports stored while replica 2 is down",
            Duration::from_secs(60),
            || async { stored_on_first().await.filter(|n| *n > before + 200) },
        )
        .await;
    } else {
        // No insert reaches its quorum: replica 1 refuses it (fewer live
        // replicas than the quorum) or, if it began before replica 2 left,
        // holds it until replica 2 is back. Either way no offset moves.
        eventually(
            "offsets held back for want of a quorum",
            outage_for,
            || async {
                let oldest = metrics.lag().values().map(|l| l.oldest_uncommitted).max();
                oldest.filter(|oldest| *oldest >= HELD_BACK).map(|_| ())
            },
        )
        .await;
    }
    tokio::time::sleep_until(outage + outage_for).await;
    match (stopped, &proxy) {
        (Some(stopped), _) => stopped.restart().await,
        (None, Some(proxy)) => proxy.resume(),
        (None, None) => unreachable!("every fault is a stop or a hang"),
    }
    let down = outage.elapsed();
    let refused = processor::Metrics::get(&metrics.insert_failures) - failures_before;
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.expect("load");
    let expected = sent.accepted.len() as u64;
    assert!(expected > 500, "the load ran: {} sent", sent.sent);

    // The replica that stayed up holds every accepted report, and its
    // views counted them. The backlog of a 60 s stop is drained while the
    // other fetches what it missed, on the same two cores: as long a
    // deadline as the fault suite's.
    let (kept, restarted) = if falls_over {
        (&second, &first)
    } else {
        (&first, &second)
    };
    let distinct = format!("SELECT uniqExact(report_id) FROM {db}.crash_reports");
    let aggregated = format!("SELECT toUInt64(sum(reports)) FROM {db}.crash_signatures");
    eventually(
        "every accepted report on the replica that stayed up",
        Duration::from_secs(300),
        || async {
            (count(&http, kept, &distinct).await >= expected
                && count(&http, kept, &aggregated).await >= expected)
                .then_some(())
        },
    )
    .await;
    // The restarted replica fetches what it missed.
    for table in ["crash_reports", "crash_signatures_agg"] {
        query(
            &http,
            restarted,
            &format!("SYSTEM SYNC REPLICA {db}.{table}"),
        )
        .await;
    }
    let ids: std::collections::HashSet<Uuid> = query(
        &http,
        restarted,
        &format!("SELECT toString(report_id) FROM {db}.crash_reports"),
    )
    .await
    .lines()
    .map(|l| l.parse().expect("uuid"))
    .collect();
    let lost = sent.accepted.difference(&ids).count();
    let moves = processor::Metrics::get(&metrics.clickhouse_replica_moves);
    let collapsed_sql = format!("SELECT count() FROM {db}.crash_reports FINAL");
    for url in [&first, &second] {
        let rows = count(&http, url, &raw_on("crash_reports")).await;
        let collapsed = count(&http, url, &collapsed_sql).await;
        let stored = count(&http, url, &distinct).await;
        let counted = count(&http, url, &aggregated).await;
        println!(
            "{fault:?} away {:.0} s (for {} s, then until ready; \
             insert_quorum {insert_quorum}; inserts failed meanwhile {refused}; \
             moves to another replica {moves}), read on {url}: \
             sent {}, 2xx {expected}, stored {stored}, lost {lost}, doubled {}, \
             counted {counted}, copies awaiting a merge {}",
            down.as_secs_f64(),
            outage_for.as_secs(),
            sent.sent,
            collapsed - stored,
            rows - collapsed
        );
        assert_eq!(lost, 0, "{url}: accepted reports missing");
        assert_eq!(
            stored, expected,
            "{url}: rows for reports never answered 2xx"
        );
        assert_eq!(collapsed, stored, "{url}: reports written twice");
        if !falls_over {
            // Written to one replica throughout: not even a copy to merge.
            assert_eq!(rows, stored, "{url}: reports written twice");
        }
        assert_eq!(
            counted, expected,
            "{url}: the aggregate counts each report once"
        );
    }
    if falls_over {
        assert!(moves >= 1, "the processor moved to replica 2");
    } else {
        assert_eq!(moves, 0, "no replica to move to");
    }
    assert_eq!(
        processor::Metrics::get(&metrics.dead_letters),
        0,
        "an insert refused for want of a replica is retried, not set aside"
    );

    processor.shutdown().await.expect("processor stops");
    ingest.running.shutdown().await.expect("ingest stops");
    e2e::cluster::cleanup(&http, &env, &brokers()).await;
}
