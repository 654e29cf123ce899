//! The queue between the executor and its script threads.
//!
//! Bounded, and a script thread that finds it empty goes to sleep at once.
//! A general-purpose channel (crossbeam's, which this replaces) spins and
//! calls `sched_yield` a few times before it sleeps, betting that the next
//! job is a few microseconds away. For a script server the next job is a
//! network round trip away, and the yields hand the core back and forth
//! with the connection thread that just queued the job: about two extra
//! context switches per `play` (bench/PROFILE.md §6). A circle-worker, whose
//! jobs come in batches, asks for a few yields (`EmbeddedConfig::idle_yields`).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::answer_to::Task;

/// Why a job was not queued; the job comes back to be answered.
pub(super) enum Refused {
    /// As many jobs wait as the queue holds.
    Full(Task),
    /// The executor is closing, or no script thread is left to take it.
    Closed(Task),
}

pub(super) struct JobQueue {
    state: Mutex<State>,
    job_queued: Condvar,
    capacity: usize,
    /// Yields before a thread that finds no job sleeps
    /// ([`EmbeddedConfig::idle_yields`](super::EmbeddedConfig::idle_yields)).
    idle_yields: u32,
}

struct State {
    jobs: VecDeque<Task>,
    /// Script threads waiting for a job.
    sleeping: usize,
    /// Script threads that may still take jobs.
    takers: usize,
    closed: bool,
}

impl JobQueue {
    /// A queue for `takers` script threads, holding up to `capacity`
    /// waiting jobs (with `0`, a job is taken only by a thread that waits);
    /// a thread that finds it empty yields `idle_yields` times before it
    /// sleeps.
    pub(super) fn new(capacity: usize, takers: usize, idle_yields: u32) -> Self {
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity.min(1024)),
                sleeping: 0,
                takers,
                closed: false,
            }),
            job_queued: Condvar::new(),
            capacity,
            idle_yields,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; if something did, the
        // queue itself is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `task`, waking a sleeping script thread if there is one.
    pub(super) fn push(&self, task: Task) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closed || state.takers == 0 {
            return Err(Refused::Closed(task));
        }
        // A job a sleeping thread is about to take does not wait.
        if state.jobs.len() >= self.capacity + state.sleeping {
            return Err(Refused::Full(task));
        }
        state.jobs.push_back(task);
        let wake = state.sleeping > 0;
        drop(state);
        if wake {
            self.job_queued.notify_one();
        }
        Ok(())
    }

    /// The next job, sleeping until there is one; `None` once the queue is
    /// closed and empty.
    pub(super) fn pop(&self) -> Option<Task> {
        let mut state = self.lock();
        let mut yields = self.idle_yields;
        loop {
            if let Some(task) = state.jobs.pop_front() {
                return Some(task);
            }
            if state.closed {
                return None;
            }
            if yields > 0 {
                yields -= 1;
                drop(state);
                std::thread::yield_now();
                state = self.lock();
                continue;
            }
            state.sleeping += 1;
            state = self
                .job_queued
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.sleeping -= 1;
        }
    }

    /// Takes no more jobs; sleeping threads wake up to see it.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.job_queued.notify_all();
    }

    /// A script thread has ended and takes no more jobs. After the last
    /// one, the jobs still queued are dropped, which answers them
    /// ([`Task`]'s answer says the executor shut down).
    pub(super) fn taker_gone(&self) {
        let mut state = self.lock();
        state.takers = state.takers.saturating_sub(1);
        let orphans = if state.takers == 0 {
            std::mem::take(&mut state.jobs)
        } else {
            VecDeque::new()
        };
        // Answering runs the callers' code: not under the lock.
        drop(state);
        drop(orphans);
    }

    /// Jobs waiting for a script thread.
    pub(super) fn len(&self) -> usize {
        self.lock().jobs.len()
    }
}
