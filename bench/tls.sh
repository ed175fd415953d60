#!/usr/bin/env bash
# Redirect throughput over TLS against plain HTTP: the same smartlink
# process serves the bench pool on an HTTP listener and on a TLS listener
# (server.tls_listen, a self-signed certificate for bench.example made with
# openssl), and wrk drives each in turn with the same script and settings.
# Both go through the click fast path; the difference is what TLS costs.
# wrk keeps its connections open, so this measures the record layer
# (decrypting requests, encrypting answers), not handshakes.
# Usage: bench/tls.sh [seconds] [connections]
# BIN=path: run that smartlink binary instead of building this checkout.
# ROUNDS=n: alternating http/https pairs (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONN=${2:-64}
HTTP_PORT=18191
TLS_PORT=18192

if ! command -v wrk >/dev/null || ! command -v openssl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk openssl >/dev/null
fi
if [ -z "${BIN:-}" ]; then cargo build --release -q; BIN=./target/release/smartlink; fi

work=$(mktemp -d)
cleanup() { kill "${SL_PID:-}" 2>/dev/null && wait "${SL_PID:-}" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.example -addext subjectAltName=DNS:bench.example \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
{
  printf 'server:\n  trust_proxy: true\n  admin_token: bench\n  quality: {capacity_ips: 5000000}\n'
  printf '  tls_listen: 127.0.0.1:%s\n' "$TLS_PORT"
  cat bench/pool50.yaml
  printf 'domains:\n  - host: "*"\n    links: all\n    tls: {cert: %s, key: %s}\n' "$work/cert.pem" "$work/key.pem"
} > "$work/pool.yaml"
RUST_LOG=warn "$BIN" serve --config "$work/pool.yaml" --data-dir "$work/data" --listen 127.0.0.1:$HTTP_PORT > "$work/sl.out" &
SL_PID=$!
for _ in $(seq 600); do grep -q https "$work/sl.out" 2>/dev/null && break; sleep 0.1; done
grep -q https "$work/sl.out" || { echo "smartlink did not start within 60 s" >&2; exit 1; }

run() { wrk -t2 -c"$CONN" -d"${DUR}s" --latency -s bench/vary.lua "$1" 2>&1; }
rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
p99() { awk '$1=="99%" {print $2}' <<<"$1"; }
metric() { curl -s http://127.0.0.1:$HTTP_PORT/metrics | awk -v m="$1" '$1 == m {print $2}'; }
caught_up() {
  while [ "$(metric smartlink_clicks_written_total)" != "$(metric smartlink_clicks_journaled_total)" ] \
    || [ "$(metric smartlink_click_queue_depth)" != "0" ]; do sleep 0.2; done
}

ROUNDS=${ROUNDS:-3}
for r in $(seq "$ROUNDS"); do
  H=$(run "http://127.0.0.1:$HTTP_PORT/s/pool"); caught_up
  T=$(run "https://127.0.0.1:$TLS_PORT/s/pool"); caught_up
  awk -v r="$r" -v h="$(rps "$H")" -v t="$(rps "$T")" -v hp="$(p99 "$H")" -v tp="$(p99 "$T")" \
    'BEGIN { printf "round %d: http %.0f req/s (p99 %s), https %.0f req/s (p99 %s), https/http %.2f\n", r, h, hp, t, tp, t / h }'
done
echo "TLS handshakes: $(metric smartlink_tls_handshakes_total), handshake errors: $(metric smartlink_tls_handshake_errors_total), hand-offs to hyper: $(metric smartlink_http_handoffs_total)"
