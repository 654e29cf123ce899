//! Host functions and the store through Redis: a worker loop started with `run_worker` and
//! a custom `ScriptEnvironment`, fed by a `RedisExecutor`, against a private
//! `redis-server` (needs `redis-server` on the PATH). The same guarantees as in the
//! embedded pool (`tests/host.rs`): errors and panics of host functions are `-32003`, and
//! the worker's one thread keeps serving.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use circle_executor::redis::{WorkerConfig, run_worker};
use circle_executor::rhai::{Engine, EvalAltResult, INT};
use circle_executor::{
    Executor, ExecutorError, HostContext, LimitKind, RedisExecutor, RedisExecutorConfig,
    ScriptContext, ScriptEnvironment, ScriptJob,
};
use support::{RedisServer, circle_key};
use tokio::sync::oneshot;

fn environment() -> ScriptEnvironment {
    ScriptEnvironment::new(|engine: &mut Engine, host: &HostContext| {
        let host = host.clone();
        engine.register_fn("whoami_host", move || -> String {
            host.current().caller_public_key.clone()
        });
        engine.register_fn("explode", || -> INT { panic!("host bug") });
        engine.register_fn("refuse", || -> Result<INT, Box<EvalAltResult>> {
            Err("refused by the host".into())
        });
    })
}

fn caller(byte: &str) -> String {
    format!("03{}", byte.repeat(32))
}

async fn play(
    executor: &RedisExecutor,
    circle: &str,
    caller: &str,
    script: &str,
) -> Result<String, ExecutorError> {
    let context = Arc::new(ScriptContext {
        circle_name: "garden".into(),
        circle_public_key: circle.into(),
        caller_public_key: caller.into(),
    });
    let job =
        ScriptJob::new(script, context).with_deadline(Instant::now() + Duration::from_secs(10));
    executor.execute(job).await.map(|out| out.output)
}

/// A worker loop with `environment`, one script thread, stopped when the sender drops.
fn worker(
    url: &str,
    circle: &str,
    name: &str,
    admin: &str,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let config = WorkerConfig {
        name: name.into(),
        concurrency: 1,
        admin_keys: vec![admin.to_owned()],
        ..WorkerConfig::new(url, circle)
    };
    let task = tokio::spawn(async move {
        run_worker(config, environment(), async move {
            let _ = stopped.await;
        })
        .await
        .expect("worker runs");
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_functions_and_their_failures_through_a_custom_worker() {
    let redis = RedisServer::start();
    let circle = circle_key(7);
    let (_stop, _task) = worker(&redis.url(), &circle, "custom-1", &caller("ad"));
    let executor =
        RedisExecutor::new(RedisExecutorConfig::new(redis.url(), circle.clone())).unwrap();
    let alice = caller("a1");

    assert_eq!(
        play(&executor, &circle, &alice, "whoami_host()")
            .await
            .unwrap(),
        alice
    );
    let err = play(&executor, &circle, &alice, "refuse()")
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Script(_)), "{err:?}");
    assert!(err.to_string().contains("refused by the host"), "{err}");
    for _ in 0..3 {
        let err = play(&executor, &circle, &alice, "explode()")
            .await
            .unwrap_err();
        assert!(matches!(err, ExecutorError::Script(_)), "{err:?}");
        assert_eq!(err.code(), -32003);
    }
    // The worker's only thread survived the panics, host functions and all.
    assert_eq!(
        play(&executor, &circle, &alice, "whoami_host()")
            .await
            .unwrap(),
        alice
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_through_redis_is_seen_by_every_worker() {
    let redis = RedisServer::start();
    let circle = circle_key(8);
    let admin = caller("ad");
    let (stop_one, task_one) = worker(&redis.url(), &circle, "store-1", &admin);
    let executor =
        RedisExecutor::new(RedisExecutorConfig::new(redis.url(), circle.clone())).unwrap();
    let (alice, bob) = (caller("a1"), caller("b0"));

    play(&executor, &circle, &alice, r#"store::set("note", #{n: 1})"#)
        .await
        .unwrap();
    play(&executor, &circle, &admin, r#"circle::set("motd", "hi")"#)
        .await
        .unwrap();
    let err = play(&executor, &circle, &bob, r#"circle::set("motd", "mine")"#)
        .await
        .unwrap_err();
    assert_eq!(err.code(), -32003, "{err:?}");
    let err = play(
        &executor,
        &circle,
        &alice,
        r#"store::set("note", 2); throw "no""#,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), -32003, "{err:?}");
    let long_key = "k".repeat(300);
    let err = play(
        &executor,
        &circle,
        &alice,
        &format!(r#"store::set("{long_key}", 1)"#),
    )
    .await
    .unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::StoreKeySize), "{err:?}");

    // The first worker goes; another one, started afterwards, sees the same data.
    drop(stop_one);
    task_one.await.unwrap();
    let (_stop_two, _task_two) = worker(&redis.url(), &circle, "store-2", &admin);
    assert_eq!(
        play(&executor, &circle, &alice, r#"store::get("note").n"#)
            .await
            .unwrap(),
        "1"
    );
    assert_eq!(
        play(&executor, &circle, &bob, r#"store::get("note")"#)
            .await
            .unwrap(),
        ""
    );
    assert_eq!(
        play(&executor, &circle, &bob, r#"circle::get("motd")"#)
            .await
            .unwrap(),
        "hi"
    );
    let err = play(&executor, &circle, "", r#"store::get("note")"#)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("signed-in caller"), "{err}");
}
