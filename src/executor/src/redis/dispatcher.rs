//! The server side: [`RedisExecutor`] queues jobs on Redis and routes answers back.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::connection::{SharedConnection, connection_config, is_connection_error};
use super::wire;
use super::{
    RedisSetupError, canonical_circle_key, jobs_stream_key, open_client, reply_stream_key,
};
use crate::{ExecuteFuture, Executor, ExecutorError, ScriptJob, ScriptOutput};

/// How a [`RedisExecutor`] reaches Redis and how much it lets queue up.
///
/// Only `redis_url` and `circle_public_key` must be chosen; build the rest on
/// [`RedisExecutorConfig::new`]:
///
/// ```
/// use circle_executor::RedisExecutorConfig;
/// use std::time::Duration;
///
/// let key = format!("02{}", "ab".repeat(32));
/// let config = RedisExecutorConfig {
///     max_queued_jobs: 50_000,
///     ..RedisExecutorConfig::new("redis://127.0.0.1:6379", key)
/// };
/// assert_eq!(config.connect_timeout, Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct RedisExecutorConfig {
    /// `redis://[user:password@]host[:port][/db]`.
    pub redis_url: String,
    /// The circle's compressed public key (hex): it names the job stream the circle's
    /// workers read, so workers must be started with the same key.
    pub circle_public_key: String,
    /// Length cap of the circle's job stream (`XADD … MAXLEN ~`), shared by every server of
    /// the circle. While the stream is this long, `execute` answers
    /// [`ExecutorError::Overloaded`] at once. Default `10_000`.
    pub max_queued_jobs: usize,
    /// Jobs of this server waiting for an answer at once; beyond that `execute` answers
    /// [`ExecutorError::Overloaded`]. Default `10_000`.
    pub max_in_flight: usize,
    /// How long a job without a deadline may wait for its answer. Default 30 s.
    pub default_deadline: Duration,
    /// Time to establish a TCP connection to Redis. Default 1 s.
    pub connect_timeout: Duration,
    /// Time Redis has to answer one command (or one pipeline of queued jobs). Default 2 s.
    pub command_timeout: Duration,
    /// After a failed connection attempt, jobs are answered
    /// [`ExecutorError::Unavailable`] without dialing again for this long. Default 250 ms.
    pub reconnect_interval: Duration,
}

impl RedisExecutorConfig {
    /// The defaults, for the Redis at `redis_url` and the circle `circle_public_key`.
    pub fn new(redis_url: impl Into<String>, circle_public_key: impl Into<String>) -> Self {
        RedisExecutorConfig {
            redis_url: redis_url.into(),
            circle_public_key: circle_public_key.into(),
            max_queued_jobs: 10_000,
            max_in_flight: 10_000,
            default_deadline: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(2),
            reconnect_interval: Duration::from_millis(250),
        }
    }
}

/// Jobs are sent to Redis in pipelines of up to this many, so a burst of `play` calls costs
/// one round trip, not one per call.
const MAX_BATCH: usize = 256;

/// At most this many jobs share one job stream entry. Everything queued while the previous
/// pipeline was in flight goes out at once, so at low load an entry holds one job (no timer
/// waits for company) and under load up to this many: per-entry costs (arguments parsed,
/// entries stored, read, acknowledged and deleted) are then paid once per this many jobs.
/// Small enough that a worker taking one entry does not hoard the work of many.
pub(crate) const MAX_JOBS_PER_ENTRY: usize = 64;

/// An entry is closed once its jobs' values reach this many bytes (a single larger job
/// still gets an entry of its own), so no one entry makes Redis or a worker copy megabytes.
const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// How long a measured job stream length is trusted for refusing jobs.
const QUEUE_LENGTH_TRUSTED_MS: u64 = 1_000;

/// The job stream's length is measured (`XLEN`, in the pipeline of a batch) at most this
/// often; between measures it is estimated by adding the jobs submitted since.
const QUEUE_LENGTH_SAMPLE: Duration = Duration::from_millis(100);

/// Read answers are trimmed from the reply stream (`XTRIM MINID ~`) at most this often.
const REPLY_TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// How long one `XREAD BLOCK` of the reply stream waits before it is issued again.
const REPLY_BLOCK: Duration = Duration::from_secs(1);

type Reply = oneshot::Sender<Result<ScriptOutput, ExecutorError>>;

/// A job on its way to the submitting task, which writes it into an entry
/// ([`wire::encode_job`]) without copying it first.
struct Submission {
    /// The job's id within this instance.
    sequence: u64,
    /// Turned into Unix milliseconds with one reading of the clocks per batch.
    deadline: Instant,
    script: String,
    context: Arc<crate::ScriptContext>,
}

impl Submission {
    /// About the bytes the job takes in its entry.
    fn size(&self) -> usize {
        64 + self.script.len()
            + self.context.circle_name.len()
            + self.context.circle_public_key.len()
            + self.context.caller_public_key.len()
    }
}

/// Callers waiting for an answer, by job sequence number.
type Waiting = HashMap<u64, Reply, BuildHasherDefault<SequenceHasher>>;

/// Hashes the sequence numbers that key [`Waiting`]: they are unique and made by this
/// process (no peer chooses them, so no flooding to fear), and one multiplication spreads
/// consecutive numbers over the table much more cheaply than SipHash.
#[derive(Default)]
struct SequenceHasher(u64);

impl Hasher for SequenceHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// State shared by the executor handle, the callers' futures and the background tasks.
struct Dispatch {
    config: RedisExecutorConfig,
    jobs_key: String,
    reply_key: String,
    next_sequence: AtomicU64,
    /// Callers waiting for an answer, by job sequence number. An entry is removed by
    /// whoever resolves it first (answer, Redis failure) or by the caller's future when it
    /// is dropped.
    waiting: Mutex<Waiting>,
    /// The jobs in the job stream at the last measure (`XLEN`, in jobs; see
    /// [`Dispatch::record_queued_jobs`]).
    queued_jobs: AtomicUsize,
    /// Jobs this server submitted since the last measure, less the answers it read since:
    /// between measures the queue grows by what this server adds and shrinks by what it
    /// sees answered. Counting only submissions would call a queue that drains as fast as
    /// it fills (100 000 jobs a second pass through it) full within one interval.
    change_since_measure: AtomicI64,
    /// When `queued_jobs` was measured, in milliseconds since `created`.
    queued_jobs_measured_ms: AtomicU64,
    created: Instant,
}

impl Dispatch {
    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        // A panic while holding this lock cannot leave the map inconsistent (every
        // operation on it is a single insert or remove), so a poisoned lock is still usable.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves the caller of job `sequence`, if it is still waiting.
    fn answer(&self, sequence: u64, result: Result<ScriptOutput, ExecutorError>) {
        let reply = self.waiting().remove(&sequence);
        if let Some(reply) = reply {
            // The caller may have stopped waiting this very moment; nothing to do then.
            let _ = reply.send(result);
        }
    }

    fn millis_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts `submitted` jobs into the estimate, without renewing the measure's age.
    fn count_submitted(&self, submitted: usize) {
        let submitted = i64::try_from(submitted).unwrap_or(i64::MAX);
        self.change_since_measure
            .fetch_add(submitted, Ordering::Relaxed);
    }

    /// Counts `answered` jobs out of the estimate.
    fn count_answered(&self, answered: usize) {
        let answered = i64::try_from(answered).unwrap_or(i64::MAX);
        self.change_since_measure
            .fetch_sub(answered, Ordering::Relaxed);
    }

    /// The estimate of the jobs queued or running for every server of the circle.
    fn queued_jobs(&self) -> usize {
        let measured = self.queued_jobs.load(Ordering::Relaxed);
        let change = self.change_since_measure.load(Ordering::Relaxed);
        match usize::try_from(change) {
            Ok(added) => measured.saturating_add(added),
            Err(_) => measured
                .saturating_sub(usize::try_from(change.unsigned_abs()).unwrap_or(usize::MAX)),
        }
    }

    /// Records a measure: the stream's length in entries times the jobs per entry this
    /// server wrote since the previous measure. An estimate (another server's entries may
    /// hold more or fewer jobs), but exact at low load, where an entry holds one job, and
    /// close under even load, where every server fills its entries alike.
    fn record_queued_jobs(&self, queued: usize) {
        self.queued_jobs.store(queued, Ordering::Relaxed);
        self.change_since_measure.store(0, Ordering::Relaxed);
        self.queued_jobs_measured_ms
            .store(self.millis_since_created(), Ordering::Relaxed);
    }

    /// The queue is full by a recent measure. The length is only measured while jobs are
    /// submitted (at most every [`QUEUE_LENGTH_SAMPLE`], and once more after the last
    /// submission), so an old "full" must let a job through, or a full queue that workers
    /// have since drained would refuse jobs forever.
    fn queue_is_full(&self) -> Option<usize> {
        let queued = self.queued_jobs();
        if queued < self.config.max_queued_jobs {
            // The common case, decided without reading the clock.
            return None;
        }
        let measured = self.queued_jobs_measured_ms.load(Ordering::Relaxed);
        let recent = self.millis_since_created().saturating_sub(measured) < QUEUE_LENGTH_TRUSTED_MS;
        recent.then_some(queued)
    }
}

/// Forgets a caller's entry when its future is dropped (answered, timed out, or abandoned
/// because the client went away), so entries never pile up.
struct WaitingGuard {
    dispatch: Arc<Dispatch>,
    sequence: u64,
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.dispatch.waiting().remove(&self.sequence);
    }
}

/// An [`Executor`] that queues scripts on Redis for `circle-worker` processes
/// ([`run_worker`](super::run_worker)) and routes their answers back.
///
/// Starting it never fails because Redis is down: it connects lazily, answers
/// [`ExecutorError::Unavailable`] (`-32005`) while Redis cannot be reached, and recovers by
/// itself when Redis is back. Every answer arrives by the job's deadline (or
/// [`RedisExecutorConfig::default_deadline`]): if no worker answered by then, the caller
/// gets [`ExecutorError::NoAnswer`].
///
/// Two background tasks run on the tokio runtime it was created on: one pipelines queued
/// jobs to Redis, one reads this instance's reply stream. Dropping the executor stops them
/// and answers every waiting caller `Unavailable`.
///
/// ```no_run
/// use std::sync::Arc;
/// use circle_executor::{Executor, RedisExecutor, RedisExecutorConfig, ScriptContext, ScriptJob};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = format!("02{}", "ab".repeat(32));
/// let executor = RedisExecutor::new(RedisExecutorConfig::new("redis://127.0.0.1:6379", key))?;
/// let job = ScriptJob::new("40 + 2", Arc::new(ScriptContext::default()));
/// println!("{:?}", executor.execute(job).await);
/// # Ok(())
/// # }
/// ```
pub struct RedisExecutor {
    dispatch: Arc<Dispatch>,
    submissions: mpsc::Sender<Submission>,
    tasks: Vec<AbortHandle>,
}

impl std::fmt::Debug for RedisExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisExecutor")
            .field(
                "redis_url",
                &super::redacted_url(&self.dispatch.config.redis_url),
            )
            .field("jobs_key", &self.dispatch.jobs_key)
            .field("reply_key", &self.dispatch.reply_key)
            .field("waiting", &self.dispatch.waiting().len())
            .finish_non_exhaustive()
    }
}

impl RedisExecutor {
    /// Checks the configuration and starts the background tasks on the current tokio
    /// runtime. Does not wait for Redis.
    ///
    /// # Errors
    ///
    /// A malformed URL or circle key, a zero-sized limit, or no tokio runtime.
    pub fn new(config: RedisExecutorConfig) -> Result<Self, RedisSetupError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| RedisSetupError::NoRuntime)?;
        let circle_key = canonical_circle_key(&config.circle_public_key)?;
        if config.max_queued_jobs == 0 || config.max_in_flight == 0 {
            return Err(RedisSetupError::InvalidConfig(
                "max_queued_jobs and max_in_flight must be at least 1".into(),
            ));
        }
        let client = open_client(&config.redis_url)?;
        let instance_id = new_instance_id();
        let jobs_key = jobs_stream_key(&circle_key);
        let reply_key = reply_stream_key(&circle_key, &instance_id);
        let submit_connection = SharedConnection::new(
            client.clone(),
            connection_config(config.connect_timeout, config.command_timeout),
            jobs_key.clone(),
            config.reconnect_interval,
        );
        let dispatch = Arc::new(Dispatch {
            jobs_key,
            reply_key,
            next_sequence: AtomicU64::new(1),
            waiting: Mutex::new(Waiting::default()),
            queued_jobs: AtomicUsize::new(0),
            change_since_measure: AtomicI64::new(0),
            queued_jobs_measured_ms: AtomicU64::new(0),
            created: Instant::now(),
            config,
        });
        let (submissions, queue) = mpsc::channel(dispatch.config.max_in_flight);
        let submitter = runtime.spawn(submit_loop(Arc::clone(&dispatch), queue, submit_connection));
        let reader = runtime.spawn(reply_loop(Arc::clone(&dispatch), client));
        tracing::info!(
            redis = %super::redacted_url(&dispatch.config.redis_url),
            jobs = %dispatch.jobs_key,
            replies = %dispatch.reply_key,
            "scripts go to circle-worker processes through Redis"
        );
        Ok(RedisExecutor {
            dispatch,
            submissions,
            tasks: vec![submitter.abort_handle(), reader.abort_handle()],
        })
    }

    /// This server instance's reply stream (unique per executor).
    pub fn reply_stream_key(&self) -> &str {
        &self.dispatch.reply_key
    }

    /// Jobs of this server still waiting for an answer.
    pub fn waiting_jobs(&self) -> usize {
        self.dispatch.waiting().len()
    }
}

impl Drop for RedisExecutor {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Dropping the senders answers every waiting caller `Unavailable` at once, rather
        // than letting them wait out their deadlines.
        self.dispatch.waiting().clear();
    }
}

impl Executor for RedisExecutor {
    fn execute(&self, job: ScriptJob) -> ExecuteFuture {
        let started = Instant::now();
        let deadline = job
            .deadline
            .unwrap_or_else(|| started + self.dispatch.config.default_deadline);
        if started >= deadline {
            return ready(Err(ExecutorError::DeadlineExceeded));
        }
        if let Some(queued) = self.dispatch.queue_is_full() {
            return ready(Err(ExecutorError::Overloaded(format!(
                "{queued} scripts are queued for this circle's workers (limit {}); try again later",
                self.dispatch.config.max_queued_jobs
            ))));
        }
        let sequence = self.dispatch.next_sequence.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        {
            let mut waiting = self.dispatch.waiting();
            if waiting.len() >= self.dispatch.config.max_in_flight {
                return ready(Err(ExecutorError::Overloaded(format!(
                    "{} scripts of this server are waiting for workers (limit {}); try again later",
                    waiting.len(),
                    self.dispatch.config.max_in_flight
                ))));
            }
            waiting.insert(sequence, reply);
        }
        let guard = WaitingGuard {
            dispatch: Arc::clone(&self.dispatch),
            sequence,
        };
        let submission = Submission {
            sequence,
            deadline,
            script: job.script,
            context: job.context,
        };
        match self.submissions.try_send(submission) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Cannot happen while the channel is as large as `max_in_flight`; kept as a
                // refusal rather than an assumption.
                return ready(Err(ExecutorError::Overloaded(
                    "too many scripts are being queued at once; try again later".into(),
                )));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return ready(Err(ExecutorError::Unavailable(
                    "the Redis dispatcher has stopped".into(),
                )));
            }
        }
        Box::pin(async move {
            let _forget_on_drop = guard;
            match tokio::time::timeout_at(deadline.into(), answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(ExecutorError::Unavailable(
                    "the Redis dispatcher stopped before the script was answered".into(),
                )),
                Err(_) => Err(ExecutorError::NoAnswer(format!(
                    "waited {:.1} s for a circle-worker; check that workers are running for this circle and keeping up",
                    started.elapsed().as_secs_f64()
                ))),
            }
        })
    }

    /// The jobs of every server of the circle that are queued or running, estimated: the
    /// job stream's length in entries as last measured (at most 100 ms after a submission)
    /// times the jobs per entry this server wrote around then, plus the jobs this server
    /// submitted since, less the answers it read since.
    fn queue_depth(&self) -> usize {
        self.dispatch.queued_jobs()
    }
}

fn ready(result: Result<ScriptOutput, ExecutorError>) -> ExecuteFuture {
    Box::pin(std::future::ready(result))
}

/// A name for this server instance that no other server of the circle will pick: its
/// replies stream is named after it. Random (std's per-process hash keys) plus the process
/// id and the time, with no dependency on a random number crate.
fn new_instance_id() -> String {
    let random = RandomState::new().hash_one((std::process::id(), wire::unix_now_ms()));
    format!(
        "{:016x}",
        random ^ u64::from(std::process::id()).rotate_left(32)
    )
}

/// Takes queued jobs in batches and `XADD`s each batch in one pipeline, as few entries as
/// [`MAX_JOBS_PER_ENTRY`] and [`MAX_ENTRY_BYTES`] allow. A batch is whatever was queued
/// while the previous pipeline was in flight: no timer holds a job back to wait for others.
///
/// The job stream's length is measured with a batch at most every [`QUEUE_LENGTH_SAMPLE`];
/// a batch that went unmeasured is followed by a lone `XLEN` once that interval is over,
/// so the measure never lags the last submission by more than it.
async fn submit_loop(
    dispatch: Arc<Dispatch>,
    mut queue: mpsc::Receiver<Submission>,
    connection: SharedConnection,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_measure: Option<Instant> = None;
    let mut measure_owed = false;
    // The stream's length is counted in entries; the jobs per entry written since the last
    // measure turn it into jobs.
    let mut sizes = EntrySizes::default();
    loop {
        let due = last_measure.map_or_else(Instant::now, |at| at + QUEUE_LENGTH_SAMPLE);
        let received = tokio::select! {
            received = queue.recv_many(&mut batch, MAX_BATCH) => received,
            () = tokio::time::sleep_until(due.into()), if measure_owed => {
                measure_owed = false;
                last_measure = Some(Instant::now());
                measure_queue(&dispatch, &connection, &mut sizes).await;
                continue;
            }
        };
        if received == 0 {
            return;
        }
        // A caller that gave up while its job sat here needs no job in Redis.
        {
            let waiting = dispatch.waiting();
            batch.retain(|submission| waiting.contains_key(&submission.sequence));
        }
        if !batch.is_empty() {
            let measure = last_measure.is_none_or(|at| at.elapsed() >= QUEUE_LENGTH_SAMPLE);
            if measure {
                last_measure = Some(Instant::now());
            }
            measure_owed = !measure;
            submit_batch(&dispatch, &connection, &batch, measure, &mut sizes).await;
        }
        batch.clear();
    }
}

/// Measures the job stream's length (best effort: a failure keeps the previous measure,
/// which stops counting once it is old).
async fn measure_queue(dispatch: &Dispatch, connection: &SharedConnection, sizes: &mut EntrySizes) {
    let jobs_per_entry = sizes.take_jobs_per_entry();
    let Ok((mut redis, generation)) = connection.get().await else {
        return;
    };
    match ::redis::cmd("XLEN")
        .arg(&dispatch.jobs_key)
        .query_async::<usize>(&mut redis)
        .await
    {
        Ok(entries) => dispatch.record_queued_jobs(entries.saturating_mul(jobs_per_entry)),
        Err(err) => connection.report(generation, &err).await,
    }
}

/// Jobs and entries written since the job stream's length was last measured.
#[derive(Debug, Default)]
struct EntrySizes {
    jobs: usize,
    entries: usize,
    /// The average of the previous interval, kept for an interval without writes.
    last: usize,
}

impl EntrySizes {
    fn add(&mut self, jobs: usize, entries: usize) {
        self.jobs += jobs;
        self.entries += entries;
    }

    /// Jobs per entry written since the last call (at least 1), to turn a stream length
    /// into jobs. An average over the interval rather than the latest batch: the stream
    /// holds the entries of the whole interval, and the batch sizes of one interval vary
    /// widely (one job after a pause, hundreds after a burst).
    fn take_jobs_per_entry(&mut self) -> usize {
        if self.entries > 0 {
            self.last = self.jobs.div_ceil(self.entries);
        }
        *self = EntrySizes {
            last: self.last.max(1),
            ..EntrySizes::default()
        };
        self.last
    }
}

/// Splits `batch` into runs of jobs that share one entry: at most [`MAX_JOBS_PER_ENTRY`]
/// jobs, and no more bytes than [`MAX_ENTRY_BYTES`] unless a single job is larger.
fn entries_of(batch: &[Submission]) -> impl Iterator<Item = &[Submission]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut len = 0;
        for submission in rest.iter().take(MAX_JOBS_PER_ENTRY) {
            bytes += submission.size();
            if len > 0 && bytes > MAX_ENTRY_BYTES {
                break;
            }
            len += 1;
        }
        let (entry, after) = rest.split_at(len);
        rest = after;
        Some(entry)
    })
}

/// Writes `batch` as job entries in one pipeline (plus an `XLEN` when `measure`), and
/// answers every caller of the batch [`ExecutorError::Unavailable`] if Redis does not take
/// it. Adds the entries written to `sizes`.
async fn submit_batch(
    dispatch: &Dispatch,
    connection: &SharedConnection,
    batch: &[Submission],
    measure: bool,
    sizes: &mut EntrySizes,
) {
    let mut pipeline = ::redis::pipe();
    let mut entries = 0;
    let mut encoded = Vec::new();
    let clocks = wire::clocks_now();
    for jobs in entries_of(batch) {
        entries += 1;
        let command = pipeline
            .cmd("XADD")
            .arg(&dispatch.jobs_key)
            .arg("MAXLEN")
            .arg("~")
            // Counted in entries, so never fewer jobs than that: the refusal at
            // `max_queued_jobs` jobs (`queue_is_full`) comes first, and this cap is only
            // the memory bound for servers racing past it.
            .arg(dispatch.config.max_queued_jobs)
            .arg("*");
        for (name, value) in wire::job_entry_header(&dispatch.reply_key) {
            command.arg(name).arg(value);
        }
        encoded.clear();
        for submission in jobs {
            wire::encode_job(
                &mut encoded,
                submission.sequence,
                wire::unix_ms_at(submission.deadline, clocks),
                &submission.context,
                &submission.script,
            );
        }
        command.arg(wire::JOBS_FIELD).arg(&encoded).ignore();
    }
    sizes.add(batch.len(), entries);
    let jobs_per_entry = if measure {
        sizes.take_jobs_per_entry()
    } else {
        1
    };
    if measure {
        pipeline.cmd("XLEN").arg(&dispatch.jobs_key);
    }

    // A connection that broke while idle (Redis restarted) is only noticed when used: give
    // the batch one more try on a fresh connection before failing its callers. At worst a
    // job is then queued twice; the caller still gets one answer.
    let mut last_error = String::new();
    for attempt in 0..2 {
        let (mut redis, generation) = match connection.get().await {
            Ok(connected) => connected,
            Err(reason) => {
                last_error = format!("cannot reach Redis: {reason}");
                break;
            }
        };
        match pipeline.query_async::<Vec<usize>>(&mut redis).await {
            Ok(queued) => {
                match queued.first() {
                    Some(&entries) if measure => {
                        dispatch.record_queued_jobs(entries.saturating_mul(jobs_per_entry));
                    }
                    _ => dispatch.count_submitted(batch.len()),
                }
                return;
            }
            Err(err) => {
                connection.report(generation, &err).await;
                last_error = format!("Redis did not take the script: {err}");
                if !(is_connection_error(&err) && attempt == 0) {
                    break;
                }
            }
        }
    }
    for submission in batch {
        dispatch.answer(
            submission.sequence,
            Err(ExecutorError::Unavailable(last_error.clone())),
        );
    }
}

/// Reads this instance's reply stream and resolves the waiting callers, reconnecting
/// whenever the connection breaks.
async fn reply_loop(dispatch: Arc<Dispatch>, client: ::redis::Client) {
    // The stream is this instance's alone and new, so reading from the start misses
    // nothing and replays nothing.
    let mut last_id = "0-0".to_owned();
    let config = connection_config(
        dispatch.config.connect_timeout,
        REPLY_BLOCK + dispatch.config.command_timeout,
    );
    let mut connection: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(50);
    let mut last_trim = Instant::now();
    loop {
        let redis = match &mut connection {
            Some(redis) => redis,
            None => match client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(redis) => {
                    backoff = Duration::from_millis(50);
                    connection.insert(redis)
                }
                Err(err) => {
                    tracing::debug!(error = %err, "reply reader cannot reach Redis");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let read = ::redis::cmd("XREAD")
            .arg("COUNT")
            .arg(MAX_BATCH)
            .arg("BLOCK")
            .arg(REPLY_BLOCK.as_millis().to_string())
            .arg("STREAMS")
            .arg(&dispatch.reply_key)
            .arg(&last_id)
            .query_async::<Value>(redis)
            .await;
        let reply = match read {
            Ok(Value::Nil) => continue,
            Ok(reply) => reply,
            Err(err) => {
                tracing::debug!(error = %err, "reading the reply stream failed");
                if is_connection_error(&err) {
                    connection = None;
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let mut answered = 0;
        let last = wire::for_each_entry(&reply, |id, fields| {
            wire::read_replies(fields, |answer| match answer {
                Some((job_id, result)) => match wire::parse_number(job_id) {
                    Some(sequence) => {
                        answered += 1;
                        dispatch.answer(sequence, result);
                    }
                    None => tracing::warn!(
                        job = %String::from_utf8_lossy(job_id),
                        "ignoring an answer to a job this server did not send"
                    ),
                },
                None => tracing::warn!(
                    id = %String::from_utf8_lossy(id),
                    "ignoring an unreadable answer"
                ),
            });
        });
        dispatch.count_answered(answered);
        let Some(last) = last else { continue };
        last_id = String::from_utf8_lossy(last).into_owned();
        if last_trim.elapsed() >= REPLY_TRIM_INTERVAL {
            // Read answers are not needed again; trimming them now and then keeps the
            // stream short. Best effort: workers cap the stream and let it expire anyway.
            last_trim = Instant::now();
            let trimmed = ::redis::cmd("XTRIM")
                .arg(&dispatch.reply_key)
                .arg("MINID")
                .arg("~")
                .arg(&last_id)
                .query_async::<()>(redis)
                .await;
            if let Err(err) = trimmed
                && is_connection_error(&err)
            {
                connection = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_split_into_entries_by_count_and_size() {
        let job = |sequence, bytes| Submission {
            sequence,
            deadline: Instant::now(),
            script: "x".repeat(bytes),
            context: Arc::new(crate::ScriptContext::default()),
        };
        let sizes =
            |batch: &[Submission]| -> Vec<usize> { entries_of(batch).map(<[_]>::len).collect() };
        let many: Vec<_> = (0..150).map(|n| job(n, 10)).collect();
        assert_eq!(sizes(&many), [64, 64, 22]);
        let big = [job(1, 100), job(2, MAX_ENTRY_BYTES), job(3, 10), job(4, 10)];
        assert_eq!(sizes(&big), [1, 1, 2]);
        assert_eq!(sizes(&[]), Vec::<usize>::new());
    }

    #[test]
    fn the_stream_length_is_turned_into_jobs_by_the_average_entry() {
        let mut sizes = EntrySizes::default();
        assert_eq!(sizes.take_jobs_per_entry(), 1);
        sizes.add(256, 4);
        sizes.add(1, 1);
        sizes.add(7, 1);
        assert_eq!(sizes.take_jobs_per_entry(), 44);
        // Nothing written since: the last average still holds.
        assert_eq!(sizes.take_jobs_per_entry(), 44);
        sizes.add(3, 3);
        assert_eq!(sizes.take_jobs_per_entry(), 1);
    }

    #[test]
    fn the_queue_estimate_follows_submissions_and_answers_between_measures() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let executor = RedisExecutor::new(RedisExecutorConfig::new(
            "redis://127.0.0.1:1",
            format!("02{}", "ab".repeat(32)),
        ))
        .unwrap();
        let dispatch = &executor.dispatch;
        dispatch.record_queued_jobs(100);
        dispatch.count_submitted(50);
        assert_eq!(executor.queue_depth(), 150);
        // A queue that drains as fast as it fills stays where it was.
        dispatch.count_answered(80);
        assert_eq!(executor.queue_depth(), 70);
        dispatch.count_answered(500);
        assert_eq!(executor.queue_depth(), 0);
        dispatch.record_queued_jobs(7);
        assert_eq!(executor.queue_depth(), 7);
    }

    #[test]
    fn instance_ids_differ() {
        assert_ne!(new_instance_id(), new_instance_id());
    }

    #[test]
    fn a_bad_configuration_is_refused_before_anything_starts() {
        let key = format!("02{}", "ab".repeat(32));
        assert!(matches!(
            RedisExecutor::new(RedisExecutorConfig::new("redis://127.0.0.1:1", key.clone())),
            Err(RedisSetupError::NoRuntime)
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        assert!(matches!(
            RedisExecutor::new(RedisExecutorConfig::new("http://nope", key.clone())),
            Err(RedisSetupError::InvalidUrl { .. })
        ));
        assert!(matches!(
            RedisExecutor::new(RedisExecutorConfig::new("redis://127.0.0.1:1", "02ab")),
            Err(RedisSetupError::InvalidCirclePublicKey(_))
        ));
        assert!(matches!(
            RedisExecutor::new(RedisExecutorConfig {
                max_queued_jobs: 0,
                ..RedisExecutorConfig::new("redis://127.0.0.1:1", key)
            }),
            Err(RedisSetupError::InvalidConfig(_))
        ));
    }
}
