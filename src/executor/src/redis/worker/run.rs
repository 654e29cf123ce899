//! Running jobs: each job of an entry takes one slot, and is refused (unreadable, expired,
//! retried too often) or handed to the script threads; its answer goes to the finish loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::control::RemoteLines;
use super::{Answer, Finish, HeldEntry, Outgoing, Worker};
use crate::embedded::AnswerFn;
use crate::redis::wire::{self, JobEntry, MalformedJob, WireJob};
use crate::{Cancel, ExecutorError, OutputSink, ScriptJob};

impl Worker {
    /// Starts every job of `entry`, each holding one job slot until it is answered, and
    /// returns the slots left over. Slots come from `permits` first; when the entry holds
    /// more jobs than that, this waits for each further slot to come free (the worker took
    /// more than it can hold, and takes nothing more until its jobs have all started).
    /// The main loop awaits this, so the jobs in hand are all started before a shutdown
    /// waits for every slot.
    pub(super) async fn start(
        self: &Arc<Self>,
        entry: JobEntry,
        deliveries: usize,
        mut permits: OwnedSemaphorePermit,
        slots: &Arc<Semaphore>,
    ) -> OwnedSemaphorePermit {
        let reply_to = entry.jobs.iter().find_map(|job| match job {
            Ok(job) => Some(Arc::clone(&job.reply_to)),
            Err(malformed) => malformed.reply_to.clone(),
        });
        let cancels = entry
            .jobs
            .iter()
            .filter_map(|job| Some((numeric_id(job.as_ref().ok()?)?, Cancel::new())))
            .collect();
        let held = Arc::new(HeldEntry {
            id: entry.id,
            reply_to,
            cancels,
            unfinished: AtomicUsize::new(entry.jobs.len()),
        });
        {
            let mut in_flight = self.in_flight();
            if in_flight.contains_key(&held.id) {
                // Taken over from ourselves (a renewal failed): it is already running here.
                return permits;
            }
            in_flight.insert(held.id.clone(), Arc::clone(&held));
        }
        // Looked at after the entry is registered (see `cancel_job`): a cancel that came
        // before this worker took the job stops it before it starts.
        if let Some(reply_to) = &held.reply_to {
            let mut cancelled = self.cancelled();
            if !cancelled.is_empty() {
                for (job_id, cancel) in &held.cancels {
                    if cancelled.take(reply_to, *job_id) {
                        cancel.cancel();
                    }
                }
            }
        }
        let mut cancels = held.cancels.iter();
        let mut clocks = wire::clocks_now();
        for job in entry.jobs {
            let cancel = match &job {
                Ok(job) if numeric_id(job).is_some() => {
                    cancels.next().map(|(_, cancel)| cancel.clone())
                }
                _ => None,
            };
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
            self.run(Arc::clone(&held), job, cancel, deliveries, slot, clocks);
        }
        permits
    }

    /// Runs one job (or refuses it) and hands its answer to [`Worker::finish_loop`]: a
    /// refusal at once, a script's answer from the script thread that ran it (no task,
    /// channel or waker per job). `clocks` were read when the job was started (once for
    /// the jobs of an entry started together). `cancel` is the job's flag the cancel
    /// reader raises.
    pub(super) fn run(
        self: &Arc<Self>,
        entry: Arc<HeldEntry>,
        job: Result<WireJob, MalformedJob>,
        cancel: Option<Cancel>,
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
            stream,
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
        let mut job = ScriptJob::new(script, context)
            .with_deadline(wire::instant_at(deadline_unix_ms, clocks));
        job.cancel = cancel;
        if stream {
            job.output = Some(OutputSink::new(RemoteLines {
                outgoing: self.finishes.clone(),
                unsent: Arc::clone(&self.unsent_lines),
                job_id: job_id.clone(),
                reply_to: Arc::clone(&reply_to),
                give_up_at: deadline_unix_ms,
            }));
        }
        let worker = Arc::clone(self);
        self.executor.submit(
            job,
            AnswerFn::new(move |result| {
                // The pool answers `DeadlineExceeded` for a job whose deadline passed while
                // it waited for a thread: skipped, not run. A cancelled job is not counted
                // either (it may have been stopped before it started).
                let ran = !matches!(
                    result,
                    Err(ExecutorError::DeadlineExceeded | ExecutorError::Cancelled)
                );
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
    pub(super) fn finish(
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
        let _ = self.finishes.send(Outgoing::Finish(finish));
    }
}

/// The id of a job as a number, as servers of this crate write them (others cannot be
/// cancelled).
fn numeric_id(job: &WireJob) -> Option<u64> {
    wire::parse_number(job.job_id.as_bytes())
}
