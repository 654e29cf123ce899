//! One open WebSocket connection: a writer task that sends frames, and a
//! reader task that hands answers and `output` notifications to the table
//! of requests in flight (`in_flight.rs`) by id.
//!
//! The core is generic over the socket — anything that yields [`Incoming`]
//! frames and accepts [`Outgoing`] ones — so it is the same code for `ws://`,
//! both native TLS backends, and the browser's WebSocket (each transport only
//! translates its own frame type). When the connection ends, for whatever
//! reason, every request in flight fails at once with
//! [`CircleWsClientError::ConnectionLost`] and later requests fail fast: no
//! caller waits for an answer that cannot come.

use std::sync::Arc;
use std::time::Duration;

use circle_protocol::{Response, close_codes};
use futures_util::future::{AbortHandle, abortable};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use web_time::Instant;

use crate::error::CircleWsClientError;
use crate::in_flight::{InFlightTable, StreamFeed};
use crate::rt::{self, MaybeSend};

/// A frame (or event) from the server, as every transport reports it.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A text frame: one JSON-RPC response or batch.
    Text(String),
    /// A binary frame: the protocol sends none to clients.
    Binary,
    /// The server's close frame (code, reason), or the browser's close event.
    Closed {
        /// The close code, when there was one.
        code: Option<u16>,
        /// The close reason, possibly empty.
        reason: String,
    },
    /// The transport failed: its own words.
    Failed(String),
    /// Nothing for the core: pings and pongs (answered by tungstenite), the
    /// browser's detail-less `error` event (its `close` event follows).
    Ignored,
}

/// A frame to send.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// One JSON-RPC request.
    Text(String),
    /// A close frame; nothing is sent after it.
    Close {
        /// The close code (1000 for a normal closure).
        code: u16,
        /// Why, for the server's logs.
        reason: String,
    },
}

/// A WebSocket as the connection core sees it. Send errors are text because
/// the reader reports the same failure with more detail.
pub(crate) trait FrameSocket:
    Stream<Item = Incoming> + Sink<Outgoing, Error = String> + Unpin + MaybeSend + 'static
{
}
impl<S> FrameSocket for S where
    S: Stream<Item = Incoming> + Sink<Outgoing, Error = String> + Unpin + MaybeSend + 'static
{
}

/// How long `close()` waits for the server to answer the close frame before
/// dropping the connection anyway.
const CLOSE_HANDSHAKE_GRACE: Duration = Duration::from_secs(2);

/// Removes a request from the table when its caller stops waiting (timeout,
/// or the caller's future dropped), so abandoned requests do not pile up.
struct ForgetOnDrop<'a> {
    table: &'a InFlightTable,
    id: i64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.table.forget(self.id);
    }
}

/// An open connection. Dropping it stops its tasks.
pub(crate) struct Connection {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    in_flight: Arc<InFlightTable>,
    ended: watch::Receiver<bool>,
    // Abort handles rather than tokio JoinHandles: they work the same on
    // tokio and on the browser's event loop.
    reader: AbortHandle,
    writer: AbortHandle,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("ended", &self.in_flight.ended())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts the reader and writer tasks of an open WebSocket.
    pub(crate) fn start<S: FrameSocket>(socket: S) -> Connection {
        let (sink, stream) = socket.split();
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(InFlightTable::default());
        let (ended_tx, ended) = watch::channel(false);
        let (write_task, writer) = abortable(write_frames(sink, outgoing_rx, in_flight.clone()));
        let (read_task, reader) = abortable(read_frames(stream, in_flight.clone(), ended_tx));
        // The tasks' results only say whether they were aborted.
        rt::spawn(async move {
            let _ = write_task.await;
        });
        rt::spawn(async move {
            let _ = read_task.await;
        });
        Connection {
            outgoing,
            in_flight,
            ended,
            reader,
            writer,
        }
    }

    /// Sends one request text and waits, until `deadline`, for the answer
    /// with that id. `timeout` is what a timeout error reports.
    pub(crate) async fn call(
        &self,
        id: i64,
        text: String,
        method: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Response, CircleWsClientError> {
        let receiver = self.in_flight.register(id)?;
        let _forget = ForgetOnDrop {
            table: &self.in_flight,
            id,
        };
        if self.outgoing.send(Outgoing::Text(text)).is_err() {
            return Err(self.lost());
        }
        match rt::timeout_at(deadline, receiver).await {
            Ok(Ok(answer)) => answer,
            // The table was dropped without answering: the connection is gone.
            Ok(Err(_)) => Err(self.lost()),
            Err(_) => Err(CircleWsClientError::Timeout {
                operation: method.to_owned(),
                after: timeout,
            }),
        }
    }

    /// Sends a streamed `play` request: its lines and answer come through
    /// the returned feed, until the caller [`forget`](Self::forget)s it.
    pub(crate) fn start_stream(
        &self,
        id: i64,
        text: String,
    ) -> Result<StreamFeed, CircleWsClientError> {
        let feed = self.in_flight.register_stream(id)?;
        if self.outgoing.send(Outgoing::Text(text)).is_err() {
            self.in_flight.forget(id);
            return Err(self.lost());
        }
        Ok(feed)
    }

    /// Stops waiting for request `id`: its answer will be dropped.
    pub(crate) fn forget(&self, id: i64) {
        self.in_flight.forget(id);
    }

    /// Sends a request whose answer nobody waits for (a `cancel` sent from
    /// `Drop`, which cannot wait); false when the connection is gone.
    pub(crate) fn send_unanswered(&self, text: String) -> bool {
        self.outgoing.send(Outgoing::Text(text)).is_ok()
    }

    fn lost(&self) -> CircleWsClientError {
        CircleWsClientError::ConnectionLost {
            reason: self
                .in_flight
                .ended()
                .unwrap_or_else(|| "the connection's tasks stopped".to_owned()),
        }
    }

    /// Whether the connection has ended.
    pub(crate) fn is_ended(&self) -> bool {
        *self.ended.borrow() || self.in_flight.ended().is_some()
    }

    /// Why the connection ended, once it has.
    pub(crate) fn end_reason(&self) -> Option<String> {
        self.in_flight.ended()
    }

    /// A signal that turns `true` when the connection ends (and closes
    /// when the connection is dropped).
    pub(crate) fn ended_signal(&self) -> watch::Receiver<bool> {
        self.ended.clone()
    }

    /// Resolves when the connection has ended.
    pub(crate) async fn wait_ended(&self) {
        let mut ended = self.ended.clone();
        // An error means the reader task is gone, which also means ended.
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Closes the connection politely (close frame 1000), waits briefly for
    /// the server to answer, and fails whatever is still in flight.
    pub(crate) async fn close(&self) {
        let frame = Outgoing::Close {
            code: 1000,
            reason: "client disconnect".into(),
        };
        if self.outgoing.send(frame).is_ok() {
            let _ = rt::timeout(CLOSE_HANDSHAKE_GRACE, self.wait_ended()).await;
        }
        self.in_flight.end("the client disconnected".to_owned());
        self.reader.abort();
        self.writer.abort();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.in_flight.end("the client was dropped".to_owned());
        self.reader.abort();
        self.writer.abort();
    }
}

async fn write_frames<S: FrameSocket>(
    mut sink: futures_util::stream::SplitSink<S, Outgoing>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    in_flight: Arc<InFlightTable>,
) {
    while let Some(frame) = outgoing.recv().await {
        let closing = matches!(frame, Outgoing::Close { .. });
        if let Err(error) = sink.send(frame).await {
            // The reader will see the same failure; ending here too makes
            // waiting callers fail now rather than when the reader notices.
            in_flight.end(format!("sending failed: {error}"));
            return;
        }
        if closing {
            return;
        }
    }
}

async fn read_frames<S: FrameSocket>(
    mut stream: futures_util::stream::SplitStream<S>,
    in_flight: Arc<InFlightTable>,
    ended: watch::Sender<bool>,
) {
    let reason = loop {
        match stream.next().await {
            Some(Incoming::Text(text)) => in_flight.receive(&text),
            Some(Incoming::Closed { code, reason }) => break describe_close(code, &reason),
            // The protocol sends no binary frames to clients.
            Some(Incoming::Binary) => tracing::warn!("ignoring a binary frame"),
            Some(Incoming::Ignored) => {}
            Some(Incoming::Failed(error)) => break error,
            None => break "the server closed the connection without a close frame".to_owned(),
        };
    };
    tracing::debug!(%reason, "connection ended");
    in_flight.end(reason);
    ended.send_replace(true);
}

/// Says how the server closed the connection, for `ConnectionLost`.
fn describe_close(code: Option<u16>, reason: &str) -> String {
    let Some(code) = code else {
        return "the server closed the connection".to_owned();
    };
    let meaning = match code {
        1000 => "normal closure",
        close_codes::GOING_AWAY => "going away",
        close_codes::PROTOCOL_ERROR => "protocol error",
        close_codes::POLICY_VIOLATION => "policy violation",
        close_codes::MESSAGE_TOO_BIG => "message too big",
        // Never sent on the wire: browsers report it when the connection
        // dropped without a close frame.
        1006 => "abnormal closure, no close frame",
        1011 => "server error",
        _ => "",
    };
    match (meaning.is_empty(), reason.is_empty()) {
        (false, false) => format!("the server closed the connection ({code} {meaning}: {reason})"),
        (false, true) => format!("the server closed the connection ({code} {meaning})"),
        (true, false) => format!("the server closed the connection ({code}: {reason})"),
        (true, true) => format!("the server closed the connection ({code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_are_explained() {
        let text = describe_close(Some(1001), "server shutting down");
        assert!(
            text.contains("1001") && text.contains("going away") && text.contains("shutting down"),
            "{text}"
        );
        assert!(describe_close(Some(4000), "").ends_with("(4000)"));
        assert!(describe_close(None, "").contains("closed"));
    }
}
