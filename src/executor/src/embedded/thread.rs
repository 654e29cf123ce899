//! One script thread of the pool: takes jobs off the queue, runs them in
//! its own sandbox, answers them, and survives a panicking run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use super::answer_to::Task;
use super::queue::JobQueue;
use crate::{ExecutorError, ScriptJob, ScriptOutput};

/// What a script thread runs a script with. A boxed closure rather than [`Sandbox`] itself so
/// tests can exercise the pool's own failure handling (a panicking run) honestly.
pub(super) type RunFn = Box<dyn FnMut(&ScriptJob) -> Result<ScriptOutput, ExecutorError>>;

/// Makes a script thread's runner. Called on the script thread (the sandbox is not `Send`), and
/// again after a run panicked, since the old runner's state can no longer be trusted.
pub(super) type RunnerFactory = Arc<dyn Fn() -> RunFn + Send + Sync>;

/// State shared by the executor handle and its script threads.
pub(super) struct PoolState {
    /// Set when the executor is dropped or shut down: script threads stop taking jobs.
    pub(super) closing: AtomicBool,
    /// Worker threads still running (for [`EmbeddedExecutor::live_threads`]).
    pub(super) live_threads: AtomicUsize,
}

/// Gives a script thread's place in `live_threads` and in the queue's takers
/// back however the thread ends.
struct LiveGuard(Arc<PoolState>, Arc<JobQueue>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live_threads.fetch_sub(1, Ordering::SeqCst);
        self.1.taker_gone();
    }
}

pub(super) fn script_thread(queue: Arc<JobQueue>, shared: Arc<PoolState>, factory: RunnerFactory) {
    let _live = LiveGuard(Arc::clone(&shared), Arc::clone(&queue));
    let mut run = factory();
    // `pop` says `None` once the executor closed the queue and it is empty.
    while let Some(Task { job, answer_to }) = queue.pop() {
        if shared.closing.load(Ordering::SeqCst) {
            // Dropping `answer_to` answers the caller with `Unavailable`; so does dropping
            // the jobs still queued, once the last script thread has gone.
            break;
        }
        if answer_to.is_closed() {
            // The caller gave up waiting; running the script would be wasted work.
            continue;
        }
        if job.is_cancelled() {
            // Cancelled while queued: never started.
            answer_to.send(Err(ExecutorError::Cancelled));
            continue;
        }
        if job
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            answer_to.send(Err(ExecutorError::DeadlineExceeded));
            continue;
        }
        let result = match catch_unwind(AssertUnwindSafe(|| run(&job))) {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "script run panicked; rebuilding the sandbox");
                // The old sandbox may be in any state after unwinding out of it.
                run = factory();
                Err(ExecutorError::Unavailable(
                    "internal error while running the script".into(),
                ))
            }
        };
        answer_to.send(result);
    }
    tracing::debug!("script thread exiting");
}
