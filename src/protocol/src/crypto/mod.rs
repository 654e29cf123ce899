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

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

// k256 (RustCrypto) rather than libsecp256k1: pure Rust, so the native and
// the wasm32 builds run the same code and neither needs a C compiler.
use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, VerifyingKey};
use sha3::{Digest, Keccak256};

mod error;

pub use error::{HexError, KeyError, SignatureError};

/// The secp256k1 group order n, big-endian.
const CURVE_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// n / 2 (rounded down), big-endian: the largest `s` a canonical ("low-s")
/// signature may have. Ethereum (EIP-2) rejects anything above it because
/// `(r, n - s)` is a second valid signature for the same message, which would
/// make signatures malleable.
const HALF_CURVE_ORDER: [u8; 32] = [
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
fn decode_hex(text: &str) -> Result<Vec<u8>, HexError> {
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

fn strip_0x(text: &str) -> &str {
    text.strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text)
}

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
pub struct PublicKey(VerifyingKey);

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

/// A 20-byte Ethereum address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// Parses 20 bytes of hex, `0x` optional.
    ///
    /// All-lowercase and all-uppercase are accepted as they carry no
    /// checksum (PROTOCOL.md: "any letter case"); mixed case must be the
    /// correct EIP-55 checksum, because a wrong one means a typo.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = decode_hex(s).map_err(|problem| KeyError::NotHex {
            what: "address",
            problem,
        })?;
        let array: [u8; 20] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::AddressLength { got: bytes.len() })?;
        let address = Address(array);
        let digits = strip_0x(s);
        let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper {
            let expected = address.to_checksum_string();
            if expected[2..] != *digits {
                return Err(KeyError::AddressChecksum { expected });
            }
        }
        Ok(address)
    }

    /// `0x` followed by the EIP-55 mixed-case checksum encoding: a letter is
    /// upper case when the matching nibble of `keccak256(lowercase hex)` is
    /// 8 or more.
    pub fn to_checksum_string(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = if i % 2 == 0 {
                hash[i / 2] >> 4
            } else {
                hash[i / 2] & 0x0f
            };
            out.push(if nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        out
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_checksum_string())
    }
}

/// The EIP-55 checksummed form, as [`Address::to_checksum_string`].
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum_string())
    }
}

/// As [`Address::from_hex`].
impl FromStr for Address {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// A 65-byte recoverable signature, `r ‖ s ‖ v`, as wallets send it.
///
/// Holding one says nothing about its validity: [`recover_personal_signer`]
/// checks `v`, the ranges of `r` and `s`, and low `s`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 65]);

impl Signature {
    /// Parses 65 bytes of hex (130 digits), `0x` optional.
    pub fn from_hex(s: &str) -> Result<Self, SignatureError> {
        let bytes = decode_hex(s).map_err(SignatureError::NotHex)?;
        let array: [u8; 65] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SignatureError::WrongLength { got: bytes.len() })?;
        Ok(Signature(array))
    }

    /// `0x` followed by 130 lowercase hex digits, the form wallets produce.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

/// As [`Signature::to_hex`].
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// As [`Signature::from_hex`].
impl FromStr for Signature {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// Recovers the public key that made an EIP-191 `personal_sign` signature
/// over `message`.
///
/// `v` may be 27/28 (wallets) or 0/1 (some libraries); anything else is
/// [`SignatureError::InvalidRecoveryId`]. High-`s` signatures are refused
/// with [`SignatureError::HighS`] (EIP-2), so each message and key has
/// exactly one accepted signature.
///
/// A successful recovery only says *some* key signed: the caller must
/// compare the result with the key or address it expects.
///
/// # Cost
///
/// This is the expensive part of a sign-in check. Measured with
/// `cargo run --release -p circle_protocol --example recover_cost` on an
/// AMD EPYC (2 cores, shared with other builds; the fastest of several
/// rounds): about 85 µs per recovery with k256, against about 45 µs with
/// libsecp256k1 (the C library used before), so 1.9 times as long. The gap
/// is k256's point arithmetic (complete addition formulas, about two thirds
/// of the time) and libsecp256k1's precomputed multiples of the generator;
/// neither is ours to change. See the crate README.
pub fn recover_personal_signer(
    message: &str,
    signature: &Signature,
) -> Result<PublicKey, SignatureError> {
    let bytes = &signature.0;
    let v = bytes[64];
    // Ids 2 and 3 (r >= n) are not expressible in Ethereum's v byte.
    let y_odd = match v {
        0 | 27 => false,
        1 | 28 => true,
        other => return Err(SignatureError::InvalidRecoveryId(other)),
    };
    let r: &[u8; 32] = bytes[..32]
        .try_into()
        .map_err(|_| SignatureError::InvalidSignature)?;
    let s: &[u8; 32] = bytes[32..64]
        .try_into()
        .map_err(|_| SignatureError::InvalidSignature)?;
    // Range checks first so the error names the culprit; k256 would only
    // say "invalid".
    if *r == [0u8; 32] || *r >= CURVE_ORDER {
        return Err(SignatureError::InvalidR);
    }
    if *s == [0u8; 32] || *s >= CURVE_ORDER {
        return Err(SignatureError::InvalidS);
    }
    // k256's recovery accepts high s, so the EIP-2 rule is ours to enforce.
    if *s > HALF_CURVE_ORDER {
        return Err(SignatureError::HighS);
    }
    let signature = EcdsaSignature::from_scalars(k256::FieldBytes::from(*r), *s)
        .map_err(|_| SignatureError::InvalidSignature)?;
    let digest = eip191_hash(message.as_bytes());
    // Fails when r is not the x coordinate of a curve point, or when the
    // recovered point would be the point at infinity.
    VerifyingKey::recover_from_prehash(&digest, &signature, RecoveryId::new(y_odd, false))
        .map(PublicKey)
        .map_err(|_| SignatureError::InvalidSignature)
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
