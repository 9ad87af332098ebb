//! The processor against the real broker and ClickHouse: what lands in each
//! table analysts read, migrations, dead letters, out-of-range offsets,
//! rebalances and retention.

use std::time::Duration;

use e2e::{
    TestEnv, accepted, eventually, fixtures, produce, produce_raw, read_messages, scalar,
    start_processor,
};
use rdkafka::Message;
use schemas::AcceptedReport;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn crash(org: &str, machine: &str, build: u32, revision: u32, top: &str) -> AcceptedReport {
    let mut report = accepted(fixtures::CRASH, org, machine);
    report.os.version = format!("10.0.{build}");
    report.os.build = build;
    report.os.revision = revision;
    report.payload["frames"][0]["function"] = json!(top);
    report
}

fn heartbeat(org: &str, machine: &str, build: u32, revision: u32) -> AcceptedReport {
    let mut report = accepted(fixtures::HEARTBEAT, org, machine);
    report.os.version = format!("10.0.{build}");
    report.os.build = build;
    report.os.revision = revision;
    report.payload["day"] = json!(report.received_at.date().to_string());
    report
}

fn request(org: &str, machine: &str, title: &str) -> AcceptedReport {
    let mut report = accepted(fixtures::FEATURE_REQUEST, org, machine);
    report.payload["title"] = json!(title);
    report
        .payload
        .as_object_mut()
        .expect("object")
        .remove("body");
    report
}

fn feedback(org: &str, machine: &str, rating: u8) -> AcceptedReport {
    let mut report = accepted(fixtures::FEEDBACK, org, machine);
    report.payload["rating"] = json!(rating);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_become_exact_analyst_tables() {
    let env = TestEnv::new();
    let processor = start_processor(env.processor_config());
    let store = env.clickhouse().await;

    // Build 19045.3570: 10 active machines, 2 crash with the old signature.
    // Build 19045.4046: 10 active machines, 6 crash with the old signature
    // (a rate increase) and 3 with a new one. One crash is sent twice (a
    // client retry that reached Kafka twice).
    let (old_sig, new_sig) = ("CDefView::_OnContextMenu", "CDefView::OnNewFolder");
    let mut reports = Vec::new();
    for m in 0..10 {
        reports.push(heartbeat("grid", &format!("old-{m}"), 19045, 3570));
        reports.push(heartbeat("water", &format!("new-{m}"), 19045, 4046));
    }
    for m in 0..2 {
        reports.push(crash("grid", &format!("old-{m}"), 19045, 3570, old_sig));
    }
    for m in 0..6 {
        reports.push(crash("water", &format!("new-{m}"), 19045, 4046, old_sig));
    }
    for m in 6..9 {
        reports.push(crash("water", &format!("new-{m}"), 19045, 4046, new_sig));
    }
    let retried = reports.last().expect("a crash").clone();
    reports.push(retried);
    for (m, title) in [
        "希望任务栏支持按项目分组窗口",
        "任务栏能否按项目对窗口进行分组",
        "建议任务栏可以按照项目分组显示窗口",
        "希望支持国密算法SM2证书登录",
    ]
    .iter()
    .enumerate()
    {
        let org = if m == 1 { "water" } else { "grid" };
        reports.push(request(org, &format!("req-{m}"), title));
    }
    for (m, rating) in [5u8, 4, 2].iter().enumerate() {
        reports.push(feedback("grid", &format!("fb-{m}"), *rating));
    }
    produce(&env.reports_topic, &reports).await;

    eventually("every report stored", WAIT, || async {
        let crashes = scalar(&store, "SELECT count() FROM crash_reports").await;
        let rest = scalar(
            &store,
            "SELECT (SELECT count() FROM heartbeats) + (SELECT count() FROM feature_requests) \
             + (SELECT count() FROM feedback)",
        )
        .await;
        (crashes == 11 && rest == 27).then_some(())
    })
    .await;
    env.caught_up(WAIT).await;

    // crash_signatures: exact, the retried report counted once.
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Signature {
        signature: String,
        first_build: String,
        reports: u64,
        machines: u64,
        organisations: u64,
    }
    let signatures: Vec<Signature> = store
        .client()
        .query(
            "SELECT signature, first_build, reports, machines, organisations \
             FROM crash_signatures ORDER BY reports DESC",
        )
        .fetch_all()
        .await
        .expect("crash_signatures");
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    let top = &signatures[0];
    assert!(
        top.signature
            .starts_with("shell32.dll!CDefView::_OnContextMenu | "),
        "{top:?}"
    );
    assert_eq!((top.reports, top.machines, top.organisations), (8, 8, 2));
    assert_eq!(top.first_build, "10.0.19045.3570");
    let fresh = &signatures[1];
    assert_eq!(
        (fresh.reports, fresh.machines),
        (3, 3),
        "the retry counts once"
    );
    assert_eq!(fresh.first_build, "10.0.19045.4046");

    // crash_daily and crash_free_daily.
    assert_eq!(
        scalar(&store, "SELECT sum(reports) FROM crash_daily").await,
        11
    );
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct CrashFree {
        os_build_full: String,
        active_machines: u64,
        crashed_machines: u64,
        crash_free_rate: f64,
    }
    let free: Vec<CrashFree> = store
        .client()
        .query(
            "SELECT os_build_full, active_machines, crashed_machines, crash_free_rate \
             FROM crash_free_daily ORDER BY build_key",
        )
        .fetch_all()
        .await
        .expect("crash_free_daily");
    assert_eq!(free.len(), 2, "{free:?}");
    assert_eq!(free[0].os_build_full, "10.0.19045.3570");
    assert_eq!((free[0].active_machines, free[0].crashed_machines), (10, 2));
    assert!((free[0].crash_free_rate - 0.8).abs() < 1e-9);
    assert_eq!((free[1].active_machines, free[1].crashed_machines), (10, 9));

    // Regressions, builds in version order.
    let config = processor::config::AnalyticsConfig::default();
    let found = warehouse::analytics::run_regressions(&store, &config)
        .await
        .expect("regressions");
    let mut kinds: Vec<(String, String)> = found
        .iter()
        .map(|r| (r.kind.clone(), r.os_build_full.clone()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("new".to_string(), "10.0.19045.4046".to_string()),
            ("rate_increase".to_string(), "10.0.19045.4046".to_string()),
        ]
    );
    assert_eq!(
        scalar(&store, "SELECT count() FROM crash_regressions").await,
        2
    );

    // Feature-request clusters: three wordings, one cluster, two agencies.
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Cluster {
        title: String,
        requests: u64,
        organisations: u64,
    }
    let clusters: Vec<Cluster> = store
        .client()
        .query("SELECT title, requests, organisations FROM feature_request_clusters ORDER BY requests DESC")
        .fetch_all()
        .await
        .expect("feature_request_clusters");
    assert_eq!(clusters.len(), 2, "{clusters:?}");
    assert_eq!((clusters[0].requests, clusters[0].organisations), (3, 2));
    assert!(clusters[0].title.contains("任务栏"));

    // Feedback per category: exact average.
    let average: f64 = store
        .client()
        .query("SELECT average_rating FROM feedback_daily WHERE category = 'update'")
        .fetch_one()
        .await
        .expect("feedback_daily");
    assert!((average - 11.0 / 3.0).abs() < 1e-9, "{average}");

    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_go_to_dead_letters_and_never_block() {
    let env = TestEnv::new();
    let processor = start_processor(env.processor_config());
    let store = env.clickhouse().await;
    produce_raw(
        &env.reports_topic,
        &[("k1".to_string(), b"{not json".to_vec())],
    )
    .await;
    let mut bad_day = heartbeat("grid", "k1", 19045, 3570);
    bad_day.payload["day"] = json!("2026-02-30");
    let sentinel = crash("grid", "k1", 19045, 3570, "Sentinel");
    produce(&env.reports_topic, &[bad_day, sentinel.clone()]).await;

    let dead = read_messages(&env.dead_letters_topic, 2, WAIT).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| String::from_utf8_lossy(e2e::header(m, "reason").expect("reason")).to_string())
        .collect();
    assert_eq!(reasons, ["undecodable_report", "invalid_heartbeat_day"]);
    assert_eq!(
        dead[0].payload(),
        Some(&b"{not json"[..]),
        "the message as it was"
    );
    assert_eq!(e2e::header(&dead[1], "stage"), Some(&b"place"[..]));
    eventually("sentinel behind the bad messages stored", WAIT, || async {
        let sql = format!(
            "SELECT count() FROM crash_reports WHERE report_id = toUUID('{}')",
            sentinel.report_id
        );
        (scalar(&store, &sql).await == 1).then_some(())
    })
    .await;
    eventually("processing errors recorded", WAIT, || async {
        (scalar(&store, "SELECT count() FROM processing_errors").await == 2).then_some(())
    })
    .await;
    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_refuse_a_changed_file() {
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    let first = warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations apply");
    assert_eq!(first.len(), schemas::MIGRATIONS.len());
    assert!(
        warehouse::migrate::apply_all(&store)
            .await
            .expect("again")
            .is_empty(),
        "nothing the second time"
    );
    assert_eq!(
        scalar(&store, "SELECT count() FROM schema_migrations").await,
        schemas::MIGRATIONS.len() as u64
    );
    store.check_migrations().await.expect("current");
    let mut changed = schemas::MIGRATIONS.to_vec();
    changed[0].sql = "CREATE TABLE IF NOT EXISTS crash_reports (x UInt8) ENGINE = Log";
    let error = warehouse::migrate::apply(&store, &changed)
        .await
        .expect_err("a changed migration stops the run");
    assert!(
        matches!(
            error,
            warehouse::migrate::MigrationError::Changed(schemas::ChangedMigration {
                version: 1,
                ..
            })
        ),
        "{error}"
    );
    env.cleanup().await;
}

/// The processor never migrates: on a database behind its build it waits,
/// not ready, saying which migrations are missing and how to apply them,
/// and starts consuming once `telemetry-admin migrate` has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_waits_for_a_database_behind_its_build() {
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    let older: Vec<schemas::Migration> = schemas::MIGRATIONS[..3].to_vec();
    warehouse::migrate::apply(&store, &older)
        .await
        .expect("the first three migrations");
    let error = store.check_migrations().await.expect_err("behind");
    let text = error.to_string();
    let missing: Vec<String> = schemas::MIGRATIONS[3..]
        .iter()
        .map(|m| m.version().to_string())
        .collect();
    assert!(
        text.contains(&missing.join(", ")) && text.contains("telemetry-admin migrate"),
        "{text}"
    );

    let metrics = std::sync::Arc::new(processor::Metrics::default());
    let mut config = env.processor_config();
    config.batch.max_backoff_ms = 200;
    let processor = e2e::start_processor_unmigrated(config, std::sync::Arc::clone(&metrics));
    eventually("the start-up check fails and is retried", WAIT, || async {
        (processor::Metrics::get(&metrics.startup_retries) >= 2).then_some(())
    })
    .await;
    assert!(!metrics.is_ready(), "not ready on a database behind");
    assert!(!processor.task.is_finished(), "waits, does not exit");
    assert_eq!(
        scalar(&store, "SELECT count() FROM schema_migrations").await,
        3,
        "the processor applied nothing"
    );

    warehouse::migrate::apply_all(&store)
        .await
        .expect("the rest");
    eventually("ready once migrated", WAIT, || async {
        metrics.is_ready().then_some(())
    })
    .await;
    produce(
        &env.reports_topic,
        &[accepted(fixtures::CRASH, "grid", "behind")],
    )
    .await;
    eventually("the report is stored", WAIT, || async {
        (e2e::try_scalar(&store, "SELECT count() FROM crash_reports").await == Some(1))
            .then_some(())
    })
    .await;
    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_old_partitions_and_keeps_recent_ones() {
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations");
    let insert = |table: &str, when: &str| {
        format!(
            "INSERT INTO {table} (report_id, received_at, machine_hash, org_id, day) \
             VALUES ('{}', '{when} 12:00:00', 'm', 'grid', '{when}')",
            uuid::Uuid::new_v4()
        )
    };
    for when in ["2026-06-01", "2026-11-20"] {
        store
            .client()
            .query(&insert("heartbeats", when))
            .execute()
            .await
            .expect("insert heartbeat");
    }
    assert_eq!(scalar(&store, "SELECT count() FROM heartbeats").await, 2);
    // The materialised view filled machine_days_agg for June and November.
    let months = "SELECT count(DISTINCT toYYYYMM(day)) FROM machine_days_agg";
    assert_eq!(scalar(&store, months).await, 2);

    let today = time::macros::date!(2026 - 11 - 24);
    let config = processor::config::RetentionConfig {
        raw_days: 90,
        aggregate_days: 180,
        interval_secs: 0,
    };
    let dropped = warehouse::retention::run_once(&store, &config, today)
        .await
        .expect("retention");
    assert!(
        dropped.contains(&("heartbeats".to_string(), "20260601".to_string())),
        "{dropped:?}"
    );
    assert_eq!(
        scalar(&store, "SELECT count() FROM heartbeats").await,
        1,
        "recent stays"
    );
    assert_eq!(
        scalar(&store, months).await,
        2,
        "aggregates keep June (within 180 days)"
    );

    let config = processor::config::RetentionConfig {
        raw_days: 90,
        aggregate_days: 100,
        interval_secs: 0,
    };
    warehouse::retention::run_once(&store, &config, today)
        .await
        .expect("retention");
    assert_eq!(
        scalar(&store, months).await,
        1,
        "June's aggregates past 100 days go"
    );
    assert_eq!(scalar(&store, "SELECT count() FROM heartbeats").await, 1);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_neither_loses_nor_double_counts() {
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    let metrics_a = std::sync::Arc::new(processor::Metrics::default());
    let metrics_b = std::sync::Arc::new(processor::Metrics::default());
    let a = e2e::start_processor_with(env.processor_config(), metrics_a.clone());
    let wave = |n: usize, tag: &str| -> Vec<AcceptedReport> {
        (0..n)
            .map(|i| heartbeat("grid", &format!("{tag}-{}", i % 40), 19045, 3570))
            .collect()
    };
    let count = "SELECT count() FROM heartbeats";
    produce(&env.reports_topic, &wave(100, "first")).await;
    eventually("first wave stored", WAIT, || async {
        (scalar(&store, count).await == 100).then_some(())
    })
    .await;

    // A second member joins: partitions move while messages flow.
    let b = e2e::start_processor_with(env.processor_config(), metrics_b.clone());
    eventually("b got partitions", WAIT, || async {
        (processor::Metrics::get(&metrics_b.partitions_assigned) > 0).then_some(())
    })
    .await;
    produce(&env.reports_topic, &wave(100, "second")).await;
    eventually("second wave stored", WAIT, || async {
        (scalar(&store, count).await == 200).then_some(())
    })
    .await;
    assert!(processor::Metrics::get(&metrics_a.partitions_revoked) > 0);
    // The newcomer took a share of the reports topic itself, not only the
    // outcomes topic's partitions: it wrote some of the second wave.
    assert!(processor::Metrics::get(&metrics_b.rows_inserted) > 0);

    // The first member leaves; the second takes everything.
    a.shutdown().await.expect("a stops");
    produce(&env.reports_topic, &wave(100, "third")).await;
    eventually("third wave stored", WAIT, || async {
        (scalar(&store, count).await == 300).then_some(())
    })
    .await;
    // Exactly once: no row twice, in the raw table or the aggregate.
    assert_eq!(
        scalar(&store, "SELECT uniqExact(report_id) FROM heartbeats").await,
        300
    );
    b.shutdown().await.expect("b stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_offset_restarts_from_the_earliest_not_a_crash_loop() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let env = TestEnv::new();
    let config = env.processor_config();
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", e2e::kafka_brokers())
        .create()
        .expect("admin");
    admin
        .create_topics(
            &[NewTopic::new(
                &env.reports_topic,
                1,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    let reports: Vec<AcceptedReport> = (0..10)
        .map(|i| heartbeat("grid", &format!("m-{i}"), 19045, 3570))
        .collect();
    produce(&env.reports_topic, &reports).await;

    // The log now starts at offset 6, and the group's committed offset is 2.
    let mut upto = TopicPartitionList::new();
    upto.add_partition_offset(&env.reports_topic, 0, Offset::Offset(6))
        .expect("offset");
    admin
        .delete_records(&upto, &AdminOptions::new())
        .await
        .expect("delete records");
    let committer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", e2e::kafka_brokers())
        .set("group.id", &config.group_id)
        .create()
        .expect("consumer");
    let mut committed = TopicPartitionList::new();
    committed
        .add_partition_offset(&env.reports_topic, 0, Offset::Offset(2))
        .expect("offset");
    committer
        .commit(&committed, CommitMode::Sync)
        .expect("commit offset 2");
    drop(committer);

    let metrics = std::sync::Arc::new(processor::Metrics::default());
    let processor = e2e::start_processor_with(config, metrics.clone());
    let store = env.clickhouse().await;
    eventually(
        "the four messages still in the log are stored",
        WAIT,
        || async {
            (e2e::try_scalar(&store, "SELECT count() FROM heartbeats").await == Some(4))
                .then_some(())
        },
    )
    .await;
    assert!(
        processor::Metrics::get(&metrics.offset_resets) >= 1,
        "the reset was counted"
    );
    assert!(!processor.task.is_finished(), "still running, no crash");
    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_another_instance_clustered_is_picked_up() {
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations");
    let mut config = env.processor_config();
    config.analytics.cluster_refresh_secs = 1;
    let metrics = std::sync::Arc::new(processor::Metrics::default());
    let processor = e2e::start_processor_with(config, metrics.clone());
    eventually("the processor is consuming", WAIT, || async {
        (processor::Metrics::get(&metrics.partitions_assigned) > 0).then_some(())
    })
    .await;

    // Another instance clustered this request a moment ago.
    let founder = "希望任务栏支持按项目分组窗口";
    let cluster_id = clustering::cluster_id_for(founder);
    let hex: String = clustering::MinHashSignature::from_text(founder)
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    store
        .client()
        .query(&format!(
            "INSERT INTO feature_request_signatures \
             (cluster_id, report_id, received_at, minhash, inserted_at) \
             VALUES ({cluster_id}, '{}', now(), unhex('{hex}'), now())",
            uuid::Uuid::new_v4()
        ))
        .execute()
        .await
        .expect("insert a stored signature");
    eventually("this instance added it to its index", WAIT, || async {
        (processor::Metrics::get(&metrics.cluster_signatures_loaded) >= 1).then_some(())
    })
    .await;

    // A paraphrase read here joins the other instance's cluster.
    let paraphrase = request("grid", "m-1", "任务栏能否按项目对窗口进行分组");
    let sql = format!(
        "SELECT cluster_id FROM feature_requests WHERE report_id = toUUID('{}')",
        paraphrase.report_id
    );
    produce(&env.reports_topic, &[paraphrase]).await;
    let found = eventually("the paraphrase stored", WAIT, || async {
        e2e::try_scalar(&store, &sql).await
    })
    .await;
    assert_eq!(found, cluster_id);
    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}
