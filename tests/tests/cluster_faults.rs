//! Faults on the local cluster of `scripts/services start --cluster` (three
//! Kafka brokers, ZooKeeper, two ClickHouse replicas of one shard), each
//! under a steady load through ingest (with its spool, as deployed), then
//! the counts: every report answered 2xx must be in ClickHouse exactly once.
//!
//! - a Kafka broker that leads a partition of the reports topic is killed
//!   (SIGKILL: a crash, not a controlled shutdown) for 30 s and started
//!   again; the other two elect new leaders and, with two replicas in sync
//!   still, go on taking writes. Prints when answers were refused or slow
//!   (the leader-election window), and waits until the restarted broker is
//!   back in every partition's in-sync set;
//! - two ingest instances and two processor instances (processes of their
//!   own, one writing to each replica with `insert_quorum = 2`) share the
//!   load; one processor is killed (SIGKILL). Its partitions move to the
//!   other once its group session lapses, which re-reads what was not
//!   committed and finds, on the other replica, what was already stored.
//!
//! Each prints `sent, 2xx, non-2xx, stored, lost, doubled`. Run by
//! `scripts/cluster/check` with `KAFKA_BROKERS` and `CLICKHOUSE_URL` set to
//! the cluster's (the first replica), one test at a time; not run by a
//! plain `cargo test` (`test = false` in `Cargo.toml`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::cluster::{cluster_config, query, replica_urls, try_count};
use e2e::{ChildProcessor, TestEnv, eventually, fixtures, fresh_report, services, start_ingest};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

/// The test whose process becomes a processor ([`ChildProcessor`]).
const CHILD: &str = "processor_in_a_child_process";

/// Not a test of its own: a processor, when a test below starts this binary
/// as a [`ChildProcessor`]; otherwise it returns at once.
#[test]
fn processor_in_a_child_process() {
    e2e::serve_as_child_processor();
}

/// The services' logs on stderr (`RUST_LOG`, default `info`), once per
/// binary: a failed scenario is read from them.
fn logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(pipeline::logging::init);
}

/// The cluster's brokers; refuses to run against a single broker, which
/// these tests would not disturb.
fn cluster_brokers() -> String {
    let brokers = e2e::kafka_brokers();
    assert_eq!(
        brokers.split(',').count(),
        3,
        "KAFKA_BROKERS must list the cluster's three brokers (scripts/cluster/check sets it)"
    );
    brokers
}

/// Ingest as deployed: a spool for what Kafka does not take within the
/// delivery timeout, and rate limits no machine of the load reaches.
fn ingest_config(env: &TestEnv, spool: &std::path::Path) -> ingest::Config {
    env.ingest_config_with(&format!(
        "[limits]\nshutdown_grace_secs = 10\n\
         [rate_limits]\nmachine_per_second = 100\nmachine_burst = 1000\n\
         [spool]\ndir = \"{}\"\n",
        spool.display()
    ))
}

/// What a load run saw: every report sent, the ids answered 2xx, and when
/// answers were refused or slow.
#[derive(Debug, Default)]
struct Sent {
    sent: usize,
    accepted: HashSet<Uuid>,
    refused_at: Vec<Instant>,
    /// What the non-2xx answers were: a status, or the client's error.
    refused: std::collections::BTreeMap<String, usize>,
    /// When each answer that took longer than [`SLOW`] came, and how long
    /// it took.
    slow: Vec<(Instant, Duration)>,
}

/// An answer slower than this counts as held up by the fault.
const SLOW: Duration = Duration::from_secs(1);

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

/// Posts crash reports at `per_second` (open loop), in turn to each of
/// `urls`, until `until` is stopped; at most `in_flight` requests wait at
/// once. Each report comes from one of 500 machines.
async fn load(urls: Vec<String>, token: String, per_second: u32, until: Stop) -> Sent {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let sent = Arc::new(Mutex::new(Sent::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(500));
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while !until.is_stopped() {
        ticks.tick().await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let mut report = fresh_report(fixtures::CRASH);
        report["machine_id"] = json!(format!("cluster-fault-{:03}", n % 500));
        let id: Uuid = report["report_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("uuid");
        let url = urls[n % urls.len()].clone();
        n += 1;
        let (http, token, sent) = (http.clone(), token.clone(), Arc::clone(&sent));
        tasks.spawn(async move {
            let asked = Instant::now();
            let answer = http
                .post(format!("{url}/v1/reports"))
                .bearer_auth(token)
                .json(&report)
                .send()
                .await;
            let took = asked.elapsed();
            let mut sent = sent.lock().expect("lock");
            sent.sent += 1;
            match answer {
                Ok(response) if response.status().is_success() => {
                    sent.accepted.insert(id);
                }
                other => {
                    let why = match other {
                        Ok(response) => response.status().to_string(),
                        Err(error) if error.is_timeout() => "client timeout (30 s)".into(),
                        Err(error) if error.is_connect() => "connection refused".into(),
                        Err(_) => "connection error".into(),
                    };
                    *sent.refused.entry(why).or_default() += 1;
                    sent.refused_at.push(Instant::now());
                }
            }
            if took > SLOW {
                sent.slow.push((Instant::now(), took));
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

/// The counts on one replica: every accepted report stored once, and
/// counted once by the aggregate. Prints them; asserts 0 lost, 0 doubled.
async fn count_on(scenario: &str, http: &reqwest::Client, url: &str, database: &str, sent: &Sent) {
    for table in ["crash_reports", "crash_signatures_agg"] {
        query(
            http,
            url,
            &format!("SYSTEM SYNC REPLICA {database}.{table}"),
        )
        .await;
    }
    let ids: HashSet<Uuid> = query(
        http,
        url,
        &format!("SELECT toString(report_id) FROM {database}.crash_reports"),
    )
    .await
    .lines()
    .map(|l| l.parse().expect("uuid"))
    .collect();
    let rows = try_count(
        http,
        url,
        &format!("SELECT count() FROM {database}.crash_reports"),
    )
    .await
    .expect("row count");
    let counted = try_count(
        http,
        url,
        &format!("SELECT toUInt64(sum(reports)) FROM {database}.crash_signatures"),
    )
    .await
    .expect("aggregate count");
    let lost = sent.accepted.difference(&ids).count();
    let doubled = rows - ids.len() as u64;
    // A report whose answer was lost (a timeout) may be stored without a
    // 2xx: not a loss, and listed apart.
    let unanswered = ids.difference(&sent.accepted).count();
    println!(
        "{scenario}, read on {url}: sent {}, 2xx {}, non-2xx {} {:?}, stored {} (+{unanswered} never answered 2xx), \
         lost {lost}, doubled {doubled}, counted by the aggregate {counted}",
        sent.sent,
        sent.accepted.len(),
        sent.refused_at.len(),
        sent.refused,
        ids.len() - unanswered,
    );
    assert_eq!(lost, 0, "{scenario} on {url}: accepted reports missing");
    assert_eq!(doubled, 0, "{scenario} on {url}: reports written twice");
    assert_eq!(
        counted,
        ids.len() as u64,
        "{scenario} on {url}: the aggregate counts each report once"
    );
}

/// Waits until `url` holds every accepted report.
async fn all_stored(http: &reqwest::Client, url: &str, database: &str, sent: &Sent) {
    let expected = sent.accepted.len() as u64;
    let sql = format!("SELECT uniqExact(report_id) FROM {database}.crash_reports");
    eventually(
        &format!("every accepted report on {url}"),
        Duration::from_secs(300),
        || async { try_count(http, url, &sql).await.filter(|n| *n >= expected) },
    )
    .await;
}

/// `(partition, leader, replicas, in-sync replicas)` of each partition of
/// `topic`, or `None` while the metadata cannot say.
fn partitions(topic: &str) -> Option<Vec<(i32, i32, usize, usize)>> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster_brokers())
        .create()
        .ok()?;
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    let found = metadata.topics().first()?;
    if found.error().is_some() || found.partitions().is_empty() {
        return None;
    }
    Some(
        found
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader(), p.replicas().len(), p.isr().len()))
            .collect(),
    )
}

async fn partitions_of(topic: &str) -> Option<Vec<(i32, i32, usize, usize)>> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || partitions(&topic))
        .await
        .expect("metadata task")
}

/// Starts the broker again however the test ends, and waits until the
/// cluster lists it.
struct BrokerBack(i32);

impl Drop for BrokerBack {
    fn drop(&mut self) {
        services(&["start-broker", "--cluster", &self.0.to_string()]);
    }
}

/// `first..last` of `times` relative to `from`, in seconds, or "none".
fn window(times: impl Iterator<Item = Instant>, from: Instant) -> String {
    let offsets: Vec<f64> = times
        .map(|t| t.saturating_duration_since(from).as_secs_f64())
        .collect();
    if offsets.is_empty() {
        return "none".into();
    }
    let first = offsets.iter().copied().fold(f64::INFINITY, f64::min);
    let last = offsets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} from +{first:.1} s to +{last:.1} s", offsets.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_leading_partitions_killed_for_30_s_under_load_loses_nothing() {
    logs();
    let http = reqwest::Client::new();
    let env = TestEnv::new();
    cluster_brokers();
    let replica = replica_urls()[0].clone();
    let spool = tempfile::tempdir().expect("temp dir");
    let ingest = start_ingest(ingest_config(&env, spool.path())).await;
    let mut config = env.processor_config();
    config.clickhouse = cluster_config(&replica, &env.database);
    config.batch.lag_interval_ms = 1_000;
    let metrics = Arc::new(processor::Metrics::default());
    let processor = e2e::start_processor_with(config, Arc::clone(&metrics));

    // Ingest made the topics: three replicas of each partition, all in sync.
    let layout = eventually(
        "the reports topic with every replica in sync",
        Duration::from_secs(60),
        || async {
            partitions_of(&env.reports_topic).await.filter(|ps| {
                ps.iter()
                    .all(|&(_, leader, r, isr)| leader >= 0 && r == 3 && isr == 3)
            })
        },
    )
    .await;
    // The leader of partition 0: its partitions must elect new leaders.
    let victim = layout[0].1;
    let led = layout.iter().filter(|p| p.1 == victim).count();

    let stop = Stop::default();
    let load = tokio::spawn(load(
        vec![ingest.url.clone()],
        env.token("grid").to_string(),
        100,
        stop.clone(),
    ));
    let stored = format!("SELECT count() FROM {}.crash_reports", env.database);
    eventually(
        "the first reports stored",
        Duration::from_secs(120),
        || async {
            try_count(&http, &replica, &stored)
                .await
                .filter(|n| *n > 100)
        },
    )
    .await;

    let outage = Instant::now();
    let broker_back = BrokerBack(victim);
    tokio::task::spawn_blocking(move || {
        services(&["kill-broker", "--cluster", &victim.to_string()]);
    })
    .await
    .expect("broker killed");
    // While it is down the other two lead every partition.
    let moved = eventually(
        "new leaders for the killed broker's partitions",
        Duration::from_secs(60),
        || async {
            partitions_of(&env.reports_topic).await.filter(|ps| {
                ps.iter()
                    .all(|&(_, leader, _, isr)| leader >= 0 && leader != victim && isr == 2)
            })
        },
    )
    .await;
    let elected = outage.elapsed();
    tokio::time::sleep_until(outage + Duration::from_secs(30)).await;
    tokio::task::spawn_blocking(move || drop(broker_back))
        .await
        .expect("broker started");
    let listed = outage.elapsed();
    // Back in the in-sync set of every partition: only then could another
    // broker stop without refusing writes.
    eventually(
        "the restarted broker in every partition's in-sync set",
        Duration::from_secs(120),
        || async {
            partitions_of(&env.reports_topic)
                .await
                .filter(|ps| ps.iter().all(|&(_, _, _, isr)| isr == 3))
        },
    )
    .await;
    let in_sync = outage.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.stop();
    let sent = load.await.expect("load task");
    assert!(sent.accepted.len() > 1_000, "the load ran: {}", sent.sent);

    all_stored(&http, &replica, &env.database, &sent).await;
    env.caught_up(Duration::from_secs(180)).await;
    // Answers were slow before the kill too (two cores for everything);
    // those after it are what the election and the restart cost.
    let (before, after): (Vec<_>, Vec<_>) = sent.slow.iter().partition(|s| s.0 < outage);
    let slowest =
        |slow: &[&(Instant, Duration)]| slow.iter().map(|s| s.1.as_secs_f64()).fold(0.0, f64::max);
    println!(
        "kafka broker {victim} (leader of {led} of {} partitions) killed for 30 s: \
         new leaders seen at +{:.1} s ({moved:?}), the broker listed again at +{:.1} s, \
         every replica in sync at +{:.1} s; non-2xx answers: {}; answers slower than {} s: \
         {} before the kill (the slowest {:.1} s), after it {} (the slowest {:.1} s)",
        layout.len(),
        elected.as_secs_f64(),
        listed.as_secs_f64(),
        in_sync.as_secs_f64(),
        window(sent.refused_at.iter().copied(), outage),
        SLOW.as_secs(),
        before.len(),
        slowest(&before),
        window(after.iter().map(|s| s.0), outage),
        slowest(&after),
    );
    count_on(
        "kafka broker killed 30 s",
        &http,
        &replica,
        &env.database,
        &sent,
    )
    .await;
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
    e2e::cluster::cleanup(&http, &env, &cluster_brokers()).await;
}

/// The partitions a processor holds (assigned less revoked) and the rows
/// it has written, from its `/metrics`.
async fn held(processor: &ChildProcessor) -> Option<(f64, f64)> {
    let assigned = processor
        .counter("processor_partitions_assigned_total")
        .await?;
    let revoked = processor
        .counter("processor_partitions_revoked_total")
        .await?;
    let rows = processor.counter("processor_rows_inserted_total").await?;
    Some((assigned - revoked, rows))
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A group session short enough for a killed instance's partitions to move
/// within the test.
const KAFKA_PROPERTIES: &str = "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_processors_killed_under_load_its_partitions_move_and_nothing_is_lost_or_doubled()
 {
    logs();
    let http = reqwest::Client::new();
    let env = TestEnv::new();
    cluster_brokers();
    let urls = replica_urls();
    e2e::migrate(&cluster_config(&urls[0], &env.database)).await;
    let spools = [
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    ];
    let ingests = [
        start_ingest(ingest_config(&env, spools[0].path())).await,
        start_ingest(ingest_config(&env, spools[1].path())).await,
    ];
    // One processor per replica; a quorum insert is on both before its
    // offsets are stored, so either one's look-up finds what the other
    // wrote.
    let group = env.processor_config().group_id;
    let start = |url: &str| {
        let metrics = free_port();
        let toml = env.processor_toml(url, metrics, KAFKA_PROPERTIES).replace(
            &format!("database = \"{}\"\n", env.database),
            &format!(
                "database = \"{}\"\ncluster = \"telemetry\"\ninsert_quorum = 2\n",
                env.database
            ),
        );
        async move { ChildProcessor::start(CHILD, &toml, metrics, "info").await }
    };
    // Started together, so that the group's first assignment spreads the
    // partitions over both.
    let (first, second) = tokio::join!(start(&urls[0]), start(&urls[1]));

    let stop = Stop::default();
    let load = tokio::spawn(load(
        ingests.iter().map(|i| i.url.clone()).collect(),
        env.token("grid").to_string(),
        100,
        stop.clone(),
    ));
    // Two members, each holding partitions, and some reports written.
    let (on_first, on_second) = eventually(
        "both processors in the group holding partitions, reports written",
        Duration::from_secs(120),
        || async {
            let (a, b) = (held(&first).await?, held(&second).await?);
            (e2e::group_members(&group).await? == 2 && a.0 > 0.0 && b.0 > 0.0 && a.1 + b.1 > 500.0)
                .then_some((a, b))
        },
    )
    .await;
    // The one writing reports is killed (the first if both are): its
    // partitions of the reports topic move to the one on the other replica.
    let (killed, survivor, killed_held, survivor_held) = if on_first.1 > 0.0 {
        (first, second, on_first, on_second)
    } else {
        (second, first, on_second, on_first)
    };
    let assigned_before = survivor
        .counter("processor_partitions_assigned_total")
        .await
        .unwrap_or_default();
    let skipped_before = survivor
        .counter("processor_duplicates_skipped_total")
        .await
        .unwrap_or_default();

    let killed_at = Instant::now();
    drop(killed); // SIGKILL
    eventually(
        "the survivor given the killed processor's partitions",
        Duration::from_secs(120),
        || async {
            (e2e::group_members(&group).await? == 1
                && survivor
                    .counter("processor_partitions_assigned_total")
                    .await?
                    > assigned_before)
                .then_some(())
        },
    )
    .await;
    let moved = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.stop();
    let sent = load.await.expect("load task");
    assert!(sent.accepted.len() > 1_000, "the load ran: {}", sent.sent);

    all_stored(&http, &urls[1], &env.database, &sent).await;
    env.caught_up_as(&group, Duration::from_secs(180)).await;
    let skipped = survivor
        .counter("processor_duplicates_skipped_total")
        .await
        .unwrap_or_default()
        - skipped_before;
    println!(
        "one of two processors killed: before the kill the killed one held {} partitions \
         and had written {} rows, the survivor {} and {}; the partitions moved after {:.1} s; \
         the survivor skipped {skipped} reports already stored",
        killed_held.0,
        killed_held.1,
        survivor_held.0,
        survivor_held.1,
        moved.as_secs_f64()
    );
    for url in &urls {
        count_on(
            "one of two processors killed",
            &http,
            url,
            &env.database,
            &sent,
        )
        .await;
    }

    assert!(survivor.stop().await, "the survivor stops cleanly");
    for ingest in ingests {
        ingest.running.shutdown().await.expect("ingest stops");
    }
    e2e::cluster::cleanup(&http, &env, &cluster_brokers()).await;
}
