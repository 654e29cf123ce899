//! Runs circle Rhai scripts (the `play` method of `docs/PROTOCOL.md`) in a sandbox.
//!
//! - [`sandbox::Sandbox`]: the one locked-down Rhai engine, with its [`ScriptLimits`] and a
//!   cache of compiled scripts. Independent of any thread pool, so a separate worker
//!   process can use it too.
//! - [`Executor`]: what the server calls: `execute(job)` returns a future of the output.
//! - [`EmbeddedExecutor`]: an `Executor` running scripts on a bounded pool of OS threads
//!   inside the server process.
//! - [`redis`] (feature `redis`, on by default): [`RedisExecutor`], an `Executor` that hands
//!   scripts to any number of `circle-worker` processes through Redis Streams, and
//!   [`run_worker`], the loop those processes run.
//!
//! - [`host`]: [`ScriptEnvironment`], the host functions a program gives its scripts, in
//!   both executors.
//! - [`store`]: [`Store`](store::Store), the durable per-circle store scripts use through
//!   the `store::` and `circle::` modules (semantics: `docs/STORE.md`).
//! - [`memory`]: [`CountingAllocator`](memory::CountingAllocator), the global allocator a
//!   program installs so that [`ScriptLimits::max_memory_bytes`] is enforced.
//!
//! Errors are [`ExecutorError`]s, each with the JSON-RPC code it maps to
//! ([`ExecutorError::code`]).
//!
//! ```
//! use std::sync::Arc;
//! use circle_executor::{EmbeddedConfig, EmbeddedExecutor, Executor, ScriptContext, ScriptJob};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let executor = EmbeddedExecutor::new(EmbeddedConfig::default())?;
//! let context = Arc::new(ScriptContext { circle_name: "demo".into(), ..Default::default() });
//! let output = executor.execute(ScriptJob::new(r#"print("hi"); 40 + 2"#, context)).await;
//! assert_eq!(output.unwrap().output, "hi\n42");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

#[cfg(feature = "clap")]
pub mod args;
mod control;
mod embedded;
mod error;
pub mod host;
mod limits;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod redis_tls;
pub mod sandbox;
pub mod store;

/// The rhai version scripts run on, for host functions: register them with these types.
pub use rhai;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

#[cfg(feature = "redis")]
pub use self::redis::{
    RedisExecutor, RedisExecutorConfig, RedisSentinel, RedisSetupError, SentinelConfigError,
    WorkerConfig, WorkerError, run_worker,
};
pub use control::{Cancel, LineSink, Offer, OutputSink};
pub use embedded::{EmbeddedConfig, EmbeddedExecutor};
pub use error::{ExecutorError, LimitKind, UnknownLimitKind};
pub use host::{HostContext, ScriptEnvironment};
pub use limits::ScriptLimits;
pub use redis_tls::RedisTls;
pub use sandbox::Sandbox;

/// Who is running a script, and where: exposed to the script as the constants
/// `CIRCLE_NAME`, `CIRCLE_PUBLIC_KEY` and `CALLER_PUBLIC_KEY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptContext {
    /// The circle's name (`CIRCLE_NAME`).
    pub circle_name: String,
    /// The circle's public key, hex (`CIRCLE_PUBLIC_KEY`).
    pub circle_public_key: String,
    /// The authenticated caller's public key, hex; `""` when the connection is not
    /// authenticated (`CALLER_PUBLIC_KEY`).
    pub caller_public_key: String,
}

/// One script to run.
#[derive(Debug, Clone)]
pub struct ScriptJob {
    /// The Rhai source text.
    pub script: String,
    /// Who runs it and where; shared because one connection sends many jobs.
    pub context: Arc<ScriptContext>,
    /// When the caller stops waiting. A job still queued at that moment is not started
    /// and is answered [`ExecutorError::DeadlineExceeded`]. A started script is bounded
    /// by [`ScriptLimits::max_run_time`] instead.
    pub deadline: Option<Instant>,
    /// Raised by the caller to stop the job, queued or running (protocol 1.1's
    /// `cancel`): it then answers [`ExecutorError::Cancelled`]. `None`: only the
    /// limits and the deadline stop it.
    pub cancel: Option<Cancel>,
    /// Where each printed line goes as it is printed (protocol 1.1's streamed
    /// `play`), besides the answer, which still carries every line. `None`: the
    /// lines come with the answer only.
    pub output: Option<OutputSink>,
}

impl ScriptJob {
    /// A job without a deadline.
    pub fn new(script: impl Into<String>, context: Arc<ScriptContext>) -> Self {
        ScriptJob {
            script: script.into(),
            context,
            deadline: None,
            cancel: None,
            output: None,
        }
    }

    /// The same job with a deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The same job, stopped when `cancel` is raised.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// The same job, its printed lines offered to `output` as they are printed.
    pub fn with_output(mut self, output: OutputSink) -> Self {
        self.output = Some(output);
        self
    }

    /// Whether the job's caller has cancelled it.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(Cancel::is_cancelled)
    }
}

/// What a script produced: the `output` field of the `play` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// The printed lines, then the script's value unless it is `()`, joined by `\n`.
    pub output: String,
}

/// The answer to one [`Executor::execute`] call.
pub type ExecuteFuture =
    Pin<Box<dyn Future<Output = Result<ScriptOutput, ExecutorError>> + Send + 'static>>;

/// Something that runs scripts: the embedded thread pool, or a dispatcher to remote
/// workers.
pub trait Executor: Send + Sync + 'static {
    /// Submits `job` and returns the future of its answer.
    ///
    /// Implementations must not block the calling (async) thread: refusals such as
    /// [`ExecutorError::Overloaded`] are answered by the returned future at once.
    fn execute(&self, job: ScriptJob) -> ExecuteFuture;

    /// Jobs accepted but not yet started, for metrics.
    fn queue_depth(&self) -> usize {
        0
    }

    /// Runs `job` here and now if it is short and has no effects (see
    /// [`EmbeddedExecutor::run_inline`]); otherwise says to
    /// [`execute`](Executor::execute) it. The default runs nothing inline.
    ///
    /// Call it only from a thread with at least
    /// [`MIN_STACK_BYTES`](sandbox::MIN_STACK_BYTES) of stack, and only for
    /// jobs that neither stream their output nor may be cancelled.
    fn run_inline(&self, job: &ScriptJob) -> Inline {
        let _ = job;
        Inline::NotHere
    }
}

/// What [`Executor::run_inline`] did with a job.
#[derive(Debug)]
pub enum Inline {
    /// It ran: this is its answer.
    Done(Result<ScriptOutput, ExecutorError>),
    /// It started, then needed more operations than an inline run gets, or
    /// reached for the store; nothing it did was kept. Execute it.
    HandedOff,
    /// Not run: this executor does not run scripts inline, or not this one
    /// (it streams, or is too long to parse here). Execute it.
    NotHere,
}
