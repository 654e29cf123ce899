//! The `store::` and `circle::` rhai modules: a script's view of the circle's [`Store`].
//!
//! `store::` is the caller's own namespace, `circle::` the circle's shared one (written by
//! admin keys only). Both have `get(key)`, `set(key, value)`, `remove(key)`, `keys()` and
//! `keys(prefix)`. Writes go to a buffer of the run, which reads see first; the sandbox
//! hands the buffer to the store in one commit once the script ended successfully, and
//! drops it otherwise. Refusals the script could not fix by catching them (a store limit,
//! the backend failing) end the run through [`RunState::fail`]; mistakes it can handle (no
//! rights, a value JSON cannot hold) are ordinary runtime errors.

use std::cell::{RefCell, RefMut};
use std::rc::Rc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Module};

use super::{RunState, STOP_TOKEN};
use crate::host::HostContext;
use crate::store::{Namespace, Session, Store, StoreError, Writes, from_json, to_json};
use crate::{ExecutorError, LimitKind};

type FnResult<T> = Result<T, Box<EvalAltResult>>;

/// Which module a call came through.
#[derive(Clone, Copy)]
enum Which {
    /// `store::`: the caller's namespace.
    Own,
    /// `circle::`: the circle's namespace.
    Circle,
}

impl Which {
    fn module(self) -> &'static str {
        match self {
            Which::Own => "store",
            Which::Circle => "circle",
        }
    }
}

/// The store side of one sandbox: its session and the current run's writes.
pub(super) struct StoreRun {
    store: Store,
    /// Opened on first use, so that a sandbox starts even when the backend is down.
    session: RefCell<Option<Box<dyn Session>>>,
    writes: RefCell<Writes>,
    host: HostContext,
    state: Rc<RunState>,
    /// Most keys `keys()` returns (the array size limit).
    max_listed: usize,
}

impl StoreRun {
    /// Registers the `store` and `circle` modules on `engine`, bound to a new `StoreRun`.
    pub(super) fn register(
        engine: &mut Engine,
        store: Store,
        host: HostContext,
        state: Rc<RunState>,
        max_listed: usize,
    ) -> Rc<StoreRun> {
        let run = Rc::new(StoreRun {
            store,
            session: RefCell::new(None),
            writes: RefCell::new(Writes::new()),
            host,
            state,
            max_listed,
        });
        for which in [Which::Own, Which::Circle] {
            let mut module = Module::new();
            // Volatile: a store call must never be folded into a constant by the optimiser.
            let function = |name: &str| {
                FuncRegistration::new(name)
                    .in_internal_namespace()
                    .with_volatility(true)
            };
            let r = Rc::clone(&run);
            function("get")
                .set_into_module(&mut module, move |key: ImmutableString| r.get(which, &key));
            let r = Rc::clone(&run);
            function("set")
                .set_into_module(&mut module, move |key: ImmutableString, value: Dynamic| {
                    r.write(which, &key, Some(&value))
                });
            let r = Rc::clone(&run);
            function("remove").set_into_module(&mut module, move |key: ImmutableString| {
                r.write(which, &key, None)
            });
            let r = Rc::clone(&run);
            function("keys").set_into_module(&mut module, move || r.keys(which, ""));
            let r = Rc::clone(&run);
            function("keys").set_into_module(&mut module, move |prefix: ImmutableString| {
                r.keys(which, &prefix)
            });
            engine.register_static_module(which.module(), module.into());
        }
        run
    }

    /// Forgets the writes of the previous run.
    pub(super) fn begin(&self) {
        self.writes.borrow_mut().clear();
    }

    /// Commits the run's writes, all or none; returns once the store made them durable.
    pub(super) fn commit(&self) -> Result<(), ExecutorError> {
        let writes = std::mem::take(&mut *self.writes.borrow_mut());
        if writes.is_empty() {
            return Ok(());
        }
        let mut session = self.session().map_err(to_executor_error)?;
        session
            .commit(&writes, self.store.limits())
            .map_err(to_executor_error)
    }

    fn session(&self) -> Result<RefMut<'_, Box<dyn Session>>, StoreError> {
        let mut slot = self.session.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.store.session()?);
        }
        Ok(RefMut::map(slot, |slot| {
            slot.as_mut().expect("the session was just opened")
        }))
    }

    /// The namespace `which` means for the current caller, if they may use it.
    fn namespace(&self, which: Which, writing: bool) -> FnResult<Namespace> {
        // Every store call comes through here. An inline run never touches
        // the store (a read may wait for the disk, a write for an fsync, on
        // a connection thread): it goes to a script thread instead.
        if self.state.is_inline() {
            self.state.hand_off();
            return Err(
                EvalAltResult::ErrorTerminated(STOP_TOKEN.into(), rhai::Position::NONE).into(),
            );
        }
        let context = self.host.current();
        let caller = &context.caller_public_key;
        if caller.is_empty() {
            return Err(format!(
                "{}:: needs a signed-in caller: authenticate first, then play",
                which.module()
            )
            .into());
        }
        match which {
            Which::Own => Ok(Namespace::Caller(caller.clone())),
            Which::Circle if writing && !self.store.is_admin(caller) => Err(
                "circle:: is written by the circle's admin keys only; use store:: for your own keys"
                    .into(),
            ),
            Which::Circle => Ok(Namespace::Circle),
        }
    }

    /// Ends the run with `error` (not catchable: see [`RunState::fail`]).
    fn fail<T>(&self, error: ExecutorError) -> FnResult<T> {
        self.state.fail(error);
        Err(EvalAltResult::ErrorTerminated(STOP_TOKEN.into(), rhai::Position::NONE).into())
    }

    fn get(&self, which: Which, key: &str) -> FnResult<Dynamic> {
        let namespace = self.namespace(which, false)?;
        let buffered = self
            .writes
            .borrow()
            .get(&(namespace.clone(), key.to_owned()))
            .cloned();
        let stored = match buffered {
            Some(value) => value,
            None => match self.session().and_then(|mut s| s.get(&namespace, key)) {
                Ok(value) => value,
                Err(error) => return self.fail(to_executor_error(error)),
            },
        };
        match stored {
            Some(json) => from_json(&json).map_err(Into::into),
            None => Ok(Dynamic::UNIT),
        }
    }

    fn write(&self, which: Which, key: &str, value: Option<&Dynamic>) -> FnResult<()> {
        let namespace = self.namespace(which, true)?;
        let limits = self.store.limits();
        if key.is_empty() {
            return Err(format!("{}:: keys must not be empty", which.module()).into());
        }
        if key.len() > limits.max_key_bytes {
            let detail = format!("a key of {} bytes", key.len());
            return self.fail(to_executor_error(
                limits.refusal(LimitKind::StoreKeySize, &detail),
            ));
        }
        let json = match value {
            Some(value) => Some(to_json(value).map_err(|message| {
                Box::<EvalAltResult>::from(format!("{}::set: {message}", which.module()))
            })?),
            None => None,
        };
        if let Some(json) = &json
            && json.len() > limits.max_value_bytes
        {
            let detail = format!("a value of {} bytes (as JSON)", json.len());
            return self.fail(to_executor_error(
                limits.refusal(LimitKind::StoreValueSize, &detail),
            ));
        }
        self.writes
            .borrow_mut()
            .insert((namespace, key.to_owned()), json);
        Ok(())
    }

    fn keys(&self, which: Which, prefix: &str) -> FnResult<Array> {
        let namespace = self.namespace(which, false)?;
        let writes = self.writes.borrow();
        let buffered = writes
            .range((namespace.clone(), prefix.to_owned())..)
            .take_while(|((n, key), _)| *n == namespace && key.starts_with(prefix));
        // Removed keys may hide stored ones: ask for enough to still have a full list.
        let removed = buffered.clone().filter(|(_, v)| v.is_none()).count();
        let stored = match self
            .session()
            .and_then(|mut s| s.keys(&namespace, prefix, self.max_listed + 1 + removed))
        {
            Ok(keys) => keys,
            Err(error) => {
                drop(writes);
                return self.fail(to_executor_error(error));
            }
        };
        let mut keys: std::collections::BTreeSet<String> = stored.into_iter().collect();
        for ((_, key), value) in buffered {
            if value.is_some() {
                keys.insert(key.clone());
            } else {
                keys.remove(key);
            }
        }
        drop(writes);
        if keys.len() > self.max_listed {
            return self.fail(ExecutorError::Limit {
                limit: LimitKind::ArraySize,
                message: format!(
                    "{}::keys({prefix:?}) matches more than {} keys: over the array size limit; ask for a longer prefix",
                    which.module(),
                    self.max_listed
                ),
            });
        }
        Ok(keys.into_iter().map(Dynamic::from).collect())
    }
}

/// The answer a store failure gives the play: a limit `-32004`, anything else `-32005`.
fn to_executor_error(error: StoreError) -> ExecutorError {
    match error {
        StoreError::Limit { limit, message } => ExecutorError::Limit { limit, message },
        other => ExecutorError::Unavailable(other.to_string()),
    }
}
