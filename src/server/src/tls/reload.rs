//! Replacing the serving certificate while the server runs (SIGHUP,
//! `ServerHandle::reload_tls`).

use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::error::TlsConfigError;
use super::load::{CertificateInfo, TlsOptions, load_certified_key};
use super::tickets::FileTicketer;

/// Replaces the serving certificate from its files without a restart: new
/// handshakes get the new certificate, open connections keep theirs, and a
/// bad new file leaves the old certificate serving.
#[derive(Debug)]
pub struct TlsReloader {
    options: TlsOptions,
    provider: Arc<CryptoProvider>,
    resolver: Arc<ReloadableCertResolver>,
    current: RwLock<CertificateInfo>,
    /// The shared session-ticket keys, reread with the certificate.
    tickets: Option<Arc<FileTicketer>>,
}

impl TlsReloader {
    /// A reloader for the files in `options`, serving through `resolver`
    /// what was loaded from them (`certificate`).
    pub(super) fn new(
        options: TlsOptions,
        provider: Arc<CryptoProvider>,
        resolver: Arc<ReloadableCertResolver>,
        certificate: CertificateInfo,
        tickets: Option<Arc<FileTicketer>>,
    ) -> Self {
        TlsReloader {
            options,
            provider,
            resolver,
            current: RwLock::new(certificate),
            tickets,
        }
    }

    /// Reads the certificate and key files again and serves them from the
    /// next handshake on, and the session-ticket key file when there is
    /// one. A bad ticket-key file leaves everything as it was; a bad
    /// certificate leaves the certificate as it was.
    pub fn reload(&self) -> Result<CertificateInfo, TlsConfigError> {
        if let Some(tickets) = &self.tickets {
            let keys = tickets.reload()?;
            tracing::info!(keys, "TLS session-ticket keys reloaded");
        }
        let (key, certificate, accepted_problem) =
            load_certified_key(&self.options, &self.provider)?;
        if let Some(problem) = accepted_problem {
            tracing::warn!(
                "tls_accept_invalid_certs is set: serving {} although {problem}",
                self.options.cert_path
            );
        }
        self.resolver.replace(key);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = certificate.clone();
        Ok(certificate)
    }

    /// The certificate being served.
    pub fn certificate(&self) -> CertificateInfo {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Serves one certificate that can be replaced while the server runs: new
/// handshakes get the new certificate, open connections keep theirs.
#[derive(Debug)]
pub struct ReloadableCertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        ReloadableCertResolver {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Arc::new(key);
    }
}

impl ResolvesServerCert for ReloadableCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(current.clone())
    }
}
