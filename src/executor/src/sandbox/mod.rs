//! The one Rhai sandbox every circle script runs in.
//!
//! [`Sandbox`] owns a rhai [`Engine`] configured so that a script from any network peer can
//! be run safely: no file or network access (rhai has none unless the host adds it;
//! `import` and `export` are disabled and no module resolver is installed), `eval`
//! disabled, and every resource capped by [`ScriptLimits`] (memory too, when the process
//! installed [`CountingAllocator`](crate::memory::CountingAllocator)). It knows nothing
//! about threads or queues, so the embedded pool ([`EmbeddedExecutor`](crate::EmbeddedExecutor))
//! and a separate worker process can both use it as is.
//!
//! A sandbox built with [`Sandbox::with_host`] also has the host functions of a
//! [`ScriptEnvironment`] and the `store::`/`circle::` modules of a [`Store`].
//!
//! A sandbox is single-threaded by design (rhai without its `sync` feature: cheaper `Rc`
//! state, no locks on the hot path): create it on the thread that runs the scripts.
//!
//! # Native stack
//!
//! Rhai evaluates by recursion, so deep (but allowed) call and expression nesting uses
//! native stack. Run a sandbox on a thread with at least [`MIN_STACK_BYTES`] of stack
//! (the embedded pool does); the default limits are sized against that.

mod cache;
mod constants;
mod dialect;
mod display;
mod engine;
mod errors;
mod run_state;
mod store_fns;
mod watch;

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, Position};

pub use cache::CacheStats;

use crate::host::{HostContext, ScriptEnvironment};
use crate::store::Store;
use crate::{
    ExecutorError, LimitKind, ScriptContext, ScriptJob, ScriptLimits, ScriptOutput, memory,
};
use cache::AstCache;
use constants::Constants;
use engine::{build, memory_cap};
use run_state::{Output, RunState};
use store_fns::StoreRun;
use watch::Watch;

/// Native stack a thread running a [`Sandbox`] should have, in bytes (64 MiB).
///
/// Deep recursion within [`ScriptLimits::max_call_depth`] and
/// [`ScriptLimits::max_expr_depth`] must never overflow the native stack: that aborts the
/// whole process, not just the script. With the default limits the worst cases we measured
/// (recursion to the call-depth limit through maximally nested expressions, closures and
/// function pointers) needed about 12 MiB in a debug build and about 4 MiB in a release
/// build, so this leaves a wide margin. The need grows roughly with
/// `max_call_depth × max_expr_depth`: raise this if you raise those. It is reserved
/// address space; only the pages a script actually touches use memory.
pub const MIN_STACK_BYTES: usize = 64 * 1024 * 1024;

/// The value our progress callback terminates a script with. Scripts cannot observe it
/// (termination is not catchable); the reason is kept in [`RunState::stopped`].
const STOP_TOKEN: &str = "circle sandbox limit";

/// A Rhai engine locked down for untrusted scripts, with a cache of compiled scripts.
///
/// ```
/// use circle_executor::{sandbox::Sandbox, ScriptContext, ScriptLimits};
///
/// let mut sandbox = Sandbox::new(ScriptLimits::default(), 16);
/// let context = ScriptContext { circle_name: "demo".into(), ..Default::default() };
/// let out = sandbox.run(r#"print("hi " + CIRCLE_NAME); 40 + 2"#, &context).unwrap();
/// assert_eq!(out.output, "hi demo\n42");
/// ```
pub struct Sandbox {
    engine: Engine,
    limits: ScriptLimits,
    /// Whether the memory limit is checked (see [`Sandbox::enforces_memory_limit`]).
    memory_enforced: bool,
    state: Rc<RunState>,
    /// The circle dialect's tokenizer state (single-quoted strings).
    dialect: Rc<dialect::Dialect>,
    cache: AstCache,
    /// The scope each run starts from: the circle constants.
    constants: Constants,
    /// The host functions, kept to build the engine again after one panicked.
    environment: ScriptEnvironment,
    /// Tells host functions which run calls them.
    host: HostContext,
    /// The store's modules and the current run's writes, when there is a store.
    store: Option<(Store, Rc<StoreRun>)>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .field("memory_enforced", &self.memory_enforced)
            .field("cache", &self.cache.stats())
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A sandbox enforcing `limits`, keeping up to `ast_cache_entries` compiled scripts
    /// (`0` disables the cache).
    ///
    /// [`ScriptLimits::max_memory_bytes`] is enforced only if the process installed
    /// [`CountingAllocator`](crate::memory::CountingAllocator) (see
    /// [`Sandbox::enforces_memory_limit`]); otherwise it is skipped silently here
    /// ([`EmbeddedExecutor::new`](crate::EmbeddedExecutor::new) warns when it starts).
    pub fn new(limits: ScriptLimits, ast_cache_entries: usize) -> Self {
        Sandbox::with_host(limits, ast_cache_entries, ScriptEnvironment::stock(), None)
    }

    /// A sandbox as [`Sandbox::new`] makes, whose engine also has the host functions of
    /// `environment` and, with a `store`, the `store::` and `circle::` modules.
    pub fn with_host(
        limits: ScriptLimits,
        ast_cache_entries: usize,
        environment: ScriptEnvironment,
        store: Option<Store>,
    ) -> Self {
        let state = Rc::new(RunState {
            deadline: Cell::new(Instant::now()),
            memory_baseline: Cell::new(0),
            stopped: Cell::new(None),
            failed: Cell::new(false),
            failure: RefCell::new(None),
            output: RefCell::new(Output::default()),
            watch: RefCell::new(Watch::default()),
            inline_budget: Cell::new(0),
            inline_deadline: Cell::new(Instant::now()),
            handed_off: Cell::new(false),
        });
        let memory_cap = memory_cap(&limits);
        let host = HostContext::default();
        let (engine, dialect, store) = build(&limits, &state, &environment, &host, store);
        Sandbox {
            engine,
            limits,
            memory_enforced: memory_cap.is_some(),
            state,
            dialect,
            cache: AstCache::new(ast_cache_entries),
            constants: Constants::new(),
            environment,
            host,
            store,
        }
    }

    /// The limits this sandbox enforces.
    pub fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    /// Whether this sandbox checks [`ScriptLimits::max_memory_bytes`]: the process
    /// installed [`CountingAllocator`](crate::memory::CountingAllocator) as its global
    /// allocator and the limit is not `usize::MAX`.
    pub fn enforces_memory_limit(&self) -> bool {
        self.memory_enforced
    }

    /// Hit and miss counters of the compiled-script cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Runs `script` with the circle constants of `context` in scope.
    ///
    /// The output is what `docs/PROTOCOL.md` specifies for `play`: each printed line
    /// (`print` and `debug`), then the script's value unless it is `()`, joined by
    /// `\n`. A string value is shown without quotes.
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Script`] for parse and runtime errors (with line and position),
    /// [`ExecutorError::Limit`] when a limit stopped the script.
    pub fn run(
        &mut self,
        script: &str,
        context: &ScriptContext,
    ) -> Result<ScriptOutput, ExecutorError> {
        self.run_shared(script, &Arc::new(context.clone()))
    }

    /// [`Sandbox::run`] with the context shared (as jobs carry it), without copying it.
    ///
    /// With a store, the run's writes are committed after the script ended successfully
    /// and before this returns; when the script fails, or the commit does, nothing of
    /// them is kept.
    ///
    /// # Errors
    ///
    /// Those of [`Sandbox::run`], and: [`ExecutorError::Script`] when a host function
    /// panicked; [`ExecutorError::Limit`] with a store limit kind when the store refused
    /// the writes; [`ExecutorError::Unavailable`] when the store failed.
    pub fn run_shared(
        &mut self,
        script: &str,
        context: &Arc<ScriptContext>,
    ) -> Result<ScriptOutput, ExecutorError> {
        self.run_watched(script, context, Watch::default())
    }

    /// Runs `job`: [`Sandbox::run_shared`], stopped when the job's
    /// [`Cancel`](crate::Cancel) is raised (answered [`ExecutorError::Cancelled`],
    /// nothing written to the store), and each printed line offered to the job's
    /// [`OutputSink`](crate::OutputSink) as it is printed.
    ///
    /// # Errors
    ///
    /// Those of [`Sandbox::run_shared`], and [`ExecutorError::Cancelled`].
    pub fn run_job(&mut self, job: &ScriptJob) -> Result<ScriptOutput, ExecutorError> {
        if job.is_cancelled() {
            return Err(ExecutorError::Cancelled);
        }
        self.run_watched(&job.script, &job.context, Watch::of(job))
    }

    /// Runs `job` if it finishes within `operations` and `time` without
    /// touching the store: `None` when it did not, and nothing it did was
    /// kept (no output, no store access), so it can be run again from the
    /// start elsewhere. For running short scripts on the thread that
    /// received them (see [`EmbeddedExecutor::run_inline`](crate::EmbeddedExecutor::run_inline)).
    ///
    /// Not for jobs that stream their output or may be cancelled: the
    /// job's cancel flag and line sink are not watched.
    pub fn run_inline(
        &mut self,
        job: &ScriptJob,
        operations: u64,
        time: Duration,
    ) -> Option<Result<ScriptOutput, ExecutorError>> {
        self.state.inline_budget.set(operations.max(1));
        self.state.inline_deadline.set(deadline_after(time));
        self.state.handed_off.set(false);
        let result = self.run_unwatched(&job.script, &job.context);
        self.state.inline_budget.set(0);
        if self.state.handed_off.replace(false) {
            return None;
        }
        Some(result)
    }

    fn run_watched(
        &mut self,
        script: &str,
        context: &Arc<ScriptContext>,
        watch: Watch,
    ) -> Result<ScriptOutput, ExecutorError> {
        // Whatever way the run ends, the job's flag and sink are not kept.
        *self.state.watch.borrow_mut() = watch;
        let result = self.run_unwatched(script, context);
        *self.state.watch.borrow_mut() = Watch::default();
        result
    }

    fn run_unwatched(
        &mut self,
        script: &str,
        context: &Arc<ScriptContext>,
    ) -> Result<ScriptOutput, ExecutorError> {
        if script.len() > self.limits.max_script_bytes {
            // Checked before parsing: parsing is the one step no other limit bounds.
            return Err(ExecutorError::Limit {
                limit: LimitKind::ScriptSize,
                message: format!(
                    "script is {} bytes, over the script size limit ({} bytes)",
                    script.len(),
                    self.limits.max_script_bytes
                ),
            });
        }
        let ast = self.compile(script)?;

        self.state
            .deadline
            .set(deadline_after(self.limits.max_run_time));
        self.state.stopped.set(None);
        self.state.failed.set(false);
        self.state.failure.take();
        *self.state.output.borrow_mut() = Output::default();
        self.host.enter(Arc::clone(context));
        if let Some((_, store)) = &self.store {
            store.begin();
        }
        // The constants are not the run's either: a kept scope holds them already, and a
        // new one is built here, before the baseline too.
        let scope = self.constants.scope_for(context);
        // After the compile (a cached script must not count against the run that first
        // compiled it) and before anything the run itself allocates.
        self.state.memory_baseline.set(memory::thread_live_bytes());

        // A host function may panic; the script gets an error, the thread goes on. Rhai
        // keeps no state in the engine during a run, but the host's functions might: the
        // engine is built again below, as after any panic.
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.engine.eval_ast_with_scope::<Dynamic>(scope, &ast)
        }));
        // The script's own variables go now, whatever happened to the run.
        self.constants.end_run();
        let Ok(result) = result else {
            self.rebuild();
            return Err(ExecutorError::Script(
                "a host function failed while running the script (the host logged it)".into(),
            ));
        };

        // Take the output out now so a large one is not kept alive until the next run.
        let printed = std::mem::take(&mut *self.state.output.borrow_mut());
        if self.state.handed_off.get() {
            // An inline attempt given up: its caller runs it again elsewhere.
            self.state.stopped.take();
            self.state.failure.take();
            return Err(ExecutorError::Unavailable(
                "handed to a script thread".into(),
            ));
        }
        let stopped = self.state.stopped.take();
        if let Some(failure) = self.state.failure.take() {
            return Err(failure);
        }

        // A limit our callbacks recorded wins over whatever the script did next: the
        // script may have caught the termination in a `try` and finished "normally".
        if let Some(kind) = stopped {
            let pos = match &result {
                Err(err) => err.unwrap_inner().position(),
                Ok(_) => Position::NONE,
            };
            return Err(errors::limit_error(kind, &self.limits, pos));
        }
        let value = result.map_err(|err| errors::from_eval_error(&err, &self.limits))?;
        let output = self.render(printed, &value)?;
        // Last, after everything that could still fail the play: a play answered with an
        // error has written nothing.
        if let Some((_, store)) = &self.store {
            // A cancel that came after the script's last operation: its caller has been
            // told "cancelled", so nothing is written if it can still be helped.
            if self.state.is_cancelled() {
                return Err(ExecutorError::Cancelled);
            }
            store.commit()?;
        }
        Ok(output)
    }

    /// Builds the engine again from the same limits, host functions and store, after a
    /// host function panicked. The cache holds compiled scripts only, which stay valid.
    fn rebuild(&mut self) {
        tracing::warn!("a host function panicked: rebuilding this script thread's engine");
        let store = self.store.take().map(|(store, _)| store);
        let (engine, dialect, store) = build(
            &self.limits,
            &self.state,
            &self.environment,
            &self.host,
            store,
        );
        self.engine = engine;
        self.dialect = dialect;
        self.store = store;
    }

    /// The compiled form of `script`, from the cache when possible.
    fn compile(&mut self, script: &str) -> Result<Rc<AST>, ExecutorError> {
        if let Some(ast) = self.cache.get(script) {
            return Ok(ast);
        }
        self.dialect.reset();
        // Compiled without the run's scope on purpose: the constants differ per caller, so
        // they must not be folded into an AST that other callers will reuse.
        let ast = self
            .engine
            .compile(script)
            .map(Rc::new)
            .map_err(|err| errors::from_parse_error(&err, &self.limits))?;
        self.cache.insert(script, Rc::clone(&ast));
        Ok(ast)
    }

    /// Joins the printed lines and the script's value into the `play` output.
    fn render(&self, printed: Output, value: &Dynamic) -> Result<ScriptOutput, ExecutorError> {
        let mut output = printed.text;
        if !value.is_unit() {
            let separator = usize::from(printed.lines > 0);
            let too_large =
                || errors::limit_error(LimitKind::OutputSize, &self.limits, Position::NONE);
            let room = self
                .limits
                .max_output_bytes
                .checked_sub(output.len() + separator)
                .ok_or_else(too_large)?;
            // Written through a bounded buffer, not `to_string`: the text of a value can be
            // far larger than its memory (an array holding one big string many times), and
            // only what fits in the output is ever needed.
            let shown = display::display_within(value, room).ok_or_else(too_large)?;
            if separator == 0 {
                // Nothing was printed: the value's text is the output, not a copy of it.
                output = shown;
            } else {
                output.push('\n');
                output.push_str(&shown);
            }
        }
        Ok(ScriptOutput { output })
    }
}

/// `now + wall_time`, saturating far in the future when the sum does not fit.
fn deadline_after(wall_time: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wall_time)
        // A limit too large to represent is effectively "none"; a year is plenty.
        .or_else(|| now.checked_add(std::time::Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str) -> Result<ScriptOutput, ExecutorError> {
        Sandbox::new(ScriptLimits::default(), 4).run(script, &ScriptContext::default())
    }

    #[test]
    fn constants_are_not_baked_into_cached_scripts() {
        let mut sandbox = Sandbox::new(ScriptLimits::default(), 4);
        let alice = ScriptContext {
            caller_public_key: "alice".into(),
            ..Default::default()
        };
        let bob = ScriptContext {
            caller_public_key: "bob".into(),
            ..Default::default()
        };
        let script = "CALLER_PUBLIC_KEY";
        assert_eq!(sandbox.run(script, &alice).unwrap().output, "alice");
        assert_eq!(sandbox.run(script, &bob).unwrap().output, "bob");
        assert_eq!(sandbox.cache_stats().hits, 1);
    }

    #[test]
    fn an_inline_run_is_handed_on_when_it_outgrows_its_time_or_its_operations() {
        let mut sandbox = Sandbox::new(ScriptLimits::default(), 4);
        let job = ScriptJob::new(
            "let x = 0; for i in 0..200 { x += i; } x",
            Arc::new(ScriptContext::default()),
        );
        let roomy = Duration::from_secs(5);
        let answer = sandbox.run_inline(&job, 10_000, roomy).expect("ran inline");
        assert_eq!(answer.unwrap().output, "19900");
        // A budget the script's own CPU time outgrows.
        assert!(
            sandbox
                .run_inline(&job, 10_000, Duration::from_nanos(1))
                .is_none()
        );
        // Too few operations.
        assert!(sandbox.run_inline(&job, 10, roomy).is_none());
        // Nothing of those attempts stays behind.
        let answer = sandbox.run_inline(&job, 10_000, roomy).expect("ran inline");
        assert_eq!(answer.unwrap().output, "19900");
    }

    #[test]
    fn limit_state_does_not_leak_into_the_next_run() {
        let limits = ScriptLimits {
            max_output_bytes: 8,
            ..ScriptLimits::default()
        };
        let mut sandbox = Sandbox::new(limits, 4);
        let ctx = ScriptContext::default();
        let err = sandbox.run(r#"print("0123456789")"#, &ctx).unwrap_err();
        assert_eq!(err.limit_kind(), Some(LimitKind::OutputSize));
        assert_eq!(sandbox.run(r#"print("ok")"#, &ctx).unwrap().output, "ok");
    }

    #[test]
    fn a_job_streams_its_lines_and_stops_when_cancelled() {
        use crate::{Cancel, LineSink, Offer, OutputSink};
        use std::sync::Mutex;

        struct Collect(Arc<Mutex<Vec<String>>>);
        impl LineSink for Collect {
            fn offer(&self, line: &str) -> Offer {
                self.0.lock().unwrap().push(line.to_owned());
                Offer::Taken
            }
        }
        let mut sandbox = Sandbox::new(ScriptLimits::default(), 4);
        let context = Arc::new(ScriptContext::default());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let job = ScriptJob::new(r#"print("a"); print(""); 7"#, Arc::clone(&context))
            .with_output(OutputSink::new(Collect(Arc::clone(&lines))));
        assert_eq!(
            sandbox.run_job(&job).unwrap().output,
            "a

7"
        );
        assert_eq!(*lines.lock().unwrap(), ["a", ""]);

        let cancel = Cancel::new();
        let job = ScriptJob::new("loop {}", Arc::clone(&context)).with_cancel(cancel.clone());
        let raiser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            cancel.cancel();
        });
        let started = Instant::now();
        assert!(matches!(
            sandbox.run_job(&job),
            Err(ExecutorError::Cancelled)
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        raiser.join().unwrap();
        // Cancelled before it starts: not run at all; the next job is not affected.
        assert!(matches!(
            sandbox.run_job(&job),
            Err(ExecutorError::Cancelled)
        ));
        assert_eq!(sandbox.run("1", &context).unwrap().output, "1");
    }

    #[test]
    fn empty_printed_lines_are_kept() {
        assert_eq!(run(r#"print(""); print("b"); 1"#).unwrap().output, "\nb\n1");
        assert_eq!(run(r#"print("")"#).unwrap().output, "");
        assert_eq!(run(r#"print(""); """#).unwrap().output, "\n");
    }
}
