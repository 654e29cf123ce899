//! Short scripts run on the calling thread (`Executor::run_inline`): what
//! finishes within the budget is answered there; what does not, or reaches
//! for the store, is handed on with nothing of it kept, and runs once,
//! completely, on a script thread.

use std::sync::Arc;

use circle_executor::store::Store;
use circle_executor::{
    EmbeddedConfig, EmbeddedExecutor, Executor, ExecutorError, Inline, ScriptContext,
    ScriptEnvironment, ScriptJob,
};

fn caller_context() -> Arc<ScriptContext> {
    Arc::new(ScriptContext {
        circle_name: "garden".into(),
        circle_public_key: format!("02{}", "cc".repeat(32)),
        caller_public_key: format!("02{}", "a1".repeat(32)),
    })
}

fn executor(inline_operations: u64, store: Option<Store>) -> EmbeddedExecutor {
    EmbeddedExecutor::new(EmbeddedConfig {
        threads: 1,
        inline_operations,
        store,
        ..EmbeddedConfig::default()
    })
    .expect("pool starts")
}

/// Runs `script` inline until it is answered there (a run may be handed on
/// just because this thread was preempted past the 100 µs an inline run
/// gets, which a loaded test machine does now and then).
fn answered_inline(executor: &EmbeddedExecutor, script: &str) -> Result<String, ExecutorError> {
    for _ in 0..50 {
        if let Inline::Done(result) = executor.run_inline(&ScriptJob::new(script, caller_context()))
        {
            return result.map(|out| out.output);
        }
    }
    panic!("{script} was never answered inline");
}

/// What a server does with a play: inline first, else the script threads.
async fn play(executor: &EmbeddedExecutor, script: &str) -> (bool, Result<String, ExecutorError>) {
    let job = ScriptJob::new(script, caller_context());
    match executor.run_inline(&job) {
        Inline::Done(result) => (true, result.map(|out| out.output)),
        Inline::HandedOff | Inline::NotHere => {
            (false, executor.execute(job).await.map(|out| out.output))
        }
    }
}

#[tokio::test]
async fn a_short_script_is_answered_inline() {
    let executor = executor(1_000, None);
    let result = answered_inline(&executor, r#"print("hi " + CIRCLE_NAME); 40 + 2"#);
    assert_eq!(result.unwrap(), "hi garden\n42");
    // Its errors are answers too, exactly as a script thread gives them.
    let inline_error = answered_inline(&executor, "undefined_variable + 1").unwrap_err();
    let threaded = executor
        .execute(ScriptJob::new("undefined_variable + 1", caller_context()))
        .await
        .unwrap_err();
    assert_eq!(inline_error.to_string(), threaded.to_string());
}

#[tokio::test]
async fn a_script_over_the_budget_runs_once_on_a_script_thread() {
    let executor = executor(1_000, None);
    // Prints before it runs out of the inline budget: the line must appear
    // once, from the script thread's complete run.
    let script = r#"print("start"); let x = 0; for i in 0..5000 { x += i; } x"#;
    let (inline, result) = play(&executor, script).await;
    assert!(!inline, "5,000 iterations are over 1,000 operations");
    assert_eq!(result.unwrap(), "start\n12497500");
}

#[tokio::test]
async fn the_store_is_never_touched_inline() {
    let store = Store::in_memory();
    let executor = executor(1_000, Some(store));
    // Reads first, then writes: run twice, a counter would say 2.
    let script = r#"let n = store::get("n") ?? 0; store::set("n", n + 1); n + 1"#;
    let (inline, result) = play(&executor, script).await;
    assert!(!inline);
    assert_eq!(result.unwrap(), "1");
    let (_, result) = play(&executor, r#"store::get("n")"#).await;
    assert_eq!(result.unwrap(), "1", "written exactly once");
}

#[tokio::test]
async fn no_inline_runs_when_switched_off_or_with_host_functions() {
    let off = executor(0, None);
    assert!(matches!(
        off.run_inline(&ScriptJob::new("1", caller_context())),
        Inline::NotHere
    ));
    let hosted = EmbeddedExecutor::new(EmbeddedConfig {
        threads: 1,
        environment: ScriptEnvironment::new(|engine, _host| {
            engine.register_fn("double", |x: i64| x * 2);
        }),
        ..EmbeddedConfig::default()
    })
    .expect("pool starts");
    assert!(matches!(
        hosted.run_inline(&ScriptJob::new("double(21)", caller_context())),
        Inline::NotHere
    ));
    assert_eq!(
        hosted
            .execute(ScriptJob::new("double(21)", caller_context()))
            .await
            .unwrap()
            .output,
        "42"
    );
}

#[tokio::test]
async fn a_sandbox_is_clean_after_a_handed_off_run() {
    let executor = executor(1_000, None);
    let long = r#"let x = 0; for i in 0..5000 { x += i; print(i); } x"#;
    assert!(matches!(
        executor.run_inline(&ScriptJob::new(long, caller_context())),
        Inline::HandedOff
    ));
    // The next inline run on this thread starts from nothing: no line, no
    // stopped state left over from the abandoned one.
    assert_eq!(answered_inline(&executor, "40 + 2").unwrap(), "42");
}
