//! Shared by the end-to-end tests: a real circle server on a free port and
//! clients for either TLS backend; certificates come from the workspace's
//! test kit (`circle_test_support`).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use circle_client_ws::{CircleWsClient, CircleWsClientBuilder, TlsBackend, TlsConfig};
use circle_server::{ServerConfig, ServerHandle, spawn_circle_server};
// Each test binary uses a part of the kit.
#[allow(unused_imports)]
pub use circle_test_support::{
    CertPem, TempFiles, TestCa, Validity, dev_cert, dev_key, self_signed,
};

/// Test secret keys (never used anywhere real).
pub const ALICE_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
pub const BOB_KEY: &str = "0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Every TLS backend of this build; the root package's dev-dependencies
/// enable both, and this makes sure neither is silently skipped.
pub fn backends() -> Vec<TlsBackend> {
    let backends = TlsBackend::available();
    assert_eq!(
        backends,
        vec![TlsBackend::Rustls, TlsBackend::NativeTls],
        "the end-to-end tests must run over both TLS backends"
    );
    backends
}

/// A running circle server, stopped when dropped if the test did not.
pub struct TestServer {
    pub handle: ServerHandle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with a free port. `config` fills in
    /// the rest; host and port are overridden.
    pub fn start(config: ServerConfig) -> TestServer {
        Self::with_script_threads(config, 2)
    }

    /// [`TestServer::start`] with `script_threads` script threads (the
    /// others have 2).
    pub fn with_script_threads(config: ServerConfig, script_threads: usize) -> TestServer {
        let (task, handle) = spawn_circle_server(ServerConfig {
            host: "127.0.0.1".into(),
            port: 0,
            connection_threads: 2,
            script_threads,
            ..config
        })
        .expect("the circle server starts");
        TestServer { handle, task }
    }

    /// A TLS server with `cert`/`key` files.
    pub fn tls(cert: &Path, key: &Path, enable_auth: bool) -> TestServer {
        Self::start(ServerConfig {
            enable_tls: true,
            cert_path: Some(cert.display().to_string()),
            key_path: Some(key.display().to_string()),
            enable_auth,
            ..Default::default()
        })
    }

    pub fn wss_url(&self, host: &str) -> String {
        let addr = self.handle.wss_addr().expect("a TLS listener");
        format!("wss://{host}:{}/ws", addr.port())
    }

    pub fn ws_url(&self) -> String {
        let addr = self.handle.ws_addr().expect("a plain listener");
        format!("ws://127.0.0.1:{}/ws", addr.port())
    }

    pub async fn stop(self) {
        self.handle.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A client builder for `url` over `backend` with `tls`.
pub fn client_for(url: &str, backend: TlsBackend, tls: TlsConfig) -> CircleWsClientBuilder {
    CircleWsClientBuilder::new(url)
        .with_tls_backend(backend)
        .with_tls_config(tls)
        .with_connect_timeout(Duration::from_secs(5))
        .with_request_timeout(Duration::from_secs(30))
}

/// Trust exactly the repository's development certificate.
pub fn trust_dev_cert() -> TlsConfig {
    TlsConfig {
        ca_cert_path: Some(dev_cert()),
        ..Default::default()
    }
}

/// A connected client trusting the development certificate.
pub async fn connected(url: &str, backend: TlsBackend, key: Option<&str>) -> CircleWsClient {
    let mut builder = client_for(url, backend, trust_dev_cert());
    if let Some(key) = key {
        builder = builder.with_keypair(key);
    }
    let client = builder.build().expect("client settings are valid");
    client.connect().await.expect("the client connects");
    client
}
