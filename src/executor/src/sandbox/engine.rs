//! Building a sandbox's engine: the host's functions first, then the lockdown that no
//! hook can undo (limits, no `eval`/`import`/`sleep`, the progress callback), the circle
//! dialect, and the store's modules.

use std::rc::Rc;
use std::time::Instant;

use rhai::{Dynamic, Engine, EvalAltResult};

use super::store_fns::StoreRun;
use super::{RunState, STOP_TOKEN, dialect, display};
use crate::host::{HostContext, ScriptEnvironment};
use crate::store::Store;
use crate::{ExecutorError, LimitKind, ScriptLimits, memory};

/// How many operations pass between two looks at the clock. Reading the clock on every
/// operation would cost more than many operations themselves; 1024 operations take
/// microseconds, so the wall-time limit is still kept to well within a millisecond.
const CLOCK_CHECK_INTERVAL: u64 = 1024;

/// The error a script gets for calling `sleep` (see [`lock_down`]).
const SLEEP_REFUSED: &str = "sleep is not available in the circle sandbox";

/// The growth of the thread's live bytes a run may reach, or `None` when the memory limit
/// is not checked: no counting allocator to read (see [`memory::is_counting`]), or no cap
/// asked for (`usize::MAX`).
pub(super) fn memory_cap(limits: &ScriptLimits) -> Option<isize> {
    if limits.max_memory_bytes == usize::MAX || !memory::is_counting() {
        return None;
    }
    // Above `isize::MAX` no allocation could ever reach the limit anyway.
    Some(isize::try_from(limits.max_memory_bytes).unwrap_or(isize::MAX))
}

/// A sandbox's engine: the host's functions, then the lockdown (so no hook can lift a
/// limit), the circle dialect, and the store's modules.
pub(super) type Built = (Engine, Rc<dialect::Dialect>, Option<(Store, Rc<StoreRun>)>);

pub(super) fn build(
    limits: &ScriptLimits,
    state: &Rc<RunState>,
    environment: &ScriptEnvironment,
    host: &HostContext,
    store: Option<Store>,
) -> Built {
    let mut engine = Engine::new();
    environment.apply(&mut engine, host);
    lock_down(&mut engine, limits, memory_cap(limits), state);
    // Single-quoted text is a string in a circle (see `dialect`).
    let dialect = dialect::register(&mut engine);
    let store = store.map(|store| {
        let run = StoreRun::register(
            &mut engine,
            store.clone(),
            host.clone(),
            Rc::clone(state),
            limits.max_array_size.max(1),
        );
        (store, run)
    });
    (engine, dialect, store)
}

/// Locks the engine down. Limits of `0` become the strictest setting rhai accepts,
/// because rhai reads `0` as "unlimited" (see [`ScriptLimits`]). `memory_cap` is what
/// [`memory_cap`] gave for these limits.
fn lock_down(
    engine: &mut Engine,
    limits: &ScriptLimits,
    memory_cap: Option<isize>,
    state: &Rc<RunState>,
) {
    // Modules exist for the store's and the host's namespaces (`store::get`), not for
    // loading code: no `import`/`export`, and a resolver that finds nothing (rhai's
    // default reads script files from disk).
    engine.disable_symbol("import");
    engine.disable_symbol("export");
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());

    // `eval` would run a string as script: it would bypass the compiled-script cache and
    // the script-size check and is never needed. Disabling the keyword makes any use of
    // it a parse error.
    engine.disable_symbol("eval");

    // rhai's core package has `sleep`, which blocks the thread without counting any
    // operation, so neither the operation nor the wall-time limit could end it: one call
    // would hold a worker for as long as the script asks. Functions registered on the
    // engine take precedence over packages (also through `Fn("sleep")`), so these replace
    // it with a refusal.
    engine.register_fn(
        "sleep",
        |_seconds: rhai::INT| -> Result<(), Box<EvalAltResult>> { Err(SLEEP_REFUSED.into()) },
    );
    engine.register_fn(
        "sleep",
        |_seconds: rhai::FLOAT| -> Result<(), Box<EvalAltResult>> { Err(SLEEP_REFUSED.into()) },
    );

    engine.set_max_operations(limits.max_operations.max(1));
    // 0 here means "no function calls", which is already the strictest setting.
    engine.set_max_call_levels(limits.max_call_depth);
    let expr_depth = limits.max_expr_depth.max(1);
    engine.set_max_expr_depths(expr_depth, expr_depth);
    engine.set_max_string_size(limits.max_string_size.max(1));
    engine.set_max_array_size(limits.max_array_size.max(1));
    engine.set_max_map_size(limits.max_map_size.max(1));
    // Formatting arrays and maps must stop at the string limit rather than after (see
    // `display`): it is the one way a single operation could allocate without bound.
    display::register(engine, limits.max_string_size.max(1), state);

    let max_output = limits.max_output_bytes;
    let print_state = Rc::clone(state);
    engine.on_print(move |text| print_state.push_line(text, max_output));
    let debug_state = Rc::clone(state);
    engine.on_debug(move |text, _source, _pos| debug_state.push_line(text, max_output));

    let progress_state = Rc::clone(state);
    engine.on_progress(move |operations| {
        // A hot path: a few `Cell` reads per operation, the clock only now and then.
        if progress_state.stopped.get().is_some()
            || progress_state.failed.get()
            || progress_state.handed_off.get()
        {
            return Some(Dynamic::from(STOP_TOKEN));
        }
        let inline_budget = progress_state.inline_budget.get();
        // Inline runs are short (at most the budget), so reading the clock at
        // each of their operations costs little.
        if inline_budget != 0
            && (operations > inline_budget
                || Instant::now() >= progress_state.inline_deadline.get())
        {
            progress_state.hand_off();
            return Some(Dynamic::from(STOP_TOKEN));
        }
        // Every operation, not every `CLOCK_CHECK_INTERVAL`: it is one thread-local read,
        // and a single operation can allocate up to a data-size limit (a 1 MiB string), so
        // checking only now and then would let a script overshoot by a thousand of those.
        // Recorded in the sticky `stopped`, like the other limits, so that neither a
        // `try`/`catch` nor a native function that ignores errors (rhai's `sort` ignores
        // its comparator's) can keep the script going past the termination.
        if let Some(cap) = memory_cap {
            let grown =
                memory::thread_live_bytes().wrapping_sub(progress_state.memory_baseline.get());
            if grown > cap {
                progress_state.stopped.set(Some(LimitKind::Memory));
                return Some(Dynamic::from(STOP_TOKEN));
            }
        }
        if operations % CLOCK_CHECK_INTERVAL == 0 {
            if Instant::now() >= progress_state.deadline.get() {
                progress_state.stopped.set(Some(LimitKind::WallTime));
                return Some(Dynamic::from(STOP_TOKEN));
            }
            // With the clock, not at every operation (a `RefCell` borrow and an atomic
            // load, paid by every play, cancellable or not): `cancel` still reaches a
            // running script within a thousand operations, microseconds.
            if progress_state.is_cancelled() {
                progress_state.fail(ExecutorError::Cancelled);
                return Some(Dynamic::from(STOP_TOKEN));
            }
        }
        None
    });
}
