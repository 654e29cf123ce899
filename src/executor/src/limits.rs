//! The resource limits every script runs under.

use std::time::Duration;

/// The limits a [`Sandbox`](crate::sandbox::Sandbox) enforces on every script.
///
/// Every script comes from a network peer, so every resource it can consume is capped.
/// A script that hits a limit ends with [`ExecutorError::Limit`](crate::ExecutorError::Limit)
/// naming the limit and its value. The defaults ([`ScriptLimits::default`]) are meant for
/// production: generous for real scripts, small enough that one runaway script cannot
/// starve a server.
///
/// No field means "unlimited" when it is `0` (rhai's own convention is not carried over,
/// so a zero in a configuration file can never switch a limit off): a `0` is applied as
/// the strictest setting rhai accepts. Build on [`Default`] and change only what you need:
///
/// ```
/// use std::time::Duration;
/// use circle_executor::ScriptLimits;
///
/// let limits = ScriptLimits { max_run_time: Duration::from_secs(1), ..ScriptLimits::default() };
/// assert_eq!(limits.max_operations, 10_000_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Rhai operations (roughly: statements, expressions and function calls evaluated)
    /// one run may take. Default `10_000_000` (a fraction of a second to a few seconds of
    /// CPU). This is the deterministic CPU cap; `max_run_time` is the backstop.
    pub max_operations: u64,
    /// Wall-clock time one run may take on its thread, measured from the start of the
    /// run (time spent waiting in a queue does not count: that is the job's
    /// deadline, [`ScriptJob::deadline`](crate::ScriptJob)). Default 5 s. Checked about every 1024 operations, so a script overshoots it by at
    /// most the time of ~1024 operations.
    pub max_run_time: Duration,
    /// Nesting of script-defined function calls (recursion depth). Default `64`.
    /// Protects the script thread's native stack.
    pub max_call_depth: usize,
    /// Nesting of expressions and statement blocks, checked when the script is parsed,
    /// both at global level and inside functions. Default `64`. Protects the parser's and
    /// the evaluator's native stack.
    pub max_expr_depth: usize,
    /// Length of any one string, in bytes. Default 1 MiB.
    pub max_string_size: usize,
    /// Number of elements of any one array (nested arrays count their elements too) or
    /// bytes of any one BLOB. Default `100_000`.
    pub max_array_size: usize,
    /// Number of properties of any one object map (nested maps count too).
    /// Default `100_000`.
    pub max_map_size: usize,
    /// Bytes of output: everything printed (`print` and `debug`, one line each, with the
    /// `\n` between lines) plus the script's final value. Default 1 MiB.
    pub max_output_bytes: usize,
    /// Length of the script's source text, in bytes, checked before it is parsed.
    /// Default 64 KiB.
    pub max_script_bytes: usize,
    /// Heap memory one run may hold, in bytes: how much the live bytes of the thread
    /// running the script may grow above their level at the start of the run. Default
    /// 64 MiB. `0` stops a script at its first net allocation. Checked after every
    /// operation, so a script overshoots it by what one operation allocates: usually at
    /// most one value within the data-size limits above, at most the size of the
    /// container it copies for an operation that copies one (`a + a`).
    ///
    /// The data-size limits alone do not bound memory (rhai does not check a container's
    /// size when an element is assigned by index); this does. It needs the process to
    /// install [`CountingAllocator`](crate::memory::CountingAllocator) as its global
    /// allocator: without it the limit is not enforced, and
    /// [`EmbeddedExecutor::new`](crate::EmbeddedExecutor::new) logs a warning saying so.
    /// `usize::MAX` means no cap (and no warning).
    pub max_memory_bytes: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            max_operations: 10_000_000,
            max_run_time: Duration::from_secs(5),
            max_call_depth: 64,
            max_expr_depth: 64,
            max_string_size: 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 100_000,
            max_output_bytes: 1024 * 1024,
            max_script_bytes: 64 * 1024,
            max_memory_bytes: 64 * 1024 * 1024,
        }
    }
}
