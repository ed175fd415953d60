#!/usr/bin/env bash
# Several nodes on one PostgreSQL store (issue 19): throughput and p99 of
# one node against two, PostgreSQL's CPU, and what cap leases strand near a
# cap. Everything on this one machine: the nodes, PostgreSQL and wrk share
# its cores, so two nodes measure the cost of sharing a store (leases,
# loading, learning), not a second machine's capacity.
#
# Usage: bench/nodes.sh [seconds] [connections]
#   PG=postgres://postgres@127.0.0.1:5432  the server (a database of the
#       bench's own is made and dropped per phase)
#   BIN=path  the smartlink binary (default: build this checkout, release)
#   CAP=20000 the daily click cap of the stranding phase's capped offer
#   ROUNDS=2  throughput rounds per node count (alternating 1, 2, 1, 2, …)
#   STRANDING_ONLY=1  skip the throughput rounds
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
CONN=${2:-64}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
CAP=${CAP:-20000}
ROUNDS=${ROUNDS:-2}
DB=smartlink_bench_nodes
BASE_PORT=18201

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -z "${BIN:-}" ]; then cargo build --release -q --bin smartlink; BIN=./target/release/smartlink; fi

work=$(mktemp -d)
PIDS=()
stop_nodes() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
psql_admin() { psql -q -X -v ON_ERROR_STOP=1 "$PG/postgres" -c "$1" >/dev/null; }
fresh_db() { psql_admin "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; psql_admin "CREATE DATABASE $DB"; }
cleanup() { stop_nodes; psql_admin "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true; rm -rf "$work"; }
trap cleanup EXIT

# $1: node count, $2: definitions file. The first node applies the
# definitions; the others join with the store URL alone.
start_nodes() {
  local n=$1 defs=$2
  for i in $(seq 0 $((n - 1))); do
    local cfg=$work/node$i.yaml port=$((BASE_PORT + i))
    { printf 'server:\n  trust_proxy: true\n  admin_token: bench\n  store: %s/%s\n  quality: {capacity_ips: 5000000}\n' "$PG" "$DB"
      [ "$i" = 0 ] && cat "$defs"; } > "$cfg"
    rm -rf "$work/data$i"
    RUST_LOG=warn "$BIN" serve --config "$cfg" --data-dir "$work/data$i" --listen 127.0.0.1:$port > "$work/node$i.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q listening "$work/node$i.out" 2>/dev/null && break; sleep 0.1; done
    grep -q listening "$work/node$i.out" || { cat "$work/node$i.out"; exit 1; }
  done
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
caught_up() {
  for i in $(seq 0 $(($1 - 1))); do
    local port=$((BASE_PORT + i))
    while [ "$(metric $port smartlink_clicks_written_total)" != "$(metric $port smartlink_clicks_journaled_total)" ] \
      || [ "$(metric $port smartlink_click_queue_depth)" != "0" ]; do sleep 0.2; done
  done
}
# CPU ticks of every PostgreSQL process (the backends serving the nodes
# included; they live as long as the nodes' connections).
pg_ticks() {
  local t=0
  for p in $(pgrep -x postgres || true) $(pgrep -f '^postgres:' || true); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}
node_ticks() { local t=0; for p in "${PIDS[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
HZ=$(getconf CLK_TCK)

# One wrk per node (a load balancer's share each), with visitor sequences
# far apart so that no two send the same visitor.
load() {
  local n=$1 dur=$2 per=$((CONN / $1)) w=()
  for i in $(seq 0 $((n - 1))); do
    wrk -t1 -c"$per" -d"${dur}s" --latency -s bench/vary.lua "http://127.0.0.1:$((BASE_PORT + i))/s/pool" -- $((i * 50000017)) \
      > "$work/wrk$i.out" 2>&1 &
    w+=($!)
  done
  wait "${w[@]}"
}
ms() { awk '{v=$1; if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else print v*1000}' <<<"$1"; }

if [ "${STRANDING_ONLY:-0}" != 1 ]; then
echo "== throughput: ${DUR} s, $CONN connections in all, bench/pool50.yaml (caps leased from the store)"
results=$work/results
for r in $(seq "$ROUNDS"); do
  for n in 1 2; do
    fresh_db
    start_nodes "$n" bench/pool50.yaml
    P0=$(pg_ticks); N0=$(node_ticks)
    load "$n" "$DUR"
    P1=$(pg_ticks); N1=$(node_ticks)
    C0=$(date +%s.%N); caught_up "$n"; C1=$(date +%s.%N)
    P2=$(pg_ticks)
    rps=0; reqs=0; p99s=""
    for i in $(seq 0 $((n - 1))); do
      rps=$(awk -v a="$rps" '/Requests\/sec/ {print a + $2}' "$work/wrk$i.out")
      reqs=$(awk -v a="$reqs" '/requests in/ {print a + $1}' "$work/wrk$i.out")
      p99s="$p99s $(ms "$(awk '$1=="99%" {print $2}' "$work/wrk$i.out")")"
    done
    awk -v r="$r" -v n="$n" -v rps="$rps" -v p="$p99s" -v q="$reqs" -v hz="$HZ" -v dur="$DUR" \
        -v pg="$((P1 - P0))" -v pgl="$((P2 - P0))" -v nd="$((N1 - N0))" -v c="$(awk -v a="$C0" -v b="$C1" 'BEGIN{print b-a}')" \
      'BEGIN { printf "round %d, %d node(s): %.0f req/s, p99%s ms; node CPU %.1f us/request; PostgreSQL CPU %.0f%% of a core during the load (%.2f us/request), %.2f us/request with loading; loaded %.1f s after\n",
               r, n, rps, p, nd * 1e6 / hz / q, pg * 100 / hz / dur, pg * 1e6 / hz / q, pgl * 1e6 / hz / q, c }' | tee -a "$results"
    stop_nodes
  done
done
for n in 1 2; do
  awk -v n="$n" '$3 == n { v[++k] = $5 + 0; s += $5 } END { asort(v); m = k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2;
    printf "%d node(s): median %.0f req/s over %d rounds (mean %.0f)\n", n, m, k, s / k }' "$results"
done
fi

echo
echo "== stranding: one offer capped at $CAP clicks a day (preferred: it pays more), one uncapped; two nodes"
cat > "$work/capped.yaml" <<YAML
advertisers: [{id: adv}]
affiliates: [{id: aff}]
offers:
  - {id: capped, advertiser: adv, url: "https://capped.example/?cid={click_id}", payout: 5.0, caps: {daily_clicks: $CAP}}
  - {id: open, advertiser: adv, url: "https://open.example/?cid={click_id}", payout: 1.0}
smartlinks:
  - {slug: pool, affiliate: aff, offers: [capped, open], fallback_url: "https://fallback.example/"}
YAML
delivered() {
  curl -s -H 'Authorization: Bearer bench' "http://127.0.0.1:$BASE_PORT/api/v1/report?from=1d&group_by=offer&include_bots=true" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(sum(x["clicks"] for x in r["rows"] if x["offer"]=="capped"))'
}
leases() { psql -At -X "$PG/$DB" -c "SELECT coalesce((SELECT sum(taken) FROM cap_usage), 0) || ' taken, ' || coalesce((SELECT sum(held) FROM cap_leases), 0) || ' held (spent or not) by nodes'"; }
report() {
  caught_up "$2"
  local d; d=$(delivered)
  echo "$1: $d clicks delivered to the capped offer ($((CAP - d)) of $CAP stranded); store: $(leases)"
}

# Live nodes: both keep serving until the cap is spent.
fresh_db
start_nodes 2 "$work/capped.yaml"
load 2 "$DUR"
echo "live: $(awk '/requests in/ {s += $1} END {print s}' "$work"/wrk*.out) clicks over both nodes in $DUR s"
report "right after the load" 2
load 2 3
report "after 3 s more load on both nodes" 2
stop_nodes

# A node dies holding units: node 2 is killed (kill -9) 2 s into the load,
# node 1 then serves alone past the cap; node 2 restarted drains its
# journal, so its spent units are counted, and what is left is what it held
# unspent when it died (never re-issued that day: its journal may hold
# clicks that spent them).
fresh_db
start_nodes 2 "$work/capped.yaml"
load 2 5 & L=$!
sleep 2; kill -9 "${PIDS[1]}"; wait "${PIDS[1]}" 2>/dev/null || true
wait $L || true
PIDS=("${PIDS[0]}")
load 1 "$DUR"
RUST_LOG=warn "$BIN" serve --config "$work/node1.yaml" --data-dir "$work/data1" --listen 127.0.0.1:$((BASE_PORT + 1)) > "$work/node1b.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$work/node1b.out" 2>/dev/null && break; sleep 0.1; done
report "node 2 killed 2 s into the load and restarted after node 1 served alone" 2
