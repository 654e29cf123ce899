//! The browser transport: the page's own `WebSocket` through gloo-net.
//!
//! The browser does DNS, TCP, TLS (with its own trust store) and the
//! WebSocket handshake; the page only learns "open" or "failed". Browsers
//! deliberately do not tell a page *why* a connection failed (a refused
//! port, an untrusted certificate and a wrong path all look the same, so
//! that pages cannot probe the network), so every failure to open is one
//! [`ConnectFailed`](CircleWsClientError::ConnectFailed) that says so; the
//! browser's developer console shows the real cause.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::{Sink, Stream};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, State, WebSocketError};

use super::Dialer;
use crate::connection::{Connection, Incoming, Outgoing};
use crate::error::CircleWsClientError;

impl Dialer {
    pub(super) async fn open_without_timeout(&self) -> Result<Connection, CircleWsClientError> {
        let address = self.url.address();
        let failed = |detail: String| CircleWsClientError::ConnectFailed {
            address: address.clone(),
            source: std::io::Error::other(detail),
        };
        // Throws only for a URL the browser will not even try (bad syntax,
        // a port browsers block, ws:// from an https:// page in some
        // browsers): the JS error's text says which.
        let mut socket = WebSocket::open(&self.url.original).map_err(|error| {
            failed(format!(
                "the browser refused to open the WebSocket: {error}"
            ))
        })?;
        // gloo-net's sink is ready once the socket has left the CONNECTING
        // state, which is when the browser fires `open` or `error`.
        let mut ready = Pin::new(&mut socket);
        std::future::poll_fn(|cx| ready.as_mut().poll_ready(cx))
            .await
            .map_err(|error| failed(error.to_string()))?;
        match socket.state() {
            State::Open => Ok(Connection::start(BrowserSocket {
                socket: Some(socket),
                reader: None,
                closed_here: None,
            })),
            _ => Err(failed(
                "the browser could not open the WebSocket: the server may be down, the URL's \
                 path may be wrong, or the browser does not trust the server's certificate \
                 (browsers hide which from pages; the browser's developer console says)"
                    .to_owned(),
            )),
        }
    }
}

/// gloo-net's socket as the connection core's frames.
struct BrowserSocket {
    /// `None` once closed by the client: gloo-net closes with a code only by
    /// consuming the socket.
    socket: Option<WebSocket>,
    /// The reader waiting for a frame: closing takes the socket (and the
    /// event queue the reader waits on) away, so it must be woken to see
    /// the end.
    reader: Option<Waker>,
    /// Set when this client closes the socket, taken by the reader.
    closed_here: Option<String>,
}

impl Stream for BrowserSocket {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        let this = &mut *self;
        let Some(socket) = this.socket.as_mut() else {
            // Closed by this client: say so once (the reason requests still
            // in flight report), then end.
            return Poll::Ready(this.closed_here.take().map(Incoming::Failed));
        };
        match Pin::new(socket).poll_next(cx) {
            Poll::Pending => {
                this.reader = Some(cx.waker().clone());
                Poll::Pending
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Ok(Message::Text(text)))) => Poll::Ready(Some(Incoming::Text(text))),
            Poll::Ready(Some(Ok(Message::Bytes(_)))) => Poll::Ready(Some(Incoming::Binary)),
            // The browser fires `error` (which carries no detail) just
            // before `close`, which has the code: the reader waits for that.
            Poll::Ready(Some(Err(WebSocketError::ConnectionError))) => {
                Poll::Ready(Some(Incoming::Ignored))
            }
            Poll::Ready(Some(Err(WebSocketError::ConnectionClose(event)))) => {
                Poll::Ready(Some(Incoming::Closed {
                    code: Some(event.code),
                    reason: event.reason,
                }))
            }
            Poll::Ready(Some(Err(other))) => Poll::Ready(Some(Incoming::Failed(other.to_string()))),
        }
    }
}

impl Sink<Outgoing> for BrowserSocket {
    type Error = String;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        match self.socket.as_mut() {
            Some(socket) => Pin::new(socket).poll_ready(cx).map_err(|e| e.to_string()),
            None => Poll::Ready(Err("the connection is closed".to_owned())),
        }
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Outgoing) -> Result<(), String> {
        match frame {
            Outgoing::Text(text) => match self.socket.as_mut() {
                Some(socket) => Pin::new(socket)
                    .start_send(Message::Text(text))
                    .map_err(|e| e.to_string()),
                None => Err("the connection is closed".to_owned()),
            },
            Outgoing::Close { code, reason } => {
                // The browser runs the closing handshake; the reader, woken,
                // sees the end of the stream.
                let closed = match self.socket.take() {
                    Some(socket) => {
                        self.closed_here = Some("the client closed the connection".to_owned());
                        socket
                            .close(Some(code), Some(&reason))
                            .map_err(|e| e.to_string())
                    }
                    None => Ok(()),
                };
                if let Some(reader) = self.reader.take() {
                    reader.wake();
                }
                closed
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        match self.socket.as_mut() {
            Some(socket) => Pin::new(socket).poll_flush(cx).map_err(|e| e.to_string()),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        match self.socket.as_mut() {
            Some(socket) => Pin::new(socket).poll_close(cx).map_err(|e| e.to_string()),
            None => Poll::Ready(Ok(())),
        }
    }
}
