//! What every end-to-end test needs, against the real servers that
//! `scripts/services` starts:
//!
//! - addresses from the environment with loopback defaults
//!   (`KAFKA_BROKERS`, `CLICKHOUSE_URL`);
//! - a [`TestEnv`] per test: its own topics and its own ClickHouse database
//!   (random suffix), removed again by [`TestEnv::cleanup`];
//! - ingest and processor started in-process, each stopped by dropping its
//!   handle's sender (the processor's database migrated first, as
//!   `telemetry-admin migrate` does before a rollout: [`migrate`]);
//! - [`eventually`]: polling with a deadline, never a fixed sleep;
//! - [`cluster`]: the local cluster's addresses and queries on a replica.

pub mod cluster;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ingest::auth::token_hash;
use pipeline::KafkaConfig;
use processor::config::{BatchConfig, ClickHouseConfig};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use schemas::AcceptedReport;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use schemas::fixtures;

/// The machine-id key every test deployment uses.
pub const MACHINE_ID_KEY: &str = "e2e-test-machine-id-key-0123456789abcdef";

/// Kafka brokers: `$KAFKA_BROKERS`, else the local broker.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// ClickHouse HTTP: `$CLICKHOUSE_URL`, else the local server.
pub fn clickhouse_url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// How the tests reach `database`: at [`clickhouse_url`], and, when
/// `$CLICKHOUSE_CLUSTER` names a cluster (as `scripts/cluster/check` sets
/// it to run the end-to-end tests on the local cluster), with the
/// migrations made replicated `ON CLUSTER`, as `[clickhouse] cluster` does.
pub fn clickhouse_config(database: &str) -> ClickHouseConfig {
    ClickHouseConfig {
        cluster: std::env::var("CLICKHOUSE_CLUSTER").unwrap_or_default(),
        ..ClickHouseConfig::local(clickhouse_url(), database)
    }
}

/// An organisation of the test deployment and the token its machines use.
#[derive(Debug, Clone)]
pub struct TestOrg {
    pub id: String,
    pub token: String,
    pub consent_cap: &'static str,
}

/// One test's own corner of the real servers.
#[derive(Debug)]
pub struct TestEnv {
    pub suffix: String,
    pub reports_topic: String,
    pub outcomes_topic: String,
    pub dead_letters_topic: String,
    pub database: String,
    /// `grid` (consent up to optional) and `water` (required only).
    pub orgs: Vec<TestOrg>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> Self {
        let suffix = Uuid::new_v4().simple().to_string()[..12].to_string();
        let org = |id: &str, cap| TestOrg {
            id: id.to_string(),
            token: format!("{id}-token-{suffix}"),
            consent_cap: cap,
        };
        TestEnv {
            reports_topic: format!("e2e.reports.{suffix}"),
            outcomes_topic: format!("e2e.outcomes.{suffix}"),
            dead_letters_topic: format!("e2e.dead-letters.{suffix}"),
            database: format!("e2e_{suffix}"),
            orgs: vec![org("grid", "optional"), org("water", "required")],
            suffix,
        }
    }

    pub fn kafka(&self) -> KafkaConfig {
        KafkaConfig::local(kafka_brokers())
    }

    pub fn token(&self, org: &str) -> &str {
        &self
            .orgs
            .iter()
            .find(|o| o.id == org)
            .expect("test organisation exists")
            .token
    }

    /// Ingest's configuration for this test, as an operator would write it.
    pub fn ingest_config(&self) -> ingest::Config {
        self.ingest_config_with("")
    }

    /// The configuration text with `extra` TOML tables appended (a
    /// `[limits]` table in `extra` replaces the test default).
    pub fn ingest_toml(&self, extra: &str) -> String {
        let mut text = format!(
            "machine_id_key = \"{MACHINE_ID_KEY}\"\n\
             reload_interval_ms = 100\n\
             [kafka]\nbrokers = \"{}\"\n\
             [topics]\nreports = \"{}\"\noutcomes = \"{}\"\n",
            kafka_brokers(),
            self.reports_topic,
            self.outcomes_topic,
        );
        if !extra.contains("[limits]") {
            text.push_str("[limits]\nshutdown_grace_secs = 5\n");
        }
        text.push_str(extra);
        text.push('\n');
        for org in &self.orgs {
            text.push_str(&format!(
                "[[organisation]]\nid = \"{0}\"\nname = \"{0}\"\nconsent_cap = \"{1}\"\n\
                 [[organisation.token]]\nsha256 = \"{2}\"\n",
                org.id,
                org.consent_cap,
                token_hash(&org.token)
            ));
        }
        text
    }

    pub fn ingest_config_with(&self, extra: &str) -> ingest::Config {
        ingest::Config::from_toml(&self.ingest_toml(extra))
            .expect("test ingest configuration is valid")
    }

    /// The processor's configuration for this test: its own group, topics
    /// and database; small batches; scheduled jobs off (tests run them).
    pub fn processor_config(&self) -> processor::Config {
        processor::Config {
            kafka: self.kafka(),
            group_id: format!("e2e-processor-{}", self.suffix),
            instance_id: None,
            topics: processor::config::Topics {
                reports: self.reports_topic.clone(),
                outcomes: self.outcomes_topic.clone(),
                dead_letters: self.dead_letters_topic.clone(),
            },
            clickhouse: clickhouse_config(&self.database),
            batch: BatchConfig {
                max_age_ms: 200,
                ..BatchConfig::default()
            },
            grouping: Default::default(),
            clustering: Default::default(),
            retention: processor::config::RetentionConfig {
                interval_secs: 0,
                ..Default::default()
            },
            analytics: processor::config::AnalyticsConfig {
                interval_secs: 0,
                ..Default::default()
            },
            metrics_listen: None,
        }
    }

    /// A ClickHouse client for this test's database, set up like the
    /// processor's.
    pub async fn clickhouse(&self) -> processor::Store {
        processor::Store::connect(&clickhouse_config(&self.database))
            .await
            .expect("clickhouse is up (scripts/services start)")
    }

    /// How many messages the reports topic holds, over all partitions.
    /// Exact once every send has been acknowledged.
    pub async fn reports_in_kafka(&self) -> i64 {
        messages_in(&self.reports_topic).await
    }
}

impl TestEnv {
    /// Waits until the processor's group has committed every message the
    /// reports and outcomes topics hold, or panics after `deadline`.
    ///
    /// The processor stores an offset only once its rows are written, and
    /// ClickHouse answers an insert only once the materialised views have
    /// written theirs. Raw rows become visible before the views' rows do, so
    /// a test that saw the raw count it expected must still wait for this
    /// before it reads an aggregate.
    pub async fn caught_up(&self, deadline: Duration) {
        self.caught_up_as(&self.processor_config().group_id, deadline)
            .await;
    }

    /// [`TestEnv::caught_up`] for a processor run under another group id.
    pub async fn caught_up_as(&self, group: &str, deadline: Duration) {
        let group = group.to_string();
        let topics = [self.reports_topic.clone(), self.outcomes_topic.clone()];
        eventually("the processor committed every message", deadline, || {
            let (group, topics) = (group.clone(), topics.clone());
            async move {
                tokio::task::spawn_blocking(move || uncommitted(&group, &topics))
                    .await
                    .expect("offsets task")
                    .filter(|behind| *behind == 0)
            }
        })
        .await;
    }
}

/// How many messages of `topics` `group` has not committed yet; `None` if
/// Kafka could not say.
fn uncommitted(group: &str, topics: &[String]) -> Option<i64> {
    let consumer = watermark_reader(group)?;
    let mut ends = Vec::new();
    let mut wanted = rdkafka::TopicPartitionList::new();
    for topic in topics {
        for (partition, low, high) in watermarks(&consumer, topic)? {
            if high > low {
                ends.push((topic.clone(), partition, low, high));
                wanted.add_partition(topic, partition);
            }
        }
    }
    if ends.is_empty() {
        return Some(0);
    }
    let committed = consumer.committed_offsets(wanted, WATERMARK_TIMEOUT).ok()?;
    let behind = ends
        .iter()
        .map(|(topic, partition, low, high)| {
            let at = match committed
                .find_partition(topic, *partition)
                .map(|p| p.offset())
            {
                Some(rdkafka::Offset::Offset(at)) => at,
                _ => *low,
            };
            (high - at).max(0)
        })
        .sum();
    Some(behind)
}

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer that only reads offsets; it joins no group.
fn watermark_reader(group: &str) -> Option<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .ok()
}

/// `(partition, low, high)` of each partition of `topic`; none for a topic
/// never created; `None` if Kafka could not say.
fn watermarks(consumer: &BaseConsumer, topic: &str) -> Option<Vec<(i32, i64, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), WATERMARK_TIMEOUT)
        .ok()?;
    let Some(found) = metadata.topics().first() else {
        return Some(Vec::new());
    };
    match found.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Some(Vec::new()),
        Some(_) => return None,
    }
    found
        .partitions()
        .iter()
        .map(|p| {
            if p.error().is_some() {
                return None;
            }
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), WATERMARK_TIMEOUT)
                .ok()?;
            Some((p.id(), low, high))
        })
        .collect()
}

/// How many messages `topic` holds, over all partitions.
///
/// A fresh client can be told "leader not available" for a partition of a
/// topic created moments ago, so an answer Kafka could not give is asked
/// again until it is given.
pub async fn messages_in(topic: &str) -> i64 {
    eventually(
        &format!("watermarks of {topic}"),
        Duration::from_secs(60),
        || {
            let topic = topic.to_string();
            async move {
                tokio::task::spawn_blocking(move || {
                    let consumer = watermark_reader("e2e-watermarks")?;
                    let ends = watermarks(&consumer, &topic)?;
                    Some(ends.iter().map(|(_, low, high)| high - low).sum())
                })
                .await
                .expect("watermark task")
            }
        },
    )
    .await
}

impl TestEnv {
    /// Deletes the test's topics and database.
    pub async fn cleanup(&self) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .create()
            .expect("admin client");
        let _ = admin
            .delete_topics(
                &[
                    &self.reports_topic,
                    &self.outcomes_topic,
                    &self.dead_letters_topic,
                ],
                &AdminOptions::new(),
            )
            .await;
        let store = self.clickhouse().await;
        let _ = store
            .client()
            .query(&format!(
                "DROP DATABASE IF EXISTS `{}`{}",
                self.database,
                store
                    .cluster()
                    .map(|c| format!(" ON CLUSTER {c}"))
                    .unwrap_or_default()
            ))
            .execute()
            .await;
    }
}

/// A service running in-process; dropping `stop` (or sending on it) asks it
/// to shut down.
#[derive(Debug)]
pub struct Running<E> {
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<Result<(), E>>,
}

impl<E> Running<E> {
    /// Asks the service to stop and waits until it has.
    pub async fn shutdown(self) -> Result<(), E> {
        let _ = self.stop.send(());
        self.task.await.expect("service task did not panic")
    }
}

fn stop_signal() -> (
    oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

/// A running ingest and the base URL to reach it.
#[derive(Debug)]
pub struct Ingest {
    pub url: String,
    pub addr: SocketAddr,
    pub running: Running<ingest::ServeError>,
}

/// Starts ingest on a free loopback port and waits until `/readyz` says so.
pub async fn start_ingest(config: ingest::Config) -> Ingest {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (stop, signal) = stop_signal();
    let task = tokio::spawn(ingest::serve(config, listener, signal));
    let url = format!("http://{addr}");
    let client = reqwest::Client::new();
    eventually("ingest ready", Duration::from_secs(60), || async {
        let response = client.get(format!("{url}/readyz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    Ingest {
        url,
        addr,
        running: Running { stop, task },
    }
}

/// Starts the processor in-process.
pub fn start_processor(config: processor::Config) -> Running<processor::RunError> {
    start_processor_with(config, Arc::new(processor::Metrics::default()))
}

/// Starts the processor in-process, counting into `metrics`, once its
/// database is migrated.
pub fn start_processor_with(
    config: processor::Config,
    metrics: Arc<processor::Metrics>,
) -> Running<processor::RunError> {
    let (stop, signal) = stop_signal();
    let task = tokio::spawn(async move {
        migrate(&config.clickhouse).await;
        processor::run_with_metrics(config, signal, metrics).await
    });
    Running { stop, task }
}

/// Starts the processor in-process as it is, on a database that may lack
/// migrations.
pub fn start_processor_unmigrated(
    config: processor::Config,
    metrics: Arc<processor::Metrics>,
) -> Running<processor::RunError> {
    let (stop, signal) = stop_signal();
    let task = tokio::spawn(processor::run_with_metrics(config, signal, metrics));
    Running { stop, task }
}

/// Applies this build's migrations to the database of `config`, as
/// `telemetry-admin migrate` does (the processor only checks for them).
pub async fn migrate(config: &ClickHouseConfig) {
    let store = processor::Store::connect(config)
        .await
        .expect("clickhouse is up (scripts/services start)");
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations apply");
}

/// Runs `scripts/services ARGS` (e.g. `["stop", "kafka"]`) with this
/// process's environment, and panics if it fails. Tests that stop a server
/// live in binaries of their own, since cargo runs binaries one at a time.
pub fn services(args: &[&str]) {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services");
    let status = std::process::Command::new(script)
        .args(args)
        .status()
        .expect("scripts/services runs");
    assert!(status.success(), "scripts/services {args:?} failed");
}

/// Forwards every connection on `listener` to the real broker: Kafka
/// "comes up" on a port where nothing answered before, without stopping
/// the broker other tests use.
pub async fn forward_to_kafka(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut broker) = tokio::net::TcpStream::connect(kafka_brokers()).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
            }
        });
    }
}

/// Polls `probe` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not reached within {deadline:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Reads `count` messages of `topic` from its beginning (every partition),
/// or panics after `deadline`.
pub async fn read_messages(topic: &str, count: usize, deadline: Duration) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", format!("e2e-reader-{}", Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // Looks again soon for a topic that does not exist yet (below).
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut messages = Vec::with_capacity(count);
    let read = async {
        while messages.len() < count {
            match consumer.recv().await {
                Ok(message) => messages.push(message.detach()),
                // The topic may not exist yet: the processor's first dead
                // letter creates its topic, and a reader can subscribe
                // before that. The subscription picks it up once it exists.
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err(error) => panic!("reading {topic}: {error}"),
            }
        }
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or_else(|_| panic!("{topic}: fewer than {count} messages within {deadline:?}"));
    messages
}

/// The value of a message header.
pub fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    let headers = message.headers()?;
    (0..headers.count())
        .map(|i| headers.get(i))
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// A fixture as the edge would have accepted it: fresh id, now, the given
/// organisation and machine hash.
pub fn accepted(fixture: &str, org_id: &str, machine_hash: &str) -> AcceptedReport {
    let sent: schemas::Envelope =
        serde_json::from_value(fresh_report(fixture)).expect("fixture is an envelope");
    let schema = sent.schema.parse().expect("fixture schema is known");
    sent.accept(
        schema,
        org_id.to_string(),
        machine_hash.to_string(),
        time::OffsetDateTime::now_utc(),
    )
}

/// Produces messages to `topic` as ingest would (keyed by machine hash) and
/// waits for every acknowledgement.
pub async fn produce(topic: &str, reports: &[AcceptedReport]) {
    let values: Vec<(String, Vec<u8>)> = reports
        .iter()
        .map(|r| {
            (
                r.machine_hash.clone(),
                serde_json::to_vec(r).expect("encodes"),
            )
        })
        .collect();
    produce_raw(topic, &values).await;
}

/// Produces (key, value) messages to `topic` (creating it as the services
/// would, if it is not there yet) and waits for the acks.
pub async fn produce_raw(topic: &str, messages: &[(String, Vec<u8>)]) {
    pipeline::ensure_topics(&KafkaConfig::local(kafka_brokers()), &[topic])
        .await
        .expect("topic exists");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (key, value) in messages {
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("kafka acknowledged");
    }
}

/// One number from ClickHouse, e.g. `SELECT count() FROM t`.
pub async fn scalar(store: &processor::Store, sql: &str) -> u64 {
    store
        .client()
        .query(sql)
        .fetch_one::<u64>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// [`scalar`], or `None` while the table is not there yet.
pub async fn try_scalar(store: &processor::Store, sql: &str) -> Option<u64> {
    store.client().query(sql).fetch_one::<u64>().await.ok()
}

/// A fixture report with a fresh `report_id` and `sent_at` of now.
pub fn fresh_report(fixture: &str) -> serde_json::Value {
    let mut report: serde_json::Value = serde_json::from_str(fixture).expect("fixture is JSON");
    report["report_id"] = serde_json::json!(Uuid::new_v4().to_string());
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format now");
    report["sent_at"] = serde_json::json!(now);
    report
}

/// The members of consumer group `group` as the coordinator sees them, or
/// `None` if Kafka could not say (a group nobody joined has none).
pub async fn group_members(group: &str) -> Option<usize> {
    let group = group.to_string();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_brokers())
            .create()
            .ok()?;
        let list = client
            .fetch_group_list(Some(&group), WATERMARK_TIMEOUT)
            .ok()?;
        Some(
            list.groups()
                .iter()
                .filter(|g| g.name() == group)
                .map(|g| g.members().len())
                .sum(),
        )
    })
    .await
    .expect("group list task")
}

impl TestEnv {
    /// The processor's configuration for this test as TOML text, as an
    /// operator would write it: what [`TestEnv::processor_config`] holds
    /// (with the clustering refresh off too: one instance needs none), with
    /// ClickHouse at `clickhouse_url`, and `extra` tables after it (e.g.
    /// `[kafka.properties]`).
    pub fn processor_toml(
        &self,
        clickhouse_url: &str,
        metrics_listen: SocketAddr,
        extra: &str,
    ) -> String {
        let config = self.processor_config();
        format!(
            "group_id = \"{group}\"\n\
             metrics_listen = \"{metrics_listen}\"\n\
             [kafka]\nbrokers = \"{brokers}\"\n\
             [topics]\nreports = \"{reports}\"\noutcomes = \"{outcomes}\"\ndead_letters = \"{dead}\"\n\
             [clickhouse]\nurl = \"{clickhouse_url}\"\ndatabase = \"{database}\"\n\
             [batch]\nmax_age_ms = {max_age}\n\
             [retention]\ninterval_secs = 0\n\
             [analytics]\ninterval_secs = 0\ncluster_refresh_secs = 0\n\
             {extra}\n",
            group = config.group_id,
            brokers = kafka_brokers(),
            reports = self.reports_topic,
            outcomes = self.outcomes_topic,
            dead = self.dead_letters_topic,
            database = self.database,
            max_age = config.batch.max_age_ms,
        )
    }
}

/// The environment variable that turns a test binary into a processor: see
/// [`ChildProcessor`].
pub const CHILD_PROCESSOR_CONFIG: &str = "E2E_CHILD_PROCESSOR_CONFIG";

/// Runs the processor with the configuration file that
/// [`CHILD_PROCESSOR_CONFIG`] names, until SIGTERM, if it is set; else
/// returns at once. A test binary that starts [`ChildProcessor`]s calls this
/// from a test of the name it gives them, so that the child is the code
/// under test, not a binary built some other time.
pub fn serve_as_child_processor() {
    let Some(path) = std::env::var_os(CHILD_PROCESSOR_CONFIG) else {
        return;
    };
    pipeline::logging::init();
    let config = processor::Config::load(std::path::Path::new(&path))
        .expect("child processor configuration loads");
    // Like the binary's `#[tokio::main]` on a two-core machine.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            migrate(&config.clickhouse).await;
            processor::run(config, pipeline::shutdown::signal()).await
        })
        .expect("child processor ran");
}

/// The processor in a process of its own, so that a test can freeze it
/// (SIGSTOP) for longer than its group session lasts: the group coordinator
/// evicts it, as it would a processor cut off from the brokers, and on
/// SIGCONT it must find out and rejoin by itself. Its log goes to a file
/// ([`ChildProcessor::log`]), kept if the test fails. Killed when dropped.
#[derive(Debug)]
pub struct ChildProcessor {
    child: Option<std::process::Child>,
    pid: u32,
    pub metrics: SocketAddr,
    pub log: std::path::PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl ChildProcessor {
    /// Starts this test binary's test `child_test` (which must call
    /// [`serve_as_child_processor`]) with `toml` as the processor's
    /// configuration, and waits until its `/readyz` answers 200.
    /// `rust_log` is its `RUST_LOG`.
    pub async fn start(child_test: &str, toml: &str, metrics: SocketAddr, rust_log: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("processor.toml");
        std::fs::write(&config, toml).expect("configuration written");
        let log = dir.path().join("processor.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .env(CHILD_PROCESSOR_CONFIG, &config)
            .env("RUST_LOG", rust_log)
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("child processor starts");
        let processor = ChildProcessor {
            pid: child.id(),
            child: Some(child),
            metrics,
            log,
            dir: Some(dir),
        };
        let http = reqwest::Client::new();
        let mut processor = processor;
        eventually("child processor ready", Duration::from_secs(120), || {
            let exited = processor
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = std::fs::read_to_string(&processor.log).unwrap_or_default();
                panic!("the child processor exited ({status}):\n{log}");
            }
            let http = &http;
            async move {
                let response = http
                    .get(format!("http://{metrics}/readyz"))
                    .send()
                    .await
                    .ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
        processor
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Freezes the process (SIGSTOP): no thread of it runs, its
    /// connections stay open.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets it run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Whether the process is still running (it may be frozen).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// One counter of its `/metrics`, e.g. `processor_partitions_revoked_total`.
    pub async fn counter(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// Asks it to stop (SIGTERM; SIGCONT first, in case it is frozen) and
    /// waits until it has; whether it exited cleanly.
    pub async fn stop(mut self) -> bool {
        self.thaw();
        self.signal("TERM");
        let Some(mut child) = self.child.take() else {
            return false;
        };
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("wait task")
            .is_ok_and(|status| status.success())
    }
}

impl Drop for ChildProcessor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failed test keeps the log to be read.
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("child processor's log kept in {}", kept.display());
        }
    }
}

/// A TCP proxy that a test can pause: while paused it takes what either
/// side sends but forwards nothing, and keeps every connection open, as a
/// server that has stopped answering would. Used in front of ClickHouse
/// (whose clients connect where they are told, unlike Kafka's, which go to
/// the address the broker advertises).
#[derive(Debug, Clone)]
pub struct PausableProxy {
    pub addr: SocketAddr,
    paused: tokio::sync::watch::Sender<bool>,
    held: Arc<std::sync::atomic::AtomicU64>,
}

impl PausableProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (paused, _) = tokio::sync::watch::channel(false);
        let proxy = PausableProxy {
            addr,
            paused,
            held: Arc::default(),
        };
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(accepting.clone().pump(client_read, server_write));
                tokio::spawn(accepting.clone().pump(server_read, client_write));
            }
        });
        proxy
    }

    async fn pump(
        self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
    ) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut paused = self.paused.subscribe();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            };
            if *paused.borrow() {
                self.held.fetch_add(n as u64, Ordering::SeqCst);
                if paused.wait_for(|p| !*p).await.is_err() {
                    return;
                }
            }
            if to.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    }

    /// Stops forwarding; bytes that arrive meanwhile are held back.
    pub fn pause(&self) {
        self.held.store(0, std::sync::atomic::Ordering::SeqCst);
        self.paused.send_replace(true);
    }

    /// Forwards again, what was held first.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Bytes held back since the last pause: a request is waiting.
    pub fn held(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}
