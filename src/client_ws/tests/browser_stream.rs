//! Streamed `play` and `cancel` in the browser (wasm-bindgen-test, headless
//! Chromium and Firefox) against the real `circle-server` that
//! `.ci/browser-tests.sh` starts (`--auth --tls`, `--script-timeout-ms
//! 2000`): the same `PlayStream` as natively, on the page's WebSocket and
//! timers.
//!
//! Natively this file compiles to nothing.

#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use circle_client_ws::{CircleWsClient, CircleWsClientBuilder, CircleWsClientError, PlayEvent};
use futures_util::StreamExt;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_time::Instant;

wasm_bindgen_test_configure!(run_in_browser);

/// A key of the ethers.js vectors (any key may sign in).
const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

/// Prints `tick 0`, `tick 1`, … every 50 ms (the sandbox has no `sleep`)
/// while `n` is below the limit, then is worth 42.
fn ticking(limit: u32) -> String {
    format!(
        "let s = timestamp(); let n = 0;
         while n < {limit} {{ while s.elapsed < n.to_float() * 0.05 {{}} print(`tick ${{n}}`); n += 1; }}
         42"
    )
}

fn server_url() -> &'static str {
    match option_env!("CIRCLE_BROWSER_TEST_URL") {
        Some(url) => url,
        None => panic!(
            "CIRCLE_BROWSER_TEST_URL was not set when this test was compiled: run \
             `bash .ci/browser-tests.sh`, which starts the server and sets it"
        ),
    }
}

async fn signed_in() -> CircleWsClient {
    let client = CircleWsClientBuilder::new(server_url())
        .with_keypair(KEY)
        .with_request_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|error| panic!("build: {error}"));
    client
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect: {error}"));
    assert!(
        client
            .authenticate()
            .await
            .unwrap_or_else(|error| panic!("authenticate: {error}"))
    );
    client
}

async fn next_line(stream: &mut circle_client_ws::PlayStream) -> String {
    match stream.next().await {
        Some(Ok(PlayEvent::Line(line))) => line,
        other => panic!("expected a line, got {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn streamed_lines_arrive_in_order_then_the_answer() {
    let client = signed_in().await;
    let started = Instant::now();
    let mut stream = client.play_stream(ticking(5)).await.unwrap();
    let mut lines = Vec::new();
    let done = loop {
        match stream.next().await {
            Some(Ok(PlayEvent::Line(line))) => lines.push((line, started.elapsed())),
            Some(Ok(PlayEvent::Done(done))) => break done,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(stream.next().await.is_none());
    let texts: Vec<&str> = lines.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(texts, ["tick 0", "tick 1", "tick 2", "tick 3", "tick 4"]);
    // As printed: tick 4 comes 200 ms after tick 0.
    assert!(
        lines[4].1 - lines[0].1 >= Duration::from_millis(150),
        "{lines:?}"
    );
    assert_eq!(done.tail, "42");
    assert_eq!(done.output, format!("{}\n42", texts.join("\n")));
    client.disconnect().await;
}

#[wasm_bindgen_test]
async fn cancel_ends_the_stream_cancelled() {
    let client = signed_in().await;
    let mut stream = client.play_stream(ticking(1_000_000)).await.unwrap();
    assert_eq!(next_line(&mut stream).await, "tick 0");
    assert_eq!(next_line(&mut stream).await, "tick 1");
    let asked = Instant::now();
    assert!(stream.cancel().await.unwrap(), "it was running");
    let error = loop {
        match stream.next().await {
            Some(Ok(PlayEvent::Line(_))) => {}
            Some(Err(error)) => break error,
            other => panic!("expected Cancelled, got {other:?}"),
        }
    };
    let took = asked.elapsed();
    assert!(
        matches!(error, CircleWsClientError::Cancelled { .. }),
        "{error:?}"
    );
    assert!(took < Duration::from_millis(200), "{took:?}");
    assert!(stream.next().await.is_none());
    // The connection goes on.
    assert_eq!(client.play("40 + 2").await.unwrap().output, "42");
    client.disconnect().await;
}

#[wasm_bindgen_test]
async fn a_dropped_stream_cancels_its_play() {
    let client = signed_in().await;
    let mut stream = client.play_stream(ticking(1_000_000)).await.unwrap();
    assert_eq!(next_line(&mut stream).await, "tick 0");
    let id = stream.id();
    drop(stream);
    // The drop's `cancel` went first on this connection: the play is gone
    // by the time this one is read (it would otherwise run for 2 s).
    let answer = client
        .request("cancel", serde_json::json!({ "id": id }))
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!({ "cancelled": false }));
    assert_eq!(client.play("1 + 1").await.unwrap().output, "2");
    client.disconnect().await;
}
