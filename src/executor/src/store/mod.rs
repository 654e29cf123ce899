//! The per-circle store scripts read and write through the `store::` and `circle::` rhai
//! modules (semantics: `docs/STORE.md`).
//!
//! A [`Store`] is a handle (cheap to clone) on one backend plus the circle's admin keys and
//! [`StoreLimits`]:
//!
//! - [`Store::open_file`]: one `redb` file, commits fsync'd before they return (the
//!   embedded executor's store, `ServerConfig::data_dir`);
//! - [`Store::in_memory`]: the same without a file, lost when the process exits;
//! - [`Store::redis`] (feature `redis`): hashes in the Redis the workers share, each
//!   play's writes applied by one Lua script (atomic in Redis).
//!
//! Every script thread opens its own session on the backend (a `redb` handle, a Redis
//! connection). A play's writes are buffered in the sandbox and handed to
//! [`Session::commit`] in one piece only when the script ended successfully; the play is
//! answered after the commit returned.

mod file;
mod json;
#[cfg(feature = "redis")]
mod redis;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub(crate) use json::{from_json, to_json};

use crate::LimitKind;

/// Whose keys: one caller's private namespace, or the circle's shared one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Namespace {
    /// The namespace of the caller with this public key (compressed, lower-case hex).
    Caller(String),
    /// The circle's namespace: read by every signed-in caller, written by admin keys.
    Circle,
}

impl Namespace {
    /// The name the backends file the namespace under: `caller:{public key}` or `circle`.
    pub fn storage_name(&self) -> String {
        match self {
            Namespace::Caller(key) => format!("caller:{key}"),
            Namespace::Circle => "circle".to_owned(),
        }
    }

    /// Whether [`StoreLimits::max_keys_per_caller`] applies.
    pub(crate) fn is_caller(&self) -> bool {
        matches!(self, Namespace::Caller(_))
    }
}

/// The writes of one play: per key the JSON text to store, or `None` to remove it. The
/// last write of a key in the play wins; keys are in order, so every backend applies them
/// in the same order.
pub(crate) type Writes = BTreeMap<(Namespace, String), Option<String>>;

/// How much one circle's store may hold. Each refusal is a `-32004` naming the limit
/// ([`LimitKind::StoreKeySize`] and the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes of one key (UTF-8). Default 256.
    pub max_key_bytes: usize,
    /// Bytes of one value, as JSON text. Default 64 KiB.
    pub max_value_bytes: usize,
    /// Keys one caller's namespace may hold. Default 1,000.
    pub max_keys_per_caller: usize,
    /// Bytes (keys plus JSON values) of all namespaces of the circle together.
    /// Default 256 MiB.
    pub max_circle_bytes: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
            max_keys_per_caller: 1_000,
            max_circle_bytes: 256 * 1024 * 1024,
        }
    }
}

impl StoreLimits {
    /// The refusal of `limit`, naming it and its configured value; `detail` says what
    /// went over it.
    pub(crate) fn refusal(&self, limit: LimitKind, detail: &str) -> StoreError {
        let what = match limit {
            LimitKind::StoreKeySize => {
                format!("store key size limit ({} bytes)", self.max_key_bytes)
            }
            LimitKind::StoreValueSize => {
                format!("store value size limit ({} bytes)", self.max_value_bytes)
            }
            LimitKind::StoreKeys => format!(
                "store keys per caller limit ({} keys)",
                self.max_keys_per_caller
            ),
            _ => format!(
                "store size limit ({} bytes per circle)",
                self.max_circle_bytes
            ),
        };
        StoreError::Limit {
            limit,
            message: format!("{detail}: over the {what}"),
        }
    }
}

/// What went wrong with the store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A write would go over a [`StoreLimits`] limit; nothing of the play was written.
    #[error("{message}")]
    Limit {
        /// Which limit ([`LimitKind::StoreKeySize`], `StoreValueSize`, `StoreKeys` or
        /// `StoreBytes`).
        limit: LimitKind,
        /// Names the limit and its value.
        message: String,
    },
    /// The store file cannot be opened (missing folder rights, used by another process,
    /// not a store file…). Start-up only.
    #[error("cannot open the store file {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// An admin key is not a compressed secp256k1 public key in hex.
    #[error(
        "admin key {0:?} is not a compressed public key (66 hex digits starting with 02 or 03)"
    )]
    InvalidAdminKey(String),
    /// The backend failed (an I/O error, Redis unreachable); the play is answered
    /// `-32005` and nothing of it was written.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// One script thread's connection to a backend. Not `Send`: it lives on its thread.
pub(crate) trait Session {
    /// The JSON text stored under `key`, if any.
    fn get(&mut self, namespace: &Namespace, key: &str) -> Result<Option<String>, StoreError>;

    /// The keys of `namespace` starting with `prefix`, in order, at most `max` (the
    /// caller asks for one more than it accepts, to tell "too many").
    fn keys(
        &mut self,
        namespace: &Namespace,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Applies `writes` all together, or none of them when one goes over `limits`. Returns
    /// once the backend made them durable (see each backend).
    fn commit(&mut self, writes: &Writes, limits: &StoreLimits) -> Result<(), StoreError>;
}

/// A store backend: opens sessions for script threads.
pub(crate) trait Backend: Send + Sync {
    /// A session for the calling thread.
    fn session(&self) -> Result<Box<dyn Session>, StoreError>;
    /// For logs: `file /var/lib/circle/store.redb`, `memory`, `redis`.
    fn describe(&self) -> String;
}

/// A circle's store: a backend, the keys allowed to write the circle namespace, and the
/// limits (see the [module](self) docs).
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    admin_keys: Arc<BTreeSet<String>>,
    limits: StoreLimits,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.describe())
            .field("admin_keys", &self.admin_keys.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Store {
    fn with_backend(backend: Arc<dyn Backend>) -> Store {
        Store {
            backend,
            admin_keys: Arc::default(),
            limits: StoreLimits::default(),
        }
    }

    /// The store in the `redb` file at `path`, created (with its folder, owner-only on
    /// Unix) when missing. Each commit is fsync'd before it returns, and a crash at any
    /// moment leaves the last committed state.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] naming the file and the problem (for example another process
    /// has it open).
    pub fn open_file(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Ok(Store::with_backend(Arc::new(file::FileBackend::open(
            path.as_ref(),
        )?)))
    }

    /// A store kept in memory, the same in every respect but durability: it is gone when
    /// the process exits.
    pub fn in_memory() -> Store {
        Store::with_backend(Arc::new(file::FileBackend::in_memory()))
    }

    /// The store of the circle `circle_public_key` in the Redis at `url` (what
    /// `circle-worker` uses: every worker of the circle sees the same data).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] for a URL that cannot be used (Redis itself is not
    /// contacted here).
    #[cfg(feature = "redis")]
    pub fn redis(url: &str, circle_public_key: &str) -> Result<Store, StoreError> {
        let endpoint =
            crate::redis::endpoint::Endpoint::new(url, &crate::RedisTls::default(), None)
                .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        Store::redis_at(Arc::new(endpoint), circle_public_key)
    }

    /// The store of the circle in the Redis `endpoint` reaches (a URL with its TLS files,
    /// or the master Sentinel names): what [`run_worker`](crate::redis::run_worker) uses.
    #[cfg(feature = "redis")]
    pub(crate) fn redis_at(
        endpoint: Arc<crate::redis::endpoint::Endpoint>,
        circle_public_key: &str,
    ) -> Result<Store, StoreError> {
        Ok(Store::with_backend(Arc::new(redis::RedisBackend::new(
            endpoint,
            circle_public_key,
        )?)))
    }

    /// The same store, with `keys` (compressed public keys, hex, `0x` optional) allowed
    /// to write the circle namespace.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidAdminKey`] for a key that is not a compressed public key.
    pub fn with_admin_keys<K: AsRef<str>>(
        mut self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Store, StoreError> {
        let keys = keys
            .into_iter()
            .map(|key| {
                circle_protocol::canonical_circle_public_key(key.as_ref())
                    .map_err(|_| StoreError::InvalidAdminKey(key.as_ref().to_owned()))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        self.admin_keys = Arc::new(keys);
        Ok(self)
    }

    /// The same store under `limits`.
    pub fn with_limits(mut self, limits: StoreLimits) -> Store {
        self.limits = limits;
        self
    }

    /// The limits writes are held to.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Whether `caller_public_key` (canonical form, as in `CALLER_PUBLIC_KEY`) may write
    /// the circle namespace.
    pub fn is_admin(&self, caller_public_key: &str) -> bool {
        self.admin_keys.contains(caller_public_key)
    }

    /// What the store is, for logs.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// A session for the calling (script) thread.
    pub(crate) fn session(&self) -> Result<Box<dyn Session>, StoreError> {
        self.backend.session()
    }
}
