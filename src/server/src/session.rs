//! One WebSocket connection: reads frames, hands them to the router, writes
//! the answers back, keeps the peer alive with pings, and closes cleanly.
//!
//! The session knows frames, not methods. It never asks whether the
//! connection is TLS: by the time it runs, TLS is finished.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{LocalBoxFuture, OptionFuture};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tracing::{debug, info, warn};

use crate::batch::{Handled, WaitingBatch};
use crate::config::ServerLimits;
use crate::metrics::LimitHit;
use crate::pacing::Gate;
use crate::router::{self, Answer, ConnectionState};
use crate::session_log::SessionTag;
use crate::state::{ConnectionSlot, ServerState};
use crate::transport::Transport;

/// Why a session ended, for the log.
#[derive(Debug)]
enum Ending {
    PeerClosed,
    PeerVanished,
    Unresponsive,
    /// Answers could not be written for a while: the client sends but does
    /// not read.
    NotReading,
    Idle,
    TooBig,
    NotUtf8,
    ProtocolViolation(String),
    TooManyFailedSignIns,
    ServerStopping,
}

/// Events handled in one go before the answers they produced are flushed,
/// so that a steady stream of requests cannot hold answers back forever.
const EVENTS_PER_FLUSH: usize = 64;

/// How long a closing session waits for the peer's close frame before it
/// drops the connection.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// What woke the session up.
enum Event {
    Frame(Option<Result<Message, WsError>>),
    Answer(Option<String>),
    /// An `output` notification of a streamed play.
    Line(String),
    /// The gate, closed for the given reason, is open again (a script
    /// finished, or a token came); reading, or a waiting batch, goes on.
    GateOpen(Gate),
    Tick,
    ShutdownChanged(bool),
}

/// The next `output` notification; never resolves before a play streamed.
async fn next_line(lines: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match lines {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}

/// Answers of scripts still running.
///
/// The set exists only while a script of the connection runs (`next` drops
/// it when the last one answers): `FuturesUnordered::new` allocates its
/// queue and a stub task (0.2 KB), which an idle connection would otherwise
/// keep for good.
#[derive(Default)]
struct PendingAnswers(Option<FuturesUnordered<LocalBoxFuture<'static, Option<String>>>>);

impl PendingAnswers {
    fn push(&mut self, answer: LocalBoxFuture<'static, Option<String>>) {
        self.0
            .get_or_insert_with(FuturesUnordered::new)
            .push(answer);
    }

    /// No script running: the set exists only while one is.
    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, FuturesUnordered::len)
    }

    /// The next answer to come; `None` when no script is running.
    async fn next(&mut self) -> Option<Option<String>> {
        let set = self.0.as_mut()?;
        let answer = set.next().await;
        if set.is_empty() {
            self.0 = None;
        }
        answer
    }
}

/// One connection's state while it runs.
struct Session<T> {
    shared: Arc<ServerState>,
    socket: WebSocketStream<T>,
    conn: ConnectionState,
    pending: PendingAnswers,
    /// `output` notifications of this connection's streamed plays, once one
    /// has streamed.
    lines: Option<mpsc::Receiver<String>>,
    /// A batch that stopped at the gate; nothing more is read until it is
    /// through.
    waiting: Option<Box<WaitingBatch>>,
    shutdown: watch::Receiver<bool>,
    /// Drives pings and the idle and liveness checks: fires after
    /// [`tick_every`], and is set again each time it fires. A `Sleep`, not
    /// an `Interval`, which would keep 24 more bytes in every idle task.
    ticks: Pin<Box<Sleep>>,
    last_heard: Instant,
    last_request: Instant,
    /// Names the session in its `info` and `warn` lines.
    tag: SessionTag,
}

/// How often a session checks on its client (and pings it). The idle check
/// rides on this timer, so it comes at least as often as the idle timeout
/// is short.
fn tick_every(limits: &ServerLimits) -> Duration {
    if limits.idle_timeout.is_zero() {
        limits.ping_interval
    } else {
        limits.ping_interval.min(limits.idle_timeout / 2)
    }
}

/// Runs one connection until it ends. `slot` keeps the connection counted.
///
/// Not an `async fn`: the session is built before the future, which then
/// holds it once. An `async fn` would keep its arguments (the socket and
/// the connection state, 1.8 KB) beside the session made from them for the
/// life of every connection's task.
pub(crate) fn run<T>(
    shared: Arc<ServerState>,
    socket: WebSocketStream<T>,
    conn: ConnectionState,
    slot: ConnectionSlot,
    tag: SessionTag,
) -> impl Future<Output = ()>
where
    T: Transport,
{
    shared.metrics.connection_opened(conn.listener);
    let mut session = Session {
        shutdown: shared.shutdown.clone(),
        ticks: Box::pin(tokio::time::sleep(tick_every(&shared.limits))),
        shared,
        socket,
        conn,
        pending: PendingAnswers::default(),
        lines: None,
        waiting: None,
        last_heard: Instant::now(),
        last_request: Instant::now(),
        tag,
    };
    async move {
        let ending = session.serve().await;
        // Boxed: `end` takes the session by value, and inline its future
        // would hold a second copy of it (and the closing states) in every
        // idle connection's task (bench/PROFILE.md §6).
        Box::pin(session.end(ending)).await;
        // Counted out once closed. Used in place, not moved into a local at
        // the start: that would keep a second copy in every task.
        drop(slot);
    }
}

impl<T> Session<T>
where
    T: Transport,
{
    /// Serves the connection until something ends it.
    async fn serve(&mut self) -> Ending {
        // A client that sends but never reads fills the socket buffers and
        // then blocks the writes: it is cut off when writing has made no
        // progress for as long as a silent client is given.
        let write_stall = self.shared.limits.ping_interval * 3;
        loop {
            let event = self.next_event().await;
            // Boxed: handling is brief, waiting is what a session mostly
            // does, and inline the handling states (0.8 KB) would sit in
            // every idle connection's task.
            let mut handling = Box::pin(self.handle_ready(event));
            // Nearly always done at the first poll: the stall timer is set
            // only for handling that has to wait (a full socket buffer).
            let handled = match poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx))).await {
                Poll::Ready(handled) => handled,
                Poll::Pending => match tokio::time::timeout(write_stall, handling).await {
                    Ok(handled) => handled,
                    Err(_) => return Ending::NotReading,
                },
            };
            if let Err(ending) = handled {
                return ending;
            }
        }
    }

    /// Waits for whatever comes first: a frame (only while the connection's
    /// gate is open: backpressure), a finished script, the gate opening for
    /// a waiting batch, the tick or a change of the server's shutdown flag.
    async fn next_event(&mut self) -> Event {
        self.claim_lines();
        let gate = self.conn.gate(&self.shared.limits);
        if gate == Gate::Open && self.waiting.is_some() {
            return Event::GateOpen(gate);
        }
        let read = gate == Gate::Open;
        let limits = &self.shared.limits;
        let conn = &self.conn;
        // Built, boxed, only when they can fire: inline, their states (a
        // timer among them) would take room in every idle connection's task.
        let gate_opens: Option<LocalBoxFuture<'_, ()>> = match gate {
            Gate::InFlightFull => Some(Box::pin(conn.room(limits))),
            Gate::RateUntil(at) => Some(Box::pin(tokio::time::sleep_until(at.into()))),
            Gate::Open => None,
        };
        let batch_runs = self
            .waiting
            .as_mut()
            .map(|batch| -> LocalBoxFuture<'_, ()> { Box::pin(batch.drive()) });
        tokio::select! {
            frame = self.socket.next(), if read => Event::Frame(frame),
            Some(answer) = self.pending.next(), if !self.pending.is_empty() => Event::Answer(answer),
            Some(line) = next_line(&mut self.lines) => Event::Line(line),
            Some(()) = OptionFuture::from(gate_opens), if !read => Event::GateOpen(gate),
            Some(()) = OptionFuture::from(batch_runs) => {
                unreachable!("a waiting batch is driven, never done")
            }
            () = &mut self.ticks => Event::Tick,
            // A dropped sender means the server is gone: stop as well.
            changed = self.shutdown.changed() => {
                Event::ShutdownChanged(changed.is_err() || *self.shutdown.borrow())
            }
        }
    }

    /// Handles `event` and whatever else [`Session::ready_now`] finds, then
    /// writes all the answers in one go: pipelined requests get one TLS
    /// record and one syscall per batch instead of one per answer.
    async fn handle_ready(&mut self, mut event: Event) -> Result<(), Ending> {
        for handled in 1..=EVENTS_PER_FLUSH {
            self.handle(event).await?;
            if handled == EVENTS_PER_FLUSH {
                break;
            }
            match self.ready_now() {
                Some(ready) => event = ready,
                None => break,
            }
        }
        self.socket.flush().await.map_err(|_| Ending::PeerVanished)
    }

    /// What is ready without waiting among the events whose answers are
    /// worth writing together: a streamed line, a finished script, a frame
    /// the client has already sent (pipelined requests). The gate, the tick
    /// and the server's shutdown wait for the next [`Session::next_event`]:
    /// polling them here too (the shutdown watch queues and unqueues a
    /// waiter under a lock) cost every request about 1,000 instructions
    /// (bench/PROFILE.md §9), and none of them is an answer.
    fn ready_now(&mut self) -> Option<Event> {
        self.claim_lines();
        if let Some(line) = self.queued_line() {
            return Some(Event::Line(line));
        }
        if let Some(Some(answer)) = self.pending.next().now_or_never() {
            return Some(Event::Answer(answer));
        }
        if self.waiting.is_none() && self.conn.gate(&self.shared.limits) == Gate::Open {
            return self.socket.next().now_or_never().map(Event::Frame);
        }
        None
    }

    /// Takes the receiver of streamed lines once a play has streamed.
    fn claim_lines(&mut self) {
        if self.lines.is_none() {
            self.lines = self.conn.plays.take_lines();
        }
    }

    /// A streamed line already queued, if there is one.
    fn queued_line(&mut self) -> Option<String> {
        self.lines.as_mut().and_then(|lines| lines.try_recv().ok())
    }

    async fn handle(&mut self, event: Event) -> Result<(), Ending> {
        match event {
            Event::Frame(frame) => {
                self.last_heard = Instant::now();
                self.handle_frame(frame).await
            }
            Event::Answer(answer) => {
                // A play's lines were all queued before its answer: out they
                // go first, so the client sees them in order, then the answer.
                while let Some(line) = self.queued_line() {
                    send(&mut self.socket, line).await?;
                }
                match answer {
                    Some(answer) => send(&mut self.socket, answer).await,
                    None => Ok(()),
                }
            }
            Event::Line(line) => send(&mut self.socket, line).await,
            Event::GateOpen(closed_by) => {
                match closed_by {
                    Gate::InFlightFull => self.shared.metrics.limit_hit(LimitHit::InFlight),
                    Gate::RateUntil(_) => self.shared.metrics.limit_hit(LimitHit::RequestRate),
                    Gate::Open => {}
                }
                self.resume_waiting_batch().await
            }
            Event::Tick => {
                let next = tokio::time::Instant::now() + tick_every(&self.shared.limits);
                self.ticks.as_mut().reset(next);
                if self.conn.gate(&self.shared.limits) != Gate::Open || self.waiting.is_some() {
                    // Not reading, so silence proves nothing: the client's
                    // pongs wait in the socket behind its requests.
                    self.last_heard = Instant::now();
                }
                let limits = &self.shared.limits;
                if self.last_heard.elapsed() > limits.ping_interval * 3 {
                    Err(Ending::Unresponsive)
                } else if !limits.idle_timeout.is_zero()
                    && self.pending.is_empty()
                    && self.last_request.elapsed() >= limits.idle_timeout
                {
                    Err(Ending::Idle)
                } else {
                    self.socket
                        .feed(Message::Ping(Bytes::new()))
                        .await
                        .map_err(|_| Ending::PeerVanished)
                }
            }
            Event::ShutdownChanged(true) => Err(Ending::ServerStopping),
            Event::ShutdownChanged(false) => Ok(()),
        }
    }

    /// Handles one frame from the client (received at `last_heard`):
    /// requests go to the router, their immediate answers into the write
    /// buffer, later ones into `pending`.
    async fn handle_frame(
        &mut self,
        frame: Option<Result<Message, WsError>>,
    ) -> Result<(), Ending> {
        let Some(frame) = frame else {
            return Err(Ending::PeerVanished);
        };
        let shared = &self.shared;
        match frame {
            Ok(Message::Text(text)) => {
                self.last_request = self.last_heard;
                let handled = router::handle_text(shared, &mut self.conn, text.as_str());
                self.take_handled(handled).await
            }
            Ok(Message::Binary(_)) => {
                self.last_request = self.last_heard;
                send(&mut self.socket, router::binary_frame_reply()).await
            }
            // tungstenite queues the pong itself; it goes out with the next flush.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Ok(()),
            Ok(Message::Close(_)) => Err(Ending::PeerClosed),
            Err(WsError::Capacity(
                CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
            )) => Err(Ending::TooBig),
            Err(WsError::Utf8(_)) => Err(Ending::NotUtf8),
            Err(WsError::Protocol(violation)) => {
                Err(Ending::ProtocolViolation(violation.to_string()))
            }
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)) => {
                Err(Ending::PeerVanished)
            }
            Err(other) => Err(Ending::ProtocolViolation(other.to_string())),
        }
    }

    /// Goes on with a batch that waited at the gate, if there is one.
    async fn resume_waiting_batch(&mut self) -> Result<(), Ending> {
        match self.waiting.take() {
            Some(batch) => {
                let handled = (*batch).resume(&self.shared, &mut self.conn);
                self.take_handled(handled).await
            }
            // The gate opened for the next frame: reading goes on.
            None => Ok(()),
        }
    }

    /// Sends or keeps what the router made of a frame, then enforces the
    /// cap on failed sign-ins (the attempt that reached it was answered).
    async fn take_handled(&mut self, handled: Handled) -> Result<(), Ending> {
        match handled {
            Handled::Done(Answer::Now(Some(answer))) => send(&mut self.socket, answer).await?,
            Handled::Done(Answer::Now(None)) => {}
            Handled::Done(Answer::Later(answer)) => self.pending.push(answer),
            Handled::Waiting(batch) => self.waiting = Some(batch),
        }
        if self.conn.auth.failed_attempts() >= self.shared.limits.max_failed_auth_attempts {
            return Err(Ending::TooManyFailedSignIns);
        }
        Ok(())
    }

    /// Says why the session ends (to the metrics, the log and the client)
    /// and closes the connection.
    async fn end(mut self, ending: Ending) {
        let close = match &ending {
            Ending::PeerClosed | Ending::PeerVanished => None,
            Ending::Unresponsive => Some((
                CloseCode::Away,
                "no traffic from the client, not even pongs".to_owned(),
            )),
            Ending::NotReading => Some((
                CloseCode::Policy,
                "the client does not read its answers".to_owned(),
            )),
            Ending::Idle => Some((
                CloseCode::Away,
                format!(
                    "no request for {} s",
                    self.shared.limits.idle_timeout.as_secs()
                ),
            )),
            Ending::TooBig => Some((
                CloseCode::Size,
                format!(
                    "message over the limit of {} bytes",
                    self.shared.limits.max_message_bytes
                ),
            )),
            Ending::NotUtf8 => Some((
                CloseCode::Invalid,
                "a text message must be UTF-8".to_owned(),
            )),
            Ending::ProtocolViolation(why) => Some((CloseCode::Protocol, why.clone())),
            Ending::TooManyFailedSignIns => Some((
                CloseCode::Policy,
                "too many failed authenticate attempts".to_owned(),
            )),
            Ending::ServerStopping => {
                // Boxed: this once-only state would otherwise enlarge every
                // idle session's task.
                Box::pin(self.drain_for_shutdown()).await;
                Some((CloseCode::Away, "server is shutting down".to_owned()))
            }
        };
        let metrics = &self.shared.metrics;
        metrics.connection_closed(self.conn.listener);
        match &ending {
            Ending::TooBig => metrics.limit_hit(LimitHit::MessageSize),
            Ending::TooManyFailedSignIns => metrics.limit_hit(LimitHit::FailedSignIns),
            Ending::Idle | Ending::Unresponsive | Ending::NotReading => {
                metrics.limit_hit(LimitHit::Idle)
            }
            _ => {}
        }
        match &ending {
            Ending::PeerClosed | Ending::PeerVanished | Ending::ServerStopping => {
                debug!(?ending, in_flight = self.conn.in_flight(), "session ended")
            }
            _ => self
                .tag
                .line_span()
                .in_scope(|| info!(?ending, "closing connection")),
        }
        // Scripts still running have nobody to answer to: queued ones are
        // not started, running ones stop at their next operation. After the
        // drain of a graceful stop, which lets them finish and answer.
        for _ in 0..self.conn.plays.cancel_all() {
            self.shared.metrics.script_cancelled();
        }
        drop(self.pending);
        // Boxed for the same reason as the drain.
        Box::pin(close_connection(&mut self.socket, close, &ending)).await;
    }

    /// Lets the scripts already running finish and answer, within the
    /// grace period, before the server says goodbye.
    async fn drain_for_shutdown(&mut self) {
        let drain = async {
            while let Some(answer) = self.pending.next().await {
                if let Some(answer) = answer
                    && send(&mut self.socket, answer).await.is_err()
                {
                    break;
                }
            }
            let _ = self.socket.flush().await;
        };
        if tokio::time::timeout(self.shared.limits.shutdown_grace, drain)
            .await
            .is_err()
        {
            self.tag.line_span().in_scope(|| {
                warn!(
                    unanswered = self.pending.len(),
                    "shutdown grace period over; closing with scripts still running"
                )
            });
        }
    }
}

/// Queues one answer; it reaches the socket with the next flush (or at once
/// when the write buffer is full).
async fn send<T>(socket: &mut WebSocketStream<T>, answer: String) -> Result<(), Ending>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    socket
        .feed(Message::Text(answer.into()))
        .await
        .map_err(|_| Ending::PeerVanished)
}

/// Ends the WebSocket: our close frame (if the peer is still there), the
/// peer's close frame back (bounded in time), then the TLS close_notify and
/// the TCP FIN. Closing the socket while the client's data is still unread
/// would make the kernel send a reset, and the client could lose the close
/// frame that says why.
async fn close_connection<T>(
    socket: &mut WebSocketStream<T>,
    close: Option<(CloseCode, String)>,
    ending: &Ending,
) where
    T: Transport,
{
    let goodbye = async {
        if matches!(ending, Ending::PeerVanished) {
            return;
        }
        // After the peer's close frame tungstenite has queued the echo;
        // otherwise send ours.
        let frame = close.map(|(code, reason)| CloseFrame {
            code,
            reason: reason.into(),
        });
        if matches!(ending, Ending::PeerClosed) {
            // The echo is our last frame: it leaves with the TLS alert.
            socket.get_mut().hold_writes();
        } else if socket.close(frame).await.is_err() {
            return;
        }
        let _ = socket.flush().await;
        // Read (and drop) until the peer's close frame or end of stream,
        // through the rest of an oversized or broken message if need be.
        let mut errors = 0;
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(_) => errors = 0,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)) => break,
                Err(_) if errors >= 64 => break,
                Err(_) => errors += 1,
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, goodbye).await;
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, socket.get_mut().finish()).await;
}
