//! `circle_bench`: the load generator's parts and what the peer servers share.
//!
//! The load generator (`circle-bench`) and the peers (`echo-wss`,
//! `jsonrpsee-wss`) live in one crate so they use the very same rustls
//! configuration and WebSocket settings: a comparison is only fair when the
//! TLS parameters are identical.

pub mod auth;
pub mod check;
pub mod handshake;
pub mod hold;
pub mod net;
pub mod procfs;
pub mod report;
pub mod rpc;
pub mod stats;
pub mod tls;
pub mod peer;
