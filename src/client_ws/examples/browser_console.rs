//! The WASM bundle of the browser console page (`examples/web/` at the
//! repository root).
//!
//! A `cdylib` that re-exports the crate's JavaScript bindings, so that
//! `wasm-bindgen` turns it into `circle_console.js` + `.wasm` for the page:
//!
//! ```sh
//! bash examples/web/build.sh   # cargo build --target wasm32-unknown-unknown + wasm-bindgen
//! ```
//!
//! Built natively (as `cargo test --all-features` does with every example)
//! it is empty: the bindings exist only for wasm32.

#[cfg(target_arch = "wasm32")]
pub use circle_client_ws::js::{CircleClient, CirclePlay};
