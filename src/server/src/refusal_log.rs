//! One log line a second for refused connections, however many are refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Logs at most one refused connection per second, with the number refused
/// since the last line: a flood of connections past the limit must not
/// become a flood of log lines (and a full disk).
#[derive(Debug)]
pub(crate) struct RefusalLog {
    start: Instant,
    /// Milliseconds since `start` of the last logged refusal, plus one (0 = never).
    last_logged: AtomicU64,
    /// Refusals not logged since then.
    unlogged: AtomicU64,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(1);

    pub fn new() -> RefusalLog {
        RefusalLog {
            start: Instant::now(),
            last_logged: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// `Some(refusals not logged since the last line)` when this refusal
    /// should be logged; `None` when it is only counted.
    pub fn should_log(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last_logged.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < Self::EVERY.as_millis() as u64 {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last_logged
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another thread logs this second.
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_log_speaks_once_a_second_and_counts_the_rest() {
        let log = RefusalLog::new();
        assert_eq!(log.should_log(), Some(0));
        for _ in 0..5 {
            assert_eq!(log.should_log(), None);
        }
        std::thread::sleep(RefusalLog::EVERY + Duration::from_millis(20));
        assert_eq!(log.should_log(), Some(5));
        assert_eq!(log.should_log(), None);
    }
}
