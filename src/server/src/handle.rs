//! The running server as its owner sees it: where it listens, its
//! certificate, and how to stop it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::connection_threads::ThreadsHandle;
use crate::error::ServerError;
use crate::state::ServerState;
use crate::tls::{CertificateInfo, TlsReloader, rfc3339, warn_if_expiring};

/// Controls a running server: where it listens, and how to stop it.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) threads: ThreadsHandle,
    pub(crate) shutdown: Arc<watch::Sender<bool>>,
    pub(crate) ws_addr: Option<SocketAddr>,
    pub(crate) wss_addr: Option<SocketAddr>,
    pub(crate) shared: Arc<ServerState>,
    pub(crate) tls: Option<Arc<TlsReloader>>,
    pub(crate) acme: Option<Arc<crate::acme::AcmeManager>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("ws_addr", &self.ws_addr)
            .field("wss_addr", &self.wss_addr)
            .field("circle_public_key", &self.circle_public_key())
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Address of the plain `ws://` listener, if one runs.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// Address of the TLS `wss://` listener, if one runs.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.wss_addr
    }

    /// The circle's public key (generated at start when none was configured).
    pub fn circle_public_key(&self) -> &str {
        &self.shared.circle.public_key
    }

    /// WebSocket connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.open()
    }

    /// Reloads the TLS certificate and key from their files (what SIGHUP
    /// does in `circle-server`). New handshakes use the new certificate,
    /// open connections are untouched. A bad file is refused with its
    /// [`TlsConfigError`](crate::TlsConfigError) and the old certificate keeps serving.
    pub fn reload_tls(&self) -> Result<CertificateInfo, ServerError> {
        let Some(reloader) = &self.tls else {
            return Err(ServerError::InvalidConfig(
                "TLS is not enabled on this server".to_owned(),
            ));
        };
        match reloader.reload() {
            Ok(certificate) => {
                warn_if_expiring(&certificate);
                info!(subject = %certificate.subject, serial = %certificate.serial, expires = %rfc3339(certificate.not_after), "TLS certificate reloaded");
                Ok(certificate)
            }
            Err(error) => {
                warn!(%error, "TLS certificate reload refused; the previous certificate keeps serving");
                Err(error.into())
            }
        }
    }

    /// With ACME: orders a new certificate now instead of when a third of
    /// the current one's lifetime is left (or retries a failed order at
    /// once). The new certificate is swapped in like a renewal: open
    /// connections keep theirs. `false` when ACME is not configured.
    pub fn renew_certificate(&self) -> bool {
        match &self.acme {
            Some(acme) => {
                acme.renew_now.notify_one();
                true
            }
            None => false,
        }
    }

    /// The certificate the TLS listener serves, if TLS is on (with ACME:
    /// once the first one has arrived).
    pub fn tls_certificate(&self) -> Option<CertificateInfo> {
        self.tls
            .as_ref()
            .and_then(|reloader| reloader.certificate())
    }

    /// Stops the server gracefully. First, for the configured
    /// [`drain_period`](crate::ServerConfig::drain_period), `/health`
    /// answers 503 while everything else is still served, so balancers move
    /// new clients elsewhere; then no new connections, sessions let their
    /// running scripts answer (up to the configured grace period) and close
    /// with code 1001. Returns when the server has stopped.
    ///
    /// A second call while the first one drains skips the rest of the drain
    /// (what a second SIGTERM does in `circle-server`).
    pub async fn stop(&self) {
        let drain = self.shared.drain_period;
        if !drain.is_zero() && !self.shared.draining.swap(true, Ordering::Relaxed) {
            info!(
                seconds = drain.as_secs_f64(),
                "draining: /health answers 503, everything else is still served"
            );
            let mut stopping = self.shutdown.subscribe();
            tokio::select! {
                () = tokio::time::sleep(drain) => {}
                // Another `stop` cuts the drain short.
                _ = stopping.wait_for(|stopping| *stopping) => {}
            }
        }
        self.shutdown.send_replace(true);
        // Sessions run as tasks of their own on the connection threads: let
        // them finish (drain, close frame, close handshake) before the
        // workers go away.
        let patience = self.shared.limits.shutdown_grace + Duration::from_secs(3);
        if tokio::time::timeout(patience, self.shared.connections.all_closed())
            .await
            .is_err()
        {
            warn!(
                open = self.shared.connections.open(),
                "sessions still open after the shutdown grace period; stopping anyway"
            );
        }
        self.threads.stop().await;
    }
}
