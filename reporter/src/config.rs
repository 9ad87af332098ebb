//! The reporter's configuration: one TOML file, unknown keys are errors.
//!
//! ```toml
//! endpoint = "https://telemetry.example.gov.cn"   # ingest base URL
//! token = "grid-demo-token"                        # enrollment token
//! consent = "required"                             # or "optional"
//! queue_dir = "C:\\ProgramData\\Reporter\\queue"   # relative: to this file's folder
//!
//! [queue]
//! max_bytes = 67108864                             # 64 MiB
//! max_age_days = 30
//!
//! [os]                                             # all optional; defaults below
//! product = "Windows 10 Enterprise G"
//! version = "10.0.19045"
//! revision = 3570
//! locale = "zh-CN"
//! arch = "x64"
//!
//! [flush]
//! max_seconds = 60
//! batch_size = 100
//! ```

use std::path::{Path, PathBuf};

use schemas::Consent;
use serde::Deserialize;

use crate::Error;

/// The file read when `--config` is not given and `$REPORTER_CONFIG` is unset.
pub const DEFAULT_PATH: &str = "reporter.toml";

/// Most reports in one request to the batch endpoint.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of ingest, e.g. `https://telemetry.example:8443`; the reporter
    /// posts to `{endpoint}/v1/reports/batch` and reads `{endpoint}/v1/policy`.
    pub endpoint: String,
    /// The organisation's enrollment token (sent as a bearer token).
    pub token: String,
    /// The consent level the machine's operator chose.
    pub consent: Consent,
    /// Folder of the queue, the machine id and the import ledger.
    pub queue_dir: PathBuf,
    #[serde(default)]
    pub queue: QueueBounds,
    #[serde(default)]
    pub os: OsSettings,
    #[serde(default)]
    pub flush: FlushSettings,
}

/// How big and how old the queue may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBounds {
    /// Most bytes of queue files on disk; the oldest reports make room.
    pub max_bytes: u64,
    /// Reports queued longer ago than this are dropped; 0 keeps them forever.
    pub max_age_days: u32,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds {
            max_bytes: 64 << 20,
            max_age_days: 30,
        }
    }
}

/// Facts about the operating system that override what the reporter finds.
/// Each `send` flag overrides these in turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OsSettings {
    pub product: Option<String>,
    /// `major.minor.build`; the build number is taken from it.
    pub version: Option<String>,
    pub revision: Option<u32>,
    pub locale: Option<String>,
    pub arch: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlushSettings {
    /// Longest a flush may take, in seconds.
    pub max_seconds: u64,
    /// Reports per request, 1 to 100.
    pub batch_size: usize,
}

impl Default for FlushSettings {
    fn default() -> Self {
        FlushSettings {
            max_seconds: 60,
            batch_size: MAX_BATCH,
        }
    }
}

impl Config {
    /// Parses and checks a configuration text. A relative `queue_dir` stays
    /// relative (to the current folder); [`Config::load`] resolves it.
    pub fn from_toml(text: &str) -> Result<Config, Error> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Reads the file at `path`; a relative `queue_dir` is taken relative to
    /// the file's folder.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config = Self::from_toml(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if config.queue_dir.is_relative()
            && let Some(parent) = path.parent()
        {
            config.queue_dir = parent.join(&config.queue_dir);
        }
        Ok(config)
    }

    /// The file to read: `explicit`, else `$REPORTER_CONFIG`, else
    /// [`DEFAULT_PATH`].
    pub fn path(explicit: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("REPORTER_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        let endpoint = self.endpoint.trim_end_matches('/');
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return bad(format!(
                "endpoint must be an http:// or https:// URL, not {:?}",
                self.endpoint
            ));
        }
        if self.token.trim().is_empty() {
            return bad("token is empty".into());
        }
        if self.queue_dir.as_os_str().is_empty() {
            return bad("queue_dir is empty".into());
        }
        if self.queue.max_bytes < 64 * 1024 {
            return bad("queue.max_bytes must be at least 65536".into());
        }
        if self.flush.batch_size == 0 || self.flush.batch_size > MAX_BATCH {
            return bad(format!("flush.batch_size must be 1 to {MAX_BATCH}"));
        }
        if self.flush.max_seconds == 0 {
            return bad("flush.max_seconds must be at least 1".into());
        }
        Ok(())
    }

    /// The endpoint without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.endpoint.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "endpoint = \"http://127.0.0.1:8080/\"\ntoken = \"t\"\n\
                           consent = \"required\"\nqueue_dir = \"queue\"\n";

    #[test]
    fn minimal_file_gets_defaults() {
        let config = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(config.base_url(), "http://127.0.0.1:8080");
        assert_eq!(config.consent, Consent::Required);
        assert_eq!(config.queue, QueueBounds::default());
        assert_eq!(config.flush.batch_size, 100);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let unknown = format!("{MINIMAL}colour = \"blue\"\n");
        assert!(Config::from_toml(&unknown).is_err());
        let consent = MINIMAL.replace("required", "everything");
        assert!(Config::from_toml(&consent).is_err());
        let batch = format!("{MINIMAL}[flush]\nbatch_size = 500\n");
        let err = Config::from_toml(&batch).unwrap_err().to_string();
        assert!(err.contains("batch_size"), "{err}");
        let url = MINIMAL.replace("http://127.0.0.1:8080/", "127.0.0.1:8080");
        assert!(Config::from_toml(&url).is_err());
    }
}
