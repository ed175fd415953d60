#!/usr/bin/env bash
# Server CPU per request for one smartlink binary, with the server pinned to
# CPU 0 (one worker thread) and wrk to CPU 1, so the two do not compete.
# Compare two builds by running it on each binary, alternately, a few times.
# Usage: bench/cpu_per_request.sh [path/to/smartlink] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-./target/release/smartlink}
DUR=${2:-8}
if ! command -v wrk >/dev/null; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; fi
work=$(mktemp -d)
trap 'kill "${SL:-}" 2>/dev/null && wait "${SL:-}" 2>/dev/null; rm -rf "$work"' EXIT
{ printf 'server:\n  trust_proxy: true\n  admin_token: bench\n  quality: {capacity_ips: 5000000}\n'; cat bench/pool50.yaml; } > "$work/pool.yaml"
TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 0 "$BIN" serve --config "$work/pool.yaml" --data-dir "$work/data" \
  --listen 127.0.0.1:18181 > "$work/sl.out" &
SL=$!
for _ in $(seq 50); do grep -q listening "$work/sl.out" 2>/dev/null && break; sleep 0.1; done
ticks() { awk '{print $14 + $15}' "/proc/$SL/stat"; }
T0=$(ticks)
OUT=$(taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -s bench/vary.lua http://127.0.0.1:18181/s/pool)
T1=$(ticks)
REQS=$(awk '/requests in/ {print $1}' <<<"$OUT")
awk -v t="$((T1 - T0))" -v r="$REQS" -v hz="$(getconf CLK_TCK)" -v d="$DUR" \
  'BEGIN { printf "%d req/s, %.2f us CPU per request\n", r / d, t * 1e6 / hz / r }'
