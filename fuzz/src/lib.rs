//! Shared by the fuzz targets: the parsers they exercise that live in
//! crates too heavy to build here.
//!
//! The `ingest` crate links librdkafka, whose build neither takes the
//! sanitizer flags of a fuzz build nor fits its time budget; the reporter
//! brings an HTTP client and a command line. None of that is needed to fuzz
//! a parser, so the files that hold them are compiled here from their own
//! source, unchanged: ingest's `body.rs`, `error.rs` and `validate.rs` (with
//! `validate/fast.rs`), and the reporter's `wer.rs`. They may use each other
//! and outside crates, but nothing else of their crates; a change that does
//! breaks the fuzz build (`scripts/fuzz`), not the service.

#[allow(dead_code, unused_imports)]
#[path = "../../ingest/src"]
pub mod ingest {
    pub mod body;
    pub mod error;
    pub mod validate;
}

/// Where the included files find `crate::error::ApiError`.
pub use ingest::error;

#[path = "../../reporter/src/wer.rs"]
pub mod wer;
