//! The edge's limits against the real Kafka broker (issue 10): nothing a
//! machine sends, and no single fault, stops the pipeline or loses a
//! report. Traffic without a token costs a bounded number of outcome
//! events; a batch holds a permit and its bytes before it reads its body; a
//! report Kafka refuses for good is quarantined and the spool goes on;
//! ingest started before Kafka waits for it; a report id is unique per
//! machine, not across machines; topics and producers share one message
//! limit. None of these tests stops the broker.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::{
    TestEnv, eventually, fixtures, forward_to_kafka, fresh_report, kafka_brokers, messages_in,
    read_messages, start_ingest,
};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> u64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .expect("admin client")
}

/// The `max.message.bytes` a topic has, as the broker says (once the
/// broker knows the new topic).
async fn topic_max_message_bytes(topic: &str) -> u64 {
    let admin = admin();
    eventually("the topic's configuration", WAIT, || async {
        let described = admin
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
            .await
            .ok()?;
        let resource = described.into_iter().next()?.ok()?;
        resource
            .get("max.message.bytes")?
            .value
            .as_deref()?
            .parse()
            .ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_producers_share_one_message_limit() {
    let env = TestEnv::new();
    pipeline::ensure_topics(&env.kafka(), &[&env.reports_topic])
        .await
        .expect("topic created");
    let limit = pipeline::MAX_MESSAGE_BYTES as u64;
    assert_eq!(topic_max_message_bytes(&env.reports_topic).await, limit);
    let producer = ingest::producer_config(&env.kafka(), Duration::from_secs(5));
    assert_eq!(
        producer.get("message.max.bytes"),
        Some(limit.to_string().as_str()),
        "ingest's producer takes what the topics take"
    );
    let dead_letters = processor::DeadLetters::producer_config(&env.kafka());
    assert_eq!(
        dead_letters.get("message.max.bytes"),
        Some(limit.to_string().as_str()),
        "the processor's dead-letter producer takes what the topics take"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_token_cost_a_bounded_number_of_outcome_events() {
    const REQUESTS: usize = 50_000;
    const WORKERS: usize = 32;
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let http = reqwest::Client::new();
    let start = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (http, url) = (http.clone(), ingest.url.clone());
            tokio::spawn(async move {
                let mut unauthorised = 0usize;
                for i in (worker..REQUESTS).step_by(WORKERS) {
                    let mut request = http.post(format!("{url}/v1/reports"));
                    if i % 2 == 1 {
                        request = request.bearer_auth("not-a-token");
                    }
                    let status = request.send().await.expect("answer").status();
                    unauthorised += usize::from(status == 401);
                }
                unauthorised
            })
        })
        .collect();
    let mut unauthorised = 0;
    for worker in workers {
        unauthorised += worker.await.expect("worker");
    }
    let elapsed = start.elapsed();
    assert_eq!(unauthorised, REQUESTS);
    assert_eq!(
        metric(&http, &ingest.url, "ingest_reports_total").await,
        REQUESTS as u64,
        "every refusal is counted"
    );
    // A refused report after the flood is published at once: the sentinel
    // that the outcomes topic is being written.
    let mut invalid = fresh_report(fixtures::CRASH);
    invalid["payload"]["exception_code"] = json!("boom");
    let reply = http
        .post(format!("{}/v1/reports", ingest.url))
        .bearer_auth(env.token("grid"))
        .json(&invalid)
        .send()
        .await
        .expect("answer");
    assert_eq!(reply.status(), 400);
    // Shutdown publishes the last interval's summaries.
    ingest.running.shutdown().await.expect("ingest stops");

    // Two kinds (unauthenticated, unknown_token), one event each per
    // interval begun, and the sentinel.
    let intervals = elapsed.as_secs() / ingest::SUMMARY_INTERVAL.as_secs() + 2;
    let bound = 2 * intervals as i64 + 1;
    let events = messages_in(&env.outcomes_topic).await;
    println!(
        "{REQUESTS} requests without a valid token in {elapsed:?}: {events} outcome events (bound {bound}), {} reports",
        env.reports_in_kafka().await
    );
    assert!((3..=bound).contains(&events), "{events} outcome events");
    assert_eq!(env.reports_in_kafka().await, 0);
    let reasons: Vec<String> = read_messages(&env.outcomes_topic, events as usize, WAIT)
        .await
        .iter()
        .map(|m| {
            let event: Value = serde_json::from_slice(m.payload().expect("payload")).expect("JSON");
            event["reason"].as_str().expect("reason").to_string()
        })
        .collect();
    for reason in ["unauthenticated", "unknown_token", "invalid"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
    env.cleanup().await;
}

/// Opens a batch request that declares `length` bytes and sends only the
/// first few: the server holds it while it waits for the rest.
fn open_batch(addr: std::net::SocketAddr, token: &str, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /v1/reports/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n["
    )
    .expect("write");
    stream
}

async fn post_batch(http: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    let batch = json!([fresh_report(fixtures::HEARTBEAT)]);
    http.post(format!("{url}/v1/reports/batch"))
        .bearer_auth(token)
        .json(&batch)
        .send()
        .await
        .expect("answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reserves_its_bytes_before_it_reads_its_body() {
    const MIB: usize = 1024 * 1024;
    let env = TestEnv::new();
    let config = env.ingest_config_with(&format!(
        "[limits]\nmax_body_bytes = 65536\nmax_batch_bytes = {MIB}\n\
         max_bytes_in_flight = {}\nshutdown_grace_secs = 2\n",
        2 * MIB
    ));
    let ingest = start_ingest(config).await;
    let http = reqwest::Client::new();
    let token = env.token("grid");

    // Two slow batches that declare 1 MiB each take the whole budget.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| open_batch(ingest.addr, token, MIB))
        .collect();
    eventually("both slow batches hold their bytes", WAIT, || async {
        (metric(&http, &ingest.url, "ingest_in_flight_bytes").await == 2 * MIB as u64).then_some(())
    })
    .await;
    let start = Instant::now();
    let refused = post_batch(&http, &ingest.url, token).await;
    let waited = start.elapsed();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "overloaded");
    assert!(
        waited < Duration::from_secs(2),
        "refused quickly: {waited:?}"
    );

    // Their bytes come back when they go away.
    drop(held);
    eventually("the budget is free again", WAIT, || async {
        (metric(&http, &ingest.url, "ingest_in_flight_bytes").await == 0).then_some(())
    })
    .await;
    assert_eq!(post_batch(&http, &ingest.url, token).await.status(), 200);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_its_permit_before_it_reads_its_body() {
    let env = TestEnv::new();
    let config = env.ingest_config_with("[limits]\nmax_in_flight = 1\nshutdown_grace_secs = 2\n");
    let ingest = start_ingest(config).await;
    let http = reqwest::Client::new();
    let token = env.token("grid");

    let held = open_batch(ingest.addr, token, 4096);
    eventually("the slow batch holds its permit", WAIT, || async {
        (metric(&http, &ingest.url, "ingest_in_flight_reports").await == 1).then_some(())
    })
    .await;
    let refused = post_batch(&http, &ingest.url, token).await;
    assert_eq!(refused.status(), 503);
    drop(held);
    eventually("the permit is free again", WAIT, || async {
        (metric(&http, &ingest.url, "ingest_in_flight_reports").await == 0).then_some(())
    })
    .await;
    assert_eq!(post_batch(&http, &ingest.url, token).await.status(), 200);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

/// Letters no compressor shrinks much.
fn noise(len: usize) -> String {
    let mut state = uuid::Uuid::new_v4().as_u128() as u64 | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_kafka_refuses_for_good_is_quarantined_and_the_rest_go_on() {
    const SMALL: usize = 5;
    let env = TestEnv::new();
    // The reports topic takes at most 4 KiB per message; ingest finds it
    // there and leaves it so.
    let topic = NewTopic::new(&env.reports_topic, 1, TopicReplication::Fixed(1))
        .set("max.message.bytes", "4096");
    for result in admin()
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topic")
    {
        result.expect("topic created");
    }
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let config = env.ingest_config_with(&format!(
        "[limits]\ndelivery_timeout_ms = 2000\nshutdown_grace_secs = 5\n\
         [spool]\ndir = \"{}\"\n",
        spool_dir.path().join("spool").display()
    ));
    let ingest = start_ingest(config).await;
    let http = reqwest::Client::new();
    let token = env.token("grid");

    let mut large = fresh_report(fixtures::FEATURE_REQUEST);
    large["payload"]["body"] = json!(noise(9_000));
    let post = |report: Value| {
        let request = http
            .post(format!("{}/v1/reports", ingest.url))
            .bearer_auth(token)
            .json(&report);
        async move { request.send().await.expect("answer") }
    };
    let reply = post(large.clone()).await;
    assert_eq!(reply.status(), 202, "the spool has it");
    let mut sent = Vec::new();
    for i in 0..SMALL {
        let mut report = fresh_report(fixtures::HEARTBEAT);
        report["machine_id"] = json!(format!("m-behind-the-large-one-{i}"));
        sent.push(report["report_id"].as_str().expect("id").to_string());
        assert_eq!(post(report).await.status(), 202);
    }

    eventually(
        "the large report is quarantined, the spool empty",
        WAIT,
        || async {
            let quarantined = metric(&http, &ingest.url, "ingest_spool_quarantined_total").await;
            let spooled = metric(&http, &ingest.url, "ingest_spool_records").await;
            (quarantined == 1 && spooled == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        metric(&http, &ingest.url, "ingest_quarantine_records").await,
        1
    );
    let in_kafka = messages_in(&env.reports_topic).await;
    let mut ids: Vec<String> = read_messages(&env.reports_topic, in_kafka as usize, WAIT)
        .await
        .iter()
        .map(|m| {
            let report: Value =
                serde_json::from_slice(m.payload().expect("payload")).expect("JSON");
            report["report_id"].as_str().expect("id").to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    sent.sort();
    assert_eq!(ids, sent, "every report behind the large one reached Kafka");
    ingest.running.shutdown().await.expect("ingest stops");

    // The quarantine's segments hold the large report, for an operator.
    let id = large["report_id"].as_str().expect("id");
    let mut held = String::new();
    for entry in std::fs::read_dir(spool_dir.path().join("spool/quarantine")).expect("quarantine") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "seg") {
            held.push_str(&String::from_utf8_lossy(
                &std::fs::read(path).expect("segment"),
            ));
        }
    }
    assert_eq!(held.matches(id).count(), 1, "the large report, once");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_id_is_one_report_per_machine() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let http = reqwest::Client::new();
    let post = |report: &Value, scheme: &str| {
        http.post(format!("{}/v1/reports", ingest.url))
            .header("authorization", format!("{scheme} {}", env.token("grid")))
            .json(report)
            .send()
    };
    // A disk image copied to two machines carries the same WER report id.
    let first = fresh_report(fixtures::CRASH);
    let mut other_machine = first.clone();
    other_machine["machine_id"] = json!("m-imaged-from-the-same-disk");
    let status = |reply: reqwest::Response| async move {
        let body: Value = reply.json().await.expect("JSON");
        body["status"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        status(post(&first, "Bearer").await.expect("answer")).await,
        "accepted"
    );
    // The scheme's case does not matter (RFC 7235).
    assert_eq!(
        status(post(&other_machine, "bearer").await.expect("answer")).await,
        "accepted"
    );
    assert_eq!(
        status(post(&first, "BEARER").await.expect("answer")).await,
        "duplicate",
        "a retry from the same machine is still one report"
    );
    assert_eq!(env.reports_in_kafka().await, 2);
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_started_before_kafka_waits_for_it_and_is_not_ready_meanwhile() {
    let env = TestEnv::new();
    // Kafka "is down": nothing listens on this port yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let toml = env
        .ingest_toml("")
        .replace(&kafka_brokers(), &format!("127.0.0.1:{port}"));
    let config = ingest::Config::from_toml(&toml).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(ingest::serve(config, listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let request = http.get(format!("{url}{path}"));
        async move { request.send().await.ok().map(|r| r.status().as_u16()) }
    };

    eventually("a failed attempt to reach kafka", WAIT, || async {
        (metric(&http, &url, "ingest_kafka_topic_setup_failures_total").await >= 1).then_some(())
    })
    .await;
    assert!(!serving.is_finished(), "ingest keeps running without kafka");
    assert_eq!(status("/healthz").await, Some(200));
    assert_eq!(status("/readyz").await, Some(503));
    assert_eq!(metric(&http, &url, "ingest_kafka_ready").await, 0);
    // A report or an erasure that arrives anyway, with no spool to hold it,
    // is refused in the API's terms: 503 `unavailable`, to be retried.
    for (path, body) in [
        ("/v1/reports", fresh_report(fixtures::HEARTBEAT)),
        (
            "/v1/machines/erase",
            json!({"machine_id": "m-while-kafka-down"}),
        ),
    ] {
        let reply = http
            .post(format!("{url}{path}"))
            .bearer_auth(env.token("grid"))
            .json(&body)
            .send()
            .await
            .expect("answer");
        assert_eq!(reply.status(), 503, "{path}");
        assert!(reply.headers().contains_key("retry-after"), "{path}");
        let answer: Value = reply.json().await.expect("a JSON error");
        assert_eq!(answer["error"], "unavailable", "{path}: {answer}");
    }

    // Kafka "comes up" on that port.
    let broker = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is still free");
    let proxy = tokio::spawn(forward_to_kafka(broker));
    eventually("ready once kafka answers", WAIT, || async {
        (status("/readyz").await == Some(200)).then_some(())
    })
    .await;
    let reply = http
        .post(format!("{url}/v1/reports"))
        .bearer_auth(env.token("grid"))
        .json(&fresh_report(fixtures::HEARTBEAT))
        .send()
        .await
        .expect("answer");
    assert_eq!(reply.status(), 202);
    assert_eq!(env.reports_in_kafka().await, 1);

    let _ = stop.send(());
    serving.await.expect("task").expect("ingest stops");
    proxy.abort();
    env.cleanup().await;
}
