#!/usr/bin/env bash
# Browser tests of the dashboard: Debian's chromium driven by
# playwright-core (pinned in package.json and package-lock.json; no
# browser is ever downloaded), with axe-core for accessibility.
#
# Starts target/{debug,release}/smartlink (whichever is newer;
# SMARTLINK_BIN overrides; nothing is built here) with a fresh data
# directory and the demo definitions, then runs dashboard.test.mjs, which
# sends clicks and postbacks, signs in as the admin and as affiliates,
# compares what the pages show with the API, and saves screenshots to
# target/browser-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
  fi
  [ -x "$CHROMIUM" ] || { echo "no chromium at $CHROMIUM (apt-get install chromium)" >&2; exit 1; }
fi
command -v node >/dev/null || { echo "no node (apt-get install nodejs npm)" >&2; exit 1; }
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.package-lock.json 2>/dev/null; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

bin=${SMARTLINK_BIN:-}
if [ -z "$bin" ]; then
  for b in target/debug/smartlink target/release/smartlink; do
    if [ -x "$b" ] && { [ -z "$bin" ] || [ "$b" -nt "$bin" ]; }; then bin=$b; fi
  done
fi
[ -n "$bin" ] || { echo "no smartlink binary: run cargo build --workspace first" >&2; exit 1; }

tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

export SMARTLINK_TOKEN=browser-admin-token-0123456789
# trust_proxy: the audit's clicks come "through a proxy" (X-Forwarded-For,
# CF-IPCountry) from many addresses, as real visitors would.
sed -e "s#^  data_dir: .*#  data_dir: $tmp/data#" \
    -e "s#^  trust_proxy: false#  trust_proxy: true#" \
    -e "s#^  admin_token: .*#  admin_token: $SMARTLINK_TOKEN\n  ingest_defer_secs: 0#" examples/demo.yaml >"$tmp/config.yaml"
grep -q "admin_token: $SMARTLINK_TOKEN" "$tmp/config.yaml" || { echo "could not set the admin token in the config" >&2; exit 1; }
grep -q "trust_proxy: true" "$tmp/config.yaml" || { echo "could not set trust_proxy in the config" >&2; exit 1; }

"$bin" serve --config "$tmp/config.yaml" --listen 127.0.0.1:0 >"$tmp/out.log" 2>"$tmp/err.log" &
pid=$!
base=
for _ in $(seq 1 300); do
  base=$(sed -n 's#^listening on \(http://[0-9.:]*\).*#\1#p' "$tmp/out.log" | head -n 1)
  [ -n "$base" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/err.log" >&2; echo "the server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { cat "$tmp/err.log" >&2; echo "the server did not start within 30 s" >&2; exit 1; }
echo "== smartlink at $base ($bin), chromium $("$CHROMIUM" --version 2>/dev/null | head -n 1)"

export SMARTLINK_BASE=$base
export SCREENSHOTS=${SCREENSHOTS:-$PWD/target/browser-screenshots}
mkdir -p "$SCREENSHOTS"
status=0
timeout 300 node --test --test-concurrency=1 tests/browser/dashboard.test.mjs || status=$?
if grep -q "panicked" "$tmp/err.log"; then
  grep -B2 -A5 "panicked" "$tmp/err.log" >&2
  echo "the server panicked" >&2
  status=1
fi
[ "$status" -eq 0 ] || { echo "browser tests failed; server log:" >&2; tail -n 30 "$tmp/err.log" >&2; }
exit "$status"
