#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30) from the committed
# seeds; a crash or a failed assertion exits non-zero and leaves the input
# in fuzz/artifacts/<target>/. Longer: `fuzz/run.sh 3600` or one target with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --dev -s none <target> fuzz/corpus/<target>`.
#
# cargo-fuzz needs nightly compiler flags; the stable toolchain accepts them
# with RUSTC_BOOTSTRAP=1 (this workplace can fetch no other toolchain). The
# targets run unoptimised and without a sanitizer (`--dev -s none`): the
# code under test is safe Rust, debug assertions catch overflows, and the
# build takes minutes instead of a quarter of an hour.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build --dev -s none
for t in fast_path click_id postback_params template config user_agent; do
  mkdir -p "corpus/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  echo "== fuzz $t (${SECONDS_EACH}s)"
  cargo fuzz run --dev -s none "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1 \
    | grep -E "^(Done|SUMMARY|==[0-9]+== ERROR)|panicked|stat::number_of_executed_units" || true
  # libFuzzer exits non-zero on a finding; grep hides that, so check for artifacts.
  if compgen -G "artifacts/$t/*" >/dev/null; then
    echo "fuzz target $t found a failing input: fuzz/artifacts/$t/"; exit 1
  fi
done
