#!/usr/bin/env bash
# Contract test: the running binary against its own OpenAPI document.
#
# Starts target/{debug,release}/smartlink (whichever is newer; SMARTLINK_BIN
# overrides) on a port of its choosing with a fresh data directory and the
# demo definitions, then runs schemathesis (from PyPI, pinned, into
# target/contract-venv once) on /api/v1/openapi.json with the admin token.
# Fails on any 5xx, any status the document does not list, any answer
# whose content type, headers or body do not match the document.
# Bounded: a few examples per operation and a time limit.
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-10}
TIME_LIMIT=${CONTRACT_TIME_LIMIT:-300}
venv=target/contract-venv

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
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

token=contract-admin-token-0123456789
# The demo's definitions and tokens, this run's data directory and token.
sed -e "s#^  data_dir: .*#  data_dir: $tmp/data#" \
    -e "s#^  admin_token: .*#  admin_token: $token#" examples/demo.yaml >"$tmp/config.yaml"
grep -q "admin_token: $token" "$tmp/config.yaml" || { echo "could not set the admin token in the config" >&2; exit 1; }

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
echo "== smartlink at $base ($bin)"

# A few clicks, so reports, the click log and conversions have rows.
ua='Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1'
for i in 1 2 3 4 5; do
  curl -s -o /dev/null -A "$ua" "$base/s/global?sub1=contract$i" || true
  curl -s -o /dev/null -A "$ua" "$base/s/mobile-apps?sub1=contract$i" || true
done

echo "== schemathesis $SCHEMATHESIS_VERSION: at most $MAX_EXAMPLES examples an operation, $TIME_LIMIT s"
start=$(date +%s)
status=0
# --max-time bounds the generation; timeout is the safety net (on a
# machine busy with other work schemathesis can overrun it, and a run cut
# short has not shown the API conforms, so that fails too).
timeout --signal=INT "$((TIME_LIMIT * 2 + 120))" "$venv/bin/schemathesis" --config-file tests/contract/schemathesis.toml run "$base/api/v1/openapi.json" \
  --url "$base" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --max-time "$TIME_LIMIT" \
  --request-timeout 20 \
  --phases coverage,fuzzing \
  --seed 1 \
  --no-color || status=$?
echo "== schemathesis took $(( $(date +%s) - start )) s"
if grep -q "panicked" "$tmp/err.log"; then
  grep -B2 -A5 "panicked" "$tmp/err.log" >&2
  echo "the server panicked" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "contract test failed (schemathesis exit $status); server log:" >&2
  tail -n 30 "$tmp/err.log" >&2
fi
exit "$status"
