//! The store's semantics (docs/STORE.md), the same against each backend: the embedded
//! `redb` file and a real, private `redis-server` (see `support`; needs `redis-server` on
//! the PATH). Scripts run in real embedded executors; two executors on one Redis play two
//! workers.

mod support;

use std::path::Path;
use std::sync::Arc;

use circle_executor::store::{Store, StoreLimits};
use circle_executor::{
    EmbeddedConfig, EmbeddedExecutor, Executor, ExecutorError, LimitKind, ScriptContext, ScriptJob,
    ScriptOutput,
};
use support::RedisServer;

fn key(byte: &str) -> String {
    format!("02{}", byte.repeat(32))
}

fn alice() -> String {
    key("a1")
}
fn bob() -> String {
    key("b0")
}
fn admin() -> String {
    key("ad")
}

fn limits() -> StoreLimits {
    StoreLimits {
        max_key_bytes: 16,
        max_value_bytes: 64,
        max_keys_per_caller: 5,
        max_circle_bytes: 400,
    }
}

fn executor(store: &Store, threads: usize) -> EmbeddedExecutor {
    EmbeddedExecutor::new(EmbeddedConfig {
        threads,
        store: Some(store.clone()),
        ..EmbeddedConfig::default()
    })
    .expect("pool starts")
}

async fn play(
    executor: &EmbeddedExecutor,
    caller: &str,
    script: &str,
) -> Result<ScriptOutput, ExecutorError> {
    let context = Arc::new(ScriptContext {
        circle_name: "garden".into(),
        circle_public_key: key("cc"),
        caller_public_key: caller.into(),
    });
    executor.execute(ScriptJob::new(script, context)).await
}

async fn ok(executor: &EmbeddedExecutor, caller: &str, script: &str) -> String {
    match play(executor, caller, script).await {
        Ok(out) => out.output,
        Err(err) => panic!("{script}: {err:?}"),
    }
}

fn file_store(path: &Path) -> Store {
    Store::open_file(path)
        .unwrap()
        .with_admin_keys([admin()])
        .unwrap()
        .with_limits(limits())
}

fn redis_store(redis: &RedisServer) -> Store {
    Store::redis(&redis.url(), &key("cc"))
        .unwrap()
        .with_admin_keys([admin()])
        .unwrap()
        .with_limits(limits())
}

/// Everything but durability, on one backend; `other` is a second executor on the same
/// store (another thread pool, or for Redis another "worker").
async fn semantics(one: &EmbeddedExecutor, other: &EmbeddedExecutor) {
    let (alice, bob, admin) = (alice(), bob(), admin());

    // JSON values round-trip; reads see the play's own writes before the commit.
    let out = ok(
        one,
        &alice,
        r#"store::set("profile", #{name: "alice", tags: ["x", 1, 2.5, true, ()]});
           store::get("profile").name"#,
    )
    .await;
    assert_eq!(out, "alice");
    let out = ok(other, &alice, r#"store::get("profile").tags"#).await;
    assert_eq!(out, r#"["x", 1, 2.5, true, ()]"#);

    // Private: bob does not see alice's key, and his own namespace is separate.
    assert_eq!(ok(other, &bob, r#"store::get("profile")"#).await, "");
    ok(other, &bob, r#"store::set("profile", "bob's")"#).await;
    assert_eq!(
        ok(one, &alice, r#"store::get("profile").name"#).await,
        "alice"
    );
    assert_eq!(ok(one, &bob, r#"store::get("profile")"#).await, "bob's");

    // keys(prefix), merged with the play's own writes and removals.
    ok(
        one,
        &alice,
        r#"store::set("a/1", 1); store::set("a/2", 2); store::set("b", 3)"#,
    )
    .await;
    let out = ok(
        one,
        &alice,
        r#"store::remove("a/1"); store::set("a/3", 3); store::keys("a/")"#,
    )
    .await;
    assert_eq!(out, r#"["a/2", "a/3"]"#);
    assert_eq!(
        ok(other, &alice, r#"store::keys("a/")"#).await,
        r#"["a/2", "a/3"]"#
    );
    assert_eq!(ok(other, &alice, r#"store::get("a/1")"#).await, "");

    // Atomic per play: a script that writes then throws leaves nothing.
    let err = play(
        one,
        &alice,
        r#"store::set("b", 99); store::set("new", 1); throw "no""#,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), -32003, "{err:?}");
    assert_eq!(ok(other, &alice, r#"store::get("b")"#).await, "3");
    assert_eq!(ok(other, &alice, r#"store::get("new")"#).await, "");
    // The thread that ran it kept nothing of it either (each pool has one thread).
    assert_eq!(ok(one, &alice, r#"store::get("new")"#).await, "");
    // Nor one stopped by a limit.
    let err = play(one, &alice, r#"store::set("b", 98); loop {}"#)
        .await
        .unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::Operations), "{err:?}");
    assert_eq!(ok(other, &alice, r#"store::get("b")"#).await, "3");

    // The circle namespace: everyone reads, admin keys alone write.
    let err = play(one, &alice, r#"circle::set("motd", "hi")"#)
        .await
        .unwrap_err();
    assert_eq!(err.code(), -32003, "{err:?}");
    assert!(err.to_string().contains("admin keys only"), "{err}");
    ok(one, &admin, r#"circle::set("motd", "welcome")"#).await;
    assert_eq!(ok(other, &bob, r#"circle::get("motd")"#).await, "welcome");
    assert_eq!(ok(other, &bob, r#"circle::keys()"#).await, r#"["motd"]"#);
    let err = play(one, &bob, r#"circle::remove("motd")"#)
        .await
        .unwrap_err();
    assert_eq!(err.code(), -32003, "{err:?}");
    // The admin's own namespace is still private (not the circle's).
    assert_eq!(ok(other, &admin, r#"store::get("motd")"#).await, "");

    // Not signed in: a clear error, not an empty store.
    for script in [r#"store::get("profile")"#, r#"circle::get("motd")"#] {
        let err = play(one, "", script).await.unwrap_err();
        assert_eq!(err.code(), -32003, "{err:?}");
        assert!(err.to_string().contains("signed-in caller"), "{err}");
    }

    // Values JSON cannot hold are refused by name.
    let err = play(one, &alice, r#"store::set("f", || 1)"#)
        .await
        .unwrap_err();
    assert_eq!(err.code(), -32003, "{err:?}");
    assert!(err.to_string().contains("cannot be stored"), "{err}");

    limits_are_refused(one, other).await;
}

/// Each limit: `-32004` naming it, nothing written, not catchable.
async fn limits_are_refused(one: &EmbeddedExecutor, other: &EmbeddedExecutor) {
    let (bob, admin) = (bob(), admin());
    let cases = [
        (
            r#"store::set("x", 1); store::set("a-key-longer-than-16", 1)"#,
            LimitKind::StoreKeySize,
            "store key size limit (16 bytes)",
        ),
        (
            r#"store::set("x", 1); let v = "0123456789"; v.pad(70, "-"); store::set("v", v)"#,
            LimitKind::StoreValueSize,
            "store value size limit (64 bytes)",
        ),
        (
            // bob holds "profile" already: five more make six.
            r#"for i in 0..5 { store::set(`k${i}`, i) }"#,
            LimitKind::StoreKeys,
            "store keys per caller limit (5 keys)",
        ),
    ];
    for (script, kind, named) in cases {
        let err = play(one, &bob, script).await.unwrap_err();
        assert_eq!(err.code(), -32004, "{script}: {err:?}");
        assert_eq!(err.limit_kind(), Some(kind), "{err:?}");
        assert!(err.to_string().contains(named), "{err}");
        assert_eq!(ok(other, &bob, r#"store::get("x")"#).await, "", "{script}");
        assert_eq!(ok(other, &bob, r#"store::get("k0")"#).await, "", "{script}");
    }
    // try/catch cannot swallow a refusal and answer as if it had been written.
    let err = play(
        one,
        &bob,
        r#"try { store::set("a-key-longer-than-16", 1) } catch (e) { print("caught") } 1"#,
    )
    .await
    .unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::StoreKeySize), "{err:?}");

    // Bytes per circle (400): the admin fills the circle namespace up to the limit.
    let value = "x".repeat(50);
    let mut refused = None;
    for i in 0..10 {
        match play(
            one,
            &admin,
            &format!(r#"circle::set("fill{i}", "{value}")"#),
        )
        .await
        {
            Ok(_) => {}
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let err = refused.expect("the circle's bytes limit refused a write");
    assert_eq!(err.limit_kind(), Some(LimitKind::StoreBytes), "{err:?}");
    assert!(
        err.to_string()
            .contains("store size limit (400 bytes per circle)"),
        "{err}"
    );
    // Removing makes room again.
    ok(
        one,
        &admin,
        r#"circle::remove("fill0"); circle::remove("fill1")"#,
    )
    .await;
    ok(one, &admin, r#"circle::set("after", 1)"#).await;
}

/// Concurrent plays writing one key: each play's writes land together, and the key ends
/// with the value of the last commit, which is one of the plays' (never a mix).
async fn concurrent_writers(one: &EmbeddedExecutor, other: &EmbeddedExecutor) {
    let carol = key("c3");
    let context = Arc::new(ScriptContext {
        caller_public_key: carol.clone(),
        ..ScriptContext::default()
    });
    // `execute` queues each job when called: all 64 are in the two pools at once.
    let answers: Vec<_> = (0..64)
        .map(|i| {
            let executor = if i % 2 == 0 { one } else { other };
            let script = format!(
                r#"store::set("k", #{{a: {i}, b: {i}}}); store::set("k2", {i}); store::get("k").a"#
            );
            executor.execute(ScriptJob::new(script, Arc::clone(&context)))
        })
        .collect();
    for (i, answer) in answers.into_iter().enumerate() {
        // Each play read its own write back, whatever the others did meanwhile.
        assert_eq!(answer.await.unwrap().output, i.to_string());
    }
    let out = ok(
        one,
        &carol,
        r#"let k = store::get("k"); `${k.a} ${k.b} ${store::get("k2")}`"#,
    )
    .await;
    let parts: Vec<&str> = out.split(' ').collect();
    assert_eq!(parts[0], parts[1], "one play's map, never a mix: {out}");
    // k and k2 were written by the same (last) commit.
    assert_eq!(parts[0], parts[2], "both keys from the last commit: {out}");
    // A play that starts after another was answered sees its write.
    ok(one, &carol, r#"store::set("k", "last")"#).await;
    assert_eq!(ok(other, &carol, r#"store::get("k")"#).await, "last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("store.redb");
    {
        let store = file_store(&path);
        let one = executor(&store, 1);
        let other = executor(&store, 1);
        semantics(&one, &other).await;
        concurrent_writers(&one, &other).await;
        ok(&one, &alice(), r#"store::set("kept", [1, 2])"#).await;
        one.shutdown_blocking().await;
        other.shutdown_blocking().await;
    }
    // Reopened (a restart): what was committed is there.
    let store = file_store(&path);
    let one = executor(&store, 1);
    assert_eq!(ok(&one, &alice(), r#"store::get("kept")"#).await, "[1, 2]");
    assert_eq!(ok(&one, &bob(), r#"circle::get("motd")"#).await, "welcome");
    // Private folder.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the data folder is the owner's only: {mode:o}"
        );
    }
}

#[tokio::test]
async fn one_store_file_is_shared_in_a_process_and_bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    // Within one process, a second open shares the open file (a restart while the old
    // server's threads wind down); another process is refused by redb's lock (the
    // server's tests start a second circle-server on the same folder).
    let first = executor(&Store::open_file(&path).unwrap(), 1);
    let second = executor(&Store::open_file(&path).unwrap(), 1);
    ok(&first, &alice(), r#"store::set("shared", 1)"#).await;
    assert_eq!(ok(&second, &alice(), r#"store::get("shared")"#).await, "1");
    let err = Store::open_file(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    let err = Store::in_memory()
        .with_admin_keys(["0xnot-a-key"])
        .unwrap_err();
    assert!(err.to_string().contains("0xnot-a-key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_shared_by_two_workers() {
    let redis = RedisServer::start();
    let one = executor(&redis_store(&redis), 1);
    let other = executor(&redis_store(&redis), 1);
    semantics(&one, &other).await;
    concurrent_writers(&one, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_unavailable_and_recovers() {
    let mut redis = RedisServer::start();
    let one = executor(&redis_store(&redis), 1);
    ok(&one, &alice(), r#"store::set("k", 1)"#).await;
    redis.stop();
    let err = play(&one, &alice(), r#"store::set("k", 2)"#)
        .await
        .unwrap_err();
    assert_eq!(err.code(), -32005, "{err:?}");
    let err = play(&one, &alice(), r#"store::get("k")"#)
        .await
        .unwrap_err();
    assert_eq!(err.code(), -32005, "{err:?}");
    redis.restart();
    // A fresh Redis without persistence: empty, and usable at once (a new connection).
    ok(&one, &alice(), r#"store::set("k", 3)"#).await;
    assert_eq!(ok(&one, &alice(), r#"store::get("k")"#).await, "3");
}

/// Shutting down blocks; off the async threads.
trait ShutdownBlocking {
    async fn shutdown_blocking(self);
}

impl ShutdownBlocking for EmbeddedExecutor {
    async fn shutdown_blocking(self) {
        tokio::task::spawn_blocking(move || self.shutdown())
            .await
            .unwrap();
    }
}
