//! Every TlsConfig field, for every TLS backend compiled into this build,
//! against a real rustls server with rcgen certificates.
//!
//! Native only (a fake tokio server in the test process); the browser side
//! is tests/browser_client.rs.

#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};

use circle_client_ws::{
    CertificateRejection, CircleWsClientBuilder, CircleWsClientError, TlsBackend, TlsConfig,
};
use support::{FakeServer, TestCa, Validity, self_signed, server_tls};

fn backends() -> Vec<TlsBackend> {
    let backends = TlsBackend::available();
    assert!(!backends.is_empty(), "these tests need a TLS backend");
    backends
}

async fn connect(
    url: &str,
    backend: TlsBackend,
    tls: TlsConfig,
) -> Result<circle_client_ws::CircleWsClient, CircleWsClientError> {
    let client = CircleWsClientBuilder::new(url)
        .with_tls_backend(backend)
        .with_tls_config(tls)
        .with_connect_timeout(Duration::from_secs(5))
        .build()?;
    client.connect().await?;
    Ok(client)
}

fn rejection(
    result: Result<circle_client_ws::CircleWsClient, CircleWsClientError>,
) -> CertificateRejection {
    match result {
        Err(CircleWsClientError::CertificateRejected { reason, .. }) => reason,
        Err(other) => panic!("expected CertificateRejected, got {other:?}"),
        Ok(_) => panic!("expected CertificateRejected, got a connection"),
    }
}

#[tokio::test]
async fn self_signed_certificates_need_trust() {
    let dir = tempfile::tempdir().unwrap();
    let server_pem = self_signed(&["localhost", "127.0.0.1"]);
    let (cert_path, _) = server_pem.write_to(dir.path(), "server");
    let server = FakeServer::tls(server_tls(&server_pem, None)).await;
    let url = server.wss_url("localhost");
    for backend in backends() {
        let reason = rejection(connect(&url, backend, TlsConfig::default()).await);
        assert_eq!(reason, CertificateRejection::UnknownIssuer, "{backend}");

        let trusted = TlsConfig {
            ca_cert_path: Some(cert_path.clone()),
            ..Default::default()
        };
        let client = connect(&url, backend, trusted).await.unwrap();
        assert_eq!(client.tls_backend(), Some(backend));
        assert_eq!(client.play("over tls").await.unwrap().output, "over tls");

        let insecure = TlsConfig {
            accept_invalid_certs: true,
            ..Default::default()
        };
        let client = connect(&url, backend, insecure).await.unwrap();
        assert_eq!(client.play("insecure").await.unwrap().output, "insecure");
    }
}

#[tokio::test]
async fn certificates_for_another_host_are_rejected_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("circles test CA");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let other_host = ca.leaf(&["other.example"], Validity::Now);
    let server = FakeServer::tls(server_tls(&other_host, None)).await;
    let url = server.wss_url("localhost");
    for backend in backends() {
        let trusted = TlsConfig {
            ca_cert_path: Some(ca_path.clone()),
            ..Default::default()
        };
        let reason = rejection(connect(&url, backend, trusted.clone()).await);
        assert_eq!(reason, CertificateRejection::NameMismatch, "{backend}");

        let any_name = TlsConfig {
            accept_invalid_hostnames: true,
            ..trusted
        };
        let client = connect(&url, backend, any_name).await.unwrap();
        assert_eq!(client.play("ok").await.unwrap().output, "ok");

        // Without the CA, skipping the name check does not skip the chain.
        let untrusted = TlsConfig {
            accept_invalid_hostnames: true,
            ..Default::default()
        };
        let reason = rejection(connect(&url, backend, untrusted).await);
        assert_eq!(reason, CertificateRejection::UnknownIssuer, "{backend}");
    }
}

#[tokio::test]
async fn expired_and_future_certificates_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("circles test CA");
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    for (validity, expected) in [
        (Validity::Expired, CertificateRejection::Expired),
        (Validity::NotYetValid, CertificateRejection::NotYetValid),
    ] {
        let leaf = ca.leaf(&["localhost"], validity);
        let server = FakeServer::tls(server_tls(&leaf, None)).await;
        for backend in backends() {
            let trusted = TlsConfig {
                ca_cert_path: Some(ca_path.clone()),
                ..Default::default()
            };
            let reason = rejection(connect(&server.wss_url("localhost"), backend, trusted).await);
            assert_eq!(reason, expected, "{backend}");
        }
    }
}

#[tokio::test]
async fn a_ca_file_with_several_certificates_is_used_whole() {
    let dir = tempfile::tempdir().unwrap();
    let unrelated = TestCa::new("unrelated CA");
    let ca = TestCa::new("circles test CA");
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        format!("{}{}", unrelated.cert_pem(), ca.cert_pem()),
    )
    .unwrap();
    let leaf = ca.leaf(&["localhost", "127.0.0.1"], Validity::Now);
    let server = FakeServer::tls(server_tls(&leaf, None)).await;
    for backend in backends() {
        for host in ["localhost", "127.0.0.1"] {
            let tls = TlsConfig {
                ca_cert_path: Some(bundle.clone()),
                ..Default::default()
            };
            let client = connect(&server.wss_url(host), backend, tls).await.unwrap();
            assert_eq!(client.play(host).await.unwrap().output, host, "{backend}");
        }
    }
}

#[tokio::test]
async fn client_certificates_are_presented_for_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let server_ca_path = dir.path().join("server-ca.pem");
    std::fs::write(&server_ca_path, server_ca.cert_pem()).unwrap();
    let (client_cert, client_key) = client_ca
        .leaf(&["circle-client"], Validity::Now)
        .write_to(dir.path(), "client");
    let server_pem = server_ca.leaf(&["localhost"], Validity::Now);
    let server = FakeServer::tls(server_tls(&server_pem, Some(&client_ca.cert_pem()))).await;
    let url = server.wss_url("localhost");
    for backend in backends() {
        let with_identity = TlsConfig {
            ca_cert_path: Some(server_ca_path.clone()),
            client_cert_path: Some(client_cert.clone()),
            client_key_path: Some(client_key.clone()),
            ..Default::default()
        };
        let client = connect(&url, backend, with_identity).await.unwrap();
        assert_eq!(
            client.play("mutual").await.unwrap().output,
            "mutual",
            "{backend}"
        );

        let without_identity = TlsConfig {
            ca_cert_path: Some(server_ca_path.clone()),
            ..Default::default()
        };
        let error = connect(&url, backend, without_identity).await.unwrap_err();
        assert!(
            matches!(
                error,
                CircleWsClientError::TlsHandshake { .. }
                    | CircleWsClientError::WebSocketHandshake { .. }
                    | CircleWsClientError::ConnectionLost { .. }
            ),
            "{backend}: {error:?}"
        );
    }
}

#[tokio::test]
async fn wrong_scheme_fails_fast_with_a_hint() {
    let tls_server = FakeServer::tls(server_tls(&self_signed(&["localhost"]), None)).await;
    let plain_server = FakeServer::plain().await;
    for backend in backends() {
        // ws:// to a TLS listener.
        let started = Instant::now();
        let client = CircleWsClientBuilder::new(tls_server.ws_url())
            .with_tls_backend(backend)
            .build()
            .unwrap();
        let error = client.connect().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "no hang");
        match &error {
            CircleWsClientError::WebSocketHandshake { detail, .. } => {
                assert!(detail.contains("wss://"), "{detail}")
            }
            other => panic!("{backend}: unexpected {other:?}"),
        }

        // wss:// to a plain listener.
        let started = Instant::now();
        let error = connect(
            &plain_server.wss_url("localhost"),
            backend,
            TlsConfig::default(),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "no hang");
        match &error {
            CircleWsClientError::TlsHandshake { detail, .. } => {
                assert!(detail.contains("ws://"), "{backend}: {detail}")
            }
            other => panic!("{backend}: unexpected {other:?}"),
        }
    }
}
