#!/bin/sh
# Usage: ./build.sh <feature> <profile>   (profile: release | ci)
# Clean build of the harness with one engine, in its own target dir, timed by
# GNU time (wall, CPU, peak RSS). Log in logs/build-<feature>-<profile>.log.
set -e
f=$1; p=$2
export CARGO_TARGET_DIR=$(pwd)/target-$f
rm -rf "$CARGO_TARGET_DIR/$p"
[ "$p" = release ] && d=release || d=ci
/usr/bin/time -v cargo build --locked --profile "$p" --no-default-features --features "$f" \
  > logs/build-$f-$p.log 2>&1
echo "exit $?" >> logs/build-$f-$p.log
