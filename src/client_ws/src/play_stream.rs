//! Streamed `play` (protocol 1.1): [`CircleWsClient::play_stream`] returns a
//! [`PlayStream`] of the lines a script prints, as it prints them, then its
//! answer; [`PlayStream::cancel`] (or a [`PlayCanceller`] from another task)
//! stops the script, and so does dropping the stream before its end.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use circle_protocol::{CancelParams, CancelResult, PlayParams, PlayResult, method};
use futures_util::Stream;
use tokio::sync::OwnedSemaphorePermit;
use web_time::Instant;

use crate::client::decode_answer;
use crate::connection::Connection;
use crate::error::CircleWsClientError;
use crate::in_flight::{Answer, StreamFeed};
use crate::{CircleWsClient, rt};

/// One item of a [`PlayStream`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlayEvent {
    /// One line the script printed, without its line break, in order.
    Line(String),
    /// The script finished: the last item of the stream.
    Done(PlayDone),
}

/// How a streamed play finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayDone {
    /// The whole output, as [`CircleWsClient::play`] returns it: every
    /// printed line, then the script's value unless it is `()`, joined
    /// with `\n`.
    pub output: String,
    /// What the [`Line`](PlayEvent::Line) items did not show: the script's
    /// value, after any lines dropped because the reader fell behind (see
    /// [`dropped_lines`](Self::dropped_lines)). Printing every line and
    /// then `tail` (when not empty) prints `output`.
    pub tail: String,
    /// Lines not delivered as [`Line`](PlayEvent::Line) items because more
    /// than [`MAX_QUEUED_LINES`](crate::MAX_QUEUED_LINES) (or
    /// [`MAX_QUEUED_BYTES`](crate::MAX_QUEUED_BYTES)) waited unread: from
    /// the first such line on, the play's lines are in `tail` only.
    pub dropped_lines: u64,
}

impl PlayDone {
    /// The answer, given that the reader was handed the first `lines`
    /// printed lines (`bytes` long in all) one by one.
    fn new(output: String, lines: u64, bytes: usize, dropped_lines: u64) -> PlayDone {
        let tail = tail_after(&output, lines, bytes).to_owned();
        PlayDone {
            output,
            tail,
            dropped_lines,
        }
    }
}

/// `output` without its first `lines` lines (`bytes` long in all, joined
/// by `\n`). An output that does not start that way (a server that does not
/// keep protocol 1.1's promise) is returned whole: shown twice rather than
/// lost.
fn tail_after(output: &str, lines: u64, bytes: usize) -> &str {
    if lines == 0 {
        return output;
    }
    let separators = usize::try_from(lines - 1).unwrap_or(usize::MAX);
    let prefix = bytes.saturating_add(separators);
    match output.get(prefix..) {
        Some(rest) if rest.is_empty() => rest,
        Some(rest) => rest.strip_prefix('\n').unwrap_or(output),
        None => output,
    }
}

/// The idle timer of a stream: `Send` natively, like the stream.
#[cfg(not(target_arch = "wasm32"))]
type Timer = Pin<Box<dyn Future<Output = ()> + Send>>;
/// The idle timer of a stream (the page's one thread).
#[cfg(target_arch = "wasm32")]
type Timer = Pin<Box<dyn Future<Output = ()>>>;

/// The lines of a running script, then its answer: a [`Stream`] of
/// `Result<PlayEvent, CircleWsClientError>` from
/// [`CircleWsClient::play_stream`].
///
/// Every [`Line`](PlayEvent::Line) comes in the order printed; the last
/// item is [`Done`](PlayEvent::Done) or an error (a script error, a
/// limit, [`Cancelled`](CircleWsClientError::Cancelled), a lost
/// connection), and then the stream ends.
///
/// - **Cancel**: [`cancel`](Self::cancel) asks the server to stop the
///   script and resolves with its answer; the stream then ends with
///   `Cancelled`. Dropping the stream before its end sends `cancel` too
///   (without waiting), so the server's script thread is freed.
/// - **Slow readers**: lines wait for the reader in a bounded queue. When
///   it is full the reader is not waited for (the connection serves every
///   other request meanwhile): the play's later lines are counted and come
///   in [`PlayDone::tail`], from the answer, which carries every line.
/// - **Timeout**: the client's request timeout is an *idle* timeout here:
///   the stream fails with [`Timeout`](CircleWsClientError::Timeout) (and
///   cancels the play) when the server sends nothing for that long.
#[must_use = "a stream does nothing unless polled, and cancels its play when dropped"]
pub struct PlayStream {
    feed: StreamFeed,
    canceller: PlayCanceller,
    /// Keeps the connection alive while the stream may still cancel on it.
    connection: Arc<Connection>,
    idle_timeout: Duration,
    timer: Timer,
    started: Instant,
    finished: bool,
    /// A play in flight holds a slot like any request.
    _slot: OwnedSemaphorePermit,
}

impl std::fmt::Debug for PlayStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayStream")
            .field("id", &self.canceller.id)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl CircleWsClient {
    /// Runs a Rhai script on the server and streams what it prints as it
    /// prints it (protocol 1.1 `"stream": true`), then its answer: see
    /// [`PlayStream`].
    ///
    /// Resolves once the request is sent; errors then are those of
    /// sending (not connected, connection lost, no in-flight slot within
    /// the request timeout). A server older than 1.1 sends no lines: the
    /// stream then holds only the answer, whose `tail` is the whole output.
    ///
    /// ```no_run
    /// # async fn run(client: circle_client_ws::CircleWsClient)
    /// #     -> Result<(), circle_client_ws::CircleWsClientError> {
    /// use circle_client_ws::PlayEvent;
    /// use futures_util::StreamExt;
    ///
    /// let mut stream = client.play_stream("for n in 0..3 { print(n) } 42").await?;
    /// while let Some(item) = stream.next().await {
    ///     match item? {
    ///         PlayEvent::Line(line) => println!("{line}"),           // 0, 1, 2 as printed
    ///         PlayEvent::Done(done) => println!("= {}", done.tail), // = 42
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn play_stream(
        &self,
        script: impl Into<String>,
    ) -> Result<PlayStream, CircleWsClientError> {
        let connection = self.connection_for_request().await?;
        let slot = self
            .in_flight_slot(method::PLAY, rt::deadline_after(self.request_timeout()))
            .await?;
        let params = PlayParams {
            script: script.into(),
            stream: true,
        };
        let (id, text) = self.request_text(method::PLAY, &params)?;
        let feed = connection.start_stream(id, text)?;
        let idle_timeout = self.request_timeout();
        Ok(PlayStream {
            feed,
            canceller: PlayCanceller {
                client: self.clone(),
                connection: Arc::downgrade(&connection),
                id,
            },
            connection,
            idle_timeout,
            timer: Box::pin(rt::sleep(idle_timeout)),
            started: Instant::now(),
            finished: false,
            _slot: slot,
        })
    }
}

impl PlayStream {
    /// Asks the server to stop the script, and resolves with its answer:
    /// `true` when the play was still queued or running (the stream then
    /// ends with [`Cancelled`](CircleWsClientError::Cancelled)), `false`
    /// when it had already finished (the stream ends as it would have).
    pub async fn cancel(&self) -> Result<bool, CircleWsClientError> {
        self.canceller.cancel().await
    }

    /// A handle that cancels this play from elsewhere (another task, a
    /// Ctrl-C handler) while the stream is being read.
    pub fn canceller(&self) -> PlayCanceller {
        self.canceller.clone()
    }

    /// The JSON-RPC id of the `play` request (what `cancel` names).
    pub fn id(&self) -> i64 {
        self.canceller.id
    }

    /// Ends the stream early: nobody will read the answer, so stop waiting
    /// for it and ask the server to stop the script (without waiting).
    fn abandon(&mut self) {
        self.finished = true;
        self.connection.forget(self.canceller.id);
        let params = CancelParams {
            id: self.canceller.id.into(),
        };
        match self.canceller.client.request_text(method::CANCEL, &params) {
            Ok((_, text)) => {
                // A connection that is gone has no script of ours left.
                let _ = self.connection.send_unanswered(text);
            }
            Err(error) => tracing::warn!(%error, "cannot cancel an abandoned play"),
        }
    }

    /// The last item, from the answer.
    fn conclude(&mut self, answer: Answer, lines: u64, bytes: usize, dropped: u64) -> Item {
        self.finished = true;
        let result: PlayResult = decode_answer(method::PLAY, answer?)?;
        Ok(PlayEvent::Done(PlayDone::new(
            result.output,
            lines,
            bytes,
            dropped,
        )))
    }
}

type Item = Result<PlayEvent, CircleWsClientError>;

impl Stream for PlayStream {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        let last_heard = {
            let mut feed = this.feed.lock();
            if let Some(line) = feed.pop_line() {
                return Poll::Ready(Some(Ok(PlayEvent::Line(line))));
            }
            if let Some(answer) = feed.take_end() {
                let (lines, bytes, dropped) =
                    (feed.queued_total, feed.queued_total_bytes, feed.dropped);
                drop(feed);
                return Poll::Ready(Some(this.conclude(answer, lines, bytes, dropped)));
            }
            feed.set_waker(cx.waker());
            feed.last_heard.unwrap_or(this.started)
        };
        // The idle timer: when it fires, the server may have spoken since
        // it was set; if so, wait again until the idle time from then.
        while this.timer.as_mut().poll(cx).is_ready() {
            let idle_until = last_heard + this.idle_timeout;
            let now = Instant::now();
            if now >= idle_until {
                this.abandon();
                return Poll::Ready(Some(Err(CircleWsClientError::Timeout {
                    operation: method::PLAY.to_owned(),
                    after: this.idle_timeout,
                })));
            }
            this.timer = Box::pin(rt::sleep(idle_until - now));
        }
        Poll::Pending
    }
}

impl Drop for PlayStream {
    fn drop(&mut self) {
        if !self.finished {
            self.abandon();
        }
    }
}

/// Cancels one streamed play; from [`PlayStream::canceller`]. Cheap to
/// clone; does not keep the connection open.
#[derive(Clone)]
pub struct PlayCanceller {
    client: CircleWsClient,
    connection: Weak<Connection>,
    id: i64,
}

impl std::fmt::Debug for PlayCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayCanceller")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PlayCanceller {
    /// As [`PlayStream::cancel`]. On the play's own connection (a `cancel`
    /// reaches only plays of the connection that sent it): when that
    /// connection is gone, so is the play, and this is
    /// [`ConnectionLost`](CircleWsClientError::ConnectionLost).
    pub async fn cancel(&self) -> Result<bool, CircleWsClientError> {
        let connection =
            self.connection
                .upgrade()
                .ok_or_else(|| CircleWsClientError::ConnectionLost {
                    reason: "the play's connection is gone".into(),
                })?;
        let deadline = rt::deadline_after(self.client.request_timeout());
        let params = CancelParams { id: self.id.into() };
        // No in-flight slot: the plays to cancel may hold all of them.
        let result: CancelResult = self
            .client
            .exchange(&connection, method::CANCEL, params, deadline)
            .await?;
        Ok(result.cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_what_the_lines_did_not_show() {
        // "a", "bc" streamed; the value 42.
        assert_eq!(tail_after("a\nbc\n42", 2, 3), "42");
        assert_eq!(tail_after("a\nbc", 2, 3), "");
        // Only "a" streamed (the rest dropped): the rest is in the tail.
        assert_eq!(tail_after("a\nbc\n42", 1, 1), "bc\n42");
        // Empty lines count.
        assert_eq!(tail_after("\n\n7", 2, 0), "7");
        // Nothing streamed (a 1.0 server): everything.
        assert_eq!(tail_after("hi\n42", 0, 0), "hi\n42");
        // An output that does not match: whole, never cut mid-character.
        assert_eq!(tail_after("é", 1, 1), "é");
        assert_eq!(tail_after("ab", 1, 1), "ab");
        assert_eq!(tail_after("a", 3, 10), "a");
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn streams_and_cancellers_are_shareable() {
        fn assert_send<T: Send + 'static>() {}
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send::<PlayStream>();
        assert_send_sync::<PlayCanceller>();
    }
}
