//! Near-duplicate clustering of `feature_request/1` reports.
//!
//! Agencies word the same request differently; the roadmap ranks clusters of
//! requests by how many distinct organisations ask. This crate is the pure
//! logic (no I/O) that puts each request into a cluster as it arrives.
//!
//! # What flows in and out
//!
//! In: the text of one request — the processor passes the payload `title`
//! (the body, when included, dilutes similarity between short titles). Out:
//! an [`Assignment`] with a 64-bit `cluster_id`, whether the request founded
//! the cluster, the similarity that decided it, and the request's
//! [`MinHashSignature`] (and, clustered by meaning, its 8-bit embedding). The
//! processor stores `cluster_id`, the signature (384 bytes via
//! [`MinHashSignature::to_bytes`], or 96 `UInt32`s) and the embedding per
//! request and, at start, replays them into [`Clusterer::insert_existing`] in
//! the order they were written.
//!
//! # Two methods ([`Clusterer`], `[clustering] method`)
//!
//! * `minhash` (the default): shared words, below. No model; a Chinese
//!   request and its English wording never meet.
//! * `embedding`: meaning, across languages. The sentence encoder of
//!   [`embed`] (loaded from `model_dir`, ~1 s, ~100 MB) turns each request
//!   into 512 values, with request boilerplate left out and the concepts of
//!   a bilingual Windows/office glossary it names added as directions
//!   ([`embed::glossary`]: "PDF" and "CSV", "Settings" and "Edge" apart,
//!   "剪贴板" and "clipboard" together), stored in 8 bits
//!   ([`embed::Quantized`], 512 bytes in
//!   `feature_request_signatures.embedding`); the request joins the cluster
//!   whose members it resembles most on average (cosine at least
//!   `embedding_threshold`, 0.45) or founds one
//!   ([`embed::SemanticClusterer`]), unless that cluster's members name a
//!   different concept of a kind the request names (another format, another
//!   application: read back from the stored vectors, so rebuilt indexes
//!   and other instances agree). Ids follow the same rule as below
//!   ([`cluster_id_for`] of the founder's text, never changed), and the
//!   index is rebuilt from the stored bytes, so a restart does not run the
//!   model again and every instance compares the same values. About 3 ms
//!   of CPU per request in new words in a release build, a lookup for a
//!   text seen among the last 4,096 (`bench/RESULTS.md`). Without
//!   the model the clusterer is refused ([`ConfigError::Model`], naming the
//!   folder and `scripts/model`), never silently replaced by MinHash:
//!   instances that clustered differently would disagree on ids.
//!
//! Clusters by meaning can also merge: a periodic pass
//! ([`Clusterer::merge_pass`], run by each processor at every index refresh)
//! joins clusters whose average link reaches `merge_threshold`, the smaller
//! id surviving, e.g. when two instances each founded a cluster for one
//! request before either saw the other's. Stored requests keep their ids;
//! the processor records each merge in `cluster_merges`, which the other
//! instances apply and the analysts' queries map through. MinHash clusters
//! are never merged.
//!
//! Both store the MinHash signature, so a switch in either direction keeps
//! every stored id; after a switch to `embedding`, requests stored without
//! an embedding keep their clusters, which grow only from new requests.
//!
//! # Normalisation ([`normalize`])
//!
//! Unicode NFKC (full-width `ＷＩＦＩ１２３` → `wifi123`), lower-casing (simple,
//! not full case folding), apostrophes dropped, every other non-alphanumeric
//! character (punctuation, symbols, CJK punctuation such as `，。【】`) turned
//! into a space, whitespace collapsed and trimmed.
//!
//! # Shingles ([`shingles`])
//!
//! Runs of Han, Hiragana/Katakana and Hangul characters are split at Chinese
//! stop phrases ([`text::CHINESE_STOP_PHRASES`]: 的 了 和 请 希望 建议 能否
//! 可以 能够 支持 增加 功能 ..., with [`text::CHINESE_PROTECTED`] words such as
//! 按钮 and 申请 kept whole) and give character bigrams. Other text gives
//! words, minus [`text::ENGLISH_STOP_WORDS`] (the a an to of and please i we
//! would like want add support ...), with plurals stripped. Mixed text such as
//! `希望任务栏支持按项目分组窗口 taskbar grouping` gives both kinds.
//!
//! There is no translation: a Chinese request and its English wording share
//! no shingles and land in different clusters. They meet only when they share
//! most tokens (`SM2 证书登录 SM2 certificate login` joins `SM2 certificate
//! login`); one shared acronym (`VPN`) is not enough.
//!
//! # MinHash and LSH
//!
//! [`NUM_HASHES`] = 96 seeded 32-bit hash functions, [`BANDS`] = 32 bands of
//! [`ROWS`] = 3 rows. Two requests with Jaccard similarity `s` become LSH
//! candidates with probability `1 - (1 - s³)³²`:
//!
//! | s | 0.1 | 0.2 | 0.3 | 0.4 | 0.5 | 0.6 | 0.7 |
//! |---|-----|-----|-----|-----|-----|-----|-----|
//! | candidate | 3.2% | 23% | 58% | 88% | 98.6% | 99.9% | >99.99% |
//!
//! A candidate is confirmed when the signatures agree in at least
//! `threshold` (default 0.5) of the 96 positions; that estimate has a
//! standard error of about 0.05 at 0.5. So false negatives come mostly from
//! estimate noise near the threshold (a pair at exactly 0.5 is confirmed about
//! half the time; at 0.6 about 98%), and false positives need a true
//! similarity near the threshold: an unrelated pair at 0.1–0.2 passes 0.5 with
//! negligible probability. Because a request may join through any member of a
//! cluster, a cluster can drift (chaining), bounded by the threshold per step.
//!
//! # Cluster ids and stability
//!
//! * A new cluster's id is [`cluster_id_for`] its first request: FNV-1a 64 of
//!   the normalised UTF-8 text, finished with SplitMix64. Two processor
//!   instances, or a restart that replays the same requests, give the same ids.
//!   All hashes are spelled out here; nothing uses the std `RandomState`.
//! * Ids never change. A request joins the existing cluster with the most
//!   similar confirmed candidate (ties: smallest id), or founds a cluster.
//!   [`ClusterConfig::threshold`] (default 0.5) is the confirmation bar.
//!   Clusters are never merged: if two clusters of the same request arise
//!   (both founded before either could match the other), they stay two.
//!   Merging would rewrite ids already stored and counted; the roadmap view
//!   can merge them for display instead.
//! * Collisions: if a new cluster's id already exists without the request
//!   matching it (a different text with the same 64-bit hash, likelihood about
//!   `n² / 2⁶⁵` — 3·10⁻⁸ at a million clusters), the request joins the
//!   existing cluster rather than re-using or perturbing the id.
//! * Order of arrival decides which text founds a cluster (and so the id), but
//!   a request always joins an existing matching cluster.
//! * Text with no shingles at all (only stop words) is compared by exact
//!   normalised text only: its cluster is [`cluster_id_for`] that text.
//! * Normalisation, stop lists and seeds are part of the contract: changing
//!   them changes ids and signatures of future requests. Golden tests pin them.
//!
//! # Memory and speed
//!
//! Per request at most [`BANDS`] index entries. A band whose key already lists
//! a request of the same cluster gets no new entry, a request needing no entry
//! keeps no signature, and at most `max_indexed_per_cluster` (default 64)
//! requests of one cluster are stored at all; so a popular request costs
//! bounded memory however often it is asked, and a bucket lists each cluster
//! at most once (a lookup scans distinct clusters, not requests). The price:
//! a request is compared with the first stored members of a cluster only,
//! not necessarily its closest member.
//!
//! Each stored request costs 384 bytes of signature + 8 bytes of cluster id +
//! up to 32 × (8-byte list node + 11–21 bytes of band-key table), i.e. about
//! 0.7–1.3 KB; measured 1.2 KB per request at 100,000 requests of which half
//! were unrelated one-offs, so roughly 1.2 GB per million *distinct* requests
//! (near-identical repeats cost nothing). [`Clusterer::stats`] reports the
//! figure from live capacities. If that is too much, the processor can
//! rebuild from a bounded subset of persisted rows (e.g. recent months):
//! stored ids stay valid, only recall against older wordings drops.
//!
//! Measured on this project's 2-core build machine (`tests/scale.rs`):
//! `assign` about 6 µs per request and rebuilding via `insert_existing` about
//! 3 µs per request in a release build (100,000 requests in 0.6 s and 0.3 s),
//! so a million requests take seconds; an unoptimised test build is about 7×
//! slower.

mod cluster;
pub mod embed;
mod method;
mod minhash;
mod table;
pub mod text;

pub use cluster::{
    Assignment, ClusterConfig, ConfigError, IndexStats, Method, MinHashClusterer, cluster_id_for,
};
pub use method::Clusterer;
pub use minhash::{BANDS, MinHashSignature, NUM_HASHES, ROWS, SignatureError, jaccard};
pub use text::{normalize, shingles};
