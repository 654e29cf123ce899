//! The store in Redis, shared by every worker of a circle.
//!
//! Keys: one hash per namespace, `circle:{circle key}:store:{namespace}` (field = key,
//! value = JSON text; the namespace is `caller:{public key}` or `circle`), and
//! `circle:{circle key}:store:usage`, whose field `bytes` counts the keys and values of
//! all namespaces. A play's writes are applied by one Lua script ([`COMMIT`]): Redis runs
//! it without interleaving any other command, so its limit checks and writes are atomic
//! and other plays see all of them or none. Durability is what Redis is configured for:
//! the script's reply comes after Redis applied it in memory, and with `appendonly yes`
//! and `appendfsync always` after the AOF is fsync'd (see the crate README).
//!
//! Each script thread keeps one synchronous connection (scripts are synchronous), opened
//! on first use and dropped after any error, so the next call reconnects (under Sentinel,
//! to the master Sentinel names then). Every command
//! is bounded by a timeout: a Redis that stopped answering costs a play `-32005`, never a
//! hang.

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, Namespace, Session, StoreError, StoreLimits, Writes};
use crate::LimitKind;
use crate::redis::canonical_circle_key;
use crate::redis::endpoint::Endpoint;

/// Time to open a connection, and for Redis to answer one command.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Applies a play's writes if they keep within the limits; answers `ok`, or the limit
/// refused and the value it would have reached.
///
/// `KEYS[1]` is the usage hash, `KEYS[1 + i]` the namespace hash of write `i`; `ARGV[1]`
/// and `ARGV[2]` the keys-per-caller and bytes-per-circle limits; then four arguments per
/// write: the key, `s` (set) or `d` (remove), the JSON value (empty for `d`), and `1` when
/// the namespace is a caller's.
const COMMIT: &str = r"
local max_keys = tonumber(ARGV[1])
local max_bytes = tonumber(ARGV[2])
local writes = #KEYS - 1
local grown = {}
local delta = 0
for i = 1, writes do
  local hash = KEYS[i + 1]
  local at = 2 + (i - 1) * 4
  local key, op, value, caller = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local old = redis.call('HGET', hash, key)
  if old then delta = delta - #key - #old end
  if op == 's' then delta = delta + #key + #value end
  if caller == '1' then
    local change = 0
    if old and op == 'd' then change = -1 elseif (not old) and op == 's' then change = 1 end
    grown[hash] = (grown[hash] or 0) + change
  end
end
for hash, change in pairs(grown) do
  if change > 0 then
    local after = redis.call('HLEN', hash) + change
    if after > max_keys then return 'store_keys ' .. after end
  end
end
local used = tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
if delta > 0 and used + delta > max_bytes then return 'store_bytes ' .. (used + delta) end
for i = 1, writes do
  local hash = KEYS[i + 1]
  local at = 2 + (i - 1) * 4
  if ARGV[at + 2] == 's' then
    redis.call('HSET', hash, ARGV[at + 1], ARGV[at + 3])
  else
    redis.call('HDEL', hash, ARGV[at + 1])
  end
end
redis.call('HINCRBY', KEYS[1], 'bytes', delta)
return 'ok'
";

pub(super) struct RedisBackend {
    endpoint: Arc<Endpoint>,
    /// `circle:{circle key}:store:`.
    prefix: String,
}

impl RedisBackend {
    pub(super) fn new(
        endpoint: Arc<Endpoint>,
        circle_public_key: &str,
    ) -> Result<RedisBackend, StoreError> {
        let circle = canonical_circle_key(circle_public_key)
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        Ok(RedisBackend {
            endpoint,
            prefix: format!("circle:{circle}:store:"),
        })
    }
}

impl Backend for RedisBackend {
    fn session(&self) -> Result<Box<dyn Session>, StoreError> {
        Ok(Box::new(RedisSession {
            endpoint: Arc::clone(&self.endpoint),
            prefix: self.prefix.clone(),
            connection: None,
        }))
    }

    fn describe(&self) -> String {
        format!("redis {}", self.endpoint.describe())
    }
}

struct RedisSession {
    endpoint: Arc<Endpoint>,
    prefix: String,
    connection: Option<::redis::Connection>,
}

impl RedisSession {
    fn hash(&self, namespace: &Namespace) -> String {
        format!("{}{}", self.prefix, namespace.storage_name())
    }

    /// Runs `command` on this thread's connection (opened if needed); drops the
    /// connection after an error, so the next command starts on a fresh one.
    fn query<T: ::redis::FromRedisValue>(
        &mut self,
        command: &::redis::Cmd,
    ) -> Result<T, StoreError> {
        let unavailable = |err: ::redis::RedisError| StoreError::Unavailable(err.to_string());
        if self.connection.is_none() {
            let connection = self
                .endpoint
                .connect_blocking(TIMEOUT)
                .map_err(|err| StoreError::Unavailable(err.to_string()))?;
            self.connection = Some(connection);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(StoreError::Unavailable("no connection".into()));
        };
        command.query(connection).map_err(|err| {
            self.connection = None;
            unavailable(err)
        })
    }
}

impl Session for RedisSession {
    fn get(&mut self, namespace: &Namespace, key: &str) -> Result<Option<String>, StoreError> {
        let mut command = ::redis::cmd("HGET");
        command.arg(self.hash(namespace)).arg(key);
        self.query(&command)
    }

    fn keys(
        &mut self,
        namespace: &Namespace,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut command = ::redis::cmd("HKEYS");
        command.arg(self.hash(namespace));
        let mut keys: Vec<String> = self.query(&command)?;
        keys.retain(|key| key.starts_with(prefix));
        keys.sort_unstable();
        keys.truncate(max);
        Ok(keys)
    }

    fn commit(&mut self, writes: &Writes, limits: &StoreLimits) -> Result<(), StoreError> {
        let mut command = ::redis::cmd("EVAL");
        command
            .arg(COMMIT)
            .arg(writes.len() + 1)
            .arg(format!("{}usage", self.prefix));
        for (namespace, _) in writes.keys() {
            command.arg(self.hash(namespace));
        }
        command
            .arg(limits.max_keys_per_caller)
            .arg(limits.max_circle_bytes);
        for ((namespace, key), value) in writes {
            command
                .arg(key)
                .arg(if value.is_some() { "s" } else { "d" })
                .arg(value.as_deref().unwrap_or(""))
                .arg(if namespace.is_caller() { "1" } else { "0" });
        }
        let outcome: String = self.query(&command)?;
        let (verdict, reached) = outcome.split_once(' ').unwrap_or((outcome.as_str(), ""));
        match verdict {
            "ok" => Ok(()),
            "store_keys" => Err(limits.refusal(
                LimitKind::StoreKeys,
                &format!("the play would leave {reached} keys in the caller's namespace"),
            )),
            "store_bytes" => Err(limits.refusal(
                LimitKind::StoreBytes,
                &format!("the play would bring the circle's store to {reached} bytes"),
            )),
            other => Err(StoreError::Unavailable(format!(
                "unexpected answer from the commit script: {other}"
            ))),
        }
    }
}
