//! [`Clusterer`]: the clusterer the processor holds, comparing requests by
//! shared words ([`MinHashClusterer`]) or by meaning (the sentence encoder
//! of [`crate::embed`] and a [`SemanticClusterer`]), as configured.
//!
//! Both give the same kind of [`Assignment`], and both are rebuilt the same
//! way from what the processor stored per request: the cluster id, the
//! MinHash signature (always computed: it costs microseconds, and a switch
//! back to MinHash can then rebuild its index) and, under `embedding`, the
//! 8-bit embedding. A request stored without an embedding (clustered before
//! a switch to `embedding`) keeps its cluster id, which is never reused, but
//! nothing joins that cluster by meaning.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::{
    Assignment, ClusterConfig, ConfigError, IndexStats, Method, MinHashClusterer,
};
use crate::cluster_id_for;
use crate::embed::{DIM, Embedder, Merge, Quantized, SemanticClusterer};
use crate::minhash::MinHashSignature;

/// Assigns feature requests to clusters as they arrive, by the configured
/// [`Method`]. Cluster ids never change.
#[derive(Debug)]
pub struct Clusterer {
    config: ClusterConfig,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    MinHash(MinHashClusterer),
    Embedding(Box<Semantic>),
}

#[derive(Debug)]
struct Semantic {
    embedder: Embedder,
    index: SemanticClusterer,
    requests: u64,
    load_time: Duration,
    recent: RecentEmbeddings,
}

/// The embeddings of the last [`RecentEmbeddings::CAPACITY`] distinct
/// texts, oldest forgotten first. The encoder costs milliseconds per text
/// and a popular request arrives in the same words again and again (a form
/// letter, a title copied between colleagues, a retried report): those
/// cost a lookup. Exact text only, so the result is the model's own.
#[derive(Debug, Default)]
struct RecentEmbeddings {
    map: HashMap<Arc<str>, Quantized>,
    order: VecDeque<Arc<str>>,
    hits: u64,
}

impl RecentEmbeddings {
    const CAPACITY: usize = 4096;

    fn get_or_embed(&mut self, text: &str, embedder: &Embedder) -> Quantized {
        if let Some(q) = self.map.get(text) {
            self.hits += 1;
            return q.clone();
        }
        let q = embedder.embed(text).quantize();
        if self.order.len() == Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        let key: Arc<str> = Arc::from(text);
        self.order.push_back(Arc::clone(&key));
        self.map.insert(key, q.clone());
        q
    }
}

impl Default for Clusterer {
    /// MinHash with the default settings.
    fn default() -> Self {
        Self {
            config: ClusterConfig::default(),
            kind: Kind::MinHash(MinHashClusterer::default()),
        }
    }
}

impl Clusterer {
    /// Checks the settings and, under `embedding`, loads the model from
    /// `model_dir` (about a second, once).
    pub fn new(config: ClusterConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let kind = match config.method {
            Method::MinHash => Kind::MinHash(MinHashClusterer::new(config.clone())?),
            Method::Embedding => {
                let started = Instant::now();
                let embedder =
                    Embedder::load(&config.model_dir).map_err(|e| ConfigError::Model {
                        dir: config.model_dir.clone(),
                        reason: e.to_string(),
                    })?;
                Kind::Embedding(Box::new(Semantic {
                    embedder,
                    index: SemanticClusterer::new(config.semantic()),
                    requests: 0,
                    load_time: started.elapsed(),
                    recent: RecentEmbeddings::default(),
                }))
            }
        };
        Ok(Self { config, kind })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn method(&self) -> Method {
        self.config.method
    }

    /// How long loading the model took (zero under MinHash).
    pub fn load_time(&self) -> Duration {
        match &self.kind {
            Kind::MinHash(_) => Duration::ZERO,
            Kind::Embedding(s) => s.load_time,
        }
    }

    /// Heap bytes of the model's weights (zero under MinHash).
    pub fn model_bytes(&self) -> usize {
        match &self.kind {
            Kind::MinHash(_) => 0,
            Kind::Embedding(s) => s.embedder.weight_bytes(),
        }
    }

    /// Requests whose text was embedded shortly before, so the model did
    /// not run again (zero under MinHash).
    pub fn repeated_texts(&self) -> u64 {
        match &self.kind {
            Kind::MinHash(_) => 0,
            Kind::Embedding(s) => s.recent.hits,
        }
    }

    /// Whether a cluster with this id is known.
    pub fn contains_cluster(&self, cluster_id: u64) -> bool {
        match &self.kind {
            Kind::MinHash(m) => m.contains_cluster(cluster_id),
            Kind::Embedding(s) => s.index.contains(cluster_id),
        }
    }

    /// Assigns one request (the text the caller clusters on) and indexes it
    /// for later requests.
    pub fn assign(&mut self, text: &str) -> Assignment {
        match &mut self.kind {
            Kind::MinHash(m) => m.assign(text),
            Kind::Embedding(s) => {
                s.requests += 1;
                let embedding = s.recent.get_or_embed(text, &s.embedder);
                let founding_id = cluster_id_for(text);
                let tags = s.embedder.glossary().decode(&embedding.unit());
                let a = s.index.assign(founding_id, &embedding, &tags);
                Assignment {
                    cluster_id: a.cluster_id,
                    is_new: a.is_new,
                    similarity: a.similarity,
                    signature: MinHashSignature::from_text(text),
                    embedding: embedding.0,
                }
            }
        }
    }

    /// Re-indexes a request assigned before (at start, or one another
    /// instance assigned): its stored cluster id, signature and embedding
    /// (empty if it had none, or not [`DIM`] values).
    pub fn insert_existing(
        &mut self,
        cluster_id: u64,
        signature: &MinHashSignature,
        embedding: &[i8],
    ) {
        match &mut self.kind {
            Kind::MinHash(m) => m.insert_existing(cluster_id, signature),
            Kind::Embedding(s) => {
                s.requests += 1;
                if embedding.len() == DIM {
                    let embedding = Quantized(embedding.to_vec());
                    let tags = s.embedder.glossary().decode(&embedding.unit());
                    s.index.insert_existing(cluster_id, &embedding, &tags);
                } else {
                    s.index.insert_id(cluster_id);
                }
            }
        }
    }

    /// Merges clusters that have drifted together
    /// ([`SemanticClusterer::merge_pass`] at `merge_threshold`); returns
    /// each id that now leads to another, for the processor to record.
    /// MinHash clusters are never merged.
    pub fn merge_pass(&mut self) -> Vec<Merge> {
        match &mut self.kind {
            Kind::MinHash(_) => Vec::new(),
            Kind::Embedding(s) => s.index.merge_pass(self.config.merge_threshold),
        }
    }

    /// Forgets which clusters changed since the last merge pass (after
    /// the index is rebuilt from the store at start).
    pub fn settle(&mut self) {
        if let Kind::Embedding(s) = &mut self.kind {
            s.index.settle();
        }
    }

    /// Applies a recorded merge (decided by this or another instance).
    pub fn apply_merge(&mut self, cluster_id: u64, merged_into: u64) {
        if let Kind::Embedding(s) = &mut self.kind {
            s.index.apply_merge(cluster_id, merged_into);
        }
    }

    pub fn stats(&self) -> IndexStats {
        match &self.kind {
            Kind::MinHash(m) => m.stats(),
            Kind::Embedding(s) => {
                let stats = s.index.stats();
                IndexStats {
                    requests: s.requests,
                    clusters: stats.clusters,
                    stored_signatures: stats.members,
                    index_entries: stats.clusters,
                    heap_bytes: stats.heap_bytes,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_is_named_with_the_way_to_fetch_it() {
        let config = ClusterConfig {
            method: Method::Embedding,
            model_dir: "/nonexistent/usem3".into(),
            ..ClusterConfig::default()
        };
        let error = Clusterer::new(config).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, ConfigError::Model { .. }), "{text}");
        for needle in [
            "/nonexistent/usem3",
            "scripts/model",
            "method = \"minhash\"",
        ] {
            assert!(text.contains(needle), "{text}");
        }
    }

    #[test]
    fn method_is_read_from_the_config() {
        let c: ClusterConfig = serde_json::from_str(r#"{"method": "embedding"}"#).unwrap();
        assert_eq!(c.method, Method::Embedding);
        assert!(serde_json::from_str::<ClusterConfig>(r#"{"method": "bert"}"#).is_err());
        let bad = ClusterConfig {
            embedding_threshold: 0.0,
            ..ClusterConfig::default()
        };
        assert_eq!(
            Clusterer::new(bad).unwrap_err(),
            ConfigError::EmbeddingThreshold(0.0)
        );
    }
}
