#!/usr/bin/env bash
# Start-up time and resident memory of one `pidmesh run` process on loopback, idle and holding
# 1,000 and 100,000 sidecar entries (one session, names registered with PUT /v1/names through
# one curl process with parallel keep-alive requests). Not part of CI: it reports figures.
# Usage: tests/netns/footprint.sh path/to/pidmesh   (a release build gives the real figures)
set -euo pipefail
BIN=$(realpath "${1:?usage: $0 path/to/pidmesh}")
W=$(mktemp -d)
PID=""
trap '[[ -n "$PID" ]] && kill -9 "$PID" 2>/dev/null; rm -rf "$W"' EXIT
ADMIN=127.0.0.1:17947
now_ms() { date +%s%3N; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

"$BIN" cert ca --out "$W/ca" >/dev/null
"$BIN" cert node n1 --ca "$W/ca" --out "$W/certs" >/dev/null
start() {
  "$BIN" run --listen 127.0.0.1:17946 --preset local --log warn --max-lease-ms 3600000 \
    --tls-ca "$W/ca/ca.pem" --tls-cert "$W/certs/n1.pem" --tls-key "$W/certs/n1.key" \
    --admin-listen "$ADMIN" 2>>"$W/log" &
  PID=$!
}
echo "== start-up: launch → /healthz answers 200 (5 runs)"
for run in 1 2 3 4 5; do
  t=$(now_ms); start
  until curl -s -o /dev/null "http://$ADMIN/healthz"; do sleep 0.002; done
  echo "start-up run $run: $(( $(now_ms) - t )) ms"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done

start
until curl -s -o /dev/null "http://$ADMIN/healthz"; do sleep 0.01; done
sleep 0.5
echo "RSS idle: $(rss_kib "$PID") KiB"
S=$(curl -s -X POST -H 'content-type: application/json' -d '{"ttl_ms":3600000}' "http://$ADMIN/v1/sessions" | jq -r .session)
load() {  # load FROM TO
  for i in $(seq "$1" "$2"); do echo "url = \"http://$ADMIN/v1/names/load%2F$i\""; done > "$W/urls"
  local t=$(now_ms)
  curl -s --no-progress-meter -Z --parallel-max 16 -X PUT -H 'content-type: application/json' \
    -d "{\"meta\":\"10.0.0.1:8080\",\"session\":$S}" --config "$W/urls" > /dev/null
  echo "registered $1..$2 in $(( $(now_ms) - t )) ms"
}
load 1 1000
n=$(curl -s "http://$ADMIN/v1/stats" | jq .entries)
sleep 0.5
echo "RSS with $n entries: $(rss_kib "$PID") KiB"
load 1001 100000
n=$(curl -s "http://$ADMIN/v1/stats" | jq .entries)
sleep 0.5
echo "RSS with $n entries: $(rss_kib "$PID") KiB"
t=$(now_ms); kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
echo "graceful stop with $n entries: $(( $(now_ms) - t )) ms"
