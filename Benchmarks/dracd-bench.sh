#!/usr/bin/env bash
# Benchmarks rpc.dracd's durable adds against the floor (one Berkeley DB put + sync per add,
# what DRAC 1.12 pays), on the same disk, in the same run. It also measures the RPC round trip
# alone (NULL calls, one client), what the transport costs on this machine.
#
#   bash Benchmarks/dracd-bench.sh
#
# Environment: SCRATCH (swift build scratch path, default .build), BENCH_SECONDS (seconds per
# load run, default 5), BENCH_PORT (loopback port for rpc.dracd, default 39101),
# BENCH_FLOOR_COUNT (floor put+sync pairs, default 2000).
#
# Exit status: 0 when every run completed without failed adds, even if a goal is missed (this is
# a benchmark, not a test); non-zero if the build fails, rpc.dracd does not start or dies, or
# any run has failures.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
SCRATCH=${SCRATCH:-.build}
RUN_SECONDS=${BENCH_SECONDS:-5}
PORT=${BENCH_PORT:-39101}
FLOOR_COUNT=${BENCH_FLOOR_COUNT:-2000}
TRANSPORTS=(udp tcp)
CLIENT_COUNTS=(1 8 32)

echo "== building (release, scratch path $SCRATCH)"
swift build -c release --scratch-path "$SCRATCH" --product rpc.dracd
swift build -c release --scratch-path "$SCRATCH" --product drac-bench
BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
DRACD="$BIN/rpc.dracd"
BENCH="$BIN/drac-bench"

mkdir -p "$ROOT/.bench-tmp"
TMP=$(mktemp -d "$ROOT/.bench-tmp/run.XXXXXX")
DRACD_PID=""

stop_dracd() {
    if [[ -n "$DRACD_PID" ]] && kill -0 "$DRACD_PID" 2>/dev/null; then
        kill -TERM "$DRACD_PID" 2>/dev/null || true
        for _ in $(seq 1 200); do
            kill -0 "$DRACD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DRACD_PID" 2>/dev/null; then
            echo "rpc.dracd (pid $DRACD_PID) did not stop within 20 s of SIGTERM; sending SIGKILL" >&2
            kill -KILL "$DRACD_PID" 2>/dev/null || true
        fi
        wait "$DRACD_PID" 2>/dev/null || true
    fi
    DRACD_PID=""
}

cleanup() {
    stop_dracd
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== temp dir $TMP"
df -T "$TMP"

echo "== floor: $FLOOR_COUNT Berkeley DB put + sync pairs"
FLOOR_LINE=$("$BENCH" floor --db "$TMP/floor.db" --count "$FLOOR_COUNT")
echo "$FLOOR_LINE"
field() { # field KEY LINE -> the value of KEY=value, without a /s or ms unit
    sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2" | sed 's,/s$,,; s,ms$,,'
}
FLOOR_RATE=$(field rate "$FLOOR_LINE")
FLOOR_P50=$(field p50 "$FLOOR_LINE")
FLOOR_P99=$(field p99 "$FLOOR_LINE")

echo "== starting rpc.dracd on 127.0.0.1:$PORT"
"$DRACD" -f -o rpcbind=no -o listen=127.0.0.1 -o rpc_port="$PORT" -o pid_file= \
    -o max_connections=1000 -a /nonexistent.allow "$TMP/dracd.db" 2>"$TMP/dracd.log" &
DRACD_PID=$!
for _ in $(seq 1 300); do
    grep -q "ready on port" "$TMP/dracd.log" && break
    kill -0 "$DRACD_PID" 2>/dev/null || break
    sleep 0.1
done
if ! kill -0 "$DRACD_PID" 2>/dev/null || ! grep -q "ready on port" "$TMP/dracd.log"; then
    echo "rpc.dracd failed to start; its stderr:" >&2
    tail -n 20 "$TMP/dracd.log" >&2
    exit 1
fi
grep "ready on port" "$TMP/dracd.log"

LINES=()
FAILED=0
BASE=0
TOTAL_ADDS=0
for transport in "${TRANSPORTS[@]}"; do
    for clients in "${CLIENT_COUNTS[@]}"; do
        echo "== load: $transport, $clients clients, $RUN_SECONDS s"
        # Each run uses its own client octets, so every add in the run is a new address.
        rc=0
        line=$("$BENCH" load --port "$PORT" --transport "$transport" --clients "$clients" \
            --seconds "$RUN_SECONDS" --client-base "$BASE") || rc=$?
        BASE=$((BASE + clients))
        echo "$line"
        if [[ -z "$line" ]]; then
            line="$transport clients=$clients adds=0 failures=1 rate=0/s p50=nan p99=nan"
        fi
        failures=$(field failures "$line")
        if [[ $rc -ne 0 || "${failures:-1}" != 0 ]]; then
            echo "run $transport/$clients had failures (exit $rc)" >&2
            FAILED=1
        fi
        TOTAL_ADDS=$((TOTAL_ADDS + $(field adds "$line")))
        LINES+=("$line")
        if ! kill -0 "$DRACD_PID" 2>/dev/null; then
            echo "rpc.dracd died during the run; its stderr:" >&2
            tail -n 20 "$TMP/dracd.log" >&2
            exit 1
        fi
    done
done

# The RPC round trip alone (NULL calls: no map, no disk), one client at a time: what the
# transport costs on this machine, beside the adds (with one client nothing can be batched, so
# each add waits for a put + sync and a round trip).
NULL_LINES=()
for transport in "${TRANSPORTS[@]}"; do
    echo "== round trip: $transport, 1 client, NULL calls, 3 s"
    line=$("$BENCH" load --port "$PORT" --transport "$transport" --clients 1 --seconds 3 --procedure null) || FAILED=1
    echo "$line"
    NULL_LINES+=("$line")
done

stop_dracd

# The disk's sync cost drifts (virtual disks especially): measure the floor again after the
# load runs and compare against the mean of both measurements.
echo "== floor again: $FLOOR_COUNT Berkeley DB put + sync pairs"
FLOOR_LINE2=$("$BENCH" floor --db "$TMP/floor.db" --count "$FLOOR_COUNT")
echo "$FLOOR_LINE2"
FLOOR_RATE1=$FLOOR_RATE
FLOOR_RATE2=$(field rate "$FLOOR_LINE2")
FLOOR_RATE=$(awk -v a="$FLOOR_RATE1" -v b="$FLOOR_RATE2" 'BEGIN { printf "%.1f", (a + b) / 2 }')

LOGGED=$(grep -c " add .* expires " "$TMP/dracd.log" || true)
ERRORS=$(grep -Eci "error|failed" "$TMP/dracd.log" || true)

echo
echo "== results (floor: $FLOOR_COUNT put+sync pairs; load: $RUN_SECONDS s per run, one add at a time per client)"
printf '%-9s %7s %10s %9s %9s %8s  %s\n' transport clients "adds/s" "p50 ms" "p99 ms" "x floor" goal
printf '%-9s %7s %10s %9s %9s %8s  %s\n' floor 1 "$FLOOR_RATE" "$FLOOR_P50" "$FLOOR_P99" "1.00x" "(mean of $FLOOR_RATE1/s before and $FLOOR_RATE2/s after the load runs)"
for line in "${LINES[@]}"; do
    transport=${line%% *}
    clients=$(field clients "$line")
    rate=$(field rate "$line")
    p50=$(field p50 "$line")
    p99=$(field p99 "$line")
    ratio=$(awk -v r="$rate" -v f="$FLOOR_RATE" 'BEGIN { if (f > 0) printf "%.2f", r / f; else print "nan" }')
    goal=""
    case $clients in
        1) need=1.0 ;;
        8) need=3 ;;
        *) need="" ;;
    esac
    if [[ -n "$need" ]]; then
        verdict=$(awk -v x="$ratio" -v n="$need" 'BEGIN { print (x + 0 >= n + 0) ? "PASS" : "MISS" }')
        goal=">= ${need}x floor  $verdict"
    fi
    row=$(printf '%-9s %7s %10s %9s %9s %8s  %s' "$transport" "$clients" "$rate" "$p50" "$p99" "${ratio}x" "$goal")
    echo "${row%"${row##*[![:space:]]}"}"
done
echo
echo "goals: 1 client >= 1.0x floor adds/s, 8 clients >= 3x floor adds/s (each transport)"
echo
for nl in "${NULL_LINES[@]}"; do
    printf '%-4s RPC round trip alone (NULL calls, 1 client): %s/s, p50 %s ms, p99 %s ms\n' \
        "${nl%%-null*}" "$(field rate "$nl")" "$(field p50 "$nl")" "$(field p99 "$nl")"
done
grep -o "committed .*" "$TMP/dracd.log" | sed 's/^/rpc.dracd group commit: /' || true
echo "rpc.dracd logged $LOGGED successful adds (clients counted $TOTAL_ADDS; UDP retransmits may add more), $ERRORS error lines"

echo
echo "== lock holds with a big map (goal: no lock hold over 50 ms with 100,000 entries)"
SWEEP=$("$BENCH" sweep --db "$TMP/sweep.db" --entries 100000) || FAILED=1
echo "$SWEEP"
HOLD=$(echo "$SWEEP" | sed -n 's/.*longest_lock_hold=\([0-9.]*\)ms.*/\1/p')
BATCH=$(echo "$SWEEP" | sed -n 's/.*lock_hold=\([0-9.]*\)ms.*/\1/p' | tail -1)
for pair in "sweep-chunk:$HOLD" "4096-add-batch:$BATCH"; do
    name=${pair%%:*}; ms=${pair#*:}
    verdict=$(awk -v x="$ms" 'BEGIN { print (x + 0 <= 50) ? "PASS" : "MISS" }')
    echo "$name longest lock hold ${ms} ms  <= 50 ms  $verdict"
done

if [[ $FAILED -ne 0 ]]; then
    echo "some runs had failed adds" >&2
    exit 1
fi
exit 0
