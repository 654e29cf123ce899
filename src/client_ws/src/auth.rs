//! Signing in (feature `crypto`): the `authenticate` methods of
//! [`CircleWsClient`], and the checks around the [`Signer`].
//!
//! Before asking for a signature, the client reads the challenge back: a
//! signature is a promise made with the user's key, so it is only asked for
//! a challenge that names the signer's address and has not expired yet.
//! After, it checks the signature recovers to that address
//! ([`check_signature`](crate::signer::check_signature)) before sending it.

use std::sync::Arc;
use std::time::Duration;

// std's SystemTime panics in a browser (wasm32-unknown-unknown); web-time
// reads the browser's clock there and is std's own elsewhere.
use web_time::{SystemTime, UNIX_EPOCH};

use circle_protocol::{
    Address, AuthenticateParams, AuthenticateResult, FetchNonceParams, FetchNonceResult,
    SignInChallenge, SigningKey, codes, method,
};

use crate::client::CircleWsClient;
use crate::connection::Connection;
use crate::error::CircleWsClientError;
use crate::rt;
use crate::signer::{Signer, check_signature};

impl CircleWsClient {
    /// Signs in through the configured signer (the builder's
    /// [`with_keypair`](crate::CircleWsClientBuilder::with_keypair) or
    /// [`with_signer`](crate::CircleWsClientBuilder::with_signer)): asks the
    /// server for a challenge (`fetch_nonce`), checks that it is for the
    /// signer's address and not expired, has the signer sign it (EIP-191
    /// `personal_sign`, within the sign timeout), checks the signature is
    /// the signer's, and sends it (`authenticate`).
    ///
    /// `Ok(true)`: authenticated. `Ok(false)`: the server refused the
    /// signature (`-32001`). Transport failures and other server errors are
    /// `Err`; so is a missing signer or a challenge this client will not
    /// sign ([`AuthenticationRefused`](CircleWsClientError::AuthenticationRefused)),
    /// a signer that did not sign ([`Signer`](CircleWsClientError::Signer),
    /// [`Timeout`](CircleWsClientError::Timeout) with operation `"sign"`),
    /// and a signature by another key
    /// ([`SignatureMismatch`](CircleWsClientError::SignatureMismatch)),
    /// which is never sent.
    pub async fn authenticate(&self) -> Result<bool, CircleWsClientError> {
        let signer = self
            .signer()
            .ok_or_else(|| CircleWsClientError::AuthenticationRefused {
                reason: "no signer configured: use CircleWsClientBuilder::with_keypair or \
                         with_signer"
                    .into(),
            })?;
        let connection = self.connection_for_request().await?;
        let accepted = self.authenticate_on(&connection, &*signer).await?;
        if accepted {
            self.mark_authenticated();
        }
        Ok(accepted)
    }

    /// Like [`authenticate`](Self::authenticate), through a signer given now
    /// rather than to the builder: for callers that learn who signs after
    /// connecting, such as a web page whose user picks a wallet. When the
    /// server accepts, `signer` becomes this client's (a reconnect signs in
    /// through it again); when it refuses, the previous signer, if any,
    /// stays.
    pub async fn authenticate_with_signer(
        &self,
        signer: impl Signer + 'static,
    ) -> Result<bool, CircleWsClientError> {
        self.authenticate_with(Arc::new(signer)).await
    }

    /// Like [`authenticate_with_signer`](Self::authenticate_with_signer),
    /// with a secret key (64 hex digits, `0x` optional), signing in this
    /// process. A malformed key is
    /// [`InvalidKeypair`](CircleWsClientError::InvalidKeypair), before
    /// anything is sent.
    pub async fn authenticate_with_keypair(
        &self,
        secret_key_hex: &str,
    ) -> Result<bool, CircleWsClientError> {
        self.authenticate_with(Arc::new(parse_signing_key(secret_key_hex)?))
            .await
    }

    async fn authenticate_with(
        &self,
        signer: Arc<dyn Signer>,
    ) -> Result<bool, CircleWsClientError> {
        let connection = self.connection_for_request().await?;
        let accepted = self.authenticate_on(&connection, &*signer).await?;
        if accepted {
            self.set_signer(signer);
            self.mark_authenticated();
        }
        Ok(accepted)
    }

    /// The sign-in exchange on one connection (also a reconnect's).
    pub(crate) async fn authenticate_on(
        &self,
        connection: &Connection,
        signer: &dyn Signer,
    ) -> Result<bool, CircleWsClientError> {
        let address = signer.address();
        // The key when the signer knows it (as before signers existed),
        // otherwise the address, as a wallet gives it.
        let (pubkey, address_param) = match signer.public_key() {
            Some(key) => (Some(key.to_compressed_hex()), None),
            None => (None, Some(address.to_checksum_string())),
        };
        let challenge: FetchNonceResult = self
            .call_on(
                connection,
                method::FETCH_NONCE,
                FetchNonceParams {
                    pubkey: pubkey.clone(),
                    address: address_param.clone(),
                },
            )
            .await?;
        let now = unix_now();
        let checked = check_challenge(&challenge.message, address, now)?;
        // A signature after the challenge expired is worthless: wait no
        // longer than that, nor than the sign timeout.
        let budget = self.sign_timeout().min(Duration::from_secs(
            checked.expiration_time.saturating_sub(now),
        ));
        let signature = rt::timeout(budget, signer.sign_message(&challenge.message))
            .await
            .map_err(|_| CircleWsClientError::Timeout {
                operation: "sign".into(),
                after: budget,
            })??;
        check_signature(&challenge.message, &signature, address)?;
        let answer: Result<AuthenticateResult, _> = self
            .call_on(
                connection,
                method::AUTHENTICATE,
                AuthenticateParams {
                    signature: signature.to_hex(),
                    pubkey,
                    address: address_param,
                },
            )
            .await;
        match answer {
            Ok(result) => Ok(result.authenticated),
            Err(CircleWsClientError::Rpc { code, message, .. })
                if code == codes::AUTHENTICATION_FAILED =>
            {
                tracing::info!(%message, "the server refused the signature");
                Ok(false)
            }
            Err(other) => Err(other),
        }
    }
}

/// Reads a secret key: 64 hex digits, `0x` optional.
pub(crate) fn parse_signing_key(hex: &str) -> Result<SigningKey, CircleWsClientError> {
    // The protocol crate's messages describe the problem without echoing
    // the digits, so they are safe to show.
    SigningKey::from_hex(hex).map_err(|e| {
        CircleWsClientError::InvalidKeypair(format!(
            "{e} (expected a 32-byte secp256k1 secret as 64 hex digits, 0x optional)"
        ))
    })
}

/// Checks that `message` is a sign-in challenge for `address` that is
/// still valid at `now` (unix seconds).
pub(crate) fn check_challenge(
    message: &str,
    address: Address,
    now: u64,
) -> Result<SignInChallenge, CircleWsClientError> {
    let refuse = |reason: String| CircleWsClientError::AuthenticationRefused { reason };
    let challenge = SignInChallenge::parse(message).map_err(|e| {
        refuse(format!(
            "the server's challenge is not a sign-in message this client can read: {e}"
        ))
    })?;
    let own_address = address.to_checksum_string();
    if !challenge.address.eq_ignore_ascii_case(&own_address) {
        return Err(refuse(format!(
            "the server's challenge is for address {}, not this client's {own_address}: \
             refusing to sign it",
            challenge.address
        )));
    }
    if challenge.expiration_time <= now {
        return Err(refuse(format!(
            "the server's challenge expired at {} (now {}): is this machine's clock right?",
            circle_protocol::format_rfc3339_utc(challenge.expiration_time),
            circle_protocol::format_rfc3339_utc(now),
        )));
    }
    Ok(challenge)
}

/// Seconds since the Unix epoch (0 if the clock is before 1970, which then
/// makes every challenge look valid rather than failing for an odd reason).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

    fn challenge_for(address: String, expiration_time: u64) -> String {
        SignInChallenge {
            domain: "localhost:8443".into(),
            address,
            circle_name: "test".into(),
            circle_public_key: "02".to_owned() + &"ab".repeat(32),
            uri: "wss://localhost:8443/ws".into(),
            nonce: "abcdefghijklmnop1234".into(),
            issued_at: 1_700_000_000,
            expiration_time,
        }
        .to_message()
    }

    #[test]
    fn keys_parse_with_or_without_prefix() {
        let with = parse_signing_key(KEY).unwrap();
        let without = parse_signing_key(&KEY[2..]).unwrap();
        assert_eq!(with.address(), without.address());
    }

    #[test]
    fn bad_keys_are_errors_not_panics() {
        for bad in ["", "0x", "zz", &"0".repeat(64), &"f".repeat(64), &KEY[..40]] {
            assert!(
                matches!(
                    parse_signing_key(bad),
                    Err(CircleWsClientError::InvalidKeypair(_))
                ),
                "{bad:?}"
            );
        }
        let message = parse_signing_key("0xnot-hex-at-all")
            .unwrap_err()
            .to_string();
        assert!(message.contains("64 hex digits"), "{message}");
    }

    #[test]
    fn own_unexpired_challenge_is_accepted() {
        let key = parse_signing_key(KEY).unwrap();
        let message = challenge_for(key.address().to_checksum_string(), 1_700_000_300);
        let challenge = check_challenge(&message, key.address(), 1_700_000_100).unwrap();
        assert_eq!(challenge.nonce, "abcdefghijklmnop1234");
    }

    #[test]
    fn foreign_or_expired_challenges_are_refused() {
        let key = parse_signing_key(KEY).unwrap();
        let other = parse_signing_key(&"11".repeat(32)).unwrap();
        let foreign = challenge_for(other.address().to_checksum_string(), 1_700_000_300);
        let error = check_challenge(&foreign, key.address(), 1_700_000_100).unwrap_err();
        assert!(error.to_string().contains("not this client's"), "{error}");

        let expired = challenge_for(key.address().to_checksum_string(), 1_700_000_300);
        let error = check_challenge(&expired, key.address(), 1_700_000_301).unwrap_err();
        assert!(error.to_string().contains("expired"), "{error}");

        let error = check_challenge("sign this please", key.address(), 0).unwrap_err();
        assert!(matches!(
            error,
            CircleWsClientError::AuthenticationRefused { .. }
        ));
    }
}
