//! Responses: written by the server around pre-encoded JSON, read by
//! clients.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{Id, RpcError};

/// The id of an answer to a request whose own id could not be read.
pub const NULL_ID: &RawValue = RawValue::NULL;

/// The text of a successful response: `result` written as it is, `id`
/// echoed exactly as the request had it.
pub fn write_result(id: &RawValue, result: &RawValue) -> String {
    envelope(id.get(), "result", result.get())
}

/// The text of an error response under `id` ([`NULL_ID`] when the
/// request's id could not be read).
pub fn write_error(id: &RawValue, error: &RpcError) -> String {
    // An error object of plain strings and numbers (and an optional JSON
    // value) always serializes; the fallback only keeps this free of panics.
    let error = serde_json::to_string(error)
        .unwrap_or_else(|_| r#"{"code":-32603,"message":"cannot encode error"}"#.to_owned());
    envelope(id.get(), "error", &error)
}

/// `{"jsonrpc":"2.0","id":ID,"KEY":VALUE}` from two pieces of JSON text
/// (a raw id and a raw value): one allocation of the right size, no JSON
/// tree, no second encoding of what is already JSON.
fn envelope(id: &str, key: &str, value: &str) -> String {
    const HEAD: &str = r#"{"jsonrpc":"2.0","id":"#;
    let mut text = String::with_capacity(HEAD.len() + id.len() + key.len() + value.len() + 5);
    text.push_str(HEAD);
    text.push_str(id);
    text.push_str(",\"");
    text.push_str(key);
    text.push_str("\":");
    text.push_str(value);
    text.push('}');
    text
}

/// A JSON-RPC response as a client reads it: `result` or `error`, never
/// both. The result stays raw JSON text until [`Response::into_result`]
/// decodes it into the type the caller expects.
#[derive(Debug, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The id of the request this answers.
    pub id: Id,
    /// Present on success.
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    /// Present on failure.
    #[serde(default)]
    pub error: Option<RpcError>,
}

/// Why a response gave no result of the expected type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The server answered with an error.
    #[error(transparent)]
    Rpc(RpcError),
    /// The result is not of the expected type.
    #[error("unexpected result from server: {0}")]
    UnexpectedResult(#[source] serde_json::Error),
}

impl Response {
    /// The result decoded as `T`, or why there is none: the error the
    /// server sent, or a result of another shape. A response with neither
    /// field reads as a `null` result.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T, ResponseError> {
        if let Some(error) = self.error {
            return Err(ResponseError::Rpc(error));
        }
        let result = self.result.as_deref().map_or("null", RawValue::get);
        serde_json::from_str(result).map_err(ResponseError::UnexpectedResult)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;
    use crate::methods::PlayResult;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn responses_round_trip() {
        let text = write_result(raw("1"), raw(r#"{"output":"42"}"#));
        assert_eq!(text, r#"{"jsonrpc":"2.0","id":1,"result":{"output":"42"}}"#);
        let back: Response = serde_json::from_str(&text).unwrap();
        assert_eq!((back.jsonrpc.as_str(), &back.id), ("2.0", &Id::Number(1)));
        let result: PlayResult = back.into_result().unwrap();
        assert_eq!(result.output, "42");

        let text = write_error(NULL_ID, &RpcError::parse_error("x"));
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#
        );
        let back: Response = serde_json::from_str(&text).unwrap();
        match back.into_result::<PlayResult>() {
            Err(ResponseError::Rpc(error)) => assert_eq!(error.code, codes::PARSE_ERROR),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ids_are_echoed_as_written() {
        let text = write_result(raw(r#""a\"b""#), raw("[]"));
        assert_eq!(text, r#"{"jsonrpc":"2.0","id":"a\"b","result":[]}"#);
    }

    #[test]
    fn a_result_of_another_shape_is_told_apart() {
        let back: Response =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"result":{"out":1}}"#).unwrap();
        assert!(matches!(
            back.into_result::<PlayResult>(),
            Err(ResponseError::UnexpectedResult(_))
        ));
        let empty: Response = serde_json::from_str(r#"{"jsonrpc":"2.0","id":1}"#).unwrap();
        assert_eq!(empty.into_result::<Option<u8>>().unwrap(), None);
    }
}
