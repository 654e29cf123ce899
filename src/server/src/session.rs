//! One WebSocket connection: reads frames, hands them to the router, writes
//! the answers back, keeps the peer alive with pings, and closes cleanly.
//!
//! The session knows frames, not methods. It never asks whether the
//! connection is TLS: by the time it runs, TLS is finished.

use std::sync::Arc;
use std::time::Instant;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
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
    ProtocolViolation(String),
    TooManyFailedSignIns,
    ServerStopping,
}

/// Runs one connection until it ends. `_slot` keeps the connection counted.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut session: actix_ws::Session,
    mut messages: AggregatedMessageStream,
    mut conn: Connection,
    _slot: ConnectionSlot,
) {
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

    let ending = loop {
        tokio::select! {
            message = messages.next() => {
                last_heard = Instant::now();
                let Some(message) = message else { break Ending::PeerVanished };
                match message {
                    Ok(AggregatedMessage::Text(text)) => {
                        last_request = Instant::now();
                        match router::handle_text(&shared, &mut conn, &text) {
                            Reply::Now(Some(answer)) => {
                                if session.text(answer).await.is_err() { break Ending::PeerVanished }
                            }
                            Reply::Now(None) => {}
                            Reply::Later(answer) => pending.push(answer),
                        }
                        if conn.auth.failed_attempts() >= shared.limits.max_failed_auth_attempts {
                            break Ending::TooManyFailedSignIns;
                        }
                    }
                    Ok(AggregatedMessage::Binary(_)) => {
                        last_request = Instant::now();
                        if session.text(router::binary_frame_reply()).await.is_err() { break Ending::PeerVanished }
                    }
                    Ok(AggregatedMessage::Ping(payload)) => {
                        if session.pong(&payload).await.is_err() { break Ending::PeerVanished }
                    }
                    Ok(AggregatedMessage::Pong(_)) => {}
                    Ok(AggregatedMessage::Close(_)) => break Ending::PeerClosed,
                    Err(ProtocolError::Overflow) => break Ending::TooBig,
                    // A message sent in fragments (browsers split large ones)
                    // trips actix-ws's continuation limit, which it reports
                    // only as an I/O error with this text.
                    Err(ProtocolError::Io(error)) if error.to_string().contains("maximum continuation size") => {
                        break Ending::TooBig
                    }
                    Err(error) => break Ending::ProtocolViolation(error.to_string()),
                }
            }
            Some(answer) = pending.next(), if !pending.is_empty() => {
                if let Some(answer) = answer && session.text(answer).await.is_err() {
                    break Ending::PeerVanished
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_interval * 3 { break Ending::Unresponsive }
                if !idle_timeout.is_zero() && pending.is_empty() && last_request.elapsed() >= idle_timeout {
                    break Ending::Idle
                }
                if session.ping(b"").await.is_err() { break Ending::PeerVanished }
            }
            changed = shutdown.changed() => {
                // A dropped sender means the server is gone: stop as well.
                if changed.is_err() || *shutdown.borrow() { break Ending::ServerStopping }
            }
        }
    };

    let close = match &ending {
        Ending::PeerClosed => Some(CloseReason {
            code: CloseCode::Normal,
            description: None,
        }),
        Ending::PeerVanished => None,
        Ending::Unresponsive => Some(CloseReason {
            code: CloseCode::Away,
            description: Some("no traffic from the client, not even pongs".to_owned()),
        }),
        Ending::Idle => Some(CloseReason {
            code: CloseCode::Away,
            description: Some(format!("no request for {} s", idle_timeout.as_secs())),
        }),
        Ending::TooBig => Some(CloseReason {
            code: CloseCode::Size,
            description: Some(format!(
                "message over the limit of {} bytes",
                shared.limits.max_message_bytes
            )),
        }),
        Ending::ProtocolViolation(why) => Some(CloseReason {
            code: CloseCode::Protocol,
            description: Some(why.clone()),
        }),
        Ending::TooManyFailedSignIns => Some(CloseReason {
            code: CloseCode::Policy,
            description: Some("too many failed authenticate attempts".to_owned()),
        }),
        Ending::ServerStopping => {
            // Let the scripts already running finish and answer, within the
            // grace period, before saying goodbye.
            let drain = async {
                while let Some(answer) = pending.next().await {
                    if let Some(answer) = answer
                        && session.text(answer).await.is_err()
                    {
                        break;
                    }
                }
            };
            if tokio::time::timeout(shared.limits.shutdown_grace, drain)
                .await
                .is_err()
            {
                warn!(
                    unanswered = pending.len(),
                    "shutdown grace period over; closing with scripts still running"
                );
            }
            Some(CloseReason {
                code: CloseCode::Away,
                description: Some("server is shutting down".to_owned()),
            })
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
    if let Some(reason) = close {
        // The peer may already be gone; there is nobody left to tell.
        let _ = session.close(Some(reason)).await;
    }
}
