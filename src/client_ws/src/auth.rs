//! Signing the server's sign-in challenge (feature `crypto`).
//!
//! Before signing, the client reads the challenge back: a signature is a
//! promise made with the user's key, so it is only given for a challenge that
//! names this key's address and has not expired yet. The signing itself is
//! `circle_protocol`'s, the same code the server verifies with.

// std's SystemTime panics in a browser (wasm32-unknown-unknown); web-time
// reads the browser's clock there and is std's own elsewhere.
use web_time::{SystemTime, UNIX_EPOCH};

use circle_protocol::{SignInChallenge, SigningKey};

use crate::error::CircleWsClientError;

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

/// Checks that `message` is a sign-in challenge for `key`'s address that is
/// still valid at `now` (unix seconds).
pub(crate) fn check_challenge(
    message: &str,
    key: &SigningKey,
    now: u64,
) -> Result<SignInChallenge, CircleWsClientError> {
    let refuse = |reason: String| CircleWsClientError::AuthenticationRefused { reason };
    let challenge = SignInChallenge::parse(message).map_err(|e| {
        refuse(format!(
            "the server's challenge is not a sign-in message this client can read: {e}"
        ))
    })?;
    let own_address = key.address().to_checksum_string();
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
        let challenge = check_challenge(&message, &key, 1_700_000_100).unwrap();
        assert_eq!(challenge.nonce, "abcdefghijklmnop1234");
    }

    #[test]
    fn foreign_or_expired_challenges_are_refused() {
        let key = parse_signing_key(KEY).unwrap();
        let other = parse_signing_key(&"11".repeat(32)).unwrap();
        let foreign = challenge_for(other.address().to_checksum_string(), 1_700_000_300);
        let error = check_challenge(&foreign, &key, 1_700_000_100).unwrap_err();
        assert!(error.to_string().contains("not this client's"), "{error}");

        let expired = challenge_for(key.address().to_checksum_string(), 1_700_000_300);
        let error = check_challenge(&expired, &key, 1_700_000_301).unwrap_err();
        assert!(error.to_string().contains("expired"), "{error}");

        let error = check_challenge("sign this please", &key, 0).unwrap_err();
        assert!(matches!(
            error,
            CircleWsClientError::AuthenticationRefused { .. }
        ));
    }
}
