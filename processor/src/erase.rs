//! Erasure: everything stored about one machine is deleted on its
//! operator's request.
//!
//! In: an [`ErasureRequest`] from the reports topic. It arrives after every
//! report the machine sent before it (same key, same partition), and the
//! consumer closes its batch on it, so those reports are written first and
//! are erased too. Out: the machine's rows gone from every raw and aggregate
//! table, from the clustering signatures and from `processing_errors`
//! ([`schemas::erasure::erasure_statements`]), and one row in `erasures`
//! naming the organisation and the counts, never the machine.
//!
//! The deletions are mutations (`ALTER TABLE ... DELETE`), which ClickHouse
//! applies in the background; the erasure is recorded only once every one
//! is done. A request read again (a restart before its offset was
//! committed, or a replay from the earliest offset that stored the reports
//! before it again) deletes whatever names the machine again, and is
//! recorded once.

use clickhouse::Row;
use schemas::clickhouse::uuid_literals;
use schemas::erasure::{ErasureRequest, MACHINE_TABLES, RAW_MACHINE_TABLES, erasure_statements};
use schemas::tables::{ERASURES, FEATURE_REQUESTS, PROCESSING_ERRORS};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// One row of `erasures`.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct ErasureRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub erasure_id: Uuid,
    pub org_id: String,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime")]
    pub completed_at: OffsetDateTime,
    pub raw_rows: u64,
    pub aggregate_rows: u64,
    pub merged_rows: u64,
}

/// How often the mutations are looked at while they run.
const MUTATION_POLL: Duration = Duration::from_millis(200);

/// Erases the machine of `request` and records it; the record, or `None`
/// if the request was already recorded or nothing named the machine. A machine hash that is not the
/// edge's hex is refused before anything runs (the router sets such a
/// message aside, so this is a second line).
pub async fn erase(
    store: &Store,
    request: &ErasureRequest,
) -> Result<Option<ErasureRow>, StoreError> {
    let Some(machine) = request.machine_literal() else {
        return Ok(None);
    };
    let recorded = count(
        store,
        &format!(
            "SELECT count() FROM {ERASURES} WHERE erasure_id = toUUID('{}')",
            request.erasure_id
        ),
    )
    .await?
        > 0;
    let mut raw_rows = 0;
    for table in RAW_MACHINE_TABLES {
        raw_rows += count(
            store,
            &format!("SELECT count() FROM {table} WHERE machine_hash = {machine}"),
        )
        .await?;
    }
    let (mut aggregate_rows, mut merged_rows) = (0, 0);
    for table in MACHINE_TABLES
        .iter()
        .filter(|t| !RAW_MACHINE_TABLES.contains(t))
    {
        aggregate_rows += count(
            store,
            &format!("SELECT count() FROM {table} WHERE machine_hash = {machine}"),
        )
        .await?;
        merged_rows += count(
            store,
            &format!("SELECT count() FROM {table} WHERE machine_hash = ''"),
        )
        .await?;
    }
    #[derive(Row, Deserialize)]
    struct Id {
        #[serde(with = "clickhouse::serde::uuid")]
        id: Uuid,
    }
    let requests: Vec<Uuid> = store
        .client()
        .query(&format!(
            "SELECT report_id AS id FROM {} WHERE machine_hash = {machine}",
            FEATURE_REQUESTS.name
        ))
        .fetch_all::<Id>()
        .await
        .map_err(StoreError::from)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let errors = count(
        store,
        &format!("SELECT count() FROM {PROCESSING_ERRORS} WHERE position(detail, {machine}) > 0"),
    )
    .await?;
    // Nothing names the machine (a request read again after it was carried
    // out, or a machine that never sent anything): no mutation, which would
    // rewrite parts for nothing.
    if raw_rows + aggregate_rows + errors > 0 || !requests.is_empty() {
        for statement in erasure_statements(&machine, &uuid_literals(&requests)) {
            store
                .client()
                .query_raw(&statement)
                .execute()
                .await
                .map_err(StoreError::from)?;
        }
        // Every mutation of this database, not only this erasure's: nothing
        // else here mutates, and an earlier erasure's must be done too.
        while count(
            store,
            "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND is_done = 0",
        )
        .await?
            > 0
        {
            tokio::time::sleep(MUTATION_POLL).await;
        }
    }
    if recorded {
        // Read again from before its offset (a replay from the earliest
        // offset stored the reports it follows again): deleted again, and
        // recorded once.
        return Ok(None);
    }
    let row = ErasureRow {
        erasure_id: request.erasure_id,
        org_id: request.org_id.clone(),
        requested_at: crate::rows::storable(request.requested_at),
        completed_at: OffsetDateTime::now_utc(),
        raw_rows,
        aggregate_rows,
        merged_rows,
    };
    store.insert(ERASURES, std::slice::from_ref(&row)).await?;
    tracing::info!(
        erasure_id = %row.erasure_id,
        org_id = %row.org_id,
        raw_rows,
        aggregate_rows,
        merged_rows,
        "machine erased"
    );
    Ok(Some(row))
}

async fn count(store: &Store, sql: &str) -> Result<u64, StoreError> {
    Ok(store.client().query(sql).fetch_one::<u64>().await?)
}

/// Runs [`erase`] until it succeeds, with backoff while ClickHouse fails;
/// false if the processor stopped first (the request is then read again).
pub(crate) async fn erase_until_done(
    store: &Store,
    metrics: &crate::Metrics,
    retry: &crate::writer::Retry,
    request: &ErasureRequest,
) -> bool {
    let mut backoff = retry.min_backoff;
    loop {
        match erase(store, request).await {
            Ok(done) => {
                if done.is_some() {
                    crate::Metrics::add(&metrics.erasures, 1);
                }
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, erasure_id = %request.erasure_id, retry_in = ?backoff, "erasure not done")
            }
        }
        tokio::select! {
            () = retry.stop.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(retry.max_backoff);
    }
}
