//! `instr --ingest-config PATH --processor-config PATH [--reports N]`: runs
//! the services' real per-report code on the load generator's report mix,
//! so that `valgrind --tool=callgrind` can count the instructions of one
//! report, whatever else the machine runs (`bench/run` does this).
//!
//! ```text
//!  loadgen's templates, fresh ids ─▶ measure_ingest: ingest::bench::PerReport
//!      (depth, parse, checks, consent, keyed hash, rate limits, duplicates,
//!       scrub, encode, produce call: enqueued in rdkafka, not awaited)
//!  ─▶ the encoded messages ─▶ measure_processor: processor::bench::PerRow
//!      (decode, route, group crashes / cluster requests, build rows, batch)
//! ```
//!
//! Callgrind counts only inside `measure_ingest` or `measure_processor`
//! (`--toggle-collect`), each called once on the same `--reports` reports
//! after `--warmup` others went through both (lazily built tables, first
//! allocations). The producer's brokers are replaced by an address where
//! nothing listens: messages are only enqueued, and rdkafka's own threads
//! (which callgrind does not count here) never send them.
//!
//! Out: one JSON line: reports measured, accepted, rows built.

use std::hint::black_box;
use std::path::PathBuf;

use anyhow::{Context, ensure};
use clap::Parser;
use loadgen::reports;

/// The services' allocator, as in their binaries.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Ingest's configuration (as the benchmark runs it).
    #[arg(long)]
    ingest_config: PathBuf,
    /// The processor's configuration (its grouping and clustering settings).
    #[arg(long)]
    processor_config: PathBuf,
    /// Reports measured.
    #[arg(long, default_value_t = 2_000)]
    reports: usize,
    /// Reports sent through both paths first, not measured.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Machines the reports come from (as `loadgen run --machines`).
    #[arg(long, default_value_t = 10_000)]
    machines: u64,
}

/// Ingest's per-report path on each body; the messages it would produce.
#[inline(never)]
fn measure_ingest(ingest: &ingest::bench::PerReport, bodies: &[Vec<u8>]) -> Vec<Vec<u8>> {
    bodies
        .iter()
        .filter_map(|body| ingest.submit(black_box(body)))
        .collect()
}

/// The processor's per-message path on each message; how many became rows.
#[inline(never)]
fn measure_processor(processor: &mut processor::bench::PerRow, messages: &[Vec<u8>]) -> usize {
    messages
        .iter()
        .filter(|message| processor.route(black_box(message)))
        .count()
}

/// `count` bodies drawn from the load generator's templates, as `loadgen
/// run` draws them, each with a fresh report id.
fn bodies(templates: &[Vec<u8>], rng: &mut reports::Rng, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let template = &templates[rng.below(templates.len() as u64) as usize];
            reports::with_fresh_id(template)
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut ingest_config = ingest::Config::load(&args.ingest_config)
        .with_context(|| format!("loading {}", args.ingest_config.display()))?;
    // Nothing listens on the discard port: produce calls only enqueue.
    ingest_config.kafka.brokers = "127.0.0.1:9".into();
    let processor_config = processor::Config::load(&args.processor_config)
        .with_context(|| format!("loading {}", args.processor_config.display()))?;
    let ingest = ingest::bench::PerReport::new(&ingest_config)?;
    let mut processor = processor::bench::PerRow::new(&processor_config)?;

    let templates = reports::templates(args.machines);
    let mut rng = reports::Rng::new(7);
    let warmup = bodies(&templates, &mut rng, args.warmup);
    let measured = bodies(&templates, &mut rng, args.reports);

    let warm_messages: Vec<Vec<u8>> = warmup.iter().filter_map(|b| ingest.submit(b)).collect();
    ensure!(
        warm_messages.len() == warmup.len(),
        "ingest refused warm-up reports"
    );
    for message in &warm_messages {
        ensure!(processor.route(message), "the processor refused a message");
    }

    let messages = measure_ingest(&ingest, &measured);
    ensure!(
        messages.len() == measured.len(),
        "ingest accepted {} of {} reports",
        messages.len(),
        measured.len()
    );
    let rows_before = processor.rows();
    let routed = measure_processor(&mut processor, &messages);
    ensure!(
        routed == messages.len(),
        "the processor routed {routed} of {} messages",
        messages.len()
    );
    let summary = serde_json::json!({
        "reports": measured.len(),
        "accepted": messages.len(),
        "routed": routed,
        "rows": processor.rows() - rows_before,
        "mean_message_bytes": messages.iter().map(Vec::len).sum::<usize>() / messages.len().max(1),
    });
    println!("{summary}");
    // Not waiting for the producer: its messages never leave.
    std::process::exit(0)
}
