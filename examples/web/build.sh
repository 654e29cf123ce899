#!/usr/bin/env bash
# Builds the browser console's WASM bundle into examples/web/www/pkg/:
# circle_client_ws's JS bindings (feature `js`) for wasm32-unknown-unknown,
# then wasm-bindgen-cli (ES module for `<script type="module">`).
#
# Needs: the wasm32-unknown-unknown target and wasm-bindgen-cli at the
# version of wasm-bindgen in Cargo.lock (.ci/browser-tests.sh installs both).
# No C compiler: everything in the bundle, secp256k1 included, is Rust.
#
# Usage: bash examples/web/build.sh [--debug]
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
cargo_profile=(--release)
if [ "${1:-}" = --debug ]; then
  profile=debug
  cargo_profile=()
fi

cargo build -p circle_client_ws --target wasm32-unknown-unknown \
  --no-default-features --features js --example browser_console "${cargo_profile[@]}"

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
wasm="$target_dir/wasm32-unknown-unknown/$profile/examples/browser_console.wasm"
out=examples/web/www/pkg
rm -rf "$out"
wasm-bindgen --target web --out-dir "$out" --out-name circle_console "$wasm"
echo "built $out ($(du -sh "$out" | cut -f1)); serve it with:"
echo "  cargo run -p circle_server --bin circle-server -- --tls --cert cert.pem --key key.pem --port 8443 --web-root examples/web/www"
