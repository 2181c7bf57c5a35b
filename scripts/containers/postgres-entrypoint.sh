#!/bin/sh
# Entrypoint of the postgres:15 stand-in: on first start initialise PGDATA as the official
# image does (superuser POSTGRES_USER with POSTGRES_PASSWORD, database POSTGRES_DB, password
# authentication from other hosts, /docker-entrypoint-initdb.d), then run PostgreSQL as the
# postgres user in the foreground, as PID 1's child-free replacement (exec).
set -eu
case "${1:-postgres}" in -*) set -- postgres "$@" ;; esac
[ "$#" -gt 0 ] || set -- postgres

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo 'error: the database is uninitialised and POSTGRES_PASSWORD is not set' >&2
    echo '       (set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without one)' >&2
    exit 1
  fi
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags, as in the official image
  initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host="$auth" \
    --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

  # A private start (no TCP) to create the database and run the init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE :"db";\n' | psql -v ON_ERROR_STOP=1 -v db="$db" --username="$user" --dbname=postgres -q
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sql) psql -v ON_ERROR_STOP=1 --username="$user" --dbname="$db" -q -f "$script" ;;
      *.sh) . "$script" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
