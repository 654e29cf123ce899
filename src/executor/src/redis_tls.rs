//! The certificate files of a `rediss://` connection: plain settings, so
//! configurations (the server's among them) can carry them whether or not
//! the `redis` feature is compiled in.

use std::path::PathBuf;

/// Certificate files for a `rediss://` connection. All optional: by
/// default the server's certificate is checked against the system's trusted
/// roots and no client certificate is shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM file of the certificate authorities that Redis's certificate must
    /// chain to (a private CA), instead of the system's roots.
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate chain, for Redis with `tls-auth-clients yes`.
    /// Needs `client_key_path`.
    pub client_cert_path: Option<PathBuf>,
    /// PEM private key of `client_cert_path`.
    pub client_key_path: Option<PathBuf>,
}

impl RedisTls {
    /// Whether any file is set.
    pub fn is_set(&self) -> bool {
        self.ca_path.is_some() || self.client_cert_path.is_some() || self.client_key_path.is_some()
    }
}
