//! WSS without authentication: start a TLS circle server in-process, connect
//! a client that trusts the repository's development certificate, run one
//! script, shut down.
//!
//! Run: `cargo run --example wss_basic_example`

use circles::client::{CircleWsClientBuilder, TlsConfig};
use circles::server::{ServerConfig, spawn_circle_server};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/key.pem");
/// The circle's identity: a fixed public key (of the secret key 1, for
/// examples only) rather than an ephemeral one generated at each start.
const CIRCLE_PUBLIC_KEY: &str =
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

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

    // One TLS listener on a free port (port 0), with the development certificate.
    let (server_task, server) = spawn_circle_server(ServerConfig {
        enable_tls: true,
        cert_path: Some(CERT.into()),
        key_path: Some(KEY.into()),
        port: 0,
        circle_public_key: CIRCLE_PUBLIC_KEY.into(),
        ..Default::default()
    })?;
    let port = server.wss_addr().expect("TLS listener").port();
    let url = format!("wss://localhost:{port}/ws");
    println!("server listening on {url}");

    let client = CircleWsClientBuilder::new(&url)
        .with_tls_config(TlsConfig {
            // Trust the self-signed development certificate explicitly.
            ca_cert_path: Some(CERT.into()),
            // Development fallback when you have no CA file at hand (logs a
            // warning; never in production):
            // accept_invalid_certs: true,
            ..Default::default()
        })
        .build()?;
    client.connect().await?;
    let backend = client
        .tls_backend()
        .map(|b| b.to_string())
        .unwrap_or_default();
    println!("connected over TLS ({backend})");

    let script = r#"print("Hello WSS!"); 40 + 2"#;
    let result = client.play(script).await?;
    println!("play {script:?} -> {:?}", result.output);

    client.disconnect().await;
    server.stop().await;
    server_task.await??;
    println!("done");
    Ok(())
}
