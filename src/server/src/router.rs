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

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use circle_executor::{ScriptContext, ScriptJob};
use circle_protocol::jsonrpc::JSONRPC_VERSION;
use circle_protocol::{
    AuthenticateParams, FetchNonceParams, PlayParams, PlayResult, Request, RpcError, codes, method,
};
use futures_util::future::{self, LocalBoxFuture};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::auth::{AuthState, ChallengeOrigin};
use crate::metrics::{LimitHit, Listener};
use crate::state::Shared;

/// The verified client certificate of a mutual-TLS connection.
#[derive(Clone, Debug)]
pub(crate) struct ClientIdentity {
    /// The certificate's subject, e.g. `CN=alice`.
    pub subject: String,
}

impl ClientIdentity {
    /// The identity in a finished TLS session, when the client presented a
    /// certificate (rustls has verified it by then).
    pub fn of(session: &rustls::ServerConnection) -> Option<ClientIdentity> {
        let leaf = session.peer_certificates()?.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        Some(ClientIdentity {
            subject: parsed.subject().to_string(),
        })
    }
}

/// Per-connection state the router reads and changes.
pub(crate) struct Connection {
    pub auth: AuthState,
    pub origin: ChallengeOrigin,
    pub listener: Listener,
    /// Scripts of this connection still running; shared with their futures,
    /// which count themselves out when they finish or are dropped.
    in_flight: Rc<Cell<usize>>,
    /// The constants scripts of this connection see; rebuilt on sign-in.
    script_context: Arc<ScriptContext>,
    rate: RateLimiter,
}

impl Connection {
    pub fn new(shared: &Shared, origin: ChallengeOrigin, listener: Listener) -> Self {
        Connection {
            auth: AuthState::default(),
            origin,
            listener,
            in_flight: Rc::new(Cell::new(0)),
            script_context: Arc::new(ScriptContext {
                circle_name: shared.circle.name.clone(),
                circle_public_key: shared.circle.public_key.clone(),
                caller_public_key: String::new(),
            }),
            rate: RateLimiter::per_second(shared.limits.max_requests_per_second),
        }
    }

    /// Scripts still running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
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
const NULL_ID: &str = "null";

/// Handles one text frame: a request or a batch.
pub(crate) fn handle_text(shared: &Shared, conn: &mut Connection, text: &str) -> Reply {
    if text.trim_start().starts_with('[') {
        return match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => handle_batch(shared, conn, &items),
            Err(e) => Reply::Now(Some(failure(
                NULL_ID,
                &RpcError::parse_error(format!("frame is not valid JSON: {e}")),
            ))),
        };
    }
    handle_one(shared, conn, text)
}

/// The answer to a binary frame: the protocol carries JSON in text frames only.
pub(crate) fn binary_frame_reply() -> String {
    failure(
        NULL_ID,
        &RpcError::invalid_request("binary frames are not supported: send JSON-RPC in text frames"),
    )
}

fn handle_batch(shared: &Shared, conn: &mut Connection, items: &[&RawValue]) -> Reply {
    if items.is_empty() {
        let error = RpcError::invalid_request("an empty batch is not a valid request");
        return Reply::Now(Some(failure(NULL_ID, &error)));
    }
    if items.len() > shared.limits.max_batch_len {
        let error = RpcError::invalid_request(format!(
            "batch of {} requests is over the limit of {}",
            items.len(),
            shared.limits.max_batch_len
        ));
        return Reply::Now(Some(failure(NULL_ID, &error)));
    }
    // Requests run in order, so a batch may sign in and then play.
    let replies: Vec<Reply> = items
        .iter()
        .map(|item| handle_one(shared, conn, item.get()))
        .collect();
    if replies.iter().all(|reply| matches!(reply, Reply::Now(_))) {
        let answers = replies.into_iter().filter_map(|reply| match reply {
            Reply::Now(answer) => answer,
            Reply::Later(_) => None,
        });
        return Reply::Now(join_batch(answers));
    }
    let pending = replies.into_iter().map(|reply| match reply {
        Reply::Now(answer) => Box::pin(future::ready(answer)) as LocalBoxFuture<'static, _>,
        Reply::Later(future) => future,
    });
    let joined = future::join_all(pending);
    Reply::Later(Box::pin(async move {
        join_batch(joined.await.into_iter().flatten())
    }))
}

/// Handles one request given as JSON text.
fn handle_one(shared: &Shared, conn: &mut Connection, text: &str) -> Reply {
    let request = match serde_json::from_str::<RawRequest>(text) {
        Ok(request) if request.jsonrpc == JSONRPC_VERSION && request.id.is_none_or(is_valid_id) => {
            request
        }
        _ => return Reply::Now(Some(explain_malformed(text))),
    };
    let method = request.method.as_ref();
    shared.metrics.request(method);
    let answer = if conn.rate.try_take() {
        route(shared, conn, method, request.params)
    } else {
        shared.metrics.limit_hit(LimitHit::RequestRate);
        Answer::Now(Err(RpcError::new(
            codes::TOO_MANY_REQUESTS,
            format!(
                "too many requests: this connection may send {} per second",
                shared.limits.max_requests_per_second
            ),
        )))
    };
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
            let result = parse_params::<AuthenticateParams>(method, params)
                .and_then(|params| conn.auth.authenticate(&params));
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
    match conn.auth.caller() {
        // A compressed public key is hex: nothing in it needs escaping.
        Some(caller) => format!(
            r#"{{"authenticated":true,"pubkey":"{}","circle":{}}}"#,
            caller.public_key_hex, shared.circle_json
        ),
        None => format!(
            r#"{{"authenticated":false,"pubkey":null,"circle":{}}}"#,
            shared.circle_json
        ),
    }
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
    if conn.in_flight.get() >= shared.limits.max_in_flight_per_connection {
        shared.metrics.limit_hit(LimitHit::InFlight);
        return Answer::Now(Err(RpcError::new(
            codes::TOO_MANY_REQUESTS,
            format!(
                "too many requests in flight on this connection (limit {})",
                shared.limits.max_in_flight_per_connection
            ),
        )));
    }
    let job = ScriptJob {
        script: params.script,
        context: conn.script_context.clone(),
        deadline: Some(Instant::now() + shared.limits.script_deadline),
    };
    let in_flight = InFlight::enter(&conn.in_flight);
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

/// A token bucket: `rate` tokens a second, holding at most one second's
/// worth, so a client may burst but not sustain more than its rate.
struct RateLimiter {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    fn per_second(rate: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            refilled: Instant::now(),
        }
    }

    fn try_take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts a running script of one connection; counts it out on drop, so a
/// script whose connection went away is not counted forever.
struct InFlight(Rc<Cell<usize>>);

impl InFlight {
    fn enter(counter: &Rc<Cell<usize>>) -> Self {
        counter.set(counter.get() + 1);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
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

fn failure(id: &str, error: &RpcError) -> String {
    // An error object of plain strings and numbers always serializes; the
    // fallback only keeps this free of panics.
    let error = serde_json::to_string(error)
        .unwrap_or_else(|_| r#"{"code":-32603,"message":"cannot encode error"}"#.to_owned());
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
}

/// A batch answer from its responses; nothing at all when every request was
/// a notification.
fn join_batch(answers: impl Iterator<Item = String>) -> Option<String> {
    let mut text = String::from("[");
    for answer in answers {
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&answer);
    }
    if text.len() == 1 {
        return None;
    }
    text.push(']');
    Some(text)
}
