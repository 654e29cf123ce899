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
    current: RwLock<Option<CertificateInfo>>,
    /// Certificates come from ACME, not from files: a reload rereads the
    /// ticket keys only.
    acme: bool,
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
            current: RwLock::new(Some(certificate)),
            acme: false,
            tickets,
        }
    }

    /// A reloader for ACME: no certificate until [`install`](Self::install).
    pub(crate) fn for_acme(
        provider: Arc<CryptoProvider>,
        resolver: Arc<ReloadableCertResolver>,
        tickets: Option<Arc<FileTicketer>>,
    ) -> Self {
        TlsReloader {
            options: TlsOptions::default(),
            provider,
            resolver,
            current: RwLock::new(None),
            acme: true,
            tickets,
        }
    }

    /// Serves `key` (described by `certificate`) from the next handshake
    /// on; open connections keep theirs.
    pub(crate) fn install(&self, key: CertifiedKey, certificate: CertificateInfo) {
        self.resolver.replace(key);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(certificate);
    }

    /// The crypto provider keys are loaded with.
    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
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
        if self.acme {
            return self.certificate().ok_or_else(|| {
                TlsConfigError::ConfigurationError(
                    "no ACME certificate has been obtained yet".to_owned(),
                )
            });
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
        *current = Some(certificate.clone());
        Ok(certificate)
    }

    /// The certificate being served (`None`: ACME has none yet).
    pub fn certificate(&self) -> Option<CertificateInfo> {
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
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ReloadableCertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        ReloadableCertResolver {
            current: RwLock::new(Some(Arc::new(key))),
        }
    }

    /// A resolver with no certificate yet (ACME before the first one):
    /// handshakes fail with an alert until [`replace`](Self::replace).
    pub fn empty() -> Self {
        ReloadableCertResolver {
            current: RwLock::new(None),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Some(Arc::new(key));
    }
}

impl ResolvesServerCert for ReloadableCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current.clone()
    }
}
