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
  say "redis-server, PostgreSQL 15 and python3 are installed"
fi

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install the Rust toolchain (https://rustup.rs)"
  exit 1
fi

# The LocalStack venv (pinned in localstack/requirements.txt) is made by the harness itself, so
# that tests run by plain `cargo test` make it the same way.
say "checking the LocalStack venv"
cargo run --quiet -p harness -- setup
