//! Opening WebSocket connections to the server under test, over ws or wss.
//!
//! Only loopback targets are accepted: this tool generates heavy load and
//! must never point at another machine.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Result, bail};
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::tls::{self, Trust};

/// Where the load goes.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub tls: bool,
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else {
            bail!("{url}: the URL must start with ws:// or wss://");
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                (host, port.parse::<u16>().map_err(|_| anyhow::anyhow!("{url}: bad port"))?)
            }
            _ => (authority, default_port),
        };
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (bare_host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{url}: {bare_host} resolves to nothing"))?;
        if !addr.ip().is_loopback() {
            bail!("{url}: only loopback targets (127.0.0.0/8, ::1, localhost) may be loaded by this tool");
        }
        Ok(Target {
            url: url.to_owned(),
            tls,
            addr,
            server_name: tls::server_name(bare_host)?,
        })
    }
}

/// A plain or TLS TCP stream; the WebSocket layer does not care which.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

pub type Ws = WebSocketStream<ClientStream>;

/// Which step of opening a connection failed; each is counted separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    Tcp(io::ErrorKind),
    Tls,
    /// The server answered the upgrade with this HTTP status (429 and 503
    /// are its connection limits).
    Refused(u16),
    Upgrade,
    Timeout,
}

impl ConnectError {
    pub fn label(&self) -> String {
        match self {
            ConnectError::Tcp(kind) => format!("connect_{kind:?}").to_lowercase(),
            ConnectError::Tls => "tls_handshake".to_owned(),
            ConnectError::Refused(status) => format!("refused_http_{status}"),
            ConnectError::Upgrade => "ws_upgrade".to_owned(),
            ConnectError::Timeout => "connect_timeout".to_owned(),
        }
    }
}

/// What a successful connect tells about TLS.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsInfo {
    pub resumed: bool,
    pub kx_group: Option<rustls::NamedGroup>,
    pub tls13: bool,
}

/// Opens connections to one target with one TLS configuration.
pub struct Connector {
    target: Arc<Target>,
    tls: Option<TlsConnector>,
    ws_config: WebSocketConfig,
}

impl Connector {
    pub fn new(target: Target, trust: &Trust, resume: bool) -> Result<Connector> {
        let tls = if target.tls {
            Some(TlsConnector::from(tls::client_config(trust, resume)?))
        } else {
            None
        };
        // A small read buffer keeps the generator's own memory low when it
        // holds 10,000 connections; answers are small.
        let ws_config = WebSocketConfig::default().read_buffer_size(4096);
        Ok(Connector {
            target: Arc::new(target),
            tls,
            ws_config,
        })
    }

    /// A connector to `target` with this one's TLS configuration, and so
    /// its session cache: tickets from either server are offered to both.
    pub fn sharing_tls(&self, target: Target) -> Connector {
        Connector {
            target: Arc::new(target),
            tls: self.tls.clone(),
            ws_config: self.ws_config,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// TCP connect (from `source` when given), TLS handshake, WebSocket upgrade.
    pub async fn connect(&self, source: Option<IpAddr>) -> Result<(Ws, TlsInfo), ConnectError> {
        let addr = self.target.addr;
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| ConnectError::Tcp(e.kind()))?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| ConnectError::Tcp(e.kind()))?;
        }
        let tcp = socket.connect(addr).await.map_err(|e| ConnectError::Tcp(e.kind()))?;
        // Requests are small and latency matters: never wait for Nagle.
        tcp.set_nodelay(true).map_err(|e| ConnectError::Tcp(e.kind()))?;
        let (stream, info) = match &self.tls {
            None => (ClientStream::Plain(tcp), TlsInfo::default()),
            Some(connector) => {
                let tls = connector
                    .connect(self.target.server_name.clone(), tcp)
                    .await
                    .map_err(|_| ConnectError::Tls)?;
                let session = tls.get_ref().1;
                let info = TlsInfo {
                    resumed: session.handshake_kind() == Some(HandshakeKind::Resumed),
                    kx_group: session.negotiated_key_exchange_group().map(|g| g.name()),
                    tls13: session.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
                };
                (ClientStream::Tls(Box::new(tls)), info)
            }
        };
        match tokio_tungstenite::client_async_with_config(self.target.url.as_str(), stream, Some(self.ws_config)).await
        {
            Ok((ws, _response)) => Ok((ws, info)),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(ConnectError::Refused(response.status().as_u16()))
            }
            Err(_) => Err(ConnectError::Upgrade),
        }
    }
}
