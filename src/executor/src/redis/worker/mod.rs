//! The worker side: [`run_worker`] takes jobs from a circle's stream, runs them in the
//! shared sandbox and answers them.
//!
//! - `config`: [`WorkerConfig`] and its checks;
//! - `take`: the main loop, taking new and abandoned job entries while slots are free;
//! - `run`: each job of an entry refused or handed to the script threads;
//! - `answer`: finished jobs written back in batched transactions;
//! - `claim`: taking over abandoned entries, and renewing the held ones;
//! - `group`: joining, recreating and leaving the consumer group;
//! - `held`: how many jobs the worker holds;
//! - `control`: cancels read from the circle's cancel stream, streamed lines sent back;
//! - `error`: [`WorkerError`].

mod answer;
mod claim;
mod config;
mod control;
mod error;
mod group;
mod held;
mod run;
mod take;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

pub use config::{WorkerConfig, default_worker_name};
pub use error::WorkerError;

use super::connection::SharedConnection;
use super::endpoint::Endpoint;
use super::{
    CONSUMER_GROUP, RedisSetupError, cancel_stream_key, canonical_circle_key, jobs_stream_key,
    worker_jobs_key,
};
use crate::store::{Store, StoreError};
use crate::{
    Cancel, EmbeddedConfig, EmbeddedExecutor, ExecutorError, ScriptEnvironment, ScriptOutput,
};
use config::check;
use control::{CancelledJobs, StreamedLine};
use held::HeldLimit;

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Scripts run and answered (including those that ended in a script or limit error;
    /// not those cancelled, which may have been stopped before they started).
    pub scripts_run: u64,
    /// Jobs skipped because their caller's deadline had passed.
    pub expired_skipped: u64,
    /// Jobs given up after [`WorkerConfig::max_retries`] take-overs.
    pub abandoned: u64,
    /// Jobs whose answer could not be written to Redis before their deadline.
    pub unanswered: u64,
}

/// Runs a worker until `shutdown` completes, then lets the scripts in hand finish, answers
/// them, and returns what it did.
///
/// Redis being unreachable is not an error here: the worker keeps retrying (and logs it),
/// so workers can be started before Redis and survive its restarts.
///
/// # Errors
///
/// Only [`WorkerError::Setup`]: a bad configuration (URL, circle key, zero concurrency,
/// …) or threads the OS refused, all before any job is taken.
///
/// `environment` holds the host functions every script gets
/// ([`ScriptEnvironment::stock`] for none: the stock `circle-worker`). A program that
/// embeds a circle with host functions builds its own worker binary around this call with
/// the same environment, so scripts find the same functions whichever executor runs them.
/// Scripts' `store::` and `circle::` modules use the store in this Redis
/// ([`Store::redis`]), with [`WorkerConfig::admin_keys`] and [`WorkerConfig::store_limits`].
pub async fn run_worker(
    config: WorkerConfig,
    environment: ScriptEnvironment,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkerSummary, WorkerError> {
    let circle_key = canonical_circle_key(&config.circle_public_key)?;
    check(&config)?;
    let endpoint = Arc::new(Endpoint::new(
        &config.redis_url,
        &config.tls,
        config.sentinel.as_ref(),
    )?);
    let invalid = |err: StoreError| RedisSetupError::InvalidConfig(err.to_string());
    // The store dials through the same endpoint: the same TLS files, and the same master
    // after a failover.
    let store = Store::redis_at(Arc::clone(&endpoint), &circle_key)
        .map_err(invalid)?
        .with_admin_keys(&config.admin_keys)
        .map_err(invalid)?
        .with_limits(config.store_limits.clone());
    // Never more jobs than threads, `prefetch` and what `hold_for` adds are taken (see the
    // semaphore below), so the executor's queue never refuses one.
    let held_jobs = config.concurrency + config.prefetch;
    let executor = EmbeddedExecutor::new(EmbeddedConfig {
        threads: config.concurrency,
        queue_capacity: held_jobs + WorkerConfig::MAX_HELD_BY_RATE,
        limits: config.limits.clone(),
        ast_cache_entries: config.ast_cache_entries,
        environment,
        store: Some(store),
        // Jobs arrive from Redis on the worker's runtime, which must not run scripts.
        inline_operations: 0,
        // They come in batches: a script thread that yields finds the next one.
        idle_yields: 2,
    })
    .map_err(RedisSetupError::Threads)?;
    let jobs_key = jobs_stream_key(&circle_key);
    let (finishes, finish_queue) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker {
        finishes,
        commands: SharedConnection::new(
            Arc::clone(&endpoint),
            (config.connect_timeout, config.command_timeout),
            jobs_key.clone(),
            Duration::from_millis(250),
        ),
        stats_key: worker_jobs_key(&circle_key),
        cancel_key: cancel_stream_key(&circle_key),
        jobs_key,
        executor,
        in_flight: Mutex::new(HashMap::new()),
        cancelled: Mutex::new(CancelledJobs::default()),
        unsent_lines: Arc::new(AtomicUsize::new(0)),
        counters: Counters::default(),
        slots: Arc::new(Semaphore::new(held_jobs)),
        held: Mutex::new(HeldLimit {
            slots: held_jobs,
            stopping: false,
        }),
        config,
    });

    let (stop_sender, stop) = watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown.await;
        stop_sender.send_replace(true);
    });
    let renewer = tokio::spawn(Arc::clone(&worker).renew_loop());
    let finisher = tokio::spawn(Arc::clone(&worker).finish_loop(finish_queue));
    let canceller = tokio::spawn(Arc::clone(&worker).cancel_loop(Arc::clone(&endpoint)));
    let slots = Arc::clone(&worker.slots);

    Arc::clone(&worker)
        .take_jobs(&endpoint, Arc::clone(&slots), stop)
        .await;

    tracing::info!(
        worker = %worker.config.name,
        "stopping: letting the scripts in hand finish"
    );
    let all_slots = {
        let mut held = worker.held();
        // From now on the number of slots stays put, so waiting for all of them ends.
        held.stopping = true;
        u32::try_from(held.slots).unwrap_or(u32::MAX)
    };
    // Every slot back means every job task has answered (or given up on) its job. The
    // semaphore is never closed, so this cannot fail; if it did, there is nothing to wait for.
    let _all_done = slots.acquire_many(all_slots).await;
    renewer.abort();
    finisher.abort();
    canceller.abort();
    signal.abort();
    worker.leave_group().await;
    let summary = worker.counters.summary();
    tracing::info!(
        worker = %worker.config.name,
        scripts_run = summary.scripts_run,
        expired_skipped = summary.expired_skipped,
        abandoned = summary.abandoned,
        unanswered = summary.unanswered,
        "circle-worker stopped"
    );
    Ok(summary)
}

#[derive(Default)]
struct Counters {
    scripts_run: AtomicU64,
    expired_skipped: AtomicU64,
    abandoned: AtomicU64,
    unanswered: AtomicU64,
}

impl Counters {
    fn summary(&self) -> WorkerSummary {
        WorkerSummary {
            scripts_run: self.scripts_run.load(Ordering::Relaxed),
            expired_skipped: self.expired_skipped.load(Ordering::Relaxed),
            abandoned: self.abandoned.load(Ordering::Relaxed),
            unanswered: self.unanswered.load(Ordering::Relaxed),
        }
    }
}

struct Worker {
    config: WorkerConfig,
    jobs_key: String,
    stats_key: String,
    /// The circle's cancel stream (see `control`).
    cancel_key: String,
    /// Everything but the blocking reads (which hold their connection for up to a second).
    commands: SharedConnection,
    executor: EmbeddedExecutor,
    /// The job stream entries this worker holds, by id: renewed by `renew_loop`, and
    /// searched for a job to cancel.
    in_flight: Mutex<HashMap<String, Arc<HeldEntry>>>,
    /// Cancel notices for jobs this worker may take later.
    cancelled: Mutex<CancelledJobs>,
    /// Streamed lines not yet written (see [`control::MAX_UNSENT_LINES`]).
    unsent_lines: Arc<AtomicUsize>,
    counters: Counters,
    /// Finished jobs and streamed lines on their way to [`Worker::finish_loop`], which
    /// writes them in batches.
    finishes: mpsc::UnboundedSender<Outgoing>,
    /// One permit per job the worker may hold (running, waiting for a thread, or waiting
    /// for its answer to be written).
    slots: Arc<Semaphore>,
    /// How many permits `slots` has in all; changed by [`Worker::adjust_held`].
    held: Mutex<HeldLimit>,
}

/// Finished jobs written to Redis in one transaction at most.
const MAX_FINISH_BATCH: usize = 256;

/// A job stream entry this worker holds: acknowledged and deleted once every job of it
/// is answered, renewed until then.
struct HeldEntry {
    id: String,
    /// The reply stream of the entry's jobs (one server's), when it could be read.
    reply_to: Option<Arc<str>>,
    /// The cancel flag of each job with a numeric id (every job a server of this crate
    /// wrote), for the cancel reader to find.
    cancels: Vec<(u64, Cancel)>,
    /// Jobs of the entry not yet handed to [`Worker::finish_loop`]. Counted down there, in
    /// the order answers are written, so the entry's acknowledgement goes out in the same
    /// transaction as its last answer, never before an earlier one.
    unfinished: AtomicUsize,
}

/// What [`Worker::finish_loop`] writes, in the order the script threads hand it over: a
/// job's lines come before its answer.
enum Outgoing {
    Finish(Finish),
    Line(StreamedLine),
}

/// A finished job waiting to be answered.
struct Finish {
    entry: Arc<HeldEntry>,
    answer: Option<Answer>,
    /// The script ran (counted in `scripts_run` and the per-worker hash).
    ran: bool,
    /// Unix milliseconds after which writing is no longer retried.
    give_up_at: u64,
    /// Set by the finish loop on the entry's last job: this write acknowledges the entry.
    completes_entry: bool,
    /// The job's slot, freed once the answer is written or given up (when this is
    /// dropped), so a worker never holds more unanswered jobs than it has slots.
    _slot: OwnedSemaphorePermit,
}

/// What [`Worker::finish_loop`] writes for a job.
struct Answer {
    job_id: String,
    reply_to: Arc<str>,
    result: Result<ScriptOutput, ExecutorError>,
}

impl Worker {
    fn cancelled(&self) -> MutexGuard<'_, CancelledJobs> {
        // Single inserts, removes and prunes: a poisoned map is still consistent.
        self.cancelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn in_flight(&self) -> MutexGuard<'_, HashMap<String, Arc<HeldEntry>>> {
        // Single inserts and removes only: a poisoned set is still consistent.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shared command connection and its generation (for `SharedConnection::report`).
    async fn redis(&self) -> Result<(MultiplexedConnection, u64), WorkerError> {
        self.commands.get().await.map_err(WorkerError::Connect)
    }

    /// `XGROUP {subcommand}` of this worker's consumer (`CREATECONSUMER`, `DELCONSUMER`).
    fn consumer_command(&self, subcommand: &str) -> ::redis::Cmd {
        let mut command = ::redis::cmd("XGROUP");
        command
            .arg(subcommand)
            .arg(&self.jobs_key)
            .arg(CONSUMER_GROUP)
            .arg(&self.config.name);
        command
    }

    /// How often abandoned jobs are looked for, and the longest a blocking read waits (so
    /// the look happens on time).
    fn claim_check_interval(&self) -> Duration {
        (self.config.claim_idle / 2).min(Duration::from_secs(1))
    }
}
