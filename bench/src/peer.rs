//! What both peer servers share: their command line, their listener and the
//! fixed answers they give.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

/// `play`'s fixed answer: what circle-server answers for `40 + 2`.
pub const PLAY_RESULT: &str = r#"{"output":"42"}"#;
/// `whoami`'s fixed answer: the shape circle-server gives to a caller that
/// has not signed in.
pub const WHOAMI_RESULT: &str = r#"{"authenticated":false,"pubkey":null,"circle":{"name":"circle","public_key":"02a9f27bd4b2e1b03e0a1c9d3ea9d1c03b3c6d1e4f6a7b8c9d0e1f2a3b4c5d6e7f"}}"#;

/// The result a peer gives to `method`.
pub fn fixed_result(method: &str) -> &'static str {
    if method == "whoami" { WHOAMI_RESULT } else { PLAY_RESULT }
}

#[derive(Parser, Debug, Clone)]
pub struct PeerArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port; 0 picks a free one (printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// PEM certificate chain: serve wss:// (plain ws:// without it).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Runtime threads; 1 = a single-threaded runtime (the server gets one core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

impl PeerArgs {
    pub fn runtime(&self) -> Result<tokio::runtime::Runtime> {
        Ok(if self.threads <= 1 {
            tokio::runtime::Builder::new_current_thread().enable_all().build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(self.threads)
                .enable_all()
                .build()?
        })
    }

    pub fn tls(&self) -> Result<Option<tokio_rustls::TlsAcceptor>> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let config = crate::tls::server_config(cert, key)?;
                Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
            }
            _ => Ok(None),
        }
    }

    /// Binds, and prints the URL the way circle-server does, so run.sh reads
    /// every server's address the same way.
    pub fn bind(&self) -> Result<(tokio::net::TcpListener, SocketAddr)> {
        let std_listener = std::net::TcpListener::bind((self.host.as_str(), self.port))
            .with_context(|| format!("binding {}:{}", self.host, self.port))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let scheme = if self.cert.is_some() { "wss" } else { "ws" };
        println!("listening on {scheme}://{addr}/ws");
        Ok((listener, addr))
    }
}

/// The next connection, with `TCP_NODELAY` set as every measured server
/// does. Accept errors such as EMFILE must not end the server: wait a little
/// (the condition usually clears as connections close) and go on.
pub async fn accept(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                return tcp;
            }
            Err(error) => {
                eprintln!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
