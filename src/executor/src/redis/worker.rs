//! The worker side: [`run_worker`] takes jobs from a circle's stream, runs them in the
//! shared sandbox and answers them.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use ::redis::streams::StreamPendingCountReply;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::connection::{
    SharedConnection, connection_config, ensure_group, is_connection_error, is_missing_group,
};
use super::dispatcher::MAX_JOBS_PER_ENTRY;
use super::wire::{self, JobEntry, MalformedJob, WireJob};
use super::{
    CONSUMER_GROUP, RedisSetupError, canonical_circle_key, jobs_stream_key, open_client,
    worker_jobs_key,
};
use crate::embedded::AnswerFn;
use crate::{
    EmbeddedConfig, EmbeddedExecutor, ExecutorError, ScriptJob, ScriptLimits, ScriptOutput,
};

/// How a worker reaches Redis, how many scripts it runs at once, and under which limits.
///
/// Build on [`WorkerConfig::new`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use circle_executor::{ScriptLimits, WorkerConfig};
///
/// let key = format!("02{}", "ab".repeat(32));
/// let config = WorkerConfig {
///     concurrency: 8,
///     limits: ScriptLimits { max_wall_time: Duration::from_secs(2), ..ScriptLimits::default() },
///     ..WorkerConfig::new("redis://127.0.0.1:6379", key)
/// };
/// assert_eq!(config.max_retries, 2);
/// ```
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `redis://[user:password@]host[:port][/db]`.
    pub redis_url: String,
    /// The compressed public key (hex) of the circle whose jobs this worker runs; the same
    /// key its servers are configured with.
    pub circle_public_key: String,
    /// This worker's consumer name in the group. Must be unique among running workers of
    /// the circle. Default: [`default_worker_name`] (host name and process id).
    pub name: String,
    /// Scripts run at once (one OS thread each). Default: the machine's available
    /// parallelism.
    pub concurrency: usize,
    /// The limits every script runs under. Give workers the limits the circle's servers
    /// would use in embedded mode: these, not the server's, apply to Redis jobs.
    pub limits: ScriptLimits,
    /// Jobs a worker holds beyond its script threads, to run as soon as a thread is free.
    /// Taking jobs (and answering them) in batches costs Redis and the worker much less per
    /// job than one at a time; the price is that a job held by a worker whose threads are
    /// all busy with long scripts waits for them rather than for another worker. With `0`
    /// (and [`WorkerConfig::hold_for`] zero) a worker holds no more jobs than it has
    /// threads, except the rest of an entry it is running (an entry carries up to 64 jobs;
    /// the worker reads nothing more until they have all started). Default `32`.
    pub prefetch: usize,
    /// How much work a worker holds beyond its threads and `prefetch`, in time: as many
    /// more jobs as it answered in this long, by its recent rate (measured about every
    /// 100 ms), up to [`WorkerConfig::MAX_HELD_BY_RATE`]. Short scripts then travel in
    /// batches of hundreds (a worker finishing 100 000 jobs a second holds about 1 000),
    /// which costs Redis, the servers and the worker far less per job; long scripts get
    /// no more than `prefetch` (a worker finishing 100 jobs a second holds one more), so
    /// a job held behind others waits about this long for them at the rate they were
    /// going. `Duration::ZERO` holds `prefetch` only. Default 10 ms.
    pub hold_for: Duration,
    /// Compiled scripts each thread keeps. Default `256`.
    pub ast_cache_entries: usize,
    /// A job left unanswered this long by its worker (which renews the jobs it runs every
    /// third of this) is taken over by another worker. Default 10 s. The time to recover
    /// the jobs of a worker that died.
    pub claim_idle: Duration,
    /// How many times a job abandoned by a dying worker is taken over and started again;
    /// beyond that its caller is answered with an error instead, so a script that kills
    /// every worker running it cannot take the whole pool down. Default `2`.
    pub max_retries: u32,
    /// Time to establish a TCP connection to Redis. Default 1 s.
    pub connect_timeout: Duration,
    /// Time Redis has to answer one command. Default 2 s.
    pub command_timeout: Duration,
    /// A server's reply stream expires this long after the last answer written to it, so a
    /// server that went away leaves nothing behind. Default 10 minutes.
    pub reply_ttl: Duration,
    /// Length cap of one server's reply stream (`MAXLEN ~`), for a server that stopped
    /// reading. Default `10_000`.
    pub max_reply_backlog: usize,
}

impl WorkerConfig {
    /// The default [`WorkerConfig::prefetch`].
    pub const DEFAULT_PREFETCH: usize = 32;

    /// The default [`WorkerConfig::hold_for`].
    pub const DEFAULT_HOLD_FOR: Duration = Duration::from_millis(10);

    /// The most jobs [`WorkerConfig::hold_for`] adds to what a worker holds.
    pub const MAX_HELD_BY_RATE: usize = 2048;

    /// The defaults, for the Redis at `redis_url` and the circle `circle_public_key`.
    pub fn new(redis_url: impl Into<String>, circle_public_key: impl Into<String>) -> Self {
        WorkerConfig {
            redis_url: redis_url.into(),
            circle_public_key: circle_public_key.into(),
            name: default_worker_name(),
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            limits: ScriptLimits::default(),
            prefetch: Self::DEFAULT_PREFETCH,
            hold_for: Self::DEFAULT_HOLD_FOR,
            ast_cache_entries: 256,
            claim_idle: Duration::from_secs(10),
            max_retries: 2,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(2),
            reply_ttl: Duration::from_secs(600),
            max_reply_backlog: 10_000,
        }
    }
}

/// `{host name}-{process id}`: unique among the workers of a fleet, and says where a
/// worker runs when it shows up in `XINFO CONSUMERS`.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Scripts run and answered (including those that ended in a script or limit error).
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
/// Only a bad configuration (URL, circle key, zero concurrency, …) or threads the OS
/// refused, all before any job is taken.
pub async fn run_worker(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkerSummary, RedisSetupError> {
    let circle_key = canonical_circle_key(&config.circle_public_key)?;
    check(&config)?;
    let client = open_client(&config.redis_url)?;
    // Never more jobs than threads, `prefetch` and what `hold_for` adds are taken (see the
    // semaphore below), so the executor's queue never refuses one.
    let held_jobs = config.concurrency + config.prefetch;
    let executor = EmbeddedExecutor::new(EmbeddedConfig {
        threads: config.concurrency,
        queue_capacity: held_jobs + WorkerConfig::MAX_HELD_BY_RATE,
        limits: config.limits.clone(),
        ast_cache_entries: config.ast_cache_entries,
    })
    .map_err(RedisSetupError::Threads)?;
    let jobs_key = jobs_stream_key(&circle_key);
    let (finishes, finish_queue) = mpsc::unbounded_channel();
    let worker = Arc::new(Worker {
        finishes,
        commands: SharedConnection::new(
            client.clone(),
            connection_config(config.connect_timeout, config.command_timeout),
            jobs_key.clone(),
            Duration::from_millis(250),
        ),
        stats_key: worker_jobs_key(&circle_key),
        jobs_key,
        executor,
        in_flight: Mutex::new(HashSet::new()),
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
    let slots = Arc::clone(&worker.slots);

    Arc::clone(&worker)
        .take_jobs(&client, Arc::clone(&slots), stop)
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

fn check(config: &WorkerConfig) -> Result<(), RedisSetupError> {
    let invalid = |message: &str| Err(RedisSetupError::InvalidConfig(message.to_owned()));
    if config.concurrency == 0 || config.concurrency > 4096 {
        return invalid("concurrency must be between 1 and 4096");
    }
    if config.prefetch > 4096 {
        return invalid("prefetch must be at most 4096");
    }
    if config.hold_for > Duration::from_secs(10) {
        return invalid("hold_for must be at most 10 s");
    }
    if config.name.trim().is_empty() || config.name.chars().any(char::is_whitespace) {
        return invalid("the worker name must be non-empty and without spaces");
    }
    if config.claim_idle < Duration::from_millis(100) {
        return invalid("claim_idle must be at least 100 ms");
    }
    if config.max_reply_backlog == 0 {
        return invalid("max_reply_backlog must be at least 1");
    }
    if config.reply_ttl < Duration::from_secs(1) {
        return invalid("reply_ttl must be at least 1 s");
    }
    Ok(())
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
    /// Everything but the blocking reads (which hold their connection for up to a second).
    commands: SharedConnection,
    executor: EmbeddedExecutor,
    /// Ids of the job stream entries this worker holds, renewed by `renew_loop`.
    in_flight: Mutex<HashSet<String>>,
    counters: Counters,
    /// Finished jobs on their way to [`Worker::finish_loop`], which answers them in batches.
    finishes: mpsc::UnboundedSender<Finish>,
    /// One permit per job the worker may hold (running, waiting for a thread, or waiting
    /// for its answer to be written).
    slots: Arc<Semaphore>,
    /// How many permits `slots` has in all; changed by [`Worker::adjust_held`].
    held: Mutex<HeldLimit>,
}

/// The number of job slots, and whether it may still change.
struct HeldLimit {
    slots: usize,
    /// Set by the shutdown, which then waits for every slot.
    stopping: bool,
}

/// How often a worker re-measures its answer rate for [`WorkerConfig::hold_for`] (when it
/// answers jobs: no timer runs for it).
const RATE_INTERVAL: Duration = Duration::from_millis(100);

/// Finished jobs written to Redis in one transaction at most.
const MAX_FINISH_BATCH: usize = 256;

/// A job stream entry this worker holds: acknowledged and deleted once every job of it
/// is answered, renewed until then.
struct HeldEntry {
    id: String,
    /// Jobs of the entry not yet handed to [`Worker::finish_loop`]. Counted down there, in
    /// the order answers are written, so the entry's acknowledgement goes out in the same
    /// transaction as its last answer, never before an earlier one.
    unfinished: AtomicUsize,
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
    fn held(&self) -> MutexGuard<'_, HeldLimit> {
        // Plain numbers: a poisoned lock still holds a consistent value.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the job slots to threads plus `prefetch` plus what `hold_for` allows at the
    /// rate of `answered` jobs in `elapsed`. Shrinking takes only free slots (the rest are
    /// taken as they come free, at later adjustments).
    fn adjust_held(&self, answered: usize, elapsed: Duration) {
        let target = held_target(&self.config, answered, elapsed);
        let mut held = self.held();
        if held.stopping {
            return;
        }
        if target > held.slots {
            self.slots.add_permits(target - held.slots);
            held.slots = target;
        } else if target < held.slots {
            held.slots -= self.slots.forget_permits(held.slots - target);
        }
    }

    fn in_flight(&self) -> MutexGuard<'_, HashSet<String>> {
        // Single inserts and removes only: a poisoned set is still consistent.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How often abandoned jobs are looked for, and the longest a blocking read waits (so
    /// the look happens on time).
    fn claim_check_interval(&self) -> Duration {
        (self.config.claim_idle / 2).min(Duration::from_secs(1))
    }

    /// The main loop: whenever a job slot (a script thread, or a place among the `prefetch`
    /// jobs held beyond them) is free, take over abandoned jobs (when due), then read new
    /// entries, about as many as the free slots hold jobs.
    async fn take_jobs(
        self: Arc<Self>,
        client: &::redis::Client,
        slots: Arc<Semaphore>,
        mut stop: watch::Receiver<bool>,
    ) {
        let block = self.claim_check_interval();
        let reader_config = connection_config(
            self.config.connect_timeout,
            block + self.config.command_timeout,
        );
        let mut reader: Option<MultiplexedConnection> = None;
        let mut claim_cursor = "0-0".to_owned();
        let mut next_claim_check = Instant::now();
        let mut backoff = Duration::from_millis(50);
        let mut ready = false;
        // Jobs per entry in the latest read, to ask for as many entries as the free slots
        // hold: one when servers fill their entries, many when entries hold one job each.
        let mut jobs_per_entry = 1;
        loop {
            let mut permits = tokio::select! {
                biased;
                _ = stop.wait_for(|stopping| *stopping) => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let more = slots.available_permits();
            if more > 0
                && let Ok(more) = Arc::clone(&slots)
                    .try_acquire_many_owned(u32::try_from(more).unwrap_or(u32::MAX))
            {
                permits.merge(more);
            }

            let redis = match &mut reader {
                Some(redis) => redis,
                None => match client
                    .get_multiplexed_async_connection_with_config(&reader_config)
                    .await
                {
                    Ok(redis) => reader.insert(redis),
                    Err(err) => {
                        tracing::debug!(error = %err, "cannot reach Redis");
                        pause(&mut stop, &mut backoff).await;
                        continue;
                    }
                },
            };
            if !ready {
                // The shared connection creates the consumer group when it connects.
                if self.join_group().await.is_err() {
                    pause(&mut stop, &mut backoff).await;
                    continue;
                }
                ready = true;
                tracing::info!(
                    worker = %self.config.name,
                    jobs = %self.jobs_key,
                    concurrency = self.config.concurrency,
                    "circle-worker ready"
                );
            }
            backoff = Duration::from_millis(50);

            let wanted =
                |permits: &OwnedSemaphorePermit| (permits.num_permits() / jobs_per_entry).max(1);
            if Instant::now() >= next_claim_check {
                next_claim_check = Instant::now() + self.claim_check_interval();
                match self
                    .claim_abandoned(&mut claim_cursor, wanted(&permits))
                    .await
                {
                    Ok(claimed) => {
                        for (entry, deliveries) in claimed {
                            permits = self.start(entry, deliveries, permits, &slots).await;
                        }
                    }
                    Err(reason) => tracing::debug!(%reason, "looking for abandoned jobs failed"),
                }
                if permits.num_permits() == 0 {
                    continue;
                }
            }

            // Not raced against `stop`: dropping a read that Redis has already served would
            // leave its jobs pending on this worker until another takes them over. A read
            // returns within `block` anyway.
            let read = ::redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(CONSUMER_GROUP)
                .arg(&self.config.name)
                .arg("COUNT")
                .arg(wanted(&permits))
                .arg("BLOCK")
                .arg(block.as_millis().to_string())
                .arg("STREAMS")
                .arg(&self.jobs_key)
                .arg(">")
                .query_async::<Value>(redis)
                .await;
            match read {
                Ok(reply) => {
                    let mut entries = Vec::new();
                    wire::for_each_entry(&reply, |id, fields| {
                        entries.push(wire::read_job_entry(id, fields));
                    });
                    // Dropped before the jobs start: the reply holds a copy of every script.
                    drop(reply);
                    if let Some(most) = entries.iter().map(|entry| entry.jobs.len()).max() {
                        jobs_per_entry = most.clamp(1, MAX_JOBS_PER_ENTRY);
                    }
                    for entry in entries {
                        permits = self.start(entry, 1, permits, &slots).await;
                    }
                }
                Err(err) if is_missing_group(&err) => {
                    tracing::warn!(
                        "the job stream or its consumer group is gone (Redis restarted or was flushed); recreating it"
                    );
                    if let Err(reason) = self.recreate_group().await {
                        tracing::debug!(%reason, "recreating the consumer group failed");
                        pause(&mut stop, &mut backoff).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading jobs failed");
                    if is_connection_error(&err) {
                        reader = None;
                    }
                    pause(&mut stop, &mut backoff).await;
                }
            }
        }
    }

    /// Registers this worker in the consumer group at once, so `XINFO CONSUMERS` lists it
    /// from its start (Redis would otherwise add it only when it is first handed a job).
    async fn join_group(&self) -> Result<(), String> {
        let (mut redis, generation) = self.commands.get().await?;
        let joined = ::redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(&self.jobs_key)
            .arg(CONSUMER_GROUP)
            .arg(&self.config.name)
            .query_async::<()>(&mut redis)
            .await;
        if let Err(err) = joined {
            self.commands.report(generation, &err).await;
            return Err(err.to_string());
        }
        Ok(())
    }

    async fn recreate_group(&self) -> Result<(), String> {
        let (mut redis, generation) = self.commands.get().await?;
        if let Err(err) = ensure_group(&mut redis, &self.jobs_key).await {
            self.commands.report(generation, &err).await;
            return Err(err.to_string());
        }
        self.join_group().await
    }

    /// Takes over up to `count` job entries that other workers left unanswered for longer
    /// than `claim_idle`, each with how many times it has now been delivered.
    async fn claim_abandoned(
        &self,
        cursor: &mut String,
        count: usize,
    ) -> Result<Vec<(JobEntry, usize)>, String> {
        let (mut redis, generation) = self.commands.get().await?;
        let claimed = ::redis::cmd("XAUTOCLAIM")
            .arg(&self.jobs_key)
            .arg(CONSUMER_GROUP)
            .arg(&self.config.name)
            .arg(self.config.claim_idle.as_millis().to_string())
            .arg(&*cursor)
            .arg("COUNT")
            .arg(count)
            .query_async::<Value>(&mut redis)
            .await;
        let reply = match claimed {
            Ok(reply) => reply,
            Err(err) => {
                self.commands.report(generation, &err).await;
                if is_missing_group(&err) {
                    *cursor = "0-0".to_owned();
                }
                return Err(err.to_string());
            }
        };
        let mut entries = Vec::new();
        let Some((next, deleted)) = wire::for_each_claimed(&reply, |id, fields| {
            entries.push(wire::read_job_entry(id, fields));
        }) else {
            return Err(format!("XAUTOCLAIM answered {reply:?}"));
        };
        *cursor = next;
        if deleted > 0 {
            tracing::warn!(
                count = deleted,
                "abandoned jobs were trimmed from the stream (MAXLEN) before another worker took them over; their callers time out"
            );
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // XAUTOCLAIM does not say how often an entry was delivered; XPENDING does.
        let mut pipeline = ::redis::pipe();
        for entry in &entries {
            pipeline
                .cmd("XPENDING")
                .arg(&self.jobs_key)
                .arg(CONSUMER_GROUP)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let counts = match pipeline
            .query_async::<Vec<StreamPendingCountReply>>(&mut redis)
            .await
        {
            Ok(counts) => counts,
            Err(err) => {
                self.commands.report(generation, &err).await;
                tracing::debug!(error = %err, "cannot read delivery counts; counting each as a first take-over");
                Vec::new()
            }
        };
        tracing::warn!(
            worker = %self.config.name,
            entries = entries.len(),
            jobs = entries.iter().map(|entry| entry.jobs.len()).sum::<usize>(),
            "taking over jobs abandoned by a worker that stopped answering"
        );
        Ok(entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let deliveries = counts
                    .get(index)
                    .and_then(|reply| reply.ids.first())
                    .map_or(2, |pending| pending.times_delivered);
                (entry, deliveries)
            })
            .collect())
    }

    /// Starts every job of `entry`, each holding one job slot until it is answered, and
    /// returns the slots left over. Slots come from `permits` first; when the entry holds
    /// more jobs than that, this waits for each further slot to come free (the worker took
    /// more than it can hold, and takes nothing more until its jobs have all started).
    /// The main loop awaits this, so the jobs in hand are all started before a shutdown
    /// waits for every slot.
    async fn start(
        self: &Arc<Self>,
        entry: JobEntry,
        deliveries: usize,
        mut permits: OwnedSemaphorePermit,
        slots: &Arc<Semaphore>,
    ) -> OwnedSemaphorePermit {
        if !self.in_flight().insert(entry.id.clone()) {
            // Taken over from ourselves (a renewal failed): it is already running here.
            return permits;
        }
        let held = Arc::new(HeldEntry {
            id: entry.id,
            unfinished: AtomicUsize::new(entry.jobs.len()),
        });
        let mut clocks = wire::clocks_now();
        for job in entry.jobs {
            let slot = match permits.split(1) {
                Some(slot) => slot,
                None => match Arc::clone(slots).acquire_owned().await {
                    Ok(slot) => {
                        // Time passed waiting for the slot.
                        clocks = wire::clocks_now();
                        slot
                    }
                    // The semaphore is never closed. Were it, the entry would stay pending
                    // (never acknowledged) and be taken over by another worker.
                    Err(_) => break,
                },
            };
            self.run(Arc::clone(&held), job, deliveries, slot, clocks);
        }
        permits
    }

    /// Runs one job (or refuses it) and hands its answer to [`Worker::finish_loop`]: a
    /// refusal at once, a script's answer from the script thread that ran it (no task,
    /// channel or waker per job). `clocks` were read when the job was started (once for
    /// the jobs of an entry started together).
    fn run(
        self: &Arc<Self>,
        entry: Arc<HeldEntry>,
        job: Result<WireJob, MalformedJob>,
        deliveries: usize,
        slot: OwnedSemaphorePermit,
        clocks: (Instant, u64),
    ) {
        let job = match job {
            Ok(job) => job,
            Err(malformed) => {
                tracing::warn!(id = %entry.id, job = ?malformed.job_id, reason = %malformed.reason, "refusing a job this worker cannot read");
                let answer = malformed
                    .job_id
                    .zip(malformed.reply_to)
                    .map(|(job_id, reply_to)| Answer {
                        job_id,
                        reply_to,
                        result: Err(ExecutorError::Unavailable(format!(
                            "the script worker could not read the job: {}",
                            malformed.reason
                        ))),
                    });
                self.finish(entry, answer, false, clocks.1, slot);
                return;
            }
        };
        let WireJob {
            job_id,
            reply_to,
            deadline_unix_ms,
            script,
            context,
        } = job;
        let refusal = if clocks.1 >= deadline_unix_ms {
            // The caller has already been told it timed out; running would be wasted work.
            tracing::debug!(%job_id, "skipping a job whose caller stopped waiting");
            self.counters
                .expired_skipped
                .fetch_add(1, Ordering::Relaxed);
            Some(ExecutorError::DeadlineExceeded)
        } else if deliveries > 1 + self.config.max_retries as usize {
            tracing::warn!(%job_id, deliveries, "giving up a job that keeps losing its worker");
            self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
            Some(ExecutorError::Unavailable(format!(
                "the script was started {} times by script workers that stopped before answering (crashed, killed or stalled); it is not retried again",
                deliveries - 1
            )))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let answer = Answer {
                job_id,
                reply_to,
                result: Err(refusal),
            };
            self.finish(entry, Some(answer), false, deadline_unix_ms, slot);
            return;
        }
        let job = ScriptJob {
            script,
            context,
            deadline: Some(wire::instant_at(deadline_unix_ms, clocks)),
        };
        let worker = Arc::clone(self);
        self.executor.submit(
            job,
            AnswerFn::new(move |result| {
                // The pool answers `DeadlineExceeded` for a job whose deadline passed while
                // it waited for a thread: skipped, not run.
                let ran = !matches!(result, Err(ExecutorError::DeadlineExceeded));
                if !ran {
                    worker
                        .counters
                        .expired_skipped
                        .fetch_add(1, Ordering::Relaxed);
                }
                let answer = Answer {
                    job_id,
                    reply_to,
                    result,
                };
                worker.finish(entry, Some(answer), ran, deadline_unix_ms, slot);
            }),
        );
    }

    /// Hands the job to [`Worker::finish_loop`], which frees its slot once the answer is
    /// written (or given up).
    fn finish(
        &self,
        entry: Arc<HeldEntry>,
        answer: Option<Answer>,
        ran: bool,
        deadline_unix_ms: u64,
        slot: OwnedSemaphorePermit,
    ) {
        let finish = Finish {
            entry,
            answer,
            ran,
            // A skipped or unreadable job has no waiting caller to race, but still deserves
            // a few seconds to be cleared from the stream.
            give_up_at: deadline_unix_ms.max(wire::unix_now_ms() + 5_000),
            completes_entry: false,
            _slot: slot,
        };
        // The finish loop runs as long as the worker; if it is gone, dropping the finish
        // frees the slot and the entry is left to be taken over.
        let _ = self.finishes.send(finish);
    }

    /// Answers finished jobs in batches: whatever finished while the previous batch was
    /// being written goes in the next one. Each batch is one transaction, so an answer is
    /// never written without its entry being acknowledged (once its last job is answered)
    /// or the other way round. Retries while Redis is away, each job until its caller's
    /// deadline: after that nobody listens, and its entry is left for another worker to
    /// take over and clear.
    async fn finish_loop(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<Finish>) {
        let mut batch = Vec::with_capacity(MAX_FINISH_BATCH);
        let mut received = Vec::with_capacity(MAX_FINISH_BATCH);
        let mut rate_since = Instant::now();
        let mut answered_since = 0;
        loop {
            let room = MAX_FINISH_BATCH.saturating_sub(batch.len()).max(1);
            if batch.is_empty() {
                if queue.recv_many(&mut received, room).await == 0 {
                    return;
                }
            } else {
                while received.len() < room
                    && let Ok(finish) = queue.try_recv()
                {
                    received.push(finish);
                }
            }
            for mut finish in received.drain(..) {
                finish.completes_entry =
                    finish.entry.unfinished.fetch_sub(1, Ordering::AcqRel) == 1;
                batch.push(finish);
            }
            match self.write_answers(&batch).await {
                Ok(()) => {
                    let ran = batch.iter().filter(|finish| finish.ran).count();
                    self.counters
                        .scripts_run
                        .fetch_add(ran as u64, Ordering::Relaxed);
                    {
                        let mut in_flight = self.in_flight();
                        for finish in &batch {
                            if finish.completes_entry {
                                in_flight.remove(&finish.entry.id);
                            }
                        }
                    }
                    answered_since += batch.len();
                    // Frees the jobs' slots.
                    batch.clear();
                    let elapsed = rate_since.elapsed();
                    if elapsed >= RATE_INTERVAL {
                        self.adjust_held(answered_since, elapsed);
                        rate_since = Instant::now();
                        answered_since = 0;
                    }
                }
                Err(failure) => {
                    let now = wire::unix_now_ms();
                    batch.retain(|finish| {
                        if now < finish.give_up_at {
                            return true;
                        }
                        tracing::warn!(id = %finish.entry.id, reason = %failure, "could not answer a job before its deadline; leaving it pending");
                        self.counters.unanswered.fetch_add(1, Ordering::Relaxed);
                        if finish.completes_entry {
                            // No longer renewed, so another worker takes it over and clears it.
                            self.in_flight().remove(&finish.entry.id);
                        }
                        false
                    });
                    if !batch.is_empty() {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }
    }

    /// One transaction for `batch`: per reply stream one `XADD` of all
    /// its answers (one entry) and one `PEXPIRE`; one `HINCRBY` for the scripts run; one
    /// `XACK` and one `XDEL` for the entries whose last job is in the batch.
    ///
    /// Every failure is retried, except Redis refusing one command of a transaction it
    /// ran (`WRONGTYPE`: a reply stream that is not a stream; `NOGROUP`: the group gone in
    /// a Redis restart): retrying those would only write the other answers of the batch
    /// again, so they are logged and the batch counts as written.
    async fn write_answers(&self, batch: &[Finish]) -> Result<(), String> {
        let mut transaction = ::redis::pipe();
        transaction.atomic();
        // The answers for one server share one entry of its reply stream.
        let mut reply_streams: Vec<(&str, Vec<&Answer>)> = Vec::new();
        for answer in batch.iter().filter_map(|finish| finish.answer.as_ref()) {
            match reply_streams
                .iter_mut()
                .find(|(reply_to, _)| **reply_to == *answer.reply_to)
            {
                Some((_, answers)) => answers.push(answer),
                None => reply_streams.push((&answer.reply_to, vec![answer])),
            }
        }
        let ttl_ms = self.config.reply_ttl.as_millis().to_string();
        let mut value = Vec::new();
        for (reply_to, answers) in reply_streams {
            let command = transaction
                .cmd("XADD")
                .arg(reply_to)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.config.max_reply_backlog)
                .arg("*");
            for (name, text) in wire::reply_header(&self.config.name) {
                command.arg(name).arg(text);
            }
            value.clear();
            for answer in answers {
                wire::encode_answer(&mut value, &answer.job_id, &answer.result);
            }
            command.arg(wire::ANSWERS_FIELD).arg(&value);
            command.ignore();
            transaction
                .cmd("PEXPIRE")
                .arg(reply_to)
                .arg(&ttl_ms)
                .ignore();
        }
        let ran = batch.iter().filter(|finish| finish.ran).count();
        if ran > 0 {
            transaction
                .cmd("HINCRBY")
                .arg(&self.stats_key)
                .arg(&self.config.name)
                .arg(ran)
                .ignore();
        }
        let completed: Vec<&str> = batch
            .iter()
            .filter(|finish| finish.completes_entry)
            .map(|finish| finish.entry.id.as_str())
            .collect();
        if !completed.is_empty() {
            transaction
                .cmd("XACK")
                .arg(&self.jobs_key)
                .arg(CONSUMER_GROUP)
                .arg(&completed)
                .ignore();
            transaction
                .cmd("XDEL")
                .arg(&self.jobs_key)
                .arg(&completed)
                .ignore();
        }

        let (mut redis, generation) = self.commands.get().await?;
        match transaction.query_async::<()>(&mut redis).await {
            Ok(()) => Ok(()),
            Err(err) => {
                self.commands.report(generation, &err).await;
                if matches!(err.code(), Some("WRONGTYPE" | "NOGROUP")) {
                    tracing::warn!(error = %err, jobs = batch.len(), "Redis refused part of the answers' transaction");
                    Ok(())
                } else {
                    Err(err.to_string())
                }
            }
        }
    }

    /// Keeps the jobs this worker runs from looking abandoned: `XCLAIM … JUSTID` to itself
    /// resets their idle time without counting a delivery.
    async fn renew_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.claim_idle / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let running: Vec<String> = self.in_flight().iter().cloned().collect();
            if running.is_empty() {
                continue;
            }
            let Ok((mut redis, generation)) = self.commands.get().await else {
                continue;
            };
            let renewed = ::redis::cmd("XCLAIM")
                .arg(&self.jobs_key)
                .arg(CONSUMER_GROUP)
                .arg(&self.config.name)
                .arg(0)
                .arg(&running)
                .arg("JUSTID")
                .query_async::<()>(&mut redis)
                .await;
            if let Err(err) = renewed {
                tracing::debug!(error = %err, "renewing running jobs failed");
                self.commands.report(generation, &err).await;
            }
        }
    }

    /// Removes this worker's consumer from the group when it holds no job (removing a
    /// consumer drops its pending jobs, so never otherwise), so stopped workers do not pile
    /// up in `XINFO CONSUMERS`. Best effort.
    async fn leave_group(&self) {
        let Ok((mut redis, _)) = self.commands.get().await else {
            return;
        };
        let pending = ::redis::cmd("XPENDING")
            .arg(&self.jobs_key)
            .arg(CONSUMER_GROUP)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&self.config.name)
            .query_async::<StreamPendingCountReply>(&mut redis)
            .await;
        if pending.is_ok_and(|pending| pending.ids.is_empty()) {
            let _ = ::redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&self.jobs_key)
                .arg(CONSUMER_GROUP)
                .arg(&self.config.name)
                .query_async::<()>(&mut redis)
                .await;
        }
    }
}

/// The job slots of a worker that answered `answered` jobs in `elapsed`: its threads,
/// `prefetch`, and the jobs it answers in `hold_for` at that rate (at most
/// [`WorkerConfig::MAX_HELD_BY_RATE`]).
fn held_target(config: &WorkerConfig, answered: usize, elapsed: Duration) -> usize {
    let floor = config.concurrency + config.prefetch;
    // Rounded down: a rate below one job per `hold_for` adds nothing. The float covers
    // any rate; the cast saturates.
    let by_rate = (answered as f64 * config.hold_for.as_secs_f64()
        / elapsed.as_secs_f64().max(1e-3)) as usize;
    floor + by_rate.min(WorkerConfig::MAX_HELD_BY_RATE)
}

/// Waits `backoff` (or until stopping), then doubles it up to 2 s.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_holds_what_it_answers_in_hold_for() {
        let config = WorkerConfig {
            concurrency: 2,
            prefetch: 8,
            hold_for: Duration::from_millis(10),
            ..WorkerConfig::new("redis://127.0.0.1:1", format!("02{}", "ab".repeat(32)))
        };
        let second = Duration::from_secs(1);
        // 100 000 short scripts a second: 1 000 more held.
        assert_eq!(held_target(&config, 100_000, second), 1_010);
        // 100 long scripts a second: one more; 50: none.
        assert_eq!(held_target(&config, 100, second), 11);
        assert_eq!(held_target(&config, 50, second), 10);
        assert_eq!(held_target(&config, 0, second), 10);
        assert_eq!(
            held_target(&config, 10_000_000, second),
            10 + WorkerConfig::MAX_HELD_BY_RATE
        );
        let still = WorkerConfig {
            hold_for: Duration::ZERO,
            ..config
        };
        assert_eq!(held_target(&still, 100_000, second), 10);
    }

    #[test]
    fn bad_settings_are_named() {
        let key = format!("02{}", "ab".repeat(32));
        let base = WorkerConfig::new("redis://127.0.0.1:1", key);
        for (config, word) in [
            (
                WorkerConfig {
                    concurrency: 0,
                    ..base.clone()
                },
                "concurrency",
            ),
            (
                WorkerConfig {
                    name: "a b".into(),
                    ..base.clone()
                },
                "name",
            ),
            (
                WorkerConfig {
                    claim_idle: Duration::ZERO,
                    ..base.clone()
                },
                "claim_idle",
            ),
        ] {
            let err = check(&config).unwrap_err().to_string();
            assert!(err.contains(word), "{err}");
        }
        assert!(check(&base).is_ok());
        assert!(!default_worker_name().is_empty());
    }
}
