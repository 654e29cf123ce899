//! Requests: read zero-copy by the server, written by clients.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::id::is_valid_raw_id;
use super::{Id, JSONRPC_VERSION, RpcError, frame, response};

/// A JSON-RPC request read without building a JSON tree: strings borrow
/// from the frame where they can, `id` and `params` stay raw JSON text.
/// A request without `id` is a notification: carried out, never answered.
#[derive(Debug, Deserialize)]
pub struct Request<'a> {
    /// `"2.0"` once [`Request::parse`] has accepted the request.
    #[serde(borrow)]
    pub jsonrpc: Cow<'a, str>,
    /// The id to echo back, as written; `None` for a notification, while
    /// `"id": null` is `Some` of the text `null`.
    #[serde(default, borrow, deserialize_with = "present")]
    pub id: Option<&'a RawValue>,
    /// The method name, for example `"play"`.
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    /// The method's parameters (an object for every method of this
    /// protocol); absent means `{}`.
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
}

/// Keeps a present `id` (even `null`) apart from a missing one: serde's
/// default would fold both into `None`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// A request that cannot be carried out: the error to answer, and the id
/// to answer it under (the request's own when it could be read, else
/// `null`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{error} (answered under id {id})")]
pub struct BadRequest {
    /// The id the answer carries.
    pub id: Id,
    /// What is wrong.
    pub error: RpcError,
}

impl BadRequest {
    /// The error response to send back.
    pub fn response(&self) -> String {
        // An `Id` is a number, a string or null: it always serializes.
        let id = serde_json::value::to_raw_value(&self.id).ok();
        response::write_error(id.as_deref().unwrap_or(response::NULL_ID), &self.error)
    }
}

impl<'a> Request<'a> {
    /// Reads one request from its JSON text, checking the envelope.
    ///
    /// Well-formed requests take the fast path: one borrowing parse. Anything
    /// else is parsed again, slowly, to say exactly what is wrong.
    pub fn parse(text: &'a str) -> Result<Request<'a>, BadRequest> {
        match serde_json::from_str::<Request>(text) {
            Ok(request)
                if request.jsonrpc == JSONRPC_VERSION && request.id.is_none_or(is_valid_raw_id) =>
            {
                Ok(request)
            }
            _ => Err(explain_malformed(text)),
        }
    }

    /// Decodes `params` straight from their JSON text into the method's
    /// parameter struct, or gives the `-32602 invalid params` error naming
    /// what is wrong. Absent params read as `{}`.
    pub fn parse_params<T: DeserializeOwned>(&self) -> Result<T, RpcError> {
        serde_json::from_str(self.params.map_or("{}", RawValue::get)).map_err(|e| {
            RpcError::invalid_params(format!("invalid params for {}: {e}", self.method))
        })
    }
}

/// Why `text` is not a request, worked out with a JSON tree (slow, but only
/// for bad input). The id is the request's own when it can be read as an
/// [`Id`], else `null`.
fn explain_malformed(text: &str) -> BadRequest {
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(error) => return frame::not_json(&error),
    };
    let id = value
        .get("id")
        .and_then(|id| Id::deserialize(id).ok())
        .unwrap_or(Id::Null);
    let refuse = |id: Id, message: String| BadRequest {
        id,
        error: RpcError::invalid_request(message),
    };
    if !value.is_object() {
        return refuse(id, "a request must be a JSON object".to_owned());
    }
    match serde_json::from_str::<Request>(text) {
        Err(e) => refuse(id, format!("not a JSON-RPC 2.0 request: {e}")),
        Ok(request) if request.jsonrpc != JSONRPC_VERSION => {
            refuse(id, "\"jsonrpc\" must be \"2.0\"".to_owned())
        }
        // Well-formed but for an id JSON-RPC does not allow: it cannot be
        // echoed, so the answer goes under `null`.
        Ok(request) => refuse(
            Id::Null,
            format!(
                "invalid id in request for {}: use a string, a number or null",
                request.method
            ),
        ),
    }
}

/// The text of a request (a client's side), params encoded in the same
/// pass: no JSON tree is built.
pub fn write_request(
    id: &Id,
    method: &str,
    params: &impl Serialize,
) -> Result<String, serde_json::Error> {
    #[derive(Serialize)]
    struct Outgoing<'a, P> {
        jsonrpc: &'static str,
        id: &'a Id,
        method: &'a str,
        params: &'a P,
    }
    serde_json::to_string(&Outgoing {
        jsonrpc: JSONRPC_VERSION,
        id,
        method,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    #[test]
    fn notification_and_null_id_are_told_apart() {
        let notification = Request::parse(r#"{"jsonrpc":"2.0","method":"whoami"}"#).unwrap();
        assert!(notification.id.is_none());
        let null_id = Request::parse(r#"{"jsonrpc":"2.0","id":null,"method":"whoami"}"#).unwrap();
        assert_eq!(null_id.id.map(RawValue::get), Some("null"));
    }

    #[test]
    fn ids_are_kept_as_written() {
        let request = Request::parse(r#"{"jsonrpc":"2.0","id":1.50,"method":"whoami"}"#).unwrap();
        assert_eq!(request.id.map(RawValue::get), Some("1.50"));
    }

    #[test]
    fn bad_envelopes_keep_their_id() {
        let refused = |text: &str| Request::parse(text).unwrap_err();
        let bad = refused(r#"{"jsonrpc":"1.0","id":7,"method":"x"}"#);
        assert_eq!(
            (bad.id, bad.error.code),
            (Id::Number(7), codes::INVALID_REQUEST)
        );
        let bad = refused(r#"{"jsonrpc":"2.0","id":"a","method":5}"#);
        assert_eq!(
            (bad.id, bad.error.code),
            (Id::String("a".into()), codes::INVALID_REQUEST)
        );
        let bad = refused("42");
        assert_eq!((bad.id, bad.error.code), (Id::Null, codes::INVALID_REQUEST));
        let bad = refused(r#"{"jsonrpc":"2.0","id":true,"method":"x"}"#);
        assert_eq!((bad.id, bad.error.code), (Id::Null, codes::INVALID_REQUEST));
        let bad = refused("{nope");
        assert_eq!((bad.id, bad.error.code), (Id::Null, codes::PARSE_ERROR));
        assert_eq!(
            refused(r#"{"jsonrpc":"1.0","id":"x\"y","method":"m"}"#).response(),
            r#"{"jsonrpc":"2.0","id":"x\"y","error":{"code":-32600,"message":"\"jsonrpc\" must be \"2.0\""}}"#
        );
    }

    #[test]
    fn params_are_decoded_or_named_invalid() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Script {
            script: String,
        }
        let request =
            Request::parse(r#"{"jsonrpc":"2.0","id":1,"method":"play","params":{"script":"1"}}"#)
                .unwrap();
        assert_eq!(
            request.parse_params::<Script>().unwrap(),
            Script { script: "1".into() }
        );
        let request = Request::parse(r#"{"jsonrpc":"2.0","id":1,"method":"play"}"#).unwrap();
        let error = request.parse_params::<Script>().unwrap_err();
        assert_eq!(error.code, codes::INVALID_PARAMS);
        assert!(error.message.contains("play"), "{}", error.message);
    }

    #[test]
    fn written_requests_read_back() {
        let text =
            write_request(&Id::Number(3), "play", &serde_json::json!({"script": "1"})).unwrap();
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":3,"method":"play","params":{"script":"1"}}"#
        );
        let request = Request::parse(&text).unwrap();
        assert_eq!(
            (request.id.map(RawValue::get), request.method.as_ref()),
            (Some("3"), "play")
        );
    }
}
