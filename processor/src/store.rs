//! ClickHouse: the connection, chosen by the server's version, and the
//! inserts of each table.
//!
//! A store talks to one server at a time: `[clickhouse] url`, or, after
//! [`Store::fall_over`], the next of `fallback_urls` (other replicas of the
//! cluster), round and round.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clickhouse::{Client, Compression, Row};
use schemas::clickhouse::pending;
use schemas::clickhouse::{stored_reports, uuid_in, uuid_literals};
use schemas::tables::RawTable;
use schemas::{AppliedMigration, ChangedMigration, ServerVersion};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::batch::{Keyed, RowKey};
use crate::config::ClickHouseConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("clickhouse answered an unreadable version {0:?}")]
    Version(String),
    #[error(
        "database {database} lacks migrations {pending:?} that this build needs; \
         apply them with `telemetry-admin migrate` (same configuration)"
    )]
    Behind { database: String, pending: Vec<u32> },
    #[error(transparent)]
    Changed(#[from] ChangedMigration),
}

/// What a failed request says about trying it again, decided in one place
/// ([`StoreError::failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server or the network: the same request may succeed later.
    Transient,
    /// The rows touch more partitions than one insert may; the same rows in
    /// smaller inserts will go in.
    TooManyPartitions,
    /// Something in the rows themselves (a value the column type cannot
    /// hold, a parse error): no retry helps; the rows at fault must be found
    /// and set aside.
    Permanent,
}

/// ClickHouse error codes that blame the data, not the server: parse and
/// conversion errors, values out of a type's range, sizes over a limit.
const DATA_ERROR_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    407, // DECIMAL_OVERFLOW
];

/// The code of a ClickHouse exception text (`Code: 252, e.displayText() =
/// …` on old servers, `Code: 252. DB::Exception: …` on current ones).
fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

impl StoreError {
    /// Whether the request that failed so may succeed as it is, in smaller
    /// parts, or never. Anything not known to blame the rows is transient:
    /// retrying a server fault forever is safe (nothing is lost, and the
    /// stall is visible in the lag metrics), while setting good rows aside
    /// as culprits would not be.
    pub fn failure(&self) -> Failure {
        use clickhouse::error::Error;
        match self {
            StoreError::ClickHouse(error) => match error {
                // The row could not be encoded for its column type: a
                // client-side refusal, before any byte of it left.
                Error::Custom(_)
                | Error::SequenceMustHaveLength
                | Error::InvalidUtf8Encoding(_)
                | Error::InvalidTagEncoding(_)
                | Error::VariantDiscriminatorIsOutOfBound(_) => Failure::Permanent,
                Error::BadResponse(text) => {
                    if text.contains("Too many partitions for single INSERT block") {
                        Failure::TooManyPartitions
                    } else if exception_code(text).is_some_and(|c| DATA_ERROR_CODES.contains(&c)) {
                        Failure::Permanent
                    } else {
                        Failure::Transient
                    }
                }
                _ => Failure::Transient,
            },
            StoreError::Version(_) | StoreError::Behind { .. } | StoreError::Changed(_) => {
                Failure::Transient
            }
        }
    }
}

/// Ids looked up per query by [`Store::stored`] and [`Store::refeed`].
const LOOKUP_CHUNK: usize = 20_000;
/// Room for a lookup query: 39 bytes per quoted id and comma, twice (a
/// refeed names each report's id and key), and the rest.
const LOOKUP_QUERY_BYTES: usize = LOOKUP_CHUNK * 80 + 4096;

/// One server the store may talk to.
struct Server {
    url: String,
    client: Client,
}

/// A client for the pipeline's database, set up for the server it talks to.
/// Clones share the server in use.
#[derive(Clone)]
pub struct Store {
    /// `url`, then each of `fallback_urls`.
    servers: Arc<[Server]>,
    /// The index in `servers` of the one in use.
    current: Arc<AtomicUsize>,
    /// The longest a request of [`Store::timed`] may take.
    timeout: Duration,
    version: ServerVersion,
    database: String,
    cluster: Option<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url())
            .field("version", &self.version)
            .finish()
    }
}

impl Store {
    /// Asks the server its version, creates the database if needed, and
    /// returns a client with the settings that version needs. Tries `url`,
    /// then each of `fallback_urls`, and keeps the first that answers
    /// within `request_timeout_ms`.
    pub async fn connect(config: &ClickHouseConfig) -> Result<Self, StoreError> {
        let urls: Vec<&str> = Self::urls(config).collect();
        let timeout = Duration::from_millis(config.request_timeout_ms);
        for (index, url) in urls.iter().enumerate() {
            let probed = tokio::time::timeout(timeout, Self::probe(config, url))
                .await
                .unwrap_or(Err(StoreError::ClickHouse(
                    clickhouse::error::Error::TimedOut,
                )));
            match probed {
                Ok(version) => {
                    tracing::info!(%version, %url, database = %config.database, "connected to clickhouse");
                    return Ok(Self::with_servers(config, version, index));
                }
                Err(StoreError::ClickHouse(error)) if index + 1 < urls.len() => {
                    tracing::warn!(%error, %url, "clickhouse not reachable; trying the next replica");
                }
                Err(other) => return Err(other),
            }
        }
        unreachable!("the last server's failure is returned")
    }

    /// The version of the server at `url`, once its database exists.
    async fn probe(config: &ClickHouseConfig, url: &str) -> Result<ServerVersion, StoreError> {
        // The first request must work on any version: no compression, no
        // row-type validation.
        let probe = Self::server(config, url)
            .with_compression(Compression::None)
            .with_validation(false);
        let text: String = probe.query("SELECT version()").fetch_one().await?;
        let version = ServerVersion::parse(&text).ok_or(StoreError::Version(text))?;
        // Made only when missing: `ON CLUSTER` waits for every replica, so
        // asking again for a database that is there would keep a store from
        // starting while one replica is down.
        let exists: u8 = probe
            .query("SELECT count() > 0 FROM system.databases WHERE name = ?")
            .bind(config.database.as_str())
            .fetch_one()
            .await?;
        if exists == 1 {
            return Ok(version);
        }
        let on_cluster = match config.cluster.as_str() {
            "" => String::new(),
            cluster => format!(" ON CLUSTER {cluster}"),
        };
        probe
            .query_raw(&format!(
                "CREATE DATABASE IF NOT EXISTS `{}`{on_cluster}",
                config.database
            ))
            .execute()
            .await?;
        Ok(version)
    }

    /// The same settings on clients of their own (their own connections),
    /// for use on another runtime, starting at the server in use here; asks
    /// the server nothing.
    pub fn separate(&self, config: &ClickHouseConfig) -> Store {
        Self::with_servers(config, self.version, self.current.load(Ordering::Relaxed))
    }

    /// Clients of every server of `config`, the one at `current` in use;
    /// asks no server anything.
    pub(crate) fn with_servers(
        config: &ClickHouseConfig,
        version: ServerVersion,
        current: usize,
    ) -> Store {
        let servers: Arc<[Server]> = Self::urls(config)
            .map(|url| Server {
                url: url.to_string(),
                client: Self::client_for(config, url, version),
            })
            .collect();
        Store {
            current: Arc::new(AtomicUsize::new(current % servers.len())),
            servers,
            timeout: Duration::from_millis(config.request_timeout_ms),
            version,
            database: config.database.clone(),
            cluster: Self::cluster_of(config),
        }
    }

    /// `url`, then each of `fallback_urls`.
    fn urls(config: &ClickHouseConfig) -> impl Iterator<Item = &str> {
        std::iter::once(config.url.as_str()).chain(config.fallback_urls.iter().map(String::as_str))
    }

    /// How many servers the store may talk to.
    pub fn servers(&self) -> usize {
        self.servers.len()
    }

    /// The URL of the server in use.
    pub fn url(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed)].url
    }

    /// `request`, given at most `clickhouse.request_timeout_ms`: a server
    /// that takes the connection and never answers (frozen, hung) fails it
    /// as a stopped one would, transiently.
    pub async fn timed<T, E: Into<StoreError>>(
        &self,
        request: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(answer) => answer.map_err(Into::into),
            Err(_) => Err(StoreError::ClickHouse(clickhouse::error::Error::TimedOut)),
        }
    }

    /// Moves to the next server, if there is another, after a failure that
    /// was not the rows' fault; true if it moved. Without a quorum, a row
    /// the last server took and the next has not fetched yet may then be
    /// written again: raw tables collapse it by key and the aggregates
    /// count distinct keys, so nothing counts twice.
    pub fn fall_over(&self) -> bool {
        if self.servers.len() < 2 {
            return false;
        }
        let from = self.current.load(Ordering::Relaxed);
        let to = (from + 1) % self.servers.len();
        self.current.store(to, Ordering::Relaxed);
        tracing::warn!(from = %self.servers[from].url, to = %self.servers[to].url,
            "clickhouse: moving to the next replica");
        true
    }

    fn cluster_of(config: &ClickHouseConfig) -> Option<String> {
        (!config.cluster.is_empty()).then(|| config.cluster.clone())
    }

    /// Where the server is and who logs in.
    fn server(config: &ClickHouseConfig, url: &str) -> Client {
        pipeline::clickhouse::client(config.ca_file.as_ref())
            .with_url(url)
            .with_user(&config.user)
            .with_password(&config.password)
    }

    /// The pipeline's database, with the settings `version` needs.
    fn client_for(config: &ClickHouseConfig, url: &str, version: ServerVersion) -> Client {
        let compression = if version.supports_compressed_http() {
            Compression::Lz4
        } else {
            Compression::None
        };
        let client = Self::server(config, url)
            .with_database(&config.database)
            .with_compression(compression)
            .with_validation(version.supports_row_type_validation());
        if config.insert_quorum == 0 {
            return client;
        }
        client
            .with_setting("insert_quorum", config.insert_quorum.to_string())
            .with_setting("select_sequential_consistency", "1")
    }

    pub fn version(&self) -> ServerVersion {
        self.version
    }

    /// The client of the server in use.
    pub fn client(&self) -> &Client {
        &self.servers[self.current.load(Ordering::Relaxed)].client
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The cluster whose replicas hold the tables (`[clickhouse] cluster`);
    /// `None` for a single server.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The migrations recorded in `schema_migrations`; none if the table
    /// is not there yet.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, StoreError> {
        #[derive(Row, Deserialize)]
        struct Applied {
            version: u32,
            checksum: u64,
        }
        let exists: u8 = self
            .client()
            .query(
                "SELECT count() > 0 FROM system.tables \
                 WHERE database = currentDatabase() AND name = 'schema_migrations'",
            )
            .fetch_one()
            .await?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        let applied: Vec<Applied> = self
            .client()
            .query("SELECT version, checksum FROM schema_migrations")
            .fetch_all()
            .await?;
        Ok(applied
            .into_iter()
            .map(|a| AppliedMigration {
                version: a.version,
                checksum: a.checksum,
            })
            .collect())
    }

    /// Whether the database holds every migration this build's rows need.
    /// The processor only checks: migrating is `telemetry-admin migrate`'s
    /// job (the `warehouse` crate), run before a new build starts.
    pub async fn check_migrations(&self) -> Result<(), StoreError> {
        let applied = self.applied_migrations().await?;
        let pending = pending(schemas::MIGRATIONS, &applied)?;
        if pending.is_empty() {
            return Ok(());
        }
        Err(StoreError::Behind {
            database: self.database.clone(),
            pending: pending.iter().map(|m| m.version()).collect(),
        })
    }

    /// Which rows like `rows` are already in their table: each stored key
    /// ([`Keyed::key`]) with what the table's views count it by
    /// ([`schemas::tables::RawTable::counted_sql`]). Looked up by id, the table's sorting key,
    /// then matched on the machine here.
    pub async fn stored<T: Keyed>(&self, rows: &[T]) -> Result<HashMap<RowKey, Uuid>, StoreError> {
        #[derive(Row, Deserialize)]
        struct Found {
            #[serde(with = "clickhouse::serde::uuid")]
            id: Uuid,
            machine: String,
            #[serde(with = "clickhouse::serde::uuid")]
            counted: Uuid,
        }
        let wanted: HashSet<RowKey> = rows.iter().map(Keyed::key).collect();
        let ids: Vec<Uuid> = wanted
            .iter()
            .map(|(id, _)| *id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut found = HashMap::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT {id} AS id, {machine} AS machine, {counted} AS counted FROM {table} WHERE {}",
                uuid_in(T::TABLE.id_column, &uuid_literals(chunk)),
                id = T::TABLE.id_column,
                machine = T::TABLE.machine_sql,
                counted = T::TABLE.counted_sql,
                table = T::TABLE.name,
            );
            let rows: Vec<Found> = self.timed(self.lookup(&sql).fetch_all()).await?;
            found.extend(
                rows.into_iter()
                    .map(|r| ((r.id, r.machine), r.counted))
                    .filter(|(key, _)| wanted.contains(key)),
            );
        }
        Ok(found)
    }

    /// Feeds the aggregates of `table` again from its stored reports, each
    /// given as (report id, report key) ([`schemas::clickhouse::ViewFeed::refeed_sql`]).
    /// A report found stored when it arrives again may be one whose insert
    /// failed after its raw row was written but before every view took it;
    /// feeding again mends that, and counts nothing twice.
    pub async fn refeed(
        &self,
        table: &RawTable,
        stored: &[(Uuid, Uuid)],
    ) -> Result<(), StoreError> {
        for feed in table.views() {
            for chunk in stored.chunks(LOOKUP_CHUNK) {
                let ids: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
                let keys: Vec<Uuid> = chunk.iter().map(|(_, key)| *key).collect();
                let filter = stored_reports(&uuid_literals(&ids), &uuid_literals(&keys));
                self.timed(self.lookup(&feed.refeed_sql(&filter)).execute())
                    .await?;
            }
        }
        Ok(())
    }

    /// A query naming up to [`LOOKUP_CHUNK`] ids, with room for them.
    fn lookup(&self, sql: &str) -> clickhouse::query::Query {
        self.client()
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
        self.timed(async {
            let mut insert = self.client().insert::<T>(table).await?;
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error;

    fn bad(text: &str) -> StoreError {
        StoreError::ClickHouse(Error::BadResponse(text.into()))
    }

    #[test]
    fn failures_are_told_apart_on_old_and_new_servers() {
        // 18.16 and current servers word exceptions differently.
        assert_eq!(
            bad("Code: 252, e.displayText() = DB::Exception: Too many partitions for single INSERT block (more than 100). The limit is controlled by 'max_partitions_per_insert_block' setting.").failure(),
            Failure::TooManyPartitions
        );
        assert_eq!(
            bad("Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts. (TOO_MANY_PARTS)").failure(),
            Failure::Transient,
            "too many parts waits for merges"
        );
        assert_eq!(
            bad("Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected , before: x").failure(),
            Failure::Permanent
        );
        assert_eq!(
            bad(
                "Code: 321. DB::Exception: Value out of range. (VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE)"
            )
            .failure(),
            Failure::Permanent
        );
        assert_eq!(
            bad("Code: 60. DB::Exception: Table e2e.crash_reports does not exist. (UNKNOWN_TABLE)")
                .failure(),
            Failure::Transient,
            "a missing table is the deployment's fault, not the rows'"
        );
        assert_eq!(
            bad("Code: 241. DB::Exception: Memory limit (total) exceeded").failure(),
            Failure::Transient
        );
        assert_eq!(bad("502 Bad Gateway").failure(), Failure::Transient);
        assert_eq!(
            StoreError::ClickHouse(Error::Custom(
                "1969-12-31 23:59:59 cannot be represented as DateTime".into()
            ))
            .failure(),
            Failure::Permanent
        );
        assert_eq!(
            StoreError::ClickHouse(Error::TimedOut).failure(),
            Failure::Transient
        );
        assert_eq!(
            StoreError::ClickHouse(Error::Network("connection refused".into())).failure(),
            Failure::Transient
        );
    }

    #[test]
    fn exception_codes_are_read_from_either_wording() {
        assert_eq!(exception_code("Code: 6, e.displayText() = x"), Some(6));
        assert_eq!(exception_code("Code: 321. DB::Exception"), Some(321));
        assert_eq!(exception_code("no code here"), None);
    }
}
