//! What can be wrong with a key, an address or a signature.

/// Why a piece of text is not the hexadecimal it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// A character that is not `0-9`, `a-f` or `A-F`. The character itself is
    /// not repeated, because the text may be (a mistyped) secret.
    #[error("invalid hex character at position {position}")]
    InvalidCharacter {
        /// Position of the character (in characters, after any `0x` prefix).
        position: usize,
    },
    /// An odd number of hex digits, so the last byte is incomplete.
    #[error("odd number of hex digits ({digits}); every byte needs two")]
    OddLength {
        /// How many hex digits there were.
        digits: usize,
    },
}

/// A private key, public key or address that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not hexadecimal.
    #[error("{what} is not hex: {problem}")]
    NotHex {
        /// `"private key"`, `"public key"` or `"address"`.
        what: &'static str,
        /// What is wrong with the hex.
        problem: HexError,
    },
    /// A private key must be exactly 32 bytes.
    #[error("private key must be 32 bytes (64 hex digits), got {got}")]
    PrivateKeyLength {
        /// The number of bytes given.
        got: usize,
    },
    /// Zero is not a valid secp256k1 private key.
    #[error("private key is zero, which is not a valid secp256k1 key")]
    PrivateKeyZero,
    /// A private key must be below the group order n.
    #[error("private key is not below the secp256k1 group order n (0xffff…4141)")]
    PrivateKeyOutOfRange,
    /// A public key must be 33 (compressed) or 65 (uncompressed) bytes.
    #[error("public key must be 33 bytes (compressed) or 65 bytes (uncompressed), got {got}")]
    PublicKeyLength {
        /// The number of bytes given.
        got: usize,
    },
    /// The first byte does not match the encoding its length implies. This
    /// also rejects the rarely used "hybrid" encodings (`0x06`/`0x07`), which
    /// the underlying library would otherwise accept.
    #[error(
        "public key of {len} bytes must start with {}, got 0x{got:02x}",
        if *len == 33 { "0x02 or 0x03" } else { "0x04" }
    )]
    PublicKeyPrefix {
        /// Length of the key in bytes (33 or 65).
        len: usize,
        /// The first byte found.
        got: u8,
    },
    /// Well-formed encoding, but not a point on the curve.
    #[error("public key is not a point on the secp256k1 curve")]
    PublicKeyNotOnCurve,
    /// An address must be exactly 20 bytes.
    #[error("address must be 20 bytes (40 hex digits), got {got}")]
    AddressLength {
        /// The number of bytes given.
        got: usize,
    },
    /// Mixed-case address whose letter case is not its EIP-55 checksum: most
    /// likely a typo, so it is refused rather than silently accepted.
    #[error(
        "address has mixed letter case but is not a valid EIP-55 checksum (expected {expected})"
    )]
    AddressChecksum {
        /// The correctly checksummed form of the same 20 bytes.
        expected: String,
    },
}

/// A signature that could not be parsed or from which no signer can be
/// recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The text is not hexadecimal.
    #[error("signature is not hex: {0}")]
    NotHex(HexError),
    /// A signature must be exactly 65 bytes.
    #[error("signature must be 65 bytes (130 hex digits: r ‖ s ‖ v), got {got}")]
    WrongLength {
        /// The number of bytes given.
        got: usize,
    },
    /// The last byte `v` is not 27, 28, 0 or 1.
    #[error("signature recovery byte v must be 27, 28, 0 or 1, got {0}")]
    InvalidRecoveryId(u8),
    /// `r` is zero or not below the group order n.
    #[error("signature r is zero or not below the secp256k1 group order")]
    InvalidR,
    /// `s` is zero or not below the group order n.
    #[error("signature s is zero or not below the secp256k1 group order")]
    InvalidS,
    /// `s > n/2`: a malleable signature (EIP-2), refused.
    #[error(
        "signature has a high s value (s > n/2); malleable signatures are refused, use the low-s form"
    )]
    HighS,
    /// The numbers are in range, but no public key fits them (for example
    /// `r` is not the x coordinate of any curve point).
    #[error("no public key can be recovered from this signature")]
    InvalidSignature,
}
