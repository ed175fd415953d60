#!/bin/sh
# Usage: ./run.sh <duckdb|datafusion|datafusion-mem> [clicks] [days]
# Runs the release harness of the matching feature; log in logs/run-<engine>-<clicks>.log.
set -e
e=$1; n=${2:-10000000}; d=${3:-30}
f=${e%-mem}
./target-$f/release/engine-study "$e" "$n" "$d" data 2>&1 | tee logs/run-$e-$n.log
rm -rf data/$e
