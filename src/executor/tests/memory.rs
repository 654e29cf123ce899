//! The memory limit with the real counting allocator installed, as circle-server and
//! circle-worker install it: the scripts of SECURITY.md's former "known gap" (containers
//! grown by indexed assignment) are stopped near the limit, and nothing else changes.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use circle_executor::memory::{self, CountingAllocator};
use circle_executor::sandbox::{MIN_STACK_BYTES, Sandbox};
use circle_executor::{
    EmbeddedConfig, EmbeddedExecutor, Executor, ExecutorError, LimitKind, ScriptContext, ScriptJob,
    ScriptLimits, ScriptOutput,
};

/// `CountingAllocator`, unchanged, plus a record of each thread's highest live-byte count.
///
/// The sandbox only looks at the counter between operations; to prove how far a script
/// really got, the test must see every allocation, so this forwards each call to the
/// counting allocator and then notes the peak. The sandbox reads the very counter the
/// binaries' `CountingAllocator` keeps.
struct PeakRecording;

static COUNTING: CountingAllocator = CountingAllocator::new();

thread_local! {
    /// The highest `memory::thread_live_bytes()` this thread reached since the
    /// test reset it. Const-initialised and destructor-free, like the counter itself.
    static PEAK: Cell<isize> = const { Cell::new(isize::MIN) };
}

fn note_peak() {
    let live = memory::thread_live_bytes();
    let _ = PEAK.try_with(|peak| {
        if live > peak.get() {
            peak.set(live);
        }
    });
}

// SAFETY: every call is forwarded unchanged to `CountingAllocator` (itself the system
// allocator plus bookkeeping); `note_peak` only touches a destructor-free thread-local
// `Cell`, so it neither allocates nor panics.
unsafe impl GlobalAlloc for PeakRecording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller's contract is the one `CountingAllocator::alloc` needs.
        let ptr = unsafe { COUNTING.alloc(layout) };
        note_peak();
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { COUNTING.alloc_zeroed(layout) };
        note_peak();
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `COUNTING`, with `layout`.
        unsafe { COUNTING.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `COUNTING` with `layout`; `new_size` is as our caller
        // guarantees.
        let ptr = unsafe { COUNTING.realloc(ptr, layout, new_size) };
        note_peak();
        ptr
    }
}

#[global_allocator]
static ALLOCATOR: PeakRecording = PeakRecording;

const MIB: usize = 1024 * 1024;

/// Scripts here are stopped by memory or not at all: no operation limit, and a wall time
/// far beyond what any of them needs, so a wrong answer cannot hide behind another limit.
fn memory_limits(max_memory_bytes: usize) -> ScriptLimits {
    ScriptLimits {
        max_operations: u64::MAX,
        max_run_time: Duration::from_secs(120),
        max_memory_bytes,
        ..ScriptLimits::default()
    }
}

// The scripts below end by themselves at about 200 MB (should the limit ever fail,
// a test fails instead of exhausting a shared machine); every limit used here is far
// below that.

/// A map grown by indexed assignment past `max_map_size` (rhai checks it only when a map
/// is built): it grew to about 65 MB before the memory limit existed, bounded only by
/// the operation limit.
const MAP_GROWTH: &str = r#"
    let s = "";
    s.pad(1000, "x");
    let m = #{};
    let i = 0;
    while i < 200000 {
        m["k" + i] = s + i;
        i += 1;
    }
"#;

/// An array sized within the limits and filled, by index, with distinct strings of about
/// 1 MB (within `max_string_size`): about 1.9 GB within the wall time before, with a
/// larger array.
const ARRAY_OF_BIG_STRINGS: &str = r#"
    let big = "";
    big.pad(1000000, "x");
    let a = [];
    a.pad(200, ());
    for i in 0..200 {
        a[i] = big + i;
    }
"#;

/// The same growth inside a function called in `try`, whose `catch` would ignore the
/// termination and carry on (rhai does not let it catch one; the sandbox does not rely on
/// that).
const CAUGHT_GROWTH: &str = r#"
    fn grow(big) {
        let a = [];
        a.pad(200, ());
        for i in 0..200 {
            a[i] = big + i;
        }
        a.len()
    }
    let big = "";
    big.pad(1000000, "x");
    try { grow(big); } catch (e) { }
    "survived"
"#;

/// The same growth inside a `sort` comparator: rhai's `sort` ignores every error of its
/// comparator, the termination included, so without the sandbox's sticky stop the script
/// would carry on (each comparison freeing what it grew) and end normally.
const SWALLOWED_GROWTH: &str = r#"
    let big = "";
    big.pad(1000000, "x");
    let xs = [5, 3, 1, 4, 2];
    xs.sort(|x, y| {
        let a = [];
        a.pad(200, ());
        for i in 0..200 {
            a[i] = big + i;
        }
        x - y
    });
    "survived"
"#;

/// What a run did to its thread's memory.
struct Measured {
    result: Result<ScriptOutput, ExecutorError>,
    /// Highest growth of the thread's live bytes during the run, over the level before it.
    peak_growth: isize,
    /// Live bytes left on the thread after the run, over the level before it.
    left_over: isize,
}

/// Runs `scripts` one after the other in one sandbox, on a thread with the stack the
/// sandbox needs, measuring each run.
fn run_all(limits: ScriptLimits, scripts: &[&str]) -> Vec<Measured> {
    let scripts: Vec<String> = scripts.iter().map(|s| (*s).to_owned()).collect();
    std::thread::Builder::new()
        .stack_size(MIN_STACK_BYTES)
        .spawn(move || {
            let mut sandbox = Sandbox::new(limits, 8);
            assert!(sandbox.enforces_memory_limit());
            let context = ScriptContext::default();
            scripts
                .iter()
                .map(|script| {
                    let before = memory::thread_live_bytes();
                    PEAK.with(|peak| peak.set(before));
                    let result = sandbox.run(script, &context);
                    let peak_growth = PEAK.with(Cell::get) - before;
                    let left_over = memory::thread_live_bytes() - before;
                    Measured {
                        result,
                        peak_growth,
                        left_over,
                    }
                })
                .collect()
        })
        .expect("spawn sandbox thread")
        .join()
        .expect("sandbox thread panicked")
}

/// Asserts a memory-limit error naming `limit`, and that the script's memory stayed
/// within twice the limit plus a few MiB (one operation's allocation, bounded by the
/// data-size limits, is the most it can overshoot by).
fn assert_stopped_near_limit(measured: &Measured, limit: usize) {
    match &measured.result {
        Err(err @ ExecutorError::Limit { .. }) => {
            assert_eq!(err.limit_kind(), Some(LimitKind::Memory), "{err:?}");
            assert_eq!(err.code(), -32004);
            let message = err.to_string();
            assert!(
                message.contains(&format!("memory limit ({limit} bytes)")),
                "{message:?}"
            );
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    let peak = usize::try_from(measured.peak_growth).unwrap_or(0);
    assert!(
        peak > limit,
        "the script was stopped before it reached the limit: peak {peak} bytes"
    );
    assert!(
        peak < 2 * limit + 4 * MIB,
        "the script held {peak} bytes under a {limit}-byte limit"
    );
    // Everything the stopped script built was freed on its thread.
    assert!(
        measured.left_over < 256 * 1024,
        "{} bytes left behind",
        measured.left_over
    );
}

#[test]
fn the_counting_allocator_is_detected() {
    assert!(memory::is_counting());
    assert!(Sandbox::new(ScriptLimits::default(), 1).enforces_memory_limit());
    // `usize::MAX` asks for no cap: nothing to check.
    assert!(!Sandbox::new(memory_limits(usize::MAX), 1).enforces_memory_limit());
}

#[test]
fn a_map_grown_by_index_is_stopped_near_the_limit() {
    let limit = 16 * MIB;
    let runs = run_all(memory_limits(limit), &[MAP_GROWTH]);
    assert_stopped_near_limit(&runs[0], limit);
}

#[test]
fn an_array_filled_with_big_strings_is_stopped_near_the_limit() {
    let limit = 16 * MIB;
    let runs = run_all(memory_limits(limit), &[ARRAY_OF_BIG_STRINGS]);
    assert_stopped_near_limit(&runs[0], limit);
}

#[test]
fn catching_the_termination_does_not_escape_the_limit() {
    let limit = 8 * MIB;
    let runs = run_all(memory_limits(limit), &[CAUGHT_GROWTH, SWALLOWED_GROWTH]);
    assert_stopped_near_limit(&runs[0], limit);
    assert_stopped_near_limit(&runs[1], limit);
}

#[test]
fn ordinary_scripts_are_unaffected_and_the_sandbox_keeps_working_after_a_stop() {
    const ORDINARY: &str = r#"
        let a = [];
        for i in 0..10000 { a.push("item " + i); }
        let m = #{};
        for i in 0..1000 { m["k" + i] = i * 2; }
        print(a.len());
        a[9999] + " " + m["k999"]
    "#;
    let limit = 16 * MIB;
    let runs = run_all(
        memory_limits(limit),
        &[
            ORDINARY,
            ARRAY_OF_BIG_STRINGS,
            "40 + 2",
            ORDINARY,
            MAP_GROWTH,
            ORDINARY,
        ],
    );
    for index in [0, 3, 5] {
        let run = &runs[index];
        match &run.result {
            Ok(out) => assert_eq!(out.output, "10000\nitem 9999 1998", "run {index}"),
            Err(err) => panic!("run {index} failed: {err:?}"),
        }
        assert!(run.peak_growth < 4 * MIB as isize, "run {index}");
    }
    assert_stopped_near_limit(&runs[1], limit);
    match &runs[2].result {
        Ok(out) => assert_eq!(out.output, "42"),
        Err(err) => panic!("40 + 2 after a stopped run failed: {err:?}"),
    }
    assert_stopped_near_limit(&runs[4], limit);
}

#[test]
fn zero_is_the_strictest_limit() {
    let runs = run_all(
        memory_limits(0),
        &[r#"let s = ""; s.pad(100000, "x"); s.len()"#],
    );
    let err = runs[0].result.as_ref().unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::Memory), "{err:?}");
}

#[test]
fn the_embedded_executor_enforces_the_default_limit() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let executor = EmbeddedExecutor::new(EmbeddedConfig {
            threads: 1,
            limits: ScriptLimits {
                max_operations: u64::MAX,
                max_run_time: Duration::from_secs(120),
                ..ScriptLimits::default()
            },
            ..EmbeddedConfig::default()
        })
        .expect("start pool");
        let context = Arc::new(ScriptContext::default());
        for script in [ARRAY_OF_BIG_STRINGS, MAP_GROWTH] {
            let err = executor
                .execute(ScriptJob::new(script, Arc::clone(&context)))
                .await
                .unwrap_err();
            assert_eq!(err.limit_kind(), Some(LimitKind::Memory), "{err:?}");
            assert_eq!(err.code(), -32004);
            assert!(
                err.to_string()
                    .starts_with("script exceeded the memory limit (67108864 bytes)"),
                "{err}"
            );
        }
        let out = executor
            .execute(ScriptJob::new("40 + 2", context))
            .await
            .expect("an ordinary script after two stopped ones");
        assert_eq!(out.output, "42");
    });
}

/// An array or map holding one 1 MB string a hundred times takes about 1 MB of memory
/// (strings are shared), but a hundred as text. Turning it into text is one operation, so
/// the memory limit cannot stop it midway: the text must stop at the string limit (or the
/// output limit for the final value, or a cut error message) instead of being built in
/// full first.
#[test]
fn containers_of_one_shared_string_are_not_turned_into_huge_texts() {
    const SHARED: &str = r#"
        let big = "";
        big.pad(1000000, "x");
        let a = [];
        a.pad(100, ());
        for i in 0..100 { a[i] = big; }
        let m = #{};
        for i in 0..100 { m["k" + i] = big; }
    "#;
    let tails = [
        (LimitKind::StringSize, "a.to_string().len()"),
        (LimitKind::StringSize, "print(a)"),
        (LimitKind::StringSize, "debug(m)"),
        (LimitKind::StringSize, r#""" + a"#),
        (LimitKind::StringSize, r#"m + """#),
        (LimitKind::StringSize, r#"let s = ""; s += a; s"#),
        (LimitKind::StringSize, "`${a}`.len()"),
        (LimitKind::StringSize, "m.to_json().len()"),
        (
            LimitKind::StringSize,
            "try { a.to_string() } catch { 0 }; 1",
        ),
        (LimitKind::OutputSize, "a"),
        (LimitKind::OutputSize, "m"),
    ];
    let mut scripts: Vec<String> = tails
        .iter()
        .map(|(_, tail)| format!("{SHARED}{tail}"))
        .collect();
    scripts.push(format!("{SHARED}throw a"));
    let scripts: Vec<&str> = scripts.iter().map(String::as_str).collect();
    let runs = run_all(memory_limits(16 * MIB), &scripts);
    for (run, (kind, tail)) in runs.iter().zip(tails) {
        match &run.result {
            Err(err) => assert_eq!(err.limit_kind(), Some(kind), "{tail}: {err}"),
            Ok(out) => panic!("{tail}: answered {} bytes", out.output.len()),
        }
        assert!(
            run.peak_growth < 8 * MIB as isize,
            "{tail}: {} bytes at the peak",
            run.peak_growth
        );
    }
    // The thrown value is part of the message, which is cut to the output limit.
    let thrown = runs.last().expect("the throw run");
    match &thrown.result {
        Err(err @ ExecutorError::Script(message)) => {
            assert_eq!(err.code(), -32003);
            assert!(
                message.starts_with(r#"Runtime error: ["xxx"#),
                "{message:.40}"
            );
            assert!(message.len() <= MIB + 16, "{} bytes", message.len());
            assert!(message.ends_with('…'));
        }
        other => panic!("throw: {other:?}"),
    }
    assert!(thrown.peak_growth < 8 * MIB as isize);
}

/// The process as a whole: before the limit, the array script alone reached about 1.9 GB.
#[cfg(target_os = "linux")]
#[test]
fn the_process_peak_stays_small() {
    let limit = 16 * MIB;
    let runs = run_all(memory_limits(limit), &[ARRAY_OF_BIG_STRINGS, MAP_GROWTH]);
    assert_stopped_near_limit(&runs[0], limit);
    assert_stopped_near_limit(&runs[1], limit);
    // Peak resident memory of this whole test process, all tests included (each is
    // capped; the embedded one at 64 MiB).
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let peak_kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    assert!(peak_kib < 512 * 1024, "peak resident memory {peak_kib} KiB");
}
