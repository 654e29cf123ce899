//! Production behaviour under a bad day: certificate rotation, mutual TLS,
//! slow and greedy clients, origin policy, redirects and metrics.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use circle_server::{ServerConfig, ServerLimits};
use common::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::{Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The serial number of the certificate a fresh handshake is served.
async fn served_serial(addr: std::net::SocketAddr, trust: &[u8]) -> String {
    let tls = tls_connect(addr, client_tls(trust, &[b"http/1.1"]), "localhost")
        .await
        .expect("handshake");
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).expect("parses");
    parsed.raw_serial_as_string()
}

fn serial_of(pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM");
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parses");
    parsed.raw_serial_as_string()
}

#[tokio::test]
async fn certificate_rotation_under_live_connections() {
    let files = TempFiles::new();
    let (first_cert, first_key) = self_signed(
        &KeyPair::generate().expect("key"),
        leaf_params(&["localhost"]),
    );
    let (second_cert, second_key) = self_signed(
        &KeyPair::generate().expect("key"),
        leaf_params(&["localhost"]),
    );
    let cert_path = files.write("cert.pem", &first_cert);
    let key_path = files.write("key.pem", &first_key);
    let trust_both = format!("{first_cert}{second_cert}");

    let server = TestServer::start(ServerConfig {
        cert_path: Some(path_text(&cert_path)),
        key_path: Some(path_text(&key_path)),
        ..tls_config()
    });
    let addr = server.wss_addr();
    assert_eq!(
        served_serial(addr, trust_both.as_bytes()).await,
        serial_of(&first_cert)
    );
    let mut old = connect_wss_with(
        addr,
        client_tls(trust_both.as_bytes(), &[b"http/1.1"]),
        "localhost",
    )
    .await;
    assert_eq!(
        call(&mut old, 1, "play", json!({"script": "1 + 1"})).await["result"]["output"],
        "2"
    );

    std::fs::write(&cert_path, &second_cert).expect("write");
    std::fs::write(&key_path, &second_key).expect("write");
    let reloaded = server.handle.reload_tls().expect("reload accepted");
    assert_eq!(reloaded.serial, serial_of(&second_cert));
    assert_eq!(
        served_serial(addr, trust_both.as_bytes()).await,
        serial_of(&second_cert)
    );
    assert_eq!(
        call(&mut old, 2, "play", json!({"script": "2 + 2"})).await["result"]["output"],
        "4",
        "open connection untouched"
    );

    // A bad new file is refused and the current certificate keeps serving.
    std::fs::write(&key_path, &first_key).expect("write mismatching key");
    let refused = server
        .handle
        .reload_tls()
        .expect_err("mismatched key refused");
    assert!(refused.to_string().contains("does not match"), "{refused}");
    std::fs::write(&cert_path, "garbage").expect("write garbage");
    assert!(server.handle.reload_tls().is_err());
    assert_eq!(
        served_serial(addr, trust_both.as_bytes()).await,
        serial_of(&second_cert)
    );
    assert_eq!(
        server.handle.tls_certificate().expect("tls").serial,
        serial_of(&second_cert)
    );
    assert_eq!(
        call(&mut old, 3, "play", json!({"script": "3 + 3"})).await["result"]["output"],
        "6"
    );
    server.stop().await;
}

/// A client CA and a client certificate it issued; returns (CA PEM, client chain, client key).
fn client_identity(name: &str) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_params = ca_params(&format!("{name} client CA"));
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let client_key = KeyPair::generate().expect("client key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = params.signed_by(&client_key, &issuer).expect("client cert");
    let key = PrivateKeyDer::from_pem_slice(client_key.serialize_pem().as_bytes()).expect("key");
    (ca_cert.pem(), vec![client_cert.der().clone()], key)
}

fn mtls_client(
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dev_cert()).expect("dev cert");
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Whether a WebSocket round trip works with this client configuration.
async fn round_trip_works(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    // With TLS 1.3 the server's verdict on a client certificate arrives
    // after the client thinks the handshake is done, so judge by the upgrade.
    let Ok(tls) = tls_connect(addr, config, "localhost").await else {
        return false;
    };
    let url = format!("wss://localhost:{}/ws", addr.port());
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, Box::new(tls) as Box<dyn Io>),
    )
    .await
    {
        Ok(Ok((mut ws, _))) => {
            call(&mut ws, 1, "play", json!({"script": "40 + 2"})).await["result"]["output"] == "42"
        }
        _ => false,
    }
}

#[tokio::test]
async fn mutual_tls_accepts_known_clients_and_refuses_others() {
    let files = TempFiles::new();
    let (ca, chain, key) = client_identity("alice");
    let (_, stranger_chain, stranger_key) = client_identity("mallory");
    let ca_path = files.write("client-ca.pem", ca);

    let required = TestServer::start(ServerConfig {
        client_ca_path: Some(path_text(&ca_path)),
        client_auth_required: true,
        ..tls_config()
    });
    assert!(
        round_trip_works(
            required.wss_addr(),
            mtls_client(Some((chain.clone(), key.clone_key())))
        )
        .await,
        "a client with a certificate from the CA gets in"
    );
    assert!(
        !round_trip_works(required.wss_addr(), mtls_client(None)).await,
        "no certificate: refused"
    );
    assert!(
        !round_trip_works(
            required.wss_addr(),
            mtls_client(Some((stranger_chain.clone(), stranger_key.clone_key())))
        )
        .await,
        "a certificate from another CA: refused"
    );
    required.stop().await;

    let optional = TestServer::start(ServerConfig {
        client_ca_path: Some(path_text(ca_path)),
        ..tls_config()
    });
    assert!(
        round_trip_works(optional.wss_addr(), mtls_client(None)).await,
        "optional: no certificate is fine"
    );
    assert!(round_trip_works(optional.wss_addr(), mtls_client(Some((chain, key)))).await);
    assert!(
        !round_trip_works(
            optional.wss_addr(),
            mtls_client(Some((stranger_chain, stranger_key)))
        )
        .await,
        "optional: a bad certificate is still refused"
    );
    optional.stop().await;
}

#[tokio::test]
async fn whoami_shows_the_verified_client_certificate() {
    let files = TempFiles::new();
    let (ca, chain, key) = client_identity("alice");
    let serial = serial_of_der(&chain[0]);
    let server = TestServer::start(ServerConfig {
        client_ca_path: Some(path_text(files.write("client-ca.pem", ca))),
        ..tls_config()
    });
    let mut ws = connect_wss_with(
        server.wss_addr(),
        mtls_client(Some((chain, key))),
        "localhost",
    )
    .await;
    let me = call(&mut ws, 1, "whoami", json!({})).await;
    assert_eq!(
        me["result"]["client_certificate"],
        json!({"subject": "CN=alice", "serial": serial}),
        "{me}"
    );
    // Without a client certificate the field is absent.
    let mut anonymous = connect_wss_with(server.wss_addr(), mtls_client(None), "localhost").await;
    let me = call(&mut anonymous, 1, "whoami", json!({})).await;
    assert!(me["result"].get("client_certificate").is_none(), "{me}");
    server.stop().await;
}

/// A certificate's serial number as lowercase hex, read by OpenSSL (not by
/// the parser the server uses).
fn serial_of_der(cert: &CertificateDer<'_>) -> String {
    let files = TempFiles::new();
    let path = files.dir().join("client.der");
    std::fs::write(&path, cert.as_ref()).expect("write DER");
    let output = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-serial", "-in"])
        .arg(&path)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    text.trim()
        .strip_prefix("serial=")
        .expect("serial=…")
        .to_ascii_lowercase()
}

#[tokio::test]
async fn slowloris_is_dropped_after_the_handshake_timeout_while_others_are_served() {
    let server = TestServer::tls_with_limits(ServerLimits {
        tls_handshake_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    });
    let mut idle = TcpStream::connect(server.wss_addr()).await.expect("tcp");
    let opened = Instant::now();
    let mut ws = connect_wss(server.wss_addr()).await;
    assert_eq!(
        call(&mut ws, 1, "play", json!({"script": "40 + 2"})).await["result"]["output"],
        "42"
    );
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buffer))
        .await
        .expect("server drops it in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "connection closed, got {read:?}"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    assert_eq!(
        call(&mut ws, 2, "play", json!({"script": "40 + 2"})).await["result"]["output"],
        "42"
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_refused_cleanly() {
    let server = TestServer::tls_with_limits(ServerLimits {
        max_connections_per_ip: 5,
        ..ServerLimits::default()
    });
    let ca = std::fs::read(dev_cert()).expect("dev cert");
    let mut admitted = Vec::new();
    for _ in 0..5 {
        admitted.push(connect_wss(server.wss_addr()).await);
    }
    for _ in 0..10 {
        let tls = tls_connect(
            server.wss_addr(),
            client_tls(&ca, &[b"http/1.1"]),
            "localhost",
        )
        .await
        .expect("TLS still completes");
        let url = format!("wss://localhost:{}/ws", server.wss_addr().port());
        match tokio_tungstenite::client_async(url, Box::new(tls) as Box<dyn Io>).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 429)
            }
            other => panic!("expected HTTP 429, got {:?}", other.map(|_| "a WebSocket")),
        }
    }
    for (id, ws) in admitted.iter_mut().enumerate() {
        assert_eq!(
            call(ws, id as i64, "play", json!({"script": "40 + 2"})).await["result"]["output"],
            "42"
        );
    }
    drop(admitted.pop());
    // A slot freed is a slot reusable (the server notices the close first).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tls = tls_connect(
            server.wss_addr(),
            client_tls(&ca, &[b"http/1.1"]),
            "localhost",
        )
        .await
        .expect("tls");
        let url = format!("wss://localhost:{}/ws", server.wss_addr().port());
        if tokio_tungstenite::client_async(url, Box::new(tls) as Box<dyn Io>)
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "freed slot never reusable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_flood_on_one_connection_is_paced_without_slowing_another() {
    let server = TestServer::tls_with_limits(ServerLimits {
        max_requests_per_second: 200,
        ..ServerLimits::default()
    });
    let mut flood = connect_wss(server.wss_addr()).await;
    let mut calm = connect_wss(server.wss_addr()).await;
    let started = Instant::now();
    for id in 0..1000 {
        flood
            .feed(Message::text(
                json!({"jsonrpc":"2.0","id":id,"method":"whoami"}).to_string(),
            ))
            .await
            .expect("send");
    }
    flood.flush().await.expect("flush");
    // The calm connection is served at once while the flood is paced.
    let calm_started = Instant::now();
    for id in 0..20 {
        assert!(call(&mut calm, id, "whoami", json!({})).await["result"].is_object());
    }
    assert!(
        calm_started.elapsed() < Duration::from_secs(2),
        "the calm connection is unaffected"
    );
    // Protocol 1.1: nothing is refused; the flood is slowed to its rate.
    for _ in 0..1000 {
        let answer = recv(&mut flood).await;
        assert!(answer["result"].is_object(), "paced, not refused: {answer}");
    }
    let took = started.elapsed();
    // One second's burst (200) at once, then 200 a second: 800 more need 4 s.
    assert!(
        took >= Duration::from_millis(3_500),
        "a 1000-request burst over a 200/s limit took only {took:?}"
    );
    let metrics = scrape(server.wss_addr()).await;
    assert!(metric(&metrics, r#"circle_limit_hits_total{limit="request_rate"}"#) >= 1.0);
    server.stop().await;
}

#[tokio::test]
async fn origin_allow_list_guards_browser_upgrades() {
    let server = TestServer::start(ServerConfig {
        allowed_origins: Some(vec!["https://app.example.com".into()]),
        ..ServerConfig::default()
    });
    let upgrade = |origin: Option<&'static str>| {
        let url = server.ws_url();
        async move {
            let mut request = url.as_str().into_client_request().expect("request");
            if let Some(origin) = origin {
                request
                    .headers_mut()
                    .insert("Origin", origin.parse().expect("header"));
            }
            let authority = url
                .trim_start_matches("ws://")
                .trim_end_matches("/ws")
                .to_owned();
            let tcp = TcpStream::connect(authority).await.expect("tcp");
            tokio_tungstenite::client_async(request, Box::new(tcp) as Box<dyn Io>)
                .await
                .map(|_| ())
        }
    };
    assert!(upgrade(Some("https://app.example.com")).await.is_ok());
    assert!(
        upgrade(None).await.is_ok(),
        "non-browser clients send no Origin"
    );
    match upgrade(Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn plain_http_redirects_to_https_when_asked() {
    let server = TestServer::start(ServerConfig {
        tls_port: Some(0),
        redirect_http_to_https: true,
        ..tls_config()
    });
    let mut plain = TcpStream::connect(server.handle.ws_addr().expect("ws"))
        .await
        .expect("tcp");
    plain
        .write_all(b"GET /health?x=1 HTTP/1.1\r\nHost: localhost:1234\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    let _ =
        tokio::time::timeout(Duration::from_secs(10), plain.read_to_string(&mut response)).await;
    assert!(response.starts_with("HTTP/1.1 308"), "{response}");
    let location = format!(
        "location: https://localhost:{}/health?x=1",
        server.wss_addr().port()
    );
    assert!(response.to_lowercase().contains(&location), "{response}");
    // WebSockets on the plain listener still work.
    let mut ws = connect_ws(&server.ws_url()).await;
    assert_eq!(
        call(&mut ws, 1, "play", json!({"script": "40 + 2"})).await["result"]["output"],
        "42"
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_move_with_a_scripted_session() {
    let server = TestServer::start(ServerConfig {
        enable_auth: true,
        ..tls_config()
    });
    let before = scrape(server.wss_addr()).await;
    assert!(metric(&before, "circle_tls_certificate_expiry_seconds") > 86_400.0 * 30.0);
    assert_eq!(
        metric(&before, "circle_requests_total{method=\"play\"}"),
        0.0
    );

    let mut ws = connect_wss(server.wss_addr()).await;
    assert_eq!(
        error_code(&call(&mut ws, 1, "play", json!({"script": "1"})).await),
        -32002
    );
    assert_eq!(
        error_code(&call(&mut ws, 2, "authenticate", json!({"signature": "0x00"})).await),
        -32001
    );
    sign_in(&mut ws, &key(31)).await;
    for id in 10..13 {
        call(&mut ws, id, "play", json!({"script": "40 + 2"})).await;
    }
    let after = scrape(server.wss_addr()).await;
    assert_eq!(
        metric(&after, "circle_requests_total{method=\"play\"}"),
        4.0
    );
    assert_eq!(
        metric(
            &after,
            "circle_errors_total{method=\"play\",code=\"-32002\"}"
        ),
        1.0
    );
    assert_eq!(metric(&after, "circle_auth_total{result=\"success\"}"), 1.0);
    assert_eq!(metric(&after, "circle_auth_total{result=\"failure\"}"), 1.0);
    assert_eq!(metric(&after, "circle_script_duration_seconds_count"), 3.0);
    assert_eq!(
        metric(&after, "circle_connections_open{listener=\"wss\"}"),
        1.0
    );
    assert!(metric(&after, "circle_tls_handshakes_total") >= 3.0);
    server.stop().await;
}

#[tokio::test]
async fn web_root_is_served_over_https_with_hsts_and_stays_inside_its_folder() {
    let files = TempFiles::new();
    let root = files.dir().join("site");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("index.html"), "<h1>console</h1>").expect("write");
    std::fs::write(root.join("app.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::write(files.dir().join("secret.txt"), "not for the web").expect("write");
    let server = TestServer::start(ServerConfig {
        web_root: Some(root),
        ..tls_config()
    });
    let get = |path: &'static str| {
        let addr = server.wss_addr();
        async move {
            let ca = std::fs::read(dev_cert()).expect("dev cert");
            let mut tls = tls_connect(addr, client_tls(&ca, &[b"http/1.1"]), "localhost")
                .await
                .expect("handshake");
            tls.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .expect("write");
            let mut response = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
            String::from_utf8_lossy(&response).to_lowercase()
        }
    };
    let index = get("/").await;
    assert!(
        index.starts_with("http/1.1 200") && index.contains("<h1>console</h1>"),
        "{index}"
    );
    assert!(index.contains("strict-transport-security"), "{index}");
    assert!(
        get("/app.wasm")
            .await
            .contains("content-type: application/wasm")
    );
    for escape in ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"] {
        let response = get(escape).await;
        assert!(
            !response.contains("not for the web"),
            "{escape} escaped the web root: {response}"
        );
    }
    // The WebSocket endpoint and health still answer beside the files.
    let mut ws = connect_wss(server.wss_addr()).await;
    assert_eq!(
        call(&mut ws, 1, "play", json!({"script": "40 + 2"})).await["result"]["output"],
        "42"
    );
    assert!(get("/health").await.contains("\"status\":\"ok\""));
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    let server = TestServer::tls_with_limits(ServerLimits {
        idle_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    });
    let mut idle = connect_wss(server.wss_addr()).await;
    let mut busy = connect_wss(server.wss_addr()).await;
    let started = Instant::now();
    for id in 0..8 {
        assert!(call(&mut busy, id, "whoami", json!({})).await["result"].is_object());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the busy connection outlived the idle timeout"
    );
    assert_eq!(recv_close_code(&mut idle).await, Some(1001));
    server.stop().await;
}

/// An idle client is pinged once per interval: the session's tick timer is
/// set again each time it fires (one left expired would ping without pause).
#[tokio::test]
async fn an_idle_client_is_pinged_once_per_interval() {
    let interval = Duration::from_millis(200);
    let limits = ServerLimits {
        ping_interval: interval,
        ..ServerLimits::default()
    };
    let server = TestServer::tls_with_limits(limits);
    let mut ws = connect_wss(server.wss_addr()).await;
    let mut pings = 0;
    // Read for 5.5 intervals; the client answers each ping by itself.
    let until = tokio::time::Instant::now() + interval * 11 / 2;
    while let Ok(Some(message)) = tokio::time::timeout_at(until, ws.next()).await {
        match message.expect("the connection stays up") {
            Message::Ping(_) => pings += 1,
            other => panic!("only pings were due, got {other:?}"),
        }
    }
    assert!(
        (3..=7).contains(&pings),
        "{pings} pings in 1.1 s at one per 200 ms"
    );
    server.stop().await;
}

/// A fresh plain TCP connection to the server's `ws://` listener, with
/// `request` already written on it.
async fn raw_connection(server: &TestServer, request: &[u8]) -> TcpStream {
    let authority = server
        .ws_url()
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned();
    let mut tcp = TcpStream::connect(authority).await.expect("tcp");
    tcp.write_all(request).await.expect("request");
    tcp
}

/// Sends `request` as raw bytes on a fresh plain connection and returns the
/// head of the server's response (all it wrote, if it closed before the
/// head ended).
async fn raw_exchange(server: &TestServer, request: &[u8]) -> String {
    let mut tcp = raw_connection(server, request).await;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn each_upgrade_request_gets_a_websocket_or_an_http_status() {
    let server = TestServer::plain();
    let cases: [(&str, &str); 7] = [
        // Plain HTTP on the WebSocket path: say what it speaks.
        ("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 426"),
        // Upgrades are served on /ws only.
        (
            "GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 404",
        ),
        // An upgrade to something else (h2c) is ignored (RFC 9110 §7.8):
        // the request is plain HTTP.
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            "HTTP/1.1 426",
        ),
        // An old protocol version is told the one spoken here.
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 426",
        ),
        // No key, no handshake.
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "HTTP/1.1 400",
        ),
        // `Upgrade: websocket` without `Connection: Upgrade` is no handshake.
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 400",
        ),
        // Firefox's way of asking (`Connection: keep-alive, Upgrade`) is one.
        (
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 101",
        ),
    ];
    for (request, status) in cases {
        let answer = raw_exchange(&server, request.as_bytes()).await;
        assert!(
            answer.starts_with(status),
            "{request:?} should be answered {status}, got {answer:?}"
        );
    }
    let old = raw_exchange(
        &server,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(
        old.to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );
    // None of that disturbed the server.
    let mut ws = connect_ws(&server.ws_url()).await;
    assert!(call(&mut ws, 1, "whoami", json!({})).await["result"].is_object());
    server.stop().await;
}

#[tokio::test]
async fn a_frame_sent_with_the_upgrade_request_is_answered() {
    let server = TestServer::plain();
    // RFC 6455 §1.3's sample key and the accept value it must produce.
    let mut request = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    // A masked text frame in the same write: the server has read it along
    // with the request head and must hand it to the WebSocket.
    let payload = br#"{"jsonrpc":"2.0","id":7,"method":"whoami"}"#;
    let mask = [0x12, 0x34, 0x56, 0x78];
    request.extend_from_slice(&[0x81, 0x80 | payload.len() as u8]);
    request.extend_from_slice(&mask);
    request.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));

    let mut tcp = raw_connection(&server, &request).await;
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let answer = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        assert!(
            n > 0,
            "the server closed: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..n]);
        let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        let frame = &received[head_end + 4..];
        // An unmasked text frame with a 7- or 16-bit length.
        if frame.len() < 2 {
            continue;
        }
        let (len, start) = match frame[1] {
            126 if frame.len() >= 4 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            126 => continue,
            len => (len as usize, 2),
        };
        if frame.len() >= start + len {
            assert_eq!(frame[0], 0x81, "a final text frame");
            break serde_json::from_slice::<serde_json::Value>(&frame[start..start + len])
                .expect("JSON");
        }
    };
    assert_eq!(answer["id"], 7);
    assert!(answer["result"]["circle"].is_object(), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_but_never_reads_is_cut_off() {
    let server = TestServer::start(ServerConfig {
        limits: ServerLimits {
            // Writes that make no progress for 3 ping intervals end the session.
            ping_interval: Duration::from_millis(300),
            // Unpaced, so the server answers as fast as it reads and its
            // writes, not the pacing, are what stall.
            max_requests_per_second: 0,
            ..ServerLimits::default()
        },
        ..ServerConfig::default()
    });
    let mut tcp = raw_connection(
        &server,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    // Many masked `whoami` frames per write; their answers are never read.
    let payload = br#"{"jsonrpc":"2.0","id":1,"method":"whoami"}"#;
    let mask = [1, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let chunk = frame.repeat(1000);
    let started = Instant::now();
    // Write until the server stops reading (its own writes are stuck).
    while let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(&chunk)).await
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server kept reading for a minute although its answers were not read"
        );
    }
    assert_eq!(
        server.handle.open_connections(),
        1,
        "stalled, not yet closed"
    );
    // Stalled writes for 3 × 300 ms, then a bounded close: the slot is freed.
    let stalled = Instant::now();
    while server.handle.open_connections() > 0 {
        assert!(
            stalled.elapsed() < Duration::from_secs(10),
            "the session that does not read is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everyone else is still served.
    let mut ws = connect_ws(&server.ws_url()).await;
    assert!(call(&mut ws, 2, "whoami", json!({})).await["result"].is_object());
    drop(tcp);
    server.stop().await;
}
