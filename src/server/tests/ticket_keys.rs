//! Two servers sharing a session-ticket key file (`tls_ticket_key_file`):
//! a TLS session from one resumes on the other, as the handshake itself
//! says (`HandshakeKind::Resumed`); a server without the file does a full
//! handshake; rotation through `reload_tls` keeps old tickets valid while
//! their key is in the file and ends them when it is gone.

mod common;

use std::sync::Arc;

use circle_server::ServerConfig;
use common::*;
use rustls::HandshakeKind;
use serde_json::json;

fn server_with_keys(path: Option<&str>) -> TestServer {
    TestServer::start(ServerConfig {
        tls_ticket_key_file: path.map(str::to_owned),
        ..tls_config()
    })
}

/// A TLS 1.3 session with `server`: signs nothing, plays once, so the
/// client has read the server's session tickets.
async fn session_with(server: &TestServer, client: Arc<rustls::ClientConfig>) {
    let tls = tls_connect(server.wss_addr(), client, "localhost")
        .await
        .expect("handshake");
    let url = format!("wss://localhost:{}/ws", server.wss_addr().port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, Box::new(tls) as Box<dyn Io>)
        .await
        .expect("upgrade");
    let answer = call(&mut ws, 1, "play", json!({"script": "1 + 1"})).await;
    assert_eq!(answer["result"]["output"], "2");
}

/// How the next handshake with `server` goes for `client`.
async fn handshake_kind(server: &TestServer, client: Arc<rustls::ClientConfig>) -> HandshakeKind {
    let tls = tls_connect(server.wss_addr(), client, "localhost")
        .await
        .expect("handshake");
    tls.get_ref().1.handshake_kind().expect("handshake done")
}

fn fresh_client() -> Arc<rustls::ClientConfig> {
    let ca = std::fs::read(dev_cert()).expect("dev cert");
    client_tls(&ca, &[b"http/1.1"])
}

#[tokio::test]
async fn a_session_from_one_server_resumes_on_another_sharing_the_key_file() {
    let files = TempFiles::new();
    let old_key = [7u8; 48];
    let new_key = [9u8; 48];
    let path = path_text(files.write("tickets.key", old_key));
    let first = server_with_keys(Some(&path));
    let second = server_with_keys(Some(&path));
    let alone = server_with_keys(None);

    // The client's session cache is per server name, and all three are
    // "localhost": whichever server issued the ticket, it is offered.
    let client = fresh_client();
    session_with(&first, client.clone()).await;
    assert_eq!(
        handshake_kind(&second, client.clone()).await,
        HandshakeKind::Resumed
    );

    let client = fresh_client();
    session_with(&first, client.clone()).await;
    assert_eq!(
        handshake_kind(&alone, client.clone()).await,
        HandshakeKind::Full,
        "a server with its own keys cannot read the first server's ticket"
    );

    // Rotation: the new key issues, the old one still decrypts…
    let client = fresh_client();
    session_with(&first, client.clone()).await;
    std::fs::write(&path, [new_key, old_key].concat()).expect("rotate");
    second.handle.reload_tls().expect("reload with two keys");
    assert_eq!(
        handshake_kind(&second, client.clone()).await,
        HandshakeKind::Resumed
    );
    // …until it leaves the file.
    let client = fresh_client();
    session_with(&first, client.clone()).await;
    std::fs::write(&path, new_key).expect("retire the old key");
    second
        .handle
        .reload_tls()
        .expect("reload with the new key only");
    assert_eq!(
        handshake_kind(&second, client.clone()).await,
        HandshakeKind::Full
    );

    // A bad file is refused at reload and the keys in use stay.
    std::fs::write(&path, b"too short").expect("write");
    assert!(second.handle.reload_tls().is_err());
    let client = fresh_client();
    session_with(&second, client.clone()).await;
    assert_eq!(
        handshake_kind(&second, client).await,
        HandshakeKind::Resumed
    );

    first.stop().await;
    second.stop().await;
    alone.stop().await;
}

#[test]
fn a_bad_key_file_fails_start_up_with_a_clear_error() {
    let files = TempFiles::new();
    let path = path_text(files.write("tickets.key", [1u8; 47]));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let error = circle_server::spawn_circle_server(ServerConfig {
        tls_ticket_key_file: Some(path.clone()),
        port: 0,
        ..tls_config()
    })
    .expect_err("refused");
    let text = error.to_string();
    assert!(text.contains(&path) && text.contains("47 bytes"), "{text}");
}
