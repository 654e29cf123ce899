//! Opening a connection: the URL, the TCP connection, the optional TLS
//! wrapper and the WebSocket handshake, in that order, all under the connect
//! timeout so that a peer that never answers cannot hang the caller.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::Uri};

use crate::connection::Connection;
use crate::error::CircleWsClientError;
use crate::tls::{self, ByteStream, PreparedTls};

/// A parsed `ws://` or `wss://` URL.
#[derive(Clone, Debug)]
pub(crate) struct WsUrl {
    /// The URL as the caller wrote it (used for the handshake request).
    pub original: String,
    /// `wss://`.
    pub secure: bool,
    /// Host name or IP address, without the brackets of an IPv6 literal.
    pub host: String,
    /// Explicit port, or 80 / 443.
    pub port: u16,
}

impl WsUrl {
    pub(crate) fn parse(url: &str) -> Result<WsUrl, CircleWsClientError> {
        let invalid = |reason: &str| CircleWsClientError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: tungstenite::http::uri::InvalidUri| invalid(&e.to_string()))?;
        let secure = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("wss") => true,
            Some(scheme) if scheme.eq_ignore_ascii_case("ws") => false,
            Some(scheme) => {
                return Err(invalid(&format!(
                    "the scheme must be ws:// or wss://, not {scheme}://"
                )));
            }
            None => {
                return Err(invalid(
                    "missing scheme: write ws://HOST:PORT/ws or wss://…",
                ));
            }
        };
        let host = uri
            .host()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| invalid("missing host"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(invalid(
                "user names and passwords in the URL are not supported",
            ));
        }
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        if port == 0 {
            return Err(invalid("port 0 cannot be connected to"));
        }
        Ok(WsUrl {
            original: url.to_owned(),
            secure,
            host,
            port,
        })
    }

    /// `host:port` as dialled, with brackets around IPv6 literals.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Everything needed to open a connection, owned by the client.
#[derive(Debug)]
pub(crate) struct Dialer {
    pub url: WsUrl,
    pub tls: Option<PreparedTls>,
    pub connect_timeout: Duration,
    pub max_message_size: Option<usize>,
}

impl Dialer {
    /// Opens a connection and starts its reader and writer tasks.
    pub(crate) async fn open(&self) -> Result<Connection, CircleWsClientError> {
        tokio::time::timeout(self.connect_timeout, self.open_without_timeout())
            .await
            .map_err(|_| CircleWsClientError::Timeout {
                operation: format!("connect to {}", self.url.original),
                after: self.connect_timeout,
            })?
    }

    async fn open_without_timeout(&self) -> Result<Connection, CircleWsClientError> {
        let address = self.url.address();
        let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::ConnectionRefused => CircleWsClientError::ConnectionRefused {
                    address: address.clone(),
                },
                _ => CircleWsClientError::ConnectFailed {
                    address: address.clone(),
                    source,
                },
            })?;
        // Requests are small and latency matters more than packet count.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not disable Nagle's algorithm");
        }
        match (&self.tls, self.url.secure) {
            (Some(tls), true) => {
                tls::with_tls_stream!(tls, &self.url.host, tcp, |stream| self
                    .websocket_handshake(stream)
                    .await)
            }
            (None, true) => Err(CircleWsClientError::TlsConfig {
                path: None,
                problem: "a wss:// URL needs a TLS backend: enable the rustls-tls or native-tls \
                          feature"
                    .into(),
            }),
            (_, false) => self.websocket_handshake(tcp).await,
        }
    }

    async fn websocket_handshake<S: ByteStream>(
        &self,
        stream: S,
    ) -> Result<Connection, CircleWsClientError> {
        let request = self
            .url
            .original
            .as_str()
            .into_client_request()
            .map_err(|e| CircleWsClientError::InvalidUrl {
                url: self.url.original.clone(),
                reason: e.to_string(),
            })?;
        let mut config = tungstenite::protocol::WebSocketConfig::default();
        if let Some(max) = self.max_message_size {
            config = config.max_message_size(Some(max)).max_frame_size(Some(max));
        }
        let (websocket, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|e| self.classify_handshake_error(e))?;
        Ok(Connection::start(websocket))
    }

    fn classify_handshake_error(&self, error: tungstenite::Error) -> CircleWsClientError {
        let url = self.url.original.clone();
        let not_http_hint = if self.url.secure {
            ""
        } else {
            "; if the server listens with TLS, use a wss:// URL"
        };
        let detail = match error {
            tungstenite::Error::Http(response) => {
                let status = response.status();
                format!(
                    "the server answered HTTP {status} instead of switching to WebSocket (wrong path? \
                     circle servers serve /ws)"
                )
            }
            tungstenite::Error::HttpFormat(e) => {
                format!("the server's answer is not HTTP ({e}){not_http_hint}")
            }
            tungstenite::Error::Protocol(e) => {
                format!("the server's answer is not a WebSocket upgrade ({e}){not_http_hint}")
            }
            tungstenite::Error::Io(io) => {
                if let Some(classified) = tls::classify_late_tls_error(&io, &self.url.host) {
                    return classified;
                }
                match io.kind() {
                    std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe => format!(
                        "the server closed the connection during the upgrade ({io}){not_http_hint}"
                    ),
                    _ => io.to_string(),
                }
            }
            other => other.to_string(),
        };
        CircleWsClientError::WebSocketHandshake { url, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed() {
        let url = WsUrl::parse("wss://localhost:8443/ws").unwrap();
        assert!(url.secure);
        assert_eq!((url.host.as_str(), url.port), ("localhost", 8443));
        let url = WsUrl::parse("ws://127.0.0.1/ws").unwrap();
        assert!(!url.secure);
        assert_eq!(url.port, 80);
        let url = WsUrl::parse("wss://[::1]/ws").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 443));
        assert_eq!(url.address(), "[::1]:443");
        assert!(WsUrl::parse("WSS://example.org/ws").unwrap().secure);
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, expected) in [
            ("http://localhost/ws", "ws:// or wss://"),
            ("localhost:8443", "scheme"),
            ("ws:///ws", ""),
            ("wss://user:pw@localhost/ws", "passwords"),
            ("ws://localhost:0/ws", "port 0"),
            ("not a url", ""),
        ] {
            match WsUrl::parse(url) {
                Err(CircleWsClientError::InvalidUrl { reason, .. }) => {
                    assert!(reason.contains(expected), "{url}: {reason}")
                }
                other => panic!("{url}: expected InvalidUrl, got {other:?}"),
            }
        }
    }
}
