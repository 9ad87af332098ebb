//! A machine's operator erases the machine: after the erasure is recorded,
//! no raw table, aggregate, clustering signature or view counts it, while
//! every other machine is counted as before. The reports the machine sent
//! just before the request, still on their way through Kafka, are erased
//! too.

use std::sync::Arc;
use std::time::Duration;

use e2e::{
    TestEnv, eventually, fixtures, fresh_report, scalar, start_ingest, start_processor,
    start_processor_with,
};
use ingest::privacy::{MachineHasher, MachineIdHash};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

/// One report of every type from `machine`; the crash's top frame and the
/// request's title are `tag`'s own, so that its signature and cluster are
/// the machine's alone; its heartbeat is for today, the day of its crash.
fn every_type(machine: &str, tag: &str) -> Vec<Value> {
    fixtures::ALL
        .iter()
        .map(|fixture| {
            let mut report = fresh_report(fixture);
            report["machine_id"] = json!(machine);
            match report["schema"].as_str() {
                Some("crash/1") => {
                    report["payload"]["frames"][0]["function"] = json!(format!("{tag}::Fault"))
                }
                Some("feature_request/1") => {
                    report["payload"]["title"] =
                        json!(format!("{tag} needs a quieter fan profile"));
                    report["payload"]
                        .as_object_mut()
                        .expect("object")
                        .remove("body");
                }
                Some("heartbeat/1") => {
                    report["payload"]["day"] =
                        json!(time::OffsetDateTime::now_utc().date().to_string())
                }
                _ => {}
            }
            report
        })
        .collect()
}

/// Posts `body` to `url` with `token`: the status and the JSON answer.
async fn post(http: reqwest::Client, url: String, token: &str, body: Value) -> (u16, Value) {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("ingest answers");
    let status = response.status().as_u16();
    (status, response.json::<Value>().await.expect("JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_machine_is_counted_nowhere_and_the_others_still_are() {
    let env = TestEnv::new();
    let mut config = env.ingest_config();
    config.warehouse = Some(ingest::config::WarehouseSettings {
        url: e2e::clickhouse_url(),
        ca_file: None,
        database: env.database.clone(),
        user: "default".into(),
        password: String::new(),
    });
    let ingest = start_ingest(config).await;
    let processor = start_processor(env.processor_config());
    let store = env.clickhouse().await;
    let http = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        post(
            http.clone(),
            format!("{}{path}", ingest.url),
            env.token("grid"),
            body,
        )
    };

    let erased = "m-erase-0001-zhangwei";
    let kept = ["m-keep-0001-aaaaaaaa", "m-keep-0002-bbbbbbbb"];
    for (i, machine) in kept.iter().enumerate() {
        for report in every_type(machine, &format!("Kept{i}")) {
            assert_eq!(post("/v1/reports", report).await.0, 202);
        }
    }
    // What is stored about the machine, as its operator can see it.
    let first = every_type(erased, "Erased");
    for report in &first {
        assert_eq!(post("/v1/reports", report.clone()).await.0, 202);
    }
    env.caught_up(WAIT).await;
    let (status, export) = post("/v1/machines/export", json!({"machine_id": erased})).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["organisation"], "grid");
    assert_eq!(export["truncated"], false);
    for (table, report) in schemas::erasure::RAW_MACHINE_TABLES.iter().zip(&first) {
        let rows = export["tables"][table].as_array().expect("rows");
        assert_eq!(rows.len(), 1, "{table}: {export}");
        assert_eq!(rows[0]["report_id"], report["report_id"], "{table}");
        assert_eq!(rows[0]["machine_hash"], export["machine_hash"]);
    }
    for table in schemas::erasure::MACHINE_TABLES
        .iter()
        .filter(|t| !schemas::erasure::RAW_MACHINE_TABLES.contains(t))
    {
        let groups = export["aggregates"][table].as_array().expect("groups");
        assert!(!groups.is_empty(), "{table} counts the machine: {export}");
    }
    let text = export.to_string();
    assert!(
        !text.contains(erased),
        "the raw machine id is stored nowhere"
    );
    for kept_machine in kept {
        let hash =
            MachineHasher::new(MachineIdHash::HmacSha256, e2e::MACHINE_ID_KEY).hash(kept_machine);
        assert!(!text.contains(&hash), "only the machine's own rows");
    }

    // More reports, then at once its erasure: they are still on their way
    // when the request is sent.
    for report in every_type(erased, "Erased") {
        assert_eq!(post("/v1/reports", report).await.0, 202);
    }
    let (status, answer) = post("/v1/machines/erase", json!({"machine_id": erased})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let erasure_id = answer["erasure_id"]
        .as_str()
        .expect("erasure id")
        .to_string();

    let recorded = format!(
        "SELECT count() FROM erasures WHERE erasure_id = toUUID('{erasure_id}') AND org_id = 'grid'"
    );
    eventually("the erasure is recorded", WAIT, || async {
        (e2e::try_scalar(&store, &recorded).await == Some(1)).then_some(())
    })
    .await;
    env.caught_up(WAIT).await;

    let hash = MachineHasher::new(MachineIdHash::HmacSha256, e2e::MACHINE_ID_KEY).hash(erased);
    for table in schemas::erasure::MACHINE_TABLES {
        assert_eq!(
            scalar(
                &store,
                &format!("SELECT count() FROM {table} WHERE machine_hash = '{hash}'")
            )
            .await,
            0,
            "{table} holds nothing of the erased machine"
        );
    }
    assert_eq!(
        scalar(
            &store,
            &format!("SELECT raw_rows FROM erasures WHERE erasure_id = toUUID('{erasure_id}')")
        )
        .await,
        8,
        "two reports of each type were erased"
    );
    // Its signature and its cluster are gone from the views, with its
    // request's clustering signature.
    assert_eq!(
        scalar(
            &store,
            "SELECT count() FROM crash_signatures WHERE signature LIKE '%Erased::Fault%'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &store,
            "SELECT count() FROM feature_request_clusters WHERE title LIKE 'Erased%'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(&store, "SELECT count() FROM feature_request_signatures").await,
        2,
        "the kept machines' requests only"
    );
    // Every other machine still counts, once.
    let views = [
        ("SELECT toUInt64(sum(machines)) FROM crash_signatures", 2),
        ("SELECT toUInt64(sum(reports)) FROM crash_daily", 2),
        (
            "SELECT toUInt64(sum(active_machines)) FROM crash_free_daily",
            2,
        ),
        (
            "SELECT toUInt64(sum(crashed_machines)) FROM crash_free_daily",
            2,
        ),
        (
            "SELECT toUInt64(sum(machines)) FROM feature_request_clusters",
            2,
        ),
        ("SELECT toUInt64(sum(ratings)) FROM feedback_daily", 2),
        ("SELECT count() FROM heartbeats", 2),
    ];
    for (sql, expected) in views {
        assert_eq!(scalar(&store, sql).await, expected, "{sql}");
    }
    let (status, export) = post("/v1/machines/export", json!({"machine_id": erased})).await;
    assert_eq!(status, 200, "{export}");
    for table in schemas::erasure::MACHINE_TABLES {
        let part = if schemas::erasure::RAW_MACHINE_TABLES.contains(table) {
            "tables"
        } else {
            "aggregates"
        };
        assert_eq!(export[part][table], json!([]), "{table} after the erasure");
    }
    // Nothing in the record names the machine.
    assert_eq!(
        scalar(
            &store,
            &format!(
                "SELECT count() FROM erasures WHERE position(concat(org_id, toString(erasure_id)), '{hash}') > 0"
            )
        )
        .await,
        0
    );

    // A replay from before the request (the group's offsets lost, read
    // again from the earliest): the reports come back, and so does the
    // request behind them.
    let replayed_request = schemas::erasure::ErasureRequest {
        erasure_id: erasure_id.parse().expect("uuid"),
        org_id: "grid".into(),
        machine_hash: hash.clone(),
        requested_at: time::OffsetDateTime::now_utc(),
    };
    let replayed_report = e2e::accepted(fixtures::CRASH, "grid", &hash);
    e2e::produce_raw(
        &env.reports_topic,
        &[
            (
                hash.clone(),
                serde_json::to_vec(&replayed_report).expect("json"),
            ),
            (
                hash.clone(),
                serde_json::to_vec(&replayed_request).expect("json"),
            ),
        ],
    )
    .await;
    env.caught_up(WAIT).await;
    assert_eq!(
        scalar(
            &store,
            &format!("SELECT count() FROM crash_reports WHERE machine_hash = '{hash}'")
        )
        .await,
        0,
        "erased again"
    );
    assert_eq!(
        scalar(
            &store,
            &format!("SELECT count() FROM erasures WHERE erasure_id = toUUID('{erasure_id}')")
        )
        .await,
        1,
        "recorded once"
    );

    processor.shutdown().await.expect("processor stops");
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

/// A mutation that never finishes (here one that fails on every part, as
/// an analyst's mistaken `ALTER` would) holds back an erasure's deletion on
/// its table, since a table's mutations run in order. The processor waits
/// `batch.erasure_wait_ms` for the erasure, then leaves that deletion
/// queued, does not record the erasure, and goes on: the reports sent
/// after that, by other machines, are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_that_never_finishes_holds_back_an_erasure_but_no_other_report() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let mut config = env.processor_config();
    config.batch.erasure_wait_ms = 2_000;
    let metrics = Arc::new(processor::Metrics::default());
    let processor = start_processor_with(config, Arc::clone(&metrics));
    let store = env.clickhouse().await;
    let http = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        post(
            http.clone(),
            format!("{}{path}", ingest.url),
            env.token("grid"),
            body,
        )
    };

    let erased = "m-erase-0002-lihua000";
    for report in every_type(erased, "Stuck") {
        assert_eq!(post("/v1/reports", report).await.0, 202);
    }
    env.caught_up(WAIT).await;
    let sql = "ALTER TABLE heartbeats DELETE WHERE throwIf(length(machine_hash) > 0) = 1";
    store.client().query(sql).execute().await.expect(sql);

    let (status, answer) = post("/v1/machines/erase", json!({"machine_id": erased})).await;
    assert_eq!(status, 202, "{answer}");
    let erasure_id = answer["erasure_id"]
        .as_str()
        .expect("erasure id")
        .to_string();
    // The processor gives the erasure up once the wait is over...
    eventually("the erasure given up", WAIT, || async {
        (processor::Metrics::get(&metrics.erasures_unconfirmed) == 1).then_some(())
    })
    .await;
    // ...and goes on: reports sent after that, by other machines, are
    // written.
    let mut after = Vec::new();
    for i in 0..20 {
        let mut report = fresh_report(fixtures::CRASH);
        report["machine_id"] = json!(format!("m-after-{i:04}-bbbbbbbb"));
        after.push(format!(
            "toUUID({})",
            report["report_id"].to_string().replace('"', "'")
        ));
        assert_eq!(post("/v1/reports", report).await.0, 202);
    }
    let stored = format!(
        "SELECT count() FROM crash_reports WHERE report_id IN ({})",
        after.join(", ")
    );
    eventually("the reports sent after it stored", WAIT, || async {
        (e2e::try_scalar(&store, &stored).await == Some(20)).then_some(())
    })
    .await;

    assert_eq!(processor::Metrics::get(&metrics.erasures), 0);
    assert_eq!(
        scalar(
            &store,
            &format!("SELECT count() FROM erasures WHERE erasure_id = toUUID('{erasure_id}')")
        )
        .await,
        0,
        "an erasure not done is not recorded"
    );
    let hash = MachineHasher::new(MachineIdHash::HmacSha256, e2e::MACHINE_ID_KEY).hash(erased);
    let named = |table: &str| format!("SELECT count() FROM {table} WHERE machine_hash = '{hash}'");
    assert_eq!(
        scalar(&store, &named("heartbeats")).await,
        1,
        "the heartbeat's deletion waits behind the mutation that never finishes"
    );
    // The other tables' deletions are not held back (on a cluster they may
    // still be on their way when the wait ends).
    eventually("the other tables' deletions done", WAIT, || async {
        (e2e::try_scalar(&store, &named("crash_reports")).await == Some(0)).then_some(())
    })
    .await;

    processor.shutdown().await.expect("processor stops");
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_request_is_checked_like_any_other() {
    let env = TestEnv::new();
    let mut config = env.ingest_config();
    config.rights_limits.machine_burst = 2.0;
    let ingest = start_ingest(config).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/machines/erase", ingest.url);
    let unauthenticated = http
        .post(&url)
        .json(&json!({"machine_id": "m-0000000001"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(unauthenticated.status(), 401);
    for (body, status, code) in [
        (json!({"machine_id": "short"}), 400, "invalid"),
        (json!({"machine": "m-0000000001"}), 400, "malformed_json"),
        (json!(["m-0000000001"]), 400, "malformed_json"),
    ] {
        let response = http
            .post(&url)
            .bearer_auth(env.token("grid"))
            .json(&body)
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), status, "{body}");
        let answer: Value = response.json().await.expect("JSON error");
        assert_eq!(answer["error"], code, "{body}: {answer}");
    }
    assert_eq!(
        env.reports_in_kafka().await,
        0,
        "nothing refused reached Kafka"
    );
    let response = http
        .post(format!("{}/v1/machines/export", ingest.url))
        .bearer_auth(env.token("grid"))
        .json(&json!({"machine_id": "m-0000000001"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 503, "no warehouse configured");
    let answer: Value = response.json().await.expect("JSON error");
    assert_eq!(answer["error"], "export_unavailable");

    // A machine that asks again and again is held to `[rights_limits]`
    // (here a burst of 2), apart from its reports; another machine is not.
    let erase = |machine: &'static str| {
        let (http, url, token) = (http.clone(), url.clone(), env.token("grid"));
        async move {
            http.post(&url)
                .bearer_auth(token)
                .json(&json!({"machine_id": machine}))
                .send()
                .await
                .expect("answer")
        }
    };
    for _ in 0..2 {
        assert_eq!(erase("m-asks-again-0001").await.status(), 202);
    }
    let refused = erase("m-asks-again-0001").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let answer: Value = refused.json().await.expect("JSON error");
    assert_eq!(answer["error"], "rate_limited");
    assert_eq!(erase("m-asks-once-00002").await.status(), 202);
    let mut report = fresh_report(fixtures::HEARTBEAT);
    report["machine_id"] = json!("m-asks-again-0001");
    let sent = http
        .post(format!("{}/v1/reports", ingest.url))
        .bearer_auth(env.token("grid"))
        .json(&report)
        .send()
        .await
        .expect("answer");
    assert_eq!(sent.status(), 202, "its reports have buckets of their own");
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

/// The operator's side: `reporter export` and `reporter erase`, through the
/// reporter library against the real ingest, Kafka, processor and
/// ClickHouse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporter_exports_and_erases_its_own_machine() {
    use reporter::{Backoff, Config, FlushOptions, OsSettings, Reporter, build};
    use schemas::SchemaId;

    let env = TestEnv::new();
    let mut config = env.ingest_config();
    config.warehouse = Some(ingest::config::WarehouseSettings {
        url: e2e::clickhouse_url(),
        ca_file: None,
        database: env.database.clone(),
        user: "default".into(),
        password: String::new(),
    });
    let ingest = start_ingest(config).await;
    let processor = start_processor(env.processor_config());
    let store = env.clickhouse().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let reporter_config = Config::from_toml(&format!(
        "endpoint = {:?}\ntoken = {:?}\nconsent = \"optional\"\nqueue_dir = {:?}\n\
         [os]\nlocale = \"zh-CN\"\nrevision = 3570\n",
        ingest.url,
        env.token("grid"),
        dir.path().join("queue").to_str().expect("UTF-8 temp path")
    ))
    .expect("reporter configuration is valid");
    let mut reporter = Reporter::open(reporter_config).expect("reporter opens");
    let os = OsSettings::default();
    let today = time::OffsetDateTime::now_utc().date().to_string();
    reporter
        .send(
            SchemaId::HEARTBEAT_V1,
            build::heartbeat(Some(&today), None),
            &os,
        )
        .expect("queued");
    reporter
        .send(
            SchemaId::FEEDBACK_V1,
            build::feedback(5, "update", None),
            &os,
        )
        .expect("queued");
    let options = FlushOptions {
        max_time: Duration::from_secs(30),
        batch_size: 100,
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        progress: false,
    };
    assert!(reporter.flush(&options).await.expect("flush").complete());
    env.caught_up(WAIT).await;

    let export = reporter.export(WAIT).await.expect("export");
    assert_eq!(
        export["tables"]["heartbeats"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        export["tables"]["feedback"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(export["tables"]["crash_reports"], json!([]));

    // One more report waits in the queue: erasing drops it here too.
    reporter
        .send(SchemaId::HEARTBEAT_V1, build::heartbeat(None, Some(5)), &os)
        .expect("queued");
    let (answer, dropped) = reporter.erase(WAIT).await.expect("erase");
    assert_eq!(dropped, 1);
    assert!(reporter.queue().is_empty());
    let erasure_id = answer["erasure_id"]
        .as_str()
        .expect("erasure id")
        .to_string();
    let recorded =
        format!("SELECT raw_rows FROM erasures WHERE erasure_id = toUUID('{erasure_id}')");
    let raw_rows = eventually("the erasure is recorded", WAIT, || async {
        e2e::try_scalar(&store, &recorded).await
    })
    .await;
    assert_eq!(raw_rows, 2);
    let export = reporter.export(WAIT).await.expect("export");
    for table in schemas::erasure::RAW_MACHINE_TABLES {
        assert_eq!(export["tables"][table], json!([]), "{table}");
    }

    processor.shutdown().await.expect("processor stops");
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}
