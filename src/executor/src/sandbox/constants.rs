//! The circle constants a script sees (`CIRCLE_NAME`, `CIRCLE_PUBLIC_KEY`,
//! `CALLER_PUBLIC_KEY`), in a scope kept from one run to the next.
//!
//! A scope built for every run costs three copies of the context's strings,
//! their names and the scope's vectors, and dropping it frees them all again:
//! about 2,000 instructions and 10 allocations of a short `play`'s 26,500
//! instructions on the server (bench/PROFILE.md §9). A connection's plays all
//! have the same context, so the scope is kept instead: after a run the
//! script's own top-level variables are taken off it, and before a run its
//! entries are checked to be exactly what a new scope would hold (the same
//! names and strings, constant, not shared with a closure); anything else and
//! it is built anew.

use rhai::{Dynamic, Scope};

use crate::ScriptContext;

/// How many entries the constants take: the scope's length between runs.
const COUNT: usize = 3;

/// A run that left more top-level variables than this gets a new scope
/// rather than keeping their vectors' room for good.
const KEEP_ROOM_UP_TO: usize = 64;

/// The scope runs start from.
pub(super) struct Constants {
    scope: Scope<'static>,
}

impl Constants {
    pub(super) fn new() -> Self {
        Constants {
            scope: Scope::new(),
        }
    }

    /// The scope for a run of `context`: its three constants and nothing
    /// else.
    pub(super) fn scope_for(&mut self, context: &ScriptContext) -> &mut Scope<'static> {
        if !self.holds(context) {
            self.scope = Scope::new();
            for (name, value) in entries(context) {
                self.scope.push_constant(name, value.to_owned());
            }
        }
        &mut self.scope
    }

    /// Takes the last run's own variables off the scope.
    pub(super) fn end_run(&mut self) {
        if self.scope.len() > KEEP_ROOM_UP_TO {
            self.scope = Scope::new();
        } else {
            self.scope.rewind(COUNT);
        }
    }

    /// Whether the scope holds exactly `context`'s constants (in whatever
    /// order rhai lists them: `iter_raw` goes from the last entry back).
    fn holds(&self, context: &ScriptContext) -> bool {
        self.scope.len() == COUNT
            && entries(context).iter().all(|(want_name, want_value)| {
                self.scope.iter_raw().any(|(name, constant, value)| {
                    name == *want_name && constant && holds_string(value, want_value)
                })
            })
    }
}

/// Each constant's name and value.
fn entries(context: &ScriptContext) -> [(&'static str, &str); COUNT] {
    [
        ("CIRCLE_NAME", &context.circle_name),
        ("CIRCLE_PUBLIC_KEY", &context.circle_public_key),
        ("CALLER_PUBLIC_KEY", &context.caller_public_key),
    ]
}

/// A plain (unshared) string equal to `want`.
fn holds_string(value: &Dynamic, want: &str) -> bool {
    !value.is_shared()
        && value
            .as_immutable_string_ref()
            .is_ok_and(|held| held.as_str() == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(caller: &str) -> ScriptContext {
        ScriptContext {
            circle_name: "demo".to_owned(),
            circle_public_key: "02ab".to_owned(),
            caller_public_key: caller.to_owned(),
        }
    }

    /// The scope's entries, first pushed first.
    fn values(scope: &Scope<'_>) -> Vec<(String, bool, String)> {
        scope
            .iter()
            .map(|(name, constant, value)| (name.to_owned(), constant, value.to_string()))
            .collect()
    }

    #[test]
    fn a_run_starts_with_the_three_constants_only() {
        let mut constants = Constants::new();
        let scope = constants.scope_for(&context("03cd"));
        scope.push("x", 1_i64);
        constants.end_run();
        let scope = constants.scope_for(&context("03cd"));
        assert_eq!(
            values(scope),
            [
                ("CIRCLE_NAME".to_owned(), true, "demo".to_owned()),
                ("CIRCLE_PUBLIC_KEY".to_owned(), true, "02ab".to_owned()),
                ("CALLER_PUBLIC_KEY".to_owned(), true, "03cd".to_owned()),
            ]
        );
    }

    /// The circle's name as the scope holds it: the same string, not an equal one.
    fn held_name(constants: &mut Constants) -> rhai::ImmutableString {
        let scope = constants.scope_for(&context("03cd"));
        let name = scope.get("CIRCLE_NAME").expect("the constant is there");
        name.as_immutable_string_ref().expect("a string").clone()
    }

    #[test]
    fn the_same_caller_keeps_the_scope() {
        let mut constants = Constants::new();
        let first = held_name(&mut constants);
        constants.scope_for(&context("03cd")).push("x", 1_i64);
        constants.end_run();
        assert!(first.ptr_eq(&held_name(&mut constants)));
    }

    #[test]
    fn another_caller_gets_their_own_key() {
        let mut constants = Constants::new();
        constants.scope_for(&context("03cd"));
        constants.end_run();
        let scope = constants.scope_for(&context(""));
        assert_eq!(values(scope)[2].2, "");
    }

    #[test]
    fn a_scope_that_is_not_exactly_the_constants_is_built_anew() {
        let mut constants = Constants::new();
        // The right names and strings, but one is a variable a script could change.
        constants.scope.push("CIRCLE_NAME", "demo");
        constants.scope.push_constant("CIRCLE_PUBLIC_KEY", "02ab");
        constants.scope.push_constant("CALLER_PUBLIC_KEY", "03cd");
        let scope = constants.scope_for(&context("03cd"));
        assert!(scope.is_constant("CIRCLE_NAME").unwrap_or(false));
        // The right names, but a value shared with a closure.
        let shared = Dynamic::from("demo").into_shared();
        constants.scope = Scope::new();
        constants.scope.push_constant_dynamic("CIRCLE_NAME", shared);
        constants.scope.push_constant("CIRCLE_PUBLIC_KEY", "02ab");
        constants.scope.push_constant("CALLER_PUBLIC_KEY", "03cd");
        let scope = constants.scope_for(&context("03cd"));
        let name = scope.get("CIRCLE_NAME").expect("the constant is there");
        assert!(!name.is_shared());
        assert_eq!(name.to_string(), "demo");
    }

    #[test]
    fn a_run_with_many_variables_leaves_a_new_scope() {
        let mut constants = Constants::new();
        let scope = constants.scope_for(&context("03cd"));
        for index in 0..=KEEP_ROOM_UP_TO {
            scope.push(format!("v{index}"), 1_i64);
        }
        constants.end_run();
        assert!(constants.scope.is_empty());
        assert_eq!(constants.scope_for(&context("03cd")).len(), COUNT);
    }
}
