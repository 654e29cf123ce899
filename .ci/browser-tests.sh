#!/usr/bin/env bash
# Browser tests of the WASM client, in Debian's headless Chromium and headless
# Firefox ESR, against one real circle-server over wss:// (the README's
# second test command; .ci/run runs it too). In each browser:
#
#   1. the wasm-bindgen tests (src/client_ws/tests/browser_*.rs): signing
#      byte-identical to the ethers.js vectors; connect, sign in, play, -32002
#      before signing in, timeouts, disconnect/reconnect, TlsConfig refusals,
#      the JS bindings' coded errors; run by wasm-bindgen-test-runner through
#      chromedriver (Debian's) or geckodriver (built from crates.io, pinned);
#   2. the console page (examples/web/): served by circle-server --web-root,
#      driven through the same WebDriver by examples/web/console_page_test.py,
#      with a screenshot per browser in target/browser-tests/;
#   3. wallet sign-in (examples/web/wallet_page_test.py): a test wallet (an
#      EIP-1193 provider around ethers' Wallet, from the npm registry with
#      npm ci, pinned by examples/web/test-wallet/package-lock.json) injected
#      into the console page signs in through authenticateWithWallet and
#      through the page's "Sign in with wallet" button; its 4001 rejection
#      is a coded error; a screenshot per browser.
#
# Both browsers verify the server's certificate for real. Nothing is started
# with --ignore-certificate-errors or acceptInsecureCerts, and no certificate
# exception (Firefox's cert_override.txt) is made.
#
# Chromium: the repository's development certificate (cert.pem, a self-signed
# leaf) is added to an NSS database in a throw-away HOME with trust flags
# "P,," (a trusted peer certificate). Chromium accepts a self-signed leaf only
# that way: as a CA ("C,," or "CT,c,c") it answers ERR_CERT_INVALID, because
# the certificate says CA:FALSE; not added at all, ERR_CERT_AUTHORITY_INVALID.
#
# Firefox: a throw-away profile whose own NSS database (PROFILE/cert9.db)
# holds cert.pem with trust flags "C,," (a trusted anchor for TLS servers).
# Firefox's verifier (mozilla::pkix) is the other way round from Chromium's:
# it reads only the CA trust bit, even for a leaf, and then checks the
# certificate as the end entity it is (CA:FALSE is fine), so "C,," is
# accepted; with "P,," (merely "not distrusted") Firefox refuses the page
# as it does when the certificate is not added at all (WebDriver's
# "insecure certificate"). The profile's user.js switches off every
# background connection (updates, safe browsing, telemetry, captive portal
# and connectivity checks, remote settings, ...), and Firefox runs with
# MOZ_DISABLE_NONLOCAL_CONNECTIONS=1 (it then refuses any connection to a
# non-local address): this machine may have no network. Firefox never runs on
# that profile itself: the wasm-bindgen tests get one copy (-profile), the
# console page test another.
#
# Idempotent: installs (Debian packages, the wasm32 target, wasm-bindgen-cli
# at exactly Cargo.lock's wasm-bindgen version, geckodriver at the version
# pinned below) happen only when missing. Always stops the server it started.
# Both browsers run even when the first one fails; the last lines say how
# each one did, and the exit status is 0 only when both passed.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
say() { printf '\n=== %s\n' "$*"; }
started=$SECONDS

# geckodriver is not packaged by Debian: built from crates.io at this version
# (supports Firefox 115 ESR and later; Debian's firefox-esr is newer).
geckodriver_version=0.37.1

# cargo and rustup find themselves through HOME unless told: keep the real
# ones (the browsers below get a throw-away HOME).
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"

# --- system packages -------------------------------------------------------
# chromium + chromium-driver: the browser and its WebDriver, from Debian;
# firefox-esr: Debian's Firefox (never a downloaded browser). libnss3-tools:
# certutil, for the trust stores. No C toolchain for wasm32: the client's
# crypto (k256) is pure Rust.
missing=()
for package in chromium chromium-driver firefox-esr libnss3-tools; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# node + npm: npm ci installs the test wallet's ethers (some Node packages
# bring npm with them, Debian's splits it out).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
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

# geckodriver: Mozilla publishes it on crates.io; --locked builds it with the
# dependency versions it was released with.
geckodriver="$CARGO_HOME/bin/geckodriver"
if [ "$("$geckodriver" --version 2>/dev/null | awk 'NR == 1 { print $1, $2 }' || true)" != "geckodriver $geckodriver_version" ]; then
  say "installing geckodriver $geckodriver_version"
  cargo install geckodriver --locked --version "$geckodriver_version"
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

# The test wallet: ethers from the npm registry (exactly the lockfile's
# version), vendored beside the provider into the served folder, so the
# browsers load it from the test server, offline. www/test-wallet is
# ignored by git and exists only for the tests.
say "test wallet: npm ci (ethers), copied to examples/web/www/test-wallet/"
npm ci --prefix examples/web/test-wallet --no-audit --no-fund
rm -rf examples/web/www/test-wallet
mkdir -p examples/web/www/test-wallet
cp examples/web/test-wallet/provider.js \
  examples/web/test-wallet/node_modules/ethers/dist/ethers.min.js examples/web/www/test-wallet/

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out="$target_dir/browser-tests"
mkdir -p "$out"

# --- a HOME for the browsers; NSS databases that trust the dev certificate --
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

# Firefox ignores ~/.pki/nssdb: its profile is its trust store (see above).
firefox_profile="$work/firefox-profile"
mkdir -p "$firefox_profile"
certutil -d "sql:$firefox_profile" -N --empty-password
certutil -d "sql:$firefox_profile" -A -t "C,," -n "circles development" -i cert.pem
# No background connections (geckodriver adds its own recommended prefs, which
# cover most of these too; these hold whichever geckodriver runs it).
cat > "$firefox_profile/user.js" <<'PREFS'
user_pref("app.normandy.enabled", false);
user_pref("app.shield.optoutstudies.enabled", false);
user_pref("app.update.auto", false);
user_pref("app.update.checkInstallTime", false);
user_pref("app.update.disabledForTesting", true);
user_pref("app.update.enabled", false);
user_pref("browser.discovery.enabled", false);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.ping-centre.telemetry", false);
user_pref("browser.region.network.url", "");
user_pref("browser.region.update.enabled", false);
user_pref("browser.safebrowsing.blockedURIs.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.safebrowsing.downloads.remote.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.update.enabled", false);
user_pref("browser.search.update", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("browser.topsites.contile.enabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("extensions.blocklist.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("media.gmp-manager.updateEnabled", false);
user_pref("messaging-system.rsexperimentloader.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.http.speculative-parallel-limit", 0);
user_pref("network.prefetch-next", false);
user_pref("network.trr.mode", 5);
user_pref("security.remote_settings.crlite_filters.enabled", false);
user_pref("security.remote_settings.intermediates.enabled", false);
user_pref("services.settings.server", "data:,#remote-settings-dummy/v1");
user_pref("toolkit.telemetry.archive.enabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.server", "");
user_pref("toolkit.telemetry.unified", false);
PREFS

# The runner's Chromium: its own flags (headless, no-sandbox) plus the ones
# this machine needs (no background connections to a closed network).
cat > "$work/webdriver-chromium.json" <<'JSON'
{
  "goog:chromeOptions": {
    "binary": "/usr/bin/chromium",
    "args": ["disable-gpu", "disable-quic", "no-first-run", "disable-background-networking",
             "disable-component-update", "disable-sync"]
  }
}
JSON
# The runner's Firefox: it adds -headless itself; the profile trusts cert.pem
# and holds the prefs. (MOZ_DISABLE_NONLOCAL_CONNECTIONS is set on the
# runner's environment below: geckodriver passes its own environment to
# Firefox, and applies moz:firefoxOptions.env on Android only.)
cat > "$work/webdriver-firefox.json" <<JSON
{
  "acceptInsecureCerts": false,
  "moz:firefoxOptions": {
    "binary": "/usr/bin/firefox-esr",
    "args": ["-profile", "$work/firefox-profile-wasm"]
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

# --- the tests, browser by browser -----------------------------------------
# Each browser: 1. the wasm-bindgen tests, 2. the console page. A failure is
# recorded and the next browser still runs.
declare -A summary
failures=0
run_browser() {
  local browser=$1 label=$2 driver_env=$3 driver=$4
  local browser_started=$SECONDS result=passed
  shift 4
  # Firefox's own test mode: it refuses any connection to a non-local
  # address, and only then honours services.settings.server (release builds
  # ignore it otherwise and poll firefox.settings.services.mozilla.com at
  # startup). Inherited through the runner and geckodriver.
  local extra_env=()
  [ "$browser" != firefox ] || extra_env=(MOZ_DISABLE_NONLOCAL_CONNECTIONS=1)
  say "wasm-bindgen tests in headless $label"
  if ! env HOME="$browser_home" "${extra_env[@]}" \
      CIRCLE_BROWSER_TEST_URL="wss://localhost:$port/ws" \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
      "$driver_env=$driver" \
      WASM_BINDGEN_TEST_WEBDRIVER_JSON="$work/webdriver-$browser.json" \
      WASM_BINDGEN_TEST_TIMEOUT=180 \
      cargo test -p circle_client_ws "${wasm_features[@]}" --test browser_signing --test browser_client --test browser_wallet --test browser_stream; then
    result="FAILED (wasm-bindgen tests)"
  fi
  say "console page in headless $label (https://localhost:$port/)"
  if ! HOME="$browser_home" python3 examples/web/console_page_test.py \
      --browser "$browser" --driver "$driver" "$@" \
      --url "https://localhost:$port/" --out "$out"; then
    if [ "$result" = passed ]; then result="FAILED (console page)"; else result="$result, console page"; fi
  fi
  say "wallet sign-in in headless $label (test wallet: ethers)"
  if ! HOME="$browser_home" python3 examples/web/wallet_page_test.py \
      --browser "$browser" --driver "$driver" "$@" \
      --url "https://localhost:$port/" --out "$out"; then
    if [ "$result" = passed ]; then result="FAILED (wallet page)"; else result="$result, wallet page"; fi
  fi
  [ "$result" = passed ] || failures=$((failures + 1))
  summary[$browser]="$label: $result in $((SECONDS - browser_started)) s (screenshots: $out/console-page-$browser.png, $out/wallet-page-$browser.png)"
}

run_browser chromium Chromium CHROMEDRIVER /usr/bin/chromedriver
cp -R "$firefox_profile" "$work/firefox-profile-wasm"
run_browser firefox "Firefox ESR" GECKODRIVER "$geckodriver" --firefox-profile "$firefox_profile"

say "browser tests: $((SECONDS - started)) s in all"
for browser in chromium firefox; do
  echo "browser tests, ${summary[$browser]}"
done
exit $((failures > 0))
