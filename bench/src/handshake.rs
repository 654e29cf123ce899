//! `handshake` mode: a new TCP + TLS + WebSocket connection for every
//! request, full or resumed, for a warm-up and then a measured window.
//!
//! Each of C workers loops: connect, one request, check the answer, close.
//! With resumption on, rustls offers the tickets the server sent on earlier
//! connections; each connection says whether it was resumed, so a server
//! that silently makes full handshakes shows up in the counts. Given two
//! servers, connections take turns between them with one ticket cache:
//! resumption then works only if the servers share their ticket keys.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::check::{Expect, Outcome, RequestTemplate, check};
use crate::net::Connector;
use crate::procfs::{self, CpuSample};
use crate::stats::{Errors, latency_json, new_histogram, round};

#[derive(Clone, Debug)]
pub struct HandshakeOptions {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub template: RequestTemplate,
    pub expect: Expect,
    pub resume: bool,
    /// Sign in (fetch_nonce + authenticate) on every connection before the request,
    /// with this key: the cost of a sign-in on a new connection.
    pub sign_in: Option<Arc<circle_protocol::SigningKey>>,
    /// The servers' pids; their CPU times are summed.
    pub server_pids: Vec<u32>,
}

struct WorkerResult {
    hist: Histogram<u64>,
    ok_in_window: u64,
    resumed_in_window: u64,
    errors: Errors,
    kx_group: Option<String>,
    tls13: bool,
}

pub async fn run(connectors: Vec<Arc<Connector>>, options: HandshakeOptions) -> Result<Value> {
    if options.concurrency == 0 {
        bail!("--connections must be at least 1");
    }
    if connectors.is_empty() {
        bail!("no server to connect to");
    }
    let start = Instant::now();
    let measure_start = start + options.warmup;
    let measure_end = measure_start + options.duration;
    let ticks = procfs::clock_ticks_per_sec();
    let server_pids = options.server_pids.clone();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start).await;
        let first: Vec<_> = server_pids.iter().map(|pid| CpuSample::take(Some(*pid))).collect();
        tokio::time::sleep_until(measure_end).await;
        let last: Vec<_> = server_pids.iter().map(|pid| CpuSample::take(Some(*pid))).collect();
        let uses: Vec<_> = first.iter().zip(&last).map(|(a, b)| procfs::cpu_between(a, b, ticks)).collect();
        procfs::CpuUse::sum(&uses)
    });
    let mut workers = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        let connectors = connectors.clone();
        let options = options.clone();
        workers.push(tokio::spawn(async move {
            worker(&connectors, &options, measure_start, measure_end).await
        }));
    }
    let mut hist = new_histogram();
    let mut ok = 0;
    let mut resumed = 0;
    let mut errors = Errors::default();
    let mut kx_group = None;
    let mut tls13 = false;
    for task in workers {
        match task.await {
            Ok(result) => {
                let _ = hist.add(&result.hist);
                ok += result.ok_in_window;
                resumed += result.resumed_in_window;
                errors.merge(&result.errors);
                kx_group = kx_group.or(result.kx_group);
                tls13 |= result.tls13;
            }
            Err(_) => errors.add("task_panicked", 1),
        }
    }
    let cpu = sampler.await.unwrap_or_default();
    let secs = options.duration.as_secs_f64();
    Ok(json!({
        "mode": "handshake",
        "resume": options.resume,
        "sign_in": options.sign_in.is_some(),
        "connections": options.concurrency,
        "duration_s": secs,
        "requests": ok,
        "conn_per_s": round(ok as f64 / secs, 1),
        "servers": connectors.len(),
        "resumed": resumed,
        "errors": errors.total(),
        "error_kinds": errors.to_json(),
        "latency_us": latency_json(&hist),
        "kx_group": kx_group,
        "tls13": tls13,
        "server_cpu_us_per_conn": cpu.server_secs.filter(|_| ok > 0).map(|s| round(s * 1e6 / ok as f64, 2)),
        "server_cpu_pct": cpu.server_pct.map(|p| round(p, 1)),
        "client_cpu_pct": cpu.client_pct.map(|p| round(p, 1)),
    }))
}

async fn worker(
    connectors: &[Arc<Connector>],
    options: &HandshakeOptions,
    measure_start: Instant,
    measure_end: Instant,
) -> WorkerResult {
    let mut result = WorkerResult {
        hist: new_histogram(),
        ok_in_window: 0,
        resumed_in_window: 0,
        errors: Errors::default(),
        kx_group: None,
        tls13: false,
    };
    let mut id = 0u64;
    while Instant::now() < measure_end {
        id += 1;
        let connector = &connectors[id as usize % connectors.len()];
        let began = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), one(connector, options, id)).await;
        let done = Instant::now();
        let in_window = began >= measure_start && done < measure_end;
        match outcome {
            Ok(Ok(info)) => {
                if info.kx_group.is_some() {
                    result.kx_group = info.kx_group.map(|g| format!("{g:?}"));
                    result.tls13 = info.tls13;
                }
                if in_window {
                    let _ = result.hist.record((done.duration_since(began).as_nanos() as u64).max(1));
                    result.ok_in_window += 1;
                    if info.resumed {
                        result.resumed_in_window += 1;
                    } else if options.resume && connector.target().tls {
                        // Asked to resume, made a full handshake: counted, not hidden.
                        result.errors.add("not_resumed", 1);
                    }
                }
            }
            Ok(Err(label)) => {
                result.errors.add(label, 1);
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => result.errors.add("timeout", 1),
        }
    }
    result
}

/// One connection: open, one request, check, close.
async fn one(connector: &Connector, options: &HandshakeOptions, id: u64) -> Result<crate::net::TlsInfo, String> {
    let (mut ws, info) = connector.connect(None).await.map_err(|e| e.label())?;
    if let Some(key) = &options.sign_in {
        crate::auth::sign_in(&mut ws, key).await.map_err(str::to_owned)?;
    }
    ws.send(Message::text(options.template.render(id)))
        .await
        .map_err(|_| "send_failed".to_owned())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let outcome = check(text.as_str(), &options.expect);
                if let Some(label) = outcome.error_label() {
                    return Err(label);
                }
                if outcome != Outcome::Ok(id) {
                    return Err("unknown_id".to_owned());
                }
                break;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(_)) | None => return Err("closed_by_server".to_owned()),
            Some(Err(_)) => return Err("read_failed".to_owned()),
        }
    }
    // Send our close frame and hang up without waiting for the echo: the
    // server's close handling is part of its per-connection cost either way.
    let _ = ws.close(None).await;
    Ok(info)
}
