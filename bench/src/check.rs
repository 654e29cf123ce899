//! Building requests and checking every answer.
//!
//! A benchmark that counts answers without reading them measures nothing: a
//! server answering errors fast would win. Every answer is parsed, matched
//! to its request by id and compared with the expected result; anything else
//! is counted as an error, by kind.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// A request with everything but the id rendered once.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    prefix: String,
}

impl RequestTemplate {
    /// `params` must be JSON text (an object or array), or `None`.
    pub fn new(method: &str, params: Option<&str>) -> anyhow::Result<RequestTemplate> {
        let method = serde_json::to_string(method)?;
        let mut prefix = format!(r#"{{"jsonrpc":"2.0","method":{method},"#);
        if let Some(params) = params {
            // Validated here so a typo fails at start, not as a stream of errors.
            let params: Box<RawValue> = serde_json::from_str(params)?;
            prefix.push_str(r#""params":"#);
            prefix.push_str(params.get());
            prefix.push(',');
        }
        prefix.push_str(r#""id":"#);
        Ok(RequestTemplate { prefix })
    }

    pub fn render(&self, id: u64) -> String {
        let mut text = String::with_capacity(self.prefix.len() + 22);
        text.push_str(&self.prefix);
        text.push_str(itoa::Buffer::new().format(id));
        text.push('}');
        text
    }
}

/// What a correct result looks like.
#[derive(Clone, Debug)]
pub enum Expect {
    /// `play`: `{"output": ...}` with exactly this output.
    PlayOutput(String),
    /// `whoami`: an object with `authenticated` equal to this and a `circle`.
    Whoami { authenticated: bool },
    /// Exactly this JSON value.
    Exact(serde_json::Value),
    /// Any `result` (no `error`).
    AnyResult,
}

impl Expect {
    /// The default check for a method and its params.
    pub fn for_method(method: &str, params: Option<&str>, authenticated: bool) -> Expect {
        match method {
            "whoami" => Expect::Whoami { authenticated },
            "play" if params.map(|p| p.replace(' ', "")) == Some(r#"{"script":"40+2"}"#.to_owned()) => {
                Expect::PlayOutput("42".to_owned())
            }
            _ => Expect::AnyResult,
        }
    }
}

/// How one answer turned out.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The right result for request `id`.
    Ok(u64),
    /// A JSON-RPC error for request `id`.
    RpcError(u64, i64),
    /// A result for `id` that is not the expected one.
    WrongResult(u64),
    /// Not a JSON-RPC answer we can match to a request.
    Unmatched(&'static str),
}

impl Outcome {
    pub fn id(&self) -> Option<u64> {
        match self {
            Outcome::Ok(id) | Outcome::RpcError(id, _) | Outcome::WrongResult(id) => Some(*id),
            Outcome::Unmatched(_) => None,
        }
    }

    pub fn error_label(&self) -> Option<String> {
        match self {
            Outcome::Ok(_) => None,
            Outcome::RpcError(_, code) => Some(format!("rpc_error_{code}")),
            Outcome::WrongResult(_) => Some("wrong_result".to_owned()),
            Outcome::Unmatched(why) => Some((*why).to_owned()),
        }
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    id: Option<serde_json::Value>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
}

#[derive(Deserialize)]
struct PlayResult<'a> {
    #[serde(borrow)]
    output: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WhoamiResult {
    authenticated: bool,
    circle: serde::de::IgnoredAny,
}

/// Checks one text frame. Batches are not sent by this tool, so an array is
/// an error too.
pub fn check(text: &str, expect: &Expect) -> Outcome {
    let Ok(answer) = serde_json::from_str::<Answer<'_>>(text) else {
        return Outcome::Unmatched("unparseable_answer");
    };
    let Some(id) = answer.id.as_ref().and_then(serde_json::Value::as_u64) else {
        return Outcome::Unmatched("answer_without_our_id");
    };
    match (answer.result, answer.error) {
        (_, Some(error)) => {
            let code = serde_json::from_str::<ErrorObject>(error.get()).map_or(0, |e| e.code);
            Outcome::RpcError(id, code)
        }
        (Some(result), None) => {
            if result_matches(result.get(), expect) {
                Outcome::Ok(id)
            } else {
                Outcome::WrongResult(id)
            }
        }
        (None, None) => Outcome::WrongResult(id),
    }
}

fn result_matches(result: &str, expect: &Expect) -> bool {
    match expect {
        Expect::PlayOutput(expected) => {
            serde_json::from_str::<PlayResult<'_>>(result).is_ok_and(|r| r.output == *expected)
        }
        Expect::Whoami { authenticated } => serde_json::from_str::<WhoamiResult>(result)
            .is_ok_and(|r| r.authenticated == *authenticated && { let _ = r.circle; true }),
        Expect::Exact(value) => serde_json::from_str::<serde_json::Value>(result).is_ok_and(|r| r == *value),
        Expect::AnyResult => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests() {
        let t = RequestTemplate::new("play", Some(r#"{"script":"40 + 2"}"#)).unwrap();
        assert_eq!(
            t.render(1234567),
            r#"{"jsonrpc":"2.0","method":"play","params":{"script":"40 + 2"},"id":1234567}"#
        );
        let t = RequestTemplate::new("whoami", None).unwrap();
        assert_eq!(t.render(0), r#"{"jsonrpc":"2.0","method":"whoami","id":0}"#);
    }

    #[test]
    fn checks_answers() {
        let play = Expect::PlayOutput("42".into());
        assert_eq!(check(r#"{"jsonrpc":"2.0","id":7,"result":{"output":"42"}}"#, &play), Outcome::Ok(7));
        assert_eq!(check(r#"{"jsonrpc":"2.0","id":7,"result":{"output":"43"}}"#, &play), Outcome::WrongResult(7));
        assert_eq!(
            check(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32029,"message":"x"}}"#, &play),
            Outcome::RpcError(7, -32029)
        );
        assert!(matches!(check("not json", &play), Outcome::Unmatched(_)));
        assert!(matches!(check(r#"{"id":null,"error":{"code":1}}"#, &play), Outcome::Unmatched(_)));
        let who = Expect::Whoami { authenticated: false };
        assert_eq!(
            check(r#"{"id":1,"result":{"authenticated":false,"pubkey":null,"circle":{"name":"c"}}}"#, &who),
            Outcome::Ok(1)
        );
        assert_eq!(check(r#"{"id":1,"result":{"authenticated":true,"circle":{}}}"#, &who), Outcome::WrongResult(1));
    }
}
