//! Shared pieces of the server's integration tests: starting servers,
//! connecting real WebSocket clients over real TCP and TLS, and making real
//! certificates.
#![allow(dead_code)]

pub mod frames;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use circle_protocol::SigningKey;
use circle_server::{ServerConfig, ServerHandle, spawn_circle_server};
use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A byte stream: plain TCP or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The kit's one definition (paths); `ServerConfig` takes text, hence
/// [`path_text`].
#[allow(unused_imports)]
pub use circle_test_support::{TempFiles, dev_cert, dev_key};

/// A path as `ServerConfig`'s path fields take it.
pub fn path_text(path: impl AsRef<Path>) -> String {
    path.as_ref().display().to_string()
}

/// A server on 127.0.0.1 with a free port, stopped when dropped.
pub struct TestServer {
    pub handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn start(config: ServerConfig) -> TestServer {
        Self::with_script_threads(config, 2)
    }

    /// [`TestServer::start`] with `script_threads` script threads (the
    /// others have 2).
    pub fn with_script_threads(config: ServerConfig, script_threads: usize) -> TestServer {
        let config = ServerConfig {
            host: "127.0.0.1".into(),
            port: 0,
            connection_threads: 2,
            script_threads,
            ..config
        };
        let (task, handle) = spawn_circle_server(config).expect("server starts");
        TestServer {
            handle,
            task: Some(task),
        }
    }

    /// A test server around one started elsewhere.
    pub fn from_parts(
        handle: ServerHandle,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    ) -> TestServer {
        TestServer {
            handle,
            task: Some(task),
        }
    }

    pub fn plain() -> TestServer {
        Self::start(ServerConfig::default())
    }

    pub fn tls() -> TestServer {
        Self::start(tls_config())
    }

    /// A TLS server with the development certificate and these limits.
    pub fn tls_with_limits(limits: circle_server::ServerLimits) -> TestServer {
        Self::start(ServerConfig {
            limits,
            ..tls_config()
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.handle.ws_addr().expect("plain listener"))
    }

    pub fn wss_addr(&self) -> SocketAddr {
        self.handle.wss_addr().expect("TLS listener")
    }

    pub async fn stop(mut self) {
        self.handle.stop().await;
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

pub fn tls_config() -> ServerConfig {
    ServerConfig {
        enable_tls: true,
        cert_path: Some(path_text(dev_cert())),
        key_path: Some(path_text(dev_key())),
        ..ServerConfig::default()
    }
}

/// A rustls client configuration trusting the PEM certificates in `ca_pem`.
pub fn client_tls(ca_pem: &[u8], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.expect("CA PEM parses"))
            .expect("CA accepted");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Opens a TLS connection to `addr`, verifying the server as `server_name`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// A WebSocket over plain TCP.
pub async fn connect_ws(url: &str) -> Ws {
    try_connect_ws(url).await.expect("ws connects")
}

pub async fn try_connect_ws(url: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let authority = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let tcp = TcpStream::connect(authority).await?;
    let (ws, _) = tokio_tungstenite::client_async(url, Box::new(tcp) as Box<dyn Io>).await?;
    Ok(ws)
}

/// A WebSocket over TLS trusting the development certificate.
pub async fn connect_wss(addr: SocketAddr) -> Ws {
    let ca = std::fs::read(dev_cert()).expect("dev cert");
    connect_wss_with(addr, client_tls(&ca, &[b"http/1.1"]), "localhost").await
}

pub async fn connect_wss_with(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Ws {
    let tls = tls_connect(addr, config, server_name)
        .await
        .expect("TLS handshake");
    let url = format!("wss://{server_name}:{}/ws", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, Box::new(tls) as Box<dyn Io>)
        .await
        .expect("websocket upgrade over TLS");
    ws
}

/// Sends a text frame.
pub async fn send(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::text(text.into())).await.expect("send");
}

/// The next text frame, parsed; panics on close or timeout.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("an answer within 20 s")
            .expect("connection open")
            .expect("valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON answer"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The close frame's code, after any text frames.
pub async fn recv_close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("close within 20 s");
        match message {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// One request, one answer.
pub async fn call(ws: &mut Ws, id: i64, method: &str, params: Value) -> Value {
    send(
        ws,
        json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string(),
    )
    .await;
    let answer = recv(ws).await;
    assert_eq!(
        answer["id"],
        json!(id),
        "answer matches the request: {answer}"
    );
    answer
}

pub fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error, got {answer}"))
}

/// Signs in on `ws` with `key`: fetch_nonce by public key, sign, authenticate.
pub async fn sign_in(ws: &mut Ws, key: &SigningKey) -> Value {
    let challenge = call(
        ws,
        1,
        "fetch_nonce",
        json!({"pubkey": key.public_key().to_compressed_hex()}),
    )
    .await;
    let message = challenge["result"]["message"]
        .as_str()
        .expect("challenge message");
    let signature = key.sign_personal_message(message).to_hex();
    call(ws, 2, "authenticate", json!({"signature": signature})).await
}

pub fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32]).expect("test key")
}

/// Parameters of a server certificate for `names`.
pub fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("certificate params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

pub fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A self-signed leaf for localhost with the given key; returns (cert PEM, key PEM).
pub fn self_signed(key: &KeyPair, params: CertificateParams) -> (String, String) {
    let cert = params.self_signed(key).expect("self-signed certificate");
    (cert.pem(), key.serialize_pem())
}

/// A root CA, an intermediate CA, and a localhost leaf issued by the
/// intermediate. Returns (root PEM, leaf+intermediate chain PEM, leaf key PEM).
pub fn chain_with_intermediate() -> (String, String, String) {
    let root_key = KeyPair::generate().expect("root key");
    let root_params = ca_params("circles test root");
    let root_cert = root_params.self_signed(&root_key).expect("root");
    let root = Issuer::new(root_params, root_key);

    let intermediate_key = KeyPair::generate().expect("intermediate key");
    let intermediate_params = ca_params("circles test intermediate");
    let intermediate_cert = intermediate_params
        .signed_by(&intermediate_key, &root)
        .expect("intermediate");
    let intermediate = Issuer::new(intermediate_params, intermediate_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf_params(&["localhost", "127.0.0.1"])
        .signed_by(&leaf_key, &intermediate)
        .expect("leaf");
    let chain = format!("{}{}", leaf_cert.pem(), intermediate_cert.pem());
    (root_cert.pem(), chain, leaf_key.serialize_pem())
}

/// Runs the `openssl` command line tool (used to write key formats rcgen
/// does not: PKCS#1, SEC1, passphrase-encrypted PKCS#8).
pub fn openssl(args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl {args:?} failed");
}

/// The value of the metric line `name` (with its labels) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("{name} in metrics:\n{text}"))
        .parse()
        .expect("a number")
}

/// `GET /metrics` from a TLS listener with the development certificate.
pub async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = https_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `GET path` over TLS (trusting the development certificate): the status
/// code and the whole response text.
pub async fn https_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = std::fs::read(dev_cert()).expect("dev cert");
    let mut tls = tls_connect(addr, client_tls(&ca, &[b"http/1.1"]), "localhost")
        .await
        .expect("handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut response)).await;
    let status = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP response: {response}"));
    (status, response)
}

/// What a pipelining client saw: every answer, in arrival order, and the
/// most `play`s the server had read from the connection but not yet
/// finished at any of the watcher's looks (its `/metrics`, every 20 ms).
pub struct Pipelined {
    pub answers: Vec<Value>,
    pub most_taken_unfinished: f64,
}

/// Sends `count` `play`s of `script` on `ws` back to back without waiting
/// for any answer (as any WebSocket library lets a client do), while reading
/// the answers and watching how many of the requests the server has taken
/// in. The server at `metrics` must serve this connection alone.
pub async fn pipeline_plays(ws: Ws, count: usize, script: &str, metrics: SocketAddr) -> Pipelined {
    let (mut sink, mut stream) = ws.split();
    let frames: Vec<String> = (0..count)
        .map(|id| {
            json!({"jsonrpc":"2.0","id":id,"method":"play","params":{"script":script}}).to_string()
        })
        .collect();
    // The writer blocks whenever the server stops reading (TCP pushes back).
    let writer = tokio::spawn(async move {
        for frame in frames {
            sink.feed(Message::text(frame)).await.expect("send");
        }
        sink.flush().await.expect("flush");
        sink
    });
    let most = std::cell::Cell::new(0.0_f64);
    let reader = async {
        let mut answers = Vec::with_capacity(count);
        while answers.len() < count {
            let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
                .await
                .unwrap_or_else(|_| panic!("no answer for 60 s after {} answers", answers.len()))
                .expect("connection open")
                .expect("valid frame");
            if let Message::Text(text) = message {
                answers.push(serde_json::from_str::<Value>(&text).expect("JSON answer"));
            }
        }
        answers
    };
    let watcher = async {
        loop {
            let text = scrape(metrics).await;
            // Read in this order: a script finishing between the two reads
            // can only make the difference smaller, never larger.
            let taken = metric(&text, r#"circle_requests_total{method="play"}"#);
            let finished = metric(&text, "circle_script_duration_seconds_count");
            most.set(most.get().max(taken - finished));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let answers = tokio::select! {
        answers = reader => answers,
        () = watcher => unreachable!("the watcher never ends"),
    };
    drop(writer.await.expect("writer"));
    Pipelined {
        answers,
        most_taken_unfinished: most.get(),
    }
}

/// A few milliseconds of work in a debug build: the script of the
/// "pipelined plays are refused" report, scaled down for an unoptimized
/// test binary.
pub const BUSY_SCRIPT: &str = "let i = 0; while i < 1500 { i += 1 } i";

/// Checks that `count` pipelined plays all got their result, and that the
/// server never took more of them in than it may run at once.
pub fn assert_all_answered(run: &Pipelined, count: usize, max_in_flight: usize) {
    let mut ids: Vec<i64> = run
        .answers
        .iter()
        .map(|answer| {
            assert_eq!(answer["result"]["output"], "1500", "{answer}");
            answer["id"].as_i64().expect("numeric id")
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..count as i64).collect::<Vec<_>>(),
        "each id answered once"
    );
    // The rest waited in the socket, not in the server: bounded memory.
    assert!(
        run.most_taken_unfinished <= max_in_flight as f64,
        "the server read {} plays ahead of its in-flight cap of {max_in_flight}",
        run.most_taken_unfinished
    );
    assert!(
        run.most_taken_unfinished >= 2.0,
        "the watcher saw the connection busy ({})",
        run.most_taken_unfinished
    );
}
