//! The sign-in challenge: the Sign-In with Ethereum (EIP-4361) message that
//! `fetch_nonce` returns and the client signs (PROTOCOL.md, `fetch_nonce`).
//!
//! The text is built and parsed here, without any cryptography, so that a
//! client built without the `crypto` feature (for example one that hands the
//! message to a browser wallet) can still inspect what it is asked to sign.
//!
//! The message, byte for byte (lines end with `\n`, the last line has none):
//!
//! ```text
//! {domain} wants you to sign in with your Ethereum account:
//! {EIP-55 checksummed address}
//!
//! Sign in to circle "{circle name}" ({circle public key}).
//!
//! URI: {uri}
//! Version: 1
//! Chain ID: 1
//! Nonce: {nonce}
//! Issued At: {RFC 3339 UTC}
//! Expiration Time: {RFC 3339 UTC}
//! Resources:
//! - urn:circle:{circle public key}
//! ```

use std::fmt;

pub use crate::challenge_error::ChallengeError;
use crate::challenge_error::quote;
// Also reachable here, where they were defined before they had a module.
pub use crate::rfc3339::{MAX_RFC3339_UNIX_SECONDS, format_rfc3339_utc, parse_rfc3339_utc};

const HEADER_SUFFIX: &str = " wants you to sign in with your Ethereum account:";
const STATEMENT_PREFIX: &str = "Sign in to circle \"";
/// Separates the circle name from its public key in the statement. The
/// parser looks for its *last* occurrence, so a name may contain it.
const STATEMENT_MIDDLE: &str = "\" (";
const STATEMENT_SUFFIX: &str = ").";
const URI_PREFIX: &str = "URI: ";
const VERSION_LINE: &str = "Version: 1";
const CHAIN_ID_LINE: &str = "Chain ID: 1";
const NONCE_PREFIX: &str = "Nonce: ";
const ISSUED_AT_PREFIX: &str = "Issued At: ";
const EXPIRATION_PREFIX: &str = "Expiration Time: ";
const RESOURCES_LINE: &str = "Resources:";
const RESOURCE_PREFIX: &str = "- urn:circle:";

/// The shortest nonce the protocol allows.
pub const MIN_NONCE_LEN: usize = 16;

/// The fields of a sign-in challenge (EIP-4361 message), PROTOCOL.md
/// `fetch_nonce`.
///
/// A plain value: [`to_message`](Self::to_message) writes it out,
/// [`parse`](Self::parse) reads it back, and
/// [`validate`](Self::validate) says whether the two are exact inverses for
/// it. The server builds one per nonce and keeps it (or its message) to check
/// the signature against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInChallenge {
    /// The authority the client connected to, e.g. `localhost:8443`. No
    /// whitespace.
    pub domain: String,
    /// The signer's address, `0x` and 40 hex digits, EIP-55 checksummed as
    /// EIP-4361 requires. (Only the shape is checked here, as checking the
    /// checksum needs Keccak, which lives behind the `crypto` feature.)
    pub address: String,
    /// The circle's name. May contain quotes and any Unicode, but no line
    /// breaks or other control characters (they would break the line
    /// structure, or let a name fake further lines in a wallet's display).
    pub circle_name: String,
    /// The circle's public key as configured (hex, ASCII letters and digits
    /// only).
    pub circle_public_key: String,
    /// The WebSocket URL of the endpoint, e.g. `wss://localhost:8443/ws`. No
    /// whitespace.
    pub uri: String,
    /// Single-use nonce: at least [`MIN_NONCE_LEN`] ASCII letters or digits
    /// (EIP-4361 asks for at least 8; we ask for more).
    pub nonce: String,
    /// When the challenge was issued, unix seconds.
    pub issued_at: u64,
    /// When the challenge expires, unix seconds.
    pub expiration_time: u64,
}

impl SignInChallenge {
    /// Writes the exact message of PROTOCOL.md, without a trailing newline.
    ///
    /// Caller contract: the fields must pass [`validate`](Self::validate) for
    /// [`parse`](Self::parse) to read the message back and for wallets to
    /// show it as intended; in particular the circle name must not contain a
    /// line break. This method does not check (it cannot fail); the server
    /// validates circle names when it loads its configuration and calls
    /// `validate` on what it builds.
    pub fn to_message(&self) -> String {
        format!(
            "{domain}{HEADER_SUFFIX}\n\
             {address}\n\
             \n\
             {STATEMENT_PREFIX}{name}{STATEMENT_MIDDLE}{key}{STATEMENT_SUFFIX}\n\
             \n\
             {URI_PREFIX}{uri}\n\
             {VERSION_LINE}\n\
             {CHAIN_ID_LINE}\n\
             {NONCE_PREFIX}{nonce}\n\
             {ISSUED_AT_PREFIX}{issued_at}\n\
             {EXPIRATION_PREFIX}{expiration}\n\
             {RESOURCES_LINE}\n\
             {RESOURCE_PREFIX}{key}",
            domain = self.domain,
            address = self.address,
            name = self.circle_name,
            key = self.circle_public_key,
            uri = self.uri,
            nonce = self.nonce,
            issued_at = format_rfc3339_utc(self.issued_at),
            expiration = format_rfc3339_utc(self.expiration_time),
        )
    }

    /// Checks that every field can be written by
    /// [`to_message`](Self::to_message) and read back unchanged by
    /// [`parse`](Self::parse).
    pub fn validate(&self) -> Result<(), ChallengeError> {
        let invalid = |field: &'static str, reason: &str| ChallengeError::InvalidField {
            field,
            reason: reason.to_owned(),
        };
        if let Err(reason) = check_domain(&self.domain) {
            return Err(invalid("domain", reason));
        }
        if let Err(reason) = check_address(&self.address) {
            return Err(invalid("address", reason));
        }
        if let Err(reason) = check_circle_name(&self.circle_name) {
            return Err(invalid("circle_name", reason));
        }
        if let Err(reason) = check_circle_public_key(&self.circle_public_key) {
            return Err(invalid("circle_public_key", reason));
        }
        if let Err(reason) = check_uri(&self.uri) {
            return Err(invalid("uri", reason));
        }
        if !is_valid_nonce(&self.nonce) {
            return Err(invalid("nonce", NONCE_RULE));
        }
        if self.issued_at > MAX_RFC3339_UNIX_SECONDS {
            return Err(invalid("issued_at", YEAR_RULE));
        }
        if self.expiration_time > MAX_RFC3339_UNIX_SECONDS {
            return Err(invalid("expiration_time", YEAR_RULE));
        }
        Ok(())
    }

    /// Reads a message written by [`to_message`](Self::to_message).
    ///
    /// Strict: every fixed part must match exactly (line breaks are `\n`
    /// only, timestamps in the canonical `YYYY-MM-DDTHH:MM:SSZ` form), the
    /// fields must pass [`validate`](Self::validate), and both mentions of the
    /// circle public key must agree. Whatever it accepts, `to_message` writes
    /// back byte for byte. Errors name the offending line.
    pub fn parse(message: &str) -> Result<Self, ChallengeError> {
        let mut lines = Lines::new(message);

        let header = lines.next("`{domain} wants you to sign in with your Ethereum account:`")?;
        let domain = header
            .text
            .strip_suffix(HEADER_SUFFIX)
            .ok_or_else(|| header.bad())?;
        check_domain(domain).map_err(|reason| header.bad_value("domain", reason))?;

        let address = lines.next("the account address, `0x` and 40 hex digits")?;
        check_address(address.text).map_err(|reason| address.bad_value("address", reason))?;

        lines.next("an empty line")?.expect_exactly("")?;

        let statement =
            lines.next("`Sign in to circle \"{circle name}\" ({circle public key}).`")?;
        let (circle_name, statement_key) = statement
            .text
            .strip_prefix(STATEMENT_PREFIX)
            .and_then(|rest| rest.strip_suffix(STATEMENT_SUFFIX))
            .and_then(|inner| inner.rsplit_once(STATEMENT_MIDDLE))
            .ok_or_else(|| statement.bad())?;
        check_circle_name(circle_name)
            .map_err(|reason| statement.bad_value("circle name", reason))?;
        check_circle_public_key(statement_key)
            .map_err(|reason| statement.bad_value("circle public key", reason))?;

        lines.next("an empty line")?.expect_exactly("")?;

        let uri_line = lines.next("`URI: {uri}`")?;
        let uri = uri_line.strip_prefix(URI_PREFIX)?;
        check_uri(uri).map_err(|reason| uri_line.bad_value("URI", reason))?;

        lines.next("`Version: 1`")?.expect_exactly(VERSION_LINE)?;
        lines.next("`Chain ID: 1`")?.expect_exactly(CHAIN_ID_LINE)?;

        let nonce_line = lines.next("`Nonce: {nonce}`")?;
        let nonce = nonce_line.strip_prefix(NONCE_PREFIX)?;
        if !is_valid_nonce(nonce) {
            return Err(nonce_line.bad_value("nonce", NONCE_RULE));
        }

        let issued_line = lines.next("`Issued At: {RFC 3339 UTC}`")?;
        let issued_at = issued_line.canonical_time(issued_line.strip_prefix(ISSUED_AT_PREFIX)?)?;

        let expiration_line = lines.next("`Expiration Time: {RFC 3339 UTC}`")?;
        let expiration_time =
            expiration_line.canonical_time(expiration_line.strip_prefix(EXPIRATION_PREFIX)?)?;

        lines.next("`Resources:`")?.expect_exactly(RESOURCES_LINE)?;

        let resource_line = lines.next("`- urn:circle:{circle public key}`")?;
        let resource_key = resource_line.strip_prefix(RESOURCE_PREFIX)?;
        if resource_key != statement_key {
            return Err(resource_line.bad_value(
                "circle public key",
                "differs from the one in the statement (line 4)",
            ));
        }

        lines.finish()?;

        Ok(SignInChallenge {
            domain: domain.to_owned(),
            address: address.text.to_owned(),
            circle_name: circle_name.to_owned(),
            circle_public_key: statement_key.to_owned(),
            uri: uri.to_owned(),
            nonce: nonce.to_owned(),
            issued_at,
            expiration_time,
        })
    }
}

/// The message, as [`SignInChallenge::to_message`].
impl fmt::Display for SignInChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_message())
    }
}

const NONCE_RULE: &str = "must be at least 16 characters, all ASCII letters or digits";
const YEAR_RULE: &str = "must be at most 9999-12-31T23:59:59Z (253402300799)";

fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("must not be empty");
    }
    if domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    Ok(())
}

fn check_address(address: &str) -> Result<(), &'static str> {
    match address.strip_prefix("0x") {
        Some(digits) if digits.len() == 40 && digits.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(())
        }
        _ => Err("must be `0x` followed by 40 hex digits"),
    }
}

fn check_circle_name(name: &str) -> Result<(), &'static str> {
    // U+2028/U+2029 are not control characters but many renderers break
    // lines at them, which would let a name fake extra lines in a wallet.
    if name
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err("must not contain line breaks or other control characters");
    }
    Ok(())
}

fn check_circle_public_key(key: &str) -> Result<(), &'static str> {
    // Letters and digits only keeps the statement unambiguous: the key can
    // never contain the `" (` that separates it from the name.
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("must be non-empty ASCII letters and digits (hex)");
    }
    Ok(())
}

fn check_uri(uri: &str) -> Result<(), &'static str> {
    if uri.is_empty() {
        return Err("must not be empty");
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    Ok(())
}

/// Walks the message line by line, remembering line numbers for errors.
struct Lines<'a> {
    rest: std::str::Split<'a, char>,
    number: usize,
}

/// One line of the message with what it should have been.
struct Line<'a> {
    text: &'a str,
    number: usize,
    expected: &'static str,
}

impl<'a> Lines<'a> {
    fn new(message: &'a str) -> Self {
        Lines {
            rest: message.split('\n'),
            number: 0,
        }
    }

    fn next(&mut self, expected: &'static str) -> Result<Line<'a>, ChallengeError> {
        self.number += 1;
        match self.rest.next() {
            Some(text) => Ok(Line {
                text,
                number: self.number,
                expected,
            }),
            None => Err(ChallengeError::MissingLine {
                line: self.number,
                expected,
            }),
        }
    }

    fn finish(mut self) -> Result<(), ChallengeError> {
        match self.rest.next() {
            None => Ok(()),
            Some(_) => Err(ChallengeError::TrailingText),
        }
    }
}

impl<'a> Line<'a> {
    fn bad(&self) -> ChallengeError {
        ChallengeError::BadLine {
            line: self.number,
            expected: self.expected,
            got: quote(self.text),
        }
    }

    fn bad_value(&self, field: &'static str, reason: impl Into<String>) -> ChallengeError {
        ChallengeError::BadValue {
            line: self.number,
            field,
            reason: reason.into(),
        }
    }

    fn expect_exactly(&self, want: &str) -> Result<(), ChallengeError> {
        if self.text == want {
            Ok(())
        } else {
            Err(self.bad())
        }
    }

    fn strip_prefix(&self, prefix: &str) -> Result<&'a str, ChallengeError> {
        self.text.strip_prefix(prefix).ok_or_else(|| self.bad())
    }

    /// Parses a timestamp and insists on the canonical form, so that the
    /// message is rebuilt byte for byte from the parsed value.
    fn canonical_time(&self, text: &str) -> Result<u64, ChallengeError> {
        let seconds = parse_rfc3339_utc(text)
            .map_err(|error| self.bad_value("timestamp", error.to_string()))?;
        if format_rfc3339_utc(seconds) != text {
            return Err(self.bad_value(
                "timestamp",
                format!(
                    "{:?} is not in the canonical form YYYY-MM-DDTHH:MM:SSZ",
                    quote(text)
                ),
            ));
        }
        Ok(seconds)
    }
}

/// Whether `s` is an acceptable nonce: at least [`MIN_NONCE_LEN`]
/// characters, all ASCII letters or digits (EIP-4361 nonces are
/// alphanumeric).
pub fn is_valid_nonce(s: &str) -> bool {
    s.len() >= MIN_NONCE_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}
