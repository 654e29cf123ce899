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
use crate::router::{self, Connection, Reply};
use crate::state::Shared;

/// What became of a frame: answered (now or later), or a batch waiting at
/// the gate with some of its requests still to go.
pub(crate) enum Handled {
    Done(Reply),
    Waiting(WaitingBatch),
}

/// A batch that stopped at the gate: its frame, where each request lies in
/// it, and the replies of those already handled.
pub(crate) struct WaitingBatch {
    text: String,
    spans: Vec<Range<usize>>,
    next: usize,
    /// Kept polled while the batch waits ([`WaitingBatch::drive`]): a
    /// script's answer future is what counts it out of the connection's
    /// scripts in flight, so an unpolled one would hold the gate shut.
    replies: Vec<MaybeDone<LocalBoxFuture<'static, Option<String>>>>,
}

impl WaitingBatch {
    fn new(text: String, spans: Vec<Range<usize>>, next: usize, replies: Vec<Reply>) -> Self {
        let replies = replies
            .into_iter()
            .map(|reply| match reply {
                Reply::Now(answer) => MaybeDone::Done(answer),
                Reply::Later(answer) => MaybeDone::Future(answer),
            })
            .collect();
        WaitingBatch {
            text,
            spans,
            next,
            replies,
        }
    }

    /// Goes on with the batch's next request (the gate may be open again).
    pub fn resume(self, shared: &Shared, conn: &mut Connection) -> Handled {
        let WaitingBatch {
            text,
            spans,
            next,
            replies,
        } = self;
        let replies = replies
            .into_iter()
            .map(|reply| match reply {
                MaybeDone::Future(answer) => Reply::Later(answer),
                MaybeDone::Done(answer) => Reply::Now(answer),
                // Outputs are taken only by `finish`, never while waiting.
                MaybeDone::Gone => Reply::Now(None),
            })
            .collect();
        match run(shared, conn, &text, &spans, next, replies) {
            Progress::Done(reply) => Handled::Done(reply),
            Progress::Blocked { next, replies } => {
                Handled::Waiting(WaitingBatch::new(text, spans, next, replies))
            }
        }
    }

    /// Polls the batch's running scripts so that those that finish count
    /// themselves out (which opens the gate). Never resolves.
    pub fn drive(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            for reply in &mut self.replies {
                let _ = Pin::new(reply).poll(cx);
            }
            Poll::Pending
        })
    }
}

/// Starts the batch in `text`, whose requests are `items`.
pub(crate) fn start(
    shared: &Shared,
    conn: &mut Connection,
    text: &str,
    items: &[&RawValue],
) -> Handled {
    if items.is_empty() {
        let error = RpcError::invalid_request("an empty batch is not a valid request");
        return Handled::Done(Reply::Now(Some(write_error(NULL_ID, &error))));
    }
    if items.len() > shared.limits.max_batch_len {
        let error = RpcError::invalid_request(format!(
            "batch of {} requests is over the limit of {}",
            items.len(),
            shared.limits.max_batch_len
        ));
        return Handled::Done(Reply::Now(Some(write_error(NULL_ID, &error))));
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
        Progress::Done(reply) => Handled::Done(reply),
        // Copied only now: a batch that never waits borrows its frame.
        Progress::Blocked { next, replies } => {
            Handled::Waiting(WaitingBatch::new(text.to_owned(), spans, next, replies))
        }
    }
}

enum Progress {
    Done(Reply),
    Blocked { next: usize, replies: Vec<Reply> },
}

/// Handles the requests from `next` on, in order (a batch may sign in and
/// then play), until the batch is done or has to wait.
fn run(
    shared: &Shared,
    conn: &mut Connection,
    text: &str,
    spans: &[Range<usize>],
    mut next: usize,
    mut replies: Vec<Reply>,
) -> Progress {
    let limits = &shared.limits;
    while let Some(span) = spans.get(next) {
        if conn.auth.failed_attempts() >= limits.max_failed_auth_attempts {
            // The connection is about to be closed (1008): what is running
            // has nobody to answer to, so only the answers at hand go out.
            return Progress::Done(answers_at_hand(replies));
        }
        if conn.gate(limits) != Gate::Open {
            return Progress::Blocked { next, replies };
        }
        replies.push(router::handle_one(shared, conn, &text[span.clone()]));
        next += 1;
    }
    Progress::Done(finish(replies))
}

/// The batch's answer from its requests' replies.
fn finish(replies: Vec<Reply>) -> Reply {
    if replies.iter().all(|reply| matches!(reply, Reply::Now(_))) {
        return answers_at_hand(replies);
    }
    let pending = replies.into_iter().map(|reply| match reply {
        Reply::Now(answer) => Box::pin(future::ready(answer)) as LocalBoxFuture<'static, _>,
        Reply::Later(future) => future,
    });
    let joined = future::join_all(pending);
    Reply::Later(Box::pin(
        async move { join(joined.await.into_iter().flatten()) },
    ))
}

/// The batch answer of the replies that are ready, leaving out the rest.
fn answers_at_hand(replies: Vec<Reply>) -> Reply {
    Reply::Now(join(replies.into_iter().filter_map(|reply| match reply {
        Reply::Now(answer) => answer,
        Reply::Later(_) => None,
    })))
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
