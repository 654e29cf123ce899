//! Starting and stopping a circle server.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::body::BoxBody;
use actix_http::h1::Codec;
use actix_http::{HttpService, HttpServiceBuilder, KeepAlive, Request, TlsAcceptorConfig};
use actix_server::GracefulShutdownSignal;
use actix_service::{ServiceFactory, fn_service, map_config};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::{AppConfig, Service};
use actix_web::http::header::{self, HeaderValue};
use actix_web::rt::net::TcpStream;
use actix_web::{App, HttpRequest, HttpResponse, web};
use circle_executor::{EmbeddedConfig, EmbeddedExecutor, Executor};
use circle_protocol::{PublicKey, SigningKey};
use futures_util::future::{self, Either};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::auth::ChallengeSettings;
use crate::config::ServerConfig;
use crate::metrics::Listener;
use crate::router::ClientIdentity;
use crate::state::{CircleIdentity, ConnectionCounter, Shared};
use crate::tls_config::{
    self, CertificateInfo, LoadedTls, TlsConfigError, TlsOptions, TlsReloader, rfc3339,
};
use crate::upgrade::{RefusalLog, Upgrader, WEBSOCKET_PATH};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS files are missing or wrong; the message says which and how.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// The configuration contradicts itself or holds a bad value.
    #[error("invalid server configuration: {0}")]
    InvalidConfig(String),
    /// The script executor could not start.
    #[error("cannot start the script executor: {0}")]
    Executor(io::Error),
}

/// Controls a running server: where it listens, and how to stop it.
#[derive(Clone)]
pub struct ServerHandle {
    server: actix_server::ServerHandle,
    shutdown: Arc<watch::Sender<bool>>,
    ws_addr: Option<SocketAddr>,
    wss_addr: Option<SocketAddr>,
    circle_public_key: String,
    shared: Arc<Shared>,
    tls: Option<Arc<TlsReloader>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("ws_addr", &self.ws_addr)
            .field("wss_addr", &self.wss_addr)
            .field("circle_public_key", &self.circle_public_key)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Address of the plain `ws://` listener, if one runs.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// Address of the TLS `wss://` listener, if one runs.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.wss_addr
    }

    /// The circle's public key (generated at start when none was configured).
    pub fn circle_public_key(&self) -> &str {
        &self.circle_public_key
    }

    /// WebSocket connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.open()
    }

    /// Reloads the TLS certificate and key from their files (what SIGHUP
    /// does in `circle-server`). New handshakes use the new certificate,
    /// open connections are untouched. A bad file is refused with its
    /// [`TlsConfigError`] and the old certificate keeps serving.
    pub fn reload_tls(&self) -> Result<CertificateInfo, ServerError> {
        let Some(reloader) = &self.tls else {
            return Err(ServerError::InvalidConfig(
                "TLS is not enabled on this server".to_owned(),
            ));
        };
        match reloader.reload() {
            Ok(certificate) => {
                warn_if_expiring(&certificate);
                info!(subject = %certificate.subject, serial = %certificate.serial, expires = %rfc3339(certificate.not_after), "TLS certificate reloaded");
                Ok(certificate)
            }
            Err(error) => {
                warn!(%error, "TLS certificate reload refused; the previous certificate keeps serving");
                Err(error.into())
            }
        }
    }

    /// The certificate the TLS listener serves, if TLS is on.
    pub fn tls_certificate(&self) -> Option<CertificateInfo> {
        self.tls.as_ref().map(|reloader| reloader.certificate())
    }

    /// Stops the server gracefully: no new connections, sessions let their
    /// running scripts answer (up to the configured grace period) and then
    /// close with code 1001. Returns when the server has stopped.
    pub async fn stop(&self) {
        self.shutdown.send_replace(true);
        // Sessions run as tasks of their own on the worker threads: let
        // them finish (drain, close frame, close handshake) before the
        // workers go away.
        let patience = self.shared.limits.shutdown_grace + Duration::from_secs(3);
        if tokio::time::timeout(patience, self.shared.connections.all_closed())
            .await
            .is_err()
        {
            warn!(
                open = self.shared.connections.open(),
                "sessions still open after the shutdown grace period; stopping anyway"
            );
        }
        self.server.stop(true).await;
    }
}

/// Starts a circle server on the current tokio runtime.
///
/// Binds every listener before returning, so a bad port, a bad certificate
/// or a bad key fails here with a typed error, and the bound addresses are
/// known at once (port `0` works). The returned task ends when the server
/// stops.
pub fn spawn_circle_server(
    config: ServerConfig,
) -> Result<(JoinHandle<io::Result<()>>, ServerHandle), ServerError> {
    if let Some(root) = &config.web_root
        && !root.is_dir()
    {
        return Err(ServerError::InvalidConfig(format!(
            "web_root {} is not a folder",
            root.display()
        )));
    }
    let circle = circle_identity(&config)?;
    let tls = load_tls(&config)?;
    let executor = start_executor(&config)?;

    let tls_reloader = tls.as_ref().map(|loaded| loaded.reloader.clone());
    let (plain_listener, tls_listener) = bind_listeners(&config)?;
    let ws_addr = plain_listener.as_ref().map(local_addr).transpose()?;
    let wss_addr = tls_listener.as_ref().map(local_addr).transpose()?;

    let (shutdown_sender, shutdown) = watch::channel(false);
    let shared = Arc::new(Shared {
        challenge: ChallengeSettings {
            circle_name: circle.name.clone(),
            circle_public_key: circle.public_key.clone(),
            nonce_ttl_secs: config.limits.nonce_ttl.as_secs().max(1),
        },
        circle_json: circle.to_json(),
        circle,
        enable_auth: config.enable_auth,
        auth_domain: config.auth_domain.clone(),
        limits: config.limits.clone(),
        executor,
        connections: ConnectionCounter::new(
            config.limits.max_connections,
            config.limits.max_connections_per_ip,
            config.limits.client_address_prefixes,
        ),
        allowed_origins: config.allowed_origins.clone(),
        metrics: Arc::default(),
        tls: tls_reloader.clone(),
        shutdown,
    });

    let hsts = format!(
        "max-age={}; includeSubDomains",
        config.hsts_max_age.as_secs()
    );
    let hsts_header = HeaderValue::from_str(&hsts)
        .map_err(|e| ServerError::InvalidConfig(format!("hsts_max_age: {e}")))?;
    // Only meaningful with both listeners: the redirect points at the TLS one.
    let https_port = wss_addr
        .filter(|_| config.redirect_http_to_https && ws_addr.is_some())
        .map(|a| a.port());
    let web_root = config.web_root.clone();
    let app_shared = shared.clone();
    // The HTTP side: everything but the WebSocket upgrade.
    let make_app = move |listener: Listener| {
        let hsts = hsts_header.clone();
        let secure = listener == Listener::Tls;
        App::new()
            .app_data(web::Data::from(app_shared.clone()))
            .wrap_fn(move |request, service| {
                if let Some(port) = https_port.filter(|_| !secure) {
                    let location = https_location(request.request(), port);
                    let redirect = HttpResponse::PermanentRedirect()
                        .insert_header((header::LOCATION, location))
                        .finish();
                    return Either::Left(future::ready(Ok(request.into_response(redirect))));
                }
                let response = service.call(request);
                let hsts = hsts.clone();
                Either::Right(async move {
                    let mut response = response.await?;
                    let headers = response.headers_mut();
                    // Only the TLS listener's responses carry HSTS: on plain
                    // HTTP the header is meaningless (RFC 6797 §7.2).
                    if secure {
                        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts);
                    }
                    // Static files and JSON are served as what they are, never
                    // framed by another site, and leak no URL in a Referer.
                    headers.insert(
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    );
                    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
                    headers.insert(
                        header::REFERRER_POLICY,
                        HeaderValue::from_static("no-referrer"),
                    );
                    Ok(response)
                })
            })
            .route(WEBSOCKET_PATH, web::get().to(upgrade_required))
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .configure(|app| {
                if let Some(root) = &web_root {
                    app.service(actix_files::Files::new("/", root).index_file("index.html"));
                }
            })
    };
    let connection_ids = Arc::new(AtomicU64::new(1));
    let refusal_log = Arc::new(RefusalLog::new());
    let upgrader = {
        let shared = shared.clone();
        move |listener: Listener, local_addr: SocketAddr| {
            Rc::new(Upgrader {
                shared: shared.clone(),
                listener,
                local_addr,
                hsts: (listener == Listener::Tls).then(|| hsts.clone()),
                connection_ids: connection_ids.clone(),
                refusal_log: refusal_log.clone(),
            })
        }
    };
    let mut server = actix_server::Server::build()
        // The embedding program owns its signals; `circle-server` maps them
        // to a graceful stop itself.
        .disable_signals()
        .shutdown_timeout(config.limits.shutdown_grace.as_secs() + 2);
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    let graceful_stop = server.graceful_shutdown_signal();
    if let (Some(listener), Some(addr)) = (plain_listener, ws_addr) {
        let make_app = make_app.clone();
        let upgrader = upgrader.clone();
        let graceful_stop = graceful_stop.clone();
        server = server
            .listen("circle-ws", listener, move || {
                let upgrader = upgrader(Listener::Plain, addr);
                http_service(addr, &graceful_stop)
                    .upgrade(fn_service(
                        move |(request, framed): (Request, Framed<TcpStream, Codec>)| {
                            let upgrader = upgrader.clone();
                            async move {
                                upgrader.serve(request, framed).await;
                                Ok::<_, actix_web::Error>(())
                            }
                        },
                    ))
                    .finish(map_config(make_app(Listener::Plain), |()| {
                        AppConfig::default()
                    }))
                    .tcp()
            })
            .map_err(|source| bind_error(ws_addr, source))?;
    }
    if let (Some(listener), Some(addr), Some(tls)) = (tls_listener, wss_addr, tls) {
        let mut rustls_config = tls.config;
        // actix-http prepends its own ALPN list ("http/1.1", and "h2" only
        // with its http2 feature, which we leave off: h2 first breaks
        // WebSocket upgrades for clients that follow ALPN). Clearing ours
        // avoids offering "http/1.1" twice.
        rustls_config.alpn_protocols.clear();
        let handshake_timeout = config.limits.tls_handshake_timeout;
        let handshake_metrics = shared.metrics.clone();
        let graceful_stop = graceful_stop.clone();
        server = server
            .listen("circle-wss", listener, move || {
                let upgrader = upgrader(Listener::Tls, addr);
                let handshake_metrics = handshake_metrics.clone();
                http_service(addr, &graceful_stop)
                    .on_connect_ext(move |tls: &TlsStream<TcpStream>, extensions| {
                        handshake_metrics.tls_handshake();
                        if let Some(identity) = ClientIdentity::of(tls.get_ref().1) {
                            extensions.insert(identity);
                        }
                    })
                    .upgrade(fn_service(
                        move |(request, framed): (Request, Framed<TlsStream<TcpStream>, Codec>)| {
                            let upgrader = upgrader.clone();
                            async move {
                                upgrader.serve(request, framed).await;
                                Ok::<_, actix_web::Error>(())
                            }
                        },
                    ))
                    .finish(map_config(make_app(Listener::Tls), |()| {
                        AppConfig::default()
                    }))
                    .rustls_0_23_with_config(
                        rustls_config.clone(),
                        TlsAcceptorConfig::default().handshake_timeout(handshake_timeout),
                    )
            })
            .map_err(|source| bind_error(wss_addr, source))?;
    }
    let server = server.run();
    if let Some(reloader) = &tls_reloader {
        tokio::spawn(watch_certificate_expiry(
            reloader.clone(),
            shared.shutdown.clone(),
        ));
    }
    let handle = ServerHandle {
        server: server.handle(),
        shutdown: Arc::new(shutdown_sender),
        ws_addr,
        wss_addr,
        circle_public_key: shared.circle.public_key.clone(),
        shared: shared.clone(),
        tls: tls_reloader,
    };

    info!(circle = %shared.circle.name, public_key = %shared.circle.public_key, auth = config.enable_auth, "circle server starting");
    if let Some(addr) = ws_addr {
        info!("listening on ws://{addr}/ws");
    }
    if let Some(addr) = wss_addr {
        info!("listening on wss://{addr}/ws");
    }
    Ok((tokio::spawn(server), handle))
}

/// The HTTP/1 settings both listeners share.
fn http_service<T, S>(
    local_addr: SocketAddr,
    graceful_stop: &GracefulShutdownSignal,
) -> HttpServiceBuilder<T, S>
where
    S: ServiceFactory<Request, Config = ()>,
    S::Error: Into<actix_http::Response<BoxBody>> + 'static,
    S::Response: Into<actix_http::Response<BoxBody>> + 'static,
    S::InitError: std::fmt::Debug,
    <S::Service as Service<Request>>::Future: 'static,
{
    let graceful_stop = graceful_stop.clone();
    HttpService::build()
        // Lets keep-alive HTTP connections close at once on a graceful stop.
        .graceful_shutdown_signal(move || {
            let signal = graceful_stop.clone();
            async move { signal.notified().await }
        })
        .keep_alive(KeepAlive::Timeout(Duration::from_secs(5)))
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(1))
        // Answers are small and latency-bound. Without this, Nagle holds the
        // `101 Switching Protocols` written after the TLS 1.3 session
        // tickets until the client's delayed ACK (~40 ms per new connection).
        .tcp_nodelay(true)
        .local_addr(local_addr)
}

fn circle_identity(config: &ServerConfig) -> Result<CircleIdentity, ServerError> {
    if config.circle_name.contains(['\n', '\r']) {
        return Err(ServerError::InvalidConfig(
            "circle_name must be a single line: it is part of the sign-in message".to_owned(),
        ));
    }
    let public_key = if config.circle_public_key.trim().is_empty() {
        let key = ephemeral_circle_key();
        warn!(public_key = %key, "no circle public key configured: using an ephemeral one for this run");
        key
    } else {
        PublicKey::from_hex(&config.circle_public_key)
            .map(|key| key.to_compressed_hex())
            .map_err(|e| ServerError::InvalidConfig(format!("circle_public_key: {e}")))?
    };
    Ok(CircleIdentity {
        name: config.circle_name.clone(),
        public_key,
    })
}

/// A fresh random circle key, for servers started without one.
fn ephemeral_circle_key() -> String {
    loop {
        let secret: [u8; 32] = rand::random();
        // All but a 2^-128 sliver of 32-byte strings are valid keys.
        if let Ok(key) = SigningKey::from_bytes(&secret) {
            return key.public_key().to_compressed_hex();
        }
    }
}

fn load_tls(config: &ServerConfig) -> Result<Option<LoadedTls>, ServerError> {
    if !config.enable_tls {
        if config.tls_port.is_some() {
            return Err(ServerError::InvalidConfig(
                "tls_port is set but enable_tls is off".to_owned(),
            ));
        }
        return Ok(None);
    }
    let (Some(cert_path), Some(key_path)) = (&config.cert_path, &config.key_path) else {
        return Err(TlsConfigError::ConfigurationError(
            "enable_tls needs both cert_path and key_path".to_owned(),
        )
        .into());
    };
    let loaded = tls_config::load_server_tls(&TlsOptions {
        cert_path: cert_path.clone(),
        key_path: key_path.clone(),
        client_ca_path: config.client_ca_path.clone(),
        client_auth_required: config.client_auth_required,
        accept_invalid_certs: config.tls_accept_invalid_certs,
    })?;
    let certificate = &loaded.certificate;
    info!(
        subject = %certificate.subject,
        serial = %certificate.serial,
        expires = %rfc3339(certificate.not_after),
        days_left = certificate.expires_in().as_secs() / 86_400,
        chain = certificate.chain_len,
        "TLS certificate loaded from {cert_path}"
    );
    warn_if_expiring(certificate);
    if let Some(problem) = &loaded.accepted_problem {
        warn!(
            "tls_accept_invalid_certs is set: serving {cert_path} although {problem}; clients that verify certificates will refuse it"
        );
    } else if config.tls_accept_invalid_certs {
        warn!(
            "tls_accept_invalid_certs is set: certificate problems would not stop this server from starting"
        );
    }
    if config.client_ca_path.is_some() {
        info!(
            required = config.client_auth_required,
            "client certificates are verified (mutual TLS)"
        );
    }
    Ok(Some(loaded))
}

/// Below this much validity left, the log warns every few hours: Let's
/// Encrypt lifetimes are shrinking toward 45 days, so renewals that silently
/// fail must be noticed early.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

fn warn_if_expiring(certificate: &CertificateInfo) {
    let left = certificate.expires_in();
    if left < EXPIRY_WARNING {
        warn!(
            subject = %certificate.subject,
            expires = %rfc3339(certificate.not_after),
            hours_left = left.as_secs() / 3600,
            "the TLS certificate expires soon: renew it and reload (SIGHUP or ServerHandle::reload_tls)"
        );
    }
}

async fn watch_certificate_expiry(reloader: Arc<TlsReloader>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(6 * 60 * 60));
    every.tick().await; // the first tick is immediate; start-up already warned
    loop {
        tokio::select! {
            _ = every.tick() => warn_if_expiring(&reloader.certificate()),
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
        }
    }
}

fn start_executor(config: &ServerConfig) -> Result<Arc<dyn Executor>, ServerError> {
    if let Some(url) = &config.redis_url {
        return start_redis_executor(url, config);
    }
    let defaults = EmbeddedConfig::default();
    let executor = EmbeddedExecutor::new(EmbeddedConfig {
        threads: if config.script_threads > 0 {
            config.script_threads
        } else {
            defaults.threads
        },
        queue_capacity: if config.script_queue_capacity > 0 {
            config.script_queue_capacity
        } else {
            defaults.queue_capacity
        },
        limits: config.script_limits.clone(),
        ..defaults
    })
    .map_err(ServerError::Executor)?;
    Ok(Arc::new(executor))
}

/// Hands scripts to `circle-worker` processes through the Redis at `url`.
/// Never waits for Redis: an unreachable Redis is answered per request
/// (`-32005`) and recovered from in the background.
#[cfg(feature = "redis")]
fn start_redis_executor(
    url: &str,
    config: &ServerConfig,
) -> Result<Arc<dyn Executor>, ServerError> {
    use circle_executor::redis::{RedisExecutor, RedisExecutorConfig, RedisSetupError};

    // Workers find the circle's jobs by its public key; an ephemeral key
    // generated at start would be known to no worker.
    if config.circle_public_key.trim().is_empty() {
        return Err(ServerError::InvalidConfig(
            "redis_url needs circle_public_key: circle-worker processes find the circle's jobs by its public key".to_owned(),
        ));
    }
    // The same canonical (compressed) form the server announces, which is
    // also what workers are given.
    let circle_public_key = PublicKey::from_hex(&config.circle_public_key)
        .map(|key| key.to_compressed_hex())
        .map_err(|e| ServerError::InvalidConfig(format!("circle_public_key: {e}")))?;
    let executor = RedisExecutor::new(RedisExecutorConfig {
        default_deadline: config.limits.script_deadline,
        ..RedisExecutorConfig::new(url, circle_public_key)
    })
    .map_err(|error| match error {
        RedisSetupError::Threads(source) => ServerError::Executor(source),
        RedisSetupError::NoRuntime => ServerError::Executor(io::Error::other(error)),
        other => ServerError::InvalidConfig(format!("redis_url: {other}")),
    })?;
    Ok(Arc::new(executor))
}

#[cfg(not(feature = "redis"))]
fn start_redis_executor(
    url: &str,
    _config: &ServerConfig,
) -> Result<Arc<dyn Executor>, ServerError> {
    Err(ServerError::InvalidConfig(format!(
        "redis_url ({url}) needs a circle_server built with its `redis` feature: leave it unset to run scripts in-process"
    )))
}

/// Binds the plain and TLS listeners as configured.
fn bind_listeners(
    config: &ServerConfig,
) -> Result<(Option<TcpListener>, Option<TcpListener>), ServerError> {
    // An IPv6 address may come with or without its URL brackets.
    let host = config
        .host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(&config.host);
    let bind = |port: u16| {
        // A (host, port) pair, not "host:port": an IPv6 address has colons.
        TcpListener::bind((host, port)).map_err(|source| ServerError::Bind {
            addr: format!("{}:{port}", config.host),
            source,
        })
    };
    match (config.enable_tls, config.tls_port) {
        (false, _) => Ok((Some(bind(config.port)?), None)),
        (true, None) => Ok((None, Some(bind(config.port)?))),
        (true, Some(tls_port)) => Ok((Some(bind(config.port)?), Some(bind(tls_port)?))),
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: "bound listener".to_owned(),
        source,
    })
}

fn bind_error(addr: Option<SocketAddr>, source: io::Error) -> ServerError {
    let addr = addr.map(|a| a.to_string()).unwrap_or_default();
    ServerError::Bind { addr, source }
}

/// `GET /ws` without `Upgrade: websocket`: plain HTTP gets no session.
async fn upgrade_required() -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::UPGRADE_REQUIRED)
        .insert_header((header::UPGRADE, "websocket"))
        .insert_header((header::CONNECTION, "Upgrade"))
        .body("this endpoint speaks WebSocket only")
}

/// `https://HOST:PORT/PATH?QUERY` for a plain-HTTP request.
fn https_location(request: &HttpRequest, https_port: u16) -> String {
    let info = request.connection_info();
    let host = info.host();
    // Drop the plain port from the Host header; keep IPv6 brackets intact.
    let hostname = match host.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && !name.ends_with(':') =>
        {
            name
        }
        _ => host,
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!("https://{hostname}:{https_port}{path}")
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    let expires_in = shared
        .tls
        .as_ref()
        .map(|tls| tls.certificate().expires_in());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(
            shared
                .metrics
                .render(expires_in, shared.executor.queue_depth()),
        )
}

/// `GET /health`: a small JSON body for load balancers; `503` once the
/// server drains (protocol 1.1), so a balancer stops sending new clients
/// while the connections still open finish.
async fn health(shared: web::Data<Shared>) -> HttpResponse {
    let stopping = *shared.shutdown.borrow();
    let mut response = if stopping {
        HttpResponse::ServiceUnavailable()
    } else {
        HttpResponse::Ok()
    };
    response.json(serde_json::json!({
        "status": if stopping { "stopping" } else { "ok" },
        "circle": shared.circle.name,
        "connections": shared.connections.open(),
        "executor_queue": shared.executor.queue_depth(),
    }))
}
