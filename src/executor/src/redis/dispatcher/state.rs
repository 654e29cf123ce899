//! What one executor shares between its handle, its callers' futures and its background
//! tasks: the callers waiting by job number, and the estimate of the circle's queue.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot};

use super::control::{CancelRequest, Stream};
use super::{QUEUE_LENGTH_TRUSTED_MS, RedisExecutorConfig};
use crate::redis::wire;
use crate::{Cancel, ExecutorError, ScriptOutput};

pub(super) type AnswerSender = oneshot::Sender<Result<ScriptOutput, ExecutorError>>;

/// Callers waiting for an answer, by job sequence number.
pub(super) type Waiting = HashMap<u64, AnswerSender, BuildHasherDefault<SequenceHasher>>;

/// The sinks of streamed jobs still waiting, by job sequence number.
pub(super) type Streams = HashMap<u64, Stream, BuildHasherDefault<SequenceHasher>>;

/// Hashes the sequence numbers that key [`Waiting`]: they are unique and made by this
/// process (no peer chooses them, so no flooding to fear), and one multiplication spreads
/// consecutive numbers over the table much more cheaply than SipHash.
#[derive(Default)]
pub(super) struct SequenceHasher(u64);

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
pub(super) struct Dispatch {
    pub(super) config: RedisExecutorConfig,
    pub(super) jobs_key: String,
    pub(super) reply_key: String,
    /// The circle's cancel stream, which this server tells workers about cancels on.
    pub(super) cancel_key: String,
    pub(super) next_sequence: AtomicU64,
    /// Callers waiting for an answer, by job sequence number. An entry is removed by
    /// whoever resolves it first (answer, Redis failure) or by the caller's future when it
    /// is dropped.
    pub(super) waiting: Mutex<Waiting>,
    /// The sinks of the waiting jobs that stream their lines; only those are in it.
    pub(super) streams: Mutex<Streams>,
    /// Some streamed job has lines waiting for its sink (set and cleared under the
    /// `streams` lock; see `control`).
    pub(super) backlogged: AtomicBool,
    /// Wakes the task that hands waiting lines over.
    pub(super) backlog_wake: Notify,
    /// Cancelled jobs on their way to the cancel-writing task.
    pub(super) cancels: mpsc::Sender<CancelRequest>,
    /// The jobs in the job stream at the last measure (`XLEN`, in jobs; see
    /// [`Dispatch::record_queued_jobs`]).
    pub(super) queued_jobs: AtomicUsize,
    /// Jobs this server submitted since the last measure, less the answers it read since:
    /// between measures the queue grows by what this server adds and shrinks by what it
    /// sees answered. Counting only submissions would call a queue that drains as fast as
    /// it fills (100 000 jobs a second pass through it) full within one interval.
    pub(super) change_since_measure: AtomicI64,
    /// When `queued_jobs` was measured, in milliseconds since `created`.
    pub(super) queued_jobs_measured_ms: AtomicU64,
    pub(super) created: Instant,
}

impl Dispatch {
    pub(super) fn waiting(&self) -> MutexGuard<'_, Waiting> {
        // A panic while holding this lock cannot leave the map inconsistent (every
        // operation on it is a single insert or remove), so a poisoned lock is still usable.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn streams(&self) -> MutexGuard<'_, Streams> {
        // Single inserts and removes, as for `waiting`.
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves the caller of job `sequence`, if it is still waiting.
    pub(super) fn deliver(&self, sequence: u64, result: Result<ScriptOutput, ExecutorError>) {
        let reply = self.waiting().remove(&sequence);
        if let Some(reply) = reply {
            // The caller may have stopped waiting this very moment; nothing to do then.
            let _ = reply.send(result);
        }
    }

    pub(super) fn millis_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts `submitted` jobs into the estimate, without renewing the measure's age.
    pub(super) fn count_submitted(&self, submitted: usize) {
        let submitted = i64::try_from(submitted).unwrap_or(i64::MAX);
        self.change_since_measure
            .fetch_add(submitted, Ordering::Relaxed);
    }

    /// Counts `answered` jobs out of the estimate.
    pub(super) fn count_answered(&self, answered: usize) {
        let answered = i64::try_from(answered).unwrap_or(i64::MAX);
        self.change_since_measure
            .fetch_sub(answered, Ordering::Relaxed);
    }

    /// The estimate of the jobs queued or running for every server of the circle.
    pub(super) fn queued_jobs(&self) -> usize {
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
    pub(super) fn record_queued_jobs(&self, queued: usize) {
        self.queued_jobs.store(queued, Ordering::Relaxed);
        self.change_since_measure.store(0, Ordering::Relaxed);
        self.queued_jobs_measured_ms
            .store(self.millis_since_created(), Ordering::Relaxed);
    }

    /// The queue is full by a recent measure. The length is only measured while jobs are
    /// submitted (at most every [`QUEUE_LENGTH_SAMPLE`](super::QUEUE_LENGTH_SAMPLE), and once more after the last
    /// submission), so an old "full" must let a job through, or a full queue that workers
    /// have since drained would refuse jobs forever.
    pub(super) fn queue_is_full(&self) -> Option<usize> {
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
/// because the client went away), so entries never pile up; and tells the workers when
/// the caller gave up because it cancelled the job.
pub(super) struct WaitingGuard {
    pub(super) dispatch: Arc<Dispatch>,
    pub(super) sequence: u64,
    /// The job's cancel flag, if its caller can raise one.
    pub(super) cancel: Option<Cancel>,
    pub(super) deadline: Instant,
    /// The job has a sink in [`Dispatch::streams`] to remove.
    pub(super) streaming: bool,
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        let unanswered = self.dispatch.waiting().remove(&self.sequence).is_some();
        if self.streaming {
            self.dispatch.streams().remove(&self.sequence);
        }
        // Checked here rather than where the flag is raised, so that a job nobody cancels
        // costs nothing: the caller stops waiting when it cancels (or drops the future
        // after cancelling, as a closing connection does), and only then does a worker
        // need to hear of it.
        if unanswered && self.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            let request = CancelRequest {
                sequence: self.sequence,
                deadline_unix_ms: wire::unix_ms_at(self.deadline, wire::clocks_now()),
            };
            if self.dispatch.cancels.try_send(request).is_err() {
                tracing::warn!(
                    job = self.sequence,
                    "too many cancels at once: this one does not reach its worker"
                );
            }
        }
    }
}
