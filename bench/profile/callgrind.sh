#!/usr/bin/env bash
# Instructions per request of a server, counted by callgrind over the
# measured window only (start-up and warm-up excluded).
#
#   bench/profile/callgrind.sh NAME MODE "GENERATOR ARGS" SERVER COMMAND...
#   bench/profile/callgrind.sh circle-whoami rpc "-c 64 -w 16 --method whoami --params none" \
#       target/release/circle-server --port 0 --tls --cert cert.pem --key key.pem --connection-threads 1 --script-threads 1
#
# Writes bench/target/profile/cg.NAME; read it with callgrind_annotate.
set -euo pipefail
name=$1 mode=$2 gen_args=$3
shift 3
BENCH=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(dirname "$BENCH")
OUT="$BENCH/target/profile"
mkdir -p "$OUT"
WARM=3 DUR=6
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/cg.$name" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
VPID=$!
for _ in $(seq 150); do grep -q 'listening on' "$OUT/$name.out" 2>/dev/null && break; sleep 0.2; done
URL=$(grep -o -m1 'wss\?://[^ ]*' "$OUT/$name.out")
# Count only the generator's measured window.
(sleep "$WARM"; callgrind_control -i on "$VPID" >/dev/null; sleep "$DUR"; callgrind_control -i off "$VPID" >/dev/null) &
# shellcheck disable=SC2086
"$BENCH/target/release/circle-bench" "$mode" --url "$URL" --ca "$ROOT/cert.pem" --warmup "$WARM" -d "$DUR" \
    --server-pid "$VPID" $gen_args >"$OUT/$name.json"
wait %2 2>/dev/null || true
# Dump explicitly: a graceful stop under valgrind can take long.
callgrind_control -d "$VPID" >/dev/null 2>&1 || true
kill -KILL "$VPID" 2>/dev/null || true
wait "$VPID" 2>/dev/null || true
answers=$(grep -o '"requests":[0-9]*' "$OUT/$name.json" | cut -d: -f2)
total=$(cat "$OUT"/cg."$name"* 2>/dev/null | grep '^totals:' | awk '{s+=$2} END {print s}')
echo "$name: $answers answers in the window, $total Ir, $((total / (answers > 0 ? answers : 1))) Ir per answer"
