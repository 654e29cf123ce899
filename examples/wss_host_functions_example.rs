//! A service embedding a circle and giving its scripts a function of its own:
//! `balance(CALLER_PUBLIC_KEY)` from a ledger, readable by its owner only. The same
//! environment runs in the matching worker binary (`examples/ledger_worker/`) when the
//! circle scales out through Redis.
//!
//! Run: `cargo run --example wss_host_functions_example`

#[path = "ledger/mod.rs"]
mod ledger;

use circles::client::{CircleWsClientBuilder, TlsConfig};
use circles::server::{ServerConfig, spawn_circle_server};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/key.pem");
/// The circle's fixed identity (the public key of the secret key 1, for examples only).
const CIRCLE_PUBLIC_KEY: &str =
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
/// A well-known test key (from the Ethereum docs): never hold real value with it.
const SECRET_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

#[global_allocator]
static ALLOCATOR: circles::executor::memory::CountingAllocator =
    circles::executor::memory::CountingAllocator::new();

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let (server_task, server) = spawn_circle_server(ServerConfig {
        enable_tls: true,
        enable_auth: true,
        cert_path: Some(CERT.into()),
        key_path: Some(KEY.into()),
        port: 0,
        circle_public_key: CIRCLE_PUBLIC_KEY.into(),
        // The one line that adds the host functions.
        script_environment: ledger::environment(ledger::demo_balances()),
        ..Default::default()
    })?;
    let url = format!(
        "wss://localhost:{}/ws",
        server.wss_addr().expect("TLS").port()
    );

    let client = CircleWsClientBuilder::new(&url)
        .with_keypair(SECRET_KEY)
        .with_tls_config(TlsConfig {
            ca_cert_path: Some(CERT.into()),
            ..Default::default()
        })
        .build()?;
    client.connect().await?;
    anyhow::ensure!(client.authenticate().await?, "sign-in refused");

    let mine = client.play("balance(CALLER_PUBLIC_KEY)").await?.output;
    println!("my balance: {mine}");
    anyhow::ensure!(mine == "100", "expected Alice's 100, got {mine}");
    let other = client
        .play(&format!("balance(\"03{}\")", "00".repeat(32)))
        .await;
    match other {
        Err(error) => println!("someone else's balance: refused ({error})"),
        Ok(out) => anyhow::bail!("read someone else's balance: {}", out.output),
    }

    client.disconnect().await;
    server.stop().await;
    server_task.await??;
    Ok(())
}
