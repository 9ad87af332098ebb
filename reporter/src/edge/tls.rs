//! Whom the reporter trusts over HTTPS, and what it presents.
//!
//! The edge's certificate is checked by the operating system's verifier
//! (`rustls-platform-verifier`): on Windows the machine's certificate
//! store, where Group Policy installs an organisation's CA, with Windows'
//! own chain building; elsewhere the system's CA bundle. A certificate the
//! system does not trust is accepted if it chains to a CA of `ca_file`
//! (checked by rustls' WebPKI verifier: the system's verifier with extra
//! roots would need a Windows chain engine of its own, which older
//! Windows builds and Wine refuse). `client_cert_file` and
//! `client_key_file` are presented when the edge asks for a client
//! certificate (mutual TLS).
//!
//! The files are read once, with the configuration, so that a wrong path or
//! a file that holds no certificate is a configuration error.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let system = Verifier::new(Arc::clone(&provider))
            .map_err(|e| format!("the system's certificate verifier: {e}"));
        let organisation = match ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates("ca_file", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                }
                let verifier = WebPkiServerVerifier::builder_with_provider(
                    roots.into(),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                Some(verifier)
            }
            None => None,
        };
        // A machine without system CAs (a bare Linux image) can still
        // trust `ca_file`.
        let verifier = match (system, organisation) {
            (Ok(system), organisation) => Either {
                system: Some(system),
                organisation,
                algorithms: provider.signature_verification_algorithms,
            },
            (Err(_), Some(organisation)) => Either {
                system: None,
                organisation: Some(organisation),
                algorithms: provider.signature_verification_algorithms,
            },
            (Err(e), None) => return Err(e),
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            // Not dangerous: the system's verifier, or `ca_file`'s.
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

/// Trusts what the system trusts, or what chains to `ca_file`.
#[derive(Debug)]
struct Either {
    system: Option<Verifier>,
    organisation: Option<Arc<WebPkiServerVerifier>>,
    /// The signature algorithms of the crypto provider (both verifiers'),
    /// for the handshake's signatures.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Either {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let by_system = self.system.as_ref().map(|system| {
            system.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        });
        match (by_system, &self.organisation) {
            (Some(Ok(verified)), _) => Ok(verified),
            (_, Some(organisation)) => {
                organisation.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            (Some(Err(e)), None) => Err(e),
            (None, None) => Err(rustls::Error::General("no certificate verifier".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
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
