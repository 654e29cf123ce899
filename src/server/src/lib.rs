//! # circle_server
//!
//! The circle server: WebSocket endpoints over `ws://` and `wss://` speaking
//! the circle JSON-RPC protocol (`docs/PROTOCOL.md` in the repository), with
//! secp256k1 sign-in and Rhai scripts run by an
//! [`Executor`](circle_executor::Executor).
//!
//! ```no_run
//! use circle_server::{ServerConfig, spawn_circle_server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig {
//!     enable_tls: true,
//!     cert_path: Some("cert.pem".into()),
//!     key_path: Some("key.pem".into()),
//!     port: 0,
//!     ..Default::default()
//! };
//! let (server, handle) = spawn_circle_server(config)?;
//! println!("serving on wss://{}/ws", handle.wss_addr().expect("TLS listener"));
//! handle.stop().await;
//! server.await??;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acme;
mod address;
mod auth;
mod batch;
mod circle;
mod config;
mod connection_threads;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod http;
mod inline_credit;
mod listen;
mod metrics;
mod pacing;
mod plays;
mod proxy;
mod refusal_log;
mod router;
mod script_executor;
mod session;
mod session_log;
mod start;
mod state;
mod store;
mod tls;
mod transport;
mod upgrade;

pub use acme::{
    AcmeChallenge, AcmeConfig, AcmeError, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING,
};
pub use address::AddressPrefixes;
pub use config::{ServerConfig, ServerLimits};
pub use error::ServerError;
pub use handle::ServerHandle;
pub use proxy::{IpCidr, IpCidrError, ProxyHeaderError};
pub use start::spawn_circle_server;
pub use tls::{
    CertificateInfo, CertificateProblem, PrivateKeyProblem, TlsConfigError, load_rustls_config,
};

pub use circle_executor::{RedisTls, ScriptLimits};
