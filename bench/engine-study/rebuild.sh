#!/bin/sh
# Usage: ./rebuild.sh <feature> <profile>: incremental rebuild after touching main.rs.
set -e
f=$1; p=$2
export CARGO_TARGET_DIR=$(pwd)/target-$f
touch src/main.rs
/usr/bin/time -v cargo build --locked --profile "$p" --no-default-features --features "$f" \
  > logs/rebuild-$f-$p.log 2>&1
