//! Server configuration: a plain struct with a safe [`Default`], built up in
//! the caller's code (as axum and actix-web examples do).

use std::time::Duration;

use circle_executor::host::ScriptEnvironment;
use circle_executor::store::StoreLimits;
use circle_executor::{RedisTls, ScriptLimits};

use crate::address::AddressPrefixes;
use crate::proxy::IpCidr;

/// Everything a circle server needs to start.
///
/// ```no_run
/// use circle_server::ServerConfig;
/// let config = ServerConfig {
///     enable_tls: true,
///     cert_path: Some("cert.pem".into()),
///     key_path: Some("key.pem".into()),
///     port: 8443,
///     ..Default::default()
/// };
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The circle's name, shown in sign-in challenges and `whoami`.
    /// Must be one line: a newline would let it forge challenge lines.
    pub circle_name: String,
    /// The circle's secp256k1 public key, hex. Empty: an ephemeral key is
    /// generated at start and logged (handy for development, useless for
    /// clients that pin the circle's identity).
    pub circle_public_key: String,
    /// Address to bind, for example `127.0.0.1`, `0.0.0.0`, `::1` or `::`
    /// (IPv6 with or without brackets), or a host name.
    pub host: String,
    /// Port of the main listener; `0` picks a free port (see
    /// [`ServerHandle::ws_addr`](crate::ServerHandle::ws_addr)).
    pub port: u16,
    /// Redis URL of a script queue shared with `circle-worker` processes:
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS
    /// (see `redis_tls`). The password is never logged.
    /// `None`: scripts run in-process on the embedded executor.
    pub redis_url: Option<String>,
    /// Require `authenticate` before `play`.
    pub enable_auth: bool,
    /// Serve TLS. With `tls_port: None` the one listener on `port` speaks
    /// TLS; with `tls_port: Some(p)` plain WebSockets stay on `port` and TLS
    /// runs on `p`, both at once with the same routes.
    pub enable_tls: bool,
    /// PEM file with the certificate chain, leaf first (a Let's Encrypt
    /// `fullchain.pem` works as it is).
    pub cert_path: Option<String>,
    /// PEM file with the private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_path: Option<String>,
    /// A separate port for TLS, so plain and TLS listeners run side by side.
    pub tls_port: Option<u16>,
    /// Development escape hatch: start even when the server's own
    /// certificate is expired, not yet valid or otherwise fails the start-up
    /// checks. A warning is logged when this is set.
    pub tls_accept_invalid_certs: bool,
    /// PEM file of the certificate authorities whose client certificates are
    /// accepted (mutual TLS). `None`: client certificates are not requested.
    pub client_ca_path: Option<String>,
    /// With `client_ca_path`: refuse TLS clients that present no certificate.
    /// Without it, a certificate is verified when offered but optional.
    pub client_auth_required: bool,
    /// Pin the `domain` of sign-in challenges instead of taking it from the
    /// upgrade request's `Origin` or `Host` header.
    pub auth_domain: Option<String>,
    /// Browser origins allowed to open WebSockets, e.g.
    /// `https://app.example.com`. `None` allows every origin. Requests
    /// without an `Origin` header (non-browser clients) are always allowed:
    /// the header exists to stop other web pages from riding on a user's
    /// browser, which only browsers need.
    pub allowed_origins: Option<Vec<String>>,
    /// `max-age` of the `Strict-Transport-Security` header on HTTPS responses.
    pub hsts_max_age: Duration,
    /// With both listeners running (`tls_port` set): answer plain-HTTP
    /// requests other than WebSocket upgrades with a 308 redirect to the
    /// same path on the TLS listener.
    pub redirect_http_to_https: bool,
    /// A folder of static files (for example the browser console page and
    /// its WASM bundle) served at `/`, with `index.html` for directories.
    /// Over TLS the responses carry HSTS like every other.
    pub web_root: Option<std::path::PathBuf>,
    /// Threads accepting and serving connections (TLS, HTTP, WebSocket
    /// sessions); `0` = one per core. Scripts run elsewhere: see
    /// `script_threads`.
    pub connection_threads: usize,
    /// Number of threads running scripts in the embedded executor; `0` = one
    /// per core.
    pub script_threads: usize,
    /// Scripts that may wait for a free script thread in the embedded
    /// executor, all connections together; a `play` that finds the queue
    /// full is answered `-32029` at once. `0` = the default (1,024: with 16
    /// in flight per connection, 64 busy connections fill it).
    pub script_queue_capacity: usize,
    /// Operations a `play` may take on the connection's own thread before it
    /// goes to a script thread (embedded executor only; see
    /// [`EmbeddedConfig::inline_operations`](circle_executor::EmbeddedConfig::inline_operations)).
    /// Short scripts then cost no thread switch. A connection whose play
    /// outgrew it, or used the store, sends all its later plays to the
    /// script threads. Default `1,000`; `0` = always a script thread.
    pub script_inline_operations: u64,
    /// Limits that protect the server from its clients.
    pub limits: ServerLimits,
    /// Limits on every script.
    pub script_limits: ScriptLimits,
    /// Host functions every script gets (see the README, "Host functions"). Default:
    /// the stock environment. With `redis_url` scripts run in workers, which need the
    /// same environment: build them with `circle_executor::run_worker`.
    pub script_environment: ScriptEnvironment,
    /// Folder of the circle's store, the file `store.redb` in it (created, owner-only,
    /// when missing). `None` (the default): the store is kept in memory and lost at exit,
    /// like the default ephemeral circle key; a warning says so at start. Not used with
    /// `redis_url` (the store is then in Redis). Semantics: `docs/STORE.md`.
    pub data_dir: Option<std::path::PathBuf>,
    /// Public keys (compressed hex) allowed to write the store's circle namespace
    /// (`circle::set`). Default: none.
    pub admin_keys: Vec<String>,
    /// How much the circle's store may hold (embedded executor; workers have their own).
    pub store_limits: StoreLimits,
    /// Every connection starts with a PROXY protocol header (version 1 or
    /// 2, as HAProxy's `send-proxy`/`send-proxy-v2` write it) before TLS;
    /// the client address it names is the connection's. A connection
    /// without one, or from a peer outside a non-empty `trusted_proxies`,
    /// is closed before the TLS handshake.
    pub proxy_protocol: bool,
    /// Load balancers and proxies (CIDR ranges) whose PROXY protocol
    /// headers and `Forwarded`/`X-Forwarded-For` headers are believed. An
    /// upgrade request from one of them counts as coming from the
    /// right-most address in its forwarded header that is not itself
    /// trusted. Empty: forwarded headers are ignored, and with
    /// `proxy_protocol` any peer's header is accepted (a warning is logged).
    pub trusted_proxies: Vec<IpCidr>,
    /// How long a stop drains first: `/health` answers 503 at once (so
    /// balancers take the server out of rotation) while everything else,
    /// new WebSockets included, is served as usual; then the graceful stop
    /// runs. `Duration::ZERO` stops at once.
    pub drain_period: Duration,
    /// Certificate files for a `rediss://` `redis_url`: a private CA that
    /// Redis's certificate must chain to, a client certificate and key for
    /// mutual TLS. Default: the system's roots, no client certificate.
    pub redis_tls: RedisTls,
    /// A file of TLS session-ticket keys shared by the servers of a circle
    /// (1 to 4 keys of 48 random bytes, the first one issuing: `openssl rand
    /// 48 > FILE`), so a session from one server resumes on another. Reread
    /// on [`reload_tls`](crate::ServerHandle::reload_tls) (SIGHUP) for
    /// rotation. `None`: each process has its own ticket keys.
    pub tls_ticket_key_file: Option<String>,
    /// Automatic certificates over ACME (RFC 8555) instead of
    /// `cert_path`/`key_path` (setting both is refused): obtained at start
    /// (handshakes fail with an alert until the first arrives), kept in
    /// the cache folder, renewed in the background. Needs `enable_tls`.
    pub acme: Option<crate::acme::AcmeConfig>,
    /// Redis under Sentinel: the Sentinels (`HOST:PORT`, `[v6]:PORT`) asked where the
    /// master named `redis_master_name` is, on every new connection, so the server follows
    /// a failover without a restart. Setting them hands scripts to `circle-worker`
    /// processes as `redis_url` does; `redis_url` then only gives the scheme (`rediss://`
    /// with `redis_tls`), user, password and database (default `redis://`, no password).
    /// Needs `redis_master_name`. Empty: `redis_url`'s host is Redis.
    pub redis_sentinels: Vec<String>,
    /// The master's name in the Sentinels' configuration (`sentinel monitor NAME …`).
    /// Needs `redis_sentinels`.
    pub redis_master_name: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            circle_name: "circle".to_owned(),
            circle_public_key: String::new(),
            host: "127.0.0.1".to_owned(),
            port: 8080,
            redis_url: None,
            enable_auth: false,
            enable_tls: false,
            cert_path: None,
            key_path: None,
            tls_port: None,
            tls_accept_invalid_certs: false,
            client_ca_path: None,
            client_auth_required: false,
            auth_domain: None,
            allowed_origins: None,
            hsts_max_age: Duration::from_secs(365 * 24 * 60 * 60),
            redirect_http_to_https: false,
            web_root: None,
            connection_threads: 0,
            script_threads: 0,
            script_queue_capacity: 0,
            script_inline_operations: 1_000,
            limits: ServerLimits::default(),
            script_limits: ScriptLimits::default(),
            script_environment: ScriptEnvironment::stock(),
            data_dir: None,
            admin_keys: Vec::new(),
            store_limits: StoreLimits::default(),
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            drain_period: Duration::ZERO,
            redis_tls: RedisTls::default(),
            tls_ticket_key_file: None,
            acme: None,
            redis_sentinels: Vec::new(),
            redis_master_name: None,
        }
    }
}

/// Limits that keep one client from hurting the others. Every default is
/// chosen for a server on the public internet (the server README says why
/// each number); hitting a limit only affects the client that hit it.
///
/// The per-connection limits slow a client down instead of refusing its
/// requests (protocol 1.1): a connection at its in-flight cap or out of
/// request rate is not read until it may go on, so TCP pushes back and
/// nothing the client sent is lost.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Largest WebSocket message accepted, in bytes; a larger one closes the
    /// connection with code 1009.
    pub max_message_bytes: usize,
    /// Scripts one connection may have queued or running at once. A
    /// connection at the cap is not read until one of them finishes
    /// (backpressure); a batch waits for room request by request.
    pub max_in_flight_per_connection: usize,
    /// Longest JSON-RPC batch accepted.
    pub max_batch_len: usize,
    /// Open WebSocket connections across the whole server; further upgrades
    /// get HTTP 503.
    pub max_connections: usize,
    /// Open WebSocket connections from one client (an address prefix, see
    /// `client_address_prefixes`); further upgrades from it get HTTP 429.
    pub max_connections_per_ip: usize,
    /// Which addresses count as one client for the per-client limits:
    /// by default each IPv4 address, and each IPv6 /64.
    pub client_address_prefixes: AddressPrefixes,
    /// Requests per second one connection may send (each element of a batch
    /// counts). A connection that sends faster is paced: it is not read
    /// until its next request may go, so it is slowed, not refused. Bursts
    /// up to one second's worth pass at once. `0` turns the limit off.
    pub max_requests_per_second: u32,
    /// Failed `authenticate` calls before the connection is closed with 1008.
    pub max_failed_auth_attempts: u32,
    /// How long a sign-in nonce stays valid.
    pub nonce_ttl: Duration,
    /// Interval of server pings; a peer that has sent nothing (not even a
    /// pong) for three intervals is closed.
    pub ping_interval: Duration,
    /// A connection that sends no request for this long is closed (code
    /// 1001), so abandoned clients do not hold slots forever. Pings and pongs
    /// do not count as requests. `Duration::ZERO` keeps idle connections.
    pub idle_timeout: Duration,
    /// Time a TLS client has to finish its handshake.
    pub tls_handshake_timeout: Duration,
    /// How long a graceful stop waits for in-flight scripts before closing.
    pub shutdown_grace: Duration,
    /// The deadline of every `play`: how long its script may wait for a free
    /// script thread (or a Redis worker) and run, all told, before its caller
    /// gets an error instead. The run alone is capped by
    /// `script_limits.max_run_time`.
    pub script_deadline: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_message_bytes: 256 * 1024,
            max_in_flight_per_connection: circle_protocol::DEFAULT_MAX_IN_FLIGHT,
            max_batch_len: 64,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            client_address_prefixes: AddressPrefixes::default(),
            max_requests_per_second: 1_000,
            max_failed_auth_attempts: 5,
            nonce_ttl: Duration::from_secs(300),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15 * 60),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            script_deadline: Duration::from_secs(30),
        }
    }
}
