//! End to end, real server and real TLS: which server certificates the
//! client trusts, why it rejects the others, wrong schemes, mutual TLS. Every
//! test runs over both TLS backends (rustls and native-tls).

mod support;

use std::time::{Duration, Instant};

use circle_client_ws::{
    CertificateRejection, CircleWsClientBuilder, CircleWsClientError, TlsConfig,
};
use circle_server::ServerConfig;
use support::*;

async fn rejection_reason(
    url: &str,
    backend: circle_client_ws::TlsBackend,
    tls: TlsConfig,
) -> CertificateRejection {
    let client = client_for(url, backend, tls)
        .build()
        .expect("valid settings");
    match client.connect().await {
        Err(CircleWsClientError::CertificateRejected { reason, .. }) => reason,
        other => panic!("{backend}: expected a rejected certificate, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificate_needs_trust() {
    let server = TestServer::tls(&dev_cert(), &dev_key(), false);
    let url = server.wss_url("localhost");
    for backend in backends() {
        // Default: system roots only, so the self-signed certificate is unknown.
        let reason = rejection_reason(&url, backend, TlsConfig::default()).await;
        assert_eq!(reason, CertificateRejection::UnknownIssuer, "{backend}");
        let client = client_for(&url, backend, TlsConfig::default())
            .build()
            .unwrap();
        let message = client.connect().await.unwrap_err().to_string();
        assert!(message.contains("unknown issuer"), "{backend}: {message}");

        // Trusted through ca_cert_path.
        let client = connected(&url, backend, None).await;
        assert_eq!(
            client.play("40 + 2").await.unwrap().output,
            "42",
            "{backend}"
        );
        client.disconnect().await;

        // accept_invalid_certs: development fallback.
        let insecure = TlsConfig {
            accept_invalid_certs: true,
            ..Default::default()
        };
        let client = client_for(&url, backend, insecure).build().unwrap();
        client.connect().await.unwrap();
        assert_eq!(
            client.play(r#""in" + "secure""#).await.unwrap().output,
            "insecure"
        );
        client.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_another_host_name() {
    let files = TempFiles::new();
    let ca = TestCa::new("circles e2e CA");
    let ca_path = files.write("ca.pem", ca.cert_pem());
    let other = ca.leaf(&["other.example"], Validity::Now);
    let server = TestServer::tls(
        &files.write("other.crt", &other.cert),
        &files.write("other.key", &other.key),
        false,
    );
    let url = server.wss_url("localhost");
    let trusted = TlsConfig {
        ca_cert_path: Some(ca_path.clone()),
        ..Default::default()
    };
    for backend in backends() {
        let reason = rejection_reason(&url, backend, trusted.clone()).await;
        assert_eq!(reason, CertificateRejection::NameMismatch, "{backend}");

        let any_name = TlsConfig {
            accept_invalid_hostnames: true,
            ..trusted.clone()
        };
        let client = client_for(&url, backend, any_name).build().unwrap();
        client.connect().await.unwrap();
        assert_eq!(client.play("1 + 1").await.unwrap().output, "2", "{backend}");
        client.disconnect().await;

        // Skipping the name check does not skip the chain check.
        let untrusted_any_name = TlsConfig {
            accept_invalid_hostnames: true,
            ..Default::default()
        };
        let reason = rejection_reason(&url, backend, untrusted_any_name).await;
        assert_eq!(reason, CertificateRejection::UnknownIssuer, "{backend}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_rejected() {
    let files = TempFiles::new();
    let ca = TestCa::new("circles e2e CA");
    let ca_path = files.write("ca.pem", ca.cert_pem());
    let expired = ca.leaf(&["localhost"], Validity::Expired);
    // The server refuses to start with an expired certificate unless told to.
    let server = TestServer::start(ServerConfig {
        enable_tls: true,
        cert_path: Some(
            files
                .write("expired.crt", &expired.cert)
                .display()
                .to_string(),
        ),
        key_path: Some(
            files
                .write("expired.key", &expired.key)
                .display()
                .to_string(),
        ),
        tls_accept_invalid_certs: true,
        ..Default::default()
    });
    let url = server.wss_url("localhost");
    for backend in backends() {
        let trusted = TlsConfig {
            ca_cert_path: Some(ca_path.clone()),
            ..Default::default()
        };
        let reason = rejection_reason(&url, backend, trusted).await;
        assert_eq!(reason, CertificateRejection::Expired, "{backend}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_scheme_fails_fast_and_says_so() {
    let tls_server = TestServer::tls(&dev_cert(), &dev_key(), false);
    let plain_server = TestServer::start(ServerConfig::default());
    let tls_port = tls_server.handle.wss_addr().unwrap().port();
    let plain_port = plain_server.handle.ws_addr().unwrap().port();
    for backend in backends() {
        // wss:// to the plain listener.
        let started = Instant::now();
        let client = client_for(
            &format!("wss://localhost:{plain_port}/ws"),
            backend,
            trust_dev_cert(),
        )
        .with_connect_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
        let error = client.connect().await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{backend}: took {:?}",
            started.elapsed()
        );
        eprintln!("{backend}, wss:// to a plain listener: {error}");
        assert!(
            matches!(error, CircleWsClientError::TlsHandshake { .. }),
            "{backend}: {error:?}"
        );
        assert!(error.to_string().contains("ws://"), "{backend}: {error}");

        // ws:// to the TLS listener.
        let started = Instant::now();
        let client = CircleWsClientBuilder::new(format!("ws://localhost:{tls_port}/ws"))
            .with_tls_backend(backend)
            .with_connect_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let error = client.connect().await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{backend}: took {:?}",
            started.elapsed()
        );
        eprintln!("{backend}, ws:// to a TLS listener: {error}");
        assert!(
            matches!(error, CircleWsClientError::WebSocketHandshake { .. }),
            "{backend}: {error:?}"
        );
        assert!(error.to_string().contains("wss://"), "{backend}: {error}");
    }
    tls_server.stop().await;
    plain_server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    let files = TempFiles::new();
    let client_ca = TestCa::new("circles client CA");
    let client_ca_path = files.write("client-ca.pem", client_ca.cert_pem());
    let identity = client_ca.leaf(&["circle-client.example"], Validity::Now);
    let client_cert = files.write("client.crt", &identity.cert);
    let client_key = files.write("client.key", &identity.key);
    let server = TestServer::start(ServerConfig {
        enable_tls: true,
        cert_path: Some(dev_cert().display().to_string()),
        key_path: Some(dev_key().display().to_string()),
        client_ca_path: Some(client_ca_path.display().to_string()),
        client_auth_required: true,
        ..Default::default()
    });
    let url = server.wss_url("localhost");
    for backend in backends() {
        let with_identity = TlsConfig {
            client_cert_path: Some(client_cert.clone()),
            client_key_path: Some(client_key.clone()),
            ..trust_dev_cert()
        };
        let client = client_for(&url, backend, with_identity).build().unwrap();
        client.connect().await.unwrap();
        assert_eq!(
            client.play("\"mutual\"").await.unwrap().output,
            "mutual",
            "{backend}"
        );
        client.disconnect().await;

        // Without a certificate the server refuses the connection.
        let client = client_for(&url, backend, trust_dev_cert()).build().unwrap();
        let outcome = match client.connect().await {
            Ok(()) => client.play("1").await.map(|_| ()),
            Err(error) => Err(error),
        };
        let error =
            outcome.expect_err("a server requiring client certificates refuses anonymous clients");
        eprintln!("{backend}, no client certificate: {error}");
        match &error {
            CircleWsClientError::TlsHandshake { detail, .. } => {
                assert!(detail.contains("client certificate"), "{backend}: {detail}")
            }
            other => panic!("{backend}: expected a TLS handshake error, got {other:?}"),
        }
    }
    server.stop().await;
}
