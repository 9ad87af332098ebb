//! Prints what erasing a machine runs, as JSON: `{"machine_tables": [...],
//! "statements": [...]}`, with `{machine}` where the quoted machine hash
//! goes and `{requests}` where the quoted ids of its feature requests go.
//! `tests/python/test_chdb.py` runs them on current ClickHouse.

use schemas::erasure::{MACHINE_TABLES, erasure_statements};
use serde_json::json;

fn main() {
    let document = json!({
        "machine_tables": MACHINE_TABLES,
        "statements": erasure_statements("{machine}", "{requests}"),
    });
    println!("{document}");
}
