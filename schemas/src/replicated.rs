//! The migrations as a replicated cluster runs them: the same files, each
//! statement rewritten by [`on_cluster`] when `[clickhouse] cluster` names a
//! cluster of the servers' `remote_servers`.
//!
//! - every `*MergeTree` engine becomes its `Replicated*MergeTree`, with the
//!   ZooKeeper path `/clickhouse/tables/{shard}/<database>/<table>` and the
//!   replica `{replica}`, the two macros from each server's configuration.
//!   The database and table are written out, not left to the `{database}`
//!   and `{table}` macros: 18.16 keeps the macros in the table's metadata
//!   and expands them again at every start, so a table made as `t_v6` and
//!   renamed `t` (as migrations 5 to 7 do) would look for its replica under
//!   `t` after a restart, and the server would refuse to start;
//! - `CREATE`, `DROP`, `RENAME` and `ALTER` get `ON CLUSTER <name>`: each
//!   server's DDL worker runs them, and the statement returns once every
//!   replica has;
//! - the tables those statements name, and the tables a view reads (`FROM`,
//!   `JOIN`, `TO`), are qualified with the database: a DDL worker runs the
//!   statement in its server's default database, not the one the runner
//!   talked to;
//! - anything else (the `INSERT … SELECT`s that copy rows into a new table)
//!   runs as it is, on the one replica the runner talks to; replication
//!   carries the rows to the others.
//!
//! Materialised views stay plain views on each replica: a row inserted on
//! one replica feeds the views there, and the aggregate parts they write
//! are replicated like any other (their targets are replicated tables), so
//! the other replica neither feeds them again nor misses them.

/// Where the replicated table `table` of `database` keeps its state in
/// ZooKeeper: one path per shard (the `{shard}` macro), database and table.
pub fn zookeeper_path(database: &str, table: &str) -> String {
    format!("/clickhouse/tables/{{shard}}/{database}/{table}")
}

/// `statement`, one statement of a migration (as
/// [`crate::Migration::statements`] gives it), as it runs on the replicated
/// cluster `cluster` in `database`. Statements that make or change no
/// table come back unchanged.
pub fn on_cluster(statement: &str, cluster: &str, database: &str) -> String {
    let trimmed = statement.trim();
    let qualify = |name: &str| qualified(name, database);
    if let Some((head, rest)) = after_prefix(
        trimmed,
        &[
            "CREATE TABLE IF NOT EXISTS ",
            "CREATE TABLE ",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS ",
            "CREATE MATERIALIZED VIEW ",
            "CREATE VIEW IF NOT EXISTS ",
            "CREATE VIEW ",
            "ALTER TABLE ",
        ],
    ) {
        let (name, body) = split_name(rest);
        let path = zookeeper_path(database, name);
        let body = replicated_engine(&qualify_sources(body, database), &path);
        return format!("{head}{} ON CLUSTER {cluster}{body}", qualify(name));
    }
    if let Some((head, rest)) = after_prefix(trimmed, &["DROP TABLE IF EXISTS ", "DROP TABLE "]) {
        let (name, body) = split_name(rest);
        return format!("{head}{} ON CLUSTER {cluster}{body}", qualify(name));
    }
    if let Some((head, rest)) = after_prefix(trimmed, &["RENAME TABLE "]) {
        let pairs: Vec<String> = rest
            .split(',')
            .map(|pair| {
                let (from, to) = pair.split_once(" TO ").unwrap_or((pair, ""));
                format!("{} TO {}", qualify(from.trim()), qualify(to.trim()))
            })
            .collect();
        return format!("{head}{} ON CLUSTER {cluster}", pairs.join(", "));
    }
    statement.to_string()
}

/// The prefix `statement` starts with, and what follows it.
fn after_prefix<'s>(
    statement: &'s str,
    prefixes: &[&'static str],
) -> Option<(&'static str, &'s str)> {
    prefixes.iter().find_map(|p| {
        statement
            .strip_prefix(p)
            .map(|rest| (*p, rest.trim_start()))
    })
}

/// The table name at the start of `rest`, and what follows it.
fn split_name(rest: &str) -> (&str, &str) {
    let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
    rest.split_at(end)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

fn qualified(name: &str, database: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("{database}.{name}")
    }
}

/// Qualifies the table after each `FROM`, `JOIN` and `TO` of `sql` (not a
/// subquery, not a name already qualified), outside string literals.
fn qualify_sources(sql: &str, database: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut in_string = false;
    let mut pending_table = false;
    let mut word = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.next());
            } else if c == '\'' {
                in_string = false;
            }
            continue;
        }
        if is_name_char(c) {
            word.push(c);
            if chars.peek().is_some_and(|&n| is_name_char(n)) {
                continue;
            }
            if pending_table
                && !word.contains('.')
                && word.starts_with(|w: char| !w.is_ascii_digit())
            {
                out.push_str(database);
                out.push('.');
            }
            pending_table = ["FROM", "JOIN", "TO"]
                .iter()
                .any(|k| word.eq_ignore_ascii_case(k));
            out.push_str(&word);
            word.clear();
            continue;
        }
        if !c.is_whitespace() {
            pending_table = false;
        }
        if c == '\'' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// `ENGINE = XMergeTree(args)` → `ENGINE = ReplicatedXMergeTree(path,
/// '{replica}', args)`; other engines (views have none) as they are.
fn replicated_engine(sql: &str, path: &str) -> String {
    const ENGINE: &str = "ENGINE = ";
    let Some(at) = sql.find(ENGINE) else {
        return sql.to_string();
    };
    let engine_start = at + ENGINE.len();
    let rest = &sql[engine_start..];
    let Some(open) = rest.find('(') else {
        return sql.to_string();
    };
    let engine = &rest[..open];
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return sql.to_string();
    }
    let args_start = open + 1;
    let Some(close) = rest[args_start..].find(')') else {
        return sql.to_string();
    };
    let args = rest[args_start..args_start + close].trim();
    let replication = format!("'{path}', '{{replica}}'");
    let args = if args.is_empty() {
        replication
    } else {
        format!("{replication}, {args}")
    };
    format!(
        "{}Replicated{engine}({args}){}",
        &sql[..engine_start],
        &rest[args_start + close + 1..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::{MIGRATIONS, Migration, SCHEMA_MIGRATIONS_DDL};

    const CLUSTER: &str = "telemetry";
    const DB: &str = "telemetry";

    fn every_statement() -> Vec<(&'static str, String)> {
        let mut all = vec![("schema_migrations", SCHEMA_MIGRATIONS_DDL.to_string())];
        for migration in MIGRATIONS {
            all.extend(
                Migration::statements(migration)
                    .into_iter()
                    .map(|s| (migration.file, s)),
            );
        }
        all
    }

    #[test]
    fn engines_become_replicated_with_the_macros() {
        assert_eq!(
            on_cluster(SCHEMA_MIGRATIONS_DDL, CLUSTER, DB),
            "CREATE TABLE IF NOT EXISTS telemetry.schema_migrations ON CLUSTER telemetry \
             (version UInt32, name String, checksum UInt64, applied_at DateTime) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/telemetry/schema_migrations', \
             '{replica}') ORDER BY version"
        );
        let replacing = "CREATE TABLE IF NOT EXISTS t\n(\n    x UInt8\n)\n\
                         ENGINE = ReplacingMergeTree(inserted_at)\nORDER BY (x)";
        assert_eq!(
            on_cluster(replacing, CLUSTER, "db"),
            "CREATE TABLE IF NOT EXISTS db.t ON CLUSTER telemetry\n(\n    x UInt8\n)\n\
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', \
             '{replica}', inserted_at)\nORDER BY (x)"
        );
        let summing = "CREATE TABLE s (k UInt8, n UInt64) ENGINE = SummingMergeTree() ORDER BY k";
        assert!(on_cluster(summing, CLUSTER, "db").contains(
            "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/db/s', '{replica}') ORDER BY k"
        ));
        let log = "CREATE TABLE l (k UInt8) ENGINE = Log";
        assert_eq!(
            on_cluster(log, CLUSTER, "db"),
            "CREATE TABLE db.l ON CLUSTER telemetry (k UInt8) ENGINE = Log"
        );
    }

    #[test]
    fn views_read_and_write_qualified_tables() {
        let mv = "CREATE MATERIALIZED VIEW IF NOT EXISTS a_mv TO a_agg AS\nSELECT\n    x,\n    \
                  uniqExactState(y) AS n\nFROM crash_reports\nWHERE s != 'FROM x'\nGROUP BY x";
        assert_eq!(
            on_cluster(mv, CLUSTER, "db"),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS db.a_mv ON CLUSTER telemetry TO db.a_agg AS\n\
             SELECT\n    x,\n    uniqExactState(y) AS n\nFROM db.crash_reports\n\
             WHERE s != 'FROM x'\nGROUP BY x"
        );
        let view = "CREATE VIEW v AS SELECT * FROM\n(\n    SELECT k FROM a_agg\n) AS a \
                    ANY LEFT JOIN other.b USING k WHERE arrayJoin(x) IN (SELECT k FROM c)";
        assert_eq!(
            on_cluster(view, CLUSTER, "db"),
            "CREATE VIEW db.v ON CLUSTER telemetry AS SELECT * FROM\n(\n    SELECT k FROM db.a_agg\n) AS a \
             ANY LEFT JOIN other.b USING k WHERE arrayJoin(x) IN (SELECT k FROM db.c)"
        );
    }

    #[test]
    fn drops_renames_and_alters_run_on_the_cluster() {
        assert_eq!(
            on_cluster("DROP TABLE IF EXISTS t_v5", CLUSTER, "db"),
            "DROP TABLE IF EXISTS db.t_v5 ON CLUSTER telemetry"
        );
        assert_eq!(
            on_cluster("DROP TABLE t_v5", CLUSTER, "db"),
            "DROP TABLE db.t_v5 ON CLUSTER telemetry"
        );
        assert_eq!(
            on_cluster(
                "RENAME TABLE t TO t_v5,\n             t_v6 TO t",
                CLUSTER,
                "db"
            ),
            "RENAME TABLE db.t TO db.t_v5, db.t_v6 TO db.t ON CLUSTER telemetry"
        );
        assert_eq!(
            on_cluster("ALTER TABLE t DELETE WHERE x = 1", CLUSTER, "db"),
            "ALTER TABLE db.t ON CLUSTER telemetry DELETE WHERE x = 1"
        );
        let insert = "INSERT INTO t_v6 SELECT * FROM t";
        assert_eq!(on_cluster(insert, CLUSTER, "db"), insert);
    }

    #[test]
    fn every_shipped_statement_is_rewritten_whole() {
        let mut made = std::collections::HashSet::new();
        for (file, statement) in every_statement() {
            let rewritten = on_cluster(&statement, CLUSTER, DB);
            let ddl = ["CREATE ", "DROP ", "RENAME ", "ALTER "]
                .iter()
                .any(|p| statement.starts_with(p));
            if !ddl {
                assert_eq!(rewritten, statement, "{file}: only DDL changes");
                continue;
            }
            assert_eq!(
                rewritten.matches(" ON CLUSTER telemetry").count(),
                1,
                "{file}: {rewritten}"
            );
            if statement.contains("ENGINE = ") {
                let table = statement
                    .trim_start_matches("CREATE TABLE ")
                    .trim_start_matches("IF NOT EXISTS ")
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                assert!(
                    rewritten.contains("ENGINE = Replicated")
                        && rewritten.contains(&format!(
                            "MergeTree('/clickhouse/tables/{{shard}}/telemetry/{table}', '{{replica}}'"
                        )),
                    "{file}: {rewritten}"
                );
                // A name made again after a drop would find the dropped
                // table's path: every table is made under a name of its own.
                assert!(made.insert(table.clone()), "{file}: {table} made twice");
            }
            // Every table named after FROM, JOIN or TO is in the database.
            let words: Vec<&str> = rewritten
                .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
                .filter(|w| !w.is_empty())
                .collect();
            for pair in words.windows(2) {
                if ["FROM", "JOIN", "TO"].contains(&pair[0])
                    && pair[1].starts_with(|c: char| c.is_ascii_alphabetic())
                    && !pair[1].starts_with("SELECT")
                {
                    assert!(
                        pair[1].starts_with("telemetry."),
                        "{file}: {} {} in {rewritten}",
                        pair[0],
                        pair[1]
                    );
                }
            }
        }
        assert!(
            made.len() >= 15,
            "every table the migrations make: {made:?}"
        );
    }
}
