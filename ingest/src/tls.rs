//! HTTPS served by ingest itself, for networks without a proxy that
//! terminates TLS.
//!
//! `[tls]` names a PEM certificate chain and its private key; with
//! `client_ca_file`, every client must present a certificate signed by one
//! of the CAs in it (mutual TLS), and a handshake without one fails.
//!
//! A renewed certificate is taken without a restart: the three files are
//! read again on SIGHUP and every `reload_interval_ms` ([`Triggers`]); when
//! their contents changed and make a valid configuration, every new
//! connection gets it, while open ones keep theirs. Files that do not load
//! together (a certificate written before its key, say) leave the previous
//! configuration in force, and are tried again at the next wake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::reload::{Triggers, Wake};

/// The `[tls]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM: the server's certificate, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: the CAs whose client certificates are accepted; when set, a
    /// client without such a certificate cannot connect.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// A TLS file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("tls.{key} {}: {message}", path.display())]
pub struct TlsError {
    key: &'static str,
    path: PathBuf,
    message: String,
}

/// The bytes of the three files, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// The TLS configuration in force, and how to renew it.
#[derive(Debug)]
pub(crate) struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    loaded: Mutex<Contents>,
}

impl Tls {
    /// Reads the files; any that is missing or wrong is an error.
    pub(crate) fn load(settings: &TlsSettings) -> Result<Tls, TlsError> {
        let contents = read(settings)?;
        let config = server_config(settings, &contents)?;
        Ok(Tls {
            settings: settings.clone(),
            current: RwLock::new(Arc::new(config)),
            loaded: Mutex::new(contents),
        })
    }

    /// An acceptor with the configuration in force now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&current))
    }

    /// Reads the files again; when they changed and load, puts them in
    /// force. `Ok(true)` when they were put in force.
    fn renew(&self) -> Result<bool, TlsError> {
        let contents = read(&self.settings)?;
        if *crate::lock(&self.loaded) == contents {
            return Ok(false);
        }
        let config = server_config(&self.settings, &contents)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
        *crate::lock(&self.loaded) = contents;
        Ok(true)
    }

    /// Renews on SIGHUP and every `interval` until `stop`.
    pub(crate) async fn watch(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut triggers = Triggers::new(interval);
        let mut failing = false;
        while let Some(wake) = triggers.next(&stop).await {
            match self.renew() {
                Ok(true) => {
                    failing = false;
                    tracing::info!(cert_file = %self.settings.cert_file.display(), "tls certificate renewed");
                }
                Ok(false) if wake == Wake::Hangup => {
                    tracing::info!("SIGHUP: tls files unchanged");
                }
                Ok(false) => failing = false,
                // Said once per failing spell, not at every tick.
                Err(error) if !failing || wake == Wake::Hangup => {
                    failing = true;
                    tracing::error!(%error, "tls files not reloaded; the previous certificate stays in force");
                }
                Err(_) => {}
            }
        }
    }
}

fn read(settings: &TlsSettings) -> Result<Contents, TlsError> {
    let client_ca = match &settings.client_ca_file {
        Some(path) => Some(read_file("client_ca_file", path)?),
        None => None,
    };
    Ok(Contents {
        cert: read_file("cert_file", &settings.cert_file)?,
        key: read_file("key_file", &settings.key_file)?,
        client_ca,
    })
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| error(key, path, e))
}

fn error(key: &'static str, path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError {
        key,
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// A server configuration for HTTP/1.1 from the files' `contents`.
fn server_config(settings: &TlsSettings, contents: &Contents) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("cert_file", &settings.cert_file, &contents.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|e| {
        error(
            "key_file",
            &settings.key_file,
            format!("no private key: {e}"),
        )
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| error("cert_file", &settings.cert_file, e))?;
    let builder = match (&settings.client_ca_file, &contents.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client_ca_file", path, pem)? {
                roots
                    .add(cert)
                    .map_err(|e| error("client_ca_file", path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| error("client_ca_file", path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    // rustls checks that the key is the certificate's.
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| error("key_file", &settings.key_file, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate in `pem`; at least one.
fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(key, path, e))?;
    if certs.is_empty() {
        return Err(error(key, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name` and its key, both PEM.
    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn install(settings: &TlsSettings, (cert, key): &(String, String)) {
        std::fs::write(&settings.cert_file, cert).unwrap();
        std::fs::write(&settings.key_file, key).unwrap();
    }

    fn in_force(tls: &Tls) -> Arc<ServerConfig> {
        Arc::clone(&tls.current.read().unwrap())
    }

    #[test]
    fn files_that_do_not_load_together_leave_the_previous_certificate_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            cert_file: dir.path().join("server.pem"),
            key_file: dir.path().join("server.key"),
            client_ca_file: None,
        };
        install(&settings, &pair("first.example"));
        let tls = Tls::load(&settings).expect("loads");
        let first = in_force(&tls);
        assert!(!tls.renew().expect("reads"), "nothing changed");

        // A new certificate whose key is not there yet.
        let (second_cert, second_key) = pair("second.example");
        std::fs::write(&settings.cert_file, &second_cert).unwrap();
        let err = tls.renew().unwrap_err().to_string();
        assert!(err.contains("tls.key_file"), "{err}");
        assert!(Arc::ptr_eq(&first, &in_force(&tls)));
        std::fs::write(&settings.cert_file, "not a certificate").unwrap();
        let err = tls.renew().unwrap_err().to_string();
        assert!(
            err.contains("tls.cert_file") && err.contains("no PEM certificate"),
            "{err}"
        );
        assert!(Arc::ptr_eq(&first, &in_force(&tls)));

        install(&settings, &(second_cert, second_key));
        assert!(tls.renew().expect("loads"));
        assert!(!Arc::ptr_eq(&first, &in_force(&tls)));
        assert!(!tls.renew().expect("reads"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings {
            cert_file: dir.path().join("server.pem"),
            key_file: dir.path().join("server.key"),
            client_ca_file: Some(dir.path().join("clients.pem")),
        };
        install(&settings, &pair("ingest.example"));
        let err = Tls::load(&settings).unwrap_err().to_string();
        assert!(
            err.starts_with("tls.client_ca_file") && err.contains("clients.pem"),
            "{err}"
        );
    }
}
