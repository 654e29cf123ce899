//! # circle_client_ws
//!
//! The client of circles, native and in the browser: JSON-RPC over `ws://`
//! and `wss://` (`docs/PROTOCOL.md` in the repository), with secp256k1
//! sign-in.
//!
//! ```no_run
//! use circle_client_ws::{CircleWsClientBuilder, TlsConfig};
//!
//! # async fn run() -> Result<(), circle_client_ws::CircleWsClientError> {
//! let client = CircleWsClientBuilder::new("wss://localhost:8443/ws")
//!     // Trust the development certificate instead of turning checks off.
//!     .with_tls_config(TlsConfig {
//!         ca_cert_path: Some("cert.pem".into()),
//!         ..Default::default()
//!     })
//!     .with_keypair("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
//!     .build()?;
//! client.connect().await?;
//! assert!(client.authenticate().await?);
//! let result = client.play(r#"print("hi"); 40 + 2"#).await?;
//! println!("{}", result.output);
//! client.disconnect().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Design
//!
//! - One WebSocket connection carries many requests at once. Every method
//!   takes `&self`, [`CircleWsClient`] is cheap to [`Clone`] and to share
//!   between tasks, answers are matched to requests by id, and every request
//!   has its own timeout.
//! - The connection core is generic over the byte stream: TLS is a wrapper
//!   put around the TCP stream before the WebSocket handshake, never a branch
//!   inside the request path. The TLS library is a cargo feature
//!   (`rustls-tls`, default, or `native-tls`) and, when both are compiled in,
//!   a runtime choice ([`TlsBackend`]).
//! - Errors are one enum, [`CircleWsClientError`], whose variants are the
//!   cases a caller acts on differently.
//! - Protocol types come from `circle_protocol`, shared with the server.
//! - [`CircleWsClient::play_stream`] streams what a script prints as it
//!   prints it (protocol 1.1) and cancels it on request or when dropped;
//!   the client's reader never waits for a slow stream reader (see
//!   [`PlayStream`]).
//! - Whoever holds the key is a [`Signer`] (feature `crypto`): the
//!   in-memory key of [`with_keypair`](CircleWsClientBuilder::with_keypair),
//!   or anything given to [`with_signer`](CircleWsClientBuilder::with_signer)
//!   (a KMS or HSM client; in a browser, the user's wallet). Its signatures
//!   are checked before they are sent.
//!
//! ## In the browser (wasm32)
//!
//! Built for `wasm32-unknown-unknown` (default features, or `--features
//! js` for the JavaScript bindings), the same
//! [`CircleWsClientBuilder`] / [`CircleWsClient`] API runs over the page's
//! own WebSocket (gloo-net), with the same request matching, timeouts
//! (browser timers) and reconnects: only the transport differs (`rt.rs` and
//! `transport/` hold the two sides). The browser does TLS with its own
//! trust store, so [`TlsConfig`] settings other than the default are an
//! error from `build()` that says so. The `js` feature adds
//! `js::CircleClient` for web pages (wasm32 only). The native-only features
//! (`rustls-tls`, `native-tls`, `cli`) do nothing there, so a wasm32 build
//! needs no feature flags, and no C compiler: the signing is pure Rust.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// A native build without any TLS backend (ws:// only) leaves the
// certificate-file and connector plumbing unused; it is kept compiling
// rather than cfg'd out piece by piece.
#![cfg_attr(
    all(
        not(target_arch = "wasm32"),
        not(any(feature = "rustls-tls", feature = "native-tls"))
    ),
    allow(dead_code, unused_imports)
)]

mod builder;
mod client;
mod connection;
mod error;
mod in_flight;
mod play_stream;
mod reconnect;
mod rt;
#[cfg(not(target_arch = "wasm32"))]
mod tls;
pub mod tls_config;
mod transport;

#[cfg(all(target_arch = "wasm32", feature = "js"))]
pub mod js;

#[cfg(feature = "crypto")]
mod auth;
#[cfg(feature = "crypto")]
mod signer;

pub use builder::{
    CircleWsClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SIGN_TIMEOUT,
};
pub use client::CircleWsClient;
pub use error::{CertificateRejection, CircleWsClientError};
pub use in_flight::{MAX_QUEUED_BYTES, MAX_QUEUED_LINES};
pub use play_stream::{PlayCanceller, PlayDone, PlayEvent, PlayStream};
pub use reconnect::ReconnectPolicy;
pub use rt::{MaybeSend, MaybeSync};
#[cfg(feature = "crypto")]
pub use signer::{SignFuture, Signer, SignerError};
pub use tls_config::{TlsBackend, TlsConfig};

/// The answer to [`CircleWsClient::play`]: `output` holds the lines the
/// script printed, then its value unless it is `()`.
pub type PlayResultClient = circle_protocol::PlayResult;

pub use circle_protocol::{CircleInfo, WhoamiResult};

/// The shared protocol crate, re-exported so callers need not depend on it
/// separately (error codes live in `circle_protocol::codes`).
pub use circle_protocol;
