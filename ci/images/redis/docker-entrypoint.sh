#!/bin/sh
# Entrypoint of the local redis:7-bookworm image, with the official image's interface:
# - a first argument that is an option (-x, --x) or a *.conf file is passed to redis-server;
# - redis-server started as root re-runs itself as user redis (gosu) after owning /data;
# - reachable from other hosts with no password: `--protected-mode no` is added unless a config
#   file given as first argument sets protected-mode itself (the server binds all interfaces by
#   default when no config file says otherwise);
# - umask 0077 for the data files when the default 0022 is in force.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec gosu redis "$0" "$@"
fi

if [ "$1" = 'redis-server' ]; then
	protected_mode=1
	config_file=
	if [ -f "${2:-}" ]; then
		config_file="$2"
		if grep -q '^protected-mode' "$config_file"; then
			protected_mode=
		fi
	fi
	if [ -n "$protected_mode" ]; then
		shift # redis-server
		if [ -n "$config_file" ]; then
			shift
		fi
		set -- --protected-mode no "$@"
		if [ -n "$config_file" ]; then
			set -- "$config_file" "$@"
		fi
		set -- redis-server "$@"
	fi
fi

um="$(umask)"
if [ "$um" = '0022' ]; then
	umask 0077
fi

exec "$@"
