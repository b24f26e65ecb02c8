#!/usr/bin/env bash
# compose.yaml end to end: build the images, `up`, wait until both services are healthy, post an
# entry to the ledger, see it in the consolidated balance (both through the gateway), `down`, and check nothing is left.
# Run by `make test` when a Docker engine answers; safe to run by hand, also while `make up` or
# a developer's compose stack runs: its own project name, host ports and identity folder.
# Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for var in COMPOSE_LEDGER_PORT COMPOSE_CONSOLIDATION_PORT COMPOSE_IDENTITY_PORT COMPOSE_POSTGRES_PORT \
           COMPOSE_REDIS_PORT COMPOSE_LOCALSTACK_PORT COMPOSE_GATEWAY_PORT; do
  export "$var=$(free_port)"
done
export COMPOSE_IDENTITY_DIR=./target/compose-smoke/identity

say() { printf 'compose-smoke: %s\n' "$*"; }
compose() {
  if docker compose version >/dev/null 2>&1; then docker compose -f compose.yaml -p cashflow-smoke "$@"
  else docker-compose -f compose.yaml -p cashflow-smoke "$@"; fi
}

# Without a registry the Rust build image cannot be pulled: build the service images from the
# binaries `make test` has just built, on the locally built base (ci/images/build.sh).
if ! docker image inspect "${BUILD_IMAGE:-rust:1.90-bookworm}" >/dev/null 2>&1 \
   && ! docker pull -q "${BUILD_IMAGE:-rust:1.90-bookworm}" >/dev/null 2>&1; then
  export BUILD_IMAGE=cashflow/debian:bookworm BASE_IMAGE=cashflow/debian:bookworm PROFILE=debug
  say "no Rust build image: packaging the host-built target/debug binaries on $BASE_IMAGE"
fi
for bin in ledger consolidation harness; do
  if [ "${PROFILE:-release}" = debug ] && [ ! -x "target/debug/$bin" ]; then
    say "target/debug/$bin is missing: run cargo build --workspace --bins first"; exit 1
  fi
done

cleanup() {
  compose --profile observability down -v --remove-orphans >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

start=$(date +%s)
say "building the service images"
compose build --quiet ledger consolidation identity
docker image inspect "${GATEWAY_IMAGE:-cashflow/nginx:bookworm}" >/dev/null 2>&1 || compose build --quiet gateway
say "starting (compose up -d)"
mkdir -p "$COMPOSE_IDENTITY_DIR"
compose up -d --quiet-pull 2>/dev/null || compose up -d

healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$1")" 2>/dev/null)" = healthy ]; }
deadline=$(( $(date +%s) + 180 ))
until healthy ledger && healthy consolidation; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    compose ps; compose logs --tail 30; say "FAILED: services not healthy after 180 s"; exit 1
  fi
  sleep 1
done
say "both services healthy $(( $(date +%s) - start )) s after up"

token=$(target/debug/harness token --keys-file "$COMPOSE_IDENTITY_DIR/keys.json" --merchant smoke)
day=$(TZ=America/Sao_Paulo date +%F)
status=$(curl -s -o /tmp/compose-smoke-entry.json -w '%{http_code}' \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: smoke-$(date +%s%N)" \
  -d '{"kind":"credit","amount":"12.34","currency":"BRL","description":"compose smoke"}' \
  http://127.0.0.1:$COMPOSE_GATEWAY_PORT/v1/merchants/smoke/entries)
[ "$status" = 201 ] || { cat /tmp/compose-smoke-entry.json; say "FAILED: POST answered $status"; exit 1; }
say "entry recorded through the gateway (201)"

deadline=$(( $(date +%s) + 30 ))
until curl -sf -H "Authorization: Bearer $token" \
      "http://127.0.0.1:$COMPOSE_GATEWAY_PORT/v1/merchants/smoke/balances/$day" | grep -q '"credits":"12.34"'; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$COMPOSE_GATEWAY_PORT/v1/merchants/smoke/balances/$day"
    compose logs --tail 30 consolidation; say "FAILED: the entry never reached the balance"; exit 1
  fi
  sleep 0.2
done
say "the entry shows in the consolidated balance of $day, read through the gateway"

# The cash-flow page: served at / with its CSP, its configuration and the sign-in form
# same-origin (the browser test in features/ drives it; here, only that compose serves it).
page=$(curl -s -D - -o /dev/null "http://127.0.0.1:$COMPOSE_GATEWAY_PORT/")
printf '%s' "$page" | grep -qi "^content-security-policy: default-src 'self'" \
  || { printf '%s\n' "$page"; say "FAILED: the page is not served with its CSP"; exit 1; }
curl -sf "http://127.0.0.1:$COMPOSE_GATEWAY_PORT/config.json" | grep -q '"client_id":"cashflow-page"' \
  || { say "FAILED: no /config.json"; exit 1; }
curl -sf "http://127.0.0.1:$COMPOSE_GATEWAY_PORT/identity/.well-known/openid-configuration" | grep -q authorization_endpoint \
  || { say "FAILED: the identity provider is not reachable under /identity/"; exit 1; }
say "the page, its configuration and the identity provider are served through the gateway"

compose down -v --remove-orphans >/dev/null 2>&1
left=$(docker ps -aq --filter label=com.docker.compose.project=cashflow-smoke)
[ -z "$left" ] || { say "FAILED: containers left after down: $left"; exit 1; }
say "down: no container left; done in $(( $(date +%s) - start )) s"
