#!/usr/bin/env bash
# The Redis executor row once, with CPU per job of every server-side process
# (/proc/PID/stat) and Redis commands per job (INFO commandstats).
#
#   bench/profile/redis_split.sh [SERVER_BIN [WORKER_BIN]]
set -euo pipefail
BENCH=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(dirname "$BENCH")
S=${1:-$ROOT/target/release/circle-server}
W=${2:-$ROOT/target/release/circle-worker}
OUT="$BENCH/target/profile"
mkdir -p "$OUT"
KEY=0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798
PORT=$((20000 + RANDOM % 20000))
taskset -c 0 redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
RP=$!
sleep 0.5
taskset -c 0 "$S" --port 0 --tls --cert "$ROOT/cert.pem" --key "$ROOT/key.pem" --connection-threads 1 --script-threads 1 \
    --redis-url "redis://127.0.0.1:$PORT" --circle-public-key "$KEY" >"$OUT/redis-server-side.out" 2>&1 &
SP=$!
for _ in $(seq 100); do grep -q 'listening on' "$OUT/redis-server-side.out" && break; sleep 0.1; done
taskset -c 0 "$W" --redis-url "redis://127.0.0.1:$PORT" --circle-public-key "$KEY" --name w1 >"$OUT/w1.log" 2>&1 &
W1=$!
taskset -c 0 "$W" --redis-url "redis://127.0.0.1:$PORT" --circle-public-key "$KEY" --name w2 >"$OUT/w2.log" 2>&1 &
W2=$!
trap 'kill -TERM $SP $W1 $W2 $RP 2>/dev/null || true' EXIT
sleep 1
URL=$(grep -o -m1 'wss://[^ ]*' "$OUT/redis-server-side.out")
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
redis-cli -p "$PORT" config resetstat >/dev/null
(
    sleep 1
    echo "$(ticks $SP) $(ticks $RP) $(ticks $W1) $(ticks $W2)" >"$OUT/cpu.before"
    sleep 5
    echo "$(ticks $SP) $(ticks $RP) $(ticks $W1) $(ticks $W2)" >"$OUT/cpu.after"
    redis-cli -p "$PORT" info commandstats >"$OUT/commandstats"
) &
taskset -c 1 "$BENCH/target/release/circle-bench" rpc --url "$URL" --ca "$ROOT/cert.pem" -c 64 -w 16 --warmup 1 -d 5 \
    --server-pid "$SP" >"$OUT/redis-run.json"
wait %5 2>/dev/null || true
python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
before = list(map(int, open(f"{out}/cpu.before").read().split()))
after = list(map(int, open(f"{out}/cpu.after").read().split()))
run = json.loads(open(f"{out}/redis-run.json").read())
jobs = run["requests"]
print(f"{run['req_per_s']} req/s, {run['errors']} errors")
for name, a, b in zip(["circle-server", "redis-server", "circle-worker 1", "circle-worker 2"], before, after):
    print(f"{name:16s} {(b - a) / 5:4.0f}% of a core  {(b - a) * 10000 / jobs:6.1f} µs CPU per job")
calls = 0
for line in open(f"{out}/commandstats"):
    m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", line)
    if m:
        calls += int(m.group(2))
        print(f"  {m.group(1):12s} {int(m.group(2)) / jobs:5.2f} per job")
print(f"  all commands {calls / jobs:5.2f} per job")
PY
