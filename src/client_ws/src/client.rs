//! [`CircleWsClient`]: the methods of the protocol over one shared
//! connection, and the optional reconnect supervisor.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use circle_protocol::{PlayParams, WhoamiResult, method};
use tokio::sync::watch;

use crate::PlayResultClient;
use crate::connection::Connection;
use crate::error::CircleWsClientError;
use crate::reconnect::{ReconnectPolicy, with_jitter};
use crate::rt;
use crate::tls_config::TlsBackend;
use crate::transport::Dialer;

mod requests;
pub(crate) use requests::decode_answer;

/// Where the client's link to the server stands.
#[derive(Clone)]
enum Link {
    /// Never connected, or disconnected by the caller.
    Disconnected,
    /// A connection (it may have ended since; the supervisor will notice).
    Connected(Arc<Connection>),
    /// Lost, and the supervisor is dialling again.
    Reconnecting,
    /// Lost, and reconnection gave up: why.
    Failed(String),
}

struct ClientState {
    dialer: Dialer,
    request_timeout: Duration,
    reconnect: Option<ReconnectPolicy>,
    /// Set by the builder, or by a successful
    /// [`authenticate_with_signer`](CircleWsClient::authenticate_with_signer)
    /// (or `_with_keypair`); a reconnect signs in again through it.
    #[cfg(feature = "crypto")]
    signer: std::sync::RwLock<Option<Arc<dyn crate::Signer>>>,
    /// How long a signer may take over one challenge.
    #[cfg(feature = "crypto")]
    sign_timeout: Duration,
    next_id: AtomicI64,
    link: watch::Sender<Link>,
    /// Serialises connecting, so concurrent `connect()` calls open one
    /// connection, not several.
    connect_lock: tokio::sync::Mutex<()>,
    /// The caller authenticated this link: a reconnect must do it again.
    authenticated: AtomicBool,
    /// Caps the requests in flight: past the server's own cap it answers
    /// `-32029` at once, so extra requests wait here for a free slot instead.
    in_flight_slots: Arc<tokio::sync::Semaphore>,
}

/// A client of one circle server.
///
/// Cheap to clone: clones share one connection, and every method takes
/// `&self`, so many tasks can send requests at the same time; answers are
/// matched to requests by id and each request has its own timeout.
///
/// Build one with [`CircleWsClientBuilder`](crate::CircleWsClientBuilder).
#[derive(Clone)]
pub struct CircleWsClient {
    shared: Arc<ClientState>,
}

impl std::fmt::Debug for CircleWsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircleWsClient")
            .field("url", &self.url())
            .field("tls_backend", &self.tls_backend())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl CircleWsClient {
    // In a browser a signer may hold the page's JavaScript objects, so
    // `ClientState` is not `Send` there; the page has one thread, and the `Arc`
    // shares it between the clones and tasks on it.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub(crate) fn new(
        dialer: Dialer,
        request_timeout: Duration,
        reconnect: Option<ReconnectPolicy>,
        max_in_flight: usize,
        #[cfg(feature = "crypto")] sign_timeout: Duration,
        #[cfg(feature = "crypto")] signer: Option<Arc<dyn crate::Signer>>,
    ) -> CircleWsClient {
        CircleWsClient {
            shared: Arc::new(ClientState {
                dialer,
                request_timeout,
                reconnect,
                #[cfg(feature = "crypto")]
                signer: std::sync::RwLock::new(signer),
                #[cfg(feature = "crypto")]
                sign_timeout,
                next_id: AtomicI64::new(1),
                link: watch::channel(Link::Disconnected).0,
                connect_lock: tokio::sync::Mutex::new(()),
                authenticated: AtomicBool::new(false),
                in_flight_slots: Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1))),
            }),
        }
    }

    /// The server URL this client talks to.
    pub fn url(&self) -> &str {
        &self.shared.dialer.url.original
    }

    /// Whether the URL is `wss://`.
    pub fn is_wss_url(&self) -> bool {
        self.shared.dialer.url.secure
    }

    /// Whether connecting needs TLS (the same as [`is_wss_url`](Self::is_wss_url):
    /// the scheme decides, never a guess).
    pub fn requires_tls(&self) -> bool {
        self.is_wss_url()
    }

    /// The TLS library `wss://` connections use, when TLS is set up (always
    /// `None` in a browser, where the browser does TLS).
    pub fn tls_backend(&self) -> Option<TlsBackend> {
        #[cfg(not(target_arch = "wasm32"))]
        return self.shared.dialer.tls.as_ref().map(|tls| tls.backend());
        #[cfg(target_arch = "wasm32")]
        return None;
    }

    /// Whether a connection is open right now.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.shared.link.borrow(), Link::Connected(connection) if !connection.is_ended())
    }

    /// The compressed public key (hex, no `0x`) of the configured signer
    /// (the builder's, or the last one the server accepted in
    /// [`authenticate_with_signer`](Self::authenticate_with_signer)), when
    /// the signer knows it: an in-memory key does, a wallet does not.
    #[cfg(feature = "crypto")]
    pub fn public_key(&self) -> Option<String> {
        self.signer()
            .and_then(|signer| signer.public_key())
            .map(|key| key.to_compressed_hex())
    }

    /// The EIP-55 address of the configured signer (as for
    /// [`public_key`](Self::public_key)).
    #[cfg(feature = "crypto")]
    pub fn address(&self) -> Option<String> {
        self.signer()
            .map(|signer| signer.address().to_checksum_string())
    }

    /// The configured signer.
    #[cfg(feature = "crypto")]
    pub(crate) fn signer(&self) -> Option<Arc<dyn crate::Signer>> {
        // A panic while holding the lock cannot leave a half-written value:
        // the only write is one assignment.
        self.shared
            .signer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `signer` this client's (after the server accepted it), so a
    /// reconnect signs in through it again.
    #[cfg(feature = "crypto")]
    pub(crate) fn set_signer(&self, signer: Arc<dyn crate::Signer>) {
        *self
            .shared
            .signer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(signer);
    }

    /// How long a signer may take over one challenge.
    #[cfg(feature = "crypto")]
    pub(crate) fn sign_timeout(&self) -> Duration {
        self.shared.sign_timeout
    }

    /// Records that the caller signed in on the current connection.
    #[cfg(feature = "crypto")]
    pub(crate) fn mark_authenticated(&self) {
        self.shared.authenticated.store(true, Ordering::SeqCst);
    }

    /// Opens the connection (TCP, TLS for `wss://`, WebSocket upgrade) within
    /// the connect timeout. Does nothing if already connected.
    ///
    /// Errors tell apart a refused connection, a rejected certificate (and
    /// why), a failed TLS or WebSocket handshake, and a timeout.
    pub async fn connect(&self) -> Result<(), CircleWsClientError> {
        let _connecting = self.shared.connect_lock.lock().await;
        if self.is_connected() {
            return Ok(());
        }
        let connection = self.shared.dialer.open().await?;
        // A fresh connection starts unauthenticated.
        self.shared.authenticated.store(false, Ordering::SeqCst);
        self.install(connection);
        Ok(())
    }

    /// Closes the connection (close code 1000). Requests still in flight
    /// fail with [`ConnectionLost`](CircleWsClientError::ConnectionLost); no
    /// automatic reconnect follows.
    pub async fn disconnect(&self) {
        let previous = self.shared.link.send_replace(Link::Disconnected);
        self.shared.authenticated.store(false, Ordering::SeqCst);
        if let Link::Connected(connection) = previous {
            connection.close().await;
        }
    }

    /// Runs a Rhai script on the server and returns its output.
    ///
    /// Script failures are [`Rpc`](CircleWsClientError::Rpc) errors with
    /// the protocol's codes: `-32003` script error, `-32004` limit reached,
    /// `-32002` authentication required.
    pub async fn play(
        &self,
        script: impl Into<String>,
    ) -> Result<PlayResultClient, CircleWsClientError> {
        self.call(
            method::PLAY,
            PlayParams {
                script: script.into(),
                stream: false,
            },
        )
        .await
    }

    /// Asks the server who this connection is and which circle it serves.
    pub async fn whoami(&self) -> Result<WhoamiResult, CircleWsClientError> {
        self.call(method::WHOAMI, serde_json::Map::new()).await
    }

    /// Sends any JSON-RPC method with the given params and returns the raw
    /// `result`: for methods this client has no helper for.
    pub async fn request(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, CircleWsClientError> {
        self.call(method, params).await
    }

    /// The connection to send a request on. While the supervisor reconnects,
    /// waits for it (within the request timeout) rather than failing.
    pub(crate) async fn connection_for_request(
        &self,
    ) -> Result<Arc<Connection>, CircleWsClientError> {
        let mut link = self.shared.link.subscribe();
        let deadline = rt::deadline_after(self.shared.request_timeout);
        loop {
            let current = link.borrow_and_update().clone();
            match current {
                Link::Connected(connection) if !connection.is_ended() => return Ok(connection),
                Link::Connected(connection) if self.shared.reconnect.is_none() => {
                    return Err(CircleWsClientError::ConnectionLost {
                        reason: connection
                            .end_reason()
                            .unwrap_or_else(|| "the connection ended".into()),
                    });
                }
                Link::Disconnected => return Err(CircleWsClientError::NotConnected),
                Link::Failed(reason) => return Err(CircleWsClientError::ConnectionLost { reason }),
                // Ended with reconnect on, or reconnecting: the supervisor
                // will change the link; wait for that.
                Link::Connected(_) | Link::Reconnecting => {}
            }
            match rt::timeout_at(deadline, link.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `shared`, which we hold: cannot happen.
                Ok(Err(_)) => return Err(CircleWsClientError::NotConnected),
                Err(_) => {
                    return Err(CircleWsClientError::Timeout {
                        operation: "waiting for the connection to come back".into(),
                        after: self.shared.request_timeout,
                    });
                }
            }
        }
    }

    fn install(&self, connection: Connection) {
        let connection = Arc::new(connection);
        let ended = connection.ended_signal();
        self.shared
            .link
            .send_replace(Link::Connected(connection.clone()));
        if let Some(policy) = self.shared.reconnect.clone() {
            rt::spawn(supervise(
                Arc::downgrade(&self.shared),
                Arc::downgrade(&connection),
                ended,
                policy,
            ));
        }
    }

    /// Opens a connection and, if the caller had authenticated, signs in
    /// again on it, so the client never looks connected while it is not the
    /// identity the caller set up.
    async fn open_ready_connection(&self) -> Result<Connection, CircleWsClientError> {
        let connection = self.shared.dialer.open().await?;
        #[cfg(feature = "crypto")]
        if self.shared.authenticated.load(Ordering::SeqCst)
            && let Some(signer) = self.signer()
            && !self.authenticate_on(&connection, &*signer).await?
        {
            return Err(CircleWsClientError::AuthenticationRefused {
                reason: "the server refused to authenticate the reconnected client".into(),
            });
        }
        Ok(connection)
    }
}

/// Waits for `connection` to end, then reconnects with backoff.
///
/// Holds only weak references, so dropping every clone of the client (or
/// the connection being replaced) ends the supervisor.
async fn supervise(
    shared: Weak<ClientState>,
    connection: Weak<Connection>,
    mut ended: watch::Receiver<bool>,
    policy: ReconnectPolicy,
) {
    // An error means the connection was dropped: nothing to supervise.
    if ended.wait_for(|ended| *ended).await.is_err() {
        return;
    }
    let Some(client) = shared.upgrade().map(|shared| CircleWsClient { shared }) else {
        return;
    };
    let still_current = matches!(
        &*client.shared.link.borrow(),
        Link::Connected(current) if Weak::ptr_eq(&Arc::downgrade(current), &connection)
    );
    if !still_current {
        return;
    }
    let reason = connection
        .upgrade()
        .and_then(|connection| connection.end_reason())
        .unwrap_or_default();
    tracing::warn!(url = client.url(), %reason, "connection lost; reconnecting");
    client.shared.link.send_replace(Link::Reconnecting);
    drop(client);

    let mut attempt: u32 = 0;
    loop {
        rt::sleep(with_jitter(policy.delay_before(attempt))).await;
        let Some(client) = shared.upgrade().map(|shared| CircleWsClient { shared }) else {
            return;
        };
        let _connecting = client.shared.connect_lock.lock().await;
        if !matches!(&*client.shared.link.borrow(), Link::Reconnecting) {
            // The caller disconnected or connected by hand meanwhile.
            return;
        }
        match client.open_ready_connection().await {
            Ok(connection) => {
                tracing::info!(url = client.url(), attempt, "reconnected");
                client.install(connection);
                return;
            }
            Err(error) => {
                attempt = attempt.saturating_add(1);
                let permanent = is_permanent(&error);
                let exhausted = policy.max_attempts.is_some_and(|max| attempt >= max);
                if permanent || exhausted {
                    tracing::error!(url = client.url(), attempt, %error, "giving up reconnecting");
                    client.shared.link.send_replace(Link::Failed(format!(
                        "gave up reconnecting after {attempt} attempt(s): {error}"
                    )));
                    return;
                }
                tracing::warn!(url = client.url(), attempt, %error, "reconnect attempt failed");
            }
        }
    }
}

/// Failures that dialling again cannot cure: trying again would only ask
/// a wallet's user the same question, or present the same certificate.
fn is_permanent(error: &CircleWsClientError) -> bool {
    match error {
        CircleWsClientError::AuthenticationRefused { .. }
        | CircleWsClientError::CertificateRejected { .. } => true,
        #[cfg(feature = "crypto")]
        CircleWsClientError::Signer(crate::SignerError::Rejected { .. })
        | CircleWsClientError::SignatureMismatch { .. }
        | CircleWsClientError::InvalidSignature { .. } => true,
        _ => false,
    }
}

// Natively; in a browser there is one thread to share with.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn clients_are_shareable() {
        fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync_clone::<CircleWsClient>();
    }
}
