//! The cost of clustering one request, in one thread, as the processor
//! pays it (`Clusterer::assign`: text in, cluster out):
//!
//! - `minhash`: the default method;
//! - `embedding_distinct`: every text new (the encoder runs each time), the
//!   472 requests of `clustering/corpus/`;
//! - `embedding_repeated`: the processor bench's feature requests, eight
//!   titles drawn again and again (after the first eight, each is a lookup).
//!
//! Also the model's load time and weight bytes. Prints one JSON object.
//!
//! usage: cargo run --release -p clustering --example cost [-- rounds]

use std::path::Path;
use std::time::Instant;

use clustering::embed::model_dir;
use clustering::{ClusterConfig, Clusterer, Method};

/// The feature-request titles of the load generator's mix.
const BENCH_TITLES: [&str; 8] = [
    "希望任务栏支持按项目分组窗口",
    "任务栏能否按项目对窗口进行分组",
    "希望支持国密算法SM2证书登录",
    "打印机驱动安装太慢，希望优化",
    "Group taskbar windows by project",
    "Please support SM2 certificates for login",
    "Let administrators schedule updates outside working hours",
    "建议增加离线更新包的校验功能",
];

/// Microseconds per `assign` of each text of `texts` into a fresh clusterer.
fn micros_per_assign(config: &ClusterConfig, texts: &[&str], rounds: usize) -> f64 {
    let mut total = 0.0;
    for _ in 0..rounds {
        let mut c = Clusterer::new(config.clone()).expect("config");
        let started = Instant::now();
        for t in texts {
            std::hint::black_box(c.assign(t));
        }
        total += started.elapsed().as_secs_f64();
    }
    total * 1e6 / (rounds * texts.len()) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(3), |r| r.parse())?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = std::fs::read_to_string(root.join("corpus/requests.txt"))?;
    let texts: Vec<&str> = corpus
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .filter(|(lang, _)| ["en", "zh"].contains(lang))
        })
        .map(|(_, t)| t)
        .collect();
    let repeated: Vec<&str> = (0..10_000)
        .map(|i: usize| BENCH_TITLES[i.wrapping_mul(2_654_435_761) % 8])
        .collect();

    let minhash = ClusterConfig::default();
    let embedding = ClusterConfig {
        method: Method::Embedding,
        model_dir: model_dir(&root.join("../.data")),
        ..ClusterConfig::default()
    };
    let loaded = Clusterer::new(embedding.clone())?;
    let out = serde_json::json!({
        "model_load_ms": loaded.load_time().as_secs_f64() * 1e3,
        "model_weight_bytes": loaded.model_bytes(),
        "requests": texts.len(),
        "minhash_us": micros_per_assign(&minhash, &texts, rounds),
        "embedding_distinct_us": micros_per_assign(&embedding, &texts, rounds),
        "embedding_repeated_us": micros_per_assign(&embedding, &repeated, 1),
    });
    println!("{out}");
    Ok(())
}
