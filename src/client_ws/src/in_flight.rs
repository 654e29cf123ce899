//! The requests of one connection that wait for their answer, by id: a
//! plain call waits for one answer, a streamed `play` also takes the
//! `output` notifications sent under its id (protocol 1.1) before it.
//!
//! The reader task is the only writer of this table and must never wait on
//! a caller: it serves every request of the connection, so a caller that
//! does not read its stream must not hold up the answers of the others (or
//! the answer to its own `cancel`). A streamed play's lines therefore wait
//! in a bounded queue ([`MAX_QUEUED_LINES`], [`MAX_QUEUED_BYTES`]); once a
//! line finds it full, that play's later lines are dropped, counted, and
//! reach the reader in the answer's output instead (the server puts every
//! line there too), so nothing is lost and memory stays bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use circle_protocol::{Frame, Id, OutputParams, Response, method, parse_frame};
use serde::Deserialize;
use tokio::sync::oneshot;
use web_time::Instant;

use crate::error::CircleWsClientError;

/// Lines of one streamed play that may wait for its reader.
pub const MAX_QUEUED_LINES: usize = 1024;
/// Bytes of text of one streamed play that may wait for its reader (a
/// single longer line is still taken when nothing else waits).
pub const MAX_QUEUED_BYTES: usize = 1 << 20;

/// What a request gets back: the server's answer, or why none can come.
pub(crate) type Answer = Result<Response, CircleWsClientError>;

/// One waiting request.
enum Waiter {
    /// A plain call: one answer.
    Call(oneshot::Sender<Answer>),
    /// A streamed play: its lines, then its answer.
    Stream(StreamFeed),
}

/// Requests waiting for an answer, and whether the connection has ended.
///
/// Both live under one lock so that a request cannot be registered after the
/// reader has failed everything (it would then wait for its full timeout).
#[derive(Default)]
struct InFlight {
    waiting: HashMap<i64, Waiter>,
    ended: Option<String>,
}

/// The requests of one connection waiting for their answer.
#[derive(Default)]
pub(crate) struct InFlightTable(Mutex<InFlight>);

impl InFlightTable {
    fn lock(&self) -> MutexGuard<'_, InFlight> {
        // The table stays consistent even if a holder panicked: every
        // operation on it is a single insert or remove.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, id: i64, waiter: Waiter) -> Result<(), CircleWsClientError> {
        let mut in_flight = self.lock();
        if let Some(reason) = &in_flight.ended {
            return Err(CircleWsClientError::ConnectionLost {
                reason: reason.clone(),
            });
        }
        in_flight.waiting.insert(id, waiter);
        Ok(())
    }

    /// Waits for the answer to request `id`.
    pub(crate) fn register(
        &self,
        id: i64,
    ) -> Result<oneshot::Receiver<Answer>, CircleWsClientError> {
        let (sender, receiver) = oneshot::channel();
        self.insert(id, Waiter::Call(sender))?;
        Ok(receiver)
    }

    /// Waits for the `output` notifications and the answer of the streamed
    /// play `id`.
    pub(crate) fn register_stream(&self, id: i64) -> Result<StreamFeed, CircleWsClientError> {
        let feed = StreamFeed::default();
        self.insert(id, Waiter::Stream(feed.clone()))?;
        Ok(feed)
    }

    /// Stops waiting for request `id` (its caller gave up).
    pub(crate) fn forget(&self, id: i64) {
        self.lock().waiting.remove(&id);
    }

    /// Hands a text frame from the server to whoever waits for it.
    pub(crate) fn receive(&self, text: &str) {
        match parse_frame(text) {
            Ok(Frame::Single(text)) => self.receive_message(text),
            Ok(Frame::Batch(items)) => {
                for item in items {
                    self.receive_message(item.get());
                }
            }
            Err(error) => tracing::warn!(%error, "the server sent a frame that is not JSON"),
        }
    }

    fn receive_message(&self, text: &str) {
        // Answers are the common case and the big ones: read them first; a
        // notification has no `id` and fails that fast.
        let error = match serde_json::from_str::<Response>(text) {
            Ok(response) => return self.answer(response),
            Err(error) => error,
        };
        match serde_json::from_str::<Notification>(text) {
            Ok(notification) if notification.method == method::OUTPUT => {
                match serde_json::from_value::<OutputParams>(notification.params) {
                    Ok(output) => self.output(output),
                    Err(error) => {
                        tracing::warn!(%error, "an output notification without id or line")
                    }
                }
            }
            Ok(notification) => {
                tracing::debug!(method = notification.method, "ignoring a notification")
            }
            Err(_) => tracing::warn!(%error, "the server sent something that is not JSON-RPC"),
        }
    }

    fn answer(&self, response: Response) {
        let Id::Number(id) = response.id else {
            // Only answers to requests the server could not read carry a null
            // (or foreign) id; nobody waits for them by id.
            tracing::warn!(id = %response.id, error = ?response.error, "answer without a request id of ours");
            return;
        };
        let waiter = self.lock().waiting.remove(&id);
        match waiter {
            // The receiver is gone when the caller timed out or gave up.
            Some(Waiter::Call(waiter)) => drop(waiter.send(Ok(response))),
            Some(Waiter::Stream(feed)) => feed.finish(Ok(response)),
            None => tracing::debug!(id, "answer for a request nobody waits for any more"),
        }
    }

    /// One printed line of a streamed play: to its stream, if one waits
    /// under that id; otherwise dropped (a stream given up, or a server
    /// that streams what was not asked for).
    fn output(&self, output: OutputParams) {
        let in_flight = self.lock();
        let waiter = output.id.as_i64().and_then(|id| in_flight.waiting.get(&id));
        match waiter {
            Some(Waiter::Stream(feed)) => feed.push_line(output.line),
            Some(Waiter::Call(_)) | None => {
                tracing::debug!(id = %output.id, "output for no stream of ours: ignored")
            }
        }
    }

    /// Marks the connection ended and fails every waiting request. Only the
    /// first reason is kept: it is the cause, later ones are consequences.
    pub(crate) fn end(&self, reason: String) {
        let (waiting, reason) = {
            let mut in_flight = self.lock();
            let reason = in_flight.ended.get_or_insert(reason).clone();
            (std::mem::take(&mut in_flight.waiting), reason)
        };
        for (_, waiter) in waiting {
            let lost = Err(CircleWsClientError::ConnectionLost {
                reason: reason.clone(),
            });
            match waiter {
                Waiter::Call(waiter) => drop(waiter.send(lost)),
                Waiter::Stream(feed) => feed.finish(lost),
            }
        }
    }

    /// Why the connection ended, once it has.
    pub(crate) fn ended(&self) -> Option<String> {
        self.lock().ended.clone()
    }
}

/// The envelope of a notification (a message with a `method` and no `id`).
#[derive(Deserialize)]
struct Notification {
    method: String,
    #[serde(default)]
    params: serde_json::Value,
}

/// What the reader task hands one streamed play: its lines, then its
/// answer. Shared by the table (writer) and the [`PlayStream`] (reader).
///
/// [`PlayStream`]: crate::PlayStream
#[derive(Clone, Default)]
pub(crate) struct StreamFeed(Arc<Mutex<Feed>>);

/// The state of one stream's queue.
#[derive(Default)]
pub(crate) struct Feed {
    lines: VecDeque<String>,
    queued_bytes: usize,
    /// Lines dropped since a line found the queue full. Once one is, every
    /// later line is dropped too, so the lines delivered stay a prefix of the
    /// output, and the answer's [`tail`](crate::PlayDone::tail) carries the rest.
    pub(crate) dropped: u64,
    /// Lines queued so far, and their bytes: the prefix of the output the
    /// reader sees as lines.
    pub(crate) queued_total: u64,
    pub(crate) queued_total_bytes: usize,
    /// When the server last sent something for this play.
    pub(crate) last_heard: Option<Instant>,
    end: Option<Answer>,
    waker: Option<Waker>,
}

impl StreamFeed {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Feed> {
        // Every change to a feed is a few field updates with no call in
        // between that could panic halfway.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push_line(&self, line: String) {
        let mut feed = self.lock();
        feed.last_heard = Some(Instant::now());
        if feed.end.is_some() {
            return;
        }
        let full = !feed.lines.is_empty()
            && (feed.lines.len() >= MAX_QUEUED_LINES
                || feed.queued_bytes.saturating_add(line.len()) > MAX_QUEUED_BYTES);
        if feed.dropped > 0 || full {
            if feed.dropped == 0 {
                tracing::debug!(
                    "a streamed play's reader fell behind: later lines come with the answer"
                );
            }
            feed.dropped += 1;
            return;
        }
        feed.queued_total += 1;
        feed.queued_total_bytes = feed.queued_total_bytes.saturating_add(line.len());
        feed.queued_bytes += line.len();
        feed.lines.push_back(line);
        feed.wake();
    }

    fn finish(&self, answer: Answer) {
        let mut feed = self.lock();
        if feed.end.is_none() {
            feed.end = Some(answer);
            feed.wake();
        }
    }
}

impl Feed {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The next line waiting, if any.
    pub(crate) fn pop_line(&mut self) -> Option<String> {
        let line = self.lines.pop_front()?;
        self.queued_bytes -= line.len();
        Some(line)
    }

    /// The answer, once every line before it has been taken.
    pub(crate) fn take_end(&mut self) -> Option<Answer> {
        if self.lines.is_empty() {
            self.end.take()
        } else {
            None
        }
    }

    /// Wakes `waker` when a line or the answer comes.
    pub(crate) fn set_waker(&mut self, waker: &Waker) {
        self.waker = Some(waker.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_after_the_end_fail_fast() {
        let table = InFlightTable::default();
        let mut waiting = table.register(1).unwrap();
        let feed = table.register_stream(2).unwrap();
        table.end("the server closed the connection (1001 going away)".into());
        match waiting.try_recv() {
            Ok(Err(CircleWsClientError::ConnectionLost { reason })) => {
                assert!(reason.contains("1001"))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            feed.lock().take_end(),
            Some(Err(CircleWsClientError::ConnectionLost { .. }))
        ));
        assert!(matches!(
            table.register(3),
            Err(CircleWsClientError::ConnectionLost { .. })
        ));
        // The first reason is the one kept.
        table.end("later".into());
        assert!(table.ended().unwrap().contains("1001"));
    }

    #[test]
    fn answers_reach_their_request_only() {
        let table = InFlightTable::default();
        let mut first = table.register(1).unwrap();
        let mut second = table.register(2).unwrap();
        table.receive(r#"{"jsonrpc":"2.0","id":2,"result":{"output":"two"}}"#);
        table.receive(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#);
        assert!(first.try_recv().is_err());
        let answer = second.try_recv().unwrap().unwrap();
        assert_eq!(answer.id, Id::Number(2));
        table.forget(1);
        assert!(table.lock().waiting.is_empty());
    }

    fn output(id: &str, line: &str) -> String {
        format!(r#"{{"jsonrpc":"2.0","method":"output","params":{{"id":{id},"line":"{line}"}}}}"#)
    }

    #[test]
    fn output_reaches_its_stream_in_order_and_unknown_ids_are_ignored() {
        let table = InFlightTable::default();
        let mut call = table.register(1).unwrap();
        let feed = table.register_stream(2).unwrap();
        for text in [
            output("2", "a"),
            output("9", "nobody's"),
            output("1", "not a stream"),
            output("\"2\"", "a string id"),
            r#"{"jsonrpc":"2.0","method":"output","params":{"line":"no id"}}"#.into(),
            r#"{"jsonrpc":"2.0","method":"other","params":[]}"#.into(),
            r#"{"jsonrpc":"2.0","method":"output"}"#.into(),
            format!("[{},{}]", output("2", "b"), output("2", "c")),
        ] {
            table.receive(&text);
        }
        table.receive(r#"{"jsonrpc":"2.0","id":2,"result":{"output":"a\nb\nc"}}"#);
        // A line after the answer belongs to nobody.
        table.receive(&output("2", "late"));
        let mut feed = feed.lock();
        let lines: Vec<String> = std::iter::from_fn(|| feed.pop_line()).collect();
        assert_eq!(lines, ["a", "b", "c"]);
        assert!(matches!(feed.take_end(), Some(Ok(_))));
        assert!(call.try_recv().is_err(), "the plain call still waits");
    }

    #[test]
    fn a_full_queue_drops_later_lines_and_counts_them() {
        let table = InFlightTable::default();
        let feed = table.register_stream(1).unwrap();
        for n in 0..MAX_QUEUED_LINES + 10 {
            table.receive(&output("1", &format!("line {n}")));
        }
        // Reading frees room, but the play stays overflowed: its lines must
        // stay a prefix of the output.
        assert_eq!(feed.lock().pop_line().as_deref(), Some("line 0"));
        table.receive(&output("1", "more"));
        let feed = feed.lock();
        assert_eq!(feed.lines.len(), MAX_QUEUED_LINES - 1);
        assert_eq!(feed.queued_total, MAX_QUEUED_LINES as u64);
        assert_eq!(feed.dropped, 11);
    }

    #[test]
    fn queued_bytes_are_bounded_too() {
        let feed = StreamFeed::default();
        let big = "x".repeat(MAX_QUEUED_BYTES / 2 + 1);
        feed.push_line(big.clone());
        feed.push_line(big.clone());
        let mut feed_state = feed.lock();
        assert_eq!((feed_state.lines.len(), feed_state.dropped), (1, 1));
        feed_state.pop_line();
        assert_eq!(feed_state.queued_bytes, 0);
        drop(feed_state);
        // One line longer than the cap is still taken when nothing waits.
        let alone = StreamFeed::default();
        alone.push_line("y".repeat(MAX_QUEUED_BYTES + 1));
        assert_eq!(alone.lock().lines.len(), 1);
    }
}
