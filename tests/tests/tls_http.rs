//! HTTPS between the reporter and ingest, with certificates made here: a
//! private CA trusted through `ca_file`, an untrusted one, mutual TLS, and
//! a certificate renewed while ingest runs. Ingest is the real service
//! (in-process) writing to the real Kafka.
//!
//! The last test runs the Windows build, `reporter.exe`, under Wine, where
//! Windows' own verifier checks the edge; like `reporter_windows.rs` it is
//! ignored by a plain `cargo test` and run by `scripts/windows`.

// The Wine harness of `reporter_windows.rs`; this file uses a part of it.
#[allow(dead_code)]
mod wine;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{Ingest, Running, TestEnv, eventually};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use reporter::{Backoff, Config, FlushOptions, FlushReport, OsSettings, Reporter, build};
use schemas::SchemaId;

/// A test CA that issues server and client certificates.
struct Ca {
    name: String,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, both PEM, and the certificate's DER.
struct Issued {
    pem: String,
    key: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            name: name.to_string(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for ingest on the loopback address, with `serial`.
    fn server(&self, serial: u64) -> Issued {
        self.issue(
            vec!["127.0.0.1".into(), "localhost".into()],
            serial,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A machine's client certificate.
    fn client(&self, machine: &str) -> Issued {
        self.issue(vec![machine.into()], 1, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: Vec<String>, serial: u64, usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("issued by {}", self.name));
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            pem: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM");
    path
}

/// Ingest's `[tls]` table for files in `dir`.
fn tls_table(dir: &Path, client_ca: Option<&Path>) -> String {
    let mut table = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        dir.join("server.pem"),
        dir.join("server.key")
    );
    if let Some(ca) = client_ca {
        table.push_str(&format!("client_ca_file = {ca:?}\n"));
    }
    table
}

fn install_server_cert(dir: &Path, issued: &Issued) {
    write(dir, "server.pem", &issued.pem);
    write(dir, "server.key", &issued.key);
}

/// An HTTPS client that trusts `ca` only, opens a new connection for
/// every request and keeps what the handshake showed.
fn probe_client(ca: &Ca, identity: Option<&Issued>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA"))
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .timeout(Duration::from_secs(10));
    if let Some(issued) = identity {
        let pem = format!("{}{}", issued.pem, issued.key);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("client builds")
}

/// Starts ingest with `config` on a loopback port and waits until it
/// answers `/readyz` over HTTPS to `probe`.
async fn start_https_ingest(config: ingest::Config, probe: &reqwest::Client) -> Ingest {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    let (stop, signal) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ingest::serve(config, listener, async move {
        let _ = signal.await;
    }));
    let url = format!("https://{addr}");
    eventually(
        "ingest ready over https",
        Duration::from_secs(60),
        || async {
            let response = probe.get(format!("{url}/readyz")).send().await.ok()?;
            response.status().is_success().then_some(())
        },
    )
    .await;
    Ingest {
        url,
        addr,
        running: Running { stop, task },
    }
}

/// The DER of the certificate ingest shows a new connection.
async fn served_certificate(probe: &reqwest::Client, url: &str) -> Option<Vec<u8>> {
    let response = probe.get(format!("{url}/healthz")).send().await.ok()?;
    let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
    info.peer_certificate().map(<[u8]>::to_vec)
}

/// Queues one report in a new reporter for `url` with `extra`
/// configuration lines, and flushes it.
async fn flush_one(queue: &Path, url: &str, token: &str, extra: &str) -> FlushReport {
    let config = Config::from_toml(&format!(
        "endpoint = {url:?}\ntoken = {token:?}\nconsent = \"optional\"\nqueue_dir = {queue:?}\n\
         {extra}"
    ))
    .expect("reporter configuration is valid");
    let mut reporter = Reporter::open(config).expect("reporter opens");
    reporter
        .send(
            SchemaId::HEARTBEAT_V1,
            build::heartbeat(None, None),
            &OsSettings::default(),
        )
        .expect("queued");
    reporter.flush(&options()).await.expect("flush runs")
}

/// The error of a flush that got nothing in and kept its report queued.
fn refused(report: FlushReport) -> String {
    assert!(report.accepted.is_empty());
    assert_eq!(report.remaining, 1, "nothing is dropped");
    report.last_error.expect("why it stopped").to_string()
}

fn accepted(report: &FlushReport) {
    assert!(report.complete(), "{:?}", report.last_error);
    assert_eq!(report.accepted.len(), 1);
}

fn options() -> FlushOptions {
    FlushOptions {
        max_time: Duration::from_secs(3),
        batch_size: 100,
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporter_sends_over_https_trusting_its_ca_file_and_refuses_an_unknown_ca() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("grid test CA");
    install_server_cert(dir.path(), &ca.server(1));
    let config = env.ingest_config_with(&tls_table(dir.path(), None));
    let ingest = start_https_ingest(config, &probe_client(&ca, None)).await;

    // A CA nobody installed: the handshake fails, the report stays queued,
    // and the error says what to do.
    let stranger = Ca::new("someone else's CA");
    let stranger_file = write(dir.path(), "stranger.pem", &stranger.pem);
    let report = flush_one(
        &dir.path().join("queue-untrusted"),
        &ingest.url,
        env.token("grid"),
        &format!("ca_file = {stranger_file:?}\n"),
    )
    .await;
    let error = refused(report);
    assert!(
        error.contains("UnknownIssuer")
            && error.contains("not trusted")
            && error.contains("ca_file"),
        "{error}"
    );

    // The CA in ca_file: accepted, and in Kafka.
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let report = flush_one(
        &dir.path().join("queue"),
        &ingest.url,
        env.token("grid"),
        &format!("ca_file = {ca_file:?}\n"),
    )
    .await;
    accepted(&report);
    eventually("the report in kafka", Duration::from_secs(30), || async {
        (env.reports_in_kafka().await == 1).then_some(())
    })
    .await;

    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_ingest_takes_only_machines_that_present_a_certificate() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("grid test CA");
    let machines = Ca::new("grid machines CA");
    install_server_cert(dir.path(), &ca.server(1));
    let machines_file = write(dir.path(), "machines.pem", &machines.pem);
    let config = env.ingest_config_with(&tls_table(dir.path(), Some(&machines_file)));
    let machine = machines.client("machine-0001");
    let ingest = start_https_ingest(config, &probe_client(&ca, Some(&machine))).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);

    // No client certificate: refused in the handshake; nothing arrives.
    let report = flush_one(
        &dir.path().join("queue-anonymous"),
        &ingest.url,
        env.token("grid"),
        &format!("ca_file = {ca_file:?}\n"),
    )
    .await;
    let error = refused(report);
    assert!(error.contains("client_cert_file"), "{error}");

    // A certificate of another CA: refused too.
    let impostor = ca.client("machine-0001");
    write(dir.path(), "impostor.pem", &impostor.pem);
    write(dir.path(), "impostor.key", &impostor.key);
    let client_files = |name: &str| {
        format!(
            "ca_file = {ca_file:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}\n",
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key"))
        )
    };
    let report = flush_one(
        &dir.path().join("queue-impostor"),
        &ingest.url,
        env.token("grid"),
        &client_files("impostor"),
    )
    .await;
    refused(report);

    // The machine's own certificate: accepted, and the only report in Kafka.
    write(dir.path(), "machine.pem", &machine.pem);
    write(dir.path(), "machine.key", &machine.key);
    let report = flush_one(
        &dir.path().join("queue"),
        &ingest.url,
        env.token("grid"),
        &client_files("machine"),
    )
    .await;
    accepted(&report);
    eventually(
        "the one report in kafka",
        Duration::from_secs(30),
        || async { (env.reports_in_kafka().await == 1).then_some(()) },
    )
    .await;

    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("grid test CA");
    let first = ca.server(1);
    install_server_cert(dir.path(), &first);
    // reload_interval_ms = 100 in the test configuration.
    let config = env.ingest_config_with(&tls_table(dir.path(), None));
    let probe = probe_client(&ca, None);
    let ingest = start_https_ingest(config, &probe).await;
    assert_eq!(
        served_certificate(&probe, &ingest.url).await,
        Some(first.der.clone())
    );

    // Renewed with a new key and serial, the certificate written before its
    // key (for a moment they do not match: the old pair stays in force).
    let renewed = ca.server(2);
    install_server_cert(dir.path(), &renewed);
    eventually(
        "the renewed certificate served",
        Duration::from_secs(30),
        || async {
            let der = served_certificate(&probe, &ingest.url).await?;
            (der == renewed.der).then_some(())
        },
    )
    .await;

    // A reporter trusting the CA sends over the renewed certificate.
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let report = flush_one(
        &dir.path().join("queue"),
        &ingest.url,
        env.token("grid"),
        &format!("ca_file = {ca_file:?}\n"),
    )
    .await;
    accepted(&report);

    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs reporter.exe and Wine: scripts/windows"]
async fn reporter_exe_is_checked_by_windows_and_trusts_its_ca_file() {
    let env = TestEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("grid test CA");
    install_server_cert(dir.path(), &ca.server(1));
    let config = env.ingest_config_with(&tls_table(dir.path(), None));
    let ingest = start_https_ingest(config, &probe_client(&ca, None)).await;
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let config = |name: &str, extra: &str| {
        let text = format!(
            "endpoint = {:?}\ntoken = {:?}\nconsent = \"optional\"\nqueue_dir = \"queue-{name}\"\n\
             {extra}",
            ingest.url,
            env.token("grid")
        );
        write(dir.path(), &format!("{name}.toml"), &text)
    };
    let untrusted = config("untrusted", "");
    let trusted = config(
        "trusted",
        &format!("ca_file = {:?}\n", wine::win_path(&ca_file)),
    );

    let refusal = wine::blocking(move || {
        let w = wine::wine();
        // The CA is in no Windows store: Windows refuses the certificate,
        // and the report stays queued.
        w.run(&untrusted, &["send", "heartbeat"], 0);
        let out = w.run(&untrusted, &["flush", "--max-seconds", "3"], 1);
        let refusal = wine::text(&out.stderr);
        assert_eq!(wine::shown(&w, &untrusted).len(), 1, "still queued");
        // With the CA in ca_file: sent.
        w.run(&trusted, &["send", "heartbeat"], 0);
        w.run(&trusted, &["flush"], 0);
        refusal
    })
    .await;
    assert!(refusal.contains("not trusted"), "{refusal}");
    assert_eq!(wine::arrived(&env, 1).await.len(), 1);

    ingest
        .running
        .shutdown()
        .await
        .expect("ingest stops cleanly");
    env.cleanup().await;
}
