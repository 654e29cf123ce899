#!/usr/bin/env bash
# Compares two circle-server binaries side by side: `whoami` and `play` over
# wss:// at C=64 W=16, the binaries taking turns within each round, so that
# both see the same machine load.
#
#   bench/compare.sh BEFORE_BIN AFTER_BIN [ROUNDS] [SECONDS]
#
# Pinned like run.sh (server on CPU 0, generator on CPU 1), with run.sh's
# circle-server flags. Needs circle-bench built (cargo build --release in
# bench/; GEN=path overrides where it is). Prints one JSON line per run and
# a table of medians and spreads at the end; the lines stay in
# bench/target/compare-*/runs.jsonl.
set -euo pipefail

[[ $# -ge 2 ]] || { sed -n '2,12p' "$0"; exit 2; }
BEFORE=$1
AFTER=$2
ROUNDS=${3:-3}
DURATION=${4:-10}
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
GEN=${GEN:-${CARGO_TARGET_DIR:-$BENCH/target}/release/circle-bench}
for b in "$BEFORE" "$AFTER" "$GEN"; do
    [[ -x $b ]] || { echo "compare.sh: $b is missing" >&2; exit 1; }
done
command -v taskset >/dev/null || { echo "compare.sh: taskset (util-linux) is needed" >&2; exit 1; }

OUT="$BENCH/target/compare-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT/bin"
# Measure copies: a build elsewhere must not swap a binary mid-run.
cp "$BEFORE" "$OUT/bin/before"
cp "$AFTER" "$OUT/bin/after"
RUNS_FILE="$OUT/runs.jsonl"
: >"$RUNS_FILE"

FLAGS=(--port 0 --connection-threads 1 --script-threads 1 --max-requests-per-second 0
    --tls --cert "$ROOT/cert.pem" --key "$ROOT/key.pem")
SERVER_PID=""
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap stop_server EXIT

echo "== load at the start: $(cut -d' ' -f1-3 /proc/loadavg); results in $OUT"
for ((round = 1; round <= ROUNDS; round++)); do
    for name in before after; do
        log="$OUT/$name-$round"
        taskset -c 0 "$OUT/bin/$name" "${FLAGS[@]}" >"$log.out" 2>"$log.err" &
        SERVER_PID=$!
        url=""
        for _ in $(seq 200); do
            url=$(grep -o -m1 'listening on wss://[^ ]*' "$log.out" 2>/dev/null | sed 's/^listening on //' || true)
            [[ -n $url ]] && break
            sleep 0.1
        done
        [[ -n $url ]] || { echo "compare.sh: $name did not start (see $log.err)" >&2; exit 1; }
        for method in whoami play; do
            args=(--method play --params '{"script":"40 + 2"}')
            [[ $method == whoami ]] && args=(--method whoami --params none)
            line=$(taskset -c 1 "$GEN" rpc --url "$url" --ca "$ROOT/cert.pem" --server-pid "$SERVER_PID" \
                --server "$name" --point "wss $method C=64 W=16" -c 64 -w 16 --warmup 1 -d "$DURATION" "${args[@]}")
            echo "$line" >>"$RUNS_FILE"
            echo "   round $round $name $method: $(echo "$line" | grep -o '"\(req_per_s\|server_cpu_us_per_req\|errors\)":[^,}]*' | tr '\n' ' ')"
        done
        stop_server
    done
done

python3 - "$RUNS_FILE" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def pick(run, *keys):
    for k in keys:
        if run.get(k) is not None:
            return run[k]
    return None
print("| point | binary | req/s median (min–max) | server CPU µs/req median (min–max) | errors |")
print("|---|---|---|---|---|")
for point in sorted({r["point"] for r in runs}):
    for server in ("before", "after"):
        rs = [r for r in runs if r["point"] == point and r["server"] == server]
        rate = [pick(r, "req_per_s") for r in rs]
        cpu = [pick(r, "server_cpu_us_per_req") for r in rs]
        cpu = [c for c in cpu if c is not None]
        errors = sum(r.get("errors", 0) for r in rs)
        fmt = lambda xs, p: f"{statistics.median(xs):.{p}f} ({min(xs):.{p}f}–{max(xs):.{p}f})" if xs else "n/a"
        print(f"| {point} | {server} | {fmt(rate, 0)} | {fmt(cpu, 2)} | {errors} |")
PY
