#!/usr/bin/env bash
# TLS scan: Debian's testssl.sh against a real circle-server on wss://, with
# a certificate like a public CA's: ECDSA P-256, valid for 90 days, made
# fresh for the scan (a self-signed leaf for localhost, trusted explicitly).
#
# Checked (about a minute): protocols, cipher categories, the server's cipher
# preference, its defaults and certificate, forward secrecy, HTTP headers,
# and the vulnerability checks (Heartbleed, CCS, ROBOT, renegotiation, CRIME,
# BREACH, POODLE, fallback SCSV, SWEET32, BEAST, LUCKY13, FREAK, LOGJAM,
# DROWN, RC4). Client simulation is left out (slow, and informational only).
#
# Fails when a finding has severity HIGH or CRITICAL, printing them, except
# one that concerns only the private test certificate, not the server: its
# missing revocation information (no CRL, no OCSP URI; nothing could revoke
# it anyway). That exception is printed. The certificate is trusted
# explicitly (--add-ca), like the browser tests do, so the chain-of-trust
# check is real. Also fails when the scan itself could not run (FATAL
# findings, or no findings at all).
#
# The flat JSON goes to target/testssl/testssl.json. Idempotent: testssl.sh
# is installed only when missing. Always stops the server it started.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
started=$SECONDS

# --- system packages -------------------------------------------------------
# testssl.sh (Debian's package installs the command as `testssl`); python3
# reads the JSON findings; openssl makes the scan's certificate.
ensure_packages testssl.sh python3 openssl
testssl=$(command -v testssl || command -v testssl.sh)

say "build: circle-server"
cargo build -p circle_server --bin circle-server

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out="$target_dir/testssl"
mkdir -p "$out"
json="$out/testssl.json"
rm -f "$json"

work=$(mktemp -d "${TMPDIR:-/tmp}/circles-testssl.XXXXXX")
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

# --- the certificate -----------------------------------------------------------
cert="$work/cert.pem"
key="$work/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$key" -out "$cert" -days 90 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" 2>/dev/null

# --- the server --------------------------------------------------------------
# --port 0: the kernel picks a free port; the server prints the one it got.
say "starting circle-server (wss://127.0.0.1, a 90-day P-256 certificate)"
: >"$work/server.out"
"$target_dir/debug/circle-server" --tls --cert "$cert" --key "$key" \
  --port 0 --host 127.0.0.1 >"$work/server.out" 2>"$out/server.log" &
server_pid=$!
port=
deadline=$((SECONDS + 60))
while [ -z "$port" ]; do
  port=$(sed -n 's|^listening on wss://127\.0\.0\.1:\([0-9]*\)/ws$|\1|p' "$work/server.out" || true)
  if [ -z "$port" ]; then
    if ! kill -0 "$server_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "testssl: circle-server did not start:" >&2
      cat "$out/server.log" >&2
      exit 1
    fi
    sleep 0.1
  fi
done

# --- the scan ------------------------------------------------------------------
# localhost (the certificate's name) at 127.0.0.1, without DNS lookups; no
# connections elsewhere (no --phone-out: CRL/OCSP servers are not asked).
version=$("$testssl" --version 2>/dev/null | sed -n 's/.*testssl[.a-z]* *\([0-9][^ ]*\) from.*/\1/p' | head -n1)
say "testssl ${version:-(version unknown)} against localhost:$port"
scan_status=0
"$testssl" --quiet --color 0 --warnings batch --nodns none --ip 127.0.0.1 \
  --connect-timeout 10 --openssl-timeout 10 \
  --add-ca "$cert" --jsonfile "$json" \
  --protocols --std --server-preference --server-defaults --fs --headers --vulnerable \
  "localhost:$port" || scan_status=$?
# testssl's exit status is not a verdict (3.0 counts findings in it); the JSON is.
echo "testssl exited with $scan_status; findings in $json"

# --- the verdict ---------------------------------------------------------------
python3 - "$json" <<'PY'
import json, sys

path = sys.argv[1]
try:
    with open(path) as f:
        findings = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"testssl: no readable JSON findings in {path}: {e}")
if isinstance(findings, dict):  # the pretty format, should it be asked for
    findings = [f for r in findings.get("scanResult", []) for v in r.values() if isinstance(v, list) for f in v]
if not findings:
    sys.exit("testssl: the scan produced no findings")

def excused(f):
    # The private test certificate has no CRL or OCSP URI: a property of that
    # file (nothing could revoke it), not of the server's TLS configuration.
    finding = f.get("finding", "")
    return f["id"].startswith("cert_revocation") and "Neither CRL nor OCSP URI provided" in finding

counts = {}
for f in findings:
    counts[f.get("severity", "?")] = counts.get(f.get("severity", "?"), 0) + 1
print("severities:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

fatal = [f for f in findings if f.get("severity") == "FATAL"]
bad = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL") and not excused(f)]
for f in findings:
    if f.get("severity") in ("HIGH", "CRITICAL") and excused(f):
        print(f"excused (private test certificate): {f['id']} {f['severity']}: {f.get('finding', '')}")
for f in fatal + bad:
    print(f"FAIL {f['id']} {f['severity']}: {f.get('finding', '')}", file=sys.stderr)
if fatal:
    sys.exit("testssl: the scan could not complete (FATAL findings above)")
if bad:
    sys.exit(f"testssl: {len(bad)} HIGH or CRITICAL finding(s)")
PY

say "TLS scan passed in $((SECONDS - started)) s"
