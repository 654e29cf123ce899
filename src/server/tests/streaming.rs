//! Protocol 1.1's streamed `play` and `cancel`, as a third-party client sees
//! them: raw JSON text frames from a plain WebSocket library.

mod common;

use std::time::{Duration, Instant};

use circle_server::{ScriptLimits, ServerConfig};
use common::frames::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_streamed_play_sends_each_line_as_it_is_printed_then_answers_once() {
    let server = TestServer::start(waiting_config());
    let mut ws = connect_wss(server.wss_addr()).await;
    twenty_streamed_lines_then_one_answer(&mut ws, "embedded").await;
    server.stop().await;
}

#[tokio::test]
async fn cancel_answers_a_running_play_32006_at_once_and_frees_its_script_thread() {
    // One script thread: the next play can only run if the cancelled one
    // let go of it.
    let server = TestServer::with_script_threads(waiting_config(), 1);
    let mut ws = connect_wss(server.wss_addr()).await;
    send(&mut ws, play(1, FOREVER, false)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let asked = Instant::now();
    send(&mut ws, cancel(2, 1)).await;
    let (answers, notifications) = answers_to(&mut ws, &[1, 2]).await;
    assert!(notifications.is_empty(), "{notifications:?}");
    let (play_answer, play_at) = &answers[0];
    let (cancel_answer, _) = &answers[1];
    let latency = *play_at - asked;
    eprintln!("cancelled play answered {latency:?} after the cancel was sent");
    assert_eq!(error_code(play_answer), -32006, "{play_answer}");
    assert!(latency < Duration::from_millis(200), "{latency:?}");
    assert_eq!(cancel_answer["result"], json!({"cancelled": true}));

    // The script thread is free: the next play runs at once.
    let asked = Instant::now();
    let answer = call(&mut ws, 3, "play", json!({"script": "40 + 2"})).await;
    let took = asked.elapsed();
    eprintln!("the next play answered in {took:?}");
    assert_eq!(answer["result"]["output"], "42", "{answer}");
    assert!(took < Duration::from_millis(500), "{took:?}");

    // Cancelling it again, or a play already answered, cancels nothing.
    for (id, play_id) in [(4, 1), (5, 3)] {
        let answer = call(&mut ws, id, "cancel", json!({"id": play_id})).await;
        assert_eq!(answer["result"], json!({"cancelled": false}), "{answer}");
    }
    server.stop().await;
}

#[tokio::test]
async fn cancel_of_a_queued_play_answers_32006_and_it_never_runs() {
    let server = TestServer::with_script_threads(waiting_config(), 1);
    let mut ws = connect_wss(server.wss_addr()).await;
    // Play 1 holds the only script thread; play 2 waits in the queue. Were
    // it ever run, its printed line would come as a notification.
    send(&mut ws, play(1, FOREVER, false)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut ws, play(2, "print('ran'); 2", true)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let asked = Instant::now();
    send(&mut ws, cancel(3, 2)).await;
    let (answers, notifications) = answers_to(&mut ws, &[2, 3]).await;
    let latency = answers[0].1 - asked;
    eprintln!("queued play answered {latency:?} after the cancel was sent");
    assert_eq!(error_code(&answers[0].0), -32006, "{:?}", answers[0]);
    assert!(latency < Duration::from_millis(200), "{latency:?}");
    assert_eq!(answers[1].0["result"], json!({"cancelled": true}));
    assert!(notifications.is_empty(), "{notifications:?}");

    // Free the thread; the queue goes on past the cancelled play to play 5.
    send(&mut ws, cancel(4, 1)).await;
    send(&mut ws, play(5, "print('five'); 5", true)).await;
    let (answers, notifications) = answers_to(&mut ws, &[1, 4, 5]).await;
    assert_eq!(error_code(&answers[0].0), -32006, "{:?}", answers[0]);
    assert_eq!(answers[1].0["result"], json!({"cancelled": true}));
    assert_eq!(answers[2].0["result"]["output"], "five\n5");
    // Play 2's line would have been queued before play 5's.
    assert_eq!(
        notifications,
        vec![json!({"jsonrpc":"2.0","method":"output","params":{"id":5,"line":"five"}})],
        "play 2 never ran"
    );
    server.stop().await;
}

#[tokio::test]
async fn cancel_reaches_only_the_connections_own_plays() {
    let server = TestServer::start(waiting_config());
    let mut owner = connect_wss(server.wss_addr()).await;
    let mut other = connect_wss(server.wss_addr()).await;
    let script = r#"
        let started = timestamp();
        while started.elapsed < 0.5 {}
        print("still here");
        "done"
    "#;
    send(&mut owner, play(5, script, true)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The same id on another connection, and an id nobody used.
    for (id, play_id) in [(1, 5), (2, 12345)] {
        let answer = call(&mut other, id, "cancel", json!({"id": play_id})).await;
        assert_eq!(answer["result"], json!({"cancelled": false}), "{answer}");
    }
    // A string id is a different id from the number.
    let answer = call(&mut owner, 6, "cancel", json!({"id": "5"})).await;
    assert_eq!(answer["result"], json!({"cancelled": false}), "{answer}");

    let (answers, notifications) = answers_to(&mut owner, &[5]).await;
    assert_eq!(answers[0].0["result"]["output"], "still here\ndone");
    assert_eq!(notifications.len(), 1, "{notifications:?}");
    assert_eq!(notifications[0]["params"]["line"], "still here");
    server.stop().await;
}

#[tokio::test]
async fn closing_the_connection_frees_the_script_thread_of_its_running_play() {
    let server = TestServer::with_script_threads(waiting_config(), 1);
    // Closed cleanly, then dropped without a close frame.
    for clean in [true, false] {
        let mut leaving = connect_wss(server.wss_addr()).await;
        send(&mut leaving, play(1, FOREVER, true)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if clean {
            leaving.close(None).await.expect("close");
        }
        drop(leaving);

        let mut next = connect_wss(server.wss_addr()).await;
        let asked = Instant::now();
        let answer = call(&mut next, 1, "play", json!({"script": "6 * 7"})).await;
        let took = asked.elapsed();
        eprintln!("closed cleanly: {clean}; the next connection's play answered in {took:?}");
        assert_eq!(answer["result"]["output"], "42", "{answer}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
    let metrics = scrape(server.wss_addr()).await;
    assert_eq!(metric(&metrics, "circle_scripts_cancelled_total"), 2.0);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_a_flood_holds_back_only_its_own_script() {
    let server = TestServer::start(ServerConfig {
        script_limits: ScriptLimits {
            // The answer carries every line: room for far more than the
            // socket buffers hold, so only pacing can stop the flood.
            max_output_bytes: 256 * 1024 * 1024,
            max_memory_bytes: 512 * 1024 * 1024,
            ..waiting_limits()
        },
        ..tls_config()
    });
    let addr = server.wss_addr();
    let mut flooding = connect_wss(addr).await;
    // 100-byte lines, as fast as the script can print them.
    let flood = r#"
        let pad = "";
        while pad.len < 90 { pad += "x"; }
        let i = 0;
        loop { print(`${i} ${pad}`); i += 1; }
    "#;
    send(&mut flooding, play(1, flood, true)).await;

    // The client reads nothing: the streamed-line count stops growing.
    let streamed =
        || async { metric(&scrape(addr).await, "circle_output_lines_streamed_total") as u64 };
    let started = Instant::now();
    let mut last = streamed().await;
    let plateau = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = streamed().await;
        if now == last && now > 0 {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still streaming {now} lines to a client that reads nothing"
        );
        last = now;
    };
    eprintln!(
        "paced after {:?} at {plateau} lines ({} KiB in the socket buffers and the queue)",
        started.elapsed(),
        plateau * 100 / 1024
    );
    // What is queued for it is bounded: held a while longer, it stays put.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(streamed().await, plateau, "paced, not dropped or queued");
    assert!(plateau * 100 < 64 * 1024 * 1024, "{plateau} lines");

    // Other connections are served meanwhile, plays included.
    let mut other = connect_wss(addr).await;
    let asked = Instant::now();
    assert!(call(&mut other, 1, "whoami", json!({})).await["result"].is_object());
    let answer = call(&mut other, 2, "play", json!({"script": "6 * 7"})).await;
    let took = asked.elapsed();
    eprintln!("another connection served in {took:?} during the flood");
    assert_eq!(answer["result"]["output"], "42", "{answer}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // The client reads again: the flood goes on where it stood, nothing
    // lost, nothing twice; then it cancels it.
    let mut next = 0_u64;
    let mut cancelled_at = None;
    let answer = loop {
        let frame = recv(&mut flooding).await;
        if !is_output(&frame) {
            if frame["id"] == 2 {
                assert_eq!(frame["result"], json!({"cancelled": true}), "{frame}");
                continue;
            }
            break frame;
        }
        let line = frame["params"]["line"].as_str().expect("line");
        let (number, pad) = line.split_once(' ').expect("numbered line");
        assert_eq!(number, next.to_string(), "lines in order, each once");
        assert_eq!(pad.len(), 90);
        next += 1;
        if next == plateau + 2000 {
            send(&mut flooding, cancel(2, 1)).await;
            cancelled_at = Some(next);
        }
    };
    eprintln!("read {next} lines in order, then: {answer}");
    assert!(cancelled_at.is_some(), "the flood resumed past the plateau");
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(error_code(&answer), -32006, "{answer}");
    // Nothing of the play comes after its answer.
    let next = call(&mut flooding, 3, "whoami", json!({})).await;
    assert!(next["result"].is_object(), "{next}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_a_flood_is_cut_off_and_its_script_stopped() {
    let server = TestServer::with_script_threads(
        ServerConfig {
            script_limits: ScriptLimits {
                max_output_bytes: 256 * 1024 * 1024,
                max_memory_bytes: 512 * 1024 * 1024,
                ..waiting_limits()
            },
            limits: circle_server::ServerLimits {
                ping_interval: Duration::from_secs(1),
                ..circle_server::ServerLimits::default()
            },
            ..tls_config()
        },
        1,
    );
    let addr = server.wss_addr();
    let mut flooding = connect_wss(addr).await;
    let started = Instant::now();
    send(
        &mut flooding,
        play(
            1,
            r#"let i = 0; loop { print(`line ${i}`); i += 1; }"#,
            true,
        ),
    )
    .await;
    // Never read: after three ping intervals without progress in writing,
    // the server closes the connection and cancels its play.
    loop {
        let text = scrape(addr).await;
        if metric(&text, "circle_scripts_cancelled_total") == 1.0 {
            assert_eq!(
                metric(&text, r#"circle_limit_hits_total{limit="idle"}"#),
                1.0,
                "cut off as a client that does not read"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still serving a client that reads nothing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("cut off after {:?}", started.elapsed());
    // Its script thread, the only one, is free.
    let mut next = connect_wss(addr).await;
    let asked = Instant::now();
    let answer = call(&mut next, 1, "play", json!({"script": "6 * 7"})).await;
    let took = asked.elapsed();
    eprintln!("the next connection's play answered in {took:?}");
    assert_eq!(answer["result"]["output"], "42", "{answer}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    drop(flooding);
    server.stop().await;
}
