//! An embedding service's host functions over wss://, in the embedded executor: the
//! ledger of the examples (`examples/ledger/`), registered through
//! `ServerConfig::script_environment`, called by signed-in clients over both TLS
//! backends. The same functions through Redis and a custom worker binary are in
//! `tests/custom_worker.rs`.

#[path = "../examples/ledger/mod.rs"]
mod ledger;
mod support;

use circle_client_ws::circle_protocol::codes;
use circle_server::ServerConfig;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_host_function_over_wss() {
    let server = TestServer::start(ServerConfig {
        enable_tls: true,
        enable_auth: true,
        cert_path: Some(dev_cert().display().to_string()),
        key_path: Some(dev_key().display().to_string()),
        script_environment: ledger::environment(ledger::demo_balances()),
        ..Default::default()
    });
    let url = server.wss_url("localhost");
    for backend in backends() {
        let alice = connected(&url, backend, Some(ALICE_KEY)).await;
        assert!(alice.authenticate().await.unwrap());
        assert_eq!(alice.public_key().as_deref(), Some(ledger::ALICE));
        let out = alice.play("balance(CALLER_PUBLIC_KEY)").await.unwrap();
        assert_eq!(out.output, "100", "{backend}");

        let bob = connected(&url, backend, Some(BOB_KEY)).await;
        assert!(bob.authenticate().await.unwrap());
        assert_eq!(
            bob.play("balance(CALLER_PUBLIC_KEY)").await.unwrap().output,
            "0"
        );
        // The function authorises per caller: Bob cannot read Alice's balance.
        let error = bob
            .play(&format!("balance(\"{}\")", ledger::ALICE))
            .await
            .unwrap_err();
        assert_eq!(error.rpc_code(), Some(codes::SCRIPT_ERROR), "{error}");
        assert!(
            error.to_string().contains("your own balance only"),
            "{error}"
        );
        alice.disconnect().await;
        bob.disconnect().await;
    }
    server.stop().await;
}
