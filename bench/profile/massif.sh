#!/usr/bin/env bash
# Heap per idle connection by allocation site: the server under massif,
# N idle connections held, the peak snapshot summarised.
#
#   bench/profile/massif.sh NAME N "GENERATOR ARGS" SERVER COMMAND...
#   bench/profile/massif.sh circle-auth 1000 "--auth" target/release/circle-server --port 0 --auth \
#       --tls --cert cert.pem --key key.pem --connection-threads 1 --script-threads 1
set -euo pipefail
name=$1 count=$2 gen_args=$3
shift 3
BENCH=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(dirname "$BENCH")
OUT="$BENCH/target/profile"
mkdir -p "$OUT"
valgrind --tool=massif --threshold=0.5 --massif-out-file="$OUT/massif.$name" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
VPID=$!
for _ in $(seq 150); do grep -q 'listening on' "$OUT/$name.out" 2>/dev/null && break; sleep 0.2; done
URL=$(grep -o -m1 'wss\?://[^ ]*' "$OUT/$name.out")
# shellcheck disable=SC2086
"$BENCH/target/release/circle-bench" hold --url "$URL" --ca "$ROOT/cert.pem" -n "$count" --settle 5 \
    --server-pid "$VPID" --method whoami --params none $gen_args
kill -TERM "$VPID" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$VPID" 2>/dev/null || break; sleep 0.2; done
kill -KILL "$VPID" 2>/dev/null || true
python3 "$(dirname "$0")/massif_top.py" "$OUT/massif.$name" "$count"
