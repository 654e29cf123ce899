//! [`Signer`]: whatever holds the key that signs in (feature `crypto`).
//!
//! The client never needs the secret itself, only EIP-191 `personal_sign`
//! signatures over the server's sign-in challenges, so signing is behind a
//! trait: an in-memory [`SigningKey`] for bots and tests, and, written by
//! the application, a cloud KMS or HSM client, a hardware wallet, or (in
//! the JavaScript bindings) a browser wallet.
//!
//! Whatever a signer answers is checked before it is sent
//! ([`check_signature`]): the signature must recover to the signer's own
//! address, so a misconfigured signer (the wrong key id in a KMS, a wallet
//! that switched accounts) is a clear error here, not a `-32001` from the
//! server that counts towards the connection's failed sign-ins.

use std::future::Future;
use std::pin::Pin;

use circle_protocol::{Address, PublicKey, Signature, SigningKey, recover_personal_signer};

use crate::error::CircleWsClientError;
use crate::rt::{MaybeSend, MaybeSync};

/// The future a [`Signer`] returns: `Send` natively (the client's tasks
/// run on tokio's threads), not in a browser, where a signer may hold the
/// page's JavaScript objects (which are not `Send`) across an `await`.
#[cfg(not(target_arch = "wasm32"))]
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Signature, SignerError>> + Send + 'a>>;

/// The future a [`Signer`] returns: `Send` natively (the client's tasks
/// run on tokio's threads), not in a browser, where a signer may hold the
/// page's JavaScript objects (which are not `Send`) across an `await`.
#[cfg(target_arch = "wasm32")]
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Signature, SignerError>> + 'a>>;

/// Signs sign-in challenges for one Ethereum address.
///
/// ```
/// use circle_client_ws::{SignFuture, Signer, SignerError};
/// use circle_client_ws::circle_protocol::{Address, SigningKey};
///
/// /// Stands for a KMS client: the key lives elsewhere, signing is a call.
/// struct Remote { address: Address, key: SigningKey }
///
/// impl Signer for Remote {
///     fn address(&self) -> Address {
///         self.address
///     }
///     fn sign_message<'a>(&'a self, message: &'a str) -> SignFuture<'a> {
///         Box::pin(async move {
///             // e.g. kms.sign(eip191_hash(message)).await, mapped to SignerError
///             Ok(self.key.sign_personal_message(message))
///         })
///     }
/// }
/// ```
///
/// Natively a signer must be `Send + Sync` (clients are shared between
/// tasks); in a browser it need not be.
pub trait Signer: MaybeSend + MaybeSync {
    /// The address whose signatures this signer makes. The client asks the
    /// server for a challenge naming it, and refuses a signature that does
    /// not recover to it.
    fn address(&self) -> Address;

    /// The public key behind [`address`](Self::address), when the signer
    /// knows it without signing (a wallet tells a page only its address).
    /// When known, the client announces the key rather than the address,
    /// and [`CircleWsClient::public_key`](crate::CircleWsClient::public_key)
    /// shows it.
    fn public_key(&self) -> Option<PublicKey> {
        None
    }

    /// Signs `message` as EIP-191 `personal_sign` does: a secp256k1 ECDSA
    /// signature of `keccak256("\x19Ethereum Signed Message:\n" ‖ byte
    /// length ‖ message)`, as the 65 bytes `r ‖ s ‖ v` (`v` 27/28 or 0/1).
    ///
    /// The client waits for it at most its sign timeout
    /// ([`with_sign_timeout`](crate::CircleWsClientBuilder::with_sign_timeout)).
    fn sign_message<'a>(&'a self, message: &'a str) -> SignFuture<'a>;
}

/// The in-memory key: signs at once, in this process.
impl Signer for SigningKey {
    fn address(&self) -> Address {
        SigningKey::address(self)
    }

    fn public_key(&self) -> Option<PublicKey> {
        Some(SigningKey::public_key(self))
    }

    fn sign_message<'a>(&'a self, message: &'a str) -> SignFuture<'a> {
        Box::pin(std::future::ready(Ok(self.sign_personal_message(message))))
    }
}

/// Why a [`Signer`] gave no signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// Whoever holds the key declined: a wallet's user pressed *Reject*
    /// (EIP-1193 error 4001), a KMS policy said no. Not retried.
    #[error("the signature request was rejected: {message}")]
    Rejected {
        /// The signer's explanation.
        message: String,
    },
    /// The signer could not sign: unreachable, locked, no such key, an
    /// internal error. `code` is the signer's own error code when it has
    /// one (for a browser wallet, the EIP-1193 or JSON-RPC code).
    #[error("the signer failed{}: {message}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Failed {
        /// The signer's error code, if it gave one.
        code: Option<i64>,
        /// The signer's explanation.
        message: String,
    },
    /// The signer answered something that is not what was asked for (not
    /// an address, not a signature in hex).
    #[error("the signer's answer cannot be used: {message}")]
    InvalidAnswer {
        /// What was wrong with it.
        message: String,
    },
}

/// Checks, before anything is sent, that `signature` over `message` was made
/// by `expected`: [`InvalidSignature`](CircleWsClientError::InvalidSignature)
/// when no key can be recovered from it,
/// [`SignatureMismatch`](CircleWsClientError::SignatureMismatch) when another
/// key made it. Returns the signer's public key.
pub(crate) fn check_signature(
    message: &str,
    signature: &Signature,
    expected: Address,
) -> Result<PublicKey, CircleWsClientError> {
    let recovered = recover_personal_signer(message, signature)
        .map_err(|problem| CircleWsClientError::InvalidSignature { problem })?;
    let signed_by = recovered.address();
    if signed_by != expected {
        return Err(CircleWsClientError::SignatureMismatch {
            expected,
            signed_by,
        });
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

    #[test]
    fn own_signatures_pass_and_foreign_ones_are_named() {
        let key = SigningKey::from_hex(KEY).unwrap();
        let other = SigningKey::from_hex(&"11".repeat(32)).unwrap();
        let signature = key.sign_personal_message("hello");
        let recovered = check_signature("hello", &signature, key.address()).unwrap();
        assert_eq!(recovered, key.public_key());

        let error = check_signature("hello", &signature, other.address()).unwrap_err();
        match &error {
            CircleWsClientError::SignatureMismatch {
                expected,
                signed_by,
            } => {
                assert_eq!(*expected, other.address());
                assert_eq!(*signed_by, key.address());
            }
            other => panic!("expected SignatureMismatch, got {other:?}"),
        }
        // A signature over another message recovers to some other key.
        let error = check_signature("hello!", &signature, key.address()).unwrap_err();
        assert!(matches!(
            error,
            CircleWsClientError::SignatureMismatch { .. }
                | CircleWsClientError::InvalidSignature { .. }
        ));

        let mut bad_v = signature;
        bad_v.0[64] = 5;
        let error = check_signature("hello", &bad_v, key.address()).unwrap_err();
        assert!(
            matches!(error, CircleWsClientError::InvalidSignature { .. }),
            "{error}"
        );
    }

    #[test]
    fn signer_errors_read_well() {
        let failed = SignerError::Failed {
            code: Some(4100),
            message: "unauthorized".into(),
        };
        assert_eq!(
            failed.to_string(),
            "the signer failed (code 4100): unauthorized"
        );
        let failed = SignerError::Failed {
            code: None,
            message: "KMS unreachable".into(),
        };
        assert_eq!(failed.to_string(), "the signer failed: KMS unreachable");
    }
}
