//! The services reach their backends over TLS, against the real servers:
//! Kafka's SASL_SSL listener (SCRAM-SHA-512) and ClickHouse's HTTPS port,
//! both presenting a certificate from the test CA that `scripts/services`
//! makes in `$TELEMETRY_DATA_DIR/tls` when it starts them. A CA nobody
//! trusts is made here, with rcgen.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{TestEnv, eventually, fresh_report, start_ingest};
use pipeline::{CaFile, KafkaConfig};
use processor::Store;
use processor::config::ClickHouseConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, ProducerContext};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// The folder `scripts/services` writes the test CA and certificates to.
fn tls_dir() -> PathBuf {
    match std::env::var_os("TELEMETRY_DATA_DIR") {
        Some(data) => PathBuf::from(data).join("tls"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.data/tls"),
    }
}

fn ca_pem() -> PathBuf {
    let path = tls_dir().join("ca.pem");
    assert!(
        path.is_file(),
        "{} is missing: scripts/services start makes it (TELEMETRY_DATA_DIR names its data folder)",
        path.display()
    );
    path
}

/// The broker's SASL_SSL listener: `$KAFKA_SASL_SSL_BROKERS`, else the local
/// broker's (`scripts/services`: the plaintext port + 2).
fn sasl_ssl_brokers() -> String {
    std::env::var("KAFKA_SASL_SSL_BROKERS").unwrap_or_else(|_| "127.0.0.1:9094".into())
}

/// The SCRAM user `scripts/services` makes, with its password.
fn scram_user() -> (String, String) {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    (
        var("KAFKA_SCRAM_USER", "telemetry"),
        var("KAFKA_SCRAM_PASSWORD", "telemetry-scram-test"),
    )
}

/// ClickHouse's HTTPS port: `$CLICKHOUSE_HTTPS_URL`, else the local server's.
fn clickhouse_https_url() -> String {
    std::env::var("CLICKHOUSE_HTTPS_URL").unwrap_or_else(|_| "https://127.0.0.1:8443".into())
}

/// Kafka settings for the SASL_SSL listener, trusting `ca` and logging in
/// with `password`.
fn sasl_ssl_kafka(ca: &std::path::Path, password: &str) -> KafkaConfig {
    let mut config = KafkaConfig::local(sasl_ssl_brokers());
    for (key, value) in [
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", &ca.display().to_string()),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", &scram_user().0),
        ("sasl.password", password),
    ] {
        config.properties.insert(key.into(), value.into());
    }
    config
}

/// A CA of another organisation, which signed nothing the servers present.
fn foreign_ca(dir: &tempfile::TempDir) -> PathBuf {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "another organisation's CA");
    let cert = params.self_signed(&key).expect("self-signed CA");
    let path = dir.path().join("foreign-ca.pem");
    std::fs::write(&path, cert.pem()).expect("write CA");
    path
}

/// Every error librdkafka reports on a client, as "error: reason".
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl std::fmt::Debug for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.lock().unwrap().iter())
            .finish()
    }
}

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Errors {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Connects a producer with `config` and waits until librdkafka reports an
/// error that contains `expected`; returns every error it reported.
async fn refused(config: &KafkaConfig, expected: &str) -> Vec<String> {
    let errors = Errors::default();
    let producer: BaseProducer<Errors> = config
        .client_config(&[])
        .create_with_context(errors.clone())
        .expect("producer");
    eventually(&format!("an error saying {expected:?}"), WAIT, || {
        // Polling serves the error callbacks.
        producer.poll(Duration::from_millis(100));
        let seen = errors.0.lock().unwrap().clone();
        let found = seen.iter().any(|e| e.contains(expected));
        async move { found.then_some(seen) }
    })
    .await
}

#[tokio::test]
async fn ingest_writes_reports_to_kafka_over_sasl_ssl() {
    let env = TestEnv::new();
    let secrets = tempfile::tempdir().expect("temp dir");
    let password_file = secrets.path().join("sasl-password");
    std::fs::write(&password_file, format!("{}\n", scram_user().1)).expect("write secret");
    // The brokers and the security settings as an operator writes them, the
    // password in a file of its own.
    let toml = env.ingest_toml("").replacen(
        &format!("brokers = \"{}\"\n", e2e::kafka_brokers()),
        &format!(
            "brokers = \"{}\"\n\
             [kafka.properties]\n\
             \"security.protocol\" = \"SASL_SSL\"\n\
             \"ssl.ca.location\" = {:?}\n\
             \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\
             \"sasl.username\" = {:?}\n\
             \"sasl.password\" = {{ file = {:?} }}\n",
            sasl_ssl_brokers(),
            ca_pem().display().to_string(),
            scram_user().0,
            password_file.display().to_string(),
        ),
        1,
    );
    let config = ingest::Config::from_toml(&toml).expect("valid configuration");
    assert_eq!(config.kafka.properties["sasl.password"], scram_user().1);
    let shown = format!("{:?}", config.kafka);
    assert!(!shown.contains(&scram_user().1), "{shown}");
    let kafka = config.kafka.clone();

    // Ingest creates its topics and writes through the TLS listener only.
    let ingest = start_ingest(config).await;
    let report = fresh_report(e2e::fixtures::CRASH);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/reports", ingest.url))
        .bearer_auth(env.token("grid"))
        .json(&report)
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());

    // Read back over the same listener.
    let consumer: StreamConsumer = kafka
        .client_config(&[
            ("group.id", &format!("e2e-tls-{}", env.suffix)),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
        ])
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&env.reports_topic])
        .expect("subscribe");
    let message = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .expect("a message within the deadline")
        .expect("read over SASL_SSL");
    let payload: Value =
        serde_json::from_slice(message.payload().expect("payload")).expect("the message is JSON");
    assert_eq!(payload["report_id"], report["report_id"], "{payload}");

    ingest.running.shutdown().await.expect("clean shutdown");
    env.cleanup().await;
}

#[tokio::test]
async fn a_wrong_kafka_password_is_refused_by_name() {
    let config = sasl_ssl_kafka(&ca_pem(), "not-the-password");
    let errors = refused(&config, "Authentication failed").await;
    let error = errors
        .iter()
        .find(|e| e.contains("Authentication failed"))
        .expect("found");
    assert!(error.contains("SCRAM-SHA-512"), "{errors:?}");
    assert!(error.contains("invalid credentials"), "{errors:?}");
}

#[tokio::test]
async fn a_kafka_broker_whose_ca_is_not_trusted_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = sasl_ssl_kafka(&foreign_ca(&dir), &scram_user().1);
    let errors = refused(&config, "certificate verify failed").await;
    assert!(
        !errors.iter().any(|e| e.contains("Authentication")),
        "no password is sent to an untrusted broker: {errors:?}"
    );
}

fn https_clickhouse(env: &TestEnv, ca_file: Option<CaFile>) -> ClickHouseConfig {
    ClickHouseConfig {
        ca_file,
        ..ClickHouseConfig::local(clickhouse_https_url(), &env.database)
    }
}

#[tokio::test]
async fn the_processor_store_and_ingest_exports_use_clickhouse_over_https() {
    let env = TestEnv::new();
    let ca = CaFile::read(ca_pem()).expect("the test CA");
    let store = Store::connect(&https_clickhouse(&env, Some(ca)))
        .await
        .expect("connected over https");
    warehouse::migrate::apply_all(&store)
        .await
        .expect("migrated over https");
    let tables = "SELECT count() FROM system.tables WHERE database = currentDatabase()";
    assert!(
        e2e::scalar(&store, tables).await > 0,
        "migrations made tables"
    );

    // Ingest's export account, configured as an operator writes it.
    let config = env.ingest_config_with(&format!(
        "[warehouse]\nurl = {:?}\ndatabase = {:?}\nca_file = {:?}\n",
        clickhouse_https_url(),
        env.database,
        ca_pem().display().to_string(),
    ));
    let ingest = start_ingest(config).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/machines/export", ingest.url))
        .bearer_auth(env.token("grid"))
        .json(&json!({"machine_id": "m-tls-export-0001"}))
        .send()
        .await
        .expect("ingest answers");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["organisation"], "grid", "{body}");

    ingest.running.shutdown().await.expect("clean shutdown");
    env.cleanup().await;
}

#[tokio::test]
async fn clickhouse_over_https_without_its_ca_is_refused() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let foreign = CaFile::read(foreign_ca(&dir)).expect("a CA file");
    for ca_file in [None, Some(foreign)] {
        let error = Store::connect(&https_clickhouse(&env, ca_file.clone()))
            .await
            .expect_err("the server's CA is not trusted");
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(e) = source {
            chain.push_str(&format!(": {e}"));
            source = e.source();
        }
        assert!(chain.contains("UnknownIssuer"), "{ca_file:?}: {chain}");
    }
}

#[test]
fn a_ca_file_without_certificates_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let error = CaFile::read(&empty).expect_err("no certificate");
    assert!(error.contains("holds no PEM certificate"), "{error}");
    let missing = dir.path().join("missing.pem");
    let error = CaFile::read(&missing).expect_err("no file");
    assert!(error.contains("missing.pem"), "{error}");
    // In a configuration file, the error names the key's line.
    let toml = format!(
        "url = \"https://127.0.0.1:8443\"\nca_file = {:?}\n",
        missing.display().to_string()
    );
    let error = pipeline::config::from_toml::<ClickHouseConfig>(&toml)
        .expect_err("unreadable CA file")
        .to_string();
    assert!(
        error.contains("line 2") && error.contains("ca_file"),
        "{error}"
    );
}
