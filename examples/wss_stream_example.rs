//! Streamed `play` and `cancel` (protocol 1.1): start a TLS circle server
//! in-process, print a script's lines as it prints them, then start a
//! script that never ends and cancel it after three lines.
//!
//! Run: `cargo run --example wss_stream_example`

use std::time::Instant;

use circles::client::{CircleWsClientBuilder, CircleWsClientError, PlayEvent, TlsConfig};
use circles::server::{ServerConfig, spawn_circle_server};
use futures_util::StreamExt;

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

/// Prints a line every 100 ms (the sandbox has no `sleep`: the script
/// watches the clock), `count` lines, then is worth 42.
fn ticking(count: &str) -> String {
    format!(
        "let started = timestamp(); let n = 0;
         while n < {count} {{ while started.elapsed < n.to_float() * 0.1 {{}} print(`tick ${{n}}`); n += 1; }}
         42"
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let (server_task, server) = spawn_circle_server(ServerConfig {
        enable_tls: true,
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
    let client = CircleWsClientBuilder::new(&url)
        .with_tls_config(TlsConfig {
            ca_cert_path: Some(CERT.into()),
            ..Default::default()
        })
        .build()?;
    client.connect().await?;

    // Every line as it is printed, then what the lines did not show.
    let started = Instant::now();
    let mut stream = client.play_stream(ticking("5")).await?;
    while let Some(item) = stream.next().await {
        match item? {
            PlayEvent::Line(line) => println!("{:>5} ms  {line}", started.elapsed().as_millis()),
            PlayEvent::Done(done) => {
                println!("{:>5} ms  = {}", started.elapsed().as_millis(), done.tail)
            }
            _ => {}
        }
    }

    // A script that would run until the server's limits stop it: cancel it.
    let mut stream = client.play_stream(ticking("1_000_000")).await?;
    let mut lines = 0;
    while let Some(item) = stream.next().await {
        match item {
            Ok(PlayEvent::Line(line)) => {
                println!("{line}");
                lines += 1;
                if lines == 3 {
                    // Resolves with the server's answer to `cancel`; the
                    // stream then ends with `Cancelled` (-32006). Dropping
                    // the stream would cancel it too, without waiting.
                    let cancelled = stream.cancel().await?;
                    println!("cancel answered: cancelled = {cancelled}");
                }
            }
            Err(CircleWsClientError::Cancelled { message }) => println!("stream ended: {message}"),
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }

    client.disconnect().await;
    server.stop().await;
    server_task.await??;
    Ok(())
}
