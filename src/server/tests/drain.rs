//! Draining: `/health` answers 503 from the first moment of a stop while
//! everything else, new WebSockets included, is served for the drain
//! period; then the graceful stop closes every session with 1001.

mod common;

use std::time::{Duration, Instant};

use circle_server::ServerConfig;
use common::*;
use serde_json::json;

#[tokio::test]
async fn health_is_503_during_the_drain_while_new_websockets_are_served_then_1001() {
    let drain = Duration::from_secs(3);
    let server = TestServer::start(ServerConfig {
        drain_period: drain,
        ..tls_config()
    });
    let addr = server.wss_addr();
    assert_eq!(https_get(addr, "/health").await.0, 200);
    let mut before = connect_wss(addr).await;

    let handle = server.handle.clone();
    let started = Instant::now();
    let stopping = tokio::spawn(async move { handle.stop().await });

    // At once: the balancer's health check fails…
    let (status, body) = https_get(addr, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""status":"draining""#), "{body}");
    // …while a client the balancer still sends is served in full.
    let mut during = connect_wss(addr).await;
    let answer = call(&mut during, 1, "play", json!({"script": "40 + 2"})).await;
    assert_eq!(answer["result"]["output"], "42", "{answer}");
    let answer = call(&mut before, 1, "play", json!({"script": "1 + 1"})).await;
    assert_eq!(answer["result"]["output"], "2", "{answer}");
    assert!(
        started.elapsed() < drain,
        "all of that happened inside the drain"
    );

    // Then the graceful stop: both sessions closed with 1001, not before
    // the drain period is over.
    assert_eq!(recv_close_code(&mut before).await, Some(1001));
    assert_eq!(recv_close_code(&mut during).await, Some(1001));
    assert!(
        started.elapsed() >= drain,
        "closed after {:?}, before the {drain:?} drain ended",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("stop returns")
        .expect("stop task");
    server.stop().await;
}

#[tokio::test]
async fn a_second_stop_ends_the_drain_at_once() {
    let server = TestServer::start(ServerConfig {
        drain_period: Duration::from_secs(60),
        ..tls_config()
    });
    let mut ws = connect_wss(server.wss_addr()).await;
    let handle = server.handle.clone();
    let first = tokio::spawn(async move { handle.stop().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(https_get(server.wss_addr(), "/health").await.0, 503);
    let started = Instant::now();
    server.handle.stop().await;
    assert_eq!(recv_close_code(&mut ws).await, Some(1001));
    tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the first stop returns too")
        .expect("stop task");
    assert!(started.elapsed() < Duration::from_secs(15));
    server.stop().await;
}
