#!/usr/bin/env bash
# Redirect throughput: smartlink (50-offer pool, varied UAs and IPs) vs
# nginx answering a static `return 302`, same machine, same wrk settings.
# Usage: bench/redirect.sh [seconds] [connections]
# PIN=1: the server (one worker thread) and nginx (one worker process) on
# CPU 0, wrk (one thread) on CPU 1, so that the load generator never takes
# the server's CPU; by default all three share every core.
# BIN=path: run that smartlink binary instead of building this checkout
# (to compare two builds, e.g. before and after a change).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONN=${2:-64}
SL_PORT=18181
NGX_PORT=18182

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk nginx >/dev/null
fi
if [ -z "${BIN:-}" ]; then cargo build --release -q; BIN=./target/release/smartlink; fi

work=$(mktemp -d)
cleanup() { kill "${SL_PID:-}" 2>/dev/null && wait "${SL_PID:-}" 2>/dev/null; nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# smartlink: the bench pool, trusting X-Forwarded-For, built-in GeoIP data,
# click-rate counters sized for the traffic (~70k clicks/s × 60 s window):
# undersized, they would call clean visitors floods and send them to the
# fallback, which skips the router and flatters the numbers.
{ printf 'server:\n  trust_proxy: true\n  admin_token: bench\n  quality: {capacity_ips: 5000000}\n'; cat bench/pool50.yaml; } > "$work/pool.yaml"
if [ "${PIN:-0}" = 1 ]; then
  SERVER_CPU=(taskset -c 0); WRK_CPU=(taskset -c 1); WRK_THREADS=1; NGX_WORKERS=1; export TOKIO_WORKER_THREADS=1
else
  SERVER_CPU=(); WRK_CPU=(); WRK_THREADS=2; NGX_WORKERS=auto
fi
RUST_LOG=warn "${SERVER_CPU[@]}" "$BIN" serve --config "$work/pool.yaml" --data-dir "$work/data" --listen 127.0.0.1:$SL_PORT > "$work/sl.out" &
SL_PID=$!
for _ in $(seq 50); do grep -q listening "$work/sl.out" 2>/dev/null && break; sleep 0.1; done

cat > "$work/nginx.conf" <<NGX
worker_processes $NGX_WORKERS;
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
"${SERVER_CPU[@]}" nginx -c "$work/nginx.conf"

run() { "${WRK_CPU[@]}" wrk -t"$WRK_THREADS" -c"$CONN" -d"${DUR}s" --latency -s bench/vary.lua "$1" 2>&1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SL_PID/stat"; }
rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
p99() { awk '$1=="99%" {print $2}' <<<"$1"; }
metric() { curl -s http://127.0.0.1:$SL_PORT/metrics | awk -v m="$1" '$1 == m {print $2}'; }
HZ=$(getconf CLK_TCK)
# Rows are journaled during a run and loaded into SQLite when the CPU is
# free; wait for the store to catch up before the next run, so that no run
# (nginx's included) shares the CPU with it.
caught_up() {
  while [ "$(metric smartlink_clicks_written_total)" != "$(metric smartlink_clicks_journaled_total)" ] \
    || [ "$(metric smartlink_click_queue_depth)" != "0" ]; do sleep 0.2; done
}

# Runs alternate (nginx, then smartlink) ROUNDS times: the machine's own
# drift between runs is as large as the effects measured, so one pair
# proves little. Reported: each pair, then medians.
ROUNDS=${ROUNDS:-3}
results=$work/results
for r in $(seq "$ROUNDS"); do
  NG=$(run "http://127.0.0.1:$NGX_PORT/s/pool")
  T0=$(cpu_ticks)
  SL=$(run "http://127.0.0.1:$SL_PORT/s/pool")
  T1=$(cpu_ticks)
  C0=$(date +%s.%N); caught_up; C1=$(date +%s.%N)
  T2=$(cpu_ticks)
  REQS=$(awk '/requests in/ {print $1}' <<<"$SL")
  [ "$r" = 1 ] && { echo "== smartlink, round 1"; echo "$SL"; }
  awk -v r="$r" -v s="$(rps "$SL")" -v n="$(rps "$NG")" -v sp="$(p99 "$SL")" -v np="$(p99 "$NG")" \
      -v t1="$((T1 - T0))" -v t2="$((T2 - T0))" -v q="$REQS" -v hz="$HZ" -v c="$(awk -v a="$C0" -v b="$C1" 'BEGIN{print b-a}')" \
    'BEGIN { printf "round %d: smartlink %.0f req/s (p99 %s), nginx %.0f req/s (p99 %s), ratio %.2f; CPU/request %.1f us, %.1f us with storing; store caught up in %.1f s\n",
             r, s, sp, n, np, s / n, t1 * 1e6 / hz / q, t2 * 1e6 / hz / q, c }' | tee -a "$results"
done
echo
awk '{ for (i = 1; i <= NF; i++) { if ($i == "ratio") ratio[NR] = $(i + 1) + 0; if ($i == "(p99") { v = $(i + 1); sub(/\),?/, "", v); if (!seen++) p[NR] = ms(v) } } seen = 0 }
     function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
     END { n = asort(ratio); m = asort(p); printf "median of %d rounds: ratio smartlink/nginx %.2f, smartlink p99 %.2f ms\n", n, ratio[int((n + 1) / 2)], p[int((m + 1) / 2)] }' "$results"
echo "clicks journaled: $(metric smartlink_clicks_journaled_total), stored: $(metric smartlink_clicks_written_total), dropped: $(metric smartlink_clicks_dropped_total)"
echo "outcomes: offer $(metric 'smartlink_clicks_total{outcome="offer"}'), fallback $(metric 'smartlink_clicks_total{outcome="fallback"}'); quality: human $(metric 'smartlink_click_quality_total{class="human"}'), suspect $(metric 'smartlink_click_quality_total{class="suspect"}'), bot $(metric 'smartlink_click_quality_total{class="bot"}')"
