//! The worker binary matching `wss_host_functions_example.rs`: `circle-worker` with the
//! ledger's host functions, built in a few lines on `circles::executor::run_worker`.
//! Servers started with `--redis-url` hand it their scripts, which find `balance` here
//! as they do in the embedded executor.
//!
//! Run (a Redis, and a circle-server with `--redis-url` and the same circle key):
//! `CIRCLE_REDIS_URL=redis://127.0.0.1:6379 CIRCLE_PUBLIC_KEY=02… cargo run --example ledger_worker`
//! Stops gracefully on SIGTERM or Ctrl-C.

#[path = "../ledger/mod.rs"]
mod ledger;

use circles::executor::WorkerConfig;
use circles::executor::run_worker;

/// Enforces the scripts' memory limit, as in circle-worker.
#[global_allocator]
static ALLOCATOR: circles::executor::memory::CountingAllocator =
    circles::executor::memory::CountingAllocator::new();

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = std::env::var("CIRCLE_REDIS_URL")?;
    let circle_public_key = std::env::var("CIRCLE_PUBLIC_KEY")?;
    let config = WorkerConfig {
        // Whoever may write the store's circle namespace, as the servers are told.
        admin_keys: std::env::var("CIRCLE_ADMIN_KEYS")
            .map(|keys| keys.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        ..WorkerConfig::new(url, circle_public_key)
    };
    let environment = ledger::environment(ledger::demo_balances());
    run_worker(config, environment, stop_signal()).await?;
    Ok(())
}

/// SIGTERM (how orchestrators stop a process) or Ctrl-C.
async fn stop_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
