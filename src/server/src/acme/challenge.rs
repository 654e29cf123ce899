//! Answering the CA's challenges: HTTP-01 tokens for the plain listener
//! (`/.well-known/acme-challenge/{token}`), TLS-ALPN-01 validation
//! certificates for the TLS listener (the `acme-tls/1` protocol, RFC 8737).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::error::AcmeError;
use crate::tls::ReloadableCertResolver;

/// The ALPN protocol of TLS-ALPN-01.
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The challenges being answered right now.
#[derive(Debug, Default)]
pub(crate) struct Challenges {
    http: Mutex<HashMap<String, String>>,
    tls_alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// The key authorization to answer for an HTTP-01 `token`.
    pub fn http_answer(&self, token: &str) -> Option<String> {
        lock(&self.http).get(token).cloned()
    }

    /// Answers HTTP-01 `token` with `key_authorization` until removed.
    pub fn add_http(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_owned(), key_authorization.to_owned());
    }

    /// Stops answering HTTP-01 `token`.
    pub fn remove_http(&self, token: &str) {
        lock(&self.http).remove(token);
    }

    /// Serves a TLS-ALPN-01 validation certificate for `domain`, made from
    /// the SHA-256 `digest` of the key authorization.
    pub fn add_tls_alpn(
        &self,
        domain: &str,
        digest: &[u8],
        provider: &CryptoProvider,
    ) -> Result<(), AcmeError> {
        let crypto = |e: rcgen::Error| AcmeError::Crypto(e.to_string());
        let mut params = CertificateParams::new(vec![domain.to_owned()]).map_err(crypto)?;
        params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
        let key = KeyPair::generate().map_err(crypto)?;
        let certificate = params.self_signed(&key).map_err(crypto)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| AcmeError::Crypto(e.to_string()))?;
        let certified = CertifiedKey::new(vec![certificate.der().clone()], signing_key);
        lock(&self.tls_alpn).insert(domain.to_ascii_lowercase(), Arc::new(certified));
        Ok(())
    }

    /// Stops serving the validation certificate of `domain`.
    pub fn remove_tls_alpn(&self, domain: &str) {
        lock(&self.tls_alpn).remove(&domain.to_ascii_lowercase());
    }

    fn validation_certificate(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.tls_alpn)
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The TLS listener's certificate choice with ACME: a handshake that asks
/// for `acme-tls/1` gets the validation certificate of its server name (or
/// fails), every other handshake the served certificate (or fails with an
/// alert while there is none yet: never a placeholder).
#[derive(Debug)]
pub(crate) struct AcmeCertResolver {
    pub challenges: Arc<Challenges>,
    pub served: Arc<ReloadableCertResolver>,
}

impl ResolvesServerCert for AcmeCertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let asks_acme = client_hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if asks_acme {
            let domain = client_hello.server_name()?;
            return self.challenges.validation_certificate(domain);
        }
        self.served.resolve(client_hello)
    }
}
