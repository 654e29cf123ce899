//! What goes wrong in a worker: [`WorkerError`].
//!
//! [`run_worker`](super::run_worker) returns only [`WorkerError::Setup`]: once started, a
//! worker does not stop on a Redis failure (Redis may be restarting), it logs the error
//! and tries again. The other variants are those failures, typed so that each says which
//! step failed.

use ::redis::RedisError;

use crate::redis::RedisSetupError;

/// Why a worker could not start, or why one of its steps against Redis failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The worker could not start: a bad Redis URL, circle key or setting, or script
    /// threads the OS refused. Nothing was taken from Redis.
    #[error(transparent)]
    Setup(#[from] RedisSetupError),
    /// Redis cannot be reached; the reason the last connection attempt failed.
    #[error("cannot reach Redis: {0}")]
    Connect(String),
    /// Creating the consumer group, or joining it, failed.
    #[error("cannot join the consumer group: {0}")]
    Group(#[source] RedisError),
    /// Looking for abandoned jobs (`XAUTOCLAIM`) failed.
    #[error("XAUTOCLAIM failed: {0}")]
    Claim(#[source] RedisError),
    /// `XAUTOCLAIM` answered something that is not an `XAUTOCLAIM` reply (shown as read).
    #[error("XAUTOCLAIM answered {0}")]
    ClaimReply(String),
    /// The transaction writing a batch of answers (and acknowledging their entries)
    /// failed; it is tried again until the jobs' deadlines.
    #[error("writing answers failed: {0}")]
    Answer(#[source] RedisError),
}
