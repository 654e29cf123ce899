//! The host functions of the host-function examples: a toy ledger a service gives its
//! circle's scripts. Shared, word for word, by the embedding server
//! (`wss_host_functions_example.rs`) and its matching worker binary (`ledger_worker/`),
//! so a script finds the same `balance` whichever executor runs it.

use std::collections::HashMap;
use std::sync::Arc;

use circles::executor::rhai::{Engine, EvalAltResult, INT};
use circles::executor::{HostContext, ScriptEnvironment};

/// The public key of the examples' well-known test secret key
/// (`0x4c08…2318`, from the Ethereum docs: never hold real value with it).
pub const ALICE: &str = "024e3b81af9c2234cad09d679ce6035ed1392347ce64ce405f5dcd36228a25de6e";

/// `balance(public_key)`: the balance of `public_key` in `balances`, readable by its
/// owner only (the function asks its [`HostContext`] who is calling).
pub fn environment(balances: HashMap<String, INT>) -> ScriptEnvironment {
    let balances = Arc::new(balances);
    ScriptEnvironment::new(move |engine: &mut Engine, host: &HostContext| {
        let host = host.clone();
        let balances = Arc::clone(&balances);
        engine.register_fn(
            "balance",
            move |owner: &str| -> Result<INT, Box<EvalAltResult>> {
                let caller = host.current().caller_public_key.clone();
                if caller.is_empty() {
                    return Err("balance: sign in first".into());
                }
                if !owner.eq_ignore_ascii_case(&caller) {
                    return Err("balance: you may read your own balance only".into());
                }
                Ok(balances.get(&caller).copied().unwrap_or(0))
            },
        );
    })
}

/// The examples' ledger: Alice holds 100.
pub fn demo_balances() -> HashMap<String, INT> {
    HashMap::from([(ALICE.to_owned(), 100)])
}
