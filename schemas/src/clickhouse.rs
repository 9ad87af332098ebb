//! ClickHouse DDL: the ordered migrations that build every table, and the one
//! place where differences between ClickHouse versions are decided.
//!
//! Every statement here must run both on the oldest server the project is
//! tested against (18.16, Debian's package) and on current ClickHouse; the
//! test command checks the second with chdb.

use std::fmt;

use uuid::Uuid;

use crate::tables;

/// One versioned SQL file from `schemas/migrations/`, named
/// `<version>_<name>.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// File name without `.sql`, e.g. `0001_crash_reports`.
    pub file: &'static str,
    /// The file's text: one or more statements, each ended by `;`.
    pub sql: &'static str,
}

impl Migration {
    /// The number before the first `_`; applied in ascending order, never
    /// reused. 0 if the file name has none (a test rejects such files).
    pub fn version(&self) -> u32 {
        self.file
            .split_once('_')
            .and_then(|(version, _)| version.parse().ok())
            .unwrap_or(0)
    }

    /// The file name after the version.
    pub fn name(&self) -> &'static str {
        self.file
            .split_once('_')
            .map_or(self.file, |(_, name)| name)
    }

    /// The file's statements, without comments, in order.
    pub fn statements(&self) -> Vec<String> {
        split_statements(self.sql)
    }

    /// FNV-1a of the file's text, stored when applied so that a changed file
    /// can be told from the one that ran.
    pub fn checksum(&self) -> u64 {
        self.sql.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

macro_rules! migration {
    ($file:literal) => {
        Migration {
            file: $file,
            sql: include_str!(concat!("../migrations/", $file, ".sql")),
        }
    };
}

/// All migrations, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    migration!("0001_crash_reports"),
    migration!("0002_raw_reports"),
    migration!("0003_aggregates"),
    migration!("0004_outcomes_errors_regressions"),
    migration!("0005_machine_and_report_key"),
    migration!("0006_aggregates_per_machine"),
    migration!("0007_request_embeddings"),
    migration!("0008_cluster_merges"),
    migration!("0009_cluster_titles"),
    migration!("0010_cluster_trends"),
];

/// A migration recorded in `schema_migrations`: its version and the
/// checksum of the file that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u32,
    pub checksum: u64,
}

/// An applied migration whose file has changed since it ran: the tables no
/// longer match the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "migration {version} ({name}) was changed after it was applied; \
     leave applied migrations as they are and add a new one"
)]
pub struct ChangedMigration {
    pub version: u32,
    pub name: &'static str,
}

/// The migrations of `migrations` that `applied` lacks, oldest first, for
/// the runner to apply and the processor to refuse a database behind its
/// build. Applied versions this build does not know (a newer build ran
/// first) are left alone.
pub fn pending<'m>(
    migrations: &'m [Migration],
    applied: &[AppliedMigration],
) -> Result<Vec<&'m Migration>, ChangedMigration> {
    let mut pending = Vec::new();
    for migration in migrations {
        let version = migration.version();
        match applied.iter().find(|a| a.version == version) {
            Some(done) if done.checksum != migration.checksum() => {
                return Err(ChangedMigration {
                    version,
                    name: migration.name(),
                });
            }
            Some(_) => {}
            None => pending.push(migration),
        }
    }
    Ok(pending)
}

/// How a table is partitioned, for retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioned {
    /// `toYYYYMMDD(...)`: partitions like `20261120`.
    ByDay,
    /// `toYYYYMM(...)`: partitions like `202611`.
    ByMonth,
}

/// Which retention period applies to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// One row per report or event: `retention.raw_days`.
    Raw,
    /// Aggregates and what they need: `retention.aggregate_days`.
    Aggregate,
}

/// Every table that grows, with how it is partitioned and kept: the raw
/// tables of the registry ([`crate::tables::RAW_TABLES`]: by day, kept
/// `retention.raw_days`), then [`DERIVED_TABLES`]. A test checks this list
/// against the DDL.
pub const RETAINED_TABLES: &[(&str, Partitioned, Kept)] = &retained_tables();

/// The tables that grow and hold no report of their own: the processor's
/// records, the offline jobs' runs and the aggregates.
pub const DERIVED_TABLES: &[(&str, Partitioned, Kept)] = &[
    (tables::PROCESSING_ERRORS, Partitioned::ByDay, Kept::Raw),
    ("crash_regressions_runs", Partitioned::ByDay, Kept::Raw),
    ("analytics_runs", Partitioned::ByDay, Kept::Raw),
    (
        "crash_signatures_agg",
        Partitioned::ByMonth,
        Kept::Aggregate,
    ),
    ("crash_daily_agg", Partitioned::ByMonth, Kept::Aggregate),
    ("machine_days_agg", Partitioned::ByMonth, Kept::Aggregate),
    (
        tables::FEATURE_REQUEST_SIGNATURES,
        Partitioned::ByMonth,
        Kept::Aggregate,
    ),
    (
        "feature_request_clusters_agg",
        Partitioned::ByMonth,
        Kept::Aggregate,
    ),
    ("feedback_daily_agg", Partitioned::ByMonth, Kept::Aggregate),
    (tables::ERASURES, Partitioned::ByMonth, Kept::Aggregate),
];

const RETAINED_COUNT: usize = tables::RAW_TABLES.len() + DERIVED_TABLES.len();

/// [`RETAINED_TABLES`], put together at compile time.
const fn retained_tables() -> [(&'static str, Partitioned, Kept); RETAINED_COUNT] {
    let mut all = [("", Partitioned::ByDay, Kept::Raw); RETAINED_COUNT];
    let mut i = 0;
    while i < tables::RAW_TABLES.len() {
        all[i] = (tables::RAW_TABLES[i].name, Partitioned::ByDay, Kept::Raw);
        i += 1;
    }
    let mut j = 0;
    while j < DERIVED_TABLES.len() {
        all[i + j] = DERIVED_TABLES[j];
        j += 1;
    }
    all
}

/// A materialised view as the migrations define it: the raw table that feeds
/// it, the aggregate table it writes to, and its SELECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFeed {
    pub view: String,
    pub source: String,
    pub target: String,
    pub select: String,
}

impl ViewFeed {
    /// Feeds the aggregate again from the raw rows that match `filter` (a
    /// SQL condition on the source table, e.g. [`stored_reports`]). Every
    /// aggregate state here (`uniqExact`, `min`, `max`, `argMin`,
    /// `groupUniqArray`) merges idempotently, so rows the view already
    /// counted are not counted twice; rows it missed are counted now.
    pub fn refeed_sql(&self, filter: &str) -> String {
        let from = format!("FROM {}", self.source);
        let filtered = format!("FROM (SELECT * FROM {} WHERE {filter})", self.source);
        format!(
            "INSERT INTO {} {}",
            self.target,
            self.select.replacen(&from, &filtered, 1)
        )
    }
}

/// The condition that picks stored reports out of a raw table: their ids
/// (for the sorting key's index) and their report keys (for the machine),
/// both as quoted literals ([`uuid_literals`]).
pub fn stored_reports(ids: &str, keys: &str) -> String {
    format!(
        "{} AND {}",
        uuid_in("report_id", ids),
        uuid_in("report_key", keys)
    )
}

/// `'id','id',…`: UUIDs as the quoted literals [`uuid_in`] takes.
pub fn uuid_literals(ids: &[Uuid]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    quoted.join(",")
}

/// `column IN (…)` over UUIDs given as quoted literals ([`uuid_literals`]).
/// The ids go in as one array literal, which servers parse far faster than
/// a list of the same length after `IN` (on 18.16, 20,000 ids: 0.04 s
/// against 0.14 s); current ClickHouse takes it too.
pub fn uuid_in(column: &str, literals: &str) -> String {
    format!("{column} IN (SELECT arrayJoin(CAST([{literals}] AS Array(UUID))))")
}

/// Every materialised view as the migrations leave it, in the order of its
/// last definition: a view dropped by a later migration is gone, and one
/// made again has its new SELECT.
pub fn view_feeds() -> Vec<ViewFeed> {
    let mut feeds: Vec<ViewFeed> = Vec::new();
    for statement in MIGRATIONS.iter().flat_map(Migration::statements) {
        if let Some(dropped) = dropped_table(&statement) {
            feeds.retain(|feed| feed.view != dropped);
        } else if let Some(feed) = parse_view(&statement) {
            feeds.retain(|known| known.view != feed.view);
            feeds.push(feed);
        }
    }
    feeds
}

/// `DROP TABLE [IF EXISTS] name` → `name`.
fn dropped_table(statement: &str) -> Option<&str> {
    let rest = statement.trim().strip_prefix("DROP TABLE ")?.trim_start();
    let rest = rest.strip_prefix("IF EXISTS ").unwrap_or(rest);
    rest.split_whitespace().next()
}

/// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] name TO target AS SELECT … FROM
/// source …` → its parts; `None` for any other statement.
fn parse_view(statement: &str) -> Option<ViewFeed> {
    let rest = statement
        .trim()
        .strip_prefix("CREATE MATERIALIZED VIEW ")?
        .trim_start();
    let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
    let mut words = rest.split_whitespace();
    let view = words.next()?.to_string();
    (words.next()? == "TO").then_some(())?;
    let target = words.next()?.to_string();
    (words.next()? == "AS").then_some(())?;
    let select = rest[rest.find(" AS")? + 3..].trim().to_string();
    let source = select
        .split_whitespace()
        .skip_while(|w| *w != "FROM")
        .nth(1)?
        .to_string();
    Some(ViewFeed {
        view,
        source,
        target,
        select,
    })
}

/// The table that records which migrations ran. Created before any migration.
pub const SCHEMA_MIGRATIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
(version UInt32, name String, checksum UInt64, applied_at DateTime) \
ENGINE = MergeTree() ORDER BY version";

/// Splits SQL text into statements at `;` outside string literals and
/// comments, dropping `--` comments and empty statements.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            current.push(c);
            if c == '\\' {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            } else if c == '\'' {
                in_string = false;
            }
            continue;
        }
        match c {
            '\'' => {
                in_string = true;
                current.push(c);
            }
            '-' if chars.peek() == Some(&'-') => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        current.push('\n');
                        break;
                    }
                }
            }
            ';' => push_statement(&mut statements, &mut current),
            _ => current.push(c),
        }
    }
    push_statement(&mut statements, &mut current);
    statements
}

fn push_statement(statements: &mut Vec<String>, current: &mut String) {
    let statement: String = current
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if !statement.is_empty() {
        statements.push(statement);
    }
    current.clear();
}

/// A ClickHouse server version, from `SELECT version()`. Every behaviour that
/// differs between the versions the project runs on is a method here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// The first release assumed to behave like current ClickHouse in every
    /// respect below. Conservative: 18.16 is the only older one tested.
    const CURRENT: ServerVersion = ServerVersion {
        major: 21,
        minor: 1,
    };

    /// Parses `18.16.1`, `26.9.2.1` and the like.
    pub fn parse(version: &str) -> Option<Self> {
        let mut parts = version.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(ServerVersion { major, minor })
    }

    /// Old servers answer an LZ4-compressed HTTP request for a SELECT with
    /// no rows at all, silently; the client must not ask for compression.
    pub fn supports_compressed_http(self) -> bool {
        self >= Self::CURRENT
    }

    /// Old servers lack the `RowBinaryWithNamesAndTypes` format, which the
    /// client uses to check row types; without it, rows go unchecked.
    pub fn supports_row_type_validation(self) -> bool {
        self >= Self::CURRENT
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn applied(migration: &Migration) -> AppliedMigration {
        AppliedMigration {
            version: migration.version(),
            checksum: migration.checksum(),
        }
    }

    #[test]
    fn pending_migrations_are_those_not_recorded_oldest_first() {
        let versions = |pending: Vec<&Migration>| -> Vec<u32> {
            pending.iter().map(|m| m.version()).collect()
        };
        let all: Vec<u32> = MIGRATIONS.iter().map(Migration::version).collect();
        assert_eq!(versions(pending(MIGRATIONS, &[]).expect("fresh")), all);
        let first_two: Vec<_> = MIGRATIONS[..2].iter().map(applied).collect();
        assert_eq!(
            versions(pending(MIGRATIONS, &first_two).expect("behind")),
            all[2..]
        );
        let every: Vec<_> = MIGRATIONS.iter().map(applied).collect();
        assert!(pending(MIGRATIONS, &every).expect("current").is_empty());
        // A newer build's migration, unknown here, is no reason to refuse.
        let mut newer = every.clone();
        newer.push(AppliedMigration {
            version: 9_999,
            checksum: 1,
        });
        assert!(pending(MIGRATIONS, &newer).expect("ahead").is_empty());
    }

    #[test]
    fn a_migration_changed_after_it_ran_is_refused() {
        let mut every: Vec<_> = MIGRATIONS.iter().map(applied).collect();
        every[0].checksum ^= 1;
        assert_eq!(
            pending(MIGRATIONS, &every),
            Err(ChangedMigration {
                version: MIGRATIONS[0].version(),
                name: MIGRATIONS[0].name(),
            })
        );
    }

    #[test]
    fn every_materialised_view_is_found_with_its_source_and_target() {
        let feeds: Vec<(String, String, String)> = view_feeds()
            .into_iter()
            .map(|f| (f.view, f.source, f.target))
            .collect();
        let expected = [
            (
                "crash_signatures_mv",
                "crash_reports",
                "crash_signatures_agg",
            ),
            ("crash_daily_mv", "crash_reports", "crash_daily_agg"),
            (
                "machine_days_heartbeats_mv",
                "heartbeats",
                "machine_days_agg",
            ),
            (
                "machine_days_crashes_mv",
                "crash_reports",
                "machine_days_agg",
            ),
            (
                "feature_request_clusters_mv",
                "feature_requests",
                "feature_request_clusters_agg",
            ),
            ("feedback_daily_mv", "feedback", "feedback_daily_agg"),
        ]
        .map(|(v, s, t)| (v.to_string(), s.to_string(), t.to_string()));
        assert_eq!(feeds, expected);
        let made: HashSet<String> = MIGRATIONS
            .iter()
            .flat_map(Migration::statements)
            .filter(|s| s.contains("MATERIALIZED VIEW"))
            .filter_map(|s| parse_view(&s).map(|feed| feed.view))
            .collect();
        assert_eq!(made.len(), expected.len(), "no view is missed");
        for feed in view_feeds() {
            assert!(
                !feed.select.contains("(report_id"),
                "{} counts report keys, not report ids",
                feed.view
            );
        }
    }

    #[test]
    fn a_refeed_reads_only_the_given_ids() {
        let feed = view_feeds().remove(0);
        let id = "'4f0c6b1e-3a51-4d27-9a0e-6f1f4c2b9d11'";
        let key = "'0e8e2b57-3f5d-5c1a-9f0e-2d4b6c8a0e13'";
        let sql = feed.refeed_sql(&stored_reports(id, key));
        assert!(sql.starts_with("INSERT INTO crash_signatures_agg SELECT"));
        assert!(sql.contains(&format!(
            "FROM (SELECT * FROM crash_reports WHERE \
             report_id IN (SELECT arrayJoin(CAST([{id}] AS Array(UUID)))) AND \
             report_key IN (SELECT arrayJoin(CAST([{key}] AS Array(UUID)))))"
        )));
        assert!(sql.ends_with("GROUP BY grouping_version, signature, month, machine_hash"));
        assert!(sql.contains("uniqExactState(report_key) AS reports"));
    }

    #[test]
    fn migrations_are_ordered_and_non_empty() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version() > last, "migration {} out of order", m.file);
            last = m.version();
            assert!(!m.name().is_empty(), "migration {} has no name", m.file);
            assert!(!m.statements().is_empty(), "migration {} is empty", m.file);
        }
    }

    #[test]
    fn every_partitioned_table_has_a_retention_rule() {
        let ddl: String = MIGRATIONS.iter().map(|m| m.sql).collect();
        for statement in split_statements(&ddl) {
            let Some(rest) = statement.strip_prefix("CREATE TABLE IF NOT EXISTS ") else {
                continue;
            };
            let table = rest.split_whitespace().next().unwrap_or_default();
            let rule = RETAINED_TABLES.iter().find(|(t, _, _)| *t == table);
            if statement.contains("PARTITION BY toYYYYMMDD(") {
                assert_eq!(rule.map(|r| r.1), Some(Partitioned::ByDay), "{table}");
            } else if statement.contains("PARTITION BY toYYYYMM(") {
                assert_eq!(rule.map(|r| r.1), Some(Partitioned::ByMonth), "{table}");
            } else {
                assert!(rule.is_none(), "{table} is not partitioned by time");
            }
        }
        assert_eq!(RETAINED_TABLES.len(), 15);
    }

    #[test]
    fn splitting_respects_strings_and_drops_comments() {
        let sql = "-- header; with a semicolon\nCREATE TABLE a (x String DEFAULT ';') ENGINE = Log;\n\n\
                   INSERT INTO a VALUES ('it\\'s; fine'); -- trailing\n";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE TABLE a (x String DEFAULT ';') ENGINE = Log".to_string(),
                "INSERT INTO a VALUES ('it\\'s; fine')".to_string(),
            ]
        );
    }

    #[test]
    fn checksum_changes_with_the_text() {
        let a = Migration {
            file: "0001_a",
            sql: "SELECT 1",
        };
        let b = Migration {
            file: "0001_a",
            sql: "SELECT 2",
        };
        assert_eq!((a.version(), a.name()), (1, "a"));
        assert_ne!(a.checksum(), b.checksum());
        assert_eq!(a.checksum(), a.checksum());
    }

    #[test]
    fn versions_parse_and_pick_behaviour() {
        let old = ServerVersion::parse("18.16.1").expect("parses");
        let new = ServerVersion::parse("26.9.2.1").expect("parses");
        assert_eq!(
            old,
            ServerVersion {
                major: 18,
                minor: 16
            }
        );
        assert!(!old.supports_compressed_http() && !old.supports_row_type_validation());
        assert!(new.supports_compressed_http() && new.supports_row_type_validation());
        assert_eq!(ServerVersion::parse("garbage"), None);
    }
}
