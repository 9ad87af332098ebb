//! How fast the default rules scrub: the generated corpus's texts, and its
//! reports as ingest scrubs them (`scrub_typed`), in MB/s.
//!
//! ```sh
//! cargo run -p scrub --release --example throughput [-- ROUNDS]
//! ```
//!
//! Times are this thread's CPU time (from `/proc/thread-self/stat`, in
//! clock ticks), so other processes on a shared machine do not inflate
//! them; on other systems, and for short runs, wall time.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

/// Seconds of this thread's CPU time, or of wall time where Linux's
/// `/proc/thread-self/stat` is not there.
struct Clock(Option<f64>, Instant);

impl Clock {
    fn cpu() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Fields after the command's closing parenthesis; utime and stime
        // are the 14th and 15th of the whole line.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    fn start() -> Self {
        Clock(Self::cpu(), Instant::now())
    }

    fn seconds(&self) -> f64 {
        match (self.0, Self::cpu()) {
            (Some(start), Some(now)) if now - start >= 0.5 => now - start,
            _ => self.1.elapsed().as_secs_f64(),
        }
    }
}

use scrub::Scrubber;
use scrub::corpus::Corpus;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
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
        let start = Clock::start();
        for _ in 0..rounds {
            for text in texts {
                let mut counts = BTreeMap::new();
                black_box(scrubber.scrub_text(black_box(text), &mut counts));
            }
        }
        let secs = start.seconds();
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
    let start = Clock::start();
    let n = rounds * 2_000;
    for _ in 0..n {
        for payload in &fixtures {
            let mut payload = payload.clone();
            let mut counts = BTreeMap::new();
            black_box(scrubber.scrub_typed(&mut payload, &mut counts));
        }
    }
    let secs = start.seconds();
    println!(
        "fixtures (scrub_typed): {:.2} µs per report, {:.2} µs for the 7-frame crash alone",
        secs * 1e6 / (n * fixtures.len()) as f64,
        {
            let start = Clock::start();
            for _ in 0..n {
                let mut payload = fixtures[0].clone();
                black_box(scrubber.scrub_typed(&mut payload, &mut BTreeMap::new()));
            }
            start.seconds() * 1e6 / n as f64
        }
    );

    // A crash as the load generator sends it (bench/run): 30 frames of
    // system modules, half with a symbol.
    let symbols: [(&str, &str); 10] = [
        ("ntdll.dll", "RtlUserThreadStart"),
        ("kernel32.dll", "BaseThreadInitThunk"),
        ("KERNELBASE.dll", "RaiseException"),
        ("user32.dll", "DispatchMessageWorker"),
        ("shell32.dll", "CDefView::_OnContextMenu"),
        ("explorer.exe", "CTray::_MessageLoop"),
        ("combase.dll", "CStdMarshal::UnmarshalInterface"),
        ("msedge.dll", "content::RenderFrameImpl::Navigate"),
        ("d3d11.dll", "CContext::TID3D11DeviceContext_Draw_"),
        ("wpsoffice.exe", "KDocument::Save"),
    ];
    let mut crash = fixtures[0].clone();
    if let schemas::Payload::Crash(c) = &mut crash {
        c.frames = (0..30)
            .map(|i| {
                let (module, function) = symbols[(i * 7) % symbols.len()];
                schemas::Frame {
                    module: module.to_owned(),
                    function: (i % 2 == 0).then(|| function.to_owned()),
                    offset: format!("0x{:x}", 0x1000 + i * 0x37),
                }
            })
            .collect();
    }
    let start = Clock::start();
    for _ in 0..n {
        let mut payload = crash.clone();
        black_box(scrubber.scrub_typed(&mut payload, &mut BTreeMap::new()));
    }
    println!(
        "a 30-frame crash as loadgen sends (scrub_typed): {:.2} µs per report",
        start.seconds() * 1e6 / n as f64
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
    let start = Clock::start();
    for _ in 0..rounds {
        for payload in &payloads {
            let mut payload = payload.clone();
            let mut counts = BTreeMap::new();
            black_box(scrubber.scrub_typed(&mut payload, &mut counts));
        }
    }
    let secs = start.seconds();
    println!(
        "reports (scrub_typed): {:>6} reports, {:>8} JSON bytes, {:>7.1} MB/s, {:>6.2} µs per report (clone included)",
        payloads.len(),
        bytes,
        (bytes * rounds) as f64 / secs / 1e6,
        secs * 1e6 / (payloads.len() * rounds) as f64
    );
}
