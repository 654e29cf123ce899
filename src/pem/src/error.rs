//! What can be wrong with a PEM file, each its own variant.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Which half of a certificate/key pair a file was expected to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    /// One or more certificates (a chain, or trusted CAs).
    Certificate,
    /// A private key.
    PrivateKey,
}

impl fmt::Display for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemFile::Certificate => "certificate",
            PemFile::PrivateKey => "private key",
        })
    }
}

/// A PEM file that cannot be used, with the path at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file does not exist.
    #[error("{expected} file not found: {}", path.display())]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
        /// What the file should have held.
        expected: PemFile,
    },
    /// The file exists but cannot be read (permissions, a directory, …).
    #[error("cannot read {expected} file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the file should have held.
        expected: PemFile,
        /// What the operating system said.
        source: io::Error,
    },
    /// The certificate file is unusable.
    #[error("invalid certificate in {}: {problem}", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: CertificateProblem,
    },
    /// The private key file is unusable.
    #[error("invalid private key in {}: {problem}", path.display())]
    InvalidPrivateKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: PrivateKeyProblem,
    },
}

impl PemError {
    /// The file at fault.
    pub fn path(&self) -> &Path {
        match self {
            PemError::NotFound { path, .. }
            | PemError::Unreadable { path, .. }
            | PemError::InvalidCertificate { path, .. }
            | PemError::InvalidPrivateKey { path, .. } => path,
        }
    }

    /// What is wrong, without the path (for errors that show the path
    /// apart).
    pub fn reason(&self) -> String {
        match self {
            PemError::NotFound { expected, .. } => format!("{expected} file not found"),
            PemError::Unreadable {
                expected, source, ..
            } => format!("cannot read {expected} file: {source}"),
            PemError::InvalidCertificate { problem, .. } => problem.to_string(),
            PemError::InvalidPrivateKey { problem, .. } => problem.to_string(),
        }
    }
}

/// What is wrong with a certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// The file is empty.
    Empty,
    /// The file holds no `-----BEGIN CERTIFICATE-----` section.
    NoPemCertificate,
    /// The file holds a private key and no certificate: the certificate and
    /// key paths were most likely swapped.
    HoldsPrivateKey,
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
            Self::HoldsPrivateKey => f.write_str(
                "no PEM certificate in the file, which holds a private key: did you swap the certificate and key paths?",
            ),
            Self::Malformed(why) => write!(f, "not a valid PEM certificate: {why}"),
            Self::Expired { not_after } => write!(f, "the certificate expired on {not_after}"),
            Self::NotYetValid { not_before } => {
                write!(f, "the certificate is not valid before {not_before}")
            }
        }
    }
}

/// What is wrong with a private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrivateKeyProblem {
    /// The file is empty.
    Empty,
    /// The file holds no PKCS#8, PKCS#1 or SEC1 PEM private key.
    NoPemKey,
    /// The file holds a certificate and no key: the certificate and key
    /// paths were most likely swapped.
    HoldsCertificate,
    /// The key is encrypted with a passphrase; it must be decrypted first.
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
            Self::HoldsCertificate => f.write_str(
                "no PEM private key in the file, which holds a certificate: did you swap the certificate and key paths?",
            ),
            Self::Encrypted => f.write_str(
                "the key is encrypted with a passphrase; decrypt it first (openssl pkey -in KEY -out KEY.plain)",
            ),
            Self::Malformed(why) => write!(f, "not a valid PEM private key: {why}"),
            Self::Unsupported(why) => write!(f, "unsupported key: {why}"),
            Self::DoesNotMatchCertificate { certificate_path } => {
                write!(f, "the key does not match the certificate in {certificate_path}")
            }
        }
    }
}
