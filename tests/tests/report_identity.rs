//! A report is one per machine and report id: two machines that send the
//! same report id (a WER report copied with a disk image) are two reports in
//! every raw table and aggregate, and one machine that sends it twice is one.
//! Migration 5 brings tables made before it to that key without losing or
//! recounting what they hold.

use std::time::Duration;

use e2e::{TestEnv, accepted, fixtures, produce, scalar, start_processor};
use schemas::AcceptedReport;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn crash(machine: &str, report_id: Uuid) -> AcceptedReport {
    let mut report = accepted(fixtures::CRASH, "grid", machine);
    report.report_id = report_id;
    report
}

fn feedback(machine: &str, report_id: Uuid) -> AcceptedReport {
    let mut report = accepted(fixtures::FEEDBACK, "grid", machine);
    report.report_id = report_id;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_report_id_from_two_machines_is_two_reports_and_a_repeat_is_one() {
    let env = TestEnv::new();
    let metrics = std::sync::Arc::new(processor::Metrics::default());
    let processor = e2e::start_processor_with(env.processor_config(), metrics.clone());
    let store = env.clickhouse().await;
    let cloned = Uuid::new_v4();

    // Two machines, one report id, in one batch.
    produce(
        &env.reports_topic,
        &[
            crash("machine-a", cloned),
            crash("machine-b", cloned),
            feedback("machine-a", cloned),
            feedback("machine-b", cloned),
        ],
    )
    .await;
    env.caught_up(WAIT).await;
    // The first machine's again (found stored), and a third machine's.
    produce(
        &env.reports_topic,
        &[
            crash("machine-a", cloned),
            crash("machine-c", cloned),
            feedback("machine-a", cloned),
        ],
    )
    .await;
    env.caught_up(WAIT).await;
    assert!(
        processor::Metrics::get(&metrics.aggregates_refed) >= 2,
        "the repeats were found stored"
    );

    for table in ["crash_reports", "feedback"] {
        store
            .client()
            .query(&format!("OPTIMIZE TABLE {table} FINAL"))
            .execute()
            .await
            .expect("merge");
    }
    assert_eq!(scalar(&store, "SELECT count() FROM crash_reports").await, 3);
    assert_eq!(scalar(&store, "SELECT count() FROM feedback").await, 2);
    assert_eq!(
        scalar(
            &store,
            "SELECT count() FROM crash_reports WHERE report_key = report_id"
        )
        .await,
        0,
        "every new row is counted by its machine's report key"
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT toUInt64(sum(reports)) FROM crash_signatures"
        )
        .await,
        3
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT toUInt64(sum(machines)) FROM crash_signatures"
        )
        .await,
        3
    );
    assert_eq!(
        scalar(&store, "SELECT toUInt64(sum(reports)) FROM crash_daily").await,
        3
    );
    assert_eq!(
        scalar(&store, "SELECT toUInt64(sum(ratings)) FROM feedback_daily").await,
        2
    );

    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_5_keeps_what_was_stored_and_counts_it_once() {
    let env = TestEnv::new();
    let store = env.clickhouse().await;
    let before: Vec<schemas::Migration> = schemas::MIGRATIONS
        .iter()
        .copied()
        .filter(|m| m.version() < 5)
        .collect();
    warehouse::migrate::apply(&store, &before)
        .await
        .expect("migrations 1 to 4");

    // A crash stored before the migration, counted by its report id.
    let old = crash("machine-a", Uuid::new_v4());
    store
        .client()
        .query(
            "INSERT INTO crash_reports (report_id, received_at, sent_at, org_id, machine_hash, \
             os_build_full, build_key, grouping_version, signature, inserted_at) \
             VALUES (toUUID(?), now(), now(), 'grid', ?, '10.0.19045.3570', 1, 1, 'old!sig', now())",
        )
        .bind(old.report_id.to_string())
        .bind(old.machine_hash.as_str())
        .execute()
        .await
        .expect("old row");
    assert_eq!(
        scalar(&store, "SELECT toUInt64(sum(reports)) FROM crash_daily").await,
        1
    );

    // Migration 5 run once and cut off before it was recorded: the
    // processor runs it again at start.
    let five = schemas::MIGRATIONS
        .iter()
        .find(|m| m.version() == 5)
        .expect("migration 5");
    for statement in five.statements() {
        store
            .client()
            .query_raw(&statement)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let processor = start_processor(env.processor_config());
    // The same report again (a redelivery across the upgrade), and another
    // machine's copy of its id.
    produce(
        &env.reports_topic,
        &[old.clone(), crash("machine-b", old.report_id)],
    )
    .await;
    env.caught_up(WAIT).await;

    store
        .client()
        .query("OPTIMIZE TABLE crash_reports FINAL")
        .execute()
        .await
        .expect("merge");
    assert_eq!(scalar(&store, "SELECT count() FROM crash_reports").await, 2);
    assert_eq!(
        scalar(
            &store,
            "SELECT count() FROM crash_reports WHERE report_key = report_id"
        )
        .await,
        1,
        "the old row keeps the key it was counted by"
    );
    assert_eq!(
        scalar(&store, "SELECT toUInt64(sum(reports)) FROM crash_daily").await,
        2,
        "the old report once, the other machine's once"
    );
    assert_eq!(
        scalar(&store, "SELECT toUInt64(sum(machines)) FROM crash_daily").await,
        2
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT count() FROM system.tables WHERE database = currentDatabase() \
             AND (name LIKE '%\\_v4' OR name LIKE '%\\_v5')"
        )
        .await,
        0,
        "no table of the copy is left"
    );

    processor.shutdown().await.expect("processor stops");
    env.cleanup().await;
}
