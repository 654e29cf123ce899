//! What the client trusts and presents on `wss://` connections:
//! [`TlsConfig`], the choice of TLS library ([`TlsBackend`]), and the PEM
//! file reading both backends share, so that a bad file gives the same clear
//! error whichever library is in use.
//!
//! In a browser (wasm32) the browser does TLS with its own trust store and
//! offers pages no say in it: only the default [`TlsConfig`] is accepted
//! there, and every other setting is a clear error from `build()`.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

#[cfg(not(target_arch = "wasm32"))]
#[cfg(not(target_arch = "wasm32"))]
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::CircleWsClientError;

/// TLS settings for `wss://` URLs.
///
/// In a browser only the default is accepted: the browser decides which
/// certificates it trusts (install a development CA in the browser's or the
/// system's trust store instead), and a page can neither turn checks off nor
/// present a client certificate of its choosing.
///
/// The [`Default`] verifies everything: the server's certificate must chain
/// to one of the system's root certificates and be valid for the URL's host.
/// Trust a development or private CA with `ca_cert_path` rather than turning
/// checks off.
///
/// ```
/// use circle_client_ws::TlsConfig;
///
/// // Trust the repository's self-signed development certificate.
/// let tls = TlsConfig {
///     ca_cert_path: Some("cert.pem".into()),
///     ..Default::default()
/// };
/// assert!(!tls.accept_invalid_certs);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// DANGER, development only: accept any server certificate (self-signed,
    /// expired, for another host). The connection is still encrypted but no
    /// longer authenticated: anyone on the path can read and change it. Logs a
    /// warning.
    pub accept_invalid_certs: bool,
    /// Accept a certificate issued for another host name, while still
    /// requiring it to chain to a trusted root and be in its validity period.
    /// For servers reached by an address their certificate does not name
    /// (an IP, a tunnel). Logs a warning.
    pub accept_invalid_hostnames: bool,
    /// A PEM file of extra trusted certificates (one or several): a private
    /// CA, or a self-signed server certificate itself. Added to the system's
    /// roots, not replacing them.
    pub ca_cert_path: Option<PathBuf>,
    /// A PEM certificate (chain) to present to servers that ask for one
    /// (mutual TLS). Needs `client_key_path`.
    pub client_cert_path: Option<PathBuf>,
    /// The PEM private key of `client_cert_path`: PKCS#8, PKCS#1 (RSA) or
    /// SEC1 (EC), unencrypted.
    pub client_key_path: Option<PathBuf>,
}

/// Which TLS library carries `wss://` connections.
///
/// Both honour every [`TlsConfig`] field. Only backends whose cargo feature is
/// enabled can be used; asking for another one is a
/// [`TlsConfig`](CircleWsClientError::TlsConfig) error from `build()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsBackend {
    /// rustls (feature `rustls-tls`, the default): pure Rust, aws-lc-rs
    /// cryptography, TLS 1.2 and 1.3.
    Rustls,
    /// The platform's TLS library (feature `native-tls`): OpenSSL on Linux,
    /// Secure Transport on macOS, SChannel on Windows.
    NativeTls,
}

impl TlsBackend {
    /// The default backend: rustls when compiled in, else native-tls, else
    /// `None` (then only `ws://` URLs work natively; in a browser it is
    /// always `None`, and the browser does TLS).
    pub fn default_available() -> Option<TlsBackend> {
        if TlsBackend::Rustls.is_available() {
            Some(TlsBackend::Rustls)
        } else if TlsBackend::NativeTls.is_available() {
            Some(TlsBackend::NativeTls)
        } else {
            None
        }
    }

    /// Whether this backend's cargo feature is enabled in this build (never
    /// in a browser build).
    pub fn is_available(self) -> bool {
        let native = cfg!(not(target_arch = "wasm32"));
        match self {
            TlsBackend::Rustls => native && cfg!(feature = "rustls-tls"),
            TlsBackend::NativeTls => native && cfg!(feature = "native-tls"),
        }
    }

    /// Every backend compiled into this build, the default first.
    pub fn available() -> Vec<TlsBackend> {
        [TlsBackend::Rustls, TlsBackend::NativeTls]
            .into_iter()
            .filter(|backend| backend.is_available())
            .collect()
    }
}

impl std::fmt::Display for TlsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsBackend::Rustls => "rustls",
            TlsBackend::NativeTls => "native-tls",
        })
    }
}

impl TlsConfig {
    /// The settings a browser cannot honour, by field name: every one that
    /// differs from the default.
    pub fn browser_unsupported_settings(&self) -> Vec<&'static str> {
        let mut unsupported = Vec::new();
        if self.accept_invalid_certs {
            unsupported.push("accept_invalid_certs");
        }
        if self.accept_invalid_hostnames {
            unsupported.push("accept_invalid_hostnames");
        }
        if self.ca_cert_path.is_some() {
            unsupported.push("ca_cert_path");
        }
        if self.client_cert_path.is_some() {
            unsupported.push("client_cert_path");
        }
        if self.client_key_path.is_some() {
            unsupported.push("client_key_path");
        }
        unsupported
    }

    /// In a browser: refuses every setting but the defaults, saying that the
    /// browser controls TLS trust and what to do instead.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn check_browser_can_honour(&self) -> Result<(), CircleWsClientError> {
        let unsupported = self.browser_unsupported_settings();
        if unsupported.is_empty() {
            return Ok(());
        }
        Err(CircleWsClientError::TlsConfig {
            path: None,
            problem: format!(
                "{} cannot be used in a browser: the browser controls TLS trust, not the page. \
                 Use TlsConfig::default() and make the browser trust the server instead (a \
                 certificate from a public CA, or a development CA added to the browser's or \
                 the system's trust store); client certificates are chosen by the browser too",
                unsupported.join(", ")
            ),
        })
    }

    /// The client certificate chain and key for mutual TLS, when configured.
    /// One without the other is an error: presenting a certificate needs its
    /// key, and a key alone means nothing.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn client_identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, CircleWsClientError>
    {
        match (&self.client_cert_path, &self.client_key_path) {
            (None, None) => Ok(None),
            (Some(cert_path), Some(key_path)) => Ok(Some((
                read_certificates(cert_path)?,
                read_private_key(key_path)?,
            ))),
            (Some(_), None) => Err(CircleWsClientError::TlsConfig {
                path: None,
                problem:
                    "client_cert_path is set but client_key_path is not: mutual TLS needs both"
                        .into(),
            }),
            (None, Some(_)) => Err(CircleWsClientError::TlsConfig {
                path: None,
                problem:
                    "client_key_path is set but client_cert_path is not: mutual TLS needs both"
                        .into(),
            }),
        }
    }

    /// The extra trusted certificates of `ca_cert_path` (none when unset).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn extra_roots(&self) -> Result<Vec<CertificateDer<'static>>, CircleWsClientError> {
        match &self.ca_cert_path {
            Some(path) => read_certificates(path),
            None => Ok(Vec::new()),
        }
    }
}

/// Every `CERTIFICATE` block of a PEM file, in order.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CircleWsClientError> {
    circle_pem::read_certificates(path).map_err(CircleWsClientError::from)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 or SEC1.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CircleWsClientError> {
    circle_pem::read_private_key(path).map_err(CircleWsClientError::from)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(contents.as_bytes())
            .expect("write temp file");
        file
    }

    fn generated_pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn default_verifies_everything() {
        let tls = TlsConfig::default();
        assert!(!tls.accept_invalid_certs && !tls.accept_invalid_hostnames);
        assert!(tls.ca_cert_path.is_none() && tls.client_identity().unwrap().is_none());
    }

    #[test]
    fn several_certificates_are_read_in_order() {
        let (first, _) = generated_pair();
        let (second, _) = generated_pair();
        let file = file_with(&format!("{first}\n{second}"));
        let certs = read_certificates(file.path()).unwrap();
        assert_eq!(certs.len(), 2);
    }

    #[test]
    fn bad_certificate_files_say_what_is_wrong() {
        let missing = read_certificates(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
        assert!(missing.to_string().contains("not found"), "{missing}");

        let empty = file_with("\n");
        let error = read_certificates(empty.path()).unwrap_err().to_string();
        assert!(error.contains("empty"), "{error}");

        let garbage = file_with("hello, I am not a certificate");
        let error = read_certificates(garbage.path()).unwrap_err().to_string();
        assert!(error.contains("no PEM certificate"), "{error}");

        let (_, key) = generated_pair();
        let key_file = file_with(&key);
        let error = read_certificates(key_file.path()).unwrap_err().to_string();
        assert!(error.contains("swap"), "{error}");

        let truncated = file_with("-----BEGIN CERTIFICATE-----\nMIIB\n");
        let error = read_certificates(truncated.path()).unwrap_err().to_string();
        assert!(error.contains("not a valid PEM"), "{error}");
    }

    #[test]
    fn bad_key_files_say_what_is_wrong() {
        let (cert, key) = generated_pair();
        assert!(matches!(
            read_private_key(file_with(&key).path()).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
        let error = read_private_key(file_with(&cert).path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("swap"), "{error}");
        let encrypted = file_with(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let error = read_private_key(encrypted.path()).unwrap_err().to_string();
        assert!(error.contains("encrypted"), "{error}");
    }

    #[test]
    fn client_certificate_and_key_come_together() {
        let tls = TlsConfig {
            client_cert_path: Some("client.pem".into()),
            ..Default::default()
        };
        let error = tls.client_identity().unwrap_err().to_string();
        assert!(error.contains("needs both"), "{error}");
        let (cert, key) = generated_pair();
        let (cert_file, key_file) = (file_with(&cert), file_with(&key));
        let tls = TlsConfig {
            client_cert_path: Some(cert_file.path().into()),
            client_key_path: Some(key_file.path().into()),
            ..Default::default()
        };
        let (chain, _key) = tls.client_identity().unwrap().unwrap();
        assert_eq!(chain.len(), 1);
    }

    #[test]
    fn only_defaults_are_browser_compatible() {
        assert!(
            TlsConfig::default()
                .browser_unsupported_settings()
                .is_empty()
        );
        let everything = TlsConfig {
            accept_invalid_certs: true,
            accept_invalid_hostnames: true,
            ca_cert_path: Some("ca.pem".into()),
            client_cert_path: Some("client.pem".into()),
            client_key_path: Some("client.key".into()),
        };
        assert_eq!(everything.browser_unsupported_settings().len(), 5);
    }

    #[test]
    fn backends_report_what_is_compiled_in() {
        assert_eq!(
            TlsBackend::Rustls.is_available(),
            cfg!(feature = "rustls-tls")
        );
        assert_eq!(
            TlsBackend::NativeTls.is_available(),
            cfg!(feature = "native-tls")
        );
        assert_eq!(
            TlsBackend::default_available(),
            TlsBackend::available().first().copied()
        );
    }
}
