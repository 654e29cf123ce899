//! The listening sockets and the HTTP/1 service every connection starts
//! with, on the plain and the TLS listener alike.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_http::body::BoxBody;
use actix_http::{HttpService, HttpServiceBuilder, KeepAlive, Request};
use actix_service::ServiceFactory;
use actix_web::dev::Service;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::error::ServerError;

/// Which listener a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    Plain = 0,
    Tls = 1,
}

/// Binds the plain and TLS listeners as configured.
pub(crate) fn bind_listeners(
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

pub(crate) fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: "bound listener".to_owned(),
        source,
    })
}

pub(crate) fn bind_error(addr: Option<SocketAddr>, source: io::Error) -> ServerError {
    let addr = addr.map(|a| a.to_string()).unwrap_or_default();
    ServerError::Bind { addr, source }
}

/// The HTTP/1 settings both listeners share.
pub(crate) fn http_service<T, S>(
    local_addr: SocketAddr,
    finishing: &watch::Receiver<bool>,
) -> HttpServiceBuilder<T, S>
where
    S: ServiceFactory<Request, Config = ()>,
    S::Error: Into<actix_http::Response<BoxBody>> + 'static,
    S::Response: Into<actix_http::Response<BoxBody>> + 'static,
    S::InitError: std::fmt::Debug,
    <S::Service as Service<Request>>::Future: 'static,
{
    let finishing = finishing.clone();
    HttpService::build()
        // Lets idle keep-alive HTTP connections close at once when the
        // connection threads finish.
        .graceful_shutdown_signal(move || {
            let mut finishing = finishing.clone();
            async move {
                let _ = finishing.wait_for(|finishing| *finishing).await;
            }
        })
        .keep_alive(KeepAlive::Timeout(Duration::from_secs(5)))
        .client_request_timeout(Duration::from_secs(5))
        .client_disconnect_timeout(Duration::from_secs(1))
        // TCP_NODELAY is set by the accept stacks (`proxy::Front`).
        .local_addr(local_addr)
}
