//! The ClickHouse HTTP client both services build, over `http://` or
//! `https://`.
//!
//! In: the server's URL (set on the client by the caller) and, for a server
//! whose certificate comes from an organisation's own CA, a [`CaFile`].
//! Out: a `clickhouse::Client` whose connections speak TLS when the URL says
//! `https://`, trusting the system's CA bundle plus the CAs in the file.
//!
//! The client is the `clickhouse` crate's own, on a hyper client built here
//! with rustls (ring) and the crate's pool defaults: the crate's built-in TLS
//! features trust only the system's (or Mozilla's) roots and take no CA
//! file. The CA file is read once, with the configuration, so a wrong path or
//! a file without a certificate is a configuration error, not a failed query.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use serde::{Deserialize, Deserializer};

/// Idle connections are dropped before the server's keep-alive ends
/// (3 s by default in ClickHouse), as the `clickhouse` crate's own client does.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The CAs of a PEM file, trusted for the ClickHouse server's certificate
/// besides the system's. In configuration it is the file's path
/// (`ca_file = "/etc/pki/org-ca.pem"`); the file is read when the
/// configuration is.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    certificates: Arc<[CertificateDer<'static>]>,
}

impl CaFile {
    /// Reads every certificate of the PEM file at `path`; a file without one
    /// is an error.
    pub fn read(path: impl Into<PathBuf>) -> Result<CaFile, String> {
        let path = path.into();
        let said = |e: &dyn fmt::Display| format!("ca_file {}: {e}", path.display());
        let certificates: Vec<_> = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| said(&e))?;
        if certificates.is_empty() {
            return Err(said(&"holds no PEM certificate"));
        }
        Ok(CaFile {
            path,
            certificates: certificates.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaFile({})", self.path.display())
    }
}

impl<'de> Deserialize<'de> for CaFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CaFile::read(PathBuf::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A client with no URL yet, for `http://` and `https://` servers alike:
/// certificates are checked against the system's CAs and those of `ca_file`.
/// Each call has a pool of connections of its own.
pub fn client(ca_file: Option<&CaFile>) -> clickhouse::Client {
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca_file))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let hyper = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector);
    clickhouse::Client::with_http_client(hyper)
}

fn tls_config(ca_file: Option<&CaFile>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::warn!(%error, "reading the system's CA certificates");
    }
    roots.add_parsable_certificates(system.certs);
    if let Some(ca_file) = ca_file {
        let (added, ignored) =
            roots.add_parsable_certificates(ca_file.certificates.iter().cloned());
        if ignored > 0 {
            tracing::warn!(path = %ca_file.path.display(), added, ignored,
                "certificates of ca_file that are no CA certificate rustls can use");
        }
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
