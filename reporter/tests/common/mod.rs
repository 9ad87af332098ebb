//! What the binary's tests share: a real local HTTP server standing in for
//! the edge (or for a proxy in front of it) whose answers a test decides,
//! and helpers to run the `reporter` binary against it.

#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use uuid::Uuid;

/// A request the server received; `reports` are the batch's report ids.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub reports: Vec<Uuid>,
}

type Answer = dyn Fn(&Seen) -> Response + Send + Sync;

/// A local HTTP server on `127.0.0.1:0`, on its own thread and runtime,
/// answering every request with `answer`; stopped on drop.
pub struct TestServer {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(answer: impl Fn(&Seen) -> Response + Send + Sync + 'static) -> TestServer {
        let answer: Arc<Answer> = Arc::new(answer);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let answer = answer.clone();
            let log = log.clone();
            async move {
                let seen = Seen {
                    method,
                    path: uri.path().to_string(),
                    reports: report_ids(&headers, &body),
                };
                log.lock().unwrap().push(seen.clone());
                answer(&seen)
            }
        };
        let app = Router::new().fallback(handler);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TestServer {
            url: format!("http://{addr}"),
            seen,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Requests to the batch endpoint so far.
    pub fn batches(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == Method::POST)
            .cloned()
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The report ids of a (gzip'd) JSON array of envelopes; empty for
/// anything else.
fn report_ids(headers: &HeaderMap, body: &Bytes) -> Vec<Uuid> {
    let mut json = Vec::new();
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    if gzip {
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut json)
            .is_err()
        {
            return Vec::new();
        }
    } else {
        json = body.to_vec();
    }
    serde_json::from_slice::<Vec<serde_json::Value>>(&json)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["report_id"].as_str()?.parse().ok())
        .collect()
}

/// A response with `status`, `content_type` and `body`, plus `headers`.
pub fn respond(status: u16, content_type: &str, body: impl Into<String>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(axum::body::Body::from(body.into()))
        .unwrap()
}

pub fn json(status: u16, value: serde_json::Value) -> Response {
    respond(status, "application/json", value.to_string())
}

/// The edge's policy: every type on, no pacing.
pub fn policy() -> Response {
    json(
        200,
        serde_json::json!({"organisation": "grid", "consent_cap": "optional",
            "min_interval_secs": 0, "report_types": []}),
    )
}

/// A reporter folder: `reporter.toml` pointing at `endpoint`, queue beside.
pub fn setup(dir: &Path, endpoint: &str) -> PathBuf {
    let path = dir.join("reporter.toml");
    std::fs::write(
        &path,
        format!(
            "endpoint = \"{endpoint}\"\ntoken = \"t\"\nconsent = \"required\"\n\
             queue_dir = \"queue\"\n"
        ),
    )
    .unwrap();
    path
}

pub fn reporter(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reporter"));
    command.arg("--config").arg(config).args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the binary runs")
}

/// Queues `n` heartbeats; returns their ids in queue order.
pub fn queue_heartbeats(config: &Path, n: usize) -> Vec<Uuid> {
    for _ in 0..n {
        let out = reporter(config, &["send", "heartbeat"], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let ids = queued(config);
    assert_eq!(ids.len(), n);
    ids
}

/// The report ids queued now, oldest first (from `reporter show`).
pub fn queued(config: &Path) -> Vec<Uuid> {
    let out = reporter(config, &["show"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["sent"]["report_id"].as_str().unwrap().parse().unwrap()
        })
        .collect()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
