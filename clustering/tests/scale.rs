//! Throughput and memory with 100,000 synthetic requests (50,000 in an
//! unoptimised build, to keep `cargo test` to a few seconds: about 2 s of
//! assigning there, against 0.6 s for 100,000 with `--release`). Half are
//! unrelated one-off requests (the worst case for memory: every one founds a
//! cluster), half paraphrases of 2,000 recurring requests, in Chinese and
//! English.

use std::time::Instant;

use clustering::{MinHashClusterer, MinHashSignature};

/// Deterministic SplitMix64 generator, so the data is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn english_word(rng: &mut Rng) -> String {
    let len = 4 + rng.below(6);
    (0..len)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect()
}

fn han(rng: &mut Rng) -> char {
    // 3,000 common-range ideographs, none of them stop phrases.
    char::from_u32(0x5000 + rng.below(3000) as u32).unwrap()
}

/// A recurring request: 6 English words or 9 Han characters.
fn topic(rng: &mut Rng, chinese: bool) -> Vec<String> {
    if chinese {
        (0..9).map(|_| han(rng).to_string()).collect()
    } else {
        (0..6).map(|_| english_word(rng)).collect()
    }
}

/// A paraphrase: boilerplate around the recurring request and one extra
/// unit (an English word anywhere, or a Han character at the end). Two
/// paraphrases of one request share 6 of 8 words (Jaccard 0.75) or 8 of 10
/// bigrams (0.8) or more.
fn paraphrase(rng: &mut Rng, topic: &[String], chinese: bool) -> String {
    let mut units = topic.to_vec();
    if chinese {
        units.push(han(rng).to_string());
        let prefix = ["希望", "建议", "能否", ""][rng.below(4)];
        format!("{prefix}{}。", units.concat())
    } else {
        let at = rng.below(units.len() + 1);
        units.insert(at, english_word(rng));
        let prefix = ["Please", "We would like to", "", "Add:"][rng.below(4)];
        format!("{prefix} {}!", units.join(" "))
    }
}

#[test]
fn hundred_thousand_requests() {
    const N: usize = if cfg!(debug_assertions) {
        50_000
    } else {
        100_000
    };
    const TOPICS: usize = 2_000;
    let mut rng = Rng(7);
    let topics: Vec<(Vec<String>, bool)> = (0..TOPICS)
        .map(|i| {
            let chinese = i % 2 == 0;
            (topic(&mut rng, chinese), chinese)
        })
        .collect();
    let texts: Vec<(String, Option<usize>)> = (0..N)
        .map(|i| {
            if i % 2 == 0 {
                let t = rng.below(TOPICS);
                (paraphrase(&mut rng, &topics[t].0, topics[t].1), Some(t))
            } else {
                let (words, chinese) = (topic(&mut rng, i % 4 == 1), i % 4 == 1);
                let text = if chinese {
                    words.concat()
                } else {
                    words.join(" ")
                };
                (text, None)
            }
        })
        .collect();

    let mut c = MinHashClusterer::default();
    let start = Instant::now();
    let assignments: Vec<_> = texts.iter().map(|(t, _)| c.assign(t)).collect();
    let assign_time = start.elapsed();
    let stats = c.stats();
    eprintln!(
        "assign {N}: {assign_time:?} ({:.1} µs/request); {stats:?}; {:.0} heap bytes/request",
        assign_time.as_secs_f64() * 1e6 / N as f64,
        stats.heap_bytes as f64 / N as f64
    );

    // Unrelated requests each found a cluster; paraphrases of one recurring
    // request share one (a split needs a 0.75 pair to be estimated below 0.5).
    let noise_new = assignments
        .iter()
        .zip(&texts)
        .filter(|(a, (_, t))| t.is_none() && a.is_new)
        .count();
    assert!(
        noise_new >= N / 2 - 10,
        "unrelated requests joined clusters: {}",
        N / 2 - noise_new
    );
    let paraphrase_clusters = stats.clusters - noise_new;
    eprintln!("{paraphrase_clusters} clusters for {TOPICS} recurring requests");
    assert!((TOPICS..TOPICS * 11 / 10).contains(&paraphrase_clusters));
    // Memory stays within the documented worst case (about 1.2 KB/request).
    assert!(stats.index_entries <= N * clustering::BANDS);
    assert!(stats.heap_bytes < N * 1_600, "{} bytes", stats.heap_bytes);

    // Rebuilding from persisted (cluster id, signature) pairs.
    let persisted: Vec<(u64, Vec<u8>)> = assignments
        .iter()
        .map(|a| (a.cluster_id, a.signature.to_bytes()))
        .collect();
    let start = Instant::now();
    let mut rebuilt = MinHashClusterer::default();
    for (id, bytes) in &persisted {
        rebuilt.insert_existing(*id, &MinHashSignature::from_bytes(bytes).unwrap());
    }
    eprintln!("rebuild {N}: {:?}", start.elapsed());
    assert_eq!(rebuilt.stats().index_entries, stats.index_entries);

    // Generous bound for an unoptimised build on a loaded 2-core machine; the
    // figure printed above is the one to watch.
    assert!(assign_time.as_secs() < 60, "{assign_time:?}");
}
