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
//! applies in the background; the erasure is recorded only once nothing
//! names the machine any more. That is waited for at most
//! `batch.erasure_wait_ms`: a mutation queued ahead of the deletions that
//! never finishes (an analyst's `ALTER` that fails on every part) holds
//! them back on its table, and must not hold back every other machine's
//! reports with them. Past the wait the deletions stay queued, the erasure
//! is not recorded (`processor_erasures_unconfirmed_total`, and a warning
//! naming the tables), and the writer goes on; asking again records it
//! once the deletions are done. A request read again (a restart before its
//! offset was committed, or a replay from the earliest offset that stored
//! the reports before it again) deletes whatever names the machine again,
//! and is recorded once.

use clickhouse::Row;
use schemas::clickhouse::uuid_literals;
use schemas::erasure::{ErasureRequest, MACHINE_TABLES, RAW_MACHINE_TABLES, erasure_statements};
use schemas::tables::{ERASURES, FEATURE_REQUEST_SIGNATURES, FEATURE_REQUESTS, PROCESSING_ERRORS};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{Store, StoreError};
use crate::writer::Retry;

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

/// The first pause between looks at the deletions; it doubles up to
/// [`MUTATION_POLL_MAX`].
const MUTATION_POLL: Duration = Duration::from_millis(200);
const MUTATION_POLL_MAX: Duration = Duration::from_secs(2);

/// What became of one erasure request.
#[derive(Debug, Clone, PartialEq)]
pub enum Erasure {
    /// Carried out and recorded in `erasures`.
    Recorded(ErasureRow),
    /// Nothing to record: recorded before (a request read again), nothing
    /// named the machine, or its hash is not the edge's hex.
    Nothing,
    /// The deletions are queued but were not done within the wait; these
    /// tables still name the machine.
    Unconfirmed(Vec<&'static str>),
    /// The processor is stopping; the request will be read again.
    Stopped,
}

/// Erases the machine of `request` and records it once its rows are gone,
/// waiting for that at most `retry.erasure_wait`. A machine hash that is
/// not the edge's hex is refused before anything runs (the router sets
/// such a message aside, so this is a second line).
pub async fn erase(
    store: &Store,
    request: &ErasureRequest,
    retry: &Retry,
) -> Result<Erasure, StoreError> {
    let Some(machine) = request.machine_literal() else {
        return Ok(Erasure::Nothing);
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
        .timed(
            store
                .client()
                .query(&format!(
                    "SELECT report_id AS id FROM {} WHERE machine_hash = {machine}",
                    FEATURE_REQUESTS.name
                ))
                .fetch_all::<Id>(),
        )
        .await?
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
                .timed(store.client().query_raw(&statement).execute())
                .await?;
        }
        // Done when nothing names the machine: this erasure's own
        // deletions, whatever else mutates the database.
        let deadline = tokio::time::Instant::now() + retry.erasure_wait;
        let mut pause = MUTATION_POLL;
        loop {
            let left = tables_naming(store, &machine, &requests).await?;
            if left.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Erasure::Unconfirmed(left));
            }
            tokio::select! {
                () = retry.stop.cancelled() => return Ok(Erasure::Stopped),
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MUTATION_POLL_MAX);
        }
    }
    if recorded {
        // Read again from before its offset (a replay from the earliest
        // offset stored the reports it follows again): deleted again, and
        // recorded once.
        return Ok(Erasure::Nothing);
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
    Ok(Erasure::Recorded(row))
}

async fn count(store: &Store, sql: &str) -> Result<u64, StoreError> {
    store
        .timed(store.client().query(sql).fetch_one::<u64>())
        .await
}

/// The tables that still name the machine (`machine`, a quoted literal)
/// or hold the signatures of its feature requests (`requests`), in one
/// query.
async fn tables_naming(
    store: &Store,
    machine: &str,
    requests: &[Uuid],
) -> Result<Vec<&'static str>, StoreError> {
    let mut checks: Vec<(&'static str, String)> = MACHINE_TABLES
        .iter()
        .map(|table| (*table, format!("machine_hash = {machine}")))
        .collect();
    checks.push((
        PROCESSING_ERRORS,
        format!("position(detail, {machine}) > 0"),
    ));
    if !requests.is_empty() {
        checks.push((
            FEATURE_REQUEST_SIGNATURES,
            schemas::clickhouse::uuid_in("report_id", &uuid_literals(requests)),
        ));
    }
    let sql = checks
        .iter()
        .enumerate()
        .map(|(i, (table, condition))| {
            format!("SELECT toUInt32({i}) AS i, count() AS n FROM {table} WHERE {condition}")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    #[derive(Row, Deserialize)]
    struct Left {
        i: u32,
        n: u64,
    }
    let rows = store
        .timed(store.client().query(&sql).fetch_all::<Left>())
        .await?;
    let mut left: Vec<&'static str> = rows
        .iter()
        .filter(|r| r.n > 0)
        .filter_map(|r| checks.get(r.i as usize).map(|(table, _)| *table))
        .collect();
    left.sort_unstable();
    Ok(left)
}

/// Runs [`erase`] until it succeeds, with backoff while ClickHouse fails;
/// false if the processor stopped first (the request is then read again).
pub(crate) async fn erase_until_done(
    store: &Store,
    metrics: &crate::Metrics,
    retry: &Retry,
    request: &ErasureRequest,
) -> bool {
    let mut backoff = retry.backoff();
    loop {
        match erase(store, request, retry).await {
            Ok(Erasure::Recorded(_)) => {
                crate::Metrics::add(&metrics.erasures, 1);
                return true;
            }
            Ok(Erasure::Nothing) => return true,
            Ok(Erasure::Unconfirmed(tables)) => {
                crate::Metrics::add(&metrics.erasures_unconfirmed, 1);
                tracing::warn!(
                    erasure_id = %request.erasure_id,
                    org_id = %request.org_id,
                    waited = ?retry.erasure_wait,
                    ?tables,
                    "erasure not done in time: its deletions stay queued behind another \
                     mutation of these tables (see system.mutations); not recorded, \
                     ask again once they are done"
                );
                return true;
            }
            Ok(Erasure::Stopped) => return false,
            Err(error) => {
                let failed_on = store.url().to_string();
                let pause = backoff.failed(store, metrics);
                tracing::warn!(%error, clickhouse = %failed_on, erasure_id = %request.erasure_id,
                    retry_in = ?pause, "erasure not done");
                tokio::select! {
                    () = retry.stop.cancelled() => return false,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
