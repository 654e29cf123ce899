//! `hold` mode: N idle connections held open; the server's resident memory
//! per connection, from /proc/PID/status before and after.
//!
//! The connections are opened (and signed in, with --auth) a few at a time,
//! left idle for a settling time, then the server's RSS is read. They keep
//! answering the server's pings all along (tungstenite does it while the
//! connection's task waits for frames), so an idle-timeout would not fire.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::net::Connector;
use crate::procfs;
use crate::rpc::pick_source;
use crate::stats::{Errors, round};

#[derive(Clone, Debug)]
pub struct HoldOptions {
    pub connections: usize,
    /// Connections being opened at once.
    pub concurrency: usize,
    pub auth: bool,
    /// Idle time before the server's memory is read.
    pub settle: Duration,
    /// Further time to hold after the reading, e.g. to outlive ping intervals.
    pub hold: Duration,
    pub server_pid: Option<u32>,
    pub sources: Vec<IpAddr>,
}

pub async fn run(connector: Arc<Connector>, options: HoldOptions) -> Result<Value> {
    if options.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let pid = options.server_pid;
    let rss_before = pid.and_then(procfs::rss_kib);
    let fds_before = pid.and_then(procfs::open_fds);
    let key = Arc::new(crate::auth::ephemeral_key());
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let dropped = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let mut tasks = Vec::with_capacity(options.connections);
    for i in 0..options.connections {
        let connector = connector.clone();
        let key = key.clone();
        let gate = gate.clone();
        let mut stop = stop_rx.clone();
        let dropped = dropped.clone();
        let source = pick_source(&options.sources, i);
        let auth = options.auth;
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let opened = async {
                let (mut ws, _) = tokio::time::timeout(Duration::from_secs(15), connector.connect(source))
                    .await
                    .map_err(|_| "connect_timeout".to_owned())?
                    .map_err(|e| e.label())?;
                if auth {
                    crate::auth::sign_in(&mut ws, &key).await.map_err(str::to_owned)?;
                }
                Ok::<_, String>(ws)
            }
            .await;
            drop(permit);
            let mut ws = match opened {
                Ok(ws) => {
                    let _ = opened_tx.send(Ok(()));
                    ws
                }
                Err(label) => {
                    let _ = opened_tx.send(Err(label));
                    return;
                }
            };
            // Idle: read (answering pings) until told to stop.
            loop {
                tokio::select! {
                    message = ws.next() => match message {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            if !*stop.borrow() {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            return;
                        }
                        Some(Ok(_)) => {}
                    },
                    _ = stop.changed() => break,
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        });
        tasks.push(opened_rx);
    }

    let mut errors = Errors::default();
    let mut opened = 0u64;
    for outcome in tasks {
        match outcome.await {
            Ok(Ok(())) => opened += 1,
            Ok(Err(label)) => errors.add(label, 1),
            Err(_) => errors.add("task_panicked", 1),
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(options.settle).await;
    let rss_after = pid.and_then(procfs::rss_kib);
    let fds_after = pid.and_then(procfs::open_fds);
    tokio::time::sleep(options.hold).await;
    let server_alive = pid.is_none_or(|pid| procfs::rss_kib(pid).is_some());
    let dropped_count = dropped.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    // Give the closes a moment; the process exit cleans up the rest.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let per_conn_bytes = match (rss_before, rss_after) {
        (Some(before), Some(after)) if opened > 0 => {
            Some(round(after.saturating_sub(before) as f64 * 1024.0 / opened as f64, 0))
        }
        _ => None,
    };
    Ok(json!({
        "mode": "hold",
        "connections": options.connections,
        "auth": options.auth,
        "opened": opened,
        "open_s": round(open_secs, 2),
        "refused": errors.total(),
        "errors": errors.total(),
        "error_kinds": errors.to_json(),
        "dropped_while_idle": dropped_count,
        "server_alive": server_alive,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_fds_before": fds_before,
        "server_fds_after": fds_after,
        "rss_bytes_per_conn": per_conn_bytes,
        "rss_kb_per_conn": per_conn_bytes.map(|b| round(b / 1000.0, 2)),
    }))
}
