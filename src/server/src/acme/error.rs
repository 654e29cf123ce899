//! `AcmeError`: what went wrong while getting or keeping a certificate.

use std::path::PathBuf;

/// Why a certificate could not be obtained, stored or loaded. None of these
/// stop the server: the renewal task logs them, counts them and retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// A file or folder of the cache could not be read or written.
    #[error("ACME cache {path}: {source}")]
    Cache {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A cached file is there but cannot be used.
    #[error("ACME cache {path} is unusable: {reason}")]
    CacheContent {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA answered with an error or could not be reached.
    #[error("ACME CA {step}: {message}")]
    Ca {
        /// What was being done (`directory`, `new order`, …).
        step: &'static str,
        /// The client's or the CA's message.
        message: String,
    },
    /// The CA did not answer in time.
    #[error("ACME CA {step}: no answer within {seconds} s")]
    Timeout {
        /// What was being done.
        step: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// The CA refused a challenge: the domain does not reach this server.
    #[error("ACME challenge for {domain} failed: {message}")]
    ChallengeFailed {
        /// The domain.
        domain: String,
        /// The CA's reason.
        message: String,
    },
    /// No challenge the CA offers can be answered by this server.
    #[error("ACME CA offers no challenge this server can answer for {domain}")]
    NoUsableChallenge {
        /// The domain.
        domain: String,
    },
    /// A key or the validation certificate could not be made.
    #[error("ACME key or certificate: {0}")]
    Crypto(String),
}

impl AcmeError {
    pub(crate) fn ca(step: &'static str, error: impl std::fmt::Display) -> Self {
        AcmeError::Ca {
            step,
            message: error.to_string(),
        }
    }
}
