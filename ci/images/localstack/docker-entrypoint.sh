#!/bin/bash
# Entrypoint of the local localstack/localstack:4.13.1 image, as the official image's
# bin/docker-entrypoint.sh: LOCALSTACK_<NAME> variables are also exported as <NAME> (except
# LOCALSTACK_HOST and LOCALSTACK_HOSTNAME), the venv is activated, the BOOT init hooks
# (/etc/localstack/init/boot.d) run, then localstack-supervisor is exec'd: it runs
# `python -m localstack.runtime.main`, forwards SIGTERM/SIGINT and exits with its code. The
# runtime itself runs the start.d, ready.d and shutdown.d hooks and prints "Ready." on stdout.
set -eo pipefail
shopt -s nullglob

# shellcheck disable=SC1090,SC2016
source <(
	env |
		grep -v -e '^LOCALSTACK_HOSTNAME' -e '^LOCALSTACK_HOST' -e '^LOCALSTACK_[[:digit:]]' |
		sed -ne 's/^LOCALSTACK_\([^=]\+\)=.*/export \1=${LOCALSTACK_\1}/p'
)

LOG_DIR=/var/lib/localstack/logs
test -d "$LOG_DIR" || mkdir -p "$LOG_DIR"

# shellcheck disable=SC1091
source /opt/code/localstack/.venv/bin/activate

test -d /etc/localstack/init/boot.d && python3 -m localstack.runtime.init BOOT

# exec, without pipes, so that signals reach the supervisor.
exec localstack-supervisor
