#!/usr/bin/env bash
# Runs the benchmark matrix of issue 6 and writes bench/RESULTS.md.
#
#   bench/run.sh            full matrix: each point 3 runs of 10 s, medians
#   bench/run.sh --quick    smoke test: each point 1 run of 2 s, smaller hold
#   bench/run.sh --only rpc,handshake,hold,capacity,redis,store   a part of it
#                           (a part of a full run writes bench/results/PART.md
#                           and PART.jsonl, not RESULTS.md)
#   bench/run.sh --no-build use the binaries already built
#
# Every server runs pinned to CPU 0 and the load generator to CPU 1
# (taskset), one thread each, so the numbers say what one core of server
# does and the generator never steals its CPU. Every load goes to 127.0.0.1
# only, and every run is bounded in time.
#
# CIRCLE_PRODUCT_ROOT=/path/to/checkout measures circle-server built from
# another checkout of the workspace (default: this one); CIRCLE_SERVER_BIN
# and CIRCLE_WORKER_BIN measure prebuilt binaries instead (with --no-build).
set -euo pipefail

QUICK=0
BUILD=1
ALL_GROUPS="rpc,handshake,hold,capacity,redis,store"
ONLY=$ALL_GROUPS
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --only) ONLY="$2"; shift ;;
        --only=*) ONLY="${1#--only=}" ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
PRODUCT_ROOT=${CIRCLE_PRODUCT_ROOT:-$ROOT}

if [[ $QUICK == 1 ]]; then
    RUNS=1; DURATION=2; WARMUP=0.5; HOLD_N=2000
else
    RUNS=3; DURATION=10; WARMUP=1; HOLD_N=10000
fi

command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is needed" >&2; exit 1; }
[[ $(nproc) -ge 2 ]] || { echo "run.sh: needs 2 cores (server on CPU 0, generator on CPU 1)" >&2; exit 1; }

if [[ $BUILD == 1 ]]; then
    echo "== building circle-server (release) in $PRODUCT_ROOT"
    (cd "$PRODUCT_ROOT" && cargo build --release -p circle_server)
    if grep -q 'name = "circle-worker"' "$PRODUCT_ROOT/src/executor/Cargo.toml" 2>/dev/null; then
        echo "== building circle-worker (release)"
        (cd "$PRODUCT_ROOT" && cargo build --release -p circle_executor --bin circle-worker) \
            || echo "run.sh: circle-worker did not build; the Redis rows will be skipped" >&2
    fi
    echo "== building circle-bench and the peers (release) in $BENCH"
    (cd "$BENCH" && cargo build --release)
fi

CIRCLE_SERVER="${CIRCLE_SERVER_BIN:-$PRODUCT_ROOT/target/release/circle-server}"
CIRCLE_WORKER="${CIRCLE_WORKER_BIN:-$PRODUCT_ROOT/target/release/circle-worker}"
BIN="$BENCH/target/release"
GEN="$BIN/circle-bench"
for b in "$CIRCLE_SERVER" "$GEN" "$BIN/echo-wss" "$BIN/jsonrpsee-wss"; do
    [[ -x $b ]] || { echo "run.sh: $b is missing (run without --no-build)" >&2; exit 1; }
done

OUT="$BENCH/target/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
RUNS_FILE="$OUT/runs.jsonl"
: >"$RUNS_FILE"
echo "== results of this run go to $OUT"

# Measure copies: other builds in the shared target directory must not swap
# a binary in the middle of a run.
mkdir -p "$OUT/bin"
cp "$CIRCLE_SERVER" "$OUT/bin/circle-server"
CIRCLE_SERVER="$OUT/bin/circle-server"
if [[ -x $CIRCLE_WORKER ]]; then
    cp "$CIRCLE_WORKER" "$OUT/bin/circle-worker"
    CIRCLE_WORKER="$OUT/bin/circle-worker"
fi

# 10,000 idle connections need more than the usual 1,024 descriptors, on
# both sides; the hard limit is what the machine allows.
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)


ECDSA_CERT="$ROOT/cert.pem"
ECDSA_KEY="$ROOT/key.pem"
RSA_CERT="$OUT/rsa-cert.pem"
RSA_KEY="$OUT/rsa-key.pem"
# A throwaway RSA-2048 certificate for the RSA handshake rows (same names as
# the development ECDSA one).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RSA_KEY" -out "$RSA_CERT" -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -addext "basicConstraints=critical,CA:FALSE" >/dev/null 2>&1

# Flags circle-server gets everywhere: one connection thread and one script
# thread on its one core. The per-connection request rate is paced at 1,000
# a second by default (a public server's setting); the load generator's 64
# connections send hundreds of thousands a second from one machine, so the
# rate is switched off for the benchmark: the one default that would throttle
# its own load. Every other limit stays as shipped.
CIRCLE_FLAGS=(--port 0 --connection-threads 1 --script-threads 1 --max-requests-per-second 0)
# Raised only where a row needs it: the idle-connection rows hold 10,000
# connections from one address.
CIRCLE_HOLD_FLAGS=(--max-connections 30000)
if "$CIRCLE_SERVER" --help | grep -q -- '--max-connections-per-ip'; then
    CIRCLE_HOLD_FLAGS+=(--max-connections-per-ip 30000)
fi

SERVER_PID=""
SERVER_URL=""
SERVER_LOG=""
HELPER_PIDS=()

# start_server LOGNAME SCHEME COMMAND...: starts it on CPU 0 and waits (up
# to 20 s) for its "listening on SCHEME://..." line.
start_server() {
    local name=$1 scheme=$2
    shift 2
    SERVER_LOG="$OUT/$name"
    # Emptied here, not only by the redirection below: that one happens in
    # the child, and the wait loop must never read the previous run's address.
    : >"$SERVER_LOG.out"
    : >"$SERVER_LOG.err"
    taskset -c 0 "$@" >"$SERVER_LOG.out" 2>"$SERVER_LOG.err" &
    SERVER_PID=$!
    SERVER_URL=""
    local deadline=$((SECONDS + 20))
    while [[ $SECONDS -lt $deadline ]]; do
        SERVER_URL=$(grep -o -m1 "listening on $scheme://[^ ]*" "$SERVER_LOG.out" 2>/dev/null | sed 's/^listening on //' || true)
        [[ -n $SERVER_URL ]] && return 0
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "run.sh: $name exited at start:" >&2
            tail -5 "$SERVER_LOG.err" >&2
            SERVER_PID=""
            return 1
        fi
        sleep 0.1
    done
    echo "run.sh: $name did not print its address within 20 s" >&2
    stop_server
    return 1
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$SERVER_PID" 2>/dev/null && [[ $SECONDS -lt $deadline ]]; do sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

stop_helpers() {
    local pid
    for pid in "${HELPER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${HELPER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    HELPER_PIDS=()
}
trap 'stop_server; stop_helpers' EXIT

# gen SERVERNAME POINT CA MODE ARGS...: one run of the generator on CPU 1;
# its JSON line goes to the runs file, a short line to the terminal.
gen() {
    local server=$1 point=$2 ca=$3 mode=$4
    shift 4
    local line
    if ! line=$(taskset -c 1 "$GEN" "$mode" --url "$SERVER_URL" --ca "$ca" --server-pid "$SERVER_PID" \
        --server "$server" --point "$point" "$@"); then
        echo "   $server | $point: the generator failed" >&2
        return 0
    fi
    echo "$line" >>"$RUNS_FILE"
    echo "   $server | $point: $(echo "$line" | grep -o '"\(req_per_s\|conn_per_s\|rss_kb_per_conn\|errors\)":[^,}]*' | tr '\n' ' ')"
}

PLAY=(--method play --params '{"script":"40 + 2"}')
WHOAMI=(--method whoami --params none)

# rpc_points SERVERNAME SCHEME METHODS...: the request rows for one server.
rpc_points() {
    local server=$1 scheme=$2
    shift 2
    local method cw c w run
    for method in "$@"; do
        local args=("${PLAY[@]}")
        [[ $method == whoami ]] && args=("${WHOAMI[@]}")
        if [[ $scheme == wss ]]; then
            for cw in "1 1" "64 1" "64 16"; do
                read -r c w <<<"$cw"
                for ((run = 1; run <= RUNS; run++)); do
                    gen "$server" "wss $method C=$c W=$w" "$ECDSA_CERT" rpc -c "$c" -w "$w" \
                        --warmup "$WARMUP" -d "$DURATION" "${args[@]}"
                done
            done
        else
            for ((run = 1; run <= RUNS; run++)); do
                gen "$server" "ws $method C=64 W=16" "$ECDSA_CERT" rpc -c 64 -w 16 \
                    --warmup "$WARMUP" -d "$DURATION" "${args[@]}"
            done
        fi
    done
}

peer_cmd() { # NAME SCHEME CERT KEY -> the peer's command line
    local name=$1 scheme=$2 cert=$3 key=$4
    if [[ $scheme == wss ]]; then
        echo "$BIN/$name --cert $cert --key $key"
    else
        echo "$BIN/$name"
    fi
}

# A private redis-server on CPU 0 (with the server side); its arguments say
# what it keeps on disk. Sets REDIS_URL.
start_redis() {
    local name=$1
    shift
    local port=$((20000 + RANDOM % 20000))
    taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 "$@" >"$OUT/$name.log" 2>&1 &
    HELPER_PIDS+=($!)
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    REDIS_URL="redis://127.0.0.1:$port"
}

# Server and workers find each other's jobs by the circle's public key; any
# valid key does (this one is secp256k1's generator point).
KEY=0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798

START=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"

if wants rpc; then
    echo "== requests"
    for scheme in wss ws; do
        tls=()
        [[ $scheme == wss ]] && tls=(--tls --cert "$ECDSA_CERT" --key "$ECDSA_KEY")
        if start_server "circle-$scheme" "$scheme" "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" "${tls[@]}"; then
            rpc_points circle "$scheme" whoami play
            stop_server
        fi
        # The peers answer a fixed result whatever the method: play at every
        # point, and whoami where a target compares with echo-wss.
        # shellcheck disable=SC2046
        if start_server "echo-$scheme" "$scheme" $(peer_cmd echo-wss "$scheme" "$ECDSA_CERT" "$ECDSA_KEY"); then
            rpc_points echo-wss "$scheme" play
            if [[ $scheme == wss ]]; then
                for ((run = 1; run <= RUNS; run++)); do
                    gen echo-wss "wss whoami C=1 W=1" "$ECDSA_CERT" rpc -c 1 -w 1 --warmup "$WARMUP" -d "$DURATION" "${WHOAMI[@]}"
                done
                for ((run = 1; run <= RUNS; run++)); do
                    gen echo-wss "wss whoami C=64 W=16" "$ECDSA_CERT" rpc -c 64 -w 16 --warmup "$WARMUP" -d "$DURATION" "${WHOAMI[@]}"
                done
            fi
            stop_server
        fi
        # shellcheck disable=SC2046
        if start_server "jsonrpsee-$scheme" "$scheme" $(peer_cmd jsonrpsee-wss "$scheme" "$ECDSA_CERT" "$ECDSA_KEY"); then
            rpc_points jsonrpsee-wss "$scheme" play
            stop_server
        fi
    done
fi

if wants redis; then
    echo "== Redis executor"
    if [[ ! -x $CIRCLE_WORKER ]] || ! command -v redis-server >/dev/null; then
        echo "   skipped: needs $CIRCLE_WORKER and redis-server on PATH"
    else
        # Memory only: this row measures the hand-off, not the disk.
        start_redis redis --save '' --appendonly no
        if start_server circle-redis wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" --tls --cert "$ECDSA_CERT" \
            --key "$ECDSA_KEY" --redis-url "$REDIS_URL" --circle-public-key "$KEY"; then
            for n in 1 2; do
                taskset -c 0 "$CIRCLE_WORKER" --redis-url "$REDIS_URL" --circle-public-key "$KEY" \
                    --name "bench-$n" >"$OUT/worker-$n.log" 2>&1 &
                HELPER_PIDS+=($!)
            done
            for ((run = 1; run <= RUNS; run++)); do
                gen circle-redis "wss play C=64 W=16" "$ECDSA_CERT" rpc -c 64 -w 16 \
                    --warmup "$WARMUP" -d "$DURATION" "${PLAY[@]}"
            done
            stop_server
        else
            echo "   skipped: circle-server did not start with --redis-url (see $OUT/circle-redis.err)"
        fi
        stop_helpers
    fi
fi

if wants store; then
    # One store::set per play, signed in (the store is per caller): what a
    # durable write costs. Embedded: redb commits each play's writes with
    # Durability::Immediate (an fsync before the answer). Redis: the store
    # is one Lua script per play; the answer waits for Redis to accept it,
    # and what reaches the disk is Redis's own setting, measured both ways
    # (appendfsync everysec: up to a second lost on a crash; always: an
    # fsync per write, like the embedded store).
    echo "== store writes"
    STORE_PLAY=(--auth --method play --params '{"script":"store::set(\"n\", 1); 40 + 2"}' --expect-output 42)
    STORE_DATA="$OUT/store-data"
    rm -rf "$STORE_DATA"
    if start_server circle-store wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" --auth --data-dir "$STORE_DATA" \
        --tls --cert "$ECDSA_CERT" --key "$ECDSA_KEY"; then
        for ((run = 1; run <= RUNS; run++)); do
            gen circle-store "wss store::set C=64 W=16" "$ECDSA_CERT" rpc -c 64 -w 16 \
                --warmup "$WARMUP" -d "$DURATION" "${STORE_PLAY[@]}"
        done
        stop_server
    fi
    if [[ ! -x $CIRCLE_WORKER ]] || ! command -v redis-server >/dev/null; then
        echo "   Redis rows skipped: needs $CIRCLE_WORKER and redis-server on PATH"
    else
        for fsync in everysec always; do
            mkdir -p "$OUT/redis-$fsync"
            start_redis "redis-$fsync" --dir "$OUT/redis-$fsync" --save '' --appendonly yes --appendfsync "$fsync"
            if start_server "circle-redis-store-$fsync" wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" --auth \
                --tls --cert "$ECDSA_CERT" --key "$ECDSA_KEY" --redis-url "$REDIS_URL" --circle-public-key "$KEY"; then
                for n in 1 2; do
                    taskset -c 0 "$CIRCLE_WORKER" --redis-url "$REDIS_URL" --circle-public-key "$KEY" \
                        --name "bench-store-$n" >"$OUT/worker-store-$fsync-$n.log" 2>&1 &
                    HELPER_PIDS+=($!)
                done
                for ((run = 1; run <= RUNS; run++)); do
                    gen "circle-redis-store-$fsync" "wss store::set C=64 W=16" "$ECDSA_CERT" rpc -c 64 -w 16 \
                        --warmup "$WARMUP" -d "$DURATION" "${STORE_PLAY[@]}"
                done
                stop_server
            fi
            stop_helpers
        done
    fi
fi

if wants handshake; then
    echo "== handshakes"
    for kind in ecdsa rsa; do
        cert=$ECDSA_CERT key=$ECDSA_KEY
        [[ $kind == rsa ]] && cert=$RSA_CERT key=$RSA_KEY
        for server in circle echo-wss jsonrpsee-wss; do
            if [[ $server == circle ]]; then
                start_server "circle-hs-$kind" wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" --tls --cert "$cert" --key "$key" || continue
            else
                # shellcheck disable=SC2046
                start_server "$server-hs-$kind" wss $(peer_cmd "$server" wss "$cert" "$key") || continue
            fi
            for resume in full resumed; do
                extra=()
                [[ $resume == resumed ]] && extra=(--resume)
                for ((run = 1; run <= RUNS; run++)); do
                    gen "$server" "handshake $kind $resume" "$cert" handshake -c 4 \
                        --warmup "$WARMUP" -d "$DURATION" "${WHOAMI[@]}" "${extra[@]}"
                done
            done
            # The same with a `play` as the one request: for circle-server
            # that adds the hop to a script thread (the peers answer `play`
            # like `whoami`, so their row above stands for both).
            if [[ $server == circle && $kind == ecdsa ]]; then
                for ((run = 1; run <= RUNS; run++)); do
                    gen circle "handshake $kind full play" "$cert" handshake -c 4 \
                        --warmup "$WARMUP" -d "$DURATION" "${PLAY[@]}"
                done
            fi
            stop_server
            # Resumption across a circle's servers: two circle-servers with
            # one ticket-key file, connections taking turns between them with
            # one client ticket cache, so every other connection offers the
            # other server's ticket. CPU per connection is both servers'.
            if [[ $server == circle && $kind == ecdsa ]]; then
                ticket_keys="$OUT/ticket-keys"
                openssl rand 48 >"$ticket_keys"
                if start_server "circle-pair-a" wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" --tls --cert "$cert" --key "$key" \
                    --tls-ticket-key-file "$ticket_keys"; then
                    pair_pid=$SERVER_PID pair_url=$SERVER_URL
                    if start_server "circle-pair-b" wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" --tls --cert "$cert" --key "$key" \
                        --tls-ticket-key-file "$ticket_keys"; then
                        for ((run = 1; run <= RUNS; run++)); do
                            gen circle "handshake $kind resumed 2 servers" "$cert" handshake -c 4 --resume \
                                --also-url "$pair_url" --also-server-pid "$pair_pid" \
                                --warmup "$WARMUP" -d "$DURATION" "${WHOAMI[@]}"
                        done
                        stop_server
                    fi
                    SERVER_PID=$pair_pid
                    stop_server
                fi
            fi
            # Sign-ins per second: a new connection, fetch_nonce, authenticate
            # (the server recovers the signer's key), whoami, close. Only
            # circle-server has sign-in; the generator signs with k256 on its
            # own core, so compare the server's CPU per sign-in.
            if [[ $server == circle && $kind == ecdsa ]]; then
                start_server "circle-signin" wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" --auth --tls --cert "$cert" --key "$key" || continue
                for ((run = 1; run <= RUNS; run++)); do
                    gen circle "sign-in $kind full" "$cert" handshake -c 4 --auth \
                        --warmup "$WARMUP" -d "$DURATION" "${WHOAMI[@]}"
                done
                stop_server
            fi
        done
    done
fi

if wants hold; then
    echo "== idle connections ($HOLD_N)"
    for server in circle circle-auth echo-wss jsonrpsee-wss; do
        for ((run = 1; run <= RUNS; run++)); do
            auth=()
            point="hold $HOLD_N idle"
            case $server in
                circle)
                    start_server "circle-hold" wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" "${CIRCLE_HOLD_FLAGS[@]}" \
                        --tls --cert "$ECDSA_CERT" --key "$ECDSA_KEY" || continue ;;
                circle-auth)
                    start_server "circle-hold-auth" wss "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" "${CIRCLE_HOLD_FLAGS[@]}" \
                        --auth --tls --cert "$ECDSA_CERT" --key "$ECDSA_KEY" || continue
                    auth=(--auth)
                    point="hold $HOLD_N idle auth" ;;
                *)
                    # shellcheck disable=SC2046
                    start_server "$server-hold" wss $(peer_cmd "$server" wss "$ECDSA_CERT" "$ECDSA_KEY") || continue ;;
            esac
            name=${server%-auth}
            gen "$name" "$point" "$ECDSA_CERT" hold -n "$HOLD_N" "${auth[@]}" "${WHOAMI[@]}"
            stop_server
        done
    done
fi

if wants capacity; then
    # More idle signed-in connections than the server's open-file limit, from
    # two generator processes (each has the same limit). The server should
    # hold about as many as its limit allows, refuse the rest with a log
    # line, and stay alive. Run twice: with circle-server's default
    # --max-connections, and with it set above the open-file limit (so the
    # limit that bites is the descriptors themselves).
    if [[ $QUICK == 1 ]]; then SERVER_NOFILE=1200; PER_CLIENT=700; else SERVER_NOFILE=$NOFILE; PER_CLIENT=$((NOFILE / 2 + 300)); fi
    PER_IP=()
    "$CIRCLE_SERVER" --help | grep -q -- '--max-connections-per-ip' && PER_IP=(--max-connections-per-ip 100000)
    for variant in defaults above-fd-limit; do
        extra=()
        [[ $variant == above-fd-limit ]] && extra=(--max-connections 100000)
        echo "== capacity ($variant): server open-file limit $SERVER_NOFILE, $((2 * PER_CLIENT)) connections"
        start_server "circle-capacity-$variant" wss bash -c 'ulimit -n "$0" && exec "$@"' "$SERVER_NOFILE" \
            "$CIRCLE_SERVER" "${CIRCLE_FLAGS[@]}" "${PER_IP[@]}" "${extra[@]}" \
            --auth --tls --cert "$ECDSA_CERT" --key "$ECDSA_KEY" || continue
        parts=()
        for part in 0 1; do
            taskset -c 1 "$GEN" hold --url "$SERVER_URL" --ca "$ECDSA_CERT" --server-pid "$SERVER_PID" \
                --server circle --point capacity-part -n "$PER_CLIENT" --auth --settle 3 --hold 30 \
                --source-offset $((part * 40)) "${WHOAMI[@]}" >"$OUT/capacity-$variant-$part.json" &
            parts+=($!)
        done
        for pid in "${parts[@]}"; do wait "$pid" || true; done
        alive=false
        kill -0 "$SERVER_PID" 2>/dev/null && alive=true
        python3 - "$OUT/capacity-$variant-0.json" "$OUT/capacity-$variant-1.json" "$SERVER_NOFILE" "$alive" \
            "$(grep -ci 'refused\|too many open files' "$SERVER_LOG.err" || true)" "capacity $variant" \
            >>"$RUNS_FILE" <<'PY'
import json, sys
parts = []
for path in sys.argv[1:3]:
    try:
        parts.append(json.loads(open(path).read().strip().splitlines()[-1]))
    except Exception:
        parts.append({})
kinds = {}
for p in parts:
    for k, v in (p.get("error_kinds") or {}).items():
        kinds[k] = kinds.get(k, 0) + v
print(json.dumps({
    "server": "circle", "point": sys.argv[6], "mode": "capacity",
    "nofile": int(sys.argv[3]),
    "attempted": sum(p.get("connections", 0) for p in parts),
    # Held at once, as the server's descriptor count says (each part reads
    # it after opening all of its connections, while the other part still
    # holds its own: --hold outlasts the difference in opening times).
    "held": max((p.get("server_fds_after") or 0) for p in parts)
            - min((p.get("server_fds_before") or 0) for p in parts),
    "opened_by_clients": sum(p.get("opened", 0) for p in parts),
    "refused": sum(p.get("refused", 0) for p in parts),
    "dropped_while_idle": sum(p.get("dropped_while_idle", 0) for p in parts),
    "error_kinds": kinds,
    "server_alive": sys.argv[4] == "true",
    "refusal_log_lines": int(sys.argv[5] or 0),
}))
PY
        echo "   $(tail -1 "$RUNS_FILE")"
        stop_server
    done
fi

HOW="Mode: $([[ $QUICK == 1 ]] && echo "quick (1 run × 2 s per point: a smoke test, not a measurement)" || echo "full ($RUNS runs × $DURATION s per point after $WARMUP s of warm-up; medians)"); \
circle-server at commit $(cd "$PRODUCT_ROOT" && git rev-parse --short HEAD)$(cd "$PRODUCT_ROOT" && git diff --quiet HEAD -- src || echo " plus uncommitted changes"); \
load average at the start: $LOAD_START; took $((SECONDS - START)) s; raw runs in ${OUT#"$ROOT"/}/runs.jsonl."
APPEND=()
[[ -f $BENCH/PROFILE.md ]] && APPEND+=(--append "$BENCH/PROFILE.md")
if [[ $QUICK == 1 ]]; then
    REPORT="$OUT/RESULTS.md"
elif [[ $ONLY != "$ALL_GROUPS" ]]; then
    # A part of the matrix: kept beside the full run, never in its place.
    PART=${ONLY//,/-}
    APPEND=()
    mkdir -p "$BENCH/results"
    REPORT="$BENCH/results/$PART.md"
    cp "$RUNS_FILE" "$BENCH/results/$PART.jsonl"
    HOW="${HOW/raw runs in ${OUT#"$ROOT"/}\/runs.jsonl/raw runs in bench/results/$PART.jsonl}"
else
    REPORT="$BENCH/RESULTS.md"
    # The raw lines of the run RESULTS.md quotes are kept with it.
    mkdir -p "$BENCH/results"
    cp "$RUNS_FILE" "$BENCH/results/runs.jsonl"
    HOW="${HOW/raw runs in ${OUT#"$ROOT"/}\/runs.jsonl/raw runs in bench/results/runs.jsonl}"
fi
"$GEN" report --runs "$RUNS_FILE" --out "$REPORT" --how "$HOW" "${APPEND[@]}"
echo "== wrote $REPORT ($((SECONDS - START)) s)"
