#!/usr/bin/env bash
# Browser tests of the WASM client, in Debian's headless Chromium against a
# real circle-server over wss:// (the README's second test command; .ci/run
# runs it too):
#
#   1. the wasm-bindgen tests (src/client_ws/tests/browser_*.rs): signing
#      byte-identical to the ethers.js vectors; connect, sign in, play, -32002
#      before signing in, timeouts, disconnect/reconnect, TlsConfig refusals,
#      the JS bindings' coded errors;
#   2. the console page (examples/web/): served by circle-server --web-root,
#      driven through chromedriver by examples/web/console_page_test.py, with
#      a screenshot in target/browser-tests/.
#
# Chromium verifies the server's certificate for real: the repository's
# development certificate (cert.pem, a self-signed leaf) is added to an NSS
# database in a throw-away HOME with trust flags "P,," (a trusted peer
# certificate). Chromium accepts a self-signed leaf only that way: as a CA
# ("C,," or "CT,c,c") it answers ERR_CERT_INVALID, because the certificate
# says CA:FALSE; not added at all, ERR_CERT_AUTHORITY_INVALID. Nothing is
# started with --ignore-certificate-errors or acceptInsecureCerts.
#
# Idempotent: installs (Debian packages, the wasm32 target, wasm-bindgen-cli
# at exactly Cargo.lock's wasm-bindgen version) happen only when missing.
# Always stops the server it started.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
say() { printf '\n=== %s\n' "$*"; }
started=$SECONDS

# --- system packages -------------------------------------------------------
# chromium + chromium-driver: the browser and its WebDriver, from Debian
# (never a downloaded browser). libnss3-tools: certutil, for the trust store.
# No C toolchain for wasm32: the client's crypto (k256) is pure Rust.
missing=()
for package in chromium chromium-driver libnss3-tools; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Rust: the wasm32 target and wasm-bindgen-cli ---------------------------
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown

# The CLI must be exactly the library's version (they share a schema).
wasm_bindgen_version=$(awk '
  /^name = "wasm-bindgen"$/ { found = 1; next }
  found && /^version = / { gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$wasm_bindgen_version" ]; then
  echo "browser-tests: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
if [ "$(wasm-bindgen-test-runner --version 2>/dev/null || true)" != "wasm-bindgen-test-runner $wasm_bindgen_version" ]; then
  say "installing wasm-bindgen-cli $wasm_bindgen_version"
  # Not --locked: the CLI's own lockfile pins a crate version the registry
  # here does not serve; its dependencies resolve fine without it.
  cargo install wasm-bindgen-cli --version "$wasm_bindgen_version"
fi

wasm_features=(--target wasm32-unknown-unknown --no-default-features --features js)

# Both supported wasm32 builds: default features (the native-only ones are
# inert there) and the JS bindings alone.
say "clippy for wasm32"
cargo clippy -p circle_client_ws --target wasm32-unknown-unknown --all-targets -- -D warnings
cargo clippy -p circle_client_ws "${wasm_features[@]}" --all-targets -- -D warnings

say "build: circle-server, the console page's WASM bundle"
cargo build -p circle_server --bin circle-server
bash examples/web/build.sh

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out="$target_dir/browser-tests"
mkdir -p "$out"

# --- a HOME for Chromium whose NSS database trusts the dev certificate -----
work=$(mktemp -d "${TMPDIR:-/tmp}/circles-browser-tests.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    # SIGTERM stops it gracefully; wait so no server outlives this script.
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

browser_home="$work/home"
mkdir -p "$browser_home/.pki/nssdb"
certutil -d "sql:$browser_home/.pki/nssdb" -N --empty-password
certutil -d "sql:$browser_home/.pki/nssdb" -A -t "P,," -n "circles development" -i cert.pem
# cargo and rustup find themselves through HOME unless told: keep the real ones.
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"

# The runner's Chromium: its own flags (headless, no-sandbox) plus the ones
# this machine needs (no background connections to a closed network).
cat > "$work/webdriver.json" <<'JSON'
{
  "goog:chromeOptions": {
    "binary": "/usr/bin/chromium",
    "args": ["disable-gpu", "disable-quic", "no-first-run", "disable-background-networking",
             "disable-component-update", "disable-sync"]
  }
}
JSON

# --- the server --------------------------------------------------------------
# --auth: sign-in is required (the -32002 tests); --script-timeout-ms 2000:
# the timeout test's endless script is stopped soon after the client gave up.
say "starting circle-server (wss://, --auth, --web-root examples/web/www)"
# Created here: the background job opens its redirections only after the
# fork, so the loop below could otherwise look before the file exists.
: >"$work/server.out"
"$target_dir/debug/circle-server" --tls --cert cert.pem --key key.pem --port 0 --auth \
  --web-root examples/web/www --script-timeout-ms 2000 \
  >"$work/server.out" 2>"$out/server.log" &
server_pid=$!
port=
deadline=$((SECONDS + 60))
while [ -z "$port" ]; do
  port=$(sed -n 's|^listening on wss://127\.0\.0\.1:\([0-9]*\)/ws$|\1|p' "$work/server.out" || true)
  if [ -z "$port" ]; then
    if ! kill -0 "$server_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "browser-tests: circle-server did not start:" >&2
      cat "$out/server.log" >&2
      exit 1
    fi
    sleep 0.1
  fi
done
echo "circle-server on wss://localhost:$port/ws (log: $out/server.log)"

# --- 1. wasm-bindgen tests in headless Chromium ----------------------------
say "wasm-bindgen tests in headless Chromium"
HOME="$browser_home" \
  CIRCLE_BROWSER_TEST_URL="wss://localhost:$port/ws" \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  CHROMEDRIVER=/usr/bin/chromedriver \
  WASM_BINDGEN_TEST_WEBDRIVER_JSON="$work/webdriver.json" \
  WASM_BINDGEN_TEST_TIMEOUT=180 \
  cargo test -p circle_client_ws "${wasm_features[@]}" --test browser_signing --test browser_client

# --- 2. the console page, end to end ----------------------------------------
say "console page in headless Chromium (https://localhost:$port/)"
HOME="$browser_home" python3 examples/web/console_page_test.py \
  --url "https://localhost:$port/" --out "$out"

say "browser tests passed in $((SECONDS - started)) s (screenshot: $out/console-page-chromium.png)"
