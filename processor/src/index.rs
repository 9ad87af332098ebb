//! The clustering index's memory: every clustered request's MinHash
//! signature, and its 8-bit embedding when clustered by meaning, is stored
//! in `feature_request_signatures`. At start the index is rebuilt from all
//! of them in the order they were written (the model does not run again),
//! so cluster ids stay what they were; while
//! running, each instance adds now and then what the others clustered, so
//! that a paraphrase gets the same cluster whichever instance reads it.
//!
//! Clustered by meaning, each refresh then reads the merges recorded in
//! `cluster_merges` since the last, applies them, and runs the merge pass
//! over the clusters that changed (here or, just read, elsewhere): clusters
//! that drifted together become one, and the merge is recorded for the
//! other instances and for the analysts' queries.

use std::collections::HashSet;

use clickhouse::Row;
use schemas::tables::FEATURE_REQUEST_SIGNATURES;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::route::Enricher;
use crate::store::{Store, StoreError};

#[derive(Debug, Row, Deserialize)]
struct Stored {
    cluster_id: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    report_id: Uuid,
    #[serde(deserialize_with = "bytes")]
    minhash: Vec<u8>,
    embedding: Vec<i8>,
}

/// One row of `cluster_merges`.
#[derive(Debug, Row, Serialize, Deserialize)]
struct MergeRow {
    cluster_id: u64,
    merged_into: u64,
    similarity: f32,
    #[serde(with = "clickhouse::serde::time::datetime")]
    merged_at: OffsetDateTime,
}

const CLUSTER_MERGES: &str = "cluster_merges";

/// Reads a ClickHouse `String` (bytes, not necessarily UTF-8) as bytes.
fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_str<E>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }
    }
    d.deserialize_bytes(Visitor)
}

/// Adds to the index the signatures stored since `since` (all, for `None`)
/// that this instance did not cluster itself; returns how many it added.
pub async fn refresh(
    store: &Store,
    enricher: &mut Enricher,
    since: Option<OffsetDateTime>,
) -> Result<usize, StoreError> {
    let select = format!(
        "SELECT cluster_id, report_id, minhash, embedding FROM {FEATURE_REQUEST_SIGNATURES}"
    );
    let order = "ORDER BY inserted_at, received_at, report_id";
    let query = match since {
        None => store.client().query(&format!("{select} {order}")),
        Some(since) => store
            .client()
            .query(&format!(
                "{select} WHERE inserted_at >= toDateTime(?) {order}"
            ))
            .bind(since.unix_timestamp()),
    };
    let stored: Vec<Stored> = query.fetch_all().await?;
    let merges = recorded_merges(store, since).await?;
    let mut added = 0;
    let mine: HashSet<Uuid> = std::mem::take(&mut enricher.clustered_here);
    for row in stored {
        if mine.contains(&row.report_id) {
            continue;
        }
        match clustering::MinHashSignature::from_bytes(&row.minhash) {
            Ok(signature) => {
                enricher
                    .clusterer
                    .insert_existing(row.cluster_id, &signature, &row.embedding);
                added += 1;
            }
            Err(error) => {
                tracing::warn!(%error, cluster = row.cluster_id, "unreadable stored signature skipped")
            }
        }
    }
    for merge in &merges {
        enricher
            .clusterer
            .apply_merge(merge.cluster_id, merge.merged_into);
    }
    if since.is_none() {
        // Rebuilt at start: what is stored was merged when it was written.
        enricher.clusterer.settle();
    } else {
        record_merges(store, enricher).await?;
    }
    Ok(added)
}

/// The merges recorded since `since` (all, for `None`), oldest first.
async fn recorded_merges(
    store: &Store,
    since: Option<OffsetDateTime>,
) -> Result<Vec<MergeRow>, StoreError> {
    let select = format!(
        "SELECT cluster_id, merged_into, similarity, merged_at FROM {CLUSTER_MERGES} FINAL"
    );
    let query = match since {
        None => store
            .client()
            .query(&format!("{select} ORDER BY merged_at")),
        Some(since) => store
            .client()
            .query(&format!(
                "{select} WHERE merged_at >= toDateTime(?) ORDER BY merged_at"
            ))
            .bind(since.unix_timestamp()),
    };
    Ok(query.fetch_all().await?)
}

/// Runs the merge pass and records what it merged.
async fn record_merges(store: &Store, enricher: &mut Enricher) -> Result<(), StoreError> {
    let merges = enricher.clusterer.merge_pass();
    if merges.is_empty() {
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let rows: Vec<MergeRow> = merges
        .iter()
        .map(|m| MergeRow {
            cluster_id: m.cluster_id,
            merged_into: m.merged_into,
            similarity: m.similarity,
            merged_at: now,
        })
        .collect();
    for m in &merges {
        tracing::info!(
            cluster = m.cluster_id,
            into = m.merged_into,
            similarity = m.similarity,
            "clusters merged"
        );
    }
    store.insert(CLUSTER_MERGES, &rows).await
}
