//! What the caller of one run watches and stops it by (protocol 1.1): the
//! cancel flag the progress callback checks, and the sink each printed line
//! is offered to as it is printed.

use std::time::{Duration, Instant};

use crate::{Cancel, Offer, OutputSink, ScriptJob};

/// How long the script thread sleeps before offering a line again to a full
/// sink. Short enough that a reader catching up is hardly noticed, long
/// enough that a stalled one costs no CPU to speak of.
const FULL_SINK_RETRY: Duration = Duration::from_millis(1);

/// The current run's cancel flag and line sink; empty between runs, so
/// nothing of a finished job is kept.
#[derive(Default)]
pub(super) struct Watch {
    cancel: Option<Cancel>,
    sink: Option<OutputSink>,
}

/// What became of a streamed line.
pub(super) enum Streamed {
    /// Offered and taken, or nobody streams this run.
    Done,
    /// The reader is gone: stop offering lines this run.
    Closed,
    /// The caller cancelled while the line waited for room.
    Cancelled,
    /// The run's time was up while the line waited for room.
    OutOfTime,
}

impl Watch {
    /// What `job`'s caller watches it by.
    pub(super) fn of(job: &ScriptJob) -> Self {
        Watch {
            cancel: job.cancel.clone(),
            sink: job.output.clone(),
        }
    }

    /// Whether the caller cancelled the run.
    pub(super) fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(Cancel::is_cancelled)
    }

    /// Stops offering lines (the reader is gone).
    pub(super) fn close_sink(&mut self) {
        self.sink = None;
    }

    /// Offers `line` to the sink, waiting while it is full: a client that
    /// does not read holds its own script back, until the caller cancels or
    /// the run's time (`deadline`) is up.
    pub(super) fn stream(&self, line: &str, deadline: Instant) -> Streamed {
        let Some(sink) = &self.sink else {
            return Streamed::Done;
        };
        loop {
            match sink.offer(line) {
                Offer::Taken => return Streamed::Done,
                Offer::Closed => return Streamed::Closed,
                Offer::Full if self.is_cancelled() => return Streamed::Cancelled,
                Offer::Full if Instant::now() >= deadline => return Streamed::OutOfTime,
                Offer::Full => std::thread::sleep(FULL_SINK_RETRY),
            }
        }
    }
}
