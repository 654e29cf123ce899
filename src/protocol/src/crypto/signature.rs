//! Recoverable signatures, and the signer recovered from one.

use std::fmt;
use std::str::FromStr;

use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, VerifyingKey};

use super::{CURVE_ORDER, HALF_CURVE_ORDER, PublicKey, SignatureError, decode_hex, eip191_hash};

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
