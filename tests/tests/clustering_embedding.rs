//! Feature requests clustered by meaning, the whole way: HTTP → ingest →
//! Kafka → processor (`[clustering] method = "embedding"`, the real model
//! `scripts/model` fetched) → ClickHouse. A Chinese request and its English
//! wording meet in one cluster; an unrelated request does not join it; a
//! restarted processor rebuilds its index from the stored 8-bit embeddings
//! (the model does not run again over stored requests) and puts a later
//! paraphrase in the same cluster.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e::{TestEnv, eventually, fixtures, fresh_report, start_ingest, start_processor_with};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

fn embedding_config(env: &TestEnv) -> processor::Config {
    let mut config = env.processor_config();
    config.clustering.method = clustering::Method::Embedding;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    config.clustering.model_dir = clustering::embed::model_dir(&workspace.join(".data"));
    config
}

fn request(title: &str, language: &str) -> Value {
    let mut report = fresh_report(fixtures::FEATURE_REQUEST);
    report["payload"]["title"] = json!(title);
    report["payload"]["language"] = json!(language);
    report["payload"]
        .as_object_mut()
        .expect("payload")
        .remove("body");
    report
}

/// Sends `report` through ingest and waits for its row; returns its cluster.
async fn cluster_of(
    env: &TestEnv,
    http: &reqwest::Client,
    ingest: &str,
    store: &processor::Store,
    report: &Value,
) -> u64 {
    let response = http
        .post(format!("{ingest}/v1/reports"))
        .bearer_auth(env.token("grid"))
        .json(report)
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(response.status(), 202);
    let sql = format!(
        "SELECT cluster_id FROM feature_requests WHERE report_id = toUUID('{}')",
        report["report_id"].as_str().expect("id")
    );
    eventually("the request stored", WAIT, || async {
        e2e::try_scalar(store, &sql).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chinese_request_and_its_english_wording_share_a_cluster() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let metrics = Arc::new(processor::Metrics::default());
    let processor = start_processor_with(embedding_config(&env), metrics.clone());
    let http = reqwest::Client::new();
    let store = env.clickhouse().await;

    let chinese = cluster_of(
        &env,
        &http,
        &ingest.url,
        &store,
        &request("希望开始菜单支持分组", "zh-CN"),
    )
    .await;
    let english = request(
        "Allow grouping apps in the Start menu into folders",
        "en-US",
    );
    assert_eq!(
        cluster_of(&env, &http, &ingest.url, &store, &english).await,
        chinese,
        "the English wording joins the Chinese request's cluster"
    );
    assert_eq!(
        chinese,
        clustering::cluster_id_for("希望开始菜单支持分组"),
        "the founder's id"
    );
    let unrelated = request("Printer driver installation is too slow", "en-US");
    assert_ne!(
        cluster_of(&env, &http, &ingest.url, &store, &unrelated).await,
        chinese
    );

    // Each request's embedding is stored: 512 signed bytes.
    let with_embeddings =
        "SELECT count() FROM feature_request_signatures WHERE length(embedding) = 512";
    eventually("three embeddings stored", WAIT, || async {
        (e2e::try_scalar(&store, with_embeddings).await? == 3).then_some(())
    })
    .await;
    env.caught_up(WAIT).await;
    processor.shutdown().await.expect("processor stops cleanly");

    // A restart rebuilds the index from the three stored embeddings.
    let metrics = Arc::new(processor::Metrics::default());
    let processor = start_processor_with(embedding_config(&env), metrics.clone());
    eventually("the index rebuilt", WAIT, || async {
        (processor::Metrics::get(&metrics.cluster_signatures_loaded) == 3).then_some(())
    })
    .await;
    let later = request("Please support folders in the Start menu", "en-US");
    assert_eq!(
        cluster_of(&env, &http, &ingest.url, &store, &later).await,
        chinese,
        "a paraphrase read after the restart joins the same cluster"
    );

    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    processor.shutdown().await.expect("processor stops cleanly");
    env.cleanup().await;
}

/// Without the model, the processor says so at start, naming the folder and
/// the way to fetch it, instead of waiting or clustering some other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_stops_the_start_with_its_folder_named() {
    let env = TestEnv::new();
    let mut config = embedding_config(&env);
    config.clustering.model_dir = std::env::temp_dir().join(format!("no-model-{}", env.database));
    let error = processor::run(config, std::future::pending())
        .await
        .expect_err("the start fails");
    let text = error.to_string();
    assert!(
        text.contains("scripts/model") && text.contains("no-model-"),
        "{text}"
    );
}
