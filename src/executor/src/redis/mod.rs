//! Scripts run by `circle-worker` processes, reached through Redis Streams.
//!
//! One machine is not enough for some circles. With this module a circle server hands every
//! `play` script to Redis ([`RedisExecutor`]), any number of `circle-worker` processes on
//! any machines run them ([`run_worker`]), and the answer comes back to the server that
//! asked.
//!
//! # How a job travels
//!
//! 1. The server `XADD`s the job to the circle's job stream ([`jobs_stream_key`], capped
//!    with `MAXLEN ~`), together with every other job it queued while its previous write
//!    was in flight: one entry carries up to 64 jobs (no timer waits for company, so at low
//!    load an entry holds one job). Each job carries its deadline as Unix milliseconds;
//!    the entry names the server's own reply stream.
//! 2. Workers read the stream through one consumer group ([`CONSUMER_GROUP`]) with
//!    `XREADGROUP`, so each entry goes to one worker. A worker holds at most as many jobs
//!    as it has script threads plus [`WorkerConfig::prefetch`] (default 32) plus what it
//!    answers in [`WorkerConfig::hold_for`] (default 10 ms) at its recent rate, and reads
//!    about as many entries as its free slots hold jobs.
//! 3. The worker skips a job whose deadline has passed, otherwise runs it in the same
//!    [`Sandbox`](crate::Sandbox) the embedded executor uses. Finished jobs are answered in
//!    batches (whatever finished while the previous batch was written), each batch one
//!    `MULTI`: per reply stream one `XADD` (one entry carrying all its answers of the
//!    batch) and one `PEXPIRE`, one `HINCRBY` counting them in [`worker_jobs_key`], and one
//!    `XACK` and one `XDEL` of the entries whose last job is in the batch: an entry is
//!    acknowledged only once all its jobs are answered.
//! 4. Each server has one task reading its reply stream (`XREAD BLOCK`) and routing answers
//!    by job id to the callers waiting in memory: one blocked connection per server, not one
//!    per request. Read answers are trimmed (`XTRIM MINID ~`) at most once a second. The
//!    job stream's length (for refusing jobs when it is full) is measured with `XLEN` at
//!    most every 100 ms, not with every submission.
//!
//! Protocol 1.1 rides along only for jobs that use it: a job whose caller cancels it is
//! named on the circle's cancel stream ([`cancel_stream_key`]), which every worker reads,
//! and the worker holding it stops it (one not taken yet is never started); a streamed
//! job's printed lines go back in the reply entries, before its answer.
//!
//! The entry layouts are described in the `wire` module's source and in the crate's
//! README. Every entry carries its format version; a worker refuses a job entry of another
//! version with an answer where the entry lets it find the caller.
//!
//! A worker that dies holding jobs leaves their entries in the group's pending list. Held
//! entries are renewed (`XCLAIM … JUSTID`) by their worker every third of the claim
//! timeout, so only abandoned ones go idle; other workers take those over with
//! `XAUTOCLAIM` once idle longer than [`WorkerConfig::claim_idle`] and run all their jobs
//! again, up to [`WorkerConfig::max_retries`] times, after which the callers get a clear
//! error instead.
//!
//! # Guarantees
//!
//! - **At-least-once delivery** of jobs: a job stays pending until a worker has answered
//!   it, so a script may run twice (a worker that stalled past the claim timeout, a reply
//!   written just before a crash). A script's only effects outside the sandbox are its
//!   store writes, which a second run applies again (see `docs/STORE.md`).
//! - **At-most-once answer** to each caller: the first answer for a job id wins, later ones
//!   are dropped.
//! - **Nothing hangs**: every wait is bounded by the caller's deadline, and every Redis
//!   failure is answered at once with [`ExecutorError::Unavailable`](crate::ExecutorError::Unavailable)
//!   (`-32005`).
//!
//! Deadlines cross machines as wall-clock time, so servers and workers need synchronised
//! clocks (NTP); a skew shortens or lengthens deadlines by that much.

mod connection;
mod dispatcher;
pub(crate) mod endpoint;
mod sentinel;
mod tls;
mod wire;
mod worker;

pub use crate::RedisTls;
pub use dispatcher::{RedisExecutor, RedisExecutorConfig};
pub use sentinel::{RedisSentinel, SentinelConfigError};
pub(crate) use tls::open_client;
pub use worker::{WorkerConfig, WorkerError, WorkerSummary, default_worker_name, run_worker};

/// The consumer group every worker of a circle reads the circle's job stream through.
pub const CONSUMER_GROUP: &str = "circle-workers";

/// The stream a circle's jobs are queued on: `circle:{public key}:jobs`.
pub fn jobs_stream_key(circle_public_key: &str) -> String {
    format!("circle:{circle_public_key}:jobs")
}

/// The stream one server instance reads its answers from:
/// `circle:{public key}:replies:{instance}`.
pub fn reply_stream_key(circle_public_key: &str, instance_id: &str) -> String {
    format!("circle:{circle_public_key}:replies:{instance_id}")
}

/// The stream a circle's servers tell its workers about cancelled jobs on:
/// `circle:{public key}:cancels` (protocol 1.1's `cancel`). Every worker reads all of it
/// (no group): the job may be held by any of them, or not taken yet.
pub fn cancel_stream_key(circle_public_key: &str) -> String {
    format!("circle:{circle_public_key}:cancels")
}

/// A hash of how many scripts each worker (by consumer name) has run and answered for a
/// circle: `circle:{public key}:worker_jobs`. Updated in the same transaction as the
/// answer, so it counts exactly the answers written. For operators and tests.
pub fn worker_jobs_key(circle_public_key: &str) -> String {
    format!("circle:{circle_public_key}:worker_jobs")
}

/// Why a [`RedisExecutor`] or a worker could not start. Nothing here needs Redis to be
/// reachable: an unreachable Redis is a runtime condition, answered per request, not a
/// start-up failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The Redis URL does not parse (`redis://[user:password@]host[:port][/db]`).
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What the Redis client said.
        reason: String,
    },
    /// The circle public key is not a compressed secp256k1 key in hex.
    #[error(
        "invalid circle public key {0:?}: expected the compressed key as circle-server prints it (66 hex digits starting with 02 or 03)"
    )]
    InvalidCirclePublicKey(String),
    /// A setting is out of range; the message names it.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Not called from inside a tokio runtime, which the background tasks need.
    #[error("the Redis executor must be started from inside a tokio runtime")]
    NoRuntime,
    /// The OS refused to start the worker's script threads.
    #[error("cannot start script threads: {0}")]
    Threads(#[source] std::io::Error),
    /// A certificate file for `rediss://` cannot be used.
    #[error("Redis TLS file {}: {reason}", path.display())]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The Sentinel setting (Sentinel addresses, master name) is refused.
    #[error("invalid Redis Sentinel setting: {0}")]
    Sentinel(#[from] SentinelConfigError),
}

/// The key in the canonical form used in Redis key names
/// ([`circle_protocol::canonical_circle_public_key`]): servers and workers must
/// name the circle identically, so anything else is refused rather than guessed at.
pub(crate) fn canonical_circle_key(key: &str) -> Result<String, RedisSetupError> {
    circle_protocol::canonical_circle_public_key(key)
        .map_err(|_| RedisSetupError::InvalidCirclePublicKey(key.to_owned()))
}

/// `url` with the password (if any) replaced by `***`, for logs and error messages.
pub(crate) fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redacted_url("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redacted_url("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redacted_url("redis://host:6379"), "redis://host:6379");
        assert!(open_client("not a url", &RedisTls::default()).is_err());
        // A URL the redis crate refuses, with a password in it: the error
        // must not carry the password.
        let err = open_client(
            "redis://user:pw-secret@host:notaport/0",
            &RedisTls::default(),
        )
        .map(|_| ())
        .expect_err("a port that is not a number is refused");
        assert!(!err.to_string().contains("pw-secret"), "{err}");
        assert!(err.to_string().contains("user:***@"), "{err}");
    }
}
