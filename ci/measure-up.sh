#!/usr/bin/env bash
# How long `harness up` takes to say ready: a first run (empty state), a second on the data the
# first kept, and a --fresh one, on BACKEND (native or containers), on its own ports and state
# folder (a developer's `make up` is left alone). Each run is stopped with SIGTERM and must exit
# 0 without printing an error. Needs `cargo build --workspace --bins`.
# Usage: ci/measure-up.sh native|containers
set -u
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: $0 native|containers" >&2; exit 2; }
export HARNESS_STATE_DIR=${TMPDIR:-/tmp}/measure-up-$1 HARNESS_BACKEND=$1
./target/debug/harness down >/dev/null 2>&1
for label in first kept fresh; do
  extra=""; [ $label = fresh ] && extra=--fresh
  rm -f "$HARNESS_STATE_DIR.$label.out" "$HARNESS_STATE_DIR.$label.err"
  ./target/debug/harness up $extra --prometheus-port 0 --ledger-port 28081 --consolidation-port 28082 --identity-port 28089 --postgres-port 25432 --redis-port 26379 --sqs-port 24566 --gateway-port 28080 > $HARNESS_STATE_DIR.$label.out 2>$HARNESS_STATE_DIR.$label.err &
  pid=$!
  for i in $(seq 1 600); do grep -q "ready in" $HARNESS_STATE_DIR.$label.out && break; sleep 0.2; done
  echo "$1 $label: $(grep -o 'ready in [0-9.]* s' $HARNESS_STATE_DIR.$label.out)"
  kill -TERM $pid; wait $pid; echo "  exit $? ; errors in stop: $(grep -ci error $HARNESS_STATE_DIR.$label.err)"
done
./target/debug/harness down 2>&1 | tail -1
