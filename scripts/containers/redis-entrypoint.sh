#!/bin/sh
# Entrypoint of the redis:7 stand-in. Like the official image: flags alone or a config file
# are arguments to redis-server, which runs as the redis user, with protected mode off (a
# container is reached from other hosts; set a password with --requirepass). Options given
# after ours win.
set -eu
case "${1:-}" in -* | *.conf | '') set -- redis-server "$@" ;; esac

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$1" = redis-server ]; then
  shift
  # A configuration file must stay the first argument.
  if [ "$#" -gt 0 ] && [ -f "$1" ]; then
    config="$1"
    shift
    set -- redis-server "$config" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
fi
exec "$@"
