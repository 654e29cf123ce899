//! Real processes for the Redis tests: a private `redis-server` per test and
//! `circle-worker` processes. Shared with circle_server's tests (`#[path]`), so the
//! workspace has one copy of it.
//!
//! Never touches a machine-wide Redis: each test starts its own on a free port of
//! 127.0.0.1, without persistence, and kills it when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A client connection to a test's Redis, for reading counters and streams directly.
pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("test connection to Redis")
}

/// A `redis-server` of one test.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port. `redis-server --port 0` refuses to start, so a free
    /// port is found by binding port 0 first; another process may take it in between, so
    /// a failed start is retried on a new port.
    pub fn start() -> RedisServer {
        let mut last_error = String::new();
        for _ in 0..10 {
            let port = free_port();
            match RedisServer::start_on(port) {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("cannot start redis-server: {last_error}");
    }

    /// Starts a server on `port`; ready (answers PING) when this returns.
    pub fn start_on(port: u16) -> Result<RedisServer, String> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("redis-server is not installed? (apt-get install redis-server): {e}")
            })?;
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut output = String::new();
                if let Some(mut stdout) = child.stdout.take() {
                    let _ = stdout.read_to_string(&mut output);
                }
                return Err(format!(
                    "redis-server on port {port} exited ({status}): {}",
                    output.lines().last().unwrap_or_default()
                ));
            }
            if ping(port) {
                // Its log is not needed once it runs; a full pipe must never block it.
                drop(child.stdout.take());
                return Ok(RedisServer {
                    child: Some(child),
                    port,
                });
            }
            if Instant::now() > give_up {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on port {port} never answered PING"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would: nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            match RedisServer::start_on(self.port) {
                Ok(mut server) => {
                    self.child = server.child.take();
                    return;
                }
                Err(error) if Instant::now() > give_up => panic!("cannot restart Redis: {error}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// A `circle-worker` process, killed when dropped. Its log (stderr) goes to a file, shown
/// by [`WorkerProcess::log`] when a test needs to explain a failure.
pub struct WorkerProcess {
    child: Child,
    pub name: String,
    log_path: PathBuf,
}

impl WorkerProcess {
    /// Starts `binary` for the circle `circle_key` on `redis_url`, named `name`, with
    /// `extra` flags.
    pub fn start(
        binary: &Path,
        redis_url: &str,
        circle_key: &str,
        name: &str,
        extra: &[&str],
    ) -> WorkerProcess {
        let log_path = std::env::temp_dir().join(format!(
            "circle-worker-{name}-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let log = std::fs::File::create(&log_path).expect("worker log file");
        let child = Command::new(binary)
            .args(["--redis-url", redis_url])
            .args(["--circle-public-key", circle_key])
            .args(["--name", name])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        WorkerProcess {
            child,
            name: name.to_owned(),
            log_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: asks for a graceful stop.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let give_up = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > give_up {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A valid compressed circle key, distinct per `seed`.
pub fn circle_key(seed: u8) -> String {
    format!("02{}", format!("{seed:02x}").repeat(32))
}
