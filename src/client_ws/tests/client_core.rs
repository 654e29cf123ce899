//! The client's request machinery over plain ws:// against a small fake
//! peer: pipelining, out-of-order answers, per-request timeouts, lost
//! connections, reconnects.
//!
//! Native only (a fake tokio server in the test process); the browser side
//! is tests/browser_client.rs.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};

use circle_client_ws::{CircleWsClientBuilder, CircleWsClientError, ReconnectPolicy};
use support::FakeServer;

#[tokio::test]
async fn answers_are_matched_by_id_even_out_of_order() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url()).build().unwrap();
    client.connect().await.unwrap();
    // The first request is answered last.
    let slow = client.play("sleep:300:slow");
    let fast = client.play("sleep:10:fast");
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(slow.unwrap().output, "slow");
    assert_eq!(fast.unwrap().output, "fast");
    client.disconnect().await;
}

#[tokio::test]
async fn many_tasks_share_one_client() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url()).build().unwrap();
    client.connect().await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let delay = (i * 7) % 50;
                let answer = client
                    .play(format!("sleep:{delay}:answer {i}"))
                    .await
                    .unwrap();
                assert_eq!(answer.output, format!("answer {i}"));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn each_request_has_its_own_timeout() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url())
        .with_request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let (slow, quick) = tokio::join!(client.play("sleep:2000:late"), client.play("quick"));
    match slow {
        Err(CircleWsClientError::Timeout { operation, after }) => {
            assert_eq!(operation, "play");
            assert_eq!(after, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(quick.unwrap().output, "quick");
    // The connection is still usable after a timeout.
    assert_eq!(client.play("again").await.unwrap().output, "again");
}

#[tokio::test]
async fn a_lost_connection_fails_requests_in_flight() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url())
        .with_request_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let started = Instant::now();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.play("sleep:10000:never").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let closer = client.play("close").await;
    assert!(
        matches!(closer, Err(CircleWsClientError::ConnectionLost { .. })),
        "{closer:?}"
    );
    match in_flight.await.unwrap() {
        Err(CircleWsClientError::ConnectionLost { reason }) => {
            assert!(reason.contains("1001"), "{reason}")
        }
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");
    assert!(!client.is_connected());
    // Later requests fail fast with the same cause.
    let later = client.play("x").await.unwrap_err();
    assert!(
        matches!(later, CircleWsClientError::ConnectionLost { .. }),
        "{later:?}"
    );
}

#[tokio::test]
async fn a_dropped_tcp_connection_is_noticed() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url()).build().unwrap();
    client.connect().await.unwrap();
    let error = client.play("drop").await.unwrap_err();
    assert!(
        matches!(error, CircleWsClientError::ConnectionLost { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn requests_need_a_connection() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url()).build().unwrap();
    assert!(matches!(
        client.whoami().await,
        Err(CircleWsClientError::NotConnected)
    ));
    client.connect().await.unwrap();
    client.connect().await.unwrap(); // idempotent
    assert_eq!(client.whoami().await.unwrap().circle.name, "fake");
    client.disconnect().await;
    assert!(matches!(
        client.whoami().await,
        Err(CircleWsClientError::NotConnected)
    ));
}

#[tokio::test]
async fn server_errors_keep_code_and_message() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url()).build().unwrap();
    client.connect().await.unwrap();
    let error = client
        .request("no_such_method", serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.rpc_code(), Some(-32601));
    assert!(error.to_string().contains("no_such_method"), "{error}");
}

#[tokio::test]
async fn connection_refused_is_its_own_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = CircleWsClientBuilder::new(format!("ws://127.0.0.1:{port}/ws"))
        .build()
        .unwrap();
    let error = client.connect().await.unwrap_err();
    assert!(
        matches!(error, CircleWsClientError::ConnectionRefused { .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_silent_peer_times_out_the_connect() {
    // Accepts TCP and then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    for url in [
        format!("ws://127.0.0.1:{port}/ws"),
        format!("wss://localhost:{port}/ws"),
    ] {
        let client = CircleWsClientBuilder::new(&url)
            .with_connect_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let started = Instant::now();
        let error = client.connect().await.unwrap_err();
        assert!(
            matches!(error, CircleWsClientError::Timeout { .. }),
            "{url}: {error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn a_wrong_path_says_so() {
    // A peer that answers HTTP 404 to everything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = tcp.read(&mut buffer).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let client = CircleWsClientBuilder::new(format!("ws://127.0.0.1:{port}/nope"))
        .build()
        .unwrap();
    let error = client.connect().await.unwrap_err();
    match error {
        CircleWsClientError::WebSocketHandshake { detail, .. } => {
            assert!(detail.contains("404"), "{detail}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn reconnects_after_a_lost_connection() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url())
        .with_reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_attempts: Some(20),
        })
        .with_request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let lost = client.play("close").await.unwrap_err();
    assert!(
        matches!(lost, CircleWsClientError::ConnectionLost { .. }),
        "{lost:?}"
    );
    // The next request waits for the new connection instead of failing.
    assert_eq!(client.play("back").await.unwrap().output, "back");
    assert!(client.is_connected());
    // disconnect() stops reconnecting.
    client.disconnect().await;
    assert!(matches!(
        client.play("x").await,
        Err(CircleWsClientError::NotConnected)
    ));
}

#[tokio::test]
async fn reconnecting_gives_up_when_told_to() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url())
        .with_reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            max_attempts: Some(3),
        })
        .build()
        .unwrap();
    client.connect().await.unwrap();
    drop(server); // nothing listens any more
    let _ = client.play("close").await;
    let started = Instant::now();
    let error = loop {
        match client.play("x").await {
            Err(CircleWsClientError::ConnectionLost { reason }) if reason.contains("gave up") => {
                break reason;
            }
            other if started.elapsed() > Duration::from_secs(10) => panic!("still {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(error.contains("3 attempt"), "{error}");
}

#[tokio::test]
async fn a_refused_signature_is_ok_false() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url())
        .with_keypair("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
        .build()
        .unwrap();
    client.connect().await.unwrap();
    assert!(!client.authenticate().await.unwrap());
}

#[tokio::test]
async fn a_challenge_for_another_address_is_not_signed() {
    let server = FakeServer::foreign_challenges().await;
    let client = CircleWsClientBuilder::new(server.ws_url())
        .with_keypair("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
        .build()
        .unwrap();
    client.connect().await.unwrap();
    match client.authenticate().await {
        Err(CircleWsClientError::AuthenticationRefused { reason }) => {
            assert!(reason.contains("refusing to sign"), "{reason}")
        }
        other => panic!("expected AuthenticationRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_given_at_authenticate_is_checked_and_kept_only_when_accepted() {
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url()).build().unwrap();
    client.connect().await.unwrap();
    // Malformed: refused before anything is sent, without echoing the key.
    match client.authenticate_with_keypair("0xnot-a-key").await {
        Err(CircleWsClientError::InvalidKeypair(reason)) => {
            assert!(!reason.contains("not-a-key"), "{reason}")
        }
        other => panic!("expected InvalidKeypair, got {other:?}"),
    }
    // Well-formed but refused by the server (this fake refuses everyone):
    // Ok(false), and the client does not adopt the key.
    let refused = client
        .authenticate_with_keypair(
            "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
        )
        .await
        .unwrap();
    assert!(!refused);
    assert_eq!(client.address(), None);
    // Still usable afterwards.
    assert_eq!(client.play("after").await.unwrap().output, "after");
}

#[tokio::test]
async fn stray_output_notifications_are_ignored_and_lines_reach_their_stream() {
    use circle_client_ws::PlayEvent;
    use futures_util::StreamExt;
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url()).build().unwrap();
    client.connect().await.unwrap();
    // The fake also sends a line under an unknown id and a malformed one.
    let mut stream = client
        .play_stream("lines:3:line 0\nline 1\nline 2\nvalue")
        .await
        .unwrap();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item.unwrap());
    }
    assert_eq!(items.len(), 4, "{items:?}");
    for (n, item) in items.iter().take(3).enumerate() {
        assert_eq!(item, &PlayEvent::Line(format!("line {n}")));
    }
    match &items[3] {
        PlayEvent::Done(done) => assert_eq!(done.tail, "value"),
        other => panic!("expected the answer, got {other:?}"),
    }
    // A plain play on the same connection: no line of anyone's reaches it.
    assert_eq!(client.play("lines:2:plain").await.unwrap().output, "plain");
    assert!(client.is_connected());
}

#[tokio::test]
async fn a_silent_stream_times_out_after_the_request_timeout() {
    use futures_util::StreamExt;
    let server = FakeServer::plain().await;
    let client = CircleWsClientBuilder::new(server.ws_url())
        .with_request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let started = Instant::now();
    let mut stream = client.play_stream("sleep:5000:late").await.unwrap();
    match stream.next().await {
        Some(Err(CircleWsClientError::Timeout { operation, after })) => {
            assert_eq!(operation, "play");
            assert_eq!(after, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(stream.next().await.is_none(), "the stream ended");
    // The connection is still usable (the fake answers the cancel with
    // -32601, which nobody waits for).
    assert_eq!(client.play("again").await.unwrap().output, "again");
}
