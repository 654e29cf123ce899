//! Redis under Sentinel: a master, a replica (`--replicaof`) and three
//! `redis-sentinel`s (quorum 2, `down-after-milliseconds 1000`), a circle
//! server and two `circle-worker` processes that find the master through the
//! Sentinels. The master is killed (SIGKILL) while eight connections play;
//! after the promotion plays succeed again without restarting the server or
//! the workers. Every play gets exactly one answer, a result or `-32005`,
//! within its deadline; the figures (answered, failed, answered twice, writes
//! lost, promotion time) are printed.
//!
//! Needs `redis-server` and `redis-sentinel` (`apt-get install redis-server
//! redis-sentinel`).

mod common;
mod processes;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use circle_server::{ServerConfig, ServerLimits};
use common::{TestServer, Ws, connect_ws, key, send, sign_in};
use futures_util::StreamExt;
use processes::{Running, free_port, read_log, spawn_logged, worker_binary};
use redis::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const MASTER_NAME: &str = "circle";
/// Every play's deadline: a job lost with the master is answered `-32005`
/// after this long.
const DEADLINE: Duration = Duration::from_secs(4);
const CONNECTIONS: u8 = 8;
/// Each connection's caller may keep 1 000 keys (the store's default), one
/// per play: stay below.
const MAX_PLAYS_PER_CONNECTION: usize = 900;

fn circle_key() -> String {
    key(44).public_key().to_compressed_hex()
}

/// The five Redis processes.
struct Topology {
    master: Running,
    replica_port: u16,
    sentinel_ports: Vec<u16>,
    _rest: Vec<Running>,
}

impl Topology {
    fn start(dir: &Path) -> (Topology, u16) {
        let master_port = free_port();
        let replica_port = free_port();
        let redis = |port: u16, extra: &[&str], name: &str| {
            let port = port.to_string();
            let data = dir.to_string_lossy().into_owned();
            let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--dir", &data];
            args.extend(["--save", "", "--appendonly", "no"]);
            args.extend(extra);
            spawn_logged("redis-server", &args, &[], &dir.join(format!("{name}.log")))
        };
        let master = redis(master_port, &[], "master");
        let replica = redis(
            replica_port,
            &["--replicaof", "127.0.0.1", &master_port.to_string()],
            "replica",
        );
        let mut rest = vec![replica];
        let mut sentinel_ports = Vec::new();
        for n in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{n}.conf"));
            // Sentinel rewrites its file (what it learnt), so each has its own.
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.display()
                ),
            )
            .expect("sentinel config");
            rest.push(spawn_logged(
                "redis-sentinel",
                &[&conf.to_string_lossy()],
                &[],
                &dir.join(format!("sentinel-{n}.log")),
            ));
            sentinel_ports.push(port);
        }
        (
            Topology {
                master,
                replica_port,
                sentinel_ports,
                _rest: rest,
            },
            master_port,
        )
    }

    fn sentinel_list(&self) -> Vec<String> {
        self.sentinel_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect()
    }
}

/// One command to the Redis or Sentinel on `port`, bounded by a second.
async fn ask(port: u16, command: &redis::Cmd) -> Option<Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let asked = async {
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        command.query_async::<Value>(&mut connection).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(1), asked)
        .await
        .ok()
        .flatten()
}

fn sentinel(words: &[&str]) -> redis::Cmd {
    let mut command = redis::cmd("SENTINEL");
    for word in words {
        command.arg(*word);
    }
    command
}

fn array_len(value: Option<Value>) -> usize {
    match value {
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    }
}

/// The master's port, as the Sentinel on `port` names it.
async fn named_master(port: u16) -> Option<u16> {
    match ask(port, &sentinel(&["get-master-addr-by-name", MASTER_NAME])).await? {
        Value::Array(items) => match items.get(1)? {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Waits until the replica is in sync and every Sentinel knows the replica
/// and the two other Sentinels: only then can they agree on a failover.
async fn wait_until_ready(topology: &Topology, dir: &Path) {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let info = ask(topology.replica_port, redis::cmd("INFO").arg("replication")).await;
        let synced = matches!(&info, Some(Value::VerbatimString { text, .. }) if text.contains("master_link_status:up"))
            || matches!(&info, Some(Value::BulkString(bytes)) if String::from_utf8_lossy(bytes).contains("master_link_status:up"));
        let mut sentinels_ready = true;
        for &port in &topology.sentinel_ports {
            let replicas = array_len(ask(port, &sentinel(&["replicas", MASTER_NAME])).await);
            let peers = array_len(ask(port, &sentinel(&["sentinels", MASTER_NAME])).await);
            sentinels_ready &= replicas >= 1 && peers >= 2;
        }
        if synced && sentinels_ready {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "the Sentinels never saw the whole topology:\n{}",
            read_log(&dir.join("sentinel-0.log"))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How one play ended.
#[derive(Debug, Clone)]
struct Play {
    id: i64,
    /// `Ok(output)` or `Err(code)`.
    outcome: Result<String, i64>,
    took: Duration,
    /// Sent after the Sentinels named the new master.
    after_promotion: bool,
}

/// What one connection saw.
#[derive(Debug, Default)]
struct Seen {
    plays: Vec<Play>,
    /// Answers to an id that was already answered.
    twice: Vec<i64>,
    /// Plays without an answer by their deadline and a margin.
    hung: Vec<i64>,
}

fn script(id: i64) -> String {
    format!("let n = store::get(\"p{id}\") ?? 0; store::set(\"p{id}\", n + 1); n + 1")
}

/// Plays one after the other on `ws` until `stop`, each its own store key,
/// and checks that every answer belongs to the play waiting for it.
async fn play_until(
    mut ws: Ws,
    connection: u8,
    stop: Arc<AtomicBool>,
    promoted: Arc<AtomicBool>,
    successes_after_promotion: Arc<AtomicUsize>,
) -> Seen {
    let mut seen = Seen::default();
    let mut answered = std::collections::HashSet::new();
    let first = 1_000 * i64::from(connection + 1) * 1_000;
    for n in 0..MAX_PLAYS_PER_CONNECTION {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let id = first + n as i64;
        let after_promotion = promoted.load(Ordering::Relaxed);
        let sent = Instant::now();
        send(
            &mut ws,
            json!({"jsonrpc":"2.0","id":id,"method":"play","params":{"script":script(id)}})
                .to_string(),
        )
        .await;
        let limit = sent + DEADLINE + Duration::from_secs(2);
        loop {
            let Ok(Some(Ok(message))) = tokio::time::timeout_at(limit.into(), ws.next()).await
            else {
                seen.hung.push(id);
                return seen;
            };
            let Message::Text(text) = message else {
                continue;
            };
            let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
            let answer_id = answer["id"].as_i64().expect("numeric id");
            if !answered.insert(answer_id) || answer_id != id {
                seen.twice.push(answer_id);
                continue;
            }
            let outcome = match answer["result"]["output"].as_str() {
                Some(output) => Ok(output.to_owned()),
                None => Err(answer["error"]["code"].as_i64().unwrap_or(0)),
            };
            if outcome.is_ok() && after_promotion {
                successes_after_promotion.fetch_add(1, Ordering::Relaxed);
            }
            seen.plays.push(Play {
                id,
                outcome,
                took: sent.elapsed(),
                after_promotion,
            });
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A late second answer would arrive now: listen a little longer.
    let quiet = Instant::now() + Duration::from_secs(1);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(quiet.into(), ws.next()).await {
        if let Message::Text(text) = message {
            let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
            seen.twice.push(answer["id"].as_i64().unwrap_or(-1));
        }
    }
    seen
}

/// Every store value in the Redis on `port`: play id to the runs it counted.
async fn stored_runs(port: u16) -> HashMap<i64, i64> {
    let mut runs = HashMap::new();
    let Some(Value::Array(keys)) =
        ask(port, redis::cmd("KEYS").arg("circle:*:store:caller:*")).await
    else {
        return runs;
    };
    for hash in keys {
        let Value::BulkString(hash) = hash else {
            continue;
        };
        let Some(Value::Array(fields)) = ask(port, redis::cmd("HGETALL").arg(hash)).await else {
            continue;
        };
        for pair in fields.chunks(2) {
            if let [Value::BulkString(field), Value::BulkString(value)] = pair {
                let id = String::from_utf8_lossy(field)
                    .trim_start_matches('p')
                    .parse()
                    .unwrap_or(-1);
                let count = String::from_utf8_lossy(value).parse().unwrap_or(-1);
                runs.insert(id, count);
            }
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_killed_under_load_is_followed_through_sentinel_without_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut topology, master_port) = Topology::start(dir.path());
    wait_until_ready(&topology, dir.path()).await;
    let sentinels = topology.sentinel_list();

    let mut workers = Vec::new();
    for name in ["sentinel-w1", "sentinel-w2"] {
        let log = dir.path().join(format!("{name}.log"));
        workers.push(spawn_logged(
            worker_binary().to_str().expect("path"),
            &[
                "--redis-sentinel",
                &sentinels.join(","),
                "--redis-master-name",
                MASTER_NAME,
                "--circle-public-key",
                &circle_key(),
                "--name",
                name,
                "--concurrency",
                "2",
                "--claim-idle-ms",
                "2000",
            ],
            &[("RUST_LOG", "info".to_owned())],
            &log,
        ));
    }
    let server = TestServer::start(ServerConfig {
        circle_public_key: circle_key(),
        redis_sentinels: sentinels.clone(),
        redis_master_name: Some(MASTER_NAME.to_owned()),
        limits: ServerLimits {
            script_deadline: DEADLINE,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    });

    let stop = Arc::new(AtomicBool::new(false));
    let promoted = Arc::new(AtomicBool::new(false));
    let successes_after = Arc::new(AtomicUsize::new(0));
    let mut connections = Vec::new();
    for connection in 0..CONNECTIONS {
        let mut ws = connect_ws(&server.ws_url()).await;
        let signed = sign_in(&mut ws, &key(60 + connection)).await;
        assert!(signed["result"].is_object(), "{signed}");
        // Workers take a moment to join: wait for a first answer.
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = common::call(&mut ws, 3, "play", json!({"script": "1"})).await;
            if answer["result"]["output"] == "1" {
                break;
            }
            assert!(Instant::now() < give_up, "no worker answers: {answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        connections.push(tokio::spawn(play_until(
            ws,
            connection,
            Arc::clone(&stop),
            Arc::clone(&promoted),
            Arc::clone(&successes_after),
        )));
    }

    // Load for a second, then the master dies as a crash would.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = topology.master.0.kill();
    let _ = topology.master.0.wait();
    let killed = Instant::now();
    let give_up = killed + Duration::from_secs(30);
    loop {
        if named_master(topology.sentinel_ports[0]).await == Some(topology.replica_port) {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "no promotion:\n{}",
            read_log(&dir.path().join("sentinel-0.log"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promotion = killed.elapsed();
    promoted.store(true, Ordering::Relaxed);
    // Keep playing until the new master has served a good number of plays.
    let give_up = Instant::now() + Duration::from_secs(20);
    while successes_after.load(Ordering::Relaxed) < 200 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut plays = Vec::new();
    let mut twice = Vec::new();
    let mut hung = Vec::new();
    for connection in connections {
        let seen = connection.await.expect("connection task");
        plays.extend(seen.plays);
        twice.extend(seen.twice);
        hung.extend(seen.hung);
    }

    // What the new master holds: one count per play that ran and whose
    // writes survived.
    let runs = stored_runs(topology.replica_port).await;
    let succeeded: Vec<&Play> = plays.iter().filter(|play| play.outcome.is_ok()).collect();
    let lost: Vec<i64> = succeeded
        .iter()
        .filter(|play| !runs.contains_key(&play.id))
        .map(|play| play.id)
        .collect();
    let ran_twice = runs.values().filter(|&&count| count > 1).count();
    let mut codes: HashMap<i64, usize> = HashMap::new();
    for play in &plays {
        if let Err(code) = play.outcome {
            *codes.entry(code).or_default() += 1;
        }
    }
    let slowest = plays.iter().map(|play| play.took).max().unwrap_or_default();
    let after: Vec<&Play> = plays.iter().filter(|play| play.after_promotion).collect();
    let after_ok = after.iter().filter(|play| play.outcome.is_ok()).count();
    println!(
        "sentinel failover: master 127.0.0.1:{master_port} SIGKILLed, replica 127.0.0.1:{} named master after {:.2} s; \
         plays sent {}, answered {}, succeeded {}, failed {:?} (code: count), answered twice {}, hung {}, \
         slowest answer {:.2} s (deadline {} s); after the promotion {} plays, {} succeeded; \
         acknowledged plays whose store write was lost {}, plays whose script ran twice {}",
        topology.replica_port,
        promotion.as_secs_f64(),
        plays.len() + hung.len(),
        plays.len(),
        succeeded.len(),
        codes,
        twice.len(),
        hung.len(),
        slowest.as_secs_f64(),
        DEADLINE.as_secs(),
        after.len(),
        after_ok,
        lost.len(),
        ran_twice,
    );

    let logs = || {
        ["sentinel-w1.log", "sentinel-w2.log", "sentinel-0.log"]
            .iter()
            .map(|name| format!("--- {name}\n{}", read_log(&dir.path().join(name))))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        hung.is_empty(),
        "plays without an answer: {hung:?}\n{}",
        logs()
    );
    assert!(twice.is_empty(), "answered twice: {twice:?}");
    assert!(
        codes.keys().all(|&code| code == -32005),
        "only -32005 during the switch: {codes:?}"
    );
    assert!(
        slowest <= DEADLINE + Duration::from_secs(1),
        "an answer took {slowest:?}"
    );
    assert!(
        after_ok >= 200,
        "plays succeed again after the promotion ({after_ok})\n{}",
        logs()
    );
    // The last plays of every connection succeeded: the switch is over.
    for connection in 0..CONNECTIONS {
        let first = 1_000 * i64::from(connection + 1) * 1_000;
        let last = plays
            .iter()
            .filter(|play| play.id >= first && play.id < first + 1_000_000)
            .max_by_key(|play| play.id)
            .expect("a play per connection");
        assert!(last.outcome.is_ok(), "{last:?}");
    }
    // Nothing restarted: the same server and worker processes served it all.
    for worker in &mut workers {
        assert!(
            matches!(worker.0.try_wait(), Ok(None)),
            "workers still run\n{}",
            logs()
        );
    }
    server.stop().await;
}

/// A half-given Sentinel setting is refused at start with a clear line.
#[test]
fn a_sentinel_needs_a_master_name_and_a_name_a_sentinel() {
    let run = |program: &str, args: &[&str]| -> (Option<i32>, String) {
        let output = std::process::Command::new(program)
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(
        env!("CARGO_BIN_EXE_circle-server"),
        &[
            "--port",
            "0",
            "--circle-public-key",
            &circle_key(),
            "--redis-master-name",
            MASTER_NAME,
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs at least one Sentinel"), "{stderr}");
    let (code, stderr) = run(
        worker_binary().to_str().expect("path"),
        &[
            "--redis-sentinel",
            "127.0.0.1:1",
            "--circle-public-key",
            &circle_key(),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("master's name"), "{stderr}");
    let (code, stderr) = run(
        worker_binary().to_str().expect("path"),
        &[
            "--redis-sentinel",
            "127.0.0.1",
            "--redis-master-name",
            MASTER_NAME,
            "--circle-public-key",
            &circle_key(),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("HOST:PORT"), "{stderr}");
}
