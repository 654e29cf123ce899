//! `circle-server` as a separate process, driven the way an operator runs it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn circle_server() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_circle-server"));
    command.current_dir(repo_root()).env_remove("RUST_LOG");
    command
}

/// Kills the server process when a test ends, also when it fails midway.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a child process prints on stdout, read on a thread so that a
/// test can wait for one with a deadline.
struct StdoutLines(std::sync::mpsc::Receiver<String>);

impl StdoutLines {
    fn of(child: &mut Child) -> Self {
        let stdout = child.stdout.take().expect("stdout piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        StdoutLines(receiver)
    }

    /// Waits for a line starting with `prefix`; returns the rest of it.
    fn wait_for(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no '{prefix}' line from circle-server"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }
}

#[tokio::test]
async fn tls_server_process_serves_wss_and_stops_cleanly_on_sigterm() {
    let mut server = Running(
        circle_server()
            .args([
                "--tls", "--cert", "cert.pem", "--key", "key.pem", "--port", "0", "--auth",
            ])
            .args(["--script-max-memory-bytes", "16777216"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("circle-server starts"),
    );
    let url = StdoutLines::of(&mut server.0).wait_for("listening on wss://");
    let addr = url.trim_end_matches("/ws").parse().expect("bound address");

    let mut ws = connect_wss(addr).await;
    assert_eq!(
        error_code(&call(&mut ws, 1, "play", json!({"script": "1"})).await),
        -32002
    );
    assert_eq!(
        sign_in(&mut ws, &key(21)).await["result"]["authenticated"],
        true
    );
    assert_eq!(
        call(
            &mut ws,
            3,
            "play",
            json!({"script": "print(\"hi\"); 40 + 2"})
        )
        .await["result"]["output"],
        "hi\n42"
    );

    // The binary installs the counting allocator, so the memory cap holds.
    let hog = r#"let big = ""; big.pad(100000, "x"); let m = #{}; let i = 0; loop { m["k" + i] = big + i; i += 1; }"#;
    let stopped = call(&mut ws, 4, "play", json!({"script": hog})).await;
    assert_eq!(error_code(&stopped), -32004, "{stopped}");
    assert!(
        stopped["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("memory limit (16777216 bytes)"),
        "{stopped}"
    );

    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    assert_eq!(recv_close_code(&mut ws).await, Some(1001));
    let status = server.0.wait().expect("exit status");
    assert!(status.success(), "graceful stop exits 0, got {status}");
}

#[tokio::test]
async fn plain_server_with_no_flags_but_a_free_port() {
    let mut server = Running(
        circle_server()
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts"),
    );
    let lines = StdoutLines::of(&mut server.0);
    let key_line = lines.wait_for("circle public key: ");
    assert_eq!(
        key_line.len(),
        66,
        "compressed public key printed: {key_line}"
    );
    let child_url = lines.wait_for("listening on ws://");
    let mut ws = connect_ws(&format!("ws://{child_url}")).await;
    let whoami = call(&mut ws, 1, "whoami", json!({})).await;
    assert_eq!(whoami["result"]["circle"]["public_key"], key_line.as_str());
}

#[test]
fn bad_files_and_flags_give_one_clear_line_and_a_nonzero_exit() {
    let output = circle_server()
        .args([
            "--tls",
            "--cert",
            "no-such-cert.pem",
            "--key",
            "key.pem",
            "--port",
            "0",
        ])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert_eq!(
        last, "circle-server: certificate file not found: no-such-cert.pem",
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );

    let output = circle_server()
        .args(["--port", "not-a-port"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'not-a-port'"));

    let output = circle_server().arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--tls",
        "--cert",
        "--key",
        "--tls-port",
        "--auth",
        "--redis-url",
        "--acme-domain",
        "--acme-directory",
        "CIRCLE_PORT",
        "--store-max-value-bytes",
        "CIRCLE_STORE_MAX_CIRCLE_BYTES",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}
