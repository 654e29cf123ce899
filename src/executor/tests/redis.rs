//! The Redis executor and `circle-worker` against a real, private `redis-server` (see
//! `support`): real worker processes where a process must die, in-process worker loops
//! where only the protocol matters.
//!
//! Needs `redis-server` on the PATH (`apt-get install redis-server`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use circle_executor::redis::{
    CONSUMER_GROUP, WorkerConfig, WorkerSummary, jobs_stream_key, run_worker, worker_jobs_key,
};
use circle_executor::{
    EmbeddedConfig, EmbeddedExecutor, Executor, ExecutorError, LimitKind, RedisExecutor,
    RedisExecutorConfig, ScriptContext, ScriptJob, ScriptLimits,
};
use redis::AsyncCommands;
use redis::streams::StreamPendingCountReply;
use support::{RedisServer, WorkerProcess, circle_key, redis_connection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_circle-worker");

/// Flags for worker processes running the long scripts below: no operation cap, a wall
/// time well above their run time, and a short take-over time so the tests stay quick.
const LONG_SCRIPT_FLAGS: &[&str] = &[
    "--script-max-operations",
    "1000000000",
    "--script-timeout-ms",
    "20000",
    "--claim-idle-ms",
    "1000",
];

/// A script that keeps a worker busy for about a second in a debug build, and answers
/// `n + tag`.
fn long_script(tag: u32) -> String {
    format!("let n = 0; while n < 1000000 {{ n += 1; }} n + {tag}")
}

fn context(circle: &str) -> Arc<ScriptContext> {
    Arc::new(ScriptContext {
        circle_name: "garden".into(),
        circle_public_key: circle.into(),
        caller_public_key: "03cafe".into(),
    })
}

fn job(script: &str, circle: &str, wait: Duration) -> ScriptJob {
    ScriptJob::new(script, context(circle)).with_deadline(Instant::now() + wait)
}

fn executor(redis_url: &str, circle: &str) -> RedisExecutor {
    RedisExecutor::new(RedisExecutorConfig::new(redis_url, circle)).expect("executor starts")
}

/// A worker loop in this process, stopped (gracefully) when dropped or by `stop`.
struct InProcessWorker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<WorkerSummary, circle_executor::WorkerError>>,
}

impl InProcessWorker {
    fn start(config: WorkerConfig) -> InProcessWorker {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_worker(
            config,
            circle_executor::ScriptEnvironment::stock(),
            async move {
                let _ = stopped.await;
            },
        ));
        InProcessWorker {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) -> WorkerSummary {
        drop(self.stop.take());
        (&mut self.task)
            .await
            .expect("worker task")
            .expect("worker ran")
    }
}

fn worker_config(redis_url: &str, circle: &str, name: &str) -> WorkerConfig {
    WorkerConfig {
        name: name.into(),
        concurrency: 2,
        claim_idle: Duration::from_secs(1),
        ..WorkerConfig::new(redis_url, circle)
    }
}

/// A time limit for polling loops, which panics naming what never happened.
struct GiveUp {
    at: Instant,
    what: &'static str,
}

impl GiveUp {
    fn after(limit: Duration, what: &'static str) -> GiveUp {
        GiveUp {
            at: Instant::now() + limit,
            what,
        }
    }

    /// Panics once the limit has passed, else waits a little before the next look.
    async fn pause(&self) {
        assert!(
            Instant::now() < self.at,
            "timed out waiting until {}",
            self.what
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the consumer `name` holds `count` jobs.
async fn wait_until_held(url: &str, circle: &str, name: &str, count: usize) {
    let give_up = GiveUp::after(Duration::from_secs(10), "the worker holds its jobs");
    while held_by(url, circle, name).await.1 != count {
        give_up.pause().await;
    }
}

/// How many entries, and how many jobs in them, of `circle` the consumer `name` holds
/// (read but not answered).
async fn held_by(url: &str, circle: &str, name: &str) -> (usize, usize) {
    let mut redis = redis_connection(url).await;
    let ids: Vec<String> = redis::cmd("XPENDING")
        .arg(jobs_stream_key(circle))
        .arg(CONSUMER_GROUP)
        .arg("-")
        .arg("+")
        .arg(100)
        .arg(name)
        .query_async::<StreamPendingCountReply>(&mut redis)
        .await
        .map_or_else(
            |_| Vec::new(),
            |pending| pending.ids.into_iter().map(|p| p.id).collect(),
        );
    let mut jobs = 0;
    for id in &ids {
        let entries: Vec<(String, Vec<String>)> = redis
            .xrange(jobs_stream_key(circle), id, id)
            .await
            .expect("XRANGE");
        jobs += entries
            .iter()
            .map(|(_, fields)| jobs_in(fields))
            .sum::<usize>();
    }
    (ids.len(), jobs)
}

/// The jobs in a job entry's fields: a version-2 entry is `v`, `reply_to` and `jobs`,
/// which holds one line per job: `{id} {deadline} {len}:{text} {len}:{text} {len}:{text}
/// {len}:{script}\n`.
fn jobs_in(fields: &[String]) -> usize {
    assert_eq!(
        fields[..4],
        ["v", "2", "reply_to", fields[3].as_str()],
        "{fields:?}"
    );
    assert_eq!(fields[4], "jobs", "{fields:?}");
    let mut rest = fields[5].as_bytes();
    let mut jobs = 0;
    while !rest.is_empty() {
        for _ in 0..2 {
            let space = rest.iter().position(|&b| b == b' ').expect("a word");
            rest = &rest[space + 1..];
        }
        for _ in 0..4 {
            let colon = rest.iter().position(|&b| b == b':').expect("a size");
            let len: usize = std::str::from_utf8(&rest[..colon])
                .unwrap()
                .parse()
                .unwrap();
            rest = &rest[colon + 1 + len + 1..];
        }
        jobs += 1;
    }
    jobs
}

/// The entries of `circle`'s job stream, and the jobs in them.
async fn queued(redis: &mut redis::aio::MultiplexedConnection, circle: &str) -> (usize, usize) {
    let entries: Vec<(String, Vec<String>)> = redis
        .xrange_all(jobs_stream_key(circle))
        .await
        .expect("XRANGE");
    let jobs = entries.iter().map(|(_, fields)| jobs_in(fields)).sum();
    (entries.len(), jobs)
}

/// Scripts answered by worker `name`, from the workers' own counter in Redis.
async fn answered_by(url: &str, circle: &str, name: &str) -> u64 {
    let mut redis = redis_connection(url).await;
    redis
        .hget::<_, _, Option<u64>>(worker_jobs_key(circle), name)
        .await
        .expect("HGET")
        .unwrap_or(0)
}

#[tokio::test]
async fn scripts_behave_exactly_as_in_the_embedded_executor() {
    let redis_server = RedisServer::start();
    let circle = circle_key(1);
    let limits = ScriptLimits {
        max_operations: 50_000,
        max_output_bytes: 64,
        ..ScriptLimits::default()
    };
    let worker = InProcessWorker::start(WorkerConfig {
        limits: limits.clone(),
        ..worker_config(&redis_server.url(), &circle, "same")
    });
    let remote = executor(&redis_server.url(), &circle);
    let embedded = EmbeddedExecutor::new(EmbeddedConfig {
        threads: 1,
        limits,
        ..EmbeddedConfig::default()
    })
    .expect("embedded pool");

    let scripts = [
        r#"print("hi"); 40 + 2"#,
        r#"print(""); "text""#,
        "CIRCLE_NAME + \"/\" + CIRCLE_PUBLIC_KEY + \"/\" + CALLER_PUBLIC_KEY",
        "let x = ;",
        "throw \"nope\"",
        "loop {}",
        r#"for i in 0..100 { print("0123456789"); }"#,
        "eval(\"1\")",
        "()",
        "sleep(1)",
    ];
    for script in scripts {
        let wait = Duration::from_secs(10);
        let from_redis = remote.execute(job(script, &circle, wait)).await;
        let in_process = embedded.execute(job(script, &circle, wait)).await;
        assert_eq!(
            format!("{from_redis:?}"),
            format!("{in_process:?}"),
            "{script}"
        );
    }
    assert_eq!(worker.stop().await.scripts_run, scripts.len() as u64);
}

#[tokio::test]
async fn without_workers_play_fails_within_its_deadline() {
    let redis_server = RedisServer::start();
    let circle = circle_key(2);
    let remote = executor(&redis_server.url(), &circle);
    let started = Instant::now();
    let err = remote
        .execute(job("1", &circle, Duration::from_millis(800)))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, ExecutorError::NoAnswer(_)), "{err:?}");
    assert_eq!(err.code(), -32005);
    assert!(err.to_string().contains("circle-worker"), "{err}");
    assert!(
        (Duration::from_millis(750)..Duration::from_millis(1500)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(remote.waiting_jobs(), 0, "the caller's entry is forgotten");

    // A job whose deadline has passed is refused at once.
    let err = remote
        .execute(ScriptJob::new("1", context(&circle)).with_deadline(Instant::now()))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::DeadlineExceeded), "{err:?}");
}

#[tokio::test]
async fn redis_down_at_start_answers_unavailable_then_recovers_by_itself() {
    let port = support::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let circle = circle_key(3);
    let remote = executor(&url, &circle);
    // Workers may start before Redis too.
    let worker = InProcessWorker::start(worker_config(&url, &circle, "early"));

    for _ in 0..3 {
        let started = Instant::now();
        let err = remote
            .execute(job("1", &circle, Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecutorError::Unavailable(_)), "{err:?}");
        assert_eq!(err.code(), -32005);
        assert!(err.to_string().contains("Redis"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered at once"
        );
    }

    let _redis_server = RedisServer::start_on(port).expect("Redis starts on the chosen port");
    let give_up = GiveUp::after(Duration::from_secs(10), "play succeeds after Redis started");
    let answer = loop {
        match remote
            .execute(job("40 + 2", &circle, Duration::from_secs(2)))
            .await
        {
            Ok(answer) => break answer,
            Err(_) => give_up.pause().await,
        }
    };
    assert_eq!(answer.output, "42");
    worker.stop().await;
}

/// Submits `jobs` long scripts together (so they share one job entry), waits until a
/// worker started with `doomed_flags` holds all of them, SIGKILLs it, starts a rescuer and
/// checks that every caller gets its own right answer.
async fn kill_the_holder_of_an_entry(
    remote: &Arc<RedisExecutor>,
    url: &str,
    circle: &str,
    doomed_flags: &[&str],
    jobs: u32,
) {
    let bin = std::path::Path::new(WORKER_BIN);
    let mut doomed = WorkerProcess::start(
        bin,
        url,
        circle,
        "doomed",
        &[LONG_SCRIPT_FLAGS, doomed_flags].concat(),
    );
    let calls: Vec<_> = (0..jobs)
        .map(|tag| {
            let remote = Arc::clone(remote);
            let job = job(&long_script(tag), circle, Duration::from_secs(30));
            tokio::spawn(async move { remote.execute(job).await })
        })
        .collect();
    wait_until_held(url, circle, "doomed", jobs as usize).await;
    // Submitted together, they share one entry: the worker dies holding all of it.
    assert_eq!(held_by(url, circle, "doomed").await, (1, jobs as usize));
    doomed.kill();

    let _rescuer = WorkerProcess::start(
        bin,
        url,
        circle,
        "rescuer",
        &[LONG_SCRIPT_FLAGS, &["--concurrency", "3"]].concat(),
    );
    for (tag, call) in calls.into_iter().enumerate() {
        let output = call
            .await
            .expect("caller task")
            .unwrap_or_else(|err| panic!("job {tag}: {err:?}\nworker log:\n{}", doomed.log()));
        assert_eq!(output.output, (1_000_000 + tag).to_string());
    }
    assert_eq!(answered_by(url, circle, "doomed").await, 0);
}

#[tokio::test]
async fn jobs_of_a_killed_worker_are_finished_by_another() {
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(4);
    let remote = Arc::new(executor(&url, &circle));
    let started = Instant::now();

    kill_the_holder_of_an_entry(&remote, &url, &circle, &["--concurrency", "3"], 3).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered before the deadline"
    );
    assert_eq!(answered_by(&url, &circle, "rescuer").await, 3);
}

#[tokio::test]
async fn a_worker_killed_in_the_middle_of_an_entry_leaves_all_of_it_to_another() {
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(12);
    let remote = Arc::new(executor(&url, &circle));

    // Two script threads and nothing held beyond them: of an entry of six jobs, two run
    // and four wait for a thread when the worker dies.
    let jobs = 6;
    let doomed_flags = ["--concurrency", "2", "--prefetch", "0"];
    kill_the_holder_of_an_entry(&remote, &url, &circle, &doomed_flags, jobs).await;
    // The rescuer ran the whole entry again, the jobs the dead worker had started too.
    assert_eq!(answered_by(&url, &circle, "rescuer").await, u64::from(jobs));
    let mut redis = redis_connection(&url).await;
    assert_eq!(
        queued(&mut redis, &circle).await,
        (0, 0),
        "the entry is cleared"
    );
    assert_eq!(remote.waiting_jobs(), 0);
}

#[tokio::test]
async fn a_job_that_keeps_losing_its_worker_is_given_up_with_a_clear_error() {
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(5);
    let remote = executor(&url, &circle);
    let bin = std::path::Path::new(WORKER_BIN);

    let mut doomed = WorkerProcess::start(bin, &url, &circle, "doomed", LONG_SCRIPT_FLAGS);
    let deadline = Duration::from_secs(30);
    let started = Instant::now();
    let call = remote.execute(job(&long_script(0), &circle, deadline));
    let call = tokio::spawn(call);
    wait_until_held(&url, &circle, "doomed", 1).await;
    doomed.kill();
    // Allowed no retry at all: the job's second delivery is its last.
    let _strict = WorkerProcess::start(
        bin,
        &url,
        &circle,
        "strict",
        &[LONG_SCRIPT_FLAGS, &["--max-retries", "0"]].concat(),
    );
    let err = call.await.expect("caller task").unwrap_err();
    assert!(matches!(err, ExecutorError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("not retried"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        answered_by(&url, &circle, "strict").await,
        0,
        "not run again"
    );
}

#[tokio::test]
async fn sigterm_lets_the_scripts_in_hand_finish_and_leaves_the_group_tidy() {
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(6);
    let remote = Arc::new(executor(&url, &circle));
    let mut worker = WorkerProcess::start(
        std::path::Path::new(WORKER_BIN),
        &url,
        &circle,
        "graceful",
        &[LONG_SCRIPT_FLAGS, &["--concurrency", "2"]].concat(),
    );
    let calls: Vec<_> = (0..2)
        .map(|tag| {
            let remote = Arc::clone(&remote);
            let job = job(&long_script(tag), &circle, Duration::from_secs(30));
            tokio::spawn(async move { remote.execute(job).await })
        })
        .collect();
    wait_until_held(&url, &circle, "graceful", 2).await;
    worker.terminate();
    for (tag, call) in calls.into_iter().enumerate() {
        let output = call.await.expect("caller task").expect("answered");
        assert_eq!(output.output, (1_000_000 + tag).to_string());
    }
    let status = worker
        .wait_exit(Duration::from_secs(10))
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "{status}\n{}", worker.log());
    let mut redis = redis_connection(&url).await;
    let consumers: redis::streams::StreamInfoConsumersReply = redis
        .xinfo_consumers(jobs_stream_key(&circle), CONSUMER_GROUP)
        .await
        .expect("XINFO CONSUMERS");
    assert!(
        consumers.consumers.iter().all(|c| c.name != "graceful"),
        "a stopped worker holding nothing leaves the group"
    );
}

#[tokio::test]
async fn expired_and_unreadable_jobs_are_answered_without_running() {
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(7);
    let mut redis = redis_connection(&url).await;
    let jobs = jobs_stream_key(&circle);
    let replies = "test:replies";
    let far = (wire_now_ms() + 60_000).to_string();
    let line = |id: &str, deadline: &str, script: &str| {
        format!(
            "{id} {deadline} 6:garden {}:{circle} 0: {}:{script}\n",
            circle.len(),
            script.len()
        )
    };
    // Written as a server would, but with a deadline long gone.
    let expired = line("expired-1", "1000", "print(\"ran\"); 1");
    // A job that runs.
    let fresh = line("fresh-1", &far, "40 + 2");
    // A job whose deadline is no number.
    let unreadable = line("broken-1", "soon", "1");
    for jobs_field in [expired, fresh, unreadable] {
        let entry = [("v", "2"), ("reply_to", replies), ("jobs", &jobs_field)];
        let _: String = redis.xadd(&jobs, "*", &entry).await.expect("XADD");
    }
    // An entry from a server of a newer version, naming its one job.
    let from_the_future = [("v", "9"), ("job", "future-1"), ("reply_to", replies)];
    let _: String = redis
        .xadd(&jobs, "*", &from_the_future)
        .await
        .expect("XADD");

    let worker = InProcessWorker::start(worker_config(&url, &circle, "careful"));
    let mut answers: std::collections::HashMap<String, (String, String)> =
        std::collections::HashMap::new();
    let give_up = GiveUp::after(Duration::from_secs(10), "all four are answered");
    while answers.len() < 4 {
        give_up.pause().await;
        // A reply entry: `v`, `worker`, `answers` with one line per answer,
        // `{job id} {status} {len}:{payload}` (no payload here holds a line feed).
        let entries: Vec<(String, Vec<String>)> = redis.xrange_all(replies).await.expect("XRANGE");
        for (_, fields) in entries {
            for line in fields[5].lines() {
                let (id, rest) = line.split_once(' ').expect("an id");
                let (status, sized) = rest.split_once(' ').expect("a status");
                let (_, payload) = sized.split_once(':').expect("a size");
                answers.insert(id.to_owned(), (status.to_owned(), payload.to_owned()));
            }
        }
    }
    assert_eq!(answers["expired-1"].0, "deadline");
    assert_eq!(answers["fresh-1"], ("ok".to_owned(), "42".to_owned()));
    assert_eq!(answers["broken-1"].0, "unavailable");
    assert!(answers["broken-1"].1.contains("script"), "{:?}", answers);
    assert!(answers["future-1"].1.contains("version"), "{:?}", answers);
    let left: usize = redis.xlen(&jobs).await.expect("XLEN");
    assert_eq!(left, 0, "answered jobs leave the stream");

    // The worker is still serving.
    let remote = executor(&url, &circle);
    let output = remote
        .execute(job("1 + 1", &circle, Duration::from_secs(5)))
        .await
        .expect("still serving");
    assert_eq!(output.output, "2");
    let summary = worker.stop().await;
    assert_eq!(summary.scripts_run, 2, "{summary:?}");
    assert_eq!(summary.expired_skipped, 1, "{summary:?}");
}

fn wire_now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

#[tokio::test]
async fn one_bad_job_in_an_entry_does_not_fail_the_others() {
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(13);
    let mut redis = redis_connection(&url).await;
    let jobs = jobs_stream_key(&circle);
    let replies = "test:replies";
    let far = (std::time::SystemTime::now() + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let line = |id: u32, deadline: &str, script: &str| {
        format!(
            "{id} {deadline} 6:garden {}:{circle} 0: {}:{script}\n",
            circle.len(),
            script.len()
        )
    };
    // A version-2 entry as a server writes it: five jobs, one of them unreadable.
    let jobs_field = [
        line(1, &far.to_string(), "40 + 2"),
        line(2, "tomorrow", "1"),
        line(3, "1000", "print(\"ran\"); 1"),
        line(4, &far.to_string(), "throw \"nope\""),
        line(5, &far.to_string(), "CIRCLE_NAME"),
    ]
    .concat();
    let entry = [("v", "2"), ("reply_to", replies), ("jobs", &jobs_field)];
    let _: String = redis.xadd(&jobs, "*", &entry).await.expect("XADD");

    let worker = InProcessWorker::start(worker_config(&url, &circle, "careful"));
    let mut answers = std::collections::HashMap::new();
    let give_up = GiveUp::after(Duration::from_secs(10), "all five are answered");
    while answers.len() < 5 {
        give_up.pause().await;
        // A version-2 reply entry: `v`, `worker`, `answers` with one line per answer,
        // `{job id} {status} {len}:{payload}` (no payload here holds a line feed).
        let entries: Vec<(String, Vec<String>)> = redis.xrange_all(replies).await.expect("XRANGE");
        for (_, fields) in entries {
            assert_eq!(
                fields[..5],
                ["v", "2", "worker", "careful", "answers"],
                "{fields:?}"
            );
            for line in fields[5].lines() {
                let (id, rest) = line.split_once(' ').expect("an id");
                let (status, sized) = rest.split_once(' ').expect("a status");
                let (len, payload) = sized.split_once(':').expect("a size");
                assert_eq!(len.parse::<usize>().unwrap(), payload.len(), "{line}");
                answers.insert(id.to_owned(), format!("{status}:{payload}"));
            }
        }
    }
    assert_eq!(answers["1"], "ok:42");
    assert!(
        answers["2"].starts_with("unavailable:the script worker could not read the job"),
        "{answers:?}"
    );
    assert_eq!(answers["3"], "deadline:");
    assert!(answers["4"].starts_with("script:"), "{answers:?}");
    assert_eq!(answers["5"], "ok:garden");
    let give_up = GiveUp::after(Duration::from_secs(5), "the entry is cleared");
    while redis.xlen::<_, usize>(&jobs).await.expect("XLEN") > 0 {
        give_up.pause().await;
    }
    let summary = worker.stop().await;
    assert_eq!(summary.scripts_run, 3, "{summary:?}");
    assert_eq!(summary.expired_skipped, 1, "{summary:?}");
}

#[tokio::test]
async fn dropping_the_executor_answers_its_callers_at_once() {
    let redis_server = RedisServer::start();
    let circle = circle_key(8);
    let remote = executor(&redis_server.url(), &circle);
    let call = remote.execute(job("1", &circle, Duration::from_secs(30)));
    let started = Instant::now();
    drop(remote);
    let err = call.await.unwrap_err();
    assert!(matches!(err, ExecutorError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_full_job_stream_refuses_at_once_and_reopens_once_drained() {
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(9);
    let remote = Arc::new(
        RedisExecutor::new(RedisExecutorConfig {
            max_queued_jobs: 2,
            ..RedisExecutorConfig::new(&url, &circle)
        })
        .expect("executor starts"),
    );
    let queued: Vec<_> = (0..2)
        .map(|n| {
            let remote = Arc::clone(&remote);
            let job = job(&format!("{n}"), &circle, Duration::from_secs(20));
            tokio::spawn(async move { remote.execute(job).await })
        })
        .collect();
    let give_up = GiveUp::after(Duration::from_secs(5), "both jobs are queued");
    while remote.queue_depth() < 2 {
        give_up.pause().await;
    }
    let err = remote
        .execute(job("2", &circle, Duration::from_secs(20)))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Overloaded(_)), "{err:?}");
    assert_eq!(err.code(), -32029);

    let worker = InProcessWorker::start(worker_config(&url, &circle, "drainer"));
    for (n, call) in queued.into_iter().enumerate() {
        let output = call
            .await
            .expect("caller task")
            .expect("queued job answered");
        assert_eq!(output.output, n.to_string());
    }
    // The last measured length is still "full"; it stops counting after a second.
    let give_up = GiveUp::after(Duration::from_secs(5), "the executor accepts jobs again");
    loop {
        match remote
            .execute(job("3", &circle, Duration::from_secs(5)))
            .await
        {
            Ok(output) => {
                assert_eq!(output.output, "3");
                break;
            }
            Err(ExecutorError::Overloaded(_)) => give_up.pause().await,
            Err(other) => panic!("{other:?}"),
        }
    }
    worker.stop().await;
}

#[tokio::test]
async fn the_worker_process_caps_script_memory() {
    // The binary installs the counting allocator, takes the limit from its flag, and the
    // limit's kind travels back to the server.
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(10);
    let remote = executor(&url, &circle);
    let worker = WorkerProcess::start(
        std::path::Path::new(WORKER_BIN),
        &url,
        &circle,
        "capped",
        &[
            LONG_SCRIPT_FLAGS,
            &["--script-max-memory-bytes", "16777216"],
        ]
        .concat(),
    );
    // Fills an array by index with distinct 1 MB strings: ~200 MB without the limit.
    let grow = r#"
        let big = "";
        big.pad(1000000, "x");
        let a = [];
        a.pad(200, ());
        for i in 0..200 { a[i] = big + i; }
        a.len()
    "#;
    let err = remote
        .execute(job(grow, &circle, Duration::from_secs(20)))
        .await
        .unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::Memory), "{err:?}");
    assert_eq!(err.code(), -32004);
    assert!(
        err.to_string()
            .starts_with("script exceeded the memory limit (16777216 bytes)"),
        "{err}"
    );
    let output = remote
        .execute(job("40 + 2", &circle, Duration::from_secs(20)))
        .await
        .expect("an ordinary script after the stopped one");
    assert_eq!(output.output, "42");
    assert!(!worker.log().contains("not enforced"), "{}", worker.log());
}

#[tokio::test]
async fn the_worker_process_takes_store_limits_from_its_flags() {
    // The limits are checked by the worker that runs the play, so they come from its
    // flags; the refusal's -32004 travels back to the server like any other limit.
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(11);
    let remote = executor(&url, &circle);
    let _worker = WorkerProcess::start(
        std::path::Path::new(WORKER_BIN),
        &url,
        &circle,
        "store-limits",
        &["--store-max-value-bytes", "16"],
    );
    // The store needs a caller with a real (compressed) public key.
    let caller = format!("03{}", "a1".repeat(32));
    let signed_in = |script: &str| {
        let context = Arc::new(ScriptContext {
            circle_name: "garden".into(),
            circle_public_key: circle.clone(),
            caller_public_key: caller.clone(),
        });
        ScriptJob::new(script, context).with_deadline(Instant::now() + Duration::from_secs(20))
    };
    // "0123456789abcdef" is 18 bytes of JSON (with its quotes): over 16.
    let err = remote
        .execute(signed_in(r#"store::set("v", "0123456789abcdef")"#))
        .await
        .unwrap_err();
    assert_eq!(err.limit_kind(), Some(LimitKind::StoreValueSize), "{err:?}");
    assert_eq!(err.code(), -32004);
    assert!(
        err.to_string()
            .contains("store value size limit (16 bytes)"),
        "{err}"
    );
    let output = remote
        .execute(signed_in(r#"store::set("v", "short"); store::get("v")"#))
        .await
        .expect("a value under the limit is stored");
    assert_eq!(output.output, "short");
}

#[tokio::test]
async fn jobs_are_taken_and_answered_in_batches() {
    let redis_server = RedisServer::start();
    let url = redis_server.url();
    let circle = circle_key(11);
    let remote = Arc::new(executor(&url, &circle));
    let jobs = 200;
    // Queued before the worker starts, so it finds a backlog to take in batches.
    let calls: Vec<_> = (0..jobs)
        .map(|n| {
            let remote = Arc::clone(&remote);
            let job = job(&format!("{n} * 2"), &circle, Duration::from_secs(20));
            tokio::spawn(async move { remote.execute(job).await })
        })
        .collect();
    let mut redis = redis_connection(&url).await;
    let give_up = GiveUp::after(Duration::from_secs(10), "all jobs are queued");
    let entries = loop {
        let (entries, queued_jobs) = queued(&mut redis, &circle).await;
        if queued_jobs == jobs {
            break entries;
        }
        give_up.pause().await;
    };
    // Submitted at once, they share entries of up to 64 jobs.
    assert!(entries <= jobs.div_ceil(64) + 1, "{entries} entries");
    let worker = InProcessWorker::start(WorkerConfig {
        concurrency: 1,
        prefetch: 15,
        ..worker_config(&url, &circle, "batcher")
    });
    for (n, call) in calls.into_iter().enumerate() {
        let output = call.await.expect("caller task").expect("answered");
        assert_eq!(output.output, (n * 2).to_string());
    }
    let summary = worker.stop().await;
    assert_eq!(summary.scripts_run, jobs as u64, "{summary:?}");
    assert_eq!(answered_by(&url, &circle, "batcher").await, jobs as u64);
    let left: usize = redis.xlen(jobs_stream_key(&circle)).await.expect("XLEN");
    assert_eq!(left, 0, "answered jobs leave the stream");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis)
        .await
        .expect("INFO");
    let calls_of = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0)
    };
    // Entries of up to 64 jobs, answered in batches: far fewer reads and transactions than
    // jobs (how many fewer depends on timing, so the bound is loose).
    assert!(calls_of("exec") <= jobs as u64 / 2, "{stats}");
    assert!(calls_of("xreadgroup") <= jobs as u64 / 2, "{stats}");
    assert!(calls_of("xlen") < 50, "XLEN is sampled: {stats}");
}

/// `calls` of `command` in Redis's `INFO commandstats`.
async fn calls_of(redis: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_busy_worker_holds_more_jobs_by_its_rate() {
    // One thread, no prefetch: without `hold_for` the worker holds one job at a time, so
    // every answer is a transaction of its own; with it, a worker answering hundreds of
    // jobs a second holds (and answers) many at once.
    for (hold_for, circle_seed) in [(Duration::ZERO, 14), (Duration::from_millis(50), 15)] {
        let redis_server = RedisServer::start();
        let url = redis_server.url();
        let circle = circle_key(circle_seed);
        let remote = Arc::new(executor(&url, &circle));
        let jobs = 1_000;
        let calls: Vec<_> = (0..jobs)
            .map(|n| {
                let remote = Arc::clone(&remote);
                let job = job(&format!("{n} + 1"), &circle, Duration::from_secs(30));
                tokio::spawn(async move { remote.execute(job).await })
            })
            .collect();
        let worker = InProcessWorker::start(WorkerConfig {
            concurrency: 1,
            prefetch: 0,
            hold_for,
            ..worker_config(&url, &circle, "steady")
        });
        for (n, call) in calls.into_iter().enumerate() {
            let output = call.await.expect("caller task").expect("answered");
            assert_eq!(output.output, (n + 1).to_string());
        }
        worker.stop().await;
        let mut redis = redis_connection(&url).await;
        let transactions = calls_of(&mut redis, "exec").await;
        if hold_for.is_zero() {
            assert_eq!(transactions, jobs, "one job held at a time");
        } else {
            assert!(transactions <= jobs / 2, "{transactions} transactions");
        }
    }
}
