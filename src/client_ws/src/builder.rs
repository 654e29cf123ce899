//! [`CircleWsClientBuilder`]: everything about a client is decided here,
//! and every input is checked by [`build`](CircleWsClientBuilder::build), so
//! a client that exists can only fail for reasons outside the program (the
//! network, the server).

#[cfg(feature = "crypto")]
use std::sync::Arc;
use std::time::Duration;

use crate::client::CircleWsClient;
use crate::error::CircleWsClientError;
use crate::reconnect::ReconnectPolicy;
#[cfg(not(target_arch = "wasm32"))]
use crate::tls::PreparedTls;
use crate::tls_config::{TlsBackend, TlsConfig};
use crate::transport::{Dialer, WsUrl};

/// Default time allowed to open a connection (TCP, TLS and WebSocket
/// handshakes together).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed for one request's answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on requests in flight on one client: the circle server's
/// default per-connection cap (one definition, in `circle_protocol`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = circle_protocol::DEFAULT_MAX_IN_FLIGHT;
/// Default time a [`Signer`](crate::Signer) gets to sign a challenge: long
/// enough for a person to read a wallet's prompt, and never past the
/// challenge's own expiry (five minutes after it was issued).
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(120);

/// Who the client signs in as, as the builder was told.
#[derive(Clone)]
// Without `crypto` nothing can set it (and nothing could sign).
#[cfg_attr(not(feature = "crypto"), allow(dead_code))]
enum Identity {
    /// A secret key in hex, parsed by `build()`.
    Keypair(String),
    /// A signer given as it is.
    #[cfg(feature = "crypto")]
    Signer(Arc<dyn crate::Signer>),
}

/// Never the secret: a signer shows its address.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Keypair(_) => f.write_str("Keypair(<redacted>)"),
            #[cfg(feature = "crypto")]
            Identity::Signer(signer) => write!(f, "Signer({})", signer.address()),
        }
    }
}

/// Builds a [`CircleWsClient`].
///
/// ```
/// use std::time::Duration;
/// use circle_client_ws::{CircleWsClientBuilder, TlsConfig};
///
/// let client = CircleWsClientBuilder::new("wss://localhost:8443/ws")
///     .with_tls_config(TlsConfig::default())
///     .with_request_timeout(Duration::from_secs(5))
///     .build()
///     .expect("valid settings");
/// assert!(client.is_wss_url());
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct CircleWsClientBuilder {
    url: String,
    identity: Option<Identity>,
    sign_timeout: Duration,
    tls_config: Option<TlsConfig>,
    tls_backend: Option<TlsBackend>,
    connect_timeout: Duration,
    request_timeout: Duration,
    reconnect: Option<ReconnectPolicy>,
    max_message_size: Option<usize>,
    max_in_flight: usize,
}

/// Shows every setting except the secret key, which must never reach a log.
impl std::fmt::Debug for CircleWsClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircleWsClientBuilder")
            .field("url", &self.url)
            .field("identity", &self.identity)
            .field("sign_timeout", &self.sign_timeout)
            .field("tls_config", &self.tls_config)
            .field("tls_backend", &self.tls_backend)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("reconnect", &self.reconnect)
            .field("max_message_size", &self.max_message_size)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

impl CircleWsClientBuilder {
    /// A builder for the server at `url` (`ws://HOST:PORT/ws` or
    /// `wss://HOST:PORT/ws`).
    pub fn new(url: impl Into<String>) -> Self {
        CircleWsClientBuilder {
            url: url.into(),
            identity: None,
            sign_timeout: DEFAULT_SIGN_TIMEOUT,
            tls_config: None,
            tls_backend: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            reconnect: None,
            max_message_size: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// The secp256k1 secret key to authenticate with: 64 hex digits, `0x`
    /// optional. Checked by [`build`](Self::build). Replaces an earlier
    /// [`with_signer`](Self::with_signer).
    #[cfg(feature = "crypto")]
    pub fn with_keypair(mut self, secret_key_hex: impl Into<String>) -> Self {
        self.identity = Some(Identity::Keypair(secret_key_hex.into()));
        self
    }

    /// Signs in through `signer` instead of holding a key: a KMS or HSM
    /// client, a hardware wallet, anything that implements
    /// [`Signer`](crate::Signer). [`authenticate`](CircleWsClient::authenticate)
    /// and every re-authentication after a reconnect ask it to sign.
    /// Replaces an earlier [`with_keypair`](Self::with_keypair).
    #[cfg(feature = "crypto")]
    pub fn with_signer(mut self, signer: impl crate::Signer + 'static) -> Self {
        self.identity = Some(Identity::Signer(Arc::new(signer)));
        self
    }

    /// Time the signer gets to sign one challenge (default
    /// [`DEFAULT_SIGN_TIMEOUT`]); past it, or past the challenge's expiry
    /// if that comes first, signing in fails with
    /// [`Timeout`](CircleWsClientError::Timeout) (`operation` `"sign"`).
    #[cfg(feature = "crypto")]
    pub fn with_sign_timeout(mut self, timeout: Duration) -> Self {
        self.sign_timeout = timeout;
        self
    }

    /// TLS settings for `wss://` (default: [`TlsConfig::default`], which
    /// verifies everything against the system's roots). Files it names are
    /// read by [`build`](Self::build).
    pub fn with_tls_config(mut self, tls_config: TlsConfig) -> Self {
        self.tls_config = Some(tls_config);
        self
    }

    /// Which TLS library to use (default: rustls when compiled in).
    pub fn with_tls_backend(mut self, backend: TlsBackend) -> Self {
        self.tls_backend = Some(backend);
        self
    }

    /// Time allowed to open a connection: TCP connect, TLS handshake and
    /// WebSocket upgrade together (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for each request's answer (default 30 s). Each request
    /// has its own clock, so one slow script does not delay the others.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Reconnect automatically after a lost connection (off by default).
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Most requests this client keeps in flight at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`], the server's default per-connection cap).
    /// Further requests wait for a free slot here, within their own timeout;
    /// a server at its cap would not refuse them either (protocol 1.1), but
    /// would leave them unread in the socket, where no timeout can see them.
    /// Raise it with the server's `max_in_flight_per_connection`.
    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// Largest message accepted from the server (default: tungstenite's
    /// 64 MiB). Native only: a browser's WebSocket has no such setting, so
    /// in a browser this is ignored.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = Some(bytes);
        self
    }

    /// Checks every setting and reads every file, then makes the client. It
    /// does not connect: call [`CircleWsClient::connect`].
    ///
    /// Errors: [`InvalidUrl`](CircleWsClientError::InvalidUrl),
    /// [`TlsConfig`](CircleWsClientError::TlsConfig) (a file missing or
    /// unusable, a backend not compiled in; in a browser, any TLS setting
    /// other than the default, because the browser controls TLS trust),
    /// [`InvalidKeypair`](CircleWsClientError::InvalidKeypair).
    #[cfg(target_arch = "wasm32")]
    pub fn build(self) -> Result<CircleWsClient, CircleWsClientError> {
        let url = WsUrl::parse(&self.url)?;
        if let Some(backend) = self.tls_backend {
            return Err(CircleWsClientError::TlsConfig {
                path: None,
                problem: format!(
                    "the {backend} TLS backend cannot be used in a browser: the browser controls \
                     TLS (and which certificates it trusts); leave the backend unset"
                ),
            });
        }
        if let Some(config) = &self.tls_config {
            config.check_browser_can_honour()?;
        }
        self.finish(url)
    }

    /// Checks every setting and reads every file, then makes the client. It
    /// does not connect: call [`CircleWsClient::connect`].
    ///
    /// Errors: [`InvalidUrl`](CircleWsClientError::InvalidUrl),
    /// [`TlsConfig`](CircleWsClientError::TlsConfig) (a file missing or
    /// unusable, a backend not compiled in; in a browser, any TLS setting
    /// other than the default, because the browser controls TLS trust),
    /// [`InvalidKeypair`](CircleWsClientError::InvalidKeypair).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn build(self) -> Result<CircleWsClient, CircleWsClientError> {
        let url = WsUrl::parse(&self.url)?;

        // TLS is prepared for wss:// URLs, and also whenever a TlsConfig was
        // given explicitly, so that a wrong file path is reported even while
        // testing against a plain ws:// server.
        let tls = if url.secure || self.tls_config.is_some() {
            let backend = match self.tls_backend.or_else(TlsBackend::default_available) {
                Some(backend) => backend,
                None if url.secure => {
                    return Err(CircleWsClientError::TlsConfig {
                        path: None,
                        problem: "this build has no TLS backend: enable the rustls-tls or \
                                  native-tls feature to use wss:// URLs"
                            .into(),
                    });
                }
                None => return self.finish(url, None),
            };
            let config = self.tls_config.clone().unwrap_or_default();
            let prepared = PreparedTls::prepare(&config, backend)?;
            prepared.check_server_name(&url.host).map_err(|reason| {
                CircleWsClientError::InvalidUrl {
                    url: self.url.clone(),
                    reason,
                }
            })?;
            Some(prepared)
        } else {
            None
        };
        self.finish(url, tls)
    }

    fn finish(
        self,
        url: WsUrl,
        #[cfg(not(target_arch = "wasm32"))] tls: Option<PreparedTls>,
    ) -> Result<CircleWsClient, CircleWsClientError> {
        #[cfg(feature = "crypto")]
        let signer: Option<Arc<dyn crate::Signer>> = match self.identity {
            Some(Identity::Keypair(hex)) => Some(Arc::new(crate::auth::parse_signing_key(&hex)?)),
            Some(Identity::Signer(signer)) => Some(signer),
            None => None,
        };
        #[cfg(not(feature = "crypto"))]
        let _ = &self.identity;

        let dialer = Dialer {
            url,
            #[cfg(not(target_arch = "wasm32"))]
            tls,
            connect_timeout: self.connect_timeout,
            #[cfg(not(target_arch = "wasm32"))]
            max_message_size: self.max_message_size,
        };
        Ok(CircleWsClient::new(
            dialer,
            self.request_timeout,
            self.reconnect,
            self.max_in_flight,
            #[cfg(feature = "crypto")]
            self.sign_timeout,
            #[cfg(feature = "crypto")]
            signer,
        ))
    }
}

// Native builds and TLS files; the browser's refusals are tested in a real
// browser (tests/browser_client.rs).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn build_checks_the_url() {
        let error = CircleWsClientBuilder::new("http://localhost/ws")
            .build()
            .unwrap_err();
        assert!(matches!(error, CircleWsClientError::InvalidUrl { .. }));
        let client = CircleWsClientBuilder::new("ws://localhost:1/ws")
            .build()
            .unwrap();
        assert!(!client.is_wss_url() && !client.requires_tls());
    }

    #[test]
    fn build_reads_tls_files_even_for_ws_urls() {
        let error = CircleWsClientBuilder::new("ws://localhost:1/ws")
            .with_tls_config(TlsConfig {
                ca_cert_path: Some("/nonexistent/ca.pem".into()),
                ..Default::default()
            })
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, CircleWsClientError::TlsConfig { path: Some(p), .. } if p.ends_with("ca.pem")),
            "{error}"
        );
    }

    #[test]
    fn unavailable_backends_are_reported() {
        for backend in [TlsBackend::Rustls, TlsBackend::NativeTls] {
            let result = CircleWsClientBuilder::new("wss://localhost/ws")
                .with_tls_backend(backend)
                .build();
            assert_eq!(result.is_ok(), backend.is_available(), "{backend}");
        }
    }

    #[cfg(feature = "crypto")]
    #[test]
    fn debug_output_never_shows_the_key() {
        let secret = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
        let builder = CircleWsClientBuilder::new("ws://localhost/ws").with_keypair(secret);
        let shown = format!("{builder:?}");
        assert!(
            !shown.contains(secret) && shown.contains("redacted"),
            "{shown}"
        );
        let client = builder.build().unwrap();
        assert!(!format!("{client:?}").contains(secret));
    }

    #[cfg(feature = "crypto")]
    #[test]
    fn bad_keypairs_fail_build() {
        let error = CircleWsClientBuilder::new("ws://localhost/ws")
            .with_keypair("0x1234")
            .build()
            .unwrap_err();
        assert!(matches!(error, CircleWsClientError::InvalidKeypair(_)));
    }
}
