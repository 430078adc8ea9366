#!/usr/bin/env bash
# Black-box test of real `pidmesh` processes over a real network: five network namespaces, each
# with one `pidmesh run` (QUIC, certificates made by `pidmesh cert`), joined by veth pairs to two
# bridges that live in a hub namespace of their own and are linked by a "trunk" veth pair:
#
#     n1 n2 ── br-a ══ trunk ══ br-b ── n3 n4 n5        (10.77.0.0/24, inside the namespaces only)
#
# Taking the trunk down cuts the cluster 2 | 3. Every check goes through the admin API (curl
# inside each namespace, to its own loopback). Every timing is printed. Namespaces and processes
# are removed on exit, whatever happened.
#
# Needs root, `ip` (iproute2), curl and jq; skips with a printed reason when network namespaces
# cannot be made. Usage: tests/netns/blackbox.sh [path/to/pidmesh]
set -euo pipefail

BIN=${1:-${PIDMESH_BIN:-}}
if [[ -z "$BIN" ]]; then
  echo "usage: $0 path/to/pidmesh" >&2
  exit 2
fi
BIN=$(realpath "$BIN")

skip() {
  echo "netns black-box: SKIPPED: $*"
  echo "netns: 0 passed, 0 failed, 1 skipped"
  exit 0
}
[[ $(id -u) -eq 0 ]] || skip "not root (network namespaces need CAP_SYS_ADMIN)"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
command -v curl >/dev/null || skip "curl is not installed"
command -v jq >/dev/null || skip "jq is not installed"

P="pm$$"                     # prefix of everything this run creates
HUB="${P}hub"
N=5
WORK=$(mktemp -d)
PASSED=0
declare -a PIDS

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "---- what each node sees ----"
    for i in $(seq 1 $N); do
      echo "== n$i members: $(api "$i" GET /v1/members 2>/dev/null | jq -c '[.[].name]' 2>/dev/null)"
      echo "   names: $(api "$i" GET /v1/names 2>/dev/null | jq -c '[.[] | [.key, .pid.display]] | sort' 2>/dev/null)"
      echo "   singletons: $(api "$i" GET /v1/singletons 2>/dev/null)"
    done
  fi
  for i in $(seq 1 $N); do
    if [[ -n "${PIDS[$i]:-}" ]]; then kill -9 "${PIDS[$i]}" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  for i in $(seq 1 $N); do ip netns del "${P}n$i" 2>/dev/null || true; done
  ip netns del "$HUB" 2>/dev/null || true
  if [[ $rc -ne 0 ]]; then
    echo "---- node logs (last 30 lines each) ----"
    for i in $(seq 1 $N); do echo "== n$i"; tail -n 30 "$WORK/n$i.log" 2>/dev/null || true; done
    echo "netns: $PASSED passed, 1 failed"
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

if ! ip netns add "$HUB" 2>/dev/null; then
  skip "cannot create a network namespace (ip netns add failed)"
fi

now_ms() { date +%s%3N; }
T0=$(now_ms)
ms_since() { echo $(( $(now_ms) - $1 )); }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { PASSED=$((PASSED + 1)); echo "ok: $*"; }

# api NODE METHOD PATH [JSON BODY]  → prints the body (curl fails on connection errors only).
api() {
  local i=$1 method=$2 path=$3 body=${4:-}
  if [[ -n "$body" ]]; then
    ip netns exec "${P}n$i" curl -s -m 5 -X "$method" -H 'content-type: application/json' \
      --data "$body" "http://127.0.0.1:7947$path"
  else
    ip netns exec "${P}n$i" curl -s -m 5 -X "$method" "http://127.0.0.1:7947$path"
  fi
}
status() { ip netns exec "${P}n$1" curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:7947$2" || true; }

# wait_for DESCRIPTION TIMEOUT_MS COMMAND... : polls until COMMAND succeeds and prints how long
# it took, as "A..B ms": A = when the successful check started, B = when it ended (a check runs
# one curl per node and name, so B - A is the measurement's resolution). LAST_MS = B.
wait_for() {
  local what=$1 limit=$2; shift 2
  local t=$(now_ms) c
  while :; do
    c=$(now_ms)
    if "$@" >/dev/null 2>&1; then break; fi
    if (( c - t > limit )); then fail "$what: not within $limit ms"; fi
    sleep 0.05
  done
  LAST_MS=$(ms_since "$t")
  echo "timing: $what: $((c - t))..$LAST_MS ms"
}

echo "== network: hub $HUB with br-a, br-b and a trunk; nodes ${P}n1..${P}n$N on 10.77.0.0/24"
ip -n "$HUB" link add br-a type bridge
ip -n "$HUB" link add br-b type bridge
ip -n "$HUB" link add trunk-a type veth peer name trunk-b
ip -n "$HUB" link set trunk-a master br-a
ip -n "$HUB" link set trunk-b master br-b
for l in br-a br-b trunk-a trunk-b lo; do ip -n "$HUB" link set "$l" up; done
for i in $(seq 1 $N); do
  ns="${P}n$i"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$HUB" link add "v$i" type veth peer name eth0 netns "$ns"
  if (( i <= 2 )); then br=br-a; else br=br-b; fi
  ip -n "$HUB" link set "v$i" master "$br"
  ip -n "$HUB" link set "v$i" up
  ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
done

echo "== certificates (pidmesh cert)"
"$BIN" cert ca --out "$WORK/ca" >/dev/null
for i in $(seq 1 $N); do
  "$BIN" cert node "n$i" --ca "$WORK/ca" --out "$WORK/certs" --san "10.77.0.$i" >/dev/null
  [[ $(stat -c %a "$WORK/certs/n$i.key") == 600 ]] || fail "n$i.key is not mode 0600"
  cat > "$WORK/n$i.toml" <<TOML
name = "n$i"
listen = "10.77.0.$i:7946"
seeds = ["10.77.0.1:7946", "10.77.0.3:7946", "10.77.0.5:7946"]
transport = "quic"
preset = "local"
resolver = "keep-oldest"
tls_ca = "$WORK/ca/ca.pem"
tls_cert = "$WORK/certs/n$i.pem"
tls_key = "$WORK/certs/n$i.key"
admin_listen = "127.0.0.1:7947"
min_members = $N
singletons = ["sched"]
singleton_policy = "majority"
log = "warn"
TOML
done
ok "certificates and configs"

start() {
  local i=$1
  ip netns exec "${P}n$i" "$BIN" run --config "$WORK/n$i.toml" >>"$WORK/n$i.log" 2>&1 &
  PIDS[$i]=$!
}
healthy() { [[ $(status "$1" /healthz) == 200 ]]; }
ready_all() { for i in "$@"; do [[ $(status "$i" /readyz) == 200 ]] || return 1; done; }
members_of() { api "$1" GET /v1/members | jq -r '[.[].name] | sort | join(",")'; }

echo "== start $N processes"
T=$(now_ms)
for i in $(seq 1 $N); do start "$i"; done
for i in $(seq 1 $N); do wait_for "n$i admin API up (since launch)" 10000 healthy "$i"; done
wait_for "cluster formed: all $N ready with $N members (after the admin APIs were up)" 20000 ready_all 1 2 3 4 5
echo "timing: launch to cluster formed: $(ms_since "$T") ms"
ok "cluster formed"

echo "== sidecar names visible everywhere"
for i in $(seq 1 $N); do
  code=$(ip netns exec "${P}n$i" curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: application/json' \
    --data "{\"meta\":\"from n$i\",\"ttl_ms\":600000}" "http://127.0.0.1:7947/v1/names/svc%2F$i")
  [[ $code == 201 ]] || fail "PUT svc/$i on n$i answered $code"
done
all_see() {  # all_see NAME NODES...: every node knows NAME
  local name=$1; shift
  for i in "$@"; do [[ $(status "$i" "/v1/names/$name") == 200 ]] || return 1; done
}
names_everywhere() { for k in $(seq 1 $N); do all_see "svc%2F$k" 1 2 3 4 5 || return 1; done; }
wait_for "5 sidecar names visible on all 5 nodes" 10000 names_everywhere
ok "sidecar names visible everywhere"

echo "== singleton 'sched' (policy majority): find the holder, put it on the minority side"
holder() { for i in 1 2 3 4 5; do api "$i" GET /v1/singletons | jq -e '.[0].running' >/dev/null && { echo "$i"; return 0; }; done; return 1; }
wait_for "one node runs the singleton" 20000 holder
H=$(holder)
# The minority side (br-a) is the holder and one other node; the three others are the majority.
if (( H != 1 && H != 2 )); then
  ip -n "$HUB" link set "v$H" master br-a
  ip -n "$HUB" link set v1 master br-b
  MIN=("$H" 2); MAJ=(1); for i in 3 4 5; do (( i != H )) && MAJ+=("$i"); done
else
  MIN=(1 2); MAJ=(3 4 5)
fi
echo "holder n$H; minority: ${MIN[*]}; majority: ${MAJ[*]}"
sorted_names() { for i in "$@"; do echo "n$i"; done | sort | paste -sd, -; }
MIN_NAMES=$(sorted_names "${MIN[@]}"); MAJ_NAMES=$(sorted_names "${MAJ[@]}")
wait_for "cluster still whole after re-cabling" 20000 ready_all 1 2 3 4 5
ok "singleton held by n$H"

echo "== partition 2 | 3 (trunk down)"
T=$(now_ms)
ip -n "$HUB" link set trunk-a down
split_seen() {
  for i in "${MIN[@]}"; do [[ $(members_of "$i") == "$MIN_NAMES" ]] || return 1; done
  for i in "${MAJ[@]}"; do [[ $(members_of "$i") == "$MAJ_NAMES" ]] || return 1; done
}
wait_for "both sides see the cut (2 | 3)" 20000 split_seen
maj_runs() { for i in "${MAJ[@]}"; do api "$i" GET /v1/singletons | jq -e '.[0].running' >/dev/null && return 0; done; return 1; }
wait_for "a majority node runs the singleton (after both sides saw the cut)" 30000 maj_runs
STOP=$(api "$H" GET /v1/singletons | jq -r '.[0].stopped_at_ms // empty')
[[ $(api "$H" GET /v1/singletons | jq -r '.[0].running') == false ]] || fail "the minority holder n$H still runs the singleton"
START=0
for i in "${MAJ[@]}"; do
  j=$(api "$i" GET /v1/singletons)
  if [[ $(jq -r '.[0].running' <<<"$j") == true ]]; then START=$(jq -r '.[0].started_at_ms' <<<"$j"); NEWH=$i; fi
done
[[ -n "$STOP" ]] || fail "the minority holder never recorded a stop"
echo "timing: singleton stopped on minority n$H at +$((STOP - T)) ms, started on majority n$NEWH at +$((START - T)) ms after the cut (gap $((START - STOP)) ms)"
(( STOP < START )) || fail "the majority's singleton started before the minority's stopped"
ok "the minority's singleton stopped before the majority's started"

# Explicit sessions on both sides (they outlive a lost name and keep its event).
A=${MIN[0]}; B=${MAJ[0]}
SA=$(api "$A" POST /v1/sessions '{"ttl_ms":600000}' | jq -r .session)
SB=$(api "$B" POST /v1/sessions '{"ttl_ms":600000}' | jq -r .session)
for k in 1 2 3; do
  [[ $(api "$A" PUT "/v1/names/dup%2F$k" "{\"meta\":\"minority\",\"session\":$SA}" | jq -r .entry.meta) == minority ]] || fail "minority PUT dup/$k"
done
sleep 0.05
for k in 1 2 3; do
  [[ $(api "$B" PUT "/v1/names/dup%2F$k" "{\"meta\":\"majority\",\"session\":$SB}" | jq -r .entry.meta) == majority ]] || fail "majority PUT dup/$k"
done
ok "both sides registered dup/1..3 during the cut"

echo "== heal"
T=$(now_ms)
ip -n "$HUB" link set trunk-a up
one_winner() {
  for k in 1 2 3; do
    local first="" w
    for i in 1 2 3 4 5; do
      w=$(api "$i" GET "/v1/names/dup%2F$k" | jq -r '.pid.display // empty')
      [[ -n "$w" ]] || return 1
      [[ -z "$first" || "$w" == "$first" ]] || return 1
      first=$w
    done
  done
  ready_all 1 2 3 4 5
}
wait_for "heal: 5 members everywhere and one identical winner per name on every node" 30000 one_winner
W=$(api 4 GET /v1/names/dup%2F1 | jq -r .meta)
echo "winner side (keep-oldest): $W"
[[ $W == minority ]] || fail "keep-oldest should keep the earlier (minority) claims, got $W"
losers_told() {
  api "$B" GET "/v1/sessions/$SB" | jq -e '[.recent_events[] | select(.type == "lost" and .reason == "conflict")] | length == 3'
}
wait_for "losers' session told of 3 lost names" 10000 losers_told
api "$A" GET "/v1/sessions/$SA" | jq -e '(.names | length) == 3 and (.recent_events | length) == 0' >/dev/null \
  || fail "the winning session should hold its 3 names and have no events"
one_runner() {
  local n=0
  for i in 1 2 3 4 5; do api "$i" GET /v1/singletons | jq -e '.[0].running' >/dev/null && n=$((n + 1)); done
  (( n == 1 ))
}
wait_for "after the heal exactly one node runs the singleton" 20000 one_runner
ok "one identical winner on every node, losers told"

echo "== kill -9 n5"
kill -9 "${PIDS[5]}"; wait "${PIDS[5]}" 2>/dev/null || true; PIDS[5]=""
T=$(now_ms)
gone_everywhere() { for i in 1 2 3 4; do [[ $(status "$i" /v1/names/svc%2F5) == 404 ]] || return 1; done; }
wait_for "n5's names gone on the 4 others" 10000 gone_everywhere
# Failure detection of the local preset: suspicion 600 ms after a probe (200 ms period, 80 ms
# round trip) fails; budget = that + 1 s.
BUDGET=$((200 + 80 + 600 + 1000))
(( LAST_MS <= BUDGET )) || fail "names of the killed node took $LAST_MS ms to go (budget $BUDGET ms)"
echo "budget (failure detection + 1 s): $BUDGET ms"
ok "kill -9: names gone everywhere within failure detection + 1 s"

echo "== restart n5"
T=$(now_ms)
start 5
view() { api "$1" GET /v1/names | jq -c '[.[] | [.kind, .key, .pid.display]] | sort'; }
caught_up() { all_see "svc%2F1" 5 && [[ "$(view 5)" == "$(view 1)" ]]; }
wait_for "restarted n5's admin API up" 10000 healthy 5
wait_for "restarted n5 sees 5 members" 20000 ready_all 5
wait_for "the 4 others see the new n5" 20000 ready_all 1 2 3 4
wait_for "n5 caught up (the same entries as n1)" 20000 caught_up
echo "timing: restart to rejoined and caught up: $(ms_since "$T") ms"
[[ $(status 1 /v1/names/svc%2F5) == 404 ]] || fail "the old life's svc/5 came back"
ok "restart: rejoined and caught up"

echo "== 10% packet loss on one link (tc netem)"
if ip -n "$HUB" link add probe0 type dummy 2>/dev/null && ip netns exec "$HUB" tc qdisc add dev probe0 root netem loss 10% 2>/dev/null; then
  ip -n "$HUB" link del probe0
  ip netns exec "$HUB" tc qdisc add dev v2 root netem loss 10%
  ip netns exec "${P}n2" tc qdisc add dev eth0 root netem loss 10%
  for k in 1 2 3 4 5; do api 2 PUT "/v1/names/lossy%2F$k" '{"ttl_ms":600000}' >/dev/null; done
  lossy_everywhere() { for k in 1 2 3 4 5; do all_see "lossy%2F$k" 1 2 3 4 5 || return 1; done; }
  wait_for "5 names from the lossy node visible everywhere" 20000 lossy_everywhere
  ok "10% loss: still converges"
else
  ip -n "$HUB" link del probe0 2>/dev/null || true
  echo "netem step SKIPPED: this kernel has no sch_netem (tc qdisc netem is unknown)"
fi


echo "== graceful leave (SIGTERM n4)"
kill -TERM "${PIDS[4]}"
T=$(now_ms)
left() { [[ $(members_of 1) == "n1,n2,n3,n5" ]]; }
wait_for "SIGTERM: n4 gone from n1's members" 10000 left
wait "${PIDS[4]}"; rc=$?; PIDS[4]=""
[[ $rc -eq 0 ]] || fail "n4 exited with $rc after SIGTERM"
ok "graceful leave"

echo "total: $(ms_since "$T0") ms"
echo "netns: $PASSED passed, 0 failed"
