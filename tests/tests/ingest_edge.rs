//! The ingest edge against the real Kafka broker: authentication, consent,
//! validation, privacy, limits, rate limits, idempotency, outcomes, batches,
//! policy, the OpenAPI contract and graceful shutdown. (The spool, which
//! stops the broker, has a test binary of its own.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use e2e::{TestEnv, eventually, fixtures, fresh_report, header, read_messages, start_ingest};
use ingest::privacy::{MachineHasher, MachineIdHash};
use rdkafka::Message;
use reqwest::StatusCode;
use schemas::{AcceptedReport, OutcomeEvent};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

struct Client {
    http: reqwest::Client,
    url: String,
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Client {
    fn new(url: &str) -> Self {
        Client {
            http: reqwest::Client::new(),
            url: url.to_string(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("ingest answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn post(&self, token: Option<&str>, report: &Value) -> Reply {
        let mut request = self
            .http
            .post(format!("{}/v1/reports", self.url))
            .header("content-type", "application/json")
            .body(report.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    async fn post_raw(&self, token: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut request = self
            .http
            .post(format!("{}/v1/reports", self.url))
            .bearer_auth(token)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    assert_eq!(reply.body["error"], code, "{:?}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{:?}",
        reply.body
    );
}

fn decode(message: &rdkafka::message::OwnedMessage) -> AcceptedReport {
    serde_json::from_slice(message.payload().expect("payload")).expect("an AcceptedReport")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_name_the_organisation_and_refusals_never_reach_kafka() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let client = Client::new(&ingest.url);
    let report = fresh_report(fixtures::CRASH);

    assert_error(&client.post(None, &report).await, 401, "unauthenticated");
    assert_error(
        &client.post(Some("not-a-token"), &report).await,
        401,
        "unknown_token",
    );

    // Consent: the machine's level and the organisation's cap both count.
    let mut request = fresh_report(fixtures::FEATURE_REQUEST);
    request["consent"] = json!("required");
    assert_error(
        &client.post(Some(env.token("grid")), &request).await,
        403,
        "consent",
    );
    let request = fresh_report(fixtures::FEATURE_REQUEST);
    assert_error(
        &client.post(Some(env.token("water")), &request).await,
        403,
        "consent",
    );

    // Validation.
    let mut unknown = fresh_report(fixtures::CRASH);
    unknown["schema"] = json!("crash/2");
    assert_error(
        &client.post(Some(env.token("grid")), &unknown).await,
        422,
        "unknown_schema",
    );
    let mut invalid = fresh_report(fixtures::CRASH);
    invalid["payload"]["frames"][1]["offset"] = json!("somewhere");
    let reply = client.post(Some(env.token("grid")), &invalid).await;
    assert_error(&reply, 400, "invalid");
    assert_eq!(reply.body["field"], "payload.frames[1].offset");
    let mut future = fresh_report(fixtures::CRASH);
    future["sent_at"] = json!("2099-01-01T00:00:00Z");
    assert_error(
        &client.post(Some(env.token("grid")), &future).await,
        400,
        "clock_skew",
    );

    // What is allowed is accepted, under the organisation of the token.
    let before = time::OffsetDateTime::now_utc();
    let water_crash = fresh_report(fixtures::CRASH);
    let reply = client.post(Some(env.token("water")), &water_crash).await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.body["status"], "accepted");
    let grid_request = fresh_report(fixtures::FEATURE_REQUEST);
    assert_eq!(
        client
            .post(Some(env.token("grid")), &grid_request)
            .await
            .status,
        202
    );

    let messages = read_messages(&env.reports_topic, 2, WAIT).await;
    assert_eq!(env.reports_in_kafka().await, 2, "only the accepted reports");
    let mut orgs: Vec<String> = messages.iter().map(|m| decode(m).org_id).collect();
    orgs.sort();
    assert_eq!(orgs, ["grid", "water"]);
    for message in &messages {
        let report = decode(message);
        assert!(report.received_at >= before - time::Duration::seconds(1));
        assert!(report.received_at <= time::OffsetDateTime::now_utc());
        assert_eq!(
            header(message, "schema"),
            Some(report.schema.to_string().as_bytes())
        );
    }

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_that_identifies_a_person_reaches_kafka() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let client = Client::new(&ingest.url);

    let mut request = fresh_report(fixtures::FEATURE_REQUEST);
    request["payload"]["title"] = json!("请联系 zhang.wei@sgcc.com.cn 或 13800138000");
    request["payload"]["body"] =
        json!("Crash dump at C:\\Users\\zhangwei\\AppData\\Local\\Temp\\x.dmp from 192.168.1.20");
    let machine_id = request["machine_id"].as_str().expect("id").to_string();
    assert_eq!(
        client.post(Some(env.token("grid")), &request).await.status,
        202
    );

    let message = &read_messages(&env.reports_topic, 1, WAIT).await[0];
    let raw = String::from_utf8(message.payload().expect("payload").to_vec()).expect("utf-8");
    for secret in [
        machine_id.as_str(),
        "zhang.wei@sgcc.com.cn",
        "13800138000",
        "zhangwei",
        "192.168.1.20",
        "127.0.0.1",
    ] {
        assert!(!raw.contains(secret), "{secret} reached Kafka: {raw}");
    }
    let report = decode(message);
    let hash = MachineHasher::new(MachineIdHash::HmacSha256, e2e::MACHINE_ID_KEY).hash(&machine_id);
    assert_eq!(report.machine_hash, hash);
    assert_eq!(
        message.key(),
        Some(hash.as_bytes()),
        "keyed by the hashed machine id"
    );
    assert_eq!(report.payload["title"], "请联系 <email> 或 <phone>");
    assert!(
        report.payload["body"]
            .as_str()
            .is_some_and(|b| b.contains("C:\\Users\\<user>\\AppData") && b.contains("<ipv4>"))
    );
    assert_eq!(report.scrubbed.get("email"), Some(&1));
    assert_eq!(report.scrubbed.get("phone"), Some(&1));
    assert_eq!(report.scrubbed.get("user_path"), Some(&1));
    assert_eq!(report.scrubbed.get("ipv4"), Some(&1));

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_before_and_after_decompression() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let client = Client::new(&ingest.url);
    let token = env.token("grid");
    let json = [("content-type", "application/json")];

    let report = fresh_report(fixtures::CRASH).to_string();
    let gz = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    assert_eq!(
        client
            .post_raw(token, &gz, gzip(report.as_bytes()))
            .await
            .status,
        202
    );
    let report = fresh_report(fixtures::CRASH).to_string();
    let zst = [
        ("content-type", "application/json"),
        ("content-encoding", "zstd"),
    ];
    let compressed = zstd::encode_all(report.as_bytes(), 3).expect("zstd");
    assert_eq!(client.post_raw(token, &zst, compressed).await.status, 202);

    let mut big = fresh_report(fixtures::FEATURE_REQUEST);
    big["payload"]["body"] = json!("x".repeat(1024 * 1024));
    assert_error(
        &client
            .post_raw(token, &json, big.to_string().into_bytes())
            .await,
        413,
        "too_large",
    );
    // 64 MiB of zeros in about 64 KiB of gzip: refused, never inflated.
    let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    assert_error(&client.post_raw(token, &gz, bomb).await, 413, "too_large");
    let br = [
        ("content-type", "application/json"),
        ("content-encoding", "br"),
    ];
    assert_error(
        &client.post_raw(token, &br, b"{}".to_vec()).await,
        415,
        "unsupported_encoding",
    );
    let html = [("content-type", "text/html")];
    assert_error(
        &client.post_raw(token, &html, b"{}".to_vec()).await,
        415,
        "unsupported_media_type",
    );
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert_error(
        &client.post_raw(token, &json, deep.into_bytes()).await,
        400,
        "too_deep",
    );

    assert_eq!(
        env.reports_in_kafka().await,
        2,
        "only the two compressed reports"
    );
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let env = TestEnv::new();
    let config = env.ingest_config_with(
        "[limits]\nheader_read_timeout_ms = 300\nbody_read_timeout_ms = 300\n\
         shutdown_grace_secs = 2\n",
    );
    let ingest = start_ingest(config).await;
    let addr = ingest.addr;

    // Headers that never finish: the server closes the connection.
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    slow.write_all(b"POST /v1/reports HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let mut buf = [0u8; 512];
    let started = std::time::Instant::now();
    let read = slow.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..read]).to_string();
    assert!(
        read == 0 || answer.starts_with("HTTP/1.1 408"),
        "slow headers got {answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by the header deadline"
    );

    // A body that never finishes: 408 request_timeout.
    let mut slow_body = TcpStream::connect(addr).expect("connect");
    slow_body
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "POST /v1/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"report_id\"",
        env.token("grid")
    );
    slow_body.write_all(request.as_bytes()).expect("write");
    let read = slow_body.read(&mut buf).expect("an answer");
    let answer = String::from_utf8_lossy(&buf[..read]).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "slow body got {answer:?}"
    );
    assert!(answer.contains("request_timeout"), "{answer}");
    drop(slow);
    drop(slow_body);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_place() {
    let env = TestEnv::new();
    let config = env.ingest_config_with("[limits]\nmax_connections = 2\nshutdown_grace_secs = 2\n");
    let ingest = start_ingest(config).await;
    let addr = ingest.addr;
    let mut buf = [0u8; 512];

    // Two connections held open take both places; a third waits for one.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let n = stream.read(&mut buf).expect("answer");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            stream
        })
        .collect();
    let mut waiting = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect (kernel backlog)");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    });
    // The third connection is not served while both places are taken: its
    // request gets no answer until one is given back.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
    assert!(early.is_err(), "served beyond the connection limit");
    drop(held);
    let answer = waiting.await.expect("task");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "served once a place was free"
    );

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_machine_is_limited_and_its_neighbours_are_not() {
    let env = TestEnv::new();
    let config = env.ingest_config_with(
        "[rate_limits]\nmachine_per_second = 0.01\nmachine_burst = 3.0\n\
         organisation_per_second = 1000.0\norganisation_burst = 1000.0\n",
    );
    let ingest = start_ingest(config).await;
    let client = Client::new(&ingest.url);
    let token = env.token("grid");

    let noisy = |_| {
        let mut report = fresh_report(fixtures::HEARTBEAT);
        report["machine_id"] = json!("m-noisy-0000000001");
        report
    };
    for i in 0..3 {
        assert_eq!(client.post(Some(token), &noisy(i)).await.status, 202);
    }
    let reply = client.post(Some(token), &noisy(3)).await;
    assert_error(&reply, 429, "rate_limited");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=100).contains(&retry), "Retry-After {retry}");
    let mut quiet = fresh_report(fixtures::HEARTBEAT);
    quiet["machine_id"] = json!("m-quiet-0000000002");
    assert_eq!(client.post(Some(token), &quiet).await.status, 202);
    assert_eq!(env.reports_in_kafka().await, 4);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_report_is_sent_once() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let client = Client::new(&ingest.url);
    let report = fresh_report(fixtures::CRASH);
    let first = client.post(Some(env.token("grid")), &report).await;
    assert_eq!(
        (first.status.as_u16(), first.body["status"].clone()),
        (202, json!("accepted"))
    );
    let retry = client.post(Some(env.token("grid")), &report).await;
    assert_eq!(
        (retry.status.as_u16(), retry.body["status"].clone()),
        (202, json!("duplicate"))
    );
    assert_eq!(retry.body["report_id"], report["report_id"]);
    assert_eq!(env.reports_in_kafka().await, 1);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

/// The status of each result of a batch's answer.
fn statuses(body: &Value) -> Vec<&str> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_str().expect("status"))
        .collect()
}

/// The same report twice in one batch (a client that queued it twice) is
/// one report: the second is answered `duplicate` and not sent again, as a
/// retry in a later request would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_twice_in_one_batch_is_sent_once() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let client = Client::new(&ingest.url);
    let report = fresh_report(fixtures::CRASH);
    let array = json!([report, fresh_report(fixtures::HEARTBEAT), report]);
    let reply = client
        .send(
            client
                .http
                .post(format!("{}/v1/reports/batch", ingest.url))
                .bearer_auth(env.token("grid"))
                .json(&array),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(statuses(&reply.body), ["accepted", "accepted", "duplicate"]);
    assert_eq!(reply.body["results"][2]["report_id"], report["report_id"]);
    assert_eq!(env.reports_in_kafka().await, 2);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_ends_in_one_outcome_and_refusals_are_published() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let client = Client::new(&ingest.url);

    assert_eq!(
        client
            .post(Some(env.token("grid")), &fresh_report(fixtures::CRASH))
            .await
            .status,
        202
    );
    let mut invalid = fresh_report(fixtures::FEEDBACK);
    invalid["payload"]["rating"] = json!(9);
    assert_error(
        &client.post(Some(env.token("grid")), &invalid).await,
        400,
        "invalid",
    );
    assert_error(
        &client
            .post(Some(env.token("water")), &fresh_report(fixtures::FEEDBACK))
            .await,
        403,
        "consent",
    );
    assert_error(
        &client
            .post(Some("wrong"), &fresh_report(fixtures::CRASH))
            .await,
        401,
        "unknown_token",
    );

    let metrics = client.get("/metrics", None).await;
    let text = metrics.body.as_str().expect("text").to_string();
    for line in [
        "ingest_reports_total{outcome=\"accepted\",reason=\"\",kind=\"crash\"} 1",
        "ingest_reports_total{outcome=\"rejected\",reason=\"invalid\",kind=\"feedback\"} 1",
        "ingest_reports_total{outcome=\"consent\",reason=\"consent\",kind=\"feedback\"} 1",
        "ingest_reports_total{outcome=\"rejected\",reason=\"unknown_token\",kind=\"unknown\"} 1",
        "ingest_requests_total{route=\"reports\",status=\"202\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }

    // A refusal before authentication is summarised per interval; shutdown
    // publishes the last interval's summaries.
    ingest.running.shutdown().await.expect("ingest stops");

    let events: Vec<OutcomeEvent> = read_messages(&env.outcomes_topic, 3, WAIT)
        .await
        .iter()
        .map(|m| serde_json::from_slice(m.payload().expect("payload")).expect("an OutcomeEvent"))
        .collect();
    let mut seen: Vec<(String, String, Option<String>, Option<String>)> = events
        .iter()
        .map(|e| {
            (
                e.outcome.as_str().to_string(),
                e.reason.clone(),
                e.schema.clone(),
                e.org_id.clone(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "consent".into(),
                "consent".into(),
                Some("feedback/1".into()),
                Some("water".into())
            ),
            (
                "rejected".into(),
                "invalid".into(),
                Some("feedback/1".into()),
                Some("grid".into())
            ),
            ("rejected".into(), "unknown_token".into(), None, None),
        ]
    );
    let invalid_event = events
        .iter()
        .find(|e| e.reason == "invalid")
        .expect("event");
    assert_eq!(invalid_event.field.as_deref(), Some("payload.rating"));
    assert!(invalid_event.size > 100, "the report's size");
    for message in read_messages(&env.outcomes_topic, 3, WAIT).await {
        let event: Value =
            serde_json::from_slice(message.payload().expect("payload")).expect("JSON");
        let known = [
            "at", "event_id", "field", "org_id", "outcome", "reason", "schema", "size",
        ];
        assert!(
            event
                .as_object()
                .expect("object")
                .keys()
                .all(|k| known.contains(&k.as_str())),
            "an outcome carries no report content: {event}"
        );
    }

    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_each_report_on_its_own() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let client = Client::new(&ingest.url);
    let token = env.token("grid");
    let batch_url = format!("{}/v1/reports/batch", ingest.url);

    let mut bad = fresh_report(fixtures::CRASH);
    bad["payload"]["exception_code"] = json!("boom");
    let array = json!([
        fresh_report(fixtures::CRASH),
        bad,
        fresh_report(fixtures::HEARTBEAT)
    ]);
    let reply = client
        .send(client.http.post(&batch_url).bearer_auth(token).json(&array))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        (
            reply.body["accepted"].clone(),
            reply.body["rejected"].clone()
        ),
        (json!(2), json!(1))
    );
    let results = reply.body["results"].as_array().expect("results");
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["status"], "rejected");
    assert_eq!(results[1]["error"], "invalid");
    assert_eq!(results[1]["field"], "payload.exception_code");
    assert_eq!(results[1]["report_id"], array[1]["report_id"]);
    assert_eq!(results[2]["status"], "accepted");

    // NDJSON, gzip, with one line that is not JSON at all.
    let ndjson = format!(
        "{}\nnot json\n{}\n",
        fresh_report(fixtures::FEEDBACK),
        fresh_report(fixtures::FEATURE_REQUEST)
    );
    let reply = client
        .send(
            client
                .http
                .post(&batch_url)
                .bearer_auth(token)
                .header("content-type", "application/x-ndjson")
                .header("content-encoding", "gzip")
                .body(gzip(ndjson.as_bytes())),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(statuses(&reply.body), ["accepted", "rejected", "accepted"]);
    assert_eq!(reply.body["results"][1]["error"], "malformed_json");

    let too_many = Value::Array((0..501).map(|_| json!({})).collect());
    let reply = client
        .send(
            client
                .http
                .post(&batch_url)
                .bearer_auth(token)
                .json(&too_many),
        )
        .await;
    assert_error(&reply, 413, "too_many_reports");
    let reply = client
        .send(
            client
                .http
                .post(&batch_url)
                .bearer_auth(token)
                .json(&json!({"not": "an array"})),
        )
        .await;
    assert_error(&reply, 400, "malformed_json");

    assert_eq!(env.reports_in_kafka().await, 4);
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_says_what_the_organisation_allows_and_is_enforced() {
    let env = TestEnv::new();
    let mut config = env.ingest_config();
    config.organisations[0].disabled_types = vec![schemas::ReportKind::Feedback];
    config.organisations[0].min_interval_secs = 300;
    let ingest = start_ingest(config).await;
    let client = Client::new(&ingest.url);

    let policy = client.get("/v1/policy", Some(env.token("grid"))).await;
    assert_eq!(policy.status, 200);
    assert_eq!(policy.body["organisation"], "grid");
    assert_eq!(policy.body["consent_cap"], "optional");
    assert_eq!(policy.body["min_interval_secs"], 300);
    assert_eq!(policy.body["limits"]["max_batch_reports"], 500);
    let enabled = |schema: &str| {
        policy.body["report_types"]
            .as_array()
            .expect("types")
            .iter()
            .find(|t| t["schema"] == schema)
            .map(|t| t["enabled"].clone())
    };
    assert_eq!(enabled("feedback/1"), Some(json!(false)));
    assert_eq!(enabled("feature_request/1"), Some(json!(true)));
    let water = client.get("/v1/policy", Some(env.token("water"))).await;
    assert_eq!(
        water.body["report_types"][1]["enabled"],
        json!(false),
        "{:?}",
        water.body
    );
    assert_error(
        &client.get("/v1/policy", None).await,
        401,
        "unauthenticated",
    );

    assert_error(
        &client
            .post(Some(env.token("grid")), &fresh_report(fixtures::FEEDBACK))
            .await,
        403,
        "report_type_disabled",
    );
    assert_eq!(env.reports_in_kafka().await, 0);
    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let env = TestEnv::new();
    let ingest = start_ingest(env.ingest_config()).await;
    let client = Client::new(&ingest.url);
    let doc = client.get("/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let paths = doc.body["paths"].as_object().expect("paths");
    let mut served = 0;
    for (path, item) in paths {
        for method in item.as_object().expect("item").keys() {
            let request = match method.as_str() {
                "get" => client.http.get(format!("{}{path}", ingest.url)),
                "post" => client.http.post(format!("{}{path}", ingest.url)).body("{}"),
                _ => continue,
            };
            let reply = client.send(request.bearer_auth(env.token("grid"))).await;
            assert!(
                ![404, 405].contains(&reply.status.as_u16()),
                "{method} {path} is documented but not served"
            );
            served += 1;
        }
    }
    assert_eq!(served, ingest::api::ROUTES.len());
    assert_error(&client.get("/v2/nothing", None).await, 404, "not_found");
    let wrong_method = client
        .send(client.http.delete(format!("{}/v1/reports", ingest.url)))
        .await;
    assert_error(&wrong_method, 405, "method_not_allowed");

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_takes_effect_without_a_restart() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ingest.toml");
    std::fs::write(&path, env.ingest_toml("")).expect("write config");
    let config = ingest::Config::load(&path).expect("loads");
    let ingest = start_ingest(config).await;
    let client = Client::new(&ingest.url);
    assert_eq!(
        client
            .post(Some(env.token("water")), &fresh_report(fixtures::CRASH))
            .await
            .status,
        202
    );

    // The operator marks water's token revoked and adds a new one.
    let new_token = format!("water-new-{}", env.suffix);
    let revoked = env.ingest_toml("").replace(
        &format!(
            "sha256 = \"{}\"\n",
            ingest::auth::token_hash(env.token("water"))
        ),
        &format!(
            "sha256 = \"{}\"\nrevoked = true\n[[organisation.token]]\nsha256 = \"{}\"\n",
            ingest::auth::token_hash(env.token("water")),
            ingest::auth::token_hash(&new_token)
        ),
    );
    replace_file(&path, &revoked);
    let accepted_meanwhile = std::sync::atomic::AtomicI64::new(0);
    eventually("revocation in force", WAIT, || async {
        let reply = client
            .post(Some(env.token("water")), &fresh_report(fixtures::CRASH))
            .await;
        if reply.status == 202 {
            accepted_meanwhile.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        (reply.status == 403 && reply.body["error"] == "revoked_token").then_some(())
    })
    .await;
    assert_eq!(
        client
            .post(Some(&new_token), &fresh_report(fixtures::CRASH))
            .await
            .status,
        202
    );
    // A broken file leaves the settings in force.
    replace_file(&path, "this is not toml [");
    eventually("failed reload counted", WAIT, || async {
        let metrics = client.get("/metrics", None).await;
        let text = metrics.body.as_str().unwrap_or_default().to_string();
        text.contains("ingest_config_reloads_total{result=\"failed\"} 1")
            .then_some(())
    })
    .await;
    assert_eq!(
        client
            .post(Some(&new_token), &fresh_report(fixtures::CRASH))
            .await
            .status,
        202
    );
    // The first report, those accepted before the reload took effect, and
    // the two with the new token.
    let expected = 3 + accepted_meanwhile.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(env.reports_in_kafka().await, expected);

    ingest.running.shutdown().await.expect("ingest stops");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_turns_readiness_off_first_and_finishes_requests() {
    let env = TestEnv::new();
    let config =
        env.ingest_config_with("[limits]\ndrain_delay_ms = 1500\nshutdown_grace_secs = 10\n");
    let ingest = start_ingest(config).await;
    let client = Client::new(&ingest.url);

    // A request whose body is still coming when the stop arrives.
    let report = fresh_report(fixtures::CRASH).to_string();
    let mut stream = TcpStream::connect(ingest.addr).expect("connect");
    let head = format!(
        "POST /v1/reports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        env.token("grid"),
        report.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream
        .write_all(&report.as_bytes()[..10])
        .expect("write some");

    let _ = ingest.running.stop.send(());
    eventually("readiness off", WAIT, || async {
        let reply = client.get("/readyz", None).await;
        (reply.status == 503).then_some(())
    })
    .await;
    assert_eq!(
        client.get("/healthz", None).await.status,
        200,
        "still alive"
    );

    stream
        .write_all(&report.as_bytes()[10..])
        .expect("write rest");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).expect("answer");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 202"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    drop(stream);
    ingest
        .running
        .task
        .await
        .expect("no panic")
        .expect("ingest stops cleanly");
    assert_eq!(env.reports_in_kafka().await, 1);
    env.cleanup().await;
}

/// Replaces the file at `path` with `text` at once (a rename), as an
/// operator's editor does: the reload watcher never sees it half written.
fn replace_file(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write the new file");
    std::fs::rename(&next, path).expect("put the new file in place");
}
