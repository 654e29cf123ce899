//! The server side: [`RedisExecutor`] queues jobs on Redis and routes answers back.
//!
//! - `state`: the callers waiting for answers, and the estimate of the circle's queue;
//! - `submit`: the task writing queued jobs to the job stream in batches;
//! - `replies`: the task reading this server's reply stream;
//! - `control`: cancel notices to the workers, streamed lines to their sinks.

mod control;
mod replies;
mod state;
mod submit;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::connection::SharedConnection;
use super::endpoint::Endpoint;
use super::wire;
use super::{
    RedisSentinel, RedisSetupError, RedisTls, cancel_stream_key, canonical_circle_key,
    jobs_stream_key, reply_stream_key,
};
use crate::{ExecuteFuture, Executor, ExecutorError, ScriptJob, ScriptOutput};
use control::{cancel_loop, flush_loop};
use replies::reply_loop;
use state::{Dispatch, Waiting, WaitingGuard};
use submit::submit_loop;

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
    /// `redis://[user:password@]host[:port][/db]`. With [`RedisExecutorConfig::sentinel`]
    /// only its scheme, user, password and database are used: the master's host and port
    /// come from Sentinel.
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
    /// The deadline given to a job submitted without one ([`ScriptJob::deadline`]):
    /// how long it may wait for its answer. Default 30 s.
    pub fallback_deadline: Duration,
    /// Time to establish a TCP connection to Redis. Default 1 s.
    pub connect_timeout: Duration,
    /// Time Redis has to answer one command (or one pipeline of queued jobs). Default 2 s.
    pub command_timeout: Duration,
    /// After a failed connection attempt, jobs are answered
    /// [`ExecutorError::Unavailable`] without dialing again for this long. Default 250 ms.
    pub reconnect_interval: Duration,
    /// Certificate files for a `rediss://` URL (a private CA, a client
    /// certificate). Default: none, the system's roots verify Redis.
    pub tls: RedisTls,
    /// Redis under Sentinel: every new connection goes to the master the Sentinels name
    /// then, so the executor follows a failover without a restart. Default: none, the
    /// URL's host is Redis.
    pub sentinel: Option<RedisSentinel>,
}

impl RedisExecutorConfig {
    /// The defaults, for the Redis at `redis_url` and the circle `circle_public_key`.
    pub fn new(redis_url: impl Into<String>, circle_public_key: impl Into<String>) -> Self {
        RedisExecutorConfig {
            redis_url: redis_url.into(),
            circle_public_key: circle_public_key.into(),
            max_queued_jobs: 10_000,
            max_in_flight: 10_000,
            fallback_deadline: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(2),
            reconnect_interval: Duration::from_millis(250),
            tls: RedisTls::default(),
            sentinel: None,
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

/// A job on its way to the submitting task, which writes it into an entry
/// ([`wire::encode_job`]) without copying it first.
struct Submission {
    /// The job's id within this instance.
    sequence: u64,
    /// Turned into Unix milliseconds with one reading of the clocks per batch.
    deadline: Instant,
    script: String,
    context: Arc<crate::ScriptContext>,
    /// The worker sends the job's printed lines as they are printed.
    stream: bool,
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

/// An [`Executor`] that queues scripts on Redis for `circle-worker` processes
/// ([`run_worker`](super::run_worker)) and routes their answers back.
///
/// Starting it never fails because Redis is down: it connects lazily, answers
/// [`ExecutorError::Unavailable`] (`-32005`) while Redis cannot be reached, and recovers by
/// itself when Redis is back. Every answer arrives by the job's deadline (or
/// [`RedisExecutorConfig::fallback_deadline`]): if no worker answered by then, the caller
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
        let endpoint = Arc::new(Endpoint::new(
            &config.redis_url,
            &config.tls,
            config.sentinel.as_ref(),
        )?);
        let instance_id = new_instance_id();
        let jobs_key = jobs_stream_key(&circle_key);
        let reply_key = reply_stream_key(&circle_key, &instance_id);
        let submit_connection = Arc::new(SharedConnection::new(
            Arc::clone(&endpoint),
            (config.connect_timeout, config.command_timeout),
            jobs_key.clone(),
            config.reconnect_interval,
        ));
        // As large as the jobs that may wait: every one of them can be cancelled at once
        // (a closing connection cancels all of its plays).
        let (cancels, cancel_requests) = mpsc::channel(config.max_in_flight);
        let dispatch = Arc::new(Dispatch {
            jobs_key,
            reply_key,
            cancel_key: cancel_stream_key(&circle_key),
            next_sequence: AtomicU64::new(1),
            waiting: Mutex::new(Waiting::default()),
            streams: Mutex::new(state::Streams::default()),
            backlogged: std::sync::atomic::AtomicBool::new(false),
            backlog_wake: tokio::sync::Notify::new(),
            cancels,
            queued_jobs: AtomicUsize::new(0),
            change_since_measure: AtomicI64::new(0),
            queued_jobs_measured_ms: AtomicU64::new(0),
            created: Instant::now(),
            config,
        });
        let (submissions, queue) = mpsc::channel(dispatch.config.max_in_flight);
        let submitter = runtime.spawn(submit_loop(
            Arc::clone(&dispatch),
            queue,
            Arc::clone(&submit_connection),
        ));
        let canceller = runtime.spawn(cancel_loop(
            Arc::clone(&dispatch),
            cancel_requests,
            submit_connection,
        ));
        let redis = endpoint.describe().to_owned();
        let reader = runtime.spawn(reply_loop(Arc::clone(&dispatch), endpoint));
        let flusher = runtime.spawn(flush_loop(Arc::clone(&dispatch)));
        tracing::info!(
            %redis,
            jobs = %dispatch.jobs_key,
            replies = %dispatch.reply_key,
            "scripts go to circle-worker processes through Redis"
        );
        Ok(RedisExecutor {
            dispatch,
            submissions,
            tasks: vec![
                submitter.abort_handle(),
                reader.abort_handle(),
                canceller.abort_handle(),
                flusher.abort_handle(),
            ],
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
            .unwrap_or_else(|| started + self.dispatch.config.fallback_deadline);
        if started >= deadline {
            return ready(Err(ExecutorError::DeadlineExceeded));
        }
        if job.is_cancelled() {
            return ready(Err(ExecutorError::Cancelled));
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
        let streaming = job.output.is_some();
        if let Some(sink) = job.output {
            self.dispatch.stream_to(sequence, sink);
        }
        let guard = WaitingGuard {
            dispatch: Arc::clone(&self.dispatch),
            sequence,
            cancel: job.cancel,
            deadline,
            streaming,
        };
        let submission = Submission {
            sequence,
            deadline,
            script: job.script,
            context: job.context,
            stream: streaming,
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
            // Dropped last: forgets the job, and tells the workers if it was cancelled.
            let guard = guard;
            let answer = async {
                match &guard.cancel {
                    // Resolves at once when the flag is raised; the worker is told when
                    // the guard drops.
                    Some(cancel) => tokio::select! {
                        biased;
                        answer = answer => Some(answer),
                        () = cancel.cancelled() => None,
                    },
                    None => Some(answer.await),
                }
            };
            match tokio::time::timeout_at(deadline.into(), answer).await {
                Ok(None) => Err(ExecutorError::Cancelled),
                Ok(Some(Ok(result))) => result,
                Ok(Some(Err(_))) => Err(ExecutorError::Unavailable(
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

/// An executor for unit tests that never reach Redis (nothing listens on port 1), on
/// a runtime of its own: entered by the caller for as long as the executor is used.
#[cfg(test)]
fn unreachable_executor() -> (tokio::runtime::Runtime, RedisExecutor) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = {
        let _entered = runtime.enter();
        RedisExecutor::new(RedisExecutorConfig::new(
            "redis://127.0.0.1:1",
            format!("02{}", "ab".repeat(32)),
        ))
        .unwrap()
    };
    (runtime, executor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_estimate_follows_submissions_and_answers_between_measures() {
        let (runtime, executor) = unreachable_executor();
        let _entered = runtime.enter();
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
