//! A small JSON-RPC WebSocket peer for the client's own tests, with real TLS
//! (tokio-rustls) and real certificates (rcgen). It exists so the client's
//! behaviour — out-of-order answers, per-request timeouts, lost connections,
//! certificate checks — can be pinned down without the full circle server;
//! the end-to-end tests at the repository root run against the real one.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

// Each test binary uses a part of the kit.
#[allow(unused_imports)]
pub use circle_test_support::{CertPem, TestCa, Validity, self_signed};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls server configuration for `server`, optionally requiring client
/// certificates signed by `client_ca`.
pub fn server_tls(server: &CertPem, client_ca: Option<&str>) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(server.cert.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key =
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from_pem_slice(server.key.as_bytes()).unwrap());
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A fake circle server. `play` answers `{"output": script}` after an
/// optional delay: a script `sleep:MS:TEXT` answers `TEXT` after MS
/// milliseconds (so answers come out of order), `close` makes the server
/// close the connection with 1001, `drop` makes it drop the TCP connection,
/// `fail` is answered with a `-32003` script error, `lines:N:TEXT` sends
/// N `output` notifications (`line 0` …) under the play's id, one under
/// an id nobody used and one malformed, then answers `TEXT`.
///
/// Sign-in: `fetch_nonce` answers a real challenge for the caller's address
/// (or, with [`FakeServer::foreign_challenges`], for another address) and
/// `authenticate` refuses every signature with `-32001`.
pub struct FakeServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn plain() -> FakeServer {
        Self::start(None, false).await
    }

    /// A plain server whose challenges name another address than the caller's.
    pub async fn foreign_challenges() -> FakeServer {
        Self::start(None, true).await
    }

    pub async fn tls(config: Arc<rustls::ServerConfig>) -> FakeServer {
        Self::start(Some(tokio_rustls::TlsAcceptor::from(config)), false).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>, foreign: bool) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, foreign).await;
                            }
                        }
                        None => serve(tcp, foreign).await,
                    }
                });
            }
        });
        FakeServer { addr, task }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.addr.port())
    }

    pub fn wss_url(&self, host: &str) -> String {
        format!("wss://{host}:{}/ws", self.addr.port())
    }
}

fn challenge_for(pubkey: &str, foreign: bool) -> String {
    use circle_protocol::{PublicKey, SignInChallenge, SigningKey};
    let address = if foreign {
        SigningKey::from_hex(&"22".repeat(32)).unwrap().address()
    } else {
        PublicKey::from_hex(pubkey).unwrap().address()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SignInChallenge {
        domain: "127.0.0.1".into(),
        address: address.to_checksum_string(),
        circle_name: "fake".into(),
        circle_public_key: "02ab".into(),
        uri: "ws://127.0.0.1/ws".into(),
        nonce: "abcdefghijklmnopqrstu".into(),
        issued_at: now,
        expiration_time: now + 300,
    }
    .to_message()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, foreign: bool) {
    let Ok(websocket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = websocket.split();
    let (answers, mut to_send) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(message) = to_send.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                return;
            }
        }
    });
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let request: Value = serde_json::from_str(text.as_str()).unwrap();
        let id = request["id"].clone();
        let script = request["params"]["script"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        match (request["method"].as_str().unwrap_or(""), script.as_str()) {
            ("play", "close") => {
                let _ = answers.send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "server shutting down".into(),
                })));
            }
            ("play", "fail") => {
                let answer = json!({"jsonrpc":"2.0","id":id,"error":{
                    "code":-32003,"message":"script error: fail on purpose"}});
                let _ = answers.send(Message::text(answer.to_string()));
            }
            ("play", script) if script.starts_with("lines:") => {
                let (count, text) = script["lines:".len()..].split_once(':').unwrap();
                let count: usize = count.parse().unwrap();
                let output = |id: &Value, line: &str| {
                    let notification = json!({"jsonrpc":"2.0","method":"output",
                        "params":{"id":id,"line":line}});
                    Message::text(notification.to_string())
                };
                let _ = answers.send(output(&json!(999_999), "nobody's"));
                let _ = answers.send(Message::text(r#"{"jsonrpc":"2.0","method":"output"}"#));
                for n in 0..count {
                    let _ = answers.send(output(&id, &format!("line {n}")));
                }
                let answer = json!({"jsonrpc":"2.0","id":id,"result":{"output":text}});
                let _ = answers.send(Message::text(answer.to_string()));
            }
            ("play", "drop") => {
                writer.abort();
                return;
            }
            ("play", _) => {
                let answers = answers.clone();
                tokio::spawn(async move {
                    let (delay, output) = match script.strip_prefix("sleep:") {
                        Some(rest) => {
                            let (ms, text) = rest.split_once(':').unwrap();
                            (ms.parse().unwrap(), text.to_owned())
                        }
                        None => (0, script),
                    };
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let answer = json!({"jsonrpc":"2.0","id":id,"result":{"output":output}});
                    let _ = answers.send(Message::text(answer.to_string()));
                });
            }
            ("fetch_nonce", _) => {
                let pubkey = request["params"]["pubkey"].as_str().unwrap_or("");
                let answer = json!({"jsonrpc":"2.0","id":id,"result":{
                    "nonce":"abcdefghijklmnopqrstu",
                    "message":challenge_for(pubkey, foreign),
                    "expires_at":0}});
                let _ = answers.send(Message::text(answer.to_string()));
            }
            ("authenticate", _) => {
                let answer = json!({"jsonrpc":"2.0","id":id,"error":{
                    "code":-32001,"message":"authentication failed: this fake refuses everyone"}});
                let _ = answers.send(Message::text(answer.to_string()));
            }
            ("whoami", _) => {
                let answer = json!({"jsonrpc":"2.0","id":id,"result":{
                    "authenticated":false,"pubkey":null,
                    "circle":{"name":"fake","public_key":"02ab"}}});
                let _ = answers.send(Message::text(answer.to_string()));
            }
            (method, _) => {
                let answer = json!({"jsonrpc":"2.0","id":id,"error":{
                    "code":-32601,"message":format!("method not found: {method}")}});
                let _ = answers.send(Message::text(answer.to_string()));
            }
        }
    }
    writer.abort();
}
