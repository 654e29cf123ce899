#!/usr/bin/env bash
# Every test of the project, on a fresh Debian machine with only Rust on it
# (the README's second command):
#
#   1. installs what the tests need: Debian packages (as root; otherwise one
#      line says what to install), then `cargo test` does the rest;
#   2. cargo test --workspace --all-features: unit, integration, end-to-end
#      over real TLS, the real binaries, private redis-server instances, the
#      IPv6 test in a network namespace of its own (root);
#   3. every example, as a user runs it;
#   4. the browser tests (.ci/browser-tests.sh: the WASM client and the
#      console page in headless Chromium and Firefox ESR, which installs
#      its own browsers, drivers and the wasm32 target).
#
# Ends with one line counting every test that ran. Idempotent: installed
# things are not installed again. CI (.ci/run) runs exactly this, plus the
# checks only CI needs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
started=$SECONDS

# --- what the tests need ------------------------------------------------------
# redis-server: the Redis executor's tests start private instances of it.
# openssl: tests write PKCS#1/SEC1/encrypted keys and read serials with it.
# libssl-dev, pkg-config: the client's native-tls backend links OpenSSL.
# ca-certificates: the system roots the client trusts by default.
# iproute2: `ip`, for the IPv6 test's private network namespace.
# haproxy, nginx: the load balancers circle-server runs behind in
#   src/server/tests/behind_proxies.rs (with deploy/'s configurations).
# systemd: `systemd-analyze verify` checks deploy/'s service units.
# pebble: a test ACME CA and its DNS server (pebble-challtestsrv) for the
#   automatic-certificate tests, src/server/tests/acme.rs.
# redis-sentinel: src/server/tests/sentinel.rs runs three Sentinels over a
#   master and a replica and kills the master.
# tmux: a real terminal for the `circle` CLI's Ctrl-C tests
#   (src/client_ws/tests/cli_terminal.rs).
ensure_packages redis-server openssl libssl-dev pkg-config ca-certificates iproute2 \
    haproxy nginx systemd pebble redis-sentinel tmux

log=$(mktemp "${TMPDIR:-/tmp}/circles-tests.XXXXXX")
trap 'rm -f "$log"' EXIT

say "cargo test --workspace --all-features"
cargo test --workspace --all-features 2>&1 | tee "$log"

say "examples"
for example in examples/*.rs; do
  name=$(basename "$example" .rs)
  say "example $name"
  if [ "$name" = wss_cert_generation ]; then
    out=$(mktemp -d)
    cargo run --quiet --example "$name" -- --out "$out" localhost 127.0.0.1
    rm -rf "$out"
  else
    timeout 120 cargo run --quiet --example "$name" 2>&1 | tee -a "$log.example"
    # The examples run scripts: they must show no warning (a WARN would
    # mean a safety limit, such as the script memory cap, is off).
    if grep -q ' WARN ' "$log.example"; then
      echo "example $name printed a warning" >&2
      exit 1
    fi
    rm -f "$log.example"
  fi
done
examples=$(ls examples/*.rs | wc -l)

bash .ci/browser-tests.sh 2>&1 | tee -a "$log"

# One line for all of it: cargo's per-binary counts and the browser runners'.
read -r passed failed < <(awk '
  /^test result: / { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
  END { print p + 0, f + 0 }' "$log")
summary="tests: $passed passed, $failed failed"
say "all tests passed in $((SECONDS - started)) s ($examples examples ran)"
echo "$summary"
# Kept for .ci/run, which repeats it as its own last line.
mkdir -p "${CARGO_TARGET_DIR:-target}"
echo "$summary" >"${CARGO_TARGET_DIR:-target}/test-all-summary.txt"
