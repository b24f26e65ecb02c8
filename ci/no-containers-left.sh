#!/usr/bin/env bash
# Fails when a harness container outlives the tests: each test process's containers are removed
# as it ends (by its reaper), so after a short grace none with the harness label may remain.
# With HARNESS_SESSION (which `make test` sets for the tests it runs) only that run's containers
# count, so a `make up` running beside it is not mistaken for a leftover.
set -euo pipefail
command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || exit 0
filter=label=cashflow.harness
[ -z "${HARNESS_SESSION:-}" ] || filter=label=cashflow.harness.session=$HARNESS_SESSION
deadline=$(( $(date +%s) + 30 ))
while left=$(docker ps -aq --filter "$filter") && [ -n "$left" ]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    docker ps -a --filter "$filter"
    echo "no-containers-left: FAILED: harness containers outlived the tests" >&2
    exit 1
  fi
  sleep 0.5
done
echo "no-containers-left: no harness container is left (docker ps -a --filter $filter)"
