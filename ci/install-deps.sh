#!/usr/bin/env bash
# Installs what `make up` and `make test` need that this machine lacks. Idempotent: a machine
# that has everything only sees the checks. Called by the Makefile; safe to run by hand.
set -euo pipefail

say() { printf 'deps: %s\n' "$*"; }

missing_packages=()
command -v redis-server >/dev/null 2>&1 || missing_packages+=(redis-server)
if [ -z "${HARNESS_PG_BIN:-}" ] && [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  missing_packages+=(postgresql-15)
fi
command -v python3 >/dev/null 2>&1 || missing_packages+=(python3 python3-venv)
# The local API gateway of `harness up` (ADR 0011); /usr/sbin is not on every user's PATH.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing_packages+=(nginx)

if [ ${#missing_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "installing ${missing_packages[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_packages[@]}" >/dev/null
  else
    say "missing: ${missing_packages[*]}; install them with: sudo apt-get install -y ${missing_packages[*]}"
    exit 1
  fi
else
  say "redis-server, PostgreSQL 15, nginx and python3 are installed"
fi

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install the Rust toolchain (https://rustup.rs)"
  exit 1
fi

# cargo nextest (the second runner; CI's second pass uses it): part of the machine here, built
# from crates.io where missing.
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest (cargo install --locked, a few minutes, once)"
  cargo install --locked --quiet cargo-nextest
fi

# The LocalStack and moto venvs (pinned in localstack/ and moto/requirements.txt) are made by the
# harness itself, so that tests run by plain `cargo test` make them the same way.
say "checking the LocalStack and moto venvs"
cargo run --quiet -p harness -- setup

# The containers backend: where a Docker engine answers, its images must be present. Each is
# pulled when missing; where pulling is impossible (no registry), ci/images/build.sh builds
# drop-in images from Debian's packages. Images that script made are re-checked by it (it skips
# the ones built from the same inputs). Without Docker the harness uses native processes.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  images=("${HARNESS_POSTGRES_IMAGE:-postgres:15-bookworm}" "${HARNESS_REDIS_IMAGE:-redis:7-bookworm}"
          "${HARNESS_LOCALSTACK_IMAGE:-localstack/localstack:4.13.1}" "${HARNESS_MOTO_IMAGE:-cashflow/moto:5.2.5}"
          "${GATEWAY_IMAGE:-cashflow/nginx:bookworm}")
  build=0
  for image in "${images[@]}"; do
    if docker image inspect "$image" >/dev/null 2>&1; then
      source=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.source"}}' "$image" 2>/dev/null || true)
      [ "$source" = cashflow/ci/images ] && build=1
    elif docker pull -q "$image" >/dev/null 2>&1; then
      say "pulled $image"
    else
      say "$image is not present and cannot be pulled"
      build=1
    fi
  done
  if [ "$build" = 1 ]; then
    say "building the drop-in images from Debian's packages (ci/images/build.sh)"
    if ! bash ci/images/build.sh; then
      say "building the images failed (log in target/images/logs/); without them the harness falls back to native processes"
      [ "$(id -u)" -ne 0 ] || exit 1
    fi
  else
    say "container images present: ${images[*]}"
  fi
else
  say "no Docker engine answers: the harness runs the dependencies as native processes"
fi
