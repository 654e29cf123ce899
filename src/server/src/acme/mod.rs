//! Automatic certificates over ACME (RFC 8555), with `instant-acme` on
//! hyper-rustls and the aws-lc-rs provider: the server's one TLS stack.
//!
//! `config` says what to get and from whom, `account` keeps the account,
//! `order` runs one order, `challenge` answers the CA (HTTP-01 on the plain
//! listener, TLS-ALPN-01 on the TLS listener itself), `cache` keeps it all
//! on disk, `renewal` runs the certificate's life in the background, and
//! `error` says what went wrong.

mod account;
mod cache;
mod challenge;
mod config;
mod error;
mod order;
mod renewal;

pub(crate) use cache::AcmeCache;
pub(crate) use challenge::{ACME_TLS_ALPN, AcmeCertResolver, Challenges};
pub use config::{AcmeChallenge, AcmeConfig, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING};
pub use error::AcmeError;
pub(crate) use renewal::{AcmeManager, run};
