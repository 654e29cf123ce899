//! How many jobs a worker holds: its threads, `prefetch`, and what it answers in
//! `hold_for` at its recent rate. Holding more lets short scripts travel in large batches;
//! the rate keeps long scripts from waiting behind many others.

use std::sync::MutexGuard;
use std::time::Duration;

use super::{Worker, WorkerConfig};

/// The number of job slots, and whether it may still change.
pub(super) struct HeldLimit {
    pub(super) slots: usize,
    /// Set by the shutdown, which then waits for every slot.
    pub(super) stopping: bool,
}

/// How often a worker re-measures its answer rate for [`WorkerConfig::hold_for`] (when it
/// answers jobs: no timer runs for it).
pub(super) const RATE_INTERVAL: Duration = Duration::from_millis(100);

impl Worker {
    pub(super) fn held(&self) -> MutexGuard<'_, HeldLimit> {
        // Plain numbers: a poisoned lock still holds a consistent value.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the job slots to threads plus `prefetch` plus what `hold_for` allows at the
    /// rate of `answered` jobs in `elapsed`. Shrinking takes only free slots (the rest are
    /// taken as they come free, at later adjustments).
    pub(super) fn adjust_held(&self, answered: usize, elapsed: Duration) {
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
}
