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

    /// Why the edge at `url` drops this machine's TLS connections, when a
    /// failed request did not say: one bare handshake with this
    /// configuration, then a read until the edge speaks, closes or
    /// `PROBE_TIME` passes.
    ///
    /// In TLS 1.3 the edge checks a client certificate only after the
    /// client has finished its handshake. Its refusal, an alert, can reach
    /// the HTTP client after it has given the connection up ("connection
    /// was not ready"), and the alert is then lost with the connection.
    /// The probe reads that alert itself.
    pub(crate) async fn probe(&self, url: &reqwest::Url) -> Option<&'static str> {
        // An IPv6 host comes bracketed, as in the URL.
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = url.port_or_known_default()?;
        let name = ServerName::try_from(host.to_string()).ok()?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.0));
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
            let mut stream = match connector.connect(name, tcp).await {
                Ok(stream) => stream,
                Err(e) => return hint(&e),
            };
            let mut byte = [0u8; 1];
            match tokio::io::AsyncReadExt::read(&mut stream, &mut byte).await {
                Err(e) => hint(&e),
                Ok(_) => None,
            }
        };
        tokio::time::timeout(PROBE_TIME, attempt).await.ok()?
    }
}

/// How long [`Tls::probe`] waits for the edge's answer.
const PROBE_TIME: std::time::Duration = std::time::Duration::from_secs(2);

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::RootCertStore;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::server::{ServerConfig, WebPkiClientVerifier};
    use tokio::io::AsyncWriteExt;

    use super::Tls;

    /// A CA's PEM, and a certificate for 127.0.0.1 it issued, with its key.
    fn server_identity() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (ca_pem, cert.der().clone(), key)
    }

    /// Serves TLS 1.3 on a loopback port: each connection finishes its
    /// handshake, if the server lets it, and is closed.
    async fn serve(client_ca: Option<&str>) -> (String, std::path::PathBuf, tempfile::TempDir) {
        let (ca_pem, cert, key) = server_identity();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap();
        let builder = match client_ca {
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    roots.add(cert.unwrap()).unwrap();
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(vec![cert], key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/v1/policy", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let _ = stream.shutdown().await;
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        (url, ca_file, dir)
    }

    #[tokio::test]
    async fn a_probe_reads_the_refusal_of_an_edge_that_wants_a_client_certificate() {
        let machines = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .pem();
        let (url, ca_file, _dir) = serve(Some(&machines)).await;
        let tls = Tls::load(Some(&ca_file), None).unwrap();
        let hint = tls.probe(&url.parse().unwrap()).await;
        assert!(
            hint.is_some_and(|h| h.contains("client_cert_file")),
            "{hint:?}"
        );
    }

    #[tokio::test]
    async fn a_probe_of_an_edge_that_takes_the_machine_says_nothing() {
        let (url, ca_file, _dir) = serve(None).await;
        let tls = Tls::load(Some(&ca_file), None).unwrap();
        assert_eq!(tls.probe(&url.parse().unwrap()).await, None);
    }

    #[tokio::test]
    async fn a_probe_of_an_untrusted_edge_names_the_certificate() {
        let (url, _, _dir) = serve(None).await;
        let (other_ca, _, _) = server_identity();
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.pem");
        std::fs::write(&other, other_ca).unwrap();
        let tls = Tls::load(Some(&other), None).unwrap();
        let hint = tls.probe(&url.parse().unwrap()).await;
        assert!(hint.is_some_and(|h| h.contains("not trusted")), "{hint:?}");
    }
}
