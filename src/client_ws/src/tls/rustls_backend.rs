//! The rustls backend: a `ClientConfig` with the aws-lc-rs provider chosen
//! explicitly, so that no process-wide `CryptoProvider` has to be installed
//! (rustls 0.23 panics at use when none is and several are compiled in).

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;

use crate::error::{CertificateRejection, CircleWsClientError};
use crate::tls_config::TlsConfig;

/// What the client offers in ALPN: the WebSocket upgrade is an HTTP/1.1
/// request, and a server that picked `h2` would not understand it.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn config_error(problem: impl Into<String>) -> CircleWsClientError {
    CircleWsClientError::TlsConfig {
        path: None,
        problem: problem.into(),
    }
}

/// Builds the connector for `config`.
pub(super) fn build_connector(
    config: &TlsConfig,
) -> Result<tokio_rustls::TlsConnector, CircleWsClientError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| config_error(format!("rustls refused TLS 1.2/1.3: {e}")))?;

    let verifier: Arc<dyn ServerCertVerifier> = if config.accept_invalid_certs {
        Arc::new(AcceptAnyServerCertificate {
            provider: provider.clone(),
        })
    } else {
        let roots = root_store(config)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| {
                config_error(format!(
                    "cannot build the certificate verifier: {e} (the system has no root \
                     certificates? trust your server with ca_cert_path)"
                ))
            })?;
        if config.accept_invalid_hostnames {
            Arc::new(ChainOnlyVerifier { inner: webpki })
        } else {
            webpki
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);

    let mut client_config = match config.client_identity()? {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            CircleWsClientError::TlsConfig {
                path: config.client_key_path.clone(),
                problem: format!("the client key cannot be used with its certificate: {e}"),
            }
        })?,
        None => builder.with_no_client_auth(),
    };
    client_config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client_config)))
}

/// The system's root certificates, read once per process: reading the
/// store costs a few milliseconds and it does not change while we run.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static SYSTEM_ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    SYSTEM_ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::debug!(%error, "skipping an unreadable system root certificate");
        }
        loaded.certs
    })
}

fn root_store(config: &TlsConfig) -> Result<RootCertStore, CircleWsClientError> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    tracing::debug!(added, ignored, "system root certificates");
    for (index, certificate) in config.extra_roots()?.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|e| CircleWsClientError::TlsConfig {
                path: config.ca_cert_path.clone(),
                problem: format!(
                    "certificate #{} cannot be used as a trust anchor: {e}",
                    index + 1
                ),
            })?;
    }
    Ok(roots)
}

/// The server name rustls checks the certificate against: a DNS name or an
/// IP address.
pub(super) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}

/// The TLS handshake over `tcp`.
pub(super) async fn connect(
    connector: &tokio_rustls::TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, CircleWsClientError> {
    let name = server_name(host).map_err(|reason| CircleWsClientError::InvalidUrl {
        url: host.to_owned(),
        reason,
    })?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| classify_handshake_error(&e, host))
}

fn rejection_reason(error: &CertificateError) -> CertificateRejection {
    match error {
        CertificateError::UnknownIssuer => CertificateRejection::UnknownIssuer,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            CertificateRejection::NameMismatch
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            CertificateRejection::Expired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            CertificateRejection::NotYetValid
        }
        other => CertificateRejection::Other(format!("{other:?}")),
    }
}

/// The rustls error inside an I/O error, if there is one.
fn rustls_error(error: &std::io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Explains a server alert, which is how a server says it refused the
/// client (most often: the client certificate).
fn describe_alert(alert: &rustls::AlertDescription) -> String {
    use rustls::AlertDescription as Alert;
    match alert {
        Alert::CertificateRequired => "the server requires a client certificate \
            (set client_cert_path and client_key_path)"
            .to_owned(),
        Alert::UnknownCA | Alert::BadCertificate | Alert::CertificateUnknown => format!(
            "the server refused the client certificate ({alert:?}): is it signed by a CA \
             the server trusts?"
        ),
        Alert::ProtocolVersion => {
            "the server does not speak TLS 1.2 or 1.3 (protocol version alert)".to_owned()
        }
        other => format!("the server sent the TLS alert {other:?}"),
    }
}

fn classify_handshake_error(error: &std::io::Error, host: &str) -> CircleWsClientError {
    let handshake_error = |detail: String| CircleWsClientError::TlsHandshake {
        host: host.to_owned(),
        detail,
    };
    match rustls_error(error) {
        Some(rustls::Error::InvalidCertificate(certificate_error)) => {
            CircleWsClientError::CertificateRejected {
                host: host.to_owned(),
                reason: rejection_reason(certificate_error),
                detail: error.to_string(),
            }
        }
        Some(rustls::Error::AlertReceived(alert)) => handshake_error(describe_alert(alert)),
        Some(
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. },
        ) => handshake_error(format!(
            "{error}: the server did not answer with TLS (a plain ws:// listener? then use a \
             ws:// URL)"
        )),
        Some(other) => handshake_error(other.to_string()),
        None if error.kind() == std::io::ErrorKind::UnexpectedEof => handshake_error(
            "the server closed the connection during the TLS handshake: it may not be a TLS \
             listener (then use a ws:// URL), or it refused this client"
                .to_owned(),
        ),
        None => handshake_error(error.to_string()),
    }
}

pub(super) fn classify_late_error(
    error: &std::io::Error,
    host: &str,
) -> Option<CircleWsClientError> {
    match rustls_error(error)? {
        rustls::Error::AlertReceived(alert) => Some(CircleWsClientError::TlsHandshake {
            host: host.to_owned(),
            detail: describe_alert(alert),
        }),
        _ => Some(classify_handshake_error(error, host)),
    }
}

/// `accept_invalid_hostnames`: the full WebPKI verification (chain to a
/// trusted root, validity period, key usage), except that a certificate for
/// another name is let through. WebPKI checks the chain before the name, so
/// a name error implies the chain was good.
#[derive(Debug)]
struct ChainOnlyVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// `accept_invalid_certs`: any certificate is accepted, but the handshake
/// signatures are still checked, so the peer must at least hold the key of
/// the certificate it shows.
#[derive(Debug)]
struct AcceptAnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_map_to_reasons() {
        assert_eq!(
            rejection_reason(&CertificateError::UnknownIssuer),
            CertificateRejection::UnknownIssuer
        );
        assert_eq!(
            rejection_reason(&CertificateError::NotValidForName),
            CertificateRejection::NameMismatch
        );
        assert_eq!(
            rejection_reason(&CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("example.org").unwrap(),
                presented: vec!["localhost".into()],
            }),
            CertificateRejection::NameMismatch
        );
        assert_eq!(
            rejection_reason(&CertificateError::Expired),
            CertificateRejection::Expired
        );
        assert_eq!(
            rejection_reason(&CertificateError::NotValidYet),
            CertificateRejection::NotYetValid
        );
        assert!(matches!(
            rejection_reason(&CertificateError::BadSignature),
            CertificateRejection::Other(_)
        ));
    }

    #[test]
    fn io_wrapped_rustls_errors_are_recognised() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        match classify_handshake_error(&wrapped, "localhost") {
            CircleWsClientError::CertificateRejected { reason, host, .. } => {
                assert_eq!(reason, CertificateRejection::UnknownIssuer);
                assert_eq!(host, "localhost");
            }
            other => panic!("unexpected {other:?}"),
        }
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            classify_handshake_error(&eof, "localhost"),
            CircleWsClientError::TlsHandshake { .. }
        ));
    }

    #[test]
    fn default_config_builds_and_server_names_parse() {
        assert!(build_connector(&TlsConfig::default()).is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(server_name("not a name").is_err());
    }
}
