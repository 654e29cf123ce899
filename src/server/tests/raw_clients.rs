//! The server as a third-party client meets it (protocol 1.1): raw frames
//! from a plain WebSocket library, no `circle_client_ws` and none of its
//! politeness (it caps its own requests in flight; these clients do not).

mod common;

use std::time::{Duration, Instant};

use circle_server::{ScriptLimits, ServerConfig, ServerLimits};
use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_thousand_pipelined_plays_are_all_answered_and_read_only_as_they_can_run() {
    // Limits as shipped.
    let server = TestServer::tls();
    let ws = connect_wss(server.wss_addr()).await;
    let started = Instant::now();
    let run = pipeline_plays(ws, 1000, BUSY_SCRIPT, server.wss_addr()).await;
    eprintln!(
        "1000 pipelined plays in {:?}; at most {} read ahead",
        started.elapsed(),
        run.most_taken_unfinished
    );
    assert_all_answered(
        &run,
        1000,
        ServerLimits::default().max_in_flight_per_connection,
    );
    server.stop().await;
}

#[tokio::test]
async fn a_batch_longer_than_the_in_flight_cap_waits_for_room() {
    let server = TestServer::tls_with_limits(ServerLimits {
        max_in_flight_per_connection: 4,
        ..ServerLimits::default()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    let batch: Vec<Value> = (0..40)
        .map(|id| json!({"jsonrpc":"2.0","id":id,"method":"play","params":{"script": format!("{id} * 2")}}))
        .collect();
    send(&mut ws, Value::Array(batch).to_string()).await;
    let answer = recv(&mut ws).await;
    let answers = answer.as_array().expect("one batch answer");
    assert_eq!(answers.len(), 40);
    for (id, answer) in answers.iter().enumerate() {
        assert_eq!(answer["id"], json!(id));
        assert_eq!(answer["result"]["output"], (id * 2).to_string(), "{answer}");
    }
    // And the connection goes on as usual.
    assert!(call(&mut ws, 99, "whoami", json!({})).await["result"].is_object());
    server.stop().await;
}

#[tokio::test]
async fn thirty_bad_sign_ins_in_one_batch_get_five_answers_then_1008() {
    let server = TestServer::start(ServerConfig {
        enable_auth: true,
        ..tls_config()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    let claimed = key(1);
    let signer = key(2);
    // A well-formed signature by another key, over some other text: the
    // server recovers a signer that is not the claimed one.
    let wrong = signer.sign_personal_message("not the challenge").to_hex();
    let mut batch = Vec::new();
    for pair in 0..30 {
        batch.push(
            json!({"jsonrpc":"2.0","id": pair * 2,"method":"fetch_nonce",
            "params":{"pubkey": claimed.public_key().to_compressed_hex()}}),
        );
        batch.push(
            json!({"jsonrpc":"2.0","id": pair * 2 + 1,"method":"authenticate",
            "params":{"signature": wrong}}),
        );
    }
    send(&mut ws, Value::Array(batch).to_string()).await;
    let answer = recv(&mut ws).await;
    let answers = answer.as_array().expect("one batch answer");
    let failures = answers
        .iter()
        .filter(|answer| answer["error"]["code"] == -32001)
        .count();
    assert_eq!(failures, 5, "{answer}");
    assert_eq!(
        answers.len(),
        10,
        "five challenges, five failures: {answer}"
    );
    assert_eq!(
        answers.last().expect("answers")["id"],
        json!(9),
        "the fifth failure is the last answer"
    );
    assert_eq!(recv_close_code(&mut ws).await, Some(1008));
    server.stop().await;
}

#[tokio::test]
async fn the_original_plans_hello_wss_prints() {
    let server = TestServer::tls();
    let mut ws = connect_wss(server.wss_addr()).await;
    let answer = call(&mut ws, 1, "play", json!({"script": "print('Hello WSS!')"})).await;
    assert_eq!(answer["result"]["output"], "Hello WSS!", "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_frame_that_is_not_json_gets_one_parse_error_object() {
    let server = TestServer::tls();
    let mut ws = connect_wss(server.wss_addr()).await;
    for frame in [
        "[1, 2",
        "[}",
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"whoami\"}, oops]",
        // Lone surrogates: JSON text must be Unicode, however it is escaped.
        r#"["\ud800"]"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"whoami"},{"jsonrpc":"2.0","id":2,"method":"play","params":{"script":"\udc00"}}]"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"play","params":{"script":"\ud83d"}}"#,
        "not json at all",
    ] {
        send(&mut ws, frame).await;
        let answer = recv(&mut ws).await;
        assert!(answer.is_object(), "{frame} → {answer}");
        assert_eq!(answer["error"]["code"], -32700, "{frame} → {answer}");
        assert_eq!(answer["id"], Value::Null, "{frame} → {answer}");
    }
    // A valid surrogate pair is fine (one character to Rhai).
    let answer = call(&mut ws, 4, "play", json!({"script": "\"\u{1F600}\".len"})).await;
    assert_eq!(answer["result"]["output"], "1", "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn health_answers_503_while_the_server_stops() {
    let server = TestServer::start(ServerConfig {
        script_limits: ScriptLimits {
            max_run_time: Duration::from_secs(2),
            ..ScriptLimits::default()
        },
        ..tls_config()
    });
    let addr = server.wss_addr();
    let (status, body) = https_get(addr, "/health").await;
    assert_eq!(status, 200, "{body}");
    // A script that runs until its 2 s limit keeps the stop draining.
    let mut ws = connect_wss(addr).await;
    ws.send(Message::text(
        json!({"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"loop {}"}}).to_string(),
    ))
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let handle = server.handle.clone();
    let stopping = tokio::spawn(async move { handle.stop().await });
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, body) = https_get(addr, "/health").await;
        if status == 503 {
            assert!(body.contains(r#""status":"stopping""#), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} while stopping: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The running script still answers (its limit), then the server says goodbye.
    assert_eq!(recv(&mut ws).await["error"]["code"], -32004);
    assert_eq!(recv_close_code(&mut ws).await, Some(1001));
    stopping.await.expect("stop");
    server.stop().await;
}
