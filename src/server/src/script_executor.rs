//! The executor a server hands its scripts to: the embedded thread pool, or
//! `circle-worker` processes behind Redis.

use std::io;
use std::sync::Arc;

use circle_executor::{EmbeddedConfig, EmbeddedExecutor, Executor};
#[cfg(feature = "redis")]
use circle_protocol::parse_circle_public_key;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::store::open_store;

/// The executor `config` asks for.
pub(crate) fn start_executor(config: &ServerConfig) -> Result<Arc<dyn Executor>, ServerError> {
    let sentinel_set = !config.redis_sentinels.is_empty() || config.redis_master_name.is_some();
    if config.redis_url.is_some() || sentinel_set {
        return start_redis_executor(config);
    }
    let defaults = EmbeddedConfig::default();
    let executor = EmbeddedExecutor::new(EmbeddedConfig {
        threads: if config.script_threads > 0 {
            config.script_threads
        } else {
            defaults.threads
        },
        queue_capacity: if config.script_queue_capacity > 0 {
            config.script_queue_capacity
        } else {
            defaults.queue_capacity
        },
        limits: config.script_limits.clone(),
        environment: config.script_environment.clone(),
        store: Some(open_store(config)?),
        inline_operations: config.script_inline_operations,
        ..defaults
    })
    .map_err(ServerError::Executor)?;
    Ok(Arc::new(executor))
}

/// Hands scripts to `circle-worker` processes through the Redis at
/// `redis_url`, or the master the Sentinels name. Never waits for Redis: an
/// unreachable Redis is answered per request (`-32005`) and recovered from in
/// the background.
#[cfg(feature = "redis")]
fn start_redis_executor(config: &ServerConfig) -> Result<Arc<dyn Executor>, ServerError> {
    use circle_executor::redis::{
        RedisExecutor, RedisExecutorConfig, RedisSentinel, RedisSetupError,
    };

    let sentinel =
        RedisSentinel::from_parts(&config.redis_sentinels, config.redis_master_name.as_deref())
            .map_err(|e| ServerError::InvalidConfig(format!("redis: {e}")))?;
    let url = match (&config.redis_url, &sentinel) {
        (Some(url), _) => url.as_str(),
        (None, Some(_)) => RedisSentinel::DEFAULT_URL,
        (None, None) => {
            return Err(ServerError::InvalidConfig(
                "redis: neither redis_url nor redis_sentinels is set".to_owned(),
            ));
        }
    };

    if config.data_dir.is_some() || !config.admin_keys.is_empty() {
        tracing::warn!(
            "data_dir and admin_keys are not used with redis_url: the store is in Redis, \
             with the workers' --admin-key list"
        );
    }
    // Workers find the circle's jobs by its public key; an ephemeral key
    // generated at start would be known to no worker.
    if config.circle_public_key.trim().is_empty() {
        return Err(ServerError::InvalidConfig(
            "redis_url needs circle_public_key: circle-worker processes find the circle's jobs by its public key".to_owned(),
        ));
    }
    // The same canonical (compressed) form the server announces, which is
    // also what workers are given.
    let circle_public_key = parse_circle_public_key(&config.circle_public_key)
        .map_err(|e| ServerError::InvalidConfig(format!("circle_public_key: {e}")))?;
    let executor = RedisExecutor::new(RedisExecutorConfig {
        fallback_deadline: config.limits.script_deadline,
        tls: config.redis_tls.clone(),
        sentinel,
        ..RedisExecutorConfig::new(url, circle_public_key)
    })
    .map_err(|error| match error {
        RedisSetupError::Threads(source) => ServerError::Executor(source),
        RedisSetupError::NoRuntime => ServerError::Executor(io::Error::other(error)),
        // Each names the setting to fix.
        RedisSetupError::InvalidUrl { .. } => {
            ServerError::InvalidConfig(format!("redis_url: {error}"))
        }
        RedisSetupError::TlsFile { .. } => {
            ServerError::InvalidConfig(format!("redis_tls: {error}"))
        }
        other => ServerError::InvalidConfig(format!("redis: {other}")),
    })?;
    Ok(Arc::new(executor))
}

#[cfg(not(feature = "redis"))]
fn start_redis_executor(_config: &ServerConfig) -> Result<Arc<dyn Executor>, ServerError> {
    Err(ServerError::InvalidConfig(
        "redis_url and redis_sentinels need a circle_server built with its `redis` feature: leave them unset to run scripts in-process".to_owned(),
    ))
}
