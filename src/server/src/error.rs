//! What can keep a server from starting.

use std::io;

use crate::tls::TlsConfigError;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS files are missing or wrong; the message says which and how.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// `acme` is set together with `cert_path` or `key_path`: a certificate
    /// comes from one or the other.
    #[error(
        "acme and cert_path/key_path exclude each other: choose automatic or file certificates"
    )]
    AcmeWithCertificateFiles,
    /// The ACME cache folder cannot be made.
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// The configuration contradicts itself or holds a bad value.
    #[error("invalid server configuration: {0}")]
    InvalidConfig(String),
    /// The script executor could not start.
    #[error("cannot start the script executor: {0}")]
    Executor(io::Error),
    /// The circle's store could not be opened (`data_dir`, `admin_keys`).
    #[error(transparent)]
    Store(#[from] circle_executor::store::StoreError),
}
