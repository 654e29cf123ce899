//! Loading the server's TLS configuration from PEM files.
//!
//! The rustls configuration built here speaks TLS 1.2 and 1.3 only, offers
//! ALPN `http/1.1` (WebSocket upgrades need HTTP/1.1) and uses the aws-lc-rs
//! provider explicitly, so rustls 0.23's "no process-level CryptoProvider"
//! panic cannot happen whatever features the embedding application turns on.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, version};
use rustls_pki_types::CertificateDer;

use circle_pem::{read_certificates, read_private_key};

use super::error::{CertificateProblem, PrivateKeyProblem, TlsConfigError};
use super::reload::{ReloadableCertResolver, TlsReloader};
use super::tickets::FileTicketer;

/// Where the server's TLS material lives and how strictly to check it.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM certificate chain, leaf first.
    pub cert_path: String,
    /// PEM private key.
    pub key_path: String,
    /// PEM certificate authorities for client certificates (mutual TLS).
    pub client_ca_path: Option<String>,
    /// Refuse clients without a certificate (needs `client_ca_path`).
    pub client_auth_required: bool,
    /// Start even if the certificate is expired or not yet valid.
    pub accept_invalid_certs: bool,
    /// Session-ticket keys shared with other servers (see the `tickets`
    /// module for the format); `None`: keys of this process only.
    pub ticket_key_file: Option<String>,
}

/// Facts about the serving certificate, for start-up logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The leaf's subject, for example `CN=localhost`.
    pub subject: String,
    /// The leaf's serial number, hex with colons.
    pub serial: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Certificates in the chain, leaf included.
    pub chain_len: usize,
}

impl CertificateInfo {
    /// Time left until the certificate expires (zero once it has).
    pub fn expires_in(&self) -> Duration {
        self.not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

/// A loaded TLS configuration with what was learnt while loading it.
#[derive(Debug)]
pub struct LoadedTls {
    /// The rustls configuration to serve with.
    pub config: rustls::ServerConfig,
    /// The serving certificate.
    pub certificate: CertificateInfo,
    /// Why the certificate would have been refused, when
    /// `accept_invalid_certs` let it through anyway.
    pub accepted_problem: Option<CertificateProblem>,
    /// Reloads the certificate and key from their files while the server
    /// runs.
    pub reloader: Arc<TlsReloader>,
}

/// Loads a certificate chain and private key into a strict rustls server
/// configuration: TLS 1.2 and 1.3, ALPN `http/1.1`, no client certificates,
/// and a certificate that must be currently valid.
pub fn load_rustls_config(
    cert_path: &str,
    key_path: &str,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let options = TlsOptions {
        cert_path: cert_path.to_owned(),
        key_path: key_path.to_owned(),
        ..TlsOptions::default()
    };
    load_server_tls(&options).map(|loaded| loaded.config)
}

/// Loads the full TLS configuration the server runs with.
pub fn load_server_tls(options: &TlsOptions) -> Result<LoadedTls, TlsConfigError> {
    let provider = Arc::new(crypto_provider());
    let (certified_key, certificate, accepted_problem) = load_certified_key(options, &provider)?;
    let resolver = Arc::new(ReloadableCertResolver::new(certified_key));
    let shared_tickets = shared_tickets(options)?;
    let reloader = Arc::new(TlsReloader::new(
        options.clone(),
        provider.clone(),
        resolver.clone(),
        certificate.clone(),
        shared_tickets.clone(),
    ));

    let config = server_config(options, &provider, resolver, shared_tickets)?;
    Ok(LoadedTls {
        config,
        certificate,
        accepted_problem,
        reloader,
    })
}

/// The rustls configuration of the TLS listener around `resolver`: TLS 1.2
/// and 1.3, ALPN `http/1.1`, client certificates as `options` say, tickets.
pub(crate) fn server_config(
    options: &TlsOptions,
    provider: &Arc<CryptoProvider>,
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    shared_tickets: Option<Arc<FileTicketer>>,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| TlsConfigError::ConfigurationError(e.to_string()))?;
    let builder = match &options.client_ca_path {
        Some(ca_path) => {
            let roots = load_client_roots(ca_path)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if options.client_auth_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| {
                TlsConfigError::ConfigurationError(format!("client CA file {ca_path}: {e}"))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None if options.client_auth_required => {
            return Err(TlsConfigError::ConfigurationError(
                "client_auth_required needs client_ca_path: the CAs that issue client certificates"
                    .to_owned(),
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The server picks the cipher suite from its own order (the provider's:
    // AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305, ECDHE only, AEAD only), so
    // a client that prefers a weaker suite first cannot talk the server down;
    // every suite on the list is strong, SECURITY.md says why this order.
    config.ignore_client_order = true;
    // Stateless TLS 1.3 tickets make reconnecting clients skip the full
    // handshake (a stateful cache covers TLS 1.2 and clients without tickets).
    // With a shared key file, other servers of the circle resume them too.
    config.ticketer = match shared_tickets {
        Some(shared) => shared,
        None => rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| TlsConfigError::ConfigurationError(format!("session tickets: {e}")))?,
    };
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(config)
}

/// The TLS configuration of an ACME server: no certificate yet; `wrap`
/// puts the challenge resolver around the one the reloader fills.
pub(crate) fn acme_server_tls(
    options: &TlsOptions,
    wrap: impl FnOnce(Arc<ReloadableCertResolver>) -> Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<(rustls::ServerConfig, Arc<TlsReloader>), TlsConfigError> {
    let provider = Arc::new(crypto_provider());
    let resolver = Arc::new(ReloadableCertResolver::empty());
    let shared_tickets = shared_tickets(options)?;
    let reloader = Arc::new(TlsReloader::for_acme(
        provider.clone(),
        resolver.clone(),
        shared_tickets.clone(),
    ));
    let mut config = server_config(options, &provider, wrap(resolver), shared_tickets)?;
    config
        .alpn_protocols
        .push(crate::acme::ACME_TLS_ALPN.to_vec());
    Ok((config, reloader))
}

/// The crypto provider every TLS configuration of the server uses.
pub(crate) fn crypto_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

type LoadedKey = (CertifiedKey, CertificateInfo, Option<CertificateProblem>);

/// Reads, checks and pairs the certificate chain and key.
pub fn load_certified_key(
    options: &TlsOptions,
    provider: &CryptoProvider,
) -> Result<LoadedKey, TlsConfigError> {
    let cert_path = options.cert_path.as_str();
    let key_path = options.key_path.as_str();
    let chain = read_certificates(Path::new(cert_path))?;
    let (certificate, validity_problem) = inspect_leaf(cert_path, &chain)?;
    let accepted_problem = match validity_problem {
        Some(problem) if !options.accept_invalid_certs => {
            return Err(TlsConfigError::InvalidCertificate {
                path: cert_path.to_owned(),
                problem,
            });
        }
        other => other,
    };

    let key = read_private_key(Path::new(key_path))?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        TlsConfigError::InvalidPrivateKey {
            path: key_path.to_owned(),
            problem: PrivateKeyProblem::Unsupported(e.to_string()),
        }
    })?;
    let certified_key = CertifiedKey::new(chain, signing_key);
    match certified_key.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsConfigError::InvalidPrivateKey {
                path: key_path.to_owned(),
                problem: PrivateKeyProblem::DoesNotMatchCertificate {
                    certificate_path: cert_path.to_owned(),
                },
            });
        }
        Err(e) => {
            return Err(TlsConfigError::InvalidCertificate {
                path: cert_path.to_owned(),
                problem: CertificateProblem::Malformed(e.to_string()),
            });
        }
    }
    Ok((certified_key, certificate, accepted_problem))
}

/// Parses the leaf and checks its validity period. Returns the validity
/// problem separately so that `accept_invalid_certs` can let it pass.
fn inspect_leaf(
    path: &str,
    chain: &[CertificateDer<'static>],
) -> Result<(CertificateInfo, Option<CertificateProblem>), TlsConfigError> {
    let invalid = |problem| TlsConfigError::InvalidCertificate {
        path: path.to_owned(),
        problem,
    };
    let leaf = chain
        .first()
        .ok_or_else(|| invalid(CertificateProblem::NoPemCertificate))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| invalid(CertificateProblem::Malformed(e.to_string())))?;
    let validity = parsed.validity();
    let not_before = unix_time(validity.not_before.timestamp());
    let not_after = unix_time(validity.not_after.timestamp());
    let info = CertificateInfo {
        subject: parsed.subject().to_string(),
        serial: parsed.raw_serial_as_string(),
        not_before,
        not_after,
        chain_len: chain.len(),
    };
    let now = SystemTime::now();
    let problem = if now > not_after {
        Some(CertificateProblem::Expired {
            not_after: rfc3339(not_after),
        })
    } else if now < not_before {
        Some(CertificateProblem::NotYetValid {
            not_before: rfc3339(not_before),
        })
    } else {
        None
    };
    Ok((info, problem))
}

fn load_client_roots(path: &str) -> Result<RootCertStore, TlsConfigError> {
    let certificates = read_certificates(Path::new(path))?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|e| TlsConfigError::InvalidCertificate {
                path: path.to_owned(),
                problem: CertificateProblem::Malformed(e.to_string()),
            })?;
    }
    Ok(roots)
}

fn unix_time(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(after) => UNIX_EPOCH + Duration::from_secs(after),
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    }
}

/// RFC 3339 (UTC) rendering of a time, for messages and logs.
pub fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    circle_protocol::format_rfc3339_utc(seconds)
}

/// The session-ticket keys shared with the circle's other servers, when a key file is set.
fn shared_tickets(options: &TlsOptions) -> Result<Option<Arc<FileTicketer>>, TlsConfigError> {
    options
        .ticket_key_file
        .as_deref()
        .map(FileTicketer::load)
        .transpose()
        .map(|tickets| tickets.map(Arc::new))
}
