//! The warehouse jobs: everything done with the ClickHouse tables apart from
//! writing the stream into them (that is the processor's).
//!
//! ```text
//!  ClickHouse tables (written by the processor)
//!    ├─▶ report       roadmap report: one HTML page + CSV per table
//!    ├─▶ analytics    crash regressions by build order ─▶ crash_regressions_runs
//!    ├─▶ retention    expired partitions dropped, raw by day, aggregates by month
//!    └─▶ cookbook     the analysts' queries (schemas/queries/) ─▶ TSV
//!  migrate: schemas/migrations/ not yet recorded ─▶ DDL ─▶ schema_migrations
//!  schedule: retention and regressions on their intervals (`telemetry-admin serve`)
//! ```
//!
//! In: a [`processor::Store`] (the same connection the processor makes,
//! fitted to the server's version) and the `[clickhouse]`, `[retention]` and
//! `[analytics]` sections of the processor's configuration ([`Settings`]).
//! Out: files, rows of `crash_regressions_runs` and `analytics_runs`,
//! dropped partitions, and TSV.
//!
//! Migrations are applied here ([`migrate`]): by `telemetry-admin migrate`,
//! run before a new build rolls out, and by [`serve`] when it connects. The
//! processor never migrates: it checks that its database has every
//! migration of its build and waits, not ready, until it has.
//! `telemetry-admin` (`src/main.rs`) is the command line over all of this.

pub mod analytics;
pub mod cookbook;
pub mod metrics;
pub mod migrate;
pub mod report;
pub mod retention;
mod schedule;

use processor::config::{AnalyticsConfig, ClickHouseConfig, RetentionConfig};

pub use schedule::serve;

/// What the jobs read of the processor's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub clickhouse: ClickHouseConfig,
    pub retention: RetentionConfig,
    pub analytics: AnalyticsConfig,
}

impl From<processor::Config> for Settings {
    fn from(config: processor::Config) -> Self {
        Settings {
            clickhouse: config.clickhouse,
            retention: config.retention,
            analytics: config.analytics,
        }
    }
}
