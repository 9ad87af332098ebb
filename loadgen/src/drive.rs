//! The open-loop driver: requests are due at a fixed rate whatever the
//! server does, and each latency is measured from when the request was due,
//! not from when a worker got to it, so a slow server cannot hide its delay.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use schemas::contract::BatchResult;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::reports::{self, Rng};

#[derive(Debug, Clone)]
pub struct Plan {
    /// Base URL of ingest (or of the bare server).
    pub url: String,
    pub token: String,
    /// Requests per second due.
    pub rate: u64,
    pub duration: Duration,
    /// Concurrent workers (connections).
    pub connections: usize,
    /// Reports per request; 1 posts to /v1/reports, more to the batch route.
    pub batch: usize,
    pub gzip: bool,
    /// Distinct machines the reports come from.
    pub machines: u64,
    /// Measure freshness: poll this ClickHouse (HTTP URL, database) for a
    /// sample of accepted single reports until they are visible.
    pub freshness: Option<(String, String)>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub reports: u64,
    pub accepted_reports: u64,
    pub failed_requests: u64,
    pub statuses: Vec<(u16, u64)>,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub accepted_reports_per_second: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_p999: f64,
    pub latency_ms_max: f64,
    pub mean_report_bytes: f64,
    /// Time from 202 to the row being visible in ClickHouse, for a sample.
    pub freshness_samples: u64,
    pub freshness_ms_p50: f64,
    pub freshness_ms_p99: f64,
}

#[derive(Debug, Default)]
struct Tally {
    statuses: std::collections::BTreeMap<u16, u64>,
    failed: u64,
    accepted_reports: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.failed += other.failed;
        self.accepted_reports += other.accepted_reports;
    }
}

/// One report in this many is followed until it is visible.
const FRESHNESS_SAMPLE: u64 = 50;

/// Bodies prepared before the run, so the generator costs little while it
/// runs: a pool of report templates and a fresh id per report.
fn templates(plan: &Plan) -> Vec<Vec<u8>> {
    reports::templates(plan.machines)
}

fn body(plan: &Plan, templates: &[Vec<u8>], rng: &mut Rng) -> Bytes {
    let mut out = Vec::new();
    if plan.batch <= 1 {
        out = reports::with_fresh_id(&templates[rng.below(templates.len() as u64) as usize]);
    } else {
        out.push(b'[');
        for i in 0..plan.batch {
            if i > 0 {
                out.push(b',');
            }
            out.extend(reports::with_fresh_id(
                &templates[rng.below(templates.len() as u64) as usize],
            ));
        }
        out.push(b']');
    }
    if plan.gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = encoder.write_all(&out);
        out = encoder.finish().unwrap_or_default();
    }
    Bytes::from(out)
}

/// What every worker shares: the plan, the schedule, the request line.
#[derive(Debug)]
struct Shared {
    plan: Plan,
    templates: Vec<Vec<u8>>,
    start: Instant,
    /// Requests due over the whole run.
    total: u64,
    /// The next request to send, counted from 0; request `i` is due at
    /// `start + i / rate`.
    next: AtomicU64,
    addr: String,
    host: HeaderValue,
    path: &'static str,
    authorization: HeaderValue,
    /// Where sampled accepted reports go to be followed, while the run goes
    /// on: (report id, when it was accepted).
    samples: Option<mpsc::UnboundedSender<(String, Instant)>>,
}

impl Shared {
    fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.plan.rate.max(1) as f64)
    }
}

type Connection = Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// One connection's worker: takes the next due request, waits until it is
/// due, sends it, and records its latency from when it was due. Each worker
/// keeps its own histogram and tally (merged at the end) and drives its
/// connection in its own task, so workers share nothing but the counter.
async fn worker(shared: Arc<Shared>, seed: u64) -> (Histogram<u64>, Tally) {
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds");
    let mut tally = Tally::default();
    let mut rng = Rng::new(seed);
    let mut connection: Option<(http1::SendRequest<Full<Bytes>>, Connection)> = None;
    let plan = &shared.plan;
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.total {
            return (histogram, tally);
        }
        let due = shared.due(i);
        tokio::time::sleep_until(due.into()).await;
        let body = body(plan, &shared.templates, &mut rng);
        let sample_id =
            (plan.freshness.is_some() && plan.batch <= 1 && rng.below(FRESHNESS_SAMPLE) == 0)
                .then(|| report_id_of(&body))
                .flatten();
        if connection.is_none() {
            connection = connect(&shared.addr).await;
        }
        let result = match connection.as_mut() {
            Some((sender, conn)) => exchange(&shared, sender, conn, body).await,
            None => None,
        };
        let micros = due.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        let _ = histogram.record(micros.max(1));
        let Some((status, response)) = result else {
            tally.failed += 1;
            connection = None;
            continue;
        };
        *tally.statuses.entry(status).or_default() += 1;
        if status == 202
            && let Some(id) = sample_id
            && let Some(samples) = &shared.samples
        {
            let _ = samples.send((id, Instant::now()));
        }
        tally.accepted_reports += if plan.batch <= 1 {
            u64::from(status == 202)
        } else {
            accepted_in_batch(&response)
        };
    }
}

async fn connect(addr: &str) -> Option<(http1::SendRequest<Full<Bytes>>, Connection)> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    Some((sender, Box::pin(conn)))
}

/// Sends one request and reads the whole response, driving the connection
/// in the same task. `None` when the connection failed.
async fn exchange(
    shared: &Shared,
    sender: &mut http1::SendRequest<Full<Bytes>>,
    conn: &mut Connection,
    body: Bytes,
) -> Option<(u16, Bytes)> {
    let mut request = Request::post(shared.path)
        .header(header::HOST, shared.host.clone())
        .header(header::AUTHORIZATION, shared.authorization.clone())
        .header(header::CONTENT_TYPE, "application/json");
    if shared.plan.gzip {
        request = request.header(header::CONTENT_ENCODING, "gzip");
    }
    let request = request.body(Full::new(body)).ok()?;
    let response = async {
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    };
    tokio::select! {
        biased;
        result = response => result,
        // The connection ended (closed or failed) before the response.
        _ = conn.as_mut() => None,
    }
}

pub async fn run(plan: Plan) -> anyhow::Result<Summary> {
    let templates = templates(&plan);
    let mean_report_bytes =
        templates.iter().map(Vec::len).sum::<usize>() as f64 / templates.len() as f64;
    let uri: Uri = plan.url.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("the URL {} names no host", plan.url))?;
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let path = if plan.batch <= 1 {
        "/v1/reports"
    } else {
        "/v1/reports/batch"
    };
    let total = (plan.duration.as_secs_f64() * plan.rate as f64) as u64;
    let (samples, follower) = match &plan.freshness {
        Some((url, database)) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let follower = tokio::spawn(follow(
                reqwest::Client::new(),
                url.clone(),
                database.clone(),
                rx,
            ));
            (Some(tx), Some(follower))
        }
        None => (None, None),
    };
    let shared = Arc::new(Shared {
        samples,
        host: HeaderValue::from_str(authority.as_str())?,
        authorization: HeaderValue::from_str(&format!("Bearer {}", plan.token))?,
        plan,
        templates,
        start: Instant::now(),
        total,
        next: AtomicU64::new(0),
        addr,
        path,
    });
    let workers: Vec<_> = (0..shared.plan.connections.max(1))
        .map(|w| tokio::spawn(worker(Arc::clone(&shared), 1000 + w as u64)))
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut tally = Tally::default();
    for worker in workers {
        let (h, t) = worker.await?;
        histogram.add(h)?;
        tally.merge(t);
    }
    let seconds = shared.start.elapsed().as_secs_f64();
    // The workers are done: dropping the last sender lets the follower end
    // once every sample it holds is visible (or given up on).
    let Shared { plan, samples, .. } = Arc::into_inner(shared)
        .ok_or_else(|| anyhow::anyhow!("a worker still holds the run's state"))?;
    drop(samples);
    let freshness = match follower {
        Some(follower) => follower.await??,
        None => Vec::new(),
    };
    let fresh_ms = |q: f64| {
        if freshness.is_empty() {
            0.0
        } else {
            let i = ((freshness.len() as f64 - 1.0) * q).round() as usize;
            freshness[i]
        }
    };
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(Summary {
        requests: total,
        reports: total * plan.batch.max(1) as u64,
        accepted_reports: tally.accepted_reports,
        failed_requests: tally.failed,
        statuses: tally.statuses.iter().map(|(s, n)| (*s, *n)).collect(),
        seconds,
        requests_per_second: total as f64 / seconds,
        accepted_reports_per_second: tally.accepted_reports as f64 / seconds,
        latency_ms_p50: ms(0.5),
        latency_ms_p90: ms(0.9),
        latency_ms_p99: ms(0.99),
        latency_ms_p999: ms(0.999),
        latency_ms_max: histogram.max() as f64 / 1000.0,
        mean_report_bytes,
        freshness_samples: freshness.len() as u64,
        freshness_ms_p50: fresh_ms(0.5),
        freshness_ms_p99: fresh_ms(0.99),
    })
}

fn report_id_of(body: &[u8]) -> Option<String> {
    let at = body.windows(13).position(|w| w == b"\"report_id\":\"")? + 13;
    std::str::from_utf8(body.get(at..at + 36)?)
        .ok()
        .map(str::to_string)
}

/// Follows sampled reports while the run goes on: polls ClickHouse every
/// 20 ms for the ids accepted so far and not yet seen in a raw table.
/// Returns the delays in milliseconds, sorted, once the run is over (the
/// channel closed) and every sample was seen; a report still missing 60 s
/// after the run counts as 60 s.
async fn follow(
    client: reqwest::Client,
    url: String,
    database: String,
    mut samples: mpsc::UnboundedReceiver<(String, Instant)>,
) -> anyhow::Result<Vec<f64>> {
    let mut pending: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    let mut delays = Vec::new();
    let mut run_over: Option<Instant> = None;
    loop {
        loop {
            match samples.try_recv() {
                Ok((id, at)) => {
                    pending.insert(id, at);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    run_over.get_or_insert_with(Instant::now);
                    break;
                }
            }
        }
        if let Some(over) = run_over
            && (pending.is_empty() || over.elapsed() > Duration::from_secs(60))
        {
            break;
        }
        if !pending.is_empty() {
            let ids: Vec<String> = pending.keys().map(|id| format!("'{id}'")).collect();
            let list = ids.join(",");
            let sql = format!(
                "SELECT toString(report_id) FROM (\
                 SELECT report_id FROM crash_reports WHERE report_id IN ({list}) UNION ALL \
                 SELECT report_id FROM feature_requests WHERE report_id IN ({list}) UNION ALL \
                 SELECT report_id FROM heartbeats WHERE report_id IN ({list}))"
            );
            let text = client
                .post(format!("{url}/?database={database}"))
                .body(sql)
                .send()
                .await?
                .text()
                .await?;
            let now = Instant::now();
            for id in text.lines() {
                if let Some(at) = pending.remove(id.trim()) {
                    delays.push(now.duration_since(at).as_secs_f64() * 1000.0);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    delays.extend(pending.values().map(|_| 60_000.0));
    delays.sort_by(f64::total_cmp);
    Ok(delays)
}

fn accepted_in_batch(response: &[u8]) -> u64 {
    serde_json::from_slice::<BatchResult>(response).map_or(0, |b| b.accepted as u64)
}
