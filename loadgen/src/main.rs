//! `loadgen run|bare|backlog ...`; see `loadgen --help`.

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Open-loop load for ingest, a bare baseline server, and Kafka backlogs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sends reports at a fixed rate and prints a JSON summary.
    Run {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value = "grid-demo-token")]
        token: String,
        /// Requests per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Reports per request (1: single endpoint; more: batch endpoint).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long)]
        gzip: bool,
        #[arg(long, default_value_t = 10_000)]
        machines: u64,
        /// ClickHouse HTTP URL to measure freshness against (single reports).
        #[arg(long)]
        freshness_clickhouse: Option<String>,
        #[arg(long, default_value = "telemetry")]
        freshness_database: String,
    },
    /// Serves the baseline: 202 for every report, nothing else.
    Bare {
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: String,
    },
    /// Writes accepted crash reports straight to a Kafka topic.
    Backlog {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: u64,
    },
}

/// Every report is many small, short-lived allocations (parsed JSON,
/// scrubbed text, encoded rows); mimalloc serves them with less work than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            url,
            token,
            rate,
            seconds,
            connections,
            batch,
            gzip,
            machines,
            freshness_clickhouse,
            freshness_database,
        } => {
            let plan = loadgen::drive::Plan {
                url,
                token,
                rate,
                duration: Duration::from_secs_f64(seconds),
                connections,
                batch,
                gzip,
                machines,
                freshness: freshness_clickhouse.map(|url| (url, freshness_database)),
            };
            let summary = loadgen::drive::run(plan).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Bare { listen } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            eprintln!("bare server on {listen}");
            loadgen::bare::serve(listener).await?;
        }
        Command::Backlog {
            brokers,
            topic,
            count,
        } => {
            let seconds = loadgen::backlog::write(&brokers, &topic, count).await?;
            println!("{{\"messages\": {count}, \"seconds\": {seconds:.3}}}");
        }
    }
    Ok(())
}
