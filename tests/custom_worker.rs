//! A custom worker built with the library function, end to end: a circle server in Redis
//! mode over wss://, a private `redis-server`, and this very binary started again as the
//! embedding service's worker (`run_worker` with the ledger's host functions, as
//! `examples/ledger_worker/` does). A signed-in client calls the host function and uses
//! the store; the answers can only come from that worker.
//!
//! No libtest harness: run without `LEDGER_WORKER_REDIS_URL` this is the test; with it
//! (set by the test for its child) it is the worker. Needs `redis-server` on the PATH.

#[path = "../examples/ledger/mod.rs"]
mod ledger;
#[path = "../src/executor/tests/support/mod.rs"]
mod redis_support;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use circle_client_ws::circle_protocol::codes;
use circle_executor::WorkerConfig;
use circle_server::ServerConfig;
use redis_support::{RedisServer, circle_key};
use support::*;

/// Set for the child process: the Redis it works for. `LEDGER_WORKER_CIRCLE` names the
/// circle, `LEDGER_WORKER_ADMIN` the admin key.
const ROLE_VARIABLE: &str = "LEDGER_WORKER_REDIS_URL";

#[global_allocator]
static ALLOCATOR: circle_executor::memory::CountingAllocator =
    circle_executor::memory::CountingAllocator::new();

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match std::env::var(ROLE_VARIABLE) {
        Ok(url) => runtime.block_on(worker(url)),
        Err(_) => {
            println!("\nrunning 1 test");
            runtime.block_on(host_functions_and_the_store_through_a_custom_worker());
            println!("test host_functions_and_the_store_through_a_custom_worker ... ok");
            println!("\ntest result: ok. 1 passed; 0 failed\n");
        }
    }
}

/// The custom worker: the embedding service's few lines around `run_worker`.
async fn worker(url: String) {
    let circle = std::env::var("LEDGER_WORKER_CIRCLE").expect("circle key");
    let config = WorkerConfig {
        name: "ledger-worker".into(),
        concurrency: 2,
        admin_keys: vec![std::env::var("LEDGER_WORKER_ADMIN").expect("admin key")],
        ..WorkerConfig::new(url, circle)
    };
    let stop = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM");
        terminate.recv().await;
    };
    let environment = ledger::environment(ledger::demo_balances());
    circle_executor::run_worker(config, environment, stop)
        .await
        .expect("the worker starts");
}

/// This binary, started as the worker; killed when dropped.
struct WorkerChild(Child);

impl Drop for WorkerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn host_functions_and_the_store_through_a_custom_worker() {
    let redis = RedisServer::start();
    let circle = circle_key(42);
    let server = TestServer::start(ServerConfig {
        enable_tls: true,
        enable_auth: true,
        cert_path: Some(dev_cert().display().to_string()),
        key_path: Some(dev_key().display().to_string()),
        circle_public_key: circle.clone(),
        redis_url: Some(redis.url()),
        ..Default::default()
    });
    let url = server.wss_url("localhost");
    let alice = connected(&url, circle_client_ws::TlsBackend::Rustls, Some(ALICE_KEY)).await;
    assert!(alice.authenticate().await.unwrap());

    // No worker yet: the server itself has no `balance` (scripts run in workers only), so
    // an answer naming it can only come from the custom worker.
    let mut child = WorkerChild(
        Command::new(std::env::current_exe().expect("this test's path"))
            .env(ROLE_VARIABLE, redis.url())
            .env("LEDGER_WORKER_CIRCLE", &circle)
            .env("LEDGER_WORKER_ADMIN", ledger::ALICE)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the custom worker"),
    );
    let give_up = Instant::now() + Duration::from_secs(30);
    let balance = loop {
        match alice.play("balance(CALLER_PUBLIC_KEY)").await {
            Ok(out) => break out.output,
            Err(error) if Instant::now() < give_up => {
                assert_eq!(
                    error.rpc_code(),
                    Some(codes::EXECUTOR_UNAVAILABLE),
                    "{error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the custom worker never answered: {error}"),
        }
    };
    assert_eq!(balance, "100");
    let error = alice
        .play(&format!("balance(\"03{}\")", "00".repeat(32)))
        .await
        .unwrap_err();
    assert_eq!(error.rpc_code(), Some(codes::SCRIPT_ERROR), "{error}");

    // The store through Redis: Alice is the admin the worker was given.
    alice
        .play(r#"store::set("note", "mine"); circle::set("motd", "hello")"#)
        .await
        .unwrap();
    let bob = connected(&url, circle_client_ws::TlsBackend::Rustls, Some(BOB_KEY)).await;
    assert!(bob.authenticate().await.unwrap());
    let out = bob
        .play(r#"`${store::get("note")}|${circle::get("motd")}`"#)
        .await
        .unwrap();
    assert_eq!(
        out.output, "|hello",
        "Bob sees the circle's key, not Alice's"
    );
    let error = bob
        .play(r#"circle::set("motd", "mine")"#)
        .await
        .unwrap_err();
    assert_eq!(error.rpc_code(), Some(codes::SCRIPT_ERROR), "{error}");
    assert_eq!(
        alice.play(r#"store::get("note")"#).await.unwrap().output,
        "mine"
    );

    // A graceful stop: SIGTERM, exit 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill(1)");
    assert!(status.success());
    let stopped = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < stopped, "the custom worker did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    alice.disconnect().await;
    bob.disconnect().await;
    server.stop().await;
}
