//! TLS for the server: the certificate and key from PEM files, with a typed
//! error for every way they can be wrong (`error`, `load`); replacing them
//! while the server runs (`reload`); the logs and warnings about the
//! certificate's life (`expiry`); and who a mutual-TLS client is
//! (`identity`).

mod error;
mod expiry;
mod identity;
mod load;
mod reload;
mod tickets;

pub use error::{CertificateProblem, PrivateKeyProblem, TlsConfigError};
pub(crate) use expiry::{load_tls, warn_if_expiring, watch_certificate_expiry};
pub(crate) use identity::ClientIdentity;
pub(crate) use load::rfc3339;
pub use load::{CertificateInfo, load_rustls_config};
pub(crate) use load::{TlsOptions, acme_server_tls, load_certified_key};
pub(crate) use reload::{ReloadableCertResolver, TlsReloader};
