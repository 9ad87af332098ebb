//! Whom the reporter trusts over HTTPS, and what it presents.
//!
//! The edge's certificate is checked by the operating system's verifier
//! (`rustls-platform-verifier`): on Windows the machine's certificate
//! store, where Group Policy installs an organisation's CA, with Windows'
//! own chain building; elsewhere the system's CA bundle. The CAs in
//! `ca_file` are trusted besides. `client_cert_file` and `client_key_file`
//! are presented when the edge asks for a client certificate (mutual TLS).
//!
//! The files are read once, with the configuration, so that a wrong path or
//! a file that holds no certificate is a configuration error.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls_platform_verifier::Verifier;

/// The TLS settings of the reporter's HTTP client, ready to use.
#[derive(Clone)]
pub struct Tls(Arc<ClientConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// The system's trust plus the CAs in `ca_file`, presenting the
    /// certificate chain and key of `client` (`(cert_file, key_file)`, both
    /// PEM) when the edge asks for one. The error names the file at fault.
    pub fn load(ca_file: Option<&Path>, client: Option<(&Path, &Path)>) -> Result<Tls, String> {
        let extra_roots = match ca_file {
            Some(path) => certificates("ca_file", path)?,
            None => Vec::new(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Verifier::new_with_extra_roots(extra_roots, Arc::clone(&provider))
            .map_err(|e| format!("the system's certificate verifier: {e}"))?;
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            // Not dangerous: the platform's verifier, plus `ca_file`.
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match client {
            Some((cert_file, key_file)) => {
                let chain = certificates("client_cert_file", cert_file)?;
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                    format!(
                        "client_key_file {}: no private key: {e}",
                        key_file.display()
                    )
                })?;
                // rustls checks that the key is the certificate's.
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "client_cert_file {} with client_key_file {}: {e}",
                        cert_file.display(),
                        key_file.display()
                    )
                })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Tls(Arc::new(config)))
    }

    /// The configuration for `reqwest::ClientBuilder::use_preconfigured_tls`.
    pub(crate) fn client_config(&self) -> ClientConfig {
        (*self.0).clone()
    }
}

/// Every certificate of the PEM file at `path`; at least one.
fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let said = |e: &dyn std::fmt::Display| format!("{key} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| said(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| said(&e))?;
    if certs.is_empty() {
        return Err(said(&"no PEM certificate in it"));
    }
    Ok(certs)
}

/// What a failed connection says about TLS, for a person to act on: the
/// edge's certificate is not trusted, or the edge wants a client
/// certificate and got none it accepts.
pub(crate) fn hint(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(error);
    while let Some(e) = next {
        match rustls_error(e) {
            Some(rustls::Error::InvalidCertificate(_)) => {
                return Some(
                    "the edge's certificate is not trusted: its CA must be in the machine's \
                     certificate store or in ca_file, and its name must match the endpoint",
                );
            }
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
                | rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::UnknownCA
                | rustls::AlertDescription::CertificateUnknown,
            )) => {
                return Some(
                    "the edge refused this machine's client certificate, or wants one: \
                     set client_cert_file and client_key_file",
                );
            }
            _ => {}
        }
        next = e.source();
    }
    None
}

/// The rustls error `error` is, or wraps in `io::Error`s (whose `source`
/// skips what they wrap).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut error = error;
    loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        error = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}
