//! `/metrics` of a running ingest and processor, read as a Prometheus
//! server would: the text is parsed by a Prometheus text-format parser
//! (`prometheus-parse`), every sample belongs to a declared family of the
//! right type, and the counters of what was sent move by exactly that.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{TestEnv, eventually, fixtures, fresh_report, start_ingest, start_processor};
use prometheus_parse::{Scrape, Value};

const CRASHES: usize = 5;

async fn scrape(url: &str) -> Scrape {
    let response = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics answers");
    assert!(response.status().is_success());
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    for sample in &scrape.samples {
        let family = family_of(&sample.metric);
        assert!(
            scrape.docs.contains_key(family),
            "{} has no HELP in\n{text}",
            sample.metric
        );
        // (The parser leaves a histogram's `_sum` and `_count` untyped.)
        assert!(
            family != sample.metric || !matches!(sample.value, Value::Untyped(_)),
            "{} has no TYPE in\n{text}",
            sample.metric
        );
    }
    scrape
}

/// The family a sample line belongs to (a histogram's `_bucket`, `_sum`
/// and `_count` lines belong to it).
fn family_of(metric: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| metric.strip_suffix(suffix))
        .unwrap_or(metric)
}

/// The counter `name` summed over the samples whose labels include `labels`.
fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(n) => n,
            ref other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_processor_metrics_parse_and_count_what_was_sent() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let metrics_addr = free_port();
    let mut config = env.processor_config();
    config.metrics_listen = Some(metrics_addr);
    let processor = start_processor(config);
    let processor_url = format!("http://{metrics_addr}");

    let before = scrape(&ingest.url).await;
    assert_eq!(counter(&before, "ingest_reports_total", &[]), 0.0);

    let http = reqwest::Client::new();
    for _ in 0..CRASHES {
        let response = http
            .post(format!("{}/v1/reports", ingest.url))
            .bearer_auth(env.token("grid"))
            .json(&fresh_report(fixtures::CRASH))
            .send()
            .await
            .expect("ingest answers");
        assert_eq!(response.status(), 202);
    }
    let refused = http
        .post(format!("{}/v1/reports", ingest.url))
        .bearer_auth("not-a-token")
        .json(&fresh_report(fixtures::CRASH))
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(refused.status(), 401);

    let after = scrape(&ingest.url).await;
    let accepted = [("outcome", "accepted"), ("kind", "crash")];
    assert_eq!(
        counter(&after, "ingest_reports_total", &accepted),
        CRASHES as f64
    );
    assert_eq!(
        counter(
            &after,
            "ingest_reports_total",
            &[("outcome", "rejected"), ("reason", "unknown_token")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &after,
            "ingest_requests_total",
            &[("route", "reports"), ("status", "202")]
        ),
        CRASHES as f64
    );
    let histogram = after
        .samples
        .iter()
        .find(|s| {
            s.metric == "ingest_request_duration_seconds"
                && s.labels.get("route") == Some("reports")
        })
        .expect("request durations of the reports route");
    match &histogram.value {
        Value::Histogram(buckets) => {
            let all = buckets.last().expect("buckets");
            assert!(all.less_than.is_infinite());
            assert_eq!(all.count, (CRASHES + 1) as f64);
        }
        other => panic!("not a histogram: {other:?}"),
    }

    // The processor writes them: its counters move once the rows are in.
    let rows = eventually("processor rows counted", Duration::from_secs(60), || {
        let url = processor_url.clone();
        async move {
            let scrape = scrape_if_up(&url).await?;
            let rows = counter(&scrape, "processor_rows_inserted_total", &[]);
            (rows >= CRASHES as f64).then_some(scrape)
        }
    })
    .await;
    assert!(counter(&rows, "processor_batches_total", &[]) >= 1.0);
    assert_eq!(counter(&rows, "processor_dead_letters_total", &[]), 0.0);

    processor.shutdown().await.expect("processor stops cleanly");
    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    env.cleanup().await;
}

/// The processor's metrics once its listener is up.
async fn scrape_if_up(url: &str) -> Option<Scrape> {
    reqwest::get(format!("{url}/metrics")).await.ok()?;
    Some(scrape(url).await)
}

/// `telemetry-admin serve` on a fresh database: migrates it, turns ready,
/// and counts its job runs under its own `admin_` names (none of the
/// processor's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_jobs_migrate_then_count_their_runs() {
    let env = TestEnv::new();
    let mut settings = warehouse::Settings::from(env.processor_config());
    settings.retention.interval_secs = 3_600;
    settings.analytics.interval_secs = 3_600;
    let addr = free_port();
    let url = format!("http://{addr}");
    let metrics = std::sync::Arc::new(warehouse::metrics::Metrics::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let observed: std::sync::Arc<dyn pipeline::health::Observed> = metrics.clone();
    tokio::spawn(pipeline::health::serve(addr, observed, stop.clone()));
    let jobs = tokio::spawn(warehouse::serve(settings, metrics, stop.clone()));

    // Both jobs run right away, the first time.
    let scrape = eventually("both jobs ran once", Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            let scrape = scrape_if_up(&url).await?;
            let runs = |job| counter(&scrape, "admin_scheduled_runs_total", &[("job", job)]);
            (runs("retention") == 1.0 && runs("crash_regressions") == 1.0).then_some(scrape)
        }
    })
    .await;
    assert_eq!(counter(&scrape, "admin_scheduled_failures_total", &[]), 0.0);
    assert_eq!(
        counter(&scrape, "admin_retention_partitions_dropped_total", &[]),
        0.0
    );
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.metric.starts_with("admin_")),
        "only the jobs' own metrics"
    );
    let ready = reqwest::get(format!("{url}/readyz"))
        .await
        .expect("answers");
    assert_eq!(ready.status(), 200);
    let store = env.clickhouse().await;
    store
        .check_migrations()
        .await
        .expect("serve migrated the database first");

    stop.cancel();
    jobs.await.expect("jobs stop");
    env.cleanup().await;
}
