//! JavaScript bindings (feature `js`, wasm32 only): [`CircleClient`] for web
//! pages, a thin wrapper around [`CircleWsClient`].
//!
//! ```js
//! import init, { CircleClient } from "./pkg/circle_console.js";
//! await init();
//! const client = new CircleClient("wss://localhost:8443/ws");
//! await client.connect();
//! await client.authenticateWithWallet(window.ethereum);   // optional: the user's wallet signs
//! try {
//!   console.log(await client.play('print("hi"); 40 + 2'));   // "hi\n42"
//! } catch (e) {
//!   console.log(e.code, e.message);  // e.g. -32003 and the script error
//! }
//! // Streamed: each line as it is printed; cancel() stops the script.
//! const play = client.playStream("for i in 0..10 { print(i) }", (line) => console.log(line));
//! setTimeout(() => play.cancel(), 100);
//! try { console.log((await play.done).tail); } catch (e) { console.log(e.kind); } // "Cancelled"
//! ```
//!
//! Every method that talks to the server returns a `Promise`. Failures
//! reject it with a `CircleError` (a JS `Error`) whose `code` is the
//! JSON-RPC error code the server answered (`-32002` authentication
//! required, `-32003` script error, …) or `null` when the failure was not
//! the server's answer (then `kind` says what: `"Timeout"`,
//! `"ConnectionLost"`, `"ConnectFailed"`, …), and whose `message` is the
//! server's message or the client's explanation. Wallet failures keep the
//! wallet's code (`4001`: the user rejected the request); the kinds and
//! codes are listed in the crate README ("JavaScript").

use std::time::Duration;

use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::{CircleWsClient, CircleWsClientBuilder, ReconnectPolicy};

mod error;
mod stream;
mod wallet;

pub use stream::CirclePlay;

use error::{CircleError, to_js_error};
use wallet::{CallbackSigner, WalletSigner};

#[wasm_bindgen(typescript_custom_section)]
const TYPESCRIPT: &'static str = r#"
/** An EIP-1193 provider, such as a browser wallet's `window.ethereum`. */
export interface Eip1193Provider {
  request(args: { method: string; params?: unknown[] | object }): Promise<unknown>;
}

/** What every rejected promise of CircleClient carries. */
export interface CircleError extends Error {
  name: "CircleError";
  /** The server's JSON-RPC code (-32002, -32003, ...), a wallet's EIP-1193
   * code (4001 rejected by the user, ...), or null. */
  code: number | null;
  /** "Rpc", "Timeout", "SignerRejected", "SignerFailed", "SignatureMismatch", ... */
  kind: string;
}

/** What `CirclePlay.done` resolves to. */
export interface CirclePlayDone {
  /** The whole output, as `play` returns it: every line, then the value. */
  output: string;
  /** What the `onLine` calls did not show: the script's value (and any
   * lines dropped because the page fell behind, see droppedLines). */
  tail: string;
  /** Lines not passed to `onLine` because too many waited; they are in `tail`. */
  droppedLines: number;
}

/** Options of `new CircleClient(url, options)`. */
export interface CircleClientOptions {
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** How long a wallet or signing callback may take (default 120000). */
  signTimeoutMs?: number;
  reconnect?: boolean;
}
"#;

/// A circle client for JavaScript: `new CircleClient(url, options?)`.
///
/// `options` (all optional): `requestTimeoutMs` (default 30000),
/// `connectTimeoutMs` (default 10000), `signTimeoutMs` (default 120000:
/// how long a wallet or a signing callback may take), `reconnect` (`true`
/// to reconnect automatically, signing in again, after a lost connection).
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
    pub fn new(
        url: String,
        #[wasm_bindgen(unchecked_param_type = "CircleClientOptions")] options: Option<Object>,
    ) -> Result<CircleClient, JsValue> {
        let mut builder = CircleWsClientBuilder::new(url);
        if let Some(options) = options {
            if let Some(ms) = duration_option(&options, "requestTimeoutMs")? {
                builder = builder.with_request_timeout(ms);
            }
            if let Some(ms) = duration_option(&options, "connectTimeoutMs")? {
                builder = builder.with_connect_timeout(ms);
            }
            if let Some(ms) = duration_option(&options, "signTimeoutMs")? {
                builder = builder.with_sign_timeout(ms);
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

    /// The EIP-55 address signed in with, once an `authenticate…` call
    /// succeeded.
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
    #[wasm_bindgen(unchecked_return_type = "Promise<true>")]
    pub fn authenticate(&self, private_key_hex: String) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            signed_in(client.authenticate_with_keypair(&private_key_hex).await)
        })
    }

    /// Signs in with any signer the page has: `sign(message)` must return
    /// (or resolve to) the EIP-191 `personal_sign` signature of `message`
    /// by `address`, as 130 hex digits (ethers' `wallet.signMessage`, viem's
    /// `signMessage`, …). The signature is checked in the page before it is
    /// sent. Resolves to `true`; rejects with a `CircleError`: `kind`
    /// `"SignerRejected"` (`code` 4001, when `sign` throws or rejects with
    /// `code` 4001), `"SignerFailed"` (the thrown `code`, or `null`),
    /// `"SignerInvalidAnswer"`, `"SignatureMismatch"` (signed by another
    /// address: not sent), `"Timeout"` (past `signTimeoutMs`),
    /// `"InvalidKeypair"` (`address` is not an address), or `code` `-32001`
    /// when the server refuses.
    #[wasm_bindgen(js_name = authenticateWith, unchecked_return_type = "Promise<true>")]
    pub fn authenticate_with(
        &self,
        address: String,
        #[wasm_bindgen(unchecked_param_type = "(message: string) => string | Promise<string>")]
        sign: js_sys::Function,
    ) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let address = circle_protocol::Address::from_hex(&address).map_err(|e| {
                CircleError {
                    code: None,
                    kind: "InvalidKeypair",
                    message: format!("{address:?} is not an Ethereum address: {e}"),
                }
                .into_js()
            })?;
            signed_in(
                client
                    .authenticate_with_signer(CallbackSigner { address, sign })
                    .await,
            )
        })
    }

    /// Signs in with a browser wallet through its EIP-1193 provider
    /// (`window.ethereum`): `eth_requestAccounts` (the wallet asks its user
    /// to connect this page), then `personal_sign` of the sign-in message
    /// with the first account. The key never reaches the page. Resolves to
    /// `true`; rejects with a `CircleError` as `authenticateWith` does
    /// (`"SignerRejected"` with `code` 4001 when the user rejects either
    /// request, `"SignerFailed"` with the wallet's code otherwise,
    /// `"Timeout"` when the wallet does not answer within `signTimeoutMs`).
    #[wasm_bindgen(js_name = authenticateWithWallet, unchecked_return_type = "Promise<true>")]
    pub fn authenticate_with_wallet(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Eip1193Provider")] provider: JsValue,
    ) -> Promise {
        let client = self.client.clone();
        future_to_promise(async move {
            let signer = WalletSigner::connect(provider, client.sign_timeout())
                .await
                .map_err(to_js_error)?;
            signed_in(client.authenticate_with_signer(signer).await)
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

    /// Runs a Rhai script and calls `onLine(line)` with each line it
    /// prints, as it prints it (protocol 1.1 streaming). Returns a
    /// `CirclePlay` at once: `await play.done` for the answer
    /// (`{output, tail, droppedLines}`), `await play.cancel()` to stop the
    /// script (`done` then rejects with `kind` `"Cancelled"`, code -32006).
    #[wasm_bindgen(js_name = playStream)]
    pub fn play_stream(
        &self,
        script: String,
        #[wasm_bindgen(js_name = onLine, unchecked_param_type = "(line: string) => void")]
        on_line: js_sys::Function,
    ) -> CirclePlay {
        stream::start(self.client.clone(), script, on_line)
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

/// The answer of an `authenticate…` call, as the promise settles.
fn signed_in(answer: Result<bool, crate::CircleWsClientError>) -> Result<JsValue, JsValue> {
    match answer {
        Ok(true) => Ok(JsValue::TRUE),
        Ok(false) => Err(CircleError {
            code: Some(f64::from(circle_protocol::codes::AUTHENTICATION_FAILED)),
            kind: "Rpc",
            message: "authentication failed: the server refused the signature".into(),
        }
        .into_js()),
        Err(error) => Err(to_js_error(error)),
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
