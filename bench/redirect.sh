#!/usr/bin/env bash
# Redirect throughput: smartlink (50-offer pool, varied UAs and IPs) vs
# nginx answering a static `return 302`, same machine, same wrk settings.
# Usage: bench/redirect.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONN=${2:-64}
SL_PORT=18181
NGX_PORT=18182

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk nginx >/dev/null
fi
cargo build --release -q

work=$(mktemp -d)
cleanup() { kill "${SL_PID:-}" 2>/dev/null && wait "${SL_PID:-}" 2>/dev/null; nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# smartlink: the bench pool, trusting X-Forwarded-For, built-in GeoIP data.
{ printf 'server:\n  trust_proxy: true\n  admin_token: bench\n'; cat bench/pool50.yaml; } > "$work/pool.yaml"
RUST_LOG=warn ./target/release/smartlink serve --config "$work/pool.yaml" --data-dir "$work/data" --listen 127.0.0.1:$SL_PORT > "$work/sl.out" &
SL_PID=$!
for _ in $(seq 50); do grep -q listening "$work/sl.out" 2>/dev/null && break; sleep 0.1; done

cat > "$work/nginx.conf" <<NGX
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / { add_header Cache-Control no-store; return 302 https://o1.example/lp?cid=x; }
  }
}
NGX
nginx -c "$work/nginx.conf"

run() { wrk -t2 -c"$CONN" -d"${DUR}s" --latency -s bench/vary.lua "$1" 2>&1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SL_PID/stat"; }
# nginx first, so that the store's catch-up after the smartlink run cannot
# take CPU from it.
echo "== nginx";     NG=$(run "http://127.0.0.1:$NGX_PORT/s/pool"); echo "$NG"
T0=$(cpu_ticks)
echo "== smartlink"; SL=$(run "http://127.0.0.1:$SL_PORT/s/pool"); echo "$SL"
T1=$(cpu_ticks)

rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
p99() { awk '$1=="99%" {print $2}' <<<"$1"; }
non3xx() { awk '/Non-2xx or 3xx/ {print $5}' <<<"$1"; }
SL_RPS=$(rps "$SL"); NG_RPS=$(rps "$NG")
echo
echo "smartlink: ${SL_RPS} req/s, p99 $(p99 "$SL")"
echo "nginx:     ${NG_RPS} req/s, p99 $(p99 "$NG")"
awk -v a="$SL_RPS" -v b="$NG_RPS" 'BEGIN { printf "ratio smartlink/nginx: %.2f\n", a / b }'
# Server CPU per request (all threads, click writer included): steadier
# than req/s when wrk and the server share the cores.
REQS=$(awk '/requests in/ {print $1}' <<<"$SL")
HZ=$(getconf CLK_TCK)
awk -v t="$((T1 - T0))" -v r="$REQS" -v hz="$HZ" 'BEGIN { printf "smartlink CPU per request: %.1f us\n", t * 1e6 / hz / r }'
# Rows are journaled during the run and loaded into SQLite when the CPU is
# free: wait for the store to catch up and report what that cost.
metric() { curl -s http://127.0.0.1:$SL_PORT/metrics | awk -v m="$1" '$1 == m {print $2}'; }
C0=$(date +%s.%N)
while [ "$(metric smartlink_clicks_written_total)" != "$(metric smartlink_clicks_journaled_total)" ] \
  || [ "$(metric smartlink_click_queue_depth)" != "0" ]; do sleep 0.2; done
C1=$(date +%s.%N)
T2=$(cpu_ticks)
echo "clicks journaled: $(metric smartlink_clicks_journaled_total), stored: $(metric smartlink_clicks_written_total), dropped: $(metric smartlink_clicks_dropped_total)"
awk -v a="$C0" -v b="$C1" 'BEGIN { printf "store caught up %.1f s after the run\n", b - a }'
awk -v t="$((T2 - T0))" -v r="$REQS" -v hz="$HZ" 'BEGIN { printf "smartlink CPU per request, storing included: %.1f us\n", t * 1e6 / hz / r }'
