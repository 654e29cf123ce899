//! What a worker is told: [`WorkerConfig`], its defaults, and the checks that refuse a
//! bad setting before anything starts.

use std::time::Duration;

use crate::ScriptLimits;
use crate::redis::{RedisSentinel, RedisSetupError, RedisTls};
use crate::store::StoreLimits;

/// How a worker reaches Redis, how many scripts it runs at once, and under which limits.
///
/// Build on [`WorkerConfig::new`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use circle_executor::{ScriptLimits, WorkerConfig};
///
/// let key = format!("02{}", "ab".repeat(32));
/// let config = WorkerConfig {
///     concurrency: 8,
///     limits: ScriptLimits { max_run_time: Duration::from_secs(2), ..ScriptLimits::default() },
///     ..WorkerConfig::new("redis://127.0.0.1:6379", key)
/// };
/// assert_eq!(config.max_retries, 2);
/// ```
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `redis://[user:password@]host[:port][/db]`. With [`WorkerConfig::sentinel`] only
    /// its scheme, user, password and database are used: the master's host and port come
    /// from Sentinel.
    pub redis_url: String,
    /// The compressed public key (hex) of the circle whose jobs this worker runs; the same
    /// key its servers are configured with.
    pub circle_public_key: String,
    /// This worker's consumer name in the group. Must be unique among running workers of
    /// the circle. Default: [`default_worker_name`] (host name and process id).
    pub name: String,
    /// Scripts run at once (one OS thread each). Default: the machine's available
    /// parallelism.
    pub concurrency: usize,
    /// The limits every script runs under. Give workers the limits the circle's servers
    /// would use in embedded mode: these, not the server's, apply to Redis jobs.
    pub limits: ScriptLimits,
    /// Jobs a worker holds beyond its script threads, to run as soon as a thread is free.
    /// Taking jobs (and answering them) in batches costs Redis and the worker much less per
    /// job than one at a time; the price is that a job held by a worker whose threads are
    /// all busy with long scripts waits for them rather than for another worker. With `0`
    /// (and [`WorkerConfig::hold_for`] zero) a worker holds no more jobs than it has
    /// threads, except the rest of an entry it is running (an entry carries up to 64 jobs;
    /// the worker reads nothing more until they have all started). Default `32`.
    pub prefetch: usize,
    /// How much work a worker holds beyond its threads and `prefetch`, in time: as many
    /// more jobs as it answered in this long, by its recent rate (measured about every
    /// 100 ms), up to [`WorkerConfig::MAX_HELD_BY_RATE`]. Short scripts then travel in
    /// batches of hundreds (a worker finishing 100 000 jobs a second holds about 1 000),
    /// which costs Redis, the servers and the worker far less per job; long scripts get
    /// no more than `prefetch` (a worker finishing 100 jobs a second holds one more), so
    /// a job held behind others waits about this long for them at the rate they were
    /// going. `Duration::ZERO` holds `prefetch` only. Default 10 ms.
    pub hold_for: Duration,
    /// Compiled scripts each thread keeps. Default `256`.
    pub ast_cache_entries: usize,
    /// A job left unanswered this long by its worker (which renews the jobs it runs every
    /// third of this) is taken over by another worker. Default 10 s. The time to recover
    /// the jobs of a worker that died.
    pub claim_idle: Duration,
    /// How many times a job abandoned by a dying worker is taken over and started again;
    /// beyond that its caller is answered with an error instead, so a script that kills
    /// every worker running it cannot take the whole pool down. Default `2`.
    pub max_retries: u32,
    /// Time to establish a TCP connection to Redis. Default 1 s.
    pub connect_timeout: Duration,
    /// Time Redis has to answer one command. Default 2 s.
    pub command_timeout: Duration,
    /// A server's reply stream expires this long after the last answer written to it, so a
    /// server that went away leaves nothing behind. Default 10 minutes.
    pub reply_ttl: Duration,
    /// Length cap of one server's reply stream (`MAXLEN ~`), for a server that stopped
    /// reading. Default `10_000`.
    pub max_reply_backlog: usize,
    /// Public keys (compressed, hex) allowed to write the circle namespace of the store
    /// (`circle::set`); give workers the servers' `admin_keys`. Default: none.
    pub admin_keys: Vec<String>,
    /// How much the circle's store may hold. Default: [`StoreLimits::default`].
    pub store_limits: StoreLimits,
    /// Certificate files for a `rediss://` URL (a private CA, a client
    /// certificate). Default: none, the system's roots verify Redis.
    pub tls: RedisTls,
    /// Redis under Sentinel: every new connection (job reads, answers, the store) goes to
    /// the master the Sentinels name then, so the worker follows a failover without a
    /// restart. Default: none, the URL's host is Redis.
    pub sentinel: Option<RedisSentinel>,
}

impl WorkerConfig {
    /// The default [`WorkerConfig::prefetch`].
    pub const DEFAULT_PREFETCH: usize = 32;

    /// The default [`WorkerConfig::hold_for`].
    pub const DEFAULT_HOLD_FOR: Duration = Duration::from_millis(10);

    /// The most jobs [`WorkerConfig::hold_for`] adds to what a worker holds.
    pub const MAX_HELD_BY_RATE: usize = 2048;

    /// The defaults, for the Redis at `redis_url` and the circle `circle_public_key`.
    pub fn new(redis_url: impl Into<String>, circle_public_key: impl Into<String>) -> Self {
        WorkerConfig {
            redis_url: redis_url.into(),
            circle_public_key: circle_public_key.into(),
            name: default_worker_name(),
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            limits: ScriptLimits::default(),
            prefetch: Self::DEFAULT_PREFETCH,
            hold_for: Self::DEFAULT_HOLD_FOR,
            ast_cache_entries: 256,
            claim_idle: Duration::from_secs(10),
            max_retries: 2,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(2),
            reply_ttl: Duration::from_secs(600),
            max_reply_backlog: 10_000,
            admin_keys: Vec::new(),
            store_limits: StoreLimits::default(),
            tls: RedisTls::default(),
            sentinel: None,
        }
    }
}

/// `{host name}-{process id}`: unique among the workers of a fleet, and says where a
/// worker runs when it shows up in `XINFO CONSUMERS`.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

pub(super) fn check(config: &WorkerConfig) -> Result<(), RedisSetupError> {
    let invalid = |message: &str| Err(RedisSetupError::InvalidConfig(message.to_owned()));
    if config.concurrency == 0 || config.concurrency > 4096 {
        return invalid("concurrency must be between 1 and 4096");
    }
    if config.prefetch > 4096 {
        return invalid("prefetch must be at most 4096");
    }
    if config.hold_for > Duration::from_secs(10) {
        return invalid("hold_for must be at most 10 s");
    }
    if config.name.trim().is_empty() || config.name.chars().any(char::is_whitespace) {
        return invalid("the worker name must be non-empty and without spaces");
    }
    if config.claim_idle < Duration::from_millis(100) {
        return invalid("claim_idle must be at least 100 ms");
    }
    if config.max_reply_backlog == 0 {
        return invalid("max_reply_backlog must be at least 1");
    }
    if config.reply_ttl < Duration::from_secs(1) {
        return invalid("reply_ttl must be at least 1 s");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let key = format!("02{}", "ab".repeat(32));
        let base = WorkerConfig::new("redis://127.0.0.1:1", key);
        for (config, word) in [
            (
                WorkerConfig {
                    concurrency: 0,
                    ..base.clone()
                },
                "concurrency",
            ),
            (
                WorkerConfig {
                    name: "a b".into(),
                    ..base.clone()
                },
                "name",
            ),
            (
                WorkerConfig {
                    claim_idle: Duration::ZERO,
                    ..base.clone()
                },
                "claim_idle",
            ),
        ] {
            let err = check(&config).unwrap_err().to_string();
            assert!(err.contains(word), "{err}");
        }
        assert!(check(&base).is_ok());
        assert!(!default_worker_name().is_empty());
    }
}
