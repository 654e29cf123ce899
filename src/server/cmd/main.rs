//! `circle-server`: runs a circle from the command line.
//!
//! With no flags it serves plain `ws://127.0.0.1:8080/ws` with an ephemeral
//! circle key. `circle-server --tls --cert cert.pem --key key.pem` serves
//! `wss://`. Every flag has a `CIRCLE_…` environment variable.

use std::process::ExitCode;
use std::time::Duration;

use circle_executor::args::{RedisArgs, ScriptLimitArgs, StoreArgs};
use circle_server::{
    AcmeChallenge, AcmeConfig, AddressPrefixes, IpCidr, LETS_ENCRYPT_PRODUCTION,
    LETS_ENCRYPT_STAGING, ServerConfig, ServerLimits, spawn_circle_server,
};
use clap::Parser;

/// Counts each thread's live heap bytes, which is what enforces the script memory limit
/// (see `circle_executor::memory`).
#[global_allocator]
static ALLOCATOR: circle_executor::memory::CountingAllocator =
    circle_executor::memory::CountingAllocator::new();

/// Serve a circle: authenticated Rhai scripts over ws:// and wss://.
#[derive(Debug, Parser)]
#[command(name = "circle-server", version, about, long_about = None, after_help = EXAMPLES)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "CIRCLE_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port of the main listener (TLS when --tls is given without --tls-port); 0 picks a free port.
    #[arg(long, short, env = "CIRCLE_PORT", default_value_t = 8080)]
    port: u16,
    /// Serve TLS (wss://); needs --cert and --key, or --acme-domain.
    #[arg(long, env = "CIRCLE_TLS")]
    tls: bool,
    /// PEM certificate chain, leaf first (Let's Encrypt's fullchain.pem works as it is).
    #[arg(long, env = "CIRCLE_TLS_CERT", value_name = "FILE")]
    cert: Option<String>,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), not encrypted.
    #[arg(long, env = "CIRCLE_TLS_KEY", value_name = "FILE")]
    key: Option<String>,
    /// Serve TLS on this port and keep plain ws:// on --port.
    #[arg(long, env = "CIRCLE_TLS_PORT", value_name = "PORT")]
    tls_port: Option<u16>,
    /// Development only: start even if the certificate is expired or not yet valid (logs a warning).
    #[arg(long, env = "CIRCLE_TLS_ACCEPT_INVALID_CERTS")]
    tls_accept_invalid_certs: bool,
    /// Verify client certificates against these CAs (mutual TLS).
    #[arg(long, env = "CIRCLE_CLIENT_CA", value_name = "FILE")]
    client_ca: Option<String>,
    /// With --client-ca: refuse TLS clients without a certificate.
    #[arg(long, env = "CIRCLE_CLIENT_AUTH_REQUIRED", requires = "client_ca")]
    client_auth_required: bool,
    /// Require secp256k1 sign-in (fetch_nonce + authenticate) before play.
    #[arg(long, env = "CIRCLE_AUTH")]
    auth: bool,
    /// Pin the domain of sign-in challenges (default: from the Origin or Host header).
    #[arg(long, env = "CIRCLE_AUTH_DOMAIN", value_name = "DOMAIN")]
    auth_domain: Option<String>,
    /// Name of the circle.
    #[arg(long, env = "CIRCLE_NAME", default_value = "circle")]
    circle_name: String,
    /// The circle's secp256k1 public key, hex (default: an ephemeral key, printed at start).
    #[arg(long, env = "CIRCLE_PUBLIC_KEY", value_name = "HEX")]
    circle_public_key: Option<String>,
    /// Redis URL of a queue shared with circle-worker processes: redis://[user:password@]host:port, or rediss:// for TLS (default: run scripts in-process).
    #[arg(long, env = "CIRCLE_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    #[command(flatten)]
    redis: RedisArgs,
    /// Serve the static files of this folder at / (e.g. the browser console page).
    #[arg(long, env = "CIRCLE_WEB_ROOT", value_name = "DIR")]
    web_root: Option<std::path::PathBuf>,
    /// Connection-serving threads: TLS, HTTP, WebSocket sessions (0 = one per core).
    // `--workers` is the name older binaries have, kept as a hidden alias so
    // bench/compare.sh can run an old and a new binary with the same flags.
    #[arg(
        long,
        alias = "workers",
        env = "CIRCLE_CONNECTION_THREADS",
        default_value_t = 0
    )]
    connection_threads: usize,
    /// Script-running threads (0 = one per core).
    #[arg(long, env = "CIRCLE_SCRIPT_THREADS", default_value_t = 0)]
    script_threads: usize,
    /// Scripts that may wait for a free script thread, all connections together (0 = 1024); beyond it `play` gets -32029.
    #[arg(long, env = "CIRCLE_SCRIPT_QUEUE", default_value_t = 0)]
    script_queue: usize,
    /// Operations a play may take on its connection's thread before it goes to a script thread (0 = always a script thread).
    #[arg(long, env = "CIRCLE_SCRIPT_INLINE_OPERATIONS", default_value_t = ServerConfig::default().script_inline_operations)]
    script_inline_operations: u64,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "CIRCLE_MAX_MESSAGE_BYTES", default_value_t = ServerLimits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Open connections allowed across the server (default: what the open-file limit allows, less a
    /// reserve; more than that leaves new clients waiting in the kernel's queue instead of refused).
    #[arg(long, env = "CIRCLE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Scripts one connection may have running; a connection at the cap is not read until one finishes.
    #[arg(long, env = "CIRCLE_MAX_IN_FLIGHT", default_value_t = ServerLimits::default().max_in_flight_per_connection)]
    max_in_flight: usize,
    /// Open connections allowed from one client (an IPv4 address or IPv6 prefix, see --client-ipv6-prefix).
    #[arg(long, env = "CIRCLE_MAX_CONNECTIONS_PER_IP", default_value_t = ServerLimits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Leading bits of an IPv4 address that name one client for per-client limits.
    #[arg(long, env = "CIRCLE_CLIENT_IPV4_PREFIX", value_name = "BITS", default_value_t = AddressPrefixes::default().ipv4,
          value_parser = clap::value_parser!(u8).range(0..=32))]
    client_ipv4_prefix: u8,
    /// Leading bits of an IPv6 address that name one client (64: a host's whole subnet).
    #[arg(long, env = "CIRCLE_CLIENT_IPV6_PREFIX", value_name = "BITS", default_value_t = AddressPrefixes::default().ipv6,
          value_parser = clap::value_parser!(u8).range(0..=128))]
    client_ipv6_prefix: u8,
    /// Requests per second one connection may send; a faster client is slowed down, not refused (0 = no limit).
    #[arg(long, env = "CIRCLE_MAX_REQUESTS_PER_SECOND", default_value_t = ServerLimits::default().max_requests_per_second)]
    max_requests_per_second: u32,
    /// Longest JSON-RPC batch accepted.
    #[arg(long, env = "CIRCLE_MAX_BATCH", default_value_t = ServerLimits::default().max_batch_len)]
    max_batch: usize,
    /// Seconds a TLS client has to complete its handshake.
    #[arg(long, env = "CIRCLE_TLS_HANDSHAKE_TIMEOUT", default_value_t = ServerLimits::default().tls_handshake_timeout.as_secs())]
    tls_handshake_timeout: u64,
    /// Seconds without a request before a connection is closed (0 = never).
    #[arg(long, env = "CIRCLE_IDLE_TIMEOUT", default_value_t = ServerLimits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Seconds a graceful stop waits for running scripts.
    #[arg(long, env = "CIRCLE_SHUTDOWN_GRACE", default_value_t = ServerLimits::default().shutdown_grace.as_secs())]
    shutdown_grace: u64,
    /// Browser origins allowed to open WebSockets (repeat or comma-separate; default: all).
    #[arg(
        long = "allowed-origin",
        env = "CIRCLE_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    allowed_origins: Vec<String>,
    /// With --tls-port: redirect plain-HTTP requests other than WebSocket upgrades to HTTPS.
    #[arg(long, env = "CIRCLE_REDIRECT_HTTP", requires = "tls_port")]
    redirect_http_to_https: bool,
    /// max-age of the Strict-Transport-Security header, in seconds.
    #[arg(long, env = "CIRCLE_HSTS_MAX_AGE", default_value_t = ServerConfig::default().hsts_max_age.as_secs())]
    hsts_max_age: u64,
    #[command(flatten)]
    script: ScriptLimitArgs,
    /// Folder of the circle's store (the file store.redb, created owner-only; default: none, the store is kept in memory and lost at exit).
    #[arg(long, env = "CIRCLE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    /// Every connection starts with a PROXY protocol header (v1 or v2, e.g. HAProxy's send-proxy-v2)
    /// naming the client; connections without one are closed. Use with --trusted-proxy.
    #[arg(long, env = "CIRCLE_PROXY_PROTOCOL")]
    proxy_protocol: bool,
    /// A load balancer or proxy (CIDR, e.g. 10.0.0.0/8; repeat or comma-separate) whose PROXY protocol
    /// and Forwarded/X-Forwarded-For headers are believed.
    #[arg(
        long = "trusted-proxy",
        env = "CIRCLE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    trusted_proxies: Vec<IpCidr>,
    /// On SIGTERM/SIGINT, answer /health with 503 for this many seconds while still serving everything
    /// else, then stop gracefully (a second signal ends the drain at once).
    #[arg(long, env = "CIRCLE_DRAIN_SECONDS", default_value_t = 0)]
    drain_seconds: u64,
    /// Session-ticket keys shared by the circle's servers (1-4 keys of 48 random bytes, first one
    /// issuing; make with `openssl rand 48`), so sessions resume on any server; reread on SIGHUP.
    #[arg(long, env = "CIRCLE_TLS_TICKET_KEY_FILE", value_name = "FILE")]
    tls_ticket_key_file: Option<String>,
    /// Get the certificate automatically over ACME for this name (repeat for more names); needs
    /// --tls and --acme-cache, excludes --cert/--key. DNS must point here, port 443 (or 80) reachable.
    #[arg(
        long = "acme-domain",
        env = "CIRCLE_ACME_DOMAINS",
        value_name = "DOMAIN",
        value_delimiter = ',',
        requires = "acme_cache",
        conflicts_with_all = ["cert", "key"]
    )]
    acme_domains: Vec<String>,
    /// Contact of the ACME account, e.g. mailto:ops@example.com (repeatable).
    #[arg(
        long = "acme-contact",
        env = "CIRCLE_ACME_CONTACTS",
        value_name = "URL",
        value_delimiter = ','
    )]
    acme_contacts: Vec<String>,
    /// Folder of the ACME account key and certificates (created 0700, files 0600; may be shared).
    #[arg(long, env = "CIRCLE_ACME_CACHE", value_name = "DIR")]
    acme_cache: Option<std::path::PathBuf>,
    /// The ACME CA's directory URL, or `letsencrypt-staging` / `letsencrypt` (the default).
    #[arg(
        long,
        env = "CIRCLE_ACME_DIRECTORY",
        value_name = "URL",
        default_value = "letsencrypt"
    )]
    acme_directory: String,
    /// PEM root the ACME CA's own HTTPS chains to (private or test CAs such as Pebble).
    #[arg(long, env = "CIRCLE_ACME_CA", value_name = "FILE")]
    acme_ca: Option<std::path::PathBuf>,
    /// Which challenge to answer: auto (TLS-ALPN-01, else HTTP-01), tls-alpn-01 or http-01.
    #[arg(long, env = "CIRCLE_ACME_CHALLENGE", value_name = "TYPE", default_value = "auto", value_parser = ["auto", "tls-alpn-01", "http-01"])]
    acme_challenge: String,
}

/// `--acme-*` flags to the ACME configuration (none without `--acme-domain`).
fn acme_config(args: &Args) -> Option<AcmeConfig> {
    if args.acme_domains.is_empty() {
        return None;
    }
    let directory_url = match args.acme_directory.as_str() {
        "letsencrypt" => LETS_ENCRYPT_PRODUCTION.to_owned(),
        "letsencrypt-staging" => LETS_ENCRYPT_STAGING.to_owned(),
        url => url.to_owned(),
    };
    let challenge = match args.acme_challenge.as_str() {
        "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
        "http-01" => AcmeChallenge::Http01,
        _ => AcmeChallenge::Auto,
    };
    Some(AcmeConfig {
        domains: args.acme_domains.clone(),
        contacts: args.acme_contacts.clone(),
        cache_dir: args.acme_cache.clone().unwrap_or_default(),
        directory_url,
        ca_file: args.acme_ca.clone(),
        challenge,
        ..AcmeConfig::default()
    })
}

const EXAMPLES: &str = "\
Examples:
  circle-server                                        plain ws://127.0.0.1:8080/ws
  circle-server --tls --cert cert.pem --key key.pem    wss://127.0.0.1:8080/ws
  circle-server --port 8080 --tls --tls-port 8443 --cert cert.pem --key key.pem --auth
  circle-server --host :: --port 443 --tls --acme-domain circle.example.com \
      --acme-contact mailto:ops@example.com --acme-cache /var/lib/circle/acme
                                                       automatic certificates (try
                                                       --acme-directory letsencrypt-staging first)

Logs go to stderr (RUST_LOG=debug for more); the listening URLs are also printed on stdout.
Signals: SIGHUP reloads the TLS certificate and key; SIGINT/SIGTERM stop gracefully (after
--drain-seconds of /health answering 503; a second signal skips the rest of the drain).";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let acme = acme_config(&args);
    let config = ServerConfig {
        circle_name: args.circle_name,
        circle_public_key: args.circle_public_key.unwrap_or_default(),
        host: args.host,
        port: args.port,
        redis_url: args.redis_url,
        enable_auth: args.auth,
        enable_tls: args.tls,
        cert_path: args.cert,
        key_path: args.key,
        tls_port: args.tls_port,
        tls_accept_invalid_certs: args.tls_accept_invalid_certs,
        client_ca_path: args.client_ca,
        client_auth_required: args.client_auth_required,
        auth_domain: args.auth_domain,
        allowed_origins: (!args.allowed_origins.is_empty()).then_some(args.allowed_origins),
        redirect_http_to_https: args.redirect_http_to_https,
        hsts_max_age: Duration::from_secs(args.hsts_max_age),
        web_root: args.web_root,
        connection_threads: args.connection_threads,
        script_threads: args.script_threads,
        script_queue_capacity: args.script_queue,
        script_inline_operations: args.script_inline_operations,
        limits: ServerLimits {
            max_message_bytes: args.max_message_bytes,
            max_connections: max_connections(args.max_connections),
            max_in_flight_per_connection: args.max_in_flight,
            max_connections_per_ip: args.max_connections_per_ip,
            client_address_prefixes: AddressPrefixes {
                ipv4: args.client_ipv4_prefix,
                ipv6: args.client_ipv6_prefix,
            },
            max_requests_per_second: args.max_requests_per_second,
            max_batch_len: args.max_batch,
            tls_handshake_timeout: Duration::from_secs(args.tls_handshake_timeout),
            shutdown_grace: Duration::from_secs(args.shutdown_grace),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            ..ServerLimits::default()
        },
        script_limits: args.script.limits(),
        proxy_protocol: args.proxy_protocol,
        trusted_proxies: args.trusted_proxies,
        drain_period: Duration::from_secs(args.drain_seconds),
        redis_tls: args.redis.tls(),
        tls_ticket_key_file: args.tls_ticket_key_file,
        acme,
        redis_sentinels: args.redis.redis_sentinels,
        redis_master_name: args.redis.redis_master_name,
        data_dir: args.data_dir,
        store_limits: args.store.limits(),
        admin_keys: args.store.admin_keys,
        ..ServerConfig::default()
    };

    if config.data_dir.is_none() && config.redis_url.is_none() && config.redis_sentinels.is_empty()
    {
        tracing::warn!(
            "no --data-dir: the circle's store is kept in memory and lost when the server stops"
        );
    }
    let (server, handle) = match spawn_circle_server(config) {
        Ok(started) => started,
        Err(error) => {
            eprintln!("circle-server: {error}");
            return ExitCode::from(2);
        }
    };
    // Printed on stdout so scripts and tests can read where to connect.
    println!("circle public key: {}", handle.circle_public_key());
    if let Some(addr) = handle.ws_addr() {
        println!("listening on ws://{addr}/ws");
    }
    if let Some(addr) = handle.wss_addr() {
        println!("listening on wss://{addr}/ws");
    }

    #[cfg(unix)]
    {
        let reload_handle = handle.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hangup.recv().await.is_some() {
                // reload_tls logs the outcome; a bad file keeps the old certificate.
                let _ = reload_handle.reload_tls();
            }
        });
    }
    let stop_handle = handle.clone();
    tokio::spawn(async move {
        // The first signal drains (when --drain-seconds is set) and stops;
        // another one ends the drain at once.
        loop {
            wait_for_stop_signal().await;
            tracing::info!("stopping: closing connections after in-flight scripts finish");
            let stop_handle = stop_handle.clone();
            tokio::spawn(async move { stop_handle.stop().await });
        }
    });
    match server.await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("circle-server: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("circle-server: server task failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// File descriptors kept back from connections: listeners, epoll, the
/// executor's threads and Redis connections, log files.
const RESERVED_DESCRIPTORS: usize = 64;

/// The connection cap: `asked`, or how many connections fit under the
/// open-file limit (raised to its hard maximum first). Refusing the next
/// upgrade with 503 (and a log line) is better than running out of
/// descriptors, where the accept loop stalls and new clients hang unanswered.
fn max_connections(asked: Option<usize>) -> usize {
    let Some(open_files) = raise_open_file_limit() else {
        return asked.unwrap_or(ServerLimits::default().max_connections);
    };
    let fit = open_files.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    match asked {
        Some(asked) if asked > fit => {
            tracing::warn!(
                max_connections = asked,
                open_file_limit = open_files,
                "max_connections is above what the open-file limit allows ({fit}): past that, new clients wait unanswered instead of being refused"
            );
            asked
        }
        Some(asked) => asked,
        None => {
            tracing::info!(
                open_file_limit = open_files,
                max_connections = fit,
                "connection limit set from the open-file limit"
            );
            fit
        }
    }
}

/// Raises the soft open-file limit to the hard one; returns the limit in
/// force, or `None` where it cannot be read.
fn raise_open_file_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own; setrlimit reads it.
        let raised = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0
        };
        let in_force = if raised {
            limit.rlim_max
        } else {
            limit.rlim_cur
        };
        Some(usize::try_from(in_force).unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
