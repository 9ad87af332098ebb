//! Prints every DDL statement the processor runs, in order, as JSON:
//! `[{"file": ..., "statements": [...]}, ...]`, the `schema_migrations`
//! table first. `tests/python/test_chdb.py` runs them on current ClickHouse.

use schemas::clickhouse::{MIGRATIONS, SCHEMA_MIGRATIONS_DDL};
use serde_json::json;

fn main() {
    let mut files = vec![json!({
        "file": "schema_migrations",
        "statements": [SCHEMA_MIGRATIONS_DDL],
    })];
    files.extend(MIGRATIONS.iter().map(|m| {
        json!({
            "file": m.file,
            "statements": m.statements(),
        })
    }));
    println!("{}", serde_json::Value::Array(files));
}
