//! The processor under faults, against the real servers: killed again and
//! again between its inserts and its offset commits, and ClickHouse stopped
//! under it. Totals must still equal the distinct reports sent. These tests
//! stop servers and load the machine, so they take turns through `TURN` and
//! live in a binary of their own.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use e2e::{TestEnv, accepted, eventually, fixtures, produce, scalar, services, try_scalar};
use schemas::AcceptedReport;
use serde_json::json;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The processor binary, built from this tree.
fn processor_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["build", "--quiet", "-p", "processor", "--bin", "processor"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the processor failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("debug").join("processor")
}

fn crash(machine: usize, signature: usize) -> AcceptedReport {
    let mut report = accepted(fixtures::CRASH, "grid", &format!("machine-{machine:03}"));
    report.payload["frames"][0]["function"] = json!(format!("Handler{signature}"));
    report
}

/// Kills the child however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_stay_exact_when_the_processor_is_killed_again_and_again() {
    const ROUNDS: usize = 6;
    const PER_ROUND: usize = 60;
    let _turn = TURN.lock().await;
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations");
    let binary = processor_binary();

    // The child's configuration: a fixed member id, so that a restarted
    // processor takes its partitions back at once; small batches, written
    // often; offsets committed only every 5 s, so that nearly every kill
    // falls between an insert and the commit of its offsets.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("processor.toml");
    std::fs::write(
        &config_path,
        format!(
            "group_id = \"e2e-kill-{suffix}\"\ninstance_id = \"e2e-kill-{suffix}\"\n\
             metrics_listen = \"127.0.0.1:{port}\"\n\
             [kafka]\nbrokers = \"{brokers}\"\n\
             [topics]\nreports = \"{reports}\"\noutcomes = \"{outcomes}\"\ndead_letters = \"{dead}\"\n\
             [clickhouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\n\
             [batch]\nmax_rows = 25\nmax_age_ms = 50\ncommit_interval_ms = 5000\n\
             [retention]\ninterval_secs = 0\n[analytics]\ninterval_secs = 0\n",
            suffix = env.suffix,
            brokers = e2e::kafka_brokers(),
            reports = env.reports_topic,
            outcomes = env.outcomes_topic,
            dead = env.dead_letters_topic,
            url = e2e::clickhouse_url(),
            db = env.database,
        ),
    )
    .expect("write config");
    let spawn = || {
        Killed(
            Command::new(&binary)
                .arg("--config")
                .arg(&config_path)
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("processor starts"),
        )
    };

    let http = reqwest::Client::new();
    // Reports this run of the processor found stored already and skipped.
    let skipped_by_this_run = || async {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("processor_duplicates_skipped_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let mut sent: Vec<AcceptedReport> = Vec::new();
    let mut retried = 0u64;
    let mut skipped = 0u64;
    let mut distinct = 0u64;
    for round in 0..ROUNDS {
        // New reports, some of them sent twice (a client retry that reached
        // Kafka twice).
        let mut wave: Vec<AcceptedReport> = (0..PER_ROUND)
            .map(|i| crash(round * PER_ROUND + i, i % 7))
            .collect();
        distinct += wave.len() as u64;
        let retries: Vec<AcceptedReport> = wave.iter().step_by(10).cloned().collect();
        retried += retries.len() as u64;
        wave.extend(retries);
        produce(&env.reports_topic, &wave).await;
        sent.extend(wave);

        let child = spawn();
        let before = try_scalar(&store, "SELECT count() FROM crash_reports")
            .await
            .unwrap_or(0);
        // Kill it as soon as it has written something new this round: its
        // offsets for that are not committed yet.
        eventually("the processor writes", Duration::from_secs(60), || async {
            let now = try_scalar(&store, "SELECT count() FROM crash_reports")
                .await
                .unwrap_or(0);
            (now > before).then_some(())
        })
        .await;
        skipped += eventually(
            "metrics answer",
            Duration::from_secs(30),
            skipped_by_this_run,
        )
        .await;
        drop(child);
    }

    let child = spawn();
    eventually(
        "every distinct report stored",
        Duration::from_secs(120),
        || async {
            (try_scalar(&store, "SELECT count() FROM crash_reports").await == Some(distinct))
                .then_some(())
        },
    )
    .await;
    env.caught_up_as(&format!("e2e-kill-{}", env.suffix), WAIT)
        .await;
    skipped += eventually(
        "metrics answer",
        Duration::from_secs(30),
        skipped_by_this_run,
    )
    .await;
    drop(child);

    // Nothing twice, anywhere analysts look.
    assert_eq!(
        scalar(&store, "SELECT count() FROM crash_reports").await,
        distinct,
        "raw rows"
    );
    assert_eq!(
        scalar(&store, "SELECT uniqExact(report_id) FROM crash_reports").await,
        distinct
    );
    assert_eq!(
        scalar(&store, "SELECT sum(reports) FROM crash_signatures").await,
        distinct,
        "crash_signatures"
    );
    assert_eq!(
        scalar(&store, "SELECT sum(reports) FROM crash_daily").await,
        distinct,
        "crash_daily"
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT sum(machines) FROM crash_signatures WHERE signature LIKE '%Handler0 %'"
        )
        .await,
        sent.iter()
            .filter(|r| r.payload["frames"][0]["function"] == "Handler0")
            .map(|r| r.machine_hash.clone())
            .collect::<std::collections::HashSet<_>>()
            .len() as u64,
        "distinct machines"
    );
    // The kills did land between insert and commit: beyond the client
    // retries, reports already written were read again after restarts, and
    // recognised.
    assert!(
        skipped > retried,
        "{skipped} skipped, {retried} client retries: no redelivery was exercised"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_means_waiting_not_losing() {
    let _turn = TURN.lock().await;
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrations");
    let metrics = Arc::new(processor::Metrics::default());
    let mut config = env.processor_config();
    config.batch.max_backoff_ms = 1_000;
    let processor = e2e::start_processor_with(config, metrics.clone());

    let first: Vec<AcceptedReport> = (0..20).map(|i| crash(i, 1)).collect();
    produce(&env.reports_topic, &first).await;
    eventually("first reports stored", Duration::from_secs(60), || async {
        (try_scalar(&store, "SELECT count() FROM crash_reports").await == Some(20)).then_some(())
    })
    .await;

    struct ClickHouseBack;
    impl Drop for ClickHouseBack {
        fn drop(&mut self) {
            services(&["start", "clickhouse"]);
            services(&["wait", "clickhouse"]);
        }
    }
    let back = ClickHouseBack;
    services(&["stop", "clickhouse"]);
    let second: Vec<AcceptedReport> = (20..50).map(|i| crash(i, 2)).collect();
    produce(&env.reports_topic, &second).await;
    eventually(
        "inserts fail and are retried",
        Duration::from_secs(60),
        || async { (processor::Metrics::get(&metrics.insert_failures) >= 2).then_some(()) },
    )
    .await;
    assert!(
        !processor.task.is_finished(),
        "the processor waits, it does not exit"
    );
    drop(back);

    eventually(
        "every report stored after ClickHouse returned",
        Duration::from_secs(90),
        || async {
            (try_scalar(&store, "SELECT count() FROM crash_reports").await == Some(50))
                .then_some(())
        },
    )
    .await;
    env.caught_up(WAIT).await;
    assert_eq!(
        scalar(&store, "SELECT count() FROM crash_reports").await,
        50
    );
    assert_eq!(
        scalar(&store, "SELECT sum(reports) FROM crash_signatures").await,
        50
    );
    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

/// A view that failed after its raw rows were written (simulated by dropping
/// what the view had written) is mended when the reports arrive again: the
/// raw rows are found and not written twice, and their aggregates are fed
/// again without counting anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_a_failed_view_missed_are_mended_when_the_reports_come_again() {
    let _turn = TURN.lock().await;
    let env = TestEnv::new();
    let metrics = Arc::new(processor::Metrics::default());
    let processor = e2e::start_processor_with(env.processor_config(), Arc::clone(&metrics));
    let store = env.clickhouse().await;
    let reports: Vec<AcceptedReport> = (0..20)
        .map(|m| {
            let mut report = accepted(fixtures::CRASH, "grid", &format!("mend-{}", m % 7));
            report.payload["frames"][0]["function"] = json!("CDefView::_OnContextMenu");
            report
        })
        .collect();
    let counted = "SELECT toUInt64(sum(reports)) FROM crash_signatures";
    produce(&env.reports_topic, &reports).await;
    eventually("the first delivery is counted", WAIT, || async {
        (try_scalar(&store, counted).await == Some(20)).then_some(())
    })
    .await;

    // The view's rows are lost; the raw rows stay.
    let month = reports[0].received_at.date();
    let partition = month.year().unsigned_abs() * 100 + u32::from(u8::from(month.month()));
    store
        .client()
        .query(&format!(
            "ALTER TABLE crash_signatures_agg DROP PARTITION {partition}"
        ))
        .execute()
        .await
        .expect("partition dropped");
    assert_eq!(try_scalar(&store, counted).await.unwrap_or(0), 0);

    // The same reports again, and two new ones.
    let mut again = reports.clone();
    for m in 0..2 {
        let mut report = accepted(fixtures::CRASH, "grid", &format!("new-{m}"));
        report.payload["frames"][0]["function"] = json!("CDefView::_OnContextMenu");
        again.push(report);
    }
    produce(&env.reports_topic, &again).await;
    eventually("the aggregate is whole again", WAIT, || async {
        (try_scalar(&store, counted).await == Some(22)).then_some(())
    })
    .await;
    assert_eq!(
        scalar(&store, "SELECT count() FROM crash_reports").await,
        22
    );
    assert_eq!(processor::Metrics::get(&metrics.duplicates_skipped), 20);
    assert_eq!(processor::Metrics::get(&metrics.aggregates_refed), 20);
    // Fed twice where nothing was lost: still each report once.
    assert_eq!(
        scalar(&store, "SELECT toUInt64(sum(reports)) FROM crash_daily").await,
        22
    );
    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}
