//! Prints every DDL statement as a replicated cluster runs it
//! ([`schemas::replicated::on_cluster`], cluster `telemetry`, the database
//! named by the first argument, `telemetry` if none), in order, as JSON:
//! `[{"file": ..., "statements": [...]}, ...]`, the `schema_migrations`
//! table first. `tests/python/test_chdb.py` parses them with current
//! ClickHouse.

use schemas::clickhouse::{MIGRATIONS, SCHEMA_MIGRATIONS_DDL};
use schemas::replicated::on_cluster;
use serde_json::json;

fn main() {
    let database = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "telemetry".into());
    let rewrite = |statement: &str| on_cluster(statement, "telemetry", &database);
    let mut files = vec![json!({
        "file": "schema_migrations",
        "statements": [rewrite(SCHEMA_MIGRATIONS_DDL)],
    })];
    files.extend(MIGRATIONS.iter().map(|m| {
        json!({
            "file": m.file,
            "statements": m.statements().iter().map(|s| rewrite(s)).collect::<Vec<_>>(),
        })
    }));
    println!("{}", serde_json::Value::Array(files));
}
