//! Real programs as child processes for the deployment tests: the
//! `circle-server` binary with its log in a file, HAProxy, nginx; free
//! loopback ports; WebSocket clients bound to a chosen loopback address.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response};

use crate::common::{Io, Ws, client_tls, dev_cert, repo_root};

/// A child process, killed when the test ends (also when it fails midway).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `circle-server` with `args`, its stderr (debug log of the server crate)
/// going to `log`. Returns the process and the address of its listener.
pub fn circle_server(args: &[&str], log: &Path) -> (Running, SocketAddr) {
    let log_file = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_circle-server"))
        .current_dir(repo_root())
        .env("RUST_LOG", "circle_server=debug,circle_executor=info")
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .expect("circle-server starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("circle-server exited: {}", read_log(log)))
            .expect("stdout line");
        if let Some(url) = line
            .strip_prefix("listening on wss://")
            .or_else(|| line.strip_prefix("listening on ws://"))
        {
            break url.trim_end_matches("/ws").parse().expect("bound address");
        }
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (running, addr)
}

/// The whole text of a log file, without terminal colour codes.
pub fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut plain = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find('\x1b') {
        plain.push_str(&rest[..start]);
        let after = &rest[start..];
        rest = after.find('m').map_or("", |end| &after[end + 1..]);
    }
    plain.push_str(rest);
    plain
}

/// Waits until `log` has a line containing every one of `needles`.
pub async fn wait_for_log_line(log: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = read_log(log);
        if let Some(line) = text
            .lines()
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP connection to `to` from the loopback address `from`.
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// A WebSocket upgrade from `from` to `to` (over TLS trusting the
/// development certificate when `tls`), with `extra` request headers.
/// `Err` carries the HTTP status of a refused upgrade (0: no HTTP answer).
pub async fn websocket_from(
    from: IpAddr,
    to: SocketAddr,
    tls: bool,
    extra: &[(&'static str, &str)],
) -> Result<Ws, u16> {
    let tcp = connect_from(from, to).await.map_err(|_| 0u16)?;
    let io: Box<dyn Io> = if tls {
        let ca = std::fs::read(dev_cert()).expect("dev cert");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(client_tls(&ca, &[b"http/1.1"]))
            .connect(name, tcp)
            .await
            .map_err(|_| 0u16)?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let scheme = if tls { "wss" } else { "ws" };
    let mut request = format!("{scheme}://localhost:{}/ws", to.port())
        .into_client_request()
        .expect("request");
    for (name, value) in extra {
        request
            .headers_mut()
            .append(*name, HeaderValue::from_str(value).expect("header value"));
    }
    let upgrade = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::client_async(request, io),
    )
    .await
    .map_err(|_| 0u16)?;
    match upgrade {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(status(&response)),
        Err(_) => Err(0),
    }
}

fn status(response: &Response<Option<Vec<u8>>>) -> u16 {
    response.status().as_u16()
}

/// Starts `program` with `args` and `env`, stdout and stderr to `log`.
pub fn spawn_logged(program: &str, args: &[&str], env: &[(&str, String)], log: &Path) -> Running {
    let log_file = std::fs::File::create(log).expect("log file");
    let stderr = log_file.try_clone().expect("log file");
    Running(
        Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("{program} starts (is it installed?): {error}")),
    )
}

/// The `circle-worker` binary, built once per test run (it belongs to
/// another package, so cargo does not build it for this crate's tests);
/// `CIRCLE_WORKER_BIN` names one built elsewhere.
pub fn worker_binary() -> &'static std::path::PathBuf {
    static BINARY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("CIRCLE_WORKER_BIN") {
            return path.into();
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(repo_root())
            .args(["build", "-p", "circle_executor", "--bin", "circle-worker"])
            .args(["--message-format", "json-render-diagnostics"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let output = build.stderr(Stdio::inherit()).output().expect("cargo runs");
        assert!(output.status.success(), "building circle-worker failed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["target"]["name"] == "circle-worker")
            .find_map(|message| message["executable"].as_str().map(Into::into))
            .expect("cargo names the circle-worker executable")
    })
}
