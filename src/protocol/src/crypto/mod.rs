//! Ethereum-style keys, addresses and EIP-191 `personal_sign` signatures on
//! secp256k1 (PROTOCOL.md, `authenticate`).
//!
//! Everything here must agree byte for byte with what MetaMask, ethers.js
//! `Wallet.signMessage` and Python's `eth_account` produce, because those are
//! the signers our clients use. The tests check that against vectors computed
//! with ethers.js.
//!
//! Parsing never panics: every malformed input is a [`KeyError`] or a
//! [`SignatureError`] that says what was wrong.
//!
//! One file per thing: [`KeyError`] and the other errors in `errors`,
//! private and public keys in `keys`, addresses in `address`, signatures
//! and signer recovery in `signature`; hashing and hex reading here.

// k256 (RustCrypto) rather than libsecp256k1: pure Rust, so the native and
// the wasm32 builds run the same code and neither needs a C compiler.

mod address;
mod errors;
mod keys;
mod signature;

pub use address::Address;
pub use errors::{HexError, KeyError, SignatureError};
pub use keys::{PublicKey, SigningKey};
pub use signature::{Signature, recover_personal_signer};

use sha3::{Digest, Keccak256};

/// The secp256k1 group order n, big-endian.
pub(crate) const CURVE_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// n / 2 (rounded down), big-endian: the largest `s` a canonical ("low-s")
/// signature may have. Ethereum (EIP-2) rejects anything above it because
/// `(r, n - s)` is a second valid signature for the same message, which would
/// make signatures malleable.
pub(crate) const HALF_CURVE_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

/// Keccak-256 (the original Keccak padding Ethereum uses, not NIST SHA3-256).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The EIP-191 (version `0x45`, "personal_sign") hash of `message`:
/// `keccak256("\x19Ethereum Signed Message:\n" + decimal byte length + message)`.
///
/// The length is the number of UTF-8 bytes, not characters, exactly as
/// wallets compute it.
pub fn eip191_hash(message: &[u8]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update(b"\x19Ethereum Signed Message:\n");
    hasher.update(message.len().to_string().as_bytes());
    hasher.update(message);
    hasher.finalize().into()
}

/// Strips an optional `0x`/`0X` prefix and decodes the rest.
pub(crate) fn decode_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let digits = strip_0x(text);
    if let Some(position) = digits.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(HexError::InvalidCharacter { position });
    }
    // All ASCII from here on, so bytes and characters agree.
    if !digits.len().is_multiple_of(2) {
        return Err(HexError::OddLength {
            digits: digits.len(),
        });
    }
    // Cannot fail after the checks above; map anyway rather than unwrap.
    hex::decode(digits).map_err(|_| HexError::InvalidCharacter { position: 0 })
}

pub(crate) fn strip_0x(text: &str) -> &str {
    text.strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_order_is_half_of_order() {
        // n is odd, so n = 2 * (n/2) + 1: double HALF_CURVE_ORDER and add one.
        let mut doubled = [0u8; 32];
        let mut carry = 1u16;
        for i in (0..32).rev() {
            let v = u16::from(HALF_CURVE_ORDER[i]) * 2 + carry;
            doubled[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0);
        assert_eq!(doubled, CURVE_ORDER);
    }

    #[test]
    fn keccak_of_empty_input() {
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn hex_errors() {
        assert_eq!(
            decode_hex("0xabz"),
            Err(HexError::InvalidCharacter { position: 2 })
        );
        assert_eq!(decode_hex("abc"), Err(HexError::OddLength { digits: 3 }));
        assert_eq!(decode_hex("0X0A"), Ok(vec![10]));
        assert_eq!(decode_hex(""), Ok(vec![]));
        assert_eq!(
            decode_hex("0x€"),
            Err(HexError::InvalidCharacter { position: 0 })
        );
    }
}
