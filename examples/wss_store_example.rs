//! The circle's store: sign in over wss://, write to your own namespace, reconnect (and
//! restart the server on the same data directory), read it back. The store file is
//! `store.redb` in the data directory; each play's writes are on disk before it is
//! answered.
//!
//! Run: `cargo run --example wss_store_example`

use circles::client::{CircleWsClient, CircleWsClientBuilder, TlsConfig};
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

/// Connects to `url` and signs in with the example key.
async fn sign_in(url: &str) -> anyhow::Result<CircleWsClient> {
    let client = CircleWsClientBuilder::new(url)
        .with_keypair(SECRET_KEY)
        .with_tls_config(TlsConfig {
            ca_cert_path: Some(CERT.into()),
            ..Default::default()
        })
        .build()?;
    client.connect().await?;
    anyhow::ensure!(client.authenticate().await?, "sign-in refused");
    Ok(client)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // A real server would use a fixed folder, e.g. /var/lib/circle.
    let data = tempfile::tempdir()?;
    let config = ServerConfig {
        enable_tls: true,
        enable_auth: true,
        cert_path: Some(CERT.into()),
        key_path: Some(KEY.into()),
        port: 0,
        circle_public_key: CIRCLE_PUBLIC_KEY.into(),
        data_dir: Some(data.path().to_owned()),
        ..Default::default()
    };

    let (task, server) = spawn_circle_server(config.clone())?;
    let url = format!(
        "wss://localhost:{}/ws",
        server.wss_addr().expect("TLS").port()
    );
    let client = sign_in(&url).await?;
    let written = client
        .play(
            r#"store::set("profile", #{name: "Alice", visits: 1});
               store::set("notes/first", "hello");
               store::keys("notes/")"#,
        )
        .await?;
    println!("wrote; my notes: {}", written.output);
    client.disconnect().await;

    // A new connection reads what the first one wrote.
    let client = sign_in(&url).await?;
    let visits = client
        .play(r#"let p = store::get("profile"); p.visits += 1; store::set("profile", p); p.visits"#)
        .await?;
    println!("after reconnecting: visits = {}", visits.output);
    client.disconnect().await;
    server.stop().await;
    task.await??;

    // And a restarted server on the same data directory still has it.
    let (task, server) = spawn_circle_server(config)?;
    let url = format!(
        "wss://localhost:{}/ws",
        server.wss_addr().expect("TLS").port()
    );
    let client = sign_in(&url).await?;
    let read = client
        .play(r#"let p = store::get("profile"); `${p.name} visited ${p.visits} times`"#)
        .await?;
    println!("after a restart: {}", read.output);
    anyhow::ensure!(
        read.output == "Alice visited 2 times",
        "unexpected: {}",
        read.output
    );
    client.disconnect().await;
    server.stop().await;
    task.await??;
    Ok(())
}
