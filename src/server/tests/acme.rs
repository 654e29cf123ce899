//! Automatic certificates end to end against Debian's `pebble` (a test ACME
//! CA) and `pebble-challtestsrv` (its DNS server, answering 127.0.0.1 for
//! every name), all on loopback: circle-server starts without a
//! certificate, answers the CA's challenge on its own listeners, serves
//! what it gets to a client that trusts only Pebble's root, restarts from
//! its cache without a new order, renews while a connection stays open,
//! and keeps serving when the CA cannot be reached.

mod common;
mod processes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use circle_server::{AcmeChallenge, AcmeConfig, ServerConfig};
use circle_test_support::{TempFiles, TestCa, Validity};
use common::*;
use processes::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOMAIN: &str = "circle.test";

/// Pebble and its DNS server, with the ports circle-server must listen on.
struct Pebble {
    _dns: Running,
    _ca: Running,
    files: TempFiles,
    /// The CA that signed Pebble's own HTTPS certificate (`--acme-ca`).
    https_ca: PathBuf,
    directory: String,
    management: SocketAddr,
    log: PathBuf,
}

impl Pebble {
    /// Starts both, validating challenges against `http_port` (HTTP-01)
    /// and `tls_port` (TLS-ALPN-01) on 127.0.0.1.
    async fn start(http_port: u16, tls_port: u16) -> Pebble {
        let files = TempFiles::new();
        let dns_port = free_port();
        let dns_management = free_port();
        let dns = spawn_logged(
            "pebble-challtestsrv",
            &[
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-management",
                &format!("127.0.0.1:{dns_management}"),
            ],
            &[],
            &files.path("challtestsrv.log"),
        );
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], dns_management)),
            "pebble-challtestsrv",
        )
        .await;

        let https = TestCa::new("pebble https test CA");
        let leaf = https.leaf(&["localhost"], Validity::Now);
        let cert = files.write("pebble.crt.pem", &leaf.cert);
        let key = files.write("pebble.key.pem", &leaf.key);
        let https_ca = files.write("pebble-https-ca.pem", https.cert_pem());
        let (port, management_port) = (free_port(), free_port());
        let config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": path_text(&cert),
            "privateKey": path_text(&key),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = files.write("pebble.json", config.to_string());
        let log = files.path("pebble.log");
        let ca = spawn_logged(
            "pebble",
            &[
                "-config",
                &path_text(&config_path),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ],
            &[
                ("PEBBLE_VA_NOSLEEP", "1".to_owned()),
                ("PEBBLE_WFE_NONCEREJECT", "0".to_owned()),
            ],
            &log,
        );
        let management = SocketAddr::from(([127, 0, 0, 1], management_port));
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "pebble").await;
        wait_for_port(management, "pebble management").await;
        Pebble {
            _dns: dns,
            _ca: ca,
            files,
            https_ca,
            directory: format!("https://localhost:{port}/dir"),
            management,
            log,
        }
    }

    /// Pebble's issuing root (regenerated at every start), PEM.
    async fn root(&self) -> Vec<u8> {
        let ca = std::fs::read(&self.https_ca).expect("pebble https CA");
        let (status, body) = get(self.management, &ca, "localhost", "/roots/0").await;
        assert_eq!(status, 200, "{body}");
        body.into_bytes()
    }

    /// New orders Pebble has received, from its log.
    fn orders(&self) -> usize {
        read_log(&self.log).matches("/order-plz").count()
    }

    fn acme(&self, challenge: AcmeChallenge, cache: &Path) -> AcmeConfig {
        AcmeConfig {
            domains: vec![DOMAIN.to_owned()],
            contacts: vec!["mailto:ops@circle.test".to_owned()],
            cache_dir: cache.to_owned(),
            directory_url: self.directory.clone(),
            ca_file: Some(self.https_ca.clone()),
            challenge,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            order_timeout: Duration::from_secs(30),
        }
    }
}

/// `GET path` over TLS trusting `ca` as `name`: status and body.
async fn get(addr: SocketAddr, ca: &[u8], name: &str, path: &str) -> (u16, String) {
    let mut tls = tls_connect(addr, client_tls(ca, &[b"http/1.1"]), name)
        .await
        .expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut response)).await;
    let status = response
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The serial (hex with colons) of the certificate a TLS server presents.
async fn served_serial(addr: SocketAddr, root: &[u8]) -> String {
    let tls = tls_connect(addr, client_tls(root, &[b"http/1.1"]), DOMAIN)
        .await
        .expect("TLS handshake with Pebble's root");
    let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).expect("X.509");
    parsed.raw_serial_as_string()
}

async fn wait_for_certificate(server: &TestServer, other_than: Option<&str>) -> (String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(certificate) = server.handle.tls_certificate()
            && Some(certificate.serial.as_str()) != other_than
        {
            return (certificate.serial, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no ACME certificate within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs in over wss:// trusting only `root`, then plays.
async fn sign_in_and_play(addr: SocketAddr, root: &[u8]) -> Ws {
    let mut ws = connect_wss_with(addr, client_tls(root, &[b"http/1.1"]), DOMAIN).await;
    let signed_in = sign_in(&mut ws, &key(7)).await;
    assert!(signed_in.get("result").is_some(), "{signed_in}");
    play(&mut ws, 10).await;
    ws
}

async fn play(ws: &mut Ws, id: i64) {
    let answer = call(ws, id, "play", json!({"script": "40 + 2"})).await;
    assert_eq!(answer["result"]["output"], "42", "{answer}");
}

fn server_config(port: u16, tls_port: Option<u16>, acme: AcmeConfig) -> ServerConfig {
    ServerConfig {
        enable_tls: true,
        enable_auth: true,
        port,
        tls_port,
        acme: Some(acme),
        ..ServerConfig::default()
    }
}

/// Starts like `TestServer::start` but on a chosen port (Pebble must know it).
fn start_on(config: ServerConfig) -> TestServer {
    let (task, handle) = circle_server::spawn_circle_server(ServerConfig {
        host: "127.0.0.1".into(),
        connection_threads: 2,
        script_threads: 2,
        ..config
    })
    .expect("server starts");
    TestServer::from_parts(handle, task)
}

/// (1) TLS-ALPN-01 on the TLS listener alone, (3) a restart from the cache
/// without a new order, (4) a forced renewal while a connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_then_cache_restart_then_renewal() {
    let tls_port = free_port();
    let pebble = Pebble::start(free_port(), tls_port).await;
    let root = pebble.root().await;
    let cache = pebble.files.path("acme-cache");
    let config = server_config(
        tls_port,
        None,
        pebble.acme(AcmeChallenge::TlsAlpn01, &cache),
    );

    let server = start_on(config.clone());
    let addr = server.wss_addr();
    // No placeholder: before the first certificate a handshake fails.
    if server.handle.tls_certificate().is_none() {
        let early = tls_connect(addr, client_tls(&root, &[b"http/1.1"]), DOMAIN).await;
        assert!(early.is_err() || server.handle.tls_certificate().is_some());
    }
    let (first, took) = wait_for_certificate(&server, None).await;
    eprintln!("first certificate {first} after {took:?}");
    assert_eq!(served_serial(addr, &root).await, first);
    let mut ws = sign_in_and_play(addr, &root).await;
    drop(ws);
    // The expiry gauge and the counters, as for file certificates.
    let (status, metrics) = get(addr, &root, DOMAIN, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metric(&metrics, "circle_tls_certificate_expiry_seconds") > 86_400.0);
    assert_eq!(metric(&metrics, "circle_acme_certificates_total"), 1.0);
    assert_eq!(metric(&metrics, "circle_acme_failures_total"), 0.0);
    let orders = pebble.orders();
    assert!(orders >= 1, "Pebble saw the order");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |path: &Path| std::fs::metadata(path).expect("cache").permissions().mode() & 0o777;
        assert_eq!(mode(&cache), 0o700);
        assert_eq!(mode(&cache.join("lock")), 0o600);
        let folder = std::fs::read_dir(&cache)
            .expect("cache folder")
            .filter_map(Result::ok)
            .find(|entry| entry.path().is_dir())
            .expect("the CA's folder")
            .path();
        for entry in std::fs::read_dir(&folder).expect("CA folder") {
            let path = entry.expect("entry").path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    server.stop().await;

    // (3) Restart: the cached certificate serves at once, no new order.
    let server = start_on(config.clone());
    let cached = server
        .handle
        .tls_certificate()
        .expect("served from the cache at start");
    assert_eq!(cached.serial, first);
    ws = sign_in_and_play(addr, &root).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pebble.orders(),
        orders,
        "a restart with a valid cache placed an order"
    );

    // (4) Renewal while `ws` stays open.
    assert!(server.handle.renew_certificate());
    let (renewed, took) = wait_for_certificate(&server, Some(&first)).await;
    eprintln!("renewed certificate {renewed} after {took:?}");
    assert_ne!(renewed, first);
    play(&mut ws, 20).await;
    assert_eq!(served_serial(addr, &root).await, renewed);
    let mut second = sign_in_and_play(addr, &root).await;
    play(&mut second, 11).await;
    play(&mut ws, 21).await;
    assert_eq!(pebble.orders(), orders + 1);
    server.stop().await;
}

/// (2) HTTP-01 on the plain listener, the TLS listener beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_on_the_plain_listener() {
    let (port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(port, tls_port).await;
    let root = pebble.root().await;
    let cache = pebble.files.path("acme-cache");
    let mut config = server_config(
        port,
        Some(tls_port),
        pebble.acme(AcmeChallenge::Http01, &cache),
    );
    config.redirect_http_to_https = true;
    let server = start_on(config);
    let (serial, took) = wait_for_certificate(&server, None).await;
    eprintln!("HTTP-01 certificate {serial} after {took:?}");
    let ws = sign_in_and_play(server.wss_addr(), &root).await;
    drop(ws);
    let log = read_log(&pebble.log);
    assert!(
        log.contains("Attempting to validate w/ HTTP:"),
        "Pebble validated HTTP-01:\n{log}"
    );
    server.stop().await;
}

/// (5) The CA cannot be reached: attempts are counted and retried with
/// backoff, the server keeps answering `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_ca_is_retried_and_the_server_keeps_running() {
    let files = TempFiles::new();
    let closed = free_port();
    let acme = AcmeConfig {
        domains: vec![DOMAIN.to_owned()],
        cache_dir: files.path("acme-cache"),
        directory_url: format!("https://localhost:{closed}/dir"),
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
        request_timeout: Duration::from_secs(2),
        ..AcmeConfig::default()
    };
    let server = start_on(server_config(free_port(), Some(free_port()), acme));
    let plain = server.handle.ws_addr().expect("plain listener");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let metrics = http_get(plain, "/metrics").await;
        let failures = metric(&metrics, "circle_acme_failures_total");
        if failures >= 3.0 {
            break failures;
        }
        assert!(Instant::now() < deadline, "no retries:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failures >= 3.0);
    assert!(server.handle.tls_certificate().is_none());
    let health = http_get(plain, "/health").await;
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    // The TLS listener refuses handshakes cleanly meanwhile.
    let ca = TestCa::new("unused").cert_pem();
    assert!(
        tls_connect(
            server.wss_addr(),
            client_tls(ca.as_bytes(), &[b"http/1.1"]),
            DOMAIN
        )
        .await
        .is_err()
    );
    server.stop().await;
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response)).await;
    response
}

/// (5) The same through `circle-server`: the log says what failed and why,
/// and when the next attempt comes.
#[tokio::test]
async fn cli_logs_a_clear_line_when_the_ca_is_unreachable() {
    let files = TempFiles::new();
    let log = files.path("server.log");
    let directory = format!("https://localhost:{}/dir", free_port());
    let cache = path_text(files.path("acme-cache"));
    let (_server, plain) = circle_server(
        &[
            "--tls",
            "--tls-port",
            "0",
            "--acme-domain",
            DOMAIN,
            "--acme-contact",
            "mailto:ops@circle.test",
            "--acme-cache",
            &cache,
            "--acme-directory",
            &directory,
        ],
        &log,
    );
    let line = wait_for_log_line(&log, &["ACME certificate order failed", "retry_in_ms"]).await;
    assert!(
        line.contains("Connection refused") || line.contains("connection refused"),
        "{line}"
    );
    let health = http_get(plain, "/health").await;
    assert!(health.contains("\"status\":\"ok\""), "{health}");
}

/// ACME and certificate files exclude each other, with a typed error.
#[tokio::test]
async fn acme_with_certificate_files_is_refused() {
    let config = ServerConfig {
        acme: Some(AcmeConfig {
            domains: vec![DOMAIN.to_owned()],
            ..AcmeConfig::default()
        }),
        port: 0,
        ..tls_config()
    };
    let error = circle_server::spawn_circle_server(config).expect_err("refused");
    assert!(
        matches!(error, circle_server::ServerError::AcmeWithCertificateFiles),
        "{error}"
    );
}

/// (5) The CA answers but the challenge fails (Pebble validates on a port
/// where nothing listens): counted as failures, retried, no certificate
/// served, `/health` answers; each attempt places a new order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_challenge_is_retried_and_the_server_keeps_running() {
    let pebble = Pebble::start(free_port(), free_port()).await;
    let cache = pebble.files.path("acme-cache");
    let server = start_on(server_config(
        free_port(),
        Some(free_port()),
        pebble.acme(AcmeChallenge::TlsAlpn01, &cache),
    ));
    let plain = server.handle.ws_addr().expect("plain listener");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = http_get(plain, "/metrics").await;
        if metric(&metrics, "circle_acme_failures_total") >= 2.0 {
            assert!(
                metric(&metrics, "circle_acme_orders_total") >= 2.0,
                "{metrics}"
            );
            assert_eq!(metric(&metrics, "circle_acme_certificates_total"), 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempts:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.handle.tls_certificate().is_none());
    let health = http_get(plain, "/health").await;
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    assert!(pebble.orders() >= 2, "each attempt is a new order");
    server.stop().await;
}
