//! The analysts' query cookbook: the files of `schemas/queries/`, each one
//! query under a three-line header (`-- name:`, `-- purpose:`, `-- params:`)
//! with its parameters written `{name:Type}`, ClickHouse's own syntax.
//!
//! Current servers bind such parameters themselves; ClickHouse 18.16 does
//! not, so [`substitute`] replaces each placeholder with a quoted literal of
//! its type before the query is sent: a String quoted and escaped, an
//! integer digits only, a Date as `toDate('YYYY-MM-DD')`. Any other value is
//! refused, so no value turns into SQL.
//!
//! The files are built into the binary ([`Cookbook::built_in`]); a folder of
//! them can be read instead ([`Cookbook::read`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clickhouse::Client;
use time::Date;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookbookError {
    #[error("{value:?} is no {type_name} (or {type_name} is not supported)")]
    NotOfType { type_name: String, value: String },
    #[error("no value for {{{name}:{type_name}}}")]
    Missing { name: String, type_name: String },
    #[error("{query} takes {takes}, not {given:?}")]
    Unknown {
        query: String,
        takes: String,
        given: Vec<String>,
    },
    #[error("line `-- {key}: ...` expected, got {line:?}")]
    Header { key: &'static str, line: String },
    #[error("params item {0:?} is not `name Type`")]
    Param(String),
    #[error("no query {0:?}")]
    NoQuery(String),
}

/// The SQL literal for a `{name:Type}` placeholder with `value`.
pub fn literal(type_name: &str, value: &str) -> Result<String, CookbookError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let date = || {
        value.len() == 10
            && Date::parse(
                value,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .is_ok()
    };
    match type_name {
        "String" => Ok(format!(
            "'{}'",
            value.replace('\\', "\\\\").replace('\'', "\\'")
        )),
        "UInt8" | "UInt16" | "UInt32" | "UInt64" if digits(value) => Ok(value.to_string()),
        "Int8" | "Int16" | "Int32" | "Int64"
            if digits(value.strip_prefix('-').unwrap_or(value)) =>
        {
            Ok(value.to_string())
        }
        "Date" if date() => Ok(format!("toDate('{value}')")),
        _ => Err(CookbookError::NotOfType {
            type_name: type_name.to_string(),
            value: value.to_string(),
        }),
    }
}

/// A `{name:Type}` placeholder starting at `text[0]`: (name, type, length).
fn placeholder(text: &str) -> Option<(&str, &str, usize)> {
    let end = text.find('}')?;
    let (name, type_name) = text[1..end].split_once(':')?;
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (ident(name) && ident(type_name)).then_some((name, type_name, end + 1))
}

/// Every placeholder of `sql`, as (name, type).
pub fn placeholders(sql: &str) -> BTreeSet<(String, String)> {
    sql.match_indices('{')
        .filter_map(|(i, _)| placeholder(&sql[i..]))
        .map(|(name, type_name, _)| (name.to_string(), type_name.to_string()))
        .collect()
}

/// Replaces every placeholder of `sql` with the literal of its value, in one
/// pass: a value that looks like a placeholder is not replaced again.
pub fn substitute(sql: &str, values: &BTreeMap<String, String>) -> Result<String, CookbookError> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        match placeholder(&rest[i..]) {
            Some((name, type_name, len)) => {
                let value = values.get(name).ok_or_else(|| CookbookError::Missing {
                    name: name.to_string(),
                    type_name: type_name.to_string(),
                })?;
                out.push_str(&literal(type_name, value)?);
                rest = &rest[i + len..];
            }
            None => {
                out.push('{');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One query file: its header and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub name: String,
    pub purpose: String,
    /// Parameter name → ClickHouse type, as the header declares them.
    pub params: BTreeMap<String, String>,
    /// The whole file, header included (it is SQL comments).
    pub sql: String,
}

impl Query {
    /// Reads the header: `-- name: …`, `-- purpose: …`, `-- params: none`
    /// or `-- params: name Type, name Type`.
    pub fn parse(sql: &str) -> Result<Query, CookbookError> {
        let mut lines = sql.lines();
        let mut field = |key: &'static str| {
            let line = lines.next().unwrap_or_default();
            line.strip_prefix("-- ")
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(": "))
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
                .ok_or_else(|| CookbookError::Header {
                    key,
                    line: line.to_string(),
                })
        };
        let name = field("name")?;
        let purpose = field("purpose")?;
        let declared = field("params")?;
        let mut params = BTreeMap::new();
        if declared != "none" {
            for item in declared.split(',') {
                let mut words = item.split_whitespace();
                let (Some(n), Some(t), None) = (words.next(), words.next(), words.next()) else {
                    return Err(CookbookError::Param(item.to_string()));
                };
                params.insert(n.to_string(), t.to_string());
            }
        }
        Ok(Query {
            name,
            purpose,
            params,
            sql: sql.to_string(),
        })
    }

    /// The SQL to send with `values`, which must name only declared
    /// parameters, and all of them.
    pub fn bind(&self, values: &BTreeMap<String, String>) -> Result<String, CookbookError> {
        let given: Vec<String> = values
            .keys()
            .filter(|k| !self.params.contains_key(*k))
            .cloned()
            .collect();
        if !given.is_empty() {
            return Err(CookbookError::Unknown {
                query: self.name.clone(),
                takes: self.usage(),
                given,
            });
        }
        substitute(&self.sql, values)
    }

    /// `name=<Type> …`, or `no parameters`.
    pub fn usage(&self) -> String {
        if self.params.is_empty() {
            return "no parameters".to_string();
        }
        let items: Vec<String> = self
            .params
            .iter()
            .map(|(name, type_name)| format!("{name}=<{type_name}>"))
            .collect();
        items.join(" ")
    }
}

/// The query files, by file name without `.sql`, in name order.
#[derive(Debug, Clone)]
pub struct Cookbook {
    files: BTreeMap<String, String>,
}

impl Cookbook {
    /// The files of `schemas/queries/` when this program was built.
    pub fn built_in() -> Self {
        let files = BUILT_IN
            .iter()
            .map(|(stem, text)| (stem.to_string(), text.to_string()))
            .collect();
        Cookbook { files }
    }

    /// The `*.sql` files of `dir`.
    pub fn read(dir: &Path) -> std::io::Result<Self> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(stem) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|_| path.extension().is_some_and(|e| e == "sql"))
            else {
                continue;
            };
            files.insert(stem.to_string(), std::fs::read_to_string(&path)?);
        }
        Ok(Cookbook { files })
    }

    /// Every query, parsed, in name order.
    pub fn queries(&self) -> Result<Vec<Query>, CookbookError> {
        self.files.values().map(|text| Query::parse(text)).collect()
    }

    /// The query of file `name`.sql.
    pub fn query(&self, name: &str) -> Result<Query, CookbookError> {
        let text = self
            .files
            .get(name)
            .ok_or_else(|| CookbookError::NoQuery(name.to_string()))?;
        Query::parse(text)
    }
}

/// Sends `sql` and returns the answer as TSV with column names, as
/// ClickHouse writes it.
pub async fn run(client: &Client, sql: &str) -> Result<Vec<u8>, clickhouse::error::Error> {
    let bytes = client
        .query_raw(sql)
        .fetch_bytes("TSVWithNames")?
        .collect()
        .await?;
    Ok(bytes.to_vec())
}

// (file stem, text) of each file of `schemas/queries/`, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/queries.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_built_in_query_declares_exactly_its_placeholders() {
        let cookbook = Cookbook::built_in();
        let queries = cookbook.queries().expect("headers parse");
        assert!(queries.len() >= 12, "at least 12 queries");
        for (stem, query) in cookbook.files.keys().zip(&queries) {
            assert_eq!(&query.name, stem, "-- name of {stem}.sql");
            let declared: BTreeSet<(String, String)> = query
                .params
                .iter()
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            assert_eq!(placeholders(&query.sql), declared, "{stem}");
            for type_name in query.params.values() {
                let sample = if type_name == "Date" {
                    "2026-11-30"
                } else {
                    "1"
                };
                literal(type_name, sample).expect("a type the substitution knows");
            }
        }
    }

    #[test]
    fn values_for_undeclared_parameters_are_refused() {
        let query = Query::parse(
            "-- name: q\n-- purpose: test\n-- params: days UInt32\nSELECT {days:UInt32}\n",
        )
        .expect("parses");
        assert_eq!(query.usage(), "days=<UInt32>");
        assert!(
            query
                .bind(&values(&[("days", "7")]))
                .expect("binds")
                .ends_with("SELECT 7\n")
        );
        assert!(matches!(
            query.bind(&values(&[("days", "7"), ("limit", "3")])),
            Err(CookbookError::Unknown { .. })
        ));
        assert!(matches!(
            query.bind(&values(&[])),
            Err(CookbookError::Missing { .. })
        ));
    }

    #[test]
    fn headers_are_checked() {
        assert!(matches!(
            Query::parse("SELECT 1"),
            Err(CookbookError::Header { key: "name", .. })
        ));
        assert!(matches!(
            Query::parse("-- name: q\n-- purpose: p\n-- params: days\n"),
            Err(CookbookError::Param(_))
        ));
    }

    #[test]
    fn dates_and_signed_integers_have_their_forms() {
        assert_eq!(
            literal("Date", "2026-11-30").as_deref(),
            Ok("toDate('2026-11-30')")
        );
        assert!(literal("Date", "2026-13-30").is_err());
        assert_eq!(literal("Int32", "-5").as_deref(), Ok("-5"));
        assert!(literal("UInt32", "-5").is_err());
        assert!(literal("Float64", "1").is_err());
    }
}
