//! How fast the default rules scrub: the generated corpus's texts, and its
//! reports as ingest scrubs them (`scrub_typed`), in MB/s.
//!
//! ```sh
//! cargo run -p scrub --release --example throughput [-- ROUNDS]
//! ```

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use scrub::Scrubber;
use scrub::corpus::Corpus;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let corpus = Corpus::standard();
    let start = Instant::now();
    let scrubber = Scrubber::with_default_rules();
    println!(
        "compiling the default rules: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let sets: [(&str, Vec<String>); 3] = [
        (
            "personal data",
            corpus.pii.iter().map(|p| p.text.clone()).collect(),
        ),
        (
            "clean",
            corpus.clean.iter().map(|p| p.text.clone()).collect(),
        ),
        (
            "both",
            corpus
                .pii
                .iter()
                .map(|p| p.text.clone())
                .chain(corpus.clean.iter().map(|p| p.text.clone()))
                .collect(),
        ),
    ];
    for (name, texts) in &sets {
        let bytes: usize = texts.iter().map(String::len).sum();
        let start = Instant::now();
        for _ in 0..rounds {
            for text in texts {
                let mut counts = BTreeMap::new();
                black_box(scrubber.scrub_text(black_box(text), &mut counts));
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "texts, {name:13}: {:>6} texts, {:>8} bytes, {:>7.1} MB/s, {:>6.2} µs per text",
            texts.len(),
            bytes,
            (bytes * rounds) as f64 / secs / 1e6,
            secs * 1e6 / (texts.len() * rounds) as f64
        );
    }

    // The shipped fixtures: a crash with seven frames, a feature request, a
    // feedback, a heartbeat; what most reports look like (nothing to take).
    let fixtures: Vec<_> = schemas::fixtures::ALL
        .iter()
        .map(|text| {
            let envelope: serde_json::Value = serde_json::from_str(text).expect("fixture");
            let schema = envelope["schema"]
                .as_str()
                .expect("schema")
                .parse()
                .expect("known");
            schemas::Payload::decode(schema, &envelope["payload"]).expect("payload")
        })
        .collect();
    let start = Instant::now();
    let n = rounds * 2_000;
    for _ in 0..n {
        for payload in &fixtures {
            let mut payload = payload.clone();
            let mut counts = BTreeMap::new();
            black_box(scrubber.scrub_typed(&mut payload, &mut counts));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fixtures (scrub_typed): {:.2} µs per report, {:.2} µs for the 7-frame crash alone",
        secs * 1e6 / (n * fixtures.len()) as f64,
        {
            let start = Instant::now();
            for _ in 0..n {
                let mut payload = fixtures[0].clone();
                black_box(scrubber.scrub_typed(&mut payload, &mut BTreeMap::new()));
            }
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        }
    );

    // Whole payloads, the way ingest scrubs a report: every free-text field.
    let payloads: Vec<_> = corpus
        .pii
        .iter()
        .map(|p| p.payload())
        .chain(corpus.clean.iter().map(|p| p.payload()))
        .collect();
    let bytes: usize = payloads
        .iter()
        .map(|p| serde_json::to_vec(p).map_or(0, |v| v.len()))
        .sum();
    let start = Instant::now();
    for _ in 0..rounds {
        for payload in &payloads {
            let mut payload = payload.clone();
            let mut counts = BTreeMap::new();
            black_box(scrubber.scrub_typed(&mut payload, &mut counts));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "reports (scrub_typed): {:>6} reports, {:>8} JSON bytes, {:>7.1} MB/s, {:>6.2} µs per report (clone included)",
        payloads.len(),
        bytes,
        (bytes * rounds) as f64 / secs / 1e6,
        secs * 1e6 / (payloads.len() * rounds) as f64
    );
}
