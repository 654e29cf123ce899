//! `circle-worker`: runs a circle's Rhai scripts for its servers, taking them from Redis.
//!
//! Start any number of these, on any machines, next to circle servers started with
//! `--redis-url`: `circle-worker --redis-url redis://redis:6379 --circle-public-key 02ab…`.
//! With Redis under Sentinel, `--redis-sentinel HOST:PORT` (repeated) and
//! `--redis-master-name NAME` find the master, and follow it through a failover.
//! Every flag has a `CIRCLE_…` environment variable. SIGTERM or Ctrl-C stops taking jobs,
//! lets the scripts in hand finish and answers them, then exits 0.

use std::process::ExitCode;
use std::time::Duration;

use circle_executor::ScriptEnvironment;
use circle_executor::args::{RedisArgs, ScriptLimitArgs, StoreArgs};
use circle_executor::redis::{RedisSentinel, WorkerConfig, WorkerError, run_worker};
use clap::Parser;

/// Counts each thread's live heap bytes, which is what enforces `--script-max-memory-bytes`
/// (see `circle_executor::memory`).
#[global_allocator]
static ALLOCATOR: circle_executor::memory::CountingAllocator =
    circle_executor::memory::CountingAllocator::new();

/// Run circle scripts queued on Redis by circle servers.
#[derive(Debug, Parser)]
#[command(name = "circle-worker", version, about, long_about = None, after_help = EXAMPLES)]
struct Args {
    /// Redis the circle's servers queue scripts on: redis://[user:password@]host:port, or rediss:// for TLS. With --redis-sentinel only its scheme, user, password and database count (default then: redis://, no password).
    #[arg(
        long,
        env = "CIRCLE_REDIS_URL",
        value_name = "URL",
        required_unless_present = "redis_sentinels"
    )]
    redis_url: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
    /// The circle's public key (compressed hex, as circle-server prints it).
    #[arg(long, env = "CIRCLE_PUBLIC_KEY", value_name = "HEX")]
    circle_public_key: String,
    /// This worker's name in the Redis consumer group; unique per running worker (default: host name and process id).
    #[arg(long, env = "CIRCLE_WORKER_NAME")]
    name: Option<String>,
    /// Scripts run at once, one thread each (0 = one per core).
    #[arg(
        long,
        short = 'c',
        env = "CIRCLE_WORKER_CONCURRENCY",
        default_value_t = 0
    )]
    concurrency: usize,
    /// Jobs taken beyond the idle script threads, to run as soon as one is free: jobs are then taken and answered in batches, much cheaper per job (0 = only as many as idle threads).
    #[arg(long, env = "CIRCLE_WORKER_PREFETCH", default_value_t = WorkerConfig::DEFAULT_PREFETCH)]
    prefetch: usize,
    /// Jobs held beyond the threads and --prefetch, in time: as many more as the worker answered in this many milliseconds at its recent rate (up to 2048; 0 = none). Short scripts then travel in large batches; long scripts get none.
    #[arg(long, env = "CIRCLE_WORKER_HOLD_MS", default_value_t = WorkerConfig::DEFAULT_HOLD_FOR.as_millis() as u64)]
    hold_ms: u64,
    #[command(flatten)]
    script: ScriptLimitArgs,
    /// Take over a job another worker left unanswered this long (milliseconds): how fast the jobs of a dead worker are recovered.
    #[arg(long, env = "CIRCLE_WORKER_CLAIM_IDLE_MS", default_value_t = 10_000)]
    claim_idle_ms: u64,
    /// Times a job whose worker died is started again before its caller gets an error.
    #[arg(long, env = "CIRCLE_WORKER_MAX_RETRIES", default_value_t = 2)]
    max_retries: u32,
    #[command(flatten)]
    store: StoreArgs,
}

const EXAMPLES: &str = "\
Examples:
  circle-worker --redis-url redis://127.0.0.1:6379 --circle-public-key 02ab…
  CIRCLE_REDIS_URL=redis://redis:6379 CIRCLE_PUBLIC_KEY=02ab… circle-worker -c 8
  circle-worker --redis-sentinel 10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379 --redis-master-name circle --circle-public-key 02ab…

Logs go to stderr (RUST_LOG=debug for more). Exit codes: 0 stopped by a signal, 2 bad configuration.";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let sentinel = match RedisSentinel::from_parts(
        &args.redis.redis_sentinels,
        args.redis.redis_master_name.as_deref(),
    ) {
        Ok(sentinel) => sentinel,
        Err(error) => return refused(&WorkerError::Setup(error.into())),
    };
    let redis_url = args
        .redis_url
        .unwrap_or_else(|| RedisSentinel::DEFAULT_URL.to_owned());
    let defaults = WorkerConfig::new(redis_url, args.circle_public_key);
    let config = WorkerConfig {
        name: args.name.unwrap_or(defaults.name.clone()),
        concurrency: if args.concurrency == 0 {
            defaults.concurrency
        } else {
            args.concurrency
        },
        prefetch: args.prefetch,
        hold_for: Duration::from_millis(args.hold_ms),
        limits: args.script.limits(),
        claim_idle: Duration::from_millis(args.claim_idle_ms),
        max_retries: args.max_retries,
        // Give every worker of a circle the same limits: each checks them itself.
        store_limits: args.store.limits(),
        admin_keys: args.store.admin_keys,
        tls: args.redis.tls(),
        sentinel,
        ..defaults
    };
    // The stock worker: no host functions. A program with its own calls `run_worker` with
    // its environment in a binary of its own (see the server README, "Host functions").
    match run_worker(config, ScriptEnvironment::stock(), stop_signal()).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => refused(&error),
    }
}

/// Prints why the worker did not start, as one line on stderr (each `WorkerError`'s
/// message names what is wrong and its value), and exits 2.
fn refused(error: &WorkerError) -> ExitCode {
    eprintln!("circle-worker: {error}");
    ExitCode::from(2)
}

/// Completes on SIGTERM (how orchestrators stop a process) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this worker gracefully");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
