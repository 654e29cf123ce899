//! The browser client against a real `circle-server` over `wss://`, in
//! headless Chromium (wasm-bindgen-test).
//!
//! `bash .ci/browser-tests.sh` starts the server (`--auth --tls` with the
//! repository's development certificate, which Chromium trusts through an
//! NSS database, and `--script-timeout-ms 2000`)
//! and compiles this file with its URL in `CIRCLE_BROWSER_TEST_URL`. The
//! page the tests run in is served by wasm-bindgen-test-runner on
//! `http://127.0.0.1:…`, so every `wss://` connection here is verified by
//! Chromium itself: nothing in these tests turns certificate checks off.
//!
//! Natively this file compiles to nothing.

#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use circle_client_ws::js::CircleClient;
use circle_client_ws::{
    CircleWsClient, CircleWsClientBuilder, CircleWsClientError, ReconnectPolicy, TlsBackend,
    TlsConfig, circle_protocol::codes,
};
use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_time::Instant;

wasm_bindgen_test_configure!(run_in_browser);

/// A key of the ethers.js vectors (any key may sign in; the server learns
/// who the caller is, it does not keep a list).
const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const KEY_PUBLIC: &str = "024e3b81af9c2234cad09d679ce6035ed1392347ce64ce405f5dcd36228a25de6e";
const KEY_ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

fn server_url() -> &'static str {
    match option_env!("CIRCLE_BROWSER_TEST_URL") {
        Some(url) => url,
        None => panic!(
            "CIRCLE_BROWSER_TEST_URL was not set when this test was compiled: run \
             `bash .ci/browser-tests.sh`, which starts the server and sets it"
        ),
    }
}

fn client(builder: CircleWsClientBuilder) -> CircleWsClient {
    match builder.build() {
        Ok(client) => client,
        Err(error) => panic!("build: {error}"),
    }
}

async fn ok<T>(what: &str, result: Result<T, CircleWsClientError>) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error}"))
}

#[wasm_bindgen_test]
async fn connects_over_wss_and_plays_after_signing_in() {
    let client = client(
        CircleWsClientBuilder::new(server_url())
            .with_keypair(KEY)
            .with_request_timeout(Duration::from_secs(10)),
    );
    assert!(client.is_wss_url());
    // The browser does TLS: no library of ours is involved.
    assert_eq!(client.tls_backend(), None);
    ok("connect", client.connect().await).await;
    assert!(client.is_connected());

    let who = ok("whoami", client.whoami().await).await;
    assert!(!who.authenticated);

    assert!(ok("authenticate", client.authenticate().await).await);
    let who = ok("whoami", client.whoami().await).await;
    assert!(who.authenticated);
    assert_eq!(who.pubkey.as_deref(), Some(KEY_PUBLIC));

    let result = ok(
        "play",
        client
            .play(r#"print("hi from the browser"); CALLER_PUBLIC_KEY"#)
            .await,
    )
    .await;
    assert_eq!(result.output, format!("hi from the browser\n{KEY_PUBLIC}"));

    // Script errors come back as the server's code, and the connection
    // stays usable.
    let error = client.play("let x = ;").await.unwrap_err();
    assert_eq!(error.rpc_code(), Some(codes::SCRIPT_ERROR), "{error}");
    let result = ok("play", client.play("40 + 2").await).await;
    assert_eq!(result.output, "42");

    client.disconnect().await;
}

#[wasm_bindgen_test]
async fn play_before_authenticate_is_authentication_required() {
    let client = client(CircleWsClientBuilder::new(server_url()));
    ok("connect", client.connect().await).await;
    let error = client.play("1 + 1").await.unwrap_err();
    assert!(error.is_authentication_required(), "{error}");
    assert_eq!(error.rpc_code(), Some(-32002));
    client.disconnect().await;
}

#[wasm_bindgen_test]
async fn requests_time_out_and_late_answers_do_not_confuse_later_ones() {
    let timeout = Duration::from_millis(400);
    let client = client(
        CircleWsClientBuilder::new(server_url())
            .with_keypair(KEY)
            .with_request_timeout(timeout),
    );
    ok("connect", client.connect().await).await;
    assert!(ok("authenticate", client.authenticate().await).await);

    // Runs until the server's 2 s wall-time limit stops it: far longer than
    // the client waits.
    let started = Instant::now();
    let error = client
        .play("let n = 0; loop { n += 1; }")
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(&error, CircleWsClientError::Timeout { operation, after }
            if operation == "play" && *after == timeout),
        "{error}"
    );
    assert!(
        waited >= timeout && waited < Duration::from_millis(1500),
        "timed out after {waited:?}, not about {timeout:?}"
    );

    // The server answers the abandoned request (-32004) when its limit
    // stops the script, about 2 s in. Requests made meanwhile on the same
    // connection still get their own answers: matching is by id, and the
    // late answer, whose caller is gone, is dropped.
    let until = Instant::now() + Duration::from_millis(2600);
    let mut round = 0;
    while Instant::now() < until {
        let result = ok("play", client.play(format!("{round} * 2")).await).await;
        assert_eq!(result.output, (round * 2).to_string());
        round += 1;
        gloo_timers::future::sleep(Duration::from_millis(200)).await;
    }
    assert!(client.is_connected());
    client.disconnect().await;
}

async fn client_with(builder: CircleWsClientBuilder) -> CircleWsClient {
    let client = client(builder);
    ok("connect", client.connect().await).await;
    assert!(ok("authenticate", client.authenticate().await).await);
    client
}

#[wasm_bindgen_test]
async fn pipelined_requests_on_one_connection_each_get_their_own_answer() {
    let client = client_with(
        CircleWsClientBuilder::new(server_url())
            .with_keypair(KEY)
            .with_request_timeout(Duration::from_secs(10)),
    )
    .await;
    // A slow script, then a fast one, both in flight at once: the server may
    // answer in either order (it runs scripts on a pool), and each request
    // still gets its own answer.
    let slow = client.play("let n = 0; while n < 200000 { n += 1; } \"slow\"");
    let fast = client.play("\"fast\"");
    let (slow, fast) = futures_util::future::join(slow, fast).await;
    assert_eq!(ok("slow", slow).await.output, "slow");
    assert_eq!(ok("fast", fast).await.output, "fast");
    client.disconnect().await;
}

#[wasm_bindgen_test]
async fn disconnect_then_connect_again_starts_a_fresh_session() {
    let client = client_with(
        CircleWsClientBuilder::new(server_url())
            .with_keypair(KEY)
            .with_request_timeout(Duration::from_secs(10)),
    )
    .await;
    assert_eq!(ok("play", client.play("1").await).await.output, "1");

    // Disconnecting fails what is still in flight at once, with the reason.
    let (in_flight, ()) =
        futures_util::future::join(client.play("let n = 0; loop { n += 1; }"), async {
            gloo_timers::future::sleep(Duration::from_millis(100)).await;
            client.disconnect().await;
        })
        .await;
    match in_flight {
        Err(CircleWsClientError::ConnectionLost { reason }) => {
            assert!(reason.contains("client closed"), "{reason}")
        }
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
    assert!(!client.is_connected());
    let error = client.play("1").await.unwrap_err();
    assert!(
        matches!(error, CircleWsClientError::NotConnected),
        "{error}"
    );

    ok("connect again", client.connect().await).await;
    // A new connection is a new session: signing in is needed again.
    let error = client.play("1").await.unwrap_err();
    assert!(error.is_authentication_required(), "{error}");
    assert!(ok("authenticate", client.authenticate().await).await);
    assert_eq!(ok("play", client.play("2").await).await.output, "2");
    client.disconnect().await;
}

/// Makes the server close the connection the way `docs/PROTOCOL.md` says it
/// does after too many failed sign-ins: five `authenticate` calls with a bad
/// signature, then close code 1008.
async fn provoke_policy_close(client: &CircleWsClient) {
    for _ in 0..5 {
        let error = client
            .request(
                "authenticate",
                serde_json::json!({ "signature": format!("0x{}", "11".repeat(65)) }),
            )
            .await
            .unwrap_err();
        assert_eq!(
            error.rpc_code(),
            Some(codes::AUTHENTICATION_FAILED),
            "{error}"
        );
    }
}

#[wasm_bindgen_test]
async fn a_connection_closed_by_the_server_comes_back_signed_in() {
    // Without reconnect, the server's close ends the client's connection,
    // and the reason carries the close code.
    let plain = client_with(
        CircleWsClientBuilder::new(server_url())
            .with_keypair(KEY)
            .with_request_timeout(Duration::from_secs(10)),
    )
    .await;
    provoke_policy_close(&plain).await;
    let error = plain.play("1").await.unwrap_err();
    match &error {
        CircleWsClientError::ConnectionLost { reason } => {
            assert!(reason.contains("1008"), "{reason}")
        }
        other => panic!("expected ConnectionLost (1008), got {other}"),
    }
    assert!(!plain.is_connected());

    // With reconnect, the next request waits for the supervisor, which
    // dials again and signs in again before the client reports itself
    // connected: the script sees the same caller.
    let client = client_with(
        CircleWsClientBuilder::new(server_url())
            .with_keypair(KEY)
            .with_request_timeout(Duration::from_secs(10))
            .with_reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
                max_attempts: Some(20),
            }),
    )
    .await;
    provoke_policy_close(&client).await;
    // The close frame follows the fifth answer; a request sent before the
    // client sees it would be in flight on the closing connection (and fail,
    // never resent). Wait until the client has noticed, within a deadline.
    let noticed_by = Instant::now() + Duration::from_secs(5);
    while client.is_connected() {
        assert!(
            Instant::now() < noticed_by,
            "the server's close was never noticed"
        );
        gloo_timers::future::sleep(Duration::from_millis(5)).await;
    }
    let result = ok(
        "play after reconnect",
        client.play("CALLER_PUBLIC_KEY").await,
    )
    .await;
    assert_eq!(result.output, KEY_PUBLIC);
    assert!(client.is_connected());
    // A fresh connection: its failed-sign-in count starts again at zero.
    let who = ok("whoami", client.whoami().await).await;
    assert!(who.authenticated);
    client.disconnect().await;
}

#[wasm_bindgen_test]
async fn an_unreachable_server_is_a_connect_error_not_a_hang() {
    let client = client(
        CircleWsClientBuilder::new("wss://127.0.0.1:1/ws")
            .with_connect_timeout(Duration::from_secs(5)),
    );
    let started = Instant::now();
    let error = client.connect().await.unwrap_err();
    assert!(
        matches!(
            error,
            CircleWsClientError::ConnectFailed { .. } | CircleWsClientError::Timeout { .. }
        ),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[wasm_bindgen_test]
fn tls_settings_the_browser_controls_are_refused_at_build() {
    let settings = [
        TlsConfig {
            accept_invalid_certs: true,
            ..Default::default()
        },
        TlsConfig {
            accept_invalid_hostnames: true,
            ..Default::default()
        },
        TlsConfig {
            ca_cert_path: Some("cert.pem".into()),
            ..Default::default()
        },
        TlsConfig {
            client_cert_path: Some("client.pem".into()),
            client_key_path: Some("client.key.pem".into()),
            ..Default::default()
        },
    ];
    for tls in settings {
        let error = CircleWsClientBuilder::new(server_url())
            .with_tls_config(tls.clone())
            .build()
            .unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, CircleWsClientError::TlsConfig { .. })
                && text.contains("the browser controls TLS trust"),
            "{tls:?}: {text}"
        );
    }
    let error = CircleWsClientBuilder::new(server_url())
        .with_tls_backend(TlsBackend::Rustls)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("browser"), "{error}");
    assert!(TlsBackend::available().is_empty());
    // The default asks nothing of the page, so it works.
    CircleWsClientBuilder::new(server_url())
        .with_tls_config(TlsConfig::default())
        .build()
        .unwrap_or_else(|error| panic!("default TlsConfig: {error}"));
}

// ---- the JavaScript bindings, called as a page would (through promises) ----

async fn settle(promise: js_sys::Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

fn property(value: &JsValue, name: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

#[wasm_bindgen_test]
async fn js_bindings_connect_authenticate_play_and_throw_coded_errors() {
    let client = CircleClient::new(server_url().to_owned(), None)
        .unwrap_or_else(|error| panic!("new CircleClient: {error:?}"));
    settle(client.connect()).await.expect("connect");
    assert!(client.is_connected());

    // play before authenticate: a JS Error with the JSON-RPC code and the
    // server's message.
    let error = settle(client.play("1".into())).await.unwrap_err();
    assert!(error.is_instance_of::<js_sys::Error>());
    assert_eq!(property(&error, "code").as_f64(), Some(-32002.0));
    assert_eq!(
        property(&error, "name").as_string().as_deref(),
        Some("CircleError")
    );
    let message = property(&error, "message").as_string().unwrap_or_default();
    assert!(
        !message.is_empty() && !message.starts_with("server error"),
        "{message}"
    );

    // A malformed key is refused before anything is sent, without echoing it.
    let error = settle(client.authenticate("0x1234".into()))
        .await
        .unwrap_err();
    assert!(property(&error, "code").is_null());
    assert_eq!(
        property(&error, "kind").as_string().as_deref(),
        Some("InvalidKeypair")
    );

    let signed_in = settle(client.authenticate(KEY.into()))
        .await
        .expect("authenticate");
    assert_eq!(signed_in, JsValue::TRUE);
    assert_eq!(client.address().as_deref(), Some(KEY_ADDRESS));

    let output = settle(client.play("print(\"a\"); 1 + 1".into()))
        .await
        .expect("play");
    assert_eq!(output.as_string().as_deref(), Some("a\n2"));

    let who = settle(client.whoami()).await.expect("whoami");
    assert_eq!(property(&who, "authenticated"), JsValue::TRUE);
    assert_eq!(
        property(&who, "pubkey").as_string().as_deref(),
        Some(KEY_PUBLIC)
    );

    let error = settle(client.play("throw \"boom\";".into()))
        .await
        .unwrap_err();
    assert_eq!(
        property(&error, "code").as_f64(),
        Some(f64::from(codes::SCRIPT_ERROR))
    );
    let message = property(&error, "message").as_string().unwrap_or_default();
    assert!(message.contains("boom"), "{message}");

    settle(client.disconnect()).await.expect("disconnect");
    assert!(!client.is_connected());
}

#[wasm_bindgen_test]
fn js_constructor_refuses_bad_urls_and_options() {
    let error = CircleClient::new("https://localhost/ws".into(), None)
        .err()
        .expect("an https:// URL is refused");
    assert_eq!(
        property(&error, "kind").as_string().as_deref(),
        Some("InvalidUrl")
    );

    let options = js_sys::Object::new();
    Reflect::set(&options, &"requestTimeoutMs".into(), &"soon".into()).expect("set");
    let error = CircleClient::new(server_url().to_owned(), Some(options))
        .err()
        .expect("a non-numeric timeout is refused");
    assert_eq!(
        property(&error, "kind").as_string().as_deref(),
        Some("InvalidOptions")
    );
    assert!(error.dyn_ref::<js_sys::Error>().is_some());
}
