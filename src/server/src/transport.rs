//! The byte stream under every WebSocket: a TCP stream that can hold its
//! writes back, and the way each kind of connection ends.
//!
//! A session that ends because the client closed sends two last things: the
//! echo of the client's close frame and, over TLS, the `close_notify` alert
//! (RFC 8446 §6.1: each side sends one before it closes its write side).
//! Written one after the other they take two system calls, and the client,
//! which closes its socket as soon as it has the echo, usually makes the
//! second one fail: the alert then never arrives, and the server pays for a
//! failed write and the wake-ups around it (bench/PROFILE.md §6). Held back
//! and written together, both reach the client in one write, and the
//! connection ends with as many system calls as the raw stack's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::rt::net::{ActixStream, Ready, TcpStream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A connection's TCP stream. Writes pass straight through until
/// [`Wire::hold`]; from then on they collect in memory until
/// [`Wire::release`] writes them in one go.
pub(crate) struct Wire {
    stream: TcpStream,
    held: Option<Vec<u8>>,
}

impl Wire {
    pub fn new(stream: TcpStream) -> Self {
        Wire { stream, held: None }
    }

    /// Collects every later write in memory instead of sending it.
    fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Sends what was held, in one write when the socket takes it all, and
    /// lets later writes pass straight through again.
    async fn release(&mut self) -> io::Result<()> {
        if let Some(held) = self.held.take() {
            self.stream.write_all(&held).await?;
        }
        Ok(())
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let wire = self.get_mut();
        match &mut wire.held {
            Some(held) => {
                held.extend_from_slice(buf);
                Poll::Ready(Ok(buf.len()))
            }
            None => Pin::new(&mut wire.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let wire = self.get_mut();
        match &mut wire.held {
            Some(held) => {
                let before = held.len();
                for buf in bufs {
                    held.extend_from_slice(buf);
                }
                Poll::Ready(Ok(held.len() - before))
            }
            None => Pin::new(&mut wire.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let wire = self.get_mut();
        match wire.held {
            // Held bytes wait for `release`: flushing is what the layers
            // above do after every write.
            Some(_) => Poll::Ready(Ok(())),
            None => Pin::new(&mut wire.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let wire = self.get_mut();
        if let Some(held) = &mut wire.held {
            while !held.is_empty() {
                let written = ready!(Pin::new(&mut wire.stream).poll_write(cx, held))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                held.drain(..written);
            }
            wire.held = None;
        }
        Pin::new(&mut wire.stream).poll_shutdown(cx)
    }
}

impl ActixStream for Wire {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(&self.stream, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.stream, cx)
    }
}

/// What a WebSocket session runs over, plain or TLS, and how it ends.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + 'static {
    /// Holds every later write back until [`Transport::finish`].
    fn hold_writes(&mut self);

    /// Ends our side after the last WebSocket frame: the TLS `close_notify`,
    /// then whatever was held, in one write. The socket itself closes when
    /// the transport is dropped; that sends the FIN, so no `shutdown` call
    /// is needed first.
    fn finish(&mut self) -> impl Future<Output = io::Result<()>>;
}

impl Transport for Wire {
    fn hold_writes(&mut self) {
        self.hold();
    }

    async fn finish(&mut self) -> io::Result<()> {
        self.release().await
    }
}

impl Transport for TlsStream<Wire> {
    fn hold_writes(&mut self) {
        self.get_mut().0.hold();
    }

    async fn finish(&mut self) -> io::Result<()> {
        // The alert goes after the application data rustls already
        // encrypted; with the wire holding, the flush only collects it.
        self.get_mut().1.send_close_notify();
        self.get_mut().0.hold();
        self.flush().await?;
        self.get_mut().0.release().await
    }
}
