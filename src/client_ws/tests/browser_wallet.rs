//! The JavaScript bindings' wallet sign-in against a real `circle-server`
//! over `wss://`, in headless Chromium and Firefox (wasm-bindgen-test; run
//! by `bash .ci/browser-tests.sh`, which compiles the server's URL in).
//!
//! `authenticateWith(address, sign)` with a page callback, and
//! `authenticateWithWallet(provider)` with an EIP-1193 provider written in
//! JavaScript, whose `personal_sign` has the message signed by a real
//! secp256k1 key (this crate's wasm signing; `examples/web/wallet_test.py`
//! does the same with ethers' `Wallet`). Rejections (4001), a provider that
//! never answers, and a signature by another key each end in their coded
//! error.
//!
//! Natively this file compiles to nothing.

#![cfg(target_arch = "wasm32")]

use circle_client_ws::circle_protocol::SigningKey;
use circle_client_ws::js::CircleClient;
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const KEY_PUBLIC: &str = "024e3b81af9c2234cad09d679ce6035ed1392347ce64ce405f5dcd36228a25de6e";
const KEY_ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
const OTHER_KEY: &str = "0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn server_url() -> &'static str {
    match option_env!("CIRCLE_BROWSER_TEST_URL") {
        Some(url) => url,
        None => panic!("CIRCLE_BROWSER_TEST_URL was not set: run `bash .ci/browser-tests.sh`"),
    }
}

fn key(hex: &str) -> SigningKey {
    SigningKey::from_hex(hex).unwrap_or_else(|e| panic!("test key: {e}"))
}

async fn settle(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

fn property(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn kind_and_code(error: &JsValue) -> (Option<String>, Option<f64>) {
    (
        property(error, "kind").as_string(),
        property(error, "code").as_f64(),
    )
}

/// A connected client with the given options (`signTimeoutMs`, …).
async fn connected(options: &[(&str, f64)]) -> CircleClient {
    let object = Object::new();
    for (name, value) in options {
        Reflect::set(
            &object,
            &JsValue::from_str(name),
            &JsValue::from_f64(*value),
        )
        .expect("set option");
    }
    let client = CircleClient::new(server_url().to_owned(), Some(object))
        .unwrap_or_else(|e| panic!("new CircleClient: {e:?}"));
    settle(client.connect()).await.expect("connect");
    client
}

/// `(message) => Promise<signature>`, signing with `key` in this page.
fn signing_callback(key: SigningKey) -> Function {
    Closure::<dyn Fn(String) -> Promise>::new(move |message: String| {
        let signature = key.sign_personal_message(&message).to_hex();
        Promise::resolve(&JsValue::from_str(&signature))
    })
    .into_js_value()
    .unchecked_into()
}

/// `(hexMessage) => signature`: what a wallet does inside `personal_sign`.
fn hex_signing_callback(key: SigningKey) -> Function {
    Closure::<dyn Fn(String) -> String>::new(move |hex_message: String| {
        let digits = hex_message.strip_prefix("0x").unwrap_or(&hex_message);
        let bytes: Vec<u8> = (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex message"))
            .collect();
        let message = String::from_utf8(bytes).expect("UTF-8 message");
        key.sign_personal_message(&message).to_hex()
    })
    .into_js_value()
    .unchecked_into()
}

/// An EIP-1193 provider as a wallet extension injects one: `request`
/// answers `eth_requestAccounts` with `address` and `personal_sign`
/// through `sign(hexMessage)`, checking the params are `[hex, address]`;
/// `behaviour` is `"ok"`, `"reject-accounts"`, `"reject-sign"` (code 4001)
/// or `"silent"` (never answers). It records the methods asked.
fn provider(address: &str, sign: Function, behaviour: &str) -> JsValue {
    let make = Function::new_with_args(
        "address, sign, behaviour",
        r#"
        const rejected = () => Object.assign(new Error("User rejected the request."), { code: 4001 });
        return {
          calls: [],
          async request({ method, params }) {
            this.calls.push(method);
            if (behaviour === "silent") return new Promise(() => {});
            if (method === "eth_requestAccounts") {
              if (behaviour === "reject-accounts") throw rejected();
              return [address.toLowerCase()];
            }
            if (method === "personal_sign") {
              if (behaviour === "reject-sign") throw rejected();
              if (!/^0x[0-9a-f]*$/.test(params[0])) throw new Error("message not hex: " + params[0]);
              if (params[1].toLowerCase() !== address.toLowerCase()) throw new Error("wrong account");
              return sign(params[0]);
            }
            throw Object.assign(new Error("unsupported method " + method), { code: 4200 });
          },
        };
        "#,
    );
    make.call3(
        &JsValue::NULL,
        &JsValue::from_str(address),
        &sign,
        &JsValue::from_str(behaviour),
    )
    .expect("make the provider")
}

fn calls(provider: &JsValue) -> Vec<String> {
    js_sys::Array::from(&property(provider, "calls"))
        .iter()
        .filter_map(|call| call.as_string())
        .collect()
}

#[wasm_bindgen_test]
async fn a_signing_callback_signs_in_and_a_foreign_signature_is_refused() {
    let client = connected(&[]).await;
    // Claims the key's address, signs with another key: refused in the page.
    let error =
        settle(client.authenticate_with(KEY_ADDRESS.into(), signing_callback(key(OTHER_KEY))))
            .await
            .unwrap_err();
    assert_eq!(
        kind_and_code(&error),
        (Some("SignatureMismatch".into()), None)
    );
    assert_eq!(client.address(), None);

    let error = settle(client.authenticate_with("0x1234".into(), signing_callback(key(KEY))))
        .await
        .unwrap_err();
    assert_eq!(kind_and_code(&error).0.as_deref(), Some("InvalidKeypair"));

    let signed_in =
        settle(client.authenticate_with(KEY_ADDRESS.into(), signing_callback(key(KEY))))
            .await
            .expect("authenticateWith");
    assert_eq!(signed_in, JsValue::TRUE);
    assert_eq!(client.address().as_deref(), Some(KEY_ADDRESS));
    let output = settle(client.play("CALLER_PUBLIC_KEY".into()))
        .await
        .expect("play");
    assert_eq!(output.as_string().as_deref(), Some(KEY_PUBLIC));
    settle(client.disconnect()).await.expect("disconnect");
}

#[wasm_bindgen_test]
async fn a_wallet_provider_signs_in_and_plays() {
    let client = connected(&[]).await;
    let wallet = provider(KEY_ADDRESS, hex_signing_callback(key(KEY)), "ok");
    let signed_in = settle(client.authenticate_with_wallet(wallet.clone()))
        .await
        .unwrap_or_else(|e| panic!("authenticateWithWallet: {:?}", property(&e, "message")));
    assert_eq!(signed_in, JsValue::TRUE);
    assert_eq!(calls(&wallet), ["eth_requestAccounts", "personal_sign"]);
    assert_eq!(client.address().as_deref(), Some(KEY_ADDRESS));
    let output = settle(client.play("print(\"wallet\"); CALLER_PUBLIC_KEY".into()))
        .await
        .expect("play");
    assert_eq!(output.as_string(), Some(format!("wallet\n{KEY_PUBLIC}")));
    settle(client.disconnect()).await.expect("disconnect");
}

#[wasm_bindgen_test]
async fn wallet_rejections_silence_and_non_providers_are_coded_errors() {
    let client = connected(&[("signTimeoutMs", 400.0)]).await;
    for behaviour in ["reject-accounts", "reject-sign"] {
        let wallet = provider(KEY_ADDRESS, hex_signing_callback(key(KEY)), behaviour);
        let error = settle(client.authenticate_with_wallet(wallet))
            .await
            .unwrap_err();
        assert!(error.is_instance_of::<js_sys::Error>());
        assert_eq!(
            kind_and_code(&error),
            (Some("SignerRejected".into()), Some(4001.0)),
            "{behaviour}"
        );
        assert_eq!(
            property(&error, "message").as_string().as_deref(),
            Some("User rejected the request."),
        );
    }

    let started = web_time::Instant::now();
    let silent = provider(KEY_ADDRESS, hex_signing_callback(key(KEY)), "silent");
    let error = settle(client.authenticate_with_wallet(silent))
        .await
        .unwrap_err();
    assert_eq!(kind_and_code(&error), (Some("Timeout".into()), None));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    let error = settle(client.authenticate_with_wallet(Object::new().into()))
        .await
        .unwrap_err();
    assert_eq!(
        kind_and_code(&error),
        (Some("SignerInvalidAnswer".into()), None)
    );

    // None of it was sent as a sign-in: the connection is fresh for one.
    let wallet = provider(KEY_ADDRESS, hex_signing_callback(key(KEY)), "ok");
    settle(client.authenticate_with_wallet(wallet))
        .await
        .expect("signs in afterwards");
    settle(client.disconnect()).await.expect("disconnect");
}
