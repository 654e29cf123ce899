//! Starting and stopping a circle server.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::dev::Service;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use circle_executor::{EmbeddedConfig, EmbeddedExecutor, Executor};
use circle_protocol::{PublicKey, SigningKey};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::auth::{ChallengeOrigin, ChallengeSettings};
use crate::config::ServerConfig;
use crate::router::Connection;
use crate::session;
use crate::state::{CircleIdentity, ConnectionCounter, Shared};
use crate::tls_config::{self, LoadedTls, TlsConfigError, TlsOptions, rfc3339};

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
    server: actix_web::dev::ServerHandle,
    shutdown: Arc<watch::Sender<bool>>,
    ws_addr: Option<SocketAddr>,
    wss_addr: Option<SocketAddr>,
    circle_public_key: String,
    shared: Arc<Shared>,
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

    /// Stops the server gracefully: no new connections, sessions let their
    /// running scripts answer (up to the configured grace period) and then
    /// close with code 1001. Returns when the server has stopped.
    pub async fn stop(&self) {
        self.shutdown.send_replace(true);
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
    let circle = circle_identity(&config)?;
    let tls = load_tls(&config)?;
    let executor = start_executor(&config)?;

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
        circle,
        enable_auth: config.enable_auth,
        auth_domain: config.auth_domain.clone(),
        limits: config.limits.clone(),
        executor,
        connections: ConnectionCounter::new(config.limits.max_connections),
        shutdown,
    });

    let hsts = HeaderValue::from_str(&format!(
        "max-age={}; includeSubDomains",
        config.hsts_max_age.as_secs()
    ))
    .map_err(|e| ServerError::InvalidConfig(format!("hsts_max_age: {e}")))?;
    let app_shared = shared.clone();
    let connection_ids = Arc::new(AtomicU64::new(1));
    let mut server = HttpServer::new(move || {
        let hsts = hsts.clone();
        App::new()
            .app_data(web::Data::from(app_shared.clone()))
            .app_data(web::Data::new(connection_ids.clone()))
            .wrap_fn(move |request, service| {
                // Only the TLS listener's responses carry HSTS: on plain HTTP
                // the header is meaningless (RFC 6797 §7.2).
                let secure = request.app_config().secure();
                let response = service.call(request);
                let hsts = hsts.clone();
                async move {
                    let mut response = response.await?;
                    if secure {
                        response
                            .headers_mut()
                            .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
                    }
                    Ok(response)
                }
            })
            .route("/ws", web::get().to(websocket))
            .route("/health", web::get().to(health))
    })
    // The embedding program owns its signals; `circle-server` maps them to
    // a graceful stop itself.
    .disable_signals()
    .shutdown_timeout(config.limits.shutdown_grace.as_secs() + 2)
    .tls_handshake_timeout(config.limits.tls_handshake_timeout);
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    if let Some(listener) = plain_listener {
        server = server
            .listen(listener)
            .map_err(|source| bind_error(ws_addr, source))?;
    }
    if let (Some(listener), Some(tls)) = (tls_listener, tls) {
        let mut rustls_config = tls.config;
        // actix-http prepends its own ALPN list ("http/1.1", and "h2" only
        // with its http2 feature, which we leave off: h2 first breaks
        // WebSocket upgrades for clients that follow ALPN). Clearing ours
        // avoids offering "http/1.1" twice.
        rustls_config.alpn_protocols.clear();
        server = server
            .listen_rustls_0_23(listener, rustls_config)
            .map_err(|source| bind_error(wss_addr, source))?;
    }
    let server = server.run();
    let handle = ServerHandle {
        server: server.handle(),
        shutdown: Arc::new(shutdown_sender),
        ws_addr,
        wss_addr,
        circle_public_key: shared.circle.public_key.clone(),
        shared: shared.clone(),
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

fn start_executor(config: &ServerConfig) -> Result<Arc<dyn Executor>, ServerError> {
    if let Some(url) = &config.redis_url {
        return Err(ServerError::InvalidConfig(format!(
            "redis_url ({url}) is not supported by this build yet: leave it unset to run scripts in-process"
        )));
    }
    let defaults = EmbeddedConfig::default();
    let executor = EmbeddedExecutor::new(EmbeddedConfig {
        threads: if config.script_threads > 0 {
            config.script_threads
        } else {
            defaults.threads
        },
        limits: config.script_limits.clone(),
        ..defaults
    })
    .map_err(ServerError::Executor)?;
    Ok(Arc::new(executor))
}

/// Binds the plain and TLS listeners as configured.
fn bind_listeners(
    config: &ServerConfig,
) -> Result<(Option<TcpListener>, Option<TcpListener>), ServerError> {
    let bind = |port: u16| {
        let addr = format!("{}:{port}", config.host);
        TcpListener::bind(&addr).map_err(|source| ServerError::Bind { addr, source })
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

/// `GET /ws`: upgrades to a WebSocket session.
async fn websocket(
    request: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
    connection_ids: web::Data<Arc<AtomicU64>>,
) -> Result<HttpResponse, actix_web::Error> {
    if *shared.shutdown.borrow() {
        return Ok(HttpResponse::ServiceUnavailable().body("server is shutting down"));
    }
    let Some(slot) = shared.connections.try_open() else {
        warn!(limit = shared.limits.max_connections, peer = ?request.peer_addr(), "connection refused: server is at its connection limit");
        return Ok(HttpResponse::ServiceUnavailable().body("too many connections"));
    };
    let origin = challenge_origin(&request, shared.auth_domain.as_deref());
    let (response, session, messages) = actix_ws::handle(&request, body)?;
    let max_message = shared.limits.max_message_bytes;
    let messages = messages
        .max_frame_size(max_message)
        .aggregate_continuations()
        .max_continuation_size(max_message);
    let connection_id = connection_ids.fetch_add(1, Ordering::Relaxed);
    let conn = Connection::new(&shared, origin);
    tracing::debug!(connection_id, peer = ?request.peer_addr(), "websocket connected");
    actix_web::rt::spawn(session::run(
        shared.into_inner(),
        session,
        messages,
        conn,
        connection_id,
        slot,
    ));
    Ok(response)
}

/// `GET /health`: a small JSON body for load balancers.
async fn health(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": if *shared.shutdown.borrow() { "stopping" } else { "ok" },
        "circle": shared.circle.name,
        "connections": shared.connections.open(),
        "executor_queue": shared.executor.queue_depth(),
    }))
}

/// The `domain` and `URI` of this connection's sign-in challenges.
///
/// The domain is the pinned one, else the authority of the `Origin` header
/// (a browser page: wallets compare it with the page they run on), else of
/// `Host`.
fn challenge_origin(request: &HttpRequest, pinned_domain: Option<&str>) -> ChallengeOrigin {
    let host = request.connection_info().host().to_owned();
    let from_origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .and_then(|origin| origin.split_once("://").map(|(_, authority)| authority))
        .map(|authority| authority.trim_end_matches('/'))
        .filter(|authority| {
            !authority.is_empty()
                && !authority
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        })
        .map(str::to_owned);
    let domain = pinned_domain
        .map(str::to_owned)
        .or(from_origin)
        .unwrap_or_else(|| host.clone());
    let scheme = if request.app_config().secure() {
        "wss"
    } else {
        "ws"
    };
    ChallengeOrigin {
        domain,
        uri: format!("{scheme}://{host}/ws"),
    }
}
