//! Circle servers in Redis mode (`redis_url`) with real `circle-worker` processes and a
//! real, private `redis-server` per test (`apt-get install redis-server`), over real WSS.
//!
//! The worker binary belongs to another package, so cargo does not build it for this test:
//! the first test that needs it runs `cargo build -p circle_executor --bin circle-worker`
//! (same profile and target directory) and takes the path cargo reports. Set
//! `CIRCLE_WORKER_BIN` to use a binary built elsewhere instead.

mod common;
#[path = "../../executor/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use circle_executor::redis::{CONSUMER_GROUP, jobs_stream_key, worker_jobs_key};
use circle_server::{ServerConfig, ServerLimits, spawn_circle_server};
use common::frames::{self, FOREVER, answers_to};
use common::{TestServer, Ws, call, connect_wss, error_code, recv, send, sign_in, tls_config};
use redis::AsyncCommands;
use serde_json::json;
use support::{RedisServer, WorkerProcess, redis_connection};

/// The circle every test serves: a real key, as circle-server requires.
fn circle_key() -> String {
    common::key(42).public_key().to_compressed_hex()
}

/// The `circle-worker` binary, built once per test run.
fn worker_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("CIRCLE_WORKER_BIN") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build
            .current_dir(common::repo_root())
            .args(["build", "-p", "circle_executor", "--bin", "circle-worker"])
            .args(["--message-format", "json-render-diagnostics"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let output = build
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(output.status.success(), "building circle-worker failed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["target"]["name"] == "circle-worker")
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the circle-worker executable")
    })
}

fn start_worker(redis: &RedisServer, name: &str) -> WorkerProcess {
    WorkerProcess::start(
        worker_binary(),
        &redis.url(),
        &circle_key(),
        name,
        &["--concurrency", "2", "--claim-idle-ms", "2000"],
    )
}

/// A TLS server of the test circle on `redis_url`, with a short script deadline so the
/// failure cases stay quick.
fn start_server(redis_url: &str, script_deadline: Duration) -> TestServer {
    TestServer::start(ServerConfig {
        redis_url: Some(redis_url.to_owned()),
        circle_public_key: circle_key(),
        limits: ServerLimits {
            script_deadline,
            ..ServerLimits::default()
        },
        ..tls_config()
    })
}

/// Waits until every worker in `names` has joined the circle's consumer group.
async fn wait_for_workers(url: &str, names: &[&str]) {
    let mut redis = redis_connection(url).await;
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let joined: Vec<String> = redis
            .xinfo_consumers::<_, _, redis::streams::StreamInfoConsumersReply>(
                jobs_stream_key(&circle_key()),
                CONSUMER_GROUP,
            )
            .await
            .map(|reply| reply.consumers.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        if names.iter().all(|name| joined.iter().any(|j| j == name)) {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "workers {names:?} never joined (joined: {joined:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn play(ws: &mut Ws, id: i64, script: &str) -> serde_json::Value {
    call(ws, id, "play", json!({ "script": script })).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_three_workers_answer_a_thousand_plays_over_wss() {
    const CONNECTIONS: usize = 10;
    const CALLS_PER_CONNECTION: usize = 100;
    // Pipelined in windows, as a polite client would.
    const WINDOW: usize = 25;

    let redis_server = RedisServer::start();
    let names = ["w1", "w2", "w3"];
    let _workers: Vec<_> = names
        .iter()
        .map(|name| start_worker(&redis_server, name))
        .collect();
    let servers = [
        start_server(&redis_server.url(), Duration::from_secs(30)),
        start_server(&redis_server.url(), Duration::from_secs(30)),
    ];
    wait_for_workers(&redis_server.url(), &names).await;

    let started = Instant::now();
    let mut clients = Vec::new();
    for connection in 0..CONNECTIONS {
        let addr = servers[connection % servers.len()].wss_addr();
        clients.push(tokio::spawn(async move {
            let mut ws = connect_wss(addr).await;
            let first = connection * CALLS_PER_CONNECTION;
            let mut correct = 0;
            for window in (first..first + CALLS_PER_CONNECTION)
                .collect::<Vec<_>>()
                .chunks(WINDOW)
            {
                for &n in window {
                    let script = format!(r#"print("call " + {n}); {n} * 2"#);
                    send(
                        &mut ws,
                        json!({"jsonrpc":"2.0","id":n,"method":"play","params":{"script":script}})
                            .to_string(),
                    )
                    .await;
                }
                for _ in window {
                    let answer = recv(&mut ws).await;
                    let n = answer["id"].as_u64().expect("numeric id");
                    assert_eq!(
                        answer["result"]["output"],
                        json!(format!("call {n}\n{}", n * 2)),
                        "{answer}"
                    );
                    correct += 1;
                }
            }
            correct
        }));
    }
    let mut correct = 0;
    for client in clients {
        correct += client.await.expect("client task");
    }
    let elapsed = started.elapsed();
    assert_eq!(correct, CONNECTIONS * CALLS_PER_CONNECTION);

    // Each worker counts what it answered in Redis, in the same transaction as the answer.
    let mut redis = redis_connection(&redis_server.url()).await;
    let counts: std::collections::HashMap<String, u64> = redis
        .hgetall(worker_jobs_key(&circle_key()))
        .await
        .expect("HGETALL");
    for name in names {
        assert!(
            counts.get(name).copied().unwrap_or(0) > 0,
            "{name} did none: {counts:?}"
        );
    }
    assert_eq!(counts.values().sum::<u64>(), 1000, "{counts:?}");
    eprintln!("1000 plays over 2 servers and 3 workers in {elapsed:?}; per worker: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pipelined_plays_through_redis_are_all_answered() {
    let redis_server = RedisServer::start();
    let _worker = start_worker(&redis_server, "w1");
    // Limits as shipped, but for the Redis mode's circle key.
    let server = start_server(&redis_server.url(), ServerLimits::default().script_deadline);
    wait_for_workers(&redis_server.url(), &["w1"]).await;
    let ws = connect_wss(server.wss_addr()).await;
    let started = Instant::now();
    let run = common::pipeline_plays(ws, 1000, common::BUSY_SCRIPT, server.wss_addr()).await;
    eprintln!(
        "1000 pipelined plays through Redis in {:?}; at most {} read ahead",
        started.elapsed(),
        run.most_taken_unfinished
    );
    common::assert_all_answered(
        &run,
        1000,
        ServerLimits::default().max_in_flight_per_connection,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_plans_hello_wss_prints_through_a_worker() {
    let redis_server = RedisServer::start();
    let _worker = start_worker(&redis_server, "w1");
    let server = start_server(&redis_server.url(), Duration::from_secs(30));
    wait_for_workers(&redis_server.url(), &["w1"]).await;
    let mut ws = connect_wss(server.wss_addr()).await;
    let answer = play(&mut ws, 1, "print('Hello WSS!')").await;
    assert_eq!(answer["result"]["output"], "Hello WSS!", "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_gets_minus_32005_and_heals_without_restarts() {
    let mut redis_server = RedisServer::start();
    let mut worker = start_worker(&redis_server, "survivor");
    let worker_pid = worker.pid();
    let server = start_server(&redis_server.url(), Duration::from_secs(10));
    wait_for_workers(&redis_server.url(), &["survivor"]).await;
    let mut ws = connect_wss(server.wss_addr()).await;
    assert_eq!(play(&mut ws, 1, "40 + 2").await["result"]["output"], "42");

    // Load on a second connection all along: every call gets the right answer or a clear
    // -32005, each within the script deadline, whatever Redis is doing at that moment.
    let (stop_load, mut load_stopped) = tokio::sync::watch::channel(false);
    let addr = server.wss_addr();
    let load = tokio::spawn(async move {
        let mut ws = connect_wss(addr).await;
        let (mut answered, mut refused) = (0, 0);
        for n in 0i64.. {
            if *load_stopped.borrow_and_update() {
                break;
            }
            let asked = Instant::now();
            let answer = play(&mut ws, n, &format!("{n} * 3")).await;
            assert!(asked.elapsed() < Duration::from_secs(11), "{answer}");
            if answer["result"]["output"] == json!((n * 3).to_string()) {
                answered += 1;
            } else {
                assert_eq!(error_code(&answer), -32005, "{answer}");
                refused += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (answered, refused)
    });

    redis_server.stop();
    let outage = Instant::now();
    let mut id = 10;
    while outage.elapsed() < Duration::from_secs(3) {
        let asked = Instant::now();
        let answer = play(&mut ws, id, "1").await;
        assert_eq!(error_code(&answer), -32005, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Redis"),
            "{answer}"
        );
        assert!(asked.elapsed() < Duration::from_secs(2), "answered at once");
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    redis_server.restart();

    // The first calls may still meet connections that have not noticed the restart;
    // from the first success on, every call succeeds.
    let give_up = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = play(&mut ws, id, "40 + 2").await;
        id += 1;
        if answer["result"]["output"] == "42" {
            break;
        }
        assert_eq!(error_code(&answer), -32005, "{answer}");
        assert!(Instant::now() < give_up, "never recovered: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 0..20 {
        let answer = play(&mut ws, id, &format!("{n} + 1")).await;
        id += 1;
        assert_eq!(
            answer["result"]["output"],
            json!((n + 1).to_string()),
            "{answer}"
        );
    }
    stop_load.send_replace(true);
    let (answered, refused) = load.await.expect("load task");
    assert!(
        answered > 0 && refused > 0,
        "{answered} answered, {refused} refused"
    );
    assert!(
        worker.is_running(),
        "the worker survived:\n{}",
        worker.log()
    );
    assert_eq!(worker.pid(), worker_pid);
}

#[tokio::test]
async fn without_workers_play_fails_within_its_deadline() {
    let redis_server = RedisServer::start();
    let server = start_server(&redis_server.url(), Duration::from_secs(1));
    let mut ws = connect_wss(server.wss_addr()).await;
    let asked = Instant::now();
    let answer = play(&mut ws, 1, "1").await;
    let waited = asked.elapsed();
    assert_eq!(error_code(&answer), -32005, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("circle-worker"), "{answer}");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_before_redis_serves_once_redis_is_up() {
    let port = support::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = start_server(&url, Duration::from_secs(10));
    let mut ws = connect_wss(server.wss_addr()).await;
    let answer = play(&mut ws, 1, "1").await;
    assert_eq!(error_code(&answer), -32005, "{answer}");

    let redis_server = RedisServer::start_on(port).expect("Redis starts on the chosen port");
    let _worker = start_worker(&redis_server, "late");
    let give_up = Instant::now() + Duration::from_secs(15);
    let mut id = 2;
    loop {
        let answer = play(&mut ws, id, "40 + 2").await;
        if answer["result"]["output"] == "42" {
            break;
        }
        assert!(Instant::now() < give_up, "never recovered: {answer}");
        id += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_mode_needs_the_circle_key_workers_know() {
    let err = spawn_circle_server(ServerConfig {
        redis_url: Some("redis://127.0.0.1:1".into()),
        port: 0,
        ..ServerConfig::default()
    })
    .map(|_| ())
    .unwrap_err();
    assert!(err.to_string().contains("circle_public_key"), "{err}");

    let err = spawn_circle_server(ServerConfig {
        redis_url: Some("http://not-redis".into()),
        circle_public_key: circle_key(),
        port: 0,
        ..ServerConfig::default()
    })
    .map(|_| ())
    .unwrap_err();
    assert!(err.to_string().contains("redis_url"), "{err}");
}

/// One worker with one script thread for scripts that wait by watching the clock (no
/// operation cap to speak of, 30 s of run time), its server, and a signed-in connection
/// whose first play went through (so Redis connections and the group are up). `extra`
/// flags go to the worker.
async fn one_slow_worker(
    redis_server: &RedisServer,
    name: &str,
    extra: &[&str],
) -> (WorkerProcess, TestServer, Ws) {
    let flags = [
        &[
            "--concurrency",
            "1",
            "--script-max-operations",
            "1000000000000",
        ][..],
        &["--script-timeout-ms", "30000"],
        extra,
    ]
    .concat();
    let worker = WorkerProcess::start(
        worker_binary(),
        &redis_server.url(),
        &circle_key(),
        name,
        &flags,
    );
    let server = start_server(&redis_server.url(), Duration::from_secs(30));
    wait_for_workers(&redis_server.url(), &[name]).await;
    let mut ws = connect_wss(server.wss_addr()).await;
    let signed_in = sign_in(&mut ws, &common::key(7)).await;
    assert_eq!(signed_in["result"]["authenticated"], true, "{signed_in}");
    let warm = play(&mut ws, 3, "1").await;
    assert_eq!(warm["result"]["output"], "1", "{warm}");
    (worker, server, ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_streamed_play_sends_each_line_as_it_is_printed_then_answers_once() {
    let redis_server = RedisServer::start();
    let (_worker, server, mut ws) = one_slow_worker(&redis_server, "stream1", &[]).await;
    frames::twenty_streamed_lines_then_one_answer(&mut ws, "through Redis").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_remote_printer_streams_every_line_to_a_client_that_reads() {
    const LINES: usize = 3_000;
    let redis_server = RedisServer::start();
    let (_worker, server, mut ws) = one_slow_worker(&redis_server, "fast1", &[]).await;
    // As fast as the script can print: the worker writes them by the hundred per entry,
    // far more at once than a connection's queue of lines takes.
    let script = format!("for n in 0..{LINES} {{ print(`line ${{n}}`); }}");
    send(&mut ws, frames::play(7, &script, true)).await;
    let (answers, notifications) = answers_to(&mut ws, &[7]).await;
    let expected: Vec<String> = (0..LINES).map(|n| format!("line {n}")).collect();
    assert_eq!(answers[0].0["result"]["output"], expected.join("\n"));
    let streamed: Vec<&str> = notifications
        .iter()
        .map(|frame| frame["params"]["line"].as_str().expect("line"))
        .collect();
    assert_eq!(
        streamed, expected,
        "every line once, in order, before the answer"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_script_on_a_remote_worker_and_frees_it_for_the_next_job() {
    let redis_server = RedisServer::start();
    let (_worker, server, mut ws) = one_slow_worker(&redis_server, "cancel1", &[]).await;
    // Holds the worker's only thread, after a store write that must not be kept.
    let holder = format!(r#"store::set("partial", "kept"); {FOREVER}"#);
    send(&mut ws, frames::play(10, &holder, false)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Waits behind it: it can only run once the worker stopped play 10.
    send(&mut ws, frames::play(11, "40 + 2", false)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let asked = Instant::now();
    send(&mut ws, frames::cancel(12, 10)).await;
    let (answers, notifications) = answers_to(&mut ws, &[10, 11, 12]).await;
    assert!(notifications.is_empty(), "{notifications:?}");
    let cancelled_after = answers[0].1 - asked;
    let next_after = answers[1].1 - asked;
    eprintln!(
        "through Redis: the cancelled play answered after {cancelled_after:?}, the job behind it (worker stopped, next job run, answered) after {next_after:?}"
    );
    assert_eq!(error_code(&answers[0].0), -32006, "{:?}", answers[0]);
    assert!(
        cancelled_after < Duration::from_millis(500),
        "{cancelled_after:?}"
    );
    assert_eq!(answers[1].0["result"]["output"], "42", "{:?}", answers[1]);
    assert!(next_after < Duration::from_millis(500), "{next_after:?}");
    assert_eq!(answers[2].0["result"], json!({"cancelled": true}));

    // The cancelled run's store write was not kept.
    let kept = play(&mut ws, 13, r#"type_of(store::get("partial"))"#).await;
    assert_eq!(kept["result"]["output"], "()", "{kept}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_job_queued_behind_a_busy_remote_worker_never_runs_it() {
    // Held by the worker waiting for its thread (prefetch), and left in the job stream
    // (no prefetch): neither ever runs.
    for (name, extra) in [
        ("queued1", &[][..]),
        ("queued2", &["--prefetch", "0", "--hold-ms", "0"][..]),
    ] {
        let redis_server = RedisServer::start();
        let (_worker, server, mut ws) = one_slow_worker(&redis_server, name, extra).await;
        send(&mut ws, frames::play(10, FOREVER, false)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let queued = r#"store::set("ran", "yes"); print("ran"); 2"#;
        send(&mut ws, frames::play(11, queued, true)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        let asked = Instant::now();
        send(&mut ws, frames::cancel(12, 11)).await;
        let (answers, notifications) = answers_to(&mut ws, &[11, 12]).await;
        let latency = answers[0].1 - asked;
        eprintln!("{name}: the queued play answered {latency:?} after the cancel");
        assert_eq!(error_code(&answers[0].0), -32006, "{:?}", answers[0]);
        assert!(notifications.is_empty(), "{notifications:?}");

        // Free the thread; the next job runs, and play 11 never did.
        send(&mut ws, frames::cancel(13, 10)).await;
        let (answers, _) = answers_to(&mut ws, &[10, 13]).await;
        assert_eq!(error_code(&answers[0].0), -32006, "{:?}", answers[0]);
        let asked = Instant::now();
        let ran = play(&mut ws, 14, r#"type_of(store::get("ran"))"#).await;
        eprintln!("{name}: the next play answered after {:?}", asked.elapsed());
        assert_eq!(ran["result"]["output"], "()", "play 11 never ran: {ran}");
        // Nor does it run later: no line of it comes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let next = play(&mut ws, 15, r#"type_of(store::get("ran"))"#).await;
        assert_eq!(next["result"]["output"], "()", "{next}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_cancels_its_remote_script() {
    let redis_server = RedisServer::start();
    let (_worker, server, leaving) = one_slow_worker(&redis_server, "close1", &[]).await;
    let mut leaving = leaving;
    send(&mut leaving, frames::play(10, FOREVER, true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    leaving.close(None).await.expect("close");
    drop(leaving);

    // The worker's only thread is free again: without the cancel it would run the
    // script until its 30 s limit.
    let mut next = connect_wss(server.wss_addr()).await;
    let asked = Instant::now();
    let answer = play(&mut next, 1, "6 * 7").await;
    let took = asked.elapsed();
    eprintln!("through Redis: the next connection's play answered in {took:?}");
    assert_eq!(answer["result"]["output"], "42", "{answer}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    server.stop().await;
}
