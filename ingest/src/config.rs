//! Ingest configuration, read from a TOML file (see `ingest/ingest.example.toml`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pipeline::KafkaConfig;
use schemas::Consent;
use serde::Deserialize;

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
    pub machine_id_key: String,
    #[serde(default)]
    pub limits: Limits,
    /// The organisations (agencies) allowed to send, with their tokens.
    #[serde(default, rename = "organisation")]
    pub organisations: Vec<Organisation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    pub reports: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            reports: schemas::topics::REPORTS.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted body of one report, in bytes.
    pub max_body_bytes: usize,
    /// How far in the future `sent_at` may be, in seconds.
    pub max_clock_skew_secs: u64,
    /// How long a request waits for Kafka's acknowledgement, in milliseconds.
    pub delivery_timeout_ms: u64,
    /// How long in-flight requests get to finish on shutdown, in seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_clock_skew_secs: 24 * 3600,
            delivery_timeout_ms: 10_000,
            shutdown_grace_secs: 20,
        }
    }
}

impl Limits {
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_ms)
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
    #[serde(default, rename = "token")]
    pub tokens: Vec<Token>,
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks what the types cannot: key length, token hashes, unique ids.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.machine_id_key.len() < 32 {
            return invalid("machine_id_key must be at least 32 characters".into());
        }
        let mut ids = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
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

    fn config(orgs: &str) -> String {
        format!(
            "machine_id_key = \"0123456789abcdef0123456789abcdef\"\n\
             [kafka]\nbrokers = \"127.0.0.1:9092\"\n{orgs}"
        )
    }

    #[test]
    fn parses_organisations_and_defaults() {
        let text = config(&format!(
            "[[organisation]]\nid = \"energy\"\nname = \"Grid\"\nconsent_cap = \"optional\"\n\
             [[organisation.token]]\nsha256 = \"{HASH}\"\nlabel = \"site a\"\n"
        ));
        let config = Config::from_toml(&text).expect("valid");
        assert_eq!(config.organisations[0].consent_cap, Consent::Optional);
        assert_eq!(config.organisations[0].tokens[0].sha256, HASH);
        assert_eq!(config.limits.max_body_bytes, 1024 * 1024);
        assert_eq!(config.topics.reports, schemas::topics::REPORTS);
    }

    #[test]
    fn rejects_short_keys_bad_hashes_and_unknown_fields() {
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
        let unknown = config("colour = \"blue\"\n");
        assert!(matches!(
            Config::from_toml(&unknown),
            Err(ConfigError::Parse(_))
        ));
    }
}
