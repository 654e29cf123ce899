//! `CircleError`: what every rejected promise of the bindings carries, with
//! a `kind` per [`CircleWsClientError`] variant and a numeric `code` where
//! there is one (the server's JSON-RPC code, or a wallet's EIP-1193 code).

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use crate::{CircleWsClientError, SignerError};

/// EIP-1193's "User Rejected Request": what a wallet answers when its user
/// presses *Reject*; the bindings' `SignerRejected` errors carry it.
pub(crate) const USER_REJECTED: i64 = 4001;

/// What a rejected promise carries, before it becomes a JS `Error`.
pub(crate) struct CircleError {
    pub(crate) code: Option<f64>,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl CircleError {
    pub(crate) fn into_js(self) -> JsValue {
        let error = js_sys::Error::new(&self.message);
        error.set_name("CircleError");
        let code = self.code.map_or(JsValue::NULL, JsValue::from);
        // Setting a property on a fresh Error object cannot fail; if it ever
        // did, the error still carries its message.
        let _ = Reflect::set(&error, &JsValue::from_str("code"), &code);
        let _ = Reflect::set(
            &error,
            &JsValue::from_str("kind"),
            &JsValue::from_str(self.kind),
        );
        error.into()
    }
}

/// The client's error as a `CircleError`: for server errors the JSON-RPC
/// code and the server's own message, otherwise `code: null` and the
/// client's explanation.
pub(crate) fn to_js_error(error: CircleWsClientError) -> JsValue {
    let kind = match &error {
        CircleWsClientError::InvalidUrl { .. } => "InvalidUrl",
        CircleWsClientError::TlsConfig { .. } => "TlsConfig",
        CircleWsClientError::CertificateRejected { .. } => "CertificateRejected",
        CircleWsClientError::TlsHandshake { .. } => "TlsHandshake",
        CircleWsClientError::ConnectionRefused { .. } => "ConnectionRefused",
        CircleWsClientError::ConnectFailed { .. } => "ConnectFailed",
        CircleWsClientError::WebSocketHandshake { .. } => "WebSocketHandshake",
        CircleWsClientError::ConnectionLost { .. } => "ConnectionLost",
        CircleWsClientError::NotConnected => "NotConnected",
        CircleWsClientError::Timeout { .. } => "Timeout",
        CircleWsClientError::AuthenticationRefused { .. } => "AuthenticationRefused",
        CircleWsClientError::Rpc { .. } => "Rpc",
        CircleWsClientError::Cancelled { .. } => "Cancelled",
        CircleWsClientError::Protocol(_) => "Protocol",
        CircleWsClientError::InvalidKeypair(_) => "InvalidKeypair",
        CircleWsClientError::Signer(SignerError::Rejected { .. }) => "SignerRejected",
        CircleWsClientError::Signer(SignerError::InvalidAnswer { .. }) => "SignerInvalidAnswer",
        CircleWsClientError::Signer(_) => "SignerFailed",
        CircleWsClientError::SignatureMismatch { .. } => "SignatureMismatch",
        CircleWsClientError::InvalidSignature { .. } => "InvalidSignature",
    };
    let (code, message) = match error {
        CircleWsClientError::Rpc { code, message, .. } => (Some(f64::from(code)), message),
        CircleWsClientError::Cancelled { message } => (
            Some(f64::from(circle_protocol::codes::SCRIPT_CANCELLED)),
            message,
        ),
        CircleWsClientError::Signer(SignerError::Rejected { message }) => {
            (Some(USER_REJECTED as f64), message)
        }
        CircleWsClientError::Signer(SignerError::Failed {
            code: Some(code),
            message,
        }) => (Some(code as f64), message),
        other => (None, other.to_string()),
    };
    CircleError {
        code,
        kind,
        message,
    }
    .into_js()
}
