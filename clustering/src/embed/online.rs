//! Online clustering by meaning: each request joins the cluster whose
//! members it resembles most on average (cosine of embeddings), if that
//! average reaches the threshold, else it founds a cluster.
//!
//! Average link rather than nearest member or centroid: on the evaluation
//! corpus (`clustering/corpus/`) it was the best of the three at every
//! threshold tried, because one close member of a neighbouring request (a
//! near miss: "preview OFD" and "preview WPS") does not pull a request over.
//!
//! Ids follow the rule of the MinHash clusterer: a cluster is known by
//! [`crate::cluster_id_for`] the text that founded it, and ids never change.
//! The state is the members' embeddings (at most `max_members` per cluster),
//! so the index can be rebuilt from stored embeddings with
//! [`SemanticClusterer::insert_existing`] in arrival order.

use super::Embedding;

/// Settings of [`SemanticClusterer`].
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticConfig {
    /// Least mean cosine to a cluster's members to join it.
    pub threshold: f32,
    /// Members kept per cluster to compare against (the first ones).
    pub max_members: usize,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        // Calibrated on half of the evaluation corpus's groups
        // (clustering/examples/corpus.rs prints the sweep).
        Self {
            threshold: 0.425,
            max_members: 32,
        }
    }
}

#[derive(Debug)]
struct Cluster {
    id: u64,
    members: Vec<Embedding>,
}

/// Where [`SemanticClusterer::assign`] put a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemanticAssignment {
    pub cluster_id: u64,
    pub is_new: bool,
    /// Mean cosine to the chosen cluster's members (when founding: to the
    /// closest cluster, below the threshold; 0 when there was none).
    pub similarity: f32,
}

/// The clusters seen so far and their members' embeddings.
#[derive(Debug)]
pub struct SemanticClusterer {
    config: SemanticConfig,
    clusters: Vec<Cluster>,
}

impl SemanticClusterer {
    pub fn new(config: SemanticConfig) -> Self {
        Self {
            config,
            clusters: Vec::new(),
        }
    }

    pub fn cluster_count(&self) -> usize {
        self.clusters.len()
    }

    /// The closest cluster by mean cosine: (index, similarity). Ties go to
    /// the older cluster.
    fn nearest(&self, embedding: &Embedding) -> Option<(usize, f32)> {
        let mut best: Option<(usize, f32)> = None;
        for (i, c) in self.clusters.iter().enumerate() {
            let sum: f32 = c.members.iter().map(|m| m.cosine(embedding)).sum();
            let sim = sum / c.members.len() as f32;
            if best.is_none_or(|(_, b)| sim > b) {
                best = Some((i, sim));
            }
        }
        best
    }

    /// Assigns a request, given its normalised-text id and its embedding.
    /// `founding_id` is the id the request gets if it founds a cluster
    /// ([`crate::cluster_id_for`] of its text).
    pub fn assign(&mut self, founding_id: u64, embedding: Embedding) -> SemanticAssignment {
        match self.nearest(&embedding) {
            Some((i, sim)) if sim >= self.config.threshold => {
                let c = &mut self.clusters[i];
                if c.members.len() < self.config.max_members {
                    c.members.push(embedding);
                }
                SemanticAssignment {
                    cluster_id: c.id,
                    is_new: false,
                    similarity: sim,
                }
            }
            other => {
                let similarity = other.map_or(0.0, |(_, s)| s);
                // A second founder of an existing id (the same normalised
                // text below the threshold of itself cannot happen; a hash
                // collision can) joins that cluster.
                if let Some(c) = self.clusters.iter_mut().find(|c| c.id == founding_id) {
                    if c.members.len() < self.config.max_members {
                        c.members.push(embedding);
                    }
                    return SemanticAssignment {
                        cluster_id: founding_id,
                        is_new: false,
                        similarity,
                    };
                }
                self.clusters.push(Cluster {
                    id: founding_id,
                    members: vec![embedding],
                });
                SemanticAssignment {
                    cluster_id: founding_id,
                    is_new: true,
                    similarity,
                }
            }
        }
    }

    /// Replays a stored request into its stored cluster (at start).
    pub fn insert_existing(&mut self, cluster_id: u64, embedding: Embedding) {
        match self.clusters.iter_mut().find(|c| c.id == cluster_id) {
            Some(c) if c.members.len() < self.config.max_members => c.members.push(embedding),
            Some(_) => {}
            None => self.clusters.push(Cluster {
                id: cluster_id,
                members: vec![embedding],
            }),
        }
    }
}
