//! Prints the OpenAPI document ingest serves at `GET /openapi.json`;
//! `tests/python/test_openapi.py` validates it.

fn main() {
    println!("{}", ingest::api::openapi_document());
}
