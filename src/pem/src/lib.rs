//! Certificates and private keys read from PEM files, with one typed error.
//!
//! The server and the client both read PEM files given by a person (a flag,
//! a config field), so both must say the same precise thing when the file is
//! wrong: which file, and what is wrong with it, including the mistakes
//! people really make (swapping the certificate and key paths, pointing at a
//! passphrase-protected key). This crate is that one reader.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod read;

pub use error::{CertificateProblem, PemError, PemFile, PrivateKeyProblem};
pub use read::{read_certificates, read_private_key};
