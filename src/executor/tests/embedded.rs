//! The embedded pool with real threads and real rhai.

use std::sync::Arc;
use std::time::{Duration, Instant};

use circle_executor::{
    EmbeddedConfig, EmbeddedExecutor, Executor, ExecutorError, LimitKind, ScriptContext, ScriptJob,
    ScriptLimits,
};

fn job(script: &str) -> ScriptJob {
    ScriptJob::new(script, Arc::new(ScriptContext::default()))
}

/// A pool whose scripts are stopped by wall time only (so `loop {}` keeps a worker busy
/// for exactly that long).
fn pool(threads: usize, queue_capacity: usize, wall_time: Duration) -> EmbeddedExecutor {
    EmbeddedExecutor::new(EmbeddedConfig {
        threads,
        queue_capacity,
        limits: ScriptLimits {
            max_operations: u64::MAX,
            max_run_time: wall_time,
            ..ScriptLimits::default()
        },
        ast_cache_entries: 8,
        ..EmbeddedConfig::default()
    })
    .expect("start pool")
}

/// Waits (polling, with a deadline) until the workers have taken every queued job.
async fn wait_until_taken(executor: &EmbeddedExecutor) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while executor.queue_depth() > 0 {
        assert!(
            Instant::now() < give_up,
            "workers never took the queued jobs"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn runs_scripts_with_context() {
    let executor = EmbeddedExecutor::new(EmbeddedConfig {
        threads: 2,
        ..EmbeddedConfig::default()
    })
    .unwrap();
    assert_eq!(executor.threads(), 2);
    let context = Arc::new(ScriptContext {
        circle_name: "garden".into(),
        circle_public_key: "02ab".into(),
        caller_public_key: "03cd".into(),
    });
    let out = executor
        .execute(ScriptJob::new(
            r#"print(CIRCLE_NAME); print(CIRCLE_PUBLIC_KEY); print(CALLER_PUBLIC_KEY); 40 + 2"#,
            context,
        ))
        .await
        .unwrap();
    assert_eq!(out.output, "garden\n02ab\n03cd\n42");

    let err = executor.execute(job("let x = ;")).await.unwrap_err();
    assert_eq!(err.code(), -32003, "{err:?}");
}

#[tokio::test]
async fn many_jobs_from_many_tasks_are_all_answered() {
    let executor = Arc::new(pool(2, 256, Duration::from_secs(5)));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let executor = Arc::clone(&executor);
        tasks.push(tokio::spawn(async move {
            executor.execute(job(&format!("{i} * 2"))).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap().output, (i * 2).to_string());
    }
}

#[tokio::test]
async fn a_runaway_script_does_not_block_the_other_worker() {
    let executor = pool(2, 8, Duration::from_secs(3));
    let runaway = tokio::spawn(executor.execute(job("loop {}")));
    wait_until_taken(&executor).await;

    let quick = tokio::time::timeout(Duration::from_secs(2), executor.execute(job("1 + 1")))
        .await
        .expect("the free worker should answer while the other one spins");
    assert_eq!(quick.unwrap().output, "2");
    assert!(
        !runaway.is_finished(),
        "the runaway script should still be running"
    );
    runaway.abort();
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once() {
    let executor = pool(1, 1, Duration::from_millis(1000));
    // The only worker spins; the one queue slot is then taken.
    let running = tokio::spawn(executor.execute(job("loop {}")));
    wait_until_taken(&executor).await;
    let queued = tokio::spawn(executor.execute(job("1")));
    assert_eq!(executor.queue_depth(), 1);

    let refused = tokio::time::timeout(Duration::from_millis(500), executor.execute(job("2")))
        .await
        .expect("a full queue must be answered at once, not waited on");
    let err = refused.unwrap_err();
    assert!(matches!(err, ExecutorError::Overloaded(_)), "{err:?}");
    assert_eq!(err.code(), -32029);
    assert!(!running.is_finished(), "refusal must not wait for a worker");
    // The refused job was not queued.
    assert_eq!(executor.queue_depth(), 1);

    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::WallTime), "{err:?}");
    assert_eq!(queued.await.unwrap().unwrap().output, "1");
}

#[tokio::test]
async fn an_expired_deadline_is_not_run() {
    let executor = pool(1, 4, Duration::from_millis(500));

    // Already expired when submitted.
    let err = executor
        .execute(job("1").with_deadline(Instant::now()))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::DeadlineExceeded), "{err:?}");
    assert_eq!(err.code(), -32004);

    // Expires while waiting behind a slow script: the worker skips it.
    let slow = tokio::spawn(executor.execute(job("loop {}")));
    wait_until_taken(&executor).await;
    let waiting = executor.execute(
        job(r#"print("should not run")"#).with_deadline(Instant::now() + Duration::from_millis(50)),
    );
    let err = waiting.await.unwrap_err();
    assert!(matches!(err, ExecutorError::DeadlineExceeded), "{err:?}");
    assert!(slow.await.unwrap().is_err());

    // A deadline in the future is fine.
    let ok = executor
        .execute(job("7").with_deadline(Instant::now() + Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(ok.output, "7");
}

#[tokio::test]
async fn limits_apply_in_the_pool() {
    let executor = EmbeddedExecutor::new(EmbeddedConfig {
        threads: 1,
        limits: ScriptLimits {
            max_operations: 10_000,
            ..ScriptLimits::default()
        },
        ..EmbeddedConfig::default()
    })
    .unwrap();
    let err = executor.execute(job("loop {}")).await.unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::Operations), "{err:?}");
    // The worker is still there afterwards.
    assert_eq!(executor.execute(job("\"ok\"")).await.unwrap().output, "ok");
}

#[tokio::test]
async fn shutdown_waits_for_the_workers() {
    let executor = pool(2, 8, Duration::from_secs(5));
    assert_eq!(executor.execute(job("1")).await.unwrap().output, "1");
    assert_eq!(executor.live_threads(), 2);
    tokio::task::spawn_blocking(move || executor.shutdown())
        .await
        .unwrap();
}
