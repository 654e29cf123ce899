//! Servers and workers through a TLS-only `redis-server` (`--port 0
//! --tls-port …`) whose only user is an ACL user with a password: plays
//! are answered; a wrong CA or a wrong password gives one clear log line
//! at start and `-32005` for every play, never a hang, never the password.

mod common;
mod processes;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use processes::*;
use rcgen::{Issuer, KeyPair};
use serde_json::json;

const PASSWORD: &str = "pw-4e1d9c-right";
const WRONG_PASSWORD: &str = "pw-77aa03-wrong";

fn circle_key() -> String {
    key(43).public_key().to_compressed_hex()
}

/// A CA and a certificate for 127.0.0.1 it signed, written into `dir`:
/// returns (CA file, certificate file, key file).
fn ca_and_server_cert(dir: &Path, name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_params = ca_params(&format!("{name} CA"));
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = leaf_params(&["localhost", "127.0.0.1"])
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    };
    (
        write(&format!("{name}-ca.pem"), ca_cert.pem()),
        write(&format!("{name}-cert.pem"), leaf.pem()),
        write(&format!("{name}-key.pem"), leaf_key.serialize_pem()),
    )
}

/// `redis-server` listening on TLS only, with the default user switched
/// off and one ACL user `circle`.
fn tls_only_redis(dir: &Path, cert: &str, key: &str, ca: &str) -> (Running, u16) {
    let port = free_port();
    let log = dir.join("redis.log");
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--tls-cert-file", cert, "--tls-key-file", key])
        .args(["--tls-ca-cert-file", ca, "--tls-auth-clients", "no"])
        .args(["--user", "default", "off"])
        // The ACL deploy/README.md recommends: the circle's keys only.
        .args([
            "--user",
            "circle",
            "on",
            &format!(">{PASSWORD}"),
            "~circle:*",
            "+@all",
        ])
        .args(["--logfile", &log.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    (Running(child), port)
}

fn url(password: &str, port: u16) -> String {
    format!("rediss://circle:{password}@127.0.0.1:{port}")
}

fn start_worker(
    dir: &Path,
    name: &str,
    redis_url: &str,
    ca: &str,
) -> (Running, std::path::PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let running = spawn_logged(
        worker_binary().to_str().expect("path"),
        &[
            "--redis-url",
            redis_url,
            "--redis-ca",
            ca,
            "--circle-public-key",
            &circle_key(),
            "--name",
            name,
            "--concurrency",
            "2",
        ],
        &[("RUST_LOG", "info".to_owned())],
        &log,
    );
    (running, log)
}

/// Plays until one is answered (workers need a moment to join).
async fn first_answer(ws: &mut Ws) -> serde_json::Value {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = call(ws, 1, "play", json!({"script": "40 + 2"})).await;
        if answer["result"].is_object() || Instant::now() > give_up {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_two_workers_through_tls_only_redis_with_an_acl_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key_file) = ca_and_server_cert(dir.path(), "redis");
    let (_redis, port) = tls_only_redis(dir.path(), &cert, &key_file, &ca);
    wait_for_port(([127, 0, 0, 1], port).into(), "redis-server").await;
    let redis_url = url(PASSWORD, port);
    let (_w1, w1_log) = start_worker(dir.path(), "tls-w1", &redis_url, &ca);
    let (_w2, w2_log) = start_worker(dir.path(), "tls-w2", &redis_url, &ca);

    let server_log = dir.path().join("server.log");
    let (_server, addr) = circle_server(
        &[
            "--tls",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
            "--circle-public-key",
            &circle_key(),
            "--redis-url",
            &redis_url,
            "--redis-ca",
            &ca,
        ],
        &server_log,
    );
    let mut ws = connect_wss(addr).await;
    let answer = first_answer(&mut ws).await;
    assert_eq!(
        answer["result"]["output"],
        "42",
        "{answer}\n{}",
        read_log(&server_log)
    );
    for id in 0..40 {
        let answer = call(&mut ws, id, "play", json!({"script": format!("{id} * 2")})).await;
        assert_eq!(answer["result"]["output"], (id * 2).to_string(), "{answer}");
    }
    for log in [&server_log, &w1_log, &w2_log] {
        let text = read_log(log);
        assert!(
            !text.contains(PASSWORD),
            "the password is never logged:\n{text}"
        );
        // A connection attempt may time out on a loaded machine and is retried (the
        // plays above were all answered); what must never show is Redis refusing the
        // ACL user or the TLS setup.
        for line in text.lines().filter(|l| l.contains("cannot reach Redis")) {
            for refusal in [
                "Password authentication failed",
                "invalid peer certificate",
                "NOPERM",
            ] {
                assert!(!line.contains(refusal), "{line}\n{text}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_password_is_one_clear_line_and_minus_32005_not_a_hang() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key_file) = ca_and_server_cert(dir.path(), "redis");
    let (other_ca, _, _) = ca_and_server_cert(dir.path(), "other");
    let (_redis, port) = tls_only_redis(dir.path(), &cert, &key_file, &ca);
    wait_for_port(([127, 0, 0, 1], port).into(), "redis-server").await;

    for (case, password, trusted) in [
        ("wrong-ca", PASSWORD, &other_ca),
        ("wrong-password", WRONG_PASSWORD, &ca),
    ] {
        let redis_url = url(password, port);
        let (_worker, worker_log) = start_worker(dir.path(), case, &redis_url, trusted);
        let server_log = dir.path().join(format!("{case}-server.log"));
        let (_server, addr) = circle_server(
            &[
                "--tls",
                "--cert",
                "cert.pem",
                "--key",
                "key.pem",
                "--circle-public-key",
                &circle_key(),
                "--redis-url",
                &redis_url,
                "--redis-ca",
                trusted,
            ],
            &server_log,
        );
        let mut ws = connect_wss(addr).await;
        for id in 0..5 {
            let started = Instant::now();
            let answer = call(&mut ws, id, "play", json!({"script": "1"})).await;
            assert_eq!(error_code(&answer), -32005, "{case}: {answer}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{case}: answered in {:?}",
                started.elapsed()
            );
        }
        // The worker keeps retrying without crashing or flooding its log.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let why = match case {
            "wrong-ca" => "invalid peer certificate",
            _ => "Password authentication failed",
        };
        for (who, log) in [("server", &server_log), ("worker", &worker_log)] {
            let text = read_log(log);
            let lines: Vec<&str> = text
                .lines()
                .filter(|line| line.contains("cannot reach Redis"))
                .collect();
            assert_eq!(lines.len(), 1, "{case}: one line from the {who}:\n{text}");
            assert!(
                lines[0].contains(why),
                "{case}: the {who} says why: {}",
                lines[0]
            );
            assert!(
                !text.contains(password),
                "{case}: no password in the {who}'s log:\n{text}"
            );
            assert!(!text.contains("panicked"), "{case}: {who}:\n{text}");
        }
    }
}
