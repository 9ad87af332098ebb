//! The reporter's configuration: one TOML file, unknown keys are errors.
//!
//! ```toml
//! endpoint = "https://telemetry.example.gov.cn"   # ingest base URL
//! token = "grid-demo-token"                        # enrollment token
//! consent = "required"                             # or "optional"
//! queue_dir = "queue"                              # relative: to this file's folder
//! ca_file = "org-ca.pem"                           # optional: CAs trusted besides the system's
//! client_cert_file = "machine.pem"                 # optional, with client_key_file:
//! client_key_file = "machine.key"                  #   presented to the edge (mutual TLS)
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
//!
//! On Windows the file is `%ProgramData%\Reporter\reporter.toml` unless
//! `--config` or `$REPORTER_CONFIG` names another, and the machine has its
//! say ([`crate::system`]): `Endpoint` and `Token` under
//! `HKLM\SOFTWARE\Policies\Reporter` override the file's (so either may be
//! left out of it), the registry's OS facts fill what `[os]` leaves open,
//! and Group Policy's `AllowTelemetry` can lower the consent
//! ([`crate::consent`]).
//!
//! Over HTTPS the edge's certificate is checked by the operating system
//! (on Windows, the machine's certificate store, where Group Policy
//! installs an organisation's CA) and against `ca_file`; see
//! [`crate::edge::tls`]. The three files' relative paths are taken
//! relative to this file's folder, like `queue_dir`.

use std::path::{Path, PathBuf};

use schemas::Consent;
use serde::Deserialize;

use crate::Error;
use crate::consent::{self, Decision};
use crate::edge::tls::Tls;
use crate::system::{self, Machine};

/// The file read when `--config` is not given and `$REPORTER_CONFIG` is unset
/// (on Windows: `%ProgramData%\Reporter\reporter.toml`).
pub const DEFAULT_PATH: &str = "reporter.toml";

/// Most reports in one request to the batch endpoint.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of ingest, e.g. `https://telemetry.example:8443`; the reporter
    /// posts to `{endpoint}/v1/reports/batch` and reads `{endpoint}/v1/policy`.
    /// May be left out when Group Policy sets it.
    #[serde(default)]
    pub endpoint: String,
    /// The organisation's enrollment token (sent as a bearer token). May be
    /// left out when Group Policy sets it.
    #[serde(default)]
    pub token: String,
    /// The consent level the machine's operator chose.
    pub consent: Consent,
    /// Folder of the queue, the machine id and the import ledger.
    pub queue_dir: PathBuf,
    /// A PEM file of CA certificates trusted for an `https://` endpoint
    /// besides the system's (e.g. the organisation's own CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A PEM certificate chain presented when the edge asks for a client
    /// certificate (mutual TLS); needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// The PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    #[serde(default)]
    pub queue: QueueBounds,
    #[serde(default)]
    pub os: OsSettings,
    #[serde(default)]
    pub flush: FlushSettings,
    /// What the machine says (registry on Windows); not part of the file.
    #[serde(skip)]
    pub machine: Machine,
    /// The TLS settings read from the files above, for an `https://`
    /// endpoint; not part of the file.
    #[serde(skip)]
    pub tls: Option<Tls>,
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

impl OsSettings {
    /// Each fact of `self`, else that of `fallback`.
    pub fn or(&self, fallback: &OsSettings) -> OsSettings {
        let pick = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        OsSettings {
            product: pick(&self.product, &fallback.product),
            version: pick(&self.version, &fallback.version),
            revision: self.revision.or(fallback.revision),
            locale: pick(&self.locale, &fallback.locale),
            arch: pick(&self.arch, &fallback.arch),
        }
    }
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
        Self::from_toml_on(text, Machine::default())
    }

    /// Parses a configuration text on a machine that says `machine`: its
    /// policy endpoint and token override the file's.
    pub fn from_toml_on(text: &str, machine: Machine) -> Result<Config, Error> {
        Self::parse(text, machine, None)
    }

    /// Parses `text`; relative paths are taken relative to `folder`, if
    /// given.
    fn parse(text: &str, machine: Machine, folder: Option<&Path>) -> Result<Config, Error> {
        let mut config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        if let Some(endpoint) = &machine.endpoint {
            config.endpoint.clone_from(endpoint);
        }
        if let Some(token) = &machine.token {
            config.token.clone_from(token);
        }
        config.machine = machine;
        if let Some(folder) = folder {
            for path in [
                Some(&mut config.queue_dir),
                config.ca_file.as_mut(),
                config.client_cert_file.as_mut(),
                config.client_key_file.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                if path.is_relative() && !path.as_os_str().is_empty() {
                    *path = folder.join(&*path);
                }
            }
        }
        config.check()?;
        config.tls = config.load_tls()?;
        Ok(config)
    }

    /// Reads the file at `path` on this machine ([`Machine::read`]); a
    /// relative `queue_dir` (and TLS file) is taken relative to the file's
    /// folder.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, Machine::read(), path.parent())
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Reads the TLS files for an `https://` endpoint (an `http://` one
    /// needs none of them).
    fn load_tls(&self) -> Result<Option<Tls>, Error> {
        if !self.base_url().starts_with("https://") {
            return Ok(None);
        }
        let client = self
            .client_cert_file
            .as_deref()
            .zip(self.client_key_file.as_deref());
        Tls::load(self.ca_file.as_deref(), client)
            .map(Some)
            .map_err(Error::Config)
    }

    /// The file to read: `explicit`, else `$REPORTER_CONFIG`, else
    /// `%ProgramData%\Reporter\reporter.toml` on Windows, else
    /// [`DEFAULT_PATH`].
    pub fn path(explicit: Option<&Path>) -> PathBuf {
        explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("REPORTER_CONFIG").map(PathBuf::from))
            .or_else(|| system::program_data_dir().map(|dir| dir.join(DEFAULT_PATH)))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// The consent in force: the strictest of Group Policy, the file and the
    /// organisation's cap (when known); see [`crate::consent`].
    pub fn consent_decision(&self, organisation: Option<Consent>) -> Decision {
        consent::decide(self.machine.allow_telemetry, self.consent, organisation)
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
            return bad(
                "token is empty (set it in the file, or by Group Policy: Token under \
                 HKLM\\SOFTWARE\\Policies\\Reporter)"
                    .into(),
            );
        }
        if self.queue_dir.as_os_str().is_empty() {
            return bad("queue_dir is empty".into());
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return bad("client_cert_file and client_key_file go together".into());
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

    #[test]
    fn tls_files_are_read_for_https_only_and_named_when_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reporter.toml");
        let https = MINIMAL.replace("http://", "https://");
        let write = |text: &str| std::fs::write(&path, text).unwrap();

        write(&format!("{MINIMAL}ca_file = \"missing.pem\"\n"));
        let config = Config::load(&path).expect("http:// reads no TLS file");
        assert!(config.tls.is_none());
        assert_eq!(config.ca_file, Some(dir.path().join("missing.pem")));

        write(&format!("{https}ca_file = \"missing.pem\"\n"));
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("ca_file") && err.contains("missing.pem"),
            "{err}"
        );

        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        write(&format!("{https}ca_file = \"empty.pem\"\n"));
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");

        let half = format!("{https}client_cert_file = \"machine.pem\"\n");
        let err = Config::from_toml(&half).unwrap_err().to_string();
        assert!(err.contains("client_key_file"), "{err}");
    }

    #[test]
    fn group_policy_sets_endpoint_and_token_and_lowers_consent() {
        let text = "consent = \"optional\"\nqueue_dir = \"queue\"\n";
        assert!(Config::from_toml(text).is_err(), "no endpoint, no token");
        let machine = Machine {
            endpoint: Some("https://telemetry.example".into()),
            token: Some("policy-token".into()),
            allow_telemetry: Some(1),
            ..Machine::default()
        };
        let config = Config::from_toml_on(text, machine.clone()).unwrap();
        assert_eq!(config.base_url(), "https://telemetry.example");
        assert_eq!(config.token, "policy-token");
        let decision = config.consent_decision(None);
        assert_eq!(decision.level, Some(Consent::Required));
        // Policy wins over the file.
        let config = Config::from_toml_on(MINIMAL, machine).unwrap();
        assert_eq!(config.token, "policy-token");
    }
}
