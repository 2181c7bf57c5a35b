#!/bin/sh
# Container entrypoint: the server in the foreground, replacing this shell so
# SIGTERM from `docker stop` reaches it directly (graceful shutdown). All
# configuration comes from the environment (see `--help`).
set -eu
cd "$(dirname "$0")/.."
exec node dist/server/main.js "$@"
