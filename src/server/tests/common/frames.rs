//! Raw frames of protocol 1.1's streamed `play` and `cancel`, and scripts that
//! take their time, for the tests of both executors (`streaming.rs`, `redis.rs`).

use std::time::{Duration, Instant};

use circle_server::{ScriptLimits, ServerConfig};
use serde_json::{Value, json};

use super::{Ws, recv, tls_config};

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
