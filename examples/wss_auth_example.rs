//! WSS with secp256k1 authentication: the server requires sign-in, the
//! client signs the server's challenge (EIP-191 `personal_sign`) and then
//! runs a script that sees who called it.
//!
//! Run: `cargo run --example wss_auth_example`

use circles::client::{CircleWsClientBuilder, TlsConfig};
use circles::server::{ServerConfig, spawn_circle_server};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/key.pem");
/// The circle's identity: a fixed public key (of the secret key 1, for
/// examples only) rather than an ephemeral one generated at each start.
const CIRCLE_PUBLIC_KEY: &str =
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

/// A well-known test key (from the Ethereum docs): never hold real value with it.
const SECRET_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

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
        circle_name: "example circle".into(),
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
    println!("server listening on {url} (authentication required)");

    let client = CircleWsClientBuilder::new(&url)
        .with_keypair(SECRET_KEY)
        .with_tls_config(TlsConfig {
            ca_cert_path: Some(CERT.into()),
            // accept_invalid_certs: true, // development fallback only
            ..Default::default()
        })
        .build()?;
    client.connect().await?;
    println!(
        "connected as {}",
        client.address().expect("a keypair is configured")
    );

    if client.authenticate().await? {
        println!("authenticated over WSS");
    } else {
        anyhow::bail!("the server refused the signature");
    }

    // The script sees who called it; on an auth server that is our key.
    let result = client
        .play(r#"print(`circle: ${CIRCLE_NAME}`); print(`caller: ${CALLER_PUBLIC_KEY}`);"#)
        .await?;
    println!("the script printed:\n{}", result.output);
    anyhow::ensure!(
        result
            .output
            .ends_with(&client.public_key().unwrap_or_default()),
        "the server saw another caller"
    );

    client.disconnect().await;
    server.stop().await;
    server_task.await??;
    println!("done");
    Ok(())
}
