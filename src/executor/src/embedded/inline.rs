//! Short scripts on the thread that received them.
//!
//! Handing a script to a script thread costs two context switches and two
//! wake-ups, which for `40 + 2` is most of a `play`'s cost. So a script
//! first runs on the calling thread, in a sandbox of that thread's own,
//! with a budget of operations: if it finishes within the budget without
//! touching the store, that is its answer. If it needs more, or reaches for
//! the store, the attempt is dropped (nothing it did was kept: no output
//! went out, nothing was read or written) and the job goes to a script
//! thread like any other, from the start. Scripts are deterministic apart
//! from the store, so the client sees one run either way.
//!
//! The calling thread is a connection thread, so the budget also bounds how
//! long one play can hold up the other connections on it: at most 1,000
//! operations and 100 µs (one operation on a large string can take a
//! while), and scripts of up to 4 KiB (a larger one would take long to
//! parse). Circles with host functions never run scripts here: what those
//! do is not ours to know.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::sandbox::Sandbox;
use crate::store::Store;
use crate::{Inline, ScriptJob, ScriptLimits};

/// Longest an inline run may take before it is handed on.
const INLINE_TIME: Duration = Duration::from_micros(100);

/// Largest script run inline; a larger one is parsed on a script thread.
const MAX_INLINE_SCRIPT_BYTES: usize = 4 * 1024;

/// What the inline sandboxes are built from.
pub(super) struct InlineSetup {
    pub(super) operations: u64,
    pub(super) limits: ScriptLimits,
    pub(super) ast_cache_entries: usize,
    pub(super) store: Option<Store>,
}

thread_local! {
    /// This thread's inline sandbox and the setup it was built from (by
    /// address: one process may run several executors).
    static SANDBOX: RefCell<Option<(usize, Sandbox)>> = const { RefCell::new(None) };
}

impl InlineSetup {
    pub(super) fn run(self: &Arc<Self>, job: &ScriptJob) -> Inline {
        if job.script.len() > MAX_INLINE_SCRIPT_BYTES {
            return Inline::NotHere;
        }
        let key = Arc::as_ptr(self) as usize;
        SANDBOX.with(|slot| {
            let Ok(mut slot) = slot.try_borrow_mut() else {
                return Inline::NotHere;
            };
            if slot.as_ref().is_none_or(|(built_for, _)| *built_for != key) {
                *slot = Some((key, self.sandbox()));
            }
            let (_, sandbox) = slot.as_mut().expect("built just above");
            match catch_unwind(AssertUnwindSafe(|| {
                sandbox.run_inline(job, self.operations, INLINE_TIME)
            })) {
                Ok(Some(result)) => Inline::Done(result),
                Ok(None) => Inline::HandedOff,
                Err(_) => {
                    // Not to be trusted after unwinding: built again next time,
                    // and this job goes where a panic is handled.
                    *slot = None;
                    Inline::HandedOff
                }
            }
        })
    }

    fn sandbox(&self) -> Sandbox {
        Sandbox::with_host(
            self.limits.clone(),
            self.ast_cache_entries,
            crate::ScriptEnvironment::stock(),
            self.store.clone(),
        )
    }
}
