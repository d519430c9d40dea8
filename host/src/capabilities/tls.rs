//! TLS for `socket.connect-tls`: the limb does the handshake with rustls, so adaptors in
//! any language get verified TLS without carrying a TLS stack, and every certificate
//! decision is made (and logged) in one place.

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::CapabilityError;

/// How an adaptor asks its TLS connection to be verified (the WIT `tls-options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The name to verify; the host of the grant's target when absent.
    pub server_name: Option<String>,
    /// CA certificates (PEM) to trust instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM), for servers that ask for one.
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// Accept any server certificate (handshake signatures are still checked).
    pub insecure_skip_verify: bool,
}

/// What a TLS client needs, whoever asks: the socket capability for an adaptor, or the
/// MQTT extension for a device. Certificates and keys are PEM.
pub struct ClientTls<'a> {
    pub ca_pem: Option<&'a [u8]>,
    pub cert_pem: Option<&'a [u8]>,
    pub key_pem: Option<&'a [u8]>,
    /// Accept any server certificate (handshake signatures are still checked).
    pub insecure: bool,
    /// Verify the certificate against this name whatever name the connection used, for
    /// callers that dial a checked IP address instead of the host name.
    pub verify_as: Option<ServerName<'static>>,
}

/// Why a TLS client configuration could not be built; the message names the culprit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The rustls client configuration for `c`.
pub fn build(c: &ClientTls<'_>) -> Result<Arc<ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = if c.insecure {
        Arc::new(AnyServer(provider.clone()))
    } else {
        let roots = match c.ca_pem {
            Some(pem) => roots_from_pem(pem)?,
            None => native_roots()?,
        };
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| ConfigError(format!("CA certificates: {e}")))?;
        match &c.verify_as {
            Some(name) => Arc::new(Named {
                inner,
                name: name.clone(),
            }),
            None => inner,
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (c.cert_pem, c.key_pem) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| ConfigError(format!("client key is not a PEM private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError(format!("client certificate and key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ConfigError(
                "a client certificate needs its key, and a key its certificate".into(),
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The client configuration for an adaptor's `connect-tls`.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, CapabilityError> {
    build(&ClientTls {
        ca_pem: opts.ca_pem.as_deref(),
        cert_pem: opts.client_cert_pem.as_deref(),
        key_pem: opts.client_key_pem.as_deref(),
        insecure: opts.insecure_skip_verify,
        verify_as: None,
    })
    .map_err(|e| CapabilityError::InvalidArgument(e.0))
}

/// The name to verify: the one asked for, else the host of `host:port`.
pub fn server_name(
    opts: &TlsOptions,
    target: &str,
) -> Result<ServerName<'static>, CapabilityError> {
    let name = match &opts.server_name {
        Some(n) => n.clone(),
        None => host_of(target).to_owned(),
    };
    ServerName::try_from(name.clone())
        .map_err(|e| CapabilityError::InvalidArgument(format!("server name {name:?}: {e}")))
}

/// `broker` of `broker:8883`, `::1` of `[::1]:8883`.
fn host_of(target: &str) -> &str {
    let host = match target.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => target,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Maps a failed handshake to what the adaptor should report: a certificate that does
/// not verify is a refusal, not an I/O hiccup to retry blindly.
pub fn handshake_error(err: std::io::Error) -> CapabilityError {
    let refused = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::AlertReceived(_)
            )
        });
    if refused {
        CapabilityError::NotPermitted(format!("TLS handshake refused: {err}"))
    } else {
        super::io_error(err)
    }
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError(format!("{what} is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError(format!("{what} holds no certificate")));
    }
    Ok(certs)
}

fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(pem, "CA")? {
        roots
            .add(cert)
            .map_err(|e| ConfigError(format!("CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The node's trusted roots, loaded once.
fn native_roots() -> Result<RootCertStore, ConfigError> {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "cannot load a system CA certificate");
        }
        let (added, _) = roots.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, "system CA certificates loaded");
        roots
    });
    if roots.is_empty() {
        return Err(ConfigError(
            "no CA given and the node has no system CA certificates".into(),
        ));
    }
    Ok(roots.clone())
}

/// Verifies against a fixed name, whatever name the connection was made with.
#[derive(Debug)]
struct Named {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for Named {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate but still checks the handshake signatures, for
/// `insecure-skip-verify`.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> TlsOptions {
        TlsOptions {
            server_name: None,
            ca_pem: None,
            client_cert_pem: None,
            client_key_pem: None,
            insecure_skip_verify: false,
        }
    }

    #[test]
    fn the_server_name_defaults_to_the_host_of_the_target() {
        for (target, want) in [
            ("broker.local:8883", "broker.local"),
            ("127.0.0.1:8883", "127.0.0.1"),
            ("[::1]:8883", "::1"),
        ] {
            let name = server_name(&opts(), target).unwrap();
            assert_eq!(name.to_str(), want);
        }
        let named = TlsOptions {
            server_name: Some("mqtt.example".into()),
            ..opts()
        };
        assert_eq!(
            server_name(&named, "10.0.0.1:8883").unwrap().to_str(),
            "mqtt.example"
        );
    }

    #[test]
    fn bad_pem_is_an_invalid_argument_that_says_which() {
        for (o, needle) in [
            (
                TlsOptions {
                    ca_pem: Some(b"not pem".to_vec()),
                    ..opts()
                },
                "CA holds no certificate",
            ),
            (
                TlsOptions {
                    client_cert_pem: Some(b"x".to_vec()),
                    ..opts()
                },
                "needs its key",
            ),
        ] {
            let err = client_config(&o).err().unwrap();
            assert!(
                matches!(&err, CapabilityError::InvalidArgument(m) if m.contains(needle)),
                "{err}"
            );
        }
    }

    #[test]
    fn skipping_verification_needs_no_roots() {
        let o = TlsOptions {
            insecure_skip_verify: true,
            ..opts()
        };
        assert!(client_config(&o).is_ok());
    }
}
