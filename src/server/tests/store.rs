//! The embedded store through the real `circle-server` binary: a SIGKILL in the middle of a
//! burst of writing plays loses none that were answered, and the store file opens again;
//! `--data-dir` and `--admin-key` as an operator uses them; store refusals on the wire.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Connections writing at once, each as its own caller.
const WRITERS: u8 = 8;
/// Plays each writer sends (each writes one key of its own).
const PLAYS_PER_WRITER: usize = 300;
/// The server is killed once this many plays were answered, with more in flight.
const KILL_AFTER: usize = 400;

/// Kills the server process when the test ends, also when it fails midway.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `circle-server --auth` on a free port with `args`; returns it and its ws:// URL.
fn start_server(args: &[&str]) -> (Running, String) {
    let mut running = Running(
        Command::new(env!("CARGO_BIN_EXE_circle-server"))
            .current_dir(repo_root())
            .env_remove("RUST_LOG")
            .args(["--port", "0", "--auth"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("circle-server starts"),
    );
    let stdout = running.0.stdout.take().expect("stdout piped");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("circle-server prints its URL (did it fail to start?)");
        if let Some(url) = line.strip_prefix("listening on ") {
            return (running, url.to_owned());
        }
    }
}

async fn signed_in(url: &str, caller: u8) -> Ws {
    let mut ws = connect_ws(url).await;
    let answer = sign_in(&mut ws, &key(caller)).await;
    assert_eq!(answer["result"]["authenticated"], json!(true), "{answer}");
    ws
}

async fn play(ws: &mut Ws, id: i64, script: &str) -> Value {
    call(ws, id, "play", json!({ "script": script })).await
}

/// Sends all of one writer's plays and collects the ids answered with a result, until
/// the connection dies.
async fn writer(ws: Ws, answered_total: Arc<AtomicUsize>) -> Vec<usize> {
    let (mut sink, mut stream) = ws.split();
    let sending = async {
        for i in 0..PLAYS_PER_WRITER {
            let request = json!({
                "jsonrpc": "2.0", "id": 1000 + i, "method": "play",
                "params": {"script": format!(r#"store::set("k{i}", #{{i: {i}}})"#)}
            });
            if sink.send(Message::text(request.to_string())).await.is_err() {
                break;
            }
        }
        // Keep the sink alive until the reader is done.
        std::future::pending::<()>().await;
    };
    let receiving = async {
        let mut answered = Vec::new();
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(30), stream.next()).await
        {
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).expect("JSON answer");
            assert!(answer.get("result").is_some(), "a write refused: {answer}");
            answered.push(answer["id"].as_u64().expect("id") as usize - 1000);
            answered_total.fetch_add(1, Ordering::SeqCst);
        }
        answered
    };
    tokio::select! {
        answered = receiving => answered,
        () = sending => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_of_writes_loses_no_answered_play() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let (mut server, url) = start_server(&["--data-dir", &data_dir]);

    let answered_total = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for caller in 1..=WRITERS {
        let ws = signed_in(&url, caller).await;
        writers.push(tokio::spawn(writer(ws, Arc::clone(&answered_total))));
    }
    let give_up = Instant::now() + Duration::from_secs(120);
    while answered_total.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < give_up, "the burst never got going");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.0.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    server.0.wait().unwrap();
    let mut answered: Vec<Vec<usize>> = Vec::new();
    for task in writers {
        answered.push(task.await.unwrap());
    }
    let total: usize = answered.iter().map(Vec::len).sum();
    assert!(total >= KILL_AFTER, "{total} answered");
    assert!(
        total < WRITERS as usize * PLAYS_PER_WRITER,
        "the kill came after the burst: nothing was in flight"
    );

    // The file opens again (the server starts on it), and every answered play is there.
    let (server, url) = start_server(&["--data-dir", &data_dir]);
    for (index, ids) in answered.iter().enumerate() {
        let mut ws = signed_in(&url, index as u8 + 1).await;
        let keys: Vec<String> = ids.iter().map(|i| format!("k{i}")).collect();
        let script = format!(
            "let missing = []; for k in {keys:?} {{ if store::get(k) == () {{ missing.push(k) }} }} missing.len()"
        );
        let answer = play(&mut ws, 3, &script).await;
        assert_eq!(
            answer["result"]["output"],
            json!("0"),
            "caller {index}: {answer}"
        );
        // Values are whole: a written value reads back as written.
        if let Some(i) = ids.first() {
            let answer = play(&mut ws, 4, &format!(r#"store::get("k{i}").i"#)).await;
            assert_eq!(answer["result"]["output"], json!(i.to_string()), "{answer}");
        }
    }
    drop(server);
    // And the library opens it cleanly too once the server is gone.
    circle_executor::store::Store::open_file(Path::new(&data_dir).join("store.redb"))
        .expect("the store file opens");
    eprintln!("{total} plays answered before the SIGKILL, all present after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_key_flag_and_store_refusals_on_the_wire() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let admin = key(9).public_key().to_compressed_hex();
    let (server, url) = start_server(&["--data-dir", &data_dir, "--admin-key", &admin]);

    let mut admin_ws = signed_in(&url, 9).await;
    let answer = play(&mut admin_ws, 3, r#"circle::set("motd", "hello")"#).await;
    assert!(answer.get("result").is_some(), "{answer}");
    let mut other = signed_in(&url, 1).await;
    let answer = play(&mut other, 3, r#"circle::set("motd", "mine")"#).await;
    assert_eq!(error_code(&answer), -32003, "{answer}");
    let answer = play(&mut other, 4, r#"circle::get("motd")"#).await;
    assert_eq!(answer["result"]["output"], json!("hello"), "{answer}");
    // A store limit: -32004 naming it.
    let long_key = "k".repeat(300);
    let answer = play(&mut other, 5, &format!(r#"store::set("{long_key}", 1)"#)).await;
    assert_eq!(error_code(&answer), -32004, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("store key size limit (256 bytes)"),
        "{message}"
    );

    // Another process on the same data directory is refused, naming the file.
    let output = Command::new(env!("CARGO_BIN_EXE_circle-server"))
        .current_dir(repo_root())
        .args(["--port", "0", "--data-dir", &data_dir])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("another process has it open"), "{stderr}");
    drop(server);

    // A bad admin key stops the start with a message naming it.
    let output = Command::new(env!("CARGO_BIN_EXE_circle-server"))
        .current_dir(repo_root())
        .args([
            "--port",
            "0",
            "--data-dir",
            &data_dir,
            "--admin-key",
            "0xnope",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("0xnope"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_limit_flags_are_refused_on_the_wire() {
    // In memory (no --data-dir): the limits are the same for both embedded backends.
    let (_server, url) = start_server(&[
        "--store-max-value-bytes",
        "16",
        "--store-max-keys-per-caller",
        "2",
    ]);
    let mut ws = signed_in(&url, 1).await;
    // "0123456789abcdef" is 18 bytes of JSON (with its quotes): over 16.
    let answer = play(&mut ws, 3, r#"store::set("v", "0123456789abcdef")"#).await;
    assert_eq!(error_code(&answer), -32004, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("store value size limit (16 bytes)"),
        "{message}"
    );
    // Under the limit, the same key is written.
    let answer = play(&mut ws, 4, r#"store::set("v", "short"); store::get("v")"#).await;
    assert_eq!(answer["result"]["output"], json!("short"), "{answer}");
    // A third key for this caller is over --store-max-keys-per-caller 2.
    let answer = play(&mut ws, 5, r#"store::set("a", 1); store::set("b", 2)"#).await;
    assert_eq!(error_code(&answer), -32004, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("store keys per caller limit (2 keys)"),
        "{message}"
    );
}
