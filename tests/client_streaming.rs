//! Streamed `play` and `cancel` (protocol 1.1) through the client library,
//! against a real server: lines in order as they are printed, one answer,
//! cancel answered `Cancelled` at once, a dropped stream cancelling its
//! play, and a reader too slow for its lines.

mod support;

use std::time::{Duration, Instant};

use circle_client_ws::{
    CircleWsClient, CircleWsClientBuilder, CircleWsClientError, MAX_QUEUED_LINES, PlayDone,
    PlayEvent, PlayStream,
};
use circle_server::{ScriptLimits, ServerConfig};
use futures_util::StreamExt;
use support::*;

/// A server whose scripts may wait by watching the clock (no operation cap
/// to speak of, a run time well past what any test waits), with
/// `script_threads` script threads.
fn server(script_threads: usize) -> TestServer {
    TestServer::with_script_threads(
        ServerConfig {
            script_limits: ScriptLimits {
                max_operations: u64::MAX / 2,
                max_run_time: Duration::from_secs(30),
                ..ScriptLimits::default()
            },
            // These tests reason about the script threads (one held, one
            // freed by a cancel, a play queued behind a stream): no play is
            // answered inline on the connection thread.
            script_inline_operations: 0,
            ..Default::default()
        },
        script_threads,
    )
}

async fn client(server: &TestServer) -> CircleWsClient {
    let client = CircleWsClientBuilder::new(server.ws_url())
        .with_request_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    client.connect().await.unwrap();
    client
}

/// Prints `line 0` … `line 19`, one every 50 ms (the sandbox has no
/// `sleep`: it waits by watching the clock), then is worth 42.
const TWENTY_LINES: &str = r#"
let started = timestamp();
for n in 0..20 {
    while started.elapsed < n.to_float() * 0.05 {}
    print(`line ${n}`);
}
42
"#;

/// Prints a line every 20 ms until its 30 s limit, or until cancelled.
const FOREVER: &str = r#"
let started = timestamp();
let n = 0;
loop {
    while started.elapsed < n.to_float() * 0.02 {}
    print(`tick ${n}`);
    n += 1;
}
"#;

async fn next(stream: &mut PlayStream) -> Option<Result<PlayEvent, CircleWsClientError>> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream moves within 10 s")
}

async fn next_line(stream: &mut PlayStream) -> String {
    match next(stream).await {
        Some(Ok(PlayEvent::Line(line))) => line,
        other => panic!("expected a line, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_in_order_as_printed_then_the_answer_once() {
    let server = server(2);
    let client = client(&server).await;
    let sent = Instant::now();
    let mut stream = client.play_stream(TWENTY_LINES).await.unwrap();
    let mut lines = Vec::new();
    let done = loop {
        match next(&mut stream).await {
            Some(Ok(PlayEvent::Line(line))) => lines.push((line, sent.elapsed())),
            Some(Ok(PlayEvent::Done(done))) => break (done, sent.elapsed()),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(stream.next().await.is_none(), "nothing after the answer");
    assert!(stream.next().await.is_none(), "and still nothing");

    let expected: Vec<String> = (0..20).map(|n| format!("line {n}")).collect();
    let texts: Vec<&str> = lines.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(texts, expected);
    let (first, tenth, answered) = (lines[0].1, lines[10].1, done.1);
    eprintln!("first line after {first:?}, line 10 after {tenth:?}, answer after {answered:?}");
    // Streamed as printed (line 10 is printed 500 ms in), not with the answer.
    assert!(first < Duration::from_millis(300), "{first:?}");
    assert!(tenth >= Duration::from_millis(450), "{tenth:?}");
    assert!(
        answered - first >= Duration::from_millis(850),
        "{answered:?}"
    );
    assert_eq!(
        done.0,
        PlayDone {
            output: format!("{}\n42", expected.join("\n")),
            tail: "42".into(),
            dropped_lines: 0,
        }
    );

    // A script error ends the stream after the lines printed before it.
    let mut stream = client
        .play_stream("print(`a`); throw `boom`;")
        .await
        .unwrap();
    assert_eq!(next_line(&mut stream).await, "a");
    match next(&mut stream).await {
        Some(Err(error)) => assert_eq!(error.rpc_code(), Some(-32003), "{error:?}"),
        other => panic!("expected the script error, got {other:?}"),
    }
    assert!(stream.next().await.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_stream_cancelled_at_once_and_frees_the_script_thread() {
    // One script thread: the next play runs only if the cancelled one let go.
    let server = server(1);
    let client = client(&server).await;
    let mut stream = client.play_stream(FOREVER).await.unwrap();
    assert_eq!(next_line(&mut stream).await, "tick 0");
    assert_eq!(next_line(&mut stream).await, "tick 1");

    let asked = Instant::now();
    assert!(stream.cancel().await.unwrap(), "the play was running");
    let answered = asked.elapsed();
    // Lines printed before the cancel may still be queued; then Cancelled.
    let ended = loop {
        match next(&mut stream).await {
            Some(Ok(PlayEvent::Line(line))) => assert!(line.starts_with("tick "), "{line}"),
            Some(Err(CircleWsClientError::Cancelled { .. })) => break asked.elapsed(),
            other => panic!("expected Cancelled, got {other:?}"),
        }
    };
    assert!(stream.next().await.is_none());
    eprintln!("cancel answered after {answered:?}, the stream ended Cancelled after {ended:?}");
    assert!(ended < Duration::from_millis(200), "{ended:?}");

    // Cancelling again: the play is over.
    assert!(!stream.cancel().await.unwrap());

    let asked = Instant::now();
    assert_eq!(client.play("40 + 2").await.unwrap().output, "42");
    let took = asked.elapsed();
    eprintln!("the next play answered in {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceller_stops_the_play_from_another_task() {
    let server = server(1);
    let client = client(&server).await;
    let mut stream = client.play_stream(FOREVER).await.unwrap();
    assert_eq!(next_line(&mut stream).await, "tick 0");
    let canceller = stream.canceller();
    let cancelling = tokio::spawn(async move { canceller.cancel().await });
    let error = loop {
        match next(&mut stream).await {
            Some(Ok(PlayEvent::Line(_))) => {}
            Some(Err(error)) => break error,
            other => panic!("expected an error, got {other:?}"),
        }
    };
    assert!(error.is_cancelled(), "{error:?}");
    assert_eq!(error.rpc_code(), Some(-32006));
    assert!(cancelling.await.unwrap().unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_cancels_its_play() {
    let server = server(1);
    let client = client(&server).await;
    let mut stream = client.play_stream(FOREVER).await.unwrap();
    assert_eq!(next_line(&mut stream).await, "tick 0");
    let dropped = Instant::now();
    drop(stream);
    // Without the cancel, FOREVER would hold the only script thread for 30 s.
    assert_eq!(client.play("40 + 2").await.unwrap().output, "42");
    let took = dropped.elapsed();
    eprintln!("after dropping the stream, the next play answered in {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");

    // The same before the first line: dropped as soon as it was sent.
    let stream = client.play_stream(FOREVER).await.unwrap();
    drop(stream);
    let dropped = Instant::now();
    assert_eq!(client.play("1 + 1").await.unwrap().output, "2");
    assert!(dropped.elapsed() < Duration::from_millis(500));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_gets_the_rest_in_the_tail() {
    let server = server(1);
    let client = client(&server).await;
    let total = MAX_QUEUED_LINES + 500;
    let script = format!("for n in 0..{total} {{ print(`line ${{n}}`); }} `end`");
    let mut stream = client.play_stream(script).await.unwrap();
    // The only script thread runs this play after the streamed one, so its
    // answer comes after every line of the first: they wait unread.
    assert_eq!(client.play("1").await.unwrap().output, "1");
    let mut lines = Vec::new();
    let done = loop {
        match next(&mut stream).await {
            Some(Ok(PlayEvent::Line(line))) => lines.push(line),
            Some(Ok(PlayEvent::Done(done))) => break done,
            other => panic!("unexpected {other:?}"),
        }
    };
    eprintln!(
        "{} lines delivered, {} dropped, a tail of {} bytes",
        lines.len(),
        done.dropped_lines,
        done.tail.len()
    );
    assert_eq!(lines.len(), MAX_QUEUED_LINES, "the queue's bound");
    assert_eq!(done.dropped_lines, 500);
    // Nothing lost, nothing twice: the lines, then the tail, are the output.
    lines.push(done.tail.clone());
    assert_eq!(lines.join("\n"), done.output);
    assert!(done.tail.starts_with(&format!("line {MAX_QUEUED_LINES}\n")));
    assert!(done.tail.ends_with("\nend"));
    server.stop().await;
}
