//! The incremental clusterer: an LSH index over the signatures of requests
//! seen so far, and the rule that gives each new request a cluster id.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use std::path::PathBuf;

use serde::Deserialize;

use crate::embed::SemanticConfig;
use crate::minhash::{BANDS, MinHashSignature, NUM_HASHES, similarity_values, stable_hash64};
use crate::table::KeyTable;
use crate::text;

/// Clusterer settings (the `[clustering]` table of the processor's config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How requests are compared: `minhash` (shared words, no model) or
    /// `embedding` (meaning, across languages; needs the model in
    /// `model_dir`). Default `minhash`.
    pub method: Method,
    /// MinHash: minimum estimated Jaccard similarity between a new request
    /// and an indexed one for the new request to join that request's
    /// cluster. Default 0.5; must be in (0, 1].
    pub threshold: f32,
    /// MinHash: at most this many requests of one cluster are stored in the
    /// index (the first ones to need an index entry); later members are
    /// assigned but not indexed. Bounds memory by clusters rather than
    /// requests for popular requests, at the cost of recall for wordings
    /// that resemble only later members. Default 64; at least 1.
    pub max_indexed_per_cluster: u32,
    /// Embedding: the folder `scripts/model` fills (`weights.npz`,
    /// `sp.model`). Default `.data/models/usem3`, relative to the working
    /// directory.
    pub model_dir: PathBuf,
    /// Embedding: least mean cosine to a cluster's members to join it.
    /// Default 0.45 (calibrated on the evaluation corpus); in (0, 1].
    pub embedding_threshold: f32,
    /// Embedding: members per cluster that count in that mean (the first
    /// ones). Default 32; at least 1.
    pub embedding_members: u32,
    /// Embedding: two clusters whose average link (mean cosine over all
    /// pairs of their members) reaches this are merged by the periodic
    /// merge pass. Default 0.45, the joining bar; in (0, 1].
    pub merge_threshold: f32,
}

/// How requests are compared ([`ClusterConfig::method`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    MinHash,
    Embedding,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let semantic = SemanticConfig::default();
        Self {
            method: Method::default(),
            threshold: 0.5,
            max_indexed_per_cluster: 64,
            model_dir: PathBuf::from(".data/models/usem3"),
            embedding_threshold: semantic.threshold,
            embedding_members: semantic.max_members as u32,
            merge_threshold: semantic.threshold,
        }
    }
}

/// Why a [`ClusterConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("threshold must be in (0, 1], got {0}")]
    Threshold(f32),
    #[error("max_indexed_per_cluster must be at least 1")]
    MaxIndexed,
    #[error("embedding_threshold must be in (0, 1], got {0}")]
    EmbeddingThreshold(f32),
    #[error("embedding_members must be at least 1")]
    EmbeddingMembers,
    #[error("merge_threshold must be in (0, 1], got {0}")]
    MergeThreshold(f32),
    #[error(
        "method = \"embedding\" but the model in {dir} cannot be read: {reason}; \
         run scripts/model to fetch it, point model_dir at it, or set method = \"minhash\""
    )]
    Model { dir: PathBuf, reason: String },
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let in_unit = |t: f32| t.is_finite() && t > 0.0 && t <= 1.0;
        if !in_unit(self.threshold) {
            return Err(ConfigError::Threshold(self.threshold));
        }
        if self.max_indexed_per_cluster == 0 {
            return Err(ConfigError::MaxIndexed);
        }
        if !in_unit(self.embedding_threshold) {
            return Err(ConfigError::EmbeddingThreshold(self.embedding_threshold));
        }
        if self.embedding_members == 0 {
            return Err(ConfigError::EmbeddingMembers);
        }
        if !in_unit(self.merge_threshold) {
            return Err(ConfigError::MergeThreshold(self.merge_threshold));
        }
        Ok(())
    }

    /// The embedding clusterer's settings.
    pub fn semantic(&self) -> SemanticConfig {
        SemanticConfig {
            threshold: self.embedding_threshold,
            max_members: self.embedding_members as usize,
        }
    }
}

/// Where [`MinHashClusterer::assign`] put a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The cluster the request belongs to, now and forever.
    pub cluster_id: u64,
    /// Whether this request founded the cluster.
    pub is_new: bool,
    /// When joining: the estimated Jaccard similarity to the matched request.
    /// When founding: the best similarity to any LSH candidate, all of them
    /// below the threshold (0.0 when there was none).
    pub similarity: f32,
    /// The request's signature, to persist next to `cluster_id` so that the
    /// index can be rebuilt with [`MinHashClusterer::insert_existing`].
    pub signature: MinHashSignature,
    /// The request's 8-bit embedding ([`crate::embed::Quantized`], 512
    /// values) when clustered by meaning; empty under MinHash.
    pub embedding: Vec<i8>,
}

/// Counts describing the index, for metrics and the memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Requests passed to `assign` or `insert_existing`.
    pub requests: u64,
    /// Distinct cluster ids known.
    pub clusters: usize,
    /// Requests whose signature is kept (those with at least one index entry).
    pub stored_signatures: usize,
    /// (band key, request) entries; at most [`BANDS`] per request.
    pub index_entries: usize,
    /// Approximate heap bytes held by the index, from container capacities.
    pub heap_bytes: usize,
}

/// Keys are already mixed hashes; a multiply spreads them over the high bits
/// too (which the hash table uses for its control bytes). Lookup only: it
/// decides no result, so its exact values do not matter for stability.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

const NIL: u32 = u32::MAX;

/// One index entry: a stored request, and the next entry under the same key.
#[derive(Clone, Copy)]
struct Node {
    slot: u32,
    next: u32,
}

/// Assigns feature requests to clusters of near-duplicates as they arrive.
///
/// Cluster ids never change: a request joins the best-matching existing
/// cluster or founds a new one, and clusters are never merged. See the crate
/// documentation for the trade-offs.
pub struct MinHashClusterer {
    config: ClusterConfig,
    /// Band key -> first node of its list.
    heads: KeyTable,
    nodes: Vec<Node>,
    /// Signatures of stored requests, `NUM_HASHES` values per slot.
    signatures: Vec<u32>,
    /// Cluster of each stored request.
    slot_cluster: Vec<u64>,
    /// Known cluster ids and how many of their requests are stored.
    clusters: KeyMap<u64, u32>,
    requests: u64,
}

impl std::fmt::Debug for MinHashClusterer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinHashClusterer")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for MinHashClusterer {
    fn default() -> Self {
        Self::with_valid_config(ClusterConfig::default())
    }
}

/// The id a cluster founded by `text` gets: [`stable_hash64`] of the UTF-8 of
/// [`text::normalize`]`(text)`.
pub fn cluster_id_for(text: &str) -> u64 {
    stable_hash64(text::normalize(text).as_bytes())
}

impl MinHashClusterer {
    pub fn new(config: ClusterConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::with_valid_config(config))
    }

    fn with_valid_config(config: ClusterConfig) -> Self {
        Self {
            config,
            heads: KeyTable::default(),
            nodes: Vec::new(),
            signatures: Vec::new(),
            slot_cluster: Vec::new(),
            clusters: KeyMap::default(),
            requests: 0,
        }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Whether a cluster with this id is known.
    pub fn contains_cluster(&self, cluster_id: u64) -> bool {
        self.clusters.contains_key(&cluster_id)
    }

    /// Assigns one request (its title, or whatever text the caller clusters
    /// on) and indexes it for later requests.
    pub fn assign(&mut self, text: &str) -> Assignment {
        self.requests += 1;
        let normalized = text::normalize(text);
        let hashes = crate::minhash::shingle_hashes_of_normalized(&normalized);
        let signature = MinHashSignature::from_shingle_hashes(&hashes);
        let own_id = stable_hash64(normalized.as_bytes());

        if signature.is_empty() {
            // Nothing to compare: group by exact normalised text only.
            let is_new = self.clusters.insert(own_id, 0).is_none();
            let similarity = if is_new { 0.0 } else { 1.0 };
            return Assignment {
                cluster_id: own_id,
                is_new,
                similarity,
                signature,
                embedding: Vec::new(),
            };
        }

        let keys = signature.band_keys();
        let candidates = self.candidates(&keys);
        let (best, best_any) = self.best_match(&signature, &candidates);
        let (cluster_id, is_new, similarity) = match best {
            Some((similarity, cluster_id)) => (cluster_id, false, similarity),
            // The id exists but nothing matched: a 64-bit collision with a
            // different text (or a cluster known only from persisted ids).
            // The request joins the existing cluster; ids stay unique.
            None if self.clusters.contains_key(&own_id) => (own_id, false, best_any),
            None => {
                self.clusters.insert(own_id, 0);
                (own_id, true, best_any)
            }
        };
        self.index(cluster_id, &signature, &keys, &candidates);
        Assignment {
            cluster_id,
            is_new,
            similarity,
            signature,
            embedding: Vec::new(),
        }
    }

    /// Re-indexes a request assigned before (after a restart): its persisted
    /// cluster id and signature. Replaying in the original arrival order
    /// rebuilds exactly the index the earlier process had, so later
    /// assignments are identical too.
    pub fn insert_existing(&mut self, cluster_id: u64, signature: &MinHashSignature) {
        self.requests += 1;
        self.clusters.entry(cluster_id).or_insert(0);
        if !signature.is_empty() {
            let keys = signature.band_keys();
            let candidates = self.candidates(&keys);
            self.index(cluster_id, signature, &keys, &candidates);
        }
    }

    /// Every (band, stored request) listed under the signature's band keys.
    fn candidates(&self, keys: &[u32; BANDS]) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        for (band, key) in keys.iter().enumerate() {
            let mut node = self.heads.get(*key).unwrap_or(NIL);
            while node != NIL {
                let n = self.nodes[node as usize];
                out.push((band, n.slot));
                node = n.next;
            }
        }
        out
    }

    /// The best confirmed candidate as (similarity, cluster id), ties to the
    /// smallest cluster id; and the best similarity of any candidate.
    fn best_match(
        &self,
        signature: &MinHashSignature,
        candidates: &[(usize, u32)],
    ) -> (Option<(f32, u64)>, f32) {
        let mut slots: Vec<u32> = candidates.iter().map(|&(_, slot)| slot).collect();
        slots.sort_unstable();
        slots.dedup();

        let mut best: Option<(f32, u64)> = None;
        let mut best_any = 0.0f32;
        for slot in slots {
            let similarity = similarity_values(signature.values(), self.signature_at(slot));
            best_any = best_any.max(similarity);
            if similarity < self.config.threshold {
                continue;
            }
            let cluster = self.slot_cluster[slot as usize];
            let better = match best {
                None => true,
                Some((s, c)) => similarity > s || (similarity == s && cluster < c),
            };
            if better {
                best = Some((similarity, cluster));
            }
        }
        (best, best_any)
    }

    fn signature_at(&self, slot: u32) -> &[u32] {
        let start = slot as usize * NUM_HASHES;
        &self.signatures[start..start + NUM_HASHES]
    }

    /// Adds index entries for a request of `cluster`: one per band, except
    /// bands whose key already lists a request of the same cluster (that
    /// entry already leads there). A request needing no entry is not stored,
    /// nor one whose cluster already has `max_indexed_per_cluster` stored.
    /// `candidates` is [`Self::candidates`] for `keys`.
    fn index(
        &mut self,
        cluster: u64,
        signature: &MinHashSignature,
        keys: &[u32; BANDS],
        candidates: &[(usize, u32)],
    ) {
        let stored = self.clusters.entry(cluster).or_insert(0);
        if *stored >= self.config.max_indexed_per_cluster {
            return;
        }
        let mut needed = [true; BANDS];
        for &(band, slot) in candidates {
            if self.slot_cluster[slot as usize] == cluster {
                needed[band] = false;
            }
        }
        if !needed.contains(&true) {
            return;
        }
        *self.clusters.get_mut(&cluster).expect("inserted above") += 1;
        let slot = u32::try_from(self.slot_cluster.len()).expect("more than 2^32 stored requests");
        self.signatures.extend_from_slice(signature.values());
        self.slot_cluster.push(cluster);
        for (key, _) in keys.iter().zip(needed).filter(|(_, need)| *need) {
            let node = u32::try_from(self.nodes.len()).expect("more than 2^32 index entries");
            let next = self.heads.insert(*key, node).unwrap_or(NIL);
            self.nodes.push(Node { slot, next });
        }
    }

    pub fn stats(&self) -> IndexStats {
        // hashbrown: one control byte per bucket plus the entry, buckets =
        // capacity / 7 * 8 rounded up to a power of two; approximated here.
        let map_entry = |entry: usize, cap: usize| cap * (entry + 1) * 8 / 7;
        let heap_bytes = self.heads.heap_bytes()
            + map_entry(16, self.clusters.capacity())
            + self.nodes.capacity() * size_of::<Node>()
            + self.signatures.capacity() * 4
            + self.slot_cluster.capacity() * 8;
        IndexStats {
            requests: self.requests,
            clusters: self.clusters.len(),
            stored_signatures: self.slot_cluster.len(),
            index_entries: self.nodes.len(),
            heap_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_rejects_unknown_fields() {
        let c: ClusterConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, ClusterConfig::default());
        let c: ClusterConfig = serde_json::from_str(r#"{"threshold": 0.6}"#).unwrap();
        assert_eq!((c.threshold, c.max_indexed_per_cluster), (0.6, 64));
        assert!(serde_json::from_str::<ClusterConfig>(r#"{"treshold": 0.6}"#).is_err());
        for bad in [0.0, -0.1, 1.5, f32::NAN] {
            let config = ClusterConfig {
                threshold: bad,
                ..ClusterConfig::default()
            };
            assert!(
                matches!(
                    MinHashClusterer::new(config),
                    Err(ConfigError::Threshold(_))
                ),
                "{bad}"
            );
        }
        let config = ClusterConfig {
            max_indexed_per_cluster: 0,
            ..ClusterConfig::default()
        };
        assert_eq!(
            MinHashClusterer::new(config).unwrap_err(),
            ConfigError::MaxIndexed
        );
        assert!(
            MinHashClusterer::new(ClusterConfig {
                threshold: 1.0,
                ..ClusterConfig::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn identical_text_joins_and_adds_no_entries() {
        let mut c = MinHashClusterer::default();
        let a = c.assign("Group taskbar windows by project");
        assert!(a.is_new);
        assert_eq!(
            a.cluster_id,
            cluster_id_for("group taskbar windows by project!")
        );
        let entries = c.stats().index_entries;
        assert_eq!(entries, BANDS);
        let b = c.assign("GROUP TASKBAR WINDOWS BY PROJECT.");
        assert_eq!(
            (b.cluster_id, b.is_new, b.similarity),
            (a.cluster_id, false, 1.0)
        );
        // Every band already leads to this cluster: nothing stored.
        assert_eq!(c.stats().index_entries, entries);
        assert_eq!(c.stats().stored_signatures, 1);
        assert_eq!(c.stats().requests, 2);
    }

    #[test]
    fn text_without_shingles_groups_by_exact_text() {
        let mut c = MinHashClusterer::default();
        let a = c.assign("Please!");
        assert!(a.is_new && a.signature.is_empty());
        let b = c.assign("please");
        assert_eq!((b.cluster_id, b.is_new), (a.cluster_id, false));
        let d = c.assign("希望支持");
        assert!(d.is_new);
        assert_ne!(d.cluster_id, a.cluster_id);
        assert_eq!(c.stats().index_entries, 0);
    }

    #[test]
    fn threshold_one_needs_identical_shingles() {
        let mut c = MinHashClusterer::new(ClusterConfig {
            threshold: 1.0,
            ..ClusterConfig::default()
        })
        .unwrap();
        let a = c.assign("taskbar group windows project");
        let b = c.assign("taskbar group open windows project");
        assert!(b.is_new, "similarity {}", b.similarity);
        assert!(b.similarity > 0.5 && b.similarity < 1.0);
        assert_eq!(
            c.assign("Project windows: taskbar group").cluster_id,
            a.cluster_id
        );
    }

    #[test]
    fn stored_requests_per_cluster_are_capped() {
        let config = ClusterConfig {
            max_indexed_per_cluster: 2,
            ..ClusterConfig::default()
        };
        let mut c = MinHashClusterer::new(config).unwrap();
        let texts = [
            "taskbar group windows project",
            "taskbar group open windows project",
            "taskbar group all windows project",
            "taskbar group many windows project",
        ];
        let ids: Vec<u64> = texts.iter().map(|t| c.assign(t).cluster_id).collect();
        assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
        assert_eq!(c.stats().stored_signatures, 2);
        // Uncapped, the extra words need entries of their own.
        let mut uncapped = MinHashClusterer::default();
        for t in texts {
            uncapped.assign(t);
        }
        assert_eq!(uncapped.stats().stored_signatures, 4);
    }

    #[test]
    fn insert_existing_registers_ids_even_for_empty_signatures() {
        let mut c = MinHashClusterer::default();
        let empty = MinHashSignature::from_text("please");
        c.insert_existing(cluster_id_for("please"), &empty);
        assert!(c.contains_cluster(cluster_id_for("please")));
        let a = c.assign("Please.");
        assert_eq!((a.cluster_id, a.is_new), (cluster_id_for("please"), false));
    }
}
