#!/usr/bin/env bash
# Benchmarks drac-pop3d against Dovecot's POP3 server, in the same run, on loopback, with the
# same users and the same Maildir:
#
#   - logins per second at 1 and 8 concurrent clients (connect, greeting, USER, PASS, QUIT;
#     each client logs in as its own user, since a maildrop takes one session at a time), with
#     p50/p99 latency per login (connect to the +OK of QUIT);
#   - RETR throughput over a maildrop of 1,000 messages of ~10 KB (RETR 1..1000, 16 commands
#     pipelined per write, both servers announce PIPELINING; every message de-stuffed and its
#     octet count checked against LIST; QUIT without deleting);
#   - the same RETR with a cold page cache: `sync; echo 3 > /proc/sys/vm/drop_caches` right
#     before each run (after the Maildir copy), one session per run (a second one would find
#     the messages cached). This is drac-pop3d's disk path: messages not in memory are read on
#     its thread pool, cached ones are sent from the event loop;
#   - logins per second at 8 clients with DRAC on: a second drac-pop3d instance with
#     pop3d_use_drac = yes sends every login to a real rpc.dracd (rpcbind not used, loopback
#     port, its own map under $WORK; it acknowledges an add only after syncing the map), and
#     each login comes from a different loopback source address (pop3load --sources: a fresh
#     127.N.0.0/16 per run, each connection bound to the next address of it, so no address
#     repeats and every login is a real add; drac-pop3d sends an address added in the last 60 s
#     only once). Dovecot, which does no DRAC, runs the same clients with the same --sources.
#     After each run of the DRAC-on instance the script waits (up to 60 s) until the notifier
#     has answered every add, so its backlog does not spill into the next run. Reported beside
#     the figure, as information (not a pass/fail): the DRAC-on logins and distinct source
#     addresses, the addresses the map holds afterwards (dracctl list --json), drac-pop3d's
#     drac add outcomes (ok / refused / failed / dropped because its queue was full) and
#     rpc.dracd's adds per sync.
#
# Goal: drac-pop3d >= 1.0x Dovecot on each figure.
#
#   bash Benchmarks/pop3d-bench.sh                               # both servers (run as root)
#   POP3D_BENCH_ONLY=dovecot bash Benchmarks/pop3d-bench.sh      # Dovecot alone (no build)
#   POP3D_BENCH_ONLY=drac-pop3d bash Benchmarks/pop3d-bench.sh   # drac-pop3d alone
#
# Dovecot (Debian's dovecot-pop3d, installed here if missing; its packaged service is kept from
# starting and disabled) runs as our own instance: `dovecot -F -c $WORK/dovecot.conf`, base_dir
# and logs under $WORK, on a free 127.0.0.1 port, in the documented high-performance mode (see
# the comments in the configuration below). drac-pop3d, rpc.dracd and dracctl run from
# `swift build -c release --product ...` (with POP3D_BIN, rpc.dracd and dracctl are taken from
# its directory when they are there, otherwise built). Every server listens on 127.0.0.1 only,
# and pop3load talks to loopback addresses only.
#
# Users: bench1..bench9@bench.test, password benchpass (Dovecot: passwd-file; drac-pop3d:
# sasldb). bench1 is the RETR maildrop (1,000 messages); bench2..bench9 have 10 messages each and
# are the login users (the login clients must not share a maildrop, and bench1's 1,000 messages
# would make the 1-client login figure a big-maildrop figure). The Maildir is generated once as a
# pristine copy and copied back before every run, so each run of each server starts from
# identical files (no Dovecot indexes, nothing moved to cur/, no lock files).
#
# Order: a warm-up for each server (logins and one RETR session; the DRAC-on figure starts with
# a 2 s run of each server of its own), then for each figure the servers take turns
# (drac-pop3d, Dovecot, drac-pop3d, Dovecot, ...) for BENCH_ROUNDS rounds;
# the table shows the median run of each server (its p50/p99 come from that run). Each run
# prints the CPU share of the server (its whole process tree) and of pop3load itself, so a load
# generator that became the bottleneck would show; DRAC-on runs also print rpc.dracd's.
#
# Environment: SCRATCH (swift build scratch path, default .build), POP3D_BENCH_ONLY (dovecot or
# drac-pop3d: measure one server only, no ratios), POP3D_BIN (a drac-pop3d executable to use
# instead of building one), BENCH_LOGIN_SECONDS (seconds per login run, default 5),
# BENCH_ROUNDS (alternated runs per server and figure, default 3), BENCH_RETR_MESSAGES
# (messages in the RETR maildrop, default 1000), BENCH_RETR_SESSIONS (RETR sessions per run,
# the run reports their median, default 3), BENCH_RETR_BATCH (RETR commands per write, default
# 16; 1 = no pipelining). The cold-cache RETR runs have one session each; the DRAC-on runs
# have BENCH_LOGIN_SECONDS each. Defaults take about 3 minutes after the build.
#
# Exit status: 0 when every run completed, even if a goal is missed or DRAC adds were lost
# (this is a benchmark, not a test); non-zero if an install or build fails, a server (or
# rpc.dracd) does not start or dies, the page cache cannot be dropped, or any run saw an error
# reply, a size mismatch or a dropped connection.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
SCRATCH=${SCRATCH:-.build}
ONLY=${POP3D_BENCH_ONLY:-}
LOGIN_SECONDS=${BENCH_LOGIN_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
RETR_MESSAGES=${BENCH_RETR_MESSAGES:-1000}
RETR_SESSIONS=${BENCH_RETR_SESSIONS:-3}
RETR_BATCH=${BENCH_RETR_BATCH:-16}
CLIENT_COUNTS=(1 8)
DOMAIN=bench.test
PASSWORD=benchpass
export PATH="/opt/swift/usr/bin:$PATH"

case $ONLY in
    "") SERVERS=(drac-pop3d dovecot) ;;
    dovecot) SERVERS=(dovecot) ;;
    drac-pop3d) SERVERS=(drac-pop3d) ;;
    *) echo "POP3D_BENCH_ONLY must be dovecot or drac-pop3d (or unset for both), got '$ONLY'" >&2; exit 2 ;;
esac
has() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }
[[ $(id -u) == 0 ]] || { echo "run as root: it installs packages and starts Dovecot" >&2; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $ROUNDS -le 200 ]] || { echo "BENCH_ROUNDS must be 1 to 200, got '$ROUNDS'" >&2; exit 2; }
# The cold-cache RETR figure drops the page cache (a container may forbid it).
[[ -w /proc/sys/vm/drop_caches ]] || { echo "cannot write /proc/sys/vm/drop_caches (needed for the cold-cache RETR figure)" >&2; exit 1; }

# ---- packages -------------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
PKGS=(python3)
has dovecot && PKGS+=(dovecot-pop3d)
has drac-pop3d && PKGS+=(sasl2-bin libsasl2-modules-db)
MISSING=()
for p in "${PKGS[@]}"; do installed "$p" || MISSING+=("$p"); done
MADE_POLICY=""
if [[ ${#MISSING[@]} -gt 0 ]]; then
    echo "== installing ${MISSING[*]}"
    # Debian starts a packaged daemon on install: policy-rc.d (exit 101) forbids that, then the
    # dovecot service is disabled, so the only Dovecot running is the one this script starts.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        MADE_POLICY=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
    if [[ -n $MADE_POLICY ]]; then rm -f /usr/sbin/policy-rc.d; MADE_POLICY=""; fi
    if [[ " ${MISSING[*]} " == *" dovecot-pop3d "* ]]; then
        if [[ -d /run/systemd/system ]]; then
            systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
        else
            update-rc.d dovecot disable >/dev/null 2>&1 || true
        fi
    fi
fi

# The account every maildrop belongs to (both servers serve as it).
getent group vmail >/dev/null || groupadd --system vmail
getent passwd vmail >/dev/null || useradd --system -g vmail --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vmail
VUID=$(id -u vmail)
VGID=$(getent group vmail | cut -d: -f3)

# ---- build ----------------------------------------------------------------------------------
if has drac-pop3d && [[ -n ${POP3D_BIN:-} ]]; then
    POP3D=$POP3D_BIN
    [[ -x $POP3D ]] || { echo "POP3D_BIN=$POP3D is not an executable" >&2; exit 1; }
elif has drac-pop3d; then
    if ! grep -q '"drac-pop3d"' Package.swift; then
        echo "drac-pop3d is not a product of this package yet; to measure Dovecot alone run:" >&2
        echo "    POP3D_BENCH_ONLY=dovecot bash Benchmarks/pop3d-bench.sh" >&2
        exit 1
    fi
    echo "== building drac-pop3d (release, scratch path $SCRATCH)"
    if ! BUILD_OUT=$(swift build -c release --scratch-path "$SCRATCH" --product drac-pop3d 2>&1); then
        tail -n 30 <<<"$BUILD_OUT" >&2
        echo "drac-pop3d did not build; to measure Dovecot alone run: POP3D_BENCH_ONLY=dovecot bash Benchmarks/pop3d-bench.sh" >&2
        exit 1
    fi
    BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
    POP3D="$BIN/drac-pop3d"
    [[ -x $POP3D ]] || { echo "no $POP3D after the build" >&2; exit 1; }
fi
if has drac-pop3d; then
    # rpc.dracd and dracctl for the DRAC-on figure: beside POP3D_BIN if there, else built.
    PDIR=$(dirname "$POP3D")
    if [[ -x $PDIR/rpc.dracd && -x $PDIR/dracctl && -n ${POP3D_BIN:-} ]]; then
        RPCD="$PDIR/rpc.dracd"; DRACCTL="$PDIR/dracctl"
    else
        for product in rpc.dracd dracctl; do
            echo "== building $product (release, scratch path $SCRATCH)"
            if ! BUILD_OUT=$(swift build -c release --scratch-path "$SCRATCH" --product "$product" 2>&1); then
                tail -n 30 <<<"$BUILD_OUT" >&2
                echo "$product did not build; to measure Dovecot alone run: POP3D_BENCH_ONLY=dovecot bash Benchmarks/pop3d-bench.sh" >&2
                exit 1
            fi
        done
        BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
        RPCD="$BIN/rpc.dracd"; DRACCTL="$BIN/dracctl"
    fi
    for x in "$RPCD" "$DRACCTL"; do [[ -x $x ]] || { echo "no $x after the build" >&2; exit 1; }; done
fi

mkdir -p "$ROOT/.bench-tmp"
WORK=$(mktemp -d "$ROOT/.bench-tmp/pop3d.XXXXXX")
chmod 755 "$WORK"   # vmail, dovecot and dovenull must reach the maildirs, sockets and sasldb

echo "== building pop3load"
swiftc -O Benchmarks/Pop3Load/main.swift -o "$WORK/pop3load"
LOAD="$WORK/pop3load"

# ---- processes: every one we start is stopped by its PID ------------------------------------
POP3D_PID=""
POP3D_DRAC_PID=""
RPCD_PID=""
DOVECOT_PID=""
stop_pid() {   # pid name: SIGTERM, up to 15 s, then SIGKILL
    local pid=$1 name=$2
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name (pid $pid) did not stop within 15 s of SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
descendants() {   # pid -> its descendants' pids, one a line
    python3 - "$1" <<'PY'
import os, sys
kids = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        kids.setdefault(int(s[s.rindex(")") + 2:].split()[1]), []).append(int(d))
todo, out = [int(sys.argv[1])], []
while todo:
    for c in kids.get(todo.pop(), []):
        out.append(c); todo.append(c)
print("\n".join(map(str, out)))
PY
}
cleanup() {
    local rc=$?
    [[ -n $MADE_POLICY ]] && rm -f /usr/sbin/policy-rc.d
    stop_pid "$POP3D_PID" drac-pop3d
    stop_pid "$POP3D_DRAC_PID" "drac-pop3d (DRAC on)"
    stop_pid "$RPCD_PID" rpc.dracd
    if [[ -n $DOVECOT_PID ]] && kill -0 "$DOVECOT_PID" 2>/dev/null; then
        # The master stops its children on SIGTERM; any child still there afterwards is ended
        # by its PID (recorded before the master went).
        local kids
        kids=$(descendants "$DOVECOT_PID" || true)
        stop_pid "$DOVECOT_PID" dovecot
        sleep 0.2
        for k in $kids; do
            if kill -0 "$k" 2>/dev/null; then kill -TERM "$k" 2>/dev/null || true; fi
        done
    fi
    rm -rf "$WORK/mail" "$WORK/pristine"
    [[ $rc -ne 0 ]] && echo "logs and configuration kept in $WORK" >&2
    return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_port_tcp_udp() {   # a port free on 127.0.0.1 for both TCP and UDP (rpc.dracd takes both)
    python3 - <<'PY'
import socket
for _ in range(100):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p); break
PY
}
wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; return 1; }

# ---- mail -----------------------------------------------------------------------------------
USERS=()
for i in $(seq 1 9); do USERS+=("bench$i"); done
LOGIN_USERS=""
for u in "${USERS[@]:1:8}"; do LOGIN_USERS+="${LOGIN_USERS:+,}$u@$DOMAIN:$PASSWORD"; done

echo "== writing the Maildir: bench1 $RETR_MESSAGES messages, bench2..bench9 10 messages each (~10 KB each)"
# Files as Postfix's local(8) delivers them: written in tmp/, then renamed into new/ as
# <time>.V<dev>I<inode>M<usec>.<host> (LF line ends). Realistic headers, a text body of lines of
# up to 76 characters, and lines starting with "." (and a few lone "." lines) for dot-stuffing.
python3 - "$WORK/pristine/$DOMAIN" "$RETR_MESSAGES" "${USERS[@]}" <<'PY'
import os, random, socket, sys, time
base, nretr, users = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
host = socket.gethostname().split(".")[0] or "localhost"
rng = random.Random(1939)
words = ("the of and to in a is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when if "
         "so no will more other about up out them what some time into only could new than "
         "message server mailbox delivery relay account password login session client retrieve "
         "maildrop octets protocol network report quarterly budget meeting schedule invoice "
         "attached please regards thanks review draft update project release notes").split()
def text_line():
    out = []
    n = 0
    target = rng.randint(40, 76)
    while True:
        w = rng.choice(words)
        if n + len(w) + (1 if out else 0) > target:
            break
        out.append(w); n += len(w) + (1 if len(out) > 1 else 0)
    s = " ".join(out)
    r = rng.random()
    if r < 0.04:
        s = "." + s                      # a line that starts with a dot: stuffed on the wire
    elif r < 0.05:
        s = "..." + s                    # an ellipsis
    elif r < 0.055:
        s = "."                          # a lone dot: the terminator if it were not stuffed
    return s[:76]
t0 = int(time.time()) - 86400
seq = 0
def message(user, k):
    global seq
    seq += 1
    when = time.gmtime(t0 + seq * 37)
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", when)
    qid = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTVWXYZ") for _ in range(10))
    sender = rng.choice(["alice", "bob", "carol", "dave", "erin", "frank"])
    subject = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))).capitalize()
    h = [
        f"Return-Path: <{sender}@example.org>",
        f"X-Original-To: {user}@bench.test",
        f"Delivered-To: {user}@bench.test",
        f"Received: from mail.example.org (mail.example.org [192.0.2.25])",
        f"\tby mx.bench.test (Postfix) with ESMTPS id {qid}",
        f"\tfor <{user}@bench.test>; {date} (UTC)",
        f"Received: from [198.51.100.7] (unknown [198.51.100.7])",
        f"\t(Authenticated sender: {sender}@example.org)",
        f"\tby mail.example.org (Postfix) with ESMTPSA id {qid[::-1]};",
        f"\t{date} (UTC)",
        f"Message-ID: <{seq:08d}.{qid.lower()}@example.org>",
        f"Date: {date}",
        f"From: {sender.capitalize()} <{sender}@example.org>",
        f"To: {user}@bench.test",
        f"Subject: {subject}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii; format=flowed",
        "Content-Transfer-Encoding: 7bit",
        "",
    ]
    body = []
    size = sum(len(x) + 1 for x in h)
    target = rng.randint(9900, 10600)
    while size < target:
        line = text_line()
        body.append(line); size += len(line) + 1
    return ("\n".join(h + body) + "\n").encode()
for ui, user in enumerate(users):
    d = os.path.join(base, user)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    count = nretr if ui == 0 else 10
    for k in range(count):
        now = time.time()
        tmp = os.path.join(d, "tmp", f"{int(now)}.P{os.getpid()}Q{k}.{host}")
        with open(tmp, "wb") as f:
            f.write(message(user, k))
        st = os.stat(tmp)
        usec = int((now % 1) * 1e6)
        os.rename(tmp, os.path.join(d, "new", f"{int(now)}.V{st.st_dev:x}I{st.st_ino:x}M{usec}.{host}"))
PY
chown -R vmail:vmail "$WORK/pristine"
chmod -R u=rwX,go= "$WORK/pristine/$DOMAIN"
reset_mail() { rm -rf "$WORK/mail"; cp -a "$WORK/pristine" "$WORK/mail"; }
reset_mail
du -sh "$WORK/pristine/$DOMAIN/bench1" | sed 's/^/   bench1 maildrop: /'

# ---- Dovecot --------------------------------------------------------------------------------
if has dovecot; then
    DPORT=$(free_port)
    NCPU=$(nproc)
    MAXCLIENTS=${CLIENT_COUNTS[-1]}
    : > "$WORK/dovecot.passwd"
    for u in "${USERS[@]}"; do echo "$u@$DOMAIN:{PLAIN}$PASSWORD::::::" >> "$WORK/dovecot.passwd"; done
    chown root:dovecot "$WORK/dovecot.passwd"; chmod 640 "$WORK/dovecot.passwd"
    mkdir -p "$WORK/dovecot-state"
    cat > "$WORK/dovecot.conf" <<CONF
# Written by Benchmarks/pop3d-bench.sh: a private Dovecot $(dovecot --version | cut -d' ' -f1) instance.
protocols = pop3
listen = 127.0.0.1
base_dir = $WORK/dovecot-run
state_dir = $WORK/dovecot-state
instance_name = pop3d-bench
log_path = $WORK/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = $VUID
first_valid_gid = $VGID
mail_location = maildir:$WORK/mail/%d/%n
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $WORK/dovecot.passwd
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=$WORK/mail/%d/%n
}
pop3_lock_session = yes
pop3_uidl_format = %08Xu%08Xv

# High-performance mode, as Dovecot 2.3's documentation gives it
# (https://doc.dovecot.org/2.3/admin_manual/login_processes/#high-performance-mode):
#   service imap-login { service_count = 0  process_min_avail = 4 # number of CPU cores
#                        vsz_limit = 1G }   service pop3-login { service_count = 0 }
# "process_min_avail should be set to be at least the number of CPU cores in the system, so
# that all of them will be used", and vsz_limit "should be increased". Each login process then
# serves many connections (client_limit, default 1000) instead of one.
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DPORT
  }
  inet_listener pop3s {
    port = 0
  }
  service_count = 0
  process_min_avail = $NCPU
  vsz_limit = 1G
}
# The mail processes reused too: "service imap { service_count = 0 } (default=1) allows imap
# processes to be reused for more than 1 connection" (Timo Sirainen, dovecot list, 2012-06-22;
# the 2.3 performance-tuning page: "To reduce forks by reusing existing processes for new
# requests increase service { service_count } from 1 ... for imap and pop3 services"). A pop3
# process serves one session at a time (client_limit 1), so one is kept ready per concurrent
# client (and at least one per core).
service pop3 {
  service_count = 0
  process_min_avail = $(( NCPU > MAXCLIENTS ? NCPU : MAXCLIENTS ))
}
# What Dovecot's start-up warning asks for once service_count != 1 (pop3 process_limit 1024 +
# pop3-login process_limit 100 auth clients); no effect at 8 clients, keeps the log clean.
service auth {
  client_limit = 1124
}
CONF
    doveconf -c "$WORK/dovecot.conf" -n > "$WORK/doveconf-n.txt" 2>&1 || { cat "$WORK/doveconf-n.txt" >&2; exit 1; }
    echo "== starting Dovecot $(dovecot --version) on 127.0.0.1:$DPORT (config $WORK/dovecot.conf)"
    dovecot -F -c "$WORK/dovecot.conf" > "$WORK/dovecot.stderr" 2>&1 &
    DOVECOT_PID=$!
    if ! wait_port "$DPORT" || ! kill -0 "$DOVECOT_PID" 2>/dev/null; then
        echo "Dovecot failed to start:" >&2
        tail -n 20 "$WORK/dovecot.stderr" "$WORK/dovecot.log" >&2 2>/dev/null || true
        exit 1
    fi
fi

# ---- drac-pop3d -----------------------------------------------------------------------------
POP3D_OPTS=(
    -c /dev/null
    -o pop3d_listen=pop3:127.0.0.1:0
    -o "pop3d_mail_location=maildir:$WORK/mail/%d/%n"
    -o pop3d_mail_user=vmail
    -o pop3d_sasl_pwcheck_method=auxprop
    -o "pop3d_sasldb_path=$WORK/sasldb2"
    -o pop3d_use_drac=no
    -o pop3d_plaintext_requires_tls=no
    -o syslog_facility=local7
    -v
)
start_pop3d() {   # log pidvar portvar option... : starts one instance, sets $pidvar and $portvar
    local log=$1 pidvar=$2 portvar=$3 port="" pid
    shift 3
    echo "== starting drac-pop3d: $POP3D $*"
    "$POP3D" "$@" > "$log" 2>&1 &
    pid=$!
    printf -v "$pidvar" %s "$pid"
    for _ in $(seq 300); do
        port=$(sed -n 's/.*ready on pop3 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
        [[ -n $port ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $port ]] || ! kill -0 "$pid" 2>/dev/null; then
        echo "drac-pop3d failed to start (no 'ready on pop3' line); its output:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    printf -v "$portvar" %s "$port"
    grep -m1 "ready on pop3" "$log"
}
if has drac-pop3d; then
    for u in "${USERS[@]}"; do
        printf %s "$PASSWORD" | saslpasswd2 -c -p -f "$WORK/sasldb2" -u "$DOMAIN" "$u"
    done
    chown root:vmail "$WORK/sasldb2"; chmod 640 "$WORK/sasldb2"
    start_pop3d "$WORK/drac-pop3d.log" POP3D_PID PPORT "${POP3D_OPTS[@]}"

    # rpc.dracd for the DRAC-on instance: foreground, no rpcbind, a fixed loopback port, its own
    # (new) map and allow file, no pid file, no system drac.conf.
    RPORT=$(free_port_tcp_udp)
    [[ -n $RPORT ]] || { echo "no free port for rpc.dracd" >&2; exit 1; }
    echo "127.0.0.0/8" > "$WORK/dracd.allow"
    RPCD_OPTS=(-f -c /dev/null -a "$WORK/dracd.allow" -o rpcbind=no -o listen=127.0.0.1 -o "rpc_port=$RPORT"
               -o "map_file=$WORK/dracd.db" -o pid_file= -o syslog_facility=local7)
    echo "== starting rpc.dracd: $RPCD ${RPCD_OPTS[*]}"
    "$RPCD" "${RPCD_OPTS[@]}" > "$WORK/rpc.dracd.log" 2>&1 &
    RPCD_PID=$!
    for _ in $(seq 300); do
        grep -q "started:" "$WORK/rpc.dracd.log" && break
        kill -0 "$RPCD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "started:" "$WORK/rpc.dracd.log" || ! kill -0 "$RPCD_PID" 2>/dev/null; then
        echo "rpc.dracd failed to start (no 'started:' line); its output:" >&2
        tail -n 20 "$WORK/rpc.dracd.log" >&2
        exit 1
    fi
    grep -m1 "started:" "$WORK/rpc.dracd.log"

    # The DRAC-on instance: the same options but pop3d_use_drac = yes, adds to that rpc.dracd.
    POP3D_DRAC_OPTS=()
    for o in "${POP3D_OPTS[@]}"; do
        [[ $o == pop3d_use_drac=no ]] && o=pop3d_use_drac=yes
        POP3D_DRAC_OPTS+=("$o")
    done
    POP3D_DRAC_OPTS+=(-o "rpc_servers=127.0.0.1:$RPORT")
    start_pop3d "$WORK/drac-pop3d-drac.log" POP3D_DRAC_PID PDRACPORT "${POP3D_DRAC_OPTS[@]}"
fi

# Servers by name: drac-on is the drac-pop3d instance with DRAC on.
port_of() { case $1 in drac-pop3d) echo "$PPORT" ;; drac-on) echo "$PDRACPORT" ;; dovecot) echo "$DPORT" ;; esac; }
pid_of() { case $1 in drac-pop3d) echo "$POP3D_PID" ;; drac-on) echo "$POP3D_DRAC_PID" ;; dovecot) echo "$DOVECOT_PID" ;; esac; }
log_of() { case $1 in drac-pop3d) echo "$WORK/drac-pop3d.log" ;; drac-on) echo "$WORK/drac-pop3d-drac.log" ;; dovecot) echo "$WORK/dovecot.log" ;; esac; }

# CPU ticks (user + system, and of reaped children) of a process and all its descendants.
tree_ticks() {
    python3 - "$1" <<'PY'
import os, sys
procs = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        procs[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
want, grew = {int(sys.argv[1])}, True
while grew:
    grew = False
    for p, (pp, _) in procs.items():
        if pp in want and p not in want:
            want.add(p); grew = True
print(sum(procs[p][1] for p in want if p in procs))
PY
}
HZ=$(getconf CLK_TCK)
num() {   # num KEY LINE -> the number that starts KEY's value
    sed -n "s/.*[[:space:]]$1=\([0-9.][0-9.]*\).*/\1/p" <<<" $2"
}

# One run against one server, on a freshly copied Maildir (with COLD=1, the page cache is
# dropped after the copy). Prints pop3load's line with the server's CPU share appended (for
# drac-on also rpc.dracd's); aborts the benchmark if pop3load or the server fails.
run() {   # server mode args...
    local server=$1 mode=$2; shift 2
    local pid port line t0 t1 c0 c1 d0=0 d1=0 rc=0
    pid=$(pid_of "$server"); port=$(port_of "$server")
    reset_mail
    if [[ ${COLD:-} == 1 ]]; then
        sync
        echo 3 > /proc/sys/vm/drop_caches || { echo "cannot drop the page cache" >&2; exit 1; }
    fi
    [[ $server == drac-on ]] && d0=$(tree_ticks "$RPCD_PID")
    c0=$(tree_ticks "$pid"); t0=$(date +%s.%N)
    line=$("$LOAD" "$mode" --port "$port" "$@" 2>"$WORK/pop3load.err") || rc=$?
    t1=$(date +%s.%N); c1=$(tree_ticks "$pid")
    [[ $server == drac-on ]] && d1=$(tree_ticks "$RPCD_PID")
    if [[ $rc -ne 0 || -z $line ]]; then
        echo "pop3load $mode against $server failed (exit $rc):" >&2
        cat "$WORK/pop3load.err" >&2
        echo "last lines of $(log_of "$server"):" >&2
        tail -n 15 "$(log_of "$server")" >&2 || true
        exit 1
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "$server died during the run; its log:" >&2
        tail -n 20 "$(log_of "$server")" >&2 || true
        exit 1
    fi
    if [[ $server == drac-on ]] && ! kill -0 "$RPCD_PID" 2>/dev/null; then
        echo "rpc.dracd died during the run; its log:" >&2
        tail -n 20 "$WORK/rpc.dracd.log" >&2 || true
        exit 1
    fi
    awk -v l="$line" -v a="$c0" -v b="$c1" -v hz="$HZ" -v t0="$t0" -v t1="$t1" -v d0="$d0" -v d1="$d1" -v dr="$([[ $server == drac-on ]] && echo 1)" \
        'BEGIN { printf "%s server_cpu_share=%.0f%%", l, 100 * (b - a) / hz / (t1 - t0)
                 if (dr) printf " dracd_cpu_share=%.0f%%", 100 * (d1 - d0) / hz / (t1 - t0)
                 printf "\n" }'
}

show() {   # server line: one human line per run
    local s=$1 l=$2 extra=""
    [[ $s == drac-on ]] && s=drac-pop3d+DRAC
    if [[ $l == logins* ]]; then
        [[ $l == *dracd_cpu_share=* ]] && extra+="  rpc.dracd $(num dracd_cpu_share "$l")%"
        [[ $l == *sources=* ]] && extra+="  ($(num sources "$l") source addresses)"
        printf '   %-15s %2s clients %9s logins/s  p50 %7s ms  p99 %7s ms   CPU: server %4s%%  pop3load %4s%%%s\n' \
            "$s" "$(num clients "$l")" "$(num rate "$l")" "$(num p50 "$l")" "$(num p99 "$l")" \
            "$(num server_cpu_share "$l")" "$(num cpu_share "$l")" "$extra"
    else
        printf '   %-15s RETR %9s msg/s %8s MB/s  (login+STAT+LIST %s ms)   CPU: server %4s%%  pop3load %4s%%\n' \
            "$s" "$(num rate "$l")" "$(num mb_rate "$l")" "$(num open_ms "$l")" \
            "$(num server_cpu_share "$l")" "$(num cpu_share "$l")"
    fi
}

# The run with the median rate of a server's lines (upper middle for an even count).
median_line() {
    local -n lines=$1
    local n=${#lines[@]}
    printf '%s\n' "${lines[@]}" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^rate=/) { v = $i; sub(/^rate=/, "", v); print v + 0 "\t" $0 } }' \
        | sort -g | sed -n "$(( n / 2 + 1 ))p" | cut -f2-
}

# rounds NAME ARGS...: $ROUNDS rounds of `run SERVER ARGS...` on every server, alternating; the
# median line of each server goes to RESULT[SERVER,NAME]. COLD=1 before it drops the page cache.
rounds() {
    local name=$1; shift
    local -a on_drac=() on_dove=()
    local r s line
    for r in $(seq "$ROUNDS"); do
        for s in "${SERVERS[@]}"; do
            line=$(run "$s" "$@")
            show "$s" "$line"
            if [[ $s == dovecot ]]; then on_dove+=("$line"); else on_drac+=("$line"); fi
        done
    done
    if has drac-pop3d; then RESULT[drac-pop3d,$name]=$(median_line on_drac); fi
    if has dovecot; then RESULT[dovecot,$name]=$(median_line on_dove); fi
}

RETR_ARGS=(--user "bench1@$DOMAIN" --pass "$PASSWORD" --repeat "$RETR_SESSIONS" --batch "$RETR_BATCH" --expect "$RETR_MESSAGES")

echo "== warm-up"
for s in "${SERVERS[@]}"; do
    show "$s" "$(run "$s" logins --users "$LOGIN_USERS" --clients "${CLIENT_COUNTS[-1]}" --seconds 2)"
    show "$s" "$(run "$s" retr --user "bench1@$DOMAIN" --pass "$PASSWORD" --repeat 1 --batch "$RETR_BATCH" --expect "$RETR_MESSAGES")"
done

declare -A RESULT
for clients in "${CLIENT_COUNTS[@]}"; do
    echo "== logins, $clients client(s), $LOGIN_SECONDS s per run, $ROUNDS rounds (USER/PASS/QUIT, one user per client)"
    rounds "$clients" logins --users "$LOGIN_USERS" --clients "$clients" --seconds "$LOGIN_SECONDS"
done

echo "== RETR: $RETR_MESSAGES messages of ~10 KB, $RETR_SESSIONS sessions per run (median), $RETR_BATCH RETRs per write, $ROUNDS rounds"
rounds retr retr "${RETR_ARGS[@]}"

echo "== RETR, cold page cache: the same maildrop, page cache dropped before each run, 1 session per run, $ROUNDS rounds"
COLD=1 rounds retrcold retr --user "bench1@$DOMAIN" --pass "$PASSWORD" --repeat 1 --batch "$RETR_BATCH" --expect "$RETR_MESSAGES"

# ---- logins with DRAC on ----------------------------------------------------------------------
# Run k (0 = warm-up) draws its source addresses from 127.(10+k).0.0/16 (65,024 addresses);
# both servers of a round get the same range, and no range is used by two DRAC-on runs.
DRAC_SERVERS=()
has drac-pop3d && DRAC_SERVERS+=(drac-on)
has dovecot && DRAC_SERVERS+=(dovecot)
DRAC_CLIENTS=${CLIENT_COUNTS[-1]}
DRAC_LOGINS=0     # logins the DRAC-on instance served (warm-up included)
DRAC_SOURCES=0    # distinct source addresses they came from
drac_outcomes() {   # answered adds in the DRAC-on log: ok refused failed dropped
    local log=$WORK/drac-pop3d-drac.log
    printf '%s %s %s %s\n' \
        "$(grep -Ec 'drac add [^ ]+ to [^ ]+: ok$' "$log" || true)" \
        "$(grep -Ec 'drac add [^ ]+ to [^ ]+ refused: ' "$log" || true)" \
        "$(grep -Ec 'drac add [^ ]+ to [^ ]+ failed: ' "$log" || true)" \
        "$(grep -Ec 'drac add [^ ]+ dropped: ' "$log" || true)"
}
drac_settle() {   # wait (up to 60 s) until every add so far has an outcome line
    local t0 n=0
    t0=$(date +%s.%N)
    for _ in $(seq 600); do
        read -r a b c d < <(drac_outcomes)
        n=$(( a + b + c + d ))
        (( n >= DRAC_SOURCES )) && break
        sleep 0.1
    done
    awk -v n="$n" -v want="$DRAC_SOURCES" -v t0="$t0" -v t1="$(date +%s.%N)" \
        'BEGIN { printf "   %-15s DRAC adds so far: %d of %d answered %.1f s after the run%s\n", "", n, want, t1 - t0, (n < want ? " (gave up waiting)" : "") }'
}
drac_run() {   # server k seconds: one 8-client login run with sources 127.(10+k).0.0/16
    local s=$1 k=$2 secs=$3 line
    line=$(run "$s" logins --users "$LOGIN_USERS" --clients "$DRAC_CLIENTS" --seconds "$secs" --sources "127.$(( 10 + k )).0.0/16")
    show "$s" "$line"
    if [[ $s == drac-on ]]; then
        DRAC_LOGINS=$(( DRAC_LOGINS + $(num logins "$line") ))
        DRAC_SOURCES=$(( DRAC_SOURCES + $(num sources "$line") ))
        drac_settle
    fi
    LAST_LINE=$line
}
echo "== logins with DRAC on, $DRAC_CLIENTS clients, each login from its own 127.N.x.y address, $LOGIN_SECONDS s per run, $ROUNDS rounds (warm-up 2 s)"
for s in "${DRAC_SERVERS[@]}"; do drac_run "$s" 0 2; done
declare -a D_drac=() D_dove=()
for r in $(seq "$ROUNDS"); do
    for s in "${DRAC_SERVERS[@]}"; do
        drac_run "$s" "$r" "$LOGIN_SECONDS"
        if [[ $s == dovecot ]]; then D_dove+=("$LAST_LINE"); else D_drac+=("$LAST_LINE"); fi
    done
done
has drac-pop3d && RESULT[drac-pop3d,dracon]=$(median_line D_drac)
has dovecot && RESULT[dovecot,dracon]=$(median_line D_dove)
DRAC_SUMMARY=""
if has drac-pop3d; then
    # Stop the DRAC-on instance, then rpc.dracd (it finishes pending commits and logs its
    # adds per sync), then read the map.
    stop_pid "$POP3D_DRAC_PID" "drac-pop3d (DRAC on)"; POP3D_DRAC_PID=""
    if ! kill -0 "$RPCD_PID" 2>/dev/null; then
        echo "rpc.dracd died; its log:" >&2; tail -n 20 "$WORK/rpc.dracd.log" >&2; exit 1
    fi
    stop_pid "$RPCD_PID" rpc.dracd; RPCD_PID=""
    # An empty configuration file of our own (not /etc/drac/drac.conf; dracctl cannot read
    # -c /dev/null, which the daemons accept).
    : > "$WORK/dracctl.conf"
    if ! MAP_JSON=$("$DRACCTL" -c "$WORK/dracctl.conf" --db "$WORK/dracd.db" list --json 2>"$WORK/dracctl.err"); then
        echo "dracctl list failed:" >&2; cat "$WORK/dracctl.err" >&2; exit 1
    fi
    MAP_COUNT=$(python3 -c 'import json, sys; print(len({e["address"] for e in json.load(sys.stdin)}))' <<<"$MAP_JSON")
    read -r OK REFUSED FAILED DROPPED < <(drac_outcomes)
    COMMITTED=$(sed -n 's/.*\(committed [0-9]* adds in [0-9]* syncs ([^)]*)\).*/\1/p' "$WORK/rpc.dracd.log" | tail -n 1)
    DERR=$(grep -Eci 'error|refused|garbage|dropped|fail' "$WORK/rpc.dracd.log" || true)
    DRAC_SUMMARY="DRAC on: $DRAC_LOGINS logins from $DRAC_SOURCES distinct addresses (warm-up included); the map holds $MAP_COUNT addresses"
    DRAC_SUMMARY+=$'\n'"         drac-pop3d drac add outcomes: $OK ok, $REFUSED refused, $FAILED failed, $DROPPED dropped (queue full)"
    DRAC_SUMMARY+=$'\n'"         rpc.dracd: ${COMMITTED:-no commit summary}; $DERR error/refusal lines ($WORK/rpc.dracd.log)"
    sed 's/^/   /' <<<"$DRAC_SUMMARY"
fi

# ---- the table ------------------------------------------------------------------------------
cell() {   # server key -> text
    local l=${RESULT[$1,$2]:-}
    [[ -z $l ]] && { echo "-"; return; }
    if [[ $2 == retr* ]]; then
        printf '%s msg/s (%s MB/s)' "$(num rate "$l")" "$(num mb_rate "$l")"
    else
        printf '%s (p50 %s ms p99 %s ms)' "$(num rate "$l")" "$(num p50 "$l")" "$(num p99 "$l")"
    fi
}
ratio() {
    local a=${RESULT[drac-pop3d,$1]:-} b=${RESULT[dovecot,$1]:-}
    [[ -z $a || -z $b ]] && { echo "-"; return; }
    # Truncated, not rounded, so 0.996 shows as 0.99x beside its MISS.
    awk -v x="$(num rate "$a")" -v y="$(num rate "$b")" 'BEGIN { if (y > 0) printf "%.2fx  %s", int(100 * x / y) / 100, (x / y >= 1.0 ? "PASS" : "MISS"); else print "nan" }'
}
echo
echo "== results (median of $ROUNDS alternated runs per server; $(nproc) CPUs; Dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1 || echo '?'))"
printf '%-28s %-38s %-38s %s\n' figure drac-pop3d dovecot "ratio (goal >= 1.0x)"
for c in "${CLIENT_COUNTS[@]}"; do
    label="logins/s $c client$([[ $c == 1 ]] || echo s)"
    printf '%-28s %-38s %-38s %s\n' "$label" "$(cell drac-pop3d "$c")" "$(cell dovecot "$c")" "$(ratio "$c")"
done
printf '%-28s %-38s %-38s %s\n' "RETR ${RETR_MESSAGES}x10KB" "$(cell drac-pop3d retr)" "$(cell dovecot retr)" "$(ratio retr)"
printf '%-28s %-38s %-38s %s\n' "RETR cold cache" "$(cell drac-pop3d retrcold)" "$(cell dovecot retrcold)" "$(ratio retrcold)"
printf '%-28s %-38s %-38s %s\n' "logins/s $DRAC_CLIENTS clients, DRAC on" "$(cell drac-pop3d dracon)" "$(cell dovecot dracon)" "$(ratio dracon)"
[[ -n $DRAC_SUMMARY ]] && sed 's/^/   /' <<<"$DRAC_SUMMARY"
echo
echo "MB = 10^6 octets of RETR responses as sent; logins/s counts USER/PASS/QUIT sessions; latency is connect to +OK of QUIT."
echo "RETR cold cache: one session per run, page cache dropped before it. DRAC on: drac-pop3d adds every login to rpc.dracd"
echo "(synced map), each login from its own loopback address; Dovecot does no DRAC and runs the same clients."
has dovecot && echo "Dovecot log: $(grep -c 'Login: user=' "$WORK/dovecot.log" || true) logins, $(grep -Eci 'error|fatal|panic' "$WORK/dovecot.log" || true) error lines ($WORK/dovecot.log)"
has drac-pop3d && echo "drac-pop3d log: $(grep -Eci 'error|fatal' "$WORK/drac-pop3d.log" || true) error lines ($WORK/drac-pop3d.log); DRAC on: $(grep -Eci 'error|fatal' "$WORK/drac-pop3d-drac.log" || true) ($WORK/drac-pop3d-drac.log)"
exit 0
