//! A secure circle end to end: a server with TLS and authentication on,
//! several authenticated clients working at once, an unauthenticated client
//! turned away, and a clean shutdown.
//!
//! Run: `cargo run --example wss_end_to_end_example`

use circles::client::{CircleWsClient, CircleWsClientBuilder, TlsConfig};
use circles::server::{ServerConfig, spawn_circle_server};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/key.pem");
/// The circle's identity: a fixed public key (of the secret key 1, for
/// examples only) rather than an ephemeral one generated at each start.
const CIRCLE_PUBLIC_KEY: &str =
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const CLIENTS: u64 = 5;

fn tls() -> TlsConfig {
    TlsConfig {
        ca_cert_path: Some(CERT.into()),
        // accept_invalid_certs: true, // development fallback only
        ..Default::default()
    }
}

async fn client(url: &str, secret_key: Option<String>) -> anyhow::Result<CircleWsClient> {
    let mut builder = CircleWsClientBuilder::new(url).with_tls_config(tls());
    if let Some(key) = secret_key {
        builder = builder.with_keypair(key);
    }
    let client = builder.build()?;
    client.connect().await?;
    Ok(client)
}

/// Counts each thread's allocations so the server enforces the scripts'
/// memory limit (one line in any program that runs circle scripts).
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
        ..Default::default()
    })?;
    let url = format!(
        "wss://localhost:{}/ws",
        server.wss_addr().expect("TLS").port()
    );
    println!("1. server with TLS and authentication on {url}");

    // Several clients at once, each with its own key (test keys 1..=5).
    let mut tasks = Vec::new();
    for n in 1..=CLIENTS {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = client(&url, Some(format!("{n:064x}"))).await?;
            anyhow::ensure!(client.authenticate().await?, "client {n} was refused");
            let output = client.play(format!("{n} * {n}")).await?.output;
            client.disconnect().await;
            anyhow::Ok((n, output))
        }));
    }
    for task in tasks {
        let (n, output) = task.await??;
        anyhow::ensure!(output == (n * n).to_string(), "client {n} got {output}");
        println!("2. client {n}: authenticated, {n} * {n} = {output}");
    }

    // A client that does not authenticate is turned away with -32002.
    let anonymous = client(&url, None).await?;
    match anonymous.play("1 + 1").await {
        Err(error) if error.is_authentication_required() => {
            println!("3. unauthenticated play refused: {error}")
        }
        other => anyhow::bail!("expected -32002, got {other:?}"),
    }
    anonymous.disconnect().await;

    // Graceful stop: sessions are closed with 1001 and the server task ends.
    server.stop().await;
    server_task.await??;
    println!("4. server stopped cleanly");
    Ok(())
}
