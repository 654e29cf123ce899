//! The `circle` binary as a shell user meets it: stdout holds script output
//! only, diagnostics go to stderr, and exit codes tell failures apart.

// The command line exists natively only (the wasm32 `circle` is empty).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use support::{FakeServer, self_signed, server_tls};

fn circle(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_circle"))
        .args(args)
        .env_remove("CIRCLE_KEY")
        .env_remove("CIRCLE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run circle");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn play_prints_the_output_alone() {
    let server = FakeServer::plain().await;
    let url = server.ws_url();
    let output = tokio::task::spawn_blocking(move || circle(&["--url", &url, "play", "hello"], ""))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hello\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_have_distinct_exit_codes() {
    let server = FakeServer::plain().await;
    let tls_server = FakeServer::tls(server_tls(&self_signed(&["localhost"]), None)).await;
    let (url, tls_url) = (server.ws_url(), tls_server.wss_url("localhost"));
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "ws://127.0.0.1:{}/ws",
            listener.local_addr().unwrap().port()
        )
    };
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["--url".into(), url.clone(), "play".into(), "fail".into()],
            1,
            "-32003",
        ),
        (
            vec!["--url".into(), "http://x".into(), "whoami".into()],
            2,
            "invalid URL",
        ),
        (
            vec![
                "--url".into(),
                url.clone(),
                "--key".into(),
                "12".into(),
                "whoami".into(),
            ],
            2,
            "invalid keypair",
        ),
        (vec!["--url".into(), refused, "whoami".into()], 3, "refused"),
        (
            vec!["--url".into(), tls_url.clone(), "whoami".into()],
            4,
            "unknown issuer",
        ),
    ];
    for (args, expected, needle) in cases {
        let output = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            circle(&args, "")
        })
        .await
        .unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(expected), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(output.stdout.is_empty(), "stdout must stay clean");
    }
    // --insecure gets through, with a warning on stderr only.
    let output = tokio::task::spawn_blocking(move || {
        circle(&["--url", &tls_url, "--insecure", "play", "ok"], "")
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), "ok\n");
    assert!(text(&output.stderr).contains("verification is OFF"));
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_mode_runs_every_script() {
    let server = FakeServer::plain().await;
    let url = server.ws_url();
    let output =
        tokio::task::spawn_blocking(move || circle(&["--url", &url], "one\n\nfail\ntwo(\n)\n"))
            .await
            .unwrap();
    assert_eq!(text(&output.stdout), "one\ntwo(\n)\n");
    assert!(text(&output.stderr).contains("fail on purpose"));
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failed script is reported at exit"
    );

    let url = server.ws_url();
    let output = tokio::task::spawn_blocking(move || {
        circle(&["--url", &url, "repl", "--paragraphs"], "a\nb\n\nc\n")
    })
    .await
    .unwrap();
    assert_eq!(text(&output.stdout), "a\nb\nc\n");
    assert_eq!(output.status.code(), Some(0));
}
