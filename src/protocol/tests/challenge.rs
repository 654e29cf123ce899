//! The Sign-In with Ethereum challenge text and its RFC 3339 timestamps.

use circle_protocol::{
    ChallengeError, SignInChallenge, format_rfc3339_utc, is_valid_nonce, parse_rfc3339_utc,
};

/// The message of `docs/PROTOCOL.md`, written out by hand (it is also the last
/// message of `tests/vectors/eip191.json`, which ethers.js signed).
const EXPECTED: &str = "localhost:8443 wants you to sign in with your Ethereum account:
0x2c7536E3605D9C16a7a3D7b1898e529396a65c23

Sign in to circle \"demo\" (02aa).

URI: wss://localhost:8443/ws
Version: 1
Chain ID: 1
Nonce: abcdefghijklmnop
Issued At: 2026-11-25T09:00:00Z
Expiration Time: 2026-11-25T09:05:00Z
Resources:
- urn:circle:02aa";

fn sample() -> SignInChallenge {
    SignInChallenge {
        domain: "localhost:8443".into(),
        address: "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23".into(),
        circle_name: "demo".into(),
        circle_public_key: "02aa".into(),
        uri: "wss://localhost:8443/ws".into(),
        nonce: "abcdefghijklmnop".into(),
        issued_at: 1_795_597_200,
        expiration_time: 1_795_597_500,
    }
}

#[test]
fn to_message_matches_the_protocol_text() {
    let challenge = sample();
    assert_eq!(challenge.to_message(), EXPECTED);
    assert_eq!(challenge.to_string(), EXPECTED);
    assert!(!EXPECTED.ends_with('\n'));
    assert_eq!(challenge.validate(), Ok(()));
}

#[test]
fn to_message_matches_the_signed_vector() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/eip191.json"
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let siwe: Vec<&str> = json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["message"].as_str())
        .filter(|m| m.contains("wants you to sign in"))
        .collect();
    assert!(!siwe.is_empty());
    for message in siwe {
        assert_eq!(message, sample().to_message());
    }
}

#[test]
fn parse_round_trips() {
    let challenge = sample();
    assert_eq!(SignInChallenge::parse(EXPECTED), Ok(challenge.clone()));

    let tricky = SignInChallenge {
        domain: "circles.example.org".into(),
        address: "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB".into(),
        // Quotes, the separator `" (`, parentheses and non-ASCII in the name.
        circle_name: "say \"hi\" (to \"me\" (ok)) – ✓ 日本 \" (x".into(),
        circle_public_key: "0x03bcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
            .into(),
        uri: "ws://127.0.0.1:1/ws?x=1".into(),
        nonce: "Z".repeat(16) + "0123456789",
        issued_at: 0,
        expiration_time: 253_402_300_799,
    };
    assert_eq!(tricky.validate(), Ok(()));
    let message = tricky.to_message();
    assert_eq!(SignInChallenge::parse(&message), Ok(tricky.clone()));
    assert_eq!(
        SignInChallenge::parse(&message).unwrap().to_message(),
        message
    );

    let empty_name = SignInChallenge {
        circle_name: String::new(),
        ..sample()
    };
    assert_eq!(
        SignInChallenge::parse(&empty_name.to_message()),
        Ok(empty_name)
    );
}

/// `EXPECTED` with line `line` (1-based) replaced.
fn with_line(line: usize, text: &str) -> String {
    let mut lines: Vec<&str> = EXPECTED.split('\n').collect();
    lines[line - 1] = text;
    lines.join("\n")
}

fn error_line(error: &ChallengeError) -> Option<usize> {
    match error {
        ChallengeError::MissingLine { line, .. }
        | ChallengeError::BadLine { line, .. }
        | ChallengeError::BadValue { line, .. } => Some(*line),
        _ => None,
    }
}

#[test]
fn malformed_messages_name_the_line() {
    let cases: Vec<(usize, &str)> = vec![
        (1, "localhost:8443 wants you to sign in with your account:"),
        (1, " wants you to sign in with your Ethereum account:"),
        (
            1,
            "local host wants you to sign in with your Ethereum account:",
        ),
        (2, "0x2c7536E3605D9C16a7a3D7b1898e529396a65c2"),
        (2, "2c7536E3605D9C16a7a3D7b1898e529396a65c23"),
        (2, "0x2c7536E3605D9C16a7a3D7b1898e529396a65c2g"),
        (2, ""),
        (3, " "),
        (4, "Sign in to circle demo (02aa)."),
        (4, "Sign in to circle \"demo\" (02aa)"),
        (4, "Sign in to circle \"demo\" (02 aa)."),
        (4, "Sign in to circle \"demo\" ()."),
        (4, "Sign in to circle \"de\tmo\" (02aa)."),
        (4, "Sign into circle \"demo\" (02aa)."),
        (5, "x"),
        (6, "URI:wss://localhost:8443/ws"),
        (6, "URI: "),
        (6, "URI: wss://localhost:8443/ws "),
        (7, "Version: 2"),
        (8, "Chain ID: 5"),
        (9, "Nonce: abcdefghijklmno"),
        (9, "Nonce: abcdefghijklmno!"),
        (9, "Nonce: abcdefghijklmnop "),
        (10, "Issued At: 2026-11-25T09:00:00.000Z"),
        (10, "Issued At: 2026-11-25T09:00:00+00:00"),
        (10, "Issued At: 2026-11-25t09:00:00z"),
        (10, "Issued At: 2026-02-30T09:00:00Z"),
        (10, "Issued At: yesterday"),
        (11, "Expiration Time: 2026-11-25T09:05:00+01:00"),
        (11, "Expiration: 2026-11-25T09:05:00Z"),
        (12, "Resources: "),
        (13, "- urn:circle:02ab"),
        (13, "- urn:circle:"),
        (13, "- https://example.org"),
    ];
    for (line, text) in cases {
        let message = with_line(line, text);
        let error = SignInChallenge::parse(&message).unwrap_err();
        assert_eq!(error_line(&error), Some(line), "{text:?}: {error}");
        assert!(
            error.to_string().starts_with(&format!("line {line}")),
            "{error}"
        );
    }
}

#[test]
fn malformed_structure() {
    // Truncated after every line.
    let lines: Vec<&str> = EXPECTED.split('\n').collect();
    for keep in 1..lines.len() {
        let message = lines[..keep].join("\n");
        let error = SignInChallenge::parse(&message).unwrap_err();
        assert!(
            matches!(error, ChallengeError::MissingLine { line, .. } if line == keep + 1),
            "{keep}: {error}"
        );
    }
    assert!(matches!(
        SignInChallenge::parse(""),
        Err(ChallengeError::BadLine { line: 1, .. })
    ));
    assert_eq!(
        SignInChallenge::parse(&format!("{EXPECTED}\n")),
        Err(ChallengeError::TrailingText)
    );
    assert_eq!(
        SignInChallenge::parse(&format!("{EXPECTED}\n- urn:circle:02aa")),
        Err(ChallengeError::TrailingText)
    );
    // Windows line endings are not the message that was signed.
    assert!(SignInChallenge::parse(&EXPECTED.replace('\n', "\r\n")).is_err());
    // An extra line in the middle shifts everything: caught at line 4.
    let extra = EXPECTED.replacen("\n\n", "\n\n\n", 1);
    assert!(matches!(
        SignInChallenge::parse(&extra),
        Err(ChallengeError::BadLine { line: 4, .. })
    ));
}

#[test]
fn errors_quote_at_most_a_little() {
    let huge = "x".repeat(100_000);
    let error = SignInChallenge::parse(&huge).unwrap_err();
    assert!(error.to_string().len() < 300, "{error}");
    let error = parse_rfc3339_utc(&huge).unwrap_err();
    assert!(error.to_string().len() < 300, "{error}");
}

#[test]
fn every_mutation_is_an_error_or_a_faithful_parse() {
    // Delete, duplicate or replace each character: parse must never panic,
    // and whatever it accepts must write back to exactly the same text.
    let chars: Vec<char> = EXPECTED.chars().collect();
    let mut candidates = Vec::new();
    for i in 0..chars.len() {
        let mut deleted = chars.clone();
        deleted.remove(i);
        candidates.push(deleted);
        let mut doubled = chars.clone();
        doubled.insert(i, chars[i]);
        candidates.push(doubled);
        for replacement in ['"', '\n', ' ', 'é', '0', ')'] {
            let mut replaced = chars.clone();
            replaced[i] = replacement;
            candidates.push(replaced);
        }
    }
    let mut accepted = 0;
    for candidate in candidates {
        let text: String = candidate.into_iter().collect();
        if let Ok(challenge) = SignInChallenge::parse(&text) {
            accepted += 1;
            assert_eq!(challenge.to_message(), text);
            assert_eq!(challenge.validate(), Ok(()));
        }
    }
    // Some mutations (inside the name, nonce or URI) are legitimately valid.
    assert!(accepted > 0);
}

#[test]
fn validate_rejects_what_would_not_round_trip() {
    let bad = [
        SignInChallenge {
            circle_name: "two\nlines".into(),
            ..sample()
        },
        SignInChallenge {
            circle_name: "carriage\rreturn".into(),
            ..sample()
        },
        SignInChallenge {
            circle_name: "line\u{2028}separator".into(),
            ..sample()
        },
        SignInChallenge {
            domain: String::new(),
            ..sample()
        },
        SignInChallenge {
            domain: "a b".into(),
            ..sample()
        },
        SignInChallenge {
            address: "0x1234".into(),
            ..sample()
        },
        SignInChallenge {
            circle_public_key: "02aa).\n- x".into(),
            ..sample()
        },
        SignInChallenge {
            circle_public_key: String::new(),
            ..sample()
        },
        SignInChallenge {
            uri: String::new(),
            ..sample()
        },
        SignInChallenge {
            uri: "wss://x/ ws".into(),
            ..sample()
        },
        SignInChallenge {
            nonce: "short".into(),
            ..sample()
        },
        SignInChallenge {
            issued_at: 253_402_300_800,
            ..sample()
        },
        SignInChallenge {
            expiration_time: u64::MAX,
            ..sample()
        },
    ];
    for challenge in bad {
        let error = challenge.validate().unwrap_err();
        assert!(
            matches!(error, ChallengeError::InvalidField { .. }),
            "{challenge:?}: {error}"
        );
        // And indeed the message does not parse back to the same value.
        assert_ne!(
            SignInChallenge::parse(&challenge.to_message()).as_ref(),
            Ok(&challenge)
        );
    }
    let error = SignInChallenge {
        circle_name: "a\nb".into(),
        ..sample()
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid circle_name: must not contain line breaks or other control characters"
    );
}

#[test]
fn nonces() {
    assert!(is_valid_nonce("abcdefghijklmnop"));
    assert!(is_valid_nonce("ABCDEFGH01234567"));
    assert!(is_valid_nonce(&"a".repeat(64)));
    assert!(!is_valid_nonce("abcdefghijklmno"));
    assert!(!is_valid_nonce(""));
    assert!(!is_valid_nonce("abcdefghijklmno-"));
    assert!(!is_valid_nonce("abcdefghijklmnoé"));
    assert!(!is_valid_nonce("abcdefghijklmno "));
    assert!(!is_valid_nonce("ééééééééééééééééé"));
}

#[test]
fn rfc3339_known_timestamps() {
    let known = [
        (0, "1970-01-01T00:00:00Z"),
        (59, "1970-01-01T00:00:59Z"),
        (86_399, "1970-01-01T23:59:59Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (951_868_800, "2000-03-01T00:00:00Z"),
        (1_709_210_096, "2024-02-29T12:34:56Z"),
        (1_795_597_200, "2026-11-25T09:00:00Z"),
        (1_795_650_376, "2026-11-25T23:46:16Z"),
        (4_102_444_800, "2100-01-01T00:00:00Z"),
        (4_107_456_000, "2100-02-28T00:00:00Z"),
        (4_107_542_400, "2100-03-01T00:00:00Z"),
        (253_402_300_799, "9999-12-31T23:59:59Z"),
    ];
    for (seconds, text) in known {
        assert_eq!(format_rfc3339_utc(seconds), text);
        assert_eq!(parse_rfc3339_utc(text), Ok(seconds), "{text}");
    }
}

#[test]
fn rfc3339_accepted_variants() {
    let base = 1_795_597_200;
    for text in [
        "2026-11-25T09:00:00Z",
        "2026-11-25T09:00:00.000Z",
        "2026-11-25T09:00:00.999999999Z",
        "2026-11-25T09:00:00+00:00",
        "2026-11-25T09:00:00.5+00:00",
        "2026-11-25t09:00:00z",
    ] {
        assert_eq!(parse_rfc3339_utc(text), Ok(base), "{text}");
    }
}

#[test]
fn rfc3339_rejected() {
    for text in [
        "",
        "2026-11-25",
        "2026-11-25T09:00:00",
        "2026-11-25 09:00:00Z",
        "2026-11-25T09:00:00+01:00",
        "2026-11-25T09:00:00-00:00",
        "2026-11-25T09:00:00.Z",
        "2026-11-25T09:00:00ZZ",
        "2026-11-25T09:00Z",
        "26-11-25T09:00:00Z",
        "+2026-11-25T09:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-11-25T24:00:00Z",
        "2026-11-25T09:60:00Z",
        "2016-12-31T23:59:60Z",
        "1969-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "2026-1a-25T09:00:00Z",
        "2026-11-25T09:00:0é",
        "2026-11-25T09:00:00é",
        "éééééééééééééééééééé",
        "10000-01-01T00:00:00Z",
    ] {
        let error = parse_rfc3339_utc(text).unwrap_err();
        assert!(
            matches!(error, ChallengeError::InvalidTimestamp { .. }),
            "{text}: {error}"
        );
    }
    assert_eq!(
        parse_rfc3339_utc("2023-02-29T00:00:00Z")
            .unwrap_err()
            .to_string(),
        "invalid RFC 3339 UTC timestamp \"2023-02-29T00:00:00Z\": no such day in that month"
    );
}

#[test]
fn rfc3339_round_trips_across_the_range() {
    // A prime stride visits many different times of day, days and years.
    let mut seconds = 0u64;
    while seconds <= 253_402_300_799 {
        let text = format_rfc3339_utc(seconds);
        assert_eq!(parse_rfc3339_utc(&text), Ok(seconds), "{text}");
        seconds += 7_919_993;
    }
}
