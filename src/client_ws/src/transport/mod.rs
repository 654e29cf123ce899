//! Opening a connection: the URL, then a transport — TCP, optional TLS and
//! the WebSocket handshake on native targets ([`native`]), the page's own
//! WebSocket in a browser ([`browser`]) — all under the connect timeout so
//! that a peer that never answers cannot hang the caller. Either way the
//! result is the same [`Connection`] core.

use std::time::Duration;

use http::Uri;

use crate::connection::Connection;
use crate::error::CircleWsClientError;
use crate::rt;

#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(not(target_arch = "wasm32"))]
mod native;

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
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
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
    /// The TLS connector for `wss://` (native only: in a browser, the
    /// browser does TLS).
    #[cfg(not(target_arch = "wasm32"))]
    pub tls: Option<crate::tls::PreparedTls>,
    pub connect_timeout: Duration,
    /// Largest message accepted (native only: a browser's WebSocket has no
    /// such setting).
    #[cfg(not(target_arch = "wasm32"))]
    pub max_message_size: Option<usize>,
}

impl Dialer {
    /// Opens a connection and starts its reader and writer tasks.
    pub(crate) async fn open(&self) -> Result<Connection, CircleWsClientError> {
        rt::timeout(self.connect_timeout, self.open_without_timeout())
            .await
            .map_err(|_| CircleWsClientError::Timeout {
                operation: format!("connect to {}", self.url.original),
                after: self.connect_timeout,
            })?
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
