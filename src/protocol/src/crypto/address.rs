//! Ethereum addresses, EIP-55 checksummed.

use std::fmt;
use std::str::FromStr;

use super::{KeyError, decode_hex, keccak256, strip_0x};

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
