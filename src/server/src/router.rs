//! The JSON-RPC router: turns one text frame into its answer.
//!
//! The router knows methods, not frames or sockets. Everything except `play`
//! is answered on the spot; `play` hands its script to the executor and
//! answers later, so one slow script never holds up the connection's other
//! requests (they are pipelined and may be answered out of order).
//!
//! The envelope is `circle_protocol`'s, the one the clients use too: a
//! well-formed request is read into a borrowed [`Request`] (no
//! `serde_json::Value` tree), params are decoded straight into their struct,
//! and the answer is written around the encoded result, echoing the
//! request's id verbatim. A malformed request gets the protocol's
//! [`BadRequest`](circle_protocol::BadRequest) answer, which names exactly
//! what is wrong.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use std::pin::pin;

use circle_executor::{Cancel, ExecutorError, Inline, ScriptContext, ScriptJob, ScriptOutput};
use circle_protocol::jsonrpc::NULL_ID;
use circle_protocol::{
    AuthenticateParams, CancelParams, CancelResult, FetchNonceParams, Frame, PlayParams,
    PlayResult, Request, RpcError, codes, method, parse_frame, write_error, write_result,
};
use futures_util::future::{Either, LocalBoxFuture, select};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::{AuthState, ChallengeOrigin};
use crate::batch::{self, Handled};
use crate::config::ServerLimits;
use crate::inline_credit::InlineCredit;
use crate::listen::Listener;
use crate::pacing::{Gate, InFlightCount, RateLimiter};
use crate::plays::Plays;
use crate::state::ServerState;
use crate::tls::ClientIdentity;

/// Per-connection state the router reads and changes.
pub(crate) struct ConnectionState {
    pub auth: AuthState,
    /// Shared with the other connections that named the same host
    /// ([`crate::upgrade::Upgrader`]).
    pub origin: Rc<ChallengeOrigin>,
    pub listener: Listener,
    /// Scripts of this connection still running; shared with their futures,
    /// which count themselves out when they finish or are dropped.
    in_flight: Rc<InFlightCount>,
    /// The constants scripts of this connection see; rebuilt on sign-in.
    script_context: Arc<ScriptContext>,
    rate: RateLimiter,
    /// The verified client certificate (mutual TLS) as `whoami` shows it.
    client_certificate_json: Option<Box<RawValue>>,
    /// Plays `cancel` can still reach, and their streamed lines.
    pub plays: Plays,
    /// How much this connection's plays may still try the connection's own
    /// thread first.
    inline: InlineCredit,
}

impl ConnectionState {
    pub fn new(
        shared: &ServerState,
        origin: Rc<ChallengeOrigin>,
        listener: Listener,
        client: Option<&ClientIdentity>,
    ) -> Self {
        ConnectionState {
            auth: AuthState::default(),
            origin,
            listener,
            in_flight: Rc::default(),
            script_context: shared.anonymous_script_context.clone(),
            rate: RateLimiter::per_second(shared.limits.max_requests_per_second),
            client_certificate_json: client.map(ClientIdentity::to_json),
            plays: Plays::default(),
            inline: InlineCredit::default(),
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
pub(crate) enum Answer {
    Now(Option<String>),
    Later(LocalBoxFuture<'static, Option<String>>),
}

/// What a method produced: the result as JSON text, or an error.
type Outcome = Result<Box<RawValue>, RpcError>;

/// A method's outcome, now or later; the id is added by the caller.
enum MethodOutcome {
    Now(Outcome),
    Later(LocalBoxFuture<'static, Outcome>),
}

/// Handles one text frame: a request or a batch. The caller has checked
/// the connection's [`Gate`] (a single request never waits here).
pub(crate) fn handle_text(shared: &ServerState, conn: &mut ConnectionState, text: &str) -> Handled {
    match parse_frame(text) {
        Ok(Frame::Single(text)) => Handled::Done(handle_one(shared, conn, text)),
        Ok(Frame::Batch(items)) => batch::start(shared, conn, text, &items),
        Err(not_json) => Handled::Done(Answer::Now(Some(not_json.response()))),
    }
}

/// The answer to a binary frame: the protocol carries JSON in text frames only.
pub(crate) fn binary_frame_reply() -> String {
    write_error(
        NULL_ID,
        &RpcError::invalid_request("binary frames are not supported: send JSON-RPC in text frames"),
    )
}

/// Handles one request given as JSON text. The caller has checked the
/// connection's [`Gate`]: this spends one token of its request rate.
pub(crate) fn handle_one(shared: &ServerState, conn: &mut ConnectionState, text: &str) -> Answer {
    let request = match Request::parse(text) {
        Ok(request) => request,
        Err(bad) => return Answer::Now(Some(bad.response())),
    };
    let method = request.method.as_ref();
    shared.metrics.request(method);
    conn.rate.take();
    let answer = route(shared, conn, &request);
    // A notification (no id) is carried out but never answered.
    match answer {
        MethodOutcome::Now(outcome) => {
            count_error(shared, method, &outcome);
            Answer::Now(request.id.map(|id| respond(id, &outcome)))
        }
        MethodOutcome::Later(future) => {
            let id = request.id.map(RawValue::to_owned);
            let metrics = shared.metrics.clone();
            let method = method.to_owned();
            Answer::Later(Box::pin(async move {
                let outcome = future.await;
                if let Err(error) = &outcome {
                    metrics.error(&method, error.code);
                }
                id.map(|id| respond(&id, &outcome))
            }))
        }
    }
}

fn count_error(shared: &ServerState, method: &str, outcome: &Outcome) {
    if let Err(error) = outcome {
        shared.metrics.error(method, error.code);
    }
}

fn route(shared: &ServerState, conn: &mut ConnectionState, request: &Request<'_>) -> MethodOutcome {
    match request.method.as_ref() {
        method::FETCH_NONCE => MethodOutcome::Now(
            request
                .parse_params::<FetchNonceParams>()
                .and_then(|params| {
                    conn.auth
                        .issue_challenge(&params, &shared.challenge, &conn.origin)
                })
                .and_then(|result| to_json(&result)),
        ),
        method::AUTHENTICATE => {
            let result = match request.parse_params::<AuthenticateParams>() {
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
            MethodOutcome::Now(result.and_then(|result| to_json(&result)))
        }
        method::WHOAMI => MethodOutcome::Now(to_json(&Whoami {
            authenticated: conn.auth.is_signed_in(),
            pubkey: conn
                .auth
                .is_signed_in()
                .then_some(conn.script_context.caller_public_key.as_str()),
            circle: &shared.circle_json,
            client_certificate: conn.client_certificate_json.as_deref(),
        })),
        method::PLAY => play(shared, conn, request),
        method::CANCEL => MethodOutcome::Now(cancel(conn, request)),
        other => MethodOutcome::Now(Err(RpcError::method_not_found(other))),
    }
}

/// `whoami`'s result (`WhoamiResult`) around the circle's and the client
/// certificate's JSON, rendered once: it is the framework's cheapest call
/// and the benchmark's yardstick.
#[derive(Serialize)]
struct Whoami<'a> {
    authenticated: bool,
    pubkey: Option<&'a str>,
    circle: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate: Option<&'a RawValue>,
}

fn play(shared: &ServerState, conn: &mut ConnectionState, request: &Request<'_>) -> MethodOutcome {
    let params = match request.parse_params::<PlayParams>() {
        Ok(params) => params,
        Err(error) => return MethodOutcome::Now(Err(error)),
    };
    if shared.enable_auth && !conn.auth.is_signed_in() {
        return MethodOutcome::Now(Err(RpcError::new(
            codes::AUTHENTICATION_REQUIRED,
            "authentication required: call fetch_nonce and authenticate before play",
        )));
    }
    let job = ScriptJob::new(params.script, conn.script_context.clone());
    // A short script is answered here, without the trip to a script thread
    // and back. A streamed play goes there: its lines are sent while it runs.
    if conn.inline.may_try() && !params.stream {
        let started = Instant::now();
        match shared.executor.run_inline(&job) {
            Inline::Done(result) => {
                conn.inline.answered();
                shared.metrics.script_finished(started.elapsed());
                return MethodOutcome::Now(play_answer(result));
            }
            Inline::HandedOff => conn.inline.handed_off(),
            Inline::NotHere => {}
        }
    }
    let cancel = Cancel::new();
    let mut job = job
        .with_deadline(Instant::now() + shared.limits.script_deadline)
        .with_cancel(cancel.clone());
    // A notification has no id to stream under or be cancelled by.
    let mut line_gate = None;
    let registration = request.id.map(|id| {
        if params.stream {
            let (sink, gate) = conn.plays.sink(id, shared.metrics.clone());
            job.output = Some(sink);
            line_gate = Some(gate);
        }
        conn.plays.start(id, &cancel)
    });
    let in_flight = conn.in_flight.enter();
    let metrics = shared.metrics.clone();
    let started = Instant::now();
    let execution = shared.executor.execute(job);
    MethodOutcome::Later(Box::pin(async move {
        // `cancel` answers the play at once, queued or running; the executor
        // stops the script itself as soon as it sees the flag.
        let result = match select(execution, pin!(cancel.cancelled())).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(ExecutorError::Cancelled),
        };
        // No line of this play after its answer: those queued until now go
        // out first (the session drains them before any answer).
        if let Some(gate) = &line_gate {
            gate.close();
        }
        metrics.script_finished(started.elapsed());
        if matches!(result, Err(ExecutorError::Cancelled)) {
            metrics.script_cancelled();
        }
        drop(in_flight);
        drop(registration);
        play_answer(result)
    }))
}

fn play_answer(result: Result<ScriptOutput, ExecutorError>) -> Outcome {
    match result {
        Ok(output) => to_json(&PlayResult {
            output: output.output,
        }),
        Err(error) => Err(RpcError::new(error.code(), error.to_string())),
    }
}

/// `cancel` (protocol 1.1): stops a queued or running `play` of this
/// connection.
fn cancel(conn: &ConnectionState, request: &Request<'_>) -> Outcome {
    let params = request.parse_params::<CancelParams>()?;
    to_json(&CancelResult {
        cancelled: conn.plays.cancel(&params.id),
    })
}

fn to_json(value: &impl serde::Serialize) -> Outcome {
    serde_json::value::to_raw_value(value)
        .map_err(|e| RpcError::internal(format!("cannot encode result: {e}")))
}

/// A response's text, under the request's id as it was written.
fn respond(id: &RawValue, outcome: &Outcome) -> String {
    match outcome {
        Ok(result) => write_result(id, result),
        Err(error) => write_error(id, error),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use circle_executor::{ExecuteFuture, Executor};
    use tokio::sync::watch;

    use super::*;
    use crate::circle::CircleIdentity;
    use crate::config::ServerConfig;
    use crate::inline_credit::MAX_CREDIT;

    /// Hands every inline try on, and answers every play it is given.
    #[derive(Default)]
    struct HandsEveryPlayOn {
        inline_tries: AtomicUsize,
        executed: AtomicUsize,
    }

    impl Executor for HandsEveryPlayOn {
        fn execute(&self, _job: ScriptJob) -> ExecuteFuture {
            self.executed.fetch_add(1, Ordering::Relaxed);
            Box::pin(async {
                Ok(ScriptOutput {
                    output: "42".to_owned(),
                })
            })
        }

        fn run_inline(&self, _job: &ScriptJob) -> Inline {
            self.inline_tries.fetch_add(1, Ordering::Relaxed);
            Inline::HandedOff
        }
    }

    #[test]
    fn a_connection_stops_trying_inline_after_its_last_hand_off() {
        let executor = Arc::new(HandsEveryPlayOn::default());
        let (_stop, shutdown) = watch::channel(false);
        let circle = CircleIdentity {
            name: "test".to_owned(),
            public_key: String::new(),
        };
        let shared = ServerState::new(
            &ServerConfig::default(),
            circle,
            executor.clone(),
            None,
            shutdown,
        );
        let origin = Rc::new(ChallengeOrigin {
            domain: "localhost".to_owned(),
            uri: "ws://localhost/ws".to_owned(),
        });
        let mut conn = ConnectionState::new(&shared, origin, Listener::Plain, None);
        let plays = usize::from(MAX_CREDIT) + 2;
        for id in 0..plays {
            let request = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"play","params":{{"script":"40 + 2"}}}}"#
            );
            assert!(matches!(
                handle_text(&shared, &mut conn, &request),
                Handled::Done(Answer::Later(_))
            ));
        }
        // Every play ran on a script thread; only the first ones tried here.
        assert_eq!(executor.executed.load(Ordering::Relaxed), plays);
        assert_eq!(
            executor.inline_tries.load(Ordering::Relaxed),
            usize::from(MAX_CREDIT)
        );
    }
}
