//! Ingest configuration, read from a TOML file (`config/ingest.local.toml` is
//! a complete example).
//!
//! The organisations, rate limits and scrub rules can be changed while the
//! service runs: on SIGHUP, or when the file's modification time changes, the
//! file is read again and, if valid, takes effect for the next request. The
//! rest (addresses, Kafka, spool, limits, the machine-id key) is read once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline::KafkaConfig;

use crate::privacy::MachineIdHash;
pub use crate::tls::TlsSettings;
use schemas::{Consent, ReportKind};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the binary binds (`serve` takes a bound listener instead).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: Topics,
    /// Secret key of the HMAC that replaces machine ids. One per deployment;
    /// at least 32 characters. Changing it changes every machine's hash.
    /// A secret: inline, `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(deserialize_with = "pipeline::config::secret")]
    pub machine_id_key: String,
    /// The keyed hash: `hmac-sha256` (the default) or `hmac-sm3`. Changing
    /// it changes every machine's hash, as changing the key does.
    #[serde(default)]
    pub machine_id_hash: MachineIdHash,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// Token buckets for a machine's rights (`/v1/machines/erase` and
    /// `/export`), apart from its reports': each erasure rewrites parts of
    /// every table that names the machine, so a machine, or a token, that
    /// asks again and again must not load ClickHouse for everyone.
    #[serde(default = "RateLimits::rights")]
    pub rights_limits: RateLimits,
    #[serde(default)]
    pub dedup: Dedup,
    /// Without a spool, reports Kafka cannot take are refused with 503.
    #[serde(default)]
    pub spool: Option<SpoolSettings>,
    /// Where `POST /v1/machines/export` reads what is stored about a
    /// machine; without it, exports answer 503 `export_unavailable`.
    #[serde(default)]
    pub warehouse: Option<WarehouseSettings>,
    #[serde(default)]
    pub scrub: ScrubSettings,
    /// Serve HTTPS with these files (read again when they change).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// How often the file is checked for changes, in milliseconds; 0 turns
    /// the check off (SIGHUP still reloads).
    #[serde(default = "default_reload_interval")]
    pub reload_interval_ms: u64,
    /// The organisations (agencies) allowed to send, with their tokens.
    #[serde(default, rename = "organisation")]
    pub organisations: Vec<Organisation>,
    /// The file this configuration was read from, for reloading.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub reports: String,
    pub outcomes: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            reports: schemas::topics::REPORTS.to_string(),
            outcomes: schemas::topics::OUTCOMES.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest body of one report, in bytes, after decompression.
    pub max_body_bytes: usize,
    /// Largest body of a batch, in bytes, after decompression.
    pub max_batch_bytes: usize,
    /// Most reports in one batch.
    pub max_batch_reports: usize,
    /// Deepest nesting of JSON arrays and objects in a report.
    pub max_json_depth: usize,
    /// How far in the future `sent_at` may be, in seconds.
    pub max_clock_skew_secs: u64,
    /// How long a request waits for Kafka before its reports go to the
    /// spool (or, without a spool, are refused), in milliseconds.
    pub delivery_timeout_ms: u64,
    /// Time a client gets to send a request's headers, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Time a client gets to send a request's body, in milliseconds.
    pub body_read_timeout_ms: u64,
    /// Open connections at most; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Reports being handled at once at most; beyond that, 503.
    pub max_in_flight: usize,
    /// Bytes of request bodies (as received, and inflated) held at once at
    /// most, over all requests; a request reserves its share before it
    /// reads its body, and beyond the budget it is refused at once (503
    /// `overloaded`). At least twice `max_batch_bytes`, so that one
    /// compressed batch of the largest size always fits.
    pub max_bytes_in_flight: u64,
    /// How long in-flight requests get to finish on shutdown, in seconds.
    pub shutdown_grace_secs: u64,
    /// On shutdown, how long `/readyz` answers 503 while connections are
    /// still taken, so that load balancers stop sending first, in
    /// milliseconds.
    pub drain_delay_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_batch_bytes: 10 * 1024 * 1024,
            max_batch_reports: 500,
            max_json_depth: 16,
            max_clock_skew_secs: 24 * 3600,
            delivery_timeout_ms: 5_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 10_000,
            max_in_flight: 4_096,
            max_bytes_in_flight: 256 * 1024 * 1024,
            shutdown_grace_secs: 20,
            drain_delay_ms: 0,
        }
    }
}

impl Limits {
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_ms)
    }
}

/// Token buckets: each machine and each organisation may send `*_per_second`
/// reports on average and `*_burst` at once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub machine_per_second: f64,
    pub machine_burst: f64,
    pub organisation_per_second: f64,
    pub organisation_burst: f64,
}

impl RateLimits {
    /// The defaults of `[rights_limits]`: a machine may ask once a minute
    /// after a burst of 5, an organisation 10 times a second after 1,000
    /// (a fleet decommissioned at once).
    pub fn rights() -> Self {
        RateLimits {
            machine_per_second: 1.0 / 60.0,
            machine_burst: 5.0,
            organisation_per_second: 10.0,
            organisation_burst: 1_000.0,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            machine_per_second: 1.0,
            machine_burst: 60.0,
            organisation_per_second: 5_000.0,
            organisation_burst: 20_000.0,
        }
    }
}

/// The edge remembers recently accepted report ids and answers a retry of
/// one without sending it again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dedup {
    pub window_secs: u64,
    /// Ids remembered at most. Each takes 46.6 bytes once the cache is
    /// full (its 32-byte key and time in a ring, its place in an index;
    /// both allocated for the capacity at start, resident as they fill):
    /// the default 200,000 is 9.3 MB of ingest's memory (bench/RESULTS.md,
    /// B5), and covers the window at 333 accepted reports/s. 0 turns the
    /// cache off.
    pub capacity: usize,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            window_secs: 600,
            capacity: 200_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSettings {
    pub dir: PathBuf,
    #[serde(default = "default_spool_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

/// A read-only ClickHouse account for exports.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseSettings {
    /// e.g. `http://127.0.0.1:8123` or `https://…`
    pub url: String,
    /// PEM CAs trusted for an `https://` server besides the system's.
    #[serde(default)]
    pub ca_file: Option<pipeline::CaFile>,
    pub database: String,
    #[serde(default = "default_warehouse_user")]
    pub user: String,
    /// A secret: inline, `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(default, deserialize_with = "pipeline::config::secret")]
    pub password: String,
}

impl std::fmt::Debug for WarehouseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseSettings")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("database", &self.database)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn default_warehouse_user() -> String {
    "default".into()
}

/// Rules that remove personal data from free text and stack frames.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubSettings {
    /// Apply the built-in rules (e-mail, IPv4, IPv6, user paths, MAC
    /// addresses, phone numbers) before the configured ones.
    pub default_rules: bool,
    #[serde(rename = "rule")]
    pub rules: Vec<scrub::Rule>,
}

impl Default for ScrubSettings {
    fn default() -> Self {
        ScrubSettings {
            default_rules: true,
            rules: Vec::new(),
        }
    }
}

impl ScrubSettings {
    pub fn all_rules(&self) -> Vec<scrub::Rule> {
        let mut rules = if self.default_rules {
            scrub::default_rules()
        } else {
            Vec::new()
        };
        rules.extend(self.rules.iter().cloned());
        rules
    }
}

/// An organisation (agency) and its enrollment tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    /// Stable id, stored on every report.
    pub id: String,
    pub name: String,
    /// The highest consent level the organisation allows its machines.
    pub consent_cap: Consent,
    /// Report types the organisation has switched off (`crash`,
    /// `feature_request`, `feedback`, `heartbeat`).
    #[serde(default, deserialize_with = "report_kinds")]
    pub disabled_types: Vec<ReportKind>,
    /// Least time between two reports of one machine that clients should
    /// keep, in seconds; published by `GET /v1/policy`.
    #[serde(default)]
    pub min_interval_secs: u64,
    #[serde(default, rename = "token")]
    pub tokens: Vec<Token>,
}

impl Organisation {
    pub fn allows_type(&self, kind: ReportKind) -> bool {
        !self.disabled_types.contains(&kind)
    }
}

fn report_kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ReportKind>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|name| {
            ReportKind::ALL
                .into_iter()
                .find(|k| k.as_str() == name)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown report type {name:?}")))
        })
        .collect()
}

/// An enrollment token, stored as the SHA-256 of its text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
    /// Where the token was handed out; for operators.
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub revoked: bool,
}

pub use pipeline::config::ConfigError;

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_reload_interval() -> u64 {
    2_000
}

fn default_spool_bytes() -> u64 {
    1024 * 1024 * 1024
}

fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = pipeline::config::from_toml(text)?;
        config.check()?;
        Ok(config)
    }

    /// Reads and checks the file, remembering it for reloads.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = pipeline::config::load(path)?;
        config.check()?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Checks what the types cannot: key length, token hashes, unique ids,
    /// limits that make sense, rules that compile.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.machine_id_key.len() < 32 {
            return invalid("machine_id_key must be at least 32 characters".into());
        }
        let l = &self.limits;
        if l.max_body_bytes == 0 || l.max_batch_bytes < l.max_body_bytes {
            return invalid("limits: need 0 < max_body_bytes <= max_batch_bytes".into());
        }
        if l.max_batch_reports == 0 || l.max_in_flight == 0 || l.max_connections == 0 {
            return invalid("limits: counts must be at least 1".into());
        }
        if l.max_bytes_in_flight < 2 * l.max_batch_bytes as u64 {
            return invalid("limits: need max_bytes_in_flight >= 2 * max_batch_bytes".into());
        }
        for (name, r) in [
            ("rate_limits", &self.rate_limits),
            ("rights_limits", &self.rights_limits),
        ] {
            let rates = [
                r.machine_per_second,
                r.machine_burst,
                r.organisation_per_second,
                r.organisation_burst,
            ];
            if rates.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return invalid(format!("{name}: every rate and burst must be positive"));
            }
        }
        scrub::Scrubber::new(&self.scrub.all_rules())
            .map_err(|e| ConfigError::Invalid(format!("scrub: {e}")))?;
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        for org in &self.organisations {
            if org.id.is_empty() || !ids.insert(org.id.as_str()) {
                return invalid(format!("organisation id {:?} is empty or repeated", org.id));
            }
            for token in &org.tokens {
                let hex_ok = token.sha256.len() == 64
                    && token
                        .sha256
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !hex_ok {
                    return invalid(format!(
                        "organisation {}: token sha256 must be 64 lower-case hex digits",
                        org.id
                    ));
                }
                if !hashes.insert(token.sha256.as_str()) {
                    return invalid(format!("organisation {}: token listed twice", org.id));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn config(rest: &str) -> String {
        format!(
            "machine_id_key = \"0123456789abcdef0123456789abcdef\"\n{rest}\n\
             [kafka]\nbrokers = \"127.0.0.1:9092\"\n"
        )
    }

    #[test]
    fn parses_organisations_and_defaults() {
        let text = config(&format!(
            "[[organisation]]\nid = \"energy\"\nname = \"Grid\"\nconsent_cap = \"optional\"\n\
             disabled_types = [\"feedback\"]\nmin_interval_secs = 60\n\
             [[organisation.token]]\nsha256 = \"{HASH}\"\nlabel = \"site a\"\n"
        ));
        let config = Config::from_toml(&text).expect("valid");
        let org = &config.organisations[0];
        assert_eq!(org.consent_cap, Consent::Optional);
        assert_eq!(org.tokens[0].sha256, HASH);
        assert!(!org.allows_type(ReportKind::Feedback));
        assert!(org.allows_type(ReportKind::Crash));
        assert_eq!(config.limits.max_body_bytes, 1024 * 1024);
        assert_eq!(config.limits.max_batch_reports, 500);
        assert_eq!(config.topics.reports, schemas::topics::REPORTS);
        assert!(config.spool.is_none());
        assert!(config.scrub.all_rules().len() >= 6);
    }

    #[test]
    fn the_sample_configurations_load() {
        for text in [
            include_str!("../../config/ingest.local.toml"),
            include_str!("../../config/compose/ingest.toml"),
        ] {
            let config = Config::from_toml(text).expect("sample configuration is valid");
            assert_eq!(config.organisations.len(), 2);
            assert!(config.spool.is_some());
        }
    }

    #[test]
    fn the_machine_id_hash_is_chosen_by_name() {
        let default = Config::from_toml(&config("")).expect("parses");
        assert_eq!(default.machine_id_hash, MachineIdHash::HmacSha256);
        let sm3 = Config::from_toml(&config("machine_id_hash = \"hmac-sm3\"")).expect("parses");
        assert_eq!(sm3.machine_id_hash, MachineIdHash::HmacSm3);
        assert!(Config::from_toml(&config("machine_id_hash = \"md5\"")).is_err());
    }

    #[test]
    fn rejects_what_cannot_work() {
        let short = "machine_id_key = \"short\"\n[kafka]\nbrokers = \"x\"\n";
        assert!(matches!(
            Config::from_toml(short),
            Err(ConfigError::Invalid(_))
        ));
        let bad_hash = config(
            "[[organisation]]\nid = \"a\"\nname = \"A\"\nconsent_cap = \"required\"\n\
             [[organisation.token]]\nsha256 = \"plain-token\"\n",
        );
        assert!(matches!(
            Config::from_toml(&bad_hash),
            Err(ConfigError::Invalid(_))
        ));
        let bad_type = config(
            "[[organisation]]\nid = \"a\"\nname = \"A\"\nconsent_cap = \"required\"\n\
             disabled_types = [\"screenshots\"]\n",
        );
        assert!(matches!(
            Config::from_toml(&bad_type),
            Err(ConfigError::Parse(_))
        ));
        let bad_rule =
            config("[[scrub.rule]]\nname = \"x\"\npattern = \"(unclosed\"\nreplacement = \"\"\n");
        assert!(matches!(
            Config::from_toml(&bad_rule),
            Err(ConfigError::Invalid(_))
        ));
        let zero_rate = config("[rate_limits]\nmachine_per_second = 0.0\n");
        assert!(matches!(
            Config::from_toml(&zero_rate),
            Err(ConfigError::Invalid(_))
        ));
        let unknown = config("colour = \"blue\"\n");
        assert!(matches!(
            Config::from_toml(&unknown),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn secrets_come_from_files_and_the_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("machine_id_key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef-from-file\n").expect("write");
        let sasl = dir.path().join("sasl");
        std::fs::write(&sasl, "hunter2\n").expect("write");
        let text = format!(
            "machine_id_key = {{ file = {key:?} }}\n\
             [kafka]\nbrokers = \"127.0.0.1:9092\"\n\
             [kafka.properties]\n\"sasl.password\" = {{ file = {sasl:?} }}\n\
             [warehouse]\nurl = \"http://127.0.0.1:8123\"\ndatabase = \"telemetry\"\n\
             password = {{ env = \"PATH\" }}\n"
        );
        let config = Config::from_toml(&text).expect("parses");
        assert_eq!(
            config.machine_id_key,
            "0123456789abcdef0123456789abcdef-from-file"
        );
        assert_eq!(config.kafka.properties["sasl.password"], "hunter2");
        let path = std::env::var("PATH").expect("PATH is set");
        assert_eq!(config.warehouse.expect("warehouse").password, path);

        let missing = "machine_id_key = { file = \"/nonexistent/key\" }\n\
                       [kafka]\nbrokers = \"x\"\n";
        let error = Config::from_toml(missing)
            .expect_err("missing file")
            .to_string();
        assert!(error.contains("machine_id_key = {"), "{error}");
        assert!(error.contains("/nonexistent/key"), "{error}");
    }
}
