#!/usr/bin/env bash
# The OpenAPI documents are the contract: schemathesis (pinned in ci/schemathesis/requirements.txt,
# in a venv this script makes) runs with --checks all against both services, started by
# `harness up` on free ports with a state of its own. Config: schemathesis.toml (the merchant path
# parameter bound to the token's merchant; the few rules OpenAPI cannot state, each named there);
# hooks: ci/schemathesis/hooks.py. Exits non-zero on any failure. SCHEMATHESIS_EXAMPLES sets the
# examples per operation (default 100). Reports: target/schemathesis/{ledger,consolidation}.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
say() { printf 'schemathesis: %s\n' "$*"; }

venv=target/schemathesis-venv
wanted=$(sha256sum ci/schemathesis/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$wanted" ]; then
  say "creating the venv in $venv (pinned schemathesis)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r ci/schemathesis/requirements.txt
  echo "$wanted" > "$venv/.requirements.sha256"
fi

out=target/schemathesis
mkdir -p "$out"
export HARNESS_STATE_DIR=$root/$out/state
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ledger=$(free_port); consolidation=$(free_port)
harness=target/debug/harness
"$harness" down >/dev/null 2>&1 || true
rm -f "$out/up.out" "$out/up.err"
say "starting the platform (harness up --fresh, ledger :$ledger, consolidation :$consolidation)"
"$harness" up --fresh --prometheus-port 0 --ledger-port "$ledger" --consolidation-port "$consolidation" \
  --identity-port "$(free_port)" --postgres-port "$(free_port)" --redis-port "$(free_port)" \
  --sqs-port "$(free_port)" --gateway-port "$(free_port)" --replicas 1 > "$out/up.out" 2> "$out/up.err" &
up=$!
cleanup() {
  kill -TERM "$up" 2>/dev/null && wait "$up" 2>/dev/null || true
  "$harness" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
deadline=$(( $(date +%s) + 180 ))
until grep -q 'ready in' "$out/up.out" 2>/dev/null; do
  if ! kill -0 "$up" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
    tail -n 30 "$out/up.err"; say "FAILED: harness up did not become ready"; exit 1
  fi
  sleep 0.5
done

export SCHEMATHESIS_MERCHANT=m-schemathesis
SCHEMATHESIS_TOKEN=$("$harness" token --merchant "$SCHEMATHESIS_MERCHANT" --scope entries:write \
  --scope entries:read --scope balances:read --scope admin)
export SCHEMATHESIS_TOKEN SCHEMATHESIS_HOOKS=hooks PYTHONPATH=$root/ci/schemathesis
failed=0
for service in ledger consolidation; do
  port=$ledger; [ "$service" = ledger ] || port=$consolidation
  say "$service: st run --checks all --max-examples ${SCHEMATHESIS_EXAMPLES:-100}"
  if "$venv/bin/st" --no-color run "http://127.0.0.1:$port/openapi.json" --checks all \
      --max-examples "${SCHEMATHESIS_EXAMPLES:-100}" --seed 1 > "$out/$service.txt" 2>&1; then
    say "$service: $(grep -E '^ *[0-9]+ generated' "$out/$service.txt" | sed 's/^ *//'), 0 failures"
  else
    failed=1
    sed -n '/FAILURES/,$p' "$out/$service.txt" | head -n 80
    say "$service: FAILED (full report: $out/$service.txt)"
  fi
done
exit "$failed"
