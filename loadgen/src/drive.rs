//! The open-loop driver: requests are due at a fixed rate whatever the
//! server does, and each latency is measured from when the request was due,
//! not from when a worker got to it, so a slow server cannot hide its delay.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Mutex, mpsc};

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
    /// Sampled (report id, when it was accepted), for freshness.
    sampled: Vec<(String, Instant)>,
}

/// One report in this many is followed until it is visible.
const FRESHNESS_SAMPLE: u64 = 50;

/// Bodies prepared before the run, so the generator costs little while it
/// runs: a pool of report templates and a fresh id per report.
fn templates(plan: &Plan) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(42);
    (0..1024)
        .map(|i| reports::report(i % plan.machines.max(1), &mut rng))
        .collect()
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

pub async fn run(plan: Plan) -> anyhow::Result<Summary> {
    let templates = Arc::new(templates(&plan));
    let mean_report_bytes =
        templates.iter().map(Vec::len).sum::<usize>() as f64 / templates.len() as f64;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.connections)
        .build()?;
    let path = if plan.batch <= 1 {
        "/v1/reports"
    } else {
        "/v1/reports/batch"
    };
    let url = format!("{}{path}", plan.url.trim_end_matches('/'));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        120_000_000,
        3,
    )?));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (due_tx, due_rx) = mpsc::unbounded_channel::<Instant>();
    let due_rx = Arc::new(Mutex::new(due_rx));

    let mut workers = Vec::new();
    for w in 0..plan.connections {
        let (client, url, plan, templates) = (
            client.clone(),
            url.clone(),
            plan.clone(),
            Arc::clone(&templates),
        );
        let (histogram, tally, due_rx) = (
            Arc::clone(&histogram),
            Arc::clone(&tally),
            Arc::clone(&due_rx),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + w as u64);
            loop {
                let Some(due) = due_rx.lock().await.recv().await else {
                    return;
                };
                let body = body(&plan, &templates, &mut rng);
                let sample_id = (plan.freshness.is_some()
                    && plan.batch <= 1
                    && rng.below(FRESHNESS_SAMPLE) == 0)
                    .then(|| report_id_of(&body))
                    .flatten();
                let mut request = client
                    .post(&url)
                    .bearer_auth(&plan.token)
                    .header("content-type", "application/json")
                    .body(body);
                if plan.gzip {
                    request = request.header("content-encoding", "gzip");
                }
                let result = request.send().await;
                let micros = due.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                let _ = histogram.lock().await.record(micros.max(1));
                let mut t = tally.lock().await;
                match result {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        *t.statuses.entry(status).or_default() += 1;
                        if status == 202
                            && let Some(id) = sample_id
                        {
                            t.sampled.push((id, Instant::now()));
                        }
                        let accepted = if plan.batch <= 1 {
                            u64::from(status == 202)
                        } else {
                            drop(t);
                            let n = accepted_in_batch(response).await;
                            t = tally.lock().await;
                            n
                        };
                        t.accepted_reports += accepted;
                    }
                    Err(_) => t.failed += 1,
                }
            }
        }));
    }

    // The schedule: every millisecond, what is due by then.
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while start.elapsed() < plan.duration {
        tick.tick().await;
        let due_total = (start.elapsed().as_secs_f64() * plan.rate as f64) as u64;
        while sent < due_total {
            let due = start + Duration::from_secs_f64(sent as f64 / plan.rate as f64);
            let _ = due_tx.send(due);
            sent += 1;
        }
    }
    drop(due_tx);
    for worker in workers {
        let _ = worker.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let histogram = histogram.lock().await;
    let tally = tally.lock().await;
    let freshness = match &plan.freshness {
        Some((url, database)) => follow(&client, url, database, &tally.sampled).await?,
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
        requests: sent,
        reports: sent * plan.batch.max(1) as u64,
        accepted_reports: tally.accepted_reports,
        failed_requests: tally.failed,
        statuses: tally.statuses.iter().map(|(s, n)| (*s, *n)).collect(),
        seconds,
        requests_per_second: sent as f64 / seconds,
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

/// Polls ClickHouse every 20 ms until each sampled report is visible in a
/// raw table; returns the delays in milliseconds, sorted. Reports still
/// missing after 60 s count as 60 s.
async fn follow(
    client: &reqwest::Client,
    url: &str,
    database: &str,
    sampled: &[(String, Instant)],
) -> anyhow::Result<Vec<f64>> {
    let mut pending: std::collections::HashMap<&str, Instant> =
        sampled.iter().map(|(id, at)| (id.as_str(), *at)).collect();
    let mut delays = Vec::with_capacity(pending.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() && Instant::now() < deadline {
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    delays.extend(pending.values().map(|_| 60_000.0));
    delays.sort_by(f64::total_cmp);
    Ok(delays)
}

async fn accepted_in_batch(response: reqwest::Response) -> u64 {
    #[derive(serde::Deserialize)]
    struct Batch {
        accepted: u64,
    }
    response
        .json::<Batch>()
        .await
        .map(|b| b.accepted)
        .unwrap_or(0)
}
