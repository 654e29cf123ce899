//! # circles
//!
//! Authenticated Rhai scripts over secure WebSockets. A *circle* is a named
//! service with a secp256k1 identity: people connect over `ws://` or
//! `wss://`, sign in by signing a Sign-In with Ethereum challenge with their
//! key, and send it scripts to run (`play`).
//!
//! This crate is the one dependency an application needs: it re-exports the
//! workspace's crates under short paths.
//!
//! | path | crate | what it holds |
//! |---|---|---|
//! | [`server`] | `circle_server` | [`ServerConfig`](server::ServerConfig), [`spawn_circle_server`](server::spawn_circle_server), [`ServerHandle`](server::ServerHandle), TLS loading and its errors |
//! | [`client`] | `circle_client_ws` | [`CircleWsClientBuilder`](client::CircleWsClientBuilder), [`CircleWsClient`](client::CircleWsClient), [`TlsConfig`](client::TlsConfig) (native and WASM) |
//! | [`protocol`] | `circle_protocol` | the JSON-RPC types, error codes, the sign-in challenge, EIP-191 signing and recovery |
//! | [`executor`] | `circle_executor` | the Rhai sandbox, the embedded pool, the Redis executor and worker, the counting allocator |
//!
//! The wire protocol is `docs/PROTOCOL.md` in the repository.
//!
//! # A server and a client in one program
//!
//! ```no_run
//! use circles::client::{CircleWsClientBuilder, TlsConfig};
//! use circles::server::{ServerConfig, spawn_circle_server};
//!
//! // Scripts get a real memory cap only when the process counts allocations.
//! #[global_allocator]
//! static ALLOCATOR: circles::executor::memory::CountingAllocator =
//!     circles::executor::memory::CountingAllocator::new();
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let (server_task, server) = spawn_circle_server(ServerConfig {
//!         enable_tls: true,
//!         enable_auth: true,
//!         cert_path: Some("cert.pem".into()),
//!         key_path: Some("key.pem".into()),
//!         port: 8443,
//!         ..Default::default()
//!     })?;
//!
//!     let client = CircleWsClientBuilder::new("wss://localhost:8443/ws")
//!         .with_tls_config(TlsConfig {
//!             ca_cert_path: Some("cert.pem".into()),
//!             ..Default::default()
//!         })
//!         .with_keypair("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
//!         .build()?;
//!     client.connect().await?;
//!     client.authenticate().await?;
//!     println!("{}", client.play("print('Hello WSS!')").await?.output);
//!
//!     client.disconnect().await;
//!     server.stop().await;
//!     server_task.await??;
//!     Ok(())
//! }
//! ```
//!
//! A crate that needs only one side can depend on that crate alone
//! (`circle_client_ws` for a client, which also builds for
//! `wasm32-unknown-unknown`; `circle_server` for a server).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use circle_client_ws as client;
pub use circle_executor as executor;
pub use circle_protocol as protocol;
pub use circle_server as server;
