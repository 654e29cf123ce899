//! Request ids.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A request id: a number, a string, or `null`.
///
/// Ids are echoed back verbatim, so clients may use whatever they like; the
/// project's own clients use increasing numbers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id, as the project's clients send.
    Number(i64),
    /// A string id.
    String(String),
    /// `null`: allowed by JSON-RPC, and the id of a response to a request
    /// whose own id could not be read.
    Null,
}

impl From<i64> for Id {
    fn from(value: i64) -> Self {
        Id::Number(value)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
            Id::Null => f.write_str("null"),
        }
    }
}

/// Whether a raw id is one JSON-RPC allows: a string, a number or `null`.
///
/// The raw text is valid JSON already (the parser checked it), so its first
/// byte tells its type; the fast path echoes such an id as written, even a
/// number [`Id`] would not hold (`1.5`, `1e3`).
pub(crate) fn is_valid_raw_id(id: &RawValue) -> bool {
    matches!(
        id.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9' | b'n')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ids_of_other_types_are_refused() {
        for allowed in ["1", "-2", "1.5", "\"a\"", "null"] {
            let raw: &RawValue = serde_json::from_str(allowed).unwrap();
            assert!(is_valid_raw_id(raw), "{allowed}");
        }
        for refused in ["true", "false", "{}", "[1]"] {
            let raw: &RawValue = serde_json::from_str(refused).unwrap();
            assert!(!is_valid_raw_id(raw), "{refused}");
        }
    }
}
