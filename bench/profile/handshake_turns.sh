#!/usr/bin/env bash
# Server CPU per new connection, the servers taking turns: circle-server
# (`whoami` and `play`), echo-wss and jsonrpsee-wss all run at once, pinned
# to CPU 0 (idle when not loaded), and each round loads each in turn from
# CPU 1, so a machine whose speed drifts (a shared VM does) drifts for all
# of them alike. Prints one line per run and the medians.
#
#   bench/profile/handshake_turns.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
ROUNDS=${1:-5} SECS=${2:-5} CONC=${3:-4}
BENCH=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(dirname "$BENCH")
BIN="$BENCH/target/release"
CERT="$ROOT/cert.pem" KEY="$ROOT/key.pem"
OUT=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$OUT"' EXIT
start() { # NAME COMMAND...
    local name=$1
    shift
    taskset -c 0 "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
    PIDS+=($!)
    eval "PID_${name//-/_}=$!"
    for _ in $(seq 100); do
        grep -q 'listening on wss://' "$OUT/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    eval "URL_${name//-/_}=$(grep -o -m1 'wss://[^ ]*' "$OUT/$name.out")"
}
start circle "$ROOT/target/release/circle-server" --port 0 --connection-threads 1 --script-threads 1 \
    --max-requests-per-second 0 --tls --cert "$CERT" --key "$KEY"
start echo "$BIN/echo-wss" --cert "$CERT" --key "$KEY"
start jsonrpsee "$BIN/jsonrpsee-wss" --cert "$CERT" --key "$KEY"
one() { # LABEL SERVER ARGS...
    local label=$1 server=$2
    shift 2
    local url pid
    eval "url=\$URL_$server; pid=\$PID_$server"
    taskset -c 1 "$BIN/circle-bench" handshake --url "$url" --ca "$CERT" -c "$CONC" --warmup 1 -d "$SECS" \
        --server-pid "$pid" "$@" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(sys.argv[1], d["conn_per_s"], d["server_cpu_us_per_conn"], d["errors"])' "$label" |
        tee -a "$OUT/lines"
}
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    one circle-whoami circle --method whoami --params none
    one circle-play circle --method play
    one echo-wss echo --method play
    one jsonrpsee-wss jsonrpsee --method play
done
python3 - "$OUT/lines" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, rate, cpu, errors = line.split()
    rows.setdefault(label, []).append((float(rate), float(cpu), int(errors)))
echo = statistics.median(c for _, c, _ in rows["echo-wss"])
json = statistics.median(c for _, c, _ in rows["jsonrpsee-wss"])
print("| server | conn/s | server CPU µs/conn (median) | spread | vs echo-wss | vs jsonrpsee-wss | errors |")
print("|---|---|---|---|---|---|---|")
for label, runs in rows.items():
    cpu = sorted(c for _, c, _ in runs)
    med = statistics.median(cpu)
    print(f"| {label} | {statistics.median(r for r, _, _ in runs):.0f} | {med:.1f} | {cpu[0]:.1f}–{cpu[-1]:.1f} | {med / echo:.2f}× | {med / json:.2f}× | {sum(e for _, _, e in runs)} |")
PY
