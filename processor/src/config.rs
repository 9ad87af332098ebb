//! Processor configuration, read from a TOML file (see
//! `processor/processor.example.toml`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pipeline::KafkaConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    /// Consumer group; every processor instance of one deployment shares it.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// This instance's static member id in the group (`group.instance.id`),
    /// unique per instance and kept across restarts: a restarted instance
    /// takes its partitions back without a rebalance, if it returns within
    /// the session timeout. None by default (dynamic membership).
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub topics: Topics,
    pub clickhouse: ClickHouseConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How crash signatures are formed.
    #[serde(default)]
    pub grouping: grouping::SignatureConfig,
    /// How feature requests are clustered.
    #[serde(default)]
    pub clustering: clustering::ClusterConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub analytics: AnalyticsConfig,
    /// Where to serve `/metrics` and `/healthz`; none by default.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

/// How long data is kept. Old partitions are dropped on a schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days the raw tables (one row per report or event) keep.
    pub raw_days: u32,
    /// Days the aggregate tables keep (whole months are dropped).
    pub aggregate_days: u32,
    /// How often old partitions are looked for, in seconds; 0 turns it off.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            raw_days: 90,
            aggregate_days: 730,
            interval_secs: 3600,
        }
    }
}

/// The scheduled computations: regressions, and refreshing the clustering
/// index with requests other processor instances clustered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Seconds between runs; 0 turns them off.
    pub interval_secs: u64,
    /// Days of crash data a regression run looks at.
    pub window_days: u32,
    /// A signature first seen in a build is a regression from this many
    /// distinct machines on.
    pub new_signature_min_machines: u64,
    /// A signature's rate per 1,000 active machines must grow by this factor
    /// over the previous build to count as a regression...
    pub rate_increase_factor: f64,
    /// ...and reach this many distinct machines.
    pub rate_increase_min_machines: u64,
    /// Seconds between looks at what other processor instances clustered,
    /// so that all instances give a paraphrase the same cluster; 0 turns it
    /// off (one instance needs none).
    pub cluster_refresh_secs: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            interval_secs: 300,
            window_days: 30,
            new_signature_min_machines: 3,
            rate_increase_factor: 1.5,
            rate_increase_min_machines: 3,
            cluster_refresh_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub reports: String,
    /// What the edge refused; written to the `outcomes` table.
    pub outcomes: String,
    pub dead_letters: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            reports: schemas::topics::REPORTS.to_string(),
            outcomes: schemas::topics::OUTCOMES.to_string(),
            dead_letters: schemas::topics::DEAD_LETTERS.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123` or `https://…`.
    pub url: String,
    /// PEM CAs trusted for an `https://` server besides the system's.
    #[serde(default)]
    pub ca_file: Option<pipeline::CaFile>,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default = "default_user")]
    pub user: String,
    /// A secret: inline, `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(default, deserialize_with = "pipeline::config::secret")]
    pub password: String,
    /// The servers' `remote_servers` cluster whose replicas hold the tables;
    /// empty for a single server. Named, the migrations make replicated
    /// tables `ON CLUSTER` ([`schemas::replicated`]).
    #[serde(default)]
    pub cluster: String,
    /// Other replicas' HTTP interfaces, tried in turn after `url` when a
    /// write fails for a reason that is not the rows' (a stopped server, a
    /// network fault): a replica stop is then not an outage. Each must hold
    /// the same tables, so `cluster` must be named.
    #[serde(default)]
    pub fallback_urls: Vec<String>,
    /// How long one request of the stream (an insert, a look-up of stored
    /// ids, an erasure's statements, a refresh of the clustering index) may
    /// take before it counts as failed: a server that takes connections but
    /// never answers then fails like a stopped one, and the writer retries,
    /// on the next of `fallback_urls` if there is one.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Replicas that must have an insert before it is acknowledged; 0 (the
    /// default) for ClickHouse's own answer once one has it. Above 0, reads
    /// ask for sequential consistency too, so a look-up of stored ids sees
    /// every insert acknowledged on any replica, or fails and is retried.
    #[serde(default)]
    pub insert_quorum: u32,
}

impl ClickHouseConfig {
    pub fn local(url: impl Into<String>, database: impl Into<String>) -> Self {
        ClickHouseConfig {
            url: url.into(),
            ca_file: None,
            database: database.into(),
            user: default_user(),
            password: String::new(),
            cluster: String::new(),
            fallback_urls: Vec::new(),
            request_timeout_ms: default_request_timeout_ms(),
            insert_quorum: 0,
        }
    }
}

/// When a batch of rows is written: at `max_rows` or `max_age_ms` after its
/// first row, whichever comes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_rows: usize,
    pub max_age_ms: u64,
    /// First pause after a failed insert; doubles up to `max_backoff_ms`.
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How often stored offsets are committed to Kafka, in milliseconds.
    /// Messages written but not yet committed are read again after a crash
    /// and then recognised as stored.
    pub commit_interval_ms: u64,
    /// How often the group's lag is read from the brokers for `/metrics`
    /// (`processor_partition_lag_messages` and the age of the oldest
    /// uncommitted message), in milliseconds.
    pub lag_interval_ms: u64,
    /// How long the writer waits for an erasure's deletions to be done
    /// (the machine's rows gone) before it records the erasure; past it
    /// the deletions stay queued in ClickHouse, the erasure is not
    /// recorded, and the writer goes on with the next batch.
    pub erasure_wait_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: 10_000,
            max_age_ms: 1_000,
            min_backoff_ms: 100,
            max_backoff_ms: 30_000,
            commit_interval_ms: 1_000,
            lag_interval_ms: 10_000,
            erasure_wait_ms: 60_000,
        }
    }
}

impl BatchConfig {
    pub fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms)
    }
}

fn default_group() -> String {
    "telemetry-processor".to_string()
}

fn default_database() -> String {
    "telemetry".to_string()
}

fn default_user() -> String {
    "default".to_string()
}

fn default_request_timeout_ms() -> u64 {
    60_000
}

pub use pipeline::config::ConfigError;

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        pipeline::config::from_toml::<Config>(text)?.checked()
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        pipeline::config::load::<Config>(path)?.checked()
    }

    /// Checks what the types cannot: retention, batch size, a database
    /// name that is safe in SQL.
    fn checked(self) -> Result<Self, ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.retention.raw_days == 0 || self.retention.aggregate_days < self.retention.raw_days {
            return invalid("retention: need 0 < raw_days <= aggregate_days");
        }
        if self.batch.max_rows == 0 {
            return invalid("batch.max_rows must be at least 1");
        }
        if !is_identifier(&self.clickhouse.database) {
            return invalid("clickhouse.database must be letters, digits and underscores");
        }
        if !self.clickhouse.cluster.is_empty() && !is_identifier(&self.clickhouse.cluster) {
            return invalid("clickhouse.cluster must be letters, digits and underscores");
        }
        if self.clickhouse.request_timeout_ms == 0 {
            return invalid("clickhouse.request_timeout_ms must be at least 1");
        }
        if !self.clickhouse.fallback_urls.is_empty() && self.clickhouse.cluster.is_empty() {
            return invalid(
                "clickhouse.fallback_urls name replicas of clickhouse.cluster, which is not set",
            );
        }
        Ok(self)
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_is_left_out() {
        let config = Config::from_toml(
            "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[clickhouse]\nurl = \"http://127.0.0.1:8123\"\n",
        )
        .expect("valid");
        assert_eq!(config.clickhouse.database, "telemetry");
        assert_eq!(config.batch.max_rows, 10_000);
        assert_eq!(config.topics.reports, schemas::topics::REPORTS);
        assert_eq!(config.instance_id, None, "dynamic membership by default");
    }

    #[test]
    fn the_sample_configurations_load() {
        for text in [
            include_str!("../../config/processor.local.toml"),
            include_str!("../../config/compose/processor.toml"),
        ] {
            Config::from_toml(text).expect("sample configuration is valid");
        }
    }

    #[test]
    fn database_names_cannot_carry_sql() {
        let text =
            "[kafka]\nbrokers = \"x\"\n[clickhouse]\nurl = \"http://x\"\ndatabase = \"a; DROP\"\n";
        assert!(matches!(
            Config::from_toml(text),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn a_cluster_is_named_by_an_identifier_and_single_server_is_the_default() {
        let with = |extra: &str| {
            Config::from_toml(&format!(
                "[kafka]\nbrokers = \"x\"\n[clickhouse]\nurl = \"http://x\"\n{extra}"
            ))
        };
        let single = with("").expect("valid");
        assert_eq!(
            (
                single.clickhouse.cluster.as_str(),
                single.clickhouse.insert_quorum
            ),
            ("", 0)
        );
        let replicated = with("cluster = \"telemetry\"\ninsert_quorum = 2\n").expect("valid");
        assert_eq!(replicated.clickhouse.cluster, "telemetry");
        assert_eq!(replicated.clickhouse.insert_quorum, 2);
        let fallback =
            with("cluster = \"telemetry\"\nfallback_urls = [\"http://y\"]\n").expect("valid");
        assert_eq!(fallback.clickhouse.fallback_urls, ["http://y"]);
        assert!(
            matches!(
                with("fallback_urls = [\"http://y\"]\n"),
                Err(ConfigError::Invalid(_))
            ),
            "replicas to fall back on need a cluster"
        );
        assert_eq!(single.clickhouse.request_timeout_ms, 60_000);
        assert!(
            matches!(
                with("request_timeout_ms = 0\n"),
                Err(ConfigError::Invalid(_))
            ),
            "a request needs some time"
        );
        assert!(matches!(
            with("cluster = \"a b\"\n"),
            Err(ConfigError::Invalid(_))
        ));
    }
}
