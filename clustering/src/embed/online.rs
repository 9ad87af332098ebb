//! Online clustering by meaning: each request joins the cluster whose
//! members it resembles most on average (cosine of embeddings), if that
//! average reaches the threshold, else it founds a cluster.
//!
//! Average link rather than nearest member or centroid: on the evaluation
//! corpus (`clustering/corpus/`) it was the best of the three at every
//! threshold tried, because one close member of a neighbouring request (a
//! near miss: "preview OFD" and "preview WPS") does not pull a request over.
//!
//! A close cluster is still refused when it names a different thing of
//! the same kind: each cluster counts, per glossary concept, how many of
//! its members name it (read back from their stored vectors by
//! [`super::Glossary::decode`]), and holds the concepts at least
//! [`HELD_SHARE`] of them name. A request that names concepts of a
//! category (a file format, an application, a UI surface, a device, a
//! feature) does not join a cluster that holds concepts of that category
//! but none of the request's ("export to CSV" against a cluster of "export
//! to PDF"), and two such clusters never merge ([`conflict`]). On the
//! evaluation corpus this raised precision most where near misses crowd:
//! calibration F1 0.875 → 0.889, held-out 0.841 → 0.848, whole corpus
//! 0.772 → 0.790 (`bench/RESULTS.md`).
//!
//! Ids follow the rule of the MinHash clusterer: a cluster is known by
//! [`crate::cluster_id_for`] the text that founded it, and ids never change.
//! Members are compared as [`Quantized`] embeddings, the form that is
//! stored, so the index can be rebuilt from stored embeddings with
//! [`SemanticClusterer::insert_existing`] and decide as before.
//!
//! The mean cosine to a cluster's members is the dot product with the sum
//! of their unit vectors, divided by their number: each cluster keeps that
//! sum (of its first `max_members` members), so a request costs one
//! 512-dimensional dot product per cluster, however large the clusters.
//! The sums are integers, 16 bits per dimension ([`SCALE`] per unit): half
//! the memory and the memory traffic of `f32` (a request reads every
//! cluster's sum), and the same whatever order the members were added in,
//! so instances that replay the same requests in another order hold the
//! same index to the bit.

use std::collections::HashMap;

use super::{DIM, Quantized, Tag};

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
            threshold: 0.45,
            max_members: 32,
        }
    }
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

/// Counts describing the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemanticStats {
    pub clusters: usize,
    /// Members whose embedding counts in their cluster's sum.
    pub members: usize,
    pub heap_bytes: usize,
}

/// The clusters seen so far: per cluster, the sum of its members' unit
/// vectors and their number.
#[derive(Debug)]
pub struct SemanticClusterer {
    config: SemanticConfig,
    /// Cluster ids, in order of founding (ties go to the older).
    ids: Vec<u64>,
    /// Members counted in each cluster's sum; 0 for a cluster known only by
    /// its id (stored without an embedding), which nothing can join by
    /// similarity.
    counts: Vec<u32>,
    /// `DIM` sums per cluster, contiguous, each member's unit vector
    /// counted as `round(x * SCALE)` (saturating; real members' values are
    /// far below the limit).
    sums: Vec<i16>,
    /// Every id known, merged-away ones included, to the cluster it now
    /// belongs to.
    by_id: HashMap<u64, usize>,
    /// Clusters that gained members since the last [`Self::merge_pass`].
    dirty: Vec<usize>,
    /// Per cluster, how many of the members counted in its sum name each
    /// glossary concept ([`super::Glossary::decode`] of their embedding).
    tags: Vec<Vec<(Tag, u32)>>,
}

/// One id that [`SemanticClusterer::merge_pass`] sent to another cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    /// The id merged away (or merged away before, into the cluster that is
    /// merged away now).
    pub cluster_id: u64,
    /// The surviving cluster's id.
    pub merged_into: u64,
    /// The average link of the two clusters when they merged.
    pub similarity: f32,
}

impl SemanticClusterer {
    pub fn new(config: SemanticConfig) -> Self {
        Self {
            config,
            ids: Vec::new(),
            counts: Vec::new(),
            sums: Vec::new(),
            by_id: HashMap::new(),
            dirty: Vec::new(),
            tags: Vec::new(),
        }
    }

    pub fn cluster_count(&self) -> usize {
        self.ids.len()
    }

    pub fn contains(&self, cluster_id: u64) -> bool {
        self.by_id.contains_key(&cluster_id)
    }

    pub fn stats(&self) -> SemanticStats {
        SemanticStats {
            clusters: self.ids.len(),
            members: self.counts.iter().map(|&c| c as usize).sum(),
            heap_bytes: self.sums.capacity() * 2
                + self.ids.capacity() * 8
                + self.counts.capacity() * 4
                + self.by_id.capacity() * 24
                + self.tags.iter().map(|t| t.capacity() * 8).sum::<usize>()
                + self.tags.capacity() * 24,
        }
    }

    /// The closest cluster by mean cosine whose concepts do not conflict
    /// with `tags` ([`conflict`]): (index, similarity). Ties go to the
    /// older cluster.
    fn nearest(&self, unit: &[f32], tags: &[Tag]) -> Option<(usize, f32)> {
        let mut best: Option<(usize, f32)> = None;
        for (i, (sum, &count)) in self.sums.chunks_exact(DIM).zip(&self.counts).enumerate() {
            if count == 0 {
                continue;
            }
            let sim = dot(sum, unit) / (count as f32 * SCALE);
            if best.is_none_or(|(_, b)| sim > b) && !conflict(tags, &self.held(i)) {
                best = Some((i, sim));
            }
        }
        best
    }

    /// The concepts cluster `index` holds: those named by at least
    /// [`HELD_SHARE`] of its counted members.
    fn held(&self, index: usize) -> Vec<Tag> {
        let (num, den) = HELD_SHARE;
        let count = self.counts[index];
        self.tags[index]
            .iter()
            .filter(|&&(_, n)| n * den >= count * num)
            .map(|&(t, _)| t)
            .collect()
    }

    /// Adds a member to cluster `index`'s sum, unless it has its fill.
    fn add_member(&mut self, index: usize, unit: &[f32], tags: &[Tag]) {
        if (self.counts[index] as usize) < self.config.max_members {
            if !self.dirty.contains(&index) {
                self.dirty.push(index);
            }
            self.counts[index] += 1;
            let sum = &mut self.sums[index * DIM..(index + 1) * DIM];
            for (s, v) in sum.iter_mut().zip(unit) {
                *s = s.saturating_add(fixed(*v));
            }
            add_tags(&mut self.tags[index], tags.iter().map(|&t| (t, 1)));
        }
    }

    /// The index of cluster `id`, made (empty) if unknown.
    fn cluster(&mut self, id: u64) -> usize {
        if let Some(&i) = self.by_id.get(&id) {
            return i;
        }
        let i = self.ids.len();
        self.ids.push(id);
        self.counts.push(0);
        self.sums.resize(self.sums.len() + DIM, 0);
        self.tags.push(Vec::new());
        self.by_id.insert(id, i);
        i
    }

    /// Assigns a request, given its normalised-text id, its embedding and
    /// the glossary concepts read back from it
    /// ([`super::Glossary::decode`]). `founding_id` is the id the request
    /// gets if it founds a cluster ([`crate::cluster_id_for`] of its text).
    pub fn assign(
        &mut self,
        founding_id: u64,
        embedding: &Quantized,
        tags: &[Tag],
    ) -> SemanticAssignment {
        let unit = embedding.unit();
        match self.nearest(&unit, tags) {
            Some((i, sim)) if sim >= self.config.threshold => {
                self.add_member(i, &unit, tags);
                SemanticAssignment {
                    cluster_id: self.ids[i],
                    is_new: false,
                    similarity: sim,
                }
            }
            other => {
                let similarity = other.map_or(0.0, |(_, s)| s);
                // A second founder of an existing id (a hash collision, or
                // a cluster known only by its id) joins that cluster.
                let is_new = !self.contains(founding_id);
                let i = self.cluster(founding_id);
                self.add_member(i, &unit, tags);
                SemanticAssignment {
                    cluster_id: self.ids[i],
                    is_new,
                    similarity,
                }
            }
        }
    }

    /// Replays a stored request into its stored cluster (at start, and for
    /// what other instances clustered).
    pub fn insert_existing(&mut self, cluster_id: u64, embedding: &Quantized, tags: &[Tag]) {
        let i = self.cluster(cluster_id);
        self.add_member(i, &embedding.unit(), tags);
    }

    /// Merges clusters that have drifted together: each cluster that gained
    /// members since the last pass is compared with every other by average
    /// link (the mean cosine over all pairs of their members, from the two
    /// sums), and merged with the closest if that reaches `threshold`. The
    /// smaller id survives, so merges never form a cycle, whichever
    /// instance decides them. Returns every id that now leads elsewhere,
    /// each to the surviving id, for the processor to record.
    ///
    /// Cost: clusters changed × clusters dot products of 512.
    pub fn merge_pass(&mut self, threshold: f32) -> Vec<Merge> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        let mut merges = Vec::new();
        for d in dirty {
            if self.counts[d] == 0 {
                continue;
            }
            let sum_d: Vec<f32> = self.sums[d * DIM..(d + 1) * DIM]
                .iter()
                .map(|&v| f32::from(v) / SCALE)
                .collect();
            let held_d = self.held(d);
            let mut best: Option<(usize, f32)> = None;
            for (j, (sum_j, &count_j)) in self.sums.chunks_exact(DIM).zip(&self.counts).enumerate()
            {
                if j == d || count_j == 0 {
                    continue;
                }
                let sim = dot(sum_j, &sum_d) / (self.counts[d] as f32 * count_j as f32 * SCALE);
                if sim >= threshold
                    && best.is_none_or(|(_, b)| sim > b)
                    && !conflict(&held_d, &self.held(j))
                {
                    best = Some((j, sim));
                }
            }
            if let Some((j, similarity)) = best {
                let (keep, gone) = if self.ids[d] < self.ids[j] {
                    (d, j)
                } else {
                    (j, d)
                };
                merges.extend(self.merge_into(gone, keep, similarity));
            }
        }
        merges
    }

    /// Forgets which clusters changed, so the next [`Self::merge_pass`]
    /// looks only at later changes (after the index is rebuilt at start:
    /// what it holds was merged when it was written).
    pub fn settle(&mut self) {
        self.dirty.clear();
    }

    /// Applies a merge decided elsewhere (read back from the store): `from`
    /// and every id leading to it now lead to `into`.
    pub fn apply_merge(&mut self, from: u64, into: u64) {
        let keep = self.cluster(into);
        match self.by_id.get(&from) {
            Some(&gone) if gone != keep => {
                self.merge_into(gone, keep, 0.0);
            }
            Some(_) => {}
            None => {
                self.by_id.insert(from, keep);
            }
        }
    }

    fn merge_into(&mut self, gone: usize, keep: usize, similarity: f32) -> Vec<Merge> {
        for k in 0..DIM {
            self.sums[keep * DIM + k] =
                self.sums[keep * DIM + k].saturating_add(self.sums[gone * DIM + k]);
            self.sums[gone * DIM + k] = 0;
        }
        self.counts[keep] += self.counts[gone];
        self.counts[gone] = 0;
        let moved_tags = std::mem::take(&mut self.tags[gone]);
        add_tags(&mut self.tags[keep], moved_tags);
        if !self.dirty.contains(&keep) {
            self.dirty.push(keep);
        }
        let merged_into = self.ids[keep];
        let mut moved = Vec::new();
        for (&id, index) in &mut self.by_id {
            if *index == gone {
                *index = keep;
                moved.push(Merge {
                    cluster_id: id,
                    merged_into,
                    similarity,
                });
            }
        }
        moved.sort_by_key(|m| m.cluster_id);
        moved
    }

    /// Makes a cluster known by its id alone (a request stored without an
    /// embedding): its id is never reused, and nothing joins it by meaning.
    pub fn insert_id(&mut self, cluster_id: u64) {
        self.cluster(cluster_id);
    }
}

/// Share of a cluster's members that must name a concept for the cluster
/// to hold it (2/3): chosen on the calibration half of the evaluation
/// corpus among 1/3, 1/2 and 2/3 (F1 0.888, 0.888, 0.890).
pub const HELD_SHARE: (u32, u32) = (2, 3);

/// Whether two sets of concepts name different things of one kind: in
/// some category both name concepts, and none in common ("export to PDF"
/// against a cluster of "export to CSV", "dark mode in Settings" against
/// "dark mode in Edge"). Such a request does not join that cluster, and
/// such clusters do not merge, however close their sentences.
fn conflict(a: &[Tag], b: &[Tag]) -> bool {
    a.iter().any(|x| {
        let mut same_category = b.iter().filter(|y| y.category == x.category).peekable();
        same_category.peek().is_some() && same_category.all(|y| !a.contains(y))
    })
}

/// Adds concept counts to a cluster's list (kept sorted by tag).
fn add_tags(list: &mut Vec<(Tag, u32)>, tags: impl IntoIterator<Item = (Tag, u32)>) {
    for (t, n) in tags {
        match list.binary_search_by_key(&t, |&(x, _)| x) {
            Ok(k) => list[k].1 += n,
            Err(k) => list.insert(k, (t, n)),
        }
    }
}

/// Fixed-point units of the sums: a unit vector's value `x` counts as
/// `round(x * SCALE)`. The encoder's unit vectors stay below 0.12 in
/// magnitude on the evaluation corpus, so 32 members sum to about 4,000 at
/// most: merged clusters of hundreds of members still fit `i16`.
pub const SCALE: f32 = 1024.0;

fn fixed(x: f32) -> i16 {
    (x * SCALE)
        .round()
        .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// A fixed-point sum dotted with a float vector.
fn dot(sum: &[i16], v: &[f32]) -> f32 {
    // Eight independent sums, so the compiler can keep them in vector
    // registers (a single running sum is a dependency chain).
    let mut acc = [0.0f32; 8];
    for (cs, cv) in sum.chunks_exact(8).zip(v.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += f32::from(cs[k]) * cv[k];
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(values: &[(usize, i8)]) -> Quantized {
        let mut v = vec![0i8; DIM];
        for &(i, x) in values {
            v[i] = x;
        }
        Quantized(v)
    }

    #[test]
    fn joins_by_mean_cosine_and_replays_the_same() {
        let config = SemanticConfig {
            threshold: 0.5,
            max_members: 2,
        };
        let mut c = SemanticClusterer::new(config.clone());
        let a = c.assign(1, &q(&[(0, 100)]), &[]);
        assert!(a.is_new && a.cluster_id == 1);
        // cos 0.8 to the only member.
        let b = c.assign(2, &q(&[(0, 80), (1, 60)]), &[]);
        assert_eq!((b.cluster_id, b.is_new), (1, false));
        assert!((b.similarity - 0.8).abs() < 1e-3, "{}", b.similarity);
        // Orthogonal to the first, 0.6 to the second: mean 0.3.
        let d = c.assign(3, &q(&[(1, 100)]), &[]);
        assert_eq!((d.cluster_id, d.is_new), (3, true));
        assert!((d.similarity - 0.3).abs() < 1e-3, "{}", d.similarity);

        let mut rebuilt = SemanticClusterer::new(config);
        rebuilt.insert_existing(1, &q(&[(0, 100)]), &[]);
        rebuilt.insert_existing(1, &q(&[(0, 80), (1, 60)]), &[]);
        rebuilt.insert_existing(3, &q(&[(1, 100)]), &[]);
        let probe = q(&[(0, 50), (2, 50)]);
        assert_eq!(c.assign(9, &probe, &[]), rebuilt.assign(9, &probe, &[]));
    }

    #[test]
    fn clusters_that_drift_together_merge_into_the_smaller_id() {
        let mut c = SemanticClusterer::new(SemanticConfig {
            threshold: 0.9,
            max_members: 8,
        });
        // Founded apart (cos 0.8 is below 0.9), then each gains a member
        // that sits between them.
        assert!(c.assign(20, &q(&[(0, 100)]), &[]).is_new);
        assert!(c.assign(10, &q(&[(0, 80), (1, 60)]), &[]).is_new);
        assert!(c.merge_pass(0.95).is_empty(), "0.8 < 0.95");
        assert_eq!(c.assign(30, &q(&[(0, 100)]), &[]).cluster_id, 20);
        let merges = c.merge_pass(0.7);
        assert_eq!(merges.len(), 1, "{merges:?}");
        assert_eq!((merges[0].cluster_id, merges[0].merged_into), (20, 10));
        assert!(merges[0].similarity >= 0.7);
        // Requests that would have joined 20 now get 10, and so does 20's id.
        assert_eq!(c.assign(40, &q(&[(0, 100)]), &[]).cluster_id, 10);
        assert_eq!(c.assign(20, &q(&[(9, 100)]), &[]).cluster_id, 10);
        assert_eq!(c.stats().clusters, 2, "ids stay known");

        // Another instance reads the merge back and decides alike.
        let mut other = SemanticClusterer::new(SemanticConfig {
            threshold: 0.85,
            max_members: 8,
        });
        other.insert_existing(20, &q(&[(0, 100)]), &[]);
        other.insert_existing(10, &q(&[(0, 80), (1, 60)]), &[]);
        other.apply_merge(20, 10);
        assert_eq!(other.assign(50, &q(&[(0, 100)]), &[]).cluster_id, 10);
        // A merge of an id it has never seen is remembered too.
        other.apply_merge(99, 10);
        assert_eq!(other.assign(99, &q(&[(7, 1)]), &[]).cluster_id, 10);
    }

    #[test]
    fn a_request_naming_another_concept_of_a_kind_does_not_join_nor_merge() {
        let pdf = Tag {
            category: 0,
            concept: 1,
        };
        let csv = Tag {
            category: 0,
            concept: 2,
        };
        let export = Tag {
            category: 4,
            concept: 9,
        };
        let mut c = SemanticClusterer::new(SemanticConfig {
            threshold: 0.5,
            max_members: 8,
        });
        assert!(c.assign(1, &q(&[(0, 100)]), &[export, pdf]).is_new);
        // Close (cos 0.8), but CSV where the cluster holds PDF.
        let a = c.assign(2, &q(&[(0, 80), (1, 60)]), &[csv, export]);
        assert_eq!((a.cluster_id, a.is_new), (2, true));
        // Naming no format, or the same one, it joins.
        assert_eq!(
            c.assign(3, &q(&[(0, 100), (1, 10)]), &[export]).cluster_id,
            1
        );
        assert_eq!(c.assign(4, &q(&[(0, 90), (1, 40)]), &[pdf]).cluster_id, 1);
        // Clusters holding different formats never merge.
        assert!(c.merge_pass(0.1).is_empty());
        // Once PDF is named by fewer than 2/3 of the members, the cluster no
        // longer holds it, and CSV may join.
        c.assign(5, &q(&[(0, 100)]), &[]);
        c.assign(6, &q(&[(0, 100)]), &[]);
        assert_eq!(c.assign(7, &q(&[(0, 100)]), &[csv]).cluster_id, 1);
        // The same index rebuilt from the stored members decides alike.
        let mut rebuilt = SemanticClusterer::new(c.config.clone());
        rebuilt.insert_existing(1, &q(&[(0, 100)]), &[export, pdf]);
        rebuilt.insert_existing(2, &q(&[(0, 80), (1, 60)]), &[csv, export]);
        assert_eq!(
            rebuilt
                .assign(8, &q(&[(0, 80), (1, 60)]), &[pdf])
                .cluster_id,
            1
        );
        assert_eq!(
            rebuilt
                .assign(9, &q(&[(0, 80), (1, 60)]), &[csv])
                .cluster_id,
            2
        );
    }

    #[test]
    fn conflicts_are_per_category() {
        let t = |category, concept| Tag { category, concept };
        assert!(conflict(&[t(0, 1)], &[t(0, 2)]));
        assert!(!conflict(&[t(0, 1)], &[t(0, 1), t(0, 2)]));
        assert!(!conflict(&[t(0, 1)], &[t(1, 2)]));
        assert!(!conflict(&[], &[t(0, 2)]));
        assert!(conflict(&[t(0, 1), t(1, 5)], &[t(1, 6)]));
    }

    #[test]
    fn an_id_known_without_embedding_is_not_reused_nor_joined() {
        let mut c = SemanticClusterer::new(SemanticConfig::default());
        c.insert_id(7);
        let a = c.assign(8, &q(&[(0, 1)]), &[]);
        assert_eq!((a.cluster_id, a.is_new), (8, true));
        let b = c.assign(7, &q(&[(5, 1)]), &[]);
        assert_eq!((b.cluster_id, b.is_new), (7, false));
        assert_eq!(c.stats().clusters, 2);
    }
}
