#!/usr/bin/env bash
# Installs what `make up` and `make test` need that this machine lacks. Idempotent: a machine
# that has everything only sees the checks. Called by the Makefile; safe to run by hand.
#
#   ci/install-deps.sh          Debian packages now; the slow parts (the LocalStack and moto
#                               venvs, the container images) started in the background, so that
#                               they download and install while cargo compiles
#   ci/install-deps.sh --wait   waits for those background jobs and fails if one failed (the
#                               Makefile calls it after the build, before anything runs)
#
# The background jobs keep their log, pid and exit code in target/deps/; a second call while one
# runs does not start it again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'deps: %s\n' "$*"; }
jobs_dir=target/deps
mkdir -p "$jobs_dir"

# Starts `name` (a command) in the background unless it is running already.
start_job() {
  local name=$1
  shift
  local pid_file=$jobs_dir/$name.pid
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    say "$name: already running (log $jobs_dir/$name.log)"
    return
  fi
  rm -f "$jobs_dir/$name.rc"
  # Its own output only: a caller reading ours until EOF (a pipe) must not wait for the job.
  ( set +e; "$@" >"$jobs_dir/$name.log" 2>&1; echo $? >"$jobs_dir/$name.rc" ) </dev/null >/dev/null 2>&1 &
  echo $! >"$pid_file"
  say "$name: started in the background (log $jobs_dir/$name.log)"
}

# Waits for every job started by start_job; prints each one's result and fails if one failed.
wait_jobs() {
  local failed=0 f name rc
  for f in "$jobs_dir"/*.pid; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .pid)
    if kill -0 "$(cat "$f")" 2>/dev/null; then
      say "$name: waiting for it to finish (log $jobs_dir/$name.log)"
      while kill -0 "$(cat "$f")" 2>/dev/null; do sleep 1; done
    fi
    # The job writes its exit code just before it ends.
    for _ in $(seq 50); do [ -f "$jobs_dir/$name.rc" ] && break; sleep 0.1; done
    rc=$(cat "$jobs_dir/$name.rc" 2>/dev/null || echo 1)
    if [ "$rc" = 0 ]; then
      say "$name: done"
    elif [ "$name" = images ] && [ "$(id -u)" -ne 0 ]; then
      say "images: building them failed (log in target/images/logs/); the harness falls back to native processes"
    else
      say "$name: FAILED (exit $rc); the end of $jobs_dir/$name.log:"
      tail -n 30 "$jobs_dir/$name.log" | sed 's/^/    /'
      failed=1
    fi
    rm -f "$f"
  done
  return $failed
}

if [ "${1:-}" = --wait ]; then
  wait_jobs
  exit $?
fi

missing_packages=()
command -v redis-server >/dev/null 2>&1 || missing_packages+=(redis-server)
if [ -z "${HARNESS_PG_BIN:-}" ] && [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  missing_packages+=(postgresql-15)
fi
command -v python3 >/dev/null 2>&1 || missing_packages+=(python3 python3-venv)
# The local API gateway of `harness up` (ADR 0011); /usr/sbin is not on every user's PATH.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing_packages+=(nginx)
# The cash-flow page's browser tests (features/): Debian's Chromium and its WebDriver server.
command -v chromium >/dev/null 2>&1 || missing_packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing_packages+=(chromium-driver)

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
  say "redis-server, PostgreSQL 15, nginx, chromium, chromedriver and python3 are installed"
fi

# axe-core for the page's accessibility check in the browser tests (features/src/browser.rs):
# the axe.min.js that the axe-playwright-python wheel on PyPI ships (axe-core 4.12.1, MPL-2.0,
# its licence header kept in the file), fetched by pip with the wheel's hash pinned, into
# target/axe/. Not vendored: the repository carries no third-party minified code.
axe_js=target/axe/axe.min.js
axe_wheel="axe-playwright-python==0.1.8 --hash=sha256:fdd263c998388f1a8e67cad02677e612d946248bd44d163be5e8650ea31f95f8"
if head -c 200 "$axe_js" 2>/dev/null | grep -q 'axe v4.12.1'; then
  say "axe-core 4.12.1 is in $axe_js"
else
  say "fetching axe-core 4.12.1 into $axe_js (the axe-playwright-python 0.1.8 wheel, pip, hash-pinned)"
  axe_tmp=$(mktemp -d)
  printf '%s\n' "$axe_wheel" >"$axe_tmp/requirements.txt"
  pip=(python3 -m pip)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    python3 -m venv "$axe_tmp/venv"
    pip=("$axe_tmp/venv/bin/pip")
  fi
  "${pip[@]}" download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$axe_tmp/requirements.txt" -d "$axe_tmp"
  python3 -m zipfile -e "$axe_tmp"/axe_playwright_python-0.1.8-*.whl "$axe_tmp/wheel"
  mkdir -p "$(dirname "$axe_js")"
  cp "$axe_tmp/wheel/axe_playwright_python/axe.min.js" "$axe_js"
  rm -rf "$axe_tmp"
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
# harness itself, so that tests run by plain `cargo test` make them the same way. In the
# background: cargo builds the harness first (holding the build lock, so a build started next
# waits for it and then goes on), then pip works while the rest compiles.
start_job venvs cargo run --quiet -p harness -- setup

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
    say "building the drop-in images from Debian's packages (ci/images/build.sh; logs in target/images/logs/)"
    start_job images bash ci/images/build.sh
  else
    say "container images present: ${images[*]}"
  fi
else
  say "no Docker engine answers: the harness runs the dependencies as native processes"
fi
