//! The one error type of the client, [`CircleWsClientError`], shaped so that
//! a caller can tell apart what it can act on: a typo in the URL, a bad
//! certificate file, a server certificate that is not trusted (and why), a
//! server that is down, a slow server, a refused signature, or an error the
//! server answered.

use std::path::PathBuf;
use std::time::Duration;

use circle_protocol::{RpcError, codes};

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CircleWsClientError {
    /// The URL cannot be used: not `ws://` or `wss://`, no host, bad port.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The [`TlsConfig`](crate::TlsConfig) cannot be used: a file is
    /// missing, empty or not what it should be, or the options contradict
    /// each other. Found by `build()`, before any connection.
    #[error("TLS configuration: {}{problem}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    TlsConfig {
        /// The file at fault, when one is.
        path: Option<PathBuf>,
        /// What is wrong.
        problem: String,
    },

    /// The server's certificate was not accepted.
    #[error("the certificate of {host} was rejected: {reason} ({detail})")]
    CertificateRejected {
        /// The host name or address the client expected the certificate to be for.
        host: String,
        /// Why it was rejected.
        reason: CertificateRejection,
        /// The TLS library's own words.
        detail: String,
    },

    /// The TLS handshake failed for a reason other than the server's
    /// certificate: for example a `wss://` URL pointing at a plain `ws://`
    /// listener, no common protocol version, or the server refusing the
    /// client's certificate.
    #[error("TLS handshake with {host} failed: {detail}")]
    TlsHandshake {
        /// The host the client was talking to.
        host: String,
        /// What went wrong, with a hint when the cause is a common mistake.
        detail: String,
    },

    /// Nothing accepts connections at the address (the server is not
    /// running, or the port is wrong).
    #[error("connection to {address} refused (is the server running on that port?)")]
    ConnectionRefused {
        /// `host:port` as dialled.
        address: String,
    },

    /// The TCP connection could not be opened for another reason (unknown
    /// host, network unreachable, …). In a browser, every failure to open
    /// the WebSocket: browsers do not tell pages whether the port was
    /// closed, the certificate untrusted or the path wrong (the browser's
    /// developer console does).
    #[error("could not connect to {address}: {source}")]
    ConnectFailed {
        /// `host:port` as dialled.
        address: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The TCP and TLS layers worked but the WebSocket upgrade did not (wrong
    /// path, an HTTP error status, or a peer that does not speak HTTP — such
    /// as a TLS listener reached with a `ws://` URL).
    #[error("WebSocket handshake with {url} failed: {detail}")]
    WebSocketHandshake {
        /// The URL the client connected to.
        url: String,
        /// What went wrong.
        detail: String,
    },

    /// An established connection ended: the server stopped or closed it, or
    /// the network failed. Requests in flight fail with this error.
    #[error("connection lost: {reason}")]
    ConnectionLost {
        /// What ended it, for example the server's close code and reason.
        reason: String,
    },

    /// A request was made before [`connect`](crate::CircleWsClient::connect)
    /// or after [`disconnect`](crate::CircleWsClient::disconnect).
    #[error("not connected: call connect() first")]
    NotConnected,

    /// An operation took longer than its timeout.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out: `"connect"` or the JSON-RPC method name.
        operation: String,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// Authentication could not happen or did not stick: no keypair was
    /// configured, the server's challenge was not one this client may sign
    /// (another address, already expired), or re-authentication after an
    /// automatic reconnect was refused. A signature refused by the server in
    /// [`authenticate`](crate::CircleWsClient::authenticate) is `Ok(false)`,
    /// not this error.
    #[error("authentication refused: {reason}")]
    AuthenticationRefused {
        /// Why.
        reason: String,
    },

    /// The server answered the request with a JSON-RPC error.
    #[error("server error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code (see [`circle_protocol::codes`]).
        code: i32,
        /// The server's explanation.
        message: String,
        /// Optional structured details.
        data: Option<serde_json::Value>,
    },

    /// The `play` was cancelled by this client before it finished
    /// (protocol 1.1, `-32006`): [`PlayStream::cancel`](crate::PlayStream::cancel)
    /// or a dropped [`PlayStream`](crate::PlayStream). The server stopped
    /// the script; nothing it would have printed after that comes.
    #[error("server error -32006: {message}")]
    Cancelled {
        /// The server's explanation.
        message: String,
    },

    /// The server answered something this client cannot read (not JSON-RPC,
    /// or a result of the wrong shape).
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),

    /// The secret key given to
    /// [`with_keypair`](crate::CircleWsClientBuilder::with_keypair) is not a
    /// 32-byte secp256k1 secret in hex.
    #[error("invalid keypair: {0}")]
    InvalidKeypair(String),

    /// The [`Signer`](crate::Signer) gave no signature: its holder rejected
    /// the request (a wallet's user pressed *Reject*), or it failed. Nothing
    /// was sent to the server.
    #[cfg(feature = "crypto")]
    #[error("the signer did not sign: {0}")]
    Signer(#[from] crate::signer::SignerError),

    /// The signer's signature recovers to another address than the
    /// signer's own: the wrong key (a KMS key id mix-up, a wallet that
    /// switched accounts). Found by the client before sending, so it does
    /// not count as a failed sign-in at the server.
    #[cfg(feature = "crypto")]
    #[error(
        "the signer for {expected} returned a signature made by {signed_by}: not sent \
         (is the signer using the right key?)"
    )]
    SignatureMismatch {
        /// The signer's address, which the challenge names.
        expected: circle_protocol::Address,
        /// The address that actually made the signature.
        signed_by: circle_protocol::Address,
    },

    /// The signer's answer is not a usable EIP-191 signature (malformed,
    /// high `s`, a bad recovery byte): not sent.
    #[cfg(feature = "crypto")]
    #[error("the signer returned an unusable signature: {problem}")]
    InvalidSignature {
        /// What is wrong with it.
        problem: circle_protocol::SignatureError,
    },
}

impl CircleWsClientError {
    /// The JSON-RPC error code when the server answered with an error.
    pub fn rpc_code(&self) -> Option<i32> {
        match self {
            CircleWsClientError::Rpc { code, .. } => Some(*code),
            CircleWsClientError::Cancelled { .. } => Some(codes::SCRIPT_CANCELLED),
            _ => None,
        }
    }

    /// True when the server requires authentication before this request
    /// (`-32002`).
    pub fn is_authentication_required(&self) -> bool {
        self.rpc_code() == Some(codes::AUTHENTICATION_REQUIRED)
    }

    /// True when the script was cancelled by this client (`-32006`).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, CircleWsClientError::Cancelled { .. })
    }

    /// True for failures to reach the server or to keep talking to it
    /// (refused, lost, not connected, timeout): the kind of failure a retry or
    /// a reconnect may cure. TLS and configuration errors are not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CircleWsClientError::ConnectionRefused { .. }
                | CircleWsClientError::ConnectFailed { .. }
                | CircleWsClientError::ConnectionLost { .. }
                | CircleWsClientError::NotConnected
                | CircleWsClientError::Timeout { .. }
        )
    }
}

impl From<RpcError> for CircleWsClientError {
    fn from(error: RpcError) -> Self {
        // The one server error a caller of this client asked for: typed.
        if error.code == codes::SCRIPT_CANCELLED {
            return CircleWsClientError::Cancelled {
                message: error.message,
            };
        }
        CircleWsClientError::Rpc {
            code: error.code,
            message: error.message,
            data: error.data,
        }
    }
}

/// A PEM file of the [`TlsConfig`](crate::TlsConfig) that cannot be used:
/// the file and, in the server's words, what is wrong with it.
#[cfg(not(target_arch = "wasm32"))]
impl From<circle_pem::PemError> for CircleWsClientError {
    fn from(error: circle_pem::PemError) -> Self {
        CircleWsClientError::TlsConfig {
            path: Some(error.path().to_path_buf()),
            problem: error.reason(),
        }
    }
}

/// Why a server certificate was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateRejection {
    /// The certificate does not chain to a trusted root: self-signed, or
    /// signed by a CA the client was not told to trust (`ca_cert_path`).
    UnknownIssuer,
    /// The certificate is not valid for the host name or address in the URL.
    NameMismatch,
    /// The certificate (or one in its chain) has expired.
    Expired,
    /// The certificate (or one in its chain) is not valid yet.
    NotYetValid,
    /// Another reason, in the TLS library's words.
    Other(String),
}

impl std::fmt::Display for CertificateRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertificateRejection::UnknownIssuer => f.write_str(
                "unknown issuer (self-signed or unknown CA: trust it with ca_cert_path)",
            ),
            CertificateRejection::NameMismatch => {
                f.write_str("the certificate is not valid for this host name")
            }
            CertificateRejection::Expired => f.write_str("the certificate has expired"),
            CertificateRejection::NotYetValid => f.write_str("the certificate is not valid yet"),
            CertificateRejection::Other(reason) => f.write_str(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_keep_code_and_message() {
        let error: CircleWsClientError =
            RpcError::new(codes::AUTHENTICATION_REQUIRED, "authenticate first").into();
        assert!(error.is_authentication_required());
        assert_eq!(error.rpc_code(), Some(-32002));
        assert_eq!(error.to_string(), "server error -32002: authenticate first");
        assert!(!error.is_transient());
    }

    #[test]
    fn a_cancelled_script_is_its_own_variant() {
        let error: CircleWsClientError =
            RpcError::new(codes::SCRIPT_CANCELLED, "cancelled by the caller").into();
        assert!(error.is_cancelled(), "{error:?}");
        assert_eq!(error.rpc_code(), Some(-32006));
        assert!(!error.is_transient());
    }

    #[test]
    fn tls_config_errors_name_the_file() {
        let error = CircleWsClientError::TlsConfig {
            path: Some(PathBuf::from("/tmp/ca.pem")),
            problem: "no PEM certificate in it".into(),
        };
        assert_eq!(
            error.to_string(),
            "TLS configuration: /tmp/ca.pem: no PEM certificate in it"
        );
        let error = CircleWsClientError::TlsConfig {
            path: None,
            problem: "client_cert_path without client_key_path".into(),
        };
        assert_eq!(
            error.to_string(),
            "TLS configuration: client_cert_path without client_key_path"
        );
    }

    #[test]
    fn certificate_rejections_read_well() {
        let error = CircleWsClientError::CertificateRejected {
            host: "localhost".into(),
            reason: CertificateRejection::UnknownIssuer,
            detail: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(error.to_string().contains("unknown issuer"));
    }
}
