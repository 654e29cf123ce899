//! The JSON-RPC router: turns one text frame into its answer.
//!
//! The router knows methods, not frames or sockets. Everything except `play`
//! is answered on the spot; `play` hands its script to the executor and
//! answers later, so one slow script never holds up the connection's other
//! requests (they are pipelined and may be answered out of order).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use circle_executor::{ScriptContext, ScriptJob};
use circle_protocol::{
    AuthenticateParams, CircleInfo, FetchNonceParams, Frame, Id, PlayParams, PlayResult, Request,
    Response, RpcError, WhoamiResult, codes, method, parse_frame,
};
use futures_util::future::{self, LocalBoxFuture};
use serde_json::Value;

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

/// The answer to one frame: ready now, or later once scripts finish.
/// `None` means nothing is sent back (notifications only).
pub(crate) enum Reply {
    Now(Option<String>),
    Later(LocalBoxFuture<'static, Option<String>>),
}

/// The answer to one request inside a frame.
enum Answer {
    Now(Option<Response>),
    Later(LocalBoxFuture<'static, Option<Response>>),
}

/// Handles one text frame: a request or a batch.
pub(crate) fn handle_text(shared: &Shared, conn: &mut Connection, text: &str) -> Reply {
    match parse_frame(text) {
        Err(error) => Reply::Now(Some(encode(&Response::failure(Id::Null, error)))),
        Ok(Frame::Single(value)) => match handle_value(shared, conn, value) {
            Answer::Now(response) => Reply::Now(response.map(|r| encode(&r))),
            Answer::Later(future) => {
                Reply::Later(Box::pin(async move { future.await.map(|r| encode(&r)) }))
            }
        },
        Ok(Frame::Batch(items)) => handle_batch(shared, conn, items),
    }
}

/// The answer to a binary frame: the protocol carries JSON in text frames only.
pub(crate) fn binary_frame_reply() -> String {
    encode(&Response::failure(
        Id::Null,
        RpcError::invalid_request("binary frames are not supported: send JSON-RPC in text frames"),
    ))
}

fn handle_batch(shared: &Shared, conn: &mut Connection, items: Vec<Value>) -> Reply {
    if items.is_empty() {
        let error = RpcError::invalid_request("an empty batch is not a valid request");
        return Reply::Now(Some(encode(&Response::failure(Id::Null, error))));
    }
    if items.len() > shared.limits.max_batch_len {
        let error = RpcError::invalid_request(format!(
            "batch of {} requests is over the limit of {}",
            items.len(),
            shared.limits.max_batch_len
        ));
        return Reply::Now(Some(encode(&Response::failure(Id::Null, error))));
    }
    // Requests run in order, so a batch may sign in and then play.
    let answers: Vec<Answer> = items
        .into_iter()
        .map(|item| handle_value(shared, conn, item))
        .collect();
    if answers
        .iter()
        .all(|answer| matches!(answer, Answer::Now(_)))
    {
        let responses: Vec<Response> = answers
            .into_iter()
            .filter_map(|answer| match answer {
                Answer::Now(response) => response,
                Answer::Later(_) => None,
            })
            .collect();
        return Reply::Now(encode_batch(&responses));
    }
    let pending = answers.into_iter().map(|answer| match answer {
        Answer::Now(response) => Box::pin(future::ready(response)) as LocalBoxFuture<'static, _>,
        Answer::Later(future) => future,
    });
    let joined = future::join_all(pending);
    Reply::Later(Box::pin(async move {
        let responses: Vec<Response> = joined.await.into_iter().flatten().collect();
        encode_batch(&responses)
    }))
}

fn handle_value(shared: &Shared, conn: &mut Connection, value: Value) -> Answer {
    let request = match Request::from_value(value) {
        Ok(request) => request,
        Err((id, error)) => return Answer::Now(Some(Response::failure(id, error))),
    };
    let id = request.id.clone();
    shared.metrics.request(&request.method);
    let answer = if conn.rate.try_take() {
        route(shared, conn, &request)
    } else {
        shared.metrics.limit_hit(LimitHit::RequestRate);
        let error = RpcError::new(
            codes::TOO_MANY_REQUESTS,
            format!(
                "too many requests: this connection may send {} per second",
                shared.limits.max_requests_per_second
            ),
        );
        Answer::Now(Some(Response::failure(
            id.clone().unwrap_or(Id::Null),
            error,
        )))
    };
    let answer = count_errors(shared, &request.method, answer);
    // A notification (no id) is carried out but never answered.
    match (id, answer) {
        (None, Answer::Later(future)) => Answer::Later(Box::pin(async move {
            future.await;
            None
        })),
        (None, Answer::Now(_)) => Answer::Now(None),
        (Some(_), answer) => answer,
    }
}

/// Counts the error answers of one method in the metrics.
fn count_errors(shared: &Shared, method: &str, answer: Answer) -> Answer {
    match answer {
        Answer::Now(response) => {
            if let Some(error) = response.as_ref().and_then(|r| r.error.as_ref()) {
                shared.metrics.error(method, error.code);
            }
            Answer::Now(response)
        }
        Answer::Later(future) => {
            let metrics = shared.metrics.clone();
            let method = method.to_owned();
            Answer::Later(Box::pin(async move {
                let response = future.await;
                if let Some(error) = response.as_ref().and_then(|r| r.error.as_ref()) {
                    metrics.error(&method, error.code);
                }
                response
            }))
        }
    }
}

fn route(shared: &Shared, conn: &mut Connection, request: &Request) -> Answer {
    let id = request.id.clone().unwrap_or(Id::Null);
    let respond = |result: Result<Value, RpcError>| {
        Answer::Now(Some(match result {
            Ok(value) => Response::success(id.clone(), value),
            Err(error) => Response::failure(id.clone(), error),
        }))
    };
    match request.method.as_str() {
        method::FETCH_NONCE => respond(
            request
                .parse_params::<FetchNonceParams>()
                .and_then(|params| {
                    conn.auth
                        .issue_challenge(&params, &shared.challenge, &conn.origin)
                })
                .and_then(to_value),
        ),
        method::AUTHENTICATE => {
            let result = request
                .parse_params::<AuthenticateParams>()
                .and_then(|params| conn.auth.authenticate(&params));
            shared.metrics.sign_in(result.is_ok());
            if let Ok(signed_in) = &result {
                conn.script_context = Arc::new(ScriptContext {
                    caller_public_key: signed_in.pubkey.clone(),
                    ..(*conn.script_context).clone()
                });
            }
            respond(result.and_then(to_value))
        }
        method::WHOAMI => respond(to_value(WhoamiResult {
            authenticated: conn.auth.caller().is_some(),
            pubkey: conn
                .auth
                .caller()
                .map(|caller| caller.public_key_hex.clone()),
            circle: CircleInfo {
                name: shared.circle.name.clone(),
                public_key: shared.circle.public_key.clone(),
            },
        })),
        method::PLAY => play(shared, conn, request, id),
        other => respond(Err(RpcError::method_not_found(other))),
    }
}

fn play(shared: &Shared, conn: &mut Connection, request: &Request, id: Id) -> Answer {
    let fail = |error: RpcError| Answer::Now(Some(Response::failure(id.clone(), error)));
    let params = match request.parse_params::<PlayParams>() {
        Ok(params) => params,
        Err(error) => return fail(error),
    };
    if shared.enable_auth && conn.auth.caller().is_none() {
        return fail(RpcError::new(
            codes::AUTHENTICATION_REQUIRED,
            "authentication required: call fetch_nonce and authenticate before play",
        ));
    }
    if conn.in_flight.get() >= shared.limits.max_in_flight_per_connection {
        shared.metrics.limit_hit(LimitHit::InFlight);
        return fail(RpcError::new(
            codes::TOO_MANY_REQUESTS,
            format!(
                "too many requests in flight on this connection (limit {})",
                shared.limits.max_in_flight_per_connection
            ),
        ));
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
        Some(match result {
            Ok(output) => match to_value(PlayResult {
                output: output.output,
            }) {
                Ok(value) => Response::success(id, value),
                Err(error) => Response::failure(id, error),
            },
            Err(error) => Response::failure(id, RpcError::new(error.code(), error.to_string())),
        })
    }))
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

fn to_value(value: impl serde::Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(value)
        .map_err(|e| RpcError::internal(format!("cannot encode result: {e}")))
}

fn encode(response: &Response) -> String {
    // Responses are built from plain strings and JSON values, which always
    // serialize; the fallback only keeps this free of panics.
    serde_json::to_string(response).unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"cannot encode response"}}"#
            .to_owned()
    })
}

fn encode_batch(responses: &[Response]) -> Option<String> {
    if responses.is_empty() {
        return None;
    }
    Some(serde_json::to_string(responses).unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"cannot encode response"}}"#
            .to_owned()
    }))
}
