//! JavaScript bindings (feature `js`, wasm32 only): [`CircleClient`] for web
//! pages, a thin wrapper around [`CircleWsClient`].
//!
//! ```js
//! import init, { CircleClient } from "./pkg/circle_console.js";
//! await init();
//! const client = new CircleClient("wss://localhost:8443/ws");
//! await client.connect();
//! await client.authenticate("0x4c08…2318");      // optional
//! try {
//!   console.log(await client.play('print("hi"); 40 + 2'));   // "hi\n42"
//! } catch (e) {
//!   console.log(e.code, e.message);  // e.g. -32003 and the script error
//! }
//! ```
//!
//! Every method that talks to the server returns a `Promise`. Failures
//! reject it with a `CircleError` (a JS `Error`) whose `code` is the
//! JSON-RPC error code the server answered (`-32002` authentication
//! required, `-32003` script error, …) or `null` when the failure was not
//! the server's answer (then `kind` says what: `"Timeout"`,
//! `"ConnectionLost"`, `"ConnectFailed"`, …), and whose `message` is the
//! server's message or the client's explanation.

use std::time::Duration;

use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::{CircleWsClient, CircleWsClientBuilder, CircleWsClientError, ReconnectPolicy};

/// A circle client for JavaScript: `new CircleClient(url, options?)`.
///
/// `options` (all optional): `requestTimeoutMs` (default 30000),
/// `connectTimeoutMs` (default 10000), `reconnect` (`true` to reconnect
/// automatically, signing in again, after a lost connection).
#[wasm_bindgen]
pub struct CircleClient {
    client: CircleWsClient,
}

#[wasm_bindgen]
impl CircleClient {
    /// Checks the URL (`ws://…/ws` or `wss://…/ws`) and the options; does
    /// not connect. Throws a `CircleError` (`kind` `"InvalidUrl"`, …) when
    /// one is unusable.
    #[wasm_bindgen(constructor)]
    pub fn new(url: String, options: Option<Object>) -> Result<CircleClient, JsValue> {
        let mut builder = CircleWsClientBuilder::new(url);
        if let Some(options) = options {
            if let Some(ms) = duration_option(&options, "requestTimeoutMs")? {
                builder = builder.with_request_timeout(ms);
            }
            if let Some(ms) = duration_option(&options, "connectTimeoutMs")? {
                builder = builder.with_connect_timeout(ms);
            }
            let reconnect = Reflect::get(&options, &JsValue::from_str("reconnect"))?;
            if reconnect.is_truthy() {
                builder = builder.with_reconnect(ReconnectPolicy::default());
            }
        }
        let client = builder.build().map_err(to_js_error)?;
        Ok(CircleClient { client })
    }

    /// The server URL.
    #[wasm_bindgen(getter)]
    pub fn url(&self) -> String {
        self.client.url().to_owned()
    }

    /// Whether a connection is open right now.
    #[wasm_bindgen(getter, js_name = isConnected)]
    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// The EIP-55 address signed in with, once `authenticate` succeeded.
    #[wasm_bindgen(getter)]
    pub fn address(&self) -> Option<String> {
        self.client.address()
    }

    /// Opens the connection. Resolves to `undefined`; rejects with a
    /// `CircleError` (`kind` `"ConnectFailed"` or `"Timeout"`).
    pub fn connect(&self) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            client.connect().await.map_err(to_js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Signs in with a secp256k1 secret key (64 hex digits, `0x` optional):
    /// `fetch_nonce`, EIP-191 signature in the page, `authenticate`.
    /// Resolves to `true`; rejects with `code` `-32001` when the server
    /// refuses, or `kind` `"InvalidKeypair"` for a malformed key (the key
    /// itself is never repeated in the error).
    pub fn authenticate(&self, private_key_hex: String) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            match client.authenticate_with_keypair(&private_key_hex).await {
                Ok(true) => Ok(JsValue::TRUE),
                Ok(false) => Err(CircleError {
                    code: Some(circle_protocol::codes::AUTHENTICATION_FAILED),
                    kind: "Rpc",
                    message: "authentication failed: the server refused the signature".into(),
                }
                .into_js()),
                Err(error) => Err(to_js_error(error)),
            }
        })
    }

    /// Runs a Rhai script; resolves to its output (the printed lines, then
    /// the script's value). Rejects with the server's `code` and `message`
    /// (`-32003` script error, `-32004` limit, `-32002` sign in first).
    pub fn play(&self, script: String) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let result = client.play(script).await.map_err(to_js_error)?;
            Ok(JsValue::from_str(&result.output))
        })
    }

    /// Asks who this connection is: resolves to
    /// `{authenticated, pubkey, circle: {name, public_key}}`.
    pub fn whoami(&self) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let result = client.whoami().await.map_err(to_js_error)?;
            to_js_value(&result)
        })
    }

    /// Closes the connection (close code 1000); resolves when closed.
    pub fn disconnect(&self) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            client.disconnect().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// A whole number of milliseconds from `options[name]`, when set.
fn duration_option(options: &Object, name: &str) -> Result<Option<Duration>, JsValue> {
    let value = Reflect::get(options, &JsValue::from_str(name))?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    match value.as_f64() {
        // Fractions of a millisecond are dropped; the cast saturates.
        Some(ms) if ms.is_finite() && ms >= 0.0 => Ok(Some(Duration::from_millis(ms as u64))),
        _ => Err(CircleError {
            code: None,
            kind: "InvalidOptions",
            message: format!("options.{name} must be a number of milliseconds (0 or more)"),
        }
        .into_js()),
    }
}

/// A value as JS, through JSON (the protocol's types are JSON already).
fn to_js_value<T: serde::Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let text = serde_json::to_string(value).map_err(|e| {
        CircleError {
            code: None,
            kind: "Protocol",
            message: format!("cannot encode the answer: {e}"),
        }
        .into_js()
    })?;
    js_sys::JSON::parse(&text)
}

/// What a rejected promise carries, before it becomes a JS `Error`.
struct CircleError {
    code: Option<i32>,
    kind: &'static str,
    message: String,
}

impl CircleError {
    fn into_js(self) -> JsValue {
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
fn to_js_error(error: CircleWsClientError) -> JsValue {
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
        CircleWsClientError::Protocol(_) => "Protocol",
        CircleWsClientError::InvalidKeypair(_) => "InvalidKeypair",
    };
    let (code, message) = match error {
        CircleWsClientError::Rpc { code, message, .. } => (Some(code), message),
        other => (None, other.to_string()),
    };
    CircleError {
        code,
        kind,
        message,
    }
    .into_js()
}
