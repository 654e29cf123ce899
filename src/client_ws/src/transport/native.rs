//! The native transport: TCP, the TLS wrapper for `wss://`, and
//! tokio-tungstenite's WebSocket handshake, generic over the byte stream so
//! TLS is a wrapper rather than a branch.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

use super::Dialer;
use crate::connection::{Connection, FrameSocket, Incoming, Outgoing};
use crate::error::CircleWsClientError;
use crate::tls::{self, ByteStream};

impl Dialer {
    pub(super) async fn open_without_timeout(&self) -> Result<Connection, CircleWsClientError> {
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
        Ok(Connection::start(frames(websocket)))
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

/// tungstenite's frames as the connection core's [`Incoming`] and
/// [`Outgoing`].
fn frames<S: ByteStream>(websocket: tokio_tungstenite::WebSocketStream<S>) -> impl FrameSocket {
    websocket
        .map(|frame| match frame {
            Ok(Message::Text(text)) => Incoming::Text(text.as_str().to_owned()),
            Ok(Message::Binary(_)) => Incoming::Binary,
            Ok(Message::Close(frame)) => Incoming::Closed {
                code: frame.as_ref().map(|frame| u16::from(frame.code)),
                reason: frame
                    .map(|frame| frame.reason.as_str().to_owned())
                    .unwrap_or_default(),
            },
            // tungstenite answers pings itself.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Incoming::Ignored,
            Err(error) => Incoming::Failed(error.to_string()),
        })
        .sink_map_err(|error: tungstenite::Error| error.to_string())
        .with(|frame: Outgoing| {
            std::future::ready(Ok::<_, String>(match frame {
                Outgoing::Text(text) => Message::text(text),
                Outgoing::Close { code, reason } => Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                })),
            }))
        })
}
