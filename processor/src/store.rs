//! ClickHouse: the connection, chosen by the server's version, and the
//! inserts of each table.

use std::collections::HashSet;

use clickhouse::{Client, Compression, Row};
use schemas::ServerVersion;
use schemas::clickhouse::{uuid_in, uuid_literals, view_feeds};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::ClickHouseConfig;
use crate::migrate::{self, MigrationError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("clickhouse answered an unreadable version {0:?}")]
    Version(String),
    #[error(transparent)]
    Migration(#[from] MigrationError),
}

/// Ids looked up per query by [`Store::existing_ids`].
const LOOKUP_CHUNK: usize = 20_000;
/// Room for a lookup query: 39 bytes per quoted id and comma, and the rest.
const LOOKUP_QUERY_BYTES: usize = LOOKUP_CHUNK * 40 + 4096;

/// A client for the pipeline's database, set up for the server it talks to.
#[derive(Clone)]
pub struct Store {
    client: Client,
    version: ServerVersion,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("version", &self.version)
            .finish()
    }
}

impl Store {
    /// Asks the server its version, creates the database if needed, and
    /// returns a client with the settings that version needs.
    pub async fn connect(config: &ClickHouseConfig) -> Result<Self, StoreError> {
        // The first request must work on any version: no compression, no
        // row-type validation.
        let probe = Self::server(config)
            .with_compression(Compression::None)
            .with_validation(false);
        let text: String = probe.query("SELECT version()").fetch_one().await?;
        let version = ServerVersion::parse(&text).ok_or(StoreError::Version(text))?;
        probe
            .query_raw(&format!(
                "CREATE DATABASE IF NOT EXISTS `{}`",
                config.database
            ))
            .execute()
            .await?;
        tracing::info!(%version, database = %config.database, "connected to clickhouse");
        Ok(Store {
            client: Self::client_for(config, version),
            version,
        })
    }

    /// The same settings on a client of its own (its own connections), for
    /// use on another runtime; asks the server nothing.
    pub fn separate(&self, config: &ClickHouseConfig) -> Store {
        Store {
            client: Self::client_for(config, self.version),
            version: self.version,
        }
    }

    /// Where the server is and who logs in.
    fn server(config: &ClickHouseConfig) -> Client {
        Client::default()
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(&config.password)
    }

    /// The pipeline's database, with the settings `version` needs.
    fn client_for(config: &ClickHouseConfig, version: ServerVersion) -> Client {
        let compression = if version.supports_compressed_http() {
            Compression::Lz4
        } else {
            Compression::None
        };
        Self::server(config)
            .with_database(&config.database)
            .with_compression(compression)
            .with_validation(version.supports_row_type_validation())
    }

    pub fn version(&self) -> ServerVersion {
        self.version
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Applies every migration not applied yet; returns their versions.
    pub async fn migrate(&self) -> Result<Vec<u32>, StoreError> {
        Ok(migrate::apply(&self.client, schemas::MIGRATIONS).await?)
    }

    /// Which of `ids` are already in `table`'s `column` (a UUID column).
    pub async fn existing_ids(
        &self,
        table: &str,
        column: &str,
        ids: &[Uuid],
    ) -> Result<HashSet<Uuid>, StoreError> {
        #[derive(Row, Deserialize)]
        struct Id {
            #[serde(with = "clickhouse::serde::uuid")]
            id: Uuid,
        }
        let mut found = HashSet::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT {column} AS id FROM {table} WHERE {}",
                uuid_in(column, &uuid_literals(chunk))
            );
            let rows: Vec<Id> = self.lookup(&sql).fetch_all().await?;
            found.extend(rows.into_iter().map(|r| r.id));
        }
        Ok(found)
    }

    /// Feeds the aggregates of `table` again from its stored rows with these
    /// ids ([`schemas::clickhouse::ViewFeed::refeed_sql`]). A report found
    /// stored when it arrives again may be one whose insert failed after its
    /// raw row was written but before every view took it; feeding again
    /// mends that, and counts nothing twice.
    pub async fn refeed(&self, table: &str, column: &str, ids: &[Uuid]) -> Result<(), StoreError> {
        for feed in view_feeds().iter().filter(|feed| feed.source == table) {
            for chunk in ids.chunks(LOOKUP_CHUNK) {
                let sql = feed.refeed_sql(column, &uuid_literals(chunk));
                self.lookup(&sql).execute().await?;
            }
        }
        Ok(())
    }

    /// A query naming up to [`LOOKUP_CHUNK`] ids, with room for them.
    fn lookup(&self, sql: &str) -> clickhouse::query::Query {
        self.client
            .query_raw(sql)
            .with_setting("max_query_size", LOOKUP_QUERY_BYTES.to_string())
    }

    /// Inserts `rows` into `table` in one INSERT, which ClickHouse applies
    /// whole or not at all.
    pub async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: Row + Serialize + for<'a> Row<Value<'a> = T>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}
