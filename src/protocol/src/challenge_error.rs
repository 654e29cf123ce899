//! [`ChallengeError`]: why a sign-in challenge, or one of its timestamps,
//! was refused, and the quoting that keeps such errors short.

/// Number of lines of a challenge message.
const LINE_COUNT: usize = 13;

/// At most this many characters of an offending line are quoted in an error,
/// so a huge hostile message cannot make a huge error (or log line).
const QUOTE_LIMIT: usize = 80;

/// Why a challenge message or a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The message ended before line `line`.
    #[error("line {line} is missing: expected {expected}")]
    MissingLine {
        /// 1-based line number.
        line: usize,
        /// What the line should look like.
        expected: &'static str,
    },
    /// Line `line` does not have the fixed shape it must have.
    #[error("line {line}: expected {expected}, got {got:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What the line should look like.
        expected: &'static str,
        /// The line (shortened if long).
        got: String,
    },
    /// Line `line` has the right shape but a value that is not allowed.
    #[error("line {line}: invalid {field}: {reason}")]
    BadValue {
        /// 1-based line number.
        line: usize,
        /// Which field, e.g. `"nonce"`.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Text after the last line (`- urn:circle:…`).
    #[error("unexpected text after line {LINE_COUNT} (a challenge has exactly {LINE_COUNT} lines)")]
    TrailingText,
    /// A field of a [`SignInChallenge`](crate::SignInChallenge) that cannot be written into the
    /// message so that it parses back (see
    /// [`SignInChallenge::validate`](crate::SignInChallenge::validate)).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Which field, e.g. `"circle_name"`.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Not an RFC 3339 UTC timestamp this crate accepts.
    #[error("invalid RFC 3339 UTC timestamp {value:?}: {reason}")]
    InvalidTimestamp {
        /// The text (shortened if long).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// First [`QUOTE_LIMIT`] characters of `text`, marked when cut.
pub(crate) fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(QUOTE_LIMIT).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_shortens_long_text() {
        assert_eq!(quote("abc"), "abc");
        let long = "é".repeat(200);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), QUOTE_LIMIT + 1);
        assert!(quoted.ends_with('…'));
    }
}
