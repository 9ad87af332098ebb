//! Prints the statements that feed each materialised view again from stored
//! raw rows, as JSON: `[{"view": ..., "source": ..., "target": ..., "sql": ...}]`,
//! with `{ids}` where the quoted report ids go and `{keys}` where their
//! report keys go. `tests/python/test_chdb.py`
//! runs them on current ClickHouse.

use schemas::clickhouse::{stored_reports, view_feeds};
use serde_json::json;

fn main() {
    let feeds: Vec<_> = view_feeds()
        .into_iter()
        .map(|feed| {
            json!({
                "view": feed.view,
                "source": feed.source,
                "target": feed.target,
                "sql": feed.refeed_sql(&stored_reports("{ids}", "{keys}")),
            })
        })
        .collect();
    println!("{}", serde_json::Value::Array(feeds));
}
