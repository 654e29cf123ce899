//! `rpc` mode: C connections, each keeping W requests in flight, for a
//! warm-up and then a measured window.
//!
//! Each connection is one task that owns its socket, its pending requests and
//! its histogram: nothing is shared on the hot path. Answers that are ready
//! together are handled together and the refills go out in one flush, the
//! way a real pipelining client behaves.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::check::{Expect, RequestTemplate, check};
use crate::net::{Connector, Ws};
use crate::procfs::{self, CpuSample};
use crate::stats::{Errors, latency_json, new_histogram, round};

#[derive(Clone, Debug)]
pub struct RpcOptions {
    pub connections: usize,
    pub in_flight: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub template: RequestTemplate,
    pub expect: Expect,
    pub auth: bool,
    pub server_pid: Option<u32>,
    pub sources: Vec<IpAddr>,
}

/// When each phase ends; the same for every connection.
#[derive(Clone, Copy)]
struct Phases {
    measure_start: Instant,
    measure_end: Instant,
    /// Requests still unanswered by then are counted as errors.
    drain_end: Instant,
}

/// What one connection did.
struct ConnResult {
    hist: Histogram<u64>,
    /// Correct answers received inside the measured window.
    ok_in_window: u64,
    /// Error answers received inside the measured window.
    errors_in_window: u64,
    errors: Errors,
}

impl ConnResult {
    fn new() -> Self {
        ConnResult {
            hist: new_histogram(),
            ok_in_window: 0,
            errors_in_window: 0,
            errors: Errors::default(),
        }
    }
}

pub async fn run(connector: Arc<Connector>, options: RpcOptions) -> Result<Value> {
    if options.connections == 0 || options.in_flight == 0 {
        bail!("--connections and --in-flight must be at least 1");
    }
    let key = Arc::new(crate::auth::ephemeral_key());
    let mut errors = Errors::default();

    // Open (and sign in) every connection before the clock starts, so
    // handshakes do not count as request latency.
    let mut opening = Vec::with_capacity(options.connections);
    for i in 0..options.connections {
        let connector = connector.clone();
        let key = key.clone();
        let source = pick_source(&options.sources, i);
        let auth = options.auth;
        opening.push(tokio::spawn(async move {
            let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connector.connect(source))
                .await
                .map_err(|_| "connect_timeout".to_owned())?
                .map_err(|e| e.label())?;
            if auth {
                crate::auth::sign_in(&mut ws, &key).await.map_err(str::to_owned)?;
            }
            Ok::<Ws, String>(ws)
        }));
    }
    let mut sockets = Vec::with_capacity(options.connections);
    for task in opening {
        match task.await {
            Ok(Ok(ws)) => sockets.push(ws),
            Ok(Err(label)) => errors.add(label, 1),
            Err(_) => errors.add("task_panicked", 1),
        }
    }
    if sockets.is_empty() {
        bail!("no connection could be opened: {:?}", errors.0);
    }

    let start = Instant::now();
    let phases = Phases {
        measure_start: start + options.warmup,
        measure_end: start + options.warmup + options.duration,
        drain_end: start + options.warmup + options.duration + Duration::from_secs(5),
    };
    let ticks = procfs::clock_ticks_per_sec();
    let server_pid = options.server_pid;
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(phases.measure_start).await;
        let first = CpuSample::take(server_pid);
        tokio::time::sleep_until(phases.measure_end).await;
        let last = CpuSample::take(server_pid);
        procfs::cpu_between(&first, &last, ticks)
    });

    let opened = sockets.len();
    let mut tasks = Vec::with_capacity(opened);
    for ws in sockets {
        let template = options.template.clone();
        let expect = options.expect.clone();
        let in_flight = options.in_flight;
        tasks.push(tokio::spawn(drive(ws, template, expect, in_flight, phases)));
    }
    let mut hist = new_histogram();
    let mut ok = 0u64;
    let mut errors_in_window = 0u64;
    for task in tasks {
        match task.await {
            Ok(result) => {
                // Same bounds everywhere: adding cannot fail.
                let _ = hist.add(&result.hist);
                ok += result.ok_in_window;
                errors_in_window += result.errors_in_window;
                errors.merge(&result.errors);
            }
            Err(_) => errors.add("task_panicked", 1),
        }
    }
    let cpu = sampler.await.unwrap_or_default();
    let secs = options.duration.as_secs_f64();
    let answered = ok + errors_in_window;
    let cpu_us_per_req = cpu
        .server_secs
        .filter(|_| answered > 0)
        .map(|s| round(s * 1e6 / answered as f64, 3));
    Ok(json!({
        "mode": "rpc",
        "connections": options.connections,
        "connections_opened": opened,
        "in_flight": options.in_flight,
        "auth": options.auth,
        "duration_s": secs,
        "requests": ok,
        "req_per_s": round(ok as f64 / secs, 1),
        "errors": errors.total(),
        "error_kinds": errors.to_json(),
        "latency_us": latency_json(&hist),
        "server_cpu_us_per_req": cpu_us_per_req,
        "server_cpu_pct": cpu.server_pct.map(|p| round(p, 1)),
        "client_cpu_pct": cpu.client_pct.map(|p| round(p, 1)),
    }))
}

pub fn pick_source(sources: &[IpAddr], i: usize) -> Option<IpAddr> {
    if sources.is_empty() { None } else { Some(sources[i % sources.len()]) }
}

/// Keeps `in_flight` requests outstanding on one connection until the window
/// ends, then collects the last answers.
async fn drive(mut ws: Ws, template: RequestTemplate, expect: Expect, in_flight: usize, phases: Phases) -> ConnResult {
    let mut result = ConnResult::new();
    // (id, sent at); W is small, so a linear search beats a map.
    let mut pending: Vec<(u64, Instant)> = Vec::with_capacity(in_flight);
    // Ids 1 and 2 were used by sign-in; start above them.
    let mut next_id: u64 = 100;

    loop {
        // Refill while the window is open.
        if Instant::now() < phases.measure_end {
            while pending.len() < in_flight {
                let id = next_id;
                next_id += 1;
                if ws.feed(Message::text(template.render(id))).await.is_err() {
                    result.errors.add("send_failed", 1 + pending.len() as u64);
                    return result;
                }
                pending.push((id, Instant::now()));
            }
        }
        if pending.is_empty() {
            break;
        }
        if ws.flush().await.is_err() {
            result.errors.add("send_failed", pending.len() as u64);
            return result;
        }
        // Wait for one answer, then take every answer already buffered.
        let first = match tokio::time::timeout_at(phases.drain_end, ws.next()).await {
            Err(_) => {
                result.errors.add("unanswered", pending.len() as u64);
                break;
            }
            Ok(next) => next,
        };
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Some(Ok(Message::Text(text))) => {
                    let now = Instant::now();
                    let outcome = check(text.as_str(), &expect);
                    let sent = outcome
                        .id()
                        .and_then(|id| pending.iter().position(|(p, _)| *p == id))
                        .map(|index| pending.swap_remove(index).1);
                    let in_window = now >= phases.measure_start && now < phases.measure_end;
                    match (sent, outcome.error_label()) {
                        (Some(sent), None) => {
                            if in_window {
                                let ns = now.duration_since(sent).as_nanos() as u64;
                                let _ = result.hist.record(ns.max(1));
                                result.ok_in_window += 1;
                            }
                        }
                        (_, Some(label)) => {
                            result.errors.add(label, 1);
                            if in_window {
                                result.errors_in_window += 1;
                            }
                        }
                        (None, None) => {
                            result.errors.add("unknown_id", 1);
                            if in_window {
                                result.errors_in_window += 1;
                            }
                        }
                    }
                }
                // tungstenite answers pings itself; pongs need nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Binary(_))) => result.errors.add("binary_answer", 1),
                Some(Ok(Message::Close(_))) | None => {
                    result.errors.add("closed_by_server", 1);
                    result.errors.add("unanswered", pending.len() as u64);
                    return result;
                }
                Some(Err(_)) => {
                    result.errors.add("read_failed", 1);
                    result.errors.add("unanswered", pending.len() as u64);
                    return result;
                }
            }
            next = ws.next().now_or_never();
        }
    }
    // Say goodbye, but do not let a slow close hold up the summary.
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    result
}

