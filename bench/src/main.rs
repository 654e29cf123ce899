//! `circle-bench`: load generator for circle-server and its peers.
//!
//! Every run prints one JSON line on stdout (its summary); `report` turns a
//! file of such lines from a whole matrix into a markdown page. See
//! bench/README.md.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use circle_bench::check::{Expect, RequestTemplate};
use circle_bench::net::{Connector, Target};
use circle_bench::tls::Trust;
use circle_bench::{handshake, hold, report, rpc};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "circle-bench", about = "Load generator for circle-server and its peers (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// C connections, each with W requests in flight: req/s, latency, server CPU per request.
    Rpc(RpcArgs),
    /// A new TLS + WebSocket connection per request: connections/s, full or resumed.
    Handshake(HandshakeArgs),
    /// N idle connections: the server's RSS per connection.
    Hold(HoldArgs),
    /// Markdown page from a file of run summaries (one JSON object a line).
    Report(ReportArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// ws:// or wss:// URL of the server (loopback only).
    #[arg(long)]
    url: String,
    /// CA (or self-signed) certificate to verify the server with.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Do not verify the server's certificate (the handshake signature still is).
    #[arg(long)]
    insecure: bool,
    /// The server's pid, to read its CPU time and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of the server, copied into the summary (for `report`).
    #[arg(long, default_value = "")]
    server: String,
    /// Name of the matrix point, copied into the summary (for `report`).
    #[arg(long, default_value = "")]
    point: String,
    /// Method to call.
    #[arg(long, default_value = "play")]
    method: String,
    /// Params as JSON text; "none" sends no params.
    #[arg(long, default_value = r#"{"script":"40 + 2"}"#)]
    params: String,
    /// Expected `output` of a play result (default: "42" for the default script).
    #[arg(long)]
    expect_output: Option<String>,
    /// Expected result, exact JSON (overrides the per-method check).
    #[arg(long)]
    expect_result: Option<String>,
    /// Sign in (fetch_nonce + authenticate, secp256k1) on every connection first.
    #[arg(long)]
    auth: bool,
    /// Runtime threads of the generator; 1 = a single-threaded runtime (pin it with taskset).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct RpcArgs {
    #[command(flatten)]
    common: Common,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(short = 'w', long, default_value_t = 1)]
    in_flight: usize,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Spread connections over this many loopback source addresses (127.0.0.1+).
    #[arg(long, default_value_t = 0)]
    sources: usize,
}

#[derive(Args)]
struct HandshakeArgs {
    #[command(flatten)]
    common: Common,
    /// Connections being opened at once.
    #[arg(short = 'c', long, default_value_t = 4)]
    connections: usize,
    /// Offer session tickets from earlier connections (resumed handshakes).
    #[arg(long)]
    resume: bool,
    /// A second server (same host name, another port): connections take
    /// turns between the two, sharing one ticket cache, so with `--resume`
    /// every other connection offers a ticket the other server issued.
    #[arg(long, requires = "also_server_pid")]
    also_url: Option<String>,
    /// The second server's pid: its CPU time is added to the first's.
    #[arg(long, requires = "also_url")]
    also_server_pid: Option<u32>,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
}

#[derive(Args)]
struct HoldArgs {
    #[command(flatten)]
    common: Common,
    /// Idle connections to hold.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    connections: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds idle before reading the server's memory.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Seconds to keep holding after the reading.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Loopback source addresses to spread over (0 = one per 1,000 connections,
    /// keeping each under a per-address connection limit of 1,024).
    #[arg(long, default_value_t = 0)]
    sources: usize,
    /// First source address is 127.0.0.(2 + offset): lets two processes use distinct ones.
    #[arg(long, default_value_t = 0)]
    source_offset: usize,
}

#[derive(Args)]
struct ReportArgs {
    /// File of run summaries, one JSON object a line.
    #[arg(long)]
    runs: PathBuf,
    /// Markdown file to write (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// One line saying how the runs were made (shown under the title).
    #[arg(long, default_value = "")]
    how: String,
    /// Markdown files appended at the end (e.g. profile findings).
    #[arg(long)]
    append: Vec<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Rpc(a) => a.common.threads,
        Command::Handshake(a) => a.common.threads,
        Command::Hold(a) => a.common.threads,
        Command::Report(args) => return report::write(&args.runs, args.out.as_deref(), &args.how, &args.append),
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let summary = runtime.block_on(run(cli.command))?;
    println!("{summary}");
    Ok(())
}

async fn run(command: Command) -> Result<Value> {
    match command {
        Command::Rpc(args) => {
            let setup = Setup::new(&args.common, false)?;
            let options = rpc::RpcOptions {
                connections: args.connections,
                in_flight: args.in_flight,
                warmup: secs(args.warmup)?,
                duration: secs(args.duration)?,
                template: setup.template.clone(),
                expect: setup.expect.clone(),
                auth: args.common.auth,
                server_pid: args.common.server_pid,
                sources: sources(setup.connector.target(), args.sources, 0)?,
            };
            let result = rpc::run(setup.connector.clone(), options).await?;
            Ok(setup.label(result))
        }
        Command::Handshake(args) => {
            let setup = Setup::new(&args.common, args.resume)?;
            let mut connectors = vec![setup.connector.clone()];
            if let Some(url) = &args.also_url {
                connectors.push(Arc::new(setup.connector.sharing_tls(Target::parse(url)?)));
            }
            let options = handshake::HandshakeOptions {
                concurrency: args.connections,
                warmup: secs(args.warmup)?,
                duration: secs(args.duration)?,
                template: setup.template.clone(),
                expect: setup.expect.clone(),
                resume: args.resume,
                sign_in: args.common.auth.then(|| Arc::new(circle_bench::auth::ephemeral_key())),
                server_pids: args.common.server_pid.into_iter().chain(args.also_server_pid).collect(),
            };
            let result = handshake::run(connectors, options).await?;
            Ok(setup.label(result))
        }
        Command::Hold(args) => {
            let setup = Setup::new(&args.common, false)?;
            let count = if args.sources == 0 { args.connections.div_ceil(1000) } else { args.sources };
            let options = hold::HoldOptions {
                connections: args.connections,
                concurrency: args.concurrency,
                auth: args.common.auth,
                settle: secs(args.settle)?,
                hold: secs(args.hold)?,
                server_pid: args.common.server_pid,
                sources: sources(setup.connector.target(), count, args.source_offset)?,
            };
            let result = hold::run(setup.connector.clone(), options).await?;
            Ok(setup.label(result))
        }
        Command::Report(_) => unreachable!("handled before the runtime starts"),
    }
}

fn secs(value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{value} is not a duration in seconds"))
}

/// Loopback source addresses 127.0.0.(2+offset) .. for IPv4 targets.
fn sources(target: &Target, count: usize, offset: usize) -> Result<Vec<IpAddr>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if !target.addr.is_ipv4() {
        bail!("--sources needs an IPv4 loopback target");
    }
    Ok((0..count)
        .map(|i| {
            let n = 2 + offset + i;
            IpAddr::V4(Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250) as u8 + 1))
        })
        .collect())
}

struct Setup {
    connector: Arc<Connector>,
    template: RequestTemplate,
    expect: Expect,
    header: Value,
}

impl Setup {
    fn new(common: &Common, resume: bool) -> Result<Setup> {
        let target = Target::parse(&common.url)?;
        let trust = match (&common.ca, common.insecure) {
            (Some(ca), _) => Trust::Ca(ca.clone()),
            (None, true) => Trust::Insecure,
            (None, false) if target.tls => bail!("wss needs --ca FILE or --insecure"),
            (None, false) => Trust::Insecure,
        };
        let params = (common.params != "none").then_some(common.params.as_str());
        let template = RequestTemplate::new(&common.method, params)?;
        let expect = match (&common.expect_result, &common.expect_output) {
            (Some(exact), _) => Expect::Exact(serde_json::from_str(exact).context("--expect-result")?),
            (None, Some(output)) => Expect::PlayOutput(output.clone()),
            (None, None) => Expect::for_method(&common.method, params, common.auth),
        };
        let header = json!({
            "server": common.server,
            "point": common.point,
            "url": common.url,
            "method": common.method,
            "params": params,
            "unix_time": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        Ok(Setup {
            connector: Arc::new(Connector::new(target, &trust, resume)?),
            template,
            expect,
            header,
        })
    }

    fn label(&self, mut result: Value) -> Value {
        if let (Some(out), Some(header)) = (result.as_object_mut(), self.header.as_object()) {
            for (k, v) in header {
                out.entry(k.clone()).or_insert(v.clone());
            }
        }
        result
    }
}
