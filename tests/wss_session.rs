//! End to end over WSS with a real server: authentication, the errors a
//! caller gets, many requests and many clients at once, and a server that
//! stops while a request is running. Every test runs over both TLS backends.

mod support;

use std::time::{Duration, Instant};

use circle_client_ws::circle_protocol::{
    AuthenticateParams, FetchNonceParams, FetchNonceResult, SigningKey, codes, method,
};
use circle_client_ws::{CircleWsClientError, TlsBackend};
use circle_server::{ScriptLimits, ServerConfig, ServerLimits};
use support::*;

fn auth_server() -> TestServer {
    TestServer::tls(&dev_cert(), &dev_key(), true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_over_wss() {
    let server = auth_server();
    let url = server.wss_url("localhost");
    for backend in backends() {
        let client = connected(&url, backend, Some(ALICE_KEY)).await;
        assert!(client.authenticate().await.unwrap(), "{backend}");
        let whoami = client.whoami().await.unwrap();
        assert!(whoami.authenticated);
        assert_eq!(whoami.pubkey, client.public_key());
        assert_eq!(whoami.circle.public_key, server.handle.circle_public_key());
        let caller = client.play("CALLER_PUBLIC_KEY").await.unwrap().output;
        assert_eq!(Some(caller), client.public_key(), "{backend}");
        client.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_before_authenticate_is_refused_with_32002() {
    let server = auth_server();
    let url = server.wss_url("localhost");
    for backend in backends() {
        let client = connected(&url, backend, Some(ALICE_KEY)).await;
        let error = client.play("1 + 1").await.unwrap_err();
        assert_eq!(
            error.rpc_code(),
            Some(codes::AUTHENTICATION_REQUIRED),
            "{backend}: {error}"
        );
        assert!(error.is_authentication_required());
        // The connection stays usable: authenticate, then play works.
        assert!(client.authenticate().await.unwrap());
        assert_eq!(client.play("1 + 1").await.unwrap().output, "2");

        // A client without a keypair cannot authenticate at all.
        let anonymous = connected(&url, backend, None).await;
        let error = anonymous.authenticate().await.unwrap_err();
        assert!(
            matches!(error, CircleWsClientError::AuthenticationRefused { .. }),
            "{backend}: {error:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_from_the_wrong_key_is_refused() {
    let server = auth_server();
    let url = server.wss_url("localhost");
    let alice = SigningKey::from_hex(ALICE_KEY).unwrap();
    let bob = SigningKey::from_hex(BOB_KEY).unwrap();
    for backend in backends() {
        // Claim Alice's identity, then sign Alice's challenge with Bob's key.
        let client = connected(&url, backend, None).await;
        let params = FetchNonceParams {
            pubkey: Some(alice.public_key().to_compressed_hex()),
            address: None,
        };
        let challenge: FetchNonceResult = serde_json::from_value(
            client
                .request(method::FETCH_NONCE, serde_json::to_value(params).unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        let forged = AuthenticateParams {
            signature: bob.sign_personal_message(&challenge.message).to_hex(),
            pubkey: None,
            address: None,
        };
        let error = client
            .request(method::AUTHENTICATE, serde_json::to_value(forged).unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            error.rpc_code(),
            Some(codes::AUTHENTICATION_FAILED),
            "{backend}: {error}"
        );
        // Still not authenticated.
        let error = client.play("1").await.unwrap_err();
        assert!(error.is_authentication_required(), "{backend}: {error}");
        assert!(!client.whoami().await.unwrap().authenticated);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_plays_on_one_client() {
    let server = auth_server();
    let url = server.wss_url("localhost");
    for backend in backends() {
        let client = connected(&url, backend, Some(ALICE_KEY)).await;
        assert!(client.authenticate().await.unwrap());
        // More than the server's default per-connection cap (64): the client
        // queues the excess instead of collecting -32029 answers.
        let plays: Vec<_> = (0..100)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { (i, client.play(format!("{i} * 3")).await) })
            })
            .collect();
        for play in plays {
            let (i, result) = play.await.unwrap();
            let output = result
                .unwrap_or_else(|e| panic!("{backend}: play {i}: {e}"))
                .output;
            assert_eq!(output, (i * 3).to_string(), "{backend}");
        }
        client.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_at_once() {
    let server = auth_server();
    let url = server.wss_url("localhost");
    for backend in backends() {
        let clients: Vec<_> = (0..50)
            .map(|i| {
                let url = url.clone();
                tokio::spawn(async move {
                    // Each client its own key, so answers cannot be mixed up.
                    let key = format!("{:064x}", i + 1);
                    let client = connected(&url, backend, Some(&key)).await;
                    assert!(client.authenticate().await.unwrap());
                    let output = client
                        .play(format!("`${{CALLER_PUBLIC_KEY}}:{i}`"))
                        .await
                        .unwrap()
                        .output;
                    let expected = format!("{}:{i}", client.public_key().unwrap());
                    client.disconnect().await;
                    (output, expected)
                })
            })
            .collect();
        for client in clients {
            let (output, expected) = client.await.unwrap();
            assert_eq!(output, expected, "{backend}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stopping_mid_request_is_an_error_not_a_hang() {
    for backend in backends() {
        let server = TestServer::start(ServerConfig {
            enable_tls: true,
            cert_path: Some(dev_cert().display().to_string()),
            key_path: Some(dev_key().display().to_string()),
            limits: ServerLimits {
                shutdown_grace: Duration::from_millis(300),
                script_deadline: Duration::from_secs(60),
                ..Default::default()
            },
            script_limits: ScriptLimits {
                max_operations: u64::MAX,
                max_run_time: Duration::from_secs(60),
                ..Default::default()
            },
            ..Default::default()
        });
        let url = server.wss_url("localhost");
        let client = connected(&url, backend, None).await;
        let running = tokio::spawn({
            let client = client.clone();
            async move {
                let started = Instant::now();
                (
                    client.play("let x = 0; loop { x += 1; }").await,
                    started.elapsed(),
                )
            }
        });
        // Let the script start, then stop the server under it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.stop().await;
        let (result, elapsed) = tokio::time::timeout(Duration::from_secs(20), running)
            .await
            .expect("the request ends: no hang")
            .unwrap();
        let error = result.expect_err("a stopped server cannot answer the script");
        assert!(
            matches!(
                error,
                CircleWsClientError::ConnectionLost { .. } | CircleWsClientError::Rpc { .. }
            ),
            "{backend}: {error:?}"
        );
        assert!(
            elapsed < Duration::from_secs(15),
            "{backend}: took {elapsed:?}"
        );
        eprintln!("{backend}: request ended after {elapsed:?}: {error}");
        // And the client says so for the next request too.
        let next = client.play("1").await.unwrap_err();
        assert!(next.is_transient(), "{backend}: {next:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_reauthenticates_after_a_restart() {
    use circle_client_ws::ReconnectPolicy;
    let backend = TlsBackend::Rustls;
    // A fixed port, so the restarted server is at the same URL.
    let first = auth_server();
    let port = first.handle.wss_addr().unwrap().port();
    let url = first.wss_url("localhost");
    let client = client_for(&url, backend, trust_dev_cert())
        .with_keypair(ALICE_KEY)
        .with_reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_attempts: Some(40),
        })
        .build()
        .unwrap();
    client.connect().await.unwrap();
    assert!(client.authenticate().await.unwrap());
    first.stop().await;

    // Restart on the same port (TestServer::start would pick a new one).
    let (task, handle) = circle_server::spawn_circle_server(ServerConfig {
        host: "127.0.0.1".into(),
        port,
        enable_tls: true,
        enable_auth: true,
        cert_path: Some(dev_cert().display().to_string()),
        key_path: Some(dev_key().display().to_string()),
        connection_threads: 1,
        script_threads: 1,
        ..Default::default()
    })
    .expect("restart on the same port");
    // Authenticated again before reporting itself connected: play works
    // on an auth server without calling authenticate().
    let caller = client.play("CALLER_PUBLIC_KEY").await.unwrap().output;
    assert_eq!(Some(caller), client.public_key());
    client.disconnect().await;
    handle.stop().await;
    let _ = task.await;
}
