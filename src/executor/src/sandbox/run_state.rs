//! The state of one run that the sandbox and the engine's callbacks share: the
//! limit or failure that ended it, the lines printed so far, and what its
//! caller watches it by (see [`watch`](super::watch)).

use std::cell::{Cell, RefCell};
use std::time::Instant;

use super::watch::{Streamed, Watch};
use crate::{ExecutorError, LimitKind};

/// Per-run state shared between the sandbox and the engine's callbacks.
///
/// `Rc` + `Cell`/`RefCell` because the callbacks must be `'static` and the engine is
/// single-threaded; nothing here is ever touched from two threads.
pub(super) struct RunState {
    /// When the current run must end.
    pub(super) deadline: Cell<Instant>,
    /// [`memory::thread_live_bytes`](crate::memory::thread_live_bytes) when the current run started: the memory limit caps
    /// the growth from here.
    pub(super) memory_baseline: Cell<isize>,
    /// The limit that stopped the current run, once one has. Sticky: after it is set every
    /// further operation terminates the script, so neither a `try`/`catch` around a
    /// function call (which can catch a wrapped termination) nor a native function that
    /// ignores errors (rhai's `sort` with its comparator) can keep it going.
    pub(super) stopped: Cell<Option<LimitKind>>,
    /// Set with `failure`: a host function ended the run (a store limit, the store
    /// unavailable). Sticky like `stopped`, and a `Cell` for the progress callback.
    pub(super) failed: Cell<bool>,
    /// What ends the run when `failed` is set: the answer the play gets.
    pub(super) failure: RefCell<Option<ExecutorError>>,
    /// The lines printed so far in the current run.
    pub(super) output: RefCell<Output>,
    /// The current run's cancel flag and line sink.
    pub(super) watch: RefCell<Watch>,
    /// Operations an inline run may take before it is handed to a script
    /// thread; `0` for an ordinary run (see [`Sandbox::run_inline`](super::Sandbox::run_inline)).
    pub(super) inline_budget: Cell<u64>,
    /// When an inline run is handed on however few operations it took: one
    /// operation on a large string can take a while, and a connection
    /// thread must not.
    pub(super) inline_deadline: Cell<Instant>,
    /// Set when an inline run was abandoned: it ran out of its budget or
    /// reached for the store. Sticky like `stopped`.
    pub(super) handed_off: Cell<bool>,
}

/// What a run printed so far.
#[derive(Default)]
pub(super) struct Output {
    /// The printed lines joined by `\n`.
    pub(super) text: String,
    /// How many lines `text` holds (`print("")` adds an empty line, so `text` alone
    /// cannot tell).
    pub(super) lines: usize,
}

impl RunState {
    /// Records that `limit` stopped the run, unless another limit already did (the first
    /// one is what the script ran into). The progress callback ends the script at its next
    /// operation.
    pub(super) fn stop(&self, limit: LimitKind) {
        if self.stopped.get().is_none() {
            self.stopped.set(Some(limit));
        }
    }

    /// Ends the run with `error` at its next operation, unless something already ended it.
    /// Not catchable, like a limit: a store refusal must not let the script go on and
    /// answer as if its writes were kept.
    pub(super) fn fail(&self, error: ExecutorError) {
        if !self.failed.get() && self.stopped.get().is_none() {
            self.failed.set(true);
            *self.failure.borrow_mut() = Some(error);
        }
    }

    /// Abandons an inline run at its next operation (see `handed_off`).
    pub(super) fn hand_off(&self) {
        self.handed_off.set(true);
    }

    /// Whether this run is an inline attempt.
    pub(super) fn is_inline(&self) -> bool {
        self.inline_budget.get() != 0
    }

    /// Appends one printed line, or records that the output limit was hit.
    pub(super) fn push_line(&self, line: &str, max_output_bytes: usize) {
        if self.stopped.get().is_some() || self.failed.get() || self.handed_off.get() {
            return;
        }
        let mut output = self.output.borrow_mut();
        let separator = usize::from(output.lines > 0);
        let needed = output
            .text
            .len()
            .saturating_add(separator)
            .saturating_add(line.len());
        if needed > max_output_bytes {
            // Stop at the next operation (see the progress callback) rather than keep
            // running a script whose answer can no longer be delivered.
            self.stopped.set(Some(LimitKind::OutputSize));
            return;
        }
        if separator == 1 {
            output.text.push('\n');
        }
        output.text.push_str(line);
        output.lines += 1;
        drop(output);
        self.stream(line);
    }

    /// Offers a printed line to the run's sink, if it streams.
    fn stream(&self, line: &str) {
        let streamed = self.watch.borrow().stream(line, self.deadline.get());
        match streamed {
            Streamed::Done => {}
            Streamed::Closed => self.watch.borrow_mut().close_sink(),
            Streamed::Cancelled => self.fail(ExecutorError::Cancelled),
            Streamed::OutOfTime => self.stop(LimitKind::WallTime),
        }
    }

    /// Whether the run's caller cancelled it.
    pub(super) fn is_cancelled(&self) -> bool {
        self.watch.borrow().is_cancelled()
    }
}
