//! # circle_protocol
//!
//! The wire protocol of circles (`PROTOCOL.md`), shared by the server and
//! every client so that the two cannot drift:
//!
//! - [`jsonrpc`]: JSON-RPC 2.0 envelopes, ids, errors and batches: the
//!   zero-copy request the server reads, the response writer, and the
//!   request writer and response reader of clients;
//! - [`methods`]: parameters and results of `fetch_nonce`, `authenticate`,
//!   `play` and `whoami`;
//! - [`codes`]: every error code;
//! - [`challenge`]: the sign-in challenge, a Sign-In with Ethereum
//!   (EIP-4361) message, built and parsed byte for byte (no feature needed);
//! - [`rfc3339`]: the challenge's RFC 3339 UTC timestamps, written and read;
//! - [`circle_key`]: a circle public key from configuration, in the one
//!   canonical text form every program uses;
//! - `crypto`, with the `crypto` feature (default): Keccak-256, EIP-191
//!   `personal_sign` signing and signer recovery, secp256k1 keys and EIP-55
//!   addresses, on `k256` (pure Rust).
//!
//! This crate does no I/O and compiles for `wasm32-unknown-unknown` without
//! a C compiler.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod challenge;
mod challenge_error;
pub mod circle_key;
#[cfg(feature = "crypto")]
pub mod crypto;
pub mod jsonrpc;
pub mod methods;
pub mod rfc3339;

pub use challenge::{ChallengeError, MIN_NONCE_LEN, SignInChallenge, is_valid_nonce};
#[cfg(feature = "crypto")]
pub use circle_key::parse_circle_public_key;
pub use circle_key::{InvalidCircleKey, canonical_circle_public_key};
#[cfg(feature = "crypto")]
pub use crypto::{
    Address, HexError, KeyError, PublicKey, Signature, SignatureError, SigningKey, eip191_hash,
    keccak256, recover_personal_signer,
};
pub use jsonrpc::{
    BadRequest, Frame, Id, Request, Response, ResponseError, RpcError, parse_frame, write_error,
    write_request, write_result,
};
pub use methods::*;
pub use rfc3339::{MAX_RFC3339_UNIX_SECONDS, format_rfc3339_utc, parse_rfc3339_utc};

/// JSON-RPC error codes used by circles (PROTOCOL.md, "Errors").
pub mod codes {
    /// The frame is not JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// JSON, but not a valid JSON-RPC request (or a binary frame).
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// The params do not fit the method.
    pub const INVALID_PARAMS: i32 = -32602;
    /// The server failed.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// Authentication failed: bad, expired, reused or foreign nonce; bad
    /// signature; key mismatch.
    pub const AUTHENTICATION_FAILED: i32 = -32001;
    /// The server requires authentication before `play`.
    pub const AUTHENTICATION_REQUIRED: i32 = -32002;
    /// The script failed to parse or run.
    pub const SCRIPT_ERROR: i32 = -32003;
    /// The script was stopped by a limit (time, operations, memory, output).
    pub const SCRIPT_LIMIT: i32 = -32004;
    /// The script executor is unavailable.
    pub const EXECUTOR_UNAVAILABLE: i32 = -32005;
    /// Protocol 1.1: the script was cancelled by its caller (`cancel`).
    pub const SCRIPT_CANCELLED: i32 = -32006;
    /// Too many requests.
    pub const TOO_MANY_REQUESTS: i32 = -32029;
}

/// WebSocket close codes the server uses (RFC 6455 §7.4.1).
pub mod close_codes {
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol violation at the WebSocket level.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Too many failed `authenticate` calls.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}
