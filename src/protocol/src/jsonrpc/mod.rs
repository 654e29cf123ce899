//! JSON-RPC 2.0 envelopes: the one definition the server and every client
//! read and write, so the two cannot drift.
//!
//! Each direction has one reader and one writer:
//!
//! | | written with | read as |
//! |---|---|---|
//! | request | [`write_request`] (clients) | [`Request`], borrowed from the frame (server) |
//! | response | [`write_result`], [`write_error`] (server) | [`Response`] (clients) |
//!
//! The server's side is zero-copy: [`parse_frame`] tells a single request
//! from a batch without building a JSON tree, [`Request`] borrows its method
//! and keeps `id` and `params` as raw JSON text, params are decoded straight
//! into their struct ([`Request::parse_params`]), and the writers put the
//! request's id back exactly as it was written. Only a malformed request
//! takes a slow path, which names what is wrong ([`BadRequest`]).

mod error;
mod frame;
mod id;
mod request;
mod response;

pub use error::RpcError;
pub use frame::{Frame, parse_frame};
pub use id::Id;
pub use request::{BadRequest, Request, write_request};
pub use response::{NULL_ID, Response, ResponseError, write_error, write_result};

/// The only JSON-RPC version this protocol speaks.
pub const JSONRPC_VERSION: &str = "2.0";
