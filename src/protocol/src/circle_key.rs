//! A circle's public key as configuration gives it (`--circle-public-key`,
//! `ServerConfig::circle_public_key`, a worker's settings), read into the one
//! text form the protocol uses: the compressed key, 66 lower-case hex digits
//! without `0x`, `02…` or `03…`. The server announces that form, signs in
//! against it and names Redis streams with it, so every program must derive
//! the same text from the same setting.
//!
//! Two readings, one form:
//!
//! - [`canonical_circle_public_key`] (no feature): the text rules only, for
//!   programs without secp256k1 (the executor's Redis workers);
//! - [`parse_circle_public_key`] (feature `crypto`): a real key, compressed
//!   or uncompressed, checked to be on the curve (the server).
//!
//! Whatever `parse_circle_public_key` returns, `canonical_circle_public_key`
//! returns unchanged.

/// Length in hex digits of a compressed secp256k1 public key (33 bytes).
const COMPRESSED_HEX_DIGITS: usize = 66;

/// A circle public key that is not a compressed secp256k1 key in hex.
///
/// The key is not repeated: the caller has it and decides how to show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "expected the compressed key as circle-server prints it (66 hex digits starting with 02 or 03)"
)]
pub struct InvalidCircleKey;

/// The canonical form of a circle public key, by its text alone: surrounding
/// whitespace and a `0x`/`0X` prefix are dropped and the digits lower-cased;
/// what is left must be 66 hex digits starting with `02` or `03`.
///
/// Anything else (uncompressed `04…` keys included) is refused rather than
/// guessed at, because programs that must agree on the circle's name would
/// otherwise disagree. Whether the digits are a point on the curve is not
/// checked (that needs the `crypto` feature: [`parse_circle_public_key`]).
pub fn canonical_circle_public_key(key: &str) -> Result<String, InvalidCircleKey> {
    let trimmed = key.trim();
    let hex = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    let well_formed = hex.len() == COMPRESSED_HEX_DIGITS
        && (hex.starts_with("02") || hex.starts_with("03"))
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if well_formed {
        Ok(hex)
    } else {
        Err(InvalidCircleKey)
    }
}

/// Reads a circle public key as a real secp256k1 key ([`PublicKey::from_hex`]:
/// compressed or uncompressed, `0x` optional, on the curve) and gives its
/// canonical form, the compressed key in lower-case hex.
///
/// [`PublicKey::from_hex`]: crate::PublicKey::from_hex
#[cfg(feature = "crypto")]
pub fn parse_circle_public_key(key: &str) -> Result<String, crate::KeyError> {
    crate::PublicKey::from_hex(key).map(|key| key.to_compressed_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_form_is_compressed_lower_case_hex() {
        let key = format!("02{}", "Ab".repeat(32));
        assert_eq!(
            canonical_circle_public_key(&format!(" 0x{key} ")),
            Ok(key.to_ascii_lowercase())
        );
        assert_eq!(
            canonical_circle_public_key(&format!("0X{key}")),
            Ok(key.to_ascii_lowercase())
        );
        assert!(canonical_circle_public_key("04abcd").is_err());
        assert!(canonical_circle_public_key(&format!("04{}", "00".repeat(32))).is_err());
        assert!(canonical_circle_public_key(&format!("02{}", "zz".repeat(32))).is_err());
        assert!(canonical_circle_public_key(&format!("02{}", "ab".repeat(33))).is_err());
        assert!(canonical_circle_public_key("").is_err());
    }

    #[cfg(feature = "crypto")]
    #[test]
    fn parsed_keys_are_already_canonical() {
        let key = crate::SigningKey::from_hex(
            "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
        )
        .unwrap()
        .public_key();
        for text in [
            key.to_compressed_hex(),
            key.to_uncompressed_hex(),
            format!("0x{}", key.to_compressed_hex().to_ascii_uppercase()),
        ] {
            let parsed = parse_circle_public_key(&text).unwrap();
            assert_eq!(parsed, key.to_compressed_hex());
            assert_eq!(canonical_circle_public_key(&parsed), Ok(parsed.clone()));
        }
        // Well-formed text, but no point on the curve has this x.
        let off_curve = format!("02{}", "ff".repeat(32));
        assert!(canonical_circle_public_key(&off_curve).is_ok());
        assert!(parse_circle_public_key(&off_curve).is_err());
    }
}
