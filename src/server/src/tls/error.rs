//! Every way the server's certificate or key can be wrong, each its own
//! variant, so an operator learns which file is wrong and how.

use std::io;

pub use circle_pem::{CertificateProblem, PrivateKeyProblem};
use circle_pem::{PemError, PemFile};

/// Why the server's TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The certificate file does not exist.
    #[error("certificate file not found: {path}")]
    CertificateNotFound {
        /// The path that was tried.
        path: String,
    },
    /// The private key file does not exist.
    #[error("private key file not found: {path}")]
    PrivateKeyNotFound {
        /// The path that was tried.
        path: String,
    },
    /// A file exists but could not be read (permissions, a directory, …).
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// The certificate file is unusable.
    #[error("invalid certificate in {path}: {problem}")]
    InvalidCertificate {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: CertificateProblem,
    },
    /// The private key file is unusable.
    #[error("invalid private key in {path}: {problem}")]
    InvalidPrivateKey {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: PrivateKeyProblem,
    },
    /// The files are fine one by one but do not make a configuration
    /// (for example `enable_tls` without `cert_path`).
    #[error("TLS configuration error: {0}")]
    ConfigurationError(String),
}

impl From<PemError> for TlsConfigError {
    fn from(error: PemError) -> TlsConfigError {
        let path = error.path().display().to_string();
        match error {
            PemError::NotFound {
                expected: PemFile::Certificate,
                ..
            } => TlsConfigError::CertificateNotFound { path },
            PemError::NotFound { .. } => TlsConfigError::PrivateKeyNotFound { path },
            PemError::Unreadable { source, .. } => TlsConfigError::Unreadable { path, source },
            PemError::InvalidCertificate { problem, .. } => {
                TlsConfigError::InvalidCertificate { path, problem }
            }
            PemError::InvalidPrivateKey { problem, .. } => {
                TlsConfigError::InvalidPrivateKey { path, problem }
            }
            // PemError is non_exhaustive: a new kind of file problem is
            // still a problem with that file.
            other => TlsConfigError::ConfigurationError(other.to_string()),
        }
    }
}
