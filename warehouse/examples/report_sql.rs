//! Prints the roadmap report's queries as JSON (`[{"name", "sql"}]`), for
//! the check that runs each on current ClickHouse (tests/python/test_chdb.py).

fn main() {
    let mut queries: Vec<serde_json::Value> = warehouse::report::QUERIES
        .iter()
        .map(|(name, sql)| serde_json::json!({ "name": name, "sql": sql }))
        .collect();
    // The trend query is the cookbook's, bound to a week.
    let trends = warehouse::report::trends_sql(time::macros::date!(2026 - 11 - 30))
        .expect("the cookbook's trend query binds");
    queries.push(serde_json::json!({ "name": "trends", "sql": trends }));
    println!("{}", serde_json::Value::Array(queries));
}
