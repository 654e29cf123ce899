//! Raw frames of protocol 1.1's streamed `play` and `cancel`, and scripts that
//! take their time, for the tests of both executors (`streaming.rs`, `redis.rs`).

use std::time::{Duration, Instant};

use circle_server::{ScriptLimits, ServerConfig};
use serde_json::{Value, json};

use super::{Ws, call, recv, send, tls_config};

/// Limits for scripts that wait by watching the clock: no operation cap
/// to speak of, and a run time well past what any test waits.
pub fn waiting_limits() -> ScriptLimits {
    ScriptLimits {
        max_operations: u64::MAX / 2,
        max_run_time: Duration::from_secs(30),
        ..ScriptLimits::default()
    }
}

pub fn waiting_config() -> ServerConfig {
    ServerConfig {
        script_limits: waiting_limits(),
        // These tests reason about script threads (one busy, one freed by a
        // cancel): every play goes there, none is answered inline.
        script_inline_operations: 0,
        ..tls_config()
    }
}

/// Prints `line 0` … `line 19`, one every 100 ms (the sandbox has no
/// `sleep`: it waits by watching the clock).
pub const TWENTY_LINES_IN_TWO_SECONDS: &str = r#"
let started = timestamp();
for n in 0..20 {
    while started.elapsed < n.to_float() * 0.1 {}
    print(`line ${n}`);
}
"#;

/// Runs until its 30 s limit, or until it is cancelled.
pub const FOREVER: &str = "let i = 0; loop { i += 1; }";

pub fn play(id: i64, script: &str, stream: bool) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"play","params":{"script":script,"stream":stream}})
        .to_string()
}

pub fn cancel(id: i64, play_id: i64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"cancel","params":{"id":play_id}}).to_string()
}

pub fn is_output(frame: &Value) -> bool {
    frame["method"] == "output"
}

/// Reads frames until the answers to every id in `ids` are in: the answers
/// by id with when each came, and the notifications in between.
pub async fn answers_to(ws: &mut Ws, ids: &[i64]) -> (Vec<(Value, Instant)>, Vec<Value>) {
    let mut answers = Vec::new();
    let mut notifications = Vec::new();
    while answers.len() < ids.len() {
        let frame = recv(ws).await;
        let at = Instant::now();
        if is_output(&frame) {
            notifications.push(frame);
            continue;
        }
        let id = frame["id"].as_i64().expect("an answer has an id");
        assert!(ids.contains(&id), "an answer to a request sent: {frame}");
        assert!(
            answers
                .iter()
                .all(|(a, _): &(Value, _)| a["id"] != frame["id"]),
            "answered once: {frame}"
        );
        answers.push((frame, at));
    }
    answers.sort_by_key(|(answer, _)| answer["id"].as_i64());
    (answers, notifications)
}

/// Plays [`TWENTY_LINES_IN_TWO_SECONDS`] streamed on `ws` (signed in or not, either
/// executor) and checks protocol 1.1's promise: each line an `output` notification
/// as it is printed (the first within 300 ms), every line once and in order, all
/// before the one answer; then the same script without `stream` sends none.
/// `label` names the executor in the printed figures.
pub async fn twenty_streamed_lines_then_one_answer(ws: &mut Ws, label: &str) {
    let sent = Instant::now();
    send(ws, play(7, TWENTY_LINES_IN_TWO_SECONDS, true)).await;
    let mut lines = Vec::new();
    let answer = loop {
        let frame = recv(ws).await;
        let at = sent.elapsed();
        if !is_output(&frame) {
            break frame;
        }
        assert_eq!(frame["jsonrpc"], "2.0", "{frame}");
        assert!(frame.get("id").is_none(), "a notification: {frame}");
        assert_eq!(frame["params"]["id"], 7, "{frame}");
        lines.push((
            frame["params"]["line"].as_str().expect("line").to_owned(),
            at,
        ));
    };
    let answered = sent.elapsed();

    let expected: Vec<String> = (0..20).map(|n| format!("line {n}")).collect();
    let texts: Vec<&str> = lines.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(
        texts, expected,
        "every line once, in order, before the answer"
    );
    let (first, tenth, last) = (lines[0].1, lines[10].1, lines[19].1);
    eprintln!(
        "{label}: first line after {first:?}, line 10 after {tenth:?}, last after {last:?}, answer after {answered:?}"
    );
    assert!(
        first < Duration::from_millis(300),
        "first line after {first:?}"
    );
    // Streamed as printed, not all at once with the answer.
    assert!(
        tenth >= Duration::from_millis(950),
        "line 10 after {tenth:?}"
    );
    assert!(
        answered - first >= Duration::from_millis(1800),
        "the lines came over {:?}",
        answered - first
    );

    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(answer["result"]["output"], expected.join("\n"), "{answer}");
    // Answered once, and nothing more of that play comes: the next frame
    // is the next request's answer.
    let next = call(ws, 8, "whoami", json!({})).await;
    assert!(next["result"].is_object(), "{next}");

    // Without `stream`, the same kind of script sends no notification.
    send(ws, play(9, "print('a'); print('b'); 3", false)).await;
    let answer = recv(ws).await;
    assert_eq!(answer["id"], 9, "no notification first: {answer}");
    assert_eq!(answer["result"]["output"], "a\nb\n3", "{answer}");
}
