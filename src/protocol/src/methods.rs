//! Parameters and results of the protocol's methods (PROTOCOL.md, "Methods").

use serde::{Deserialize, Serialize};

/// Method names.
pub mod method {
    /// Asks for a sign-in challenge.
    pub const FETCH_NONCE: &str = "fetch_nonce";
    /// Answers the challenge with a signature.
    pub const AUTHENTICATE: &str = "authenticate";
    /// Runs a Rhai script.
    pub const PLAY: &str = "play";
    /// Tells who the connection is and which circle it talks to.
    pub const WHOAMI: &str = "whoami";
    /// Protocol 1.1: stops a `play` of the same connection.
    pub const CANCEL: &str = "cancel";
    /// Protocol 1.1: the notification carrying one printed line of a
    /// streamed `play` (server to client).
    pub const OUTPUT: &str = "output";
}

/// Requests one connection may have running at once on a server of this
/// project by default. A server at the cap stops reading the connection
/// (protocol 1.1's backpressure); the project's client keeps to the same
/// number so that its requests wait in its own queue, where their timeouts
/// run, rather than unread in a socket.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// `fetch_nonce` params: exactly one of `pubkey` or `address`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchNonceParams {
    /// secp256k1 public key, hex, compressed or uncompressed, `0x` optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubkey: Option<String>,
    /// Ethereum address of the key, any letter case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `fetch_nonce` result: the challenge to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchNonceResult {
    /// The single-use nonce inside `message`.
    pub nonce: String,
    /// The exact Sign-In with Ethereum text to sign with `personal_sign`.
    pub message: String,
    /// When the nonce expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// `authenticate` params.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateParams {
    /// 65-byte `r ‖ s ‖ v` signature, hex (`0x` optional).
    pub signature: String,
    /// Optional repeat of the `pubkey` given to `fetch_nonce`; must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubkey: Option<String>,
    /// Optional repeat of the `address` given to `fetch_nonce`; must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `authenticate` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticateResult {
    /// Always `true`: a failure is an error, not `false`.
    pub authenticated: bool,
    /// The caller's compressed public key, hex without `0x`.
    pub pubkey: String,
    /// The caller's EIP-55 checksummed address.
    pub address: String,
}

/// `play` params.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayParams {
    /// Rhai source code.
    pub script: String,
    /// Protocol 1.1: ask for each printed line as an `output` notification
    /// before the answer. Accepted by every 1.1 server; the answer carries
    /// every line either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// `play` result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayResult {
    /// The lines the script printed, then its value unless it is `()`,
    /// joined with `\n`.
    pub output: String,
}

/// `cancel` params (protocol 1.1): the id of the `play` to stop, as the
/// client wrote it (any JSON-RPC id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The `play` request's id.
    pub id: serde_json::Value,
}

/// `cancel` result: whether a queued or running `play` of this connection
/// had that id (it is then answered `-32006`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResult {
    /// `true` when a `play` was stopped.
    pub cancelled: bool,
}

/// `output` notification params (protocol 1.1): one line a streamed
/// `play` printed, under that `play`'s id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputParams {
    /// The `play` request's id.
    pub id: serde_json::Value,
    /// The printed line, without its line break.
    pub line: String,
}

/// Which circle a connection talks to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircleInfo {
    /// The circle's name.
    pub name: String,
    /// The circle's secp256k1 public key, hex.
    pub public_key: String,
}

/// `whoami` result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoamiResult {
    /// Whether this connection has authenticated.
    pub authenticated: bool,
    /// The caller's compressed public key once authenticated.
    pub pubkey: Option<String>,
    /// The circle.
    pub circle: CircleInfo,
    /// Protocol 1.1: the client certificate the server verified on this
    /// connection (mutual TLS); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
}

/// A client certificate verified by the server (mutual TLS), as `whoami`
/// shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertificate {
    /// The certificate's subject, RFC 4514 style (`CN=alice,O=Example`).
    pub subject: String,
    /// The certificate's serial number, lowercase hex without separators.
    pub serial: String,
}
