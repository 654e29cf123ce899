//! TLS listeners, certificate loading and its errors, with real handshakes.

mod common;

use std::path::Path;
use std::time::Duration;

use circle_server::{CertificateProblem, PrivateKeyProblem};
use circle_server::{ServerConfig, ServerError, TlsConfigError, spawn_circle_server};
use common::*;
use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn play_42(ws: &mut Ws) {
    let answer = call(ws, 7, "play", json!({"script": "40 + 2"})).await;
    assert_eq!(answer["result"]["output"], "42", "{answer}");
}

#[tokio::test]
async fn wss_on_the_single_port_and_no_plain_text_there() {
    let server = TestServer::tls();
    assert!(server.handle.ws_addr().is_none());
    let mut ws = connect_wss(server.wss_addr()).await;
    play_42(&mut ws).await;

    // Plain text to the TLS port is refused, not answered in the clear.
    let url = format!("ws://{}/ws", server.wss_addr());
    let plain = tokio::time::timeout(Duration::from_secs(10), try_connect_ws(&url)).await;
    assert!(
        matches!(plain, Ok(Err(_))),
        "a plain WebSocket to the TLS port must fail fast"
    );
    server.stop().await;
}

#[tokio::test]
async fn plain_and_tls_listeners_side_by_side() {
    let server = TestServer::start(ServerConfig {
        tls_port: Some(0),
        ..tls_config()
    });
    let (ws_addr, wss_addr) = (server.handle.ws_addr().expect("ws"), server.wss_addr());
    assert_ne!(ws_addr.port(), wss_addr.port());
    let mut plain = connect_ws(&server.ws_url()).await;
    let mut secure = connect_wss(wss_addr).await;
    play_42(&mut plain).await;
    play_42(&mut secure).await;
    server.stop().await;
}

/// A bare HTTP/1.1 request over an established stream; returns the raw response head.
async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).to_lowercase()
}

/// A TLS connection to the server's wss:// port that offers HTTP/1.1 only.
async fn http11_connect(
    server: &TestServer,
    ca: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    tls_connect(
        server.wss_addr(),
        client_tls(ca, &[b"http/1.1"]),
        "localhost",
    )
    .await
    .expect("handshake")
}

#[tokio::test]
async fn https_responses_carry_hsts_and_plain_ones_do_not() {
    let server = TestServer::start(ServerConfig {
        tls_port: Some(0),
        ..tls_config()
    });
    let ca = std::fs::read(dev_cert()).expect("dev cert");
    for path in ["/health", "/no-such-page"] {
        let mut tls = http11_connect(&server, &ca).await;
        let head = http_get(&mut tls, path).await;
        assert!(
            head.contains("strict-transport-security: max-age="),
            "HTTPS {path} lacks HSTS: {head}"
        );
    }
    let mut plain = TcpStream::connect(server.handle.ws_addr().expect("ws"))
        .await
        .expect("tcp");
    let head = http_get(&mut plain, "/health").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\"status\":\"ok\""), "{head}");
    assert!(
        !head.contains("strict-transport-security"),
        "plain HTTP must not send HSTS: {head}"
    );
    server.stop().await;
}

#[tokio::test]
async fn alpn_settles_on_http11_even_when_the_client_prefers_h2() {
    let server = TestServer::tls();
    let ca = std::fs::read(dev_cert()).expect("dev cert");
    let tls = tls_connect(
        server.wss_addr(),
        client_tls(&ca, &[b"h2", b"http/1.1"]),
        "localhost",
    )
    .await
    .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    server.stop().await;
}

/// A client that closes gets its close frame echoed and then the TLS
/// `close_notify`, both before the server's FIN: rustls reports a stream
/// that ends without the alert as `UnexpectedEof`, so a clean end of stream
/// here proves the alert came (and came after the echo).
#[tokio::test]
async fn a_client_close_is_echoed_then_tls_ends_with_close_notify() {
    let server = TestServer::tls();
    let ca = std::fs::read(dev_cert()).expect("dev cert");
    for round in 0..5 {
        let mut tls = http11_connect(&server, &ca).await;
        tls.write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .expect("upgrade request");
        // A masked close frame, code 1000 (mask 0: the payload as is).
        tls.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])
            .await
            .expect("close frame");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest))
            .await
            .expect("the server ends the stream");
        assert!(
            read.is_ok(),
            "round {round}: the stream must end with close_notify, got {read:?}"
        );
        let text = String::from_utf8_lossy(&rest);
        let head_end = text.find("\r\n\r\n").expect("response head") + 4;
        assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
        assert_eq!(
            &rest[head_end..],
            &[0x88, 0x02, 0x03, 0xE8],
            "round {round}: exactly the echo of the close frame after the 101"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn tls_1_1_client_is_refused_with_a_protocol_version_alert() {
    let server = TestServer::tls();
    let mut tcp = TcpStream::connect(server.wss_addr()).await.expect("tcp");
    tcp.write_all(&tls11_client_hello())
        .await
        .expect("send ClientHello");
    let mut reply = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut reply))
        .await
        .expect("server answers")
        .expect("an alert record");
    assert_eq!(reply[0], 0x15, "record type must be alert, got {reply:?}");
    assert_eq!(reply[5], 2, "alert level must be fatal");
    // rustls answers protocol_version (70) or handshake_failure (40)
    // depending on which check trips first; either is a refusal.
    assert!(
        matches!(reply[6], 70 | 40),
        "alert must refuse the protocol, got {}",
        reply[6]
    );
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "the server closes after the alert, got {rest:?}"
    );
    // And the server goes on serving TLS 1.2+ clients.
    let mut ws = connect_wss(server.wss_addr()).await;
    play_42(&mut ws).await;
    server.stop().await;
}

/// A ClientHello that offers TLS 1.1 and nothing newer (no
/// supported_versions extension), with TLS 1.1-era cipher suites.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend_from_slice(&handshake);
    record
}

fn start_error(config: ServerConfig) -> TlsConfigError {
    match spawn_circle_server(ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..config
    }) {
        Err(ServerError::Tls(error)) => error,
        Err(other) => panic!("expected a TLS error, got {other}"),
        Ok(_) => panic!("server started with bad TLS files"),
    }
}

fn with_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> ServerConfig {
    ServerConfig {
        cert_path: Some(path_text(cert)),
        key_path: Some(path_text(key)),
        ..tls_config()
    }
}

#[tokio::test]
async fn every_tls_config_error_from_real_bad_files() {
    let files = TempFiles::new();
    let missing = files.path("missing.pem");
    let empty = files.write("empty.pem", "");
    let garbage = files.write("garbage.pem", "this is not PEM at all\n");
    let broken_pem = files.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let other_key = files.write(
        "other-key.pem",
        KeyPair::generate().expect("key").serialize_pem(),
    );

    let error = start_error(with_files(&missing, dev_key()));
    assert!(
        matches!(&error, TlsConfigError::CertificateNotFound { path } if *path == missing),
        "{error}"
    );
    assert!(error.to_string().contains("missing.pem"));

    let error = start_error(with_files(dev_cert(), &missing));
    assert!(
        matches!(&error, TlsConfigError::PrivateKeyNotFound { path } if *path == missing),
        "{error}"
    );

    let error = start_error(with_files(&empty, dev_key()));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidCertificate {
                problem: CertificateProblem::Empty,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("empty.pem") && error.to_string().contains("empty"),
        "{error}"
    );

    let error = start_error(with_files(&garbage, dev_key()));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidCertificate {
                problem: CertificateProblem::NoPemCertificate,
                ..
            }
        ),
        "{error}"
    );

    let error = start_error(with_files(&broken_pem, dev_key()));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidCertificate {
                problem: CertificateProblem::Malformed(_),
                ..
            }
        ),
        "{error}"
    );

    let error = start_error(with_files(dev_cert(), &empty));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidPrivateKey {
                problem: PrivateKeyProblem::Empty,
                ..
            }
        ),
        "{error}"
    );

    let error = start_error(with_files(dev_cert(), &garbage));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidPrivateKey {
                problem: PrivateKeyProblem::NoPemKey,
                ..
            }
        ),
        "{error}"
    );

    let error = start_error(with_files(dev_cert(), dev_cert()));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidPrivateKey {
                problem: PrivateKeyProblem::HoldsCertificate,
                ..
            }
        ),
        "a certificate is not a key (swapped paths): {error}"
    );

    let error = start_error(with_files(dev_cert(), &other_key));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidPrivateKey {
                problem: PrivateKeyProblem::DoesNotMatchCertificate { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("does not match"), "{error}");

    let encrypted = path_text(files.path("encrypted.pem"));
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:secret",
        "-in",
        &path_text(dev_key()),
        "-out",
        &encrypted,
    ]);
    let error = start_error(with_files(dev_cert(), &encrypted));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidPrivateKey {
                problem: PrivateKeyProblem::Encrypted,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("encrypted"), "{error}");

    let directory = files.dir().to_string_lossy().into_owned();
    let error = start_error(with_files(&directory, dev_key()));
    assert!(
        matches!(&error, TlsConfigError::Unreadable { .. }),
        "{error}"
    );

    let error = start_error(ServerConfig {
        cert_path: None,
        ..tls_config()
    });
    assert!(
        matches!(&error, TlsConfigError::ConfigurationError(_)),
        "{error}"
    );

    let error = start_error(ServerConfig {
        client_auth_required: true,
        ..tls_config()
    });
    assert!(
        matches!(&error, TlsConfigError::ConfigurationError(_)),
        "{error}"
    );
}

#[tokio::test]
async fn expired_certificate_is_refused_unless_explicitly_accepted() {
    let files = TempFiles::new();
    let key = KeyPair::generate().expect("key");
    let mut params = leaf_params(&["localhost"]);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let (cert_pem, key_pem) = self_signed(&key, params);
    let cert = files.write("expired.pem", &cert_pem);
    let key = files.write("expired-key.pem", key_pem);

    let error = start_error(with_files(&cert, &key));
    match &error {
        TlsConfigError::InvalidCertificate {
            problem: CertificateProblem::Expired { not_after },
            ..
        } => {
            assert!(not_after.starts_with("2021-01-01"), "{not_after}")
        }
        other => panic!("expected Expired, got {other}"),
    }
    assert!(
        error.to_string().contains("expired on 2021-01-01"),
        "{error}"
    );

    let mut params = leaf_params(&["localhost"]);
    params.not_before = rcgen::date_time_ymd(2090, 1, 1);
    params.not_after = rcgen::date_time_ymd(2091, 1, 1);
    let future_key = KeyPair::generate().expect("key");
    let (future_pem, future_key_pem) = self_signed(&future_key, params);
    let error = start_error(with_files(
        files.write("future.pem", future_pem),
        files.write("future-key.pem", future_key_pem),
    ));
    assert!(
        matches!(
            &error,
            TlsConfigError::InvalidCertificate {
                problem: CertificateProblem::NotYetValid { .. },
                ..
            }
        ),
        "{error}"
    );

    // The development escape hatch starts it anyway.
    let server = TestServer::start(ServerConfig {
        tls_accept_invalid_certs: true,
        ..with_files(&cert, &key)
    });
    assert!(server.handle.wss_addr().is_some());
    server.stop().await;
}

/// Starts a TLS server on `cert`/`key` and completes a verified WebSocket
/// round trip with a client trusting `trust_pem`.
async fn round_trip_with(cert: &str, key: &str, trust_pem: &[u8]) {
    let server = TestServer::start(with_files(cert, key));
    let mut ws = connect_wss_with(
        server.wss_addr(),
        client_tls(trust_pem, &[b"http/1.1"]),
        "localhost",
    )
    .await;
    play_42(&mut ws).await;
    server.stop().await;
}

#[tokio::test]
async fn rsa_ec_and_pkcs8_keys_all_serve() {
    let files = TempFiles::new();

    // ECDSA P-256 in PKCS#8 (rcgen's output) and the same key in SEC1.
    let ec_key = KeyPair::generate().expect("EC key");
    let (ec_cert, ec_pkcs8) = self_signed(&ec_key, leaf_params(&["localhost"]));
    let ec_cert_path = path_text(files.write("ec.pem", &ec_cert));
    let pkcs8_path = path_text(files.write("ec-pkcs8.pem", &ec_pkcs8));
    let sec1_path = path_text(files.path("ec-sec1.pem"));
    openssl(&["ec", "-in", &pkcs8_path, "-out", &sec1_path]);
    assert!(
        std::fs::read_to_string(&sec1_path)
            .expect("sec1")
            .contains("BEGIN EC PRIVATE KEY")
    );
    round_trip_with(&ec_cert_path, &pkcs8_path, ec_cert.as_bytes()).await;
    round_trip_with(&ec_cert_path, &sec1_path, ec_cert.as_bytes()).await;

    // RSA 2048 in PKCS#8 and in PKCS#1.
    let rsa_key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("RSA key");
    let (rsa_cert, rsa_pkcs8) = self_signed(&rsa_key, leaf_params(&["localhost"]));
    let rsa_cert_path = path_text(files.write("rsa.pem", &rsa_cert));
    let rsa_pkcs8_path = path_text(files.write("rsa-pkcs8.pem", &rsa_pkcs8));
    let pkcs1_path = path_text(files.path("rsa-pkcs1.pem"));
    openssl(&[
        "rsa",
        "-in",
        &rsa_pkcs8_path,
        "-traditional",
        "-out",
        &pkcs1_path,
    ]);
    assert!(
        std::fs::read_to_string(&pkcs1_path)
            .expect("pkcs1")
            .contains("BEGIN RSA PRIVATE KEY")
    );
    round_trip_with(&rsa_cert_path, &rsa_pkcs8_path, rsa_cert.as_bytes()).await;
    round_trip_with(&rsa_cert_path, &pkcs1_path, rsa_cert.as_bytes()).await;
}

#[tokio::test]
async fn leaf_plus_intermediate_chain_verifies_against_the_root() {
    let files = TempFiles::new();
    let (root, chain, key) = chain_with_intermediate();
    let chain_path = path_text(files.write("fullchain.pem", chain));
    let key_path = path_text(files.write("privkey.pem", key));
    round_trip_with(&chain_path, &key_path, root.as_bytes()).await;
}

#[tokio::test]
async fn tls_posture_hybrid_post_quantum_first_tls12_still_served_and_resumption() {
    let server = TestServer::tls();
    let ca = std::fs::read(dev_cert()).expect("dev cert");

    // A current client gets TLS 1.3 with the hybrid X25519MLKEM768 exchange.
    let modern = client_tls(&ca, &[b"http/1.1"]);
    let mut tls = tls_connect(server.wss_addr(), modern.clone(), "localhost")
        .await
        .expect("handshake");
    let session = tls.get_ref().1;
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let group = session
        .negotiated_key_exchange_group()
        .expect("key exchange")
        .name();
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
    // TLS 1.3 tickets arrive after the handshake: read a response so the
    // client takes them in.
    assert!(
        http_get(&mut tls, "/health")
            .await
            .starts_with("http/1.1 200")
    );
    drop(tls);

    // The same client config reconnects with a resumed handshake (ticket).
    let mut resumed = false;
    for _ in 0..3 {
        let again = tls_connect(server.wss_addr(), modern.clone(), "localhost")
            .await
            .expect("handshake");
        if again.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed = true;
            break;
        }
    }
    assert!(resumed, "session tickets let a returning client resume");

    // A TLS 1.2-only client with a classical group is still served, with a
    // forward-secret AEAD suite.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::SECP256R1];
    let tls12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tls_connect(server.wss_addr(), std::sync::Arc::new(tls12), "localhost")
        .await
        .expect("TLS 1.2 handshake");
    let session = tls.get_ref().1;
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let suite = format!(
        "{:?}",
        session.negotiated_cipher_suite().expect("suite").suite()
    );
    assert!(
        suite.starts_with("TLS_ECDHE_") && (suite.contains("GCM") || suite.contains("CHACHA20")),
        "{suite}"
    );
    server.stop().await;
}
