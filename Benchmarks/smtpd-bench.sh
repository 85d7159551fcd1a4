#!/usr/bin/env bash
# Benchmarks drac-smtpd against a plain TCP forwarder, in the same run, on loopback:
#
#   smtp-source -> drac-smtpd -> smtp-sink      (our gateway: full SMTP, relay check by DRAC map)
#   smtp-source -> haproxy (mode tcp) -> smtp-sink   (the peer: bytes forwarded, no SMTP at all)
#
# 10 KB messages, 10 and 100 parallel sessions, one message per connection (smtp-source's
# default) and, as a second figure, many messages per connection (-d). Goal: >= 0.8x haproxy.
# Then memory: resident-set growth per idle connection with 1,000 connections open (goal
# <= 64 KiB each).
#
#   bash Benchmarks/smtpd-bench.sh
#
# Environment: SCRATCH (swift build scratch path, default .build), BENCH_MESSAGES (messages
# per run, default 3000), BENCH_IDLE (idle connections, default 1000).
# Exit status: non-zero only if something fails to start or a run loses messages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
SCRATCH=${SCRATCH:-.build}
MESSAGES=${BENCH_MESSAGES:-3000}
IDLE=${BENCH_IDLE:-1000}
export PATH="/opt/swift/usr/bin:$PATH"

command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
command -v smtp-source >/dev/null || scripts/install-deps

echo "== building (release, scratch path $SCRATCH)"
for p in drac-smtpd rpc.dracd dracctl drac-bench; do swift build -c release --scratch-path "$SCRATCH" --product $p >/dev/null; done
BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)

mkdir -p "$ROOT/.bench-tmp"
TMP=$(mktemp -d "$ROOT/.bench-tmp/smtpd.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; return 1; }

SINK=$(free_port); GW=$(free_port); HAP=$(free_port)
# Many open files for 1,000+ connections on each side.
ulimit -n 20000

smtp-sink -u nobody -c 127.0.0.1:$SINK 5000 > "$TMP/sink.log" 2>&1 &
PIDS+=($!)
wait_port $SINK

# The map: rpc.dracd creates it; 127.0.0.1 gets an entry so every RCPT is a DRAC lookup.
"$BIN/rpc.dracd" -f -o rpcbind=no -o listen=127.0.0.1 -o pid_file= -a "$TMP/none.allow" "$TMP/dracd.db" > "$TMP/dracd.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do grep -q "ready on" "$TMP/dracd.log" && break; sleep 0.05; done
kill $DPID; wait $DPID || true
"$BIN/dracctl" add 127.0.0.1 --ttl 1d --db "$TMP/dracd.db" >/dev/null

cat > "$TMP/drac.conf" <<CONF
map_file = $TMP/dracd.db
smtpd_listen = smtp:127.0.0.1:$GW
smtpd_backend = 127.0.0.1:$SINK
smtpd_hostname = bench.example.org
smtpd_sasl_mechanisms =
smtpd_max_connections = 5000
smtpd_max_connections_per_client = 5000
CONF
"$BIN/drac-smtpd" -c "$TMP/drac.conf" > "$TMP/smtpd.log" 2>&1 &
GWPID=$!
PIDS+=($GWPID)
wait_port $GW

cat > "$TMP/haproxy.cfg" <<CFG
global
    maxconn 5000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend smtp
    bind 127.0.0.1:$HAP
    maxconn 5000
    default_backend sink
backend sink
    server s1 127.0.0.1:$SINK maxconn 5000
CFG
haproxy -db -f "$TMP/haproxy.cfg" > "$TMP/haproxy.log" 2>&1 &
PIDS+=($!)
wait_port $HAP

# One run: prints messages/s.
run() {   # port sessions extra-flags
    local start end
    start=$(date +%s.%N)
    smtp-source -s "$2" -m "$MESSAGES" -l 10240 $3 -f bench@example.org -t rcpt@remote.example 127.0.0.1:$1 \
        > "$TMP/source.log" 2>&1 || { echo "smtp-source failed on port $1:"; cat "$TMP/source.log"; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'{$MESSAGES/($end-$start):.0f}')"
}

echo "== one DRAC map lookup (what each RCPT from an unauthenticated client costs)"
"$BIN/drac-bench" lookup --db "$TMP/lookup.db" --entries 10000 --count 20000 --reader open
"$BIN/drac-bench" lookup --db "$TMP/lookup.db" --entries 10000 --count 20000 --reader watched

echo "== throughput: $MESSAGES messages of 10 KB each (smtp-source -> X -> smtp-sink)"
printf "%-28s %12s %12s %8s %6s\n" "run" "drac-smtpd/s" "haproxy/s" "ratio" "goal"
for mode in "" "-d"; do
    for s in 10 100; do
        # Warm-up, then alternate so both see the same machine state.
        run $GW $s "$mode" >/dev/null; run $HAP $s "$mode" >/dev/null
        g=$(run $GW $s "$mode"); h=$(run $HAP $s "$mode")
        g2=$(run $GW $s "$mode"); h2=$(run $HAP $s "$mode")
        gm=$(( (g + g2) / 2 )); hm=$(( (h + h2) / 2 ))
        ratio=$(python3 -c "print(f'{$gm/$hm:.2f}')")
        label="$s sessions$([ -n "$mode" ] && echo ", -d (reuse)" || echo ", 1 msg/conn")"
        printf "%-28s %12s %12s %7sx %6s\n" "$label" "$gm" "$hm" "$ratio" ">=0.8"
    done
done



echo "== memory: $IDLE idle connections"
rss() { awk '/VmRSS/ {print $2}' /proc/$GWPID/status; }
before=$(rss)
python3 - "$GW" "$IDLE" > "$TMP/idle.log" 2>&1 <<'PY' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(n):
    s = socket.socket()
    s.bind((f"127.0.{1 + i // 200}.{2 + i % 200}", 0))
    s.connect(("127.0.0.1", port))
    socks.append(s)
for s in socks:
    s.recv(512)          # the greeting: the session is set up
print("open", len(socks), flush=True)
time.sleep(30)
PY
IDLEPID=$!
PIDS+=($IDLEPID)
for _ in $(seq 600); do grep -q "^open" "$TMP/idle.log" && break; sleep 0.05; done
grep -q "^open" "$TMP/idle.log" || { echo "idle clients failed:"; cat "$TMP/idle.log"; exit 1; }
sleep 1
after=$(rss)
kill $IDLEPID 2>/dev/null || true
python3 -c "b=$before; a=$after; n=$IDLE; print(f'RSS before {b} KiB, with {n} idle connections {a} KiB: {(a-b)/n:.1f} KiB per connection (goal <= 64)')"
echo "logs in $TMP"
