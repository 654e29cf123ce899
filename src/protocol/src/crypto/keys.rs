//! secp256k1 private and public keys.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use k256::ecdsa::VerifyingKey;

use super::{Address, CURVE_ORDER, KeyError, Signature, decode_hex, eip191_hash, keccak256};

/// A secp256k1 private key.
///
/// `Debug` shows the address, never the secret, so a key that ends up in a
/// log line or a panic message does not leak. The secret is zeroized when
/// the key (or a clone of it) is dropped.
#[derive(Clone)]
pub struct SigningKey(k256::ecdsa::SigningKey);

impl SigningKey {
    /// Parses 32 bytes of hex (64 digits), `0x` optional, surrounding
    /// whitespace (such as the newline at the end of a key file) ignored.
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        let bytes = decode_hex(hex.trim()).map_err(|problem| KeyError::NotHex {
            what: "private key",
            problem,
        })?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::PrivateKeyLength { got: bytes.len() })?;
        Self::from_bytes(&array)
    }

    /// Uses 32 big-endian bytes as the key; they must be in `1..n`.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        // Checked here (not only by the library) so the error says which bound failed.
        if bytes.iter().all(|&b| b == 0) {
            return Err(KeyError::PrivateKeyZero);
        }
        if *bytes >= CURVE_ORDER {
            return Err(KeyError::PrivateKeyOutOfRange);
        }
        k256::ecdsa::SigningKey::from_bytes(&k256::FieldBytes::from(*bytes))
            .map(SigningKey)
            .map_err(|_| KeyError::PrivateKeyOutOfRange)
    }

    /// The public key of this private key.
    pub fn public_key(&self) -> PublicKey {
        // Computed once, when the key was parsed: this is a copy.
        PublicKey(*self.0.verifying_key())
    }

    /// The Ethereum address of this key (shortcut for `public_key().address()`).
    pub fn address(&self) -> Address {
        self.public_key().address()
    }

    /// Signs `message` the way `personal_sign` / ethers.js `signMessage`
    /// does: an ECDSA signature over [`eip191_hash`] of its UTF-8 bytes, with
    /// an RFC 6979 deterministic nonce (so the same key and message always
    /// give the same signature), low `s`, and `v` = 27 or 28.
    pub fn sign_personal_message(&self, message: &str) -> Signature {
        let digest = eip191_hash(message.as_bytes());
        // RFC 6979 with no added entropy, so ethers.js computes the same
        // bytes. k256 normalises secp256k1 signatures to low s and flips the
        // recovery id's y parity to match (`NORMALIZE_S`); the tests
        // (`signing_is_low_s_and_round_trips`) would catch a change of that.
        let (signature, recovery_id) = self.0.sign_prehash_recoverable(&digest);
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(&signature.to_bytes());
        // The recovery id of a signature we made is 0 or 1 (2 and 3 need
        // r >= n, which has negligible probability), so this is 27 or 28.
        bytes[64] = 27 + (recovery_id.to_byte() & 1);
        Signature(bytes)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("address", &self.address().to_checksum_string())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A secp256k1 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub(super) VerifyingKey);

/// Hashes the compressed encoding, which is one-to-one with the point, so
/// equal keys hash alike (k256's key type has no `Hash` of its own).
impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.to_compressed_bytes().hash(state);
    }
}

impl PublicKey {
    /// Parses a compressed (33 bytes, `02`/`03…`) or uncompressed (65 bytes,
    /// `04…`) key from hex, `0x` optional. Surrounding whitespace is an error:
    /// keys arrive in JSON, where it has no business.
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        let bytes = decode_hex(hex).map_err(|problem| KeyError::NotHex {
            what: "public key",
            problem,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Parses a compressed (33 bytes) or uncompressed (65 bytes) SEC1 key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let prefix_ok = match (bytes.len(), bytes.first()) {
            (33, Some(0x02 | 0x03)) | (65, Some(0x04)) => true,
            (33 | 65, Some(_)) => false,
            (got, _) => return Err(KeyError::PublicKeyLength { got }),
        };
        if !prefix_ok {
            return Err(KeyError::PublicKeyPrefix {
                len: bytes.len(),
                got: bytes[0],
            });
        }
        VerifyingKey::from_sec1_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::PublicKeyNotOnCurve)
    }

    /// The 33-byte compressed SEC1 encoding.
    pub fn to_compressed_bytes(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out.copy_from_slice(self.0.to_sec1_point(true).as_bytes());
        out
    }

    /// The 65-byte uncompressed SEC1 encoding (`04 ‖ x ‖ y`).
    pub fn to_uncompressed_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out.copy_from_slice(self.0.to_sec1_point(false).as_bytes());
        out
    }

    /// Compressed form as lowercase hex without `0x` (66 digits): the form the
    /// protocol uses in results (`authenticate`, `whoami`).
    pub fn to_compressed_hex(&self) -> String {
        hex::encode(self.to_compressed_bytes())
    }

    /// Uncompressed form as lowercase hex without `0x` (130 digits).
    pub fn to_uncompressed_hex(&self) -> String {
        hex::encode(self.to_uncompressed_bytes())
    }

    /// The Ethereum address: the last 20 bytes of the Keccak-256 of the
    /// 64-byte uncompressed point (without its `04` prefix).
    pub fn address(&self) -> Address {
        let hash = keccak256(&self.to_uncompressed_bytes()[1..]);
        let mut address = [0u8; 20];
        address.copy_from_slice(&hash[12..]);
        Address(address)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_compressed_hex())
    }
}

/// Compressed lowercase hex, as [`PublicKey::to_compressed_hex`].
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_compressed_hex())
    }
}

/// As [`PublicKey::from_hex`].
impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_alike_whatever_their_encoding() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |key: &PublicKey| {
            let mut hasher = DefaultHasher::new();
            key.hash(&mut hasher);
            hasher.finish()
        };
        let key = SigningKey::from_bytes(&[7u8; 32]).unwrap().public_key();
        let compressed = PublicKey::from_bytes(&key.to_compressed_bytes()).unwrap();
        let uncompressed = PublicKey::from_bytes(&key.to_uncompressed_bytes()).unwrap();
        assert_eq!(compressed, uncompressed);
        assert_eq!(hash(&compressed), hash(&uncompressed));
    }
}
