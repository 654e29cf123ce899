//! Every way the server's certificate or key can be wrong, each its own
//! variant, so an operator learns which file is wrong and how.

use std::fmt;
use std::io;

/// Why the server's TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
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

/// What is wrong with a certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProblem {
    /// The file is empty.
    Empty,
    /// The file holds no `-----BEGIN CERTIFICATE-----` section.
    NoPemCertificate,
    /// A PEM section or the certificate inside it cannot be parsed.
    Malformed(String),
    /// The leaf certificate's validity ended.
    Expired {
        /// Its `notAfter`, RFC 3339.
        not_after: String,
    },
    /// The leaf certificate's validity has not begun.
    NotYetValid {
        /// Its `notBefore`, RFC 3339.
        not_before: String,
    },
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the file is empty"),
            Self::NoPemCertificate => {
                f.write_str("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")
            }
            Self::Malformed(why) => write!(f, "the certificate cannot be parsed: {why}"),
            Self::Expired { not_after } => write!(f, "the certificate expired on {not_after}"),
            Self::NotYetValid { not_before } => {
                write!(f, "the certificate is not valid before {not_before}")
            }
        }
    }
}

/// What is wrong with a private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateKeyProblem {
    /// The file is empty.
    Empty,
    /// The file holds no PKCS#8, PKCS#1 or SEC1 PEM private key.
    NoPemKey,
    /// The key is encrypted with a passphrase; the server needs it decrypted.
    Encrypted,
    /// A PEM section cannot be parsed.
    Malformed(String),
    /// The key parses but its algorithm is not supported.
    Unsupported(String),
    /// The key is not the one the certificate was issued for.
    DoesNotMatchCertificate {
        /// The certificate file it was checked against.
        certificate_path: String,
    },
}

impl fmt::Display for PrivateKeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the file is empty"),
            Self::NoPemKey => f.write_str(
                "no PEM private key (PKCS#8 \"PRIVATE KEY\", PKCS#1 \"RSA PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\") in the file",
            ),
            Self::Encrypted => f.write_str(
                "the key is encrypted with a passphrase; decrypt it first (openssl pkey -in KEY -out KEY.plain)",
            ),
            Self::Malformed(why) => write!(f, "the key cannot be parsed: {why}"),
            Self::Unsupported(why) => write!(f, "unsupported key: {why}"),
            Self::DoesNotMatchCertificate { certificate_path } => {
                write!(f, "the key does not match the certificate in {certificate_path}")
            }
        }
    }
}
