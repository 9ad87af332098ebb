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

    // What analysts see: per language, the most central title and counts.
    let titles = format!(
        "SELECT language, title, requests, organisations, machines \
         FROM feature_request_cluster_titles WHERE cluster_id = {chinese} ORDER BY language"
    );
    let seen: Vec<(String, String, u64, u64, u64)> = store
        .client()
        .query(&titles)
        .fetch_all()
        .await
        .expect("the cluster's titles");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "en");
    assert!(
        [
            "Allow grouping apps in the Start menu into folders",
            "Please support folders in the Start menu"
        ]
        .contains(&seen[0].1.as_str()),
        "{seen:?}"
    );
    assert_eq!((seen[0].2, seen[0].3), (2, 1), "{seen:?}");
    assert_eq!(
        (seen[1].0.as_str(), seen[1].1.as_str(), seen[1].2),
        ("zh", "希望开始菜单支持分组", 1)
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

fn accepted_request(title: &str) -> schemas::AcceptedReport {
    let mut report = e2e::accepted(fixtures::FEATURE_REQUEST, "grid", &"ab".repeat(16));
    report.payload["title"] = json!(title);
    report
        .payload
        .as_object_mut()
        .expect("payload")
        .remove("body");
    report
}

/// Two instances founded a cluster each for one request, in Chinese and in
/// English, before either saw the other's. The merge pass of the instance
/// here joins them once it reads the other's, records the merge in
/// `cluster_merges`, and from then on the request's history counts as one
/// cluster and a later wording gets the surviving id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_founded_apart_are_merged_and_history_follows() {
    let env = TestEnv::new();
    let mut config = embedding_config(&env);
    config.analytics.cluster_refresh_secs = 1;
    let model_dir = config.clustering.model_dir.clone();
    let metrics = Arc::new(processor::Metrics::default());
    let processor = start_processor_with(config, metrics.clone());
    let store = env.clickhouse().await;
    eventually("the processor is consuming", WAIT, || async {
        (processor::Metrics::get(&metrics.partitions_assigned) > 0).then_some(())
    })
    .await;

    let cluster_sql = |id: uuid::Uuid| {
        format!("SELECT cluster_id FROM feature_requests WHERE report_id = toUUID('{id}')")
    };
    let english = accepted_request("Allow grouping apps in the Start menu into folders");
    e2e::produce(&env.reports_topic, std::slice::from_ref(&english)).await;
    let here = eventually("the English request stored", WAIT, || async {
        e2e::try_scalar(&store, &cluster_sql(english.report_id)).await
    })
    .await;

    // What the other instance wrote for the Chinese wording: its row and
    // its signature, with the embedding it computed.
    let chinese = "希望开始菜单支持分组";
    let there = clustering::cluster_id_for(chinese);
    assert_ne!(here, there, "founded apart");
    let embedder = clustering::embed::Embedder::load(&model_dir).expect("model");
    let embedding = format!("{:?}", embedder.embed(chinese).quantize().0);
    let minhash: String = clustering::MinHashSignature::from_text(chinese)
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let other_id = uuid::Uuid::new_v4();
    for sql in [
        format!(
            "INSERT INTO feature_requests (report_id, received_at, org_id, machine_hash, title, \
             language, cluster_id, cluster_similarity, inserted_at) \
             VALUES ('{other_id}', now(), 'water', '{}', '{chinese}', 'zh-CN', {there}, 1, now())",
            "cd".repeat(16)
        ),
        format!(
            "INSERT INTO feature_request_signatures \
             (cluster_id, report_id, received_at, minhash, embedding, inserted_at) \
             VALUES ({there}, '{other_id}', now(), unhex('{minhash}'), {embedding}, now())"
        ),
    ] {
        store.client().query(&sql).execute().await.expect(&sql);
    }

    let (gone, kept) = (here.max(there), here.min(there));
    let merged_sql =
        format!("SELECT merged_into FROM cluster_merges FINAL WHERE cluster_id = {gone}");
    let merged_into = eventually("the merge recorded", WAIT, || async {
        e2e::try_scalar(&store, &merged_sql).await
    })
    .await;
    assert_eq!(merged_into, kept, "the smaller id survives");

    // History follows the merge: both requests count in one cluster.
    let followed = format!(
        "SELECT uniqExact(if(m.merged_into = 0, cluster_id, m.merged_into)) \
         FROM feature_requests \
         ANY LEFT JOIN (SELECT cluster_id, merged_into FROM cluster_merges FINAL) AS m \
         USING cluster_id \
         WHERE report_id IN (toUUID('{}'), toUUID('{other_id}'))",
        english.report_id
    );
    assert_eq!(e2e::scalar(&store, &followed).await, 1);
    let stored_ids = format!(
        "SELECT uniqExact(cluster_id) FROM feature_requests \
         WHERE report_id IN (toUUID('{}'), toUUID('{other_id}'))",
        english.report_id
    );
    assert_eq!(
        e2e::scalar(&store, &stored_ids).await,
        2,
        "stored ids unchanged"
    );

    // A later wording joins the surviving cluster.
    let later = accepted_request("Please support folders in the Start menu");
    e2e::produce(&env.reports_topic, std::slice::from_ref(&later)).await;
    let joined = eventually("the later request stored", WAIT, || async {
        e2e::try_scalar(&store, &cluster_sql(later.report_id)).await
    })
    .await;
    assert_eq!(joined, kept);

    processor.shutdown().await.expect("processor stops cleanly");
    env.cleanup().await;
}
