//! A machine's right to erasure, as it travels: the request the edge puts on
//! the reports topic, and the SQL that carries it out.
//!
//! The edge sends an [`ErasureRequest`] keyed by the machine hash, like the
//! machine's reports, so it lands in the same partition after every report
//! the machine sent before it. The processor writes those reports first,
//! then deletes the machine's rows everywhere ([`erasure_statements`]) and
//! records the erasure, without the machine, in `erasures`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tables;

/// The `schema` header of an erasure request on the reports topic.
pub const ERASURE_SCHEMA: &str = "erasure/1";

/// "Erase everything stored about this machine", from its operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Made by the edge; the request's answer and its `erasures` row name it.
    pub erasure_id: Uuid,
    /// The organisation whose token asked.
    pub org_id: String,
    /// The machine, hashed as its reports are.
    pub machine_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

impl ErasureRequest {
    /// The machine hash as a SQL string literal, if it is the lower-case hex
    /// the edge makes (nothing else is ever put in a statement).
    pub fn machine_literal(&self) -> Option<String> {
        let hash = &self.machine_hash;
        let hex = !hash.is_empty()
            && hash.len() <= 128
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| format!("'{hash}'"))
    }
}

/// The aggregates with a `machine_hash` column: they keep one row per
/// machine (migration 6).
pub const MACHINE_AGGREGATES: &[&str] = &[
    "crash_signatures_agg",
    "crash_daily_agg",
    "machine_days_agg",
    "feature_request_clusters_agg",
    "feedback_daily_agg",
];

/// The raw tables of machines' reports: every entry of
/// [`tables::RAW_TABLES`] that holds a report kind, in its order.
pub const RAW_MACHINE_TABLES: &[&str] = &raw_machine_tables();

/// Every table with a `machine_hash` column: [`RAW_MACHINE_TABLES`], then
/// [`MACHINE_AGGREGATES`]. A test checks this list against the DDL.
pub const MACHINE_TABLES: &[&str] = &machine_tables();

const RAW_MACHINE_COUNT: usize = {
    let mut count = 0;
    let mut i = 0;
    while i < tables::RAW_TABLES.len() {
        if tables::RAW_TABLES[i].kind.is_some() {
            count += 1;
        }
        i += 1;
    }
    count
};

const fn raw_machine_tables() -> [&'static str; RAW_MACHINE_COUNT] {
    let mut all = [""; RAW_MACHINE_COUNT];
    let (mut i, mut n) = (0, 0);
    while i < tables::RAW_TABLES.len() {
        if tables::RAW_TABLES[i].kind.is_some() {
            all[n] = tables::RAW_TABLES[i].name;
            n += 1;
        }
        i += 1;
    }
    all
}

const fn machine_tables() -> [&'static str; RAW_MACHINE_COUNT + MACHINE_AGGREGATES.len()] {
    let mut all = [""; RAW_MACHINE_COUNT + MACHINE_AGGREGATES.len()];
    let raw = raw_machine_tables();
    let mut i = 0;
    while i < raw.len() {
        all[i] = raw[i];
        i += 1;
    }
    let mut j = 0;
    while j < MACHINE_AGGREGATES.len() {
        all[i + j] = MACHINE_AGGREGATES[j];
        j += 1;
    }
    all
}

/// The mutations that erase a machine: its rows in every table of
/// [`MACHINE_TABLES`], the clustering signatures of its feature requests
/// (`request_ids`: quoted UUID literals, possibly empty), and the
/// processing errors whose text names it. `machine` is a quoted literal
/// ([`ErasureRequest::machine_literal`]).
pub fn erasure_statements(machine: &str, request_ids: &str) -> Vec<String> {
    let mut statements = Vec::new();
    if !request_ids.is_empty() {
        statements.push(format!(
            "ALTER TABLE feature_request_signatures DELETE WHERE {}",
            crate::clickhouse::uuid_in("report_id", request_ids)
        ));
    }
    for table in MACHINE_TABLES {
        statements.push(format!(
            "ALTER TABLE {table} DELETE WHERE machine_hash = {machine}"
        ));
    }
    statements.push(format!(
        "ALTER TABLE processing_errors DELETE WHERE position(detail, {machine}) > 0"
    ));
    statements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::{MIGRATIONS, Migration};

    #[test]
    fn every_table_that_names_a_machine_is_erased() {
        let mut named: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(Migration::statements)
            .filter(|s| s.starts_with("CREATE TABLE") && s.contains("\n    machine_hash "))
            .filter_map(|s| {
                let rest = s.strip_prefix("CREATE TABLE ")?;
                let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
                let name = rest.split_whitespace().next()?;
                let name = name
                    .strip_suffix("_v5")
                    .or_else(|| name.strip_suffix("_v6"))
                    .unwrap_or(name);
                Some(name.to_string())
            })
            .collect();
        named.sort();
        named.dedup();
        let mut listed: Vec<String> = MACHINE_TABLES.iter().map(|t| t.to_string()).collect();
        listed.sort();
        assert_eq!(named, listed);
        assert!(
            RAW_MACHINE_TABLES
                .iter()
                .all(|t| MACHINE_TABLES.contains(t))
        );
    }

    #[test]
    fn only_hex_machine_hashes_reach_a_statement() {
        let mut request = ErasureRequest {
            erasure_id: Uuid::nil(),
            org_id: "grid".into(),
            machine_hash: "0a1b2c".into(),
            requested_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(request.machine_literal().as_deref(), Some("'0a1b2c'"));
        for bad in ["", "0A1B", "ab' OR 1=1 --", "ab\\'"] {
            request.machine_hash = bad.into();
            assert_eq!(request.machine_literal(), None, "{bad}");
        }
        let statements = erasure_statements("'0a1b2c'", "");
        assert_eq!(statements.len(), MACHINE_TABLES.len() + 1);
        assert!(statements.iter().all(|s| s.contains("'0a1b2c'")));
        let with_requests =
            erasure_statements("'0a1b2c'", "'4f0c6b1e-3a51-4d27-9a0e-6f1f4c2b9d11'");
        assert!(with_requests[0].starts_with("ALTER TABLE feature_request_signatures DELETE"));
    }
}
