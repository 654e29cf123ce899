//! The TLS wrapper put around a TCP stream before the WebSocket handshake.
//!
//! [`PreparedTls`] is built once per client from its [`TlsConfig`] (so file
//! errors surface in `build()`) and then wraps every connection the client
//! opens, including automatic reconnects.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::CircleWsClientError;
use crate::tls_config::{TlsBackend, TlsConfig};

#[cfg(feature = "native-tls")]
mod native_backend;
#[cfg(feature = "rustls-tls")]
mod rustls_backend;

/// A byte stream a WebSocket can run over.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for S {}

/// A ready-to-use TLS connector of one backend.
#[derive(Clone)]
pub(crate) enum PreparedTls {
    #[cfg(feature = "rustls-tls")]
    Rustls(tokio_rustls::TlsConnector),
    #[cfg(feature = "native-tls")]
    Native(tokio_native_tls::TlsConnector),
    /// Keeps the enum inhabited-in-syntax when no backend is compiled in, so
    /// the matches below need no special case; it can never be constructed.
    #[cfg(not(any(feature = "rustls-tls", feature = "native-tls")))]
    Unavailable(std::convert::Infallible),
}

impl std::fmt::Debug for PreparedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend() {
            TlsBackend::Rustls => "PreparedTls(rustls)",
            TlsBackend::NativeTls => "PreparedTls(native-tls)",
        })
    }
}

impl PreparedTls {
    /// Builds the connector, reading every file `config` names. Logs one
    /// warning for each check the configuration turns off.
    pub(crate) fn prepare(
        config: &TlsConfig,
        backend: TlsBackend,
    ) -> Result<PreparedTls, CircleWsClientError> {
        if config.accept_invalid_certs {
            tracing::warn!(
                backend = %backend,
                "TLS certificate verification is OFF (accept_invalid_certs): the connection is \
                 encrypted but anyone on the network path can impersonate the server; use \
                 ca_cert_path instead outside development"
            );
        } else if config.accept_invalid_hostnames {
            tracing::warn!(
                backend = %backend,
                "TLS host name verification is OFF (accept_invalid_hostnames): any certificate \
                 from a trusted CA is accepted, whichever host it was issued for"
            );
        }
        match backend {
            #[cfg(feature = "rustls-tls")]
            TlsBackend::Rustls => rustls_backend::build_connector(config).map(PreparedTls::Rustls),
            #[cfg(feature = "native-tls")]
            TlsBackend::NativeTls => {
                native_backend::build_connector(config).map(PreparedTls::Native)
            }
            #[allow(unreachable_patterns)]
            other => Err(CircleWsClientError::TlsConfig {
                path: None,
                problem: format!(
                    "the {other} TLS backend is not compiled in: enable the cargo feature {}",
                    match other {
                        TlsBackend::Rustls => "rustls-tls",
                        TlsBackend::NativeTls => "native-tls",
                    }
                ),
            }),
        }
    }

    /// Which library this connector uses.
    pub(crate) fn backend(&self) -> TlsBackend {
        match self {
            #[cfg(feature = "rustls-tls")]
            PreparedTls::Rustls(_) => TlsBackend::Rustls,
            #[cfg(feature = "native-tls")]
            PreparedTls::Native(_) => TlsBackend::NativeTls,
            #[cfg(not(any(feature = "rustls-tls", feature = "native-tls")))]
            PreparedTls::Unavailable(never) => match *never {},
        }
    }

    /// Checks that `host` can be used as a TLS server name by this backend.
    pub(crate) fn check_server_name(&self, host: &str) -> Result<(), String> {
        match self {
            #[cfg(feature = "rustls-tls")]
            PreparedTls::Rustls(_) => rustls_backend::server_name(host).map(|_| ()),
            #[cfg(feature = "native-tls")]
            PreparedTls::Native(_) => {
                let _ = host;
                Ok(())
            }
            #[cfg(not(any(feature = "rustls-tls", feature = "native-tls")))]
            PreparedTls::Unavailable(never) => {
                let _ = host;
                match *never {}
            }
        }
    }
}

/// Recognises, in an I/O error raised after the TLS handshake (for example
/// while reading the WebSocket upgrade answer), a TLS alert from the server:
/// with TLS 1.3 a server refuses a client certificate only after the client
/// believes the handshake is done.
pub(crate) fn classify_late_tls_error(
    error: &std::io::Error,
    host: &str,
) -> Option<CircleWsClientError> {
    #[cfg(feature = "rustls-tls")]
    if let Some(classified) = rustls_backend::classify_late_error(error, host) {
        return Some(classified);
    }
    #[cfg(feature = "native-tls")]
    if let Some(classified) = native_backend::classify_late_error(error, host) {
        return Some(classified);
    }
    let _ = (error, host);
    None
}

/// Wraps `tcp` in TLS with `tls`, then hands the encrypted stream to
/// `continue_with` (the WebSocket handshake), so that the caller's code is
/// the same whichever backend runs.
macro_rules! with_tls_stream {
    ($tls:expr, $host:expr, $tcp:expr, |$stream:ident| $body:expr) => {
        match $tls {
            #[cfg(feature = "rustls-tls")]
            $crate::tls::PreparedTls::Rustls(connector) => {
                let $stream = $crate::tls::rustls_connect(connector, $host, $tcp).await?;
                $body
            }
            #[cfg(feature = "native-tls")]
            $crate::tls::PreparedTls::Native(connector) => {
                let $stream = $crate::tls::native_connect(connector, $host, $tcp).await?;
                $body
            }
            #[cfg(not(any(feature = "rustls-tls", feature = "native-tls")))]
            $crate::tls::PreparedTls::Unavailable(never) => match *never {},
        }
    };
}
pub(crate) use with_tls_stream;

#[cfg(feature = "rustls-tls")]
pub(crate) async fn rustls_connect(
    connector: &tokio_rustls::TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> Result<impl ByteStream, CircleWsClientError> {
    rustls_backend::connect(connector, host, tcp).await
}

#[cfg(feature = "native-tls")]
pub(crate) async fn native_connect(
    connector: &tokio_native_tls::TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> Result<impl ByteStream, CircleWsClientError> {
    native_backend::connect(connector, host, tcp).await
}
