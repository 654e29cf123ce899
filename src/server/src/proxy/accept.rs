//! The first steps of every accepted connection, before HTTP: TCP options,
//! the PROXY protocol header when configured, and the TLS handshake; then
//! actix-http's service with the client's address as the peer address.
//!
//! actix-http's own `tcp()` and `rustls_0_23_with_config()` take the peer
//! address from the socket, which behind a balancer is the balancer; these
//! stacks do the same work but hand on the address the header named.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_http::Protocol;
use actix_http::error::DispatchError;
use actix_service::{Service, ServiceFactory, ServiceFactoryExt, boxed, fn_service};
use actix_tls::accept::rustls_0_23::{Acceptor, AcceptorService, TlsStream};
use actix_web::rt::net::TcpStream;
use futures_util::future::LocalBoxFuture;
use tracing::{debug, warn};

use super::TrustedProxies;
use super::header::{ProxyHeaderError, read_proxy_header};
use crate::connection_threads::ConnectionService;
use crate::refusal_log::RefusalLog;
use crate::transport::Wire;

/// What a connection is asked for before its first byte of TLS or HTTP.
#[derive(Clone, Debug)]
pub(crate) struct Front {
    /// Expect a PROXY protocol header first.
    pub proxy_protocol: bool,
    /// Who may send one (empty: any peer).
    pub trusted: Arc<TrustedProxies>,
    /// Time a peer has to send the whole header.
    pub header_timeout: Duration,
    /// Refused connections share the upgrade refusals' one line a second.
    pub refusal_log: Arc<RefusalLog>,
}

impl Front {
    /// Prepares `io` and returns the client's address: the TCP peer's, or
    /// the one its PROXY protocol header names.
    async fn accept(
        &self,
        io: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<Option<SocketAddr>, DispatchError> {
        // Answers are small and latency-bound. Without this, Nagle holds the
        // `101 Switching Protocols` written after the TLS 1.3 session
        // tickets until the client's delayed ACK (~40 ms per new connection).
        let _ = io.set_nodelay(true);
        if !self.proxy_protocol {
            return Ok(Some(peer));
        }
        match self.read_header(io, peer).await {
            Ok(source) => Ok(Some(source.unwrap_or(peer))),
            Err(error) => {
                match self.refusal_log.should_log() {
                    Some(also_refused) => {
                        warn!(?peer, %error, also_refused, "connection refused");
                    }
                    None => debug!(?peer, %error, "connection refused"),
                }
                Err(DispatchError::Io(std::io::Error::other(error)))
            }
        }
    }

    async fn read_header(
        &self,
        io: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<Option<SocketAddr>, ProxyHeaderError> {
        if !self.trusted.is_empty() && !self.trusted.contains(peer.ip()) {
            return Err(ProxyHeaderError::UntrustedPeer(peer.ip()));
        }
        tokio::time::timeout(self.header_timeout, read_proxy_header(io))
            .await
            .map_err(|_| ProxyHeaderError::Timeout)?
    }
}

/// A plain listener's connections: [`Front`], then `http`.
pub(crate) fn plain_stack<H>(front: Front, http: H) -> ConnectionService
where
    H: ServiceFactory<
            (Wire, Protocol, Option<SocketAddr>),
            Config = (),
            Response = (),
            Error = DispatchError,
            InitError = (),
        > + 'static,
    H::Service: 'static,
    H::Future: 'static,
{
    let accepted = fn_service(move |(mut io, peer): (TcpStream, SocketAddr)| {
        let front = front.clone();
        async move {
            let client = front.accept(&mut io, peer).await?;
            Ok((Wire::new(io), Protocol::Http1, client))
        }
    });
    boxed::factory(accepted.and_then(http))
}

/// A TLS listener's connections: [`Front`], the TLS handshake (bounded by
/// `handshake_timeout`), then `http`.
pub(crate) fn tls_stack<H>(
    front: Front,
    mut config: rustls::ServerConfig,
    handshake_timeout: Duration,
    http: H,
) -> ConnectionService
where
    H: ServiceFactory<
            (TlsStream<Wire>, Protocol, Option<SocketAddr>),
            Config = (),
            Response = (),
            Error = DispatchError,
            InitError = (),
        > + 'static,
    H::Service: 'static,
    H::Future: 'static,
{
    // HTTP/1.1 only: h2 first breaks WebSocket upgrades for clients that
    // follow ALPN (actix-http's http2 feature stays off too).
    // ACME's TLS-ALPN-01 adds `acme-tls/1`, which keeps its place after it.
    let acme = crate::acme::ACME_TLS_ALPN.to_vec();
    let wants_acme = config.alpn_protocols.contains(&acme);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if wants_acme {
        config.alpn_protocols.push(acme);
    }
    let mut acceptor = Acceptor::new(config);
    acceptor.set_handshake_timeout(handshake_timeout);
    let accepted = fn_service(move |(mut io, peer): (TcpStream, SocketAddr)| {
        let front = front.clone();
        async move {
            let client = front.accept(&mut io, peer).await?;
            Ok((Wire::new(io), client))
        }
    });
    boxed::factory(accepted.and_then(Handshake(acceptor)).and_then(http))
}

/// actix-tls's acceptor, carrying the client's address past the handshake.
struct Handshake(Acceptor);

impl ServiceFactory<(Wire, Option<SocketAddr>)> for Handshake {
    type Response = (TlsStream<Wire>, Protocol, Option<SocketAddr>);
    type Error = DispatchError;
    type Config = ();
    type Service = HandshakeService;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<HandshakeService, ()>>;

    fn new_service(&self, (): ()) -> Self::Future {
        let acceptor = ServiceFactory::<Wire>::new_service(&self.0, ());
        Box::pin(async move { Ok(HandshakeService(acceptor.await?)) })
    }
}

struct HandshakeService(AcceptorService);

impl Service<(Wire, Option<SocketAddr>)> for HandshakeService {
    type Response = (TlsStream<Wire>, Protocol, Option<SocketAddr>);
    type Error = DispatchError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, DispatchError>>;

    // The acceptor's limit on handshakes in progress per worker still holds.
    fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), DispatchError>> {
        Service::<Wire>::poll_ready(&self.0, cx)
            .map_err(|_| DispatchError::Io(std::io::Error::other("TLS acceptor failed")))
    }

    fn call(&self, (io, client): (Wire, Option<SocketAddr>)) -> Self::Future {
        let handshake = self.0.call(io);
        Box::pin(async move {
            let tls = handshake.await.map_err(|error| {
                DispatchError::Io(std::io::Error::other(format!("TLS handshake: {error:?}")))
            })?;
            Ok((tls, Protocol::Http1, client))
        })
    }
}
