#!/usr/bin/env bash
# bench/erlang/run.sh <bulk_n> <global_n> <lookup_iters>
#
# Measures the pidmesh benchmark workloads on Erlang/OTP (pg and :global) on
# three distributed Erlang nodes on loopback, and prints exactly one JSON
# object on one line to stdout. Everything else goes to stderr.
#
# Isolation: a private epmd on a free loopback port (ERL_EPMD_PORT), a random
# cookie, node names carrying this script's pid. Cleanup on exit kills only
# what this script started (the private epmd, the controller VM, and the
# peer VMs whose OS pids the controller recorded).
set -euo pipefail

die() { echo "run.sh: error: $*" >&2; exit 1; }
log() { echo "[run.sh $(date +%H:%M:%S)] $*" >&2; }

[ $# -eq 3 ] || die "usage: $0 <bulk_n> <global_n> <lookup_iters>"
for a in "$@"; do
    [[ "$a" =~ ^[1-9][0-9]*$ ]] || die "arguments must be positive integers, got '$a'"
done
BULK_N=$1 GLOBAL_N=$2 ITERS=$3

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Seconds the workloads may take to become visible everywhere before the run
# is declared failed, and a hard limit for the whole controller VM.
CONV_TIMEOUT_S=${CONV_TIMEOUT_S:-600}
HARD_LIMIT_S=${HARD_LIMIT_S:-3600}

# ---------------------------------------------------------------- Erlang ----
# Debian's "erlang" metapackage is tried first. If it cannot be installed,
# "erlang-nox" and then "erlang-base" are tried; the benchmark needs only
# kernel and stdlib (pg, global, peer, erpc), which erlang-base provides
# together with erl, erlc and epmd.
if ! command -v erl >/dev/null 2>&1 || ! command -v erlc >/dev/null 2>&1; then
    log "erl/erlc not found, installing Debian's Erlang"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2 || die "apt-get update failed"
    installed=""
    for pkg in erlang erlang-nox erlang-base; do
        if apt-get install -y "$pkg" >&2; then installed=$pkg; break; fi
        log "installing $pkg failed, trying the next candidate"
    done
    [ -n "$installed" ] || die "could not install erlang, erlang-nox or erlang-base"
    log "installed Debian package: $installed"
fi
command -v erl >/dev/null && command -v erlc >/dev/null && command -v epmd >/dev/null \
    || die "erl, erlc and epmd must be on PATH"

# --------------------------------------------------------------- cleanup ----
TMP="$(mktemp -d /tmp/pidmesh-erl-bench.XXXXXX)"
EPMD_PID=""
EPMD_PORT=""
CTL_PID=""
WATCH_PID=""
PIDFILE="$TMP/peer_os_pids"
RESULT="$TMP/result.json"
TAG="$$"

kill_pid() { # kill_pid PID EXPECTED_CMDLINE_SUBSTRING
    local pid=$1 want=$2
    [ -n "$pid" ] || return 0
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$want"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ -e "/proc/$pid" ] || return 0
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

kill_ours() {
    # controller (normally gone already; its peers halt when it goes away)
    [ -n "$CTL_PID" ] && kill_pid "$CTL_PID" "pmb_ctl_$TAG"
    # peers that are somehow still alive: only the pids the controller recorded,
    # and only if they still are our nodes (guards against pid reuse)
    if [ -f "$PIDFILE" ]; then
        while read -r p; do kill_pid "$p" "_$TAG@127.0.0.1"; done <"$PIDFILE"
    fi
    [ -n "$EPMD_PID" ] && kill_pid "$EPMD_PID" "epmd -port $EPMD_PORT"
    rm -rf "$TMP"
}

cleanup() {
    local rc=$?
    set +e
    [ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
    kill_ours
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------- compile ----
log "compiling into $TMP"
erlc -Werror -o "$TMP" "$HERE/pidmesh_erl_bench.erl" >&2 || die "erlc failed"

# ------------------------------------------------------------------ epmd ----
port_in_use() {
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    return 1
}
EPMD_PORT=""
for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 30000 ))
    if ! port_in_use "$p"; then EPMD_PORT=$p; break; fi
done
[ -n "$EPMD_PORT" ] || die "no free port found for a private epmd"
export ERL_EPMD_PORT=$EPMD_PORT
epmd -port "$EPMD_PORT" -address 127.0.0.1 >&2 &
EPMD_PID=$!
for _ in $(seq 1 50); do
    epmd -port "$EPMD_PORT" -names >/dev/null 2>&1 && break
    kill -0 "$EPMD_PID" 2>/dev/null || die "epmd on port $EPMD_PORT exited"
    sleep 0.1
done
epmd -port "$EPMD_PORT" -names >/dev/null 2>&1 || die "epmd on port $EPMD_PORT did not come up"
log "private epmd pid $EPMD_PID on 127.0.0.1:$EPMD_PORT"

# ------------------------------------------------------------- benchmark ----
COOKIE="pmb$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
: >"$PIDFILE"
log "controller pmb_ctl_$TAG@127.0.0.1 (hidden); bulk_n=$BULK_N global_n=$GLOBAL_N lookup_iters=$ITERS"
start_ns=$(date +%s%N)
# $! is timeout(1), which forwards TERM to the controller VM (erl execs beam.smp)
timeout -k 10 "$HARD_LIMIT_S" \
    erl -noshell -hidden -name "pmb_ctl_$TAG@127.0.0.1" -setcookie "$COOKIE" \
        -kernel inet_dist_use_interface '{127,0,0,1}' \
        -pa "$TMP" \
        -run pidmesh_erl_bench main "$RESULT" "$PIDFILE" "$BULK_N" "$GLOBAL_N" "$ITERS" "$CONV_TIMEOUT_S" \
        </dev/null >&2 &
CTL_PID=$!
# Watchdog: if this script is killed with SIGKILL (no trap runs; e.g. a caller's
# kill-on-drop), still stop the controller, its peers and the private epmd.
( while kill -0 $$ 2>/dev/null; do sleep 1; done; kill_ours ) </dev/null >/dev/null 2>&1 &
WATCH_PID=$!
ctl_rc=0
wait "$CTL_PID" || ctl_rc=$?
CTL_PID=""
log "controller exited with $ctl_rc after $(( ($(date +%s%N) - start_ns) / 1000000 )) ms"
[ "$ctl_rc" -eq 0 ] || die "benchmark failed (controller exit code $ctl_rc)"
[ -s "$RESULT" ] || die "controller produced no result"

# give the peers a moment to finish halting, then make sure none is left
for _ in $(seq 1 50); do
    alive=0
    while read -r p; do [ -e "/proc/$p" ] && alive=1; done <"$PIDFILE"
    [ $alive -eq 0 ] && break
    sleep 0.1
done

head -n 1 "$RESULT"
