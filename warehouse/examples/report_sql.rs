//! Prints the roadmap report's queries as JSON (`[{"name", "sql"}]`), for
//! the check that runs each on current ClickHouse (tests/python/test_chdb.py).

fn main() {
    let queries: Vec<serde_json::Value> = warehouse::report::QUERIES
        .iter()
        .map(|(name, sql)| serde_json::json!({ "name": name, "sql": sql }))
        .collect();
    println!("{}", serde_json::Value::Array(queries));
}
