//! The JSON-RPC router: turns one text frame into its answer.
//!
//! The router knows methods, not frames or sockets. Everything except `play`
//! is answered on the spot; `play` hands its script to the executor and
//! answers later, so one slow script never holds up the connection's other
//! requests (they are pipelined and may be answered out of order).
//!
//! Well-formed requests take a fast path: the frame is read into a borrowed
//! [`RawRequest`] (no `serde_json::Value` tree), params are decoded straight
//! into their struct, and the answer is written as text around the typed
//! result, echoing the request's id verbatim. Anything malformed falls back
//! to the shared protocol types, which name exactly what is wrong.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use circle_executor::{ScriptContext, ScriptJob};
use circle_protocol::jsonrpc::JSONRPC_VERSION;
use circle_protocol::{
    AuthenticateParams, FetchNonceParams, PlayParams, PlayResult, Request, RpcError, codes, method,
};
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::auth::{AuthState, ChallengeOrigin};
use crate::batch::{self, Handled};
use crate::config::ServerLimits;
use crate::listen::Listener;
use crate::pacing::{Gate, InFlightCount, RateLimiter};
use crate::state::Shared;
use crate::tls::ClientIdentity;

/// Per-connection state the router reads and changes.
pub(crate) struct Connection {
    pub auth: AuthState,
    pub origin: ChallengeOrigin,
    pub listener: Listener,
    /// Scripts of this connection still running; shared with their futures,
    /// which count themselves out when they finish or are dropped.
    in_flight: Rc<InFlightCount>,
    /// The constants scripts of this connection see; rebuilt on sign-in.
    script_context: Arc<ScriptContext>,
    rate: RateLimiter,
    /// The verified client certificate (mutual TLS) as `whoami` shows it.
    client_certificate_json: Option<Box<str>>,
}

impl Connection {
    pub fn new(
        shared: &Shared,
        origin: ChallengeOrigin,
        listener: Listener,
        client: Option<&ClientIdentity>,
    ) -> Self {
        Connection {
            auth: AuthState::default(),
            origin,
            listener,
            in_flight: Rc::default(),
            script_context: Arc::new(ScriptContext {
                circle_name: shared.circle.name.clone(),
                circle_public_key: shared.circle.public_key.clone(),
                caller_public_key: String::new(),
            }),
            rate: RateLimiter::per_second(shared.limits.max_requests_per_second),
            client_certificate_json: client.map(|identity| identity.to_json().into()),
        }
    }

    /// Scripts still running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Whether the connection may take its next request now (protocol
    /// 1.1's backpressure: the session does not read it until then).
    pub fn gate(&mut self, limits: &ServerLimits) -> Gate {
        if self.in_flight.get() >= limits.max_in_flight_per_connection {
            return Gate::InFlightFull;
        }
        match self.rate.next_token() {
            None => Gate::Open,
            Some(at) => Gate::RateUntil(at),
        }
    }

    /// Resolves once a script of this connection has finished and made room
    /// under `limits`' in-flight cap.
    pub async fn room(&self, limits: &ServerLimits) {
        self.in_flight
            .room(limits.max_in_flight_per_connection)
            .await
    }
}

/// The answer to one frame, or to one request of a batch: ready now, or
/// later once a script finishes. `None` means nothing is sent back
/// (notifications only).
pub(crate) enum Reply {
    Now(Option<String>),
    Later(LocalBoxFuture<'static, Option<String>>),
}

/// What a method produced: the result's JSON text, or an error.
type Outcome = Result<String, RpcError>;

/// A method's outcome, now or later; the id is added by the caller.
enum Answer {
    Now(Outcome),
    Later(LocalBoxFuture<'static, Outcome>),
}

/// A request read without building a JSON tree: strings borrow from the
/// frame where they can, `id` and `params` stay raw JSON text.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow)]
    jsonrpc: std::borrow::Cow<'a, str>,
    /// `None` when absent (a notification); `"id": null` is `Some("null")`.
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

/// Keeps a present `id` (even `null`) apart from a missing one.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// The id to answer with when a request's own id cannot be read.
pub(crate) const NULL_ID: &str = "null";

/// Handles one text frame: a request or a batch. The caller has checked
/// the connection's [`Gate`] (a single request never waits here).
pub(crate) fn handle_text(shared: &Shared, conn: &mut Connection, text: &str) -> Handled {
    if let Err(error) = check_escapes(text) {
        return Handled::Done(Reply::Now(Some(not_json(&error))));
    }
    if text.trim_start().starts_with('[') {
        return match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => batch::start(shared, conn, text, &items),
            Err(error) => Handled::Done(Reply::Now(Some(not_json(&error)))),
        };
    }
    Handled::Done(handle_one(shared, conn, text))
}

/// The answer to a frame that is not JSON: one error object, whatever the
/// frame looked like (protocol 1.1).
fn not_json(error: &serde_json::Error) -> String {
    failure(
        NULL_ID,
        &RpcError::parse_error(format!("frame is not valid JSON: {error}")),
    )
}

/// Finds `\u` escapes of surrogates that may not be valid JSON text: the
/// fast path keeps ids and params as raw text, and the parser does not
/// check the escapes inside raw text, so a lone surrogate (`"\ud800"`)
/// would otherwise be noticed only per request, after other requests of the
/// frame had run. Frames without such an escape skip the full parse.
fn check_escapes(text: &str) -> Result<(), serde_json::Error> {
    let surrogate_escape = text.as_bytes().windows(4).any(|window| {
        window[0] == b'\\'
            && window[1] == b'u'
            && matches!(window[2], b'd' | b'D')
            && matches!(window[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    });
    if surrogate_escape {
        serde_json::from_str::<serde_json::Value>(text)?;
    }
    Ok(())
}

/// The answer to a binary frame: the protocol carries JSON in text frames only.
pub(crate) fn binary_frame_reply() -> String {
    failure(
        NULL_ID,
        &RpcError::invalid_request("binary frames are not supported: send JSON-RPC in text frames"),
    )
}

/// Handles one request given as JSON text. The caller has checked the
/// connection's [`Gate`]: this spends one token of its request rate.
pub(crate) fn handle_one(shared: &Shared, conn: &mut Connection, text: &str) -> Reply {
    let request = match serde_json::from_str::<RawRequest>(text) {
        Ok(request) if request.jsonrpc == JSONRPC_VERSION && request.id.is_none_or(is_valid_id) => {
            request
        }
        _ => return Reply::Now(Some(explain_malformed(text))),
    };
    let method = request.method.as_ref();
    shared.metrics.request(method);
    conn.rate.take();
    let answer = route(shared, conn, method, request.params);
    // A notification (no id) is carried out but never answered.
    let id = request.id.map(|id| id.get().to_owned());
    match answer {
        Answer::Now(outcome) => {
            count_error(shared, method, &outcome);
            Reply::Now(id.map(|id| respond(&id, &outcome)))
        }
        Answer::Later(future) => {
            let metrics = shared.metrics.clone();
            let method = method.to_owned();
            Reply::Later(Box::pin(async move {
                let outcome = future.await;
                if let Err(error) = &outcome {
                    metrics.error(&method, error.code);
                }
                id.map(|id| respond(&id, &outcome))
            }))
        }
    }
}

/// JSON-RPC ids are strings, numbers or `null`.
fn is_valid_id(id: &RawValue) -> bool {
    matches!(
        id.get().as_bytes().first(),
        Some(b'"' | b'-' | b'0'..=b'9' | b'n')
    )
}

/// The error answer for a frame the fast path could not read, worked out by
/// the shared protocol types (slow, but only for bad input).
fn explain_malformed(text: &str) -> String {
    let value = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => value,
        Err(e) => {
            return failure(
                NULL_ID,
                &RpcError::parse_error(format!("frame is not valid JSON: {e}")),
            );
        }
    };
    let (id, error) = match Request::from_value(value) {
        Err((id, error)) => (id, error),
        // Well-formed after all, but with an id JSON-RPC does not allow.
        Ok(request) => (
            circle_protocol::Id::Null,
            RpcError::invalid_request(format!(
                "invalid id in request for {}: use a string, a number or null",
                request.method
            )),
        ),
    };
    let id = serde_json::to_string(&id).unwrap_or_else(|_| NULL_ID.to_owned());
    failure(&id, &error)
}

fn count_error(shared: &Shared, method: &str, outcome: &Outcome) {
    if let Err(error) = outcome {
        shared.metrics.error(method, error.code);
    }
}

fn route(
    shared: &Shared,
    conn: &mut Connection,
    method: &str,
    params: Option<&RawValue>,
) -> Answer {
    match method {
        method::FETCH_NONCE => Answer::Now(
            parse_params::<FetchNonceParams>(method, params)
                .and_then(|params| {
                    conn.auth
                        .issue_challenge(&params, &shared.challenge, &conn.origin)
                })
                .and_then(|result| to_json(&result)),
        ),
        method::AUTHENTICATE => {
            let result = match parse_params::<AuthenticateParams>(method, params) {
                Ok(params) => conn.auth.authenticate(&params),
                Err(error) => {
                    conn.auth.count_failure();
                    Err(error)
                }
            };
            shared.metrics.sign_in(result.is_ok());
            if let Ok(signed_in) = &result {
                conn.script_context = Arc::new(ScriptContext {
                    caller_public_key: signed_in.pubkey.clone(),
                    ..(*conn.script_context).clone()
                });
            }
            Answer::Now(result.and_then(|result| to_json(&result)))
        }
        method::WHOAMI => Answer::Now(Ok(whoami(shared, conn))),
        method::PLAY => play(shared, conn, method, params),
        other => Answer::Now(Err(RpcError::method_not_found(other))),
    }
}

/// `whoami`'s result, written by hand around the circle's pre-rendered JSON:
/// it is the framework's cheapest call and the benchmark's yardstick.
fn whoami(shared: &Shared, conn: &Connection) -> String {
    let mut result = match conn.auth.caller() {
        // A compressed public key is hex: nothing in it needs escaping.
        Some(caller) => format!(
            r#"{{"authenticated":true,"pubkey":"{}","circle":{}"#,
            caller.public_key_hex, shared.circle_json
        ),
        None => format!(
            r#"{{"authenticated":false,"pubkey":null,"circle":{}"#,
            shared.circle_json
        ),
    };
    if let Some(certificate) = &conn.client_certificate_json {
        result.push_str(r#","client_certificate":"#);
        result.push_str(certificate);
    }
    result.push('}');
    result
}

fn play(shared: &Shared, conn: &mut Connection, method: &str, params: Option<&RawValue>) -> Answer {
    let params = match parse_params::<PlayParams>(method, params) {
        Ok(params) => params,
        Err(error) => return Answer::Now(Err(error)),
    };
    if shared.enable_auth && conn.auth.caller().is_none() {
        return Answer::Now(Err(RpcError::new(
            codes::AUTHENTICATION_REQUIRED,
            "authentication required: call fetch_nonce and authenticate before play",
        )));
    }
    let job = ScriptJob {
        script: params.script,
        context: conn.script_context.clone(),
        deadline: Some(Instant::now() + shared.limits.script_deadline),
    };
    let in_flight = conn.in_flight.enter();
    let metrics = shared.metrics.clone();
    let started = Instant::now();
    let execution = shared.executor.execute(job);
    Answer::Later(Box::pin(async move {
        let result = execution.await;
        metrics.script_finished(started.elapsed());
        drop(in_flight);
        match result {
            Ok(output) => to_json(&PlayResult {
                output: output.output,
            }),
            Err(error) => Err(RpcError::new(error.code(), error.to_string())),
        }
    }))
}

/// Decodes a method's params straight from their JSON text; absent params
/// read as `{}`.
fn parse_params<T: DeserializeOwned>(
    method: &str,
    params: Option<&RawValue>,
) -> Result<T, RpcError> {
    serde_json::from_str(params.map_or("{}", RawValue::get))
        .map_err(|e| RpcError::invalid_params(format!("invalid params for {method}: {e}")))
}

fn to_json(value: &impl serde::Serialize) -> Outcome {
    serde_json::to_string(value)
        .map_err(|e| RpcError::internal(format!("cannot encode result: {e}")))
}

/// A response's text: `id` is raw JSON, echoed as the request had it.
fn respond(id: &str, outcome: &Outcome) -> String {
    match outcome {
        Ok(result) => {
            let mut text = String::with_capacity(40 + id.len() + result.len());
            text.push_str(r#"{"jsonrpc":"2.0","id":"#);
            text.push_str(id);
            text.push_str(r#","result":"#);
            text.push_str(result);
            text.push('}');
            text
        }
        Err(error) => failure(id, error),
    }
}

pub(crate) fn failure(id: &str, error: &RpcError) -> String {
    // An error object of plain strings and numbers always serializes; the
    // fallback only keeps this free of panics.
    let error = serde_json::to_string(error)
        .unwrap_or_else(|_| r#"{"code":-32603,"message":"cannot encode error"}"#.to_owned());
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
}
