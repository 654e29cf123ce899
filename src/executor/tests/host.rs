//! Host functions (`ScriptEnvironment`) in the embedded executor: they see who calls them,
//! their errors and panics reach the script as `-32003`, and a panic never costs a thread.
//! The Redis side (a custom worker built with `run_worker`) is in `tests/redis_host.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use circle_executor::rhai::{Engine, EvalAltResult, INT};
use circle_executor::{
    EmbeddedConfig, EmbeddedExecutor, Executor, ExecutorError, HostContext, LimitKind,
    ScriptContext, ScriptEnvironment, ScriptJob, ScriptLimits,
};

/// `balance()`: the caller's balance in a toy ledger (alice 100, anyone else 0; an error
/// when not signed in); `explode()` panics; `refuse()` returns an error. `builds` counts
/// the engines the hook set up.
fn environment(builds: Arc<AtomicUsize>) -> ScriptEnvironment {
    ScriptEnvironment::new(move |engine: &mut Engine, host: &HostContext| {
        builds.fetch_add(1, Ordering::SeqCst);
        let host = host.clone();
        engine.register_fn("balance", move || -> Result<INT, Box<EvalAltResult>> {
            let context = host.current();
            match context.caller_public_key.as_str() {
                "" => Err("balance: sign in first".into()),
                "alice" => Ok(100),
                _ => Ok(0),
            }
        });
        engine.register_fn("explode", || -> INT { panic!("host bug") });
        engine.register_fn("refuse", || -> Result<INT, Box<EvalAltResult>> {
            Err("refused by the host".into())
        });
        // A hook cannot lift the sandbox's limits: the lockdown comes after it.
        engine.set_max_operations(0);
    })
}

fn pool(environment: ScriptEnvironment, threads: usize) -> EmbeddedExecutor {
    EmbeddedExecutor::new(EmbeddedConfig {
        threads,
        limits: ScriptLimits {
            max_operations: 100_000,
            ..ScriptLimits::default()
        },
        environment,
        ..EmbeddedConfig::default()
    })
    .expect("pool starts")
}

fn job(script: &str, caller: &str) -> ScriptJob {
    ScriptJob::new(
        script,
        Arc::new(ScriptContext {
            circle_name: "garden".into(),
            circle_public_key: "02ab".into(),
            caller_public_key: caller.into(),
        }),
    )
}

#[tokio::test]
async fn host_functions_see_the_caller_of_each_run() {
    let executor = pool(environment(Arc::default()), 1);
    let out = executor.execute(job("balance()", "alice")).await.unwrap();
    assert_eq!(out.output, "100");
    // The same thread and engine, another caller: the function sees the new one.
    let out = executor.execute(job("balance()", "bob")).await.unwrap();
    assert_eq!(out.output, "0");
    let err = executor.execute(job("balance()", "")).await.unwrap_err();
    assert_eq!(err.code(), -32003, "{err:?}");
    assert!(err.to_string().contains("sign in first"), "{err}");
}

#[tokio::test]
async fn a_host_error_is_a_script_error_the_script_can_catch() {
    let executor = pool(environment(Arc::default()), 1);
    let err = executor
        .execute(job("refuse()", "alice"))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Script(_)), "{err:?}");
    assert!(err.to_string().contains("refused by the host"), "{err}");
    let out = executor
        .execute(job(
            r#"let r = ""; try { refuse(); } catch (e) { r = "caught"; } r"#,
            "alice",
        ))
        .await
        .unwrap();
    assert_eq!(out.output, "caught");
}

#[tokio::test]
async fn a_panicking_host_function_gives_32003_and_the_thread_keeps_serving() {
    let builds = Arc::new(AtomicUsize::new(0));
    let executor = pool(environment(Arc::clone(&builds)), 2);
    for _ in 0..4 {
        let err = executor
            .execute(job("print(1); explode()", "alice"))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecutorError::Script(_)), "{err:?}");
        assert_eq!(err.code(), -32003);
        assert!(err.to_string().contains("host function failed"), "{err}");
        // Not the panic's own text: that is the host's business, and it is logged.
        assert!(!err.to_string().contains("host bug"), "{err}");
    }
    // Both threads still run, with their host functions (engines rebuilt after a panic).
    assert_eq!(executor.live_threads(), 2);
    for _ in 0..4 {
        let out = executor.execute(job("balance()", "alice")).await.unwrap();
        assert_eq!(out.output, "100");
    }
    assert!(
        builds.load(Ordering::SeqCst) >= 2 + 4,
        "engines rebuilt after each panic"
    );
}

#[tokio::test]
async fn the_hook_cannot_lift_a_limit() {
    let executor = pool(environment(Arc::default()), 1);
    let err = executor.execute(job("loop {}", "alice")).await.unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::Operations), "{err:?}");
}

#[tokio::test]
async fn the_stock_environment_has_no_host_functions() {
    let executor = pool(ScriptEnvironment::stock(), 1);
    let err = executor
        .execute(job("balance()", "alice"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), -32003);
    assert!(err.to_string().contains("balance"), "{err}");
}
