//! Schema migrations: the versioned SQL files of `schemas/migrations/`,
//! applied in order and recorded in `schema_migrations`.
//!
//! Applying twice is harmless: a recorded version is skipped. A recorded
//! version whose file has changed since stops the start, since the tables no
//! longer match the file; write a new migration instead.

use clickhouse::{Client, Row};
use schemas::Migration;
use schemas::clickhouse::SCHEMA_MIGRATIONS_DDL;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error(
        "migration {version} ({name}) was changed after it was applied; \
         leave applied migrations as they are and add a new one"
    )]
    Changed { version: u32, name: &'static str },
    #[error("migration {version} ({name}) failed: {source}")]
    Statement {
        version: u32,
        name: &'static str,
        source: clickhouse::error::Error,
    },
}

#[derive(Debug, Row, Deserialize)]
struct Applied {
    version: u32,
    checksum: u64,
}

/// Applies the migrations not yet recorded, oldest first.
pub async fn apply(client: &Client, migrations: &[Migration]) -> Result<Vec<u32>, MigrationError> {
    client.query_raw(SCHEMA_MIGRATIONS_DDL).execute().await?;
    let applied: Vec<Applied> = client
        .query("SELECT version, checksum FROM schema_migrations")
        .fetch_all()
        .await?;
    let mut newly_applied = Vec::new();
    for migration in migrations {
        let version = migration.version();
        match applied.iter().find(|a| a.version == version) {
            Some(done) if done.checksum != migration.checksum() => {
                return Err(MigrationError::Changed {
                    version,
                    name: migration.name(),
                });
            }
            Some(_) => continue,
            None => {}
        }
        for statement in migration.statements() {
            client
                .query_raw(&statement)
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
