//! The embedded executor: a fixed pool of OS threads, each with its own [`Sandbox`], fed
//! by one bounded queue.
//!
//! Scripts are CPU-bound and rhai is synchronous, so they must not run on the async
//! runtime's threads. Each script thread owns a single-threaded sandbox (no locks while a script
//! runs); the bounded queue is the back-pressure: when it is full, `execute` answers
//! [`ExecutorError::Overloaded`] at once instead of letting work pile up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

mod answer_to;
mod inline;
mod queue;
mod thread;

pub(crate) use answer_to::AnswerFn;
use answer_to::{AnswerTo, Task};
use inline::InlineSetup;
use queue::{JobQueue, Refused};
use thread::{PoolState, RunnerFactory, script_thread};

use crate::host::ScriptEnvironment;
use crate::sandbox::{MIN_STACK_BYTES, Sandbox};
use crate::store::Store;
use crate::{ExecuteFuture, Executor, ExecutorError, Inline, ScriptJob, ScriptLimits};

/// Configuration of an [`EmbeddedExecutor`].
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Worker threads, i.e. scripts that can run at the same time. Default: the machine's
    /// available parallelism. `0` is taken as `1`.
    pub threads: usize,
    /// Jobs that may wait for a free script thread; beyond that, `execute` answers
    /// [`ExecutorError::Overloaded`]. Default `1024`. `0` means no waiting at all: a job is
    /// accepted only when a script thread is idle.
    pub queue_capacity: usize,
    /// The limits every script runs under.
    pub limits: ScriptLimits,
    /// Compiled scripts each script thread keeps, so repeated scripts are not parsed again.
    /// Default `256`. `0` disables the cache.
    pub ast_cache_entries: usize,
    /// Host functions added to every script thread's engine. Default: the stock environment.
    pub environment: ScriptEnvironment,
    /// The store behind the `store::` and `circle::` modules. `None` (the default): the
    /// modules do not exist, and a script calling them gets a runtime error.
    pub store: Option<Store>,
    /// Operations a script may take on the thread that submits it before it is handed
    /// to a script thread (see [`EmbeddedExecutor::run_inline`]). Default `1,000`; `0`
    /// runs every script on a script thread. Ignored (always `0`) with host functions.
    pub inline_operations: u64,
    /// Times a script thread that finds the queue empty gives up its core
    /// (`sched_yield`) and looks again before it sleeps. Default `0`: a
    /// server's next job is a network round trip away, and each yield on a
    /// core shared with the connection thread is a context switch for
    /// nothing (bench/PROFILE.md §6). A circle-worker sets `2`: its jobs
    /// come in batches from Redis on a runtime beside the script threads,
    /// and a thread that yields picks up the next job of the batch where
    /// one that sleeps must be woken for it (on one shared core, a third
    /// fewer context switches and about a quarter more jobs a second).
    pub idle_yields: u32,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue_capacity: 1024,
            limits: ScriptLimits::default(),
            ast_cache_entries: 256,
            environment: ScriptEnvironment::stock(),
            store: None,
            inline_operations: 1_000,
            idle_yields: 0,
        }
    }
}

/// Runs scripts on a bounded pool of OS threads, each owning its own [`Sandbox`].
///
/// `execute` never blocks: it pushes the job onto the queue without waiting (a full queue
/// answers [`ExecutorError::Overloaded`]) and returns a future that resolves when a script thread
/// answers.
///
/// Dropping the executor closes the queue: script threads finish the script they are running,
/// answer it, and exit; jobs still queued are answered [`ExecutorError::Unavailable`].
/// Dropping does not wait for the threads; [`EmbeddedExecutor::shutdown`] does.
///
/// ```
/// use std::sync::Arc;
/// use circle_executor::{EmbeddedConfig, EmbeddedExecutor, Executor, ScriptContext, ScriptJob};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let executor = EmbeddedExecutor::new(EmbeddedConfig { threads: 2, ..Default::default() })?;
/// let job = ScriptJob::new("40 + 2", Arc::new(ScriptContext::default()));
/// assert_eq!(executor.execute(job).await.unwrap().output, "42");
/// # Ok(())
/// # }
/// ```
pub struct EmbeddedExecutor {
    /// Closed with the executor, which wakes idle script threads so they can exit.
    queue: Arc<JobQueue>,
    shared: Arc<PoolState>,
    handles: Vec<JoinHandle<()>>,
    queue_capacity: usize,
    /// What inline runs are made with; `None` when scripts never run inline.
    inline: Option<Arc<InlineSetup>>,
}

impl std::fmt::Debug for EmbeddedExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedExecutor")
            .field("threads", &self.handles.len())
            .field("live_threads", &self.live_threads())
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}

impl EmbeddedExecutor {
    /// Starts `config.threads` script threads (named `circle-executor-N`).
    ///
    /// Logs a warning if [`ScriptLimits::max_memory_bytes`] cannot be enforced because
    /// the process did not install [`CountingAllocator`](crate::memory::CountingAllocator)
    /// as its global allocator.
    ///
    /// # Errors
    ///
    /// The OS refused to start a thread. Threads already started then exit on their own.
    pub fn new(config: EmbeddedConfig) -> std::io::Result<Self> {
        warn_if_memory_limit_unenforced(&config.limits);
        let limits = config.limits.clone();
        let cache_entries = config.ast_cache_entries;
        let environment = config.environment;
        let store = config.store;
        let inline = (config.inline_operations > 0 && environment.is_stock()).then(|| {
            Arc::new(InlineSetup {
                operations: config.inline_operations,
                limits: limits.clone(),
                ast_cache_entries: cache_entries,
                store: store.clone(),
            })
        });
        let factory: RunnerFactory = Arc::new(move || {
            let mut sandbox = Sandbox::with_host(
                limits.clone(),
                cache_entries,
                environment.clone(),
                store.clone(),
            );
            Box::new(move |job: &ScriptJob| sandbox.run_job(job))
        });
        let mut executor = Self::with_runner(
            config.threads,
            config.queue_capacity,
            config.idle_yields,
            factory,
        )?;
        executor.inline = inline;
        Ok(executor)
    }

    fn with_runner(
        threads: usize,
        queue_capacity: usize,
        idle_yields: u32,
        factory: RunnerFactory,
    ) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let queue = Arc::new(JobQueue::new(queue_capacity, threads, idle_yields));
        let shared = Arc::new(PoolState {
            closing: AtomicBool::new(false),
            live_threads: AtomicUsize::new(0),
        });
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let queue_for_thread = Arc::clone(&queue);
            let shared_for_thread = Arc::clone(&shared);
            let factory = Arc::clone(&factory);
            // Counted before the spawn so `live_threads` never under-reports a thread
            // that is starting; `LiveGuard` gives the count back when the thread ends.
            shared.live_threads.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("circle-executor-{index}"))
                .stack_size(MIN_STACK_BYTES)
                .spawn(move || script_thread(queue_for_thread, shared_for_thread, factory));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(err) => {
                    shared.live_threads.fetch_sub(1, Ordering::SeqCst);
                    shared.closing.store(true, Ordering::SeqCst);
                    queue.close();
                    return Err(err);
                }
            }
        }
        tracing::debug!(threads, queue_capacity, "embedded script executor started");
        Ok(EmbeddedExecutor {
            queue,
            shared,
            handles,
            queue_capacity,
            inline: None,
        })
    }

    /// Number of script threads started.
    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    /// How many jobs may wait in the queue.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Worker threads still running (they exit after the executor is closed, or if one
    /// ever dies). For health checks and tests.
    pub fn live_threads(&self) -> usize {
        self.shared.live_threads.load(Ordering::SeqCst)
    }

    /// Queues `job` and has `answer` called with its result: on a script thread once it
    /// ran, or here and now when it cannot be queued (deadline passed, queue full, shut
    /// down). [`Executor::execute`] without the future: no channel, task or waker per job,
    /// for a caller (the Redis worker) that hands answers on from the script thread.
    #[cfg(feature = "redis")]
    pub(crate) fn submit(&self, job: ScriptJob, answer: AnswerFn) {
        if job
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            answer.call(Err(ExecutorError::DeadlineExceeded));
            return;
        }
        let task = Task {
            job,
            answer_to: AnswerTo::Call(answer),
        };
        let (task, refusal) = match self.queue.push(task) {
            Ok(()) => return,
            Err(Refused::Full(task)) => (
                task,
                ExecutorError::Overloaded(format!(
                    "all script threads are busy and the queue is full ({} jobs waiting); try again later",
                    self.queue_capacity
                )),
            ),
            Err(Refused::Closed(task)) => (
                task,
                ExecutorError::Unavailable("the executor is shut down".into()),
            ),
        };
        task.answer_to.send(Err(refusal));
    }

    /// Closes the queue and waits for every script thread to finish its current script and exit.
    ///
    /// This blocks for up to one script's wall-time limit: call it from a blocking
    /// context (for example `tokio::task::spawn_blocking`), not from async code.
    pub fn shutdown(mut self) {
        self.close();
        for handle in std::mem::take(&mut self.handles) {
            // A script thread never panics out of its loop (runs are caught), and if one did
            // there would be nothing left to clean up; either way, keep joining the rest.
            let _ = handle.join();
        }
    }

    fn close(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.queue.close();
    }
}

impl Drop for EmbeddedExecutor {
    fn drop(&mut self) {
        self.close();
    }
}

impl Executor for EmbeddedExecutor {
    fn execute(&self, job: ScriptJob) -> ExecuteFuture {
        if job
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Box::pin(std::future::ready(Err(ExecutorError::DeadlineExceeded)));
        }
        let (answer_sender, answer) = oneshot::channel();
        match self.queue.push(Task {
            job,
            answer_to: AnswerTo::Future(answer_sender),
        }) {
            Ok(()) => Box::pin(async move {
                answer.await.unwrap_or_else(|_| {
                    // The script thread dropped the job unanswered: it is shutting down.
                    Err(ExecutorError::Unavailable(
                        "the executor shut down before running the script".into(),
                    ))
                })
            }),
            Err(Refused::Full(_)) => {
                Box::pin(std::future::ready(Err(ExecutorError::Overloaded(format!(
                    "all script threads are busy and the queue is full ({} jobs waiting); try again later",
                    self.queue_capacity
                )))))
            }
            Err(Refused::Closed(_)) => Box::pin(std::future::ready(Err(
                ExecutorError::Unavailable("the executor is shut down".into()),
            ))),
        }
    }

    fn queue_depth(&self) -> usize {
        self.queue.len()
    }

    /// Runs `job` on this thread, in a sandbox of this thread's own, if it
    /// finishes within [`EmbeddedConfig::inline_operations`] without touching
    /// the store; otherwise nothing it did is kept and it should be
    /// [`execute`](Executor::execute)d. Saves the two thread switches of a
    /// script thread for short scripts. Jobs that stream their output are
    /// never run inline.
    fn run_inline(&self, job: &ScriptJob) -> Inline {
        match &self.inline {
            Some(setup) if job.output.is_none() => setup.run(job),
            _ => Inline::NotHere,
        }
    }
}

/// Says, once per executor, that the memory limit will not be enforced, when it cannot be:
/// an operator who set it should not believe scripts are capped when they are not.
fn warn_if_memory_limit_unenforced(limits: &ScriptLimits) {
    if limits.max_memory_bytes != usize::MAX && !crate::memory::is_counting() {
        tracing::warn!(
            max_memory_bytes = limits.max_memory_bytes,
            "the script memory limit is not enforced: this program does not count its \
             allocations. Add this line to its main.rs: #[global_allocator] static ALLOCATOR: \
             circle_executor::memory::CountingAllocator = \
             circle_executor::memory::CountingAllocator::new();"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ScriptContext, ScriptOutput};

    fn job(script: &str) -> ScriptJob {
        ScriptJob::new(script, Arc::new(ScriptContext::default()))
    }

    #[tokio::test]
    async fn a_panicking_run_is_answered_and_the_worker_keeps_serving() {
        let factory: RunnerFactory = Arc::new(|| {
            Box::new(|job: &ScriptJob| {
                let script = job.script.as_str();
                if script == "panic" {
                    panic!("boom");
                }
                Ok(ScriptOutput {
                    output: script.to_owned(),
                })
            })
        });
        let executor = EmbeddedExecutor::with_runner(1, 4, 0, factory).unwrap();
        let err = executor.execute(job("panic")).await.unwrap_err();
        assert!(matches!(err, ExecutorError::Unavailable(_)), "{err:?}");
        assert_eq!(err.code(), -32005);
        let ok = executor.execute(job("still here")).await.unwrap();
        assert_eq!(ok.output, "still here");
        assert_eq!(executor.live_threads(), 1);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn submitted_jobs_are_answered_exactly_once_through_their_function() {
        use std::sync::mpsc;
        // A gate keeps the one thread busy, so a second job stays queued.
        let (open, gate) = mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let factory: RunnerFactory = Arc::new(move || {
            let gate = Arc::clone(&gate);
            Box::new(move |job: &ScriptJob| {
                let script = job.script.as_str();
                if script == "wait" {
                    let _ = gate.lock().unwrap().recv();
                }
                Ok(ScriptOutput {
                    output: script.to_owned(),
                })
            })
        });
        let executor = EmbeddedExecutor::with_runner(1, 1, 0, factory).unwrap();
        let (answers, answered) = mpsc::channel();
        let submit = |executor: &EmbeddedExecutor, job: ScriptJob, tag: &'static str| {
            let answers = answers.clone();
            executor.submit(
                job,
                AnswerFn::new(move |result| answers.send((tag, result)).unwrap()),
            );
        };
        submit(&executor, job("wait"), "running");
        let give_up = Instant::now() + std::time::Duration::from_secs(5);
        while executor.queue_depth() > 0 {
            assert!(
                Instant::now() < give_up,
                "the script thread never took the job"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        submit(&executor, job("queued"), "queued");
        // Refused at once, on this thread: the queue (one place) is full, and a deadline
        // has passed.
        submit(&executor, job("full"), "full");
        let (tag, result) = answered.try_recv().unwrap();
        assert_eq!(tag, "full");
        assert!(
            matches!(result, Err(ExecutorError::Overloaded(_))),
            "{result:?}"
        );
        submit(&executor, job("late").with_deadline(Instant::now()), "late");
        let (tag, result) = answered.try_recv().unwrap();
        assert_eq!(tag, "late");
        assert!(
            matches!(result, Err(ExecutorError::DeadlineExceeded)),
            "{result:?}"
        );

        // Closing with a job queued answers it `Unavailable` (its function is dropped
        // unanswered); the running one still gets its result.
        drop(executor);
        open.send(()).unwrap();
        let mut rest: Vec<_> = (0..2).map(|_| answered.recv().unwrap()).collect();
        rest.sort_by_key(|(tag, _)| *tag);
        assert_eq!(rest[0].0, "queued");
        assert!(
            matches!(rest[0].1, Err(ExecutorError::Unavailable(_))),
            "{rest:?}"
        );
        assert_eq!(rest[1].0, "running");
        assert_eq!(rest[1].1.as_ref().unwrap().output, "wait");
        drop(answers);
        assert!(answered.recv().is_err(), "each job is answered once");
    }

    #[tokio::test]
    async fn dropping_the_executor_lets_the_threads_exit() {
        let executor = EmbeddedExecutor::new(EmbeddedConfig {
            threads: 1,
            queue_capacity: 4,
            limits: ScriptLimits {
                max_operations: u64::MAX,
                max_run_time: std::time::Duration::from_millis(300),
                ..ScriptLimits::default()
            },
            ast_cache_entries: 4,
            ..EmbeddedConfig::default()
        })
        .unwrap();
        let shared = Arc::clone(&executor.shared);
        assert_eq!(shared.live_threads.load(Ordering::SeqCst), 1);

        let running = executor.execute(job("loop {}"));
        let give_up = Instant::now() + std::time::Duration::from_secs(5);
        while executor.queue_depth() > 0 {
            assert!(
                Instant::now() < give_up,
                "the script thread never took the job"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let queued = executor.execute(job("1"));
        drop(executor);

        // The job in hand is finished and answered; the queued one is not run.
        let err = running.await.unwrap_err();
        assert_eq!(
            err.limit_kind(),
            Some(crate::LimitKind::WallTime),
            "{err:?}"
        );
        let err = queued.await.unwrap_err();
        assert!(matches!(err, ExecutorError::Unavailable(_)), "{err:?}");

        while shared.live_threads.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < give_up, "script threads did not exit");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
