//! `circle`: run Rhai scripts on a circle server from the shell.
//!
//! stdout carries script output only, so `circle play '…' | …` composes;
//! everything else (errors, hints, warnings, prompts) goes to stderr. The
//! exit code says what kind of failure happened (see `EXIT CODES` in
//! `--help`).
//!
//! The command line exists natively only. In a wasm32 build (where the
//! `cli` feature, on by default, does nothing) this target compiles to an
//! empty program, so that `cargo build --target wasm32-unknown-unknown`
//! needs no feature flags; a Cargo target cannot be limited to a platform.

#![forbid(unsafe_code)]

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod exit;
#[cfg(not(target_arch = "wasm32"))]
mod output;
#[cfg(not(target_arch = "wasm32"))]
mod repl;
#[cfg(not(target_arch = "wasm32"))]
mod run;
#[cfg(not(target_arch = "wasm32"))]
mod split;
#[cfg(not(target_arch = "wasm32"))]
mod stream;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    run::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
