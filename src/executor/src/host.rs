//! Host functions: how a program that embeds a circle gives its scripts functions of its own.
//!
//! A [`ScriptEnvironment`] is a setup hook run on every rhai [`Engine`] a sandbox builds,
//! in the embedded pool and in Redis workers alike (one engine per script thread, built
//! once and again after a host function panicked). The hook registers functions; the
//! [`HostContext`] it is given tells those functions, while they run, which circle and
//! which caller the script runs for, so a host function can authorise per caller.
//!
//! ```
//! use circle_executor::host::{HostContext, ScriptEnvironment};
//! use circle_executor::rhai::{Engine, EvalAltResult, INT};
//!
//! let environment = ScriptEnvironment::new(|engine: &mut Engine, host: &HostContext| {
//!     let host = host.clone();
//!     engine.register_fn("balance", move || -> Result<INT, Box<EvalAltResult>> {
//!         let caller = host.current().caller_public_key.clone();
//!         if caller.is_empty() {
//!             return Err("balance: sign in first".into());
//!         }
//!         Ok(caller.len() as INT) // look the caller up in your own service here
//!     });
//! });
//! # let _ = environment;
//! ```
//!
//! The sandbox's guarantees hold around host functions: the hook runs before the sandbox
//! locks the engine down, so it cannot lift a limit or bring back `eval`; a host function
//! that returns an error gives the script an ordinary runtime error (`-32003`, catchable
//! with `try`); one that panics ends the script with `-32003` too, the panic is logged,
//! and the thread rebuilds its engine and keeps serving. A host function runs on the
//! script thread and is not interrupted: it should be quick, like any native function.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use rhai::Engine;

use crate::ScriptContext;

/// The setup hook's type: registers host functions on `engine`.
type Setup = dyn Fn(&mut Engine, &HostContext) + Send + Sync;

/// Functions a program adds to every script's engine (see the [module](self) docs).
///
/// Cheap to clone (one `Arc`); [`ScriptEnvironment::default`] is the stock environment,
/// which adds nothing.
#[derive(Clone, Default)]
pub struct ScriptEnvironment {
    setup: Option<Arc<Setup>>,
}

impl ScriptEnvironment {
    /// An environment whose `setup` is run on every engine a sandbox builds.
    pub fn new(setup: impl Fn(&mut Engine, &HostContext) + Send + Sync + 'static) -> Self {
        ScriptEnvironment {
            setup: Some(Arc::new(setup)),
        }
    }

    /// The stock environment: the sandbox as it is, no host functions.
    pub fn stock() -> Self {
        ScriptEnvironment::default()
    }

    /// Whether this is the stock environment.
    pub fn is_stock(&self) -> bool {
        self.setup.is_none()
    }

    /// Runs the hook on `engine`.
    pub(crate) fn apply(&self, engine: &mut Engine, host: &HostContext) {
        if let Some(setup) = &self.setup {
            setup(engine, host);
        }
    }
}

impl fmt::Debug for ScriptEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_stock() {
            "ScriptEnvironment(stock)"
        } else {
            "ScriptEnvironment(custom)"
        })
    }
}

/// What a host function may know about the run calling it: the [`ScriptContext`] of the
/// script running on this thread right now.
///
/// Given to the [`ScriptEnvironment`] hook; clone it into the functions it registers.
/// Single-threaded like the engine it belongs to.
#[derive(Clone, Default)]
pub struct HostContext {
    current: Rc<RefCell<Arc<ScriptContext>>>,
}

impl HostContext {
    /// The context of the script now running (the last one, between runs): its circle
    /// name and public key, and the caller's public key (`""` when not signed in).
    pub fn current(&self) -> Arc<ScriptContext> {
        Arc::clone(&self.current.borrow())
    }

    /// Sets the context for the run about to start.
    pub(crate) fn enter(&self, context: Arc<ScriptContext>) {
        *self.current.borrow_mut() = context;
    }
}

impl fmt::Debug for HostContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HostContext")
            .field(&self.current.borrow())
            .finish()
    }
}
