//! The `circle` CLI in a real terminal: tmux runs it against a real server
//! that runs a script printing forever, and types Ctrl-C into it. `circle
//! play` prints lines as they come, cancels the script on the server,
//! waits for its `-32006` and exits 130; the REPL cancels the running
//! script and stays open.
//!
//! Needs `tmux` (scripts/test-all.sh installs it); fails without it.

#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use circle_server::{ScriptLimits, ServerConfig, spawn_circle_server};

/// Prints `tick 0`, `tick 1`, … every 50 ms (the sandbox has no `sleep`)
/// until its 30 s limit, or until cancelled. One line: the REPL reads a
/// line as a script.
const FOREVER: &str = "let s = timestamp(); let n = 0; loop { while s.elapsed < n.to_float() * 0.05 {} print(`tick ${n}`); n += 1; }";

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A missing tmux fails the test (scripts/test-all.sh installs it): a
    /// skipped terminal test would pass while testing nothing.
    fn start(name: &str) -> Tmux {
        if let Err(error) = Command::new("tmux").arg("-V").output() {
            panic!("tmux is not installed (apt-get install tmux): {error}");
        }
        Tmux {
            socket: format!("circle-test-{name}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `command` (a shell command line) in a new 200×50 window.
    fn open(&self, command: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "200",
            "-y",
            "50",
            command,
        ]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Waits (10 s at most) until the screen satisfies `ready`.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "no {what} on screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The exit code the wrapper shell wrote to `path`, within 10 s.
fn wait_exit_code(path: &Path) -> (i32, Instant) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(code) = text.trim().parse()
        {
            return (code, Instant::now());
        }
        assert!(Instant::now() < deadline, "circle did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A server with one script thread: a script that was not cancelled would
/// hold it for 30 s.
fn one_thread_server() -> (
    tokio::task::JoinHandle<std::io::Result<()>>,
    circle_server::ServerHandle,
) {
    spawn_circle_server(ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        connection_threads: 1,
        script_threads: 1,
        script_limits: ScriptLimits {
            max_operations: u64::MAX / 2,
            max_run_time: Duration::from_secs(30),
            ..ScriptLimits::default()
        },
        // "Answered at once" must mean the script thread is free again, not
        // that the play was short enough to run on the connection thread.
        script_inline_operations: 0,
        ..Default::default()
    })
    .expect("the server starts")
}

/// A shell command line running `circle ARGS`, then writing its exit code
/// to `exit_file`, then waiting so the screen can still be read.
fn circle_command(args: &str, exit_file: &Path) -> String {
    format!(
        "env -u CIRCLE_KEY -u CIRCLE_URL {} {args}; echo $? > {}; sleep 60",
        env!("CARGO_BIN_EXE_circle"),
        exit_file.display()
    )
}

/// After a cancel, the only script thread is free: a play is answered at once.
async fn assert_script_thread_free(url: &str) {
    let client = circle_client_ws::CircleWsClientBuilder::new(url)
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let asked = Instant::now();
    let answer = client.play("40 + 2").await.unwrap();
    let took = asked.elapsed();
    eprintln!("a play after the cancel answered in {took:?}");
    assert_eq!(answer.output, "42");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_circle_play_cancels_the_script_and_exits_130() {
    let tmux = Tmux::start("play");
    let (task, server) = one_thread_server();
    let url = format!("ws://127.0.0.1:{}/ws", server.ws_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap();
    let (script, exit_file) = (dir.path().join("forever.rhai"), dir.path().join("exit"));
    std::fs::write(&script, FOREVER).unwrap();
    let command = circle_command(
        &format!("--url {url} play - < {}", script.display()),
        &exit_file,
    );

    let tmux = tokio::task::spawn_blocking(move || {
        tmux.open(&command);
        tmux.wait_for("tick 3", |screen| screen.contains("tick 3"));
        let pressed = Instant::now();
        tmux.keys(&["C-c"]);
        let (code, exited) = wait_exit_code(&exit_file);
        let screen = tmux.screen();
        eprintln!(
            "circle exited {code} {:?} after Ctrl-C; screen:\n{screen}",
            exited - pressed
        );
        assert_eq!(code, 130, "{screen}");
        // Lines came one by one before the Ctrl-C, in order.
        let ticks: Vec<&str> = screen
            .lines()
            .filter(|line| line.starts_with("tick "))
            .collect();
        assert!(ticks.len() >= 4, "{screen}");
        for (n, line) in ticks.iter().enumerate() {
            assert_eq!(*line, format!("tick {n}"), "{screen}");
        }
        assert!(screen.contains("cancelling"), "{screen}");
        assert!(screen.contains("cancelled"), "the -32006 answer: {screen}");
        assert!(exited - pressed < Duration::from_secs(2));
        tmux
    })
    .await
    .unwrap();
    assert_script_thread_free(&url).await;
    drop(tmux);
    server.stop().await;
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_the_repl_cancels_the_script_and_the_repl_goes_on() {
    let tmux = Tmux::start("repl");
    let (task, server) = one_thread_server();
    let url = format!("ws://127.0.0.1:{}/ws", server.ws_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap();
    let exit_file = dir.path().join("exit");
    let command = circle_command(&format!("--url {url}"), &exit_file);

    tokio::task::spawn_blocking(move || {
        tmux.open(&command);
        tmux.wait_for("the prompt", |screen| screen.contains("circle> "));
        tmux.type_text(FOREVER);
        tmux.keys(&["Enter"]);
        tmux.wait_for("tick 2", |screen| screen.contains("tick 2"));
        tmux.keys(&["C-c"]);
        tmux.wait_for("the cancel", |screen| screen.contains("script cancelled"));
        // Still open, and the script thread is free: the next script runs.
        tmux.type_text("40 + 2");
        tmux.keys(&["Enter"]);
        let screen = tmux.wait_for("42", |screen| screen.lines().any(|line| line == "42"));
        assert!(!exit_file.exists(), "the REPL stays open: {screen}");
        // Ctrl-D ends it; no script failed.
        tmux.keys(&["C-d"]);
        let (code, _) = wait_exit_code(&exit_file);
        let screen = tmux.screen();
        eprintln!("the REPL exited {code}; screen:\n{screen}");
        assert_eq!(code, 0, "{screen}");
    })
    .await
    .unwrap();
    server.stop().await;
    let _ = task.await;
}
