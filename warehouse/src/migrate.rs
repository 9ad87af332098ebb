//! Schema migrations: the versioned SQL files of `schemas/migrations/`,
//! applied in order and recorded in `schema_migrations`.
//!
//! Applying twice is harmless: a recorded version is skipped. A recorded
//! version whose file has changed since stops the run, since the tables no
//! longer match the file; write a new migration instead. The processor only
//! checks ([`processor::Store::check_migrations`]) and waits on a database
//! this has not brought up to its build.
//!
//! With `[clickhouse] cluster` set, each statement runs as
//! [`schemas::replicated::on_cluster`] rewrites it: replicated tables made,
//! changed and dropped `ON CLUSTER`, `schema_migrations` among them, so that
//! every replica holds the tables and agrees on what ran. The migrations
//! then need every replica up: an `ON CLUSTER` statement returns once each
//! has run it.

use processor::{Store, StoreError};
use schemas::Migration;
use schemas::clickhouse::{SCHEMA_MIGRATIONS_DDL, pending};
use schemas::replicated::on_cluster;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error(transparent)]
    Changed(#[from] schemas::ChangedMigration),
    #[error("migration {version} ({name}) failed: {source}")]
    Statement {
        version: u32,
        name: &'static str,
        source: clickhouse::error::Error,
    },
}

/// Applies the migrations not yet recorded, oldest first; returns their
/// versions.
pub async fn apply(store: &Store, migrations: &[Migration]) -> Result<Vec<u32>, MigrationError> {
    let client = store.client();
    let for_cluster = |statement: &str| match store.cluster() {
        Some(cluster) => on_cluster(statement, cluster, store.database()),
        None => statement.to_string(),
    };
    client
        .query_raw(&for_cluster(SCHEMA_MIGRATIONS_DDL))
        .execute()
        .await?;
    let applied = store.applied_migrations().await?;
    let mut newly_applied = Vec::new();
    for migration in pending(migrations, &applied)? {
        let version = migration.version();
        for statement in migration.statements() {
            client
                .query_raw(&for_cluster(&statement))
                .execute()
                .await
                .map_err(|source| MigrationError::Statement {
                    version,
                    name: migration.name(),
                    source,
                })?;
        }
        client
            .query(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
                 VALUES (?, ?, ?, now())",
            )
            .bind(version)
            .bind(migration.name())
            .bind(migration.checksum())
            .execute()
            .await?;
        tracing::info!(version, name = migration.name(), "applied migration");
        newly_applied.push(version);
    }
    Ok(newly_applied)
}

/// Every migration this build has.
pub async fn apply_all(store: &Store) -> Result<Vec<u32>, MigrationError> {
    apply(store, schemas::MIGRATIONS).await
}
