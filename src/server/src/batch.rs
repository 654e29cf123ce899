//! JSON-RPC batches, taken one request at a time.
//!
//! A batch is not one request but many, so the limits that hold per request
//! hold inside it too: each of its requests waits at the connection's
//! [`Gate`] like a request of its own frame would (a batch longer than what
//! may run at once waits for room instead of being refused), and each failed
//! `authenticate` counts, so the attempt that reaches the cap is the batch's
//! last answered request. A batch that has to wait is kept as a
//! [`WaitingBatch`] while the session stops reading the connection.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::task::Poll;

use circle_protocol::jsonrpc::NULL_ID;
use circle_protocol::{RpcError, write_error};
use futures_util::future::{self, LocalBoxFuture, MaybeDone};
use serde_json::value::RawValue;

use crate::pacing::Gate;
use crate::router::{self, Answer, ConnectionState};
use crate::state::ServerState;

/// What became of a frame: answered (now or later), or a batch waiting at
/// the gate with some of its requests still to go.
pub(crate) enum Handled {
    Done(Answer),
    /// Boxed: a session keeps room for a waiting batch, and batches that
    /// wait are rare next to the idle connections that keep that room.
    Waiting(Box<WaitingBatch>),
}

/// A batch that stopped at the gate: its frame, where each request lies in
/// it, and the answers of those already handled.
pub(crate) struct WaitingBatch {
    text: String,
    spans: Vec<Range<usize>>,
    next: usize,
    /// Kept polled while the batch waits ([`WaitingBatch::drive`]): a
    /// script's answer future is what counts it out of the connection's
    /// scripts in flight, so an unpolled one would hold the gate shut.
    answers: Vec<MaybeDone<LocalBoxFuture<'static, Option<String>>>>,
}

impl WaitingBatch {
    fn new(text: String, spans: Vec<Range<usize>>, next: usize, answers: Vec<Answer>) -> Box<Self> {
        let answers = answers
            .into_iter()
            .map(|answer| match answer {
                Answer::Now(answer) => MaybeDone::Done(answer),
                Answer::Later(answer) => MaybeDone::Future(answer),
            })
            .collect();
        Box::new(WaitingBatch {
            text,
            spans,
            next,
            answers,
        })
    }

    /// Goes on with the batch's next request (the gate may be open again).
    pub fn resume(self, shared: &ServerState, conn: &mut ConnectionState) -> Handled {
        let WaitingBatch {
            text,
            spans,
            next,
            answers,
        } = self;
        let answers = answers
            .into_iter()
            .map(|answer| match answer {
                MaybeDone::Future(answer) => Answer::Later(answer),
                MaybeDone::Done(answer) => Answer::Now(answer),
                // Outputs are taken only by `finish`, never while waiting.
                MaybeDone::Gone => Answer::Now(None),
            })
            .collect();
        match run(shared, conn, &text, &spans, next, answers) {
            Progress::Done(answer) => Handled::Done(answer),
            Progress::Blocked { next, answers } => {
                Handled::Waiting(WaitingBatch::new(text, spans, next, answers))
            }
        }
    }

    /// Polls the batch's running scripts so that those that finish count
    /// themselves out (which opens the gate). Never resolves.
    pub fn drive(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            for answer in &mut self.answers {
                let _ = Pin::new(answer).poll(cx);
            }
            Poll::Pending
        })
    }
}

/// Starts the batch in `text`, whose requests are `items`.
pub(crate) fn start(
    shared: &ServerState,
    conn: &mut ConnectionState,
    text: &str,
    items: &[&RawValue],
) -> Handled {
    if items.is_empty() {
        let error = RpcError::invalid_request("an empty batch is not a valid request");
        return Handled::Done(Answer::Now(Some(write_error(NULL_ID, &error))));
    }
    if items.len() > shared.limits.max_batch_len {
        let error = RpcError::invalid_request(format!(
            "batch of {} requests is over the limit of {}",
            items.len(),
            shared.limits.max_batch_len
        ));
        return Handled::Done(Answer::Now(Some(write_error(NULL_ID, &error))));
    }
    let spans: Vec<Range<usize>> = items.iter().map(|item| span_of(text, item.get())).collect();
    match run(
        shared,
        conn,
        text,
        &spans,
        0,
        Vec::with_capacity(spans.len()),
    ) {
        Progress::Done(answer) => Handled::Done(answer),
        // Copied only now: a batch that never waits borrows its frame.
        Progress::Blocked { next, answers } => {
            Handled::Waiting(WaitingBatch::new(text.to_owned(), spans, next, answers))
        }
    }
}

enum Progress {
    Done(Answer),
    Blocked { next: usize, answers: Vec<Answer> },
}

/// Handles the requests from `next` on, in order (a batch may sign in and
/// then play), until the batch is done or has to wait.
fn run(
    shared: &ServerState,
    conn: &mut ConnectionState,
    text: &str,
    spans: &[Range<usize>],
    mut next: usize,
    mut answers: Vec<Answer>,
) -> Progress {
    let limits = &shared.limits;
    while let Some(span) = spans.get(next) {
        if conn.auth.failed_attempts() >= limits.max_failed_auth_attempts {
            // The connection is about to be closed (1008): what is running
            // has nobody to answer to, so only the answers at hand go out.
            return Progress::Done(answers_at_hand(answers));
        }
        if conn.gate(limits) != Gate::Open {
            return Progress::Blocked { next, answers };
        }
        answers.push(router::handle_one(shared, conn, &text[span.clone()]));
        next += 1;
    }
    Progress::Done(finish(answers))
}

/// The batch's answer from its requests' answers.
fn finish(answers: Vec<Answer>) -> Answer {
    if answers
        .iter()
        .all(|answer| matches!(answer, Answer::Now(_)))
    {
        return answers_at_hand(answers);
    }
    let pending = answers.into_iter().map(|answer| match answer {
        Answer::Now(answer) => Box::pin(future::ready(answer)) as LocalBoxFuture<'static, _>,
        Answer::Later(future) => future,
    });
    let joined = future::join_all(pending);
    Answer::Later(Box::pin(
        async move { join(joined.await.into_iter().flatten()) },
    ))
}

/// The batch answer of the answers that are ready, leaving out the rest.
fn answers_at_hand(answers: Vec<Answer>) -> Answer {
    Answer::Now(join(answers.into_iter().filter_map(
        |answer| match answer {
            Answer::Now(answer) => answer,
            Answer::Later(_) => None,
        },
    )))
}

/// A batch answer from its responses; nothing at all when every request was
/// a notification.
fn join(answers: impl Iterator<Item = String>) -> Option<String> {
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

/// Where `part`, a slice of `text` handed out by the JSON parser, lies in it.
fn span_of(text: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    start..start + part.len()
}
