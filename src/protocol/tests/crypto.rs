//! Keys, addresses and EIP-191 signatures against vectors computed by
//! ethers.js, the EIP-55 examples, and every error path.

#![cfg(feature = "crypto")]

use std::path::PathBuf;

use circle_protocol::{
    Address, HexError, KeyError, PublicKey, Signature, SignatureError, SigningKey, eip191_hash,
    keccak256, recover_personal_signer,
};
use serde_json::Value;

/// secp256k1 group order n, big-endian.
const N: [u8; 32] = hex_literal("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");

const fn hex_literal(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex"),
        }
    }
    let s = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// How many vectors ethers.js computed; a truncated or emptied file fails
/// here instead of passing with less to check.
const VECTOR_COUNT: usize = 20;

/// The vectors (`tests/vectors/eip191.json`, computed by ethers.js): the
/// repository's copy is the truth the signer is held to.
fn vectors() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/eip191.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap();
    let vectors = json["vectors"].as_array().unwrap().clone();
    assert_eq!(vectors.len(), VECTOR_COUNT, "{}", path.display());
    vectors
}

fn field<'a>(vector: &'a Value, name: &str) -> &'a str {
    vector[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector lacks {name}"))
}

fn no_0x(s: &str) -> &str {
    s.strip_prefix("0x").unwrap_or(s)
}

/// n - s, big-endian.
fn negate_mod_n(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0);
    out
}

#[test]
fn every_vector_matches_ethers_byte_for_byte() {
    for (i, vector) in vectors().iter().enumerate() {
        let message = field(vector, "message");
        let context = format!("vector {i} ({message:?})");

        let key = SigningKey::from_hex(field(vector, "private_key")).unwrap();
        let public = key.public_key();
        assert_eq!(
            public.to_compressed_hex(),
            no_0x(field(vector, "public_key_compressed")),
            "{context}"
        );
        assert_eq!(
            public.to_uncompressed_hex(),
            no_0x(field(vector, "public_key_uncompressed")),
            "{context}"
        );
        assert_eq!(
            public.address().to_checksum_string(),
            field(vector, "address"),
            "{context}"
        );
        assert_eq!(key.address(), public.address());
        assert_eq!(
            format!("0x{}", hex::encode(eip191_hash(message.as_bytes()))),
            field(vector, "eip191_hash"),
            "{context}"
        );

        // RFC 6979 makes signing deterministic, so ours must equal ethers'.
        let expected = field(vector, "signature").to_ascii_lowercase();
        let signed = key.sign_personal_message(message);
        assert_eq!(signed.to_hex(), expected, "{context}");

        // Both encodings of the public key parse back to the same key.
        assert_eq!(
            PublicKey::from_hex(field(vector, "public_key_compressed")).unwrap(),
            public
        );
        assert_eq!(
            PublicKey::from_hex(field(vector, "public_key_uncompressed")).unwrap(),
            public
        );
        assert_eq!(
            Address::from_hex(field(vector, "address")).unwrap(),
            public.address()
        );

        // Recovery from the given signature, with v = 27/28 and with v = 0/1.
        let signature = Signature::from_hex(&expected).unwrap();
        assert_eq!(
            recover_personal_signer(message, &signature),
            Ok(public),
            "{context}"
        );
        let v = signature.0[64];
        assert!(v == 27 || v == 28, "{context}: v = {v}");
        let mut zero_one = signature;
        zero_one.0[64] = v - 27;
        assert_eq!(
            recover_personal_signer(message, &zero_one),
            Ok(public),
            "{context}"
        );

        // The malleable twin (r, n - s, flipped v) is a valid ECDSA signature
        // of the same key, and must still be refused.
        let mut high_s = signature;
        high_s.0[32..64].copy_from_slice(&negate_mod_n(&signature.0[32..64]));
        high_s.0[64] = if v == 27 { 28 } else { 27 };
        assert_eq!(
            recover_personal_signer(message, &high_s),
            Err(SignatureError::HighS),
            "{context}"
        );

        // Any single flipped bit (in r, s or v's parity) or another message
        // must not recover the same key.
        for byte in 0..65 {
            for bit in [0u8, 3, 7] {
                let mut flipped = signature;
                flipped.0[byte] ^= 1 << bit;
                if let Ok(other) = recover_personal_signer(message, &flipped) {
                    assert_ne!(other, public, "{context}: bit {bit} of byte {byte}");
                }
            }
        }
        let other_message = format!("{message}.");
        if let Ok(other) = recover_personal_signer(&other_message, &signature) {
            assert_ne!(other, public, "{context}: other message");
        }
    }
}

#[test]
fn signing_is_low_s_and_round_trips() {
    let key =
        SigningKey::from_hex("0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
            .unwrap();
    let half_n = hex_literal("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");
    for i in 0..64 {
        let message = format!("message number {i} ✓");
        let signature = key.sign_personal_message(&message);
        assert!(signature.0[32..64] <= half_n[..], "high s for {message}");
        assert!(matches!(signature.0[64], 27 | 28));
        assert_eq!(
            recover_personal_signer(&message, &signature),
            Ok(key.public_key())
        );
        assert_eq!(Signature::from_hex(&signature.to_hex()), Ok(signature));
        assert_eq!(signature.to_string().parse::<Signature>(), Ok(signature));
    }
}

#[test]
fn keccak_and_eip191_known_values() {
    assert_eq!(
        hex::encode(keccak256(b"hello")),
        "1c8aff950685c2ed4bc3174f3472287b56d9517b9c948127319a09a7a36deac8"
    );
    // The prefix counts bytes, not characters: "✓" is 3 bytes.
    let mut manual = b"\x19Ethereum Signed Message:\n3".to_vec();
    manual.extend_from_slice("✓".as_bytes());
    assert_eq!(eip191_hash("✓".as_bytes()), keccak256(&manual));
}

const EIP55_EXAMPLES: [&str; 8] = [
    // From EIP-55 itself.
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    // All caps and all lower, also from EIP-55.
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
];

#[test]
fn eip55_examples() {
    for example in EIP55_EXAMPLES {
        let address = Address::from_hex(example).unwrap();
        assert_eq!(address.to_checksum_string(), example);
        assert_eq!(address.to_string(), example);
        assert_eq!(example.parse::<Address>(), Ok(address));
        // Without 0x, all lowercase and all uppercase carry no checksum and
        // are accepted.
        assert_eq!(Address::from_hex(&example[2..]), Ok(address));
        assert_eq!(
            Address::from_hex(&example.to_ascii_lowercase()),
            Ok(address)
        );
        assert_eq!(
            Address::from_hex(&format!("0x{}", example[2..].to_ascii_uppercase())),
            Ok(address)
        );
        assert_eq!(format!("{address:?}"), format!("Address({example})"));
    }
}

#[test]
fn bad_mixed_case_address_is_rejected() {
    let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    // Flip the case of each letter in turn: every single change breaks the checksum.
    for (i, c) in good.char_indices().skip(2) {
        if !c.is_ascii_alphabetic() {
            continue;
        }
        let mut bad = good.to_owned();
        let flipped = if c.is_ascii_uppercase() {
            c.to_ascii_lowercase()
        } else {
            c.to_ascii_uppercase()
        };
        bad.replace_range(i..i + 1, &flipped.to_string());
        let error = Address::from_hex(&bad).unwrap_err();
        assert_eq!(
            error,
            KeyError::AddressChecksum {
                expected: good.to_owned()
            },
            "{bad}"
        );
        assert!(error.to_string().contains(good), "{error}");
    }
}

#[test]
fn address_errors() {
    assert_eq!(
        Address::from_hex("0x1234"),
        Err(KeyError::AddressLength { got: 2 })
    );
    assert_eq!(
        Address::from_hex(""),
        Err(KeyError::AddressLength { got: 0 })
    );
    assert_eq!(
        Address::from_hex(&format!("0x{}", "ab".repeat(21))),
        Err(KeyError::AddressLength { got: 21 })
    );
    assert_eq!(
        Address::from_hex("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg"),
        Err(KeyError::NotHex {
            what: "address",
            problem: HexError::InvalidCharacter { position: 39 }
        })
    );
    assert_eq!(
        Address::from_hex("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe"),
        Err(KeyError::NotHex {
            what: "address",
            problem: HexError::OddLength { digits: 39 }
        })
    );
    assert_eq!(
        Address::from_hex(" 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
        Err(KeyError::NotHex {
            what: "address",
            problem: HexError::InvalidCharacter { position: 0 }
        })
    );
    assert_eq!(
        KeyError::AddressLength { got: 2 }.to_string(),
        "address must be 20 bytes (40 hex digits), got 2"
    );
}

#[test]
fn private_key_errors() {
    assert_eq!(
        SigningKey::from_hex(&"11".repeat(31)).unwrap_err(),
        KeyError::PrivateKeyLength { got: 31 }
    );
    assert_eq!(
        KeyError::PrivateKeyLength { got: 31 }.to_string(),
        "private key must be 32 bytes (64 hex digits), got 31"
    );
    assert_eq!(
        SigningKey::from_hex(&"11".repeat(33)).unwrap_err(),
        KeyError::PrivateKeyLength { got: 33 }
    );
    assert_eq!(
        SigningKey::from_hex("").unwrap_err(),
        KeyError::PrivateKeyLength { got: 0 }
    );
    assert_eq!(
        SigningKey::from_hex(&format!("0x{}", "1".repeat(63))).unwrap_err(),
        KeyError::NotHex {
            what: "private key",
            problem: HexError::OddLength { digits: 63 }
        }
    );
    let error = SigningKey::from_hex(&format!("{}zz", "1".repeat(62))).unwrap_err();
    assert_eq!(
        error,
        KeyError::NotHex {
            what: "private key",
            problem: HexError::InvalidCharacter { position: 62 }
        }
    );
    assert_eq!(
        error.to_string(),
        "private key is not hex: invalid hex character at position 62"
    );
    assert_eq!(
        SigningKey::from_hex(&"00".repeat(32)).unwrap_err(),
        KeyError::PrivateKeyZero
    );
    assert_eq!(
        SigningKey::from_bytes(&[0; 32]).unwrap_err(),
        KeyError::PrivateKeyZero
    );
    assert_eq!(
        SigningKey::from_bytes(&N).unwrap_err(),
        KeyError::PrivateKeyOutOfRange
    );
    let mut n_plus_one = N;
    n_plus_one[31] += 1;
    assert_eq!(
        SigningKey::from_bytes(&n_plus_one).unwrap_err(),
        KeyError::PrivateKeyOutOfRange
    );
    assert_eq!(
        SigningKey::from_hex(&"ff".repeat(32)).unwrap_err(),
        KeyError::PrivateKeyOutOfRange
    );
    let mut n_minus_one = N;
    n_minus_one[31] -= 1;
    assert!(SigningKey::from_bytes(&n_minus_one).is_ok());
    let mut one = [0u8; 32];
    one[31] = 1;
    assert!(SigningKey::from_bytes(&one).is_ok());
}

#[test]
fn private_key_whitespace_prefix_and_debug() {
    let hex = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    let plain = SigningKey::from_hex(hex).unwrap();
    for variant in [
        format!("0x{hex}"),
        format!("  0x{hex}\n"),
        format!("\t{}\r\n", hex.to_ascii_uppercase()),
    ] {
        let key = SigningKey::from_hex(&variant).unwrap();
        assert_eq!(key.public_key(), plain.public_key());
    }
    let debug = format!("{plain:?}");
    assert!(!debug.contains(hex), "{debug}");
    assert!(!debug.to_ascii_lowercase().contains(&hex[..16]), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    assert!(
        debug.contains("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"),
        "{debug}"
    );
}

const GENERATOR_COMPRESSED: &str =
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const GENERATOR_UNCOMPRESSED: &str = "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8";

#[test]
fn public_key_forms() {
    let g = PublicKey::from_hex(GENERATOR_COMPRESSED).unwrap();
    assert_eq!(PublicKey::from_hex(GENERATOR_UNCOMPRESSED), Ok(g));
    assert_eq!(
        PublicKey::from_hex(&format!("0x{}", GENERATOR_COMPRESSED.to_ascii_uppercase())),
        Ok(g)
    );
    assert_eq!(g.to_compressed_hex(), GENERATOR_COMPRESSED);
    assert_eq!(g.to_uncompressed_hex(), GENERATOR_UNCOMPRESSED);
    assert_eq!(g.to_string(), GENERATOR_COMPRESSED);
    assert_eq!(GENERATOR_UNCOMPRESSED.parse::<PublicKey>(), Ok(g));
    assert_eq!(
        format!("{g:?}"),
        format!("PublicKey({GENERATOR_COMPRESSED})")
    );
    // The key of private key 1 is the generator; its address is well known.
    let mut one = [0u8; 32];
    one[31] = 1;
    assert_eq!(SigningKey::from_bytes(&one).unwrap().public_key(), g);
    assert_eq!(
        g.address().to_checksum_string(),
        "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
    );
}

#[test]
fn public_key_errors() {
    for (input, got) in [
        ("", 0),
        ("02", 1),
        (&"02".repeat(32) as &str, 32),
        (&"02".repeat(34), 34),
        (&"04".repeat(64), 64),
    ] {
        assert_eq!(
            PublicKey::from_hex(input),
            Err(KeyError::PublicKeyLength { got }),
            "{input}"
        );
    }
    // A 33-byte key must be compressed, a 65-byte one uncompressed; the
    // hybrid 0x06/0x07 encodings are refused.
    let compressed_as_04 = format!("04{}", &GENERATOR_COMPRESSED[2..]);
    assert_eq!(
        PublicKey::from_hex(&compressed_as_04),
        Err(KeyError::PublicKeyPrefix { len: 33, got: 0x04 })
    );
    for prefix in ["02", "03", "06", "07", "00"] {
        let hybrid = format!("{prefix}{}", &GENERATOR_UNCOMPRESSED[2..]);
        let got = u8::from_str_radix(prefix, 16).unwrap();
        assert_eq!(
            PublicKey::from_hex(&hybrid),
            Err(KeyError::PublicKeyPrefix { len: 65, got }),
            "{hybrid}"
        );
    }
    assert_eq!(
        KeyError::PublicKeyPrefix { len: 65, got: 6 }.to_string(),
        "public key of 65 bytes must start with 0x04, got 0x06"
    );
    assert_eq!(
        KeyError::PublicKeyPrefix { len: 33, got: 4 }.to_string(),
        "public key of 33 bytes must start with 0x02 or 0x03, got 0x04"
    );
    // x beyond the field, x = 5 (no point has it), and the generator's x with
    // a wrong y are not points on the curve.
    let not_on_curve = [
        format!("02{}", "ff".repeat(32)),
        format!("03{}05", "00".repeat(31)),
        format!("{}9", &GENERATOR_UNCOMPRESSED[..129]),
    ];
    for input in &not_on_curve {
        assert_eq!(
            PublicKey::from_hex(input),
            Err(KeyError::PublicKeyNotOnCurve),
            "{input}"
        );
    }
    assert_eq!(
        PublicKey::from_hex("0xg2"),
        Err(KeyError::NotHex {
            what: "public key",
            problem: HexError::InvalidCharacter { position: 0 }
        })
    );
    assert_eq!(
        PublicKey::from_hex(&format!(" {GENERATOR_COMPRESSED}")),
        Err(KeyError::NotHex {
            what: "public key",
            problem: HexError::InvalidCharacter { position: 0 }
        })
    );
}

/// A valid signature to mutate: the first vector's.
fn sample() -> (String, Signature, PublicKey) {
    let vector = &vectors()[0];
    (
        field(vector, "message").to_owned(),
        Signature::from_hex(field(vector, "signature")).unwrap(),
        PublicKey::from_hex(field(vector, "public_key_compressed")).unwrap(),
    )
}

#[test]
fn signature_parse_errors() {
    let (_, signature, _) = sample();
    let hex = signature.to_hex();
    assert_eq!(Signature::from_hex(&hex[2..]), Ok(signature));
    assert_eq!(
        Signature::from_hex(&hex.to_ascii_uppercase()[2..]),
        Ok(signature)
    );
    assert_eq!(
        Signature::from_hex(&hex[..hex.len() - 2]),
        Err(SignatureError::WrongLength { got: 64 })
    );
    assert_eq!(
        Signature::from_hex(&format!("{hex}00")),
        Err(SignatureError::WrongLength { got: 66 })
    );
    assert_eq!(
        Signature::from_hex(""),
        Err(SignatureError::WrongLength { got: 0 })
    );
    assert_eq!(
        Signature::from_hex(&hex[..hex.len() - 1]),
        Err(SignatureError::NotHex(HexError::OddLength { digits: 129 }))
    );
    assert_eq!(
        Signature::from_hex(&format!("0x{}", "g".repeat(130))),
        Err(SignatureError::NotHex(HexError::InvalidCharacter {
            position: 0
        }))
    );
    assert_eq!(
        SignatureError::WrongLength { got: 64 }.to_string(),
        "signature must be 65 bytes (130 hex digits: r ‖ s ‖ v), got 64"
    );
}

#[test]
fn signature_recovery_errors() {
    let (message, signature, public) = sample();
    assert_eq!(recover_personal_signer(&message, &signature), Ok(public));

    for v in [2u8, 3, 26, 29, 30, 35, 255] {
        let mut bad = signature;
        bad.0[64] = v;
        assert_eq!(
            recover_personal_signer(&message, &bad),
            Err(SignatureError::InvalidRecoveryId(v)),
            "v = {v}"
        );
    }
    assert_eq!(
        SignatureError::InvalidRecoveryId(29).to_string(),
        "signature recovery byte v must be 27, 28, 0 or 1, got 29"
    );

    let with_r = |r: [u8; 32]| {
        let mut bad = signature;
        bad.0[..32].copy_from_slice(&r);
        bad
    };
    let with_s = |s: [u8; 32]| {
        let mut bad = signature;
        bad.0[32..64].copy_from_slice(&s);
        bad
    };
    assert_eq!(
        recover_personal_signer(&message, &with_r([0; 32])),
        Err(SignatureError::InvalidR)
    );
    assert_eq!(
        recover_personal_signer(&message, &with_r(N)),
        Err(SignatureError::InvalidR)
    );
    assert_eq!(
        recover_personal_signer(&message, &with_r([0xff; 32])),
        Err(SignatureError::InvalidR)
    );
    assert_eq!(
        recover_personal_signer(&message, &with_s([0; 32])),
        Err(SignatureError::InvalidS)
    );
    assert_eq!(
        recover_personal_signer(&message, &with_s(N)),
        Err(SignatureError::InvalidS)
    );
    let half_n_plus_one =
        hex_literal("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a1");
    assert_eq!(
        recover_personal_signer(&message, &with_s(half_n_plus_one)),
        Err(SignatureError::HighS)
    );
    let mut n_minus_one = N;
    n_minus_one[31] -= 1;
    assert_eq!(
        recover_personal_signer(&message, &with_s(n_minus_one)),
        Err(SignatureError::HighS)
    );
    // r = 5 is in range, but no curve point has x = 5: nothing to recover.
    let mut five = [0u8; 32];
    five[31] = 5;
    assert_eq!(
        recover_personal_signer(&message, &with_r(five)),
        Err(SignatureError::InvalidSignature)
    );
}

#[test]
fn garbage_never_panics() {
    let long = "f".repeat(10_000);
    let inputs = [
        "",
        "0x",
        "0X",
        "0x0x",
        "x",
        " ",
        "\n",
        "é",
        "0xé",
        "💥💥",
        "--",
        "0x-1",
        &long,
        "\u{0}",
        "0x\u{0}\u{0}",
    ];
    for input in inputs {
        assert!(SigningKey::from_hex(input).is_err(), "{input:?}");
        assert!(PublicKey::from_hex(input).is_err(), "{input:?}");
        assert!(Address::from_hex(input).is_err(), "{input:?}");
        assert!(Signature::from_hex(input).is_err(), "{input:?}");
        let (_, signature, _) = sample();
        let _ = recover_personal_signer(input, &signature);
    }
    // Every possible v byte and arbitrary r, s give an answer, not a panic.
    for v in 0..=255u8 {
        let mut bytes = [v; 65];
        bytes[64] = v;
        let _ = recover_personal_signer("m", &Signature(bytes));
    }
}
