//! Measures clustering on the evaluation corpus (`clustering/corpus/`):
//! B-cubed precision, recall and F1 of the MinHash clusterer and of the
//! embedding clusterer, and the encoder's cost. Prints JSON for
//! `tests/python/test_clustering_corpus.py`, which asserts on it.
//!
//! usage: cargo run --release -p clustering --example corpus
//!
//! Embeddings are [`Embedder::embed`]'s: the encoder on the text without
//! request boilerplate, moved towards the glossary concepts it names. The
//! glossary (`clustering/src/embed/glossary.txt`) was written from general
//! knowledge of Windows and office software, checked against the
//! calibration half only, and its two weights chosen there.
//! The clusterer is the processor's ([`SemanticClusterer`]), given the
//! concepts read back from each quantised vector ([`Glossary::decode`]),
//! as the processor does.
//!
//! Calibration: the embedding threshold is chosen on half of the groups
//! only (the best mean F1 over five arrival orders), then reported on the
//! other half (held out) and on the whole corpus. The halves are made of
//! pairs of neighbouring groups (groups 0-1, 4-5, … and 2-3, 6-7, …), so a
//! request and its near miss, which the corpus writes next to each other,
//! stay in the same half. Arrival order
//! is shuffled with fixed seeds: online clustering depends on it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use clustering::embed::{
    Embedder, Embedding, Glossary, SemanticClusterer, SemanticConfig, model_dir, strip_boilerplate,
};
use clustering::{ClusterConfig, Clusterer, cluster_id_for, normalize};

const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

struct Item {
    group: usize,
    text: String,
    embedding: Embedding,
}

/// B-cubed precision, recall and F1 of `clusters` against `groups`.
fn bcubed(groups: &[usize], clusters: &[u64]) -> [f64; 3] {
    let mut by_cluster: HashMap<u64, usize> = HashMap::new();
    let mut by_group: HashMap<usize, usize> = HashMap::new();
    let mut both: HashMap<(u64, usize), usize> = HashMap::new();
    for (&g, &c) in groups.iter().zip(clusters) {
        *by_cluster.entry(c).or_default() += 1;
        *by_group.entry(g).or_default() += 1;
        *both.entry((c, g)).or_default() += 1;
    }
    let n = groups.len() as f64;
    let (mut p, mut r) = (0.0, 0.0);
    for (&g, &c) in groups.iter().zip(clusters) {
        let common = both[&(c, g)] as f64;
        p += common / by_cluster[&c] as f64;
        r += common / by_group[&g] as f64;
    }
    let (p, r) = (p / n, r / n);
    [p, r, 2.0 * p * r / (p + r)]
}

/// Fisher–Yates with SplitMix64: the same order on every machine.
fn shuffled(len: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

/// Mean B-cubed over the seeds of one clustering method on `items`.
fn measure(items: &[&Item], mut run: impl FnMut(&[&Item]) -> Vec<u64>) -> [f64; 3] {
    let mut sum = [0.0; 3];
    for seed in SEEDS {
        let order: Vec<&Item> = shuffled(items.len(), seed)
            .into_iter()
            .map(|i| items[i])
            .collect();
        let groups: Vec<usize> = order.iter().map(|i| i.group).collect();
        let m = bcubed(&groups, &run(&order));
        for k in 0..3 {
            sum[k] += m[k] / SEEDS.len() as f64;
        }
    }
    sum
}

fn minhash(items: &[&Item]) -> Vec<u64> {
    let mut c = Clusterer::new(ClusterConfig::default()).expect("default config");
    items.iter().map(|i| c.assign(&i.text).cluster_id).collect()
}

fn semantic(threshold: f32, glossary: &Glossary) -> impl FnMut(&[&Item]) -> Vec<u64> {
    move |items| {
        let mut c = SemanticClusterer::new(SemanticConfig {
            threshold,
            ..SemanticConfig::default()
        });
        items
            .iter()
            .map(|i| {
                let q = i.embedding.quantize();
                let tags = glossary.decode(&q.unit());
                c.assign(cluster_id_for(&normalize(&i.text)), &q, &tags)
                    .cluster_id
            })
            .collect()
    }
}

fn json(m: [f64; 3]) -> serde_json::Value {
    serde_json::json!({"precision": m[0], "recall": m[1], "f1": m[2]})
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let embedder = Embedder::load(&model_dir(&root.join("../.data")))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let text = std::fs::read_to_string(root.join("corpus/requests.txt"))?;
    let mut lines = Vec::new();
    let mut group = None;
    let mut names = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            names.push(name.to_string());
            group = Some(names.len() - 1);
        } else {
            let (lang, t) = line.split_once(' ').ok_or("line without language")?;
            if !["en", "zh"].contains(&lang) {
                return Err(format!("unknown language {lang}").into());
            }
            lines.push((
                group.ok_or("request before a group")?,
                lang.to_string(),
                t.to_string(),
            ));
        }
    }
    let started = Instant::now();
    let items: Vec<Item> = lines
        .iter()
        .map(|(g, _, t)| Item {
            group: *g,
            text: t.clone(),
            embedding: embedder.embed(t),
        })
        .collect();
    let embed_ms = started.elapsed().as_secs_f64() * 1e3 / items.len() as f64;
    // The glossary's share of that: boilerplate taken out, concepts found
    // and added (repeated, for a stable figure).
    let glossary = embedder.glossary();
    let started = Instant::now();
    const REPEAT: usize = 20;
    for _ in 0..REPEAT {
        for item in &items {
            let stripped = strip_boilerplate(&item.text);
            std::hint::black_box(glossary.enrich(&item.text, item.embedding.0.clone()));
            std::hint::black_box(stripped);
        }
    }
    let glossary_us = started.elapsed().as_secs_f64() * 1e6 / (REPEAT * items.len()) as f64;
    // Reading the concepts back from the stored vector (what the index
    // does per request, and per stored request when it is rebuilt).
    let stored: Vec<Vec<f32>> = items
        .iter()
        .map(|i| i.embedding.quantize().unit())
        .collect();
    let started = Instant::now();
    for _ in 0..REPEAT {
        for unit in &stored {
            std::hint::black_box(glossary.decode(unit));
        }
    }
    let decode_us = started.elapsed().as_secs_f64() * 1e6 / (REPEAT * items.len()) as f64;
    let with_concepts = items
        .iter()
        .filter(|i| !glossary.names(&i.text).is_empty())
        .count();

    let all: Vec<&Item> = items.iter().collect();
    let calibration: Vec<&Item> = items.iter().filter(|i| i.group / 2 % 2 == 0).collect();
    let holdout: Vec<&Item> = items.iter().filter(|i| i.group / 2 % 2 == 1).collect();

    let mut sweep = Vec::new();
    let mut best = (0.0f32, [0.0; 3]);
    for step in 0..=16 {
        let threshold = 0.30 + 0.025 * step as f32;
        let m = measure(&calibration, semantic(threshold, glossary));
        sweep.push(serde_json::json!({"threshold": threshold, "f1": m[2]}));
        if m[2] > best.1[2] {
            best = (threshold, m);
        }
    }
    let threshold = best.0;
    let out = serde_json::json!({
        "requests": items.len(),
        "groups": names.len(),
        "chinese": lines.iter().filter(|l| l.1 == "zh").count(),
        "seeds": SEEDS.len(),
        "model_load_ms": load_ms,
        "embed_ms_per_request": embed_ms,
        "weight_bytes": embedder.weight_bytes(),
        "glossary": {
            "concepts": glossary.len(),
            "forms": glossary.form_count(),
            "requests_naming_one": with_concepts,
            "us_per_request": glossary_us,
            "decode_us_per_request": decode_us,
        },
        "threshold": threshold,
        "sweep_on_calibration": sweep,
        "minhash": {
            "calibration": json(measure(&calibration, minhash)),
            "holdout": json(measure(&holdout, minhash)),
            "all": json(measure(&all, minhash)),
        },
        "embedding": {
            "calibration": json(best.1),
            "holdout": json(measure(&holdout, semantic(threshold, glossary))),
            "all": json(measure(&all, semantic(threshold, glossary))),
        },
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
