//! The WebSocket upgrade, outside actix-http's HTTP/1 dispatcher.
//!
//! actix-http hands every request that asks for `Upgrade: websocket` to
//! this service together with the connection itself. From here on the connection
//! no longer belongs to the dispatcher: its two 8 KiB HTTP buffers are freed
//! and the WebSocket runs straight over the (TLS) stream with a small read
//! buffer. An idle signed-in connection then costs about half the memory,
//! and every answer skips the dispatcher and a channel hop (bench/PROFILE.md
//! §2 and §3).
//!
//! Plain HTTP requests never come here: `/health`, `/metrics` and the web
//! root stay actix-web routes.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_codec::Framed;
use actix_http::h1::Codec;
use actix_http::{HttpMessage, Request};
use actix_web::http::{Method, header};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{Instrument, debug, info, warn};

use crate::auth::ChallengeOrigin;
use crate::listen::Listener;
use crate::metrics::LimitHit;
use crate::proxy::client_address;
use crate::refusal_log::RefusalLog;
use crate::router::ConnectionState;
use crate::session;
use crate::session_log::{Client, SessionTag};
use crate::state::{Refusal, ServerState};
use crate::tls::ClientIdentity;
use crate::transport::Transport;

/// The path WebSockets are served on.
pub(crate) const WEBSOCKET_PATH: &str = "/ws";

/// Bytes tungstenite reads from the socket at a time. Small on purpose: it
/// stays allocated for the life of every idle connection, and one request
/// is a few hundred bytes (tungstenite's default is 128 KiB). A larger
/// frame still gets its whole size at once, from its header; reads come
/// out of rustls's buffer, so a small size costs no extra system calls.
const READ_BUFFER_BYTES: usize = 512;

/// Answers are collected up to this many bytes before they go to the socket
/// in one write; the session flushes whenever it has nothing more to do.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// What every upgrade on one listener needs.
pub(crate) struct Upgrader {
    pub shared: Arc<ServerState>,
    pub listener: Listener,
    /// The listener's own address: the challenge URI's host when the
    /// request names none.
    pub local_addr: SocketAddr,
    /// The `Strict-Transport-Security` header line (TLS listener only).
    pub hsts: Option<String>,
    /// Numbers the connections of the whole server, for the log.
    pub connection_ids: Arc<AtomicU64>,
    /// Keeps a flood of refused connections from flooding the log as well.
    pub refusal_log: Arc<RefusalLog>,
    /// The challenge origin of this thread's last upgrade. A service's
    /// clients name the same host, so their connections share one copy
    /// instead of holding two strings each.
    pub last_origin: RefCell<Option<Rc<ChallengeOrigin>>>,
}

impl Upgrader {
    /// Serves one upgrade request: refuses it with an HTTP status, or
    /// switches protocols and starts the WebSocket session as a task of its
    /// own. Returning ends actix-http's part: the connection's HTTP state,
    /// the TLS accept future and the dispatcher are freed, and an idle
    /// session costs only its own small task and buffers.
    pub async fn serve<T>(&self, request: Request, framed: Framed<T, Codec>)
    where
        T: Transport,
    {
        // A peer that goes away mid-upgrade is routine, not an error.
        if let Err(error) = self.upgrade(request, framed).await {
            debug!(%error, "connection lost during the websocket upgrade");
        }
    }

    /// `origin`, or the same one a previous connection already holds.
    fn share(&self, origin: ChallengeOrigin) -> Rc<ChallengeOrigin> {
        let mut last = self.last_origin.borrow_mut();
        match &*last {
            Some(shared) if **shared == origin => shared.clone(),
            _ => last.insert(Rc::new(origin)).clone(),
        }
    }

    async fn upgrade<T>(&self, request: Request, framed: Framed<T, Codec>) -> io::Result<()>
    where
        T: Transport,
    {
        let parts = framed.into_parts();
        let mut io = parts.io;
        // Bytes the client sent after the request head (a client may send
        // its first frame without waiting for the 101) belong to the
        // WebSocket. Nothing has been written for this request yet, but an
        // earlier keep-alive response may still sit in the write buffer.
        let early_frames = Vec::from(parts.read_buf);
        if !parts.write_buf.is_empty() {
            io.write_all(&parts.write_buf).await?;
        }

        let key = match self.check(&request) {
            Ok(key) => key,
            Err(refusal) => return self.refuse(&mut io, refusal).await,
        };
        let shared = &self.shared;
        // The TCP peer, or the client its PROXY protocol header named; and
        // behind a trusted HTTP proxy, the client its forwarded headers name.
        let peer = request.peer_addr().map(|addr| addr.ip());
        let client =
            peer.map(|peer| client_address(peer, request.headers(), &shared.trusted_proxies));
        let slot = match shared.connections.try_open(client) {
            Ok(slot) => slot,
            Err(refusal) => {
                let (limit, status) = match refusal {
                    Refusal::ServerFull => {
                        shared.metrics.limit_hit(LimitHit::Connections);
                        (
                            shared.limits.max_connections,
                            HttpRefusal::new(503, "too many connections"),
                        )
                    }
                    Refusal::TooManyFromAddress => {
                        shared.metrics.limit_hit(LimitHit::ConnectionsPerIp);
                        (
                            shared.limits.max_connections_per_ip,
                            HttpRefusal::new(429, "too many connections from your address"),
                        )
                    }
                };
                if let Some(also_refused) = self.refusal_log.should_log() {
                    warn!(
                        limit,
                        client = %Client(client),
                        also_refused,
                        "connection refused: {}",
                        status.body
                    );
                }
                return self.refuse(&mut io, status).await;
            }
        };

        let mut response = String::with_capacity(200);
        response.push_str(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        );
        let _ = write!(
            response,
            "Sec-WebSocket-Accept: {}\r\n",
            derive_accept_key(key.as_bytes())
        );
        if let Some(hsts) = &self.hsts {
            let _ = write!(response, "Strict-Transport-Security: {hsts}\r\n");
        }
        response.push_str("\r\n");
        io.write_all(response.as_bytes()).await?;
        io.flush().await?;

        let max_message = shared.limits.max_message_bytes;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            // Backpressure: a client that stops reading stops being read.
            .max_write_buffer_size(WRITE_BUFFER_BYTES + max_message.max(64 * 1024))
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let socket =
            WebSocketStream::from_partially_read(io, early_frames, Role::Server, Some(config))
                .await;

        let connection_id = self.connection_ids.fetch_add(1, Ordering::Relaxed);
        let identity = request.conn_data::<ClientIdentity>();
        let client_subject = identity.map(|identity| identity.subject.as_str());
        // Every log line of the session carries its connection id, the
        // client's address (as found through trusted proxies) and, under
        // mutual TLS, the client certificate's subject.
        let tag = SessionTag::new(connection_id, client, client_subject);
        let span = tag.task_span();
        span.in_scope(|| match &client_subject {
            Some(subject) => tag.line_span().in_scope(
                || info!(%subject, "websocket connected with a verified client certificate"),
            ),
            None => debug!("websocket connected"),
        });
        let origin = self.share(challenge_origin(
            &request,
            shared.auth_domain.as_deref(),
            self.listener,
            self.local_addr,
        ));
        let conn = ConnectionState::new(shared, origin, self.listener, identity);
        // The session's own task; `ServerHandle::stop` waits for it through
        // the connection count that `slot` holds.
        let session = session::run(shared.clone(), socket, conn, slot, tag);
        // A span that is off is not worn: `Instrumented` would keep its
        // room (40 bytes) in every idle connection's task.
        if span.is_disabled() {
            actix_web::rt::spawn(session);
        } else {
            actix_web::rt::spawn(session.instrument(span));
        }
        Ok(())
    }

    /// The request's `Sec-WebSocket-Key`, or why it gets no WebSocket.
    fn check<'r>(&self, request: &'r Request) -> Result<&'r str, HttpRefusal> {
        if request.path() != WEBSOCKET_PATH {
            return Err(HttpRefusal::new(404, "WebSockets are served on /ws only"));
        }
        if request.method() != Method::GET {
            return Err(HttpRefusal::new(405, "a WebSocket upgrade is a GET"));
        }
        let headers = request.headers();
        // actix-http hands over any request with `Upgrade: websocket`; RFC
        // 6455 §4.1 also wants `Connection: Upgrade`.
        let connection_upgrades = headers
            .get_all(header::CONNECTION)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|option| option.trim().eq_ignore_ascii_case("upgrade"));
        if !connection_upgrades {
            return Err(HttpRefusal::new(
                400,
                "a WebSocket handshake needs Connection: Upgrade",
            ));
        }
        let upgrades_to_websocket = headers
            .get(header::UPGRADE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .split(',')
                    .any(|protocol| protocol.trim().eq_ignore_ascii_case("websocket"))
            });
        if !upgrades_to_websocket {
            return Err(HttpRefusal::new(
                400,
                "only an upgrade to websocket is offered",
            ));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|version| version != "13")
        {
            return Err(HttpRefusal {
                // RFC 6455 §4.4: say which version we speak.
                extra_header: Some("Sec-WebSocket-Version: 13"),
                ..HttpRefusal::new(426, "only WebSocket version 13 is spoken here")
            });
        }
        // RFC 6455 §4.2.1: the key is 16 random bytes in base64 (24 chars).
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .and_then(|key| key.to_str().ok())
            .filter(|key| key.len() == 24)
            .ok_or_else(|| HttpRefusal::new(400, "missing or malformed Sec-WebSocket-Key"))?;
        if *self.shared.shutdown.borrow() {
            return Err(HttpRefusal::new(503, "server is shutting down"));
        }
        if let Some(allowed) = &self.shared.allowed_origins
            && let Some(origin) = headers.get(header::ORIGIN)
        {
            let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
            if !allowed
                .iter()
                .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
            {
                self.shared.metrics.limit_hit(LimitHit::Origin);
                warn!(
                    origin,
                    "websocket refused: origin is not in allowed_origins"
                );
                return Err(HttpRefusal::new(
                    403,
                    "this origin may not open WebSockets here",
                ));
            }
        }
        Ok(key)
    }

    /// Answers a refused upgrade with a complete HTTP response and closes.
    async fn refuse<T>(&self, io: &mut T, refusal: HttpRefusal) -> io::Result<()>
    where
        T: AsyncWrite + Unpin,
    {
        let mut response = String::with_capacity(256);
        let _ = write!(
            response,
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n",
            refusal.status,
            reason_phrase(refusal.status),
            refusal.body.len()
        );
        if let Some(line) = refusal.extra_header {
            let _ = write!(response, "{line}\r\n");
        }
        if let Some(hsts) = &self.hsts {
            let _ = write!(response, "strict-transport-security: {hsts}\r\n");
        }
        response.push_str("\r\n");
        response.push_str(refusal.body);
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await
    }
}

/// An HTTP answer instead of a WebSocket.
struct HttpRefusal {
    status: u16,
    body: &'static str,
    extra_header: Option<&'static str>,
}

impl HttpRefusal {
    fn new(status: u16, body: &'static str) -> HttpRefusal {
        HttpRefusal {
            status,
            body,
            extra_header: None,
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The `domain` and `URI` of a connection's sign-in challenges.
///
/// The domain is the pinned one, else the authority of the `Origin` header
/// (a browser page: wallets compare it with the page they run on), else the
/// `Host` the client connected to.
fn challenge_origin(
    request: &Request,
    pinned_domain: Option<&str>,
    listener: Listener,
    local_addr: SocketAddr,
) -> ChallengeOrigin {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| is_clean_authority(host))
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| local_addr.to_string());
    let from_origin = headers
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .and_then(|origin| origin.split_once("://").map(|(_, authority)| authority))
        .map(|authority| authority.trim_end_matches('/'))
        .filter(|authority| is_clean_authority(authority))
        .map(str::to_owned);
    let domain = pinned_domain
        .map(str::to_owned)
        .or(from_origin)
        .unwrap_or_else(|| host.clone());
    let scheme = match listener {
        Listener::Tls => "wss",
        Listener::Plain => "ws",
    };
    ChallengeOrigin {
        domain,
        uri: format!("{scheme}://{host}{WEBSOCKET_PATH}"),
    }
}

/// Whether `authority` can go into a one-line sign-in message field.
fn is_clean_authority(authority: &str) -> bool {
    !authority.is_empty()
        && !authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
}
