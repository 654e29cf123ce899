//! Watching and stopping a job while it runs (protocol 1.1's streamed `play`
//! and `cancel`): [`Cancel`], the flag its caller raises, and [`LineSink`],
//! where its printed lines go as they are printed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// The caller's way to stop one job, queued or running. Cheap to clone: every
/// clone is the same flag.
///
/// A queued job that is cancelled is never started; a running one is stopped
/// at its next operation (the sandbox checks the flag as it checks its
/// limits) and answers [`ExecutorError::Cancelled`](crate::ExecutorError::Cancelled).
#[derive(Clone, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    raised: AtomicBool,
    /// Wakes whoever awaits [`Cancel::cancelled`].
    raised_notify: Notify,
}

impl Cancel {
    /// A flag not raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag. Idempotent.
    pub fn cancel(&self) {
        if !self.0.raised.swap(true, Ordering::AcqRel) {
            self.0.raised_notify.notify_waiters();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called. One atomic load: cheap
    /// enough for the sandbox to ask at every operation.
    pub fn is_cancelled(&self) -> bool {
        self.0.raised.load(Ordering::Acquire)
    }

    /// Whether `other` is a clone of this flag (the same job's).
    pub fn same_as(&self, other: &Cancel) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Resolves once the flag is raised (at once if it already is).
    pub async fn cancelled(&self) {
        let mut notified = std::pin::pin!(self.0.raised_notify.notified());
        // Registered before the check, so a `cancel` between the two is seen.
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// What a [`LineSink`] did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Taken: it is on its way.
    Taken,
    /// Not taken because the reader is behind: the script thread waits and
    /// offers it again, which is how a client that does not read slows down
    /// its own script and nobody else's memory grows.
    Full,
    /// Nobody reads any more: the line (and every later one) is dropped; the
    /// script goes on and its answer still carries every line.
    Closed,
}

/// Where a streamed job's printed lines go, one at a time, as they are
/// printed. Called on the thread running the script, so it must not block:
/// answer [`Offer::Full`] instead.
pub trait LineSink: Send + Sync {
    /// Offers one printed line (without its line break).
    fn offer(&self, line: &str) -> Offer;
}

/// A shared [`LineSink`], as a [`ScriptJob`](crate::ScriptJob) carries it.
#[derive(Clone)]
pub struct OutputSink(Arc<dyn LineSink>);

impl OutputSink {
    /// Wraps `sink`.
    pub fn new(sink: impl LineSink + 'static) -> Self {
        OutputSink(Arc::new(sink))
    }

    /// Offers one line to the sink.
    pub fn offer(&self, line: &str) -> Offer {
        self.0.offer(line)
    }
}

impl fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutputSink")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancelled_resolves_after_and_before_the_flag() {
        let cancel = Cancel::new();
        assert!(!cancel.is_cancelled());
        let waiter = {
            let cancel = cancel.clone();
            tokio::spawn(async move { cancel.cancelled().await })
        };
        tokio::task::yield_now().await;
        cancel.cancel();
        waiter.await.unwrap();
        assert!(cancel.is_cancelled());
        // Already raised: at once.
        cancel.cancelled().await;
        cancel.cancel();
    }
}
