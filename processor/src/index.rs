//! The clustering index's memory: every clustered request's MinHash
//! signature, and its 8-bit embedding when clustered by meaning, is stored
//! in `feature_request_signatures`. At start the index is rebuilt from all
//! of them in the order they were written (the model does not run again),
//! so cluster ids stay what they were; while
//! running, each instance adds now and then what the others clustered, so
//! that a paraphrase gets the same cluster whichever instance reads it.

use std::collections::HashSet;

use clickhouse::Row;
use schemas::tables::FEATURE_REQUEST_SIGNATURES;
use serde::{Deserialize, Deserializer};
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
    Ok(added)
}
