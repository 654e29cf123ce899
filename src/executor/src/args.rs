//! The command-line flags `circle-server` and `circle-worker` share: how to reach Redis,
//! what one script may use, and the store's limits. Both binaries flatten these groups into
//! their own `clap` parser, so a flag has one name, one environment variable, one default
//! and one help line wherever it appears.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::store::StoreLimits;
use crate::{RedisTls, ScriptLimits};

/// Redis under Sentinel and Redis over TLS (the URL itself stays with each binary: the
/// server runs without Redis, a worker cannot).
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// A Redis Sentinel (HOST:PORT) to ask where the master is; repeat or comma-separate. Needs --redis-master-name; --redis-url then only gives scheme, user, password and database (default redis://, no password).
    #[arg(
        long = "redis-sentinel",
        env = "CIRCLE_REDIS_SENTINELS",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub redis_sentinels: Vec<String>,
    /// The Redis master's name in the Sentinels' configuration (sentinel monitor NAME …). Needs --redis-sentinel.
    #[arg(long, env = "CIRCLE_REDIS_MASTER_NAME", value_name = "NAME")]
    pub redis_master_name: Option<String>,
    /// PEM CA file Redis's certificate must chain to (rediss:// with a private CA; default: system roots).
    #[arg(long, env = "CIRCLE_REDIS_CA", value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
    /// PEM client certificate for Redis with tls-auth-clients (needs --redis-client-key).
    #[arg(
        long,
        env = "CIRCLE_REDIS_CLIENT_CERT",
        value_name = "FILE",
        requires = "redis_client_key"
    )]
    pub redis_client_cert: Option<PathBuf>,
    /// PEM private key of --redis-client-cert.
    #[arg(
        long,
        env = "CIRCLE_REDIS_CLIENT_KEY",
        value_name = "FILE",
        requires = "redis_client_cert"
    )]
    pub redis_client_key: Option<PathBuf>,
}

impl RedisArgs {
    /// The TLS files named by `--redis-ca`, `--redis-client-cert` and `--redis-client-key`.
    pub fn tls(&self) -> RedisTls {
        RedisTls {
            ca_path: self.redis_ca.clone(),
            client_cert_path: self.redis_client_cert.clone(),
            client_key_path: self.redis_client_key.clone(),
        }
    }
}

/// What one script may use ([`ScriptLimits`]).
#[derive(Debug, Clone, Args)]
pub struct ScriptLimitArgs {
    /// Rhai operations one script may run.
    #[arg(long, env = "CIRCLE_SCRIPT_MAX_OPERATIONS", default_value_t = ScriptLimits::default().max_operations)]
    pub script_max_operations: u64,
    /// Wall-clock time one script may run, in milliseconds.
    #[arg(long, env = "CIRCLE_SCRIPT_TIMEOUT_MS", default_value_t = ScriptLimits::default().max_run_time.as_millis() as u64)]
    pub script_timeout_ms: u64,
    /// Bytes of output one script may produce.
    #[arg(long, env = "CIRCLE_SCRIPT_MAX_OUTPUT_BYTES", default_value_t = ScriptLimits::default().max_output_bytes)]
    pub script_max_output_bytes: usize,
    /// Bytes of heap memory one script may hold (enforced through the counting allocator the binary installs).
    #[arg(long, env = "CIRCLE_SCRIPT_MAX_MEMORY_BYTES", default_value_t = ScriptLimits::default().max_memory_bytes)]
    pub script_max_memory_bytes: usize,
}

impl ScriptLimitArgs {
    /// The limits these flags give; the others keep their defaults.
    pub fn limits(&self) -> ScriptLimits {
        ScriptLimits {
            max_operations: self.script_max_operations,
            max_run_time: Duration::from_millis(self.script_timeout_ms),
            max_output_bytes: self.script_max_output_bytes,
            max_memory_bytes: self.script_max_memory_bytes,
            ..ScriptLimits::default()
        }
    }
}

/// Who may write the circle's namespace of the store, and how large it may grow
/// ([`StoreLimits`]). Give every server and worker of a circle the same values: each checks
/// them itself.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// A public key (compressed hex) allowed to write the store's circle namespace (circle::set); repeat or comma-separate. Servers and workers of a circle need the same list.
    #[arg(
        long = "admin-key",
        env = "CIRCLE_ADMIN_KEYS",
        value_name = "HEX",
        value_delimiter = ','
    )]
    pub admin_keys: Vec<String>,
    /// Bytes of one store key (UTF-8); a longer key is refused with -32004.
    #[arg(long, env = "CIRCLE_STORE_MAX_KEY_BYTES", value_name = "BYTES", default_value_t = StoreLimits::default().max_key_bytes)]
    pub store_max_key_bytes: usize,
    /// Bytes of one store value, as JSON text; a larger value is refused with -32004.
    #[arg(long, env = "CIRCLE_STORE_MAX_VALUE_BYTES", value_name = "BYTES", default_value_t = StoreLimits::default().max_value_bytes)]
    pub store_max_value_bytes: usize,
    /// Keys one caller's store namespace may hold; a play adding more is refused with -32004.
    #[arg(long, env = "CIRCLE_STORE_MAX_KEYS_PER_CALLER", value_name = "KEYS", default_value_t = StoreLimits::default().max_keys_per_caller)]
    pub store_max_keys_per_caller: usize,
    /// Bytes (keys plus JSON values) the whole circle's store may hold (in Redis, all its workers together); a play growing it past this is refused with -32004.
    #[arg(long, env = "CIRCLE_STORE_MAX_CIRCLE_BYTES", value_name = "BYTES", default_value_t = StoreLimits::default().max_circle_bytes)]
    pub store_max_circle_bytes: u64,
}

impl StoreArgs {
    /// The store limits these flags give.
    pub fn limits(&self) -> StoreLimits {
        StoreLimits {
            max_key_bytes: self.store_max_key_bytes,
            max_value_bytes: self.store_max_value_bytes,
            max_keys_per_caller: self.store_max_keys_per_caller,
            max_circle_bytes: self.store_max_circle_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Both {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        script: ScriptLimitArgs,
        #[command(flatten)]
        store: StoreArgs,
    }

    #[test]
    fn no_flags_give_the_library_defaults() {
        let parsed = Both::try_parse_from(["x"]).unwrap();
        assert_eq!(parsed.script.limits(), ScriptLimits::default());
        assert_eq!(parsed.store.limits(), StoreLimits::default());
        assert_eq!(parsed.redis.tls(), RedisTls::default());
        assert!(parsed.redis.redis_sentinels.is_empty());
    }

    #[test]
    fn flags_reach_the_limits() {
        let parsed = Both::try_parse_from([
            "x",
            "--script-timeout-ms",
            "250",
            "--store-max-value-bytes",
            "7",
            "--redis-sentinel",
            "127.0.0.1:26379,[::1]:26380",
            "--admin-key",
            "02aa,03bb",
        ])
        .unwrap();
        assert_eq!(
            parsed.script.limits().max_run_time,
            Duration::from_millis(250)
        );
        assert_eq!(parsed.store.limits().max_value_bytes, 7);
        assert_eq!(
            parsed.redis.redis_sentinels,
            ["127.0.0.1:26379", "[::1]:26380"]
        );
        assert_eq!(parsed.store.admin_keys, ["02aa", "03bb"]);
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let refused = Both::try_parse_from(["x", "--redis-client-cert", "c.pem"]).unwrap_err();
        assert_eq!(
            refused.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }
}
