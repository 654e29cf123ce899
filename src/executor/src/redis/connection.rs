//! Redis connections that survive Redis going away and coming back.
//!
//! The redis crate's multiplexed connection does not reconnect by itself. Each connection
//! here has one owner that replaces it after a connection-level failure, and refuses to
//! dial again more often than every `retry_after`, so a Redis outage is answered at once
//! (callers get `-32005` in microseconds) instead of every request paying a connect
//! timeout.

use std::time::{Duration, Instant};

use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, RedisError};

use super::CONSUMER_GROUP;
use super::endpoint::Endpoint;

/// Whether `err` means the connection itself is gone or unusable (I/O, timeout, protocol),
/// as opposed to Redis answering a command with an error (`NOGROUP`, `WRONGTYPE`, …),
/// after which the connection is still fine.
///
/// `READONLY` and `MASTERDOWN` count as gone too: the node was a master when dialled but
/// has since been made a replica (a Sentinel failover while it was alive, or it came back
/// after one). Keeping the connection would send every write to a replica forever; a new
/// one asks Sentinel where the master is now.
pub(crate) fn is_connection_error(err: &RedisError) -> bool {
    matches!(err.code(), None | Some("READONLY" | "MASTERDOWN"))
}

/// Whether Redis answered that the stream or its consumer group does not exist: after a
/// Redis restart without persistence, or a `FLUSHALL`.
pub(crate) fn is_missing_group(err: &RedisError) -> bool {
    err.code() == Some("NOGROUP")
}

/// Connection settings: `response_timeout` must exceed any `BLOCK` time used on the
/// connection, or blocking reads would time out client-side.
pub(crate) fn connection_config(
    connect_timeout: Duration,
    response_timeout: Duration,
) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout))
}

/// Creates the circle's consumer group (and the stream) if missing.
///
/// The group starts at id `0`, not `$`: jobs a server queued before any worker (or after a
/// Redis restart, before the group was recreated) must still be read. Jobs that waited too
/// long are skipped by their deadline, not by the group's start position.
pub(crate) async fn ensure_group(
    connection: &mut MultiplexedConnection,
    jobs_key: &str,
) -> Result<(), RedisError> {
    let created = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(jobs_key)
        .arg(CONSUMER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(connection)
        .await;
    match created {
        Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// One multiplexed connection shared by many tasks, replaced after it breaks.
pub(crate) struct SharedConnection {
    endpoint: Arc<Endpoint>,
    config: AsyncConnectionConfig,
    /// The time allowed to dial one Sentinel (and have it answer), with Sentinel.
    connect_timeout: Duration,
    /// Created on every new connection: a group lost in a Redis restart comes back before
    /// the first command that needs it.
    jobs_key: String,
    retry_after: Duration,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<(MultiplexedConnection, u64)>,
    generation: u64,
    /// When the last connection attempt failed, and why.
    last_failure: Option<(Instant, String)>,
}

impl SharedConnection {
    pub(crate) fn new(
        endpoint: Arc<Endpoint>,
        (connect_timeout, command_timeout): (Duration, Duration),
        jobs_key: String,
        retry_after: Duration,
    ) -> Self {
        SharedConnection {
            endpoint,
            config: connection_config(connect_timeout, command_timeout),
            connect_timeout,
            jobs_key,
            retry_after,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// The current connection and its generation (for [`SharedConnection::report`]),
    /// connecting first if there is none.
    ///
    /// # Errors
    ///
    /// Why Redis cannot be reached. Within `retry_after` of a failed attempt this answers
    /// with that failure again without dialing.
    pub(crate) async fn get(&self) -> Result<(MultiplexedConnection, u64), String> {
        let mut state = self.state.lock().await;
        if let Some((connection, generation)) = &state.current {
            return Ok((connection.clone(), *generation));
        }
        if let Some((at, reason)) = &state.last_failure
            && at.elapsed() < self.retry_after
        {
            return Err(reason.clone());
        }
        let connected = async {
            let mut connection = self
                .endpoint
                .connect(&self.config, self.connect_timeout)
                .await?;
            ensure_group(&mut connection, &self.jobs_key).await?;
            Ok::<_, super::endpoint::ConnectError>(connection)
        }
        .await;
        match connected {
            Ok(connection) => {
                if state.last_failure.take().is_some() {
                    tracing::info!("Redis is reachable again");
                }
                state.generation += 1;
                let generation = state.generation;
                state.current = Some((connection.clone(), generation));
                Ok((connection, generation))
            }
            Err(err) => {
                let reason = err.to_string();
                if state.last_failure.is_none() {
                    tracing::warn!(error = %reason, "cannot reach Redis; retrying in the background");
                }
                state.last_failure = Some((Instant::now(), reason.clone()));
                Err(reason)
            }
        }
    }

    /// Tells the connection that a command on connection `generation` failed with `err`:
    /// a connection-level failure drops it so the next [`SharedConnection::get`] dials
    /// afresh. Failures of an older connection are ignored.
    pub(crate) async fn report(&self, generation: u64, err: &RedisError) {
        if !is_connection_error(err) {
            return;
        }
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|(_, current)| *current == generation)
        {
            tracing::warn!(error = %err, "Redis connection lost");
            state.current = None;
        }
    }
}
