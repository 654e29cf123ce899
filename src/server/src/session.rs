//! One WebSocket connection: reads frames, hands them to the router, writes
//! the answers back, keeps the peer alive with pings, and closes cleanly.
//!
//! The session knows frames, not methods. It never asks whether the
//! connection is TLS: by the time it runs, TLS is finished.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tracing::{debug, info, warn};

use crate::metrics::LimitHit;
use crate::router::{self, Connection, Reply};
use crate::state::{ConnectionSlot, Shared};

/// Why a session ended, for the log.
#[derive(Debug)]
enum Ending {
    PeerClosed,
    PeerVanished,
    Unresponsive,
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
const CLOSE_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What woke the session up.
enum Event {
    Frame(Option<Result<Message, WsError>>),
    Answer(Option<String>),
    Tick,
    ShutdownChanged(bool),
}

/// Runs one connection until it ends. `_slot` keeps the connection counted.
pub(crate) async fn run<T>(
    shared: Arc<Shared>,
    mut socket: WebSocketStream<T>,
    mut conn: Connection,
    _slot: ConnectionSlot,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut pending = FuturesUnordered::new();
    let mut shutdown = shared.shutdown.clone();
    let ping_interval = shared.limits.ping_interval;
    let mut last_heard = Instant::now();
    let mut last_request = Instant::now();
    let idle_timeout = shared.limits.idle_timeout;
    // The idle check rides on the ping timer, so it needs ticks at least
    // as often as the idle timeout is short.
    let tick_every = if idle_timeout.is_zero() {
        ping_interval
    } else {
        ping_interval.min(idle_timeout / 2)
    };
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + tick_every, tick_every);
    shared.metrics.connection_opened(conn.listener);

    let ending = 'session: loop {
        let mut event = next_event(&mut socket, &mut pending, &mut ping, &mut shutdown).await;
        // Handle everything that is ready now, then write all the answers
        // in one go: pipelined requests get one TLS record and one syscall
        // per batch instead of one per answer.
        for handled in 0..EVENTS_PER_FLUSH {
            let outcome = match event {
                Event::Frame(frame) => {
                    last_heard = Instant::now();
                    handle_frame(
                        &shared,
                        &mut socket,
                        &mut conn,
                        &mut pending,
                        &mut last_request,
                        frame,
                    )
                    .await
                }
                Event::Answer(answer) => match answer {
                    Some(answer) => send(&mut socket, answer).await,
                    None => Ok(()),
                },
                Event::Tick => {
                    if last_heard.elapsed() > ping_interval * 3 {
                        Err(Ending::Unresponsive)
                    } else if !idle_timeout.is_zero()
                        && pending.is_empty()
                        && last_request.elapsed() >= idle_timeout
                    {
                        Err(Ending::Idle)
                    } else {
                        socket
                            .feed(Message::Ping(Bytes::new()))
                            .await
                            .map_err(|_| Ending::PeerVanished)
                    }
                }
                Event::ShutdownChanged(stopping) => {
                    if stopping {
                        Err(Ending::ServerStopping)
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(ending) = outcome {
                break 'session ending;
            }
            if handled + 1 == EVENTS_PER_FLUSH {
                break;
            }
            match next_event(&mut socket, &mut pending, &mut ping, &mut shutdown).now_or_never() {
                Some(ready) => event = ready,
                None => break,
            }
        }
        if socket.flush().await.is_err() {
            break Ending::PeerVanished;
        }
    };

    let close = match &ending {
        Ending::PeerClosed | Ending::PeerVanished => None,
        Ending::Unresponsive => Some((
            CloseCode::Away,
            "no traffic from the client, not even pongs".to_owned(),
        )),
        Ending::Idle => Some((
            CloseCode::Away,
            format!("no request for {} s", idle_timeout.as_secs()),
        )),
        Ending::TooBig => Some((
            CloseCode::Size,
            format!(
                "message over the limit of {} bytes",
                shared.limits.max_message_bytes
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
            // Let the scripts already running finish and answer, within the
            // grace period, before saying goodbye. (Boxed: this once-only
            // state would otherwise enlarge every idle session's task.)
            let drain = Box::pin(async {
                while let Some(answer) = pending.next().await {
                    if let Some(answer) = answer
                        && send(&mut socket, answer).await.is_err()
                    {
                        break;
                    }
                }
                let _ = socket.flush().await;
            });
            if tokio::time::timeout(shared.limits.shutdown_grace, drain)
                .await
                .is_err()
            {
                warn!(
                    unanswered = pending.len(),
                    "shutdown grace period over; closing with scripts still running"
                );
            }
            Some((CloseCode::Away, "server is shutting down".to_owned()))
        }
    };
    shared.metrics.connection_closed(conn.listener);
    match &ending {
        Ending::TooBig => shared.metrics.limit_hit(LimitHit::MessageSize),
        Ending::TooManyFailedSignIns => shared.metrics.limit_hit(LimitHit::FailedSignIns),
        Ending::Idle | Ending::Unresponsive => shared.metrics.limit_hit(LimitHit::Idle),
        _ => {}
    }
    match &ending {
        Ending::PeerClosed | Ending::PeerVanished | Ending::ServerStopping => {
            debug!(?ending, in_flight = conn.in_flight(), "session ended")
        }
        _ => info!(?ending, "closing connection"),
    }
    // Scripts still running have nobody to answer to.
    drop(pending);
    // Boxed for the same reason as the drain above.
    Box::pin(close_connection(&mut socket, close, &ending)).await;
}

/// Waits for whatever comes first: a frame, a finished script, the ping
/// timer or a change of the server's shutdown flag.
async fn next_event<T>(
    socket: &mut WebSocketStream<T>,
    pending: &mut FuturesUnordered<LocalBoxFuture<'static, Option<String>>>,
    ping: &mut tokio::time::Interval,
    shutdown: &mut watch::Receiver<bool>,
) -> Event
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        frame = socket.next() => Event::Frame(frame),
        Some(answer) = pending.next(), if !pending.is_empty() => Event::Answer(answer),
        _ = ping.tick() => Event::Tick,
        // A dropped sender means the server is gone: stop as well.
        changed = shutdown.changed() => {
            Event::ShutdownChanged(changed.is_err() || *shutdown.borrow())
        }
    }
}

/// Handles one frame from the client: requests go to the router, their
/// immediate answers into the write buffer, later ones into `pending`.
async fn handle_frame<T>(
    shared: &Shared,
    socket: &mut WebSocketStream<T>,
    conn: &mut Connection,
    pending: &mut FuturesUnordered<LocalBoxFuture<'static, Option<String>>>,
    last_request: &mut Instant,
    frame: Option<Result<Message, WsError>>,
) -> Result<(), Ending>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Some(frame) = frame else {
        return Err(Ending::PeerVanished);
    };
    match frame {
        Ok(Message::Text(text)) => {
            *last_request = Instant::now();
            match router::handle_text(shared, conn, text.as_str()) {
                Reply::Now(Some(answer)) => send(socket, answer).await?,
                Reply::Now(None) => {}
                Reply::Later(answer) => pending.push(answer),
            }
            if conn.auth.failed_attempts() >= shared.limits.max_failed_auth_attempts {
                return Err(Ending::TooManyFailedSignIns);
            }
            Ok(())
        }
        Ok(Message::Binary(_)) => {
            *last_request = Instant::now();
            send(socket, router::binary_frame_reply()).await
        }
        // tungstenite queues the pong itself; it goes out with the next flush.
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Ok(()),
        Ok(Message::Close(_)) => Err(Ending::PeerClosed),
        Err(WsError::Capacity(
            CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
        )) => Err(Ending::TooBig),
        Err(WsError::Utf8(_)) => Err(Ending::NotUtf8),
        Err(WsError::Protocol(violation)) => Err(Ending::ProtocolViolation(violation.to_string())),
        Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)) => {
            Err(Ending::PeerVanished)
        }
        Err(other) => Err(Ending::ProtocolViolation(other.to_string())),
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
    T: AsyncRead + AsyncWrite + Unpin,
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
        if !matches!(ending, Ending::PeerClosed) && socket.close(frame).await.is_err() {
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
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, socket.get_mut().shutdown()).await;
}
