#!/usr/bin/env bash
# Fails when a harness container outlives the tests: each test process's containers are removed
# as it ends (by its reaper), so after a short grace none with the harness label may remain.
set -euo pipefail
command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || exit 0
deadline=$(( $(date +%s) + 30 ))
while left=$(docker ps -aq --filter label=cashflow.harness) && [ -n "$left" ]; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    docker ps -a --filter label=cashflow.harness
    echo "no-containers-left: FAILED: harness containers outlived the tests" >&2
    exit 1
  fi
  sleep 0.5
done
echo "no-containers-left: no harness container is left (docker ps -a)"
