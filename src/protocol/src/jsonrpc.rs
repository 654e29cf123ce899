//! JSON-RPC 2.0 envelopes: requests, responses, errors and batches.
//!
//! These types are shared by the server and every client so the two can never
//! drift. Parsing is split in two steps, [`parse_frame`] then
//! [`Request::from_value`], so that a server can answer a malformed batch
//! element with an error that carries the element's id when it has one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codes;

/// The only JSON-RPC version this protocol speaks.
pub const JSONRPC_VERSION: &str = "2.0";

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

/// A JSON-RPC request. A request without `id` is a notification: it is
/// carried out, but never answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The id to echo back; `None` for a notification.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_present"
    )]
    pub id: Option<Id>,
    /// The method name, for example `"play"`.
    pub method: String,
    /// The method's parameters (an object for every method of this protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

/// Distinguishes `"id": null` (present, [`Id::Null`]) from a missing id
/// (`None`, a notification): serde's default would fold both into `None`.
fn deserialize_present<'de, D>(deserializer: D) -> Result<Option<Id>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Id::deserialize(deserializer).map(Some)
}

impl Request {
    /// A request with the given id, method and parameters.
    pub fn new(id: impl Into<Id>, method: impl Into<String>, params: impl Serialize) -> Self {
        Request {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id: Some(id.into()),
            method: method.into(),
            // Serializing the protocol's own parameter structs cannot fail;
            // should a caller pass something exotic, `null` params are
            // answered by the server with "invalid params".
            params: Some(serde_json::to_value(params).unwrap_or(Value::Null)),
        }
    }

    /// Reads one request out of a JSON value, checking the envelope.
    ///
    /// On failure returns the error to send back, with the id to send it
    /// under (the request's own id when it could be read, else `null`).
    pub fn from_value(value: Value) -> Result<Request, (Id, RpcError)> {
        let id = value
            .get("id")
            .and_then(|id| Id::deserialize(id).ok())
            .unwrap_or(Id::Null);
        if !value.is_object() {
            return Err((
                id,
                RpcError::invalid_request("a request must be a JSON object"),
            ));
        }
        let request: Request = serde_json::from_value(value).map_err(|e| {
            (
                id.clone(),
                RpcError::invalid_request(format!("not a JSON-RPC 2.0 request: {e}")),
            )
        })?;
        if request.jsonrpc != JSONRPC_VERSION {
            return Err((id, RpcError::invalid_request("\"jsonrpc\" must be \"2.0\"")));
        }
        Ok(request)
    }

    /// Decodes `params` into the method's parameter struct, or gives the
    /// `-32602 invalid params` error naming what is wrong.
    pub fn parse_params<T: serde::de::DeserializeOwned>(&self) -> Result<T, RpcError> {
        let params = self
            .params
            .clone()
            .unwrap_or(Value::Object(Default::default()));
        serde_json::from_value(params).map_err(|e| {
            RpcError::invalid_params(format!("invalid params for {}: {e}", self.method))
        })
    }
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    /// One of [`codes`].
    pub code: i32,
    /// A human-readable explanation.
    pub message: String,
    /// Optional structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with the given code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    /// `-32700`: the frame is not JSON.
    pub fn parse_error(message: impl Into<String>) -> Self {
        Self::new(codes::PARSE_ERROR, message)
    }
    /// `-32600`: JSON, but not a valid request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, message)
    }
    /// `-32601`: no such method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            codes::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )
    }
    /// `-32602`: the params do not fit the method.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }
    /// `-32603`: the server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL_ERROR, message)
    }
}

/// A JSON-RPC response: `result` or `error`, never both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The id of the request this answers.
    pub id: Id,
    /// Present on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Present on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    /// A successful response.
    pub fn success(id: Id, result: Value) -> Self {
        Response {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id,
            result: Some(result),
            error: None,
        }
    }

    /// An error response.
    pub fn failure(id: Id, error: RpcError) -> Self {
        Response {
            jsonrpc: JSONRPC_VERSION.to_owned(),
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The result decoded as `T`, or the error the server sent.
    ///
    /// A response with neither field, or a result of the wrong shape, is
    /// reported as an internal error naming what was expected.
    pub fn into_result<T: serde::de::DeserializeOwned>(self) -> Result<T, RpcError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let result = self.result.unwrap_or(Value::Null);
        serde_json::from_value(result)
            .map_err(|e| RpcError::internal(format!("unexpected result from server: {e}")))
    }
}

/// What one WebSocket text frame held.
#[derive(Debug)]
pub enum Frame {
    /// A single JSON value (a request, if it is well formed).
    Single(Value),
    /// A JSON array: a batch. May be empty, which is itself an invalid request.
    Batch(Vec<Value>),
}

/// Parses a text frame as JSON, telling single requests from batches.
/// A frame that is not JSON is a `-32700` parse error.
pub fn parse_frame(text: &str) -> Result<Frame, RpcError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(Frame::Batch(items)),
        Ok(value) => Ok(Frame::Single(value)),
        Err(e) => Err(RpcError::parse_error(format!(
            "frame is not valid JSON: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notification_and_null_id_are_told_apart() {
        let notification = Request::from_value(json!({"jsonrpc":"2.0","method":"whoami"})).unwrap();
        assert_eq!(notification.id, None);
        let null_id =
            Request::from_value(json!({"jsonrpc":"2.0","id":null,"method":"whoami"})).unwrap();
        assert_eq!(null_id.id, Some(Id::Null));
    }

    #[test]
    fn bad_envelopes_keep_their_id() {
        let (id, err) =
            Request::from_value(json!({"jsonrpc":"1.0","id":7,"method":"x"})).unwrap_err();
        assert_eq!(id, Id::Number(7));
        assert_eq!(err.code, codes::INVALID_REQUEST);
        let (id, err) =
            Request::from_value(json!({"jsonrpc":"2.0","id":"a","method":5})).unwrap_err();
        assert_eq!(id, Id::String("a".into()));
        assert_eq!(err.code, codes::INVALID_REQUEST);
        let (id, err) = Request::from_value(json!(42)).unwrap_err();
        assert_eq!(id, Id::Null);
        assert_eq!(err.code, codes::INVALID_REQUEST);
    }

    #[test]
    fn frames_are_classified() {
        assert!(matches!(parse_frame("[]").unwrap(), Frame::Batch(v) if v.is_empty()));
        assert!(matches!(parse_frame("{}").unwrap(), Frame::Single(_)));
        assert_eq!(parse_frame("{nope").unwrap_err().code, codes::PARSE_ERROR);
    }

    #[test]
    fn responses_round_trip() {
        let ok = Response::success(Id::Number(1), json!({"output":"42"}));
        let text = serde_json::to_string(&ok).unwrap();
        assert_eq!(text, r#"{"jsonrpc":"2.0","id":1,"result":{"output":"42"}}"#);
        let back: Response = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ok);
        let err = Response::failure(Id::Null, RpcError::parse_error("x"));
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#
        );
    }
}
