//! The registry of raw tables: each table the processor writes one row per
//! message into, declared once.
//!
//! A raw table holds the reports of one [`ReportKind`], or the edge's
//! outcomes. Its entry names the table, the column its rows are unique by,
//! what the views count a row by, and the column its day partitions are
//! cut by. Everything that must treat every raw table alike reads this
//! list: the retention list ([`crate::clickhouse::RETAINED_TABLES`]), the
//! views each table feeds and the statements that feed them again
//! ([`RawTable::views`]), and in the processor the batch, the writer and
//! what a rebalance drops (its own registry refers to these entries).
//!
//! Adding a report kind adds one constant here and puts it in
//! [`RAW_TABLES`]; the tests below check the entries against the
//! migrations.

use crate::clickhouse::{ViewFeed, view_feeds};
use crate::report::ReportKind;

/// The Kafka topic whose messages fill a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// The reports topic ([`crate::topics`]): accepted reports, keyed by
    /// machine.
    Reports,
    /// The outcomes topic: what the edge did with each report.
    Outcomes,
}

/// One raw table. Rows are partitioned by day
/// (`PARTITION BY toYYYYMMDD(partition_column)`) and kept for
/// `retention.raw_days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTable {
    pub name: &'static str,
    /// The reports it holds; `None` for the edge's outcomes.
    pub kind: Option<ReportKind>,
    /// The column a row is unique by (with the machine, for reports); the
    /// first column of the sorting key.
    pub id_column: &'static str,
    /// SQL for the machine part of a row's key: a column, or `''`.
    pub machine_sql: &'static str,
    /// SQL for what the table's views count a row by
    /// ([`crate::report_key`]); the id where no view reads the table.
    pub counted_sql: &'static str,
    /// The `DateTime` column whose day is a row's partition.
    pub partition_column: &'static str,
}

impl RawTable {
    /// The table of one report kind: unique by report id and machine,
    /// counted by report key, partitioned by the day the edge received it.
    const fn reports(name: &'static str, kind: ReportKind) -> Self {
        RawTable {
            name,
            kind: Some(kind),
            id_column: "report_id",
            machine_sql: "machine_hash",
            counted_sql: "report_key",
            partition_column: "received_at",
        }
    }

    /// The topic whose messages become its rows.
    pub fn topic(&self) -> Topic {
        match self.kind {
            Some(_) => Topic::Reports,
            None => Topic::Outcomes,
        }
    }

    /// The table's `PARTITION BY` expression.
    pub fn partition_by(&self) -> String {
        format!("toYYYYMMDD({})", self.partition_column)
    }

    /// The materialised views this table feeds, as the migrations leave
    /// them; a report found stored again feeds them again
    /// ([`ViewFeed::refeed_sql`]).
    pub fn views(&self) -> Vec<ViewFeed> {
        view_feeds()
            .into_iter()
            .filter(|feed| feed.source == self.name)
            .collect()
    }

    /// The table of `kind`'s reports.
    pub fn of(kind: ReportKind) -> &'static RawTable {
        RAW_TABLES
            .iter()
            .find(|table| table.kind == Some(kind))
            .expect("every report kind has a raw table (checked by a test)")
    }
}

pub const CRASH_REPORTS: RawTable = RawTable::reports("crash_reports", ReportKind::Crash);
pub const FEATURE_REQUESTS: RawTable =
    RawTable::reports("feature_requests", ReportKind::FeatureRequest);
pub const FEEDBACK: RawTable = RawTable::reports("feedback", ReportKind::Feedback);
pub const HEARTBEATS: RawTable = RawTable::reports("heartbeats", ReportKind::Heartbeat);
/// What the edge did with each report: unique by the id the edge gave the
/// event; no view reads it.
pub const OUTCOMES: RawTable = RawTable {
    name: "outcomes",
    kind: None,
    id_column: "event_id",
    machine_sql: "''",
    counted_sql: "event_id",
    partition_column: "at",
};

/// Every raw table: one per report kind, then the outcomes.
pub const RAW_TABLES: &[RawTable] = &[
    CRASH_REPORTS,
    FEATURE_REQUESTS,
    FEEDBACK,
    HEARTBEATS,
    OUTCOMES,
];

/// The processor's own tables beside the raw ones.
pub const FEATURE_REQUEST_SIGNATURES: &str = "feature_request_signatures";
pub const PROCESSING_ERRORS: &str = "processing_errors";
pub const ERASURES: &str = "erasures";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::{MIGRATIONS, Migration};

    /// The last `CREATE TABLE` of `table` (or of its `_v<n>` copy, renamed
    /// to it later) in the migrations.
    fn ddl(table: &str) -> String {
        MIGRATIONS
            .iter()
            .flat_map(Migration::statements)
            .rfind(|s| {
                let Some(rest) = s.strip_prefix("CREATE TABLE ") else {
                    return false;
                };
                let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
                let name = rest.split_whitespace().next().unwrap_or_default();
                name == table
                    || name
                        .strip_prefix(table)
                        .is_some_and(|v| v.starts_with("_v"))
            })
            .unwrap_or_else(|| panic!("{table} is never created"))
    }

    #[test]
    fn every_entry_matches_its_table() {
        for table in RAW_TABLES {
            let ddl = ddl(table.name);
            assert!(
                ddl.contains(&format!("PARTITION BY {}", table.partition_by())),
                "{}: partition",
                table.name
            );
            assert!(
                ddl.contains(&format!("ORDER BY ({}", table.id_column)),
                "{}: sorted by its id",
                table.name
            );
            for column in [table.machine_sql, table.counted_sql] {
                assert!(
                    column == "''" || ddl.contains(&format!("\n    {column} ")),
                    "{}: no column {column}",
                    table.name
                );
            }
        }
    }

    #[test]
    fn every_report_kind_has_one_table_and_every_view_reads_one() {
        for kind in ReportKind::ALL {
            let tables = RAW_TABLES.iter().filter(|t| t.kind == Some(kind));
            assert_eq!(tables.count(), 1, "{kind}");
            assert_eq!(RawTable::of(kind).topic(), Topic::Reports);
        }
        for feed in view_feeds() {
            assert!(
                RAW_TABLES.iter().any(|t| t.name == feed.source),
                "{} reads {}, which is not a raw table: it would never be fed again",
                feed.view,
                feed.source
            );
        }
        assert_eq!(HEARTBEATS.views().len(), 1);
        assert!(OUTCOMES.views().is_empty());
    }
}
